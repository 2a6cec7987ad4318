//! The layer engine end to end, as root, on real overlay mounts: a base image made
//! by umoci, changes made through the merged mount the way a session makes them,
//! `freezeframe commit`, and peers (umoci, skopeo, GNU tar) reading the result.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freezeframe_tests::*;
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::{makedev, mkdirat, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::mkfifo;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Building blocks

/// `security.capability` as `setcap cap_net_raw+ep` writes it (VFS_CAP_REVISION_2).
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
const BIG_UID: u32 = 4_000_000_000;
const BIG_GID: u32 = 4_000_000_001;

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    utimensat(
        None,
        p,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(sec, nsec),
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

fn setx(p: &Path, name: &str, value: &[u8]) {
    xattr::set(p, name, value).unwrap_or_else(|e| panic!("setxattr {name} {}: {e}", p.display()));
}

fn link(src: &Path, dst: &Path) {
    fs::hard_link(src, dst)
        .unwrap_or_else(|e| panic!("ln {} {}: {e}", src.display(), dst.display()));
}

fn sym(target: impl AsRef<Path>, at: &Path) {
    symlink(target.as_ref(), at).unwrap_or_else(|e| panic!("ln -s {}: {e}", at.display()));
}

/// The report's entries of `--json`'s `layers`.
fn layers(report: &Value) -> &Vec<Value> {
    report["layers"].as_array().expect("layers array")
}

fn top_layer(report: &Value) -> &Value {
    layers(report).last().expect("at least one layer")
}

fn skipped_count(report: &Value, reason: &str) -> u64 {
    report["skipped"]["counts"][reason].as_u64().unwrap_or(0)
}

fn skipped_paths(report: &Value, reason: &str) -> Vec<String> {
    report["skipped"]["entries"]
        .as_array()
        .expect("skipped.entries")
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| {
            e["path"]
                .as_str()
                .expect("path")
                .trim_start_matches('/')
                .to_string()
        })
        .collect()
}

/// The new layer's entries, read from the archive with GNU tar + the tar crate.
fn top_layer_entries(archive: &Path, report: &Value, scratch: &Path) -> Vec<LayerEntry> {
    let layout = extract_archive(archive, scratch);
    layer_entries(&blob_path(
        &layout,
        top_layer(report)["digest"].as_str().expect("digest"),
    ))
}

fn entry<'a>(entries: &'a [LayerEntry], path: &str) -> Option<&'a LayerEntry> {
    entries.iter().find(|e| e.path == path.as_bytes())
}

// ---------------------------------------------------------------------------
// The session: a umoci base, an overlay over it changed through the merged
// mount, and a scratch home.

/// The base image's content (made by umoci, so the base is a peer's work).
fn populate_base(r: &Path) {
    for d in [
        "etc",
        "opt/app/sub",
        "var/cache/old/inner",
        "usr/bin",
        "usr/share/doc",
        "usr/share/setgid",
        "srv/shared",
        "home",
        "data",
        "names",
    ] {
        mkdirs(&r.join(d));
    }
    write(&r.join("etc/motd"), "welcome\n");
    write(&r.join("etc/app.conf"), "a=1\n");
    write(&r.join("etc/keep"), "kept\n");
    write(&r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&r.join("opt/app/a"), "old a\n");
    write(&r.join("opt/app/b"), "old b\n");
    write(&r.join("opt/app/sub/c"), "old c\n");
    write(&r.join("var/cache/old/x"), "cached\n");
    write(&r.join("var/cache/old/inner/y"), "cached\n");
    write(&r.join("usr/bin/tool"), "#!/bin/sh\necho tool\n");
    chmod(&r.join("usr/bin/tool"), 0o755);
    write(&r.join("usr/share/doc/a"), "shared doc\n");
    link(&r.join("usr/share/doc/a"), &r.join("usr/share/doc/b"));
    write(&r.join("usr/share/doc/c"), "untouched pair\n");
    link(&r.join("usr/share/doc/c"), &r.join("usr/share/doc/d"));
    write(&r.join("data/owned"), "owned\n");
}

/// Everything a session does to the image's files, through the merged mount.
fn change_through_merged(m: &Path) {
    // New, modified and deleted files; a deleted directory (whiteouts).
    write(&m.join("etc/new.conf"), "brand new\n");
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("etc/app.conf"))
        .and_then(|mut f| f.write_all(b"b=2\n"))
        .expect("append app.conf");
    fs::remove_file(m.join("etc/motd")).expect("rm motd");
    fs::remove_dir_all(m.join("var/cache/old")).expect("rm -r old");

    // A deleted and recreated directory (opaque).
    fs::remove_dir_all(m.join("opt/app")).expect("rm -r app");
    mkdirs(&m.join("opt/app/sub"));
    write(&m.join("opt/app/fresh"), "fresh\n");
    write(&m.join("opt/app/sub/c"), "new c\n");

    // Mode bits: setuid, setgid, sticky, restrictive.
    chmod(&m.join("usr/bin/tool"), 0o4755);
    chmod(&m.join("usr/share/setgid"), 0o2775);
    chmod(&m.join("srv/shared"), 0o1777);
    write(&m.join("usr/bin/sg"), "setgid tool\n");
    chmod(&m.join("usr/bin/sg"), 0o2711);
    write(&m.join("etc/secret"), "s3cret\n");
    chmod(&m.join("etc/secret"), 0o600);

    // Large owners, on a copied-up file and on a new one.
    chown(&m.join("data/owned"), BIG_UID, BIG_GID);
    write(&m.join("data/new-owned"), "mine\n");
    chown(&m.join("data/new-owned"), 1000, BIG_GID);

    // Hardlinks: within the upper, across directories, to a copied-up lower file,
    // and a lower pair broken by modifying one side.
    write(&m.join("srv/one"), "one\n");
    link(&m.join("srv/one"), &m.join("srv/two"));
    mkdirs(&m.join("srv/links"));
    write(&m.join("srv/links/x"), "across\n");
    link(&m.join("srv/links/x"), &m.join("etc/x-link"));
    link(&m.join("etc/keep"), &m.join("srv/keep-link"));
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("usr/share/doc/b"))
        .and_then(|mut f| f.write_all(b"changed b\n"))
        .expect("append doc/b");

    // Symlinks: absolute, dangling, pointing outside, long, to a directory.
    sym("/etc/passwd", &m.join("srv/abs"));
    sym("does/not/exist", &m.join("srv/dangling"));
    sym("../../../../../../../../etc/shadow", &m.join("srv/outside"));
    sym(
        format!("{}end", "long-target/".repeat(30)),
        &m.join("srv/long"),
    );
    sym("/etc", &m.join("srv/etc-dir"));

    // Devices, a FIFO and a socket (skipped).
    mkdirs(&m.join("devs"));
    mknod(
        &m.join("devs/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .expect("mknod c");
    mknod(
        &m.join("devs/loop9"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        makedev(7, 9),
    )
    .expect("mknod b");
    chown(&m.join("devs/loop9"), 0, 6);
    mkfifo(&m.join("devs/pipe"), Mode::from_bits_truncate(0o640)).expect("mkfifo");
    drop(UnixListener::bind(m.join("srv/sock")).expect("bind socket"));

    // Names: spaces, newlines, non-UTF-8 bytes, 200 bytes; a path of >100 bytes;
    // a `.wh.` name is not possible through the mount, see the reserved-name test.
    let n = m.join("names");
    write(&n.join("with space"), "space\n");
    write(&n.join("new\nline"), "newline\n");
    write(&bytes_path(&n, b"bad\xff\xfe-bytes"), "latin\n");
    write(&n.join("n".repeat(200)), "long name\n");
    let deep = n.join(format!("{}/{}", "d".repeat(60), "e".repeat(60)));
    mkdirs(&deep);
    write(&deep.join("file-at-the-end-of-a-long-path"), "deep\n");

    // xattrs: kept (user.*, security.capability) and dropped (trusted.*).
    let capped = m.join("srv/capped");
    write(&capped, "#!/bin/sh\nping\n");
    chmod(&capped, 0o755);
    setx(&capped, "user.x", b"hello");
    setx(&capped, "trusted.foo", b"must not appear");
    setx(&capped, "security.capability", &CAP_NET_RAW);
    setx(&m.join("names"), "user.dir", b"on a dir");
    setx(&m.join("srv"), "trusted.foo", b"must not appear");

    // Nanosecond mtimes, dirs last (creating entries touches them).
    write(&m.join("srv/ancient"), "before 1970\n");
    set_mtime(&m.join("srv/ancient"), -86_400 * 365, 5);
    set_mtime(&capped, 1_600_000_000, 123_456_789);
    set_mtime(&m.join("srv/abs"), 1_500_000_000, 987_654_321);
    set_mtime(&m.join("devs/pipe"), 1_400_000_000, 1);
    set_mtime(&deep, 1_300_000_000, 999_999_999);
    set_mtime(&m.join("names"), 1_700_000_000, 1);
}

/// The scratch home: plain files, a hardlink, a symlink, an xattr, and a vfolder
/// placeholder dir (`data`) to be excluded.
fn fill_home(h: &Path) {
    mkdirs(&h.join("notes"));
    mkdirs(&h.join("data/sets"));
    mkdirs(&h.join(".config"));
    write(&h.join(".bashrc"), "export PS1='$ '\n");
    setx(&h.join(".bashrc"), "user.origin", b"home");
    write(&h.join("notes/todo.txt"), "freeze the session\n");
    link(&h.join("notes/todo.txt"), &h.join("notes/todo-link"));
    sym(".bashrc", &h.join(".profile"));
    write(&h.join(".config/app.toml"), "k = 1\n");
    write(
        &h.join("data/sets/huge.bin"),
        "vfolder content, never committed\n",
    );
    for p in [
        "",
        "notes",
        "notes/todo.txt",
        "notes/todo-link",
        ".bashrc",
        ".profile",
        ".config",
        ".config/app.toml",
        "data",
    ] {
        chown(&h.join(p), 1000, 1000);
    }
    // A FIFO (never opened for reading) and an agent socket (skipped).
    mkfifo(&h.join("notes/pipe"), Mode::from_bits_truncate(0o600)).expect("mkfifo in home");
    drop(UnixListener::bind(h.join(".agent.sock")).expect("bind socket in home"));
    set_mtime(&h.join("notes/todo.txt"), 1_650_000_000, 42);
    set_mtime(&h.join("notes"), 1_650_000_001, 43);
}

struct Session {
    // Declared first: unmounted before the dirs below are removed.
    ovl: Overlay,
    base: BaseImage,
    home: PathBuf,
    out: PathBuf,
    dir: TempDir,
}

impl Session {
    /// A umoci base, an overlay over it mounted with `options`, nothing changed yet.
    fn new(name: &str, options: &str) -> Session {
        let dir = tempdir(name);
        let base = BaseImage::build(dir.path(), populate_base);
        let ovl = Overlay::mount(&[&base.rootfs], options);
        let home = dir.path().join("home");
        let out = dir.path().join("out");
        mkdirs(&home);
        mkdirs(&out);
        Session {
            ovl,
            base,
            home,
            out,
            dir,
        }
    }

    fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        mkdirs(&p);
        p
    }
}

struct Committed {
    s: Session,
    archive: PathBuf,
    report: Value,
    rootfs: PathBuf,
}

/// The whole story: base, changes through the merged mount, home, commit with
/// `--base … --tag t --exclude /home/work/data`, umoci unpack.
fn committed_session(name: &str) -> Committed {
    let s = Session::new(name, "");
    change_through_merged(&s.ovl.merged);
    fill_home(&s.home);
    let archive = s.out.join("session.tar");
    let report = OfflineCommit::new(&s.ovl.upper)
        .lower(&s.base.rootfs)
        .home(&s.home)
        .exclude("/home/work/data")
        .base(s.base.reference())
        .tag("t")
        .output(&archive)
        .commit();
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    Committed {
        s,
        archive,
        report,
        rootfs,
    }
}

/// What the image must hold: the merged view (without sockets, with only the
/// kept xattrs) with the home at /home/work, minus the excluded vfolder.
fn expected_image(c: &Committed) -> TreeSnapshot {
    let mut e = TreeSnapshot::capture(&c.s.ovl.merged).only_kept_xattrs();
    e.graft(
        "/home/work",
        TreeSnapshot::capture(&c.s.home).only_kept_xattrs(),
    );
    e.remove_subtree("/home/work/data");
    e.retain(|_, n| n.kind != Kind::Socket);
    e
}

// ---------------------------------------------------------------------------
// Round trip with real peers

#[test]
fn umoci_unpack_gives_exactly_the_merged_view_plus_the_home() {
    if !root_or_skip("umoci_unpack_gives_exactly_the_merged_view_plus_the_home") {
        return;
    }
    let c = committed_session("roundtrip");
    let expected = expected_image(&c);
    assert!(
        expected.nodes.len() > 50,
        "fixture too small: {} paths",
        expected.nodes.len()
    );
    // Unfiltered: a trusted.* or overlay xattr leaking into the layer shows up.
    let actual = TreeSnapshot::capture(&c.rootfs);
    assert_same_unpacked_tree(
        expected,
        &actual,
        "umoci-unpacked image vs merged view + home",
    );
}

#[test]
fn hardlinks_survive_the_round_trip() {
    if !root_or_skip("hardlinks_survive_the_round_trip") {
        return;
    }
    let c = committed_session("hardlinks");
    let t = TreeSnapshot::capture(&c.rootfs);
    let linked = |a: &str, b: &str| t.hardlinks_of(a.as_bytes()).contains(b.as_bytes());
    assert!(linked("/srv/one", "/srv/two"), "same-dir hardlink lost");
    assert!(
        linked("/srv/links/x", "/etc/x-link"),
        "cross-dir hardlink lost"
    );
    assert!(
        linked("/etc/keep", "/srv/keep-link"),
        "hardlink to a copied-up lower file lost"
    );
    assert!(
        linked("/usr/share/doc/c", "/usr/share/doc/d"),
        "untouched base hardlink pair lost"
    );
    assert!(
        linked("/home/work/notes/todo.txt", "/home/work/notes/todo-link"),
        "hardlink in the home lost"
    );
    // Modifying one side of a lower pair broke the link in the session.
    assert!(
        !linked("/usr/share/doc/a", "/usr/share/doc/b"),
        "doc/a and doc/b must no longer be linked"
    );
    assert_eq!(
        fs::read_to_string(c.rootfs.join("usr/share/doc/a")).unwrap(),
        "shared doc\n"
    );
    assert_eq!(
        fs::read_to_string(c.rootfs.join("usr/share/doc/b")).unwrap(),
        "shared doc\nchanged b\n"
    );
}

#[test]
fn deleted_files_and_replaced_dirs_hide_the_base_content() {
    if !root_or_skip("deleted_files_and_replaced_dirs_hide_the_base_content") {
        return;
    }
    let c = committed_session("whiteouts");
    let r = &c.rootfs;
    assert!(!r.join("etc/motd").exists(), "deleted file came back");
    assert!(!r.join("var/cache/old").exists(), "deleted dir came back");
    assert!(r.join("var/cache").is_dir());
    let mut app: Vec<String> = dir_names(&r.join("opt/app"));
    app.sort();
    assert_eq!(
        app,
        ["fresh", "sub"],
        "recreated dir must hide the base's entries (opaque)"
    );
    assert_eq!(dir_names(&r.join("opt/app/sub")), ["c"]);
    assert_eq!(
        fs::read_to_string(r.join("opt/app/sub/c")).unwrap(),
        "new c\n"
    );
    let entries = top_layer_entries(&c.archive, &c.report, &c.s.scratch("layer"));
    assert!(
        entry(&entries, "etc/.wh.motd").is_some(),
        "no whiteout for etc/motd in the layer"
    );
    assert!(
        entry(&entries, "var/cache/.wh.old").is_some(),
        "no whiteout for var/cache/old"
    );
    let opq = entries
        .iter()
        .position(|e| e.path == b"opt/app/.wh..wh..opq")
        .expect("no opaque marker for opt/app");
    let dir = entries
        .iter()
        .position(|e| e.path == b"opt/app")
        .expect("no opt/app entry");
    assert!(
        dir < opq,
        "the opaque marker must follow its directory's entry"
    );
}

#[test]
fn modes_owners_and_large_ids_survive_the_round_trip() {
    if !root_or_skip("modes_owners_and_large_ids_survive_the_round_trip") {
        return;
    }
    let c = committed_session("modes");
    let t = TreeSnapshot::capture(&c.rootfs);
    let node = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} missing")).clone();
    assert_eq!(node("/usr/bin/tool").mode, 0o4755, "setuid");
    assert_eq!(node("/usr/bin/sg").mode, 0o2711, "setgid file");
    assert_eq!(node("/usr/share/setgid").mode, 0o2775, "setgid dir");
    assert_eq!(node("/srv/shared").mode, 0o1777, "sticky dir");
    assert_eq!(node("/etc/secret").mode, 0o600);
    assert_eq!(
        (node("/data/owned").uid, node("/data/owned").gid),
        (BIG_UID, BIG_GID)
    );
    assert_eq!(
        (node("/data/new-owned").uid, node("/data/new-owned").gid),
        (1000, BIG_GID)
    );
    assert_eq!(
        (node("/home/work/.bashrc").uid, node("/home/work").gid),
        (1000, 1000)
    );
    let capped = node("/srv/capped");
    assert_eq!(
        capped.mtime,
        (1_600_000_000, 123_456_789),
        "nanosecond mtime"
    );
    assert_eq!(
        node("/srv/abs").mtime,
        (1_500_000_000, 987_654_321),
        "symlink mtime"
    );
    assert_eq!(node("/names").mtime, (1_700_000_000, 1), "dir mtime");
}

#[test]
fn only_capability_and_user_xattrs_are_kept() {
    if !root_or_skip("only_capability_and_user_xattrs_are_kept") {
        return;
    }
    let c = committed_session("xattrs");
    let capped = c.rootfs.join("srv/capped");
    assert_eq!(
        xattr::get(&capped, "user.x").unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        xattr::get(&capped, "security.capability")
            .unwrap()
            .as_deref(),
        Some(&CAP_NET_RAW[..]),
        "security.capability lost"
    );
    assert_eq!(
        xattr::get(&capped, "trusted.foo").unwrap(),
        None,
        "trusted.foo leaked into the image"
    );
    assert_eq!(
        xattr::get(c.rootfs.join("srv"), "trusted.foo").unwrap(),
        None,
        "trusted.foo leaked (dir)"
    );
    assert_eq!(
        xattr::get(c.rootfs.join("names"), "user.dir")
            .unwrap()
            .as_deref(),
        Some(&b"on a dir"[..])
    );
    assert_eq!(
        xattr::get(c.rootfs.join("home/work/.bashrc"), "user.origin")
            .unwrap()
            .as_deref(),
        Some(&b"home"[..])
    );
    // And in the layer itself: no trusted.* and no overlay xattrs at all.
    let entries = top_layer_entries(&c.archive, &c.report, &c.s.scratch("layer"));
    for e in &entries {
        for k in e.pax.keys() {
            if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                assert!(
                    kept_xattr(name.as_bytes()),
                    "{}: xattr {name} in the layer",
                    show(&e.path)
                );
            }
        }
    }
}

#[test]
fn devices_fifos_and_symlinks_survive_and_sockets_are_skipped() {
    if !root_or_skip("devices_fifos_and_symlinks_survive_and_sockets_are_skipped") {
        return;
    }
    let c = committed_session("special");
    let t = TreeSnapshot::capture(&c.rootfs);
    let n = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} missing")).clone();
    assert_eq!(
        (n("/devs/null").kind, n("/devs/null").rdev),
        (Kind::CharDevice, Some((1, 3)))
    );
    assert_eq!(
        (n("/devs/loop9").kind, n("/devs/loop9").rdev),
        (Kind::BlockDevice, Some((7, 9)))
    );
    assert_eq!(n("/devs/pipe").kind, Kind::Fifo);
    for (p, target) in [
        ("/srv/abs", "/etc/passwd".to_string()),
        ("/srv/dangling", "does/not/exist".to_string()),
        (
            "/srv/outside",
            "../../../../../../../../etc/shadow".to_string(),
        ),
        ("/srv/long", format!("{}end", "long-target/".repeat(30))),
        ("/srv/etc-dir", "/etc".to_string()),
    ] {
        assert_eq!(n(p).kind, Kind::Symlink, "{p}");
        assert_eq!(n(p).target.as_deref(), Some(target.as_bytes()), "{p}");
    }
    assert!(t.get("/srv/sock").is_none(), "a socket reached the image");
    assert_eq!(n("/home/work/notes/pipe").kind, Kind::Fifo);
    assert!(
        t.get("/home/work/.agent.sock").is_none(),
        "a socket in the home reached the image"
    );
    assert_eq!(
        skipped_count(&c.report, "socket"),
        2,
        "sockets not counted: {}",
        c.report["skipped"]
    );
    let mut paths = skipped_paths(&c.report, "socket");
    paths.sort();
    assert_eq!(paths, ["home/work/.agent.sock", "srv/sock"]);
}

#[test]
fn weird_names_and_long_paths_survive_the_round_trip() {
    if !root_or_skip("weird_names_and_long_paths_survive_the_round_trip") {
        return;
    }
    let c = committed_session("names");
    let n = c.rootfs.join("names");
    assert_eq!(fs::read_to_string(n.join("with space")).unwrap(), "space\n");
    assert_eq!(
        fs::read_to_string(n.join("new\nline")).unwrap(),
        "newline\n"
    );
    assert_eq!(
        fs::read_to_string(bytes_path(&n, b"bad\xff\xfe-bytes")).unwrap(),
        "latin\n"
    );
    assert_eq!(
        fs::read_to_string(n.join("n".repeat(200))).unwrap(),
        "long name\n"
    );
    let deep = n.join(format!(
        "{}/{}/file-at-the-end-of-a-long-path",
        "d".repeat(60),
        "e".repeat(60)
    ));
    assert_eq!(fs::read_to_string(deep).unwrap(), "deep\n");
}

#[test]
fn the_home_is_committed_at_its_path_without_excluded_vfolders() {
    if !root_or_skip("the_home_is_committed_at_its_path_without_excluded_vfolders") {
        return;
    }
    let c = committed_session("home");
    let h = c.rootfs.join("home/work");
    let mut names = dir_names(&h);
    names.sort();
    assert_eq!(
        names,
        [".bashrc", ".config", ".profile", "notes"],
        "sockets and excluded paths stay out"
    );
    assert!(!h.join("data").exists(), "excluded vfolder committed");
    assert_eq!(
        fs::read_to_string(h.join("notes/todo.txt")).unwrap(),
        "freeze the session\n"
    );
    assert!(
        c.report["walk"]["excluded"].as_u64().unwrap_or(0) >= 1,
        "excluded paths not counted: {}",
        c.report["walk"]
    );
}

#[test]
fn skopeo_accepts_the_archive_and_sees_every_layer() {
    if !root_or_skip("skopeo_accepts_the_archive_and_sees_every_layer") {
        return;
    }
    let c = committed_session("skopeo");
    let info = skopeo_inspect(&c.archive);
    let seen: Vec<&str> = info["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let ours: Vec<&str> = layers(&c.report)
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(seen.len(), 2, "base layer + the new one: {info}");
    assert_eq!(seen, ours, "skopeo's layers differ from the report's");
    // The config's diff_ids end with the new layer's diffID.
    let config = skopeo_config(&c.archive);
    let ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], top_layer(&c.report)["diff_id"]);
    // Sizes in the report are the real ones.
    assert_eq!(
        c.report["size"].as_u64(),
        Some(fs::metadata(&c.archive).unwrap().len())
    );
    let layout = extract_archive(&c.archive, &c.s.scratch("sizes"));
    for l in layers(&c.report) {
        let blob = blob_path(&layout, l["digest"].as_str().unwrap());
        assert_eq!(
            l["size"].as_u64(),
            Some(fs::metadata(&blob).unwrap().len()),
            "{l}"
        );
        assert_eq!(
            Some(format!("sha256:{}", sha256_file(&blob)).as_str()),
            l["digest"].as_str()
        );
    }
    // Peers agree on every digest and diffID.
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    for (l, d) in layers(&c.report).iter().zip(diff_ids) {
        let blob = blob_path(&layout, l["digest"].as_str().unwrap());
        assert_eq!(Value::from(peer_diff_id(&blob)), *d, "diffID of {l}");
    }
    skopeo_copy_to_dir(&c.archive, &c.s.scratch("copied")).ok();
    // Our own verifier and the sidecar agree too.
    inspect(&c.archive).ok();
    let mut sha = OsString::from(c.archive.as_os_str());
    sha.push(".sha256");
    let sidecar = fs::read_to_string(&sha).expect("sidecar missing");
    assert_eq!(
        sidecar.split_whitespace().next(),
        Some(sha256_file(&c.archive).as_str()),
        "sidecar: {sidecar}"
    );
    run(std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(Path::new(&sha).file_name().unwrap())
        .current_dir(&c.s.out))
    .ok();
    assert_eq!(
        c.report["archive_sha256"]
            .as_str()
            .map(|s| s.trim_start_matches("sha256:")),
        Some(sha256_file(&c.archive).as_str())
    );
}

#[test]
fn inspect_names_a_corrupted_blob() {
    if !root_or_skip("inspect_names_a_corrupted_blob") {
        return;
    }
    let c = committed_session("corrupt");
    inspect(&c.archive).ok();
    let digest = top_layer(&c.report)["digest"].as_str().unwrap().to_string();
    let hex = digest.trim_start_matches("sha256:").to_string();
    let copy = c.s.scratch("corrupt").join("copy.tar");
    fs::copy(&c.archive, &copy).unwrap();
    // Find the blob's bytes inside the archive and flip one in the middle.
    let (pos, size) = {
        let mut ar = tar::Archive::new(fs::File::open(&copy).unwrap());
        let mut found = None;
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            if e.path_bytes().ends_with(hex.as_bytes()) {
                found = Some((e.raw_file_position(), e.size()));
            }
        }
        found.unwrap_or_else(|| panic!("blob {digest} not in the archive"))
    };
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&copy)
        .unwrap();
    let at = pos + size / 2;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
    drop(f);
    let out = inspect(&copy).failed();
    assert!(
        out.stdout.contains(&hex) || out.stderr.contains(&hex),
        "inspect failed without naming the corrupted blob {digest}:\n{out}"
    );
}

#[test]
fn inspect_detects_a_layer_whose_diff_id_does_not_match() {
    if !root_or_skip("inspect_detects_a_layer_whose_diff_id_does_not_match") {
        return;
    }
    let dir = tempdir("diffid");
    let upper = dir.path().join("upper");
    mkdirs(&upper);
    write(&upper.join("file"), "original content\n");
    let archive = dir.path().join("a.tar");
    let report = OfflineCommit::new(&upper)
        .tag("t")
        .output(&archive)
        .commit();
    let layout = extract_archive(&archive, dir.path());
    // Rewrite the layer with one content byte changed, recompressed, and fix up
    // every digest above it (blob name, manifest, index) but not the config's
    // diff_ids: only the diffID check can notice.
    let old_digest = top_layer(&report)["digest"].as_str().unwrap().to_string();
    let old_blob = blob_path(&layout, &old_digest);
    let mut tar_bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(fs::File::open(&old_blob).unwrap()),
        &mut tar_bytes,
    )
    .unwrap();
    let at = tar_bytes
        .windows(b"original".len())
        .position(|w| w == b"original")
        .expect("content in the tar");
    tar_bytes[at] = b'O';
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes).unwrap();
    let new_blob = gz.finish().unwrap();
    let new_digest = format!("sha256:{}", hex::encode(Sha256::digest(&new_blob)));
    fs::remove_file(&old_blob).unwrap();
    fs::write(blob_path(&layout, &new_digest), &new_blob).unwrap();
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let old_manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value =
        serde_json::from_slice(&fs::read(blob_path(&layout, &old_manifest)).unwrap()).unwrap();
    let ls = manifest["layers"].as_array_mut().unwrap();
    let last = ls.last_mut().unwrap();
    last["digest"] = Value::from(new_digest.clone());
    last["size"] = Value::from(new_blob.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest_bytes)));
    fs::remove_file(blob_path(&layout, &old_manifest)).unwrap();
    fs::write(blob_path(&layout, &manifest_digest), &manifest_bytes).unwrap();
    index["manifests"][0]["digest"] = Value::from(manifest_digest);
    index["manifests"][0]["size"] = Value::from(manifest_bytes.len());
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let tampered = dir.path().join("tampered.tar");
    tool(
        "tar",
        args![
            "-cf",
            &tampered,
            "-C",
            &layout,
            "oci-layout",
            "index.json",
            "blobs"
        ],
    );
    let out = inspect(&tampered).failed();
    let text = format!("{}{}", out.stdout, out.stderr).to_lowercase();
    assert!(
        text.contains("diff") || text.contains(new_digest.trim_start_matches("sha256:")),
        "inspect failed without pointing at the layer's diffID:\n{out}"
    );
}

#[test]
fn inspect_rejects_truncated_and_garbage_archives_without_panicking() {
    if !root_or_skip("inspect_rejects_truncated_and_garbage_archives_without_panicking") {
        return;
    }
    let dir = tempdir("inspect-bad");
    let upper = dir.path().join("upper");
    mkdirs(&upper);
    write_random(&upper.join("f"), 64 << 10);
    let archive = dir.path().join("good.tar");
    OfflineCommit::new(&upper).output(&archive).commit();
    let good = fs::read(&archive).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", fs::read(upper.join("f")).unwrap()),
        ("one block", good[..512].to_vec()),
    ];
    // Cut inside the first entry, in the middle, and inside the last entry's data
    // (cutting only the two zero blocks at the end loses nothing, so is fine).
    let last_data_middle = {
        let mut ar = tar::Archive::new(fs::File::open(&archive).unwrap());
        let last = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.raw_file_position(), e.size()))
            .last();
        let (pos, size) = last.expect("entries");
        (pos + size / 2) as usize
    };
    for cut in [1024, good.len() / 2, last_data_middle] {
        cases.push(("truncated", good[..cut].to_vec()));
    }
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.tar"));
        fs::write(&p, &bytes).unwrap();
        let o = inspect(&p).failed();
        assert_eq!(
            o.status.code(),
            Some(1),
            "{what} ({} bytes): not a clean failure:\n{o}",
            bytes.len()
        );
        assert!(
            o.stderr.contains(p.to_str().unwrap()),
            "{what}: error does not name the file:\n{o}"
        );
    }
}

#[test]
fn errors_name_the_path_and_state_the_cause_once() {
    if !root_or_skip("errors_name_the_path_and_state_the_cause_once") {
        return;
    }
    let dir = tempdir("errors");
    let missing = dir.path().join("no-such-upper");
    let o = OfflineCommit::new(&missing)
        .output(dir.path().join("a.tar"))
        .run()
        .failed();
    assert!(
        o.stderr.contains(missing.to_str().unwrap()),
        "error does not name the path:\n{o}"
    );
    assert_eq!(
        o.stderr.matches("No such file or directory").count(),
        1,
        "the cause is repeated:\n{o}"
    );
}

// ---------------------------------------------------------------------------
// Home placement

#[test]
fn the_home_replaces_what_the_image_and_upper_have_at_the_home_path() {
    if !root_or_skip("the_home_replaces_what_the_image_and_upper_have_at_the_home_path") {
        return;
    }
    let dir = tempdir("home-replace");
    let base = BaseImage::build(dir.path(), |r| {
        mkdirs(&r.join("home/work/.cache"));
        write(&r.join("home/work/from-image.txt"), "image\n");
        write(&r.join("home/work/.cache/x"), "image\n");
    });
    let ovl = Overlay::mount(&[&base.rootfs], "");
    write(
        &ovl.m("home/work/stale.txt"),
        "written under the bind mount's shadow\n",
    );
    let home = dir.path().join("home");
    mkdirs(&home);
    write(&home.join("mine.txt"), "mine\n");
    let archive = dir.path().join("img.tar");
    OfflineCommit::new(&ovl.upper)
        .lower(&base.rootfs)
        .home(&home)
        .base(base.reference())
        .tag("t")
        .output(&archive)
        .commit();
    let rootfs = unpack_archive(&archive, "t", &dir.path().join("unpacked"));
    assert_eq!(
        dir_names(&rootfs.join("home/work")),
        ["mine.txt"],
        "/home/work must hold exactly the scratch home"
    );
}

#[test]
fn exclude_patterns_without_a_leading_slash_match_at_any_depth() {
    if !root_or_skip("exclude_patterns_without_a_leading_slash_match_at_any_depth") {
        return;
    }
    let dir = tempdir("exclude-glob");
    let upper = dir.path().join("upper");
    let home = dir.path().join("home");
    for d in [
        "upper/srv/pkg/__pycache__",
        "upper/top/__pycache__",
        "home/proj/__pycache__",
        "home/.cache/pip",
    ] {
        mkdirs(&dir.path().join(d));
    }
    write(&upper.join("srv/pkg/mod.py"), "x = 1\n");
    write(&upper.join("srv/pkg/mod.pyc"), "bytecode");
    write(
        &upper.join("srv/pkg/__pycache__/mod.cpython-311.pyc"),
        "bytecode",
    );
    write(&upper.join("top/__pycache__/a.pyc"), "bytecode");
    write(&home.join("proj/main.py"), "print()\n");
    write(
        &home.join("proj/__pycache__/main.cpython-311.pyc"),
        "bytecode",
    );
    write(&home.join(".cache/pip/wheel"), "cache");
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper)
        .home(&home)
        .exclude("__pycache__")
        .exclude("*.pyc")
        .exclude("/home/work/.cache")
        .compression("none")
        .output(&archive)
        .commit();
    let entries = top_layer_entries(&archive, &report, &dir.path().join("x"));
    let names: BTreeSet<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    for kept in ["srv/pkg/mod.py", "home/work/proj/main.py"] {
        assert!(names.contains(kept), "{kept} missing; layer: {names:?}");
    }
    let leaked: Vec<&String> = names
        .iter()
        .filter(|n| n.contains("__pycache__") || n.ends_with(".pyc") || n.contains(".cache"))
        .collect();
    assert!(
        leaked.is_empty(),
        "{leaked:?} should have been excluded; layer: {names:?}"
    );
}

#[test]
fn a_custom_home_path_gets_the_home_and_its_parents() {
    if !root_or_skip("a_custom_home_path_gets_the_home_and_its_parents") {
        return;
    }
    let dir = tempdir("home-path");
    let upper = dir.path().join("upper");
    let home = dir.path().join("home");
    mkdirs(&upper.join("srv"));
    mkdirs(&home.join("sub"));
    write(&home.join("sub/f"), "f\n");
    let archive = dir.path().join("img.tar");
    OfflineCommit::new(&upper)
        .home(&home)
        .home_path("/srv/users/alice")
        .tag("t")
        .output(&archive)
        .commit();
    let rootfs = unpack_archive(&archive, "t", &dir.path().join("unpacked"));
    assert_eq!(
        fs::read_to_string(rootfs.join("srv/users/alice/sub/f")).unwrap(),
        "f\n"
    );
    assert!(
        !rootfs.join("home/work").exists(),
        "the default home path was used too"
    );
}

#[test]
fn xattr_whiteouts_delete_like_device_whiteouts() {
    if !root_or_skip("xattr_whiteouts_delete_like_device_whiteouts") {
        return;
    }
    // overlayfs's other whiteout encoding: a zero-size file with overlay.whiteout.
    let dir = tempdir("xattr-whiteout");
    let base = BaseImage::build(dir.path(), populate_base);
    let upper = dir.path().join("upper");
    mkdirs(&upper.join("etc"));
    write(&upper.join("etc/motd"), "");
    setx(&upper.join("etc/motd"), "trusted.overlay.whiteout", b"");
    setx(&upper.join("etc"), "trusted.overlay.whiteouts", b"");
    let archive = dir.path().join("img.tar");
    OfflineCommit::new(&upper)
        .base(base.reference())
        .tag("t")
        .output(&archive)
        .commit();
    let rootfs = unpack_archive(&archive, "t", &dir.path().join("unpacked"));
    assert!(
        !rootfs.join("etc/motd").exists(),
        "xattr whiteout did not delete /etc/motd"
    );
    assert!(
        rootfs.join("etc/passwd").exists(),
        "the whiteout deleted more than /etc/motd"
    );
    assert_eq!(
        xattr::list(rootfs.join("etc")).unwrap().count(),
        0,
        "overlay xattrs leaked onto /etc"
    );
}

#[test]
fn mtimes_outside_the_ustar_range_survive_in_the_layer() {
    if !root_or_skip("mtimes_outside_the_ustar_range_survive_in_the_layer") {
        return;
    }
    // umoci 0.4 restores an mtime past 2038 as -2^31, so GNU tar is the peer here.
    let dir = tempdir("mtime-range");
    let upper = dir.path().join("upper");
    mkdirs(&upper.join("d"));
    let cases = [
        ("d/future", 10_000_000_000, 7),
        ("d/ancient", -86_400 * 365 * 30, 5),
        ("d/epoch", 0, 0),
    ];
    for (p, sec, nsec) in cases {
        write(&upper.join(p), p);
        set_mtime(&upper.join(p), sec, nsec);
    }
    set_mtime(&upper.join("d"), 9_000_000_000, 999_999_999);
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper).output(&archive).commit();
    let layout = extract_archive(&archive, dir.path());
    let blob = blob_path(&layout, top_layer(&report)["digest"].as_str().unwrap());
    let out = dir.path().join("extracted");
    mkdirs(&out);
    tool("tar", args!["-xf", &blob, "-C", &out]);
    let expected = TreeSnapshot::capture(&upper);
    let actual = TreeSnapshot::capture(&out);
    assert_same_unpacked_tree(expected, &actual, "GNU tar extraction vs upper");
}

// ---------------------------------------------------------------------------
// Determinism

/// A plain upper with some of everything, and a commit helper.
fn determinism_upper(dir: &Path) -> PathBuf {
    let u = dir.join("upper");
    mkdirs(&u.join("a/b/c"));
    mkdirs(&u.join("z"));
    for i in 0..50 {
        write(
            &u.join(format!("a/f{i:02}")),
            format!("file {i}\n").repeat(i + 1),
        );
    }
    write_random(&u.join("a/b/random.bin"), 2 << 20);
    write(&u.join("a/b/c/text"), "compressible ".repeat(50_000));
    link(&u.join("a/f01"), &u.join("z/hard"));
    sym("../a/f02", &u.join("z/soft"));
    setx(&u.join("a/f03"), "user.k", b"v");
    mkfifo(&u.join("z/fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    u
}

fn layer_ids(upper: &Path, out: &Path, extra: &[&str]) -> (String, String) {
    let r = OfflineCommit::new(upper)
        .force()
        .output(out)
        .args(extra)
        .commit();
    let l = top_layer(&r);
    (
        l["digest"].as_str().unwrap().to_string(),
        l["diff_id"].as_str().unwrap().to_string(),
    )
}

fn assert_deterministic(name: &str, compression: &str) {
    if !root_or_skip(name) {
        return;
    }
    let dir = tempdir(name);
    let upper = determinism_upper(dir.path());
    let out = dir.path().join("img.tar");
    let runs = [
        (
            "threads 1",
            layer_ids(
                &upper,
                &out,
                &["--compression", compression, "--threads", "1"],
            ),
        ),
        (
            "threads 4",
            layer_ids(
                &upper,
                &out,
                &["--compression", compression, "--threads", "4"],
            ),
        ),
        (
            "threads 4 again",
            layer_ids(
                &upper,
                &out,
                &["--compression", compression, "--threads", "4"],
            ),
        ),
        (
            "threads 1 again",
            layer_ids(
                &upper,
                &out,
                &["--compression", compression, "--threads", "1"],
            ),
        ),
    ];
    let plain = layer_ids(&upper, &out, &["--compression", "none"]);
    for (what, (digest, diff_id)) in &runs {
        assert_eq!(
            diff_id, &plain.1,
            "{compression} {what}: the tar stream (diffID) differs from the uncompressed one"
        );
        assert_eq!(
            digest, &runs[0].1 .0,
            "{compression} {what}: compressed layer differs from threads 1"
        );
    }
}

#[test]
fn gzip_layers_are_byte_identical_across_runs_and_thread_counts() {
    assert_deterministic(
        "gzip_layers_are_byte_identical_across_runs_and_thread_counts",
        "gzip",
    );
}

#[test]
fn zstd_layers_are_byte_identical_across_runs_and_thread_counts() {
    assert_deterministic(
        "zstd_layers_are_byte_identical_across_runs_and_thread_counts",
        "zstd",
    );
}

#[test]
fn zstd_archives_pass_the_peers_digest_checks() {
    if !root_or_skip("zstd_archives_pass_the_peers_digest_checks") {
        return;
    }
    // umoci 0.4 cannot unpack zstd layers; skopeo copy checks the digests, the
    // zstd CLI the diffID, and the tar crate reads the content.
    let dir = tempdir("zstd");
    let upper = determinism_upper(dir.path());
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper)
        .compression("zstd")
        .tag("t")
        .output(&archive)
        .commit();
    let l = top_layer(&report);
    assert_eq!(
        l["media_type"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    inspect(&archive).ok();
    skopeo_copy_to_dir(&archive, &dir.path().join("copied")).ok();
    let layout = extract_archive(&archive, dir.path());
    let blob = blob_path(&layout, l["digest"].as_str().unwrap());
    assert_eq!(Value::from(peer_diff_id(&blob)), l["diff_id"]);
    let entries = layer_entries(&blob);
    let random = entry(&entries, "a/b/random.bin").expect("a/b/random.bin");
    assert_eq!(random.sha256, sha256_file(&upper.join("a/b/random.bin")));
}

// ---------------------------------------------------------------------------
// Base handling and config changes

#[test]
fn omitted_base_blobs_still_verify_and_skopeo_reads_the_image() {
    if !root_or_skip("omitted_base_blobs_still_verify_and_skopeo_reads_the_image") {
        return;
    }
    let dir = tempdir("omit");
    let base = BaseImage::build(dir.path(), |r| write(&r.join("base-file"), "base\n"));
    let upper = dir.path().join("upper");
    mkdirs(&upper);
    write(&upper.join("new"), "new\n");
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper)
        .base(base.reference())
        .base_blobs("omit")
        .tag("t")
        .output(&archive)
        .commit();
    let ls = layers(&report);
    assert_eq!(ls.len(), 2);
    assert_eq!(
        ls[0]["included"], false,
        "base layer reported as included: {report}"
    );
    assert_eq!(ls[1]["included"], true);
    let base_hex = ls[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let listing = tool("tar", args!["-tf", &archive]).stdout;
    assert!(
        !listing.contains(&base_hex),
        "base blob present despite --base-blobs omit:\n{listing}"
    );
    assert!(
        listing.contains(
            ls[1]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
        ),
        "new layer missing:\n{listing}"
    );
    inspect(&archive).ok();
    let info = skopeo_inspect(&archive);
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(2), "{info}");
    let out = try_unpack_archive(&archive, "t", &dir.path().join("unpack"));
    assert!(
        !out.success(),
        "umoci unpacked an image whose base blobs are missing?\n{out}"
    );
}

#[test]
fn an_oci_archive_base_chains_commits() {
    if !root_or_skip("an_oci_archive_base_chains_commits") {
        return;
    }
    // Session 1 on a umoci base → archive A; session 2 on A → archive B.
    let dir = tempdir("chain");
    let base = BaseImage::build(dir.path(), |r| write(&r.join("from-base"), "base\n"));
    let (u1, u2) = (dir.path().join("u1"), dir.path().join("u2"));
    mkdirs(&u1);
    mkdirs(&u2);
    write(&u1.join("from-session-1"), "one\n");
    write(&u2.join("from-session-2"), "two\n");
    let (a, b, c) = (
        dir.path().join("a.tar"),
        dir.path().join("b.tar"),
        dir.path().join("c.tar"),
    );
    let ra = OfflineCommit::new(&u1)
        .base(base.reference())
        .tag("one")
        .output(&a)
        .commit();
    let base_a = oci_archive_ref(&a);
    let mut base_a_tagged = base_a.clone();
    base_a_tagged.push(":one");
    let rb = OfflineCommit::new(&u2)
        .base(&base_a_tagged)
        .tag("two")
        .output(&b)
        .commit();
    let digests = |r: &Value| -> Vec<String> {
        layers(r)
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(digests(&rb).len(), 3);
    assert_eq!(
        digests(&rb)[..2],
        digests(&ra)[..],
        "B's base layers are not A's layers"
    );
    inspect(&b).ok();
    let rootfs = unpack_archive(&b, "two", &dir.path().join("unpacked"));
    for (p, content) in [
        ("from-base", "base\n"),
        ("from-session-1", "one\n"),
        ("from-session-2", "two\n"),
    ] {
        assert_eq!(fs::read_to_string(rootfs.join(p)).unwrap(), content, "{p}");
    }
    // A single-image archive needs no tag; a wrong tag is an error naming it.
    OfflineCommit::new(&u2).base(&base_a).output(&c).commit();
    let mut wrong = base_a.clone();
    wrong.push(":no-such-tag");
    let o = OfflineCommit::new(&u2)
        .base(&wrong)
        .output(dir.path().join("d.tar"))
        .run()
        .failed();
    assert!(
        o.stderr.contains("no-such-tag"),
        "error does not name the missing tag:\n{o}"
    );
    assert!(!dir.path().join("d.tar").exists());
}

#[test]
fn changes_are_applied_to_the_inherited_config() {
    if !root_or_skip("changes_are_applied_to_the_inherited_config") {
        return;
    }
    let dir = tempdir("changes");
    let base = BaseImage::build(dir.path(), |r| write(&r.join("f"), "f\n"));
    base.umoci_config([
        "--config.env",
        "BASE=1",
        "--config.env",
        "PATH=/usr/bin:/bin",
        "--config.label",
        "base.label=yes",
        "--config.entrypoint",
        "/bin/tini",
        "--config.stopsignal",
        "SIGINT",
    ]);
    let upper = dir.path().join("upper");
    mkdirs(&upper);
    write(&upper.join("g"), "g\n");
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper)
        .base(base.reference())
        .tag("t")
        .change("ENV FOO=bar")
        .change(r#"CMD ["/bin/sh", "-c", "echo hi"]"#)
        .change("LABEL com.example.team=ml")
        .change("EXPOSE 8080/tcp")
        .change("WORKDIR /srv")
        .change("USER 1000:1000")
        .author("Ada <ada@example.com>")
        .message("frozen session")
        .output(&archive)
        .commit();
    let cfg = skopeo_config(&archive);
    let c = &cfg["config"];
    let env: Vec<&str> = c["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in ["BASE=1", "PATH=/usr/bin:/bin", "FOO=bar"] {
        assert!(env.contains(&want), "Env lacks {want}: {env:?}");
    }
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/tini"]),
        "inherited Entrypoint"
    );
    assert_eq!(c["Labels"]["base.label"], "yes", "inherited label: {c}");
    assert_eq!(c["Labels"]["com.example.team"], "ml");
    assert!(
        c["ExposedPorts"].get("8080/tcp").is_some(),
        "ExposedPorts: {c}"
    );
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["StopSignal"], "SIGINT", "inherited StopSignal");
    let history = cfg["history"].as_array().expect("history");
    let last = history.last().expect("a history entry");
    assert_eq!(last["author"], "Ada <ada@example.com>");
    assert_eq!(last["comment"], "frozen session");
    assert_eq!(cfg["author"], "Ada <ada@example.com>", "config author");
    let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.last().unwrap(), &top_layer(&report)["diff_id"]);
    // Manifest annotations name the base.
    let manifest = tool(
        "skopeo",
        args!["inspect", "--raw", oci_archive_ref(&archive)],
    )
    .json();
    let ann = &manifest["annotations"];
    assert!(
        ann.get("org.opencontainers.image.created").is_some(),
        "{manifest}"
    );
    assert_eq!(
        ann["org.opencontainers.image.base.digest"], report["base"]["digest"],
        "{manifest}"
    );
    assert!(
        ann.get("org.opencontainers.image.base.name").is_some(),
        "{manifest}"
    );
}

#[test]
fn unsupported_change_instructions_are_rejected_by_name() {
    if !root_or_skip("unsupported_change_instructions_are_rejected_by_name") {
        return;
    }
    let dir = tempdir("bad-change");
    let upper = dir.path().join("upper");
    let out = dir.path().join("out");
    mkdirs(&upper);
    mkdirs(&out);
    let o = OfflineCommit::new(&upper)
        .change("RUN rm -rf /")
        .output(out.join("img.tar"))
        .run()
        .failed();
    assert!(
        o.stderr.contains("RUN"),
        "error does not name the instruction:\n{o}"
    );
    assert_eq!(
        dir_names(&out),
        Vec::<String>::new(),
        "something was written"
    );
}

// ---------------------------------------------------------------------------
// redirect_dir and metacopy

fn overlay_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(p, name).unwrap_or_else(|e| panic!("getxattr {name} {}: {e}", p.display()))
}

#[test]
fn renamed_dirs_under_redirect_dir_are_refused_naming_the_dir() {
    if !root_or_skip("renamed_dirs_under_redirect_dir_are_refused_naming_the_dir") {
        return;
    }
    let s = Session::new("redirect", "redirect_dir=on,metacopy=on");
    fs::rename(s.ovl.m("opt/app"), s.ovl.m("opt/moved"))
        .expect("rename a lower dir through the mount");
    assert!(
        overlay_xattr(&s.ovl.upper.join("opt/moved"), "trusted.overlay.redirect").is_some(),
        "fixture: the kernel did not use redirect_dir"
    );
    let o = OfflineCommit::new(&s.ovl.upper)
        .lower(&s.base.rootfs)
        .base(s.base.reference())
        .output(s.out.join("img.tar"))
        .run()
        .failed();
    assert!(
        o.stderr.contains("opt/moved"),
        "error does not name the renamed dir:\n{o}"
    );
    assert!(
        o.stderr.contains("redirect"),
        "error does not say why:\n{o}"
    );
    assert_eq!(
        dir_names(&s.out),
        Vec::<String>::new(),
        "archive or temp file left behind"
    );
}

fn metacopy_session(name: &str) -> Session {
    let s = Session::new(name, "redirect_dir=on,metacopy=on");
    chmod(&s.ovl.m("usr/bin/tool"), 0o4750);
    let up = s.ovl.upper.join("usr/bin/tool");
    assert!(
        overlay_xattr(&up, "trusted.overlay.metacopy").is_some(),
        "fixture: the kernel did not make a metacopy upper file"
    );
    s
}

#[test]
fn metacopy_files_take_their_data_from_the_lower_dir() {
    if !root_or_skip("metacopy_files_take_their_data_from_the_lower_dir") {
        return;
    }
    let s = metacopy_session("metacopy");
    write(&s.ovl.m("etc/new.conf"), "new\n");
    let archive = s.out.join("img.tar");
    OfflineCommit::new(&s.ovl.upper)
        .lower(&s.base.rootfs)
        .base(s.base.reference())
        .tag("t")
        .output(&archive)
        .commit();
    inspect(&archive).ok();
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    assert_eq!(
        fs::read_to_string(rootfs.join("usr/bin/tool")).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    let expected = TreeSnapshot::capture(&s.ovl.merged).only_kept_xattrs();
    let actual = TreeSnapshot::capture(&rootfs);
    assert_same_unpacked_tree(expected, &actual, "metacopy image vs merged view");
}

#[test]
fn metacopy_files_without_a_lower_dir_are_refused() {
    if !root_or_skip("metacopy_files_without_a_lower_dir_are_refused") {
        return;
    }
    let s = metacopy_session("metacopy-nolower");
    let o = OfflineCommit::new(&s.ovl.upper)
        .base(s.base.reference())
        .output(s.out.join("img.tar"))
        .run()
        .failed();
    assert!(
        o.stderr.contains("usr/bin/tool"),
        "error does not name the metacopy file:\n{o}"
    );
    // The library says what is missing; the command line names its flag.
    assert!(
        o.stderr.contains("metacopy=on") && o.stderr.contains("pass the lower dirs (--lower)"),
        "error does not say what is missing:\n{o}"
    );
    assert_eq!(
        dir_names(&s.out),
        Vec::<String>::new(),
        "archive or temp file left behind"
    );
}

#[test]
fn renamed_metacopy_files_take_their_data_from_the_redirected_lower_file() {
    if !root_or_skip("renamed_metacopy_files_take_their_data_from_the_redirected_lower_file") {
        return;
    }
    // Two lowers; metacopy files whose data is in the lower one, one renamed in
    // its dir (relative redirect), one moved across dirs (absolute redirect).
    let dir = tempdir("metacopy-redirect");
    let (l1, l2) = (dir.path().join("l1"), dir.path().join("l2"));
    mkdirs(&l1.join("usr/bin"));
    mkdirs(&l2.join("usr/bin"));
    mkdirs(&l2.join("srv"));
    write(&l1.join("usr/bin/top"), "top layer data\n");
    write(&l2.join("usr/bin/tool"), "bottom layer tool\n");
    write(&l2.join("usr/bin/other"), "bottom layer other\n");
    write(&l2.join("usr/bin/moved"), "moved across dirs\n");
    let ovl = Overlay::mount(&[&l1, &l2], "redirect_dir=on,metacopy=on");
    chmod(&ovl.m("usr/bin/tool"), 0o4755);
    chmod(&ovl.m("usr/bin/top"), 0o700);
    chmod(&ovl.m("usr/bin/other"), 0o700);
    fs::rename(ovl.m("usr/bin/other"), ovl.m("usr/bin/renamed")).unwrap();
    chmod(&ovl.m("usr/bin/moved"), 0o750);
    fs::rename(ovl.m("usr/bin/moved"), ovl.m("srv/moved")).unwrap();
    for (p, redirect) in [
        ("usr/bin/tool", None),
        ("usr/bin/renamed", Some(&b"other"[..])),
        ("srv/moved", Some(&b"/usr/bin/moved"[..])),
    ] {
        let up = ovl.upper.join(p);
        assert!(
            overlay_xattr(&up, "trusted.overlay.metacopy").is_some(),
            "fixture: {p} is no metacopy"
        );
        assert_eq!(
            overlay_xattr(&up, "trusted.overlay.redirect").as_deref(),
            redirect,
            "fixture: {p}"
        );
    }
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&ovl.upper)
        .lower(&l1)
        .lower(&l2)
        .compression("none")
        .output(&archive)
        .commit();
    inspect(&archive).ok();
    let entries = top_layer_entries(&archive, &report, &dir.path().join("x"));
    for (p, mode) in [
        ("usr/bin/tool", 0o4755),
        ("usr/bin/top", 0o700),
        ("usr/bin/renamed", 0o700),
        ("srv/moved", 0o750),
    ] {
        let e = entry(&entries, p).unwrap_or_else(|| panic!("{p} missing from the layer"));
        assert_eq!(
            e.sha256,
            sha256_file(&ovl.m(p)),
            "{p}: content differs from the merged view"
        );
        assert_eq!(e.size, fs::metadata(ovl.m(p)).unwrap().len(), "{p}");
        assert_eq!(e.mode & 0o7777, mode, "{p}");
    }
    assert!(
        entry(&entries, "usr/bin/.wh.other").is_some(),
        "renamed file's old path not whited out"
    );
    assert!(
        entry(&entries, "usr/bin/.wh.moved").is_some(),
        "moved file's old path not whited out"
    );
}

#[test]
fn userxattr_overlays_give_the_merged_view_without_overlay_xattrs() {
    if !root_or_skip("userxattr_overlays_give_the_merged_view_without_overlay_xattrs") {
        return;
    }
    let s = Session::new("userxattr", "userxattr");
    fs::remove_dir_all(s.ovl.m("opt/app")).unwrap();
    mkdirs(&s.ovl.m("opt/app"));
    write(&s.ovl.m("opt/app/only"), "only\n");
    fs::remove_file(s.ovl.m("etc/motd")).unwrap();
    assert_eq!(
        overlay_xattr(&s.ovl.upper.join("opt/app"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "fixture: no user.overlay.opaque"
    );
    let archive = s.out.join("img.tar");
    OfflineCommit::new(&s.ovl.upper)
        .lower(&s.base.rootfs)
        .userxattr()
        .base(s.base.reference())
        .tag("t")
        .output(&archive)
        .commit();
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    let expected = TreeSnapshot::capture(&s.ovl.merged).only_kept_xattrs();
    let actual = TreeSnapshot::capture(&rootfs);
    assert_same_unpacked_tree(expected, &actual, "userxattr image vs merged view");
}

// ---------------------------------------------------------------------------
// Hostile content

#[test]
fn symlinks_in_a_hostile_upper_are_stored_never_followed() {
    if !root_or_skip("symlinks_in_a_hostile_upper_are_stored_never_followed") {
        return;
    }
    let dir = tempdir("hostile");
    let upper = dir.path().join("upper");
    let home = dir.path().join("home");
    mkdirs(&upper.join("var"));
    mkdirs(&home);
    sym("/etc", &upper.join("etc"));
    sym("/etc/shadow", &upper.join("shadow"));
    sym("/etc", &upper.join("var/lib"));
    sym("/root/.ssh", &home.join(".ssh"));
    sym("/etc/shadow", &home.join("notes"));
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper)
        .home(&home)
        .compression("none")
        .tag("t")
        .output(&archive)
        .commit();
    let entries = top_layer_entries(&archive, &report, &dir.path().join("x"));
    for (path, target) in [
        ("etc", "/etc"),
        ("shadow", "/etc/shadow"),
        ("var/lib", "/etc"),
        ("home/work/.ssh", "/root/.ssh"),
        ("home/work/notes", "/etc/shadow"),
    ] {
        let e = entry(&entries, path).unwrap_or_else(|| panic!("{path} missing from the layer"));
        assert_eq!(
            e.kind,
            tar::EntryType::Symlink,
            "{path} stored as {:?}",
            e.kind
        );
        assert_eq!(e.link.as_deref(), Some(target.as_bytes()), "{path}");
        assert_eq!(e.size, 0);
    }
    for e in &entries {
        let p = String::from_utf8_lossy(&e.path);
        assert!(
            !p.starts_with("etc/")
                && !p.starts_with("var/lib/")
                && !p.starts_with("home/work/.ssh/"),
            "followed a symlink: {p}"
        );
        assert!(
            e.kind != tar::EntryType::Regular || e.size == 0,
            "unexpected file content in {p}"
        );
    }
    // Whatever /etc/shadow holds, none of it is in the layer.
    let blob = fs::read(&archive).unwrap();
    if let Ok(shadow) = fs::read("/etc/shadow") {
        if let Some(line) = shadow.split(|&b| b == b'\n').find(|l| l.len() > 8) {
            assert!(
                !blob.windows(line.len()).any(|w| w == line),
                "/etc/shadow content in the archive"
            );
        }
    }
    let rootfs = unpack_archive(&archive, "t", &dir.path().join("unpacked"));
    assert_eq!(
        fs::read_link(rootfs.join("etc")).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(
        fs::read_link(rootfs.join("home/work/notes")).unwrap(),
        Path::new("/etc/shadow")
    );
}

#[test]
fn a_symlink_in_the_upper_cannot_put_the_home_beneath_it() {
    if !root_or_skip("a_symlink_in_the_upper_cannot_put_the_home_beneath_it") {
        return;
    }
    // The upper has /home as a symlink to /etc: a layer holding `home -> /etc`
    // and then `home/work/...` is a tar-slip, whatever the extractor does.
    let dir = tempdir("home-symlink");
    let upper = dir.path().join("upper");
    let home = dir.path().join("home");
    mkdirs(&upper);
    mkdirs(&home);
    sym("/etc", &upper.join("home"));
    write(&home.join("payload"), "would land in /etc/work\n");
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper)
        .home(&home)
        .compression("none")
        .tag("t")
        .output(&archive)
        .commit();
    let entries = top_layer_entries(&archive, &report, &dir.path().join("x"));
    let symlinks: Vec<&LayerEntry> = entries
        .iter()
        .filter(|e| e.kind == tar::EntryType::Symlink)
        .collect();
    for s in &symlinks {
        let mut prefix = s.path.clone();
        prefix.push(b'/');
        for e in &entries {
            assert!(
                !e.path.starts_with(&prefix),
                "{} is stored beneath the symlink {} -> {}",
                show(&e.path),
                show(&s.path),
                show(s.link.as_deref().unwrap_or_default())
            );
        }
    }
    assert!(
        entry(&entries, "home/work/payload").is_some(),
        "the home is missing"
    );
}

#[test]
fn reserved_names_and_whiteout_devices_outside_the_upper_are_skipped_and_reported() {
    if !root_or_skip(
        "reserved_names_and_whiteout_devices_outside_the_upper_are_skipped_and_reported",
    ) {
        return;
    }
    let dir = tempdir("reserved");
    let upper = dir.path().join("upper");
    let home = dir.path().join("home");
    mkdirs(&upper.join("d"));
    mkdirs(&home);
    write(
        &upper.join("d/.wh.evil"),
        "would delete d/evil in a lower layer",
    );
    write(&upper.join("d/ok"), "ok");
    write(&home.join(".wh..wh..opq"), "would make the home opaque");
    mknod(
        &home.join("ghost"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        makedev(0, 0),
    )
    .unwrap();
    write(&home.join("fine"), "fine");
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper)
        .home(&home)
        .compression("none")
        .output(&archive)
        .commit();
    assert_eq!(
        skipped_count(&report, "reserved_name"),
        2,
        "{}",
        report["skipped"]
    );
    assert_eq!(
        skipped_count(&report, "whiteout_device"),
        1,
        "{}",
        report["skipped"]
    );
    let entries = top_layer_entries(&archive, &report, &dir.path().join("x"));
    let names: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    for gone in ["d/.wh.evil", "home/work/ghost"] {
        assert!(
            !names.iter().any(|n| n == gone),
            "{gone} is in the layer: {names:?}"
        );
    }
    // The user's file of that name is skipped; the one marker there is ours,
    // saying the home mount hides what the image has at its path.
    let markers: Vec<_> = entries
        .iter()
        .filter(|e| e.path == b"home/work/.wh..wh..opq")
        .collect();
    assert_eq!(markers.len(), 1, "{names:?}");
    assert_eq!(markers[0].size, 0);
    for kept in ["d/ok", "home/work/fine"] {
        assert!(names.iter().any(|n| n == kept), "{kept} missing: {names:?}");
    }
}

#[test]
fn mounts_inside_the_home_are_not_crossed() {
    if !root_or_skip("mounts_inside_the_home_are_not_crossed") {
        return;
    }
    let dir = tempdir("xdev");
    let upper = dir.path().join("upper");
    let home = dir.path().join("home");
    mkdirs(&upper);
    mkdirs(&home.join("vfolder"));
    write(&home.join("mine"), "mine");
    let vf = Tmpfs::mount_on(&home.join("vfolder"), "1m");
    write(&vf.path.join("network-data"), "lives on another filesystem");
    let archive = dir.path().join("img.tar");
    let report = OfflineCommit::new(&upper)
        .home(&home)
        .compression("none")
        .output(&archive)
        .commit();
    drop(vf);
    assert_eq!(
        skipped_count(&report, "other_filesystem"),
        1,
        "{}",
        report["skipped"]
    );
    let entries = top_layer_entries(&archive, &report, &dir.path().join("x"));
    assert!(entry(&entries, "home/work/mine").is_some());
    assert!(
        !entries
            .iter()
            .any(|e| e.path.starts_with(b"home/work/vfolder/")),
        "content of a mount inside the home was committed"
    );
}

// ---------------------------------------------------------------------------
// Files changing during the walk

#[test]
fn files_changing_during_the_walk_are_reported_and_never_corrupt_the_archive() {
    if !root_or_skip("files_changing_during_the_walk_are_reported_and_never_corrupt_the_archive") {
        return;
    }
    let dir = tempdir("churn");
    let upper = dir.path().join("upper");
    mkdirs(&upper.join("stable"));
    mkdirs(&upper.join("churn"));
    for i in 0..20 {
        write(
            &upper.join(format!("stable/s{i:02}")),
            format!("stable {i}\n").repeat(100 * (i + 1)),
        );
    }
    const VICTIMS: usize = 6;
    for i in 0..VICTIMS {
        write_random(&upper.join(format!("churn/v{i}")), 1 << 20);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churner = {
        let stop = Arc::clone(&stop);
        let dir = upper.join("churn");
        std::thread::spawn(move || {
            let chunk = vec![0xabu8; 64 << 10];
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let p = dir.join(format!("v{}", n % VICTIMS));
                match n % 4 {
                    0 => {
                        if let Ok(f) = fs::OpenOptions::new().write(true).open(&p) {
                            let _ = f.set_len((n as u64 * 7919) % (1 << 20));
                        }
                    }
                    1 => {
                        if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&p) {
                            let _ = f.write_all(&chunk);
                        }
                    }
                    2 => {
                        let _ = fs::remove_file(&p);
                    }
                    _ => {
                        let _ = fs::write(&p, &chunk[..(n * 131) % chunk.len()]);
                    }
                }
                n += 1;
            }
        })
    };
    let victims: BTreeSet<String> = (0..VICTIMS).map(|i| format!("churn/v{i}")).collect();
    let mut reported = BTreeSet::new();
    let mut failures = Vec::new();
    for run_no in 0..8 {
        let archive = dir.path().join(format!("img{run_no}.tar"));
        let compression = if run_no % 2 == 0 { "none" } else { "gzip" };
        let o = OfflineCommit::new(&upper)
            .json()
            .compression(compression)
            .tag("t")
            .output(&archive)
            .run();
        if !o.success() {
            failures.push(format!("run {run_no}: commit failed:\n{o}"));
            continue;
        }
        let report = o.json();
        for p in report["changed_while_read"]
            .as_array()
            .expect("changed_while_read")
        {
            reported.insert(p.as_str().unwrap().trim_start_matches('/').to_string());
        }
        for p in skipped_paths(&report, "vanished") {
            reported.insert(p);
        }
        let i = inspect(&archive);
        if !i.success() {
            failures.push(format!("run {run_no}: inspect failed:\n{i}"));
            continue;
        }
        let scratch = dir.path().join(format!("unpack{run_no}"));
        let u = try_unpack_archive(&archive, "t", &scratch);
        if !u.success() {
            failures.push(format!("run {run_no}: umoci unpack failed:\n{u}"));
            continue;
        }
        let rootfs = scratch.join("bundle/rootfs");
        for i in 0..20 {
            let rel = format!("stable/s{i:02}");
            if fs::read(rootfs.join(&rel)).ok() != fs::read(upper.join(&rel)).ok() {
                failures.push(format!("run {run_no}: {rel} differs"));
            }
        }
        fs::remove_dir_all(&scratch).ok();
        fs::remove_file(&archive).ok();
    }
    stop.store(true, Ordering::Relaxed);
    churner.join().expect("churner thread");
    eprintln!("reported as changed or vanished over 8 commits: {reported:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        !reported.is_empty(),
        "8 commits under constant churn reported no changed or vanished file"
    );
    for p in &reported {
        assert!(
            victims.contains(p),
            "{p} reported as changed, but only churn/v* change"
        );
    }
}

#[test]
fn entries_swapped_for_symlinks_during_the_walk_never_leak_their_targets() {
    if !root_or_skip("entries_swapped_for_symlinks_during_the_walk_never_leak_their_targets") {
        return;
    }
    // A hostile session renames symlinks over files and dirs the walk has just
    // listed: whatever it reads must come from inside the upper dir.
    const MARKER: &[u8] = b"TOP-SECRET-OUTSIDE-THE-UPPER";
    const SLOTS: usize = 40;
    let dir = tempdir("swap");
    let secret_dir = dir.path().join("secret");
    mkdirs(&secret_dir);
    write(&secret_dir.join("secret.txt"), MARKER.repeat(100));
    write(&secret_dir.join("file"), MARKER.repeat(100));
    let upper = dir.path().join("upper");
    let stage = dir.path().join("stage");
    mkdirs(&upper);
    mkdirs(&stage);
    for i in 0..SLOTS {
        write(&upper.join(format!("f{i}")), "innocent\n");
        mkdirs(&upper.join(format!("d{i}")));
        write(&upper.join(format!("d{i}/file")), "innocent\n");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, upper, stage) = (Arc::clone(&stop), upper.clone(), stage.clone());
        let secret = secret_dir.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let i = n % SLOTS;
                let (f, d) = (upper.join(format!("f{i}")), upper.join(format!("d{i}")));
                let (tf, td) = (stage.join("f"), stage.join("d"));
                if n % 2 == 0 {
                    let _ = symlink(secret.join("secret.txt"), &tf);
                    let _ = fs::rename(&tf, &f);
                    let _ = fs::remove_dir_all(&d);
                    let _ = symlink(&secret, &td);
                    let _ = fs::rename(&td, &d);
                } else {
                    let _ = fs::write(&tf, "innocent\n");
                    let _ = fs::rename(&tf, &f);
                    let _ = fs::remove_file(&d);
                    let _ = fs::create_dir(&td);
                    let _ = fs::write(td.join("file"), "innocent\n");
                    let _ = fs::rename(&td, &d);
                }
                n += 1;
            }
        })
    };
    let mut failures = Vec::new();
    for run_no in 0..10 {
        let archive = dir.path().join(format!("img{run_no}.tar"));
        let o = OfflineCommit::new(&upper)
            .compression("none")
            .output(&archive)
            .run();
        if !o.success() {
            failures.push(format!("run {run_no}: commit failed:\n{o}"));
            continue;
        }
        let bytes = fs::read(&archive).unwrap();
        if bytes.windows(MARKER.len()).any(|w| w == MARKER) {
            failures.push(format!(
                "run {run_no}: content from outside the upper is in the archive"
            ));
        }
        let i = inspect(&archive);
        if !i.success() {
            failures.push(format!("run {run_no}: inspect failed:\n{i}"));
        }
        fs::remove_file(&archive).ok();
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper thread");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Output handling

#[test]
fn an_existing_output_is_refused_unless_forced() {
    if !root_or_skip("an_existing_output_is_refused_unless_forced") {
        return;
    }
    let dir = tempdir("exists");
    let upper = dir.path().join("upper");
    let out = dir.path().join("out");
    mkdirs(&upper);
    mkdirs(&out);
    write(&upper.join("f"), "f\n");
    let archive = out.join("img.tar");
    write(&archive, "precious");
    let o = OfflineCommit::new(&upper).output(&archive).run().failed();
    assert!(
        o.stderr.contains(archive.to_str().unwrap()),
        "error does not name the output:\n{o}"
    );
    assert_eq!(
        fs::read_to_string(&archive).unwrap(),
        "precious",
        "existing output was touched"
    );
    assert_eq!(dir_names(&out), ["img.tar"], "something else was written");
    OfflineCommit::new(&upper).force().output(&archive).commit();
    inspect(&archive).ok();
    assert_eq!(dir_names(&out), ["img.tar", "img.tar.sha256"]);
    run(std::process::Command::new("sha256sum")
        .args(["-c", "img.tar.sha256"])
        .current_dir(&out))
    .ok();
}

#[test]
fn a_full_destination_fails_naming_the_path_and_leaves_nothing() {
    if !root_or_skip("a_full_destination_fails_naming_the_path_and_leaves_nothing") {
        return;
    }
    let dir = tempdir("enospc");
    let upper = dir.path().join("upper");
    mkdirs(&upper);
    write_random(&upper.join("big.bin"), 10 << 20);
    let small = Tmpfs::mount("2m");
    let archive = small.path.join("img.tar");
    let o = OfflineCommit::new(&upper)
        .compression("none")
        .output(&archive)
        .run()
        .failed();
    assert!(
        o.stderr.contains(small.path.to_str().unwrap()),
        "error does not name the destination:\n{o}"
    );
    assert!(
        o.stderr.to_lowercase().contains("no space"),
        "error does not say the disk is full:\n{o}"
    );
    assert_eq!(
        dir_names(&small.path),
        Vec::<String>::new(),
        "files left in the full destination"
    );
}

/// Whether process `pid` has a file open in `dir`: an archive being written
/// there, named or not (an `O_TMPFILE` shows as `DIR/#INODE (deleted)`).
fn writes_in(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target.starts_with(dir))
}

#[test]
fn sigint_cancels_a_commit_with_exit_130_and_leaves_no_files() {
    if !root_or_skip("sigint_cancels_a_commit_with_exit_130_and_leaves_no_files") {
        return;
    }
    let dir = tempdir("sigint");
    let upper = dir.path().join("upper");
    let out = dir.path().join("out");
    mkdirs(&upper);
    mkdirs(&out);
    for i in 0..4 {
        write_random(&upper.join(format!("big{i}")), 16 << 20);
    }
    let archive = out.join("img.tar");
    let mut child = OfflineCommit::new(&upper)
        .compression("gzip")
        .level("9")
        .threads("1")
        .output(&archive)
        .cmd()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn freezeframe");
    // Wait until the commit is writing its (unnamed) archive in the output
    // directory, then interrupt.
    let t0 = Instant::now();
    while !writes_in(child.id(), &out) && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the commit finished before it could be interrupted"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("kill -INT");
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t1.elapsed() > Duration::from_secs(30) {
            child.kill().ok();
            child.wait().ok();
            panic!("freezeframe still running 30 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "exit status after SIGINT: {status}; stderr:\n{stderr}"
    );
    assert_eq!(
        dir_names(&out),
        Vec::<String>::new(),
        "files left after SIGINT"
    );
}

#[test]
fn peak_memory_stays_below_64_mib_for_a_layer_larger_than_that() {
    if !root_or_skip("peak_memory_stays_below_64_mib_for_a_layer_larger_than_that") {
        return;
    }
    // One pass, no copy of the layer in memory: a 72 MiB incompressible layer
    // must not need 64 MiB of RSS (GNU time's %M is the peak RSS in KiB).
    let dir = tempdir("rss");
    let upper = dir.path().join("upper");
    mkdirs(&upper);
    write_random(&upper.join("big.bin"), 72 << 20);
    let archive = dir.path().join("img.tar");
    let mut time = std::process::Command::new("/usr/bin/time");
    time.args(["-f", "maxrss_kib=%M", "--"]);
    let o = OfflineCommit::new(&upper)
        .threads("2")
        .output(&archive)
        .run_under(&mut time)
        .ok();
    let kib: u64 = o
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss from GNU time:\n{o}"));
    assert!(
        kib < 64 * 1024,
        "peak RSS {kib} KiB for a 72 MiB layer (limit 64 MiB)"
    );
}

#[test]
fn a_tree_2000_dirs_deep_commits_and_verifies() {
    if !root_or_skip("a_tree_2000_dirs_deep_commits_and_verifies") {
        return;
    }
    const DEPTH: usize = 2000;
    let dir = tempdir("deep");
    let upper = dir.path().join("upper");
    mkdirs(&upper);
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut d = Dir::open(&upper, flags, Mode::empty()).unwrap();
    for _ in 0..DEPTH {
        mkdirat(Some(d.as_raw_fd()), "d", Mode::from_bits_truncate(0o755)).unwrap();
        d = Dir::openat(Some(d.as_raw_fd()), "d", flags, Mode::empty()).unwrap();
    }
    fs::write(format!("/proc/self/fd/{}/leaf", d.as_raw_fd()), "bottom\n").unwrap();
    drop(d);
    let archive = dir.path().join("img.tar");
    // With 512 descriptors a walk holding one per level cannot reach the bottom.
    let mut prlimit = std::process::Command::new("prlimit");
    prlimit.args(["--nofile=512:512", "--"]);
    let report = OfflineCommit::new(&upper)
        .json()
        .output(&archive)
        .run_under(&mut prlimit)
        .ok()
        .json();
    inspect(&archive).ok();
    assert_eq!(
        report["walk"]["dirs"].as_u64(),
        Some(DEPTH as u64),
        "{}",
        report["walk"]
    );
    let entries = top_layer_entries(&archive, &report, &dir.path().join("x"));
    let leaf = format!("{}leaf", "d/".repeat(DEPTH));
    let e = entry(&entries, &leaf).expect("the leaf at depth 2000 is missing");
    assert_eq!(e.sha256, hex::encode(Sha256::digest(b"bottom\n")));
    assert_eq!(entries.len(), DEPTH + 1);
}

#[test]
fn demo_runs_and_exits_zero() {
    if !root_or_skip("demo_runs_and_exits_zero") {
        return;
    }
    freezeframe(["demo"]).ok();
}
