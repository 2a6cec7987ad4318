//! The tree walk: reads an overlay upper dir and plain trees grafted into it (the
//! scratch home, included mounts) with fd-relative syscalls, and hands every entry
//! to a [`Visitor`] in a stable, sorted order.
//!
//! Session content is written by an untrusted user, so the walk never follows a
//! symlink (every open is `openat(dirfd, name, O_NOFOLLOW)`), opens a regular file
//! only after checking the fd is the inode it stat'ed, never opens FIFOs or
//! devices, and never leaves a tree's filesystem. It is iterative, and keeps at
//! most [`MAX_OPEN_DIRS`] directory fds open however deep the tree.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, fstatat, major, minor, FileStat, Mode, SFlag};
use serde::Serialize;

use crate::delta::{Baseline, State};
use crate::error::{Error, IoContext, Result};
use crate::tar::{Header, Kind};

/// Extended attributes as (name, value) pairs, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Directory fds kept open at once; deeper directories are reopened on demand.
pub const MAX_OPEN_DIRS: usize = 256;
/// Skipped entries listed one by one in a report; the rest are only counted.
const MAX_LISTED: usize = 1000;

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

/// A plain directory tree placed at a path of the container.
#[derive(Debug, Clone)]
pub struct Graft {
    /// Absolute container path, e.g. `/home/work`.
    pub at: PathBuf,
    /// The host directory whose content appears there.
    pub source: PathBuf,
}

/// What to read: an overlay upper dir at `/`, plain trees grafted at container
/// paths, and container paths to leave out.
#[derive(Debug, Clone, Default)]
pub struct TreeSpec {
    pub upper: Option<PathBuf>,
    /// Lower dirs, topmost first: the data of metacopy files and the metadata of
    /// parent directories that only exist below the upper dir.
    pub lowers: Vec<PathBuf>,
    pub grafts: Vec<Graft>,
    pub exclude: Exclude,
    pub overlay_xattrs: OverlayXattrs,
}

/// Container paths left out of the layer: glob patterns and exact paths.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    patterns: Vec<String>,
    set: GlobSet,
    /// Absolute paths matched as they are (mount points), whatever they hold.
    exact: std::collections::HashSet<Vec<u8>>,
}

impl Exclude {
    /// Patterns match absolute container paths; one without a leading `/` matches
    /// at any depth. An excluded directory is left out with everything below it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut b = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            let full = if p.starts_with('/') {
                p.trim_end_matches('/').to_string()
            } else {
                format!("**/{}", p.trim_end_matches('/'))
            };
            let glob = GlobBuilder::new(if full.is_empty() { "/" } else { &full })
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::Pattern {
                    pattern: p.to_string(),
                    message: e.kind().to_string(),
                })?;
            b.add(glob);
            kept.push(p.to_string());
        }
        let set = b.build().map_err(|e| Error::Pattern {
            pattern: kept.join(", "),
            message: e.to_string(),
        })?;
        Ok(Exclude {
            patterns: kept,
            set,
            exact: Default::default(),
        })
    }

    /// Also leaves out these absolute paths, taken literally (no glob syntax).
    pub fn with_paths<P: AsRef<Path>>(mut self, paths: &[P]) -> Self {
        for p in paths {
            let b = p.as_ref().as_os_str().as_bytes();
            let trimmed = if b.len() > 1 {
                b.strip_suffix(b"/").unwrap_or(b)
            } else {
                b
            };
            self.exact.insert(trimmed.to_vec());
        }
        self
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    fn matches(&self, container_path: &[u8]) -> bool {
        self.exact.contains(container_path)
            || !self.patterns.is_empty()
                && self
                    .set
                    .is_match(Path::new(OsStr::from_bytes(container_path)))
    }
}

/// Identity and state of an entry as the walk saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub ctime_sec: i64,
    pub ctime_nsec: i64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

impl From<&FileStat> for Ident {
    fn from(st: &FileStat) -> Self {
        Ident {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mode: st.st_mode,
            ctime_sec: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec,
            mtime_sec: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
        }
    }
}

/// One entry of the layer, in output order.
pub struct Entry<'a> {
    pub header: &'a Header,
    /// The inode the header was made from; `None` for synthesized entries
    /// (whiteouts, opaque markers, parent directories of a graft).
    pub ident: Option<Ident>,
}

/// Receives the walk's entries and writes them somewhere.
pub trait Visitor {
    /// `data` is the opened file for a regular-file entry, positioned at 0; the
    /// visitor reads at most the header's size from it and returns how many bytes
    /// it got.
    fn entry(&mut self, entry: &Entry<'_>, data: Option<&mut File>) -> Result<u64>;
}

/// Why an entry was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Socket,
    /// A name beginning with `.wh.` cannot be stored in an OCI layer.
    ReservedName,
    /// A char device 0/0 outside the overlay upper dir reads as a whiteout.
    WhiteoutDevice,
    /// A directory on another filesystem (a mount point) inside a tree.
    OtherFilesystem,
    /// Gone between the directory listing and the open.
    Vanished,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

/// Counters and notes from one walk.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WalkReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub fifos: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    /// Bytes of regular-file content read.
    pub bytes: u64,
    pub excluded: u64,
    /// Skipped entries by reason.
    pub skipped_counts: BTreeMap<SkipReason, u64>,
    /// The first skipped entries, with their paths.
    pub skipped: Vec<Skipped>,
    /// Files whose size or times changed while they were read; the layer holds
    /// what was read, padded or cut to the size first seen.
    pub changed: Vec<String>,
}

impl WalkReport {
    /// Entries written: every kind counted here, whiteouts included.
    pub fn entries(&self) -> u64 {
        self.files
            + self.dirs
            + self.symlinks
            + self.hardlinks
            + self.devices
            + self.fifos
            + self.whiteouts
            + self.opaque_dirs
    }

    fn skip(&mut self, path: &[u8], reason: SkipReason) {
        *self.skipped_counts.entry(reason).or_default() += 1;
        if self.skipped.len() < MAX_LISTED {
            self.skipped.push(Skipped {
                path: display_path(path),
                reason,
            });
        }
    }
}

/// Live counters a progress display can read while the walk runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub entries: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: std::sync::Arc<AtomicU64>,
}

fn display_path(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// A node of the graft trie: which container paths lead to a graft.
#[derive(Default)]
struct Node {
    children: BTreeMap<Vec<u8>, usize>,
    graft: Option<usize>,
}

/// How to get a directory fd back after it was closed to save descriptors.
enum Reopen {
    /// `name` inside the parent frame's directory.
    Child(Vec<u8>),
    /// An absolute host path given by the caller (a tree root).
    Root(PathBuf),
    /// A directory synthesized for a graft's parents: it has no fd.
    Virtual,
}

struct Frame {
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
    full: bool,
}

struct Child {
    name: Vec<u8>,
    /// Whether the directory listing has it (else it only leads to a graft).
    real: bool,
    node: Option<usize>,
    /// In a delta pass: the first pass wrote it and it is gone now.
    deleted: bool,
}

/// Which pass over a live tree this is.
pub enum Pass<'b> {
    /// Write everything.
    Full,
    /// Write everything and record what was written.
    Record(&'b mut Baseline),
    /// Write only what differs from the baseline, and whiteouts for what is gone.
    Delta(&'b Baseline),
}

struct TreeRoot {
    dev: u64,
    /// Overlay semantics (whiteouts, opaque dirs) apply in the upper dir only.
    overlay: bool,
}

/// Walks `spec` and feeds `visitor`; checks `cancel` before every entry.
pub fn walk(
    spec: &TreeSpec,
    visitor: &mut dyn Visitor,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<WalkReport> {
    walk_pass(spec, visitor, progress, cancel, Pass::Full)
}

/// [`walk`], recording into or comparing with a baseline.
pub fn walk_pass(
    spec: &TreeSpec,
    visitor: &mut dyn Visitor,
    progress: &Progress,
    cancel: &AtomicBool,
    mut pass: Pass<'_>,
) -> Result<WalkReport> {
    if let Pass::Record(b) = &mut pass {
        b.begin();
    }
    let mut walker = Walker::new(spec, progress, cancel, pass)?;
    walker.run(visitor)?;
    if let Some(b) = walker.recording() {
        b.seal();
    }
    Ok(walker.report)
}

struct Walker<'a> {
    spec: &'a TreeSpec,
    pass: Pass<'a>,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    nodes: Vec<Node>,
    roots: Vec<TreeRoot>,
    lowers: Vec<Dir>,
    stack: Vec<Frame>,
    open_dirs: usize,
    max_open: usize,
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    report: WalkReport,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn open_root(path: &Path) -> Result<(Dir, FileStat)> {
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
    fn new(
        spec: &'a TreeSpec,
        progress: &'a Progress,
        cancel: &'a AtomicBool,
        pass: Pass<'a>,
    ) -> Result<Self> {
        let mut nodes = vec![Node::default()];
        for (i, g) in spec.grafts.iter().enumerate() {
            let rel = container_rel(&g.at).ok_or_else(|| Error::Invalid {
                field: "graft path",
                message: format!("{} is not an absolute path below /", g.at.display()),
            })?;
            let mut at = 0;
            for comp in rel.split(|&b| b == b'/') {
                let next = nodes.len();
                let id = *nodes[at].children.entry(comp.to_vec()).or_insert(next);
                if id == next {
                    nodes.push(Node::default());
                }
                at = id;
            }
            if nodes[at].graft.replace(i).is_some() {
                return Err(Error::Invalid {
                    field: "graft path",
                    message: format!("{} is given twice", g.at.display()),
                });
            }
        }
        let lowers = spec
            .lowers
            .iter()
            .map(|p| open_root(p).map(|(d, _)| d))
            .collect::<Result<Vec<_>>>()?;
        Ok(Walker {
            spec,
            pass,
            progress,
            cancel,
            nodes,
            roots: Vec::new(),
            lowers,
            stack: Vec::new(),
            open_dirs: 0,
            max_open: max_open_dirs(),
            hardlinks: HashMap::new(),
            report: WalkReport::default(),
        })
    }

    fn run(&mut self, visitor: &mut dyn Visitor) -> Result<()> {
        // Tree 0 is the upper dir; with none, a virtual root that only holds grafts.
        let root_frame = match &self.spec.upper {
            Some(upper) => {
                let (dir, st) = open_root(upper)?;
                self.roots.push(TreeRoot {
                    dev: st.st_dev,
                    overlay: true,
                });
                self.check_dir_xattrs(&dir, upper)?;
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
    fn frame(
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
            for (name, &id) in &self.nodes[n].children {
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
            let now: std::collections::HashSet<&[u8]> =
                todo.iter().map(|c| c.name.as_slice()).collect();
            let gone: Vec<Child> = b
                .children(&path)
                .iter()
                .filter(|n| !now.contains(n.as_slice()))
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

    fn virtual_frame(&mut self, path: Vec<u8>, host: PathBuf, node: usize, full: bool) -> Frame {
        let mut todo: Vec<Child> = self.nodes[node]
            .children
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
    fn delta(&self) -> Option<&Baseline> {
        if self.stack.last().is_some_and(|f| f.full) {
            return None;
        }
        match &self.pass {
            Pass::Delta(b) => Some(b),
            _ => None,
        }
    }

    /// The baseline this pass records into, if it records.
    fn recording(&mut self) -> Option<&mut Baseline> {
        match &mut self.pass {
            Pass::Record(b) => Some(b),
            _ => None,
        }
    }

    fn record(&mut self, rel: &[u8], st: &FileStat) {
        if let Some(b) = self.recording() {
            b.record(rel, State::from(st));
        }
    }

    fn push(&mut self, frame: Frame) {
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
            let h = whiteout_header(&rel, 0);
            visitor.entry(
                &Entry {
                    header: &h,
                    ident: None,
                },
                None,
            )?;
            self.report.whiteouts += 1;
            return Ok(());
        }

        if let Some(graft) = child.node.and_then(|n| self.nodes[n].graft) {
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
        if child.name.starts_with(b".wh.") {
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
        let is_whiteout = kind == SFlag::S_IFCHR && st.st_rdev == 0;
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
            let now = State::from(&st);
            if b.unchanged(&rel, &now) {
                if kind == SFlag::S_IFDIR {
                    return self.dir(rel, host, cname, &st, child.node, false, false, visitor);
                }
                return Ok(());
            }
            let old = b.get(&rel).copied();
            let replaced = old.is_some_and(|old| {
                old.is_dir() != now.is_dir() || (now.is_dir() && old.ino != now.ino)
            });
            subtree_full = replaced || old.is_none();
            if replaced && !is_whiteout {
                // Say the old entry is gone before writing the new one in its
                // place: a whiteout applies to the layers below, not this one.
                let h = whiteout_header(&rel, st.st_mtime);
                visitor.entry(
                    &Entry {
                        header: &h,
                        ident: None,
                    },
                    None,
                )?;
                self.report.whiteouts += 1;
            }
        }
        self.record(&rel, &st);
        if is_whiteout {
            return self.whiteout(&rel, &st, visitor);
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
                let x = self.path_xattrs(dirfd, &child.name, &host)?;
                self.emit_linkable(header(k, x), &st, visitor)?;
                self.report.devices += 1;
                Ok(())
            }
            SFlag::S_IFIFO => {
                let x = self.path_xattrs(dirfd, &child.name, &host)?;
                self.emit_linkable(header(Kind::Fifo, x), &st, visitor)?;
                self.report.fifos += 1;
                Ok(())
            }
            _ => unreachable!("sockets are skipped above"),
        }
    }

    fn whiteout(&mut self, rel: &[u8], st: &FileStat, visitor: &mut dyn Visitor) -> Result<()> {
        let h = whiteout_header(rel, st.st_mtime);
        visitor.entry(
            &Entry {
                header: &h,
                ident: Some(Ident::from(st)),
            },
            None,
        )?;
        self.report.whiteouts += 1;
        Ok(())
    }

    fn opaque_marker(&mut self, dir: &[u8], visitor: &mut dyn Visitor) -> Result<()> {
        let mut path = dir.to_vec();
        path.extend_from_slice(b"/.wh..wh..opq");
        let h = Header::plain_file(path, 0, 0o644);
        visitor.entry(
            &Entry {
                header: &h,
                ident: None,
            },
            None,
        )?;
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
            let overlay = self.roots[tree].overlay;
            let (xattrs, opaque) = if overlay {
                self.check_dir_xattrs(&dir, &host)?
            } else {
                (fd_xattrs(dir.as_raw_fd(), &host)?, false)
            };
            let h = header_from(&rel, Kind::Dir, &now, xattrs);
            visitor.entry(
                &Entry {
                    header: &h,
                    ident: Some(Ident::from(&now)),
                },
                None,
            )?;
            self.report.dirs += 1;
            if opaque {
                self.opaque_marker(&rel, visitor)?;
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

    /// Reads a directory's xattrs in the upper dir: refuses overlay features the
    /// layer could not express faithfully, and says whether it is opaque.
    fn check_dir_xattrs(&self, dir: &Dir, host: &Path) -> Result<(Xattrs, bool)> {
        let ns = self.spec.overlay_xattrs;
        let fd = dir.as_raw_fd();
        let redirect = get_xattr(fd, &ns.name("redirect"), host)?;
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
        let opaque = get_xattr(fd, &ns.name("opaque"), host)?.is_some_and(|v| v == b"y");
        let xattrs = fd_xattrs(fd, host)?;
        Ok((xattrs, opaque))
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
            let ns = self.spec.overlay_xattrs;
            if get_xattr(file.as_raw_fd(), &ns.name("whiteout"), host)?.is_some() {
                return self.whiteout(rel, &now, visitor);
            }
            if get_xattr(file.as_raw_fd(), &ns.name("metacopy"), host)?.is_some() {
                let redirect = get_xattr(file.as_raw_fd(), &ns.name("redirect"), host)?;
                data_file = Some(self.metacopy_data(rel, redirect.as_deref(), host, &now)?);
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
            visitor.entry(
                &Entry {
                    header: &h,
                    ident: Some(Ident::from(&now)),
                },
                None,
            )?;
            self.report.hardlinks += 1;
            return Ok(());
        }
        let src = data_file.as_mut().unwrap_or(&mut file);
        let got = visitor.entry(
            &Entry {
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

    /// Finds the data of a metacopy file in the lower dirs.
    fn metacopy_data(
        &self,
        rel: &[u8],
        redirect: Option<&[u8]>,
        host: &Path,
        st: &FileStat,
    ) -> Result<File> {
        if self.lowers.is_empty() {
            return Err(Error::Refused {
                path: host.to_path_buf(),
                message: "file holds only metadata (overlay metacopy=on); its data is in a lower \
                          dir: pass the lower dirs (--lower) so the layer can include it"
                    .into(),
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
        let lst = fstat(file.as_raw_fd()).at(host)?;
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

    /// Looks `rel` up through the lower dirs as overlayfs would. With `open`, a
    /// regular file found is opened; otherwise only its stat is returned.
    fn lower_lookup(&self, rel: &[u8], open: bool) -> Result<Option<(Option<File>, FileStat)>> {
        let comps: Vec<&[u8]> = rel
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let ns = self.spec.overlay_xattrs;
        'layers: for (i, lower) in self.lowers.iter().enumerate() {
            let host = self.spec.lowers[i].join(OsStr::from_bytes(rel));
            let mut cur: Option<OwnedFd> = None;
            let mut opaque_above = false;
            for (k, comp) in comps.iter().enumerate() {
                let at = cur.as_ref().map_or(lower.as_raw_fd(), |f| f.as_raw_fd());
                let c = bytes_cstring(comp);
                let st = match fstatat(
                    Some(at),
                    c.as_c_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) => st,
                    Err(Errno::ENOENT | Errno::ENOTDIR) => {
                        if opaque_above {
                            return Ok(None);
                        }
                        continue 'layers;
                    }
                    Err(e) => return Err(e).at(&host),
                };
                let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
                if kind == SFlag::S_IFCHR && st.st_rdev == 0 {
                    return Ok(None);
                }
                let last = k + 1 == comps.len();
                if last {
                    if !open || kind != SFlag::S_IFREG {
                        return Ok(Some((None, st)));
                    }
                    let fd = openat(
                        Some(at),
                        c.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                        Mode::empty(),
                    )
                    .at(&host)?;
                    // SAFETY: `openat` just returned this fd and nothing else owns it.
                    #[allow(unsafe_code)]
                    let f = unsafe { File::from_raw_fd(fd) };
                    if get_xattr(f.as_raw_fd(), &ns.name("metacopy"), &host)?.is_some() {
                        continue 'layers;
                    }
                    return Ok(Some((Some(f), st)));
                }
                if kind != SFlag::S_IFDIR {
                    return Ok(None);
                }
                let fd = openat(Some(at), c.as_c_str(), DIR_FLAGS, Mode::empty()).at(&host)?;
                // SAFETY: `openat` just returned this fd and nothing else owns it.
                #[allow(unsafe_code)]
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if get_xattr(owned.as_raw_fd(), &ns.name("opaque"), &host)?
                    .is_some_and(|v| v == b"y")
                {
                    opaque_above = true;
                }
                cur = Some(owned);
            }
            if comps.is_empty() {
                return Ok(Some((None, fstat(lower.as_raw_fd()).at(&host)?)));
            }
        }
        Ok(None)
    }

    /// A directory that is on the way to a graft but not in the upper dir:
    /// its metadata is the lower dirs' when they have it.
    fn enter_virtual(
        &mut self,
        rel: Vec<u8>,
        host: PathBuf,
        node: usize,
        opaque: bool,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let full = self.stack.last().is_some_and(|f| f.full);
        if self.delta().is_some() && !opaque {
            // Made from the lower dirs' metadata, which a session cannot change.
            let frame = self.virtual_frame(rel, host, node, full);
            self.push(frame);
            return Ok(());
        }
        let st = if opaque {
            None
        } else {
            self.lower_lookup(&rel, false)?.map(|(_, st)| st)
        };
        let mut h = Header {
            path: rel.clone(),
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        };
        if let Some(st) = st.filter(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits())
        {
            h.mode = st.st_mode & 0o7777;
            h.uid = st.st_uid;
            h.gid = st.st_gid;
            h.mtime_sec = st.st_mtime;
            h.mtime_nsec = st.st_mtime_nsec as u32;
        }
        visitor.entry(
            &Entry {
                header: &h,
                ident: None,
            },
            None,
        )?;
        self.report.dirs += 1;
        if opaque {
            self.opaque_marker(&rel, visitor)?;
        }
        let frame = self.virtual_frame(rel, host, node, full);
        self.push(frame);
        Ok(())
    }

    fn enter_graft(
        &mut self,
        graft: usize,
        rel: Vec<u8>,
        node: Option<usize>,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let source = self.spec.grafts[graft].source.clone();
        let (dir, st) = open_root(&source)?;
        let full = self.stack.last().is_some_and(|f| f.full);
        let changed = self
            .delta()
            .is_none_or(|b| !b.unchanged(&rel, &State::from(&st)));
        if changed {
            let xattrs = fd_xattrs(dir.as_raw_fd(), &source)?;
            let h = header_from(&rel, Kind::Dir, &st, xattrs);
            visitor.entry(
                &Entry {
                    header: &h,
                    ident: Some(Ident::from(&st)),
                },
                None,
            )?;
            self.report.dirs += 1;
        }
        if self.delta().is_none() {
            // A graft is a mount: it hides whatever the image and the upper dir
            // hold at its path, so in the layer the directory is opaque.
            self.opaque_marker(&rel, visitor)?;
        }
        self.record(&rel, &st);
        let frame = self.frame(
            Some(dir),
            Reopen::Root(source.clone()),
            &st,
            rel,
            source,
            graft + 1,
            node,
            full,
        )?;
        self.push(frame);
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
        visitor.entry(
            &Entry {
                header: &h,
                ident: Some(Ident::from(st)),
            },
            None,
        )?;
        Ok(())
    }

    /// Xattrs of an entry that cannot be opened (device, FIFO), read through the
    /// directory fd's /proc link without following the entry itself.
    fn path_xattrs(&self, dirfd: RawFd, name: &[u8], host: &Path) -> Result<Xattrs> {
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

fn fd_xattrs(fd: RawFd, host: &Path) -> Result<Xattrs> {
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

fn get_xattr(fd: RawFd, name: &str, host: &Path) -> Result<Option<Vec<u8>>> {
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

/// The OCI whiteout `DIR/.wh.NAME` for `rel`.
fn whiteout_header(rel: &[u8], mtime: i64) -> Header {
    let (parent, name) = split_last(rel);
    let mut path = parent.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(b".wh.");
    path.extend_from_slice(name);
    let mut h = Header::plain_file(path, 0, 0o644);
    h.mtime_sec = mtime;
    h
}

fn header_from(rel: &[u8], kind: Kind, st: &FileStat, xattrs: Xattrs) -> Header {
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

fn absolute(rel: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(rel.len() + 1);
    p.push(b'/');
    p.extend_from_slice(rel);
    p
}

fn split_last(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// A container path below `/` as relative bytes with normalised separators.
fn container_rel(p: &Path) -> Option<Vec<u8>> {
    let b = p.as_os_str().as_bytes();
    if !b.starts_with(b"/") {
        return None;
    }
    let comps: Vec<&[u8]> = b
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if comps.is_empty() || comps.contains(&&b".."[..]) {
        return None;
    }
    Some(comps.join(&b'/'))
}

fn bytes_cstring(name: &[u8]) -> CString {
    // Names from getdents never hold NUL.
    CString::new(name).expect("directory entry names hold no NUL byte")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    /// Records entries as `path kind` lines plus file contents.
    #[derive(Default)]
    struct Collect {
        lines: Vec<String>,
        data: BTreeMap<String, Vec<u8>>,
        max_fds: usize,
    }

    impl Visitor for Collect {
        fn entry(&mut self, e: &Entry<'_>, data: Option<&mut File>) -> Result<u64> {
            let h = e.header;
            let path = String::from_utf8_lossy(&h.path).into_owned();
            let kind = match &h.kind {
                Kind::File { .. } => "file".to_string(),
                Kind::Dir => "dir".into(),
                Kind::Symlink { target } => format!("symlink->{}", String::from_utf8_lossy(target)),
                Kind::HardLink { target } => format!("link->{}", String::from_utf8_lossy(target)),
                Kind::Char { major, minor } => format!("char {major}:{minor}"),
                Kind::Block { .. } => "block".into(),
                Kind::Fifo => "fifo".into(),
            };
            self.lines.push(format!("{path} {kind}"));
            self.max_fds = self
                .max_fds
                .max(fs::read_dir("/proc/self/fd").unwrap().count());
            match data {
                Some(f) => {
                    let mut buf = Vec::new();
                    f.take(h.data_size()).read_to_end(&mut buf).unwrap();
                    let n = buf.len() as u64;
                    self.data.insert(path, buf);
                    Ok(n)
                }
                None => Ok(0),
            }
        }
    }

    fn run(spec: &TreeSpec) -> (Collect, WalkReport) {
        let mut c = Collect::default();
        let r = walk(spec, &mut c, &Progress::default(), &AtomicBool::new(false)).unwrap();
        (c, r)
    }

    fn upper(dir: &Path) -> TreeSpec {
        TreeSpec {
            upper: Some(dir.to_path_buf()),
            ..TreeSpec::default()
        }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn entries_come_sorted_with_links_and_sockets_left_out() {
        let t = tempfile::tempdir().unwrap();
        let u = t.path();
        fs::create_dir_all(u.join("b/sub")).unwrap();
        fs::write(u.join("b/sub/f"), b"hello").unwrap();
        fs::write(u.join("a"), b"x").unwrap();
        fs::hard_link(u.join("a"), u.join("c")).unwrap();
        symlink("/etc", u.join("b/etc")).unwrap();
        nix::unistd::mkfifo(&u.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(u.join("sock")).unwrap();
        let (c, r) = run(&upper(u));
        assert_eq!(
            c.lines,
            vec![
                "a file",
                "b dir",
                "b/etc symlink->/etc",
                "b/sub dir",
                "b/sub/f file",
                "c link->a",
                "fifo fifo",
            ]
        );
        assert_eq!(c.data["b/sub/f"], b"hello");
        assert_eq!(r.skipped_counts.get(&SkipReason::Socket), Some(&1));
        assert_eq!(r.skipped[0].path, "/sock");
        assert_eq!((r.files, r.hardlinks, r.symlinks, r.fifos), (2, 1, 1, 1));
    }

    #[test]
    fn symlinks_are_never_followed_even_when_swapped_in() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"do not copy").unwrap();
        symlink(outside.path(), t.path().join("dir")).unwrap();
        symlink(outside.path().join("secret"), t.path().join("file")).unwrap();
        let (c, _) = run(&upper(t.path()));
        assert_eq!(c.lines.len(), 2);
        assert!(c.data.is_empty());
        assert!(c.lines.iter().all(|l| l.contains("symlink->")));
    }

    #[test]
    fn excludes_match_container_paths_and_prune_directories() {
        let t = tempfile::tempdir().unwrap();
        let u = t.path();
        fs::create_dir_all(u.join("home/work/data/deep")).unwrap();
        fs::write(u.join("home/work/data/deep/x"), b"").unwrap();
        fs::write(u.join("home/work/a.pyc"), b"").unwrap();
        fs::write(u.join("home/work/keep.py"), b"").unwrap();
        let mut spec = upper(u);
        spec.exclude = Exclude::new(&["/home/work/data", "*.pyc"]).unwrap();
        let (c, r) = run(&spec);
        assert_eq!(
            c.lines,
            vec!["home dir", "home/work dir", "home/work/keep.py file"]
        );
        assert_eq!(r.excluded, 2);
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Exclude::new(&["/a/[b"]).unwrap_err().to_string();
        assert!(err.contains("/a/[b"), "{err}");
    }

    #[test]
    fn the_home_is_grafted_over_whatever_the_upper_has_there() {
        let t = tempfile::tempdir().unwrap();
        let (u, home, lower) = (t.path().join("u"), t.path().join("h"), t.path().join("l"));
        fs::create_dir_all(u.join("etc")).unwrap();
        fs::write(u.join("etc/motd"), b"hi").unwrap();
        fs::create_dir_all(home.join("proj")).unwrap();
        fs::write(home.join("proj/train.py"), b"print()").unwrap();
        fs::create_dir_all(lower.join("home")).unwrap();
        fs::set_permissions(lower.join("home"), fs::Permissions::from_mode(0o711)).unwrap();
        let spec = TreeSpec {
            upper: Some(u.clone()),
            lowers: vec![lower.clone()],
            grafts: vec![Graft {
                at: "/home/work".into(),
                source: home.clone(),
            }],
            ..TreeSpec::default()
        };
        let (c, _) = run(&spec);
        assert_eq!(
            c.lines,
            vec![
                "etc dir",
                "etc/motd file",
                "home dir",
                "home/work dir",
                // The mount hides what the image has at the home path.
                "home/work/.wh..wh..opq file",
                "home/work/proj dir",
                "home/work/proj/train.py file"
            ]
        );
        // Now the upper has a placeholder with content at the mount point.
        fs::create_dir_all(u.join("home/work/stale")).unwrap();
        let (c2, _) = run(&spec);
        assert_eq!(c.lines, c2.lines);
    }

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn deep_trees_keep_few_descriptors_open() {
        let t = tempfile::tempdir().unwrap();
        let depth = MAX_OPEN_DIRS * 2 + 10;
        let mut fd = nix::fcntl::open(
            t.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        for i in 0..depth {
            nix::sys::stat::mkdirat(Some(fd), "d", Mode::from_bits_truncate(0o755)).unwrap();
            let f = openat(
                Some(fd),
                "f",
                OFlag::O_CREAT | OFlag::O_WRONLY,
                Mode::from_bits_truncate(0o644),
            )
            .unwrap();
            nix::unistd::write(
                // SAFETY: test-local fd, borrowed only for this call.
                #[allow(unsafe_code)]
                unsafe {
                    std::os::fd::BorrowedFd::borrow_raw(f)
                },
                i.to_string().as_bytes(),
            )
            .unwrap();
            nix::unistd::close(f).unwrap();
            let next = openat(
                Some(fd),
                "d",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .unwrap();
            nix::unistd::close(fd).unwrap();
            fd = next;
        }
        nix::unistd::close(fd).unwrap();
        let (c, r) = run(&upper(t.path()));
        assert_eq!(r.dirs as usize, depth);
        assert_eq!(r.files as usize, depth);
        // Files come before the subdirectory at every level ("d" < "f" sorts the
        // other way, so the file of each level comes after its whole subtree).
        assert!(
            c.lines.last().unwrap().ends_with("/f file") || c.lines.last().unwrap() == "f file"
        );
        assert_eq!(c.data["f"], b"0");
        assert!(c.max_fds < MAX_OPEN_DIRS + 64, "{} fds open", c.max_fds);
    }

    #[test]
    fn reserved_whiteout_names_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join(".wh.bashrc"), b"").unwrap();
        let (c, r) = run(&upper(t.path()));
        assert!(c.lines.is_empty());
        assert_eq!(r.skipped_counts.get(&SkipReason::ReservedName), Some(&1));
    }

    #[test]
    fn overlay_whiteouts_and_opaque_dirs_become_oci_ones() {
        if !is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root: this test must not skip"
            );
            eprintln!("skipped: mknod of a whiteout and trusted.* xattrs need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let u = t.path();
        nix::sys::stat::mknod(
            &u.join("gone"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        fs::create_dir(u.join("opq")).unwrap();
        xattr::set(u.join("opq"), "trusted.overlay.opaque", b"y").unwrap();
        fs::write(u.join("opq/new"), b"n").unwrap();
        fs::write(u.join("xwh"), b"").unwrap();
        xattr::set(u.join("xwh"), "trusted.overlay.whiteout", b"").unwrap();
        // user.overlay.* means nothing on a trusted-xattr overlay and is not kept.
        fs::create_dir(u.join("fake")).unwrap();
        xattr::set(u.join("fake"), "user.overlay.opaque", b"y").unwrap();
        let (c, r) = run(&upper(u));
        assert_eq!(
            c.lines,
            vec![
                "fake dir",
                ".wh.gone file",
                "opq dir",
                "opq/.wh..wh..opq file",
                "opq/new file",
                ".wh.xwh file"
            ]
        );
        assert_eq!((r.whiteouts, r.opaque_dirs), (2, 1));
        // The same device in the home is not a whiteout there.
        let home = tempfile::tempdir().unwrap();
        nix::sys::stat::mknod(
            &home.path().join("dev0"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        let spec = TreeSpec {
            grafts: vec![Graft {
                at: "/home/work".into(),
                source: home.path().into(),
            }],
            ..TreeSpec::default()
        };
        let (c, r) = run(&spec);
        assert_eq!(
            c.lines,
            vec!["home dir", "home/work dir", "home/work/.wh..wh..opq file"]
        );
        assert_eq!(r.skipped_counts.get(&SkipReason::WhiteoutDevice), Some(&1));
    }

    #[test]
    fn redirected_dirs_are_refused_and_metacopy_reads_the_lower() {
        if !is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root: this test must not skip"
            );
            eprintln!("skipped: trusted.* xattrs need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (u, l) = (t.path().join("u"), t.path().join("l"));
        fs::create_dir_all(u.join("moved")).unwrap();
        fs::create_dir_all(&l).unwrap();
        xattr::set(u.join("moved"), "trusted.overlay.redirect", b"/orig").unwrap();
        let mut c = Collect::default();
        let err = walk(
            &upper(&u),
            &mut c,
            &Progress::default(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("moved") && msg.contains("redirect_dir"),
            "{msg}"
        );

        fs::remove_dir(u.join("moved")).unwrap();
        fs::write(l.join("big"), b"lower data").unwrap();
        fs::write(u.join("big"), b"").unwrap();
        nix::unistd::truncate(&u.join("big"), 10).unwrap();
        xattr::set(u.join("big"), "trusted.overlay.metacopy", b"").unwrap();
        let err = walk(
            &upper(&u),
            &mut c,
            &Progress::default(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--lower"), "{err}");
        let mut spec = upper(&u);
        spec.lowers = vec![l];
        let (c, _) = run(&spec);
        assert_eq!(c.data["big"], b"lower data");
    }

    fn delta_lines(spec: &TreeSpec, base: &Baseline) -> Vec<String> {
        let mut c = Collect::default();
        walk_pass(
            spec,
            &mut c,
            &Progress::default(),
            &AtomicBool::new(false),
            Pass::Delta(base),
        )
        .unwrap();
        c.lines
    }

    fn recorded(spec: &TreeSpec) -> Baseline {
        // Entries older than the racy margin count as settled.
        std::thread::sleep(std::time::Duration::from_millis(120));
        let mut b = Baseline::new();
        let mut c = Collect::default();
        walk_pass(
            spec,
            &mut c,
            &Progress::default(),
            &AtomicBool::new(false),
            Pass::Record(&mut b),
        )
        .unwrap();
        b.seal();
        b
    }

    #[test]
    fn a_delta_pass_over_an_unchanged_tree_writes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("a/b")).unwrap();
        fs::write(t.path().join("a/b/f"), b"1").unwrap();
        fs::write(home.path().join("h"), b"1").unwrap();
        let spec = TreeSpec {
            upper: Some(t.path().into()),
            grafts: vec![Graft {
                at: "/home/work".into(),
                source: home.path().into(),
            }],
            ..TreeSpec::default()
        };
        let b = recorded(&spec);
        assert_eq!(b.len(), 5, "a, a/b, a/b/f, home/work, home/work/h");
        assert!(delta_lines(&spec, &b).is_empty());
    }

    #[test]
    fn a_delta_pass_writes_what_changed_and_whiteouts_for_what_went() {
        let t = tempfile::tempdir().unwrap();
        let u = t.path();
        for d in ["keep", "gone", "swap", "redo"] {
            fs::create_dir_all(u.join(d)).unwrap();
        }
        fs::write(u.join("keep/same"), b"s").unwrap();
        fs::write(u.join("keep/edit"), b"old").unwrap();
        fs::write(u.join("keep/rm"), b"x").unwrap();
        fs::write(u.join("gone/x"), b"x").unwrap();
        fs::write(u.join("swap/x"), b"x").unwrap();
        fs::write(u.join("redo/old"), b"x").unwrap();
        fs::write(u.join("mode"), b"m").unwrap();
        let spec = upper(u);
        let b = recorded(&spec);

        fs::write(u.join("keep/edit"), b"new!").unwrap();
        fs::remove_file(u.join("keep/rm")).unwrap();
        fs::write(u.join("keep/add"), b"a").unwrap();
        fs::remove_dir_all(u.join("gone")).unwrap();
        fs::remove_dir_all(u.join("swap")).unwrap();
        fs::write(u.join("swap"), b"now a file").unwrap();
        fs::remove_dir_all(u.join("redo")).unwrap();
        fs::create_dir(u.join("redo")).unwrap();
        fs::write(u.join("redo/new"), b"n").unwrap();
        fs::set_permissions(u.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();

        let mut c = Collect::default();
        walk_pass(
            &spec,
            &mut c,
            &Progress::default(),
            &AtomicBool::new(false),
            Pass::Delta(&b),
        )
        .unwrap();
        assert_eq!(
            c.lines,
            vec![
                ".wh.gone file",
                "keep dir",
                "keep/add file",
                "keep/edit file",
                "keep/.wh.rm file",
                "mode file",
                ".wh.redo file",
                "redo dir",
                "redo/new file",
                ".wh.swap file",
                "swap file",
            ]
        );
        assert_eq!(c.data["keep/edit"], b"new!");
    }
}
