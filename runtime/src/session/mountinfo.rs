//! `/proc/PID/mountinfo`, parsed exactly.
//!
//! The kernel escapes space, tab, newline and backslash in paths as `\ooo`, and
//! filesystems may repeat a super option (overlayfs shows `lowerdir+=` once per
//! layer when mounted with the new mount API). So paths are unescaped to bytes
//! and super options keep their order and repeats.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    pub major: u32,
    pub minor: u32,
    /// The path inside the filesystem that is mounted (a bind mount's source).
    pub root: PathBuf,
    /// Where it is mounted, in the mount namespace whose mountinfo this is.
    pub target: PathBuf,
    pub options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Super options in order, repeats kept; values unescaped.
    pub super_options: Vec<(String, Option<String>)>,
}

impl Mount {
    /// The last value of a super option.
    pub fn super_option(&self, key: &str) -> Option<&str> {
        self.super_options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn has_super_flag(&self, key: &str) -> bool {
        self.super_options.iter().any(|(k, _)| k == key)
    }
}

/// Reads and parses `/proc/<pid>/mountinfo` (`pid` "self" for this process).
pub fn read(pid: &str) -> Result<Vec<Mount>> {
    let path = Path::new("/proc").join(pid).join("mountinfo");
    let text = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    parse(&text).map_err(|message| Error::Parse { path, message })
}

/// Parses mountinfo text.
pub fn parse(text: &[u8]) -> std::result::Result<Vec<Mount>, String> {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| parse_line(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

fn parse_line(line: &[u8]) -> std::result::Result<Mount, String> {
    // Paths may hold any byte but the escaped ones, so split bytes, not text.
    let sep = line
        .windows(3)
        .position(|w| w == b" - ")
        .ok_or_else(|| "no ' - ' separator".to_string())?;
    let (head, tail) = (&line[..sep], &line[sep + 3..]);
    let f: Vec<&[u8]> = head.split(|&b| b == b' ').collect();
    if f.len() < 6 {
        return Err(format!("{} fields before the separator, need 6", f.len()));
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let num = |s: &[u8], what: &str| {
        text(s)
            .parse::<u32>()
            .map_err(|_| format!("bad {what} {:?}", text(s)))
    };
    let dev = text(f[2]);
    let (major, minor) = dev
        .split_once(':')
        .ok_or_else(|| format!("bad device {dev:?}"))?;
    let t: Vec<&[u8]> = tail.splitn(3, |&b| b == b' ').collect();
    if t.len() < 3 {
        return Err("fewer than 3 fields after the separator".into());
    }
    Ok(Mount {
        id: num(f[0], "mount id")?,
        parent: num(f[1], "parent id")?,
        major: num(major.as_bytes(), "major")?,
        minor: num(minor.as_bytes(), "minor")?,
        root: unescape_path(f[3]),
        target: unescape_path(f[4]),
        options: text(f[5]).split(',').map(str::to_string).collect(),
        fs_type: text(t[0]),
        source: text(&unescape(t[1])),
        super_options: t[2]
            .split(|&b| b == b',')
            .map(|o| match o.iter().position(|&b| b == b'=') {
                Some(i) => (text(&o[..i]), Some(text(&unescape(&o[i + 1..])))),
                None => (text(o), None),
            })
            .collect(),
    })
}

/// Decodes the kernel's `\ooo` escapes.
pub fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn unescape_path(s: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(s)))
}

/// Splits overlayfs' `lowerdir` value on `:`, honouring `\:` escapes.
pub fn split_lowerdir(v: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut chars = v.bytes().peekable();
    while let Some(c) = chars.next() {
        match c {
            b'\\' if matches!(chars.peek(), Some(b':') | Some(b'\\')) => {
                cur.push(chars.next().expect("peeked"));
            }
            b':' => out.push(PathBuf::from(OsString::from_vec(std::mem::take(&mut cur)))),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(OsString::from_vec(cur)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
69 46 0:39 / / rw,relatime - overlay overlay rw,lowerdir=/l/a:/l/b,upperdir=/u/p\\134q,workdir=/w,uuid=on
86 69 254:0 /tmp/my\\040home /home/work rw,relatime - ext4 /dev/vda rw,discard
90 69 0:50 / /home/work/data\\012x rw shared:5 master:2 - nfs srv:/export rw,vers=4.2
91 69 0:51 / /merged rw - overlay overlay rw,lowerdir+=/a,lowerdir+=/b,datadir+=/c,upperdir=/u
";

    #[test]
    fn parses_escapes_optional_fields_and_repeats() {
        let m = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].fs_type, "overlay");
        assert_eq!(m[0].super_option("upperdir"), Some("/u/p\\q"));
        assert_eq!(m[0].super_option("lowerdir"), Some("/l/a:/l/b"));
        assert_eq!(m[1].root, PathBuf::from("/tmp/my home"));
        assert_eq!((m[1].major, m[1].minor), (254, 0));
        assert_eq!(m[2].target, PathBuf::from("/home/work/data\nx"));
        assert_eq!(m[2].fs_type, "nfs");
        assert_eq!(m[2].source, "srv:/export");
        let lowers: Vec<_> = m[3]
            .super_options
            .iter()
            .filter(|(k, _)| k == "lowerdir+")
            .map(|(_, v)| v.clone().unwrap())
            .collect();
        assert_eq!(lowers, vec!["/a", "/b"]);
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, want) in [
            ("1 2 3", "line 1: no ' - ' separator"),
            ("x 2 0:1 / / rw - ext4 a rw", "bad mount id"),
            ("1 2 01 / / rw - ext4 a rw", "bad device"),
            ("1 2 0:1 / / rw - ext4", "fewer than 3"),
        ] {
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn non_utf8_paths_survive() {
        let line = b"7 1 8:1 /\xff /mnt/caf\xe9 rw - ext4 /dev/sda1 rw\n";
        let m = parse(line).unwrap();
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(m[0].target.as_os_str().as_bytes(), b"/mnt/caf\xe9");
        assert_eq!(m[0].root.as_os_str().as_bytes(), b"/\xff");
    }

    #[test]
    fn lowerdir_splits_on_unescaped_colons() {
        assert_eq!(
            split_lowerdir("/a:/b\\:c:/d\\\\"),
            vec![
                PathBuf::from("/a"),
                PathBuf::from("/b:c"),
                PathBuf::from("/d\\")
            ]
        );
    }

    #[test]
    fn reads_this_process() {
        let m = read("self").unwrap();
        assert!(m.iter().any(|m| m.target == Path::new("/")));
    }
}
