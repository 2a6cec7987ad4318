//! Home seeding: a container's home is a fresh host directory bind-mounted over
//! the image's home path, which hides what the image put there. Before the
//! container starts, the image's home is copied into that directory if it is
//! empty, the way Docker copies an image's content up into a new named volume.
//!
//! The image is untrusted. Every step is relative to an open directory, no
//! symlink is ever followed on either side, and a failed copy is removed again.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use xattr::FileExt;

/// What seeding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeded {
    /// The image's content was copied: how many entries and file bytes.
    Copied { entries: u64, bytes: u64 },
    /// The scratch directory already holds something; it was left as it is.
    NotEmpty,
    /// The image has nothing at that path (missing, or an empty directory).
    NoSource,
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
/// `scratch` if `scratch` is empty, keeping owners, modes, times, extended
/// attributes and hard links. `scratch` itself takes the owner, mode and
/// extended attributes of the image's directory, so the session user can
/// write to it. Never follows a symlink; on error `scratch` is emptied again.
pub fn seed(rootfs: &Path, path_in_container: &Path, scratch: &Path) -> Result<Seeded, SeedError> {
    let scratch_dir = open_dir(scratch).map_err(|source| SeedError::Host {
        op: "open",
        path: scratch.to_owned(),
        source,
    })?;
    let mut copier = Copier {
        image: path_in_container,
        scratch,
        scratch_dir: &scratch_dir,
        rel: PathBuf::new(),
        links: HashMap::new(),
        entries: 0,
        bytes: 0,
    };
    if !list(&scratch_dir)
        .map_err(copier.err(Side::Host, "read"))?
        .is_empty()
    {
        return Ok(Seeded::NotEmpty);
    }
    let Some(home) = open_home(rootfs, path_in_container)? else {
        return Ok(Seeded::NoSource);
    };
    // Before listing it, which may move its atime.
    let stat = fstat(home.as_raw_fd()).map_err(copier.err(Side::Image, "stat"))?;
    let names = list(&home).map_err(copier.err(Side::Image, "read"))?;
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
        }),
        Err(cause) => match empty_dir(&scratch_dir) {
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
fn open_home(rootfs: &Path, home: &Path) -> Result<Option<File>, SeedError> {
    let rel = relative(home).ok_or_else(|| SeedError::BadPath {
        path: home.to_owned(),
    })?;
    let root = open_dir(rootfs).map_err(|source| SeedError::Host {
        op: "open",
        path: rootfs.to_owned(),
        source,
    })?;
    let resolve = ResolveFlag::RESOLVE_IN_ROOT
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    match open2(&root, &rel, DIR, Mode::empty(), resolve) {
        Ok(dir) => Ok(Some(dir)),
        Err(Errno::ENOENT) => Ok(None),
        // RESOLVE_NO_SYMLINKS reports any symlink on the way as ELOOP.
        Err(Errno::ELOOP) => Err(SeedError::Symlink {
            path: home.to_owned(),
        }),
        Err(Errno::ENOTDIR) => Err(SeedError::NotADirectory {
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

/// Flags to open a directory for reading and for fd-relative work below it.
const DIR: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY);

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
enum Side {
    Image,
    Host,
}

/// The state of one copy. Only the current source and destination directories
/// are open at any time; ancestors are reopened through `..` (and checked to
/// be the same directory) when going back up, so depth costs memory, not fds
/// or stack.
struct Copier<'a> {
    image: &'a Path,
    scratch: &'a Path,
    scratch_dir: &'a File,
    /// The entry being copied, relative to both roots.
    rel: PathBuf,
    /// First copy of each multiply-linked source inode, relative to `scratch`.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
    bytes: u64,
}

impl Copier<'_> {
    fn run(
        &mut self,
        mut src: File,
        stat: FileStat,
        names: Vec<OsString>,
        mut dst: File,
    ) -> Result<(), SeedError> {
        let root = Frame {
            names,
            stat,
            dst_id: id(&fstat(dst.as_raw_fd()).map_err(self.err(Side::Host, "stat"))?),
        };
        let mut stack = vec![root];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.pop() else {
                // Every child is in place: now the directory may become read-only.
                let done = stack.pop().expect("the loop saw a frame");
                self.apply(Node::Open(&src), Node::Open(&dst), &done.stat)?;
                let Some(parent) = stack.last() else {
                    return Ok(());
                };
                src = self.up(Side::Image, &src, id(&parent.stat))?;
                dst = self.up(Side::Host, &dst, parent.dst_id)?;
                self.rel.pop();
                continue;
            };
            self.rel.push(&name);
            let stat = fstatat(
                Some(src.as_raw_fd()),
                name.as_os_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(self.err(Side::Image, "stat"))?;
            if kind(&stat) == SFlag::S_IFDIR {
                let (child_src, child_dst, frame) = self.enter(&src, &dst, &name, stat)?;
                stack.push(frame);
                (src, dst) = (child_src, child_dst);
            } else {
                self.copy_entry(&src, &dst, &name, &stat)?;
                self.rel.pop();
            }
        }
        Ok(())
    }

    /// Creates the copy of directory `name` (writable by us until it is full)
    /// and opens both sides.
    fn enter(
        &mut self,
        src: &File,
        dst: &File,
        name: &OsStr,
        stat: FileStat,
    ) -> Result<(File, File, Frame), SeedError> {
        let child_src =
            open_child(src, name, DIR, Mode::empty()).map_err(self.err(Side::Image, "open"))?;
        self.check_same(&child_src, &stat)?;
        let names = list(&child_src).map_err(self.err(Side::Image, "read"))?;
        mkdirat(Some(dst.as_raw_fd()), name, Mode::S_IRWXU)
            .map_err(self.err(Side::Host, "create"))?;
        self.entries += 1;
        let child_dst =
            open_child(dst, name, DIR, Mode::empty()).map_err(self.err(Side::Host, "open"))?;
        let dst_stat = fstat(child_dst.as_raw_fd()).map_err(self.err(Side::Host, "stat"))?;
        let frame = Frame {
            names,
            stat,
            dst_id: id(&dst_stat),
        };
        Ok((child_src, child_dst, frame))
    }

    /// Goes back up from `dir` to the directory we came from.
    fn up(&self, side: Side, dir: &File, want: (u64, u64)) -> Result<File, SeedError> {
        match parent_of(dir, want) {
            Err(Errno::ESTALE) => Err(SeedError::Changed {
                path: self.path(side),
            }),
            other => other.map_err(self.err(side, "open the parent of")),
        }
    }

    /// Copies one non-directory: a file, symlink, FIFO or device node, or a hard
    /// link to an earlier copy.
    fn copy_entry(
        &mut self,
        src: &File,
        dst: &File,
        name: &OsStr,
        stat: &FileStat,
    ) -> Result<(), SeedError> {
        let key = id(stat);
        if stat.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                self.link(first, dst, name)?;
                self.entries += 1;
                return Ok(());
            }
        }
        let (src_at, dst_at) = (Node::At(src, name), Node::At(dst, name));
        match kind(stat) {
            SFlag::S_IFREG => self.copy_file(src, dst, name, stat)?,
            SFlag::S_IFLNK => {
                // The link's text is copied as it is; what it points to is never read.
                let target = readlinkat(Some(src.as_raw_fd()), name)
                    .map_err(self.err(Side::Image, "read the link"))?;
                symlinkat(target.as_os_str(), Some(dst.as_raw_fd()), name)
                    .map_err(self.err(Side::Host, "create"))?;
                self.apply(src_at, dst_at, stat)?;
            }
            kind @ (SFlag::S_IFIFO | SFlag::S_IFCHR | SFlag::S_IFBLK) => {
                let mode = Mode::S_IRUSR | Mode::S_IWUSR;
                mknodat(Some(dst.as_raw_fd()), name, kind, mode, stat.st_rdev)
                    .map_err(self.err(Side::Host, "create"))?;
                self.apply(src_at, dst_at, stat)?;
            }
            // Sockets mean nothing without the process that listened on them.
            _ => {
                let path = self.path(Side::Image);
                tracing::debug!(path = %path.display(), mode = stat.st_mode, "not copied");
                return Ok(());
            }
        }
        self.entries += 1;
        if stat.st_nlink > 1 {
            self.links.insert(key, self.rel.clone());
        }
        Ok(())
    }

    fn copy_file(
        &mut self,
        src: &File,
        dst: &File,
        name: &OsStr,
        stat: &FileStat,
    ) -> Result<(), SeedError> {
        // O_NONBLOCK and O_NOCTTY: if `name` was swapped for a FIFO or a tty
        // since the stat, opening it neither hangs nor takes a terminal.
        let flags = OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        let mut from =
            open_child(src, name, flags, Mode::empty()).map_err(self.err(Side::Image, "open"))?;
        self.check_same(&from, stat)?;
        let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
        let mut to = open_child(dst, name, create, Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(self.err(Side::Host, "create"))?;
        // For two files, `io::copy` uses copy_file_range, falling back to
        // sendfile and then read/write where the kernel refuses (EXDEV, EINVAL,
        // ENOSYS, EOPNOTSUPP...).
        self.bytes += io::copy(&mut from, &mut to).map_err(|source| SeedError::Copy {
            from: self.path(Side::Image),
            to: self.path(Side::Host),
            source,
        })?;
        self.apply(Node::Open(&from), Node::Open(&to), stat)
    }

    /// Makes `name` in `dst` a hard link to `first`, an earlier copy.
    fn link(&self, first: &Path, dst: &File, name: &OsStr) -> Result<(), SeedError> {
        let first_dir = first.parent().filter(|p| !p.as_os_str().is_empty());
        let first_dir = first_dir.unwrap_or(Path::new("."));
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let dir = open_child(self.scratch_dir, first_dir, flags, Mode::empty()).map_err(|e| {
            SeedError::Host {
                op: "open",
                path: self.scratch.join(first_dir),
                source: e.into(),
            }
        })?;
        let first_name = first.file_name().unwrap_or_default();
        let (old, new) = (Some(dir.as_raw_fd()), Some(dst.as_raw_fd()));
        linkat(old, first_name, new, name, AtFlags::empty())
            .map_err(self.err(Side::Host, "create the hard link"))
    }

    /// Gives `dst` the owner, extended attributes, mode and times of `src`, in
    /// that order: chown clears setuid/setgid bits and file capabilities, and
    /// each later step would move the times.
    fn apply(&self, src: Node, dst: Node, stat: &FileStat) -> Result<(), SeedError> {
        dst.chown(stat)
            .map_err(self.err(Side::Host, "change the owner of"))?;
        let names = src
            .xattrs()
            .map_err(self.err(Side::Image, "list the extended attributes of"))?;
        for name in names.iter().filter(|n| copy_xattr(n)) {
            let Some(value) = src
                .xattr(name)
                .map_err(self.err(Side::Image, "read the extended attributes of"))?
            else {
                continue;
            };
            dst.set_xattr(name, &value)
                .map_err(|source| SeedError::Xattr {
                    name: name.to_string_lossy().into_owned(),
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
    fn check_same(&self, file: &File, stat: &FileStat) -> Result<(), SeedError> {
        let now = fstat(file.as_raw_fd()).map_err(self.err(Side::Image, "stat"))?;
        if kind(&now) != kind(stat) || id(&now) != id(stat) {
            return Err(SeedError::Changed {
                path: self.path(Side::Image),
            });
        }
        Ok(())
    }

    /// The current entry's path on one side, for messages.
    fn path(&self, side: Side) -> PathBuf {
        match side {
            Side::Image => self.image.join(&self.rel),
            Side::Host => self.scratch.join(&self.rel),
        }
    }

    fn err<E: Into<io::Error>>(
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

/// Whether an extended attribute travels with the copy. Overlayfs bookkeeping
/// (opaque dirs, whiteouts, redirects) would change what the copy means if it
/// ever became a layer; an SELinux label belongs to the host's policy, which
/// labels the mount.
fn copy_xattr(name: &OsStr) -> bool {
    let name = name.as_bytes();
    !(name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name == b"security.selinux")
}

/// An entry whose metadata is read or set: an open file or directory, or a
/// name in an open directory (symlinks and special files, never opened).
#[derive(Clone, Copy)]
enum Node<'a> {
    Open(&'a File),
    At(&'a File, &'a OsStr),
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

    fn chmod(self, stat: &FileStat) -> nix::Result<()> {
        let mode = Mode::from_bits_truncate(stat.st_mode & 0o7777);
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

    fn xattrs(self) -> io::Result<Vec<OsString>> {
        Ok(match self {
            Node::Open(file) => file.list_xattr()?.collect(),
            Node::At(dir, name) => xattr::list(proc_path(dir, name))?.collect(),
        })
    }

    fn xattr(self, attr: &OsStr) -> io::Result<Option<Vec<u8>>> {
        match self {
            Node::Open(file) => file.get_xattr(attr),
            Node::At(dir, name) => xattr::get(proc_path(dir, name), attr),
        }
    }

    fn set_xattr(self, attr: &OsStr, value: &[u8]) -> io::Result<()> {
        match self {
            Node::Open(file) => file.set_xattr(attr, value),
            Node::At(dir, name) => xattr::set(proc_path(dir, name), attr, value),
        }
    }
}

/// `name` in `dir` as a path for the l*xattr calls: the directory is reached
/// through its fd, and `name` itself is not followed.
fn proc_path(dir: &File, name: &OsStr) -> PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
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
    let dir = open_dir(scratch).map_err(|e| host("open", e))?;
    empty_dir(&dir).map_err(|e| host("empty", e))
}

/// Removes everything below `root`, fd-relative, without following symlinks,
/// holding two directory fds at a time so that any depth works.
fn empty_dir(root: &File) -> io::Result<()> {
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
fn parent_of(dir: &File, want: (u64, u64)) -> nix::Result<File> {
    let resolve = ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    let parent = open2(dir, Path::new(".."), DIR, Mode::empty(), resolve)?;
    if id(&fstat(parent.as_raw_fd())?) != want {
        return Err(Errno::ESTALE);
    }
    Ok(parent)
}

/// The names in `dir` but `.` and `..`, sorted backwards so that popping them
/// copies in name order.
fn list(dir: &File) -> nix::Result<Vec<OsString>> {
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

fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
        .open(path)
}

/// Opens `path` below `dir`; no symlink, `..` or magic link is followed.
fn open_child(dir: &File, path: impl AsRef<Path>, flags: OFlag, mode: Mode) -> nix::Result<File> {
    let resolve = ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    open2(dir, path.as_ref(), flags | OFlag::O_NOFOLLOW, mode, resolve)
}

#[allow(unsafe_code)]
fn open2(
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

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// What identifies an inode: (device, inode number).
fn id(stat: &FileStat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::os::unix::net::UnixListener;

    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sys::stat::{makedev, mknod};
    use nix::unistd::{geteuid, mkfifo};
    use tempfile::TempDir;

    use super::*;

    const HOME: &str = "/home/work";

    /// Whether the test may run: these tests chown, mknod and mount.
    fn root(test: &str) -> bool {
        if geteuid().is_root() {
            return true;
        }
        if std::env::var_os("CI").is_some() {
            panic!("{test} needs root, and CI runs as root");
        }
        eprintln!("skipping {test}: needs root");
        false
    }

    /// An image rootfs with an empty home at `/home/work`, and an empty scratch dir.
    struct Fixture {
        tmp: TempDir,
        rootfs: PathBuf,
        home: PathBuf,
        scratch: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let rootfs = tmp.path().join("rootfs");
            let home = rootfs.join("home/work");
            let scratch = tmp.path().join("scratch");
            fs::create_dir_all(&home).unwrap();
            fs::create_dir(&scratch).unwrap();
            Fixture {
                tmp,
                rootfs,
                home,
                scratch,
            }
        }

        fn seed(&self) -> Result<Seeded, SeedError> {
            seed(&self.rootfs, Path::new(HOME), &self.scratch)
        }

        fn scratch_names(&self) -> Vec<OsString> {
            let mut names: Vec<_> = fs::read_dir(&self.scratch)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        }
    }

    fn meta(path: &Path) -> fs::Metadata {
        fs::symlink_metadata(path).unwrap()
    }

    fn chown(path: &Path, uid: u32, gid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn relative_home_paths() {
        assert_eq!(
            relative(Path::new("/home/work")),
            Some(PathBuf::from("home/work"))
        );
        assert_eq!(
            relative(Path::new("/home/./work/")),
            Some(PathBuf::from("home/work"))
        );
        for bad in ["home/work", "/", "/home/../etc", ""] {
            assert_eq!(relative(Path::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn copies_owners_modes_setuid_and_read_only_dirs() {
        if !root("copies_owners_modes_setuid_and_read_only_dirs") {
            return;
        }
        let fx = Fixture::new();
        fs::write(fx.home.join("tool"), b"#!/bin/sh\n").unwrap();
        chown(&fx.home.join("tool"), 0, 50);
        chmod(&fx.home.join("tool"), 0o6755);
        fs::write(fx.home.join("secret"), b"s").unwrap();
        chown(&fx.home.join("secret"), 1234, 5678);
        chmod(&fx.home.join("secret"), 0o000);
        let ro = fx.home.join("ro");
        fs::create_dir(&ro).unwrap();
        fs::write(ro.join("inside"), b"12345").unwrap();
        chown(&ro.join("inside"), 1234, 1234);
        fs::create_dir(ro.join("sub")).unwrap();
        chown(&ro, 1234, 1234);
        chmod(&ro, 0o555);
        let sticky = fx.home.join("tmp");
        fs::create_dir(&sticky).unwrap();
        chmod(&sticky, 0o1777);

        let seeded = fx.seed().unwrap();
        assert_eq!(
            seeded,
            Seeded::Copied {
                entries: 6,
                bytes: 10 + 1 + 5
            }
        );
        for (rel, uid, gid, mode) in [
            ("tool", 0, 50, 0o6755),
            ("secret", 1234, 5678, 0o000),
            ("ro", 1234, 1234, 0o555),
            ("ro/inside", 1234, 1234, 0o644),
            ("tmp", 0, 0, 0o1777),
        ] {
            let m = meta(&fx.scratch.join(rel));
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o7777),
                (uid, gid, mode),
                "{rel}"
            );
        }
        assert!(meta(&fx.scratch.join("ro/sub")).is_dir());
        assert_eq!(fs::read(fx.scratch.join("ro/inside")).unwrap(), b"12345");
    }

    #[test]
    fn scratch_takes_the_home_owner_and_mode() {
        if !root("scratch_takes_the_home_owner_and_mode") {
            return;
        }
        let fx = Fixture::new();
        fs::write(fx.home.join(".profile"), b"x").unwrap();
        chown(&fx.home, 1000, 1001);
        chmod(&fx.home, 0o2750);
        xattr::set(&fx.home, "user.home", b"yes").unwrap();

        fx.seed().unwrap();
        let m = meta(&fx.scratch);
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o2750));
        assert_eq!(
            xattr::get(&fx.scratch, "user.home").unwrap().as_deref(),
            Some(&b"yes"[..])
        );
    }

    #[test]
    fn hard_links_stay_hard_links() {
        if !root("hard_links_stay_hard_links") {
            return;
        }
        let fx = Fixture::new();
        fs::create_dir(fx.home.join("a")).unwrap();
        fs::create_dir(fx.home.join("b")).unwrap();
        fs::write(fx.home.join("a/one"), b"shared").unwrap();
        fs::hard_link(fx.home.join("a/one"), fx.home.join("b/two")).unwrap();
        fs::hard_link(fx.home.join("a/one"), fx.home.join("three")).unwrap();
        // Its other link is outside the home: it is copied as a plain file.
        fs::write(fx.home.join("lonely"), b"l").unwrap();
        fs::hard_link(fx.home.join("lonely"), fx.rootfs.join("lonely")).unwrap();

        let seeded = fx.seed().unwrap();
        assert_eq!(
            seeded,
            Seeded::Copied {
                entries: 6,
                bytes: 6 + 1
            }
        );
        let one = meta(&fx.scratch.join("a/one"));
        assert_eq!(one.nlink(), 3);
        for other in ["b/two", "three"] {
            assert_eq!(meta(&fx.scratch.join(other)).ino(), one.ino(), "{other}");
        }
        assert_eq!(meta(&fx.scratch.join("lonely")).nlink(), 1);
    }

    #[test]
    fn symlinks_are_copied_as_text_and_never_followed() {
        if !root("symlinks_are_copied_as_text_and_never_followed") {
            return;
        }
        let fx = Fixture::new();
        let outside = fx.tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("host-secret"), b"do not copy").unwrap();
        let links = [
            ("passwd", "/etc/passwd"),
            ("up", "../../../outside/host-secret"),
            ("etc", "/etc"),
            ("outside", outside.to_str().unwrap()),
            ("dangling", "nowhere"),
        ];
        for (name, target) in links {
            symlink(target, fx.home.join(name)).unwrap();
        }
        chown(&fx.home.join("passwd"), 1234, 4321);

        let seeded = fx.seed().unwrap();
        assert_eq!(
            seeded,
            Seeded::Copied {
                entries: 5,
                bytes: 0
            }
        );
        for (name, target) in links {
            let copy = fx.scratch.join(name);
            assert!(meta(&copy).file_type().is_symlink(), "{name}");
            assert_eq!(fs::read_link(&copy).unwrap(), Path::new(target), "{name}");
        }
        let m = meta(&fx.scratch.join("passwd"));
        assert_eq!((m.uid(), m.gid()), (1234, 4321));
    }

    #[test]
    fn a_symlink_on_the_home_path_is_refused() {
        if !root("a_symlink_on_the_home_path_is_refused") {
            return;
        }
        // The image's /home is a symlink to a host directory with a `work` in it.
        let fx = Fixture::new();
        let host = fx.tmp.path().join("host");
        fs::create_dir_all(host.join("work")).unwrap();
        fs::write(host.join("work/loot"), b"host data").unwrap();
        fs::remove_dir_all(fx.rootfs.join("home")).unwrap();
        symlink(&host, fx.rootfs.join("home")).unwrap();
        let err = fx.seed().unwrap_err();
        assert!(
            matches!(err, SeedError::Symlink { ref path } if path == Path::new(HOME)),
            "{err}"
        );
        assert!(err.to_string().contains(HOME), "{err}");
        assert!(fx.scratch_names().is_empty());

        // The home itself being a symlink, even a relative one, is refused too.
        fs::remove_file(fx.rootfs.join("home")).unwrap();
        fs::create_dir_all(fx.rootfs.join("home/real")).unwrap();
        fs::write(fx.rootfs.join("home/real/file"), b"x").unwrap();
        symlink("real", fx.rootfs.join("home/work")).unwrap();
        assert!(matches!(fx.seed(), Err(SeedError::Symlink { .. })));
        assert!(fx.scratch_names().is_empty());
    }

    #[test]
    fn missing_empty_or_odd_sources() {
        let fx = Fixture::new();
        assert_eq!(fx.seed().unwrap(), Seeded::NoSource, "empty home");
        let missing = seed(&fx.rootfs, Path::new("/home/nobody"), &fx.scratch).unwrap();
        assert_eq!(missing, Seeded::NoSource);
        fs::write(fx.rootfs.join("home/file"), b"x").unwrap();
        let err = seed(&fx.rootfs, Path::new("/home/file"), &fx.scratch).unwrap_err();
        assert!(matches!(err, SeedError::NotADirectory { .. }), "{err}");
        let err = seed(&fx.rootfs, Path::new("home/work"), &fx.scratch).unwrap_err();
        assert!(matches!(err, SeedError::BadPath { .. }), "{err}");
        assert!(fx.scratch_names().is_empty());
    }

    #[test]
    fn a_non_empty_scratch_is_left_alone() {
        let fx = Fixture::new();
        fs::write(fx.home.join("from-image"), b"image").unwrap();
        fs::write(fx.scratch.join(".keep"), b"mine").unwrap();
        chmod(&fx.scratch, 0o700);
        assert_eq!(fx.seed().unwrap(), Seeded::NotEmpty);
        assert_eq!(fx.scratch_names(), [OsString::from(".keep")]);
        assert_eq!(fs::read(fx.scratch.join(".keep")).unwrap(), b"mine");
        assert_eq!(meta(&fx.scratch).mode() & 0o7777, 0o700);
    }

    #[test]
    fn xattrs_are_copied_but_not_overlay_or_selinux_ones() {
        if !root("xattrs_are_copied_but_not_overlay_or_selinux_ones") {
            return;
        }
        let fx = Fixture::new();
        let (file, dir, link) = (fx.home.join("f"), fx.home.join("d"), fx.home.join("l"));
        fs::write(&file, b"x").unwrap();
        fs::create_dir(&dir).unwrap();
        symlink("f", &link).unwrap();
        for path in [&file, &dir] {
            xattr::set(path, "user.keep", b"1").unwrap();
            xattr::set(path, "trusted.keep", b"2").unwrap();
            xattr::set(path, "trusted.overlay.opaque", b"y").unwrap();
            xattr::set(path, "user.overlay.opaque", b"y").unwrap();
        }
        // Symlinks cannot have user.* attributes; trusted.* ones they can.
        xattr::set(&link, "trusted.keep", b"3").unwrap();
        // Only possible where no SELinux policy owns the attribute.
        let selinux = xattr::set(&file, "security.selinux", b"system_u:object_r:etc_t:s0").is_ok();

        fx.seed().unwrap();
        for name in ["f", "d"] {
            let copy = fx.scratch.join(name);
            assert_eq!(
                xattr::get(&copy, "user.keep").unwrap().as_deref(),
                Some(&b"1"[..])
            );
            assert_eq!(
                xattr::get(&copy, "trusted.keep").unwrap().as_deref(),
                Some(&b"2"[..])
            );
            assert_eq!(xattr::get(&copy, "trusted.overlay.opaque").unwrap(), None);
            assert_eq!(xattr::get(&copy, "user.overlay.opaque").unwrap(), None);
        }
        let link_copy = fx.scratch.join("l");
        assert_eq!(
            xattr::get(&link_copy, "trusted.keep").unwrap().as_deref(),
            Some(&b"3"[..])
        );
        if selinux {
            let label = xattr::get(fx.scratch.join("f"), "security.selinux").unwrap();
            assert_ne!(label.as_deref(), Some(&b"system_u:object_r:etc_t:s0"[..]));
        }
    }

    #[test]
    fn fifos_and_devices_are_copied_and_sockets_skipped() {
        if !root("fifos_and_devices_are_copied_and_sockets_skipped") {
            return;
        }
        let fx = Fixture::new();
        mkfifo(&fx.home.join("pipe"), Mode::from_bits_truncate(0o640)).unwrap();
        chown(&fx.home.join("pipe"), 1234, 1234);
        let null = makedev(1, 3);
        mknod(
            &fx.home.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            null,
        )
        .unwrap();
        chmod(&fx.home.join("null"), 0o666);
        let _listener = UnixListener::bind(fx.home.join("sock")).unwrap();

        assert_eq!(
            fx.seed().unwrap(),
            Seeded::Copied {
                entries: 2,
                bytes: 0
            }
        );
        let pipe = meta(&fx.scratch.join("pipe"));
        assert_eq!(kind_of(&pipe), SFlag::S_IFIFO);
        assert_eq!((pipe.uid(), pipe.mode() & 0o7777), (1234, 0o640));
        let dev = meta(&fx.scratch.join("null"));
        assert_eq!(kind_of(&dev), SFlag::S_IFCHR);
        assert_eq!((dev.rdev(), dev.mode() & 0o7777), (null, 0o666));
        assert!(!fx.scratch.join("sock").exists());
    }

    fn kind_of(m: &fs::Metadata) -> SFlag {
        SFlag::from_bits_truncate(m.mode() & SFlag::S_IFMT.bits())
    }

    #[test]
    fn timestamps_are_kept() {
        if !root("timestamps_are_kept") {
            return;
        }
        let fx = Fixture::new();
        fs::create_dir(fx.home.join("dir")).unwrap();
        fs::write(fx.home.join("dir/file"), b"data").unwrap();
        symlink("dir/file", fx.home.join("link")).unwrap();
        mkfifo(&fx.home.join("pipe"), Mode::S_IRWXU).unwrap();
        let atime = TimeSpec::new(1_000_000_000, 123_456_789);
        let mtime = TimeSpec::new(1_200_000_000, 500);
        // Children first: setting a directory's times does not move its parent's.
        for rel in ["dir/file", "dir", "link", "pipe", ""] {
            let path = fx.home.join(rel);
            utimensat(None, &path, &atime, &mtime, UtimensatFlags::NoFollowSymlink).unwrap();
        }

        fx.seed().unwrap();
        for rel in ["dir/file", "dir", "link", "pipe", ""] {
            let m = meta(&fx.scratch.join(rel));
            assert_eq!(
                (m.atime(), m.atime_nsec()),
                (1_000_000_000, 123_456_789),
                "{rel:?}"
            );
            assert_eq!((m.mtime(), m.mtime_nsec()), (1_200_000_000, 500), "{rel:?}");
        }
    }

    /// A tmpfs that is unmounted when dropped, even if the test fails.
    struct Tmpfs(PathBuf);

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn a_failed_copy_leaves_scratch_empty() {
        if !root("a_failed_copy_leaves_scratch_empty") {
            return;
        }
        let fx = Fixture::new();
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(
            Some("tmpfs"),
            &fx.scratch,
            Some("tmpfs"),
            flags,
            Some("size=64k"),
        )
        .unwrap();
        let _tmpfs = Tmpfs(fx.scratch.clone());
        // In name order: a read-only dir with content and a small file are
        // copied before the big file fills the tmpfs.
        let ro = fx.home.join("a-ro");
        fs::create_dir_all(ro.join("sub")).unwrap();
        fs::write(ro.join("sub/small"), b"small").unwrap();
        chmod(&ro.join("sub"), 0o500);
        chmod(&ro, 0o555);
        symlink("a-ro", fx.home.join("b-link")).unwrap();
        fs::write(fx.home.join("c-small"), b"small").unwrap();
        fs::write(fx.home.join("d-big"), vec![7u8; 1 << 20]).unwrap();

        let err = fx.seed().unwrap_err();
        let msg = err.to_string();
        let enospc = Some(Errno::ENOSPC as i32);
        assert!(
            matches!(&err, SeedError::Copy { source, .. } if source.raw_os_error() == enospc),
            "{msg}"
        );
        let dest = fx.scratch.join("d-big");
        assert!(
            msg.contains("/home/work/d-big") && msg.contains(dest.to_str().unwrap()),
            "{msg}"
        );
        assert!(fx.scratch_names().is_empty(), "{:?}", fx.scratch_names());
    }

    #[test]
    fn deep_trees_copy_without_recursion() {
        if !root("deep_trees_copy_without_recursion") {
            return;
        }
        const DEPTH: usize = 3000;
        let fx = Fixture::new();
        // Deeper than PATH_MAX allows to name, so built and checked fd by fd.
        let mut dir = open_dir(&fx.home).unwrap();
        for _ in 0..DEPTH {
            mkdirat(Some(dir.as_raw_fd()), "d", Mode::S_IRWXU).unwrap();
            dir = open_child(&dir, "d", DIR, Mode::empty()).unwrap();
        }
        let mut bottom = open_child(
            &dir,
            "bottom",
            OFlag::O_WRONLY | OFlag::O_CREAT,
            Mode::S_IRUSR,
        )
        .unwrap();
        io::Write::write_all(&mut bottom, b"deep").unwrap();

        let seeded = fx.seed().unwrap();
        assert_eq!(
            seeded,
            Seeded::Copied {
                entries: DEPTH as u64 + 1,
                bytes: 4
            }
        );
        let mut dir = open_dir(&fx.scratch).unwrap();
        for _ in 0..DEPTH {
            dir = open_child(&dir, "d", DIR, Mode::empty()).unwrap();
        }
        let bottom = open_child(&dir, "bottom", OFlag::O_RDONLY, Mode::empty()).unwrap();
        assert_eq!(io::read_to_string(bottom).unwrap(), "deep");

        // std's remove_dir_all recurses; empty both trees first.
        empty_dir(&open_dir(&fx.scratch).unwrap()).unwrap();
        empty_dir(&open_dir(&fx.home).unwrap()).unwrap();
        assert!(fx.scratch_names().is_empty());
    }
}
