//! Hardening of the walk, as root: what a hostile session's tree does to a
//! commit, as it was found to work, and the safe outcome or clear error it
//! now gets.
//!
//! | finding | test |
//! |---|---|
//! | a file swapped with a char device (`RENAME_EXCHANGE`) between the walk's `fstatat` and its open made commits open `1:3` devices | [`the_walk_never_opens_a_device_swapped_in_for_a_file`] |
//! | no bound on a file's or a layer's size, and cancel checked only between entries (a 4 GiB file: 19 s) | [`limits_stop_a_live_commit_naming_the_file_or_the_layer`], [`a_commit_cancelled_inside_a_large_file_stops_at_once`] |
//! | the upper and home roots were reopened by path in each pass, after a path-based check | [`a_home_swapped_on_the_host_during_the_freeze_is_not_read`] |
//! | 10,000 nested one-letter directories overflowed the server's commit thread and killed `serve`; 3,000 levels of 200-character names took 2.66 GB | [`deep_trees_commit_through_the_server_in_bounded_memory`] |

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freezeframe_tests::containers::*;
use freezeframe_tests::live::commit_stopped_while_frozen;
use freezeframe_tests::server::*;
use freezeframe_tests::*;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use rustix::fs::{inotify, Mode as RMode, OFlags};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Finding 7: device nodes opened under a rename race

/// Opens of the watched inodes so far, read from an inotify fd.
fn opens_seen(ino: &impl AsFd) -> u64 {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = inotify::Reader::new(ino, &mut buf);
    let mut n = 0;
    loop {
        match reader.next() {
            Ok(e) => {
                if e.events().contains(inotify::ReadFlags::OPEN) {
                    n += 1;
                }
            }
            Err(rustix::io::Errno::AGAIN) => return n,
            Err(e) => panic!("reading inotify events: {e}"),
        }
    }
}

/// The upper dir holds pairs of a regular file and a char device `1:3`, and
/// a thread keeps exchanging each pair's names with `RENAME_EXCHANGE` while
/// commits run one after another. Before, the walk opened a name after its
/// `fstatat` and checked what it got only after the open: commits opened
/// the devices thousands of times. Now a name is opened `O_PATH` (which
/// opens nothing), checked, and only the checked inode is opened for
/// reading: inotify, watching the device inodes themselves, sees no open.
#[test]
fn the_walk_never_opens_a_device_swapped_in_for_a_file() {
    if !root_or_skip("the_walk_never_opens_a_device_swapped_in_for_a_file") {
        return;
    }
    const PAIRS: usize = 64;
    let dir = tempdir("wh-swap");
    let d = dir.path();
    let upper = d.join("upper");
    mkdirs(&upper);
    let ino = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
        .expect("inotify_init");
    for i in 0..PAIRS {
        write(&upper.join(format!("f{i}")), "file content");
        let dev = upper.join(format!("d{i}"));
        mknod(
            &dev,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .expect("mknod");
        // A watch is on the inode: it follows the device whatever its name.
        inotify::add_watch(&ino, &dev, inotify::WatchFlags::OPEN).expect("inotify_add_watch");
    }
    // The watch itself works: an ordinary open of a device is seen.
    drop(std::fs::File::open(upper.join("d0")).expect("open d0"));
    assert_eq!(opens_seen(&ino), 1, "inotify does not report device opens");

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, upper) = (stop.clone(), swaps.clone(), upper.clone());
        std::thread::spawn(move || {
            let dirfd = rustix::fs::open(
                &upper,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .expect("open upper");
            while !stop.load(Ordering::Relaxed) {
                for i in 0..PAIRS {
                    rustix::fs::renameat_with(
                        &dirfd,
                        format!("f{i}"),
                        &dirfd,
                        format!("d{i}"),
                        rustix::fs::RenameFlags::EXCHANGE,
                    )
                    .expect("renameat2");
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let start = Instant::now();
    let (mut commits, mut devices_written) = (0, 0);
    let out = d.join("out.tar");
    while start.elapsed() < Duration::from_secs(8) {
        let o = OfflineCommit::new(&upper)
            .compression("none")
            .output(&out)
            .force()
            .json()
            .run();
        assert!(o.success(), "{o}");
        devices_written += o.json()["walk"]["devices"].as_u64().unwrap_or(0);
        commits += 1;
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    let opened = opens_seen(&ino);
    eprintln!(
        "{commits} commits, {} swaps, {devices_written} devices written, {opened} device opens",
        swaps.load(Ordering::Relaxed)
    );
    assert!(commits >= 5, "only {commits} commits ran");
    assert!(
        swaps.load(Ordering::Relaxed) > 1000,
        "the swapper hardly ran"
    );
    assert_eq!(opened, 0, "commits opened a device node {opened} times");
}

// ---------------------------------------------------------------------------
// Finding 3: deep trees

/// Makes `depth` nested directories named `name` under `top`, each with a
/// sibling file `f`, through fds (the paths are far longer than PATH_MAX).
fn deep_tree(top: &Path, depth: usize, name: &str) {
    let mut dir: OwnedFd =
        rustix::fs::open(top, OFlags::RDONLY | OFlags::DIRECTORY, RMode::empty())
            .expect("open top");
    for _ in 0..depth {
        rustix::fs::mkdirat(&dir, name, RMode::from_raw_mode(0o755)).expect("mkdirat");
        let f = rustix::fs::openat(
            &dir,
            "f",
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            RMode::from_raw_mode(0o644),
        )
        .expect("create f");
        rustix::io::write(&f, b"x").expect("write f");
        dir = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY,
            RMode::empty(),
        )
        .expect("open child");
    }
}

/// `rm -rf`, which walks without recursion (std's remove_dir_all recurses).
fn remove_deep(p: &Path) {
    let st = Command::new("rm").arg("-rf").arg(p).status().expect("rm");
    assert!(st.success(), "rm -rf {}", p.display());
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A live session's upper dir holds 10,000 nested one-letter directories,
/// each with a sibling file, and then 750 levels of 200-character names
/// (3,000 with `FF_DEEP_LONG_LEVELS=3000`).
/// Before, the first overflowed the commit thread's stack in a recursive
/// reopen and aborted `freezeframe serve` (every commit in flight lost), and
/// the second took 2.66 GB, from full paths per frame and per baseline
/// entry. Now both commit through the real server, live (`pause: auto`, the
/// baseline included), the server stays up, and its peak RSS stays under
/// 64 MiB.
#[test]
fn deep_trees_commit_through_the_server_in_bounded_memory() {
    if !root_or_skip("deep_trees_commit_through_the_server_in_bounded_memory") {
        return;
    }
    const LONG: Duration = Duration::from_secs(900);
    let root = tempdir("wh-deep-root");
    let s = RuncSession::start(
        "wh-deep",
        |_| {},
        RuncOptions {
            runc_root: Some(root.path().join("runc")),
            ..Default::default()
        },
    );
    let srv = Server::start(
        "wh-deep",
        &ServerOptions::new(vec![root.path().join("runc")]),
    );
    let long_name = "n".repeat(200);
    // Levels of 200-character names: 750 took 188 MB before (the issue's
    // 3,000 took 2.66 GB). Every entry's tar header holds its whole path, so
    // the archive grows with depth squared (3,000 levels: 1.8 GB), which a
    // debug build hashes for minutes; FF_DEEP_LONG_LEVELS=3000 runs the
    // issue's tree.
    let long_levels: usize = std::env::var("FF_DEEP_LONG_LEVELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(750);
    for (label, depth, name) in [
        ("narrow", 10_000, "a"),
        ("long", long_levels, long_name.as_str()),
    ] {
        let top = s.rootfs.join("deep");
        std::fs::create_dir(&top).expect("mkdir deep");
        let t0 = Instant::now();
        deep_tree(&top, depth, name);
        eprintln!("{label}: made {depth} levels in {:?}", t0.elapsed());
        let t0 = Instant::now();
        let id = srv.submit(&json!({
            "session": s.id,
            "output": format!("{label}.tar"),
            "compression": "none",
        }));
        let t = srv.wait_final(&id, LONG);
        assert_eq!(t["state"], "done", "{label}: {t:#}\n{}", srv.log_text());
        let files = t["progress"]["files"].as_u64().unwrap_or(0);
        assert!(
            files >= 2 * depth as u64,
            "{label}: {files} entries walked: {t:#}"
        );
        let hwm = status_kb(srv.pid(), "VmHWM");
        eprintln!(
            "{label}: committed in {:?}, {files} entries, server VmHWM {hwm} kB",
            t0.elapsed()
        );
        assert_eq!(srv.get("/v1/health").json()["status"], "ok");
        assert!(
            hwm <= 64 << 10,
            "{label}: the server's peak RSS is {hwm} kB, over 64 MiB"
        );
        s.assert_running_and_thawed(label);
        remove_deep(&top);
        let _ = std::fs::remove_file(srv.save.join(format!("{label}.tar")));
    }
}

// ---------------------------------------------------------------------------
// Finding 8: limits, and cancel inside a file

/// A runc session in a private state root.
fn session(name: &str, root: &tempfile::TempDir) -> RuncSession {
    RuncSession::start(
        name,
        |_| {},
        RuncOptions {
            runc_root: Some(root.path().join("runc")),
            ..Default::default()
        },
    )
}

/// A file of `mib` MiB of data (no holes).
fn dense_file(p: &Path, mib: usize) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(p).expect("create");
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..mib {
        f.write_all(&block).expect("write");
    }
}

/// A session holds a 3 MiB file. Before, nothing bounded what a commit
/// read. Now `--max-file-size` stops the live pass naming the file, and
/// `--max-layer-size` stops a frozen commit naming the layer's size and the
/// file; either way the session is thawed and no archive (nor temp file) is
/// left.
#[test]
fn limits_stop_a_live_commit_naming_the_file_or_the_layer() {
    if !root_or_skip("limits_stop_a_live_commit_naming_the_file_or_the_layer") {
        return;
    }
    let root = tempdir("wh-limits-root");
    let s = session("wh-limits", &root);
    mkdirs(&s.rootfs.join("data"));
    dense_file(&s.rootfs.join("data/big"), 3);
    write(&s.rootfs.join("data/small"), "small");
    let out = s.scratch("out");
    let archive = out.join("limited.tar");
    let cases: [(&[&str], &str); 2] = [
        (&["--max-file-size", "1M"], "/data/big: file holds 3145728 bytes, more than the limit of 1048576 (limits.max_file_size)"),
        (&["--pause", "full", "--max-layer-size", "2MiB"], "layer would hold"),
    ];
    for (flags, want) in cases {
        let mut args = s.target();
        args.extend(["--compression", "none", "-o"].map(Into::into));
        args.push(archive.clone().into());
        args.extend(flags.iter().map(Into::into));
        let o = freezeframe(commit_json_args(args));
        assert!(!o.success(), "{flags:?}: {o}");
        assert!(o.stderr.contains(want), "{flags:?}: {o}");
        if flags.contains(&"--max-layer-size") {
            assert!(
                o.stderr.contains("/data/big") && o.stderr.contains("limits.max_layer_size"),
                "{o}"
            );
        }
        s.assert_running_and_thawed(&format!("after {flags:?}"));
        assert_eq!(dir_names(&out), Vec::<String>::new(), "{flags:?}: {o}");
    }
    // Within the limits, it commits.
    let mut args = s.target();
    args.extend(["--compression", "none", "--max-file-size", "3M", "-o"].map(Into::into));
    args.push(archive.clone().into());
    let o = freezeframe(commit_json_args(args));
    assert!(o.success(), "{o}");
    assert!(archive.is_file());
}

/// The server commits a session holding one file of 512 MiB of data, and
/// the task is cancelled while that file is read. Before, cancel was seen
/// only between entries: the whole file was read first, and progress stood
/// still while it was. Now progress grows while the one file is read, and
/// the task is cancelled within a second or two, the session thawed and no
/// archive left.
#[test]
fn a_commit_cancelled_inside_a_large_file_stops_at_once() {
    if !root_or_skip("a_commit_cancelled_inside_a_large_file_stops_at_once") {
        return;
    }
    const MIB: usize = 512;
    let root = tempdir("wh-cancel-root");
    let s = session("wh-cancel", &root);
    dense_file(&s.rootfs.join("big.img"), MIB);
    let srv = Server::start(
        "wh-cancel",
        &ServerOptions::new(vec![root.path().join("runc")]),
    );
    let id = srv.submit(&json!({
        "session": s.id,
        "output": "cancelled.tar",
        "compression": "gzip",
    }));
    // Into the file: some of it read, not all.
    let first = srv.wait_task(&id, Duration::from_secs(120), |t| {
        t["progress"]["bytes_read"].as_u64().unwrap_or(0) >= 8 << 20
    });
    let second = srv.wait_task(&id, Duration::from_secs(60), |t| {
        t["progress"]["bytes_read"].as_u64().unwrap_or(0)
            >= first["progress"]["bytes_read"].as_u64().unwrap() + (8 << 20)
    });
    let read = |t: &Value| t["progress"]["bytes_read"].as_u64().unwrap();
    assert_eq!(
        first["progress"]["files"], second["progress"]["files"],
        "progress grew while one file was read: {first:#} {second:#}"
    );
    assert!(read(&second) < (MIB as u64) << 20, "{second:#}");

    let t0 = Instant::now();
    let r = srv.delete(&format!("/v1/commits/{id}"));
    assert_eq!(r.status, 200, "{r:?}");
    let t = srv.wait_final(&id, Duration::from_secs(60));
    let took = t0.elapsed();
    assert_eq!(t["state"], "cancelled", "{t:#}");
    let at_end = read(&t);
    eprintln!(
        "cancelled {took:?} after asking, at {} of {MIB} MiB",
        at_end >> 20
    );
    assert!(
        took < Duration::from_secs(3),
        "the cancel took {took:?}: {t:#}"
    );
    assert!(
        at_end < (MIB as u64) << 20,
        "the whole file was read: {t:#}"
    );
    s.assert_running_and_thawed("after the cancel");
    assert!(!srv.save.join("cancelled.tar").exists());
    assert!(srv.temp_files().is_empty(), "{:?}", srv.temp_files());
    assert_eq!(srv.get("/v1/health").json()["status"], "ok");
}

// ---------------------------------------------------------------------------
// Finding 14: tree roots reopened by path

/// While a live commit holds the session frozen (and the committer stopped),
/// the session's scratch home is moved away on the host and another
/// directory, with a planted file, takes its path. Before, the frozen pass
/// opened the home by its path again: it read the planted directory, wrote
/// the planted file and whited out the real notes. Now the roots are opened
/// once, before the first pass, checked against what the session has
/// mounted, and every pass reads through those fds: the image has the real
/// home and nothing planted.
#[test]
fn a_home_swapped_on_the_host_during_the_freeze_is_not_read() {
    if !root_or_skip("a_home_swapped_on_the_host_during_the_freeze_is_not_read") {
        return;
    }
    let root = tempdir("wh-roots-root");
    let s = session("wh-roots", &root);
    write(&s.home.join("notes.txt"), "real notes\n");
    // Entries sorted before /home, so that the frozen pass takes a while to
    // reach it.
    let early = s.rootfs.join("aaa");
    mkdirs(&early);
    for i in 0..20_000 {
        write(&early.join(format!("f{i:05}")), "");
    }
    let moved = s.home.with_extension("moved");
    let mut caught = None;
    for attempt in 0..3 {
        let archive = s.out.join(format!("roots-{attempt}.tar"));
        let mut args = s.target();
        args.extend(
            [
                "--pause",
                "auto",
                "--compression",
                "zstd",
                "--tag",
                "t",
                "-o",
            ]
            .map(Into::into),
        );
        args.push(archive.clone().into());
        let run = commit_stopped_while_frozen(args, &s.cgroups, || {
            std::fs::rename(&s.home, &moved).expect("move the home away");
            mkdirs(&s.home);
            write(&s.home.join("planted.txt"), "planted\n");
        });
        if run.during.is_some() {
            std::fs::remove_dir_all(&s.home).expect("remove the planted home");
            std::fs::rename(&moved, &s.home).expect("put the home back");
        }
        let report = run.outcome.ok().json();
        s.assert_running_and_thawed(&format!("after commit {attempt}"));
        if run.during.is_some() {
            caught = Some((archive, report));
            break;
        }
    }
    let (archive, report) = caught.expect("the session was never caught frozen in 3 live commits");
    let layout = extract_archive(&archive, &s.scratch("x"));
    let mut home = Vec::new();
    for layer in report["layers"].as_array().expect("layers") {
        let blob = blob_path(&layout, layer["digest"].as_str().expect("digest"));
        for e in layer_entries(&blob) {
            let p = String::from_utf8_lossy(&e.path).into_owned();
            if p.contains("home/work/") {
                home.push(p);
            }
        }
    }
    assert!(
        home.iter().any(|p| p.ends_with("home/work/notes.txt")),
        "{home:?}"
    );
    assert!(
        !home
            .iter()
            .any(|p| p.contains("planted") || p.contains(".wh.notes")),
        "the frozen pass read the planted home: {home:?}"
    );
}
