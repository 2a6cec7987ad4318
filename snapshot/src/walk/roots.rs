//! Tree roots opened once: the upper dir and every graft's source are opened
//! by the path the caller gave, their identity (dev, ino) is recorded, and
//! every pass over the spec (a live commit makes two) starts from those fds.
//! No root is looked up by path again, however long the commit takes or
//! however often the walk closes and reopens a root to save descriptors.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use nix::sys::stat::{FileStat, SFlag};

use super::TreeSpec;
use crate::error::{Error, IoContext, Result};
use crate::fs::open::{open_dir_at, open_root, stat};

/// A tree root, open.
#[derive(Debug, Clone)]
pub struct RootDir {
    fd: Arc<OwnedFd>,
    /// (dev, ino) of the directory when it was opened.
    pub id: (u64, u64),
}

impl RootDir {
    /// Opens the directory `path` names (following symlinks, as a path the
    /// caller gave is).
    pub fn open(path: &Path) -> Result<RootDir> {
        let fd = open_root(path).at(path)?;
        let st = stat(&fd).at(path)?;
        if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFDIR.bits() {
            return Err(Error::Refused {
                path: path.to_path_buf(),
                message: "not a directory".into(),
            });
        }
        Ok(RootDir {
            fd: Arc::new(fd),
            id: (st.st_dev, st.st_ino),
        })
    }

    /// A new fd on the same directory, with its own listing position, and
    /// its stat: `.` of the open fd, never the path again.
    pub(super) fn reopen(&self, host: &Path) -> Result<(OwnedFd, FileStat)> {
        let dir = open_dir_at(self.fd.as_fd(), c".").at(host)?;
        let st = stat(&dir).at(host)?;
        if (st.st_dev, st.st_ino) != self.id {
            return Err(Error::Refused {
                path: host.to_path_buf(),
                message: "tree root is not the directory opened at the start".into(),
            });
        }
        Ok((dir, st))
    }

    /// The open directory.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// The roots of a [`TreeSpec`] once [`TreeSpec::open_roots`] opened them.
#[derive(Debug, Clone, Default)]
pub struct OpenRoots {
    upper: Option<RootDir>,
    /// One per graft, in the spec's order.
    grafts: Vec<RootDir>,
}

impl TreeSpec {
    /// Opens the upper dir and every graft source once; every later pass
    /// over this spec reads through these fds. Without it, each pass opens
    /// the roots by path when it starts.
    pub fn open_roots(&mut self) -> Result<()> {
        let upper = self.upper.as_deref().map(RootDir::open).transpose()?;
        let grafts = self
            .grafts
            .iter()
            .map(|g| RootDir::open(&g.source))
            .collect::<Result<Vec<_>>>()?;
        self.roots = OpenRoots { upper, grafts };
        Ok(())
    }

    /// The open upper dir, after [`TreeSpec::open_roots`].
    pub fn upper_root(&self) -> Option<&RootDir> {
        self.roots.upper.as_ref()
    }

    /// The open source of graft `i`, after [`TreeSpec::open_roots`].
    pub fn graft_root(&self, i: usize) -> Option<&RootDir> {
        self.roots.grafts.get(i)
    }

    /// The roots a pass reads through: those [`TreeSpec::open_roots`]
    /// opened, or, without it, the roots opened now, once for the pass.
    pub(super) fn pass_roots(&self) -> Result<OpenRoots> {
        let opened = self.roots.upper.is_some() == self.upper.is_some()
            && self.roots.grafts.len() == self.grafts.len();
        if opened {
            return Ok(self.roots.clone());
        }
        let mut spec = TreeSpec {
            upper: self.upper.clone(),
            grafts: self.grafts.clone(),
            ..TreeSpec::default()
        };
        spec.open_roots()?;
        Ok(spec.roots)
    }
}

impl OpenRoots {
    /// Tree `tree` of `spec` (0: the upper dir, 1 + i: graft i), as a new fd
    /// on the directory opened at the start.
    pub(super) fn open_tree(&self, spec: &TreeSpec, tree: usize) -> Result<(OwnedFd, FileStat)> {
        let (path, root) = match tree {
            0 => (spec.upper.as_deref(), self.upper.as_ref()),
            t => (
                spec.grafts.get(t - 1).map(|g| g.source.as_path()),
                self.grafts.get(t - 1),
            ),
        };
        match (path, root) {
            (Some(path), Some(root)) => root.reopen(path),
            _ => Err(Error::Invalid {
                field: "tree root",
                message: format!("tree {tree} was not opened"),
            }),
        }
    }
}
