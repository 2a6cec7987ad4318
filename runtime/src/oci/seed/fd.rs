//! What seeding adds to the fd-relative toolkit
//! ([`freezeframe_snapshot::fs`]): listing a directory in copy order,
//! reopening a checked parent, and emptying a tree at any depth.

use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use freezeframe_snapshot::fs::open::{open_beneath, open_dir_at, read_names, stat, BENEATH};
use freezeframe_snapshot::fs::Errno;
use nix::sys::stat::{fchmod, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use rustix::fs::{OFlags, ResolveFlags};

/// Flags to open a directory for reading and for fd-relative work below it.
pub(super) const DIR: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY);

/// Removes everything below `root`, fd-relative, without following symlinks,
/// holding two directory fds at a time so that any depth works.
pub(super) fn empty_dir(root: BorrowedFd<'_>) -> io::Result<()> {
    let mut dir = root.try_clone_to_owned()?;
    // The directories we are inside of: each one's name and its parent's identity.
    let mut stack: Vec<(OsString, (u64, u64))> = Vec::new();
    'dir: loop {
        for name in list(dir.as_fd())? {
            match unlinkat(
                Some(dir.as_raw_fd()),
                name.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(nix::errno::Errno::EISDIR) => {
                    let child = open_child(dir.as_fd(), &name, DIR)?;
                    // A read-only directory cannot be emptied without CAP_DAC_OVERRIDE.
                    fchmod(child.as_raw_fd(), Mode::S_IRWXU)?;
                    stack.push((name, id(&stat(&dir)?)));
                    dir = child;
                    continue 'dir;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some((name, parent_id)) = stack.pop() else {
            return Ok(());
        };
        let parent = parent_of(dir.as_fd(), parent_id)?;
        unlinkat(
            Some(parent.as_raw_fd()),
            name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        )?;
        dir = parent;
    }
}

/// Reopens the parent of `dir`, which must be `want` (device, inode): ESTALE
/// if it is not, as when something moved `dir` meanwhile.
pub(super) fn parent_of(dir: BorrowedFd<'_>, want: (u64, u64)) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let parent = open_beneath(dir, Path::new(".."), DIR, resolve)?;
    if id(&stat(&parent)?) != want {
        return Err(Errno::STALE);
    }
    Ok(parent)
}

/// The names in `dir` but `.` and `..`, sorted backwards so that popping them
/// copies in name order. `dir` is listed through a fd of its own, so that its
/// offset, shared with any duplicate, is never moved.
pub(super) fn list(dir: BorrowedFd<'_>) -> Result<Vec<OsString>, Errno> {
    const DOT: &CStr = c".";
    let again = open_dir_at(dir, DOT)?;
    let mut names: Vec<OsString> = read_names(again.as_fd())?
        .into_iter()
        .map(OsString::from_vec)
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// Opens `path` below `dir`; no symlink, `..` or magic link is followed.
pub(super) fn open_child(
    dir: BorrowedFd<'_>,
    path: impl AsRef<Path>,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    open_beneath(dir, path.as_ref(), flags | OFlags::NOFOLLOW, BENEATH)
}

/// Creates the regular file `name` in `dir`, which must not exist, for
/// writing, readable and writable by its owner only.
pub(super) fn create_child(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
    let mode = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::openat(dir, name.as_bytes(), flags | OFlags::CLOEXEC, mode)
}

pub(super) fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// What identifies an inode: (device, inode number).
pub(super) fn id(stat: &FileStat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}
