//! The copy itself: a depth-first walk that holds only the current source and
//! destination directories open, keeps owners, modes but setuid and setgid,
//! times, hard links and the extended attributes that may land on the host
//! ([`HOST_XATTRS`]), and leaves device nodes out.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use freezeframe_snapshot::fs::links::LinkTracker;
use freezeframe_snapshot::fs::open::{read_link_at, stat, stat_at};
use freezeframe_snapshot::fs::xattr::{self, HOST_XATTRS};
use freezeframe_snapshot::fs::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{
    fchmod, fchmodat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, FileStat, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use rustix::fs::OFlags;

use super::fd::{create_child, id, kind, list, open_child, parent_of, DIR};
use super::{LeftOut, SeedError};

/// A directory being copied: what is left of it, and what it was.
struct Frame {
    /// Names still to copy, last one first.
    names: Vec<OsString>,
    /// The source directory's metadata, applied to the copy once it is full.
    stat: FileStat,
    /// The copy's identity, checked when coming back up to it.
    dst_id: (u64, u64),
}

#[derive(Clone, Copy)]
pub(super) enum Side {
    Image,
    Host,
}

/// The state of one copy. Only the current source and destination directories
/// are open at any time; ancestors are reopened through `..` (and checked to
/// be the same directory) when going back up, so depth costs memory, not fds
/// or stack.
pub(super) struct Copier<'a> {
    pub(super) image: &'a Path,
    pub(super) scratch: &'a Path,
    pub(super) scratch_dir: BorrowedFd<'a>,
    /// The entry being copied, relative to both roots.
    pub(super) rel: PathBuf,
    /// First copy of each multiply-linked source inode, relative to `scratch`.
    pub(super) links: LinkTracker<PathBuf>,
    pub(super) entries: u64,
    pub(super) bytes: u64,
    /// Device nodes of the image, never created on the host.
    pub(super) devices: LeftOut,
}

impl Copier<'_> {
    pub(super) fn run(
        &mut self,
        mut src: OwnedFd,
        stat: FileStat,
        names: Vec<OsString>,
        mut dst: OwnedFd,
    ) -> Result<(), SeedError> {
        let root = Frame {
            names,
            stat,
            dst_id: id(&self::stat(&dst).map_err(self.err(Side::Host, "stat"))?),
        };
        let mut stack = vec![root];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.pop() else {
                let done = stack.pop().expect("the loop saw a frame");
                let Some(parent) = stack.last() else {
                    // The scratch directory itself keeps the owner, mode,
                    // attributes and times the platform gave it.
                    return Ok(());
                };
                // Every child is in place: now the directory may become read-only.
                self.apply(Node::Open(src.as_fd()), Node::Open(dst.as_fd()), &done.stat)?;
                src = self.up(Side::Image, src.as_fd(), id(&parent.stat))?;
                dst = self.up(Side::Host, dst.as_fd(), parent.dst_id)?;
                self.rel.pop();
                continue;
            };
            self.rel.push(&name);
            let stat = stat_at(src.as_fd(), &self.c_name(&name)?)
                .map_err(self.err(Side::Image, "stat"))?;
            if kind(&stat) == SFlag::S_IFDIR {
                let (child_src, child_dst, frame) =
                    self.enter(src.as_fd(), dst.as_fd(), &name, stat)?;
                stack.push(frame);
                (src, dst) = (child_src, child_dst);
            } else {
                self.copy_entry(src.as_fd(), dst.as_fd(), &name, &stat)?;
                self.rel.pop();
            }
        }
        Ok(())
    }

    /// Creates the copy of directory `name` (writable by us until it is full)
    /// and opens both sides.
    fn enter(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        stat: FileStat,
    ) -> Result<(OwnedFd, OwnedFd, Frame), SeedError> {
        let child_src = open_child(src, name, DIR).map_err(self.err(Side::Image, "open"))?;
        self.check_same(&child_src, &stat)?;
        let names = list(child_src.as_fd()).map_err(self.err(Side::Image, "read"))?;
        mkdirat(Some(dst.as_raw_fd()), name, Mode::S_IRWXU)
            .map_err(self.err(Side::Host, "create"))?;
        self.entries += 1;
        let child_dst = open_child(dst, name, DIR).map_err(self.err(Side::Host, "open"))?;
        let dst_stat = self::stat(&child_dst).map_err(self.err(Side::Host, "stat"))?;
        let frame = Frame {
            names,
            stat,
            dst_id: id(&dst_stat),
        };
        Ok((child_src, child_dst, frame))
    }

    /// Goes back up from `dir` to the directory we came from.
    fn up(&self, side: Side, dir: BorrowedFd<'_>, want: (u64, u64)) -> Result<OwnedFd, SeedError> {
        match parent_of(dir, want) {
            Err(Errno::STALE) => Err(SeedError::Changed {
                path: self.path(side),
            }),
            other => other.map_err(self.err(side, "open the parent of")),
        }
    }

    /// Copies one non-directory: a file, symlink or FIFO, or a hard link to an
    /// earlier copy. Device nodes are counted and left out: one on the host
    /// would open the host's device to whoever may open the node.
    fn copy_entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        stat: &FileStat,
    ) -> Result<(), SeedError> {
        let kind = kind(stat);
        if matches!(kind, SFlag::S_IFCHR | SFlag::S_IFBLK) {
            let path = self.path(Side::Image);
            tracing::debug!(path = %path.display(), rdev = stat.st_rdev, "device node not copied");
            self.devices.add(|| path);
            return Ok(());
        }
        if !matches!(kind, SFlag::S_IFREG | SFlag::S_IFLNK | SFlag::S_IFIFO) {
            // Sockets mean nothing without the process that listened on them.
            let path = self.path(Side::Image);
            tracing::debug!(path = %path.display(), mode = stat.st_mode, "not copied");
            return Ok(());
        }
        let rel = &self.rel;
        if let Some(first) = self.links.seen(stat, || rel.clone()).cloned() {
            self.link(&first, dst, name)?;
            self.entries += 1;
            return Ok(());
        }
        let (src_at, dst_at) = (Node::At(src, name), Node::At(dst, name));
        match kind {
            SFlag::S_IFREG => self.copy_file(src, dst, name, stat)?,
            SFlag::S_IFLNK => {
                // The link's text is copied as it is; what it points to is never read.
                let target = read_link_at(src, &self.c_name(name)?)
                    .map_err(self.err(Side::Image, "read the link"))?;
                symlinkat(OsStr::from_bytes(&target), Some(dst.as_raw_fd()), name)
                    .map_err(self.err(Side::Host, "create"))?;
                self.apply(src_at, dst_at, stat)?;
            }
            _ => {
                // A FIFO, the one kind left.
                let mode = Mode::S_IRUSR | Mode::S_IWUSR;
                mknodat(Some(dst.as_raw_fd()), name, SFlag::S_IFIFO, mode, 0)
                    .map_err(self.err(Side::Host, "create"))?;
                self.apply(src_at, dst_at, stat)?;
            }
        }
        self.entries += 1;
        Ok(())
    }

    fn copy_file(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        stat: &FileStat,
    ) -> Result<(), SeedError> {
        // O_NONBLOCK and O_NOCTTY: if `name` was swapped for a FIFO or a tty
        // since the stat, opening it neither hangs nor takes a terminal.
        let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK;
        let mut from =
            File::from(open_child(src, name, flags).map_err(self.err(Side::Image, "open"))?);
        self.check_same(&from, stat)?;
        let mut to = File::from(create_child(dst, name).map_err(self.err(Side::Host, "create"))?);
        // For two files, `io::copy` uses copy_file_range, falling back to
        // sendfile and then read/write where the kernel refuses (EXDEV, EINVAL,
        // ENOSYS, EOPNOTSUPP...).
        self.bytes += io::copy(&mut from, &mut to).map_err(|source| SeedError::Copy {
            from: self.path(Side::Image),
            to: self.path(Side::Host),
            source,
        })?;
        self.apply(Node::Open(from.as_fd()), Node::Open(to.as_fd()), stat)
    }

    /// Makes `name` in `dst` a hard link to `first`, an earlier copy.
    fn link(&self, first: &Path, dst: BorrowedFd<'_>, name: &OsStr) -> Result<(), SeedError> {
        let first_dir = first.parent().filter(|p| !p.as_os_str().is_empty());
        let first_dir = first_dir.unwrap_or(Path::new("."));
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let dir = open_child(self.scratch_dir, first_dir, flags).map_err(|e| SeedError::Host {
            op: "open",
            path: self.scratch.join(first_dir),
            source: e.into(),
        })?;
        let first_name = first.file_name().unwrap_or_default();
        let (old, new) = (Some(dir.as_raw_fd()), Some(dst.as_raw_fd()));
        linkat(old, first_name, new, name, AtFlags::empty())
            .map_err(self.err(Side::Host, "create the hard link"))
    }

    /// Gives `dst` the owner, extended attributes, mode (without setuid and
    /// setgid) and times of `src`, in that order: each later step would move
    /// the times.
    fn apply(&self, src: Node, dst: Node, stat: &FileStat) -> Result<(), SeedError> {
        dst.chown(stat)
            .map_err(self.err(Side::Host, "change the owner of"))?;
        let attrs = src
            .xattrs()
            .map_err(self.err(Side::Image, "read the extended attributes of"))?;
        for (name, value) in &attrs {
            dst.set_xattr(name, value)
                .map_err(|source| SeedError::Xattr {
                    name: String::from_utf8_lossy(name).into_owned(),
                    path: self.path(Side::Host),
                    source,
                })?;
        }
        if kind(stat) != SFlag::S_IFLNK {
            dst.chmod(stat)
                .map_err(self.err(Side::Host, "change the mode of"))?;
        }
        dst.set_times(stat)
            .map_err(self.err(Side::Host, "set the times of"))
    }

    /// Checks that what was opened is what was stat'ed, not a swapped-in entry.
    fn check_same(&self, file: impl AsFd, stat: &FileStat) -> Result<(), SeedError> {
        let now = self::stat(file).map_err(self.err(Side::Image, "stat"))?;
        if kind(&now) != kind(stat) || id(&now) != id(stat) {
            return Err(SeedError::Changed {
                path: self.path(Side::Image),
            });
        }
        Ok(())
    }

    /// `name` of the current entry as the C string the toolkit's `*at` calls
    /// take (a name read from a directory never holds a NUL byte).
    fn c_name(&self, name: &OsStr) -> Result<CString, SeedError> {
        CString::new(name.as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            .map_err(self.err(Side::Image, "stat"))
    }

    /// The current entry's path on one side, for messages.
    fn path(&self, side: Side) -> PathBuf {
        match side {
            Side::Image => self.image.join(&self.rel),
            Side::Host => self.scratch.join(&self.rel),
        }
    }

    pub(super) fn err<E: Into<io::Error>>(
        &self,
        side: Side,
        op: &'static str,
    ) -> impl FnOnce(E) -> SeedError + '_ {
        move |e| {
            let (path, source) = (self.path(side), e.into());
            match side {
                Side::Image => SeedError::Image { op, path, source },
                Side::Host => SeedError::Host { op, path, source },
            }
        }
    }
}

/// An entry whose metadata is read or set: an open file or directory, or a
/// name in an open directory (symlinks and special files, never opened).
#[derive(Clone, Copy)]
enum Node<'a> {
    Open(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a OsStr),
}

impl Node<'_> {
    fn chown(self, stat: &FileStat) -> nix::Result<()> {
        let (uid, gid) = (
            Some(Uid::from_raw(stat.st_uid)),
            Some(Gid::from_raw(stat.st_gid)),
        );
        match self {
            Node::Open(file) => fchown(file.as_raw_fd(), uid, gid),
            Node::At(dir, name) => fchownat(
                Some(dir.as_raw_fd()),
                name,
                uid,
                gid,
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ),
        }
    }

    /// Sets the mode of `stat` but its setuid and setgid bits (the sticky bit
    /// stays): on the host they would run a program as the image chose, or
    /// pass a group on to new files.
    fn chmod(self, stat: &FileStat) -> nix::Result<()> {
        let mode =
            Mode::from_bits_truncate(stat.st_mode & 0o7777) - (Mode::S_ISUID | Mode::S_ISGID);
        match self {
            Node::Open(file) => fchmod(file.as_raw_fd(), mode),
            Node::At(dir, name) => fchmodat(
                Some(dir.as_raw_fd()),
                name,
                mode,
                FchmodatFlags::NoFollowSymlink,
            ),
        }
    }

    fn set_times(self, stat: &FileStat) -> nix::Result<()> {
        let atime = TimeSpec::new(stat.st_atime, stat.st_atime_nsec);
        let mtime = TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec);
        match self {
            Node::Open(file) => futimens(file.as_raw_fd(), &atime, &mtime),
            Node::At(dir, name) => utimensat(
                Some(dir.as_raw_fd()),
                name,
                &atime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            ),
        }
    }

    /// The extended attributes that may land on the host with the entry,
    /// through its fd or its directory's, never following it.
    fn xattrs(self) -> io::Result<xattr::Xattrs> {
        match self {
            Node::Open(file) => xattr::list(file, &HOST_XATTRS),
            Node::At(dir, name) => xattr::list_at(dir, name.as_bytes(), &HOST_XATTRS),
        }
    }

    fn set_xattr(self, attr: &[u8], value: &[u8]) -> io::Result<()> {
        match self {
            Node::Open(file) => xattr::set(file, attr, value),
            Node::At(dir, name) => xattr::set_at(dir, name.as_bytes(), attr, value),
        }
    }
}
