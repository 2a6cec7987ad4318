//! Committing *running* containers, as root, with real runtimes: runc bundles on a
//! real overlay mount with a scratch home and vfolders, podman (`--runtime runc`)
//! and a private containerd (`ctr run`). Changes are made inside the containers,
//! `freezeframe commit SESSION` runs while a process keeps writing, and umoci
//! unpacks what it wrote. Every test checks that the session runs, thawed,
//! afterwards, failure tests included.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freezeframe_tests::containers::*;
use freezeframe_tests::*;
use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------
// Building blocks

/// `first` followed by `rest`.
fn cat(first: Vec<OsString>, rest: Vec<OsString>) -> Vec<OsString> {
    first.into_iter().chain(rest).collect()
}

/// The base image's own content, on top of busybox.
fn populate_base(r: &Path) {
    for d in ["opt/app/sub", "var/cache/old/inner", "usr/bin", "srv"] {
        mkdirs(&r.join(d));
    }
    write(&r.join("etc/motd"), "welcome\n");
    write(&r.join("etc/app.conf"), "a=1\n");
    write(&r.join("etc/keep"), "kept\n");
    write(&r.join("opt/app/a"), "old a\n");
    write(&r.join("opt/app/b"), "old b\n");
    write(&r.join("opt/app/sub/c"), "old c\n");
    write(&r.join("var/cache/old/x"), "cached\n");
    write(&r.join("var/cache/old/inner/y"), "cached\n");
    write(&r.join("usr/bin/tool"), "#!/bin/sh\necho tool\n");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(r.join("usr/bin/tool"), fs::Permissions::from_mode(0o755))
        .expect("chmod tool");
}

/// Everything a user does in a session, made inside the container by `sh`.
const CHANGES: &str = r#"set -e
echo 'brand new' > /etc/new.conf
echo 'b=2' >> /etc/app.conf
rm /etc/motd
rm -r /var/cache/old
rm -r /opt/app
mkdir -p /opt/app/sub
echo fresh > /opt/app/fresh
echo 'new c' > /opt/app/sub/c
chmod 4755 /usr/bin/tool
echo s3cret > /etc/secret
chmod 600 /etc/secret
mkdir -p /srv/links
echo one > /srv/one
ln /srv/one /srv/two
echo across > /srv/links/x
ln /srv/links/x /etc/x-link
ln /etc/keep /srv/keep-link
ln -s /etc/passwd /srv/abs
ln -s does/not/exist /srv/dangling
mkdir -p /home/work/notes
echo 'freeze the session' > /home/work/notes/todo.txt
ln /home/work/notes/todo.txt /home/work/notes/todo-link
ln -s notes/todo.txt /home/work/todo
chown -R 1000:1000 /home/work/notes
chmod 700 /home/work/notes
head -c 4000000 /dev/urandom > /home/work/blob.bin
mkdir -p /home/work/.local/share
echo 'vfolder token' > /home/work/.local/share/token
echo 'dataset' > /home/work/data/set.csv
"#;

/// Paths [`WRITER`] keeps changing after the commit: compared on their own.
const WRITER_FILES: [&str; 2] = ["/var/log/counter", "/home/work/writer.log"];

/// Runtime mount points of a [`RuncSession`] the base image has no file for: the
/// runtime made placeholders for them in the upper dir.
const PLACEHOLDERS: [&str; 2] = ["/etc/resolv.conf", "/etc/hostname"];

/// The mounts `excluded_mounts` lists for a [`RuncSession`] (nested ones such as
/// `/dev/pts` and `/sys/fs/cgroup` are implied by their parents).
const RUNC_EXCLUDED: [&str; 8] = [
    "/dev",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/home/work/.local",
    "/home/work/data",
    "/proc",
    "/sys",
];

/// A running runc session with [`WRITER`] as its init and [`CHANGES`] made.
fn changed_session(name: &str, opts: RuncOptions) -> RuncSession {
    let s = RuncSession::start(name, populate_base, opts);
    s.exec(CHANGES);
    s.assert_writer_advances("before the commit");
    s
}

/// `excluded_mounts[].target`, as a set.
fn excluded_targets(report: &Value) -> BTreeSet<String> {
    report["excluded_mounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no excluded_mounts in {report}"))
        .iter()
        .map(|m| m["target"].as_str().expect("target").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn frozen_ms(report: &Value) -> u64 {
    report["frozen_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no frozen_ms in the report: {report}"))
}

/// The entries of the layers this commit added: the last `frozen.layers_added`
/// (two for a live commit, one otherwise).
fn new_layer_entries(archive: &Path, report: &Value, scratch: &Path) -> Vec<LayerEntry> {
    let layout = extract_archive(archive, scratch);
    let layers = report["layers"].as_array().expect("layers");
    let added = report["frozen"]["layers_added"].as_u64().unwrap_or(1) as usize;
    assert!(
        added >= 1 && added <= layers.len(),
        "layers_added {added} of {layers:?}"
    );
    layers[layers.len() - added..]
        .iter()
        .flat_map(|l| layer_entries(&blob_path(&layout, l["digest"].as_str().expect("digest"))))
        .collect()
}

/// Paths of layer entries at or under `prefix` (container path, `/etc/hosts`).
fn entries_under<'a>(entries: &'a [LayerEntry], prefix: &str) -> Vec<&'a LayerEntry> {
    let p = prefix.trim_start_matches('/').as_bytes();
    entries
        .iter()
        .filter(|e| {
            let path = e.path.strip_prefix(b"./").unwrap_or(&e.path);
            let path = path.strip_prefix(b"/").unwrap_or(path);
            path == p || (path.starts_with(p) && path.get(p.len()) == Some(&b'/'))
        })
        .collect()
}

/// What the image must hold: the merged rootfs (as the host sees it, so without
/// the container's mounts) with the home at /home/work; vfolders left out unless
/// included; the runtime's placeholder files left out; the writer's files apart.
fn expected_image(s: &RuncSession, include_local: bool) -> TreeSnapshot {
    let mut e = TreeSnapshot::capture(&s.rootfs).only_kept_xattrs();
    e.graft(
        "/home/work",
        TreeSnapshot::capture(&s.home).only_kept_xattrs(),
    );
    e.remove_subtree("/home/work/data");
    if include_local {
        e.graft(
            "/home/work/.local",
            TreeSnapshot::capture(&s.local).only_kept_xattrs(),
        );
    } else {
        e.remove_subtree("/home/work/.local");
    }
    for p in PLACEHOLDERS.iter().chain(&WRITER_FILES) {
        e.remove_subtree(p);
    }
    e
}

/// The unpacked image against [`expected_image`], the writer's files apart.
fn assert_image_is_the_session(s: &RuncSession, rootfs: &Path, include_local: bool) {
    let expected = expected_image(s, include_local);
    assert!(
        expected.nodes.len() > 300,
        "fixture too small: {} paths",
        expected.nodes.len()
    );
    let mut actual = TreeSnapshot::capture(rootfs);
    for p in WRITER_FILES {
        actual.remove_subtree(p);
    }
    assert_same_unpacked_tree(expected, &actual, "umoci-unpacked image vs the session");
}

/// The writer's files in the image are one consistent moment: the log holds
/// 1..=n, each line whole, and the counter (written just before each log line)
/// is n, n+1, or empty (caught between truncate and write).
fn assert_writer_files_consistent(rootfs: &Path) {
    let log = read(&rootfs.join("home/work/writer.log"));
    assert!(
        log.ends_with('\n'),
        "a torn last line in writer.log: {log:?}"
    );
    let lines: Vec<u64> = log
        .lines()
        .map(|l| {
            l.parse()
                .unwrap_or_else(|_| panic!("bad writer.log line {l:?}"))
        })
        .collect();
    let n = lines.len() as u64;
    assert!(n > 0, "writer.log is empty in the image");
    assert_eq!(
        lines,
        (1..=n).collect::<Vec<_>>(),
        "writer.log is not 1..=n"
    );
    let counter = read(&rootfs.join("var/log/counter"));
    let ok = [String::new(), format!("{n}\n"), format!("{}\n", n + 1)];
    assert!(
        ok.contains(&counter),
        "counter {counter:?} does not fit a log of {n} lines"
    );
}

/// Waits until no guardian process is left for `cgroup`.
fn assert_no_guardian_left(cgroup: &Path) {
    assert!(
        wait_until(Duration::from_secs(5), || guardians_of(cgroup).is_empty()),
        "guardian processes left for {}: {:?}",
        cgroup.display(),
        guardians_of(cgroup)
    );
}

// ---------------------------------------------------------------------------
// runc

#[test]
fn a_running_runc_session_commits_rootfs_changes_and_home_but_no_mounts() {
    if !root_or_skip("a_running_runc_session_commits_rootfs_changes_and_home_but_no_mounts") {
        return;
    }
    let s = changed_session("runc-main", RuncOptions::writer());
    let archive = s.out.join("session.tar");
    let before = counter_of(s.pid);
    let cg = s.cgroups.clone();
    let w = commit_watching(
        cat(
            s.target(),
            args!["--pause", "full", "--tag", "t", "-o", &archive],
        ),
        || cg.freezer_state() == "FROZEN",
    );
    let report = w.outcome.ok().json();
    assert!(
        w.probe_seen,
        "freezer.state never read FROZEN during the commit"
    );
    // On a loaded machine the commit may end before the writer's next line.
    assert!(
        wait_until(Duration::from_secs(5), || counter_of(s.pid) > before),
        "the writer was not writing"
    );
    s.assert_running_and_thawed("after the commit");
    s.assert_writer_advances("after the commit");
    assert_no_guardian_left(&s.cgroups.freezer);

    // The report.
    let ms = frozen_ms(&report);
    eprintln!(
        "runc session: frozen_ms = {ms}, elapsed_ms = {}",
        report["elapsed_ms"]
    );
    assert!(ms > 0, "frozen_ms is 0 for a full pause");
    let sess = &report["session"];
    assert_eq!(sess["id"], s.id.as_str());
    assert_eq!(sess["pid"], s.pid);
    assert_eq!(sess["state_file"], path_str(&s.state_file()));
    assert_eq!(sess["rootfs"]["upper"], path_str(s.upper.as_ref().unwrap()));
    assert_eq!(sess["rootfs"]["lowers"], serde_json::json!([s.base.rootfs]));
    assert_eq!(sess["home"]["target"], "/home/work");
    assert_eq!(sess["home"]["host_dir"], path_str(&s.home));
    assert_eq!(sess["included_mounts"], serde_json::json!([]));
    assert_eq!(sess["cgroup"], path_str(&s.cgroups.freezer));
    assert!(
        sess["base_source"]
            .as_str()
            .is_some_and(|b| b.contains("org.freezeframe.image")),
        "base not taken from the annotation: {}",
        sess["base_source"]
    );
    assert!(!report["base"].is_null(), "no base in the report");
    assert_eq!(excluded_targets(&report), set(&RUNC_EXCLUDED));
    let proc = report["excluded_mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["target"] == "/proc")
        .unwrap();
    assert_eq!(proc["fs_type"], "proc");
    assert_eq!(
        report["changed_while_read"],
        serde_json::json!([]),
        "files changed while frozen"
    );

    // The image, unpacked by umoci.
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    assert_image_is_the_session(&s, &rootfs, false);
    assert_writer_files_consistent(&rootfs);
    let r = &rootfs;
    assert_eq!(read(&r.join("etc/new.conf")), "brand new\n");
    assert_eq!(read(&r.join("etc/app.conf")), "a=1\nb=2\n");
    assert!(!r.join("etc/motd").exists(), "deleted file came back");
    assert!(!r.join("var/cache/old").exists(), "deleted dir came back");
    assert_eq!(dir_names(&r.join("opt/app")), ["fresh", "sub"]);
    assert_eq!(dir_names(&r.join("opt/app/sub")), ["c"]);
    assert_eq!(
        read(&r.join("home/work/notes/todo.txt")),
        "freeze the session\n"
    );
    assert_eq!(
        read(&r.join("etc/hosts")),
        BASE_HOSTS,
        "runtime /etc/hosts leaked"
    );
    for p in PLACEHOLDERS {
        assert!(
            fs::symlink_metadata(r.join(&p[1..])).is_err(),
            "runtime mount point {p} is in the image"
        );
    }
    for d in ["dev", "proc", "sys"] {
        assert_eq!(
            dir_names(&r.join(d)),
            Vec::<String>::new(),
            "/{d} has content"
        );
    }
    assert!(!r.join("home/work/data").exists(), "vfolder data committed");
    assert!(
        !r.join("home/work/.local").exists(),
        "vfolder .local committed"
    );
    let entries = new_layer_entries(&archive, &report, &s.scratch("layer"));
    for m in RUNC_EXCLUDED {
        let hits = entries_under(&entries, m);
        assert!(
            hits.is_empty(),
            "the layer has entries under mount {m}: {hits:?}"
        );
    }
}

#[test]
fn hardlinks_symlinks_modes_and_owners_made_in_the_container_survive() {
    if !root_or_skip("hardlinks_symlinks_modes_and_owners_made_in_the_container_survive") {
        return;
    }
    let s = changed_session("runc-meta", RuncOptions::writer());
    let archive = s.out.join("session.tar");
    commit(cat(s.target(), args!["--tag", "t", "-o", &archive]));
    s.assert_running_and_thawed("after the commit");
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    let t = TreeSnapshot::capture(&rootfs);
    let linked = |a: &str, b: &str| t.hardlinks_of(a.as_bytes()).contains(b.as_bytes());
    assert!(linked("/srv/one", "/srv/two"), "same-dir hardlink lost");
    assert!(
        linked("/srv/links/x", "/etc/x-link"),
        "cross-dir hardlink lost"
    );
    assert!(
        linked("/etc/keep", "/srv/keep-link"),
        "hardlink to a copied-up file lost"
    );
    assert!(
        linked("/home/work/notes/todo.txt", "/home/work/notes/todo-link"),
        "hardlink in the home lost"
    );
    let node = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} missing"));
    assert_eq!(
        node("/srv/abs").target.as_deref(),
        Some(&b"/etc/passwd"[..])
    );
    assert_eq!(
        node("/srv/dangling").target.as_deref(),
        Some(&b"does/not/exist"[..])
    );
    assert_eq!(
        node("/home/work/todo").target.as_deref(),
        Some(&b"notes/todo.txt"[..])
    );
    assert_eq!(node("/usr/bin/tool").mode, 0o4755);
    assert_eq!(node("/etc/secret").mode, 0o600);
    assert_eq!(node("/home/work/notes").mode, 0o700);
    assert_eq!(
        (node("/home/work/notes").uid, node("/home/work/notes").gid),
        (1000, 1000)
    );
    assert_eq!(node("/home/work/notes/todo.txt").uid, 1000);
    assert_eq!(
        node("/home/work/blob.bin").sha256,
        Some(sha256_file(&s.home.join("blob.bin")))
    );
}

#[test]
fn include_mount_puts_a_vfolder_content_at_its_path() {
    if !root_or_skip("include_mount_puts_a_vfolder_content_at_its_path") {
        return;
    }
    let s = changed_session("runc-include", RuncOptions::writer());
    write(&s.local.join("from-host"), "written on the host\n");
    let archive = s.out.join("session.tar");
    let report = commit(cat(
        s.target(),
        args![
            "--include-mount",
            "/home/work/.local",
            "--tag",
            "t",
            "-o",
            &archive,
        ],
    ));
    s.assert_running_and_thawed("after the commit");
    s.assert_writer_advances("after the commit");
    eprintln!(
        "default pause: frozen_ms = {}, frozen = {}",
        frozen_ms(&report),
        report["frozen"]
    );
    let included = report["session"]["included_mounts"]
        .as_array()
        .expect("included_mounts");
    assert_eq!(included.len(), 1, "included_mounts: {included:?}");
    assert_eq!(included[0]["target"], "/home/work/.local");
    assert_eq!(included[0]["host_dir"], path_str(&s.local));
    let mut want = set(&RUNC_EXCLUDED);
    want.remove("/home/work/.local");
    assert_eq!(excluded_targets(&report), want);

    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    assert_image_is_the_session(&s, &rootfs, true);
    let h = rootfs.join("home/work");
    assert_eq!(read(&h.join(".local/share/token")), "vfolder token\n");
    assert_eq!(read(&h.join(".local/from-host")), "written on the host\n");
    assert!(!h.join("data").exists(), "the other vfolder came along");
}

#[test]
fn include_mount_of_a_path_that_is_no_mount_is_refused_and_thaws() {
    if !root_or_skip("include_mount_of_a_path_that_is_no_mount_is_refused_and_thaws") {
        return;
    }
    let s = RuncSession::start("runc-noinclude", populate_base, RuncOptions::writer());
    let archive = s.out.join("session.tar");
    let o = freezeframe(cat(
        cat(args!["commit"], s.target()),
        args!["--include-mount", "/home/work/nothing", "-o", &archive],
    ))
    .failed();
    assert!(
        o.stderr.contains("/home/work/nothing"),
        "error does not name the path:\n{o}"
    );
    assert_eq!(dir_names(&s.out), Vec::<String>::new());
    s.assert_running_and_thawed("after the refused commit");
}

#[test]
fn cgroup_v2_freezes_through_the_unified_hierarchy() {
    if !root_or_skip("cgroup_v2_freezes_through_the_unified_hierarchy") {
        return;
    }
    let s = changed_session("runc-v2", RuncOptions::writer());
    let archive = s.out.join("session.tar");
    let cg = s.cgroups.clone();
    let mut v1_touched = false;
    let w = commit_watching(
        cat(
            s.target(),
            args!["--cgroup", "v2", "--pause", "full", "--tag", "t", "-o", &archive],
        ),
        || {
            v1_touched |= cg.freezer_state() != "THAWED";
            cg.v2_frozen()
        },
    );
    let report = w.outcome.ok().json();
    assert!(
        w.probe_seen,
        "cgroup.events never said frozen 1 during the commit"
    );
    assert!(
        !v1_touched,
        "the v1 freezer was used although --cgroup v2 was asked for"
    );
    assert_eq!(report["session"]["cgroup"], path_str(&s.cgroups.unified));
    let ms = frozen_ms(&report);
    eprintln!("runc session, cgroup v2: frozen_ms = {ms}");
    assert!(ms > 0, "frozen_ms is 0 for a full pause");
    assert_eq!(report["changed_while_read"], serde_json::json!([]));
    s.assert_running_and_thawed("after the commit");
    s.assert_writer_advances("after the commit");
    assert_no_guardian_left(&s.cgroups.unified);
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    assert_image_is_the_session(&s, &rootfs, false);
    assert_writer_files_consistent(&rootfs);
}

#[test]
fn pause_none_never_freezes_and_reports_zero() {
    if !root_or_skip("pause_none_never_freezes_and_reports_zero") {
        return;
    }
    let s = changed_session("runc-nopause", RuncOptions::writer());
    let archive = s.out.join("session.tar");
    let cg = s.cgroups.clone();
    let w = commit_watching(
        cat(
            s.target(),
            args!["--pause", "none", "--tag", "t", "-o", &archive],
        ),
        || cg.freezer_state() != "THAWED" || cg.v2_freeze_requested(),
    );
    let report = w.outcome.ok().json();
    assert!(!w.probe_seen, "the session was frozen with --pause none");
    assert_eq!(frozen_ms(&report), 0);
    s.assert_running_and_thawed("after the commit");
    s.assert_writer_advances("after the commit");
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    assert_eq!(read(&rootfs.join("etc/new.conf")), "brand new\n");
    assert_eq!(
        read(&rootfs.join("home/work/notes/todo.txt")),
        "freeze the session\n"
    );
    assert!(!rootfs.join("home/work/data").exists());
}

#[test]
fn a_session_paused_before_the_commit_stays_paused() {
    if !root_or_skip("a_session_paused_before_the_commit_stays_paused") {
        return;
    }
    let s = changed_session("runc-paused", RuncOptions::writer());

    // Paused by its runtime (the v1 freezer on this host).
    s.runc(["pause", &s.id]).ok();
    assert_eq!(s.status(), "paused");
    assert!(s.cgroups.wait_v1("FROZEN", Duration::from_secs(5)));
    let archive = s.out.join("v1.tar");
    let report = commit(cat(s.target(), args!["--tag", "t", "-o", &archive]));
    assert_eq!(s.status(), "paused", "runc pause undone by the commit");
    assert_eq!(
        s.cgroups.freezer_state(),
        "FROZEN",
        "thawed a session paused by its owner"
    );
    assert_no_guardian_left(&s.cgroups.freezer);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.cgroups.freezer_state(),
        "FROZEN",
        "thawed later (by the guardian?)"
    );
    eprintln!("paused session (v1): frozen_ms = {}", frozen_ms(&report));
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked-v1"));
    assert_eq!(read(&rootfs.join("etc/new.conf")), "brand new\n");
    s.runc(["resume", &s.id]).ok();
    s.assert_running_and_thawed("after runc resume");

    // Frozen by hand on the unified hierarchy, committed with --cgroup v2.
    s.cgroups.set_v2(true);
    assert!(wait_until(Duration::from_secs(5), || s.cgroups.v2_frozen()));
    let archive = s.out.join("v2.tar");
    commit(cat(
        s.target(),
        args!["--cgroup", "v2", "--tag", "t", "-o", &archive],
    ));
    assert_no_guardian_left(&s.cgroups.unified);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        s.cgroups.v2_freeze_requested() && s.cgroups.v2_frozen(),
        "thawed a cgroup v2 session frozen by its owner"
    );
    s.cgroups.set_v2(false);
    s.assert_running_and_thawed("after thawing by hand");
    s.assert_writer_advances("after thawing by hand");
}

#[test]
fn thaw_by_hand_thaws_either_hierarchy() {
    if !root_or_skip("thaw_by_hand_thaws_either_hierarchy") {
        return;
    }
    let s = RuncSession::start("runc-thaw", populate_base, RuncOptions::writer());
    s.cgroups.set_v1("FROZEN");
    assert!(s.cgroups.wait_v1("FROZEN", Duration::from_secs(5)));
    let o = freezeframe(cat(args!["thaw"], s.target())).ok();
    assert!(
        o.stdout.contains(path_str(&s.cgroups.freezer)),
        "thaw does not say which cgroup:\n{o}"
    );
    s.assert_running_and_thawed("after freezeframe thaw");

    s.cgroups.set_v2(true);
    assert!(wait_until(Duration::from_secs(5), || s.cgroups.v2_frozen()));
    let o = freezeframe(cat(args!["thaw"], cat(s.target(), args!["--cgroup", "v2"]))).ok();
    assert!(o.stdout.contains(path_str(&s.cgroups.unified)), "{o}");
    s.assert_running_and_thawed("after freezeframe thaw --cgroup v2");
    s.assert_writer_advances("after freezeframe thaw");
}

#[test]
fn a_private_runc_root_needs_root_and_pid_finds_the_session_too() {
    if !root_or_skip("a_private_runc_root_needs_root_and_pid_finds_the_session_too") {
        return;
    }
    let runc_root = tempdir("runc-root");
    let s = changed_session(
        "runc-private",
        RuncOptions {
            runc_root: Some(runc_root.path().join("state")),
            ..RuncOptions::writer()
        },
    );
    // Not in the default roots: the error names the id and where it looked.
    let archive = s.out.join("session.tar");
    let o = freezeframe(args!["commit", &s.id, "-o", &archive]).failed();
    for want in [s.id.as_str(), "/run/runc", "/run/containerd/runc"] {
        assert!(o.stderr.contains(want), "error does not name {want}:\n{o}");
    }
    assert_eq!(dir_names(&s.out), Vec::<String>::new());
    s.assert_running_and_thawed("after the failed lookup");

    let report = commit(cat(s.target(), args!["--tag", "t", "-o", &archive]));
    assert_eq!(report["session"]["state_file"], path_str(&s.state_file()));
    s.assert_running_and_thawed("after the commit");

    // By its init process: the same session, found through /proc.
    let by_pid = s.out.join("by-pid.tar");
    let report = commit(args![
        "--pid",
        &s.pid.to_string(),
        "--tag",
        "t",
        "-o",
        &by_pid,
    ]);
    let sess = &report["session"];
    assert_eq!(sess["pid"], s.pid);
    assert_eq!(sess["home"]["host_dir"], path_str(&s.home));
    assert_eq!(sess["rootfs"]["upper"], path_str(s.upper.as_ref().unwrap()));
    assert_eq!(sess["cgroup"], path_str(&s.cgroups.freezer));
    assert!(frozen_ms(&report) > 0);
    assert_eq!(excluded_targets(&report), set(&RUNC_EXCLUDED));
    s.assert_running_and_thawed("after the commit by pid");
    s.assert_writer_advances("after the commit by pid");
    let rootfs = unpack_archive(&by_pid, "t", &s.scratch("unpacked"));
    assert_eq!(read(&rootfs.join("etc/new.conf")), "brand new\n");
    assert_eq!(
        read(&rootfs.join("home/work/notes/todo.txt")),
        "freeze the session\n"
    );
}

#[test]
fn a_rootfs_that_is_not_overlayfs_is_refused_and_thaws() {
    if !root_or_skip("a_rootfs_that_is_not_overlayfs_is_refused_and_thaws") {
        return;
    }
    let s = RuncSession::start(
        "runc-plain",
        populate_base,
        RuncOptions {
            overlay: false,
            ..RuncOptions::writer()
        },
    );
    let archive = s.out.join("session.tar");
    let o = freezeframe(cat(cat(args!["commit"], s.target()), args!["-o", &archive])).failed();
    assert!(
        o.stderr.contains(&s.id),
        "error does not name the container:\n{o}"
    );
    assert!(o.stderr.contains("overlay"), "error does not say why:\n{o}");
    assert_eq!(dir_names(&s.out), Vec::<String>::new());
    s.assert_running_and_thawed("after the refused commit");
    s.assert_writer_advances("after the refused commit");
}

// ---------------------------------------------------------------------------
// podman and containerd

/// Where a runtime keeps `ID/state.json` (or `NS/ID/state.json`), among `roots`.
fn state_root_of(id: &str, roots: &[PathBuf]) -> Option<PathBuf> {
    roots.iter().find_map(|r| {
        if r.join(id).join("state.json").is_file() {
            return Some(r.clone());
        }
        fs::read_dir(r)
            .ok()?
            .flatten()
            .any(|ns| ns.path().join(id).join("state.json").is_file())
            .then(|| r.clone())
    })
}

#[test]
fn a_podman_container_is_found_under_its_runc_root_and_committed() {
    if !root_or_skip("a_podman_container_is_found_under_its_runc_root_and_committed") {
        return;
    }
    let dir = tempdir("podman");
    let name = unique_id("pod");
    let base = dir.path().join("base.tar");
    let made = busybox_archive(dir.path(), &format!("localhost/{name}:base"), &base);
    let image = PodmanImage::load(&base, made["config_digest"].as_str().unwrap());
    let (home, data) = (dir.path().join("home"), dir.path().join("data"));
    mkdirs(&home);
    mkdirs(&data);
    write(&data.join("host-dataset"), "vfolder content\n");
    let vol = |src: &Path, dst: &str| {
        let mut v = src.as_os_str().to_owned();
        v.push(":");
        v.push(dst);
        v
    };
    let mut annotation = OsString::from("org.freezeframe.image=oci-archive:");
    annotation.push(&base);
    let c = PodmanContainer::run(
        &name,
        &[
            "-v".into(),
            vol(&home, "/home/work"),
            "-v".into(),
            vol(&data, "/home/work/data"),
            "--annotation".into(),
            annotation,
        ],
        &image.id,
        &["sh", "-c", WRITER],
    );
    assert_eq!(c.inspect("{{.OCIRuntime}}"), "runc");
    let candidates: Vec<PathBuf> = [
        "/run/runc",
        "/run/containerd/runc",
        "/run/containers/storage",
        "/run/libpod",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let root = state_root_of(&c.id, &candidates)
        .unwrap_or_else(|| panic!("no state.json for {} under {candidates:?}", c.id));
    eprintln!("podman (runc) keeps its state in {}", root.display());
    c.exec(
        "set -e; echo podman > /etc/new.conf; rm /bin/vi; mkdir -p /home/work/notes; \
         echo note > /home/work/notes/n; echo in-vfolder > /home/work/data/d; \
         head -c 4000000 /dev/urandom > /home/work/blob.bin",
    );
    assert_writer_advances(c.pid, "before the commit");

    let archive = dir.path().join("out.tar");
    let cg = c.cgroups.clone();
    let w = commit_watching(
        args![&c.id, "--pause", "full", "--tag", "t", "-o", &archive],
        || cg.freezer_state() == "FROZEN",
    );
    let report = w.outcome.ok().json();
    assert!(w.probe_seen, "freezer.state never read FROZEN");
    assert_eq!(c.inspect("{{.State.Status}}"), "running");
    c.cgroups.assert_thawed("after the commit");
    assert_writer_advances(c.pid, "after the commit");
    let ms = frozen_ms(&report);
    eprintln!("podman: frozen_ms = {ms}");
    assert!(ms > 0);
    let sess = &report["session"];
    assert_eq!(sess["id"], c.id.as_str());
    assert_eq!(
        sess["state_file"],
        path_str(&root.join(&c.id).join("state.json"))
    );
    assert_eq!(sess["home"]["host_dir"], path_str(&home));
    assert!(
        sess["base_source"]
            .as_str()
            .unwrap_or("")
            .contains("org.freezeframe.image"),
        "{}",
        sess["base_source"]
    );
    let excluded = excluded_targets(&report);
    for m in [
        "/proc",
        "/sys",
        "/dev",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/run/.containerenv",
        "/home/work/data",
    ] {
        assert!(
            excluded.contains(m),
            "{m} not in excluded_mounts {excluded:?}"
        );
    }

    let rootfs = unpack_archive(&archive, "t", &dir.path().join("unpacked"));
    assert_eq!(read(&rootfs.join("etc/new.conf")), "podman\n");
    assert!(
        fs::symlink_metadata(rootfs.join("bin/vi")).is_err(),
        "deleted file came back"
    );
    assert!(rootfs.join("bin/busybox").is_file(), "base layer missing");
    assert_eq!(read(&rootfs.join("home/work/notes/n")), "note\n");
    assert!(!rootfs.join("home/work/data").exists(), "vfolder committed");
    for p in [
        "run/.containerenv",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        assert!(
            fs::symlink_metadata(rootfs.join(p)).is_err(),
            "runtime mount point /{p} is in the image"
        );
    }
    assert_writer_files_consistent(&rootfs);
    let entries = new_layer_entries(&archive, &report, &dir.path().join("layer"));
    for m in &excluded {
        let hits = entries_under(&entries, m);
        assert!(
            hits.is_empty(),
            "the layer has entries under mount {m}: {hits:?}"
        );
    }
    drop(c);
    drop(image);
}

#[test]
fn a_containerd_task_is_found_under_its_namespace_and_committed() {
    if !root_or_skip("a_containerd_task_is_found_under_its_namespace_and_committed") {
        return;
    }
    let ctd = Containerd::start("ctd");
    let name = unique_id("ctd");
    let base = ctd.scratch("img").join("base.tar");
    let reference = format!("docker.io/library/{name}:base");
    busybox_archive(&ctd.scratch("build"), &reference, &base);
    ctd.ctr(args!["images", "import", &base]);
    let (home, data) = (ctd.scratch("home"), ctd.scratch("data"));
    write(&data.join("host-dataset"), "vfolder content\n");
    let bind = |src: &Path, dst: &str| {
        format!("type=bind,src={},dst={dst},options=rbind:rw", src.display())
    };
    ctd.ctr([
        "run",
        "-d",
        "--runc-binary",
        "/usr/sbin/runc",
        "--mount",
        &bind(&home, "/home/work"),
        "--mount",
        &bind(&data, "/home/work/data"),
        &reference,
        &name,
        "sh",
        "-c",
        WRITER,
    ]);
    let pid = ctd.task_pid(&name);
    let cgroups = Cgroups::of_pid(pid);
    let candidates = [
        PathBuf::from(CONTAINERD_RUNC_ROOT),
        ctd.state.join("io.containerd.runtime.v2.task"),
    ];
    let root = state_root_of(&name, &candidates)
        .unwrap_or_else(|| panic!("no state.json for {name} under {candidates:?}"));
    eprintln!(
        "containerd's runc shim keeps runc state in {}",
        root.join(&ctd.ns).join(&name).display()
    );
    assert_eq!(root, Path::new(CONTAINERD_RUNC_ROOT));
    ctd.ctr([
        "task",
        "exec",
        "--exec-id",
        "changes",
        &name,
        "sh",
        "-c",
        "set -e; echo containerd > /etc/new.conf; rm /bin/vi; mkdir -p /home/work/notes; \
         echo note > /home/work/notes/n; echo in-vfolder > /home/work/data/d; \
         head -c 4000000 /dev/urandom > /home/work/blob.bin",
    ]);
    assert_writer_advances(pid, "before the commit");

    let archive = ctd.scratch("out").join("out.tar");
    let base_ref = oci_archive_ref(&base);
    let cg = cgroups.clone();
    let w = commit_watching(
        args![
            &name,
            "--root",
            &CONTAINERD_RUNC_ROOT,
            "--pause",
            "full",
            "--base",
            &base_ref,
            "--tag",
            "t",
            "-o",
            &archive,
        ],
        || cg.freezer_state() == "FROZEN",
    );
    let report = w.outcome.ok().json();
    assert!(w.probe_seen, "freezer.state never read FROZEN");
    assert_eq!(ctd.task_status(&name), "RUNNING");
    cgroups.assert_thawed("after the commit");
    assert_writer_advances(pid, "after the commit");
    let ms = frozen_ms(&report);
    eprintln!("containerd: frozen_ms = {ms}");
    assert!(ms > 0);
    let sess = &report["session"];
    assert_eq!(sess["id"], name.as_str());
    assert_eq!(
        sess["state_file"],
        path_str(&root.join(&ctd.ns).join(&name).join("state.json"))
    );
    assert_eq!(sess["home"]["host_dir"], path_str(&home));
    assert_eq!(sess["base_source"], "--base");
    let excluded = excluded_targets(&report);
    for m in ["/proc", "/sys", "/dev", "/home/work/data"] {
        assert!(
            excluded.contains(m),
            "{m} not in excluded_mounts {excluded:?}"
        );
    }

    let rootfs = unpack_archive(&archive, "t", &ctd.scratch("unpacked"));
    assert_eq!(read(&rootfs.join("etc/new.conf")), "containerd\n");
    assert!(
        fs::symlink_metadata(rootfs.join("bin/vi")).is_err(),
        "deleted file came back"
    );
    assert!(rootfs.join("bin/busybox").is_file(), "base layer missing");
    assert_eq!(read(&rootfs.join("home/work/notes/n")), "note\n");
    assert!(!rootfs.join("home/work/data").exists(), "vfolder committed");
    assert_writer_files_consistent(&rootfs);
    let entries = new_layer_entries(&archive, &report, &ctd.scratch("layer"));
    for m in &excluded {
        let hits = entries_under(&entries, m);
        assert!(
            hits.is_empty(),
            "the layer has entries under mount {m}: {hits:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Faults

/// Starts a slow commit of `s` (its 300 MB file, gzip on one thread) into `out`,
/// waits until the session is frozen, SIGKILLs the committer, and returns how
/// long the session took to thaw after the kill.
fn sigkill_while_frozen(s: &RuncSession, out: &Path, v2: bool) -> Duration {
    let archive = out.join("img.tar");
    let mut a = s.target();
    if v2 {
        a.extend(args!["--cgroup", "v2"]);
    }
    a.extend(args![
        "--pause",
        "full",
        "--compression",
        "gzip",
        "--level",
        "9",
        "--threads",
        "1",
        "-o",
        &archive,
    ]);
    let mut child = freezeframe_cmd(cat(args!["commit"], a))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn freezeframe");
    let frozen = || {
        if v2 {
            s.cgroups.v2_frozen()
        } else {
            s.cgroups.freezer_state() == "FROZEN"
        }
    };
    let got_frozen = wait_until(Duration::from_secs(60), frozen);
    if !got_frozen {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the session never froze");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the commit finished before it could be killed"
    );
    assert!(frozen(), "the session thawed before the commit was killed");
    signal(child.id() as i32, Signal::SIGKILL);
    let t0 = Instant::now();
    let thawed = wait_until(Duration::from_secs(10), || {
        if v2 {
            !s.cgroups.v2_freeze_requested() && !s.cgroups.v2_frozen()
        } else {
            s.cgroups.freezer_state() == "THAWED"
        }
    });
    let took = t0.elapsed();
    let status = child.wait().expect("wait freezeframe");
    assert!(!status.success(), "SIGKILLed freezeframe exited {status}");
    assert!(
        thawed,
        "still frozen 10 s after the committer was SIGKILLed"
    );
    took
}

#[test]
fn sigkill_of_the_committer_while_frozen_thaws_within_2s() {
    if !root_or_skip("sigkill_of_the_committer_while_frozen_thaws_within_2s") {
        return;
    }
    let s = RuncSession::start("runc-sigkill", populate_base, RuncOptions::writer());
    write_random(&s.rootfs.join("srv/big.bin"), 300 << 20);
    for v2 in [false, true] {
        let which = if v2 { "cgroup v2" } else { "v1 freezer" };
        let out = s.scratch(if v2 { "out-v2" } else { "out-v1" });
        let took = sigkill_while_frozen(&s, &out, v2);
        eprintln!("SIGKILL while frozen ({which}): thawed after {took:?}");
        assert!(
            took <= Duration::from_secs(2),
            "{which}: thawed only after {took:?}"
        );
        s.assert_running_and_thawed(which);
        s.assert_writer_advances(which);
        assert!(
            !out.join("img.tar").exists(),
            "{which}: an archive under the final name"
        );
        let dir = if v2 {
            &s.cgroups.unified
        } else {
            &s.cgroups.freezer
        };
        assert_no_guardian_left(dir);
    }
}

#[test]
fn a_sigkilled_commit_leaves_no_temp_file_in_the_destination() {
    if !root_or_skip("a_sigkilled_commit_leaves_no_temp_file_in_the_destination") {
        return;
    }
    let s = RuncSession::start("runc-sigkill-tmp", populate_base, RuncOptions::writer());
    write_random(&s.rootfs.join("srv/big.bin"), 300 << 20);
    let out = s.scratch("out");
    let took = sigkill_while_frozen(&s, &out, false);
    assert!(took <= Duration::from_secs(2), "thawed only after {took:?}");
    s.assert_running_and_thawed("after the SIGKILL");
    // Give a cleaner (guardian) time to act, then look.
    assert_no_guardian_left(&s.cgroups.freezer);
    assert_eq!(
        dir_names(&out),
        Vec::<String>::new(),
        "files left in the destination after SIGKILL"
    );
}

#[test]
fn a_full_destination_fails_naming_the_path_leaves_nothing_and_thaws() {
    if !root_or_skip("a_full_destination_fails_naming_the_path_leaves_nothing_and_thaws") {
        return;
    }
    let s = changed_session("runc-enospc", RuncOptions::writer());
    write_random(&s.home.join("big.bin"), 12 << 20);
    let small = Tmpfs::mount("3m");
    let archive = small.path.join("img.tar");
    let cg = s.cgroups.clone();
    let w = commit_watching(
        cat(
            s.target(),
            args!["--pause", "full", "--compression", "none", "-o", &archive],
        ),
        || cg.freezer_state() == "FROZEN",
    );
    let o = w.outcome.failed();
    eprintln!("full destination: {}", o.stderr.trim());
    assert!(
        w.probe_seen,
        "the commit failed before freezing (base too big for the tmpfs?)"
    );
    assert!(
        o.stderr.contains(path_str(&small.path)),
        "error does not name the destination:\n{o}"
    );
    assert!(
        o.stderr.to_lowercase().contains("no space"),
        "error does not say the disk is full:\n{o}"
    );
    assert_eq!(
        dir_names(&small.path),
        Vec::<String>::new(),
        "files left behind"
    );
    s.assert_running_and_thawed("after the failed commit");
    s.assert_writer_advances("after the failed commit");
    assert_no_guardian_left(&s.cgroups.freezer);
}

/// A loop that keeps asking a FUSE filesystem mounted at /mnt/fuse.
const FUSE_LOOP: &str = "i=0; while :; do i=$((i+1)); echo $i > /mnt/fuse/f; \
                         ls /mnt/fuse > /dev/null; usleep 10000; done";

#[test]
fn a_freeze_that_cannot_complete_times_out_with_a_clear_error_and_thaws() {
    if !root_or_skip("a_freeze_that_cannot_complete_times_out_with_a_clear_error_and_thaws") {
        return;
    }
    let fuse = FuseMount::start("fuse");
    let s = RuncSession::start(
        "runc-fuse",
        populate_base,
        RuncOptions {
            args: vec!["sh".into(), "-c".into(), FUSE_LOOP.into()],
            extra_mounts: vec![("/mnt/fuse".into(), fuse.mnt.clone())],
            ..Default::default()
        },
    );
    let fuse_counter = || -> u64 {
        fs::read_to_string(fuse.mnt.join("f"))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(5), || fuse_counter() > 2),
        "the container does not use the FUSE mount"
    );
    for v2 in [false, true] {
        let which = if v2 { "cgroup v2" } else { "v1 freezer" };
        fuse.stop();
        // The loop's next request to the stopped daemon blocks in the kernel, in
        // a wait the freezer cannot interrupt: in the shell itself (`echo >`) or
        // in its `ls` child, in FUSE's own wait or, uninterruptibly, on a page
        // FUSE has yet to fill. A process found in such a wait twice, 300 ms
        // apart, at the same place and without having been switched in between,
        // is stuck there.
        let procs = s.cgroups.freezer.join("cgroup.procs");
        let pids = || -> Vec<i32> {
            read(&procs)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        };
        let waiting = |pid: i32| -> Option<(String, u64)> {
            let w = wchan(pid);
            let on_fuse = w.contains("request_wait_answer") || w.contains("fuse");
            (on_fuse || proc_state(pid) == Some('D')).then_some((w, switches(pid)?))
        };
        let blocked = wait_until(Duration::from_secs(5), || {
            let before: Vec<_> = pids()
                .into_iter()
                .filter_map(|p| Some((p, waiting(p)?)))
                .collect();
            if before.is_empty() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(300));
            before.into_iter().any(|(p, then)| waiting(p) == Some(then))
        });
        assert!(
            blocked,
            "the container did not block on FUSE (state and wchan of its processes: {:?})",
            pids()
                .into_iter()
                .map(|p| (p, proc_state(p), wchan(p)))
                .collect::<Vec<_>>()
        );
        let archive = s.out.join("img.tar");
        let mut a = cat(args!["commit"], s.target());
        if v2 {
            a.extend(args!["--cgroup", "v2"]);
        }
        a.extend(args![
            "--pause",
            "full",
            "--freeze-timeout",
            "500ms",
            "-o",
            &archive,
        ]);
        let t0 = Instant::now();
        let o = freezeframe(a).failed();
        let took = t0.elapsed();
        eprintln!(
            "{which}: the freeze gave up after {took:?}: {}",
            o.stderr.trim()
        );
        let dir = if v2 {
            &s.cgroups.unified
        } else {
            &s.cgroups.freezer
        };
        assert!(
            o.stderr.contains(path_str(dir)),
            "{which}: error does not name the cgroup:\n{o}"
        );
        assert!(
            o.stderr.contains("500ms") && o.stderr.contains("freeze"),
            "{which}: error does not say the freeze timed out:\n{o}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{which}: gave up only after {took:?}"
        );
        // Thawed at once, while the FUSE daemon is still stopped.
        s.cgroups
            .assert_thawed(&format!("{which}, right after the timeout"));
        assert_eq!(
            dir_names(&s.out),
            Vec::<String>::new(),
            "{which}: files left behind"
        );
        assert_no_guardian_left(dir);
        fuse.resume();
        let before = fuse_counter();
        assert!(
            wait_until(Duration::from_secs(5), || fuse_counter() > before + 2),
            "{which}: the session does not run after the daemon came back"
        );
        s.assert_running_and_thawed(&format!("{which}, after the daemon came back"));
    }
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn an_unknown_id_names_the_id_and_every_root_looked_in() {
    if !root_or_skip("an_unknown_id_names_the_id_and_every_root_looked_in") {
        return;
    }
    let dir = tempdir("unknown");
    let id = unique_id("nope");
    let archive = dir.path().join("x.tar");
    let o = freezeframe(args!["commit", &id, "-o", &archive]).failed();
    for want in [
        id.as_str(),
        "/run/freezeframe",
        "/run/runc",
        "/run/youki",
        "/run/containerd/runc",
    ] {
        assert!(o.stderr.contains(want), "error does not name {want}:\n{o}");
    }
    let root = dir.path().join("root");
    mkdirs(&root.join("some-namespace"));
    let o = freezeframe(args!["commit", &id, "--root", &root, "-o", &archive]).failed();
    assert!(
        o.stderr.contains(&id) && o.stderr.contains(path_str(&root)),
        "{o}"
    );
    let o = freezeframe(args!["thaw", &id]).failed();
    assert!(
        o.stderr.contains(&id) && o.stderr.contains("/run/runc"),
        "{o}"
    );
    assert_eq!(dir_names(dir.path()), ["root"], "something was written");
}

#[test]
fn invalid_ids_are_refused_before_any_lookup() {
    if !root_or_skip("invalid_ids_are_refused_before_any_lookup") {
        return;
    }
    let dir = tempdir("badid");
    // If `../x` were joined to the root, it would reach this garbage state file
    // and fail differently.
    let root = dir.path().join("root");
    mkdirs(&root);
    mkdirs(&dir.path().join("x"));
    write(&dir.path().join("x/state.json"), "not json");
    let archive = dir.path().join("x.tar");
    for id in ["../x", "a/b", "..", ".", "/x"] {
        let o = freezeframe(args!["commit", &id, "--root", &root, "-o", &archive]).failed();
        assert!(
            o.stderr.contains("invalid container id") && o.stderr.contains(&format!("{id:?}")),
            "{id}: not refused as an invalid id:\n{o}"
        );
        let o = freezeframe(args!["thaw", &id, "--root", &root]).failed();
        assert!(o.stderr.contains("invalid container id"), "thaw {id}:\n{o}");
    }
    assert!(!archive.exists());
}

#[test]
fn pid_of_a_host_process_or_a_dead_process_is_a_clear_error() {
    if !root_or_skip("pid_of_a_host_process_or_a_dead_process_is_a_clear_error") {
        return;
    }
    let dir = tempdir("badpid");
    let archive = dir.path().join("x.tar");
    let mut host = Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("spawn sleep");
    let pid = host.id().to_string();
    let o = freezeframe(args!["commit", "--pid", &pid, "-o", &archive]).failed();
    let _ = host.kill();
    let _ = host.wait();
    assert!(o.stderr.contains(&pid), "error does not name the pid:\n{o}");
    assert!(
        o.stderr.contains("overlay"),
        "error does not say the rootfs is no overlay:\n{o}"
    );

    let dead = dead_pid().to_string();
    let o = freezeframe(args!["commit", "--pid", &dead, "-o", &archive]).failed();
    assert!(
        o.stderr.contains(&dead),
        "error does not name the dead pid:\n{o}"
    );
    let o = freezeframe(args!["thaw", "--pid", &dead]).failed();
    assert!(
        o.stderr.contains(&dead),
        "thaw: error does not name the dead pid:\n{o}"
    );
    assert!(!archive.exists());
}

#[test]
fn a_state_file_with_a_dead_init_or_garbage_is_a_clear_error() {
    if !root_or_skip("a_state_file_with_a_dead_init_or_garbage_is_a_clear_error") {
        return;
    }
    let dir = tempdir("badstate");
    let root = dir.path().join("root");
    let archive = dir.path().join("x.tar");
    let dead = dead_pid();
    mkdirs(&root.join("gone"));
    write(
        &root.join("gone/state.json"),
        serde_json::json!({"id": "gone", "init_process_pid": dead}).to_string(),
    );
    let o = freezeframe(args!["commit", "gone", "--root", &root, "-o", &archive]).failed();
    assert!(
        o.stderr.contains("gone") && o.stderr.contains(&dead.to_string()),
        "error does not name the container and its dead init:\n{o}"
    );
    mkdirs(&root.join("ns/garbage"));
    let state = root.join("ns/garbage/state.json");
    write(&state, "{ this is not json");
    let o = freezeframe(args!["commit", "garbage", "--root", &root, "-o", &archive]).failed();
    assert!(
        o.stderr.contains(path_str(&state)),
        "error does not name the unreadable state file:\n{o}"
    );
    assert!(!archive.exists());
}
