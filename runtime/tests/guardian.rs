//! The guardian process, through `examples/guardian.rs` (which wires
//! `guardian_main` the way the `freezeframe` binary does): first against fake
//! cgroup files (no root needed), then against real v1 and v2 cgroups.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{example_exe, runs_during, runs_within, skip, TestCgroup};
use freezeframe_runtime::session::freezer::{Cgroup, CgroupVersion, FreezerState};
use freezeframe_runtime::session::guardian::{Error, Guardian};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn fake_v1(state: &str) -> (tempfile::TempDir, Cgroup) {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("freezer.state"), state).unwrap();
    let cg = Cgroup::new(CgroupVersion::V1, tmp.path());
    (tmp, cg)
}

fn state_file(dir: &Path) -> String {
    fs::read_to_string(dir.join("freezer.state")).unwrap()
}

/// Whether a process has exited (gone, or a zombie waiting for its new parent).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Starts `guardian hold` (a committer that freezes under a guardian and waits to
/// be killed) and returns it and its guardian's pid once the cgroup is frozen.
fn start_holder(cg: &Cgroup) -> (Child, u32) {
    let mut holder = Command::new(example_exe())
        .arg("hold")
        .arg("--version")
        .arg(cg.version().to_string())
        .arg("--cgroup")
        .arg(cg.dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let guardian: u32 = line
        .strip_prefix("frozen ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("holder said {line:?}"));
    (holder, guardian)
}

/// SIGKILLs the committer and returns how long until the cgroup was thawed.
fn kill_holder(mut holder: Child, guardian: u32, cg: &Cgroup) -> Duration {
    assert_eq!(cg.state().unwrap(), FreezerState::Frozen);
    let killed = Instant::now();
    kill(Pid::from_raw(holder.id() as i32), Signal::SIGKILL).unwrap();
    holder.wait().unwrap();
    // A fake file may be caught mid-write (empty): not thawed yet.
    wait_until(Duration::from_secs(2), || {
        cg.state().ok() == Some(FreezerState::Thawed)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} still frozen 2 s after its committer died",
            cg.dir().display()
        )
    });
    let thawed = killed.elapsed();
    assert!(
        wait_until(Duration::from_secs(2), || gone(guardian)).is_some(),
        "the guardian did not exit"
    );
    thawed
}

#[test]
fn sigkill_of_the_committer_thaws() {
    let (tmp, cg) = fake_v1("THAWED\n");
    let (holder, guardian) = start_holder(&cg);
    assert_eq!(state_file(tmp.path()), "FROZEN");
    kill_holder(holder, guardian, &cg);
    assert_eq!(state_file(tmp.path()), "THAWED");
}

#[test]
fn a_released_guardian_leaves_the_cgroup_alone() {
    let (tmp, cg) = fake_v1("THAWED\n");
    let guardian = Guardian::spawn(&example_exe(), &cg).unwrap();
    // Frozen by the committer (or anyone) after the guardian started.
    fs::write(tmp.path().join("freezer.state"), "FROZEN\n").unwrap();
    guardian.release().unwrap();
    assert_eq!(state_file(tmp.path()), "FROZEN\n");
}

#[test]
fn dropping_the_guardian_thaws() {
    let (tmp, cg) = fake_v1("THAWED\n");
    let guardian = Guardian::spawn(&example_exe(), &cg).unwrap();
    fs::write(tmp.path().join("freezer.state"), "FROZEN\n").unwrap();
    drop(guardian);
    assert_eq!(state_file(tmp.path()), "THAWED");
}

#[test]
fn a_session_paused_before_the_guardian_started_stays_paused() {
    let (tmp, cg) = fake_v1("FROZEN\n");
    drop(Guardian::spawn(&example_exe(), &cg).unwrap());
    assert_eq!(state_file(tmp.path()), "FROZEN\n");
}

#[test]
fn the_guardian_ignores_interrupts_and_terminates() {
    let (tmp, cg) = fake_v1("THAWED\n");
    let guardian = Guardian::spawn(&example_exe(), &cg).unwrap();
    fs::write(tmp.path().join("freezer.state"), "FROZEN\n").unwrap();
    let pid = Pid::from_raw(guardian.id() as i32);
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        kill(pid, sig).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!gone(guardian.id()), "a signal killed the guardian");
    assert_eq!(state_file(tmp.path()), "FROZEN\n");
    // Its own process group: not the test's.
    let pgid = nix::unistd::getpgid(Some(pid)).unwrap();
    assert_eq!(pgid, pid);
    drop(guardian);
    assert_eq!(state_file(tmp.path()), "THAWED");
}

#[test]
fn spawn_failures_are_clear() {
    let (tmp, cg) = fake_v1("THAWED\n");
    let dir = tmp.path().display().to_string();

    let e = Guardian::spawn(Path::new("/nonexistent/freezeframe"), &cg).unwrap_err();
    assert!(matches!(e, Error::Spawn { .. }), "{e}");
    assert!(
        e.to_string().contains("/nonexistent/freezeframe") && e.to_string().contains(&dir),
        "{e}"
    );

    // Something that is not a guardian at all.
    let e = Guardian::spawn(Path::new("/bin/echo"), &cg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("instead of \"ready\""), "{e}");
    let e = Guardian::spawn(Path::new("/bin/true"), &cg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exited with exit status: 0"), "{e}");

    // A guardian that cannot read the cgroup refuses to start.
    let missing = Cgroup::new(CgroupVersion::V1, tmp.path().join("missing"));
    let e = Guardian::spawn(&example_exe(), &missing)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("did not start") && e.contains("exit status: 1"),
        "{e}"
    );
}

fn real(test: &str, version: CgroupVersion) -> Option<(TestCgroup, i32)> {
    match TestCgroup::create(version) {
        Ok(mut cg) => {
            let pid = cg.spawn_busy();
            Some((cg, pid))
        }
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

#[test]
fn sigkill_of_the_committer_thaws_a_real_cgroup() {
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        let Some((tcg, pid)) = real("sigkill_of_the_committer_thaws_a_real_cgroup", version) else {
            return;
        };
        let (holder, guardian) = start_holder(&tcg.cgroup);
        assert!(
            !runs_during(pid, Duration::from_millis(300)),
            "{version}: ran while frozen"
        );
        let took = kill_holder(holder, guardian, &tcg.cgroup);
        eprintln!("{version}: thawed {took:?} after the committer was SIGKILLed");
        assert!(
            runs_within(pid, Duration::from_secs(3)),
            "{version}: still not running"
        );
    }
}

#[test]
fn a_released_guardian_leaves_a_real_frozen_cgroup_frozen() {
    let Some((tcg, pid)) = real(
        "a_released_guardian_leaves_a_real_frozen_cgroup_frozen",
        CgroupVersion::V1,
    ) else {
        return;
    };
    let guardian = Guardian::spawn(&example_exe(), &tcg.cgroup).unwrap();
    // Someone else freezes it: the guardian was not told to release a thawed
    // session, so it must not thaw this one.
    tcg.write("freezer.state", "FROZEN");
    guardian.release().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(tcg.cgroup.state().unwrap(), FreezerState::Frozen);
    assert!(!runs_during(pid, Duration::from_millis(300)));
}
