//! Hard links: which inodes were already met, keyed by `(st_dev, st_ino)`.
//!
//! The link count (`st_nlink`) only says whether another name may exist; the
//! identity is the device and inode. It does not know what a caller records
//! for the first name (a path in a layer, a copied file).

use std::collections::HashMap;

use nix::sys::stat::FileStat;

/// The first name (or anything a caller records for it) of every inode with
/// more than one link met so far.
#[derive(Debug)]
pub struct LinkTracker<T> {
    first: HashMap<(u64, u64), T>,
}

impl<T> Default for LinkTracker<T> {
    fn default() -> Self {
        LinkTracker {
            first: HashMap::new(),
        }
    }
}

impl<T> LinkTracker<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// For the inode `st`: what was recorded when it was first met, if it was;
    /// otherwise records `first()` for it and returns `None`. An inode with a
    /// single link is never recorded.
    pub fn seen(&mut self, st: &FileStat, first: impl FnOnce() -> T) -> Option<&T> {
        if st.st_nlink < 2 {
            return None;
        }
        let key = (st.st_dev, st.st_ino);
        if self.first.contains_key(&key) {
            return self.first.get(&key);
        }
        self.first.insert(key, first());
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_name_of_a_linked_inode_is_returned_for_the_others() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
        std::fs::write(&a, b"x").unwrap();
        std::fs::hard_link(&a, &b).unwrap();
        std::fs::write(&c, b"y").unwrap();
        let stat = |p: &std::path::Path| nix::sys::stat::lstat(p).unwrap();
        let mut links = LinkTracker::new();
        assert_eq!(links.seen(&stat(&a), || "a"), None);
        assert_eq!(links.seen(&stat(&b), || "b"), Some(&"a"));
        assert_eq!(links.seen(&stat(&c), || "c"), None);
        assert_eq!(links.seen(&stat(&c), || "c"), None);
    }
}
