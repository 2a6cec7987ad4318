//! Live commit (`--pause auto`), as root, with real runc sessions on a real
//! overlay: writers keep creating, appending to, renaming, chmod-ing, deleting
//! and replacing files in the rootfs and in the home throughout the commit.
//!
//! Two oracles. Without seeing the freeze: every writer keeps a property that
//! holds at every moment (a contiguous range of whole numbered files, a counter
//! that matches the newest file, exactly one of two renamed names, ...), so an
//! image that mixes the first pass's moment with the freeze's fails it (see
//! `freezeframe_tests::live`). Seeing the freeze: the committer is stopped while
//! the session is frozen, the merged view is recorded, and the unpacked image is
//! compared with it entry by entry.
//!
//! Every test checks that the session runs, thawed, after each commit.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use freezeframe_tests::containers::*;
use freezeframe_tests::live::*;
use freezeframe_tests::*;

// ---------------------------------------------------------------------------
// Building blocks

/// Random bytes in the rootfs and small files in the home: with the writers
/// competing for the CPUs, the first pass of a debug build takes seconds over
/// them, during which the writers make hundreds of steps.
const BALLAST: u64 = 4 << 20;
const SMALL_FILES: usize = 2000;

/// Steps every writer makes before a commit starts (so that the sequence
/// writers are removing old files).
const WARM_UP: u64 = SEQ_KEEP + 10;

/// The base holds some of what the rootfs writers replace, so that the overlay's
/// whiteouts and opaque directories are at work in the upper dir.
fn populate_base(r: &Path) {
    mkdirs(&r.join("data/mut/rc/d/sub"));
    write(&r.join("data/mut/rc/d/a"), "base\n");
    write(&r.join("data/mut/rc/d/base-only"), "base\n");
    write(&r.join("data/mut/rc/d/sub/c"), "base\n");
    mkdirs(&r.join("data/mut/tf"));
    write(&r.join("data/mut/tf/x"), "base\n");
}

/// A running session with `random` bytes and `small` files of ballast, and
/// `writers` started (and warmed up) if given.
fn session(name: &str, random: u64, small: usize, writers: Option<Writers>) -> RuncSession {
    let s = RuncSession::start(name, populate_base, RuncOptions::default());
    add_ballast(&s, random, small);
    if let Some(w) = writers {
        let log = writers_log(&s);
        exec_detached(&s, &writers_script(w), &log);
        if w.checked {
            wait_for_writers(&s, WARM_UP, &log);
        }
    }
    s
}

fn writers_log(s: &RuncSession) -> PathBuf {
    s.scratch("writers").join("writers.log")
}

/// Every writer: the checked ones, and the big appender adding 64 KiB every
/// `big_every_us`.
fn all_writers(big_every_us: u64) -> Writers {
    Writers {
        checked: true,
        big_every_us: Some(big_every_us),
    }
}

fn frozen(report: &Value) -> &Value {
    let f = &report["frozen"];
    assert!(f.is_object(), "no `frozen` in the report: {report}");
    f
}

fn u64_of(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Asserts the report says `path` with `added` layers, and that the image's
/// manifest (as skopeo reads it) and the report hold the base's layers plus those.
fn assert_path_and_layers(report: &Value, s: &RuncSession, archive: &Path, path: &str, added: u64) {
    let f = frozen(report);
    assert_eq!(f["path"], path, "frozen.path in {f}");
    assert_eq!(
        u64_of(&f["layers_added"], "frozen.layers_added"),
        added,
        "{f}"
    );
    let base = base_layers(s);
    let manifest = skopeo_inspect(archive)["Layers"]
        .as_array()
        .expect("skopeo: Layers")
        .len();
    let reported = report["layers"].as_array().expect("layers").len();
    assert_eq!(
        (manifest, reported),
        (base + added as usize, base + added as usize),
        "layers in the manifest and in the report; the base has {base}"
    );
    assert_eq!(
        u64_of(&report["frozen_ms"], "frozen_ms"),
        u64_of(&f["frozen_ms"], "frozen.frozen_ms"),
        "frozen_ms and frozen.frozen_ms differ"
    );
}

/// Layers of the session's base image (built by umoci).
fn base_layers(s: &RuncSession) -> usize {
    let index: Value = serde_json::from_slice(
        &fs::read(s.base.layout.join("index.json")).expect("read base index.json"),
    )
    .expect("parse base index.json");
    let digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest: Value = serde_json::from_slice(
        &fs::read(blob_path(&s.base.layout, digest)).expect("read manifest"),
    )
    .expect("parse manifest");
    manifest["layers"].as_array().expect("layers").len()
}

/// The paths in the archive's last layer, as GNU tar lists them (quicker than
/// decompressing it in this debug build).
fn last_layer_paths(archive: &Path, report: &Value, scratch: &Path) -> Vec<String> {
    let layout = extract_archive(archive, scratch);
    let layers = report["layers"].as_array().expect("layers");
    let last = layers.last().expect("a layer");
    let blob = blob_path(&layout, last["digest"].as_str().expect("digest"));
    tool("tar", args!["-tzf", blob])
        .stdout
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs every writer's check on a tree; panics listing what failed.
fn assert_consistent(root: &Path, what: &str) -> Seen {
    check_image(root).unwrap_or_else(|e| panic!("{what} is not one moment:\n{e}"))
}

/// The image's writers are at a moment between `before` (the live session when
/// the commit started) and `after` (when it ended), strictly after `before`:
/// the image is not the first pass's moment but a later one.
fn assert_between(seen: &Seen, before: &Seen, after: &Seen, what: &str) {
    for i in 0..4 {
        let (b, n, a) = (before.seq[i], seen.seq[i], after.seq[i]);
        // The image may hold file counter + 1 (renamed in, counter not moved).
        assert!(
            b < n && n <= a + 1,
            "{what}: sequence writer {i} is at {n} in the image, but was at {b} when the \
             commit started and {a} when it ended"
        );
    }
    for i in 0..2 {
        let (b, n, a) = (before.mutator[i], seen.mutator[i], after.mutator[i]);
        assert!(
            b < n && n <= a,
            "{what}: mutator {i} is at {n} in the image, but was at {b} when the commit \
             started and {a} when it ended"
        );
    }
}

/// Running, thawed, and the writers still writing.
fn assert_session_goes_on(s: &RuncSession, when: &str) {
    s.assert_running_and_thawed(when);
    let before = progress(s);
    assert!(
        wait_until(Duration::from_secs(10), || progress(s).seq[0]
            > before.seq[0] + 2),
        "{when}: the writers are stuck at {before:?}"
    );
}

/// The unpacked image against `expected`, entry by entry.
fn assert_image_is(expected: &TreeSnapshot, rootfs: &Path, what: &str) {
    let actual = TreeSnapshot::capture(rootfs);
    assert_same_unpacked_tree(expected.clone(), &actual, what);
}

/// The sweep a [`MappedWriter`]'s first page holds (a read of the live file is
/// no single moment, so only one page is looked at).
fn first_sweep(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn size_of(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The property oracle

#[test]
fn a_live_commit_of_busy_writers_is_one_moment_after_the_first_pass() {
    if !root_or_skip("a_live_commit_of_busy_writers_is_one_moment_after_the_first_pass") {
        return;
    }
    let s = session(
        "live-prop",
        BALLAST,
        SMALL_FILES,
        Some(all_writers(250_000)),
    );
    let archive = s.out.join("live.tar");
    let before = progress(&s);
    let report = commit(target_and(
        &s,
        &[&"--pause", &"auto", &"--tag", &"t", &"-o", &archive],
    ));
    let after = progress(&s);
    assert_session_goes_on(&s, "after the live commit");

    let f = frozen(&report);
    eprintln!(
        "live commit: frozen = {f}, elapsed_ms = {}, writers {before:?} -> {after:?}",
        report["elapsed_ms"]
    );
    assert_path_and_layers(&report, &s, &archive, "auto", 2);
    assert!(
        u64_of(&f["entries"], "frozen.entries") > 0,
        "a second layer but no entry captured while frozen: {f}"
    );
    let paths = last_layer_paths(&archive, &report, &s.scratch("layer"));
    assert!(!paths.is_empty(), "the second layer is empty");
    // The pause is a fraction of the commit: it does not read the ballast again.
    let (frozen_ms, elapsed) = (
        u64_of(&report["frozen_ms"], "frozen_ms"),
        u64_of(&report["elapsed_ms"], "elapsed_ms"),
    );
    assert!(
        frozen_ms * 4 < elapsed,
        "frozen for {frozen_ms} ms of a {elapsed} ms commit"
    );
    assert!(
        !paths.iter().any(|p| p.contains("ballast")),
        "the untouched ballast is in the second layer"
    );
    assert!(
        paths.iter().any(|p| p.contains("seq-renamed/")),
        "the second layer has none of the files written during the first pass"
    );

    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    let seen = assert_consistent(&rootfs, "the live-committed image");
    eprintln!("image: {seen:?}");
    assert_between(&seen, &before, &after, "the live-committed image");
    let (chunks, size) = check_big(&rootfs.join("home/work/w/big.log"))
        .unwrap_or_else(|e| panic!("the big appender's file in the image: {e}"));
    eprintln!("big.log in the image: {size} bytes");
    assert!(chunks > 0, "big.log has {size} bytes, no whole chunk");
    assert!(
        fs::symlink_metadata(rootfs.join("data/mut/rc/d/base-only")).is_err(),
        "a file of the base deleted in the session came back"
    );
}

// ---------------------------------------------------------------------------
// The frozen-moment oracle

#[test]
fn the_image_is_the_session_as_it_was_while_frozen() {
    if !root_or_skip("the_image_is_the_session_as_it_was_while_frozen") {
        return;
    }
    // The big appender (64 KiB every 50 ms) gives the frozen pass megabytes to
    // copy.
    let s = session(
        "live-oracle",
        BALLAST,
        SMALL_FILES,
        Some(all_writers(50_000)),
    );
    let view = session_view(&s, &s.scratch("view"));
    // The commit freezes once; the committer is stopped as soon as the freezer
    // reads FROZEN. If the frozen pass ended before the stop took effect, that
    // commit caught nothing and another one is made.
    const ATTEMPTS: usize = 3;
    let mut caught = None;
    for attempt in 1..=ATTEMPTS {
        let archive = s.out.join(format!("oracle-{attempt}.tar"));
        let before = progress(&s);
        let run = commit_stopped_while_frozen(
            target_and(&s, &[&"--pause", &"auto", &"--tag", &"t", &"-o", &archive]),
            &s.cgroups,
            || {
                // Nothing in the session can run: record it, and check the writers'
                // properties against this ground truth too (so that a failure of
                // them on an image is the image's fault, not theirs).
                let expected = expected_image(&s);
                let truth = check_image(&view);
                (expected, truth)
            },
        );
        let report = run.outcome.ok().json();
        let after = progress(&s);
        assert_session_goes_on(&s, &format!("after oracle commit {attempt}"));
        eprintln!(
            "oracle commit {attempt}: caught frozen: {}, committer held {:?}, frozen = {}",
            run.during.is_some(),
            run.held,
            report["frozen"]
        );
        if let Some(d) = run.during {
            caught = Some((archive, report, d, before, after));
            break;
        }
    }
    let Some((archive, report, (expected, truth), before, after)) = caught else {
        panic!("the session was never caught frozen in {ATTEMPTS} live commits");
    };
    let truth = truth.unwrap_or_else(|e| {
        panic!("the writers' properties fail on the frozen session itself (a test bug):\n{e}")
    });
    assert_path_and_layers(&report, &s, &archive, "auto", 2);
    // The frozen pass read only what the change journal listed: the image
    // checks below are of that path.
    let read = frozen(&report)["frozen_read"].as_str().unwrap_or_default();
    assert!(read.starts_with("journal: "), "frozen_read: {read:?}");
    // And it took big.log's data up to the last pre-copy round from that
    // round's copy, checked, reading only the rest.
    let rounds = frozen(&report)["precopy"].as_array().map_or(0, Vec::len);
    assert!(rounds >= 1, "no pre-copy round: {}", report["frozen"]);
    assert!(
        u64_of(&frozen(&report)["reused_bytes"], "frozen.reused_bytes") > 0,
        "nothing was taken from the pre-copy rounds: {}",
        report["frozen"]
    );
    assert!(
        expected.nodes.len() > SMALL_FILES,
        "the frozen view has only {} paths",
        expected.nodes.len()
    );

    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    assert_image_is(
        &expected,
        &rootfs,
        "the umoci-unpacked image vs the session while frozen",
    );
    let seen = assert_consistent(&rootfs, "the image");
    assert_eq!(
        seen.seq, truth.seq,
        "sequence writers: image vs frozen session"
    );
    assert_eq!(
        seen.mutator, truth.mutator,
        "mutators: image vs frozen session"
    );
    assert_between(&seen, &before, &after, "the image");
}

// ---------------------------------------------------------------------------
// Fallback to a full freeze

#[test]
fn a_frozen_pass_over_the_threshold_falls_back_to_one_frozen_layer() {
    if !root_or_skip("a_frozen_pass_over_the_threshold_falls_back_to_one_frozen_layer") {
        return;
    }
    // The big appender adds 64 KiB every 10 ms: megabytes during the first
    // pass, several times the threshold below.
    const THRESHOLD: u64 = 256 << 10;
    let s = session(
        "live-fallback",
        BALLAST / 2,
        SMALL_FILES,
        Some(all_writers(10_000)),
    );
    let config = s.scratch("config").join("freezeframe.toml");
    write(
        &config,
        // No pre-copy: the frozen pass reads big.log whole, twice over the
        // threshold.
        format!("[freeze]\nlive_fallback_bytes = {THRESHOLD}\nprecopy_rounds = 0\n"),
    );
    let big = host_path(&s, "/home/work/w/big.log");
    let archive = s.out.join("fallback.tar");
    let before = progress(&s);
    let big_before = size_of(&big);
    let mut big_at_freeze = None;
    let cg = s.cgroups.clone();
    let mut cmd = std::process::Command::new(bin());
    cmd.env_remove("FREEZEFRAME_CONFIG")
        .arg("--config")
        .arg(&config)
        .args(["commit", "--json"])
        .args(target_and(
            &s,
            &[&"--pause", &"auto", &"--tag", &"t", &"-o", &archive],
        ));
    let w = run_watching(&mut cmd, || {
        let frozen = cg.freezer_state() == "FROZEN";
        if frozen && big_at_freeze.is_none() {
            big_at_freeze = Some(size_of(&big));
        }
        frozen
    });
    let report = w.outcome.ok().json();
    let after = progress(&s);
    assert_session_goes_on(&s, "after the fallback commit");
    assert!(w.probe_seen, "the session was never frozen");
    let grown = big_at_freeze.expect("seen frozen") - big_before;
    eprintln!(
        "fallback: frozen = {}, big.log grew {grown} bytes before the freeze",
        report["frozen"]
    );
    assert!(
        grown > THRESHOLD,
        "the appender added only {grown} bytes during the first pass: the fallback is not exercised"
    );
    assert_path_and_layers(&report, &s, &archive, "auto-fallback-full", 1);
    assert!(
        u64_of(&frozen(&report)["bytes"], "frozen.bytes") >= BALLAST / 2,
        "a full frozen layer must hold the ballast: {}",
        report["frozen"]
    );

    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    let seen = assert_consistent(&rootfs, "the fallback image");
    assert_between(&seen, &before, &after, "the fallback image");
    check_big(&rootfs.join("home/work/w/big.log"))
        .unwrap_or_else(|e| panic!("the big appender's file in the image: {e}"));
    assert_eq!(
        size_of(&rootfs.join("ballast/random")),
        BALLAST / 2,
        "the ballast is not in the image"
    );
}

#[test]
fn the_last_resort_full_freeze_is_bounded_and_past_its_bound_thaws_and_writes_nothing() {
    if !root_or_skip(
        "the_last_resort_full_freeze_is_bounded_and_past_its_bound_thaws_and_writes_nothing",
    ) {
        return;
    }
    // Every frozen pass reads more than 4 KiB (big.log whole: no pre-copy),
    // so both freezes stop, and the full freeze may last no time at all.
    let s = session(
        "live-bounded",
        BALLAST / 4,
        SMALL_FILES,
        Some(all_writers(10_000)),
    );
    let config = s.scratch("config").join("freezeframe.toml");
    write(
        &config,
        "[freeze]\nlive_fallback_bytes = 4096\nprecopy_rounds = 0\nfallback_max_pause = \"0s\"\n",
    );
    let out = s.scratch("bounded-out");
    let archive = out.join("bounded.tar");
    let cg = s.cgroups.clone();
    let mut cmd = std::process::Command::new(bin());
    cmd.env_remove("FREEZEFRAME_CONFIG")
        .arg("--config")
        .arg(&config)
        .arg("commit")
        .args(target_and(
            &s,
            &[&"--pause", &"auto", &"--tag", &"t", &"-o", &archive],
        ));
    let w = run_watching(&mut cmd, || cg.freezer_state() == "FROZEN");
    assert!(w.probe_seen, "the session was never frozen");
    let failed = w.outcome.failed();
    eprintln!("bounded fallback: {}", failed.stderr);
    for part in ["fallback_max_pause", "thawed", "nothing was written"] {
        assert!(
            failed.stderr.contains(part),
            "the error does not say {part:?}: {}",
            failed.stderr
        );
    }
    assert_eq!(cg.freezer_state(), "THAWED");
    assert_session_goes_on(&s, "after the bounded fallback");
    let left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the output directory: {left:?}");
}

// ---------------------------------------------------------------------------
// Other pauses, and an idle session

#[test]
fn pause_full_and_pause_none_add_one_layer() {
    if !root_or_skip("pause_full_and_pause_none_add_one_layer") {
        return;
    }
    let s = session(
        "live-full-none",
        BALLAST / 4,
        500,
        Some(all_writers(50_000)),
    );
    let cg = s.cgroups.clone();

    let archive = s.out.join("full.tar");
    let before = progress(&s);
    let w = commit_watching(
        target_and(&s, &[&"--pause", &"full", &"--tag", &"t", &"-o", &archive]),
        || cg.freezer_state() == "FROZEN",
    );
    let report = w.outcome.ok().json();
    let after = progress(&s);
    assert_session_goes_on(&s, "after --pause full");
    assert!(w.probe_seen, "--pause full: never frozen");
    eprintln!("--pause full: frozen = {}", report["frozen"]);
    assert_path_and_layers(&report, &s, &archive, "full", 1);
    assert!(
        u64_of(&report["frozen_ms"], "frozen_ms") > 0,
        "frozen_ms is 0"
    );
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked-full"));
    let seen = assert_consistent(&rootfs, "the --pause full image");
    for i in 0..4 {
        assert!(
            before.seq[i] <= seen.seq[i] && seen.seq[i] <= after.seq[i] + 1,
            "--pause full: writer {i} at {} in the image, {} before, {} after",
            seen.seq[i],
            before.seq[i],
            after.seq[i]
        );
    }

    let archive = s.out.join("none.tar");
    let w = commit_watching(
        target_and(&s, &[&"--pause", &"none", &"--tag", &"t", &"-o", &archive]),
        || cg.freezer_state() != "THAWED",
    );
    let report = w.outcome.ok().json();
    assert_session_goes_on(&s, "after --pause none");
    assert!(!w.probe_seen, "--pause none froze the session");
    eprintln!("--pause none: frozen = {}", report["frozen"]);
    assert_path_and_layers(&report, &s, &archive, "none", 1);
    assert_eq!(u64_of(&report["frozen_ms"], "frozen_ms"), 0);
    // Not frozen, so no moment is promised; the image is still one umoci reads.
    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked-none"));
    assert_eq!(size_of(&rootfs.join("ballast/random")), BALLAST / 4);
}

#[test]
fn an_idle_session_is_committed_live_by_default_in_one_layer_with_a_short_pause() {
    if !root_or_skip("an_idle_session_is_committed_live_by_default_in_one_layer_with_a_short_pause")
    {
        return;
    }
    let s = session("live-idle", BALLAST, SMALL_FILES, None);
    s.exec(
        "mkdir -p /data/made && echo inside > /data/made/f && chmod 0750 /data/made \
            && rm -r /data/mut/tf && echo home > /home/work/notes && ln -s notes /home/work/link",
    );
    // Older than the racy margin: nothing counts as changed.
    std::thread::sleep(Duration::from_millis(200));
    let expected = expected_image(&s);
    let archive = s.out.join("idle.tar");
    // No --pause: auto is the default.
    let report = commit(target_and(&s, &[&"--tag", &"t", &"-o", &archive]));
    s.assert_running_and_thawed("after the idle commit");
    let f = frozen(&report);
    eprintln!(
        "idle session: frozen = {f}, elapsed_ms = {}",
        report["elapsed_ms"]
    );
    assert_path_and_layers(&report, &s, &archive, "auto", 1);
    assert_eq!(u64_of(&f["entries"], "frozen.entries"), 0, "{f}");
    assert_eq!(u64_of(&f["bytes"], "frozen.bytes"), 0, "{f}");
    let ms = u64_of(&report["frozen_ms"], "frozen_ms");
    assert!(ms <= 300, "an idle session was frozen for {ms} ms");

    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    assert_image_is(
        &expected,
        &rootfs,
        "the idle session's image vs the session",
    );
    assert_image_is(
        &expected_image(&s),
        &rootfs,
        "the idle session's image vs the session after the commit",
    );
}

// ---------------------------------------------------------------------------
// Writes that change no timestamp

#[test]
fn a_file_written_through_a_shared_mapping_is_captured_as_of_the_freeze() {
    if !root_or_skip("a_file_written_through_a_shared_mapping_is_captured_as_of_the_freeze") {
        return;
    }
    let s = session("live-mmap", BALLAST, SMALL_FILES, None);
    mkdirs(&s.home.join("w"));
    let file = s.home.join("w/mapped.bin");
    let writer = MappedWriter::start(&file, &s.cgroups);
    // Every page dirty, the file's times settled well before the first pass.
    assert!(
        wait_until(Duration::from_secs(10), || fs::read(&file)
            .is_ok_and(|b| first_sweep(&b) > 100)),
        "the mapped writer did not start"
    );
    std::thread::sleep(Duration::from_millis(500));
    // As in the frozen-moment oracle: a commit that thawed before the committer
    // could be stopped caught nothing, and another one is made.
    let mut caught = None;
    for attempt in 1..=3 {
        let before = first_sweep(&fs::read(&file).expect("read mapped.bin"));
        let archive = s.out.join(format!("mmap-{attempt}.tar"));
        let run = commit_stopped_while_frozen(
            target_and(&s, &[&"--pause", &"auto", &"--tag", &"t", &"-o", &archive]),
            &s.cgroups,
            || fs::read(&file).expect("read mapped.bin while frozen"),
        );
        let report = run.outcome.ok().json();
        s.assert_running_and_thawed(&format!("after commit {attempt}"));
        let after = first_sweep(&fs::read(&file).expect("read mapped.bin"));
        assert!(after > before, "the mapped writer is stuck at {before}");
        eprintln!(
            "mapped writer: sweep {before} at the start, {after} at the end; caught frozen: {}; \
             frozen = {}",
            run.during.is_some(),
            report["frozen"]
        );
        if let Some(at_freeze) = run.during {
            caught = Some((archive, at_freeze, before));
            break;
        }
    }
    let (archive, at_freeze, before) =
        caught.expect("the session was never caught frozen in 3 live commits");
    let frozen_sweep = check_mapped(&at_freeze).expect("the file while frozen")[0];

    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    let image = fs::read(rootfs.join("home/work/w/mapped.bin")).expect("mapped.bin in the image");
    if image != at_freeze {
        let held = match check_mapped(&image) {
            Ok(v) => format!("sweep {}", v[0]),
            Err(e) => format!("a torn file ({e})"),
        };
        panic!(
            "the image holds {held} of the mapped file, but the session was frozen at sweep \
             {frozen_sweep} (sweep {before} when the commit started): the frozen pass kept \
             what the first pass read"
        );
    }
    drop(writer);
}
