//! Hardening of the containers freezeframe runs and of the archives it
//! writes, as root: each finding as it was found, and the clear error or
//! safe outcome it now gets.
//!
//! | finding | test |
//! |---|---|
//! | 11: libcontainer's state has no start time and its `status` was ignored: a stopped state holding a live session's pid committed that session | [`a_stopped_or_forged_state_holding_a_live_sessions_pid_is_not_committed`] |
//! | 14: libcontainer rewrites `state.json` in place; an empty or cut-short one | [`an_empty_or_cut_short_state_is_named_by_every_verb_and_a_forced_delete_still_works`] |
//! | 14: the sidecar was linked after the archive: a failure left an archive of a failed commit | [`a_sidecar_that_cannot_be_linked_leaves_no_archive`] |
//! | fuzzing: a `--change` (or a request's `changes`) nested 100,000 deep overflowed the parser's stack; `ENV A=$A$A` given 40 times needed 2^40 bytes | [`a_change_nested_too_deep_or_expanding_without_bound_is_refused`] |

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use freezeframe_tests::containers::*;
use freezeframe_tests::*;

/// freezeframe's record of a container's init, beside libcontainer's state.
const INIT_RECORD: &str = "freezeframe-init.json";

/// A running freezeframe container over a busybox overlay, under a private
/// state root; torn down when dropped.
struct Session {
    c: FfContainer,
    _ovl: Overlay,
}

impl Session {
    fn run(d: &Path, name: &str) -> Session {
        let lower = d.join("lower");
        populate_busybox(&lower);
        let ovl = Overlay::mount(&[&lower], "");
        let bundle = d.join("bundle");
        write_bundle_config(&bundle, &ovl.merged, &["sleep", "100000"], &[], &[]);
        let c = FfContainer::new(unique_id(name), Some(d.join("state")), d.join("ff.log"));
        c.run_detached(&bundle, &[]).ok();
        Session { c, _ovl: ovl }
    }

    /// `freezeframe --root R commit ID -o OUT`, whatever its outcome.
    fn commit(&self, id: &str, out: &Path) -> Outcome {
        self.c.ff(args!["commit", id, "-o", out])
    }
}

/// A copy of the session's state directory as container `id`, with its
/// `state.json` edited by `edit`.
fn forge(s: &Session, id: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let from = s.c.state_dir();
    let to = s.c.state_root().join(id);
    mkdirs(&to);
    for entry in fs::read_dir(&from).expect("read the state dir").flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy the state");
        }
    }
    let file = to.join("state.json");
    let mut state: Value = serde_json::from_str(&read(&file)).expect("parse state.json");
    state["id"] = id.into();
    edit(&mut state);
    write(&file, state.to_string());
    to
}

/// Before, a state file that said `stopped`, or whose pid had been reused
/// by another process, committed whatever process had the pid now: libcontainer
/// records no start time, and the status was not looked at. Now the commit
/// refuses, naming the state and what is wrong with it, and writes nothing;
/// the real container still commits, after a signal it survives too.
#[test]
fn a_stopped_or_forged_state_holding_a_live_sessions_pid_is_not_committed() {
    if !root_or_skip("a_stopped_or_forged_state_holding_a_live_sessions_pid_is_not_committed") {
        return;
    }
    let dir = tempdir("rh-pid");
    let d = dir.path();
    let s = Session::run(d, "rh-pid");
    let pid = s.c.pid();
    let record: Value = serde_json::from_str(&read(&s.c.state_dir().join(INIT_RECORD)))
        .expect("parse the init record");
    assert_eq!(record["pid"], pid, "{record}");

    // A stopped container's state that still holds the pid.
    let stopped = forge(&s, "stopped", |st| st["status"] = "stopped".into());
    // A container whose init died and whose pid another process got: the
    // record is of the process that had the pid before.
    let reused = forge(&s, "reused", |_| {});
    let mut old = record.clone();
    old["start"] = (record["start"].as_u64().expect("start") - 1).into();
    write(&reused.join(INIT_RECORD), old.to_string());
    // A state whose pid was changed to a live process of another session.
    let mut other = Command::new("sleep").arg("1000").spawn().expect("spawn");
    let moved = forge(&s, "moved", |st| st["pid"] = other.id().into());
    for (id, dir, want) in [
        ("stopped", &stopped, "says it has stopped".to_string()),
        ("reused", &reused, "the pid was reused".to_string()),
        ("moved", &moved, format!("records its init as pid {pid}")),
    ] {
        let out = d.join(format!("{id}.tar"));
        let refused = s.commit(id, &out);
        assert!(!refused.success(), "{id}: committed: {refused}");
        assert!(
            refused.stderr.contains("not running") && refused.stderr.contains(want.as_str()),
            "{id}: {refused}"
        );
        assert!(!out.exists(), "{id}: an archive was written");
        // The verbs see a stopped container, and signal nothing.
        if id != "stopped" {
            let st = s.c.ff(["state", id]).ok().json();
            assert_eq!(st["status"], "stopped", "{id}: {st}");
            assert!(!s.c.ff(["kill", id, "KILL"]).success(), "{id}: killed");
        }
        fs::remove_dir_all(dir).expect("remove the forged state");
    }
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(s.c.status(), "running", "the session after the refusals");

    // libcontainer writes "stopped" into the state once any signal is sent;
    // a signal the session survives leaves it running, and committable.
    s.c.ff(["kill", &s.c.id, "CONT"]).ok();
    let raw: Value =
        serde_json::from_str(&read(&s.c.state_dir().join("state.json"))).expect("parse state.json");
    assert_eq!(raw["status"], "running", "{raw}");

    let out = d.join("real.tar");
    let report = s.commit(&s.c.id, &out).ok();
    assert!(out.is_file(), "{report}");
}

/// libcontainer rewrites `state.json` in place (truncate, then write), so a
/// reader may find it empty or cut short. Each verb and the commit name the
/// file and say what is wrong with it; `list` names it and lists the
/// others; a forced delete kills the init the record names and removes the
/// container.
#[test]
fn an_empty_or_cut_short_state_is_named_by_every_verb_and_a_forced_delete_still_works() {
    if !root_or_skip(
        "an_empty_or_cut_short_state_is_named_by_every_verb_and_a_forced_delete_still_works",
    ) {
        return;
    }
    let dir = tempdir("rh-trunc");
    let d = dir.path();
    let s = Session::run(d, "rh-trunc");
    let pid = s.c.pid();
    let spare = forge(&s, "spare", |st| st["status"] = "stopped".into());
    let file = s.c.state_dir().join("state.json");
    let whole = read(&file);
    for (what, text) in [("empty", ""), ("cut short", &whole[..whole.len() / 2])] {
        write(&file, text);
        let committed = s.commit(&s.c.id, &d.join("out.tar"));
        assert!(!committed.success(), "{what}: {committed}");
        assert!(
            committed.stderr.contains(path_str(&file))
                && committed
                    .stderr
                    .contains(&format!("the state file is {what}")),
            "{what}: {committed}"
        );
        for verb in [args!["state", &s.c.id], args!["delete", &s.c.id]] {
            let o = s.c.ff(verb);
            assert!(!o.success(), "{what}: {o}");
            assert!(
                o.stderr.contains(path_str(&file)) && o.stderr.contains("unreadable state"),
                "{what}: {o}"
            );
        }
        let listed = s.c.ff(["list", "--format", "json"]).ok();
        let ids: Vec<String> = listed
            .json()
            .as_array()
            .expect("list")
            .iter()
            .map(|c| c["id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids, ["spare"], "{what}: {listed}");
        assert!(listed.stderr.contains(path_str(&file)), "{what}: {listed}");
    }
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the init died meanwhile"
    );
    s.c.ff(["delete", "--force", &s.c.id]).ok();
    assert!(!s.c.state_dir().exists(), "the state dir is still there");
    assert!(
        wait_until(Duration::from_secs(5), || !Path::new(&format!(
            "/proc/{pid}/cmdline"
        ))
        .exists()
            || read(Path::new(&format!("/proc/{pid}/cmdline"))).is_empty()),
        "the init {pid} still runs"
    );
    fs::remove_dir_all(spare).expect("remove the spare state");
}

/// Before, the archive was linked first and its sidecar after: when the
/// sidecar could not be linked (a directory in its place), the commit failed
/// and left its archive, with no sidecar. Now the sidecar goes first, and
/// the failure leaves nothing new.
#[test]
fn a_sidecar_that_cannot_be_linked_leaves_no_archive() {
    if !root_or_skip("a_sidecar_that_cannot_be_linked_leaves_no_archive") {
        return;
    }
    let dir = tempdir("rh-sidecar");
    let d = dir.path();
    let upper = d.join("upper");
    mkdirs(&upper.join("etc"));
    write(&upper.join("etc/app.conf"), "x\n");
    let out = d.join("out");
    mkdirs(&out.join("img.tar.sha256"));
    let failed = OfflineCommit::new(&upper).output(out.join("img.tar")).run();
    assert!(!failed.success(), "{failed}");
    assert!(
        failed
            .stderr
            .contains(path_str(&out.join("img.tar.sha256"))),
        "{failed}"
    );
    assert_eq!(dir_names(&out), ["img.tar.sha256"], "{failed}");
    assert!(out.join("img.tar.sha256").is_dir());

    fs::remove_dir(out.join("img.tar.sha256")).expect("rmdir");
    OfflineCommit::new(&upper)
        .output(out.join("img.tar"))
        .run()
        .ok();
    assert_eq!(dir_names(&out), ["img.tar", "img.tar.sha256"]);
    let sidecar = read(&out.join("img.tar.sha256"));
    assert_eq!(
        sidecar,
        format!(
            "{}  img.tar\n",
            sha256_file(&out.join("img.tar")).trim_start_matches("sha256:")
        )
    );
}

/// Found while fuzzing `--change`, which a request's `changes` also are:
/// `${A:-` nested 100,000 deep overflowed the recursive parser's stack (the
/// process aborted; 20,000 is as deep as one argument goes), and `ENV A=$A$A` given 40 times grew a value to 2^40
/// bytes. Now each is refused with an error naming the instruction, and
/// nothing is written.
#[test]
fn a_change_nested_too_deep_or_expanding_without_bound_is_refused() {
    if !root_or_skip("a_change_nested_too_deep_or_expanding_without_bound_is_refused") {
        return;
    }
    let dir = tempdir("rh-change");
    let d = dir.path();
    let upper = d.join("upper");
    mkdirs(&upper.join("etc"));
    write(&upper.join("etc/app.conf"), "x\n");
    // 20,000 deep: as deep as one argument may be long (128 KiB).
    let deep = format!("ENV A={}x{}", "${A:-".repeat(20_000), "}".repeat(20_000));
    let out = d.join("deep.tar");
    let refused = OfflineCommit::new(&upper).change(&deep).output(&out).run();
    assert!(
        refused.status.code().is_some_and(|c| c != 0),
        "{}: {}",
        refused.status,
        refused.stderr
    );
    assert!(
        refused.stderr.contains("nested more than 16 deep"),
        "{}",
        refused.stderr
    );
    assert!(!out.exists());

    let out = d.join("doubling.tar");
    let mut commit = OfflineCommit::new(&upper).change("ENV A=0123456789abcdef");
    for _ in 0..40 {
        commit = commit.change("ENV A=$A$A");
    }
    let refused = commit.output(&out).run();
    assert!(refused.status.code().is_some(), "{refused}");
    assert!(!refused.success(), "{refused}");
    assert!(
        refused.stderr.contains("expands to more than 65536 bytes"),
        "{refused}"
    );
    assert!(!out.exists() && !d.join("doubling.tar.sha256").exists());
}
