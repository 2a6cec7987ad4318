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

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::sys::stat::SFlag;
use rustix::fs::{openat, Mode, OFlags, CWD};
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
/// buffer. Headers are written one at a time (512 bytes and up), so `out`
/// should buffer or compress. On an error, what was written so far is no
/// layer: the caller discards it.
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
        // Not through a symlink in its place; the store reader checked the
        // way to it.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = openat(CWD, path, flags, Mode::empty())
            .map(File::from)
            .map_err(|e| Error::Read {
                path: path.to_owned(),
                source: e.into(),
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

/// Encodes standard base64 with padding, as Go's `base64.StdEncoding` does
/// (containers-storage names big-data files so).
pub(crate) fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// CRC-64 with the ISO polynomial, reflected, as Go's `hash/crc64` computes
/// it with `crc64.MakeTable(crc64.ISO)`; eight bytes at a time ("slicing by
/// 8"), as Go does too.
#[derive(Default)]
struct Crc64(u64);

const CRC64_ISO_TABLES: [[u64; 256]; 8] = {
    let mut tables = [[0u64; 256]; 8];
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
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut crc = tables[0][i];
        let mut j = 1;
        while j < 8 {
            crc = tables[0][(crc & 0xff) as usize] ^ (crc >> 8);
            tables[j][i] = crc;
            j += 1;
        }
        i += 1;
    }
    tables
};

impl Crc64 {
    fn update(&mut self, data: &[u8]) {
        let t = &CRC64_ISO_TABLES;
        let mut crc = !self.0;
        let mut chunks = data.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            crc ^= u64::from_le_bytes(word);
            crc = t[7][(crc & 0xff) as usize]
                ^ t[6][(crc >> 8 & 0xff) as usize]
                ^ t[5][(crc >> 16 & 0xff) as usize]
                ^ t[4][(crc >> 24 & 0xff) as usize]
                ^ t[3][(crc >> 32 & 0xff) as usize]
                ^ t[2][(crc >> 40 & 0xff) as usize]
                ^ t[1][(crc >> 48 & 0xff) as usize]
                ^ t[0][(crc >> 56) as usize];
        }
        for &b in chunks.remainder() {
            crc = t[0][usize::from(crc as u8 ^ b)] ^ (crc >> 8);
        }
        self.0 = !crc;
    }

    fn sum(&self) -> u64 {
        self.0
    }
}

/// Layers for tests: a tar stream, its unpacked directory and its tar-split
/// metadata, made the way a store makes them.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use sha2::{Digest as _, Sha256};

    use super::{base64_encode, Crc64};

    /// One entry of a test layer.
    pub(crate) enum Item<'a> {
        Dir(&'a [u8]),
        File(&'a [u8], &'a [u8]),
        Symlink(&'a [u8], &'a [u8]),
    }

    /// A layer made by [`make`].
    pub(crate) struct Made {
        pub tar: Vec<u8>,
        pub diff_id: String,
    }

    /// Writes `items` as a tar stream, unpacks them into `diff_dir` and
    /// writes the stream's tar-split metadata, gzip-compressed, to
    /// `tar_split`: one segment before each header's file entry (the padding
    /// of the previous file and the header), the end of the archive last.
    pub(crate) fn make(items: &[Item<'_>], diff_dir: &Path, tar_split: &Path) -> Made {
        std::fs::create_dir_all(diff_dir).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(1_700_000_000);
            let (name, data): (&[u8], &[u8]) = match *item {
                Item::Dir(name) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    std::fs::create_dir_all(diff_dir.join(os(name))).unwrap();
                    (name, b"")
                }
                Item::File(name, data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    std::fs::write(diff_dir.join(os(name)), data).unwrap();
                    (name, data)
                }
                Item::Symlink(name, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_link_name(os(target)).unwrap();
                    std::os::unix::fs::symlink(os(target), diff_dir.join(os(name))).unwrap();
                    (name, b"")
                }
            };
            header.set_path(os(name)).unwrap();
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        let tar = builder.into_inner().unwrap();

        // Each line as Go's encoding/json writes storage.Entry: fields in
        // declaration order, empty ones omitted, a nil payload as null.
        let mut lines = String::new();
        let mut position = 0;
        let mut line = |fields: String| {
            lines.push_str(&format!("{{{fields},\"position\":{position}}}\n"));
            position += 1;
        };
        let segment = |bytes: &[u8]| format!(r#""type":2,"payload":"{}""#, base64_encode(bytes));
        let mut pending = Vec::new();
        let mut pos = 0;
        for item in items {
            let (Item::Dir(name) | Item::File(name, _) | Item::Symlink(name, _)) = *item;
            let data: &[u8] = match *item {
                Item::File(_, data) => data,
                _ => b"",
            };
            pending.extend_from_slice(&tar[pos..pos + 512]);
            pos += 512;
            line(segment(&pending));
            pending.clear();
            let name = match std::str::from_utf8(name) {
                Ok(name) => format!(r#""name":{}"#, serde_json::Value::from(name)),
                Err(_) => format!(r#""name_raw":"{}""#, base64_encode(name)),
            };
            if data.is_empty() {
                line(format!(r#""type":1,{name},"payload":null"#));
            } else {
                let mut crc = Crc64::default();
                crc.update(data);
                let crc = base64_encode(&crc.sum().to_be_bytes());
                line(format!(
                    r#""type":1,{name},"size":{},"payload":"{crc}""#,
                    data.len()
                ));
                pos += data.len();
                let pad = (512 - data.len() % 512) % 512;
                pending.extend_from_slice(&tar[pos..pos + pad]);
                pos += pad;
            }
        }
        pending.extend_from_slice(&tar[pos..]);
        line(segment(&pending));
        write_gz(tar_split, lines.as_bytes());
        Made {
            diff_id: format!("sha256:{}", hex::encode(Sha256::digest(&tar))),
            tar,
        }
    }

    pub(crate) fn write_gz(path: &Path, data: &[u8]) {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(data).unwrap();
        gz.finish().unwrap();
    }

    pub(crate) fn os(name: &[u8]) -> &std::ffi::OsStr {
        std::ffi::OsStr::from_bytes(name)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::testing::{make, write_gz, Item};
    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        diff: PathBuf,
        split: PathBuf,
        tar: Vec<u8>,
        diff_id: String,
    }

    fn fixture(items: &[Item<'_>]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let diff = tmp.path().join("diff");
        let split = tmp.path().join("tar-split.json.gz");
        let made = make(items, &diff, &split);
        Fixture {
            _tmp: tmp,
            diff,
            split,
            tar: made.tar,
            diff_id: made.diff_id,
        }
    }

    fn big() -> Vec<u8> {
        (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn sample() -> Fixture {
        let big = big();
        fixture(&[
            Item::Dir(b"etc/"),
            Item::File(b"etc/hello", b"hello\n"),
            Item::File(b"etc/empty", b""),
            Item::File(b"etc/caf\xe9", b"not utf-8\n"),
            Item::Symlink(b"etc/link", b"hello"),
            Item::Dir(b"bin/"),
            Item::File(b"bin/big", Box::leak(big.into_boxed_slice())),
        ])
    }

    fn layer(f: &Fixture) -> StoredLayer {
        StoredLayer {
            diff_id: f.diff_id.clone(),
            id: "layer-1".into(),
            tar_split: f.split.clone(),
            diff_dir: f.diff.clone(),
            registry: Vec::new(),
        }
    }

    fn rebuild(f: &Fixture) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        reassemble(&f.split, &f.diff, &mut out)?;
        Ok(out)
    }

    fn lines(f: &Fixture) -> String {
        let mut s = String::new();
        MultiGzDecoder::new(File::open(&f.split).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn the_crc_is_go_s_crc64_iso_and_base64_is_go_s_std_encoding() {
        let mut crc = Crc64::default();
        crc.update(b"1234");
        crc.update(b"56789");
        assert_eq!(crc.sum(), 0xb909_56c7_75a4_1001);
        // What the store wrote for "x\n", seen in a real tar-split file.
        // Eight at a time or one at a time, split anywhere: the same sum.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 256) as u8).collect();
        let mut whole = Crc64::default();
        whole.update(&data);
        for split in [0, 1, 7, 8, 9, 500, 999] {
            let mut parts = Crc64::default();
            parts.update(&data[..split]);
            parts.update(&data[split..]);
            let mut bytes = Crc64::default();
            data.iter().for_each(|b| bytes.update(&[*b]));
            assert_eq!((parts.sum(), bytes.sum()), (whole.sum(), whole.sum()));
        }
        let mut crc = Crc64::default();
        crc.update(b"x\n");
        assert_eq!(base64_encode(&crc.sum().to_be_bytes()), "YVMQAAAAAAA=");
        for (plain, coded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"\xff\xfe\x00", "//4A"),
        ] {
            assert_eq!(base64_encode(plain), coded);
            assert_eq!(base64_decode(coded).as_deref(), Some(plain));
        }
        for bad in ["Zg=", "Z===", "Zm9v!A==", "=Zg=", "Zg==Zg=="] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_layer_is_rebuilt_byte_for_byte() {
        let f = sample();
        assert!(lines(&f).contains("name_raw"));
        assert_eq!(rebuild(&f).unwrap(), f.tar);
        assert_eq!(tar_size(&f.split).unwrap(), f.tar.len() as u64);
        let l = layer(&f);
        assert_eq!(l.tar_size().unwrap(), f.tar.len() as u64);
        let mut out = Vec::new();
        assert_eq!(l.write_tar(&mut out).unwrap(), f.tar.len() as u64);
        assert_eq!(out, f.tar);
    }

    #[test]
    fn a_diff_id_that_differs_names_the_layer() {
        let f = sample();
        let mut l = layer(&f);
        l.diff_id = format!("sha256:{}", "0".repeat(64));
        let e = l.write_tar(&mut io::sink()).unwrap_err();
        assert!(matches!(e, Error::DiffId { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("layer layer-1") && msg.contains(&f.diff_id),
            "{msg}"
        );
    }

    #[test]
    fn a_modified_file_is_named_with_its_layer() {
        let f = sample();
        std::fs::write(f.diff.join("etc/hello"), b"HELLO\n").unwrap();
        let e = layer(&f).write_tar(&mut io::sink()).unwrap_err();
        let Error::Layer { id, source } = &e else {
            panic!("{e}")
        };
        assert_eq!(id, "layer-1");
        assert!(
            matches!(&**source, Error::Checksum { entry, .. } if entry == "etc/hello"),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains("layer-1") && msg.contains("etc/hello") && msg.contains("modified"));
    }

    #[test]
    fn sizes_that_lie_are_refused() {
        for content in [&b"hello\n!"[..], b"hell"] {
            let f = sample();
            std::fs::write(f.diff.join("etc/hello"), content).unwrap();
            let e = rebuild(&f).unwrap_err();
            assert!(
                matches!(e, Error::Size { expected: 6, actual, .. } if actual == content.len() as u64),
                "{e}"
            );
        }
        // The metadata's size lies: the file is 6 bytes, it says 7.
        let f = sample();
        let text = lines(&f).replace(r#""size":6"#, r#""size":7"#);
        write_gz(&f.split, text.as_bytes());
        assert!(matches!(
            rebuild(&f).unwrap_err(),
            Error::Size {
                expected: 7,
                actual: 6,
                ..
            }
        ));
        let text = lines(&f).replace(r#""size":7"#, r#""size":-7"#);
        write_gz(&f.split, text.as_bytes());
        assert!(matches!(rebuild(&f).unwrap_err(), Error::Corrupt { .. }));
    }

    #[test]
    fn files_are_not_read_through_symlinks_or_as_other_kinds() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("hello"), b"hello\n").unwrap();

        // The file itself replaced by a symlink to a file with the same content.
        let f = sample();
        std::fs::remove_file(f.diff.join("etc/hello")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("hello"), f.diff.join("etc/hello")).unwrap();
        assert!(
            matches!(rebuild(&f).unwrap_err(), Error::File { entry, .. } if entry == "etc/hello")
        );

        // A directory on its way replaced by a symlink.
        let f = sample();
        std::fs::rename(f.diff.join("etc"), f.diff.join("etc.real")).unwrap();
        std::os::unix::fs::symlink("etc.real", f.diff.join("etc")).unwrap();
        assert!(matches!(rebuild(&f).unwrap_err(), Error::File { .. }));

        // The layer directory itself a symlink.
        let f = sample();
        let real = f.diff.with_file_name("real");
        std::fs::rename(&f.diff, &real).unwrap();
        std::os::unix::fs::symlink(&real, &f.diff).unwrap();
        assert!(matches!(rebuild(&f).unwrap_err(), Error::OpenDir { .. }));

        // A FIFO in a file's place: refused, without blocking.
        let f = sample();
        std::fs::remove_file(f.diff.join("etc/hello")).unwrap();
        nix::unistd::mkfifo(&f.diff.join("etc/hello"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(rebuild(&f).unwrap_err(), Error::NotFile { .. }));

        // A missing file.
        let f = sample();
        std::fs::remove_file(f.diff.join("etc/hello")).unwrap();
        let e = rebuild(&f).unwrap_err();
        assert!(
            matches!(&e, Error::File { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(e.to_string().contains(&f.diff.display().to_string()));
    }

    #[test]
    fn names_that_leave_the_layer_directory_are_refused() {
        for name in ["../hello", "etc/../../hello", "/../hello", ".", "/"] {
            let f = sample();
            let text = lines(&f).replace(r#""name":"etc/hello""#, &format!("\"name\":{name:?}"));
            write_gz(&f.split, text.as_bytes());
            let e = rebuild(&f).unwrap_err();
            assert!(matches!(e, Error::Corrupt { line: 4, .. }), "{name}: {e}");
        }
        // An absolute name is taken beneath the layer directory.
        let f = sample();
        let text = lines(&f).replace(r#""name":"etc/hello""#, r#""name":"/etc/hello""#);
        write_gz(&f.split, text.as_bytes());
        assert_eq!(rebuild(&f).unwrap(), f.tar);
    }

    #[test]
    fn corrupt_metadata_is_named_with_its_line() {
        let cases: [(&str, &str, &str); 6] = [
            (r#""type":2"#, r#""type":7"#, "unknown entry type 7"),
            (
                r#""type":1,"name":"etc/hello""#,
                r#""type":"one","name":"etc/hello""#,
                "invalid type",
            ),
            (r#""payload":"#, r#""payload":"!!","x":"#, "not base64"),
            (
                r#""size":6,"payload":""#,
                r#""size":6,"payload":"AAAA"#,
                "11 bytes",
            ),
            (r#""name":"etc/hello""#, r#""name":"","#, ""),
            (r#""name_raw":""#, r#""name_raw":"*"#, "name_raw"),
        ];
        for (from, to, says) in cases {
            let f = sample();
            let text = lines(&f).replacen(from, to, 1);
            assert!(text != lines(&f), "{from}");
            write_gz(&f.split, text.as_bytes());
            let e = rebuild(&f).unwrap_err();
            assert!(matches!(e, Error::Corrupt { .. }), "{to}: {e}");
            assert!(e.to_string().contains(says), "{e}");
            assert!(
                e.to_string().contains(&f.split.display().to_string()),
                "{e}"
            );
        }

        let f = sample();
        std::fs::write(&f.split, b"not gzip").unwrap();
        assert!(matches!(
            tar_size(&f.split).unwrap_err(),
            Error::Read { .. }
        ));
        assert!(matches!(rebuild(&f).unwrap_err(), Error::Read { .. }));
        // Truncated gzip.
        let f = sample();
        let gz = std::fs::read(&f.split).unwrap();
        std::fs::write(&f.split, &gz[..gz.len() / 2]).unwrap();
        assert!(matches!(rebuild(&f).unwrap_err(), Error::Read { .. }));
    }

    #[test]
    fn a_line_longer_than_the_cap_is_refused_without_reading_it_all() {
        let f = sample();
        let mut text = lines(&f).into_bytes();
        text.extend(std::iter::repeat_n(b' ', MAX_LINE + 10));
        text.extend_from_slice(b"{}\n");
        write_gz(&f.split, &text);
        let e = tar_size(&f.split).unwrap_err();
        assert!(matches!(e, Error::LineTooLong { line: 16, .. }), "{e}");
    }

    #[test]
    fn mangled_metadata_gives_errors_never_panics() {
        let f = fixture(&[
            Item::Dir(b"etc/"),
            Item::File(b"etc/hello", b"hello\n"),
            Item::File(b"etc/caf\xe9", b"x"),
        ]);
        let good = lines(&f).into_bytes();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let mut text = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % text.len() as u64) as usize;
                match next() % 3 {
                    0 => text[at] = next() as u8,
                    1 => {
                        text.remove(at);
                    }
                    _ => text.truncate(at),
                }
            }
            write_gz(&f.split, &text);
            let _ = tar_size(&f.split);
            let _ = rebuild(&f);
        }
    }

    #[test]
    fn the_metadata_file_is_not_opened_through_a_symlink() {
        let f = sample();
        let link = f.split.with_file_name("link.gz");
        std::os::unix::fs::symlink(&f.split, &link).unwrap();
        assert!(matches!(tar_size(&link).unwrap_err(), Error::Read { .. }));
    }
}
