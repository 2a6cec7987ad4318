//! Pre-copy: file data read while the session runs, in rounds between a live
//! commit's first pass and its freeze, so that the frozen pass reads only
//! what changed after the last round (as a VM's live migration copies memory
//! before it stops the VM).
//!
//! A round is a delta pass against what the first pass wrote, whose visitor
//! ([`PreCopy::round`]) keeps each changed file's data in a scratch file,
//! the store, with a hash of every [`CHUNK`] of it. The frozen pass then takes
//! a file's data from the store ([`SpoolCopy`]):
//!
//! - whole, when the file is provably as it was copied: the same inode, size,
//!   times and mode, and its last change well before the copy was read (a
//!   change in the same clock tick as the read might not show in its ctime);
//! - all but a tail, when the file grew: the part kept is checked first, every
//!   byte of the frozen file's prefix hashed and compared with the copy's
//!   chunk hashes, so nothing assumes an appended file was only appended to;
//! - not at all otherwise: the file is read again.
//!
//! It knows nothing of sessions or passes: callers run the walks.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use rustc_hash::FxHashMap as HashMap;
use xxhash_rust::xxh3::Xxh3;

use crate::delta::{racy_after_now, Baseline};
use crate::error::{Error, Result};
use crate::fs::output::Unnamed;
use crate::layer::DataCopy;
use crate::tar::{CopyError, Header};
use crate::walk::{walk_pass, Data, Event, Ident, Pass, Progress, TreeSpec, Visitor};

/// The span each stored hash covers.
pub const CHUNK: usize = 1 << 20;

/// Files smaller than this are read again rather than checked: reading them
/// costs about what checking them would.
const MIN_TAIL: u64 = 256 << 10;

/// A prefix of at least this many chunks is checked on several threads...
const PARALLEL_CHUNKS: usize = 8;
/// ...at most this many.
const MAX_CHECKERS: usize = 4;

/// Bytes in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// One file's data as a round copied it.
#[derive(Debug)]
struct Copy {
    /// The file as it was stat'ed before the copy was read.
    ident: Ident,
    /// The copy holds every change with a ctime before this.
    settled_before: (i64, i64),
    /// Where its bytes are, in order.
    extents: Vec<Extent>,
    len: u64,
    /// A hash of each [`CHUNK`] of the bytes (the last may be shorter).
    chunks: Vec<u128>,
}

/// What to do with a file the store may hold.
enum Plan {
    /// Read it all.
    Fresh,
    /// Its data is the stored copy.
    Whole(Vec<Extent>),
    /// Its data starts with the stored copy, checked: read on from `from`
    /// (where the file is positioned). `hasher` has hashed the prefix.
    Tail {
        stored: Vec<Extent>,
        from: u64,
        hasher: Box<ChunkHasher>,
    },
}

/// Hashes a stream of bytes, one hash per [`CHUNK`] (as `xxh3_128` of the
/// chunk alone).
#[derive(Clone)]
struct ChunkHasher {
    state: Xxh3,
    in_chunk: usize,
    done: Vec<u128>,
}

impl ChunkHasher {
    fn new() -> Self {
        ChunkHasher {
            state: Xxh3::new(),
            in_chunk: 0,
            done: Vec::new(),
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = (CHUNK - self.in_chunk).min(data.len());
            self.state.update(&data[..n]);
            self.in_chunk += n;
            data = &data[n..];
            if self.in_chunk == CHUNK {
                self.done.push(self.state.digest128());
                self.state.reset();
                self.in_chunk = 0;
            }
        }
    }

    fn finish(&self) -> Vec<u128> {
        let mut all = self.done.clone();
        if self.in_chunk > 0 {
            all.push(self.state.digest128());
        }
        all
    }
}

/// File data kept by pre-copy rounds, by container path.
pub struct PreCopy {
    /// The store: an unnamed scratch file beside the archive.
    store: Unnamed,
    /// A second handle on it, for reading while the first writes.
    reader: File,
    /// Where the store is, for messages.
    path: PathBuf,
    end: u64,
    /// Past this many bytes, no more is stored: later changes are read
    /// while frozen.
    budget: u64,
    files: HashMap<Box<[u8]>, Copy>,
    buf: Vec<u8>,
}

/// What a round did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Round {
    /// Bytes read from files into the store.
    pub read: u64,
    /// Bytes of the store's copies checked against the files, and kept.
    pub checked: u64,
}

impl PreCopy {
    /// A store in `store` (a scratch file, which `path` names in messages)
    /// holding at most `budget` bytes.
    pub fn new(mut store: Unnamed, path: &Path, budget: u64) -> Result<Self> {
        let reader = store.file().try_clone().map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(PreCopy {
            store,
            reader,
            path: path.to_path_buf(),
            end: 0,
            budget,
            files: HashMap::default(),
            buf: vec![0; CHUNK],
        })
    }

    /// Bytes stored, over every round.
    pub fn stored(&self) -> u64 {
        self.end
    }

    /// Drops the copy of the file at container path `path` (relative, no
    /// leading `/`): its data may have changed in a way its metadata does
    /// not show (a write through a shared mapping).
    pub fn forget(&mut self, path: &[u8]) {
        self.files.remove(path);
    }

    /// Runs a round: a delta pass over `spec` against `baseline` (what the
    /// first pass wrote) that stores the data of every file it would write,
    /// reading as little as the store allows. Names the journal listed that
    /// came and went since the first pass are forgotten.
    pub fn round(
        &mut self,
        spec: &TreeSpec,
        baseline: &mut Baseline,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<Round> {
        let mut visitor = RoundVisitor {
            pre: self,
            round: Round::default(),
        };
        let walked = walk_pass(spec, &mut visitor, progress, cancel, Pass::Delta(baseline))?;
        baseline.forget_absent(&walked.absent);
        Ok(visitor.round)
    }

    /// What the frozen pass copies from: the store, read by offset.
    pub fn spool_copy(&self) -> SpoolCopy<'_> {
        SpoolCopy {
            pre: Some(self),
            buf: vec![0; CHUNK],
            pending: VecDeque::new(),
            reused: 0,
        }
    }

    /// How the file at `path`, now `now` and open as `file` (at offset 0),
    /// can use the store. A [`Plan::Tail`] leaves `file` at the end of the
    /// checked prefix; any other plan leaves it at 0.
    fn plan(&self, path: &[u8], now: &Ident, file: &mut File, buf: &mut [u8]) -> io::Result<Plan> {
        let Some(copy) = self.files.get(path) else {
            return Ok(Plan::Fresh);
        };
        if (copy.ident.dev, copy.ident.ino, copy.ident.mode) != (now.dev, now.ino, now.mode) {
            return Ok(Plan::Fresh);
        }
        let settled = (now.ctime_sec, now.ctime_nsec) < copy.settled_before;
        if copy.ident == *now && copy.len == now.size && settled {
            return Ok(Plan::Whole(copy.extents.clone()));
        }
        if now.size < copy.len || copy.len < MIN_TAIL {
            return Ok(Plan::Fresh);
        }
        match check_prefix(file, copy, buf)? {
            Some(hasher) => Ok(Plan::Tail {
                stored: copy.extents.clone(),
                from: copy.len,
                hasher: Box::new(hasher),
            }),
            None => Ok(Plan::Fresh),
        }
    }

    /// Appends `data` to the store.
    fn put(&mut self, data: &[u8]) -> Result<()> {
        self.store
            .file()
            .write_all_at(data, self.end)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        self.end += data.len() as u64;
        Ok(())
    }

    /// Reads `file` on from where it is, up to `size` bytes in all, into the
    /// store; returns the extent written and the bytes read.
    fn store_rest(
        &mut self,
        path: &[u8],
        data: &mut Data<'_>,
        from: u64,
        size: u64,
        hasher: &mut ChunkHasher,
    ) -> Result<Extent> {
        let start = self.end;
        let mut buf = std::mem::take(&mut self.buf);
        let mut left = size - from;
        let result = loop {
            if left == 0 {
                break Ok(());
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match data.file.read(&mut buf[..want]) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => break Err(read_error(path, source)),
            };
            hasher.update(&buf[..n]);
            if let Err(e) = self.put(&buf[..n]) {
                break Err(e);
            }
            left -= n as u64;
            if let Err(e) = data.advance(n as u64) {
                break Err(e);
            }
        };
        self.buf = buf;
        result?;
        Ok(Extent {
            offset: start,
            len: self.end - start,
        })
    }

    /// Stores the data of the file at `path`, `now` as the walk stat'ed it.
    fn copy_file(
        &mut self,
        path: &[u8],
        now: &Ident,
        data: &mut Data<'_>,
        round: &mut Round,
    ) -> Result<u64> {
        let read_at = racy_after_now();
        let mut buf = std::mem::take(&mut self.buf);
        let plan = self.plan(path, now, data.file, &mut buf);
        self.buf = buf;
        let (mut extents, from, mut hasher) = match plan.map_err(|e| read_error(path, e))? {
            Plan::Whole(_) => return Ok(now.size),
            Plan::Tail {
                stored,
                from,
                hasher,
            } => {
                round.checked += from;
                (stored, from, *hasher)
            }
            Plan::Fresh => {
                self.files.remove(path);
                let sparse = rustix::fs::fstat(&*data.file)
                    .map(|st| (st.st_blocks as u64).saturating_mul(512) < now.size)
                    .unwrap_or(true);
                if sparse || self.end.saturating_add(now.size) > self.budget {
                    // Read while frozen, as without a store.
                    return Ok(0);
                }
                (Vec::new(), 0, ChunkHasher::new())
            }
        };
        let extent = self.store_rest(path, data, from, now.size, &mut hasher)?;
        round.read += extent.len;
        if extent.len > 0 {
            extents.push(extent);
        }
        let len = from + extent.len;
        self.files.insert(
            path.into(),
            Copy {
                ident: *now,
                settled_before: read_at,
                extents,
                len,
                chunks: hasher.finish(),
            },
        );
        Ok(len)
    }

    /// Reads `len` stored bytes at `offset` into `out`.
    fn read_into(&self, offset: u64, len: u64, out: &mut dyn Write) -> Result<()> {
        let mut at = offset;
        let mut left = len;
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK)).max(1)];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self
                .reader
                .read_at(&mut buf[..want], at)
                .map_err(|source| Error::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(Error::Io {
                    path: self.path.clone(),
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            out.write_all(&buf[..n]).map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
            at += n as u64;
            left -= n as u64;
        }
        Ok(())
    }
}

/// Whether the first bytes of `file` are `copy`'s, every byte hashed and
/// compared, chunk by chunk; a large prefix is checked on several threads
/// (the session is frozen meanwhile: its cores are idle). On a match, the
/// hasher that has hashed the prefix, and `file` positioned past it; else
/// `file` at 0.
fn check_prefix(file: &mut File, copy: &Copy, buf: &mut [u8]) -> io::Result<Option<ChunkHasher>> {
    use std::io::{Seek, SeekFrom};
    let whole = usize::try_from(copy.len / CHUNK as u64).unwrap_or(usize::MAX);
    if copy.chunks.len() < whole {
        return Ok(None);
    }
    let workers = if whole >= PARALLEL_CHUNKS {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_CHECKERS)
    } else {
        1
    };
    let differs = std::sync::atomic::AtomicBool::new(false);
    let span = whole.div_ceil(workers);
    let file_ref = &*file;
    let checked: io::Result<Vec<bool>> = std::thread::scope(|s| {
        let others: Vec<_> = (1..workers)
            .map(|k| {
                let (differs, expected) = (&differs, &copy.chunks);
                s.spawn(move || {
                    let range = (k * span).min(whole)..((k + 1) * span).min(whole);
                    check_chunks(file_ref, range, expected, &mut vec![0; CHUNK], differs)
                })
            })
            .collect();
        let mut all = vec![check_chunks(
            file_ref,
            0..span.min(whole),
            &copy.chunks,
            buf,
            &differs,
        )?];
        for t in others {
            all.push(
                t.join()
                    .map_err(|_| io::Error::other("a prefix check panicked"))??,
            );
        }
        Ok(all)
    });
    if !checked?.into_iter().all(|ok| ok) {
        return Ok(None);
    }
    // The last, partial chunk, hashed into the hasher that goes on with the
    // tail.
    let mut hasher = ChunkHasher {
        state: Xxh3::new(),
        in_chunk: 0,
        done: copy.chunks[..whole].to_vec(),
    };
    let partial = usize::try_from(copy.len % CHUNK as u64).unwrap_or(0);
    match file.read_exact_at(&mut buf[..partial], (whole * CHUNK) as u64) {
        Ok(()) => hasher.update(&buf[..partial]),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if hasher.finish() != copy.chunks {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(copy.len))?;
    Ok(Some(hasher))
}

/// Whether the chunks `range` of `file` hash as `expected` has them; stops
/// early (false) once `differs` is set, and sets it on a difference.
fn check_chunks(
    file: &File,
    range: std::ops::Range<usize>,
    expected: &[u128],
    buf: &mut [u8],
    differs: &std::sync::atomic::AtomicBool,
) -> io::Result<bool> {
    use std::sync::atomic::Ordering;
    let buf = &mut buf[..CHUNK];
    for i in range {
        if differs.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match file.read_exact_at(buf, (i * CHUNK) as u64) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                differs.store(true, Ordering::Relaxed);
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        if xxhash_rust::xxh3::xxh3_128(buf) != expected[i] {
            differs.store(true, Ordering::Relaxed);
            return Ok(false);
        }
    }
    Ok(true)
}

fn read_error(path: &[u8], source: io::Error) -> Error {
    Error::Io {
        path: PathBuf::from(format!("/{}", String::from_utf8_lossy(path))),
        source,
    }
}

/// The visitor of a pre-copy round.
struct RoundVisitor<'a> {
    pre: &'a mut PreCopy,
    round: Round,
}

impl Visitor for RoundVisitor<'_> {
    fn event(&mut self, event: &Event<'_>, data: Option<&mut Data<'_>>) -> Result<u64> {
        match (event, data) {
            (
                Event::Entry {
                    header,
                    ident: Some(ident),
                },
                Some(data),
            ) => self
                .pre
                .copy_file(&header.path, ident, data, &mut self.round),
            _ => Ok(0),
        }
    }
}

/// A layer's tar as the frozen pass writes it: headers and the data it reads
/// go to a scratch file; data taken from the store is only referred to, and
/// read when the layer is compressed, after the thaw.
pub struct PieceWriter {
    file: File,
    /// Bytes written to `file` since the last piece ended.
    own: u64,
    pieces: Vec<Piece>,
}

/// A run of a spooled layer's tar, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// The next `len` bytes of the spool file.
    Own(u64),
    /// Bytes of the pre-copy store.
    Stored(Extent),
}

impl PieceWriter {
    pub fn new(file: File) -> Self {
        PieceWriter {
            file,
            own: 0,
            pieces: Vec::new(),
        }
    }

    /// Adds `extent` of the store to the stream.
    pub fn refer(&mut self, extent: Extent) {
        self.close_own();
        match self.pieces.last_mut() {
            Some(Piece::Stored(last)) if last.offset + last.len == extent.offset => {
                last.len += extent.len
            }
            _ => self.pieces.push(Piece::Stored(extent)),
        }
    }

    fn close_own(&mut self) {
        if self.own > 0 {
            self.pieces.push(Piece::Own(std::mem::take(&mut self.own)));
        }
    }

    /// The spool file and the pieces of the stream, in order.
    pub fn finish(mut self) -> (File, Vec<Piece>) {
        self.close_own();
        (self.file, self.pieces)
    }

    /// Copies up to `max` bytes from `src` in the kernel; 0 at its end.
    fn copy_from(&mut self, src: &File, max: u64) -> io::Result<u64> {
        let chunk = usize::try_from(max.min(1 << 30)).unwrap_or(1 << 30);
        loop {
            match nix::fcntl::copy_file_range(src, None, &self.file, None, chunk) {
                Ok(n) => {
                    self.own += n as u64;
                    return Ok(n as u64);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Write for PieceWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.own += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Moves a frozen pass's file data into a [`PieceWriter`]: by reference to
/// the pre-copy store where [`PreCopy`] allows, else in the kernel
/// (`copy_file_range`).
pub struct SpoolCopy<'a> {
    pre: Option<&'a PreCopy>,
    buf: Vec<u8>,
    /// What the current file takes from the store, before the rest of it.
    pending: VecDeque<Extent>,
    reused: u64,
}

impl SpoolCopy<'_> {
    /// A copy with no store: every file is read.
    pub fn plain() -> Self {
        SpoolCopy {
            pre: None,
            buf: Vec::new(),
            pending: VecDeque::new(),
            reused: 0,
        }
    }

    /// Bytes taken from the store.
    pub fn reused(&self) -> u64 {
        self.reused
    }
}

impl DataCopy<PieceWriter> for SpoolCopy<'_> {
    fn start(
        &mut self,
        src: &mut File,
        header: &Header,
        ident: Option<&Ident>,
    ) -> Result<u64, CopyError> {
        self.pending.clear();
        let size = header.data_size();
        let (Some(pre), Some(now)) = (self.pre, ident) else {
            return Ok(size);
        };
        match pre
            .plan(&header.path, now, src, &mut self.buf)
            .map_err(CopyError::Read)?
        {
            Plan::Fresh => Ok(size),
            Plan::Whole(extents) => {
                self.pending = extents.into();
                Ok(0)
            }
            Plan::Tail { stored, from, .. } => {
                self.pending = stored.into();
                Ok(size.saturating_sub(from))
            }
        }
    }

    fn chunk(&mut self, src: &mut File, out: &mut PieceWriter, max: u64) -> Result<u64, CopyError> {
        if let Some(e) = self.pending.front_mut() {
            let n = e.len.min(max);
            out.refer(Extent {
                offset: e.offset,
                len: n,
            });
            e.offset += n;
            e.len -= n;
            if e.len == 0 {
                self.pending.pop_front();
            }
            self.reused += n;
            return Ok(n);
        }
        out.copy_from(src, max).map_err(CopyError::Read)
    }
}

/// Writes a spooled layer's tar: its own bytes from `spool` (read from its
/// start) and the stored ones from `pre`'s store.
pub fn write_pieces(
    pieces: &[Piece],
    spool: &mut File,
    spool_path: &Path,
    store: Option<&PreCopy>,
    out: &mut dyn Write,
) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let at = |source| Error::Io {
        path: spool_path.to_path_buf(),
        source,
    };
    spool.seek(SeekFrom::Start(0)).map_err(at)?;
    for piece in pieces {
        match *piece {
            Piece::Own(len) => {
                let copied = io::copy(&mut (&mut *spool).take(len), out).map_err(at)?;
                if copied != len {
                    return Err(at(io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Piece::Stored(e) => {
                let store = store.ok_or_else(|| Error::Io {
                    path: spool_path.to_path_buf(),
                    source: io::Error::other("a spool refers to a pre-copy store it was not given"),
                })?;
                store.read_into(e.offset, e.len, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::Progress;
    use std::io::Seek;

    struct Fixture {
        dir: tempfile::TempDir,
        pre: PreCopy,
        progress: Progress,
        cancel: AtomicBool,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Unnamed::new(dir.path(), "store").unwrap();
        let pre = PreCopy::new(store, &dir.path().join("store"), 1 << 30).unwrap();
        Fixture {
            dir,
            pre,
            progress: Progress::default(),
            cancel: AtomicBool::new(false),
        }
    }

    fn ident(path: &Path) -> Ident {
        Ident::from(&nix::sys::stat::stat(path).unwrap())
    }

    /// A round's copy of `name`, as the walk would hand it over.
    fn round_copy(f: &mut Fixture, name: &str) -> Round {
        let path = f.dir.path().join(name);
        let now = ident(&path);
        let mut file = File::open(&path).unwrap();
        let mut data = Data::new(&mut file, &f.progress, &f.cancel);
        let mut round = Round::default();
        let got = f
            .pre
            .copy_file(name.as_bytes(), &now, &mut data, &mut round)
            .unwrap();
        assert_eq!(got, now.size);
        round
    }

    /// The frozen pass's view of `name`: the bytes the spool gives for it,
    /// and how many of them came from the store.
    fn spooled(f: &Fixture, name: &str) -> (Vec<u8>, u64) {
        let path = f.dir.path().join(name);
        let now = ident(&path);
        let header = Header::plain_file(name.as_bytes().to_vec(), now.size, 0o644);
        let mut src = File::open(&path).unwrap();
        let mut copy = f.pre.spool_copy();
        let fresh = copy.start(&mut src, &header, Some(&now)).unwrap();
        let spool = tempfile::tempfile().unwrap();
        let mut out = PieceWriter::new(spool);
        let mut left = now.size;
        while left > 0 {
            let n = copy.chunk(&mut src, &mut out, left.min(3 << 20)).unwrap();
            assert!(n > 0, "the source ended early");
            left -= n;
        }
        assert_eq!(fresh, now.size - copy.reused());
        let (mut spool, pieces) = out.finish();
        let mut bytes = Vec::new();
        write_pieces(
            &pieces,
            &mut spool,
            Path::new("spool"),
            Some(&f.pre),
            &mut bytes,
        )
        .unwrap();
        (bytes, copy.reused())
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    fn append(path: &Path, data: &[u8]) {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(data).unwrap();
    }

    #[test]
    fn a_settled_copy_is_reused_whole_and_a_grown_file_reads_only_its_tail() {
        let mut f = fixture();
        let path = f.dir.path().join("log");
        let first = pattern(3 * CHUNK + 12345, 1);
        std::fs::write(&path, &first).unwrap();
        // Older than the racy margin when it is copied.
        std::thread::sleep(std::time::Duration::from_millis(120));
        let r = round_copy(&mut f, "log");
        assert_eq!(r.read, first.len() as u64);

        let (bytes, reused) = spooled(&f, "log");
        assert!(bytes == first, "the whole copy differs from the file");
        assert_eq!(reused, first.len() as u64);

        let tail = pattern(CHUNK / 2 + 7, 2);
        append(&path, &tail);
        let (bytes, reused) = spooled(&f, "log");
        let mut whole = first.clone();
        whole.extend_from_slice(&tail);
        assert!(
            bytes == whole,
            "prefix from the store plus the tail read differs"
        );
        assert_eq!(reused, first.len() as u64);

        // A second round extends the copy with the tail, after checking the
        // prefix; the next tail then starts past it.
        let r = round_copy(&mut f, "log");
        assert_eq!((r.read, r.checked), (tail.len() as u64, first.len() as u64));
        let more = pattern(100, 3);
        append(&path, &more);
        whole.extend_from_slice(&more);
        let (bytes, reused) = spooled(&f, "log");
        assert!(bytes == whole);
        assert_eq!(reused, (first.len() + tail.len()) as u64);
    }

    #[test]
    fn a_prefix_changed_in_place_is_read_again_however_the_file_grew() {
        let mut f = fixture();
        let path = f.dir.path().join("ckpt");
        let first = pattern(2 * CHUNK + 99, 4);
        std::fs::write(&path, &first).unwrap();
        round_copy(&mut f, "ckpt");
        // One byte in the middle, then an append: the metadata says only
        // that the file grew.
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(io::SeekFrom::Start(CHUNK as u64 + 3)).unwrap();
        file.write_all(b"!").unwrap();
        drop(file);
        append(&path, b"tail");
        let expected = std::fs::read(&path).unwrap();
        let (bytes, reused) = spooled(&f, "ckpt");
        assert!(bytes == expected, "a stale prefix was taken from the store");
        assert_eq!(reused, 0);
    }

    #[test]
    fn a_large_prefix_is_checked_on_several_threads_to_its_last_byte() {
        let mut f = fixture();
        let path = f.dir.path().join("big");
        let first = pattern(20 * CHUNK + 777, 8);
        std::fs::write(&path, &first).unwrap();
        round_copy(&mut f, "big");
        append(&path, b"more");
        let (bytes, reused) = spooled(&f, "big");
        assert!(bytes.len() == first.len() + 4 && bytes[..first.len()] == first[..]);
        assert_eq!(reused, first.len() as u64);
        // One byte changed in the last whole chunk, one in the partial one:
        // each is found.
        for at in [19 * CHUNK + 5, 20 * CHUNK + 700] {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.seek(io::SeekFrom::Start(at as u64)).unwrap();
            file.write_all(b"?").unwrap();
            drop(file);
            let expected = std::fs::read(&path).unwrap();
            let (bytes, reused) = spooled(&f, "big");
            assert!(bytes == expected, "a stale chunk at {at} was taken");
            assert_eq!(reused, 0, "changed at {at}");
            round_copy(&mut f, "big");
        }
    }

    #[test]
    fn a_file_shrunk_replaced_or_forgotten_is_read_again() {
        let mut f = fixture();
        for name in ["shrunk", "replaced", "forgotten", "small"] {
            let len = if name == "small" { 1000 } else { CHUNK };
            std::fs::write(f.dir.path().join(name), pattern(len, 5)).unwrap();
            round_copy(&mut f, name);
        }
        let shrunk = f.dir.path().join("shrunk");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&shrunk)
            .unwrap();
        file.set_len(CHUNK as u64 / 2).unwrap();
        drop(file);
        let replaced = f.dir.path().join("replaced");
        std::fs::write(f.dir.path().join("new"), pattern(CHUNK + 5, 5)).unwrap();
        std::fs::rename(f.dir.path().join("new"), &replaced).unwrap();
        f.pre.forget(b"forgotten");
        // Too small to be checked: read again once it changed.
        append(&f.dir.path().join("small"), b"x");
        for name in ["shrunk", "replaced", "forgotten", "small"] {
            let expected = std::fs::read(f.dir.path().join(name)).unwrap();
            let (bytes, reused) = spooled(&f, name);
            assert!(bytes == expected, "{name}: wrong bytes");
            assert_eq!(reused, 0, "{name}: taken from the store");
        }
    }

    #[test]
    fn the_store_keeps_no_more_than_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unnamed::new(dir.path(), "store").unwrap();
        let mut f = Fixture {
            pre: PreCopy::new(store, &dir.path().join("store"), CHUNK as u64).unwrap(),
            dir,
            progress: Progress::default(),
            cancel: AtomicBool::new(false),
        };
        std::fs::write(f.dir.path().join("a"), pattern(CHUNK - 10, 6)).unwrap();
        std::fs::write(f.dir.path().join("b"), pattern(CHUNK, 7)).unwrap();
        let path = f.dir.path().join("a");
        let mut file = File::open(&path).unwrap();
        let mut data = Data::new(&mut file, &f.progress, &f.cancel);
        let mut round = Round::default();
        f.pre
            .copy_file(b"a", &ident(&path), &mut data, &mut round)
            .unwrap();
        let path = f.dir.path().join("b");
        let mut file = File::open(&path).unwrap();
        let mut data = Data::new(&mut file, &f.progress, &f.cancel);
        let got = f
            .pre
            .copy_file(b"b", &ident(&path), &mut data, &mut round)
            .unwrap();
        assert_eq!(got, 0, "past the budget nothing is stored");
        assert_eq!(f.pre.stored(), CHUNK as u64 - 10);
        let (bytes, reused) = spooled(&f, "b");
        assert_eq!((bytes.len(), reused), (CHUNK, 0));
    }
}
