//! A small, deterministic tar encoder: USTAR headers with PAX extended records
//! wherever USTAR cannot say a thing exactly (long or non-UTF-8 names, large ids,
//! sub-second mtimes, xattrs, files of 8 GiB and more).
//!
//! No user or group names are written, and records are emitted in a fixed order, so
//! the same entry always encodes to the same bytes.
//!
//! It knows tar, not OCI: whiteout names are [`crate::layer`]'s, and where the
//! entries come from is the walk's.

use std::io::{self, Write};

pub const BLOCK: usize = 512;

/// What kind of entry a header describes, with the fields that kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File {
        size: u64,
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
    /// A hard link to an entry written earlier in the same archive.
    HardLink {
        target: Vec<u8>,
    },
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One tar entry's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Path inside the archive, relative, without a leading or trailing slash.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Header {
    /// A header for a plain file with fixed, neutral metadata.
    pub fn plain_file(path: impl Into<Vec<u8>>, size: u64, mode: u32) -> Self {
        Header {
            path: path.into(),
            kind: Kind::File { size },
            mode,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        }
    }

    /// The number of data bytes that follow the header.
    pub fn data_size(&self) -> u64 {
        match self.kind {
            Kind::File { size } => size,
            _ => 0,
        }
    }

    /// Encodes the header, preceded by a PAX extended header when needed.
    pub fn encode(&self) -> Vec<u8> {
        let mut name = self.path.clone();
        if self.kind == Kind::Dir {
            name.push(b'/');
        }
        let link: &[u8] = match &self.kind {
            Kind::Symlink { target } | Kind::HardLink { target } => target,
            _ => &[],
        };
        let size = self.data_size();

        let mut pax = Vec::new();
        let binary = std::str::from_utf8(&name).is_err() || std::str::from_utf8(link).is_err();
        if binary {
            pax_record(&mut pax, b"hdrcharset", b"BINARY");
        }
        if name.len() > 100 {
            pax_record(&mut pax, b"path", &name);
        }
        if link.len() > 100 {
            pax_record(&mut pax, b"linkpath", link);
        }
        if u64::from(self.uid) > MAX_OCTAL_7 {
            pax_record(&mut pax, b"uid", self.uid.to_string().as_bytes());
        }
        if u64::from(self.gid) > MAX_OCTAL_7 {
            pax_record(&mut pax, b"gid", self.gid.to_string().as_bytes());
        }
        if size > MAX_OCTAL_11 {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        if self.mtime_nsec != 0 || self.mtime_sec < 0 || self.mtime_sec as u64 > MAX_OCTAL_11 {
            pax_record(
                &mut pax,
                b"mtime",
                pax_time(self.mtime_sec, self.mtime_nsec).as_bytes(),
            );
        }
        for (key, value) in &self.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key);
            pax_record(&mut pax, &k, value);
        }

        let mut out = Vec::with_capacity(BLOCK * 3);
        if !pax.is_empty() {
            let mut h = ustar(
                b"././@PaxHeader",
                b'x',
                0o644,
                0,
                0,
                pax.len() as u64,
                0,
                b"",
            );
            finish_checksum(&mut h);
            out.extend_from_slice(&h);
            out.extend_from_slice(&pax);
            out.resize(out.len() + padding(pax.len() as u64), 0);
        }
        let (typeflag, major, minor) = match self.kind {
            Kind::File { .. } => (b'0', 0, 0),
            Kind::HardLink { .. } => (b'1', 0, 0),
            Kind::Symlink { .. } => (b'2', 0, 0),
            Kind::Char { major, minor } => (b'3', major, minor),
            Kind::Block { major, minor } => (b'4', major, minor),
            Kind::Dir => (b'5', 0, 0),
            Kind::Fifo => (b'6', 0, 0),
        };
        let mtime = self.mtime_sec.clamp(0, MAX_OCTAL_11 as i64) as u64;
        let mut h = ustar(
            &name[..name.len().min(100)],
            typeflag,
            self.mode & 0o7777,
            self.uid,
            self.gid,
            size,
            mtime,
            &link[..link.len().min(100)],
        );
        put_num(&mut h[329..337], u64::from(major));
        put_num(&mut h[337..345], u64::from(minor));
        finish_checksum(&mut h);
        out.extend_from_slice(&h);
        out
    }
}

const MAX_OCTAL_7: u64 = 0o7777777;
const MAX_OCTAL_11: u64 = 0o77777777777;

/// Bytes of zero padding after `len` data bytes to reach a block boundary.
pub fn padding(len: u64) -> usize {
    ((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64) as usize
}

/// A bare USTAR header block, checksum not yet computed.
#[allow(clippy::too_many_arguments)]
pub fn ustar(
    name: &[u8],
    typeflag: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: u64,
    link: &[u8],
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    put_num(&mut h[100..108], u64::from(mode));
    put_num(&mut h[108..116], u64::from(uid));
    put_num(&mut h[116..124], u64::from(gid));
    put_num(&mut h[124..136], size);
    put_num(&mut h[136..148], mtime);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h
}

/// Writes the header checksum; call after every other field is final.
pub fn finish_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
}

/// Octal with a NUL terminator where it fits, else GNU base-256 (read by GNU tar,
/// Go's archive/tar and the `tar` crate alike).
fn put_num(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    if value < 1u64 << (3 * width as u32) {
        let s = format!("{value:0width$o}");
        field[..width].copy_from_slice(s.as_bytes());
        field[width] = 0;
    } else {
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let n = bytes.len().min(field.len() - 1);
        let at = field.len() - n;
        field[at..].copy_from_slice(&bytes[bytes.len() - n..]);
    }
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "LEN KEY=VALUE\n" where LEN counts its own digits.
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn pax_time(sec: i64, nsec: u32) -> String {
    let (sign, whole, frac) = if sec < 0 && nsec > 0 {
        ("-", (-(sec + 1)) as u64, 1_000_000_000 - nsec)
    } else if sec < 0 {
        ("-", sec.unsigned_abs(), 0)
    } else {
        ("", sec as u64, nsec)
    };
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let f = format!("{frac:09}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }
}

/// Which side of a copy failed: reading the source or writing the archive.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
    /// Stopped on request between two chunks.
    Cancelled,
}

/// Writes entries and their data to a byte stream, keeping block alignment.
pub struct TarWriter<W: Write> {
    out: W,
    /// Bytes written so far.
    written: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out, written: 0 }
    }

    /// Writes a header whose data (if any) is written with [`TarWriter::data`].
    pub fn header(&mut self, header: &Header) -> io::Result<()> {
        self.put(&header.encode())
    }

    /// Copies exactly `size` bytes of data from `src`, zero-filling if `src` ends
    /// early, then pads to the block boundary. Returns the bytes `src` gave.
    pub fn data(
        &mut self,
        src: &mut dyn io::Read,
        size: u64,
        buf: &mut [u8],
    ) -> Result<u64, CopyError> {
        self.data_with(size, |out, max| {
            let want = buf.len().min(usize::try_from(max).unwrap_or(usize::MAX));
            loop {
                match src.read(&mut buf[..want]) {
                    Ok(n) => {
                        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
                        return Ok(n as u64);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(CopyError::Read(e)),
                }
            }
        })
    }

    /// Writes exactly `size` bytes of data for the preceding header, the way
    /// [`TarWriter::data`] does, with `chunk` moving the bytes: called with the
    /// output and the bytes still wanted, it moves some of them and says how
    /// many, 0 when its source has ended.
    pub fn data_with(
        &mut self,
        size: u64,
        mut chunk: impl FnMut(&mut W, u64) -> Result<u64, CopyError>,
    ) -> Result<u64, CopyError> {
        let mut left = size;
        while left > 0 {
            match chunk(&mut self.out, left)? {
                0 => break,
                n => left -= n,
            }
        }
        let got = size - left;
        self.written += got;
        let zeros = [0u8; BLOCK * 16];
        while left > 0 {
            let n = zeros.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.put(&zeros[..n]).map_err(CopyError::Write)?;
            left -= n as u64;
        }
        self.pad(size).map_err(CopyError::Write)?;
        Ok(got)
    }

    /// Writes in-memory data for the preceding header.
    pub fn bytes(&mut self, data: &[u8]) -> io::Result<()> {
        self.put(data)?;
        self.pad(data.len() as u64)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        self.put(&[0u8; BLOCK][..padding(len)])
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the end-of-archive marker and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[0u8; BLOCK * 2])?;
        Ok(self.out)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(headers: &[(Header, Vec<u8>)]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        let mut buf = [0u8; 64];
        for (h, data) in headers {
            w.header(h).unwrap();
            if let Kind::File { size } = h.kind {
                w.data(&mut data.as_slice(), size, &mut buf).unwrap();
            }
        }
        w.finish().unwrap()
    }

    fn file(path: &[u8]) -> Header {
        Header::plain_file(path.to_vec(), 3, 0o644)
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [
            0usize, 1, 5, 6, 7, 90, 95, 96, 97, 99, 100, 990, 995, 996, 1000,
        ] {
            let mut out = Vec::new();
            let value = vec![b'a'; n];
            pax_record(&mut out, b"path", &value);
            let space = out.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..space]).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {n}");
        }
    }

    #[test]
    fn pax_time_formats() {
        let cases = [
            (0, 0, "0"),
            (1, 500_000_000, "1.5"),
            (1_700_000_000, 123_456_789, "1700000000.123456789"),
            (-1, 0, "-1"),
            (-2, 750_000_000, "-1.25"),
        ];
        for (sec, nsec, want) in cases {
            assert_eq!(pax_time(sec, nsec), want);
        }
    }

    #[test]
    fn numbers_fall_back_to_base256() {
        let mut f = [0u8; 12];
        put_num(&mut f, 0o77777777777);
        assert_eq!(&f, b"77777777777\0");
        put_num(&mut f, 1 << 40);
        assert_eq!(f[0], 0x80);
        assert_eq!(u64::from_be_bytes(f[4..12].try_into().unwrap()), 1 << 40);
    }

    #[test]
    fn the_tar_crate_reads_every_extension_back() {
        let long = vec![b'd'; 150];
        let mut long_path = long.clone();
        long_path.extend_from_slice(b"/file");
        let weird = b"caf\xe9-\xff".to_vec();
        let mut big_ids = file(b"ids");
        big_ids.uid = 4_000_000_000;
        big_ids.gid = 3_000_000;
        big_ids.mtime_sec = 1_700_000_000;
        big_ids.mtime_nsec = 42;
        big_ids.xattrs = vec![(b"user.k".to_vec(), b"v\0\xff".to_vec())];
        let entries = vec![
            (
                Header {
                    kind: Kind::Dir,
                    mode: 0o1777,
                    ..file(&long)
                },
                vec![],
            ),
            (file(&long_path), b"abc".to_vec()),
            (file(&weird), b"xyz".to_vec()),
            (big_ids, b"123".to_vec()),
            (
                Header {
                    kind: Kind::Symlink {
                        target: vec![b't'; 200],
                    },
                    ..file(b"link")
                },
                vec![],
            ),
            (
                Header {
                    kind: Kind::Char { major: 1, minor: 3 },
                    mode: 0o4755,
                    ..file(b"null")
                },
                vec![],
            ),
        ];
        let bytes = roundtrip(&entries);
        assert_eq!(bytes.len() % BLOCK, 0);
        let mut archive = ::tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path_bytes().into_owned();
            let h = e.header().clone();
            let mut xattrs = Vec::new();
            if let Some(ext) = e.pax_extensions().unwrap() {
                for x in ext {
                    let x = x.unwrap();
                    if let Some(k) = x.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((k.to_vec(), x.value_bytes().to_vec()));
                    }
                }
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((path, h, data, xattrs));
        }
        assert_eq!(seen.len(), entries.len());
        let mut dir = long.clone();
        dir.push(b'/');
        assert_eq!(seen[0].0, dir);
        assert_eq!(seen[0].1.mode().unwrap(), 0o1777);
        assert_eq!(seen[1].0, long_path);
        assert_eq!(seen[1].2, b"abc");
        assert_eq!(seen[2].0, weird);
        assert_eq!(seen[3].1.uid().unwrap(), 4_000_000_000);
        assert_eq!(seen[3].1.gid().unwrap(), 3_000_000);
        assert_eq!(seen[3].3, vec![(b"user.k".to_vec(), b"v\0\xff".to_vec())]);
        assert_eq!(seen[4].1.entry_type(), ::tar::EntryType::Symlink);
        assert_eq!(seen[5].1.device_major().unwrap(), Some(1));
        assert_eq!(seen[5].1.device_minor().unwrap(), Some(3));
        assert_eq!(seen[5].1.mode().unwrap(), 0o4755);
    }

    #[test]
    fn short_source_is_zero_filled_and_reported() {
        let mut w = TarWriter::new(Vec::new());
        let mut buf = [0u8; 8];
        w.header(&Header::plain_file(b"f".to_vec(), 20, 0o644))
            .unwrap();
        let got = w.data(&mut &b"short"[..], 20, &mut buf).unwrap();
        assert_eq!(got, 5);
        let out = w.finish().unwrap();
        assert_eq!(out.len(), BLOCK * 4);
        assert_eq!(&out[BLOCK..BLOCK + 5], b"short");
        assert!(out[BLOCK + 5..BLOCK + 20].iter().all(|&b| b == 0));
    }

    #[test]
    fn encoding_is_deterministic() {
        let h = Header {
            mtime_nsec: 7,
            ..file(b"a/b")
        };
        assert_eq!(h.encode(), h.clone().encode());
    }
}
