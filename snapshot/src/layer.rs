//! One pass from trees to a layer blob: walk → tar → sha256 (diffID) →
//! compression → sha256 (digest) → output, with no temporary copy of the layer.

use std::fs::File;
use std::io::Write;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::compress::{Encoder, Settings};
use crate::digest::HashingWriter;
use crate::error::{Error, IoContext, Result};
use crate::tar::{CopyError, TarWriter};
use crate::walk::{self, Entry, Pass, Progress, TreeSpec, Visitor, WalkReport};

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

/// Writes the walk's entries as a tar stream.
pub struct TarVisitor<W: Write> {
    tar: TarWriter<W>,
    buf: Vec<u8>,
    /// Where the stream goes, for messages.
    out_path: PathBuf,
    entries: u64,
    data_bytes: u64,
    /// Stop with [`crate::Error::LayerTooLarge`] past this many bytes of file data.
    limit: Option<u64>,
}

impl<W: Write> TarVisitor<W> {
    pub fn new(out: W, out_path: &Path) -> Self {
        TarVisitor {
            tar: TarWriter::new(out),
            buf: vec![0; COPY_BUF],
            out_path: out_path.to_path_buf(),
            entries: 0,
            data_bytes: 0,
            limit: None,
        }
    }

    pub fn with_limit(mut self, limit: Option<u64>) -> Self {
        self.limit = limit;
        self
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn finish(self) -> Result<W> {
        self.tar.finish().at(&self.out_path)
    }
}

impl<W: Write> Visitor for TarVisitor<W> {
    fn entry(&mut self, entry: &Entry<'_>, data: Option<&mut File>) -> Result<u64> {
        self.entries += 1;
        self.data_bytes += entry.header.data_size();
        if let Some(limit) = self.limit.filter(|&l| self.data_bytes > l) {
            return Err(Error::LayerTooLarge { limit });
        }
        self.tar.header(entry.header).at(&self.out_path)?;
        match data {
            None => Ok(0),
            Some(file) => self
                .tar
                .data(file, entry.header.data_size(), &mut self.buf)
                .map_err(|e| match e {
                    CopyError::Read(source) => Error::Io {
                        path: PathBuf::from(format!(
                            "/{}",
                            String::from_utf8_lossy(&entry.header.path)
                        )),
                        source,
                    },
                    CopyError::Write(source) => Error::Io {
                        path: self.out_path.clone(),
                        source,
                    },
                }),
        }
    }
}

/// Writes a pass as a plain tar into a file, copying file data inside the
/// kernel (`copy_file_range`) and hashing nothing: the least work possible,
/// for a pass that runs while the session is frozen. The digests are taken
/// later, when the spool is compressed.
pub struct SpoolVisitor {
    out: File,
    /// Where the stream goes, for messages.
    out_path: PathBuf,
    entries: u64,
    data_bytes: u64,
    size: u64,
    limit: Option<u64>,
}

impl SpoolVisitor {
    pub fn new(out: File, out_path: &Path, limit: Option<u64>) -> Self {
        SpoolVisitor {
            out,
            out_path: out_path.to_path_buf(),
            entries: 0,
            data_bytes: 0,
            size: 0,
            limit,
        }
    }

    /// Ends the tar stream; returns the file, its entries and its size.
    pub fn finish(mut self) -> Result<(File, u64, u64)> {
        self.put(&[0u8; crate::tar::BLOCK * 2])?;
        Ok((self.out, self.entries, self.size))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).at(&self.out_path)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

impl Visitor for SpoolVisitor {
    fn entry(&mut self, entry: &Entry<'_>, data: Option<&mut File>) -> Result<u64> {
        self.entries += 1;
        let size = entry.header.data_size();
        self.data_bytes += size;
        if let Some(limit) = self.limit.filter(|&l| self.data_bytes > l) {
            return Err(Error::LayerTooLarge { limit });
        }
        self.put(&entry.header.encode())?;
        let Some(src) = data else { return Ok(0) };
        let mut left = size;
        while left > 0 {
            let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            match nix::fcntl::copy_file_range(&*src, None, &self.out, None, chunk) {
                Ok(0) => break,
                Ok(n) => left -= n as u64,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    let path =
                        PathBuf::from(format!("/{}", String::from_utf8_lossy(&entry.header.path)));
                    return Err(e).at(path);
                }
            }
        }
        let got = size - left;
        self.size += got;
        // A file that shrank while frozen (it cannot, but a host process may
        // touch the upper dir) is zero-filled to the size in its header.
        let pad = left as usize + crate::tar::padding(size);
        let zeros = vec![0u8; pad];
        self.put(&zeros)?;
        Ok(got)
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
