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
use crate::tar::{CopyError, Header, TarWriter, BLOCK};
use crate::walk::{self, Event, Pass, Progress, TreeSpec, Visitor, WalkReport};

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
    /// Moves at most `max` bytes from `src` to `out`; returns how many, 0 when
    /// `src` has ended.
    fn chunk(&mut self, src: &mut File, out: &mut W, max: u64) -> Result<u64, CopyError>;
}

/// Copies through a buffer: read, then write.
pub struct ReadWrite {
    buf: Vec<u8>,
}

impl<W: Write> DataCopy<W> for ReadWrite {
    fn chunk(&mut self, src: &mut File, out: &mut W, max: u64) -> Result<u64, CopyError> {
        let want = self
            .buf
            .len()
            .min(usize::try_from(max).unwrap_or(usize::MAX));
        loop {
            match src.read(&mut self.buf[..want]) {
                Ok(n) => {
                    out.write_all(&self.buf[..n]).map_err(CopyError::Write)?;
                    return Ok(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
    }
}

/// Copies inside the kernel (`copy_file_range`), from file to file.
pub struct KernelCopy;

impl DataCopy<File> for KernelCopy {
    fn chunk(&mut self, src: &mut File, out: &mut File, max: u64) -> Result<u64, CopyError> {
        let chunk = usize::try_from(max.min(1 << 30)).unwrap_or(1 << 30);
        loop {
            match nix::fcntl::copy_file_range(&*src, None, &*out, None, chunk) {
                Ok(n) => return Ok(n as u64),
                Err(nix::errno::Errno::EINTR) => {}
                // Either side may have failed; the entry names the copy.
                Err(e) => return Err(CopyError::Read(e.into())),
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

/// Writes a pass as a plain tar into a file, copying file data inside the
/// kernel (`copy_file_range`) and hashing nothing: the least work possible,
/// for a pass that runs while the session is frozen. The digests are taken
/// later, when the spool is compressed.
pub type SpoolVisitor = LayerWriter<File, KernelCopy>;

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
        };
        LayerWriter::with_copy(out, copy, out_path, None)
    }

    /// Ends the tar stream; returns the writer.
    pub fn finish(self) -> Result<W> {
        self.tar.finish().at(&self.out_path)
    }
}

impl LayerWriter<File, KernelCopy> {
    pub fn new(out: File, out_path: &Path, limit: Option<u64>) -> Self {
        LayerWriter::with_copy(out, KernelCopy, out_path, limit)
    }

    /// Ends the tar stream; returns the file, its entries and its size.
    pub fn finish(self) -> Result<(File, u64, u64)> {
        let entries = self.entries;
        let size = self.tar.written() + (BLOCK * 2) as u64;
        let file = self.tar.finish().at(&self.out_path)?;
        Ok((file, entries, size))
    }
}

impl<W: Write, C: DataCopy<W>> Visitor for LayerWriter<W, C> {
    fn event(&mut self, event: &Event<'_>, data: Option<&mut File>) -> Result<u64> {
        let header = event_header(event);
        self.entries += 1;
        let size = header.data_size();
        self.data_bytes += size;
        if let Some(limit) = self.limit.filter(|&l| self.data_bytes > l) {
            return Err(Error::LayerTooLarge { limit });
        }
        self.tar.header(&header).at(&self.out_path)?;
        let Some(src) = data else { return Ok(0) };
        let copy = &mut self.copy;
        self.tar
            .data_with(size, |out, max| copy.chunk(src, out, max))
            .map_err(|e| match e {
                CopyError::Read(source) => Error::Io {
                    path: PathBuf::from(format!("/{}", String::from_utf8_lossy(&header.path))),
                    source,
                },
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
