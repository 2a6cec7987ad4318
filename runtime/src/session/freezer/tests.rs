//! The freezer against fake cgroup files in a temp dir, with a thread playing
//! the kernel.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// Replaces a file the way the kernel changes it: all at once.
fn put(dir: &Path, file: &str, content: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, dir.join(file)).unwrap();
}

fn get(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap()
}

fn fake(version: CgroupVersion) -> (tempfile::TempDir, Cgroup) {
    let tmp = tempfile::tempdir().unwrap();
    match version {
        CgroupVersion::V1 => put(tmp.path(), V1_STATE, "THAWED\n"),
        CgroupVersion::V2 => {
            put(tmp.path(), V2_FREEZE, "0\n");
            put(tmp.path(), V2_EVENTS, "populated 1\nfrozen 0\n");
        }
    }
    let cg = Cgroup::new(version, tmp.path());
    (tmp, cg)
}

/// A thread playing the v2 kernel: once `cgroup.freeze` reads 1, it waits
/// `delay` (None: forever) and reports `frozen 1`; it reports `frozen 0` when
/// `cgroup.freeze` goes back to 0 and stops when told to.
fn v2_kernel(
    dir: PathBuf,
    delay: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<bool> {
    thread::spawn(move || {
        let mut asked_at = None;
        let mut saw_thaw = false;
        while !stop.load(Ordering::Relaxed) {
            let freeze = fs::read_to_string(dir.join(V2_FREEZE)).unwrap_or_default();
            match (freeze.trim(), asked_at) {
                ("1", None) => asked_at = Some(Instant::now()),
                ("1", Some(at)) if delay.is_some_and(|d| at.elapsed() >= d) => {
                    put(&dir, V2_EVENTS, "populated 1\nfrozen 1\n")
                }
                ("0", Some(_)) => {
                    saw_thaw = true;
                    asked_at = None;
                    put(&dir, V2_EVENTS, "populated 1\nfrozen 0\n");
                }
                _ => {}
            }
            thread::sleep(Duration::from_millis(1));
        }
        saw_thaw
    })
}

#[test]
fn state_table() {
    use FreezerState::*;
    /// Version, control files and their content, the state (None: a parse error).
    type Case = (
        CgroupVersion,
        &'static [(&'static str, &'static str)],
        Option<FreezerState>,
    );
    let cases: &[Case] = &[
        (CgroupVersion::V1, &[(V1_STATE, "THAWED\n")], Some(Thawed)),
        (
            CgroupVersion::V1,
            &[(V1_STATE, "FREEZING\n")],
            Some(Freezing),
        ),
        (CgroupVersion::V1, &[(V1_STATE, "FROZEN\n")], Some(Frozen)),
        (CgroupVersion::V1, &[(V1_STATE, "frozen\n")], None),
        (CgroupVersion::V1, &[(V1_STATE, "")], None),
        (
            CgroupVersion::V2,
            &[(V2_FREEZE, "0\n"), (V2_EVENTS, "populated 1\nfrozen 0\n")],
            Some(Thawed),
        ),
        (
            CgroupVersion::V2,
            &[(V2_FREEZE, "1\n"), (V2_EVENTS, "populated 1\nfrozen 0\n")],
            Some(Freezing),
        ),
        (
            CgroupVersion::V2,
            &[(V2_FREEZE, "1\n"), (V2_EVENTS, "populated 0\nfrozen 1\n")],
            Some(Frozen),
        ),
        // Frozen by an ancestor: not by this cgroup.
        (
            CgroupVersion::V2,
            &[(V2_FREEZE, "0\n"), (V2_EVENTS, "populated 1\nfrozen 1\n")],
            Some(Thawed),
        ),
        (
            CgroupVersion::V2,
            &[(V2_FREEZE, "1\n"), (V2_EVENTS, "populated 1\n")],
            None,
        ),
        (
            CgroupVersion::V2,
            &[(V2_FREEZE, "2\n"), (V2_EVENTS, "frozen 0\n")],
            None,
        ),
    ];
    for (version, files, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        for (f, c) in *files {
            put(tmp.path(), f, c);
        }
        let got = Cgroup::new(*version, tmp.path()).state();
        match want {
            Some(w) => assert_eq!(got.unwrap(), *w, "{version} {files:?}"),
            None => {
                let e = got.unwrap_err();
                assert!(matches!(e, Error::Parse { .. }), "{version} {files:?}: {e}");
                assert!(e.to_string().contains(tmp.path().to_str().unwrap()), "{e}");
            }
        }
    }
}

#[test]
fn missing_files_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = Cgroup::new(CgroupVersion::V1, tmp.path().join("gone"));
    let e = cg.state().unwrap_err().to_string();
    assert!(
        e.starts_with("failed to read ") && e.contains("gone/freezer.state"),
        "{e}"
    );
    let e = cg.thaw().unwrap_err().to_string();
    assert!(
        e.starts_with("failed to write \"THAWED\" to ") && e.contains("gone/freezer.state"),
        "{e}"
    );
    // Nothing was created in the (fake) cgroup dir.
    let cg = Cgroup::new(CgroupVersion::V2, tmp.path());
    assert!(cg.freeze(Duration::from_millis(10)).is_err());
    assert!(!tmp.path().join(V2_FREEZE).exists());
}

#[test]
fn v1_freeze_and_thaw_write_the_state() {
    let (tmp, cg) = fake(CgroupVersion::V1);
    // With no kernel behind it the fake file reads back what was written.
    cg.freeze(Duration::from_secs(1)).unwrap();
    assert_eq!(get(tmp.path(), V1_STATE), "FROZEN");
    assert_eq!(cg.state().unwrap(), FreezerState::Frozen);
    cg.thaw().unwrap();
    assert_eq!(get(tmp.path(), V1_STATE), "THAWED");
}

#[test]
fn v1_pause_waits_for_an_owners_freeze_and_leaves_it_frozen() {
    let (tmp, cg) = fake(CgroupVersion::V1);
    put(tmp.path(), V1_STATE, "FREEZING\n");
    let dir = tmp.path().to_path_buf();
    let kernel = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        put(&dir, V1_STATE, "FROZEN\n");
    });
    let start = Instant::now();
    let pause = cg.pause(Duration::from_secs(5)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(pause.was_frozen());
    kernel.join().unwrap();
    drop(pause);
    assert_eq!(get(tmp.path(), V1_STATE), "FROZEN\n");
}

#[test]
fn v1_pause_of_an_owners_freeze_that_never_completes_times_out_untouched() {
    let (tmp, cg) = fake(CgroupVersion::V1);
    put(tmp.path(), V1_STATE, "FREEZING\n");
    let e = cg.pause(Duration::from_millis(50)).err().unwrap();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(get(tmp.path(), V1_STATE), "FREEZING\n");
}

#[test]
fn v1_pause_thaws_on_drop_resume_and_panic() {
    let (tmp, cg) = fake(CgroupVersion::V1);
    {
        let pause = cg.pause(Duration::from_secs(1)).unwrap();
        assert!(!pause.was_frozen());
        assert_eq!(get(tmp.path(), V1_STATE), "FROZEN");
    }
    assert_eq!(get(tmp.path(), V1_STATE), "THAWED");

    let pause = cg.pause(Duration::from_secs(1)).unwrap();
    thread::sleep(Duration::from_millis(20));
    let frozen = pause.resume().unwrap();
    assert!(frozen >= Duration::from_millis(20), "{frozen:?}");
    assert_eq!(get(tmp.path(), V1_STATE), "THAWED");

    let r = std::panic::catch_unwind(|| {
        let _pause = cg.pause(Duration::from_secs(1)).unwrap();
        assert_eq!(get(tmp.path(), V1_STATE), "FROZEN");
        panic!("the walk failed");
    });
    assert!(r.is_err());
    assert_eq!(get(tmp.path(), V1_STATE), "THAWED");
}

#[test]
fn resume_reports_a_thaw_failure() {
    let (tmp, cg) = fake(CgroupVersion::V1);
    let pause = cg.pause(Duration::from_secs(1)).unwrap();
    fs::remove_file(tmp.path().join(V1_STATE)).unwrap();
    let e = pause.resume().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Write {
                value: "THAWED",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn v2_freeze_waits_for_the_kernel() {
    let (tmp, cg) = fake(CgroupVersion::V2);
    let stop = Arc::new(AtomicBool::new(false));
    let kernel = v2_kernel(
        tmp.path().into(),
        Some(Duration::from_millis(100)),
        stop.clone(),
    );
    let start = Instant::now();
    cg.freeze(Duration::from_secs(5)).unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert_eq!(cg.state().unwrap(), FreezerState::Frozen);
    cg.thaw().unwrap();
    assert_eq!(get(tmp.path(), V2_FREEZE), "0");
    stop.store(true, Ordering::Relaxed);
    kernel.join().unwrap();
}

#[test]
fn v2_freeze_timeout_thaws_back() {
    let (tmp, cg) = fake(CgroupVersion::V2);
    let stop = Arc::new(AtomicBool::new(false));
    let kernel = v2_kernel(tmp.path().into(), None, stop.clone());
    let start = Instant::now();
    let e = cg.freeze(Duration::from_millis(200)).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "cgroup {} did not freeze within 200ms",
            tmp.path().display()
        )
    );
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(get(tmp.path(), V2_FREEZE), "0");
    thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    assert!(kernel.join().unwrap(), "the kernel never saw the thaw");
    // The pause API reports the same and leaves the cgroup thawed.
    let e = cg.pause(Duration::from_millis(50)).err().unwrap();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(get(tmp.path(), V2_FREEZE), "0");
}

#[test]
fn v2_timeout_whose_thaw_fails_says_so() {
    let (tmp, cg) = fake(CgroupVersion::V2);
    let dir = tmp.path().to_path_buf();
    // The kernel removes cgroup.freeze as soon as the freeze is asked for.
    let kernel = thread::spawn(move || loop {
        if fs::read_to_string(dir.join(V2_FREEZE))
            .unwrap_or_default()
            .trim()
            == "1"
        {
            fs::remove_file(dir.join(V2_FREEZE)).unwrap();
            return;
        }
        thread::sleep(Duration::from_millis(1));
    });
    let e = cg.freeze(Duration::from_millis(200)).unwrap_err();
    kernel.join().unwrap();
    assert!(matches!(e, Error::TimeoutNotThawed { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("and thawing it back failed: failed to write \"0\" to "),
        "{msg}"
    );
}

#[test]
fn v2_pause_of_frozen_cgroup_stays_frozen() {
    let (tmp, cg) = fake(CgroupVersion::V2);
    put(tmp.path(), V2_FREEZE, "1\n");
    put(tmp.path(), V2_EVENTS, "populated 1\nfrozen 1\n");
    let pause = cg.pause(Duration::from_secs(1)).unwrap();
    assert!(pause.was_frozen());
    pause.resume().unwrap();
    assert_eq!(get(tmp.path(), V2_FREEZE), "1\n");
    drop(cg.pause(Duration::from_secs(1)).unwrap());
    assert_eq!(get(tmp.path(), V2_FREEZE), "1\n");
}

#[test]
fn version_strings() {
    for (s, v) in [
        ("v1", CgroupVersion::V1),
        ("v2", CgroupVersion::V2),
        ("2", CgroupVersion::V2),
    ] {
        assert_eq!(s.parse::<CgroupVersion>().unwrap(), v);
    }
    assert_eq!(CgroupVersion::V1.to_string(), "v1");
    assert!("v3".parse::<CgroupVersion>().is_err());
}
