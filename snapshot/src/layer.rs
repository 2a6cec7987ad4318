//! The layer encoder: turns the walk's events into an OCI layer's tar stream,
//! and runs one pass from trees to a layer blob: walk → tar → sha256 (diffID)
//! → compression → sha256 (digest) → output, with no temporary copy of the
//! layer.
//!
//! It alone knows OCI's whiteout encoding (`.wh.NAME`, `.wh..wh..opq`); the
//! walk only says what is gone or opaque. It does not read trees itself.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::compress::{Encoder, Settings};
use crate::digest::HashingWriter;
use crate::error::{Error, IoContext, Result};
use crate::precopy::{Piece, PieceWriter, SpoolCopy};
use crate::tar::{CopyError, Header, TarWriter, BLOCK};
use crate::walk::{self, Data, Event, Ident, Pass, Progress, TreeSpec, Visitor, WalkReport};

/// What a written layer is, for the image config and manifest.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// `sha256:` of the compressed blob.
    pub digest: String,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the compressed blob.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    pub media_type: String,
}

const COPY_BUF: usize = 256 * 1024;
/// At most this much is moved between two looks at the cancel flag (and
/// two progress updates), however large the file.
const MAX_CHUNK: u64 = 4 << 20;

/// The prefix OCI gives a whiteout's name: `DIR/.wh.NAME` deletes `DIR/NAME`.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name whose presence makes its directory opaque.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Whether a layer cannot hold an entry of this name: OCI reserves names that
/// begin with `.wh.` for whiteouts, so such a file would read as one.
pub fn is_reserved_name(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT_PREFIX)
}

/// The tar header that says `event` in an OCI layer: an entry as it is, a
/// whiteout as the empty file `DIR/.wh.NAME`, an opaque directory as the
/// empty file `DIR/.wh..wh..opq` after the directory's own entry.
pub fn event_header<'a>(event: &Event<'a>) -> Cow<'a, Header> {
    match *event {
        Event::Entry { header, .. } => Cow::Borrowed(header),
        Event::Whiteout { path, mtime, .. } => {
            let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&path[..i], &path[i + 1..]),
                None => (&path[..0], path),
            };
            let mut p = parent.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(WHITEOUT_PREFIX);
            p.extend_from_slice(name);
            let mut h = Header::plain_file(p, 0, 0o644);
            h.mtime_sec = mtime;
            Cow::Owned(h)
        }
        Event::Opaque { dir } => {
            let mut p = dir.to_vec();
            p.push(b'/');
            p.extend_from_slice(OPAQUE_MARKER);
            Cow::Owned(Header::plain_file(p, 0, 0o644))
        }
    }
}

/// How file data gets from the file the walk opened into the tar stream.
pub trait DataCopy<W> {
    /// Called before the first [`DataCopy::chunk`] of each file, the entry
    /// `header` made from the inode `ident`; returns how many of its bytes
    /// the copy will read from `src` (the rest it takes from elsewhere).
    fn start(
        &mut self,
        _src: &mut File,
        header: &Header,
        _ident: Option<&Ident>,
    ) -> Result<u64, CopyError> {
        Ok(header.data_size())
    }

    /// Moves at most `max` bytes from `src` to `out`; returns how many, 0 when
    /// `src` has ended.
    fn chunk(&mut self, src: &mut File, out: &mut W, max: u64) -> Result<u64, CopyError>;
}

/// Copies through a buffer: read, then write. The holes of a sparse file are
/// found with `SEEK_DATA`/`SEEK_HOLE` and written as zeros without being
/// read.
pub struct ReadWrite {
    buf: Vec<u8>,
    /// Where the current file's data and holes are, when it is sparse.
    holes: Option<Holes>,
    /// Bytes read from files, holes not included.
    read: u64,
}

/// A sparse file being read: the offset reached, and the extent it is in.
#[derive(Debug, Clone, Copy)]
struct Holes {
    pos: u64,
    /// The file's size when it was opened: no data is looked for past it.
    size: u64,
    /// Below this, from `pos`, the file is a hole.
    hole_end: u64,
    /// Below this, from `pos` (at or past `hole_end`), the file has data.
    data_end: u64,
}

/// Zeros written for a hole, a buffer at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl Holes {
    /// `Some` when `file` has fewer blocks than its size needs, and so holes.
    fn of(file: &File) -> Option<Holes> {
        let st = rustix::fs::fstat(file).ok()?;
        let size = u64::try_from(st.st_size).ok()?;
        let allocated = u64::try_from(st.st_blocks).ok()?.saturating_mul(512);
        if allocated >= size {
            return None;
        }
        let pos = rustix::fs::seek(file, rustix::fs::SeekFrom::Current(0)).ok()?;
        Some(Holes {
            pos,
            size,
            hole_end: pos,
            data_end: pos,
        })
    }

    /// Finds the extent at `pos` once the last one is used up: a hole until
    /// the next data (or the size), or data until the next hole. `None` when
    /// the filesystem cannot tell; the file is then read as it is.
    fn advance(&mut self, file: &File) -> Option<()> {
        use rustix::fs::{seek, SeekFrom};
        if self.pos < self.hole_end || self.pos < self.data_end {
            return Some(());
        }
        let data = match seek(file, SeekFrom::Data(self.pos)) {
            Ok(d) => d.min(self.size.max(self.pos)),
            // No data at or past `pos`: a hole up to the end.
            Err(rustix::io::Errno::NXIO) => self.size.max(self.pos),
            Err(_) => return None,
        };
        self.hole_end = data;
        if data > self.pos {
            self.data_end = data;
            return Some(());
        }
        self.data_end = seek(file, SeekFrom::Hole(self.pos)).ok()?;
        seek(file, SeekFrom::Start(self.pos)).ok()?;
        Some(())
    }
}

impl<W: Write> DataCopy<W> for ReadWrite {
    fn start(
        &mut self,
        src: &mut File,
        header: &Header,
        _ident: Option<&Ident>,
    ) -> Result<u64, CopyError> {
        self.holes = Holes::of(src);
        Ok(header.data_size())
    }

    fn chunk(&mut self, src: &mut File, out: &mut W, max: u64) -> Result<u64, CopyError> {
        let mut want = self
            .buf
            .len()
            .min(usize::try_from(max).unwrap_or(usize::MAX));
        let at = |src: &File, pos| {
            rustix::fs::seek(src, rustix::fs::SeekFrom::Start(pos))
                .map_err(|e| CopyError::Read(e.into()))
        };
        if let Some(holes) = &mut self.holes {
            if holes.advance(src).is_none() {
                // Read on from where the copy is, as for any file.
                at(src, holes.pos)?;
                self.holes = None;
            } else if holes.pos < holes.hole_end {
                let n = (holes.hole_end - holes.pos)
                    .min(max)
                    .min(ZEROS.len() as u64);
                out.write_all(&ZEROS[..n as usize])
                    .map_err(CopyError::Write)?;
                holes.pos += n;
                if holes.pos == holes.hole_end {
                    at(src, holes.pos)?;
                }
                return Ok(n);
            } else {
                let extent = holes.data_end.saturating_sub(holes.pos);
                want = want.min(usize::try_from(extent).unwrap_or(usize::MAX));
            }
        }
        loop {
            match src.read(&mut self.buf[..want]) {
                Ok(n) => {
                    out.write_all(&self.buf[..n]).map_err(CopyError::Write)?;
                    self.read += n as u64;
                    if let Some(holes) = &mut self.holes {
                        holes.pos += n as u64;
                    }
                    return Ok(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
    }
}

/// Writes the walk's events as a tar stream: counts entries, stops at a
/// limit of file data, and zero-fills a file that shrank while it was read
/// to the size its header gives.
pub struct LayerWriter<W: Write, C> {
    tar: TarWriter<W>,
    copy: C,
    /// Where the stream goes, for messages.
    out_path: PathBuf,
    entries: u64,
    data_bytes: u64,
    /// Stop with [`crate::Error::LayerTooLarge`] past this many bytes of file data.
    limit: Option<u64>,
}

/// Writes the walk's events as a tar stream into any writer (a compressor
/// and its digests, in a commit).
pub type TarVisitor<W> = LayerWriter<W, ReadWrite>;

/// Writes a pass as a plain tar into a scratch file, copying file data inside
/// the kernel (`copy_file_range`) or referring to what a pre-copy round
/// stored, and hashing nothing: the least work possible, for a pass that runs
/// while the session is frozen. The digests are taken later, when the spool
/// is compressed.
pub type SpoolVisitor<'a> = LayerWriter<PieceWriter, SpoolCopy<'a>>;

impl<W: Write, C> LayerWriter<W, C> {
    fn with_copy(out: W, copy: C, out_path: &Path, limit: Option<u64>) -> Self {
        LayerWriter {
            tar: TarWriter::new(out),
            copy,
            out_path: out_path.to_path_buf(),
            entries: 0,
            data_bytes: 0,
            limit,
        }
    }

    pub fn with_limit(mut self, limit: Option<u64>) -> Self {
        self.limit = limit;
        self
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }
}

impl<W: Write> LayerWriter<W, ReadWrite> {
    pub fn new(out: W, out_path: &Path) -> Self {
        let copy = ReadWrite {
            buf: vec![0; COPY_BUF],
            holes: None,
            read: 0,
        };
        LayerWriter::with_copy(out, copy, out_path, None)
    }

    /// Ends the tar stream; returns the writer.
    pub fn finish(self) -> Result<W> {
        self.tar.finish().at(&self.out_path)
    }
}

impl<'a> LayerWriter<PieceWriter, SpoolCopy<'a>> {
    /// `limit` caps the bytes read from files (not those the store gives).
    pub fn new(out: File, copy: SpoolCopy<'a>, out_path: &Path, limit: Option<u64>) -> Self {
        LayerWriter::with_copy(PieceWriter::new(out), copy, out_path, limit)
    }

    /// Ends the tar stream; returns the spool's pieces, its entries, its size
    /// and the bytes taken from the store.
    pub fn finish(self) -> Result<(File, Vec<Piece>, u64, u64, u64)> {
        let entries = self.entries;
        let size = self.tar.written() + (BLOCK * 2) as u64;
        let reused = self.copy.reused();
        let (file, pieces) = self.tar.finish().at(&self.out_path)?.finish();
        Ok((file, pieces, entries, size, reused))
    }
}

impl<W: Write, C: DataCopy<W>> Visitor for LayerWriter<W, C> {
    fn event(&mut self, event: &Event<'_>, mut data: Option<&mut Data<'_>>) -> Result<u64> {
        let header = event_header(event);
        self.entries += 1;
        let size = header.data_size();
        let read_error = |source| Error::Io {
            path: PathBuf::from(format!("/{}", String::from_utf8_lossy(&header.path))),
            source,
        };
        let ident = match event {
            Event::Entry { ident, .. } => ident.as_ref(),
            _ => None,
        };
        self.data_bytes += match &mut data {
            Some(data) => self
                .copy
                .start(data.file, &header, ident)
                .map_err(|e| match e {
                    CopyError::Read(source) | CopyError::Write(source) => read_error(source),
                    CopyError::Cancelled => Error::Cancelled,
                })?,
            None => size,
        };
        if let Some(limit) = self.limit.filter(|&l| self.data_bytes > l) {
            return Err(Error::LayerTooLarge { limit });
        }
        self.tar.header(&header).at(&self.out_path)?;
        let Some(data) = data else { return Ok(0) };
        let copy = &mut self.copy;
        self.tar
            .data_with(size, |out, max| {
                let n = copy.chunk(data.file, out, max.min(MAX_CHUNK))?;
                data.advance(n).map_err(|_| CopyError::Cancelled)?;
                Ok(n)
            })
            .map_err(|e| match e {
                CopyError::Cancelled => Error::Cancelled,
                CopyError::Read(source) => read_error(source),
                CopyError::Write(source) => Error::Io {
                    path: self.out_path.clone(),
                    source,
                },
            })
    }
}

/// Streams the layer for `spec` into `out`, returning `out`, what was written
/// and the number of tar entries. `out_path` only names the destination in
/// messages; `limit` caps the bytes of file data (see [`TarVisitor::with_limit`]).
#[allow(clippy::too_many_arguments)]
pub fn write_layer<W: Write + Send + 'static>(
    spec: &TreeSpec,
    settings: Settings,
    out: W,
    out_path: &Path,
    progress: &Progress,
    cancel: &AtomicBool,
    pass: Pass<'_>,
    limit: Option<u64>,
) -> Result<(W, LayerInfo, WalkReport, u64)> {
    let blob = HashingWriter::new(out).with_progress(progress.bytes_written.clone());
    let encoder = Encoder::new(settings, blob).at(out_path)?;
    let mut visitor = TarVisitor::new(HashingWriter::new(encoder), out_path).with_limit(limit);
    let report = walk::walk_pass(spec, &mut visitor, progress, cancel, pass)?;
    let entries = visitor.entries();
    let (encoder, diff_id, tar_size) = visitor.finish()?.finish();
    let blob = encoder.finish().at(out_path)?;
    let (mut out, digest, size) = blob.finish();
    out.flush().at(out_path)?;
    let info = LayerInfo {
        digest,
        diff_id,
        size,
        tar_size,
        media_type: settings.algorithm.media_type().to_string(),
    };
    Ok((out, info, report, entries))
}

#[cfg(test)]
mod sparse_tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    /// Copies `file` as the layer writer does, returning what came out and
    /// how many bytes were read from the file.
    fn copy(file: &mut File, size: u64) -> (Vec<u8>, u64) {
        let mut rw = ReadWrite {
            buf: vec![0; COPY_BUF],
            holes: None,
            read: 0,
        };
        let mut out = Vec::new();
        let header = Header::plain_file(b"f".to_vec(), size, 0o644);
        DataCopy::<Vec<u8>>::start(&mut rw, file, &header, None).unwrap();
        let mut left = size;
        while left > 0 {
            match rw.chunk(file, &mut out, left).unwrap() {
                0 => break,
                n => left -= n,
            }
        }
        (out, rw.read)
    }

    #[test]
    fn holes_are_written_as_zeros_without_being_read() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("sparse");
        let mut f = File::create(&path).unwrap();
        const MIB: u64 = 1 << 20;
        let size = 64 * MIB + 123;
        f.set_len(size).unwrap();
        let extents = [(0, b"head"), (20 * MIB + 5, b"mid!"), (63 * MIB, b"tail")];
        for (at, data) in extents {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(data).unwrap();
        }
        f.sync_all().unwrap();
        let mut want = vec![0u8; size as usize];
        for (at, data) in extents {
            want[at as usize..at as usize + 4].copy_from_slice(data);
        }
        let mut f = File::open(&path).unwrap();
        if Holes::of(&f).is_none() {
            eprintln!(
                "skipping: the filesystem of {} made no holes",
                path.display()
            );
            return;
        }
        let (out, read) = copy(&mut f, size);
        assert!(out == want, "the copy differs from the file");
        // Only the data blocks are read: a few pages around each extent.
        assert!(read <= 3 * MIB, "{read} bytes read for 12 bytes of data");

        // A file that is one hole, and a header size past the file's end:
        // zeros, and no more than the file.
        let hole = t.path().join("hole");
        File::create(&hole).unwrap().set_len(10 * MIB).unwrap();
        let (out, read) = copy(&mut File::open(&hole).unwrap(), 10 * MIB);
        assert_eq!((out.len() as u64, read), (10 * MIB, 0));
        assert!(out.iter().all(|&b| b == 0));
        let (out, _) = copy(&mut File::open(&path).unwrap(), size + 10);
        assert!(
            out == want,
            "a header size past the end gave more than the file"
        );
    }

    #[test]
    fn dense_files_are_read_as_they_are() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("dense");
        let data: Vec<u8> = (0..3 * COPY_BUF + 7).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut f = File::open(&path).unwrap();
        assert!(Holes::of(&f).is_none());
        let (out, read) = copy(&mut f, data.len() as u64);
        assert!(out == data);
        assert_eq!(read, data.len() as u64);
    }
}
