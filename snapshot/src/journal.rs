//! A change journal over live trees: an inotify watch on every directory a live
//! pass reads, so that a later pass need look again only at the names the
//! journal lists, not at every entry of the tree.
//!
//! A directory is watched *before* it is listed, so a change to one of its
//! entries is either seen by the pass that reads it or journaled afterwards.
//! Writes made through overlayfs reach the upper dir's inodes and are reported
//! there; a bind-mounted home's host directory likewise.
//!
//! The journal is complete only as long as the kernel delivered every event.
//! It says it is not ([`Changes::incomplete`]) when the event queue overflowed,
//! a watch could not be added (the per-user watch limit), or a watched
//! filesystem went away; the caller then re-reads everything, as without a
//! journal. What inotify never reports is the caller's to cover: writes through
//! shared writable mappings, and a file with several links changed through a
//! name in a directory that is not watched.
//!
//! Events are drained by a thread of the journal's own, so the kernel's queue
//! (`fs.inotify.max_queued_events`) does not fill during a long pass.
//! [`Journal::sync`] is a barrier: it touches a file in a private directory
//! the journal watches too, and returns once that event came back, so every
//! event queued before the call (every write a frozen session made) is in the
//! result.

use std::collections::hash_map::Entry;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

/// What a watched directory reports: changes to its entries (content,
/// metadata, names) and to itself.
const WATCH: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR);

/// How long a barrier is waited for before it is made again.
const BARRIER_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// How many barriers [`Journal::sync`] makes before it gives up on one
/// arriving, and reports the journal [`Incomplete::Behind`].
const BARRIER_TRIES: u64 = 20;

/// How many times [`Journal`]'s drop asks the reader to stop.
const STOP_TRIES: u32 = 20;

/// Why a journal cannot be trusted to list every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incomplete {
    /// No journal was started.
    NotStarted,
    /// The kernel's event queue overflowed and events were dropped.
    QueueOverflow,
    /// A directory could not be watched (`ENOSPC`: the per-user watch limit).
    Watch { errno: Errno },
    /// A watched filesystem was unmounted.
    Unmounted,
    /// Reading events failed.
    Read { errno: Errno },
    /// The reader did not catch up with a barrier in time (a loaded machine).
    Behind,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incomplete::NotStarted => f.write_str("no change journal was started"),
            Incomplete::QueueOverflow => f.write_str("the kernel's event queue overflowed"),
            Incomplete::Watch { errno } => write!(f, "a directory could not be watched: {errno}"),
            Incomplete::Unmounted => f.write_str("a watched filesystem was unmounted"),
            Incomplete::Read { errno } => write!(f, "reading change events failed: {errno}"),
            Incomplete::Behind => f.write_str("the change journal did not catch up in time"),
        }
    }
}

/// A directory, as the caller numbers the directories it asks to watch.
pub type DirKey = u32;

/// What changed since the journal started or since the last [`Journal::sync`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Names in each directory whose entry changed in any way (created,
    /// deleted, renamed from or to, written, attributes changed).
    pub names: HashMap<DirKey, HashSet<Box<[u8]>>>,
    /// Directories whose own inode changed (attributes, moved, deleted).
    pub dirs: HashSet<DirKey>,
    /// Directories whose watched inode was deleted or moved away: whatever is
    /// at their path now (a new directory, maybe with the same inode number)
    /// is watched by no one, nor is anything below it.
    pub gone: HashSet<DirKey>,
    /// Set when the lists above may miss a change.
    pub incomplete: Option<Incomplete>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.dirs.is_empty() && self.incomplete.is_none()
    }

    /// How many names and directories it lists.
    pub fn len(&self) -> usize {
        self.names.values().map(HashSet::len).sum::<usize>() + self.dirs.len()
    }

    /// Adds what `later` lists: the changes of both spans together. Once
    /// incomplete, the sum stays so, for the first reason.
    pub fn absorb(&mut self, later: Changes) {
        for (dir, names) in later.names {
            self.names.entry(dir).or_default().extend(names);
        }
        self.dirs.extend(later.dirs);
        self.gone.extend(later.gone);
        if self.incomplete.is_none() {
            self.incomplete = later.incomplete;
        }
    }
}

/// Errors starting a journal (a journal that cannot watch some directory is
/// not an error: it reports itself [`Incomplete`]).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot start a change journal: inotify_init: {0}")]
    Init(Errno),
    #[error("cannot start a change journal: {path}: {source}")]
    Marker {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a change journal's reader thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Default)]
struct Shared {
    /// Watch descriptor to directory key.
    keys: HashMap<i32, DirKey>,
    changes: Changes,
    /// The last barrier made, and the highest the reader has seen.
    marks: u64,
    synced: u64,
    /// The reader has stopped (an error or the journal's end).
    stopped: bool,
}

/// A running journal; dropping it stops the reader.
pub struct Journal {
    inotify: Arc<OwnedFd>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// The private directory the barrier's files are made in, and its watch.
    marker: tempfile::TempDir,
    reader: Option<JoinHandle<()>>,
}

impl Journal {
    /// Starts a journal watching nothing yet; `marker_parent` is where its
    /// private barrier directory is made (any local directory root owns).
    pub fn start(marker_parent: &Path) -> Result<Journal, JournalError> {
        let fd = inotify::init(CreateFlags::CLOEXEC).map_err(JournalError::Init)?;
        let marker = tempfile::Builder::new()
            .prefix(".freezeframe-journal-")
            .tempdir_in(marker_parent)
            .map_err(|source| JournalError::Marker {
                path: marker_parent.to_path_buf(),
                source,
            })?;
        let marker_wd =
            inotify::add_watch(&fd, marker.path(), WatchFlags::CREATE).map_err(|e| {
                JournalError::Marker {
                    path: marker.path().to_path_buf(),
                    source: e.into(),
                }
            })?;
        let inotify = Arc::new(fd);
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let reader = {
            let (inotify, shared) = (inotify.clone(), shared.clone());
            std::thread::Builder::new()
                .name("journal".into())
                .spawn(move || read_events(&inotify, &shared, marker_wd))
                .map_err(JournalError::Thread)?
        };
        Ok(Journal {
            inotify,
            shared,
            marker,
            reader: Some(reader),
        })
    }

    /// Watches the open directory `dir` as `key`, before the caller lists it.
    /// A directory that cannot be watched makes the journal incomplete.
    pub fn watch(&self, dir: BorrowedFd<'_>, key: DirKey) {
        // Through the fd's own magic link: the inode that was opened, whatever
        // its path has become.
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let mut s = self.lock();
        match inotify::add_watch(&*self.inotify, path.as_str(), WATCH) {
            Ok(wd) => {
                // The same inode watched twice (a bind mount seen again) keeps
                // its first key.
                if let Entry::Vacant(v) = s.keys.entry(wd) {
                    v.insert(key);
                }
            }
            Err(errno) => {
                s.changes
                    .incomplete
                    .get_or_insert(Incomplete::Watch { errno });
            }
        }
    }

    /// Every change the kernel reported up to now, and the journal goes on
    /// empty. Everything that happened before the call is in the result: a
    /// barrier event is queued behind it and waited for, two seconds at most
    /// (then the result is [`Incomplete::Behind`]).
    pub fn sync(&self) -> Changes {
        let mut s = self.lock();
        // The barrier's own event is lost when the kernel's queue is full; the
        // overflow is reported in its place, and the result is incomplete anyway.
        let mut tries = 0;
        while !s.stopped && s.changes.incomplete != Some(Incomplete::QueueOverflow) {
            tries += 1;
            if tries > BARRIER_TRIES {
                s.changes.incomplete.get_or_insert(Incomplete::Behind);
                break;
            }
            s.marks += 1;
            let mark = s.marks;
            if let Err(errno) = self.mark(&format!("sync.{mark}")) {
                s.changes
                    .incomplete
                    .get_or_insert(Incomplete::Read { errno });
                break;
            }
            s = self.wait(s, |s| s.synced >= mark);
            if s.synced >= mark {
                break;
            }
        }
        std::mem::take(&mut s.changes)
    }

    /// Makes and removes a file in the barrier directory: one `IN_CREATE`.
    fn mark(&self, name: &str) -> Result<(), Errno> {
        let path = self.marker.path().join(name);
        let made = std::fs::File::create(&path);
        let _ = std::fs::remove_file(&path);
        made.map(drop)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
    }

    /// Waits until `done`, the reader stops or the queue overflowed, for at
    /// most [`BARRIER_WAIT`].
    fn wait<'a>(
        &'a self,
        s: MutexGuard<'a, Shared>,
        done: impl Fn(&Shared) -> bool,
    ) -> MutexGuard<'a, Shared> {
        let (s, _) = self
            .shared
            .1
            .wait_timeout_while(s, BARRIER_WAIT, |s| {
                !done(s) && !s.stopped && s.changes.incomplete != Some(Incomplete::QueueOverflow)
            })
            .unwrap_or_else(|p| p.into_inner());
        s
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the reader back, for tests that fill the kernel's queue.
    #[cfg(test)]
    fn hold(&self) -> MutexGuard<'_, Shared> {
        self.lock()
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("marker", &self.marker.path())
            .finish_non_exhaustive()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The reader stops at a barrier file named `stop.N`; one is made again
        // while a full queue may have dropped the last.
        let mut s = self.lock();
        for n in 0..STOP_TRIES {
            if s.stopped || self.mark(&format!("stop.{n}")).is_err() {
                break;
            }
            s = self.wait(s, |s| s.stopped);
        }
        let stopped = s.stopped;
        drop(s);
        match self.reader.take() {
            Some(reader) if stopped => {
                let _ = reader.join();
            }
            // Blocked in `read`: it holds its own reference to the fd and
            // ends with the process.
            _ => {}
        }
    }
}

/// The reader thread: reads events until told to stop, folding them into
/// `shared`.
fn read_events(inotify: &OwnedFd, shared: &(Mutex<Shared>, Condvar), marker_wd: i32) {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut reader = inotify::Reader::new(inotify.as_fd(), &mut buf);
    loop {
        let event = reader.next();
        let (lock, wake) = shared;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        let event = match event {
            Ok(e) => e,
            Err(Errno::INTR) => continue,
            Err(errno) => {
                s.changes
                    .incomplete
                    .get_or_insert(Incomplete::Read { errno });
                s.stopped = true;
                wake.notify_all();
                return;
            }
        };
        let flags = event.events();
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            // Even over another reason: a waiting barrier may have been dropped.
            s.changes.incomplete = Some(Incomplete::QueueOverflow);
            wake.notify_all();
        }
        if flags.contains(ReadFlags::UNMOUNT) {
            s.changes.incomplete.get_or_insert(Incomplete::Unmounted);
        }
        if event.wd() == marker_wd {
            match barrier(event.file_name()) {
                Some(Barrier::Sync(n)) => {
                    s.synced = s.synced.max(n);
                    wake.notify_all();
                }
                Some(Barrier::Stop) => {
                    s.stopped = true;
                    wake.notify_all();
                    return;
                }
                None => {}
            }
            continue;
        }
        // IN_IGNORED: the watch is gone with its directory, whose deletion
        // its parent reported.
        if flags.contains(ReadFlags::IGNORED) {
            continue;
        }
        let Some(&key) = s.keys.get(&event.wd()) else {
            continue;
        };
        match event.file_name().map(CStr::to_bytes) {
            Some(name) if !name.is_empty() => {
                let names = s.changes.names.entry(key).or_default();
                if !names.contains(name) {
                    names.insert(name.into());
                }
            }
            _ => {
                s.changes.dirs.insert(key);
                if flags.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) {
                    s.changes.gone.insert(key);
                }
            }
        }
    }
}

enum Barrier {
    Sync(u64),
    Stop,
}

fn barrier(name: Option<&CStr>) -> Option<Barrier> {
    let name = std::str::from_utf8(name?.to_bytes()).ok()?;
    if name.starts_with("stop.") {
        return Some(Barrier::Stop);
    }
    name.strip_prefix("sync.")?.parse().ok().map(Barrier::Sync)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn open_dir(p: &Path) -> OwnedFd {
        fs::File::open(p).unwrap().into()
    }

    fn names(c: &Changes, key: DirKey) -> Vec<String> {
        let mut v: Vec<String> = c
            .names
            .get(&key)
            .map(|s| {
                s.iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn lists_each_changed_name_by_directory_and_empties_on_sync() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("a/b"));
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("kept"), "x").unwrap();
        fs::write(b.join("old"), "x").unwrap();
        let j = Journal::start(t.path()).unwrap();
        let (fa, fb) = (open_dir(&a), open_dir(&b));
        j.watch(fa.as_fd(), 1);
        j.watch(fb.as_fd(), 2);
        assert!(j.sync().is_empty());

        fs::write(a.join("new"), "x").unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(b.join("old"))
            .unwrap();
        fs::rename(b.join("old"), b.join("renamed")).unwrap();
        fs::create_dir(b.join("sub")).unwrap();
        fs::set_permissions(&b, fs::Permissions::from_mode(0o700)).unwrap();
        let c = j.sync();
        assert_eq!(c.incomplete, None);
        // `b`'s chmod is reported by its parent's watch and its own.
        assert_eq!(names(&c, 1), ["b", "new"]);
        assert_eq!(names(&c, 2), ["old", "renamed", "sub"]);
        assert!(c.dirs.contains(&2), "chmod of the directory itself");
        // `kept` never changed.
        assert!(!names(&c, 1).contains(&"kept".to_string()));
        assert!(j.sync().is_empty(), "sync starts the journal again empty");

        fs::write(a.join("kept"), "y").unwrap();
        assert_eq!(names(&j.sync(), 1), ["kept"]);
    }

    #[test]
    fn a_full_queue_makes_the_journal_incomplete() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        fs::create_dir(&d).unwrap();
        let j = Journal::start(t.path()).unwrap();
        let fd = open_dir(&d);
        j.watch(fd.as_fd(), 7);
        let limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(16384);
        {
            // The reader waits for the lock after its first read: the kernel's
            // queue fills behind it.
            let _held = j.hold();
            for i in 0..limit + 5000 {
                fs::write(d.join(format!("f{i}")), "").unwrap();
            }
        }
        let c = j.sync();
        assert_eq!(c.incomplete, Some(Incomplete::QueueOverflow));
    }

    #[test]
    fn writes_through_an_overlay_are_reported_on_the_upper_dir() {
        if !freezeframe_tests::root_or_skip("journal overlay") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        for d in ["lower/d", "upper/d", "work", "merged"] {
            fs::create_dir_all(p(d)).unwrap();
        }
        fs::write(p("lower/d/copied-up"), "lower").unwrap();
        fs::write(p("upper/d/own"), "upper").unwrap();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            p("lower").display(),
            p("upper").display(),
            p("work").display()
        );
        let ok = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(p("merged"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount overlay");
        let j = Journal::start(t.path()).unwrap();
        let (root, d) = (open_dir(&p("upper")), open_dir(&p("upper/d")));
        j.watch(root.as_fd(), 0);
        j.watch(d.as_fd(), 1);
        fs::write(p("merged/d/own"), "changed").unwrap();
        fs::write(p("merged/d/copied-up"), "changed").unwrap();
        fs::remove_file(p("merged/d/own")).unwrap();
        fs::create_dir(p("merged/new")).unwrap();
        let c = j.sync();
        let _ = std::process::Command::new("umount")
            .arg(p("merged"))
            .status();
        assert_eq!(c.incomplete, None);
        assert_eq!(names(&c, 1), ["copied-up", "own"]);
        // `d` itself changed too: overlayfs marks a directory it copied up
        // into (an xattr), and its times moved.
        assert_eq!(names(&c, 0), ["d", "new"]);
    }

    #[test]
    fn drop_stops_the_reader() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::start(t.path()).unwrap();
        let marker = j.marker.path().to_path_buf();
        drop(j);
        assert!(!marker.exists(), "the barrier directory is removed");
    }
}
