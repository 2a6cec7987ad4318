//! Overlayfs semantics of an upper dir: which entries are whiteouts, which
//! directories are opaque, which overlay features are refused because a layer
//! cannot express them (redirected directories), and where a metacopy file's
//! data is (the lower dirs, looked up as overlayfs would).
//!
//! It answers questions about one entry at a time, through fds the traversal
//! opened; it does not walk, and does not know how a layer writes a whiteout.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{FileStat, SFlag};

use super::traverse::open_root;
use super::{display_path, split_last};
use crate::error::{Error, IoContext, Result};
use crate::fs::open::{open_dir_beneath, open_verified, stat, stat_at};
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

    /// Finds the data of a metacopy file in the lower dirs, beneath their
    /// roots only: a redirect that would climb out of them is refused, and
    /// the error says nothing of what is outside.
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
        let origin = metacopy_origin(rel, redirect).map_err(|why| Error::Refused {
            path: host.to_path_buf(),
            message: format!(
                "metacopy redirect {}={:?} {why}: a metacopy file's data is looked up \
                 beneath the lower dirs only",
                self.ns.name("redirect"),
                String::from_utf8_lossy(redirect.unwrap_or_default())
            ),
        })?;
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
                    "metacopy file has size {} but its lower data /{} has another",
                    st.st_size,
                    display_path(&origin)
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

    /// Looks `rel` up through the lower dirs as overlayfs would, each
    /// component a name beneath the one before (`RESOLVE_BENEATH`, no symlink,
    /// no `.` or `..`). With `open`, a regular file found is opened (the inode
    /// that was stat'ed, and no other); otherwise only its stat is returned.
    fn lower_lookup(&self, rel: &[u8], open: bool) -> Result<Option<(Option<File>, FileStat)>> {
        let comps = rel
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(|c| plain_name(c).ok_or(c))
            .collect::<std::result::Result<Vec<CString>, &[u8]>>()
            .map_err(|c| Error::Refused {
                path: PathBuf::from(OsStr::from_bytes(rel)),
                message: format!(
                    "{:?} is no name of an entry beneath the lower dirs",
                    String::from_utf8_lossy(c)
                ),
            })?;
        let ns = self.ns;
        'layers: for (lower, root) in &self.lowers {
            let host = root.join(OsStr::from_bytes(rel));
            let mut cur: Option<OwnedFd> = None;
            let mut opaque_above = false;
            for (k, c) in comps.iter().enumerate() {
                let at = cur.as_ref().unwrap_or(lower).as_fd();
                let st = match stat_at(at, c) {
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
                    let Some((f, st)) = open_verified(at, c, &st).at(&host)? else {
                        return Err(Error::Refused {
                            path: host,
                            message: "changed while it was being looked up".into(),
                        });
                    };
                    if xattr::get(&f, &ns.name("metacopy")).at(&host)?.is_some() {
                        continue 'layers;
                    }
                    return Ok(Some((Some(f), st)));
                }
                if kind(&st) != SFlag::S_IFDIR {
                    return Ok(None);
                }
                let name = Path::new(OsStr::from_bytes(c.as_bytes()));
                let owned = open_dir_beneath(at, name).at(&host)?;
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

/// `name` as a C string if it names an entry of a directory: not empty, not
/// `.` or `..`, without `/` or NUL.
fn plain_name(name: &[u8]) -> Option<CString> {
    if matches!(name, b"" | b"." | b"..") || name.contains(&b'/') {
        return None;
    }
    CString::new(name).ok()
}

/// Where a metacopy file at `rel` has its data, relative to the lower dirs'
/// roots: `rel` itself, or what its `redirect` says in one of overlayfs' two
/// forms (a path from the overlay's root, or a name in the file's own
/// directory). Anything else is refused, with why: a NUL byte, a `.` or `..`
/// component, a relative redirect naming another directory, or no name.
fn metacopy_origin(
    rel: &[u8],
    redirect: Option<&[u8]>,
) -> std::result::Result<Vec<u8>, &'static str> {
    let Some(r) = redirect else {
        return Ok(rel.to_vec());
    };
    if r.contains(&0) {
        return Err("holds a NUL byte");
    }
    if r.is_empty() {
        return Err("names no file");
    }
    let origin = match r.strip_prefix(b"/") {
        Some(from_root) => from_root.to_vec(),
        None if r.contains(&b'/') => return Err("is relative but names another directory"),
        None => {
            let (parent, _) = split_last(rel);
            let mut p = parent.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(r);
            p
        }
    };
    let mut names = origin.split(|&b| b == b'/').filter(|c| !c.is_empty());
    if names.clone().any(|c| c == b"." || c == b"..") {
        return Err("has a . or .. component");
    }
    if names.next().is_none() {
        return Err("names no file");
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metacopy_redirects_stay_beneath_the_lower_dirs() {
        /// A file's path, its redirect, and where its data is.
        type Case<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);
        let ok: &[Case<'_>] = &[
            (b"usr/bin/tool", None, b"usr/bin/tool"),
            (b"usr/bin/renamed", Some(b"other"), b"usr/bin/other"),
            (b"top", Some(b"other"), b"other"),
            (b"srv/moved", Some(b"/usr/bin/moved"), b"usr/bin/moved"),
        ];
        for &(rel, redirect, want) in ok {
            assert_eq!(metacopy_origin(rel, redirect).as_deref(), Ok(want));
        }
        let refused: &[&[u8]] = &[
            b"../../../../etc/shadow",
            b"/../../etc/shadow",
            b"/usr/../../etc/shadow",
            b"..",
            b".",
            b"/usr/./bin",
            b"a/b",
            b"/",
            b"",
            b"na\0me",
            b"/etc/sha\0dow",
        ];
        for &r in refused {
            assert!(
                metacopy_origin(b"home/f", Some(r)).is_err(),
                "{}",
                String::from_utf8_lossy(r)
            );
        }
    }

    #[test]
    fn only_plain_names_are_looked_up() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(plain_name(bad).is_none(), "{bad:?}");
        }
        assert_eq!(plain_name(b"...").unwrap().as_bytes(), b"...");
    }
}
