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

use crate::journal::{Changes, Incomplete, Journal};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::{FileStat, SFlag};

/// Margin for timestamp granularity: kernels stamp times from a clock that
/// advances once per tick (at most 10 ms).
const RACY_MARGIN: Duration = Duration::from_millis(50);

/// Now, less the margin for timestamp granularity, as `(sec, nsec)`: an entry
/// read from now on whose ctime is at or after this may have changed again
/// without its ctime showing it.
pub(crate) fn racy_after_now() -> (i64, i64) {
    let t = SystemTime::now()
        .checked_sub(RACY_MARGIN)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_secs() as i64, i64::from(t.subsec_nanos()))
}

/// The state of an entry that, if any of it differs, means the entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    /// Links: a file with more than one can change through a name in another
    /// directory, which a journal reports only there.
    pub nlink: u64,
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
            nlink: st.st_nlink,
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

/// An entry of a [`Baseline`] (or a directory on the way to entries): node
/// ids are addressed by their parent's id and a name, never by a path, so
/// that what the baseline holds grows with the sum of the names it saw, not
/// with the depth of the tree times its size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The top of the tree: the container's `/`.
    pub const ROOT: NodeId = NodeId(0);

    /// The number a change journal knows the directory by.
    pub fn key(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Default)]
struct Node {
    /// Its directory (the root's is itself).
    parent: NodeId,
    /// As the passes so far wrote it; `None` for a directory that only leads
    /// to entries (a graft's parents) or that no pass wrote yet.
    state: Option<State>,
    /// Its content was seen changing while an earlier pass read it.
    changed: bool,
    /// Seen changing in the pass under way: `changed` from the next seal.
    next_changed: bool,
    /// Its children, by name.
    children: HashMap<Box<[u8]>, NodeId>,
}

/// Every entry the passes so far wrote, as a tree of nodes under
/// [`NodeId::ROOT`], each with its state as of the pass that last wrote it.
///
/// A pass runs between [`Baseline::begin`] and [`Baseline::seal`]: it compares
/// with what earlier passes sealed, and what it records takes effect at `seal`.
#[derive(Debug)]
pub struct Baseline {
    nodes: Vec<Node>,
    /// Nodes with a state: entries written.
    entries: usize,
    /// Whether some node is marked changed (so most lookups skip the check).
    any_changed: bool,
    /// Nodes a journal cannot vouch for, whatever it lists: files written
    /// with more than one link, and nodes marked changed (some may have been
    /// written again since, or unmarked: each is looked at as it is).
    unjournaled: Vec<NodeId>,
    /// ctimes at or after this are racy.
    racy_after: (i64, i64),
    /// The pass under way: its start (less the margin).
    next_racy_after: (i64, i64),
    /// Watches the directories a recording pass reads.
    journal: Option<Journal>,
    /// What the journal listed over every sync since: each delta pass reads
    /// all that changed since the recording pass, not since the last delta.
    journaled: Changes,
    /// What the journal says changed: a delta pass looks at nothing else.
    visit: Option<Visit>,
}

/// The part of the tree a journaled delta pass reads: the names the journal
/// listed, and the directories on the way to them.
#[derive(Debug, Default)]
pub struct Visit {
    /// Directories to enter.
    dirs: HashSet<NodeId>,
    /// Names to look at again, by directory.
    names: HashMap<NodeId, Vec<Box<[u8]>>>,
    /// Directories whose watched inode went away: they, and everything below
    /// them, are listed and compared, not read from the journal.
    unwatched: HashSet<NodeId>,
}

impl Visit {
    /// Whether a journaled pass enters directory `dir`.
    pub fn enters(&self, dir: NodeId) -> bool {
        self.dirs.contains(&dir)
    }

    /// Whether directory `dir` is not the one the journal watched (it was
    /// deleted or moved away since): it and its subtree are listed.
    pub fn unwatched(&self, dir: NodeId) -> bool {
        self.unwatched.contains(&dir)
    }

    /// The names of `dir` to look at again.
    pub fn names(&self, dir: NodeId) -> &[Box<[u8]>] {
        self.names.get(&dir).map_or(&[], Vec::as_slice)
    }

    /// How many names it lists.
    pub fn len(&self) -> usize {
        self.names.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline {
            nodes: vec![Node::default()],
            entries: 0,
            any_changed: false,
            unjournaled: Vec::new(),
            racy_after: (0, 0),
            next_racy_after: (0, 0),
            journal: None,
            journaled: Changes::default(),
            visit: None,
        }
    }
}

impl Baseline {
    pub fn new() -> Self {
        Baseline::default()
    }

    /// Starts a pass that records: entries it writes are as of now.
    pub fn begin(&mut self) {
        self.next_racy_after = racy_after_now();
        for n in &mut self.nodes {
            n.next_changed = false;
        }
    }

    /// The child `name` of directory `dir`, if a pass wrote it or an entry
    /// below it.
    pub fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        self.nodes[dir.0 as usize].children.get(name).copied()
    }

    /// The child `name` of directory `dir`, made (with no state) if it is not
    /// there yet.
    pub fn child_or_insert(&mut self, dir: NodeId, name: &[u8]) -> NodeId {
        if let Some(id) = self.child(dir, name) {
            return id;
        }
        let id = NodeId(u32::try_from(self.nodes.len()).expect("fewer than 2^32 entries"));
        self.nodes.push(Node {
            parent: dir,
            ..Node::default()
        });
        self.nodes[dir.0 as usize].children.insert(name.into(), id);
        id
    }

    /// The node at container path `path` (relative, no leading `/`), found
    /// component by component.
    pub fn node(&self, path: &[u8]) -> Option<NodeId> {
        let mut at = NodeId::ROOT;
        for name in path.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
            at = self.child(at, name)?;
        }
        Some(at)
    }

    /// Records that the pass under way wrote `node` as `state`.
    pub fn record(&mut self, node: NodeId, state: State) {
        let n = &mut self.nodes[node.0 as usize];
        if n.state.replace(state).is_none() {
            self.entries += 1;
        }
        if !state.is_dir() && state.nlink > 1 {
            self.unjournaled.push(node);
        }
    }

    /// Counts the entry at `path` as changed in the next comparison, whatever
    /// its metadata says (a file written through a shared mapping, say). A
    /// path no pass wrote is ignored.
    pub fn mark_changed(&mut self, path: &[u8]) {
        if let Some(id) = self.node(path) {
            self.nodes[id.0 as usize].changed = true;
            self.any_changed = true;
            self.unjournaled.push(id);
        }
    }

    /// The pass under way saw `node` change while it read it.
    pub fn note_changed(&mut self, node: NodeId) {
        self.nodes[node.0 as usize].next_changed = true;
    }

    /// Ends a recording pass: what it recorded becomes what the next pass
    /// compares with.
    pub fn seal(&mut self) {
        self.racy_after = self.next_racy_after;
        self.any_changed = false;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.changed = std::mem::take(&mut n.next_changed);
            if n.changed {
                self.any_changed = true;
                self.unjournaled.push(NodeId(i as u32));
            }
        }
    }

    /// Entries written.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The state `node` was written with, if it was.
    pub fn get(&self, node: NodeId) -> Option<&State> {
        self.nodes[node.0 as usize].state.as_ref()
    }

    /// Whether `now` at `node` (`None`: a name no pass saw) is what an
    /// earlier pass wrote, for certain.
    pub fn unchanged(&self, node: Option<NodeId>, now: &State) -> bool {
        let Some(n) = node.map(|id| &self.nodes[id.0 as usize]) else {
            return false;
        };
        now.ctime < self.racy_after
            && n.state.as_ref() == Some(now)
            && !(self.any_changed && n.changed)
    }

    /// What a delta pass does with the entry `now` at `node`.
    pub fn decide(&self, node: Option<NodeId>, now: &State) -> Decision {
        if self.unchanged(node, now) {
            return Decision::Unchanged;
        }
        let old = node.and_then(|id| self.get(id)).copied();
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
        dir: NodeId,
        present: impl Fn(&[u8]) -> bool + 'a,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.children(dir)
            .map(|(name, _)| name)
            .filter(move |n| !present(n))
    }

    /// Watches every directory the next recording passes read with `journal`.
    pub fn attach_journal(&mut self, journal: Journal) {
        self.journal = Some(journal);
    }

    /// The journal a recording pass adds its directories to.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// What a journaled delta pass reads, if [`Baseline::restrict_to_journal`]
    /// made one.
    pub fn visit(&self) -> Option<&Visit> {
        self.visit.as_ref()
    }

    /// Makes the next delta pass read only what the journal says changed
    /// since the recording pass (over every call so far), plus what no
    /// journal can see: files with several links and entries marked changed.
    /// Call it before each delta pass; for the frozen one, once the session
    /// is frozen and after [`Baseline::mark_changed`]. With no journal, or
    /// one that missed events since the recording pass, the pass reads
    /// everything, and the error says why.
    pub fn restrict_to_journal(&mut self) -> Result<&Visit, Incomplete> {
        self.visit = None;
        let journal = self.journal.as_ref().ok_or(Incomplete::NotStarted)?;
        self.journaled.absorb(journal.sync());
        let changes = &self.journaled;
        if let Some(why) = &changes.incomplete {
            return Err(why.clone());
        }
        let mut visit = Visit::default();
        for (&key, names) in &changes.names {
            let dir = NodeId(key);
            if dir.0 as usize >= self.nodes.len() {
                continue;
            }
            self.enter(&mut visit, dir);
            visit
                .names
                .entry(dir)
                .or_default()
                .extend(names.iter().cloned());
        }
        // What is looked at again by its name in its directory, whatever the
        // journal says: a directory whose own inode changed, and what no
        // journal sees (files with several links, entries marked changed).
        // Grouped by directory, so that each directory's names are scanned
        // once (not once per entry: a directory of many hard links).
        let mut wanted: HashMap<NodeId, HashSet<NodeId>> = HashMap::default();
        let dirs = changes.dirs.iter().map(|&key| NodeId(key));
        for id in self.unjournaled.iter().copied().chain(dirs) {
            let Some(n) = self.nodes.get(id.0 as usize) else {
                continue;
            };
            let linked = n.state.is_some_and(|s| !s.is_dir() && s.nlink > 1);
            let dir_changed = changes.dirs.contains(&id.0);
            if n.parent != id && (linked || (self.any_changed && n.changed) || dir_changed) {
                wanted.entry(n.parent).or_default().insert(id);
            }
        }
        visit.unwatched = changes.gone.iter().map(|&key| NodeId(key)).collect();
        for (dir, ids) in wanted {
            self.enter(&mut visit, dir);
            let names = visit.names.entry(dir).or_default();
            for (name, id) in &self.nodes[dir.0 as usize].children {
                if ids.contains(id) {
                    names.push(name.clone());
                }
            }
        }
        for names in visit.names.values_mut() {
            names.sort_unstable();
            names.dedup();
        }
        Ok(self.visit.insert(visit))
    }

    /// Drops from what the journal listed the names a delta pass found
    /// absent that no recording pass wrote (created and removed since): the
    /// next passes need not look at them again. Their directory stays listed,
    /// even with no name left: its own times changed with them. Call it after
    /// that pass and before the next [`Baseline::restrict_to_journal`]: a
    /// name made again after the pass looked is in the journal's next sync,
    /// which comes after this.
    pub fn forget_absent(&mut self, absent: &[(NodeId, Box<[u8]>)]) {
        for (dir, name) in absent {
            if let Some(names) = self.journaled.names.get_mut(&dir.0) {
                names.remove(name);
            }
        }
    }

    /// Enters `dir` and every directory above it.
    fn enter(&self, visit: &mut Visit, mut dir: NodeId) {
        while visit.dirs.insert(dir) {
            let parent = self.nodes[dir.0 as usize].parent;
            if parent == dir {
                break;
            }
            dir = parent;
        }
    }

    /// Names (and nodes) the passes wrote in directory `dir`, in no order.
    pub fn children(&self, dir: NodeId) -> impl Iterator<Item = (&[u8], NodeId)> + '_ {
        self.nodes[dir.0 as usize]
            .children
            .iter()
            .filter(|(_, id)| self.nodes[id.0 as usize].state.is_some())
            .map(|(name, &id)| (&**name, id))
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
            nlink: 1,
            size: 3,
            mtime: (ctime, 0),
            ctime: (ctime, 0),
        }
    }

    /// Records `path`, making the nodes on the way.
    fn record(b: &mut Baseline, path: &[u8], st: State) -> NodeId {
        let mut at = NodeId::ROOT;
        for name in path.split(|&c| c == b'/') {
            at = b.child_or_insert(at, name);
        }
        b.record(at, st);
        at
    }

    #[test]
    fn unchanged_needs_equal_state_an_old_ctime_and_no_change_noted() {
        let mut b = Baseline::new();
        b.begin();
        let old = record(&mut b, b"old", state(1, 1000));
        let racy_at = b.next_racy_after.0 + 1;
        let racy = record(&mut b, b"racy", state(2, racy_at));
        let noted = record(&mut b, b"noted", state(3, 1000));
        b.note_changed(noted);
        b.seal();
        assert!(b.unchanged(Some(old), &state(1, 1000)));
        assert!(!b.unchanged(Some(old), &state(9, 1000)));
        assert!(!b.unchanged(Some(racy), &state(2, racy_at)));
        assert!(!b.unchanged(Some(noted), &state(3, 1000)));
        assert!(!b.unchanged(b.node(b"new"), &state(4, 1000)));

        // A second pass re-read it: from then on it is settled.
        b.begin();
        b.seal();
        assert!(b.unchanged(Some(noted), &state(3, 1000)));

        // Marked by path from outside the walk: changed for the next pass.
        b.mark_changed(b"old");
        b.mark_changed(b"not/there");
        assert!(!b.unchanged(Some(old), &state(1, 1000)));
        assert!(b.unchanged(Some(noted), &state(3, 1000)));
    }

    #[test]
    fn nodes_are_addressed_by_parent_and_name() {
        let mut b = Baseline::new();
        for p in [&b"a"[..], b"a/b", b"a/c", b"d", b"x/y/z"] {
            record(&mut b, p, state(1, 1));
        }
        b.seal();
        assert_eq!(b.len(), 5);
        let mut top: Vec<&[u8]> = b.children(NodeId::ROOT).map(|(n, _)| n).collect();
        top.sort();
        // `x` only leads to an entry: no pass wrote it.
        assert_eq!(top, vec![&b"a"[..], b"d"]);
        let a = b.child(NodeId::ROOT, b"a").unwrap();
        assert_eq!(b.children(a).count(), 2);
        assert_eq!(b.node(b"a/b"), b.child(a, b"b"));
        assert_eq!(b.children(b.node(b"a/b").unwrap()).count(), 0);
        assert!(b.node(b"x/y/z").is_some() && b.node(b"x/y/q").is_none());
        let gone: Vec<&[u8]> = b.gone(a, |n| n == b"b").collect();
        assert_eq!(gone, vec![&b"c"[..]]);
    }

    #[test]
    fn a_journaled_pass_looks_again_at_linked_and_marked_entries_only() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = Baseline::new();
        b.attach_journal(Journal::start(tmp.path()).unwrap());
        b.begin();
        let linked = State {
            nlink: 2,
            ..state(1, 1000)
        };
        record(&mut b, b"a/f", linked);
        record(&mut b, b"a/g", state(2, 1000));
        record(&mut b, b"b/h", state(3, 1000));
        record(&mut b, b"c/i", state(4, 1000));
        for i in 0..1000u32 {
            record(
                &mut b,
                format!("a/n{i}").as_bytes(),
                state(10 + u64::from(i), 1000),
            );
        }
        b.seal();
        b.mark_changed(b"b/h");
        let (a, bdir, c) = (
            b.node(b"a").unwrap(),
            b.node(b"b").unwrap(),
            b.node(b"c").unwrap(),
        );
        let visit = b.restrict_to_journal().unwrap();
        assert_eq!(visit.names(a), &[Box::from(&b"f"[..])]);
        assert_eq!(visit.names(bdir), &[Box::from(&b"h"[..])]);
        assert!(visit.enters(NodeId::ROOT) && visit.enters(a) && visit.enters(bdir));
        assert!(!visit.enters(c));
        assert_eq!(visit.len(), 2);
    }

    #[test]
    fn names_that_came_and_went_are_forgotten_until_they_come_again() {
        let marker = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        let mut b = Baseline::new();
        let journal = Journal::start(marker.path()).unwrap();
        b.begin();
        let d = record(
            &mut b,
            b"d",
            State {
                mode: 0o040755,
                ..state(1, 1000)
            },
        );
        let fd = std::fs::File::open(tree.path()).unwrap();
        journal.watch(std::os::fd::AsFd::as_fd(&fd), d.key());
        b.attach_journal(journal);
        b.seal();
        std::fs::write(tree.path().join("x"), b"x").unwrap();
        std::fs::remove_file(tree.path().join("x")).unwrap();
        std::fs::write(tree.path().join("y"), b"y").unwrap();
        let names = |b: &mut Baseline| -> Vec<Box<[u8]>> {
            let mut n = b.restrict_to_journal().unwrap().names(d).to_vec();
            n.sort();
            n
        };
        assert_eq!(names(&mut b), [Box::from(&b"x"[..]), Box::from(&b"y"[..])]);
        // A pass found `x` absent: it is forgotten; `y` stays.
        b.forget_absent(&[(d, Box::from(&b"x"[..]))]);
        assert_eq!(names(&mut b), [Box::from(&b"y"[..])]);
        // With no name left, the directory is still entered: its times
        // changed with the names.
        b.forget_absent(&[(d, Box::from(&b"y"[..]))]);
        assert!(names(&mut b).is_empty());
        assert!(b.visit().unwrap().enters(d));
        std::fs::write(tree.path().join("y"), b"y").unwrap();
        // Made again after that pass: the journal lists it again.
        std::fs::write(tree.path().join("x"), b"x").unwrap();
        assert_eq!(names(&mut b), [Box::from(&b"x"[..]), Box::from(&b"y"[..])]);
    }

    #[test]
    fn a_deep_path_costs_its_names_not_its_depth_squared() {
        let mut b = Baseline::new();
        let name = [b'n'; 200];
        let mut at = NodeId::ROOT;
        for _ in 0..3000 {
            at = b.child_or_insert(at, &name);
            b.record(at, state(1, 1));
            let f = b.child_or_insert(at, b"f");
            b.record(f, state(2, 1));
        }
        b.seal();
        assert_eq!(b.len(), 6000);
        // Every name is held once, in its parent: about 3000 * 200 bytes,
        // where full paths would be 3000 * 3000 * 200 / 2 = 900 MB.
        let names: usize = b
            .nodes
            .iter()
            .flat_map(|n| n.children.keys())
            .map(|k| k.len())
            .sum();
        assert_eq!(names, 3000 * 201);
    }
}
