//! The walk's events, seen through the layer's encoding of them.

use super::*;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::sys::stat::{Mode, SFlag};

use crate::layer::event_header;
use crate::tar::Kind;

/// Records entries as `path kind` lines plus file contents.
#[derive(Default)]
struct Collect {
    lines: Vec<String>,
    data: BTreeMap<String, Vec<u8>>,
    max_fds: usize,
}

impl Visitor for Collect {
    fn event(&mut self, e: &Event<'_>, data: Option<&mut Data<'_>>) -> Result<u64> {
        let h = &*event_header(e);
        let path = String::from_utf8_lossy(&h.path).into_owned();
        let kind = match &h.kind {
            Kind::File { .. } => "file".to_string(),
            Kind::Dir => "dir".into(),
            Kind::Symlink { target } => format!("symlink->{}", String::from_utf8_lossy(target)),
            Kind::HardLink { target } => format!("link->{}", String::from_utf8_lossy(target)),
            Kind::Char { major, minor } => format!("char {major}:{minor}"),
            Kind::Block { .. } => "block".into(),
            Kind::Fifo => "fifo".into(),
        };
        self.lines.push(format!("{path} {kind}"));
        self.max_fds = self
            .max_fds
            .max(fs::read_dir("/proc/self/fd").unwrap().count());
        match data {
            Some(f) => {
                let mut buf = Vec::new();
                (&mut *f.file)
                    .take(h.data_size())
                    .read_to_end(&mut buf)
                    .unwrap();
                let n = buf.len() as u64;
                self.data.insert(path, buf);
                Ok(n)
            }
            None => Ok(0),
        }
    }
}

fn run(spec: &TreeSpec) -> (Collect, WalkReport) {
    let mut c = Collect::default();
    let r = walk(spec, &mut c, &Progress::default(), &AtomicBool::new(false)).unwrap();
    (c, r)
}

fn upper(dir: &Path) -> TreeSpec {
    TreeSpec {
        upper: Some(dir.to_path_buf()),
        ..TreeSpec::default()
    }
}

#[test]
fn entries_come_sorted_with_links_and_sockets_left_out() {
    let t = tempfile::tempdir().unwrap();
    let u = t.path();
    fs::create_dir_all(u.join("b/sub")).unwrap();
    fs::write(u.join("b/sub/f"), b"hello").unwrap();
    fs::write(u.join("a"), b"x").unwrap();
    fs::hard_link(u.join("a"), u.join("c")).unwrap();
    symlink("/etc", u.join("b/etc")).unwrap();
    nix::unistd::mkfifo(&u.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(u.join("sock")).unwrap();
    let (c, r) = run(&upper(u));
    assert_eq!(
        c.lines,
        vec![
            "a file",
            "b dir",
            "b/etc symlink->/etc",
            "b/sub dir",
            "b/sub/f file",
            "c link->a",
            "fifo fifo",
        ]
    );
    assert_eq!(c.data["b/sub/f"], b"hello");
    assert_eq!(r.skipped_counts.get(&SkipReason::Socket), Some(&1));
    assert_eq!(r.skipped[0].path, "/sock");
    assert_eq!((r.files, r.hardlinks, r.symlinks, r.fifos), (2, 1, 1, 1));
}

#[test]
fn symlinks_are_never_followed_even_when_swapped_in() {
    let t = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"do not copy").unwrap();
    symlink(outside.path(), t.path().join("dir")).unwrap();
    symlink(outside.path().join("secret"), t.path().join("file")).unwrap();
    let (c, _) = run(&upper(t.path()));
    assert_eq!(c.lines.len(), 2);
    assert!(c.data.is_empty());
    assert!(c.lines.iter().all(|l| l.contains("symlink->")));
}

#[test]
fn excludes_match_container_paths_and_prune_directories() {
    let t = tempfile::tempdir().unwrap();
    let u = t.path();
    fs::create_dir_all(u.join("home/work/data/deep")).unwrap();
    fs::write(u.join("home/work/data/deep/x"), b"").unwrap();
    fs::write(u.join("home/work/a.pyc"), b"").unwrap();
    fs::write(u.join("home/work/keep.py"), b"").unwrap();
    let mut spec = upper(u);
    spec.exclude = Exclude::new(&["/home/work/data", "*.pyc"]).unwrap();
    let (c, r) = run(&spec);
    assert_eq!(
        c.lines,
        vec!["home dir", "home/work dir", "home/work/keep.py file"]
    );
    assert_eq!(r.excluded, 2);
}

#[test]
fn a_bad_pattern_is_named() {
    let err = Exclude::new(&["/a/[b"]).unwrap_err().to_string();
    assert!(err.contains("/a/[b"), "{err}");
}

#[test]
fn the_home_is_grafted_over_whatever_the_upper_has_there() {
    let t = tempfile::tempdir().unwrap();
    let (u, home, lower) = (t.path().join("u"), t.path().join("h"), t.path().join("l"));
    fs::create_dir_all(u.join("etc")).unwrap();
    fs::write(u.join("etc/motd"), b"hi").unwrap();
    fs::create_dir_all(home.join("proj")).unwrap();
    fs::write(home.join("proj/train.py"), b"print()").unwrap();
    fs::create_dir_all(lower.join("home")).unwrap();
    fs::set_permissions(lower.join("home"), fs::Permissions::from_mode(0o711)).unwrap();
    let spec = TreeSpec {
        upper: Some(u.clone()),
        lowers: vec![lower.clone()],
        grafts: vec![Graft {
            at: "/home/work".into(),
            source: home.clone(),
        }],
        ..TreeSpec::default()
    };
    let (c, _) = run(&spec);
    assert_eq!(
        c.lines,
        vec![
            "etc dir",
            "etc/motd file",
            "home dir",
            "home/work dir",
            // The mount hides what the image has at the home path.
            "home/work/.wh..wh..opq file",
            "home/work/proj dir",
            "home/work/proj/train.py file"
        ]
    );
    // Now the upper has a placeholder with content at the mount point.
    fs::create_dir_all(u.join("home/work/stale")).unwrap();
    let (c2, _) = run(&spec);
    assert_eq!(c.lines, c2.lines);
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn deep_trees_keep_few_descriptors_open() {
    let t = tempfile::tempdir().unwrap();
    let depth = MAX_OPEN_DIRS * 2 + 10;
    // Built fd-relative: the path of the deepest levels is longer than PATH_MAX.
    let mut fd = crate::fs::open::open_root(t.path()).unwrap();
    for i in 0..depth {
        rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        let f = rustix::fs::openat(
            &fd,
            "f",
            rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        File::from(f).write_all(i.to_string().as_bytes()).unwrap();
        fd = crate::fs::open::open_dir_at(std::os::fd::AsFd::as_fd(&fd), c"d").unwrap();
    }
    drop(fd);
    let (c, r) = run(&upper(t.path()));
    assert_eq!(r.dirs as usize, depth);
    assert_eq!(r.files as usize, depth);
    // Files come before the subdirectory at every level ("d" < "f" sorts the
    // other way, so the file of each level comes after its whole subtree).
    assert!(c.lines.last().unwrap().ends_with("/f file") || c.lines.last().unwrap() == "f file");
    assert_eq!(c.data["f"], b"0");
    assert!(c.max_fds < MAX_OPEN_DIRS + 64, "{} fds open", c.max_fds);
}

#[test]
fn reserved_whiteout_names_are_skipped() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join(".wh.bashrc"), b"").unwrap();
    let (c, r) = run(&upper(t.path()));
    assert!(c.lines.is_empty());
    assert_eq!(r.skipped_counts.get(&SkipReason::ReservedName), Some(&1));
}

#[test]
fn overlay_whiteouts_and_opaque_dirs_become_oci_ones() {
    if !freezeframe_tests::root_or_skip("overlay_whiteouts_and_opaque_dirs_become_oci_ones") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let u = t.path();
    nix::sys::stat::mknod(
        &u.join("gone"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    fs::create_dir(u.join("opq")).unwrap();
    xattr::set(u.join("opq"), "trusted.overlay.opaque", b"y").unwrap();
    fs::write(u.join("opq/new"), b"n").unwrap();
    fs::write(u.join("xwh"), b"").unwrap();
    xattr::set(u.join("xwh"), "trusted.overlay.whiteout", b"").unwrap();
    // user.overlay.* means nothing on a trusted-xattr overlay and is not kept.
    fs::create_dir(u.join("fake")).unwrap();
    xattr::set(u.join("fake"), "user.overlay.opaque", b"y").unwrap();
    let (c, r) = run(&upper(u));
    assert_eq!(
        c.lines,
        vec![
            "fake dir",
            ".wh.gone file",
            "opq dir",
            "opq/.wh..wh..opq file",
            "opq/new file",
            ".wh.xwh file"
        ]
    );
    assert_eq!((r.whiteouts, r.opaque_dirs), (2, 1));
    // The same device in the home is not a whiteout there.
    let home = tempfile::tempdir().unwrap();
    nix::sys::stat::mknod(
        &home.path().join("dev0"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    let spec = TreeSpec {
        grafts: vec![Graft {
            at: "/home/work".into(),
            source: home.path().into(),
        }],
        ..TreeSpec::default()
    };
    let (c, r) = run(&spec);
    assert_eq!(
        c.lines,
        vec!["home dir", "home/work dir", "home/work/.wh..wh..opq file"]
    );
    assert_eq!(r.skipped_counts.get(&SkipReason::WhiteoutDevice), Some(&1));
}

#[test]
fn redirected_dirs_are_refused_and_metacopy_reads_the_lower() {
    if !freezeframe_tests::root_or_skip("redirected_dirs_are_refused_and_metacopy_reads_the_lower")
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (u, l) = (t.path().join("u"), t.path().join("l"));
    fs::create_dir_all(u.join("moved")).unwrap();
    fs::create_dir_all(&l).unwrap();
    xattr::set(u.join("moved"), "trusted.overlay.redirect", b"/orig").unwrap();
    let mut c = Collect::default();
    let err = walk(
        &upper(&u),
        &mut c,
        &Progress::default(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("moved") && msg.contains("redirect_dir"),
        "{msg}"
    );

    fs::remove_dir(u.join("moved")).unwrap();
    fs::write(l.join("big"), b"lower data").unwrap();
    fs::write(u.join("big"), b"").unwrap();
    nix::unistd::truncate(&u.join("big"), 10).unwrap();
    xattr::set(u.join("big"), "trusted.overlay.metacopy", b"").unwrap();
    let err = walk(
        &upper(&u),
        &mut c,
        &Progress::default(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        matches!(&err, crate::Error::MetacopyWithoutLowers { path } if path.ends_with("big")),
        "{err}"
    );
    assert!(err.to_string().contains("metacopy=on"), "{err}");
    assert!(!err.to_string().contains("--"), "{err}");
    let mut spec = upper(&u);
    spec.lowers = vec![l];
    let (c, _) = run(&spec);
    assert_eq!(c.data["big"], b"lower data");
}

fn delta_lines(spec: &TreeSpec, base: &Baseline) -> Vec<String> {
    let mut c = Collect::default();
    walk_pass(
        spec,
        &mut c,
        &Progress::default(),
        &AtomicBool::new(false),
        Pass::Delta(base),
    )
    .unwrap();
    c.lines
}

fn recorded(spec: &TreeSpec) -> Baseline {
    // Entries older than the racy margin count as settled.
    std::thread::sleep(std::time::Duration::from_millis(120));
    let mut b = Baseline::new();
    let mut c = Collect::default();
    walk_pass(
        spec,
        &mut c,
        &Progress::default(),
        &AtomicBool::new(false),
        Pass::Record(&mut b),
    )
    .unwrap();
    b.seal();
    b
}

#[test]
fn a_delta_pass_over_an_unchanged_tree_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("a/b")).unwrap();
    fs::write(t.path().join("a/b/f"), b"1").unwrap();
    fs::write(home.path().join("h"), b"1").unwrap();
    let spec = TreeSpec {
        upper: Some(t.path().into()),
        grafts: vec![Graft {
            at: "/home/work".into(),
            source: home.path().into(),
        }],
        ..TreeSpec::default()
    };
    let b = recorded(&spec);
    assert_eq!(b.len(), 5, "a, a/b, a/b/f, home/work, home/work/h");
    assert!(delta_lines(&spec, &b).is_empty());
}

#[test]
fn a_delta_pass_writes_what_changed_and_whiteouts_for_what_went() {
    let t = tempfile::tempdir().unwrap();
    let u = t.path();
    for d in ["keep", "gone", "swap", "redo"] {
        fs::create_dir_all(u.join(d)).unwrap();
    }
    fs::write(u.join("keep/same"), b"s").unwrap();
    fs::write(u.join("keep/edit"), b"old").unwrap();
    fs::write(u.join("keep/rm"), b"x").unwrap();
    fs::write(u.join("gone/x"), b"x").unwrap();
    fs::write(u.join("swap/x"), b"x").unwrap();
    fs::write(u.join("redo/old"), b"x").unwrap();
    fs::write(u.join("mode"), b"m").unwrap();
    let spec = upper(u);
    let b = recorded(&spec);

    fs::write(u.join("keep/edit"), b"new!").unwrap();
    fs::remove_file(u.join("keep/rm")).unwrap();
    fs::write(u.join("keep/add"), b"a").unwrap();
    fs::remove_dir_all(u.join("gone")).unwrap();
    fs::remove_dir_all(u.join("swap")).unwrap();
    fs::write(u.join("swap"), b"now a file").unwrap();
    // The old `redo` is moved out of the tree rather than deleted, so that the
    // new one cannot get its inode number back (ext4 reuses a freed inode at
    // once), which would make it the same directory to the delta pass.
    let aside = tempfile::tempdir_in(t.path().parent().unwrap()).unwrap();
    fs::rename(u.join("redo"), aside.path().join("redo")).unwrap();
    fs::create_dir(u.join("redo")).unwrap();
    fs::write(u.join("redo/new"), b"n").unwrap();
    fs::set_permissions(u.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();

    let mut c = Collect::default();
    walk_pass(
        &spec,
        &mut c,
        &Progress::default(),
        &AtomicBool::new(false),
        Pass::Delta(&b),
    )
    .unwrap();
    assert_eq!(
        c.lines,
        vec![
            ".wh.gone file",
            "keep dir",
            "keep/add file",
            "keep/edit file",
            "keep/.wh.rm file",
            "mode file",
            ".wh.redo file",
            "redo dir",
            "redo/new file",
            ".wh.swap file",
            "swap file",
        ]
    );
    assert_eq!(c.data["keep/edit"], b"new!");
}

#[test]
fn a_journaled_delta_lists_a_directory_made_again_in_place_of_a_watched_one() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let u = t.path().join("u");
    fs::create_dir_all(u.join("redo/sub")).unwrap();
    fs::write(u.join("redo/old"), b"x").unwrap();
    fs::write(u.join("redo/keep"), b"1").unwrap();
    fs::write(u.join("redo/sub/deep"), b"1").unwrap();
    let spec = upper(&u);
    std::thread::sleep(std::time::Duration::from_millis(120));
    let mut b = Baseline::new();
    b.attach_journal(crate::journal::Journal::start(t.path()).unwrap());
    walk_pass(
        &spec,
        &mut Collect::default(),
        &Progress::default(),
        &AtomicBool::new(false),
        Pass::Record(&mut b),
    )
    .unwrap();

    // Deleted and made again, as `rm -rf; mkdir` does: ext4 hands the freed
    // inode numbers straight back, so the new directories are, by number,
    // the old ones, and no watch is on them.
    let ino = fs::metadata(u.join("redo")).unwrap().ino();
    fs::remove_dir_all(u.join("redo")).unwrap();
    fs::create_dir_all(u.join("redo/sub")).unwrap();
    fs::write(u.join("redo/new"), b"n").unwrap();
    fs::write(u.join("redo/keep"), b"2").unwrap();
    fs::write(u.join("redo/sub/deep"), b"2").unwrap();
    fs::write(u.join("redo/sub/added"), b"a").unwrap();
    let reused = fs::metadata(u.join("redo")).unwrap().ino() == ino;
    eprintln!("inode number reused: {reused}");

    let read = b.restrict_to_journal().expect("a complete journal").len();
    assert!(read > 0);
    let lines = delta_lines(&spec, &b);
    for want in [
        "redo/new file",
        "redo/keep file",
        "redo/sub/deep file",
        "redo/sub/added file",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "{want} missing from {lines:?}"
        );
    }
    let old_gone = lines
        .iter()
        .any(|l| l == "redo/.wh.old file" || l == ".wh.redo file");
    assert!(old_gone, "redo/old is not said to be gone: {lines:?}");
}

#[test]
fn metacopy_redirects_out_of_the_lower_dirs_are_refused_and_say_nothing_of_outside() {
    // As a user can on a `userxattr` overlay: a metacopy file whose redirect
    // climbs out of the lower dir to a file beside it.
    let t = tempfile::tempdir().unwrap();
    let (u, l, outside) = (t.path().join("u"), t.path().join("l"), t.path().join("o"));
    fs::create_dir_all(u.join("home")).unwrap();
    fs::create_dir_all(l.join("home")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let secret = vec![b's'; 40961];
    fs::write(outside.join("shadow"), &secret).unwrap();
    let mut spec = upper(&u);
    spec.lowers = vec![l.clone()];
    spec.overlay_xattrs = OverlayXattrs::User;
    let f = u.join("home/f");
    fs::write(&f, b"").unwrap();
    xattr::set(&f, "user.overlay.metacopy", b"").unwrap();
    let walk_err = |spec: &TreeSpec| {
        let mut c = Collect::default();
        let r = walk(spec, &mut c, &Progress::default(), &AtomicBool::new(false));
        assert!(
            !c.data.values().any(|d| *d == secret),
            "the secret was read"
        );
        r.unwrap_err().to_string()
    };
    for (redirect, size) in [
        (&b"../../o/shadow"[..], secret.len() as u64),
        (b"/../o/shadow", secret.len() as u64),
        (b"/home/../../o/shadow", 1),
        (b"..", 1),
        (b"/home/./f", 1),
        (b"/etc/sha\0dow", 1),
        (b"sha\0dow", 1),
    ] {
        nix::unistd::truncate(&f, size as i64).unwrap();
        xattr::set(&f, "user.overlay.redirect", redirect).unwrap();
        let msg = walk_err(&spec);
        let shown = String::from_utf8_lossy(redirect);
        assert!(
            msg.contains("home/f")
                && msg.contains("user.overlay.redirect")
                && msg.contains("beneath the lower dirs"),
            "{shown}: {msg}"
        );
        assert!(!msg.contains("40961"), "{shown}: {msg}");
    }

    // Inside the lower dir, a size that does not match names no other size.
    fs::write(l.join("home/data"), vec![b'x'; 54321]).unwrap();
    nix::unistd::truncate(&f, 7).unwrap();
    xattr::set(&f, "user.overlay.redirect", b"data").unwrap();
    let msg = walk_err(&spec);
    assert!(
        msg.contains("has size 7") && !msg.contains("54321"),
        "{msg}"
    );
    nix::unistd::truncate(&f, 54321).unwrap();
    let (c, _) = run(&spec);
    assert_eq!(c.data["home/f"], vec![b'x'; 54321]);
}

#[test]
fn opened_roots_are_read_in_every_pass_whatever_their_paths_name_later() {
    let t = tempfile::tempdir().unwrap();
    let (u, h) = (t.path().join("upper"), t.path().join("home"));
    fs::create_dir_all(&u).unwrap();
    fs::create_dir_all(&h).unwrap();
    fs::write(u.join("mine"), b"1").unwrap();
    fs::write(h.join("rc"), b"2").unwrap();
    let mut spec = TreeSpec {
        upper: Some(u.clone()),
        grafts: vec![Graft {
            at: "/home/work".into(),
            source: h.clone(),
        }],
        ..TreeSpec::default()
    };
    spec.open_roots().unwrap();
    let first = run(&spec).0.lines;
    assert!(first.contains(&"mine file".to_string()), "{first:?}");

    // Both paths now name other directories, with content of their own.
    fs::rename(&u, t.path().join("upper.old")).unwrap();
    fs::rename(&h, t.path().join("home.old")).unwrap();
    fs::create_dir_all(&u).unwrap();
    fs::create_dir_all(&h).unwrap();
    fs::write(u.join("planted"), b"x").unwrap();
    fs::write(h.join("planted"), b"x").unwrap();
    let second = run(&spec).0.lines;
    assert_eq!(first, second);

    // Without opened roots, each pass looks the paths up again.
    spec.roots = OpenRoots::default();
    let by_path = run(&spec).0.lines;
    assert!(by_path.contains(&"planted file".to_string()), "{by_path:?}");
}

#[test]
fn limits_stop_the_walk_naming_the_file_or_the_layer() {
    let t = tempfile::tempdir().unwrap();
    let u = t.path();
    fs::create_dir_all(u.join("d")).unwrap();
    fs::write(u.join("a"), vec![1u8; 3000]).unwrap();
    fs::write(u.join("d/big"), vec![2u8; 5000]).unwrap();
    let walk_with = |limits: Limits| {
        let spec = TreeSpec { limits, ..upper(u) };
        let mut c = Collect::default();
        walk(&spec, &mut c, &Progress::default(), &AtomicBool::new(false)).map(|_| c)
    };
    let e = walk_with(Limits {
        max_file_size: Some(4096),
        max_layer_size: None,
    })
    .err()
    .unwrap();
    assert!(
        matches!(&e, crate::Error::FileTooLarge { path, size: 5000, limit: 4096 } if path == Path::new("/d/big")),
        "{e}"
    );
    assert!(e.to_string().contains("/d/big"), "{e}");
    let e = walk_with(Limits {
        max_file_size: None,
        max_layer_size: Some(6000),
    })
    .err()
    .unwrap();
    assert!(
        matches!(&e, crate::Error::LayerLimit { path, size: 8000, limit: 6000 } if path == Path::new("/d/big")),
        "{e}"
    );
    // At the limits exactly: all of it.
    let c = walk_with(Limits {
        max_file_size: Some(5000),
        max_layer_size: Some(8000),
    })
    .unwrap();
    assert_eq!(c.data.len(), 2);
}

/// A writer that asks for a cancel once it has taken `after` bytes.
struct CancelAfter<'a> {
    taken: u64,
    after: u64,
    cancel: &'a AtomicBool,
}

impl Write for CancelAfter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.taken += buf.len() as u64;
        if self.taken >= self.after {
            self.cancel
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn cancel_and_progress_work_inside_a_large_file() {
    const SIZE: u64 = 64 << 20;
    let t = tempfile::tempdir().unwrap();
    let mut f = fs::File::create(t.path().join("big")).unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..SIZE >> 20 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let cancel = AtomicBool::new(false);
    let progress = Progress::default();
    let out = CancelAfter {
        taken: 0,
        after: 8 << 20,
        cancel: &cancel,
    };
    let mut v = crate::layer::TarVisitor::new(out, Path::new("out"));
    let e = walk(&upper(t.path()), &mut v, &progress, &cancel).unwrap_err();
    assert!(matches!(e, crate::Error::Cancelled), "{e}");
    let read = progress
        .bytes_read
        .load(std::sync::atomic::Ordering::Relaxed);
    // Counted as it went, and stopped a chunk or two after the cancel.
    assert!((8 << 20..=16 << 20).contains(&read), "{read}");
}

#[test]
fn remembered_hard_link_paths_are_bounded() {
    use rustix::fs::{linkat, mkdirat, openat, AtFlags, Mode as RMode, OFlags};
    // 64 KiB of paths in tests (16 MiB otherwise): 30 levels pass it.
    const LEVELS: usize = 30;
    let t = tempfile::tempdir().unwrap();
    let name = "n".repeat(255);
    let mut dir = crate::fs::open::open_root(t.path()).unwrap();
    for _ in 0..LEVELS {
        drop(
            openat(
                &dir,
                "a",
                OFlags::CREATE | OFlags::WRONLY,
                RMode::from_raw_mode(0o644),
            )
            .unwrap(),
        );
        linkat(&dir, "a", &dir, "b", AtFlags::empty()).unwrap();
        mkdirat(&dir, name.as_str(), RMode::from_raw_mode(0o755)).unwrap();
        dir = openat(
            &dir,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            RMode::empty(),
        )
        .unwrap();
    }
    let (c, r) = run(&upper(t.path()));
    let links = c.lines.iter().filter(|l| l.contains(" link->")).count();
    // The paths of the first ~22 `a`s fill the budget; below, each `b` is
    // written as a file of its own.
    assert!(links > 15 && links < LEVELS, "{links} links");
    assert_eq!(r.files as usize + links, 2 * LEVELS);
    let last_b = c.lines.iter().rfind(|l| l.contains("/b ")).unwrap();
    assert!(
        last_b.ends_with("/b file"),
        "{}",
        &last_b[last_b.len() - 40..]
    );
}

#[test]
fn a_deep_skipped_path_is_listed_shortened() {
    use rustix::fs::{mkdirat, openat, Mode as RMode, OFlags};
    let t = tempfile::tempdir().unwrap();
    let name = "d".repeat(255);
    let mut dir = crate::fs::open::open_root(t.path()).unwrap();
    for _ in 0..20 {
        mkdirat(&dir, name.as_str(), RMode::from_raw_mode(0o755)).unwrap();
        dir = openat(
            &dir,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            RMode::empty(),
        )
        .unwrap();
    }
    drop(
        openat(
            &dir,
            ".wh.bashrc",
            OFlags::CREATE | OFlags::WRONLY,
            RMode::from_raw_mode(0o644),
        )
        .unwrap(),
    );
    let (_, r) = run(&upper(t.path()));
    let listed = &r.skipped[0].path;
    assert_eq!(listed.len(), 4096 + 3);
    assert!(
        listed.starts_with("/ddd") && listed.contains("...") && listed.ends_with("/.wh.bashrc")
    );
}
