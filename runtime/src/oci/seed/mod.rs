//! Home seeding: a container's home is a fresh host directory bind-mounted over
//! the image's home path, which hides what the image put there. Before the
//! container starts, the image's home is copied into that directory if it is
//! empty, the way Docker copies an image's content up into a new named volume.
//!
//! The image is untrusted. Every step is relative to an open directory, no
//! symlink is ever followed on either side, and a failed copy is removed again.
//! Nothing that would give power on the host is copied: no device node, no
//! setuid or setgid bit, no file capability and no `trusted.*` attribute
//! ([`HOST_XATTRS`](freezeframe_snapshot::fs::xattr::HOST_XATTRS)), and the
//! scratch directory keeps the owner and mode the platform gave it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use freezeframe_snapshot::fs::links::LinkTracker;
use freezeframe_snapshot::fs::open::{open_in_root, open_root_nofollow, stat};
use freezeframe_snapshot::fs::Errno;

mod copy;
mod fd;
#[cfg(test)]
mod tests;

use copy::{Copier, Side};
use fd::{empty_dir, list, DIR};

/// What seeding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeded {
    /// The image's content was copied: how many entries and file bytes, and
    /// the device nodes left out.
    Copied {
        entries: u64,
        bytes: u64,
        devices: LeftOut,
    },
    /// The scratch directory already holds something; it was left as it is.
    NotEmpty,
    /// The image has nothing at that path (missing, or an empty directory).
    NoSource,
}

/// Entries of the image that were not copied: how many, and the first
/// [`LeftOut::LISTED`] of them by path in the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeftOut {
    pub count: u64,
    pub paths: Vec<PathBuf>,
}

impl LeftOut {
    /// How many paths are listed at most; the count goes on.
    pub const LISTED: usize = 100;

    fn add(&mut self, path: impl FnOnce() -> PathBuf) {
        self.count += 1;
        if self.paths.len() < Self::LISTED {
            self.paths.push(path());
        }
    }
}

/// Why seeding failed. Image paths are as the container sees them; host paths
/// are as this process sees them. After any error nothing copied is left in the
/// scratch directory, unless the error is [`SeedError::Cleanup`].
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("home path {path} must be absolute, below / and without ..")]
    BadPath { path: PathBuf },
    #[error("{path} in the image is or goes through a symlink, which is not followed")]
    Symlink { path: PathBuf },
    #[error("{path} in the image is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} changed while it was being copied")]
    Changed { path: PathBuf },
    #[error("failed to {op} {path} in the image: {source}")]
    Image {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("failed to {op} {path}: {source}")]
    Host {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("failed to copy {from} in the image to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("failed to set extended attribute {name} on {path}: {source}")]
    Xattr {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("failed to empty {path} again after an error ({cause}): {source}")]
    Cleanup {
        path: PathBuf,
        source: io::Error,
        cause: Box<SeedError>,
    },
}

/// Copies the image's `path_in_container` (resolved inside `rootfs`) into
/// `scratch` if `scratch` is empty, keeping owners, modes without setuid and
/// setgid bits, times, hard links and the extended attributes of
/// [`HOST_XATTRS`](freezeframe_snapshot::fs::xattr::HOST_XATTRS). Device
/// nodes are left out and reported in [`Seeded::Copied`]. `scratch` itself
/// keeps its owner, mode, attributes and times: making it the session user's
/// is the platform's part. Never follows a symlink; on error `scratch` is
/// emptied again.
pub fn seed(rootfs: &Path, path_in_container: &Path, scratch: &Path) -> Result<Seeded, SeedError> {
    let scratch_dir = open_root_nofollow(scratch).map_err(|e| SeedError::Host {
        op: "open",
        path: scratch.to_owned(),
        source: e.into(),
    })?;
    let mut copier = Copier {
        image: path_in_container,
        scratch,
        scratch_dir: scratch_dir.as_fd(),
        rel: PathBuf::new(),
        links: LinkTracker::new(),
        entries: 0,
        bytes: 0,
        devices: LeftOut::default(),
    };
    if !list(scratch_dir.as_fd())
        .map_err(copier.err(Side::Host, "read"))?
        .is_empty()
    {
        return Ok(Seeded::NotEmpty);
    }
    let Some(home) = open_home(rootfs, path_in_container)? else {
        return Ok(Seeded::NoSource);
    };
    // Before listing it, which may move its atime.
    let stat = stat(&home).map_err(copier.err(Side::Image, "stat"))?;
    let names = list(home.as_fd()).map_err(copier.err(Side::Image, "read"))?;
    if names.is_empty() {
        return Ok(Seeded::NoSource);
    }
    let walk_dst = scratch_dir
        .try_clone()
        .map_err(copier.err(Side::Host, "open"))?;
    match copier.run(home, stat, names, walk_dst) {
        Ok(()) => Ok(Seeded::Copied {
            entries: copier.entries,
            bytes: copier.bytes,
            devices: copier.devices,
        }),
        Err(cause) => match empty_dir(scratch_dir.as_fd()) {
            Ok(()) => Err(cause),
            Err(source) => Err(SeedError::Cleanup {
                path: scratch.to_owned(),
                source,
                cause: Box::new(cause),
            }),
        },
    }
}

/// Opens the image's home directory, or `None` if the image has nothing there.
fn open_home(rootfs: &Path, home: &Path) -> Result<Option<OwnedFd>, SeedError> {
    let rel = relative(home).ok_or_else(|| SeedError::BadPath {
        path: home.to_owned(),
    })?;
    let root = open_root_nofollow(rootfs).map_err(|e| SeedError::Host {
        op: "open",
        path: rootfs.to_owned(),
        source: e.into(),
    })?;
    match open_in_root(root.as_fd(), &rel, DIR) {
        Ok(dir) => Ok(Some(dir)),
        Err(Errno::NOENT) => Ok(None),
        // RESOLVE_NO_SYMLINKS reports any symlink on the way as ELOOP.
        Err(Errno::LOOP) => Err(SeedError::Symlink {
            path: home.to_owned(),
        }),
        Err(Errno::NOTDIR) => Err(SeedError::NotADirectory {
            path: home.to_owned(),
        }),
        Err(e) => Err(SeedError::Image {
            op: "open",
            path: home.to_owned(),
            source: e.into(),
        }),
    }
}

/// `/a/b` as `a/b`; `None` for a relative path, `/` itself, or one with `..`.
fn relative(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => rel.push(name),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!rel.as_os_str().is_empty()).then_some(rel)
}

/// Undoes a seeding whose container was then not created: empties `scratch`
/// again (it was empty before [`seed`] copied into it), never following a
/// symlink.
pub fn unseed(scratch: &Path) -> Result<(), SeedError> {
    let host = |op, source| SeedError::Host {
        op,
        path: scratch.to_path_buf(),
        source,
    };
    let dir = open_root_nofollow(scratch).map_err(|e| host("open", e.into()))?;
    empty_dir(dir.as_fd()).map_err(|e| host("empty", e))
}
