//! Real containers for the session tests: runc bundles on a real overlay mount with
//! a scratch home and vfolders bind-mounted under it, podman containers, a private
//! containerd, a FUSE filesystem that can stall a freeze, and the cgroup files
//! that say whether a session is frozen.
//!
//! Every fixture tears itself down on drop (container killed and deleted, mounts
//! detached, daemons stopped), even when a test panics. Ids are unique per test
//! process, so the suite never touches containers it did not start.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};

use crate::{mkdirs, write};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::{
    args, commit_json_args, drain_output, freezeframe_cmd, run, tempdir, tool, try_tool, BaseImage,
    Outcome, Value,
};

// ---------------------------------------------------------------------------
// Names and small helpers

/// A container id (or name, namespace) no other test process uses:
/// `ffs-NAME-PID-N`.
pub fn unique_id(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ffs-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` every few milliseconds until it is true or `timeout` passed.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `sig` to a process this test started.
pub fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// The pid of a process that has exited and been reaped.
pub fn dead_pid() -> i32 {
    let mut c = Command::new("true").spawn().expect("spawn true");
    let pid = c.id() as i32;
    c.wait().expect("wait true");
    pid
}

/// `/proc/self/mountinfo` lines as (mount point, fs type, super options).
fn host_mounts() -> Vec<(PathBuf, String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let target = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fs_type = post.next()?.to_string();
            let _source = post.next();
            let opts = post.next().unwrap_or("").to_string();
            Some((PathBuf::from(unescape_mountinfo(target)), fs_type, opts))
        })
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or below `dir`, innermost first (teardown).
pub fn unmount_all_under(dir: &Path) {
    let mut points: Vec<PathBuf> = host_mounts()
        .into_iter()
        .map(|(t, _, _)| t)
        .filter(|t| t.starts_with(dir))
        .collect();
    points.sort();
    points.dedup();
    for p in points.iter().rev() {
        if let Err(e) = umount2(p, MntFlags::MNT_DETACH) {
            eprintln!("teardown: umount {}: {e}", p.display());
        }
    }
}

// ---------------------------------------------------------------------------
// A busybox root filesystem

/// The static busybox copied into every rootfs.
pub const BUSYBOX: &str = "/bin/busybox";

/// A minimal busybox system in `root`: `/bin/busybox` with a symlink per applet,
/// `/etc/passwd`, `/etc/group`, and the directories runtimes mount on.
pub fn populate_busybox(root: &Path) {
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "run",
        "var/log",
        "home/work",
    ] {
        mkdirs(&root.join(d));
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    let bb = root.join("bin/busybox");
    fs::copy(BUSYBOX, &bb).unwrap_or_else(|e| panic!("cp {BUSYBOX} {}: {e}", bb.display()));
    fs::set_permissions(&bb, fs::Permissions::from_mode(0o755)).expect("chmod busybox");
    let list = tool(BUSYBOX, ["--list"]).stdout;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let at = root.join("bin").join(applet);
        if applet != "busybox" && fs::symlink_metadata(&at).is_err() {
            symlink("busybox", &at).unwrap_or_else(|e| panic!("ln -s {}: {e}", at.display()));
        }
    }
    write(
        &root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwork:x:1000:1000:work:/home/work:/bin/sh\n",
    );
    write(&root.join("etc/group"), "root:x:0:\nwork:x:1000:\n");
}

/// An OCI archive of a busybox image made by freezeframe's offline commit (an
/// archive of ours, for podman and containerd to load), tagged `tag`. Returns the
/// `--json` report.
pub fn busybox_archive(dir: &Path, tag: &str, archive: &Path) -> Value {
    let root = dir.join("busybox-rootfs");
    populate_busybox(&root);
    crate::OfflineCommit::new(&root)
        .tag(tag)
        .change(r#"CMD ["sleep", "100000"]"#)
        .output(archive)
        .commit()
}

/// A shell loop that keeps writing while the session is committed: a counter in
/// the rootfs (truncated and rewritten) and a log appended in the home.
pub const WRITER: &str = "i=0; while :; do i=$((i+1)); echo $i > /var/log/counter; \
                          echo $i >> /home/work/writer.log; usleep 5000; done";

/// `/var/log/counter` as [`WRITER`] in process `pid`'s root last wrote it (0 if
/// unreadable or caught between truncate and write).
pub fn counter_of(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/root/var/log/counter"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Waits (up to 5 s) until the [`WRITER`] in process `pid`'s container has
/// written a few more times: the session runs.
pub fn assert_writer_advances(pid: i32, when: &str) {
    let before = counter_of(pid);
    assert!(
        wait_until(Duration::from_secs(5), || counter_of(pid) > before + 2),
        "{when}: the writer in process {pid} is stuck at {before}"
    );
}

// ---------------------------------------------------------------------------
// Cgroups

/// A process's freezer cgroups on this hybrid host: the v1 freezer and the
/// cgroup2 (unified) dir.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub freezer: PathBuf,
    pub unified: PathBuf,
}

fn cgroup_mount(v2: bool) -> Option<PathBuf> {
    host_mounts()
        .into_iter()
        .find(|(_, t, o)| {
            if v2 {
                t == "cgroup2"
            } else {
                t == "cgroup" && o.split(',').any(|x| x == "freezer")
            }
        })
        .map(|(p, _, _)| p)
}

impl Cgroups {
    /// From `/proc/PID/cgroup`.
    pub fn of_pid(pid: i32) -> Cgroups {
        Cgroups::try_of_pid(pid).unwrap_or_else(|| {
            panic!(
                "no freezer and cgroup2 lines in /proc/{pid}/cgroup: {:?}",
                fs::read_to_string(format!("/proc/{pid}/cgroup"))
            )
        })
    }

    /// From `/proc/PID/cgroup`; None if the process is gone or in no freezer cgroup.
    pub fn try_of_pid(pid: i32) -> Option<Cgroups> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mut freezer = None;
        let mut unified = None;
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
            let (Some(ctrls), Some(path)) = (ctrls, path) else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if ctrls.is_empty() {
                unified = Some(cgroup_mount(true)?.join(rel));
            } else if ctrls.split(',').any(|c| c == "freezer") {
                freezer = Some(cgroup_mount(false)?.join(rel));
            }
        }
        Some(Cgroups {
            freezer: freezer?,
            unified: unified?,
        })
    }

    /// `freezer.state`: THAWED, FREEZING or FROZEN.
    pub fn freezer_state(&self) -> String {
        let p = self.freezer.join("freezer.state");
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    /// `cgroup.events` says `frozen 1`.
    pub fn v2_frozen(&self) -> bool {
        let p = self.unified.join("cgroup.events");
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        text.lines().any(|l| l.trim() == "frozen 1")
    }

    /// `cgroup.freeze` holds 1 (a freeze was asked for, complete or not).
    pub fn v2_freeze_requested(&self) -> bool {
        let p = self.unified.join("cgroup.freeze");
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            == "1"
    }

    /// Writes `FROZEN` or `THAWED` to `freezer.state`.
    pub fn set_v1(&self, state: &str) {
        let p = self.freezer.join("freezer.state");
        fs::write(&p, state).unwrap_or_else(|e| panic!("echo {state} > {}: {e}", p.display()));
    }

    /// Writes 1 or 0 to `cgroup.freeze`.
    pub fn set_v2(&self, frozen: bool) {
        let p = self.unified.join("cgroup.freeze");
        let v = if frozen { "1" } else { "0" };
        fs::write(&p, v).unwrap_or_else(|e| panic!("echo {v} > {}: {e}", p.display()));
    }

    /// Waits for `freezer.state` to read `want`.
    pub fn wait_v1(&self, want: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.freezer_state() == want)
    }

    /// Neither hierarchy frozen nor freezing; panics naming `when` otherwise.
    pub fn assert_thawed(&self, when: &str) {
        assert_eq!(
            self.freezer_state(),
            "THAWED",
            "{when}: {} is not thawed",
            self.freezer.display()
        );
        assert!(
            !self.v2_freeze_requested() && !self.v2_frozen(),
            "{when}: {} is frozen or freezing",
            self.unified.display()
        );
    }

    /// Best-effort thaw of both hierarchies (teardown).
    pub fn thaw_quietly(&self) {
        let _ = fs::write(self.freezer.join("freezer.state"), "THAWED");
        let _ = fs::write(self.unified.join("cgroup.freeze"), "0");
    }
}

// ---------------------------------------------------------------------------
// Running a process while watching something

/// What a watched process said, and whether the probe was ever true while it ran.
#[derive(Debug)]
pub struct Watched {
    pub outcome: Outcome,
    pub probe_seen: bool,
}

/// Runs `cmd` to completion like [`run`], calling `probe` every millisecond while
/// it runs (e.g. "is the session frozen now?").
pub fn run_watching(cmd: &mut Command, mut probe: impl FnMut() -> bool) -> Watched {
    let command = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    let (out, err) = drain_output(&mut child);
    let t0 = Instant::now();
    let mut seen = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        seen |= probe();
        crate::kill_if_overdue(&mut child, t0, &command);
        std::thread::sleep(Duration::from_millis(1));
    };
    Watched {
        outcome: Outcome {
            command,
            status,
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        },
        probe_seen: seen,
    }
}

/// `freezeframe commit --json ARGS` watched by `probe`.
pub fn commit_watching<I, S>(args: I, probe: impl FnMut() -> bool) -> Watched
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_watching(&mut freezeframe_cmd(commit_json_args(args)), probe)
}

/// Every process's pid and argv, from `/proc`.
fn processes() -> Vec<(i32, Vec<Vec<u8>>)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let argv = cmdline.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
            Some((pid, argv))
        })
        .collect()
}

/// Pids of `freezeframe guardian` processes watching `cgroup_dir`.
pub fn guardians_of(cgroup_dir: &Path) -> Vec<i32> {
    let want = cgroup_dir.as_os_str().as_encoded_bytes().to_vec();
    processes()
        .into_iter()
        .filter(|(_, argv)| argv.contains(&b"guardian".to_vec()) && argv.contains(&want))
        .map(|(pid, _)| pid)
        .collect()
}

// ---------------------------------------------------------------------------
// runc

/// How to start a [`RuncSession`].
pub struct RuncOptions {
    /// The container's process (`sleep 100000` unless told).
    pub args: Vec<String>,
    /// The rootfs is an overlay over the base (else a plain copy of the base).
    pub overlay: bool,
    /// `runc --root DIR` (else runc's default, `/run/runc`).
    pub runc_root: Option<PathBuf>,
    /// More bind mounts, (container path, host path), after the standard ones.
    pub extra_mounts: Vec<(String, PathBuf)>,
    /// Annotate the container with `org.freezeframe.image=oci-layout:BASE:base`.
    pub annotate_base: bool,
}

impl Default for RuncOptions {
    fn default() -> Self {
        RuncOptions {
            args: vec!["sleep".into(), "100000".into()],
            overlay: true,
            runc_root: None,
            extra_mounts: Vec::new(),
            annotate_base: true,
        }
    }
}

impl RuncOptions {
    /// The container's process is [`WRITER`].
    pub fn writer() -> Self {
        RuncOptions {
            args: vec!["sh".into(), "-c".into(), WRITER.into()],
            ..Default::default()
        }
    }
}

/// The content bind-mounted over `/etc/hosts` (the base has its own).
pub const INJECTED_HOSTS: &str = "10.9.9.9 injected-by-the-runtime\n";
/// The base image's own `/etc/hosts`.
pub const BASE_HOSTS: &str = "127.0.0.1 localhost base-image\n";

/// A runc container the way the platform runs a session: a umoci-built busybox
/// base, a real overlay mount as its rootfs, a scratch home at `/home/work` with
/// two vfolders bind-mounted under it (`data` and `.local`), and `/etc/hosts`,
/// `/etc/resolv.conf`, `/etc/hostname` bind-mounted by "the runtime".
pub struct RuncSession {
    pub id: String,
    pub runc_root: Option<PathBuf>,
    pub base: BaseImage,
    /// The rootfs as the host sees it (the overlay's merged dir).
    pub rootfs: PathBuf,
    /// The overlay's upper dir (None for a plain rootfs).
    pub upper: Option<PathBuf>,
    /// Host dirs: the scratch home and the vfolders mounted at
    /// `/home/work/data` and `/home/work/.local`.
    pub home: PathBuf,
    pub data: PathBuf,
    pub local: PathBuf,
    /// An empty directory for archives.
    pub out: PathBuf,
    pub pid: i32,
    pub cgroups: Cgroups,
    bundle: PathBuf,
    // Declared before `dir`: unmounted (after Drop::drop deleted the container)
    // before the temp dir is removed.
    _ovl: Option<crate::Overlay>,
    dir: TempDir,
}

impl RuncSession {
    /// Builds the base (busybox plus `populate_base`), the rootfs, the home and
    /// vfolders, and `runc run -d`s the container.
    pub fn start(name: &str, populate_base: impl FnOnce(&Path), opts: RuncOptions) -> RuncSession {
        let dir = tempdir(name);
        let base = BaseImage::build(dir.path(), |r| {
            populate_busybox(r);
            write(&r.join("etc/hosts"), BASE_HOSTS);
            populate_base(r);
        });
        let (ovl, rootfs, upper) = if opts.overlay {
            let o = crate::Overlay::mount(&[&base.rootfs], "");
            let (m, u) = (o.merged.clone(), o.upper.clone());
            (Some(o), m, Some(u))
        } else {
            let plain = dir.path().join("plain-rootfs");
            tool("cp", args!["-a", &base.rootfs, &plain]);
            (None, plain, None)
        };
        let p = |n: &str| {
            let d = dir.path().join(n);
            mkdirs(&d);
            d
        };
        let (home, data, local, out, injected, bundle) = (
            p("home"),
            p("vfolder-data"),
            p("vfolder-local"),
            p("out"),
            p("injected"),
            p("bundle"),
        );
        write(&injected.join("hosts"), INJECTED_HOSTS);
        write(&injected.join("resolv.conf"), "nameserver 10.9.9.53\n");
        write(&injected.join("hostname"), "injected-hostname\n");

        let mut s = RuncSession {
            id: unique_id(name),
            runc_root: opts.runc_root.clone(),
            base,
            rootfs,
            upper,
            home,
            data,
            local,
            out,
            pid: 0,
            cgroups: Cgroups {
                freezer: PathBuf::new(),
                unified: PathBuf::new(),
            },
            bundle,
            _ovl: ovl,
            dir,
        };
        s.write_config(&opts, &injected);
        let log = s.bundle.join("runc-run.log");
        let logf = fs::File::create(&log).expect("create runc log");
        // The container inherits runc's stdio: files, never a pipe we would wait on.
        let mut cmd = s.runc_cmd();
        cmd.args(["run", "-d", "--bundle"])
            .arg(&s.bundle)
            .arg(&s.id)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf);
        let status = cmd.status().expect("spawn runc run");
        assert!(
            status.success(),
            "runc run -d {} failed ({status}):\n{}",
            s.id,
            fs::read_to_string(&log).unwrap_or_default()
        );
        s.pid = s.state()["pid"].as_i64().expect("runc state pid") as i32;
        s.cgroups = Cgroups::of_pid(s.pid);
        s
    }

    fn write_config(&self, opts: &RuncOptions, injected: &Path) {
        let mut spec = vec![OsString::from("spec"), "--bundle".into()];
        spec.push(self.bundle.clone().into_os_string());
        tool("runc", spec);
        let path = self.bundle.join("config.json");
        let mut c: Value = serde_json::from_slice(&fs::read(&path).expect("read config.json"))
            .expect("parse config.json");
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = opts.args.clone().into();
        c["process"]["rlimits"] = serde_json::json!([
            {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}
        ]);
        c["root"] = serde_json::json!({"path": self.rootfs, "readonly": false});
        c["hostname"] = "session".into();
        let caps = serde_json::json!(DOCKER_CAPS);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
        let mounts = c["mounts"].as_array_mut().expect("mounts");
        let bind = |dst: &str, src: &Path| {
            serde_json::json!({"destination": dst, "type": "bind", "source": src,
                               "options": ["rbind", "rw"]})
        };
        mounts.push(bind("/etc/hosts", &injected.join("hosts")));
        mounts.push(bind("/etc/resolv.conf", &injected.join("resolv.conf")));
        mounts.push(bind("/etc/hostname", &injected.join("hostname")));
        mounts.push(bind("/home/work", &self.home));
        mounts.push(bind("/home/work/data", &self.data));
        mounts.push(bind("/home/work/.local", &self.local));
        for (dst, src) in &opts.extra_mounts {
            mounts.push(bind(dst, src));
        }
        if opts.annotate_base {
            c["annotations"] = serde_json::json!({
                "org.freezeframe.image": self.base.reference().to_str().expect("utf-8 ref"),
            });
        }
        write(
            &path,
            serde_json::to_vec_pretty(&c).expect("serialize config"),
        );
    }

    fn runc_cmd(&self) -> Command {
        let mut c = Command::new("runc");
        if let Some(r) = &self.runc_root {
            c.arg("--root").arg(r);
        }
        c
    }

    /// `runc [--root R] ARGS`, whatever its exit status.
    pub fn runc<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.runc_cmd().args(args))
    }

    /// `runc exec ID sh -c SCRIPT`, asserting success.
    pub fn exec(&self, script: &str) -> Outcome {
        self.runc(["exec", &self.id, "sh", "-c", script]).ok()
    }

    /// `runc state ID`, parsed.
    pub fn state(&self) -> Value {
        self.runc(["state", &self.id]).ok().json()
    }

    /// `running`, `paused`, …
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("runc state status")
            .to_string()
    }

    /// The runc state root (`--root` or `/run/runc`).
    pub fn state_root(&self) -> PathBuf {
        self.runc_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/runc"))
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_root().join(&self.id).join("state.json")
    }

    /// The session argument(s) for `freezeframe commit`/`thaw`: the id, and
    /// `--root` when runc used a private root.
    pub fn target(&self) -> Vec<OsString> {
        let mut v = vec![OsString::from(&self.id)];
        if let Some(r) = &self.runc_root {
            v.push("--root".into());
            v.push(r.clone().into_os_string());
        }
        v
    }

    /// A scratch directory inside the test's temp dir.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        mkdirs(&p);
        p
    }

    /// Running (per runc) and thawed (per both cgroup hierarchies).
    pub fn assert_running_and_thawed(&self, when: &str) {
        assert_eq!(self.status(), "running", "{when}: runc state");
        self.cgroups.assert_thawed(when);
    }

    /// [`assert_writer_advances`] for this container's init.
    pub fn assert_writer_advances(&self, when: &str) {
        assert_writer_advances(self.pid, when);
    }
}

impl Drop for RuncSession {
    fn drop(&mut self) {
        if !self.cgroups.freezer.as_os_str().is_empty() {
            self.cgroups.thaw_quietly();
        }
        let _ = self.runc(["kill", &self.id, "KILL"]);
        let out = self.runc(["delete", "--force", &self.id]);
        if !out.success() && !out.stderr.contains("does not exist") {
            eprintln!("teardown of {}: {out}", self.id);
        }
        if let Some(r) = &self.runc_root {
            let _ = fs::remove_dir(r);
        }
        // The bind mounts live in the container's mount namespace only; the
        // overlay is detached by `ovl`'s Drop, after this.
    }
}

// ---------------------------------------------------------------------------
// podman

/// An image loaded into podman from one of our archives; removed on drop.
pub struct PodmanImage {
    /// The image id (the config digest's hex).
    pub id: String,
}

impl PodmanImage {
    /// `podman load -i ARCHIVE`; `config_digest` (`sha256:…`) names the image.
    pub fn load(archive: &Path, config_digest: &str) -> PodmanImage {
        let img = PodmanImage {
            id: config_digest
                .strip_prefix("sha256:")
                .expect("sha256 config digest")
                .to_string(),
        };
        tool("podman", args!["load", "-i", archive]);
        tool("podman", ["image", "exists", &img.id]);
        img
    }
}

impl Drop for PodmanImage {
    fn drop(&mut self) {
        let o = try_tool("podman", ["rmi", "--force", &self.id]);
        if !o.success() {
            eprintln!("teardown: {o}");
        }
    }
}

/// A container started by `podman run -d --runtime runc`; removed on drop.
pub struct PodmanContainer {
    pub name: String,
    /// The full id: the runc container id.
    pub id: String,
    pub pid: i32,
    pub cgroups: Cgroups,
}

/// The flags this host needs: runc (crun refuses hybrid cgroups) and rlimits a
/// container may hold.
pub const PODMAN_RUN_FLAGS: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1000:1000",
];

impl PodmanContainer {
    /// `podman run -d --name NAME PODMAN_RUN_FLAGS EXTRA IMAGE CMD...`.
    pub fn run(name: &str, extra: &[OsString], image: &str, cmd: &[&str]) -> PodmanContainer {
        let mut a: Vec<OsString> = args!["run", "-d", "--name", name];
        a.extend(PODMAN_RUN_FLAGS.iter().map(OsString::from));
        a.extend(extra.iter().cloned());
        a.push(image.into());
        a.extend(cmd.iter().map(OsString::from));
        let mut c = PodmanContainer {
            name: name.to_string(),
            id: String::new(),
            pid: 0,
            cgroups: Cgroups {
                freezer: PathBuf::new(),
                unified: PathBuf::new(),
            },
        };
        tool("podman", a);
        c.id = c.inspect("{{.Id}}");
        c.pid = c.inspect("{{.State.Pid}}").parse().expect("podman pid");
        c.cgroups = Cgroups::of_pid(c.pid);
        c
    }

    /// `podman inspect --format FORMAT NAME`, trimmed.
    pub fn inspect(&self, format: &str) -> String {
        tool("podman", ["inspect", "--format", format, &self.name])
            .stdout
            .trim()
            .to_string()
    }

    /// `podman exec NAME sh -c SCRIPT`, asserting success.
    pub fn exec(&self, script: &str) -> Outcome {
        tool("podman", ["exec", &self.name, "sh", "-c", script])
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        if !self.cgroups.freezer.as_os_str().is_empty() {
            self.cgroups.thaw_quietly();
        }
        let o = try_tool("podman", ["rm", "--force", "--time", "0", &self.name]);
        if !o.success() {
            eprintln!("teardown: {o}");
        }
    }
}

// ---------------------------------------------------------------------------
// A private containerd

/// containerd 1.6 from a private config (root, state and socket in a temp dir,
/// the CRI plugin off), started in the background; on drop every task and
/// container of its namespace is removed, the daemon and its shims are stopped
/// and their mounts detached.
pub struct Containerd {
    pub sock: PathBuf,
    pub ns: String,
    pub state: PathBuf,
    daemon: Child,
    dir: TempDir,
}

/// Where the runc shim keeps runc's state, whatever containerd's own state dir:
/// `/run/containerd/runc/NAMESPACE/ID/state.json`.
pub const CONTAINERD_RUNC_ROOT: &str = "/run/containerd/runc";

impl Containerd {
    pub fn start(name: &str) -> Containerd {
        let dir = tempdir(name);
        let d = dir.path();
        let (root, state, sock) = (d.join("root"), d.join("state"), d.join("containerd.sock"));
        let config = d.join("config.toml");
        write(
            &config,
            format!(
                "version = 2\nroot = {root:?}\nstate = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {sock:?}\n[ttrpc]\n  address = \"\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            ),
        );
        let log = fs::File::create(d.join("containerd.log")).expect("create containerd log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let c = Containerd {
            sock,
            ns: unique_id(name),
            state,
            daemon,
            dir,
        };
        let up = wait_until(Duration::from_secs(20), || {
            c.sock.exists() && try_tool("ctr", c.ctr_args(["version"])).success()
        });
        assert!(
            up,
            "containerd did not come up on {}:\n{}",
            c.sock.display(),
            fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
        );
        c
    }

    pub fn ctr_args<I, S>(&self, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut a = args!["-a", &self.sock, "-n", &self.ns];
        a.extend(args.into_iter().map(|s| s.as_ref().to_owned()));
        a
    }

    /// `ctr -a SOCK -n NS ARGS`, whatever its exit status.
    pub fn try_ctr<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        try_tool("ctr", self.ctr_args(args))
    }

    /// `ctr -a SOCK -n NS ARGS`, asserting success.
    pub fn ctr<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.try_ctr(args).ok()
    }

    /// A scratch directory inside the daemon's temp dir.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        mkdirs(&p);
        p
    }

    /// The init pid of task `id`.
    pub fn task_pid(&self, id: &str) -> i32 {
        let out = self.ctr(["task", "ls"]).stdout;
        out.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f[1].parse().expect("task pid"))
            })
            .unwrap_or_else(|| panic!("no task {id} in ctr task ls:\n{out}"))
    }

    /// The status column of `ctr task ls` for `id` (RUNNING, PAUSED, …).
    pub fn task_status(&self, id: &str) -> String {
        let out = self.ctr(["task", "ls"]).stdout;
        out.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
            })
            .unwrap_or_else(|| panic!("no task {id} in ctr task ls:\n{out}"))
    }

    /// The runc shims this daemon started (still running after it stopped).
    fn shim_pids(&self) -> Vec<i32> {
        let sock = self.sock.as_os_str().as_encoded_bytes().to_vec();
        processes()
            .into_iter()
            .filter(|(_, argv)| {
                argv.first()
                    .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                    && argv.contains(&sock)
            })
            .map(|(pid, _)| pid)
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let ids = self.try_ctr(["containers", "ls", "-q"]).stdout;
        for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let pid = self.try_ctr(["task", "ls"]).stdout.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.get(1).and_then(|p| p.parse::<i32>().ok()))
            });
            if let Some(cg) = pid
                .flatten()
                .filter(|p| *p > 0)
                .and_then(Cgroups::try_of_pid)
            {
                cg.thaw_quietly();
            }
            let _ = self.try_ctr(["task", "kill", "--signal", "KILL", id]);
            let _ = wait_until(Duration::from_secs(5), || {
                !self.try_ctr(["task", "ls"]).stdout.contains("RUNNING")
            });
            let _ = self.try_ctr(["task", "delete", "--force", id]);
            let o = self.try_ctr(["containers", "delete", id]);
            if !o.success() {
                eprintln!("teardown: {o}");
            }
        }
        let images = self.try_ctr(["images", "ls", "-q"]).stdout;
        for img in images.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = self.try_ctr(["images", "rm", img]);
        }
        let _ = kill(Pid::from_raw(self.daemon.id() as i32), Signal::SIGTERM);
        let stopped = wait_until(Duration::from_secs(10), || {
            matches!(self.daemon.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
        for pid in self.shim_pids() {
            eprintln!("teardown: killing leftover shim {pid}");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        unmount_all_under(self.dir.path());
        let _ = fs::remove_dir(Path::new(CONTAINERD_RUNC_ROOT).join(&self.ns));
        for ctrl in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(ctrl.path().join(&self.ns));
        }
    }
}

// ---------------------------------------------------------------------------
// FUSE

/// A `fuse-overlayfs -f` mount on a host directory, run as our child so that it
/// can be stopped (SIGSTOP) to make every request to it block. On drop it is
/// continued, unmounted and stopped.
pub struct FuseMount {
    pub mnt: PathBuf,
    pub daemon_pid: i32,
    daemon: Child,
    _dir: TempDir,
}

impl FuseMount {
    pub fn start(name: &str) -> FuseMount {
        let dir = tempdir(name);
        let d = dir.path();
        let (lower, upper, work, mnt) = (
            d.join("lower"),
            d.join("upper"),
            d.join("work"),
            d.join("mnt"),
        );
        for p in [&lower, &upper, &work, &mnt] {
            mkdirs(p);
        }
        write(&lower.join("file"), "served by fuse\n");
        let daemon = Command::new("fuse-overlayfs")
            .arg("-f")
            .arg("-o")
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fuse-overlayfs");
        let f = FuseMount {
            mnt: mnt.clone(),
            daemon_pid: daemon.id() as i32,
            daemon,
            _dir: dir,
        };
        let mounted = wait_until(Duration::from_secs(10), || {
            host_mounts()
                .iter()
                .any(|(t, ty, _)| t == &mnt && ty.starts_with("fuse"))
        });
        assert!(mounted, "fuse-overlayfs did not mount {}", mnt.display());
        f
    }

    /// SIGSTOP: requests to the filesystem now wait for an answer that does not come.
    pub fn stop(&self) {
        signal(self.daemon_pid, Signal::SIGSTOP);
    }

    /// SIGCONT: the filesystem answers again.
    pub fn resume(&self) {
        signal(self.daemon_pid, Signal::SIGCONT);
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.daemon_pid), Signal::SIGCONT);
        if let Err(e) = umount2(&self.mnt, MntFlags::MNT_DETACH) {
            eprintln!("teardown: umount {}: {e}", self.mnt.display());
        }
        let _ = kill(Pid::from_raw(self.daemon_pid), Signal::SIGTERM);
        if !wait_until(Duration::from_secs(5), || {
            matches!(self.daemon.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }
}

/// The kernel function process `pid` sleeps in (`/proc/PID/wchan`).
pub fn wchan(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// The one-letter state of process `pid` (`R`, `S`, `D`, …), from the third
/// field of `/proc/PID/stat`, or `None` once it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in field 2 is in parentheses and may hold spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// How many times process `pid` gave up the CPU of its own accord, from
/// `/proc/PID/status`, or `None` once it is gone.
pub fn switches(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// freezeframe as the OCI runtime

/// Runs `cmd` to completion with stdin from `/dev/null` and stdout and stderr
/// appended to the file `log`, for the verbs whose container process inherits
/// them (`create`, `run -d`, `exec -d`): a pipe would stay open as long as the
/// container runs. The outcome's stderr is what this run added to `log`.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Outcome {
    let command = format!("{cmd:?}");
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    let before = file.metadata().map_or(0, |m| m.len()) as usize;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    let status = crate::wait_or_kill(&mut child, &command);
    let text = fs::read(log).unwrap_or_default();
    Outcome {
        command,
        status,
        stdout: String::new(),
        stderr: String::from_utf8_lossy(text.get(before..).unwrap_or_default()).into_owned(),
    }
}

/// Docker's default capabilities (`runc spec`'s are too few to chown).
pub const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Writes `bundle/config.json` the way [`RuncSession`] does: `runc spec`, then
/// no terminal, `args`, RLIMIT_NOFILE 1024, Docker's capabilities, `rootfs` (an
/// absolute path) writable, the given bind mounts (container path, host path)
/// and annotations. Returns the spec written.
pub fn write_bundle_config(
    bundle: &Path,
    rootfs: &Path,
    args: &[&str],
    binds: &[(&str, &Path)],
    annotations: &[(&str, &str)],
) -> Value {
    mkdirs(bundle);
    let path = bundle.join("config.json");
    let _ = fs::remove_file(&path);
    tool("runc", args!["spec", "--bundle", bundle]);
    let mut c: Value = serde_json::from_slice(&fs::read(&path).expect("read config.json"))
        .expect("parse config.json");
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = args.into();
    c["process"]["rlimits"] = serde_json::json!([
        {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}
    ]);
    c["root"] = serde_json::json!({"path": rootfs, "readonly": false});
    c["hostname"] = "session".into();
    for set in ["bounding", "effective", "permitted"] {
        c["process"]["capabilities"][set] = DOCKER_CAPS.into();
    }
    let mounts = c["mounts"].as_array_mut().expect("mounts");
    for (dst, src) in binds {
        mounts.push(
            serde_json::json!({"destination": dst, "type": "bind", "source": src,
                                       "options": ["rbind", "rw"]}),
        );
    }
    if !annotations.is_empty() {
        let a: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        c["annotations"] = Value::Object(a);
    }
    write(
        &path,
        serde_json::to_vec_pretty(&c).expect("serialize config"),
    );
    c
}

/// A container run by `freezeframe` as the OCI runtime, under a state root of
/// the test's (`--root`) or the default one. Nothing is started by `new`; on
/// drop the container is resumed (if paused) and `delete --force`d, whatever
/// state it reached.
pub struct FfContainer {
    pub id: String,
    /// `--root DIR`, or None for the default root (`/run/freezeframe`).
    pub root: Option<PathBuf>,
    /// Where `create` and `run -d` write, and the container's init with them.
    pub log: PathBuf,
}

/// freezeframe's default runtime state root.
pub const FREEZEFRAME_ROOT: &str = "/run/freezeframe";

impl FfContainer {
    pub fn new(id: impl Into<String>, root: Option<PathBuf>, log: impl Into<PathBuf>) -> Self {
        FfContainer {
            id: id.into(),
            root,
            log: log.into(),
        }
    }

    /// `freezeframe --config /dev/null [--root R] ARGS`.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = Vec::new();
        if let Some(r) = &self.root {
            all.push("--root".into());
            all.push(r.clone().into_os_string());
        }
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        freezeframe_cmd(all)
    }

    /// Runs `freezeframe [--root R] ARGS`, whatever its exit status.
    pub fn ff<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.cmd(args))
    }

    /// The state root in use.
    pub fn state_root(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from(FREEZEFRAME_ROOT))
    }

    /// `ROOT/ID`, the container's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state_root().join(&self.id)
    }

    /// `create --bundle B EXTRA ID`, output to [`FfContainer::log`].
    pub fn create(&self, bundle: &Path, extra: &[OsString]) -> Outcome {
        let mut a = args!["create", "--bundle", bundle];
        a.extend(extra.iter().cloned());
        a.push(self.id.clone().into());
        run_logged(&mut self.cmd(a), &self.log)
    }

    /// `run -d --bundle B EXTRA ID`, output to [`FfContainer::log`].
    pub fn run_detached(&self, bundle: &Path, extra: &[OsString]) -> Outcome {
        let mut a = args!["run", "-d", "--bundle", bundle];
        a.extend(extra.iter().cloned());
        a.push(self.id.clone().into());
        run_logged(&mut self.cmd(a), &self.log)
    }

    /// `state ID`, parsed; panics if it fails.
    pub fn state(&self) -> Value {
        self.ff(["state", &self.id]).ok().json()
    }

    /// The state's `status`: created, running, paused, stopped.
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("state status")
            .to_string()
    }

    /// The state's `pid`.
    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().expect("state pid") as i32
    }

    /// Waits (up to 10 s) for the status to read `want`; panics with the last
    /// state otherwise.
    pub fn wait_status(&self, want: &str) {
        let ok = wait_until(Duration::from_secs(10), || self.status() == want);
        assert!(ok, "{} never became {want}: {}", self.id, self.state());
    }

    /// `exec ID sh -c SCRIPT`, asserting success.
    pub fn exec(&self, script: &str) -> Outcome {
        self.ff(["exec", &self.id, "sh", "-c", script]).ok()
    }
}

impl Drop for FfContainer {
    fn drop(&mut self) {
        let _ = self.ff(["resume", &self.id]);
        let out = self.ff(["delete", "--force", &self.id]);
        if !out.success() {
            eprintln!("teardown of {}: {out}", self.id);
        }
    }
}

impl Containerd {
    /// The daemon's own log so far (for a failure's message).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr ARGS`, asserting success; a failure shows the daemon's log too.
    pub fn ctr_explained<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let o = self.try_ctr(args);
        assert!(o.success(), "{o}\n--- containerd.log\n{}", self.log());
        o
    }
}

// ---------------------------------------------------------------------------
// Terminals

/// The receiving end of a runtime's `--console-socket`: a listening Unix
/// socket whose first connection brings the master of a container's
/// pseudo-terminal, as runc's `recvtty` receives it.
pub struct ConsoleSocket {
    pub path: PathBuf,
    master: std::sync::mpsc::Receiver<Result<OwnedFd, String>>,
}

impl ConsoleSocket {
    pub fn listen(path: &Path) -> ConsoleSocket {
        let listener = std::os::unix::net::UnixListener::bind(path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(receive_fd(&listener));
        });
        ConsoleSocket {
            path: path.to_path_buf(),
            master: rx,
        }
    }

    /// The terminal's master, once the runtime has sent it (within 10 s).
    pub fn master(&self) -> fs::File {
        match self.master.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(fd)) => fs::File::from(fd),
            Ok(Err(e)) => panic!("console socket {}: {e}", self.path.display()),
            Err(_) => panic!("no terminal came to {} in 10 s", self.path.display()),
        }
    }
}

fn receive_fd(listener: &std::os::unix::net::UnixListener) -> Result<OwnedFd, String> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut name = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    recvmsg(&conn, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| format!("recvmsg: {e}"))?;
    for cmsg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = cmsg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err("a message without a descriptor".into())
}

/// Reads the terminal `master` until its text holds `want`, the terminal
/// closes, or `timeout` passes; returns all that was read.
pub fn read_terminal(master: &mut fs::File, want: &str, timeout: Duration) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    let t0 = Instant::now();
    let mut text = Vec::new();
    while !String::from_utf8_lossy(&text).contains(want) {
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            break;
        }
        let ms = PollTimeout::from(left.as_millis().min(1000) as u16);
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, ms).expect("poll the terminal") == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO: the last process of the terminal left
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// A pseudo-terminal pair, as an admin's shell has one.
pub struct Terminal {
    pub master: fs::File,
    pub slave: fs::File,
}

impl Terminal {
    /// A new terminal, `rows`×`cols` when given (else the kernel's 0×0).
    pub fn open(size: Option<(u16, u16)>) -> Terminal {
        let size = size.map(|(ws_row, ws_col)| nix::pty::Winsize {
            ws_row,
            ws_col,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(size.as_ref(), None).expect("openpty");
        Terminal {
            master: fs::File::from(pty.master),
            slave: fs::File::from(pty.slave),
        }
    }

    /// Spawns `cmd` with the slave as its stdin, stdout and stderr; `cmd`
    /// keeps none of it, so the terminal closes once the command has gone.
    pub fn spawn(&self, cmd: &mut Command) -> std::process::Child {
        let stdio = || Stdio::from(self.slave.try_clone().expect("dup the terminal"));
        let child = cmd
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        child
    }
}

/// Runs `cmd` with a new pseudo-terminal as its stdin, stdout and stderr, as
/// from an admin's shell; returns what it wrote there and its exit status.
pub fn run_on_terminal(cmd: &mut Command) -> (String, std::process::ExitStatus) {
    let command = format!("{cmd:?}");
    let term = Terminal::open(None);
    let mut child = term.spawn(cmd);
    let Terminal { mut master, slave } = term;
    drop(slave); // only the command holds the terminal now
                 // The terminal closes (EIO) once the command and all it started are gone.
    let text = read_terminal(&mut master, "\u{0}never\u{0}", Duration::from_secs(30));
    (text, crate::wait_or_kill(&mut child, &command))
}
