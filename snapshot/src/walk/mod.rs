//! The tree walk: reads an overlay upper dir and plain trees grafted into it (the
//! scratch home, included mounts) with fd-relative syscalls, and hands every
//! entry, whiteout and opaque marker to a [`Visitor`] as an [`Event`], in a
//! stable, sorted order.
//!
//! The walk says *what* the layer holds; it does not know how a layer encodes
//! it: the `.wh.` names of OCI whiteouts and every tar detail belong to
//! [`crate::layer`]. The jobs are split by module: [`exclude`] (what to leave
//! out), [`graft`] (trees placed at container paths, the home among them),
//! [`overlay`] (whiteouts, opaque dirs, redirect refusal, metacopy), [`roots`]
//! (tree roots opened once and read through those fds only), `traverse`
//! (the fd-budgeted, iterative traversal itself); the choices of a delta pass
//! are [`crate::delta`]'s.
//!
//! Session content is written by an untrusted user, so the walk never follows a
//! symlink (every open is relative to a directory fd, with `O_NOFOLLOW`), reads a
//! regular file only through [`crate::fs::open::open_verified`] (the inode it
//! stat'ed, and no other), never opens FIFOs or devices, and never leaves a
//! tree's filesystem. Every syscall goes through [`crate::fs`]. It is iterative,
//! and keeps at most [`MAX_OPEN_DIRS`] directory fds open however deep the tree.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::sys::stat::FileStat;
use serde::Serialize;

use crate::delta::{Baseline, NodeId};
use crate::error::Result;
use crate::tar::Header;

pub mod exclude;
pub mod graft;
pub mod overlay;
pub mod roots;
mod traverse;

#[cfg(test)]
mod tests;

pub use exclude::{Exclude, Excluded, Secrets, DEFAULT_SECRETS};
pub use graft::Graft;
pub use overlay::OverlayXattrs;
pub use roots::{OpenRoots, RootDir};

pub use crate::fs::xattr::Xattrs;

/// Directory fds kept open at once; deeper directories are reopened on demand.
pub const MAX_OPEN_DIRS: usize = 256;
/// Skipped entries listed one by one in a report; the rest are only counted.
const MAX_LISTED: usize = 1000;
/// Bytes of a path listed in a report, at most.
const MAX_LISTED_PATH: usize = 4096;

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
    /// How large a file, and a layer, may be.
    pub limits: Limits,
    /// The roots opened once by [`TreeSpec::open_roots`]; empty (the default)
    /// when each pass opens them by path.
    pub roots: OpenRoots,
}

/// Sizes past which the walk stops with an error naming the file or the
/// layer; `None` is no limit. Apparent sizes count (a sparse file's holes
/// too): they are what a layer holds and an image unpacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one regular file's data ([`crate::Error::FileTooLarge`]).
    pub max_file_size: Option<u64>,
    /// Bytes of file data in one pass's layer
    /// ([`crate::Error::LayerLimit`]).
    pub max_layer_size: Option<u64>,
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

/// One thing the layer says, in output order. Paths are container paths,
/// relative, without a leading `/`.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A file, directory, symlink, hard link, device or FIFO, with the
    /// metadata it has in the layer.
    Entry {
        header: &'a Header,
        /// The inode the header was made from; `None` for synthesized
        /// directories (the parents of a graft).
        ident: Option<Ident>,
    },
    /// `path` is gone: whatever the layers below hold there is deleted.
    Whiteout {
        path: &'a [u8],
        /// When it went, as far as the tree says (0 when unknown).
        mtime: i64,
        /// The overlay whiteout it was read from, if any.
        ident: Option<Ident>,
    },
    /// Directory `dir` (written just before) hides everything the layers below
    /// hold under it.
    Opaque { dir: &'a [u8] },
}

impl<'a> Event<'a> {
    /// The entry `header` made from the inode `st` describes.
    pub fn entry(header: &'a Header, st: &FileStat) -> Self {
        Event::Entry {
            header,
            ident: Some(Ident::from(st)),
        }
    }
}

/// Receives the walk's events and writes them somewhere.
pub trait Visitor {
    /// `data` holds the opened file for a regular-file entry, positioned at 0;
    /// the visitor reads at most the header's size from it, tells
    /// [`Data::advance`] about each chunk it moves (for progress, and to stop
    /// on cancel inside a large file), and returns how many bytes it got.
    fn event(&mut self, event: &Event<'_>, data: Option<&mut Data<'_>>) -> Result<u64>;
}

/// A regular file's data as the walk hands it to a [`Visitor`].
pub struct Data<'a> {
    pub file: &'a mut File,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    /// Bytes already added to the progress through [`Data::advance`].
    counted: u64,
}

impl<'a> Data<'a> {
    pub fn new(file: &'a mut File, progress: &'a Progress, cancel: &'a AtomicBool) -> Self {
        Data {
            file,
            progress,
            cancel,
            counted: 0,
        }
    }

    /// Counts `n` more bytes moved; [`crate::Error::Cancelled`] once a cancel
    /// was asked for.
    pub fn advance(&mut self, n: u64) -> Result<()> {
        self.counted += n;
        self.progress.bytes_read.fetch_add(n, Ordering::Relaxed);
        if self.cancel.load(Ordering::Relaxed) {
            return Err(crate::Error::Cancelled);
        }
        Ok(())
    }

    /// Bytes counted so far.
    pub fn counted(&self) -> u64 {
        self.counted
    }
}

/// Why an entry was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Socket,
    /// A name a layer cannot store (see [`crate::layer::is_reserved_name`]).
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
    /// Paths left out as [`Secrets`] (with everything below them), the first
    /// 1000 of them.
    pub secrets_excluded: Vec<String>,
    /// Secrets left out beyond those listed (at least this many).
    pub secrets_unlisted: u64,
    /// Names a journaled delta pass looked at and found absent, that no
    /// recording pass wrote: nothing to say of them (see
    /// [`Baseline::forget_absent`]).
    #[serde(skip)]
    pub absent: Vec<(NodeId, Box<[u8]>)>,
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

    /// Whether `exclude` leaves out the absolute path `abs`; counts it, or
    /// lists it as a secret.
    fn left_out(&mut self, exclude: &Exclude, abs: &[u8]) -> bool {
        match exclude.check(abs) {
            None => return false,
            Some(Excluded::Pattern) => self.excluded += 1,
            Some(Excluded::Secret) => {
                if self.secrets_excluded.len() < MAX_LISTED {
                    self.secrets_excluded.push(display_path(abs));
                } else {
                    self.secrets_unlisted += 1;
                }
            }
        }
        true
    }

    /// Adds the secrets another pass left out: the passes of a live commit see
    /// the same secrets, each listed once.
    pub fn merge_secrets(&mut self, other: &WalkReport) {
        let known: std::collections::HashSet<String> =
            self.secrets_excluded.iter().cloned().collect();
        let mut more = 0;
        for p in &other.secrets_excluded {
            if known.contains(p) {
                continue;
            }
            if self.secrets_excluded.len() < MAX_LISTED {
                self.secrets_excluded.push(p.clone());
            } else {
                more += 1;
            }
        }
        self.secrets_unlisted = self.secrets_unlisted.max(other.secrets_unlisted) + more;
    }

    fn skip(&mut self, path: &[u8], reason: SkipReason) {
        *self.skipped_counts.entry(reason).or_default() += 1;
        if self.skipped.len() < MAX_LISTED {
            self.skipped.push(Skipped {
                path: listed_path(path),
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

/// Which pass over a live tree this is.
pub enum Pass<'b> {
    /// Write everything.
    Full,
    /// Write everything and record what was written.
    Record(&'b mut Baseline),
    /// Write only what differs from the baseline, and whiteouts for what is gone.
    Delta(&'b Baseline),
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
    let mut walker = traverse::Walker::new(spec, progress, cancel, pass)?;
    walker.run(visitor)?;
    if let Some(b) = walker.recording() {
        b.seal();
    }
    Ok(walker.report)
}

/// A path as a report lists it: one longer than [`MAX_LISTED_PATH`] bytes
/// (a deep tree's) keeps its start and its end around a `...`, so that a
/// full list stays small.
fn listed_path(p: &[u8]) -> String {
    if p.len() <= MAX_LISTED_PATH {
        return display_path(p);
    }
    let half = MAX_LISTED_PATH / 2;
    format!(
        "{}...{}",
        display_path(&p[..half]),
        display_path(&p[p.len() - half..])
    )
}

fn display_path(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
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

/// `name` as a C string, for `*at` calls. Names from getdents never hold a
/// NUL byte, but no content of a tree may reach a panic: one that does is
/// refused, at `host`.
fn bytes_cstring(name: &[u8], host: &std::path::Path) -> Result<CString> {
    CString::new(name).map_err(|_| crate::Error::Refused {
        path: host.to_path_buf(),
        message: "name holds a NUL byte".into(),
    })
}
