//! The traversal: an iterative walk over a stack of directory frames, visiting
//! names in ascending byte order, with at most a budget of directory fds open
//! (deeper ones are closed and reopened by name, checked to be the same inode).
//!
//! It reads entries through [`crate::fs`] and turns them into [`Event`]s; what
//! the overlay makes of an entry is [`super::overlay`]'s, what a graft does is
//! [`super::graft`]'s, what a delta pass writes is [`crate::delta`]'s, and how
//! an event is encoded is the layer's.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::stat::{major, minor, FileStat, SFlag};

use super::graft::Trie;
use super::overlay::{is_whiteout_device, FileData, Overlay};
use super::roots::OpenRoots;
use super::{
    absolute, bytes_cstring, listed_path, Data, Event, Ident, Pass, Progress, SkipReason, TreeSpec,
    Visitor, WalkReport, Xattrs, MAX_LISTED, MAX_OPEN_DIRS,
};
use crate::delta::{Baseline, Decision, NodeId, State, Visit};
use crate::error::{Error, IoContext, Result};
use crate::fs::links::LinkTracker;
use crate::fs::open::{open_dir_at, open_verified, read_link_at, read_names, stat, stat_at};
use crate::fs::xattr::{self, CONTAINER_XATTRS};
use crate::fs::Errno;
use crate::layer::is_reserved_name;
use crate::tar::{Header, Kind};

/// How to get a directory fd back after it was closed to save descriptors.
pub(super) enum Reopen {
    /// `name` inside the parent frame's directory.
    Child(Vec<u8>),
    /// Tree root `n` of the spec (0: the upper dir, 1 + i: graft i), from the
    /// fd it was opened as.
    Root(usize),
    /// A directory synthesized for a graft's parents: it has no fd.
    Virtual,
}

pub(super) struct Frame {
    /// The open directory; the entry being read holds it too, so that the
    /// frame may close its own to save descriptors meanwhile.
    dir: Option<Rc<OwnedFd>>,
    reopen: Reopen,
    /// (dev, ino) of the directory, checked when it is reopened.
    id: (u64, u64),
    /// Length of this directory's container path, the start of
    /// [`Walker::rel`]: a frame holds no path of its own, so that a deep tree
    /// costs memory in proportion to its depth, not to its depth squared.
    rel_len: usize,
    /// Where this directory's host path (for messages) is in [`Walker::host`].
    host: Range<usize>,
    /// Index of the tree: 0 for the upper dir, 1 + i for graft i.
    tree: usize,
    /// Children still to visit, in reverse order.
    todo: Vec<Child>,
    /// In a delta pass: everything below is written, changed or not (the
    /// directory is new or replaced).
    pub(super) full: bool,
    /// In a journaled delta pass: this directory, or one above it, is not the
    /// inode the journal watched (that one was deleted or moved away), so it
    /// is listed and compared with the baseline, not read from the journal.
    unwatched: bool,
    /// The directory's node in the baseline: the one recorded into, or the
    /// one compared with (`None` when no earlier pass saw it).
    base: Option<NodeId>,
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
    /// The tree roots, opened once for the pass (or before it).
    pub(super) opened: OpenRoots,
    pub(super) stack: Vec<Frame>,
    /// The container path (without a leading slash) of the directory on top
    /// of the stack; every frame's is a prefix of it.
    rel: Vec<u8>,
    /// The host paths of the frames, each after its parent's or, for a
    /// frame below its parent's, overlapping it: the top frame's ends it.
    host: Vec<u8>,
    open_dirs: usize,
    max_open: usize,
    /// The layer path of every multiply linked inode already written, while
    /// they fit in [`MAX_LINK_PATH_BYTES`]; `None` for those met after.
    hardlinks: LinkTracker<Option<Vec<u8>>>,
    /// Bytes of paths `hardlinks` holds.
    link_path_bytes: usize,
    /// Bytes of file data written so far (apparent sizes).
    layer_bytes: u64,
    pub(super) report: WalkReport,
}

/// Opens a tree root: a path the caller gave, not session content.
pub(super) fn open_root(path: &Path) -> Result<(OwnedFd, FileStat)> {
    let dir = crate::fs::open::open_root(path).at(path)?;
    let st = stat(&dir).at(path)?;
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
        let opened = spec.pass_roots()?;
        Ok(Walker {
            spec,
            pass,
            progress,
            cancel,
            grafts,
            roots: Vec::new(),
            overlay,
            opened,
            stack: Vec::new(),
            rel: Vec::new(),
            host: Vec::new(),
            open_dirs: 0,
            max_open: max_open_dirs(),
            hardlinks: LinkTracker::new(),
            link_path_bytes: 0,
            layer_bytes: 0,
            report: WalkReport::default(),
        })
    }

    pub(super) fn run(&mut self, visitor: &mut dyn Visitor) -> Result<()> {
        // Tree 0 is the upper dir; with none, a virtual root that only holds grafts.
        match &self.spec.upper {
            Some(upper) => {
                let (dir, st) = self.opened.open_tree(self.spec, 0)?;
                self.roots.push(TreeRoot {
                    dev: st.st_dev,
                    overlay: true,
                });
                self.overlay.dir_is_opaque(dir.as_fd(), upper)?;
                xattr::list(&dir, &CONTAINER_XATTRS).at(upper)?;
                self.push_dir(
                    Some(dir),
                    Reopen::Root(0),
                    &st,
                    Vec::new(),
                    upper.clone(),
                    0,
                    Some(0),
                    false,
                    Some(NodeId::ROOT),
                )?;
            }
            None => {
                self.roots.push(TreeRoot {
                    dev: 0,
                    overlay: false,
                });
                self.push_virtual(Vec::new(), PathBuf::from("/"), 0, false, Some(NodeId::ROOT));
            }
        }
        for i in 0..self.spec.grafts.len() {
            let (_, st) = self.opened.open_tree(self.spec, 1 + i)?;
            self.roots.push(TreeRoot {
                dev: st.st_dev,
                overlay: false,
            });
        }

        while let Some(top) = self.stack.last_mut() {
            let Some(child) = top.todo.pop() else {
                self.pop();
                continue;
            };
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            self.child(child, visitor)?;
        }
        Ok(())
    }

    /// Lists the directory `dir` (none for one only leading to grafts) at
    /// container path `path` and makes it the top of the stack.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push_dir(
        &mut self,
        dir: Option<OwnedFd>,
        reopen: Reopen,
        st: &FileStat,
        path: Vec<u8>,
        host: PathBuf,
        tree: usize,
        node: Option<usize>,
        full: bool,
        base: Option<NodeId>,
    ) -> Result<()> {
        let mut todo: Vec<Child> = Vec::new();
        // A recording pass watches the directory before it lists it: a change
        // after this is journaled, one before it is seen here.
        if let (Pass::Record(b), Some(d), Some(base)) = (&self.pass, &dir, base) {
            if let Some(j) = b.journal() {
                j.watch(d.as_fd(), base.key());
            }
        }
        let visit = match (&self.pass, base) {
            (Pass::Delta(b), Some(base)) if !full => b.visit().map(|v| (&**b, v, base)),
            _ => None,
        };
        let unwatched = self.stack.last().is_some_and(|f| f.unwatched)
            || visit.is_some_and(|(_, v, base)| v.unwatched(base));
        let journaled = visit.filter(|_| !unwatched);
        match (&dir, journaled) {
            (Some(d), Some((b, visit, base))) => {
                todo = journaled_children(d, &host, b, visit, base, &mut self.report.absent)?;
            }
            (Some(d), None) => {
                for name in read_names(d.as_fd()).at(&host)? {
                    todo.push(Child {
                        name,
                        real: true,
                        node: None,
                        deleted: false,
                    });
                }
            }
            (None, _) => {}
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
        let baseline = match (&self.pass, base) {
            (Pass::Delta(b), Some(base)) if !full && journaled.is_none() => Some((&**b, base)),
            _ => None,
        };
        if let Some((b, base)) = baseline {
            let now: HashSet<&[u8]> = todo.iter().map(|c| c.name.as_slice()).collect();
            let gone: Vec<Child> = b
                .gone(base, |n| now.contains(n))
                .map(|n| Child {
                    name: n.to_vec(),
                    real: false,
                    node: None,
                    deleted: true,
                })
                .collect();
            todo.extend(gone);
        }
        // Reverse order, so that popping visits names in ascending byte order.
        todo.sort_unstable_by(|a, b| b.name.cmp(&a.name));
        let frame = Frame {
            dir: dir.map(Rc::new),
            reopen,
            id: (st.st_dev, st.st_ino),
            rel_len: 0,
            host: 0..0,
            tree,
            todo,
            full,
            unwatched,
            base,
        };
        self.push(frame, path, host);
        Ok(())
    }

    /// Makes a directory synthesized on the way to grafts the top of the stack.
    pub(super) fn push_virtual(
        &mut self,
        path: Vec<u8>,
        host: PathBuf,
        node: usize,
        full: bool,
        base: Option<NodeId>,
    ) {
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
        let frame = Frame {
            dir: None,
            reopen: Reopen::Virtual,
            id: (0, 0),
            rel_len: 0,
            host: 0..0,
            tree: 0,
            todo,
            full,
            unwatched: self.stack.last().is_some_and(|f| f.unwatched),
            base,
        };
        self.push(frame, path, host);
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

    pub(super) fn record(&mut self, base: Option<NodeId>, st: &FileStat) {
        if let (Some(b), Some(node)) = (self.recording(), base) {
            b.record(node, State::from(st));
        }
    }

    /// The baseline node of the child `name` of the directory on top of the
    /// stack: made in a recording pass, looked up in a delta pass.
    pub(super) fn base_child(&mut self, name: &[u8]) -> Option<NodeId> {
        let parent = self.stack.last()?.base?;
        match &mut self.pass {
            Pass::Record(b) => Some(b.child_or_insert(parent, name)),
            Pass::Delta(b) => b.child(parent, name),
            Pass::Full => None,
        }
    }

    /// Pushes `frame` for the directory at container path `path` (its parent's
    /// path and a name) and host path `host`.
    fn push(&mut self, mut frame: Frame, path: Vec<u8>, host: PathBuf) {
        debug_assert!(path.starts_with(&self.rel));
        self.rel = path;
        frame.rel_len = self.rel.len();
        let host = host.into_os_string().into_vec();
        let below_parent = self.stack.last().map(|p| p.host.clone()).filter(|p| {
            !matches!(frame.reopen, Reopen::Root(_)) && host.starts_with(&self.host[p.clone()])
        });
        frame.host = match below_parent {
            // The parent's path and a name: only the name is stored.
            Some(p) => {
                self.host.extend_from_slice(&host[p.len()..]);
                p.start..self.host.len()
            }
            None => {
                let start = self.host.len();
                self.host.extend_from_slice(&host);
                start..self.host.len()
            }
        };
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

    /// Pops the frame on top of the stack, done with.
    fn pop(&mut self) {
        if let Some(f) = self.stack.pop() {
            if f.dir.is_some() {
                self.open_dirs -= 1;
            }
        }
        let (rel_len, host_end) = self
            .stack
            .last()
            .map_or((0, 0), |top| (top.rel_len, top.host.end));
        self.rel.truncate(rel_len);
        self.host.truncate(host_end);
    }

    /// The host path of the frame at `depth`, for messages.
    fn host_of(&self, depth: usize) -> &Path {
        Path::new(OsStr::from_bytes(
            &self.host[self.stack[depth].host.clone()],
        ))
    }

    /// The directory on top of the stack, reopened if it was closed.
    fn top_fd(&mut self) -> Result<Rc<OwnedFd>> {
        let depth = self.stack.len() - 1;
        if self.stack[depth].dir.is_none() {
            self.reopen(depth)?;
        }
        Ok(self.stack[depth].dir.clone().expect("reopened"))
    }

    /// Reopens the directory of the frame at `depth`, and those above it that
    /// were closed too, from the nearest one still open or opened by its own
    /// path: a loop, however deep the tree.
    fn reopen(&mut self, depth: usize) -> Result<()> {
        let mut from = depth;
        while self.stack[from].dir.is_none() && matches!(self.stack[from].reopen, Reopen::Child(_))
        {
            from -= 1;
        }
        for d in from..=depth {
            if self.stack[d].dir.is_some() {
                continue;
            }
            let dir = match &self.stack[d].reopen {
                Reopen::Virtual => unreachable!("virtual directories have no listing to read"),
                Reopen::Root(tree) => self.opened.open_tree(self.spec, *tree)?.0,
                Reopen::Child(name) => {
                    let parent = self.stack[d - 1].dir.as_ref().expect("reopened above");
                    let host = self.host_of(d);
                    open_dir_at(parent.as_fd(), &bytes_cstring(name, host)?).at(host)?
                }
            };
            let st = stat(&dir).at(self.host_of(d))?;
            if (st.st_dev, st.st_ino) != self.stack[d].id {
                return Err(Error::Refused {
                    path: self.host_of(d).to_path_buf(),
                    message: "directory was replaced while it was being read".into(),
                });
            }
            self.stack[d].dir = Some(Rc::new(dir));
            self.open_dirs += 1;
        }
        Ok(())
    }

    fn child(&mut self, child: Child, visitor: &mut dyn Visitor) -> Result<()> {
        let depth = self.stack.len() - 1;
        let parent = &self.stack[depth];
        let mut rel = self.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&child.name);
        let host = self.host_of(depth).join(OsStr::from_bytes(&child.name));
        let tree = parent.tree;
        let full = parent.full;
        self.progress.entries.fetch_add(1, Ordering::Relaxed);
        if child.deleted {
            return self.whiteout(&rel, 0, None, visitor);
        }

        let base = self.base_child(&child.name);
        if let Some(graft) = child.node.and_then(|n| self.grafts.graft(n)) {
            return self.enter_graft(graft, rel, child.node, base, visitor);
        }
        if !child.real {
            return self.enter_virtual(
                rel,
                host,
                child.node.expect("virtual child has a node"),
                false,
                base,
                visitor,
            );
        }
        let abs = absolute(&rel);
        if self.report.left_out(&self.spec.exclude, &abs) {
            return Ok(());
        }
        let overlay = self.roots[tree].overlay;
        if is_reserved_name(&child.name) {
            self.report.skip(&abs, SkipReason::ReservedName);
            return Ok(());
        }
        let dirfd = self.top_fd()?;
        let cname = bytes_cstring(&child.name, &host)?;
        let st = match stat_at(dirfd.as_fd(), &cname) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
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
                return self.enter_virtual(rel, host, node, hides_lower, base, visitor);
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
            match b.decide(base, &State::from(&st)) {
                Decision::Unchanged => {
                    if kind == SFlag::S_IFDIR {
                        return self.dir(
                            rel, host, cname, &st, child.node, false, false, base, visitor,
                        );
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
        self.record(base, &st);
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
                base,
                visitor,
            ),
            SFlag::S_IFREG => self.file(&rel, &host, &cname, &st, base, visitor),
            SFlag::S_IFLNK => {
                let target = read_link_at(dirfd.as_fd(), &cname).at(&host)?;
                let h = header(Kind::Symlink { target }, Vec::new());
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
                let x = unopened_xattrs(&dirfd, &child.name, &host)?;
                self.emit_linkable(header(k, x), &st, visitor)?;
                self.report.devices += 1;
                Ok(())
            }
            SFlag::S_IFIFO => {
                let x = unopened_xattrs(&dirfd, &child.name, &host)?;
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
        base: Option<NodeId>,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let tree = self.stack.last().expect("frame").tree;
        if st.st_dev != self.roots[tree].dev {
            self.report
                .skip(&absolute(&rel), SkipReason::OtherFilesystem);
            return Ok(());
        }
        let dirfd = self.top_fd()?;
        let dir = match open_dir_at(dirfd.as_fd(), &cname) {
            Ok(d) => d,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {
                self.report.skip(&absolute(&rel), SkipReason::Vanished);
                return Ok(());
            }
            Err(e) => return Err(e).at(&host),
        };
        drop(dirfd);
        let now = stat(&dir).at(&host)?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            self.report.skip(&absolute(&rel), SkipReason::Vanished);
            return Ok(());
        }
        if emit {
            let opaque =
                self.roots[tree].overlay && self.overlay.dir_is_opaque(dir.as_fd(), &host)?;
            let xattrs = xattr::list(&dir, &CONTAINER_XATTRS).at(&host)?;
            let h = header_from(&rel, Kind::Dir, &now, xattrs);
            visitor.event(&Event::entry(&h, &now), None)?;
            self.report.dirs += 1;
            if opaque {
                self.opaque(&rel, visitor)?;
            }
        }
        self.push_dir(
            Some(dir),
            Reopen::Child(cname.into_bytes()),
            &now,
            rel,
            host,
            tree,
            node,
            full,
            base,
        )
    }

    fn file(
        &mut self,
        rel: &[u8],
        host: &Path,
        cname: &CStr,
        st: &FileStat,
        base: Option<NodeId>,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let tree = self.stack.last().expect("frame").tree;
        let overlay = self.roots[tree].overlay;
        let dirfd = self.top_fd()?;
        let opened = open_verified(dirfd.as_fd(), cname, st).at(host)?;
        drop(dirfd);
        let Some((mut file, now)) = opened else {
            self.report.skip(&absolute(rel), SkipReason::Vanished);
            return Ok(());
        };
        let mut data_file = None;
        if overlay {
            match self.overlay.file_data(rel, file.as_fd(), host, &now)? {
                FileData::Whiteout => {
                    return self.whiteout(rel, now.st_mtime, Some(Ident::from(&now)), visitor)
                }
                FileData::Lower(f) => data_file = Some(f),
                FileData::Own => {}
            }
        }
        let xattrs = xattr::list(&file, &CONTAINER_XATTRS).at(host)?;
        let h = header_from(
            rel,
            Kind::File {
                size: now.st_size as u64,
            },
            &now,
            xattrs,
        );
        if let Some(h) = self.hardlink(&h, &now) {
            visitor.event(&Event::entry(&h, &now), None)?;
            self.report.hardlinks += 1;
            return Ok(());
        }
        self.check_limits(rel, now.st_size as u64)?;
        let src = data_file.as_mut().unwrap_or(&mut file);
        let mut data = Data::new(src, self.progress, self.cancel);
        let got = visitor.event(&Event::entry(&h, &now), Some(&mut data))?;
        let counted = data.counted();
        self.report.files += 1;
        self.report.bytes += got;
        // What the visitor did not count as it went.
        self.progress
            .bytes_read
            .fetch_add(got.saturating_sub(counted), Ordering::Relaxed);
        let after = stat(&file).at(host)?;
        let changed = got != now.st_size as u64
            || after.st_size != now.st_size
            || (after.st_mtime, after.st_mtime_nsec) != (now.st_mtime, now.st_mtime_nsec)
            || (after.st_ctime, after.st_ctime_nsec) != (now.st_ctime, now.st_ctime_nsec);
        if changed {
            if let (Some(b), Some(node)) = (self.recording(), base) {
                b.note_changed(node);
            }
        }
        if changed && self.report.changed.len() < MAX_LISTED {
            self.report.changed.push(listed_path(&absolute(rel)));
        }
        Ok(())
    }

    /// Counts a file of `size` bytes into the layer, or refuses it past a
    /// limit, naming it.
    fn check_limits(&mut self, rel: &[u8], size: u64) -> Result<()> {
        let limits = self.spec.limits;
        let path = || PathBuf::from(OsStr::from_bytes(&absolute(rel)));
        if let Some(limit) = limits.max_file_size.filter(|&l| size > l) {
            return Err(Error::FileTooLarge {
                path: path(),
                size,
                limit,
            });
        }
        self.layer_bytes = self.layer_bytes.saturating_add(size);
        if let Some(limit) = limits.max_layer_size.filter(|&l| self.layer_bytes > l) {
            return Err(Error::LayerLimit {
                path: path(),
                size: self.layer_bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Returns a hard-link header if this inode was already written. Past
    /// [`MAX_LINK_PATH_BYTES`] of remembered paths (a deep tree of linked
    /// files), further linked inodes are written in full under each name.
    fn hardlink(&mut self, h: &Header, st: &FileStat) -> Option<Header> {
        let used = &mut self.link_path_bytes;
        let target = self
            .hardlinks
            .seen(st, || {
                (*used + h.path.len() <= MAX_LINK_PATH_BYTES).then(|| {
                    *used += h.path.len();
                    h.path.clone()
                })
            })?
            .as_ref()?;
        Some(Header {
            kind: Kind::HardLink {
                target: target.clone(),
            },
            xattrs: Vec::new(),
            ..h.clone()
        })
    }

    fn emit_linkable(&mut self, h: Header, st: &FileStat, visitor: &mut dyn Visitor) -> Result<()> {
        let h = self.hardlink(&h, st).unwrap_or(h);
        visitor.event(&Event::entry(&h, st), None)?;
        Ok(())
    }
}

/// The children a journaled delta pass looks at in directory `dir` (baseline
/// node `base`), without listing it: the names the journal listed, each a
/// whiteout if it is gone and an earlier pass wrote it, and the directories on
/// the way to other listed names.
fn journaled_children(
    dir: &OwnedFd,
    host: &Path,
    b: &Baseline,
    visit: &Visit,
    base: NodeId,
    absent: &mut Vec<(NodeId, Box<[u8]>)>,
) -> Result<Vec<Child>> {
    let mut todo = Vec::new();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    for name in visit.names(base) {
        seen.insert(name);
        let cname = bytes_cstring(name, host)?;
        match stat_at(dir.as_fd(), &cname) {
            Ok(_) => todo.push(Child {
                name: name.to_vec(),
                real: true,
                node: None,
                deleted: false,
            }),
            Err(Errno::NOENT) => {
                if b.child(base, name).and_then(|id| b.get(id)).is_some() {
                    todo.push(Child {
                        name: name.to_vec(),
                        real: false,
                        node: None,
                        deleted: true,
                    });
                } else {
                    absent.push((base, name.clone()));
                }
            }
            Err(e) => return Err(e).at(host.join(OsStr::from_bytes(name))),
        }
    }
    for (name, id) in b.children(base) {
        if visit.enters(id) && seen.insert(name) {
            todo.push(Child {
                name: name.to_vec(),
                real: true,
                node: None,
                deleted: false,
            });
        }
    }
    Ok(todo)
}

/// Xattrs of an entry that cannot be opened (device, FIFO), read through its
/// directory's fd without following the entry itself.
fn unopened_xattrs(dir: &OwnedFd, name: &[u8], host: &Path) -> Result<Xattrs> {
    xattr::list_at(dir.as_fd(), name, &CONTAINER_XATTRS).at(host)
}

/// Bytes of layer paths kept to write later names of a linked inode as hard
/// links.
const MAX_LINK_PATH_BYTES: usize = if cfg!(test) { 64 << 10 } else { 16 << 20 };

/// How many directory fds the walk may hold: [`MAX_OPEN_DIRS`], or a quarter of
/// the process's fd limit when that is lower.
fn max_open_dirs() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    MAX_OPEN_DIRS
        .min(usize::try_from(soft / 4).unwrap_or(MAX_OPEN_DIRS))
        .max(8)
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
