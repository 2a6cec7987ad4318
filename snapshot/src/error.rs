//! The crate's error type: every variant names the path, blob or field at fault.
//!
//! It knows no HTTP status or exit code, and no caller's flags: callers map
//! these errors to theirs and add their own hints.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    /// The tree holds something freezeframe will not turn into a layer, because the
    /// result could be wrong.
    #[error("{}: {message}", path.display())]
    Refused { path: PathBuf, message: String },

    #[error("invalid exclude pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },

    /// The output is already there and was not to be replaced.
    #[error("{}: already exists", path.display())]
    Exists { path: PathBuf },

    /// A file of the upper dir holds only metadata (overlay `metacopy=on`) and
    /// the walk was given no lower dir to take its data from.
    #[error(
        "{}: file holds only metadata (overlay metacopy=on); its data is in a lower dir, \
         and no lower dirs were given",
        path.display()
    )]
    MetacopyWithoutLowers { path: PathBuf },

    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },

    #[error("cancelled")]
    Cancelled,

    /// A file is larger than the configured `max_file_size`.
    #[error(
        "{}: file holds {size} bytes, more than the limit of {limit} (limits.max_file_size)",
        path.display()
    )]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    /// A layer's file data would pass the configured `max_layer_size`: `size`
    /// bytes with the file `path`, the first that does not fit.
    #[error(
        "layer would hold {size} bytes of file data with {}, more than the limit of {limit} \
         (limits.max_layer_size)",
        path.display()
    )]
    LayerLimit {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    /// A layer of a live commit's frozen pass outgrew its limit.
    #[error("the layer would hold more than {limit} bytes of file data")]
    LayerTooLarge { limit: u64 },

    #[error(transparent)]
    Source(#[from] crate::source::SourceError),

    #[error(transparent)]
    Change(#[from] crate::changes::ChangeError),

    #[error(transparent)]
    Inspect(#[from] crate::inspect::InspectError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to I/O errors, as in `file.read(..).at(&path)?`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|errno| Error::Io {
            path: path.into(),
            source: io::Error::from(errno),
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|errno| Error::Io {
            path: path.into(),
            source: io::Error::from(errno),
        })
    }
}
