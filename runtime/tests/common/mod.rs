//! Helpers for the tests against real cgroups: throwaway cgroups with busy
//! processes in them, and skipping (or, under CI, failing) when that can't be done.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use freezeframe_runtime::session::freezer::{Cgroup, CgroupVersion};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use freezeframe_tests::skip;

/// The mount point of a hierarchy, from this process's mountinfo (a deliberately
/// independent reading, not the crate's parser).
pub fn mount_point(version: CgroupVersion) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let target = head.split(' ').nth(4)?;
        let mut t = tail.split(' ');
        let (fs_type, _source, options) = (t.next()?, t.next()?, t.next()?);
        let fits = match version {
            CgroupVersion::V1 => fs_type == "cgroup" && options.split(',').any(|o| o == "freezer"),
            CgroupVersion::V2 => fs_type == "cgroup2",
        };
        fits.then(|| PathBuf::from(target.replace("\\040", " ")))
    })
}

/// A throwaway cgroup holding processes this test started. Dropping it thaws it,
/// kills and reaps those processes and removes the cgroup, also when the test
/// failed.
pub struct TestCgroup {
    pub cgroup: Cgroup,
    children: Vec<Child>,
}

impl TestCgroup {
    /// Creates a uniquely named cgroup; `Err` says why it can't be done here.
    pub fn create(version: CgroupVersion) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root to create cgroups".into());
        }
        let mount = mount_point(version)
            .ok_or_else(|| format!("no cgroup {version} freezer hierarchy is mounted"))?;
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "freezeframe-test-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = mount.join(name);
        fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let control = match version {
            CgroupVersion::V1 => "freezer.state",
            CgroupVersion::V2 => "cgroup.freeze",
        };
        let cg = TestCgroup {
            cgroup: Cgroup::new(version, &dir),
            children: Vec::new(),
        };
        if !dir.join(control).exists() {
            return Err(format!(
                "{} has no {control} (kernel too old?)",
                dir.display()
            ));
        }
        Ok(cg)
    }

    pub fn dir(&self) -> &Path {
        self.cgroup.dir()
    }

    /// Starts a shell spinning in a loop inside the cgroup; returns its pid.
    pub fn spawn_busy(&mut self) -> i32 {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("starting sh");
        let pid = child.id() as i32;
        self.children.push(child);
        fs::write(self.dir().join("cgroup.procs"), pid.to_string()).expect("moving the child in");
        pid
    }

    /// Writes a control file directly, the way another tool (runc pause) would.
    pub fn write(&self, file: &str, value: &str) {
        fs::write(self.dir().join(file), value).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Frozen tasks may not die until thawed: thaw first.
        let _ = self.cgroup.thaw();
        for child in &mut self.children {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        let dir = self.dir().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = fs::remove_dir(&dir) {
            if e.kind() == std::io::ErrorKind::NotFound || Instant::now() > deadline {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("warning: cannot remove test cgroup {}: {e}", dir.display());
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// user + system CPU time of a process, in clock ticks (fields 14 and 15 of
/// /proc/PID/stat), and its state letter.
pub fn cpu_ticks(pid: i32) -> (u64, char) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let state = f[0].chars().next().unwrap();
    (
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap(),
        state,
    )
}

/// Whether the process used any CPU during `window`.
pub fn runs_during(pid: i32, window: Duration) -> bool {
    let (before, _) = cpu_ticks(pid);
    std::thread::sleep(window);
    cpu_ticks(pid).0 > before
}

/// Whether the process uses CPU again within `limit` (a busy loop on a loaded
/// machine may wait for a CPU a while).
pub fn runs_within(pid: i32, limit: Duration) -> bool {
    let (before, _) = cpu_ticks(pid);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        if cpu_ticks(pid).0 > before {
            return true;
        }
    }
    false
}

/// The example binary that stands in for `freezeframe` (built by `cargo test`).
pub fn example_exe() -> PathBuf {
    let me = std::env::current_exe().unwrap();
    // target/debug/deps/guardian-HASH → target/debug/examples/guardian
    let exe = me
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/guardian");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo test -p freezeframe-runtime` (it builds the examples) or \
         `cargo build -p freezeframe-runtime --examples` first",
        exe.display()
    );
    exe
}
