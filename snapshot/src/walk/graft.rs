//! Grafts: plain directory trees placed at container paths (the scratch home,
//! included mounts), and the directories on the way to them.
//!
//! A graft is a mount in the session, so it hides whatever the image and the
//! upper dir hold at its path: in the layer it is an opaque directory. The
//! directories leading to it exist in the layer even where the upper dir has
//! none; they take the lower dirs' metadata when the lower dirs have them. This
//! module owns the trie of graft paths and those two decisions; the traversal
//! does the reading.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::traverse::{header_from, Reopen, Walker};
use super::{Event, Visitor};
use crate::delta::{NodeId, State};
use crate::error::{Error, IoContext, Result};
use crate::fs::xattr::{self, CONTAINER_XATTRS};
use crate::tar::{Header, Kind};

/// A plain directory tree placed at a path of the container.
#[derive(Debug, Clone)]
pub struct Graft {
    /// Absolute container path, e.g. `/home/work`.
    pub at: PathBuf,
    /// The host directory whose content appears there.
    pub source: PathBuf,
}

/// A node of the graft trie: which container paths lead to a graft.
#[derive(Default)]
struct Node {
    children: BTreeMap<Vec<u8>, usize>,
    graft: Option<usize>,
}

/// The container paths of every graft as a trie of path components; node 0 is
/// `/`.
pub(super) struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    pub(super) fn new(grafts: &[Graft]) -> Result<Self> {
        let mut nodes = vec![Node::default()];
        for (i, g) in grafts.iter().enumerate() {
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
        Ok(Trie { nodes })
    }

    /// The children of `node`, by name.
    pub(super) fn children(&self, node: usize) -> &BTreeMap<Vec<u8>, usize> {
        &self.nodes[node].children
    }

    /// The graft at `node`, if one is there.
    pub(super) fn graft(&self, node: usize) -> Option<usize> {
        self.nodes[node].graft
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

impl Walker<'_> {
    /// A directory that is on the way to a graft but not in the upper dir:
    /// its metadata is the lower dirs' when they have it. `opaque`: it stands
    /// where the upper dir has something else, which it hides.
    pub(super) fn enter_virtual(
        &mut self,
        rel: Vec<u8>,
        host: PathBuf,
        node: usize,
        opaque: bool,
        base: Option<NodeId>,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let full = self.stack.last().is_some_and(|f| f.full);
        if self.delta().is_some() && !opaque {
            // Made from the lower dirs' metadata, which a session cannot change.
            self.push_virtual(rel, host, node, full, base);
            return Ok(());
        }
        let st = if opaque {
            None
        } else {
            self.overlay.lower_dir(&rel)?
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
        if let Some(st) = st {
            h.mode = st.st_mode & 0o7777;
            h.uid = st.st_uid;
            h.gid = st.st_gid;
            h.mtime_sec = st.st_mtime;
            h.mtime_nsec = st.st_mtime_nsec as u32;
        }
        visitor.event(
            &Event::Entry {
                header: &h,
                ident: None,
            },
            None,
        )?;
        self.report.dirs += 1;
        if opaque {
            self.opaque(&rel, visitor)?;
        }
        self.push_virtual(rel, host, node, full, base);
        Ok(())
    }

    /// The root of graft `graft`, at container path `rel`.
    pub(super) fn enter_graft(
        &mut self,
        graft: usize,
        rel: Vec<u8>,
        node: Option<usize>,
        base: Option<NodeId>,
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let source = self.spec.grafts[graft].source.clone();
        let (dir, st) = self.opened.open_tree(self.spec, graft + 1)?;
        let full = self.stack.last().is_some_and(|f| f.full);
        let changed = self
            .delta()
            .is_none_or(|b| !b.unchanged(base, &State::from(&st)));
        if changed {
            let xattrs = xattr::list(&dir, &CONTAINER_XATTRS).at(&source)?;
            let h = header_from(&rel, Kind::Dir, &st, xattrs);
            visitor.event(&Event::entry(&h, &st), None)?;
            self.report.dirs += 1;
        }
        if self.delta().is_none() {
            // A graft is a mount: it hides whatever the image and the upper dir
            // hold at its path, so in the layer the directory is opaque.
            self.opaque(&rel, visitor)?;
        }
        self.record(base, &st);
        self.push_dir(
            Some(dir),
            Reopen::Root(graft + 1),
            &st,
            rel,
            source,
            graft + 1,
            node,
            full,
            base,
        )
    }
}
