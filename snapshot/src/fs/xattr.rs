//! Extended attributes read through fds, and the one policy of which ones
//! travel with a file when a tree is copied out of a container.
//!
//! Attributes are read from an open fd, or for an entry that is not opened
//! (a device, a FIFO) through its directory's fd (`/proc/self/fd/N/name`,
//! without following the entry). This module does not know what a layer or
//! an overlay makes of an attribute.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::open::proc_path;
use super::Errno;

/// Extended attributes as (name, value) pairs, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Which extended attributes travel with a file: a name is kept when no
/// `drop_prefixes` entry matches it and it is in `keep` or matches a
/// `keep_prefixes` entry. Every other name stays behind. A policy made
/// [`for the host`](XattrPolicy::on_host) also leaves out every name that
/// `privileged` matches.
#[derive(Debug, Clone, Copy)]
pub struct XattrPolicy {
    /// Names kept as they are.
    pub keep: &'static [&'static [u8]],
    /// Namespaces kept, as name prefixes.
    pub keep_prefixes: &'static [&'static [u8]],
    /// Prefixes dropped even inside a kept namespace.
    pub drop_prefixes: &'static [&'static [u8]],
    /// Prefixes (whole names among them) of the attributes that give a file
    /// power on the machine that holds it: an image may carry them, where the
    /// container's runtime confines them, a host directory may not.
    pub privileged: &'static [&'static [u8]],
    /// Whether the files land on the host, where `privileged` names stay
    /// behind.
    pub host: bool,
}

/// What a container's files carry into an image:
///
/// - kept: `security.capability` (file capabilities, which a program needs
///   to run as it did) and `user.*` (the session's own attributes);
/// - dropped: `user.overlay.*` (overlayfs' metadata on a `userxattr` mount,
///   which the layer says in its own way), `trusted.*` (the host's, overlay
///   metadata among them), `security.selinux` and every other `security.*`
///   label (the host's policy), and `system.*` (ACLs, which layers do not
///   carry);
/// - privileged: `security.capability` and `trusted.*`, which
///   [`HOST_XATTRS`] leaves out.
pub const CONTAINER_XATTRS: XattrPolicy = XattrPolicy {
    keep: &[b"security.capability"],
    keep_prefixes: &[b"user."],
    drop_prefixes: &[b"user.overlay."],
    privileged: &[b"security.capability", b"trusted."],
    host: false,
};

/// What an image's files carry onto the host, as home seeding copies them
/// into a host directory: [`CONTAINER_XATTRS`] without its privileged names,
/// so `user.*` but `user.overlay.*` only. A file capability on the host would
/// raise whoever runs the file there, outside any container.
pub const HOST_XATTRS: XattrPolicy = CONTAINER_XATTRS.on_host();

impl XattrPolicy {
    /// The same policy for files that land on the host: its `privileged`
    /// names stay behind.
    pub const fn on_host(self) -> Self {
        XattrPolicy { host: true, ..self }
    }

    /// Whether the attribute `name` travels with its file.
    pub fn keeps(&self, name: &[u8]) -> bool {
        let any = |prefixes: &[&[u8]]| prefixes.iter().any(|p| name.starts_with(p));
        let dropped = any(self.drop_prefixes) || (self.host && any(self.privileged));
        !dropped && (self.keep.contains(&name) || any(self.keep_prefixes))
    }
}

/// The attribute `name` of open file `fd`: `None` when it has none, or when
/// the filesystem has no attributes or refuses to show them (`ENOTSUP`,
/// `EPERM`).
pub fn get(fd: impl AsFd, name: &str) -> io::Result<Option<Vec<u8>>> {
    let fd = fd.as_fd();
    unsupported_as_none(absent_as_none(read_sized(|buf| {
        rustix::fs::fgetxattr(fd, name, buf)
    })))
}

/// The attributes of open file `fd` that `policy` keeps, sorted by name.
pub fn list(fd: impl AsFd, policy: &XattrPolicy) -> io::Result<Xattrs> {
    let fd = fd.as_fd();
    let names = read_sized(|buf| rustix::fs::flistxattr(fd, buf));
    kept(names, policy, |name| {
        read_sized(|buf| rustix::fs::fgetxattr(fd, name, buf))
    })
}

/// The attributes of the entry `name` in directory `dir`, which is not
/// opened (a device or a FIFO) nor followed (a symlink), that `policy` keeps,
/// sorted by name.
pub fn list_at(dir: BorrowedFd<'_>, name: &[u8], policy: &XattrPolicy) -> io::Result<Xattrs> {
    let path = proc_path(dir, Some(name));
    let path: &Path = &path;
    let names = read_sized(|buf| rustix::fs::llistxattr(path, buf));
    kept(names, policy, |attr| {
        read_sized(|buf| rustix::fs::lgetxattr(path, attr, buf))
    })
}

/// Sets the attribute `name` of open file `fd` to `value`.
pub fn set(fd: impl AsFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(fd, name, value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}

/// Sets the attribute `attr` of the entry `name` in directory `dir`, which is
/// not opened (a device or a FIFO) nor followed (a symlink), to `value`.
pub fn set_at(dir: BorrowedFd<'_>, name: &[u8], attr: &[u8], value: &[u8]) -> io::Result<()> {
    let path = proc_path(dir, Some(name));
    rustix::fs::lsetxattr(path.as_path(), attr, value, rustix::fs::XattrFlags::empty())
        .map_err(Into::into)
}

fn kept(
    names: io::Result<Vec<u8>>,
    policy: &XattrPolicy,
    mut value: impl FnMut(&[u8]) -> io::Result<Vec<u8>>,
) -> io::Result<Xattrs> {
    let names = match unsupported_as_none(names.map(Some))? {
        Some(n) => n,
        None => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !policy.keeps(name) {
            continue;
        }
        if let Some(v) = absent_as_none(value(name))? {
            out.push((name.to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// Runs a `*xattr` call that fills a buffer, growing the buffer while the
/// kernel says it is too small (`ERANGE`).
fn read_sized(mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    loop {
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => {
                // With an empty buffer the call says the size it needs.
                let need = call(&mut [])?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn absent_as_none(r: io::Result<Vec<u8>>) -> io::Result<Option<Vec<u8>>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(Errno::NODATA.raw_os_error()) => Ok(None),
        Err(e) => Err(e),
    }
}

fn unsupported_as_none<T>(r: io::Result<Option<T>>) -> io::Result<Option<T>> {
    match r {
        Err(e)
            if matches!(e.raw_os_error(), Some(c)
                if c == Errno::NOTSUP.raw_os_error() || c == Errno::PERM.raw_os_error()) =>
        {
            Ok(None)
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_container_policy_keeps_capabilities_and_user_attributes_only() {
        let cases: &[(&[u8], bool)] = &[
            (b"security.capability", true),
            (b"user.mime_type", true),
            (b"user.", true),
            (b"user.overlay.opaque", false),
            (b"user.overlay.", false),
            (b"trusted.overlay.opaque", false),
            (b"trusted.foo", false),
            (b"security.selinux", false),
            (b"security.ima", false),
            (b"system.posix_acl_access", false),
            (b"security.capability2", false),
            (b"usr.x", false),
        ];
        for &(name, want) in cases {
            assert_eq!(
                CONTAINER_XATTRS.keeps(name),
                want,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn the_host_policy_leaves_privileged_attributes_behind() {
        let cases: &[(&[u8], bool)] = &[
            (b"security.capability", false),
            (b"trusted.overlay.opaque", false),
            (b"trusted.foo", false),
            (b"user.mime_type", true),
            (b"user.overlay.opaque", false),
            (b"security.selinux", false),
            (b"system.posix_acl_access", false),
        ];
        for &(name, want) in cases {
            assert_eq!(
                HOST_XATTRS.keeps(name),
                want,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        // Nothing the host keeps is something an image would not.
        for &(name, _) in cases {
            assert!(!HOST_XATTRS.keeps(name) || CONTAINER_XATTRS.keeps(name));
        }
    }

    #[test]
    fn buffers_grow_until_the_value_fits() {
        let value = vec![7u8; 10_000];
        let mut calls = 0;
        let got = read_sized(|buf| {
            calls += 1;
            match buf.len() {
                0 => Ok(value.len()),
                n if n < value.len() => Err(Errno::RANGE),
                _ => {
                    buf[..value.len()].copy_from_slice(&value);
                    Ok(value.len())
                }
            }
        })
        .unwrap();
        assert_eq!(got, value);
        assert_eq!(calls, 3);
    }

    #[test]
    fn attributes_are_read_through_fds_filtered_and_sorted() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"").unwrap();
        let big = vec![b'v'; 3000];
        for (k, v) in [
            ("user.b", &b"2"[..]),
            ("user.a", &b""[..]),
            ("user.big", &big[..]),
            ("user.overlay.x", &b"y"[..]),
        ] {
            ::xattr::set(&f, k, v).unwrap();
        }
        let file = std::fs::File::open(&f).unwrap();
        let got = list(&file, &CONTAINER_XATTRS).unwrap();
        let names: Vec<&[u8]> = got.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(names, vec![&b"user.a"[..], b"user.b", b"user.big"]);
        assert_eq!(got[2].1, big);
        assert_eq!(get(&file, "user.b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(get(&file, "user.none").unwrap(), None);

        let dir = std::fs::File::open(t.path()).unwrap();
        assert_eq!(list_at(dir.as_fd(), b"f", &CONTAINER_XATTRS).unwrap(), got);
    }

    #[test]
    fn attributes_are_set_through_fds() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"").unwrap();
        std::os::unix::fs::symlink("f", t.path().join("l")).unwrap();
        let file = std::fs::File::open(t.path().join("f")).unwrap();
        set(&file, b"user.a", b"1").unwrap();
        let dir = std::fs::File::open(t.path()).unwrap();
        set_at(dir.as_fd(), b"f", b"user.b", b"2").unwrap();
        let got = list(&file, &CONTAINER_XATTRS).unwrap();
        assert_eq!(
            got,
            vec![
                (b"user.a".to_vec(), b"1".to_vec()),
                (b"user.b".to_vec(), b"2".to_vec())
            ]
        );
        // A symlink is not followed: user.* attributes are refused on it.
        assert!(set_at(dir.as_fd(), b"l", b"user.c", b"3").is_err());
        assert_eq!(list(&file, &CONTAINER_XATTRS).unwrap(), got);
    }
}
