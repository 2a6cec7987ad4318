//! Opening files relative to directory fds, never by a path a second lookup
//! could resolve elsewhere.
//!
//! Names read from a tree are opened with `O_NOFOLLOW` from their directory's
//! fd; multi-component paths are resolved by the kernel beneath a directory
//! fd (`openat2` with `RESOLVE_BENEATH`); a regular file is read only through
//! [`open_verified`], which opens what was checked. Only a path the caller
//! itself gives ([`open_root`]) is resolved the ordinary way. This module
//! does not know what the files are for.

use std::ffi::CStr;
use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{FileStat, SFlag};
use rustix::fs::{openat, openat2, Mode, OFlags, RawDir, ResolveFlags, CWD};

use super::Errno;

type Result<T> = std::result::Result<T, Errno>;

/// A directory to list and to use as the base of `*at` calls; a symlink in
/// its place is refused (`ELOOP`).
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// How [`open_beneath`] resolves a path by default: inside the directory,
/// through no symlink at all, magic `/proc` links included.
pub const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// How [`open_in_root`] resolves a path: as if `dir` were `/` (an absolute
/// path or `..` stops at it), through no symlink at all, magic `/proc` links
/// included.
pub const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Opens a directory the caller named (a tree root, an output directory),
/// following symlinks as any path given on a command line is.
pub fn open_root(path: &Path) -> Result<OwnedFd> {
    openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a directory the caller named, following symlinks on the way to it
/// but refusing one in its place (`ENOTDIR`: with `O_NOFOLLOW` the kernel
/// sees the symlink itself, which is no directory).
pub fn open_root_nofollow(path: &Path) -> Result<OwnedFd> {
    openat(CWD, path, DIR_FLAGS, Mode::empty())
}

/// Opens the directory `name` in `dir`, not through a symlink.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd> {
    openat(dir, name, DIR_FLAGS, Mode::empty())
}

/// Opens `name` in `dir` for reading, not through a symlink and without
/// blocking on a FIFO. The caller checks what it got; [`open_verified`] does
/// that for files of an untrusted tree.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    openat(dir, name, flags, Mode::empty()).map(File::from)
}

/// Opens `path` beneath `dir` with `flags`, resolved by the kernel under
/// `resolve` (usually [`BENEATH`]): no `..`, absolute path or symlink takes it
/// outside `dir`. Fails with `EXDEV` when the path would leave `dir`, `ELOOP`
/// when it meets a symlink that `resolve` forbids.
pub fn open_beneath(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    resolve: ResolveFlags,
) -> Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match openat2(dir, path, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            // A rename or mount elsewhere raced the lookup: the kernel asks
            // for another try.
            Err(Errno::AGAIN) if tries < 8 => tries += 1,
            r => return r,
        }
    }
}

/// Opens `path` inside `dir` with `flags`, resolved by the kernel as if `dir`
/// were the root ([`IN_ROOT`]): a path taken from a container's own view
/// (absolute, or climbing with `..`) stays inside its root. Fails with
/// `ELOOP` when the path meets a symlink.
pub fn open_in_root(dir: BorrowedFd<'_>, path: &Path, flags: OFlags) -> Result<OwnedFd> {
    open_beneath(dir, path, flags, IN_ROOT)
}

/// The directory `path` beneath `dir`, open for listing and `*at` calls,
/// resolved with [`BENEATH`].
pub fn open_dir_beneath(dir: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd> {
    open_beneath(dir, path, OFlags::RDONLY | OFlags::DIRECTORY, BENEATH)
}

/// Opens the regular file `name` in `dir` for reading, if it is still the
/// inode `seen` (a stat of it taken earlier, by name): the name is opened
/// `O_PATH | O_NOFOLLOW`, which opens nothing (no FIFO blocks, no device
/// wakes), the fd is stat'ed and compared, and only then reopened for
/// reading through `/proc/self/fd`, which reaches that inode and no other.
///
/// Returns the file with its stat as of the open, or `None` when the name is
/// gone or no longer that regular file.
pub fn open_verified(
    dir: BorrowedFd<'_>,
    name: &CStr,
    seen: &FileStat,
) -> Result<Option<(File, FileStat)>> {
    let is_seen = |st: &FileStat| {
        (st.st_dev, st.st_ino) == (seen.st_dev, seen.st_ino)
            && st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
    };
    let path = match openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !is_seen(&stat(&path)?) {
        return Ok(None);
    }
    let again = proc_path(path.as_fd(), None);
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match openat(CWD, &again, flags | OFlags::NOATIME, Mode::empty()) {
        // O_NOATIME needs the file's owner or CAP_FOWNER.
        Err(Errno::PERM) => openat(CWD, &again, flags, Mode::empty()),
        r => r,
    }?;
    let file = File::from(fd);
    let now = stat(&file)?;
    if !is_seen(&now) {
        return Ok(None);
    }
    Ok(Some((file, now)))
}

/// `fstat` of an open fd.
pub fn stat(fd: impl AsFd) -> Result<FileStat> {
    nix::sys::stat::fstat(fd.as_fd().as_raw_fd()).map_err(from_nix)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry itself, a symlink
/// included.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<FileStat> {
    nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(from_nix)
}

/// The target of the symlink `name` in `dir`.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<Vec<u8>> {
    rustix::fs::readlinkat(dir, name, Vec::new()).map(|t| t.into_bytes())
}

/// The names in directory `dir` (read from its current position, which a
/// freshly opened fd has at the start), without `.` and `..`, in the order
/// the filesystem gives. A directory removed while open has none.
pub fn read_names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>> {
    let mut buf: Vec<MaybeUninit<u8>> = Vec::with_capacity(64 * 1024);
    buf.resize(buf.capacity(), MaybeUninit::uninit());
    let mut entries = RawDir::new(dir, &mut buf);
    let mut names = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = match entry {
            Ok(entry) => entry,
            // The directory was removed while open: it is empty now, and
            // POSIX has readdir treat this as its end (as glibc does).
            Err(Errno::NOENT) => break,
            Err(e) => return Err(e),
        };
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// `/proc/self/fd/N`, or `/proc/self/fd/N/name` for a name in directory `fd`:
/// the path through which the kernel reaches the open file itself.
pub fn proc_path(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> PathBuf {
    let mut p = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&p))
}

fn from_nix(e: nix::errno::Errno) -> Errno {
    Errno::from_raw_os_error(e as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn c(s: &str) -> std::ffi::CString {
        std::ffi::CString::new(s).unwrap()
    }

    #[test]
    fn a_verified_open_reads_the_inode_that_was_seen_and_no_other() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"first").unwrap();
        let dir = open_root(t.path()).unwrap();
        let seen = stat_at(dir.as_fd(), &c("f")).unwrap();
        let (mut f, st) = open_verified(dir.as_fd(), &c("f"), &seen).unwrap().unwrap();
        assert_eq!(st.st_ino, seen.st_ino);
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "first");

        // Replaced by another file, or by a symlink to one: not opened.
        std::fs::remove_file(t.path().join("f")).unwrap();
        std::fs::write(t.path().join("other"), b"other").unwrap();
        std::fs::write(t.path().join("f"), b"second").unwrap();
        assert!(open_verified(dir.as_fd(), &c("f"), &seen)
            .unwrap()
            .is_none());
        std::fs::remove_file(t.path().join("f")).unwrap();
        symlink(t.path().join("other"), t.path().join("f")).unwrap();
        assert!(open_verified(dir.as_fd(), &c("f"), &seen)
            .unwrap()
            .is_none());
        std::fs::remove_file(t.path().join("f")).unwrap();
        assert!(open_verified(dir.as_fd(), &c("f"), &seen)
            .unwrap()
            .is_none());
    }

    #[test]
    fn paths_beneath_a_directory_stay_beneath_it() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        symlink(outside.path(), t.path().join("out")).unwrap();
        symlink("b", t.path().join("a/inner")).unwrap();
        let dir = open_root(t.path()).unwrap();
        assert!(open_dir_beneath(dir.as_fd(), Path::new("a/b")).is_ok());
        assert_eq!(
            open_dir_beneath(dir.as_fd(), Path::new("../x")).unwrap_err(),
            Errno::XDEV
        );
        assert_eq!(
            open_dir_beneath(dir.as_fd(), Path::new("/etc")).unwrap_err(),
            Errno::XDEV
        );
        assert_eq!(
            open_dir_beneath(dir.as_fd(), Path::new("out")).unwrap_err(),
            Errno::LOOP
        );
        assert_eq!(
            open_dir_beneath(dir.as_fd(), Path::new("a/inner")).unwrap_err(),
            Errno::LOOP
        );
        // A symlink that stays inside is allowed when the caller says so.
        let lenient = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        assert!(open_beneath(
            dir.as_fd(),
            Path::new("a/inner"),
            OFlags::PATH | OFlags::DIRECTORY,
            lenient
        )
        .is_ok());
    }

    #[test]
    fn paths_in_a_root_stay_in_it() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        symlink("b", t.path().join("a/inner")).unwrap();
        let dir = open_root(t.path()).unwrap();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        let st = |fd: &OwnedFd| {
            let st = stat(fd).unwrap();
            (st.st_dev, st.st_ino)
        };
        let b = st(&open_dir_beneath(dir.as_fd(), Path::new("a/b")).unwrap());
        // Absolute paths and `..` stop at the root, as they do in a container.
        for path in ["/a/b", "a/b", "../../a/b", "/../a/./b"] {
            let fd = open_in_root(dir.as_fd(), Path::new(path), flags).unwrap();
            assert_eq!(st(&fd), b, "{path}");
        }
        assert_eq!(
            open_in_root(dir.as_fd(), Path::new("/a/inner"), flags).unwrap_err(),
            Errno::LOOP
        );
        assert_eq!(
            open_in_root(dir.as_fd(), Path::new("/missing"), flags).unwrap_err(),
            Errno::NOENT
        );
    }

    #[test]
    fn a_symlink_named_as_a_root_is_refused_when_asked() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        symlink("d", t.path().join("l")).unwrap();
        assert!(open_root_nofollow(&t.path().join("d")).is_ok());
        assert!(open_root(&t.path().join("l")).is_ok());
        assert_eq!(
            open_root_nofollow(&t.path().join("l")).unwrap_err(),
            Errno::NOTDIR
        );
    }

    #[test]
    fn a_directory_removed_while_open_lists_as_empty() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        let dir = open_root(&t.path().join("d")).unwrap();
        std::fs::remove_dir(t.path().join("d")).unwrap();
        assert_eq!(read_names(dir.as_fd()).unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn names_are_listed_without_dot_entries() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..3000 {
            std::fs::write(t.path().join(format!("file-with-a-longish-name-{i}")), b"").unwrap();
        }
        let dir = open_root(t.path()).unwrap();
        let mut names = read_names(dir.as_fd()).unwrap();
        names.sort();
        assert_eq!(names.len(), 3000);
        assert!(names.iter().all(|n| n.starts_with(b"file-")));
    }
}
