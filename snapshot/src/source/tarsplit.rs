//! Layers kept unpacked, rebuilt byte for byte from tar-split metadata.
//!
//! Docker (`layerdb/sha256/CHAINID/tar-split.json.gz`) and containers-storage
//! (`overlay-layers/ID.tar-split.gz`) unpack each layer into a directory and
//! keep, beside it, what the unpacking threw away: a gzip-compressed stream of
//! JSON lines, one per piece of the original tar stream, in order. A segment
//! (`"type":2`) carries raw bytes (headers, padding, the end-of-archive
//! blocks) base64-encoded in `payload`; a file (`"type":1`) names the file
//! whose content comes next (`name`, or `name_raw` in base64 when the name is
//! not UTF-8), its `size`, and in `payload` the CRC-64 (ISO polynomial,
//! big-endian) of that content. Writing the segments and the files' contents
//! in order gives the layer's tar stream back, byte for byte, and so its
//! diffID.
//!
//! Everything read here is untrusted: lines are length-capped, names are
//! opened beneath the layer directory without following a symlink, and every
//! file is checked against the size and checksum the metadata records. The
//! metadata is read line by line and files are copied through one fixed
//! buffer, so no layer is ever held in memory.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::sys::stat::SFlag;
use rustix::fs::OFlags;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::stored::StoredLayer;
use crate::fs::open::{open_in_root, open_root_nofollow, stat};

/// Longest line of tar-split metadata read. A line holds one segment: a tar
/// header with its PAX or GNU long-name records (which tar readers cap at
/// 1 MiB each), base64-encoded.
pub const MAX_LINE: usize = 16 << 20;

/// Size of the buffer file contents are copied through.
const COPY_BUFFER: usize = 128 << 10;

/// Errors from reading tar-split metadata and rebuilding a layer's tar stream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read tar-split metadata {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt tar-split metadata {path}, line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("corrupt tar-split metadata {path}, line {line}: longer than {MAX_LINE} bytes")]
    LineTooLong { path: PathBuf, line: u64 },
    #[error("failed to open layer directory {dir}: {source}")]
    OpenDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {entry:?} in layer directory {dir}: {source}")]
    File {
        dir: PathBuf,
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("{entry:?} in layer directory {dir} is not a regular file, as {path} records")]
    NotFile {
        dir: PathBuf,
        entry: String,
        path: PathBuf,
    },
    #[error("{entry:?} in layer directory {dir} is {actual} bytes, {path} records {expected}")]
    Size {
        dir: PathBuf,
        entry: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{entry:?} in layer directory {dir} was modified: its crc-64 is {actual:016x}, {path} records {expected:016x}"
    )]
    Checksum {
        dir: PathBuf,
        entry: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("failed to write the tar stream of layer directory {dir}: {source}")]
    Write {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "layer {id} ({dir}) does not match its diffID: the rebuilt tar stream hashes to {actual}, the image config says {expected}"
    )]
    DiffId {
        id: String,
        dir: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("layer {id}: {source}")]
    Layer {
        id: String,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Size of the tar stream the metadata describes, from the metadata alone (no
/// file is read).
pub fn tar_size(tar_split: &Path) -> Result<u64> {
    let mut entries = Entries::open(tar_split)?;
    let mut size = 0u64;
    while let Some(entry) = entries.next_entry()? {
        let n = match entry {
            Entry::Segment(bytes) => bytes.len() as u64,
            Entry::File { size, .. } => size,
        };
        size = size
            .checked_add(n)
            .ok_or_else(|| entries.corrupt("sizes add up past 2^64".into()))?;
    }
    Ok(size)
}

/// Writes the layer's tar stream byte for byte: segments from the metadata,
/// file contents from `diff_dir` (opened beneath it, never following a
/// symlink), checking each file's size and CRC-64 (ISO) against the metadata.
/// Returns the number of bytes written.
///
/// The metadata is read line by line and files are copied through a fixed
/// buffer. On an error, what was written so far is no layer: the caller
/// discards it.
pub fn reassemble(tar_split: &Path, diff_dir: &Path, out: &mut dyn Write) -> Result<u64> {
    let mut entries = Entries::open(tar_split)?;
    let dir = open_root_nofollow(diff_dir).map_err(|e| Error::OpenDir {
        dir: diff_dir.to_owned(),
        source: e.into(),
    })?;
    let write_error = |source| Error::Write {
        dir: diff_dir.to_owned(),
        source,
    };
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut written = 0u64;
    while let Some(entry) = entries.next_entry()? {
        match entry {
            Entry::Segment(bytes) => {
                out.write_all(&bytes).map_err(write_error)?;
                written += bytes.len() as u64;
            }
            Entry::File { name, size, crc } => {
                copy_file(&dir, diff_dir, tar_split, &name, size, crc, &mut buf, out)?;
                written += size;
            }
        }
    }
    Ok(written)
}

impl StoredLayer {
    /// Writes the layer's tar stream ([`reassemble`]) and checks its sha256
    /// against [`StoredLayer::diff_id`] at the end. Every error names the
    /// layer (its id, and its directory where a file is at fault). Returns
    /// the number of bytes written.
    pub fn write_tar(&self, out: &mut dyn Write) -> Result<u64> {
        let mut hashing = HashingWriter {
            inner: out,
            hash: Sha256::new(),
        };
        let written =
            reassemble(&self.tar_split, &self.diff_dir, &mut hashing).map_err(|e| self.wrap(e))?;
        let actual = format!("sha256:{}", hex::encode(hashing.hash.finalize()));
        if actual != self.diff_id {
            return Err(Error::DiffId {
                id: self.id.clone(),
                dir: self.diff_dir.clone(),
                expected: self.diff_id.clone(),
                actual,
            });
        }
        Ok(written)
    }

    /// Size of the layer's tar stream, from its metadata alone.
    pub fn tar_size(&self) -> Result<u64> {
        tar_size(&self.tar_split).map_err(|e| self.wrap(e))
    }

    fn wrap(&self, e: Error) -> Error {
        Error::Layer {
            id: self.id.clone(),
            source: Box::new(e),
        }
    }
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hash: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies the `size` bytes of file `name` beneath `dir` to `out`, checking
/// its size before and its CRC-64 after.
#[allow(clippy::too_many_arguments)]
fn copy_file(
    dir: &OwnedFd,
    diff_dir: &Path,
    tar_split: &Path,
    name: &[u8],
    size: u64,
    crc: u64,
    buf: &mut [u8],
    out: &mut dyn Write,
) -> Result<()> {
    let entry = String::from_utf8_lossy(name).into_owned();
    let file_error = |source: io::Error| Error::File {
        dir: diff_dir.to_owned(),
        entry: entry.clone(),
        source,
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let path = Path::new(std::ffi::OsStr::from_bytes(name));
    let fd = open_in_root(dir.as_fd(), path, flags).map_err(|e| file_error(e.into()))?;
    let st = stat(&fd).map_err(|e| file_error(e.into()))?;
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
        return Err(Error::NotFile {
            dir: diff_dir.to_owned(),
            entry,
            path: tar_split.to_owned(),
        });
    }
    let size_error = |actual| Error::Size {
        dir: diff_dir.to_owned(),
        entry: entry.clone(),
        path: tar_split.to_owned(),
        expected: size,
        actual,
    };
    if st.st_size as u64 != size {
        return Err(size_error(st.st_size as u64));
    }
    let mut file = File::from(fd).take(size);
    let mut digest = Crc64::default();
    let mut copied = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(file_error(e)),
        };
        digest.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|source| Error::Write {
            dir: diff_dir.to_owned(),
            source,
        })?;
        copied += n as u64;
    }
    // The file shrank between the stat and the read.
    if copied != size {
        return Err(size_error(copied));
    }
    if digest.sum() != crc {
        return Err(Error::Checksum {
            dir: diff_dir.to_owned(),
            entry,
            path: tar_split.to_owned(),
            expected: crc,
            actual: digest.sum(),
        });
    }
    Ok(())
}

/// One piece of the tar stream, as the metadata gives it.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    /// Raw bytes of the stream.
    Segment(Vec<u8>),
    /// The content of a file with content (`size > 0`; entries of size 0
    /// carry nothing and are skipped).
    File { name: Vec<u8>, size: u64, crc: u64 },
}

/// One line of the metadata, as vbatts/tar-split's `storage.Entry` writes it.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    payload: Option<String>,
}

const SEGMENT: u8 = 2;
const FILE: u8 = 1;

/// The entries of a tar-split file, read line by line through gzip.
struct Entries {
    path: PathBuf,
    reader: BufReader<MultiGzDecoder<File>>,
    line: u64,
    buf: Vec<u8>,
}

impl Entries {
    fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags())
            .open(path)
            .map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?;
        Ok(Entries {
            path: path.to_owned(),
            reader: BufReader::with_capacity(64 << 10, MultiGzDecoder::new(file)),
            line: 0,
            buf: Vec::new(),
        })
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            line: self.line,
            reason,
        }
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            self.buf.clear();
            self.line += 1;
            let n = (&mut self.reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| Error::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            if self.buf.len() > MAX_LINE {
                return Err(Error::LineTooLong {
                    path: self.path.clone(),
                    line: self.line,
                });
            }
            if self.buf.trim_ascii().is_empty() {
                continue;
            }
            let line: Line =
                serde_json::from_slice(&self.buf).map_err(|e| self.corrupt(e.to_string()))?;
            if let Some(entry) = self.entry(line)? {
                return Ok(Some(entry));
            }
        }
    }

    fn entry(&self, line: Line) -> Result<Option<Entry>> {
        let payload = match &line.payload {
            Some(p) => {
                base64_decode(p).ok_or_else(|| self.corrupt("payload is not base64".into()))?
            }
            None => Vec::new(),
        };
        match line.kind {
            SEGMENT => Ok(Some(Entry::Segment(payload))),
            FILE if line.size == 0 => Ok(None),
            FILE => {
                let name = match (&line.name_raw, &line.name) {
                    (Some(raw), _) if !raw.is_empty() => base64_decode(raw)
                        .ok_or_else(|| self.corrupt("name_raw is not base64".into()))?,
                    (_, Some(name)) => name.as_bytes().to_vec(),
                    _ => Vec::new(),
                };
                check_name(&name).map_err(|reason| {
                    self.corrupt(format!(
                        "file name {:?} {reason}",
                        String::from_utf8_lossy(&name)
                    ))
                })?;
                let crc: [u8; 8] = payload.try_into().map_err(|p: Vec<u8>| {
                    self.corrupt(format!("file checksum is {} bytes, a crc-64 is 8", p.len()))
                })?;
                Ok(Some(Entry::File {
                    name,
                    size: line.size,
                    crc: u64::from_be_bytes(crc),
                }))
            }
            kind => Err(self.corrupt(format!("unknown entry type {kind}"))),
        }
    }
}

fn libc_flags() -> i32 {
    (OFlags::NOFOLLOW | OFlags::CLOEXEC).bits() as i32
}

/// A name of a file with content must name something beneath the layer
/// directory: not empty, no NUL, no `..` component.
fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.contains(&0) {
        return Err("holds a NUL byte");
    }
    let path = Path::new(std::ffi::OsStr::from_bytes(name));
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("climbs out with '..'");
    }
    if path
        .components()
        .all(|c| !matches!(c, Component::Normal(_)))
    {
        return Err("names no file");
    }
    Ok(())
}

/// Decodes standard base64 with padding (Go's `base64.StdEncoding`, which
/// `encoding/json` uses for byte slices). `None` on anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let chunks = s.len() / 4;
    for (i, chunk) in s.chunks_exact(4).enumerate() {
        let pad = if i + 1 == chunks {
            chunk.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// CRC-64 with the ISO polynomial, reflected, as Go's `hash/crc64` computes
/// it with `crc64.MakeTable(crc64.ISO)`.
#[derive(Default)]
struct Crc64(u64);

const CRC64_ISO_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xD800_0000_0000_0000
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

impl Crc64 {
    fn update(&mut self, data: &[u8]) {
        let mut crc = !self.0;
        for &b in data {
            crc = CRC64_ISO_TABLE[usize::from(crc as u8 ^ b)] ^ (crc >> 8);
        }
        self.0 = !crc;
    }

    fn sum(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {}
