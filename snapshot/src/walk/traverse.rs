//! The traversal: an iterative walk over a stack of directory frames, visiting
//! names in ascending byte order, with at most a budget of directory fds open
//! (deeper ones are closed and reopened by name, checked to be the same inode).
//!
//! It reads entries and turns them into [`Event`]s; what the overlay makes of an
//! entry is [`super::overlay`]'s, what a graft does is [`super::graft`]'s, what
//! a delta pass writes is [`crate::delta`]'s, and how an event is encoded is the
//! layer's.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, fstatat, major, minor, FileStat, Mode, SFlag};

use super::graft::Trie;
use super::overlay::{is_whiteout_device, FileData, Overlay};
use super::{
    absolute, bytes_cstring, display_path, Event, Ident, Pass, Progress, SkipReason, TreeSpec,
    Visitor, WalkReport, Xattrs, MAX_LISTED, MAX_OPEN_DIRS,
};
use crate::delta::{Baseline, Decision, State};
use crate::error::{Error, IoContext, Result};
use crate::layer::is_reserved_name;
use crate::tar::{Header, Kind};

/// How to get a directory fd back after it was closed to save descriptors.
pub(super) enum Reopen {
    /// `name` inside the parent frame's directory.
    Child(Vec<u8>),
    /// An absolute host path given by the caller (a tree root).
    Root(PathBuf),
    /// A directory synthesized for a graft's parents: it has no fd.
    Virtual,
}

pub(super) struct Frame {
    dir: Option<Dir>,
    reopen: Reopen,
    /// (dev, ino) of the directory, checked when it is reopened.
    id: (u64, u64),
    /// Container path of this directory, without a leading slash.
    path: Vec<u8>,
    /// Host path, for messages.
    host: PathBuf,
    /// Index of the tree: 0 for the upper dir, 1 + i for graft i.
    tree: usize,
    /// Children still to visit, in reverse order.
    todo: Vec<Child>,
    /// In a delta pass: everything below is written, changed or not (the
    /// directory is new or replaced).
    pub(super) full: bool,
}

struct Child {
    name: Vec<u8>,
    /// Whether the directory listing has it (else it only leads to a graft).
    real: bool,
    node: Option<usize>,
    /// In a delta pass: the first pass wrote it and it is gone now.
    deleted: bool,
}

struct TreeRoot {
    dev: u64,
    /// Overlay semantics (whiteouts, opaque dirs) apply in the upper dir only.
    overlay: bool,
}

pub(super) struct Walker<'a> {
    pub(super) spec: &'a TreeSpec,
    pass: Pass<'a>,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    grafts: Trie,
    roots: Vec<TreeRoot>,
    pub(super) overlay: Overlay,
    pub(super) stack: Vec<Frame>,
    open_dirs: usize,
    max_open: usize,
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    pub(super) report: WalkReport,
}

pub(super) const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

pub(super) fn open_root(path: &Path) -> Result<(Dir, FileStat)> {
    // The root path comes from the caller, not from session content.
    let dir = Dir::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .at(path)?;
    let st = fstat(dir.as_raw_fd()).at(path)?;
    Ok((dir, st))
}

impl<'a> Walker<'a> {
    pub(super) fn new(
        spec: &'a TreeSpec,
        progress: &'a Progress,
        cancel: &'a AtomicBool,
        pass: Pass<'a>,
    ) -> Result<Self> {
        let grafts = Trie::new(&spec.grafts)?;
        let overlay = Overlay::open(spec.overlay_xattrs, &spec.lowers)?;
        Ok(Walker {
            spec,
            pass,
            progress,
            cancel,
            grafts,
            roots: Vec::new(),
            overlay,
            stack: Vec::new(),
            open_dirs: 0,
            max_open: max_open_dirs(),
            hardlinks: HashMap::new(),
            report: WalkReport::default(),
        })
    }

    pub(super) fn run(&mut self, visitor: &mut dyn Visitor) -> Result<()> {
        // Tree 0 is the upper dir; with none, a virtual root that only holds grafts.
        let root_frame = match &self.spec.upper {
            Some(upper) => {
                let (dir, st) = open_root(upper)?;
                self.roots.push(TreeRoot {
                    dev: st.st_dev,
                    overlay: true,
                });
                self.overlay.dir_is_opaque(dir.as_raw_fd(), upper)?;
                fd_xattrs(dir.as_raw_fd(), upper)?;
                self.frame(
                    Some(dir),
                    Reopen::Root(upper.clone()),
                    &st,
                    Vec::new(),
                    upper.clone(),
                    0,
                    Some(0),
                    false,
                )?
            }
            None => {
                self.roots.push(TreeRoot {
                    dev: 0,
                    overlay: false,
                });
                self.virtual_frame(Vec::new(), PathBuf::from("/"), 0, false)
            }
        };
        for g in &self.spec.grafts {
            let (_, st) = open_root(&g.source)?;
            self.roots.push(TreeRoot {
                dev: st.st_dev,
                overlay: false,
            });
        }
        self.push(root_frame);

        while let Some(top) = self.stack.last_mut() {
            let Some(child) = top.todo.pop() else {
                if let Some(f) = self.stack.pop() {
                    if f.dir.is_some() {
                        self.open_dirs -= 1;
                    }
                }
                continue;
            };
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            self.child(child, visitor)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn frame(
        &mut self,
        mut dir: Option<Dir>,
        reopen: Reopen,
        st: &FileStat,
        path: Vec<u8>,
        host: PathBuf,
        tree: usize,
        node: Option<usize>,
        full: bool,
    ) -> Result<Frame> {
        let mut todo: Vec<Child> = Vec::new();
        if let Some(d) = dir.as_mut() {
            for e in d.iter() {
                let e = e.at(&host)?;
                let name = e.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                todo.push(Child {
                    name: name.to_vec(),
                    real: true,
                    node: None,
                    deleted: false,
                });
            }
        }
        if let Some(n) = node {
            for (name, &id) in self.grafts.children(n) {
                match todo.iter_mut().find(|c| &c.name == name) {
                    Some(c) => c.node = Some(id),
                    None => todo.push(Child {
                        name: name.clone(),
                        real: false,
                        node: Some(id),
                        deleted: false,
                    }),
                }
            }
        }
        let baseline = match &self.pass {
            Pass::Delta(b) if !full => Some(&**b),
            _ => None,
        };
        if let Some(b) = baseline {
            let now: HashSet<&[u8]> = todo.iter().map(|c| c.name.as_slice()).collect();
            let gone: Vec<Child> = b
                .gone(&path, |n| now.contains(n))
                .map(|n| Child {
                    name: n.clone(),
                    real: false,
                    node: None,
                    deleted: true,
                })
                .collect();
            todo.extend(gone);
        }
        // Reverse order, so that popping visits names in ascending byte order.
        todo.sort_unstable_by(|a, b| b.name.cmp(&a.name));
        Ok(Frame {
            dir,
            reopen,
            id: (st.st_dev, st.st_ino),
            path,
            host,
            tree,
            todo,
            full,
        })
    }

    pub(super) fn virtual_frame(
        &mut self,
        path: Vec<u8>,
        host: PathBuf,
        node: usize,
        full: bool,
    ) -> Frame {
        let mut todo: Vec<Child> = self
            .grafts
            .children(node)
            .iter()
            .map(|(name, &id)| Child {
                name: name.clone(),
                real: false,
                node: Some(id),
                deleted: false,
            })
            .collect();
        todo.reverse();
        Frame {
            dir: None,
            reopen: Reopen::Virtual,
            id: (0, 0),
            path,
            host,
            tree: 0,
            todo,
            full,
        }
    }

    /// The baseline to compare with, in a delta pass outside new subtrees.
    pub(super) fn delta(&self) -> Option<&Baseline> {
        if self.stack.last().is_some_and(|f| f.full) {
            return None;
        }
        match &self.pass {
            Pass::Delta(b) => Some(b),
            _ => None,
        }
    }

    /// The baseline this pass records into, if it records.
    pub(super) fn recording(&mut self) -> Option<&mut Baseline> {
        match &mut self.pass {
            Pass::Record(b) => Some(b),
            _ => None,
        }
    }

    pub(super) fn record(&mut self, rel: &[u8], st: &FileStat) {
        if let Some(b) = self.recording() {
            b.record(rel, State::from(st));
        }
    }

    pub(super) fn push(&mut self, frame: Frame) {
        if frame.dir.is_some() {
            self.open_dirs += 1;
            if self.open_dirs > self.max_open {
                // Close the shallowest open directory below the root; it is
                // reopened by name if the walk needs it again.
                if let Some(f) = self.stack.iter_mut().skip(1).find(|f| f.dir.is_some()) {
                    f.dir = None;
                    self.open_dirs -= 1;
                }
            }
        }
        self.stack.push(frame);
    }

    /// The fd of the directory on top of the stack, reopening it if needed.
    fn top_fd(&mut self) -> Result<RawFd> {
        let depth = self.stack.len() - 1;
        if self.stack[depth].dir.is_none() {
            self.reopen(depth)?;
        }
        Ok(self.stack[depth]
            .dir
            .as_ref()
            .map(|d| d.as_raw_fd())
            .expect("reopened"))
    }

    fn reopen(&mut self, depth: usize) -> Result<()> {
        let dir = match &self.stack[depth].reopen {
            Reopen::Virtual => unreachable!("virtual directories have no listing to read"),
            Reopen::Root(path) => open_root(path)?.0,
            Reopen::Child(name) => {
                let name = name.clone();
                if self.stack[depth - 1].dir.is_none() {
                    self.reopen(depth - 1)?;
                }
                let parent = self.stack[depth - 1]
                    .dir
                    .as_ref()
                    .expect("reopened")
                    .as_raw_fd();
                let host = &self.stack[depth].host;
                Dir::openat(
                    Some(parent),
                    bytes_cstring(&name).as_c_str(),
                    DIR_FLAGS,
                    Mode::empty(),
                )
                .at(host)?
            }
        };
        let f = &mut self.stack[depth];
        let st = fstat(dir.as_raw_fd()).at(&f.host)?;
        if (st.st_dev, st.st_ino) != f.id {
            return Err(Error::Refused {
                path: f.host.clone(),
                message: "directory was replaced while it was being read".into(),
            });
        }
        f.dir = Some(dir);
        self.open_dirs += 1;
        Ok(())
    }

    fn child(&mut self, child: Child, visitor: &mut dyn Visitor) -> Result<()> {
        let parent = self.stack.last().expect("a frame is on the stack");
        let mut rel = parent.path.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&child.name);
        let host = parent.host.join(OsStr::from_bytes(&child.name));
        let tree = parent.tree;
        let full = parent.full;
        self.progress.entries.fetch_add(1, Ordering::Relaxed);
        if child.deleted {
            return self.whiteout(&rel, 0, None, visitor);
        }

        if let Some(graft) = child.node.and_then(|n| self.grafts.graft(n)) {
            return self.enter_graft(graft, rel, child.node, visitor);
        }
        if !child.real {
            return self.enter_virtual(
                rel,
                host,
                child.node.expect("virtual child has a node"),
                false,
                visitor,
            );
        }
        let abs = absolute(&rel);
        if self.spec.exclude.matches(&abs) {
            self.report.excluded += 1;
            return Ok(());
        }
        let overlay = self.roots[tree].overlay;
        if is_reserved_name(&child.name) {
            self.report.skip(&abs, SkipReason::ReservedName);
            return Ok(());
        }
        let dirfd = self.top_fd()?;
        let cname = bytes_cstring(&child.name);
        let st = match fstatat(
            Some(dirfd),
            cname.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                self.report.skip(&abs, SkipReason::Vanished);
                return Ok(());
            }
            Err(e) => return Err(e).at(&host),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let is_whiteout = is_whiteout_device(&st);
        if let Some(node) = child.node {
            // A path leading to a graft: it must be a directory in the layer.
            if kind != SFlag::S_IFDIR {
                let hides_lower = overlay;
                return self.enter_virtual(rel, host, node, hides_lower, visitor);
            }
        }
        if is_whiteout && !overlay {
            self.report.skip(&abs, SkipReason::WhiteoutDevice);
            return Ok(());
        }
        if kind == SFlag::S_IFSOCK {
            self.report.skip(&abs, SkipReason::Socket);
            return Ok(());
        }
        let mut subtree_full = full;
        if let Some(b) = self.delta() {
            match b.decide(&rel, &State::from(&st)) {
                Decision::Unchanged => {
                    if kind == SFlag::S_IFDIR {
                        return self.dir(rel, host, cname, &st, child.node, false, false, visitor);
                    }
                    return Ok(());
                }
                Decision::Write { replaced, whole } => {
                    subtree_full = whole;
                    if replaced && !is_whiteout {
                        // Say the old entry is gone before writing the new one in its
                        // place: a whiteout applies to the layers below, not this one.
                        self.whiteout(&rel, st.st_mtime, None, visitor)?;
                    }
                }
            }
        }
        self.record(&rel, &st);
        if is_whiteout {
            return self.whiteout(&rel, st.st_mtime, Some(Ident::from(&st)), visitor);
        }
        let header = |kind: Kind, xattrs| header_from(&rel, kind, &st, xattrs);
        match kind {
            SFlag::S_IFDIR => self.dir(
                rel,
                host,
                cname,
                &st,
                child.node,
                true,
                subtree_full,
                visitor,
            ),
            SFlag::S_IFREG => self.file(&rel, &host, &cname, &st, visitor),
            SFlag::S_IFLNK => {
                let target = readlinkat(Some(dirfd), cname.as_c_str()).at(&host)?;
                let h = header(
                    Kind::Symlink {
                        target: target.as_bytes().to_vec(),
                    },
                    Vec::new(),
                );
                self.emit_linkable(h, &st, visitor)?;
                self.report.symlinks += 1;
                Ok(())
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK => {
                let (ma, mi) = (major(st.st_rdev) as u32, minor(st.st_rdev) as u32);
                let k = if kind == SFlag::S_IFCHR {
                    Kind::Char {
                        major: ma,
                        minor: mi,
                    }
                } else {
                    Kind::Block {
                        major: ma,
                        minor: mi,
                    }
                };
                let x = path_xattrs(dirfd, &child.name, &host)?;
                self.emit_linkable(header(k, x), &st, visitor)?;
                self.report.devices += 1;
                Ok(())
            }
            SFlag::S_IFIFO => {
                let x = path_xattrs(dirfd, &child.name, &host)?;
                self.emit_linkable(header(Kind::Fifo, x), &st, visitor)?;
                self.report.fifos += 1;
                Ok(())
            }
            _ => unreachable!("sockets are skipped above"),
        }
    }

    fn whiteout(
        &mut self,
        rel: &[u8],
        mtime: i64,
        ident: Option<Ident>,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        visitor.event(
            &Event::Whiteout {
                path: rel,
                mtime,
                ident,
            },
            None,
        )?;
        self.report.whiteouts += 1;
        Ok(())
    }

    pub(super) fn opaque(&mut self, dir: &[u8], visitor: &mut dyn Visitor) -> Result<()> {
        visitor.event(&Event::Opaque { dir }, None)?;
        self.report.opaque_dirs += 1;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn dir(
        &mut self,
        rel: Vec<u8>,
        host: PathBuf,
        cname: CString,
        st: &FileStat,
        node: Option<usize>,
        emit: bool,
        full: bool,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let tree = self.stack.last().expect("frame").tree;
        if st.st_dev != self.roots[tree].dev {
            self.report
                .skip(&absolute(&rel), SkipReason::OtherFilesystem);
            return Ok(());
        }
        let dirfd = self.top_fd()?;
        let dir = match Dir::openat(Some(dirfd), cname.as_c_str(), DIR_FLAGS, Mode::empty()) {
            Ok(d) => d,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {
                self.report.skip(&absolute(&rel), SkipReason::Vanished);
                return Ok(());
            }
            Err(e) => return Err(e).at(&host),
        };
        let now = fstat(dir.as_raw_fd()).at(&host)?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            self.report.skip(&absolute(&rel), SkipReason::Vanished);
            return Ok(());
        }
        if emit {
            let opaque =
                self.roots[tree].overlay && self.overlay.dir_is_opaque(dir.as_raw_fd(), &host)?;
            let xattrs = fd_xattrs(dir.as_raw_fd(), &host)?;
            let h = header_from(&rel, Kind::Dir, &now, xattrs);
            visitor.event(
                &Event::Entry {
                    header: &h,
                    ident: Some(Ident::from(&now)),
                },
                None,
            )?;
            self.report.dirs += 1;
            if opaque {
                self.opaque(&rel, visitor)?;
            }
        }
        let frame = self.frame(
            Some(dir),
            Reopen::Child(cname.into_bytes()),
            &now,
            rel,
            host,
            tree,
            node,
            full,
        )?;
        self.push(frame);
        Ok(())
    }

    fn file(
        &mut self,
        rel: &[u8],
        host: &Path,
        cname: &CStr,
        st: &FileStat,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let tree = self.stack.last().expect("frame").tree;
        let overlay = self.roots[tree].overlay;
        let dirfd = self.top_fd()?;
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY;
        let fd = match openat(Some(dirfd), cname, flags | OFlag::O_NOATIME, Mode::empty()) {
            Err(Errno::EPERM) => openat(Some(dirfd), cname, flags, Mode::empty()),
            r => r,
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENXIO) => {
                self.report.skip(&absolute(rel), SkipReason::Vanished);
                return Ok(());
            }
            Err(e) => return Err(e).at(host),
        };
        // SAFETY: `openat` just returned this fd and nothing else owns it.
        #[allow(unsafe_code)]
        let mut file = unsafe { File::from_raw_fd(fd) };
        let now = fstat(file.as_raw_fd()).at(host)?;
        let same = (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)
            && SFlag::from_bits_truncate(now.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
        if !same {
            self.report.skip(&absolute(rel), SkipReason::Vanished);
            return Ok(());
        }
        let mut data_file = None;
        if overlay {
            match self.overlay.file_data(rel, file.as_raw_fd(), host, &now)? {
                FileData::Whiteout => {
                    return self.whiteout(rel, now.st_mtime, Some(Ident::from(&now)), visitor)
                }
                FileData::Lower(f) => data_file = Some(f),
                FileData::Own => {}
            }
        }
        let xattrs = fd_xattrs(file.as_raw_fd(), host)?;
        let h = header_from(
            rel,
            Kind::File {
                size: now.st_size as u64,
            },
            &now,
            xattrs,
        );
        if let Some(h) = self.hardlink(&h, &now) {
            visitor.event(
                &Event::Entry {
                    header: &h,
                    ident: Some(Ident::from(&now)),
                },
                None,
            )?;
            self.report.hardlinks += 1;
            return Ok(());
        }
        let src = data_file.as_mut().unwrap_or(&mut file);
        let got = visitor.event(
            &Event::Entry {
                header: &h,
                ident: Some(Ident::from(&now)),
            },
            Some(src),
        )?;
        self.report.files += 1;
        self.report.bytes += got;
        self.progress.bytes_read.fetch_add(got, Ordering::Relaxed);
        let after = fstat(file.as_raw_fd()).at(host)?;
        let changed = got != now.st_size as u64
            || after.st_size != now.st_size
            || (after.st_mtime, after.st_mtime_nsec) != (now.st_mtime, now.st_mtime_nsec)
            || (after.st_ctime, after.st_ctime_nsec) != (now.st_ctime, now.st_ctime_nsec);
        if changed {
            if let Some(b) = self.recording() {
                b.note_changed(rel);
            }
        }
        if changed && self.report.changed.len() < MAX_LISTED {
            self.report.changed.push(display_path(&absolute(rel)));
        }
        Ok(())
    }

    /// Returns a hard-link header if this inode was already written.
    fn hardlink(&mut self, h: &Header, st: &FileStat) -> Option<Header> {
        if st.st_nlink < 2 {
            return None;
        }
        match self.hardlinks.get(&(st.st_dev, st.st_ino)) {
            Some(target) => Some(Header {
                kind: Kind::HardLink {
                    target: target.clone(),
                },
                xattrs: Vec::new(),
                ..h.clone()
            }),
            None => {
                self.hardlinks
                    .insert((st.st_dev, st.st_ino), h.path.clone());
                None
            }
        }
    }

    fn emit_linkable(&mut self, h: Header, st: &FileStat, visitor: &mut dyn Visitor) -> Result<()> {
        let h = self.hardlink(&h, st).unwrap_or(h);
        visitor.event(
            &Event::Entry {
                header: &h,
                ident: Some(Ident::from(st)),
            },
            None,
        )?;
        Ok(())
    }
}

/// Xattrs of an entry that cannot be opened (device, FIFO), read through the
/// directory fd's /proc link without following the entry itself.
fn path_xattrs(dirfd: RawFd, name: &[u8], host: &Path) -> Result<Xattrs> {
    let mut p = format!("/proc/self/fd/{dirfd}/").into_bytes();
    p.extend_from_slice(name);
    let path = Path::new(OsStr::from_bytes(&p));
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if is_unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e).at(host),
    };
    let mut out = Vec::new();
    for n in names.filter(|n| keep_xattr(n.as_bytes())) {
        if let Some(v) = xattr::get(path, &n).at(host)? {
            out.push((n.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// How many directory fds the walk may hold: [`MAX_OPEN_DIRS`], or a quarter of
/// the process's fd limit when that is lower.
fn max_open_dirs() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    MAX_OPEN_DIRS
        .min(usize::try_from(soft / 4).unwrap_or(MAX_OPEN_DIRS))
        .max(8)
}

/// Which xattrs go into the layer: file capabilities and user attributes, but not
/// overlayfs' own, nor `trusted.*` or SELinux labels of the host.
fn keep_xattr(name: &[u8]) -> bool {
    name == b"security.capability"
        || (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
}

fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_errno) if libc_errno == Errno::ENOTSUP as i32 || libc_errno == Errno::EPERM as i32)
}

pub(super) fn fd_xattrs(fd: RawFd, host: &Path) -> Result<Xattrs> {
    let f = borrowed_file(fd);
    let names = match xattr::FileExt::list_xattr(&*f) {
        Ok(n) => n,
        Err(e) if is_unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e).at(host),
    };
    let mut out = Vec::new();
    for n in names.filter(|n| keep_xattr(n.as_bytes())) {
        if let Some(v) = xattr::FileExt::get_xattr(&*f, &n).at(host)? {
            out.push((n.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

pub(super) fn get_xattr(fd: RawFd, name: &str, host: &Path) -> Result<Option<Vec<u8>>> {
    let f = borrowed_file(fd);
    match xattr::FileExt::get_xattr(&*f, name) {
        Ok(v) => Ok(v),
        Err(e) if is_unsupported(&e) => Ok(None),
        Err(e) => Err(e).at(host),
    }
}

/// A `File` view of an fd owned elsewhere, never closed by the view.
fn borrowed_file(fd: RawFd) -> std::mem::ManuallyDrop<File> {
    // SAFETY: the fd stays open for the view's lifetime (the caller owns it), and
    // ManuallyDrop keeps the view from closing it.
    #[allow(unsafe_code)]
    std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

pub(super) fn header_from(rel: &[u8], kind: Kind, st: &FileStat, xattrs: Xattrs) -> Header {
    Header {
        path: rel.to_vec(),
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        xattrs,
    }
}
