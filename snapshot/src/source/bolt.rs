//! A read-only reader of bbolt database files (containerd's `meta.db`), from
//! the file on disk, with no daemon and no Go.
//!
//! # The file format, as far as a reader needs it
//!
//! A bbolt file is a sequence of pages of one size (the OS page size of the
//! machine that made it, recorded in the file). Integers are in the writer's
//! native byte order, little-endian on every platform containerd ships for;
//! a big-endian file fails the magic check and is refused.
//!
//! - Every page starts with a 16-byte header: its id (u64), flags (u16:
//!   `0x01` branch, `0x02` leaf, `0x04` meta, `0x10` freelist), an element
//!   count (u16) and an overflow count (u32): a page spans `overflow + 1`
//!   pages of the file.
//! - Pages 0 and 1 are meta pages. After the header: magic `0xED0CDAED`
//!   (u32), version 2 (u32), page size (u32), flags (u32), the root bucket
//!   (root page id u64, sequence u64), the freelist page id (u64), the
//!   high-water page id (u64: no page of the tree is at or above it), the
//!   transaction id (u64), and an FNV-1a 64 checksum of everything before
//!   it. A commit writes its meta to page `txid % 2`, so the valid meta with
//!   the higher transaction id is the current one; the other is the previous
//!   commit's, used when the newer one is torn.
//! - Each bucket is a B+tree. A branch page holds `count` 16-byte elements
//!   (key offset u32, key size u32, child page id u64); a leaf page holds
//!   `count` 16-byte elements (flags u32, key offset u32, key size u32, value
//!   size u32). Offsets are relative to the element's own position; the
//!   value follows its key. A branch element's key is the smallest key below
//!   its child.
//! - A leaf element with flag `0x01` is a nested bucket: its value is a
//!   bucket header (root page id u64, sequence u64). A root of 0 marks an
//!   inline bucket, whose single leaf page follows the header inside the
//!   value.
//!
//! The freelist is never read: a reader needs only what the tree reaches.
//!
//! # Hostile input
//!
//! The file may come from anywhere and may be written while it is read.
//! Every page id is checked against the high-water mark and the file's
//! length, and against the id in the page's own header; every element,
//! key and value must lie inside its page's span; a descent is capped at
//! [`MAX_DEPTH`] levels and a walk visits each page once, so a cycle ends
//! in an error. Each error names the file and the page. Nothing here panics
//! on a malformed file.
//!
//! Pages are read with positioned reads, one node at a time, never the whole
//! file. A reader of a database that a daemon is writing sees the pages of
//! one committed transaction as long as no later commit reuses them;
//! [`Db::is_current`] says whether the meta pages still name the
//! transaction that was read, so a caller can retry a lookup that raced a
//! commit.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

/// The magic number of a bbolt meta page.
pub const MAGIC: u32 = 0xED0C_DAED;

/// The only data file format version bbolt writes.
pub const VERSION: u32 = 2;

/// The deepest tree a descent follows before calling the file corrupt. A
/// bbolt tree of a few levels holds millions of keys; anything deeper is a
/// cycle or garbage.
pub const MAX_DEPTH: usize = 32;

/// The most entries [`Db::entries`] returns for one bucket.
pub const MAX_ENTRIES: usize = 1 << 20;

/// The most bytes of keys and values [`Db::entries`] returns for one bucket.
pub const MAX_ENTRIES_SIZE: usize = 64 << 20;

/// The largest node (a page with its overflow) read into memory.
pub const MAX_NODE_SIZE: u64 = 64 << 20;

const PAGE_HEADER: usize = 16;
const ELEMENT_SIZE: usize = 16;
const BUCKET_HEADER: usize = 16;
/// The meta struct: magic, version, page size, flags, root bucket (16),
/// freelist, high-water mark, txid, checksum.
const META_SIZE: usize = 64;
const META_CHECKSUMMED: usize = 56;

const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
const BUCKET_LEAF: u32 = 0x01;

/// The page sizes bbolt's own open accepts when the first meta page is
/// unreadable: 1 KiB to 16 MiB.
const MIN_PAGE_SIZE: u64 = 1 << 10;
const MAX_PAGE_SIZE: u64 = 1 << 24;

type Result<T> = std::result::Result<T, Error>;

/// Errors from reading a bbolt file; every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a bbolt database: {reason}")]
    NotBolt { path: PathBuf, reason: String },
    #[error("{path} is corrupt: {at}: {reason}")]
    Corrupt {
        path: PathBuf,
        /// Where: `page N`, or `inline bucket in page N`.
        at: String,
        reason: String,
    },
}

/// A bucket: the root of one B+tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    root: Root,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Root {
    /// The tree's root page.
    Page(u64),
    /// An inline bucket: its one leaf page, copied out of the value that
    /// held it, and the page that value was found in (for messages).
    Inline { page: Vec<u8>, parent: u64 },
}

/// What a key in a bucket holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Data(Vec<u8>),
    Bucket(Bucket),
}

/// What a valid meta page records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    page_size: u64,
    root: u64,
    high_water: u64,
    txid: u64,
}

/// An open bbolt file, read through positioned reads.
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    file: File,
    len: u64,
    meta: Meta,
}

impl Db {
    /// Opens the file at `path` (a path the caller chose, resolved the
    /// ordinary way) and reads its meta pages.
    pub fn open(path: impl Into<PathBuf>) -> Result<Db> {
        let path = path.into();
        let file = File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Db::from_file(file, path)
    }

    /// Reads the meta pages of an open file; `path` names it in messages.
    /// The file must be a regular file.
    pub fn from_file(file: File, path: impl Into<PathBuf>) -> Result<Db> {
        let path = path.into();
        let st = file.metadata().map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let kind = st.file_type();
        if !kind.is_file() {
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_fifo() || kind.is_socket() {
                "a pipe or socket"
            } else {
                "not a regular file"
            };
            return Err(Error::NotBolt {
                path,
                reason: format!("it is {what}"),
            });
        }
        let mut db = Db {
            path,
            file,
            len: st.len(),
            meta: Meta {
                page_size: 0,
                root: 0,
                high_water: 0,
                txid: 0,
            },
        };
        db.meta = db.read_meta()?;
        // bbolt grows the file and writes a commit's pages before its meta
        // page: the length after the meta was read covers every page it
        // names, even when a commit landed between the first stat and it.
        db.len = db
            .file
            .metadata()
            .map_err(|source| db.io(source))?
            .len()
            .max(db.len);
        Ok(db)
    }

    /// The file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's page size.
    pub fn page_size(&self) -> u64 {
        self.meta.page_size
    }

    /// The transaction id of the meta page in use.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// The root bucket, whose keys name the top-level buckets.
    pub fn root(&self) -> Bucket {
        Bucket {
            root: Root::Page(self.meta.root),
        }
    }

    /// Whether the file's current meta page is still the one this `Db` was
    /// opened at (no commit since, and the file no shorter): what was read
    /// is then one transaction's consistent view.
    pub fn is_current(&self) -> Result<bool> {
        let len = self
            .file
            .metadata()
            .map_err(|source| self.io(source))?
            .len();
        if len < self.len {
            return Ok(false);
        }
        match self.read_meta() {
            Ok(meta) => Ok(meta == self.meta),
            Err(Error::Io { .. }) | Err(Error::NotBolt { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The value of `key` in `bucket`, a nested bucket or data; `None` when
    /// the bucket has no such key.
    pub fn get(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<Value>> {
        match &bucket.root {
            Root::Inline { page, parent } => {
                let at = Where::Inline(*parent);
                let node = Node::parse(page, at, self)?;
                if node.flags != LEAF_PAGE {
                    return Err(self.corrupt(at, "an inline bucket that is not a leaf page"));
                }
                self.find_in_leaf(&node, key)
            }
            Root::Page(root) => {
                let mut id = *root;
                for _ in 0..MAX_DEPTH {
                    let data = self.node_bytes(id)?;
                    let node = Node::parse(&data, Where::Page(id), self)?;
                    if node.flags == LEAF_PAGE {
                        return self.find_in_leaf(&node, key);
                    }
                    id = self.child_for(&node, key)?;
                }
                Err(self.corrupt(
                    Where::Page(*root),
                    format!("the tree below it is deeper than {MAX_DEPTH} levels (a cycle?)"),
                ))
            }
        }
    }

    /// The nested bucket `name` in `bucket`; `None` when absent or when the
    /// key holds data.
    pub fn bucket(&self, bucket: &Bucket, name: &[u8]) -> Result<Option<Bucket>> {
        Ok(match self.get(bucket, name)? {
            Some(Value::Bucket(b)) => Some(b),
            _ => None,
        })
    }

    /// The data stored at `key` in `bucket`; `None` when absent or when the
    /// key is a nested bucket.
    pub fn data(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(match self.get(bucket, key)? {
            Some(Value::Data(d)) => Some(d),
            _ => None,
        })
    }

    /// The bucket reached from the root bucket through `names`, one nested
    /// bucket per name; `None` when one is missing.
    pub fn bucket_at(&self, names: &[&[u8]]) -> Result<Option<Bucket>> {
        let mut b = self.root();
        for name in names {
            match self.bucket(&b, name)? {
                Some(next) => b = next,
                None => return Ok(None),
            }
        }
        Ok(Some(b))
    }

    /// Every key of `bucket` with its value, in the tree's order; at most
    /// [`MAX_ENTRIES`] of them and [`MAX_ENTRIES_SIZE`] bytes of keys and
    /// data, else an error.
    pub fn entries(&self, bucket: &Bucket) -> Result<Vec<(Vec<u8>, Value)>> {
        let mut out = Entries::default();
        match &bucket.root {
            Root::Inline { page, parent } => {
                let at = Where::Inline(*parent);
                let node = Node::parse(page, at, self)?;
                if node.flags != LEAF_PAGE {
                    return Err(self.corrupt(at, "an inline bucket that is not a leaf page"));
                }
                self.collect_leaf(&node, &mut out)?;
            }
            Root::Page(root) => {
                // Depth-first, children pushed last-first so keys come out in
                // order; each page is visited once, so a cycle cannot loop.
                let mut seen = HashSet::new();
                let mut stack = vec![(*root, 0usize)];
                while let Some((id, depth)) = stack.pop() {
                    if depth >= MAX_DEPTH {
                        return Err(self.corrupt(
                            Where::Page(*root),
                            format!("the tree below it is deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    if !seen.insert(id) {
                        return Err(self.corrupt(
                            Where::Page(id),
                            "reached twice in one tree (a cycle or a shared page)",
                        ));
                    }
                    let data = self.node_bytes(id)?;
                    let node = Node::parse(&data, Where::Page(id), self)?;
                    if node.flags == LEAF_PAGE {
                        self.collect_leaf(&node, &mut out)?;
                    } else {
                        for i in (0..node.count).rev() {
                            let (_, child) = node.branch(i, self)?;
                            stack.push((child, depth + 1));
                        }
                    }
                }
            }
        }
        Ok(out.items)
    }

    // -- meta pages ----------------------------------------------------------

    /// Finds the page size and the current meta page, as bbolt's open does.
    fn read_meta(&self) -> Result<Meta> {
        if self.len < (PAGE_HEADER + META_SIZE) as u64 {
            return Err(self.not_bolt(format!(
                "it is {} bytes, shorter than one meta page",
                self.len
            )));
        }
        let first = parse_meta(&self.read_exact(0, PAGE_HEADER + META_SIZE)?);
        let page_size = match &first {
            Ok(m) => m.page_size,
            // Page 0 is torn: look for page 1 at each page size bbolt
            // allows, as bbolt does.
            Err(_) => {
                let mut found = None;
                let mut pos = MIN_PAGE_SIZE;
                while pos <= MAX_PAGE_SIZE && pos + ((PAGE_HEADER + META_SIZE) as u64) <= self.len {
                    let buf = self.read_exact(pos, PAGE_HEADER + META_SIZE)?;
                    if let Ok(m) = parse_meta(&buf) {
                        if m.page_size == pos {
                            found = Some(pos);
                            break;
                        }
                    }
                    pos <<= 1;
                }
                match found {
                    Some(ps) => ps,
                    None => {
                        let why = first.clone().err().unwrap_or_default();
                        return Err(self.not_bolt(format!(
                            "meta page 0 is invalid ({why}) and no valid meta page 1 was found"
                        )));
                    }
                }
            }
        };
        let second = if page_size + ((PAGE_HEADER + META_SIZE) as u64) <= self.len {
            parse_meta(&self.read_exact(page_size, PAGE_HEADER + META_SIZE)?)
        } else {
            Err("beyond the end of the file".to_string())
        };
        let usable = |m: &std::result::Result<Meta, String>| match m {
            Ok(m) if m.page_size == page_size => Ok(*m),
            Ok(m) => Err(format!(
                "page size {} differs from the other meta page's {page_size}",
                m.page_size
            )),
            Err(e) => Err(e.clone()),
        };
        match (usable(&first), usable(&second)) {
            (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
            (Err(a), Err(b)) => Err(self.not_bolt(format!(
                "neither meta page is valid (page 0: {a}; page 1: {b})"
            ))),
        }
    }

    // -- pages ---------------------------------------------------------------

    /// The bytes of node `id`: the page and its overflow pages, after
    /// checking that they lie below the high-water mark and inside the file
    /// and that the page's header names it.
    fn node_bytes(&self, id: u64) -> Result<Vec<u8>> {
        let at = Where::Page(id);
        if id < 2 {
            return Err(self.corrupt(at, "a tree refers to a meta page"));
        }
        if id >= self.meta.high_water {
            return Err(self.corrupt(
                at,
                format!(
                    "beyond the high-water mark: the file has {} pages",
                    self.meta.high_water
                ),
            ));
        }
        let ps = self.meta.page_size;
        let offset = id
            .checked_mul(ps)
            .filter(|o| o.saturating_add(ps) <= self.len)
            .ok_or_else(|| {
                self.corrupt(
                    at,
                    format!("beyond the end of the file ({} bytes)", self.len),
                )
            })?;
        let header = self.read_exact(offset, PAGE_HEADER)?;
        let own_id = le_u64(&header, 0);
        if own_id != id {
            return Err(self.corrupt(at, format!("its header says it is page {own_id}")));
        }
        let overflow = u64::from(le_u32(&header, 12));
        let last = id + overflow;
        if last >= self.meta.high_water {
            return Err(self.corrupt(
                at,
                format!(
                    "its {overflow} overflow pages run past the high-water mark {}",
                    self.meta.high_water
                ),
            ));
        }
        let span = (overflow + 1) * ps;
        if span > MAX_NODE_SIZE {
            return Err(self.corrupt(
                at,
                format!("a node of {span} bytes, larger than the {MAX_NODE_SIZE}-byte limit"),
            ));
        }
        if offset + span > self.len {
            return Err(self.corrupt(
                at,
                format!(
                    "its {overflow} overflow pages run past the end of the file ({} bytes)",
                    self.len
                ),
            ));
        }
        // `span` is at most MAX_NODE_SIZE, so it fits a usize.
        self.read_exact(offset, span as usize)
    }

    /// The child of branch `node` whose keys may hold `key`: the last
    /// element whose key is not greater than it, else the first.
    fn child_for(&self, node: &Node<'_>, key: &[u8]) -> Result<u64> {
        if node.count == 0 {
            return Err(self.corrupt(node.at, "an empty branch page"));
        }
        let mut child = node.branch(0, self)?.1;
        for i in 1..node.count {
            let (k, c) = node.branch(i, self)?;
            if k > key {
                break;
            }
            child = c;
        }
        Ok(child)
    }

    fn find_in_leaf(&self, node: &Node<'_>, key: &[u8]) -> Result<Option<Value>> {
        for i in 0..node.count {
            let (flags, k, v) = node.leaf(i, self)?;
            if k == key {
                return self.value(node.at, flags, v).map(Some);
            }
        }
        Ok(None)
    }

    fn collect_leaf(&self, node: &Node<'_>, out: &mut Entries) -> Result<()> {
        for i in 0..node.count {
            let (flags, k, v) = node.leaf(i, self)?;
            out.size += k.len() + if flags & BUCKET_LEAF == 0 { v.len() } else { 0 };
            if out.items.len() >= MAX_ENTRIES || out.size > MAX_ENTRIES_SIZE {
                return Err(self.corrupt(
                    node.at,
                    format!("a bucket of more than {MAX_ENTRIES} keys or {MAX_ENTRIES_SIZE} bytes"),
                ));
            }
            out.items.push((k.to_vec(), self.value(node.at, flags, v)?));
        }
        Ok(())
    }

    /// A leaf element's value: data, or a nested bucket's header (and
    /// inline page).
    fn value(&self, at: Where, flags: u32, v: &[u8]) -> Result<Value> {
        if flags & BUCKET_LEAF == 0 {
            return Ok(Value::Data(v.to_vec()));
        }
        if v.len() < BUCKET_HEADER {
            return Err(self.corrupt(at, format!("a nested bucket's header is {} bytes", v.len())));
        }
        let root = le_u64(v, 0);
        let root = if root == 0 {
            let parent = match at {
                Where::Page(p) | Where::Inline(p) => p,
            };
            Root::Inline {
                page: v[BUCKET_HEADER..].to_vec(),
                parent,
            }
        } else {
            Root::Page(root)
        };
        Ok(Value::Bucket(Bucket { root }))
    }

    // -- plumbing ------------------------------------------------------------

    fn read_exact(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| self.io(source))?;
        Ok(buf)
    }

    fn io(&self, source: io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn not_bolt(&self, reason: String) -> Error {
        Error::NotBolt {
            path: self.path.clone(),
            reason,
        }
    }

    fn corrupt(&self, at: Where, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            at: at.to_string(),
            reason: reason.into(),
        }
    }
}

/// What [`Db::entries`] has collected so far.
#[derive(Default)]
struct Entries {
    items: Vec<(Vec<u8>, Value)>,
    /// Bytes of keys and data values.
    size: usize,
}

/// Where a node was read from, for messages.
#[derive(Debug, Clone, Copy)]
enum Where {
    Page(u64),
    /// An inline bucket, found in this page.
    Inline(u64),
}

impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Page(p) => write!(f, "page {p}"),
            Where::Inline(p) => write!(f, "inline bucket in page {p}"),
        }
    }
}

/// A branch or leaf page's bytes (its whole span), with its header checked:
/// the element array fits in the span.
struct Node<'a> {
    data: &'a [u8],
    at: Where,
    flags: u16,
    count: usize,
}

impl<'a> Node<'a> {
    fn parse(data: &'a [u8], at: Where, db: &Db) -> Result<Node<'a>> {
        if data.len() < PAGE_HEADER {
            return Err(db.corrupt(at, format!("a page of {} bytes", data.len())));
        }
        let flags = le_u16(data, 8);
        if flags != BRANCH_PAGE && flags != LEAF_PAGE {
            let kind = match flags {
                META_PAGE => "a meta page".to_string(),
                FREELIST_PAGE => "a freelist page".to_string(),
                f => format!("a page with flags {f:#x}"),
            };
            return Err(db.corrupt(at, format!("{kind} where a branch or leaf page belongs")));
        }
        let count = usize::from(le_u16(data, 10));
        if PAGE_HEADER + count * ELEMENT_SIZE > data.len() {
            return Err(db.corrupt(
                at,
                format!("{count} elements do not fit in its {} bytes", data.len()),
            ));
        }
        Ok(Node {
            data,
            at,
            flags,
            count,
        })
    }

    /// The bytes `[elem + pos, elem + pos + len)`, inside the span.
    fn slice(&self, elem: usize, pos: u32, len: u64, i: usize, db: &Db) -> Result<&'a [u8]> {
        let start = elem as u64 + u64::from(pos);
        let end = start.saturating_add(len);
        if end > self.data.len() as u64 {
            return Err(db.corrupt(
                self.at,
                format!(
                    "element {i} points at bytes {start}..{end}, outside its {} bytes",
                    self.data.len()
                ),
            ));
        }
        // Both bounds are at most data.len(), so they fit a usize.
        Ok(&self.data[start as usize..end as usize])
    }

    /// Branch element `i`: its key and child page id.
    fn branch(&self, i: usize, db: &Db) -> Result<(&'a [u8], u64)> {
        let e = PAGE_HEADER + i * ELEMENT_SIZE;
        let pos = le_u32(self.data, e);
        let ksize = le_u32(self.data, e + 4);
        let child = le_u64(self.data, e + 8);
        let key = self.slice(e, pos, u64::from(ksize), i, db)?;
        Ok((key, child))
    }

    /// Leaf element `i`: its flags, key and value.
    fn leaf(&self, i: usize, db: &Db) -> Result<(u32, &'a [u8], &'a [u8])> {
        let e = PAGE_HEADER + i * ELEMENT_SIZE;
        let flags = le_u32(self.data, e);
        let pos = le_u32(self.data, e + 4);
        let ksize = u64::from(le_u32(self.data, e + 8));
        let vsize = u64::from(le_u32(self.data, e + 12));
        let both = self.slice(e, pos, ksize + vsize, i, db)?;
        // ksize <= both.len(), checked by slice.
        let (key, value) = both.split_at(ksize as usize);
        Ok((flags, key, value))
    }
}

/// Parses and validates the meta struct of a meta page (`buf` starts at the
/// page and holds at least the header and the struct).
fn parse_meta(buf: &[u8]) -> std::result::Result<Meta, String> {
    let m = &buf[PAGE_HEADER..PAGE_HEADER + META_SIZE];
    let magic = le_u32(m, 0);
    if magic != MAGIC {
        return Err(format!("magic {magic:#010x}, not {MAGIC:#010x}"));
    }
    let version = le_u32(m, 4);
    if version != VERSION {
        return Err(format!("format version {version}, not {VERSION}"));
    }
    let checksum = le_u64(m, META_CHECKSUMMED);
    let sum = fnv1a64(&m[..META_CHECKSUMMED]);
    if checksum != sum {
        return Err(format!(
            "checksum {checksum:#018x} does not match its content ({sum:#018x})"
        ));
    }
    let page_size = u64::from(le_u32(m, 8));
    if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(format!("page size {page_size}"));
    }
    let root = le_u64(m, 16);
    let high_water = le_u64(m, 40);
    if root < 2 || root >= high_water {
        return Err(format!(
            "root bucket page {root} outside pages 2..{high_water}"
        ));
    }
    Ok(Meta {
        page_size,
        root,
        high_water,
        txid: le_u64(m, 48),
    })
}

/// FNV-1a, 64 bits.
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// Callers index within bounds they checked: the page header, an element
// array that fits its span, the meta struct.
fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 1024;

    /// A tiny bbolt file built by hand, page by page.
    struct Builder {
        pages: Vec<Vec<u8>>,
    }

    fn header(id: u64, flags: u16, count: u16, overflow: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(id.to_le_bytes());
        h.extend(flags.to_le_bytes());
        h.extend(count.to_le_bytes());
        h.extend(overflow.to_le_bytes());
        h
    }

    /// A leaf page body: elements then keys and values, each element's
    /// offset relative to itself.
    fn leaf(id: u64, items: &[(u32, &[u8], &[u8])]) -> Vec<u8> {
        let mut p = header(id, LEAF_PAGE, items.len() as u16, 0);
        let data_start = PAGE_HEADER + items.len() * ELEMENT_SIZE;
        let mut data = Vec::new();
        for (i, (flags, k, v)) in items.iter().enumerate() {
            let elem = PAGE_HEADER + i * ELEMENT_SIZE;
            let pos = (data_start + data.len() - elem) as u32;
            p.extend(flags.to_le_bytes());
            p.extend(pos.to_le_bytes());
            p.extend((k.len() as u32).to_le_bytes());
            p.extend((v.len() as u32).to_le_bytes());
            data.extend_from_slice(k);
            data.extend_from_slice(v);
        }
        p.extend(data);
        p
    }

    fn branch(id: u64, items: &[(&[u8], u64)]) -> Vec<u8> {
        let mut p = header(id, BRANCH_PAGE, items.len() as u16, 0);
        let data_start = PAGE_HEADER + items.len() * ELEMENT_SIZE;
        let mut data = Vec::new();
        for (i, (k, child)) in items.iter().enumerate() {
            let elem = PAGE_HEADER + i * ELEMENT_SIZE;
            let pos = (data_start + data.len() - elem) as u32;
            p.extend(pos.to_le_bytes());
            p.extend((k.len() as u32).to_le_bytes());
            p.extend(child.to_le_bytes());
            data.extend_from_slice(k);
        }
        p.extend(data);
        p
    }

    fn meta(id: u64, root: u64, high_water: u64, txid: u64) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(MAGIC.to_le_bytes());
        m.extend(VERSION.to_le_bytes());
        m.extend((PS as u32).to_le_bytes());
        m.extend(0u32.to_le_bytes());
        m.extend(root.to_le_bytes());
        m.extend(0u64.to_le_bytes());
        m.extend(u64::MAX.to_le_bytes());
        m.extend(high_water.to_le_bytes());
        m.extend(txid.to_le_bytes());
        let sum = fnv1a64(&m);
        m.extend(sum.to_le_bytes());
        let mut p = header(id, META_PAGE, 0, 0);
        p.extend(m);
        p
    }

    fn bucket_value(root: u64, inline: Option<Vec<u8>>) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(root.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        if let Some(page) = inline {
            v.extend(page);
        }
        v
    }

    impl Builder {
        /// Meta pages 0 and 1 (txids 1 and 2) with root page 2, then `pages`
        /// from page 2 on.
        fn new(pages: Vec<Vec<u8>>) -> Builder {
            let hw = 2 + pages.len() as u64;
            let mut all = vec![meta(0, 2, hw, 2), meta(1, 2, hw, 1)];
            all.extend(pages);
            Builder { pages: all }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            for p in &self.pages {
                let mut p = p.clone();
                let pages = p.len().div_ceil(PS).max(1);
                p.resize(pages * PS, 0);
                out.extend(p);
            }
            out
        }

        fn open(&self, dir: &tempfile::TempDir) -> Result<Db> {
            open_bytes(dir, &self.bytes())
        }
    }

    fn open_bytes(dir: &tempfile::TempDir, bytes: &[u8]) -> Result<Db> {
        let path = dir.path().join("meta.db");
        std::fs::write(&path, bytes).unwrap();
        Db::open(path)
    }

    /// v1 → ns (inline) → {images (page 4) → {a, b}}, and a data key.
    fn sample() -> Builder {
        let images = leaf(4, &[(0, b"a", b"1"), (0, b"b", b"2")]);
        let ns_inline = leaf(0, &[(BUCKET_LEAF, b"images", &bucket_value(4, None))]);
        let v1 = leaf(
            3,
            &[
                (BUCKET_LEAF, b"ns", &bucket_value(0, Some(ns_inline))),
                (0, b"version", b"\x06"),
            ],
        );
        let root = leaf(2, &[(BUCKET_LEAF, b"v1", &bucket_value(3, None))]);
        Builder::new(vec![root, v1, images])
    }

    #[test]
    fn reads_nested_inline_and_paged_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let db = sample().open(&dir).unwrap();
        assert_eq!(db.txid(), 2);
        assert_eq!(db.page_size(), PS as u64);
        let images = db
            .bucket_at(&[b"v1", b"ns", b"images"])
            .unwrap()
            .expect("images bucket");
        assert_eq!(db.data(&images, b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(db.data(&images, b"c").unwrap(), None);
        let keys: Vec<_> = db
            .entries(&images)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        let v1 = db.bucket_at(&[b"v1"]).unwrap().unwrap();
        assert_eq!(db.data(&v1, b"version").unwrap(), Some(vec![6]));
        // A data key is not a bucket, a bucket is not data.
        assert_eq!(db.bucket(&v1, b"version").unwrap(), None);
        assert_eq!(db.data(&v1, b"ns").unwrap(), None);
        assert!(db.bucket_at(&[b"v1", b"other"]).unwrap().is_none());
        assert!(db.is_current().unwrap());
    }

    #[test]
    fn branch_pages_route_to_the_right_leaf() {
        let left = leaf(3, &[(0, b"a", b"1"), (0, b"c", b"3")]);
        let right = leaf(4, &[(0, b"m", b"13"), (0, b"z", b"26")]);
        let root = branch(2, &[(b"a", 3), (b"m", 4)]);
        let dir = tempfile::tempdir().unwrap();
        let db = Builder::new(vec![root, left, right]).open(&dir).unwrap();
        let r = db.root();
        for (k, v) in [("a", "1"), ("c", "3"), ("m", "13"), ("z", "26")] {
            assert_eq!(
                db.data(&r, k.as_bytes()).unwrap(),
                Some(v.as_bytes().to_vec())
            );
        }
        assert_eq!(db.data(&r, b"b").unwrap(), None);
        assert_eq!(db.data(&r, b"0").unwrap(), None);
        assert_eq!(db.entries(&r).unwrap().len(), 4);
    }

    #[test]
    fn overflow_pages_are_read_with_their_page() {
        let big = vec![7u8; 3000];
        let mut p = leaf(2, &[(0, b"big", &big)]);
        p[12..16].copy_from_slice(&2u32.to_le_bytes());
        let mut b = Builder::new(vec![p]);
        // The node spans pages 2..=4: the high-water mark is 5.
        b.pages[0] = meta(0, 2, 5, 2);
        b.pages[1] = meta(1, 2, 5, 1);
        let dir = tempfile::tempdir().unwrap();
        let db = b.open(&dir).unwrap();
        assert_eq!(db.data(&db.root(), b"big").unwrap(), Some(big));
    }

    #[test]
    fn the_valid_meta_with_the_higher_txid_wins() {
        let dir = tempfile::tempdir().unwrap();
        // Page 0: txid 2, root 2; page 1: txid 1, root 3. Each root holds a
        // different value for "k".
        let old = leaf(3, &[(0, b"k", b"old")]);
        let new = leaf(2, &[(0, b"k", b"new")]);
        let mut b = Builder::new(vec![new, old]);
        b.pages[0] = meta(0, 2, 4, 2);
        b.pages[1] = meta(1, 3, 4, 1);
        let db = b.open(&dir).unwrap();
        assert_eq!(db.data(&db.root(), b"k").unwrap(), Some(b"new".to_vec()));
        // A torn page 0 (a flipped byte): page 1's older transaction is used.
        let mut bytes = b.bytes();
        bytes[PAGE_HEADER + 20] ^= 0xff;
        let db = open_bytes(&dir, &bytes).unwrap();
        assert_eq!(db.txid(), 1);
        assert_eq!(db.data(&db.root(), b"k").unwrap(), Some(b"old".to_vec()));
        // Both torn: refused, naming the file.
        bytes[PS + PAGE_HEADER + 20] ^= 0xff;
        let e = open_bytes(&dir, &bytes).unwrap_err().to_string();
        assert!(e.contains("meta.db is not a bbolt database"), "{e}");
        assert!(e.contains("checksum"), "{e}");
    }

    fn corrupt_message(pages: Vec<Vec<u8>>, lookup: &[&[u8]]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let db = Builder::new(pages).open(&dir).unwrap();
        let (last, path) = lookup.split_last().unwrap();
        let e = db
            .bucket_at(path)
            .and_then(|b| db.get(&b.expect("bucket"), last))
            .expect_err("a corrupt file");
        let s = e.to_string();
        assert!(s.contains("meta.db is corrupt"), "{s}");
        s
    }

    #[test]
    fn hostile_pages_give_errors_naming_the_file() {
        // Element offsets out of the page.
        let mut p = leaf(2, &[(0, b"k", b"v")]);
        p[PAGE_HEADER + 4..PAGE_HEADER + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let s = corrupt_message(vec![p], &[b"k"]);
        assert!(s.contains("page 2") && s.contains("outside"), "{s}");

        // A value size beyond the page.
        let mut p = leaf(2, &[(0, b"k", b"v")]);
        p[PAGE_HEADER + 12..PAGE_HEADER + 16].copy_from_slice(&5000u32.to_le_bytes());
        let s = corrupt_message(vec![p], &[b"k"]);
        assert!(s.contains("outside"), "{s}");

        // More elements than the page holds.
        let mut p = leaf(2, &[(0, b"k", b"v")]);
        p[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
        let s = corrupt_message(vec![p], &[b"k"]);
        assert!(s.contains("elements do not fit"), "{s}");

        // A child page beyond the high-water mark.
        let s = corrupt_message(vec![branch(2, &[(b"a", 99)])], &[b"a"]);
        assert!(s.contains("page 99") && s.contains("high-water"), "{s}");

        // A child that is a meta page.
        let s = corrupt_message(vec![branch(2, &[(b"a", 0)])], &[b"a"]);
        assert!(s.contains("meta page"), "{s}");

        // A branch pointing at itself: the depth cap ends the descent.
        let s = corrupt_message(vec![branch(2, &[(b"a", 2)])], &[b"a"]);
        assert!(s.contains("deeper than"), "{s}");

        // A page whose header names another page.
        let s = corrupt_message(vec![branch(2, &[(b"a", 3)]), leaf(7, &[])], &[b"a"]);
        assert!(
            s.contains("page 3") && s.contains("says it is page 7"),
            "{s}"
        );

        // Overflow past the high-water mark and the file.
        let mut p = leaf(2, &[(0, b"k", b"v")]);
        p[12..16].copy_from_slice(&1000u32.to_le_bytes());
        let s = corrupt_message(vec![p], &[b"k"]);
        assert!(s.contains("overflow"), "{s}");

        // A freelist page in the tree.
        let s = corrupt_message(vec![header(2, FREELIST_PAGE, 0, 0)], &[b"k"]);
        assert!(s.contains("freelist page"), "{s}");

        // An empty branch.
        let s = corrupt_message(vec![branch(2, &[])], &[b"k"]);
        assert!(s.contains("empty branch"), "{s}");

        // A nested bucket header cut short.
        let p = leaf(2, &[(BUCKET_LEAF, b"b", b"short")]);
        let s = corrupt_message(vec![p], &[b"b", b"k"]);
        assert!(s.contains("header is 5 bytes"), "{s}");

        // An inline bucket whose page is cut short or is a branch.
        let p = leaf(
            2,
            &[(BUCKET_LEAF, b"b", &bucket_value(0, Some(vec![1, 2])))],
        );
        let s = corrupt_message(vec![p], &[b"b", b"k"]);
        assert!(s.contains("inline bucket in page 2"), "{s}");
        let inline = branch(0, &[(b"k", 2)]);
        let p = leaf(2, &[(BUCKET_LEAF, b"b", &bucket_value(0, Some(inline)))]);
        let s = corrupt_message(vec![p], &[b"b", b"k"]);
        assert!(s.contains("not a leaf"), "{s}");
    }

    #[test]
    fn a_walk_visits_each_page_once() {
        // Both branch elements point at the same leaf.
        let dir = tempfile::tempdir().unwrap();
        let pages = vec![
            branch(2, &[(b"a", 3), (b"m", 3)]),
            leaf(3, &[(0, b"a", b"")]),
        ];
        let db = Builder::new(pages).open(&dir).unwrap();
        let e = db.entries(&db.root()).unwrap_err().to_string();
        assert!(e.contains("reached twice"), "{e}");
        // A cycle through a branch.
        let pages = vec![branch(2, &[(b"a", 3)]), branch(3, &[(b"a", 2)])];
        let db = Builder::new(pages).open(&dir).unwrap();
        let e = db.entries(&db.root()).unwrap_err().to_string();
        assert!(e.contains("reached twice"), "{e}");
    }

    #[test]
    fn short_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [
            Vec::new(),
            vec![0u8; 40],
            vec![0u8; 8192],
            b"not a database at all, just some text".repeat(100),
        ] {
            let e = open_bytes(&dir, &bytes).unwrap_err().to_string();
            assert!(e.contains("meta.db is not a bbolt database"), "{e}");
        }
        // Truncated after the meta pages: the root page is past the end.
        let bytes = sample().bytes();
        let db = open_bytes(&dir, &bytes[..2 * PS + 100]).unwrap();
        let e = db.bucket_at(&[b"v1"]).unwrap_err().to_string();
        assert!(e.contains("beyond the end of the file"), "{e}");
        // A directory.
        let e = Db::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
    }

    #[test]
    fn a_commit_after_open_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let b = sample();
        let db = b.open(&dir).unwrap();
        assert!(db.is_current().unwrap());
        // Rewrite meta page 1 with a newer transaction, in place.
        let mut bytes = b.bytes();
        bytes[PS..PS + PAGE_HEADER + META_SIZE].copy_from_slice(&meta(1, 2, 5, 3));
        std::fs::write(dir.path().join("meta.db"), &bytes).unwrap();
        assert!(!db.is_current().unwrap());
    }

    /// Every lookup and walk over the sample's buckets, errors allowed.
    fn exercise(db: &Db) {
        let mut stack = vec![db.root()];
        let mut n = 0;
        while let Some(b) = stack.pop() {
            n += 1;
            if n > 64 {
                break;
            }
            for key in [&b"v1"[..], b"ns", b"images", b"a", b"b", b"version", b"zz"] {
                let _ = db.get(&b, key);
            }
            if let Ok(entries) = db.entries(&b) {
                for (_, v) in entries {
                    if let Value::Bucket(nested) = v {
                        stack.push(nested);
                    }
                }
            }
        }
        let _ = db.is_current();
    }

    #[test]
    fn random_damage_gives_errors_or_answers_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let good = sample().bytes();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let mut bytes = good.clone();
            // A few bytes anywhere past the meta pages, more in later rounds.
            for _ in 0..1 + round / 30 {
                let at = 2 * PS + (next() as usize) % (bytes.len() - 2 * PS);
                bytes[at] = next() as u8;
            }
            // Now and then a cut.
            if round % 7 == 0 {
                let len = 2 * PS + (next() as usize) % (bytes.len() - 2 * PS);
                bytes.truncate(len);
            }
            if let Ok(db) = open_bytes(&dir, &bytes) {
                exercise(&db);
            }
        }
    }

    #[test]
    fn a_hostile_but_checksummed_meta_page_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        // High-water mark u64::MAX, and a branch naming pages near it: the
        // page offset overflows, which is an error, not a wrap.
        let pages = vec![branch(2, &[(b"a", u64::MAX - 1), (b"m", u64::MAX / 1024)])];
        let mut b = Builder::new(pages);
        b.pages[0] = meta(0, 2, u64::MAX, 2);
        b.pages[1] = meta(1, 2, u64::MAX, 1);
        let db = b.open(&dir).unwrap();
        for key in [&b"a"[..], b"z"] {
            let e = db.get(&db.root(), key).unwrap_err().to_string();
            assert!(e.contains("beyond the end of the file"), "{e}");
        }
        // A root bucket page at or past the high-water mark, or a meta page.
        for (root, hw) in [(9, 5), (1, 5)] {
            let mut b = sample();
            b.pages[0] = meta(0, root, hw, 2);
            b.pages[1] = meta(1, root, hw, 1);
            let e = b.open(&dir).unwrap_err().to_string();
            assert!(e.contains("root bucket page"), "{e}");
        }
    }

    #[test]
    fn fnv1a64_matches_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
