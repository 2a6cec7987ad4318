//! The freezer against the real kernel: a v1 freezer cgroup and a cgroup on the
//! cgroup2 mount, each holding a busy process. Needs root; skips (or fails under
//! CI) when it cannot create cgroups.

mod common;

use std::time::{Duration, Instant};

use common::{cpu_ticks, runs_during, runs_within, skip, TestCgroup};
use freezeframe_runtime::session::freezer::{Cgroup, CgroupVersion, Error, FreezerState};

const TIMEOUT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);
const WAKE: Duration = Duration::from_secs(3);

fn setup(test: &str, version: CgroupVersion) -> Option<(TestCgroup, i32)> {
    match TestCgroup::create(version) {
        Ok(mut cg) => {
            let pid = cg.spawn_busy();
            assert!(runs_within(pid, WAKE), "the busy child never ran");
            Some((cg, pid))
        }
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// Freezes, proves the process stopped, thaws, proves it runs; then times a few
/// more rounds. Returns the freeze times.
fn freeze_thaw_rounds(cg: &Cgroup, pid: i32) -> Vec<Duration> {
    let start = Instant::now();
    cg.freeze(TIMEOUT).unwrap();
    let first = start.elapsed();
    assert_eq!(cg.state().unwrap(), FreezerState::Frozen);
    assert!(!runs_during(pid, QUIET), "the process ran while frozen");
    let (_, letter) = cpu_ticks(pid);
    cg.thaw().unwrap();
    assert_eq!(cg.state().unwrap(), FreezerState::Thawed);
    assert!(
        runs_within(pid, WAKE),
        "the process did not run again after the thaw"
    );
    eprintln!("{} frozen: /proc/{pid}/stat state {letter:?}", cg.version());

    let mut times = vec![first];
    for _ in 0..20 {
        let start = Instant::now();
        cg.freeze(TIMEOUT).unwrap();
        times.push(start.elapsed());
        cg.thaw().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    times.sort();
    eprintln!(
        "{} freeze of a busy process: min {:?}, median {:?}, max {:?} over {} rounds",
        cg.version(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    times
}

#[test]
fn v1_freezer_freezes_and_thaws_a_real_process() {
    let Some((tcg, pid)) = setup(
        "v1_freezer_freezes_and_thaws_a_real_process",
        CgroupVersion::V1,
    ) else {
        return;
    };
    let found = Cgroup::of_pid(pid, None).unwrap();
    assert_eq!(found, tcg.cgroup, "of_pid picks the v1 freezer cgroup");
    assert_eq!(
        Cgroup::of_pid(pid, Some(CgroupVersion::V1)).unwrap(),
        tcg.cgroup
    );
    freeze_thaw_rounds(&found, pid);
}

#[test]
fn v2_freezer_freezes_and_thaws_a_real_process() {
    let Some((tcg, pid)) = setup(
        "v2_freezer_freezes_and_thaws_a_real_process",
        CgroupVersion::V2,
    ) else {
        return;
    };
    let found = Cgroup::of_pid(pid, Some(CgroupVersion::V2)).unwrap();
    assert_eq!(found, tcg.cgroup);
    let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    if mine.lines().any(|l| l.ends_with(":freezer:/")) || !mine.contains(":freezer:") {
        // Not in a v1 freezer cgroup (or no v1 at all): auto falls back to v2.
        assert_eq!(Cgroup::of_pid(pid, None).unwrap(), tcg.cgroup);
    }
    freeze_thaw_rounds(&found, pid);
    // The kernel's own word on v2.
    found.freeze(TIMEOUT).unwrap();
    let events = std::fs::read_to_string(found.dir().join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    found.thaw().unwrap();
}

#[test]
fn a_pause_thaws_when_it_ends() {
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        let Some((tcg, pid)) = setup("a_pause_thaws_when_it_ends", version) else {
            return;
        };
        let cg = &tcg.cgroup;
        {
            let pause = cg.pause(TIMEOUT).unwrap();
            assert!(!pause.was_frozen());
            assert!(!runs_during(pid, QUIET), "{version}: ran while paused");
        }
        assert!(runs_within(pid, WAKE), "{version}: drop did not thaw");

        let pause = cg.pause(TIMEOUT).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let frozen = pause.resume().unwrap();
        assert!(frozen >= Duration::from_millis(50), "{frozen:?}");
        assert!(runs_within(pid, WAKE), "{version}: resume did not thaw");
    }
}

#[test]
fn an_owners_pause_survives_ours() {
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        let Some((tcg, pid)) = setup("an_owners_pause_survives_ours", version) else {
            return;
        };
        // The owner pauses the session the way runc pause does.
        match version {
            CgroupVersion::V1 => tcg.write("freezer.state", "FROZEN"),
            CgroupVersion::V2 => tcg.write("cgroup.freeze", "1"),
        }
        let cg = &tcg.cgroup;
        let pause = cg.pause(TIMEOUT).unwrap();
        assert!(pause.was_frozen());
        drop(pause);
        assert_eq!(cg.state().unwrap(), FreezerState::Frozen, "{version}");
        cg.pause(TIMEOUT).unwrap().resume().unwrap();
        assert_eq!(cg.state().unwrap(), FreezerState::Frozen, "{version}");
        assert!(
            !runs_during(pid, QUIET),
            "{version}: ran while paused by its owner"
        );
    }
}

#[test]
fn the_root_cgroup_is_refused() {
    if !freezeframe_tests::root_or_skip("the_root_cgroup_is_refused") {
        return;
    }
    let in_root = |pid: i32, version: CgroupVersion| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        text.lines().any(|l| match version {
            CgroupVersion::V1 => l.contains(":freezer:") && l.ends_with(":/"),
            CgroupVersion::V2 => l == "0::/",
        })
    };
    let mut checked = 0;
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        if common::mount_point(version).is_none() {
            continue;
        }
        let Some(pid) = [std::process::id() as i32, 1]
            .into_iter()
            .find(|&p| in_root(p, version))
        else {
            continue;
        };
        let e = Cgroup::of_pid(pid, Some(version)).unwrap_err();
        assert!(matches!(e, Error::RootCgroup { .. }), "{version}: {e}");
        assert!(
            e.to_string().contains("refusing to freeze the whole host"),
            "{e}"
        );
        checked += 1;
    }
    if checked == 0 {
        skip(
            "the_root_cgroup_is_refused",
            "neither this process nor pid 1 is in a root cgroup",
        );
    }
}
