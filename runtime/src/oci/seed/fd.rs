//! The fd-relative operations seeding is built on: opening beneath a
//! directory without following symlinks, listing, reopening a checked parent,
//! and emptying a tree at any depth.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Flags to open a directory for reading and for fd-relative work below it.
pub(super) const DIR: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY);

/// Removes everything below `root`, fd-relative, without following symlinks,
/// holding two directory fds at a time so that any depth works.
pub(super) fn empty_dir(root: &File) -> io::Result<()> {
    let mut dir = root.try_clone()?;
    // The directories we are inside of: each one's name and its parent's identity.
    let mut stack: Vec<(OsString, (u64, u64))> = Vec::new();
    'dir: loop {
        for name in list(&dir)? {
            match unlinkat(
                Some(dir.as_raw_fd()),
                name.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(Errno::EISDIR) => {
                    let child = open_child(&dir, &name, DIR, Mode::empty())?;
                    // A read-only directory cannot be emptied without CAP_DAC_OVERRIDE.
                    fchmod(child.as_raw_fd(), Mode::S_IRWXU)?;
                    stack.push((name, id(&fstat(dir.as_raw_fd())?)));
                    dir = child;
                    continue 'dir;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some((name, parent_id)) = stack.pop() else {
            return Ok(());
        };
        let parent = parent_of(&dir, parent_id)?;
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
pub(super) fn parent_of(dir: &File, want: (u64, u64)) -> nix::Result<File> {
    let resolve = ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    let parent = open2(dir, Path::new(".."), DIR, Mode::empty(), resolve)?;
    if id(&fstat(parent.as_raw_fd())?) != want {
        return Err(Errno::ESTALE);
    }
    Ok(parent)
}

/// The names in `dir` but `.` and `..`, sorted backwards so that popping them
/// copies in name order.
pub(super) fn list(dir: &File) -> nix::Result<Vec<OsString>> {
    let flags = DIR | OFlag::O_CLOEXEC;
    let mut stream = Dir::openat(Some(dir.as_raw_fd()), ".", flags, Mode::empty())?;
    let mut names = Vec::new();
    for entry in stream.iter() {
        let name = entry?.file_name().to_bytes().to_owned();
        if name != b"." && name != b".." {
            names.push(OsString::from(OsStr::from_bytes(&name)));
        }
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

pub(super) fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
        .open(path)
}

/// Opens `path` below `dir`; no symlink, `..` or magic link is followed.
pub(super) fn open_child(
    dir: &File,
    path: impl AsRef<Path>,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<File> {
    let resolve = ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    open2(dir, path.as_ref(), flags | OFlag::O_NOFOLLOW, mode, resolve)
}

#[allow(unsafe_code)]
pub(super) fn open2(
    dir: &File,
    path: &Path,
    flags: OFlag,
    mode: Mode,
    resolve: ResolveFlag,
) -> nix::Result<File> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(resolve);
    let fd = openat2(dir.as_raw_fd(), path, how)?;
    // SAFETY: `openat2` just returned this fd and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub(super) fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// What identifies an inode: (device, inode number).
pub(super) fn id(stat: &FileStat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}
