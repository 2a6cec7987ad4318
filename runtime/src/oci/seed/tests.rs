//! Seeding and unseeding real trees: owners, modes, links, special files,
//! xattrs, symlinks refused, and failures that leave the scratch empty.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;

use freezeframe_tests::root_or_skip;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod};
use nix::unistd::mkfifo;
use tempfile::TempDir;

use std::ffi::OsString;

use std::ffi::OsStr;
use std::os::fd::AsRawFd;

use nix::sys::stat::{mkdirat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use rustix::fs::OFlags;

use super::fd::*;
use super::*;

const HOME: &str = "/home/work";

/// An image rootfs with an empty home at `/home/work`, and an empty scratch dir.
struct Fixture {
    tmp: TempDir,
    rootfs: PathBuf,
    home: PathBuf,
    scratch: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        let home = rootfs.join("home/work");
        let scratch = tmp.path().join("scratch");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir(&scratch).unwrap();
        Fixture {
            tmp,
            rootfs,
            home,
            scratch,
        }
    }

    fn seed(&self) -> Result<Seeded, SeedError> {
        seed(&self.rootfs, Path::new(HOME), &self.scratch)
    }

    fn scratch_names(&self) -> Vec<OsString> {
        let mut names: Vec<_> = fs::read_dir(&self.scratch)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }
}

fn meta(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap()
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn relative_home_paths() {
    assert_eq!(
        relative(Path::new("/home/work")),
        Some(PathBuf::from("home/work"))
    );
    assert_eq!(
        relative(Path::new("/home/./work/")),
        Some(PathBuf::from("home/work"))
    );
    for bad in ["home/work", "/", "/home/../etc", ""] {
        assert_eq!(relative(Path::new(bad)), None, "{bad}");
    }
}

#[test]
fn copies_owners_modes_but_setuid_and_setgid_and_read_only_dirs() {
    if !root_or_skip("copies_owners_modes_but_setuid_and_setgid_and_read_only_dirs") {
        return;
    }
    let fx = Fixture::new();
    fs::write(fx.home.join("tool"), b"#!/bin/sh\n").unwrap();
    chown(&fx.home.join("tool"), 0, 50);
    chmod(&fx.home.join("tool"), 0o6755);
    fs::write(fx.home.join("secret"), b"s").unwrap();
    chown(&fx.home.join("secret"), 1234, 5678);
    chmod(&fx.home.join("secret"), 0o000);
    let ro = fx.home.join("ro");
    fs::create_dir(&ro).unwrap();
    fs::write(ro.join("inside"), b"12345").unwrap();
    chown(&ro.join("inside"), 1234, 1234);
    fs::create_dir(ro.join("sub")).unwrap();
    chown(&ro, 1234, 1234);
    chmod(&ro, 0o555);
    let sticky = fx.home.join("tmp");
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let shared = fx.home.join("shared");
    fs::create_dir(&shared).unwrap();
    chown(&shared, 1234, 50);
    chmod(&shared, 0o2775);

    let seeded = fx.seed().unwrap();
    assert_eq!(
        seeded,
        Seeded::Copied {
            entries: 7,
            bytes: 10 + 1 + 5,
            devices: LeftOut::default(),
        }
    );
    for (rel, uid, gid, mode) in [
        ("tool", 0, 50, 0o755),
        ("secret", 1234, 5678, 0o000),
        ("ro", 1234, 1234, 0o555),
        ("ro/inside", 1234, 1234, 0o644),
        ("tmp", 0, 0, 0o1777),
        ("shared", 1234, 50, 0o775),
    ] {
        let m = meta(&fx.scratch.join(rel));
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, gid, mode),
            "{rel}"
        );
    }
    assert!(meta(&fx.scratch.join("ro/sub")).is_dir());
    assert_eq!(fs::read(fx.scratch.join("ro/inside")).unwrap(), b"12345");
}

#[test]
fn scratch_keeps_the_owner_and_mode_the_platform_gave_it() {
    if !root_or_skip("scratch_keeps_the_owner_and_mode_the_platform_gave_it") {
        return;
    }
    let fx = Fixture::new();
    fs::write(fx.home.join(".profile"), b"x").unwrap();
    chown(&fx.home.join(".profile"), 4242, 4242);
    chown(&fx.home, 4242, 4243);
    chmod(&fx.home, 0o2777);
    xattr::set(&fx.home, "user.home", b"yes").unwrap();
    chown(&fx.scratch, 1000, 1001);
    chmod(&fx.scratch, 0o700);

    fx.seed().unwrap();
    let m = meta(&fx.scratch);
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o700));
    assert_eq!(xattr::get(&fx.scratch, "user.home").unwrap(), None);
    // What is in it keeps the image's owners.
    let profile = meta(&fx.scratch.join(".profile"));
    assert_eq!((profile.uid(), profile.gid()), (4242, 4242));
}

#[test]
fn hard_links_stay_hard_links() {
    if !root_or_skip("hard_links_stay_hard_links") {
        return;
    }
    let fx = Fixture::new();
    fs::create_dir(fx.home.join("a")).unwrap();
    fs::create_dir(fx.home.join("b")).unwrap();
    fs::write(fx.home.join("a/one"), b"shared").unwrap();
    fs::hard_link(fx.home.join("a/one"), fx.home.join("b/two")).unwrap();
    fs::hard_link(fx.home.join("a/one"), fx.home.join("three")).unwrap();
    // Its other link is outside the home: it is copied as a plain file.
    fs::write(fx.home.join("lonely"), b"l").unwrap();
    fs::hard_link(fx.home.join("lonely"), fx.rootfs.join("lonely")).unwrap();

    let seeded = fx.seed().unwrap();
    assert_eq!(
        seeded,
        Seeded::Copied {
            entries: 6,
            bytes: 6 + 1,
            devices: LeftOut::default(),
        }
    );
    let one = meta(&fx.scratch.join("a/one"));
    assert_eq!(one.nlink(), 3);
    for other in ["b/two", "three"] {
        assert_eq!(meta(&fx.scratch.join(other)).ino(), one.ino(), "{other}");
    }
    assert_eq!(meta(&fx.scratch.join("lonely")).nlink(), 1);
}

#[test]
fn symlinks_are_copied_as_text_and_never_followed() {
    if !root_or_skip("symlinks_are_copied_as_text_and_never_followed") {
        return;
    }
    let fx = Fixture::new();
    let outside = fx.tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("host-secret"), b"do not copy").unwrap();
    let links = [
        ("passwd", "/etc/passwd"),
        ("up", "../../../outside/host-secret"),
        ("etc", "/etc"),
        ("outside", outside.to_str().unwrap()),
        ("dangling", "nowhere"),
    ];
    for (name, target) in links {
        symlink(target, fx.home.join(name)).unwrap();
    }
    chown(&fx.home.join("passwd"), 1234, 4321);

    let seeded = fx.seed().unwrap();
    assert_eq!(
        seeded,
        Seeded::Copied {
            entries: 5,
            bytes: 0,
            devices: LeftOut::default(),
        }
    );
    for (name, target) in links {
        let copy = fx.scratch.join(name);
        assert!(meta(&copy).file_type().is_symlink(), "{name}");
        assert_eq!(fs::read_link(&copy).unwrap(), Path::new(target), "{name}");
    }
    let m = meta(&fx.scratch.join("passwd"));
    assert_eq!((m.uid(), m.gid()), (1234, 4321));
}

#[test]
fn a_symlink_on_the_home_path_is_refused() {
    if !root_or_skip("a_symlink_on_the_home_path_is_refused") {
        return;
    }
    // The image's /home is a symlink to a host directory with a `work` in it.
    let fx = Fixture::new();
    let host = fx.tmp.path().join("host");
    fs::create_dir_all(host.join("work")).unwrap();
    fs::write(host.join("work/loot"), b"host data").unwrap();
    fs::remove_dir_all(fx.rootfs.join("home")).unwrap();
    symlink(&host, fx.rootfs.join("home")).unwrap();
    let err = fx.seed().unwrap_err();
    assert!(
        matches!(err, SeedError::Symlink { ref path } if path == Path::new(HOME)),
        "{err}"
    );
    assert!(err.to_string().contains(HOME), "{err}");
    assert!(fx.scratch_names().is_empty());

    // The home itself being a symlink, even a relative one, is refused too.
    fs::remove_file(fx.rootfs.join("home")).unwrap();
    fs::create_dir_all(fx.rootfs.join("home/real")).unwrap();
    fs::write(fx.rootfs.join("home/real/file"), b"x").unwrap();
    symlink("real", fx.rootfs.join("home/work")).unwrap();
    assert!(matches!(fx.seed(), Err(SeedError::Symlink { .. })));
    assert!(fx.scratch_names().is_empty());
}

#[test]
fn missing_empty_or_odd_sources() {
    let fx = Fixture::new();
    assert_eq!(fx.seed().unwrap(), Seeded::NoSource, "empty home");
    let missing = seed(&fx.rootfs, Path::new("/home/nobody"), &fx.scratch).unwrap();
    assert_eq!(missing, Seeded::NoSource);
    fs::write(fx.rootfs.join("home/file"), b"x").unwrap();
    let err = seed(&fx.rootfs, Path::new("/home/file"), &fx.scratch).unwrap_err();
    assert!(matches!(err, SeedError::NotADirectory { .. }), "{err}");
    let err = seed(&fx.rootfs, Path::new("home/work"), &fx.scratch).unwrap_err();
    assert!(matches!(err, SeedError::BadPath { .. }), "{err}");
    assert!(fx.scratch_names().is_empty());
}

#[test]
fn a_non_empty_scratch_is_left_alone() {
    let fx = Fixture::new();
    fs::write(fx.home.join("from-image"), b"image").unwrap();
    fs::write(fx.scratch.join(".keep"), b"mine").unwrap();
    chmod(&fx.scratch, 0o700);
    assert_eq!(fx.seed().unwrap(), Seeded::NotEmpty);
    assert_eq!(fx.scratch_names(), [OsString::from(".keep")]);
    assert_eq!(fs::read(fx.scratch.join(".keep")).unwrap(), b"mine");
    assert_eq!(meta(&fx.scratch).mode() & 0o7777, 0o700);
}

#[test]
fn only_the_xattrs_the_host_policy_keeps_are_copied() {
    if !root_or_skip("only_the_xattrs_the_host_policy_keeps_are_copied") {
        return;
    }
    let fx = Fixture::new();
    let (file, dir, link) = (fx.home.join("f"), fx.home.join("d"), fx.home.join("l"));
    fs::write(&file, b"x").unwrap();
    fs::create_dir(&dir).unwrap();
    symlink("f", &link).unwrap();
    for path in [&file, &dir] {
        xattr::set(path, "user.keep", b"1").unwrap();
        xattr::set(path, "trusted.keep", b"2").unwrap();
        xattr::set(path, "trusted.overlay.opaque", b"y").unwrap();
        xattr::set(path, "user.overlay.opaque", b"y").unwrap();
    }
    // A file capability stays behind; the kernel checks its format.
    let cap = [
        0x00, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    xattr::set(&file, "security.capability", &cap).unwrap();
    // Symlinks cannot have user.* attributes; trusted.* ones they can.
    xattr::set(&link, "trusted.keep", b"3").unwrap();
    // Only possible where no SELinux policy owns the attribute.
    let selinux = xattr::set(&file, "security.selinux", b"system_u:object_r:etc_t:s0").is_ok();

    fx.seed().unwrap();
    for name in ["f", "d"] {
        let copy = fx.scratch.join(name);
        assert_eq!(
            xattr::get(&copy, "user.keep").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        // trusted.* is the host's, overlay metadata or not.
        assert_eq!(xattr::get(&copy, "trusted.keep").unwrap(), None);
        assert_eq!(xattr::get(&copy, "trusted.overlay.opaque").unwrap(), None);
        assert_eq!(xattr::get(&copy, "user.overlay.opaque").unwrap(), None);
    }
    assert_eq!(
        xattr::get(fx.scratch.join("f"), "security.capability").unwrap(),
        None
    );
    let link_copy = fx.scratch.join("l");
    assert!(meta(&link_copy).file_type().is_symlink());
    assert_eq!(xattr::get(&link_copy, "trusted.keep").unwrap(), None);
    if selinux {
        let label = xattr::get(fx.scratch.join("f"), "security.selinux").unwrap();
        assert_ne!(label.as_deref(), Some(&b"system_u:object_r:etc_t:s0"[..]));
    }
}

#[test]
fn fifos_are_copied_and_devices_and_sockets_left_out() {
    if !root_or_skip("fifos_are_copied_and_devices_and_sockets_left_out") {
        return;
    }
    let fx = Fixture::new();
    mkfifo(&fx.home.join("pipe"), Mode::from_bits_truncate(0o640)).unwrap();
    chown(&fx.home.join("pipe"), 1234, 1234);
    let null = makedev(1, 3);
    mknod(
        &fx.home.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        null,
    )
    .unwrap();
    chmod(&fx.home.join("null"), 0o666);
    fs::create_dir(fx.home.join("dev")).unwrap();
    mknod(
        &fx.home.join("dev/disk"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o666),
        makedev(254, 0),
    )
    .unwrap();
    fs::hard_link(fx.home.join("null"), fx.home.join("null2")).unwrap();
    let _listener = UnixListener::bind(fx.home.join("sock")).unwrap();

    assert_eq!(
        fx.seed().unwrap(),
        Seeded::Copied {
            entries: 2,
            bytes: 0,
            devices: LeftOut {
                count: 3,
                paths: ["dev/disk", "null", "null2"]
                    .iter()
                    .map(|p| Path::new(HOME).join(p))
                    .collect(),
            },
        }
    );
    let pipe = meta(&fx.scratch.join("pipe"));
    assert_eq!(kind_of(&pipe), SFlag::S_IFIFO);
    assert_eq!((pipe.uid(), pipe.mode() & 0o7777), (1234, 0o640));
    for gone in ["null", "null2", "dev/disk", "sock"] {
        assert!(!fx.scratch.join(gone).exists(), "{gone}");
    }
    assert!(meta(&fx.scratch.join("dev")).is_dir());
}

fn kind_of(m: &fs::Metadata) -> SFlag {
    SFlag::from_bits_truncate(m.mode() & SFlag::S_IFMT.bits())
}

#[test]
fn timestamps_are_kept() {
    if !root_or_skip("timestamps_are_kept") {
        return;
    }
    let fx = Fixture::new();
    fs::create_dir(fx.home.join("dir")).unwrap();
    fs::write(fx.home.join("dir/file"), b"data").unwrap();
    symlink("dir/file", fx.home.join("link")).unwrap();
    mkfifo(&fx.home.join("pipe"), Mode::S_IRWXU).unwrap();
    let atime = TimeSpec::new(1_000_000_000, 123_456_789);
    let mtime = TimeSpec::new(1_200_000_000, 500);
    // Children first: setting a directory's times does not move its parent's.
    for rel in ["dir/file", "dir", "link", "pipe", ""] {
        let path = fx.home.join(rel);
        utimensat(None, &path, &atime, &mtime, UtimensatFlags::NoFollowSymlink).unwrap();
    }

    fx.seed().unwrap();
    // The scratch directory's own times are the platform's.
    for rel in ["dir/file", "dir", "link", "pipe"] {
        let m = meta(&fx.scratch.join(rel));
        assert_eq!(
            (m.atime(), m.atime_nsec()),
            (1_000_000_000, 123_456_789),
            "{rel:?}"
        );
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_200_000_000, 500), "{rel:?}");
    }
}

/// A tmpfs that is unmounted when dropped, even if the test fails.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_failed_copy_leaves_scratch_empty() {
    if !root_or_skip("a_failed_copy_leaves_scratch_empty") {
        return;
    }
    let fx = Fixture::new();
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(
        Some("tmpfs"),
        &fx.scratch,
        Some("tmpfs"),
        flags,
        Some("size=64k"),
    )
    .unwrap();
    let _tmpfs = Tmpfs(fx.scratch.clone());
    // In name order: a read-only dir with content and a small file are
    // copied before the big file fills the tmpfs.
    let ro = fx.home.join("a-ro");
    fs::create_dir_all(ro.join("sub")).unwrap();
    fs::write(ro.join("sub/small"), b"small").unwrap();
    chmod(&ro.join("sub"), 0o500);
    chmod(&ro, 0o555);
    symlink("a-ro", fx.home.join("b-link")).unwrap();
    fs::write(fx.home.join("c-small"), b"small").unwrap();
    fs::write(fx.home.join("d-big"), vec![7u8; 1 << 20]).unwrap();

    let err = fx.seed().unwrap_err();
    let msg = err.to_string();
    let enospc = Some(Errno::NOSPC.raw_os_error());
    assert!(
        matches!(&err, SeedError::Copy { source, .. } if source.raw_os_error() == enospc),
        "{msg}"
    );
    let dest = fx.scratch.join("d-big");
    assert!(
        msg.contains("/home/work/d-big") && msg.contains(dest.to_str().unwrap()),
        "{msg}"
    );
    assert!(fx.scratch_names().is_empty(), "{:?}", fx.scratch_names());
}

#[test]
fn deep_trees_copy_without_recursion() {
    if !root_or_skip("deep_trees_copy_without_recursion") {
        return;
    }
    const DEPTH: usize = 3000;
    let fx = Fixture::new();
    // Deeper than PATH_MAX allows to name, so built and checked fd by fd.
    let mut dir = open_root_nofollow(&fx.home).unwrap();
    for _ in 0..DEPTH {
        mkdirat(Some(dir.as_raw_fd()), "d", Mode::S_IRWXU).unwrap();
        dir = open_child(dir.as_fd(), "d", DIR).unwrap();
    }
    let mut bottom = fs::File::from(create_child(dir.as_fd(), OsStr::new("bottom")).unwrap());
    io::Write::write_all(&mut bottom, b"deep").unwrap();

    let seeded = fx.seed().unwrap();
    assert_eq!(
        seeded,
        Seeded::Copied {
            entries: DEPTH as u64 + 1,
            bytes: 4,
            devices: LeftOut::default(),
        }
    );
    let mut dir = open_root_nofollow(&fx.scratch).unwrap();
    for _ in 0..DEPTH {
        dir = open_child(dir.as_fd(), "d", DIR).unwrap();
    }
    let bottom = open_child(dir.as_fd(), "bottom", OFlags::RDONLY).unwrap();
    assert_eq!(io::read_to_string(fs::File::from(bottom)).unwrap(), "deep");

    // std's remove_dir_all recurses; empty both trees first.
    empty_dir(open_root_nofollow(&fx.scratch).unwrap().as_fd()).unwrap();
    empty_dir(open_root_nofollow(&fx.home).unwrap().as_fd()).unwrap();
    assert!(fx.scratch_names().is_empty());
}
