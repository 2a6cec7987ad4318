//! Errors of the OCI runtime verbs. Two are worded as runc words them, since
//! containerd's shim matches their text.

use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

use super::seed;
use crate::session::freezer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Worded as runc words it: containerd's shim matches "does not exist".
    #[error("container {id:?} does not exist")]
    NotExist { id: String },

    /// An id that could not name a directory under the state root, refused
    /// before any path is made of it (runc's rule: ASCII letters, digits and
    /// `_+,-.`, and neither `.` nor `..`).
    #[error("container id {id:?}: invalid format (letters, digits and _+,-. only, not . or ..)")]
    InvalidId { id: String },

    /// Worded as runc words it: containerd's shim matches "container not running".
    #[error("container {id:?}: container not running (status {status})")]
    NotRunning { id: String, status: String },

    /// The state file could not be read as a state: `message` names it.
    #[error("container {id:?}: unreadable state: {message}")]
    BadState { id: String, message: String },

    #[error("container {id:?}: cannot {op} a container that is {status}")]
    Status {
        id: String,
        op: &'static str,
        status: String,
    },

    #[error("container {id:?}: {op}: {source}")]
    Libcontainer {
        id: String,
        op: &'static str,
        #[source]
        source: Box<LibcontainerError>,
    },

    #[error("{}: {message}", path.display())]
    Spec { path: PathBuf, message: String },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("container {id:?}: seeding {}: {source}", target.display())]
    Seed {
        id: String,
        target: PathBuf,
        #[source]
        source: seed::SeedError,
    },

    #[error("invalid signal {0:?}")]
    Signal(String),

    #[error("container {id:?}: {source}")]
    Cgroup {
        id: String,
        #[source]
        source: freezer::Error,
    },

    #[error("container {id:?}: {op}: {message}")]
    Cgroups {
        id: String,
        op: &'static str,
        message: String,
    },

    #[error("container {id:?}: exec: {message}")]
    Exec { id: String, message: String },

    #[error("container {id:?}: terminal: {source}")]
    Console { id: String, source: std::io::Error },

    #[error("waiting for pid {pid}: {source}")]
    Wait { pid: i32, source: nix::Error },

    /// `spec` leaves a bundle's config.json alone.
    #[error("{}: remove it first", path.display())]
    SpecExists {
        path: PathBuf,
        source: std::io::Error,
    },

    /// `spec` could not create or write the config.json.
    #[error("{op} {}", path.display())]
    SpecWrite {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps libcontainer's error with the container and what was being done.
pub(super) fn lib(id: &str, op: &'static str) -> impl FnOnce(LibcontainerError) -> Error {
    let id = id.to_string();
    move |source| Error::Libcontainer {
        id,
        op,
        source: Box::new(source),
    }
}

pub(super) fn console_error(id: &str, source: std::io::Error) -> Error {
    Error::Console {
        id: id.into(),
        source,
    }
}
