//! Overlayfs semantics of an upper dir: which entries are whiteouts, which
//! directories are opaque, which overlay features are refused because a layer
//! cannot express them (redirected directories), and where a metacopy file's
//! data is (the lower dirs, looked up as overlayfs would).
//!
//! It answers questions about one entry at a time, through fds the traversal
//! opened; it does not walk, and does not know how a layer writes a whiteout.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{FileStat, SFlag};

use super::traverse::open_root;
use super::{bytes_cstring, display_path, split_last};
use crate::error::{Error, IoContext, Result};
use crate::fs::open::{open_dir_at, open_file_at, stat, stat_at};
use crate::fs::{xattr, Errno};

/// Which xattr namespace carries overlayfs metadata in the upper dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayXattrs {
    /// `trusted.overlay.*`, the default.
    #[default]
    Trusted,
    /// `user.overlay.*`, for overlays mounted with `userxattr`.
    User,
}

impl OverlayXattrs {
    fn name(self, key: &str) -> String {
        match self {
            OverlayXattrs::Trusted => format!("trusted.overlay.{key}"),
            OverlayXattrs::User => format!("user.overlay.{key}"),
        }
    }
}

/// Whether a stat'ed entry is an overlay whiteout device (char 0/0).
pub(super) fn is_whiteout_device(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Where a regular file of the upper dir gets its layer content.
pub(super) enum FileData {
    /// It is a whiteout (a zero-size file with `overlay.whiteout`).
    Whiteout,
    /// From itself.
    Own,
    /// From a lower dir: it holds only metadata (`overlay.metacopy`).
    Lower(File),
}

/// The overlay's xattr namespace and its lower dirs, opened once per walk.
pub(super) struct Overlay {
    ns: OverlayXattrs,
    lowers: Vec<(OwnedFd, PathBuf)>,
}

impl Overlay {
    pub(super) fn open(ns: OverlayXattrs, lowers: &[PathBuf]) -> Result<Self> {
        let lowers = lowers
            .iter()
            .map(|p| open_root(p).map(|(d, _)| (d, p.clone())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Overlay { ns, lowers })
    }

    /// Checks a directory of the upper dir: refuses one that overlayfs
    /// redirected, and says whether it is opaque.
    pub(super) fn dir_is_opaque(&self, fd: BorrowedFd<'_>, host: &Path) -> Result<bool> {
        let ns = self.ns;
        let redirect = xattr::get(fd, &ns.name("redirect")).at(host)?;
        if let Some(target) = redirect {
            return Err(Error::Refused {
                path: host.to_path_buf(),
                message: format!(
                    "directory was renamed on an overlay mounted with redirect_dir=on \
                     ({}={}); such an upper dir holds only part of the directory's \
                     content, so committing it would give a wrong image: remount with \
                     redirect_dir=off before the renames, or commit the merged view",
                    ns.name("redirect"),
                    String::from_utf8_lossy(&target)
                ),
            });
        }
        Ok(xattr::get(fd, &ns.name("opaque"))
            .at(host)?
            .is_some_and(|v| v == b"y"))
    }

    /// What the regular file `rel` of the upper dir, open as `fd` and stat'ed
    /// as `st`, holds.
    pub(super) fn file_data(
        &self,
        rel: &[u8],
        fd: BorrowedFd<'_>,
        host: &Path,
        st: &FileStat,
    ) -> Result<FileData> {
        let ns = self.ns;
        if xattr::get(fd, &ns.name("whiteout")).at(host)?.is_some() {
            return Ok(FileData::Whiteout);
        }
        if xattr::get(fd, &ns.name("metacopy")).at(host)?.is_some() {
            let redirect = xattr::get(fd, &ns.name("redirect")).at(host)?;
            return self
                .metacopy_data(rel, redirect.as_deref(), host, st)
                .map(FileData::Lower);
        }
        Ok(FileData::Own)
    }

    /// Finds the data of a metacopy file in the lower dirs.
    fn metacopy_data(
        &self,
        rel: &[u8],
        redirect: Option<&[u8]>,
        host: &Path,
        st: &FileStat,
    ) -> Result<File> {
        if self.lowers.is_empty() {
            return Err(Error::MetacopyWithoutLowers {
                path: host.to_path_buf(),
            });
        }
        let origin: Vec<u8> = match redirect {
            Some(r) if r.starts_with(b"/") => r[1..].to_vec(),
            Some(r) => {
                let (parent, _) = split_last(rel);
                let mut p = parent.to_vec();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(r);
                p
            }
            None => rel.to_vec(),
        };
        let file = self
            .lower_lookup(&origin, true)?
            .and_then(|(fd, _)| fd)
            .ok_or_else(|| Error::Refused {
                path: host.to_path_buf(),
                message: format!(
                    "metacopy file's data /{} is in none of the lower dirs",
                    display_path(&origin)
                ),
            })?;
        let lst = stat(&file).at(host)?;
        if lst.st_size != st.st_size {
            return Err(Error::Refused {
                path: host.to_path_buf(),
                message: format!(
                    "metacopy file has size {} but its lower data has {}",
                    st.st_size, lst.st_size
                ),
            });
        }
        Ok(file)
    }

    /// The metadata the lower dirs give directory `rel`, if they hold one there.
    pub(super) fn lower_dir(&self, rel: &[u8]) -> Result<Option<FileStat>> {
        Ok(self
            .lower_lookup(rel, false)?
            .map(|(_, st)| st)
            .filter(|st| kind(st) == SFlag::S_IFDIR))
    }

    /// Looks `rel` up through the lower dirs as overlayfs would. With `open`, a
    /// regular file found is opened; otherwise only its stat is returned.
    fn lower_lookup(&self, rel: &[u8], open: bool) -> Result<Option<(Option<File>, FileStat)>> {
        let comps: Vec<&[u8]> = rel
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let ns = self.ns;
        'layers: for (lower, root) in &self.lowers {
            let host = root.join(OsStr::from_bytes(rel));
            let mut cur: Option<OwnedFd> = None;
            let mut opaque_above = false;
            for (k, comp) in comps.iter().enumerate() {
                let at = cur.as_ref().unwrap_or(lower).as_fd();
                let c = bytes_cstring(comp);
                let st = match stat_at(at, &c) {
                    Ok(st) => st,
                    Err(Errno::NOENT | Errno::NOTDIR) => {
                        if opaque_above {
                            return Ok(None);
                        }
                        continue 'layers;
                    }
                    Err(e) => return Err(e).at(&host),
                };
                if is_whiteout_device(&st) {
                    return Ok(None);
                }
                let last = k + 1 == comps.len();
                if last {
                    if !open || kind(&st) != SFlag::S_IFREG {
                        return Ok(Some((None, st)));
                    }
                    let f = open_file_at(at, &c).at(&host)?;
                    if xattr::get(&f, &ns.name("metacopy")).at(&host)?.is_some() {
                        continue 'layers;
                    }
                    return Ok(Some((Some(f), st)));
                }
                if kind(&st) != SFlag::S_IFDIR {
                    return Ok(None);
                }
                let owned = open_dir_at(at, &c).at(&host)?;
                if xattr::get(&owned, &ns.name("opaque"))
                    .at(&host)?
                    .is_some_and(|v| v == b"y")
                {
                    opaque_above = true;
                }
                cur = Some(owned);
            }
            if comps.is_empty() {
                return Ok(Some((None, stat(lower).at(&host)?)));
            }
        }
        Ok(None)
    }
}
