//! What a first pass over a live tree saw, so that a second pass (with the
//! session frozen) can find what changed since and write only that.
//!
//! An entry is unchanged when its inode, ctime, mtime, size and mode are all as
//! recorded, and its ctime is older than the first pass by more than a clock tick:
//! a file changed in the same tick as it was first seen might keep its ctime, so
//! such "racy" entries count as changed (as git treats racily clean files).
//!
//! It decides what a delta pass writes ([`Baseline::decide`], [`Baseline::gone`]);
//! the walk acts on it. It knows nothing of fds, trees or layer encodings.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::{FileStat, SFlag};

/// Margin for timestamp granularity: kernels stamp times from a clock that
/// advances once per tick (at most 10 ms).
const RACY_MARGIN: Duration = Duration::from_millis(50);

/// The state of an entry that, if any of it differs, means the entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: i64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl From<&FileStat> for State {
    fn from(st: &FileStat) -> Self {
        State {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

impl State {
    pub fn is_dir(&self) -> bool {
        self.mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
    }
}

/// What a delta pass does with an entry it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// As the baseline has it: nothing to write (a directory is still
    /// entered, for what changed below it).
    Unchanged,
    /// Write it. `replaced`: the baseline has another kind of entry, or another
    /// directory, at the path, so the layer first says the old one is gone.
    /// `whole`: everything below is written too (a new or replaced directory).
    Write { replaced: bool, whole: bool },
}

/// Every entry the passes so far wrote, by container path (relative, no
/// leading `/`), as of the pass that last wrote it.
///
/// A pass runs between [`Baseline::begin`] and [`Baseline::seal`]: it compares
/// with what earlier passes sealed, and what it records takes effect at `seal`.
#[derive(Debug, Default)]
pub struct Baseline {
    entries: HashMap<Vec<u8>, State>,
    /// Entries whose content was seen changing while an earlier pass read it.
    changed: HashSet<Vec<u8>>,
    /// ctimes at or after this are racy.
    racy_after: (i64, i64),
    /// Children of each directory, built by `seal`.
    children: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// The pass under way: its start (less the margin) and what it saw change.
    next_racy_after: (i64, i64),
    next_changed: HashSet<Vec<u8>>,
}

impl Baseline {
    pub fn new() -> Self {
        Baseline::default()
    }

    /// Starts a pass that records: entries it writes are as of now.
    pub fn begin(&mut self) {
        let start = SystemTime::now()
            .checked_sub(RACY_MARGIN)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.next_racy_after = (start.as_secs() as i64, i64::from(start.subsec_nanos()));
        self.next_changed.clear();
    }

    pub fn record(&mut self, path: &[u8], state: State) {
        self.entries.insert(path.to_vec(), state);
    }

    /// Counts `path` as changed in the next comparison, whatever its
    /// metadata says (a file written through a shared mapping, say).
    pub fn mark_changed(&mut self, path: &[u8]) {
        self.changed.insert(path.to_vec());
    }

    pub fn note_changed(&mut self, path: &[u8]) {
        self.next_changed.insert(path.to_vec());
    }

    /// Ends a recording pass: what it recorded becomes what the next pass
    /// compares with.
    pub fn seal(&mut self) {
        self.racy_after = self.next_racy_after;
        self.changed = std::mem::take(&mut self.next_changed);
        self.children.clear();
        for path in self.entries.keys() {
            let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&path[..i], &path[i + 1..]),
                None => (&path[..0], &path[..]),
            };
            self.children
                .entry(parent.to_vec())
                .or_default()
                .push(name.to_vec());
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &[u8]) -> Option<&State> {
        self.entries.get(path)
    }

    /// Whether `now` at `path` is what the first pass wrote, for certain.
    pub fn unchanged(&self, path: &[u8], now: &State) -> bool {
        now.ctime < self.racy_after
            && self.entries.get(path) == Some(now)
            && (self.changed.is_empty() || !self.changed.contains(path))
    }

    /// What a delta pass does with the entry `now` at `path`.
    pub fn decide(&self, path: &[u8], now: &State) -> Decision {
        if self.unchanged(path, now) {
            return Decision::Unchanged;
        }
        let old = self.get(path).copied();
        let replaced = old.is_some_and(|old| {
            old.is_dir() != now.is_dir() || (now.is_dir() && old.ino != now.ino)
        });
        Decision::Write {
            replaced,
            whole: replaced || old.is_none(),
        }
    }

    /// Names an earlier pass wrote in directory `dir` that `present` says are
    /// not there now: each needs a whiteout.
    pub fn gone<'a>(
        &'a self,
        dir: &[u8],
        present: impl Fn(&[u8]) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.children(dir)
            .iter()
            .filter(move |n| !present(n.as_slice()))
    }

    /// Names the first pass wrote in directory `dir`.
    pub fn children(&self, dir: &[u8]) -> &[Vec<u8>] {
        self.children.get(dir).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ino: u64, ctime: i64) -> State {
        State {
            dev: 1,
            ino,
            mode: 0o100644,
            size: 3,
            mtime: (ctime, 0),
            ctime: (ctime, 0),
        }
    }

    #[test]
    fn unchanged_needs_equal_state_an_old_ctime_and_no_change_noted() {
        let mut b = Baseline::new();
        b.begin();
        b.record(b"old", state(1, 1000));
        b.record(b"racy", state(2, b.next_racy_after.0 + 1));
        b.record(b"noted", state(3, 1000));
        b.note_changed(b"noted");
        b.seal();
        assert!(b.unchanged(b"old", &state(1, 1000)));
        assert!(!b.unchanged(b"old", &state(9, 1000)));
        assert!(!b.unchanged(b"racy", &state(2, b.racy_after.0 + 1)));
        assert!(!b.unchanged(b"noted", &state(3, 1000)));
        assert!(!b.unchanged(b"new", &state(4, 1000)));

        // A second pass re-read it: from then on it is settled.
        b.begin();
        b.seal();
        assert!(b.unchanged(b"noted", &state(3, 1000)));
    }

    #[test]
    fn children_are_indexed_by_parent() {
        let mut b = Baseline::new();
        for p in [&b"a"[..], b"a/b", b"a/c", b"d"] {
            b.record(p, state(1, 1));
        }
        b.seal();
        let mut top = b.children(b"").to_vec();
        top.sort();
        assert_eq!(top, vec![b"a".to_vec(), b"d".to_vec()]);
        assert_eq!(b.children(b"a").len(), 2);
        assert!(b.children(b"a/b").is_empty());
    }
}
