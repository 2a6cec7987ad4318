//! freezeframe as an OCI runtime (runc-compatible, on youki's libcontainer), as
//! root: the verbs from the command line, home seeding at create, a private
//! containerd running sessions with `--runc-binary freezeframe`, and commits of
//! those sessions found without `--root` or `--base` that podman and containerd
//! run again.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freezeframe_tests::containers::*;
use freezeframe_tests::*;
use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------
// Building blocks

/// `(uid, gid, mode & 0o7777)` of a path, not following a symlink.
fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn oci_archive(path: &Path) -> String {
    format!("oci-archive:{}", path.display())
}

/// `ctr --mount` value for an rbind mount.
fn ctr_bind(src: &Path, dst: &str) -> String {
    format!("type=bind,src={},dst={dst},options=rbind:rw", src.display())
}

/// The layer digests of a commit report, in order.
fn layer_digests(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in the report: {report}"))
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect()
}

/// How many layers the commit added (1, or 2 for a live commit's frozen pass).
fn layers_added(report: &Value) -> usize {
    let n = report["frozen"]["layers_added"]
        .as_u64()
        .unwrap_or_else(|| panic!("no frozen.layers_added in the report: {report}"))
        as usize;
    assert!((1..=2).contains(&n), "layers_added {n}: {report}");
    n
}

/// Asserts the commit report says the base came from the container's state
/// (the `org.freezeframe.image` annotation), that it is `base`, and that its
/// layers (`base_layers`) come first, unchanged, followed by what was added.
fn assert_base_carried_over(report: &Value, base: &str, base_layers: &[String]) {
    let source = report["session"]["base_source"].as_str().unwrap_or("");
    assert!(
        source.contains("org.freezeframe.image"),
        "the base was not taken from the state's annotation: base_source {source:?}"
    );
    assert_eq!(report["base"]["name"], base, "base in the report: {report}");
    let layers = layer_digests(report);
    let added = layers_added(report);
    assert_eq!(
        layers.len(),
        base_layers.len() + added,
        "layers {layers:?}: not the base's {base_layers:?} plus {added}"
    );
    assert!(layers.len() > 1, "no base layer carried over: {layers:?}");
    assert_eq!(
        &layers[..base_layers.len()],
        base_layers,
        "the base's layers are not carried over as they are"
    );
}

/// A bundle: an overlay mount over `lowers` (topmost first) as the rootfs, and
/// `dir/NAME` holding config.json.
struct Bundle {
    dir: PathBuf,
    ovl: Overlay,
}

impl Bundle {
    fn new(
        dir: &Path,
        name: &str,
        lowers: &[&Path],
        args: &[&str],
        binds: &[(&str, &Path)],
        annotations: &[(&str, &str)],
    ) -> Bundle {
        let ovl = Overlay::mount(lowers, "");
        let dir = dir.join(name);
        write_bundle_config(&dir, &ovl.merged, args, binds, annotations);
        Bundle { dir, ovl }
    }
}

/// A temp dir for a test, with `lower` in it: a busybox root filesystem.
fn busybox_lab(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir(name);
    let lower = dir.path().join("lower");
    populate_busybox(&lower);
    (dir, lower)
}

/// A runc container under a private root, deleted when dropped.
struct RuncContainer {
    root: PathBuf,
    id: String,
}

impl RuncContainer {
    /// `runc --root ROOT`, for the verb to be added.
    fn cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("runc");
        cmd.arg("--root").arg(&self.root);
        cmd
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = run(self.cmd().args(["delete", "--force", &self.id]));
    }
}

/// `/proc/PID/cmdline` with spaces for NULs ("" once the process is gone).
fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// `SigBlk` of `/proc/PID/status`: the signals the process blocks, in hex.
fn blocked_signals(pid: i32) -> String {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .unwrap_or_else(|| panic!("no SigBlk in /proc/{pid}/status"))
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------
// containerd and podman run what freezeframe runs and commits

#[test]
fn containerd_runs_a_session_with_freezeframe_and_the_commit_starts_a_new_one() {
    if !root_or_skip("containerd_runs_a_session_with_freezeframe_and_the_commit_starts_a_new_one") {
        return;
    }
    let ff = bin();
    let ctd = Containerd::start("rt-ctd");
    let name = unique_id("rt-ctd");
    let base = ctd.scratch("img").join("base.tar");
    let base_ref = format!("docker.io/library/{name}:base");
    let made = busybox_archive(&ctd.scratch("build"), &base_ref, &base);
    let base_layers = layer_digests(&made);
    ctd.ctr_explained(args!["images", "import", &base]);
    let (home, data) = (ctd.scratch("home"), ctd.scratch("data"));
    write(&data.join("host-dataset"), "vfolder content\n");
    ctd.ctr_explained(args![
        "run",
        "-d",
        "--runc-binary",
        &ff,
        "--annotation",
        format!("org.freezeframe.image={}", oci_archive(&base)),
        "--mount",
        ctr_bind(&home, "/home/work"),
        "--mount",
        ctr_bind(&data, "/home/work/data"),
        &base_ref,
        &name,
        "sleep",
        "100000",
    ]);
    assert_eq!(ctd.task_status(&name), "RUNNING");
    let pid = ctd.task_pid(&name);
    assert!(
        cmdline(pid).starts_with("sleep 100000"),
        "task {name}'s init is {:?}",
        cmdline(pid)
    );

    // The shim ran freezeframe: its state (libcontainer's format) under the
    // shim's root, with the base image recorded from the spec's annotation.
    let state_file = Path::new(CONTAINERD_RUNC_ROOT)
        .join(&ctd.ns)
        .join(&name)
        .join("state.json");
    let state: Value = serde_json::from_str(&read(&state_file))
        .unwrap_or_else(|e| panic!("{}: {e}", state_file.display()));
    assert_eq!(
        state["annotations"]["org.freezeframe.image"],
        oci_archive(&base),
        "the base image is not recorded in {}: {state}",
        state_file.display()
    );
    assert_eq!(state["pid"], pid, "{state}");

    // Changes to the rootfs, the home and the vfolder, made through the
    // runtime's exec (process.json from the shim).
    ctd.ctr_explained([
        "task",
        "exec",
        "--exec-id",
        "changes",
        &name,
        "sh",
        "-c",
        "set -e; echo containerd > /etc/new.conf; echo 'extra:x:2000:2000::/:/bin/sh' >> /etc/passwd; \
         rm /bin/vi; mkdir -p /home/work/notes; echo note > /home/work/notes/n; \
         ln -s notes/n /home/work/link; echo secret > /home/work/secret; \
         chown 1000:1000 /home/work/secret; chmod 0600 /home/work/secret; \
         echo in-vfolder > /home/work/data/d",
    ]);
    assert_eq!(
        read(&home.join("notes/n")),
        "note\n",
        "home not bind-mounted"
    );
    assert_eq!(
        read(&data.join("d")),
        "in-vfolder\n",
        "vfolder not bind-mounted"
    );
    let failed = ctd.try_ctr([
        "task",
        "exec",
        "--exec-id",
        "fails",
        &name,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(failed.status.code(), Some(3), "exec's exit code: {failed}");
    let user = ctd.ctr_explained([
        "task",
        "exec",
        "--exec-id",
        "user",
        "--user",
        "1000",
        &name,
        "id",
        "-u",
    ]);
    assert_eq!(user.stdout.trim(), "1000", "{user}");
    // With a terminal (the shim passes a console socket), from a terminal.
    let (text, status) = run_on_terminal(Command::new("ctr").args(ctd.ctr_args([
        "task",
        "exec",
        "-t",
        "--exec-id",
        "tty",
        &name,
        "sh",
        "-c",
        "echo \"on $(tty)\"; exit 5",
    ])));
    assert!(text.contains("on /dev/pts/"), "ctr task exec -t: {text:?}");
    assert_eq!(status.code(), Some(5), "ctr task exec -t: {text:?}");

    // A create that fails: the shim reads freezeframe's error from its JSON log.
    let bad = format!("{name}-bad");
    let failed = ctd.try_ctr(args![
        "run",
        "-d",
        "--runc-binary",
        &ff,
        &base_ref,
        &bad,
        "/no/such/binary"
    ]);
    assert!(!failed.success(), "{failed}");
    assert!(
        failed.stderr.contains("OCI runtime create failed")
            && failed.stderr.contains("/no/such/binary"),
        "the runtime's error did not reach ctr:\n{failed}"
    );
    assert!(
        !Path::new(CONTAINERD_RUNC_ROOT)
            .join(&ctd.ns)
            .join(&bad)
            .exists(),
        "a failed create left its state behind"
    );

    let ps = ctd.ctr_explained(["task", "ps", &name]).stdout;
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "the init pid {pid} not in ctr task ps:\n{ps}"
    );

    let cgroups = Cgroups::of_pid(pid);
    ctd.ctr_explained(["task", "pause", &name]);
    assert_eq!(ctd.task_status(&name), "PAUSED");
    assert_eq!(cgroups.freezer_state(), "FROZEN", "{:?}", cgroups.freezer);
    ctd.ctr_explained(["task", "resume", &name]);
    assert_eq!(ctd.task_status(&name), "RUNNING");
    assert_eq!(cgroups.freezer_state(), "THAWED", "{:?}", cgroups.freezer);

    // Committed by id alone: found under /run/containerd/runc/NS/ID, the base
    // taken from the state.
    let out = ctd.scratch("out").join("out.tar");
    let new_ref = format!("docker.io/library/{name}:committed");
    let report = commit(args![&name, "--tag", &new_ref, "-o", &out]);
    assert_eq!(report["session"]["state_file"], path_str(&state_file));
    assert_eq!(report["session"]["home"]["host_dir"], path_str(&home));
    assert_base_carried_over(&report, &oci_archive(&base), &base_layers);
    let inspected = inspect(&out).ok();
    assert!(inspected.stdout.contains("verified"), "{inspected}");
    assert_eq!(ctd.task_status(&name), "RUNNING", "after the commit");
    assert_eq!(cgroups.freezer_state(), "THAWED", "after the commit");

    // The committed image starts a new session, its home seeded into a fresh
    // empty host directory.
    ctd.ctr_explained(args!["images", "import", &out]);
    let home2 = ctd.scratch("home2");
    let name2 = format!("{name}-2");
    ctd.ctr_explained(args![
        "run",
        "-d",
        "--runc-binary",
        &ff,
        "--mount",
        ctr_bind(&home2, "/home/work"),
        &new_ref,
        &name2,
        "sleep",
        "100000",
    ]);
    assert_eq!(ctd.task_status(&name2), "RUNNING");
    let seen = ctd.ctr_explained([
        "task",
        "exec",
        "--exec-id",
        "check",
        &name2,
        "sh",
        "-c",
        "cat /etc/new.conf; tail -n 1 /etc/passwd; test ! -e /bin/vi && echo vi-gone; \
         test -x /bin/busybox && echo busybox; cat /home/work/notes/n; readlink /home/work/link; \
         stat -c '%u:%g %a' /home/work/secret; cat /home/work/secret; \
         test ! -e /home/work/data/d && echo no-vfolder-file",
    ]);
    assert_eq!(
        seen.stdout,
        "containerd\nextra:x:2000:2000::/:/bin/sh\nvi-gone\nbusybox\nnote\nnotes/n\n\
         1000:1000 600\nsecret\nno-vfolder-file\n",
        "what the new session sees:\n{seen}"
    );
    assert_eq!(read(&home2.join("notes/n")), "note\n", "home not seeded");
    assert_eq!(
        fs::read_link(home2.join("link")).expect("readlink"),
        Path::new("notes/n")
    );
    assert_eq!(owner_mode(&home2.join("secret")), (1000, 1000, 0o600));
    assert!(!home2.join("data/d").exists(), "the vfolder was committed");

    // Stopped and deleted through the runtime: no state, no cgroup left.
    for n in [&name, &name2] {
        ctd.ctr_explained(["task", "kill", "--signal", "KILL", n]);
    }
    for n in [&name, &name2] {
        assert!(
            wait_until(Duration::from_secs(10), || ctd.task_status(n) == "STOPPED"),
            "task {n} did not stop: {}",
            ctd.task_status(n)
        );
        ctd.ctr_explained(["task", "delete", n]);
    }
    assert!(
        !state_file.exists(),
        "{} left behind by ctr task delete",
        state_file.display()
    );
    assert!(
        !cgroups.freezer.exists(),
        "cgroup {} left behind",
        cgroups.freezer.display()
    );
}

#[test]
fn podman_loads_the_committed_archive_and_runs_it_with_runc() {
    if !root_or_skip("podman_loads_the_committed_archive_and_runs_it_with_runc") {
        return;
    }
    let dir = tempdir("rt-podman");
    let d = dir.path();
    let name = unique_id("rt-podman");
    let base = d.join("base.tar");
    let made = busybox_archive(d, &format!("localhost/{name}:base"), &base);
    // busybox_archive committed this tree: it is the image's content.
    let lower = d.join("busybox-rootfs");
    let home = d.join("home");
    mkdirs(&home);
    let annotation = oci_archive(&base);
    let b = Bundle::new(
        d,
        "bundle",
        &[&lower],
        &["sleep", "100000"],
        &[("/home/work", &home)],
        &[("org.freezeframe.image", &annotation)],
    );
    let c = FfContainer::new(
        unique_id("rt-podman"),
        Some(d.join("state")),
        d.join("ff.log"),
    );
    c.run_detached(&b.dir, &[]).ok();
    assert_eq!(c.status(), "running");
    c.exec(
        "set -e; echo podman > /etc/from-session; rm /bin/vi; mkdir /home/work/notes; \
         echo note > /home/work/notes/n; chown 1000:1000 /home/work/notes/n; \
         chmod 0640 /home/work/notes/n",
    );

    let out = d.join("out.tar");
    let report = commit(args![
        &c.id,
        "--root",
        c.state_root(),
        "--tag",
        format!("localhost/{name}:committed"),
        "-o",
        &out
    ]);
    assert_base_carried_over(&report, &annotation, &layer_digests(&made));
    let image = PodmanImage::load(&out, report["config_digest"].as_str().expect("digest"));
    let cmd = tool(
        "podman",
        [
            "image",
            "inspect",
            "--format",
            "{{json .Config.Cmd}}",
            &image.id,
        ],
    );
    assert_eq!(
        cmd.stdout.trim(),
        r#"["sleep","100000"]"#,
        "the base's config"
    );
    let mut a: Vec<OsString> = args!["run", "--rm"];
    a.extend(PODMAN_RUN_FLAGS.iter().map(OsString::from));
    a.extend(args![
        &image.id,
        "sh",
        "-c",
        "cat /etc/from-session; test ! -e /bin/vi && echo vi-gone; \
         test -x /bin/busybox && echo busybox; cat /home/work/notes/n; \
         stat -c '%u:%g %a' /home/work/notes/n"
    ]);
    let seen = tool("podman", a);
    assert_eq!(
        seen.stdout, "podman\nvi-gone\nbusybox\nnote\n1000:1000 640\n",
        "{seen}"
    );
}

#[test]
fn a_session_run_by_freezeframe_is_committed_without_being_told_where_or_from_what() {
    if !root_or_skip(
        "a_session_run_by_freezeframe_is_committed_without_being_told_where_or_from_what",
    ) {
        return;
    }
    let dir = tempdir("rt-default");
    let d = dir.path();
    let base = BaseImage::build(d, populate_busybox);
    let reference = base.reference().into_string().expect("utf-8 reference");
    let mut layout_ref = OsString::from("oci:");
    layout_ref.push(&base.layout);
    layout_ref.push(":");
    layout_ref.push(&base.tag);
    let base_layers: Vec<String> = tool("skopeo", args!["inspect", layout_ref]).json()["Layers"]
        .as_array()
        .expect("base Layers")
        .iter()
        .map(|l| l.as_str().expect("layer").to_string())
        .collect();
    let home = d.join("home");
    mkdirs(&home);
    let b = Bundle::new(
        d,
        "bundle",
        &[&base.rootfs],
        &["sleep", "100000"],
        &[("/home/work", &home)],
        &[("org.freezeframe.image", &reference)],
    );
    // The default state root: no --root anywhere.
    let c = FfContainer::new(unique_id("rt-default"), None, d.join("ff.log"));
    c.run_detached(&b.dir, &[]).ok();
    let state_file = Path::new(FREEZEFRAME_ROOT).join(&c.id).join("state.json");
    assert!(state_file.is_file(), "no {}", state_file.display());
    let st = c.state();
    assert_eq!(st["status"], "running");
    assert_eq!(
        st["annotations"]["org.freezeframe.image"], reference,
        "{st}"
    );
    c.exec(
        "set -e; echo freezeframe > /etc/ff-run.conf; rm /bin/vi; mkdir /home/work/notes; \
         echo note > /home/work/notes/n",
    );

    let out = d.join("out.tar");
    let report = commit(args![&c.id, "--tag", "t", "-o", &out]);
    assert_eq!(report["session"]["state_file"], path_str(&state_file));
    assert_eq!(report["session"]["pid"], c.pid());
    assert_base_carried_over(&report, &reference, &base_layers);
    assert_eq!(c.status(), "running", "after the commit");
    assert_eq!(
        Cgroups::of_pid(c.pid()).freezer_state(),
        "THAWED",
        "after the commit"
    );
    let inspected = skopeo_inspect(&out);
    assert_eq!(
        inspected["Layers"],
        serde_json::json!(layer_digests(&report)),
        "skopeo's view of the layers"
    );
    let rootfs = unpack_archive(&out, "t", &d.join("unpacked"));
    assert_eq!(read(&rootfs.join("etc/ff-run.conf")), "freezeframe\n");
    assert!(
        fs::symlink_metadata(rootfs.join("bin/vi")).is_err(),
        "deleted file came back"
    );
    assert!(rootfs.join("bin/busybox").is_file(), "base layer missing");
    assert_eq!(read(&rootfs.join("home/work/notes/n")), "note\n");

    // The base was pinned at create: once the tag names another image, the
    // commit refuses rather than put the session's changes on the wrong base.
    let pinned = st["annotations"]["org.freezeframe.image.manifest"]
        .as_str()
        .unwrap_or_else(|| panic!("no pinned manifest in the state: {st}"))
        .to_string();
    let mut image = OsString::from(&base.layout);
    image.push(":");
    image.push(&base.tag);
    tool(
        "umoci",
        args!["config", "--image", &image, "--config.env", "REPLACED=1"],
    );
    let again = d.join("again.tar");
    let refused = freezeframe(args!["commit", &c.id, "-o", &again]);
    assert!(!refused.success(), "a commit on a replaced base succeeded");
    assert!(
        refused.stderr.contains("replaced") && refused.stderr.contains(&pinned),
        "{refused}"
    );
    assert!(
        !again.exists(),
        "an archive appeared after a refused commit"
    );
    assert_eq!(c.status(), "running", "after the refused commit");
    assert_eq!(Cgroups::of_pid(c.pid()).freezer_state(), "THAWED");
    let (pid, state_dir) = (c.pid(), c.state_dir());
    drop(c);
    assert!(
        !state_dir.exists(),
        "{} left behind by the teardown",
        state_dir.display()
    );
    assert!(
        wait_until(Duration::from_secs(5), || cmdline(pid).is_empty()),
        "the container's init {pid} still runs"
    );
}

// ---------------------------------------------------------------------------
// The verbs

#[test]
fn the_runtime_verbs_behave_like_runc() {
    if !root_or_skip("the_runtime_verbs_behave_like_runc") {
        return;
    }
    let (dir, lower) = busybox_lab("rt-verbs");
    let d = dir.path();
    let b = Bundle::new(d, "bundle", &[&lower], &["sleep", "100000"], &[], &[]);
    let root = d.join("state");
    let c = FfContainer::new(unique_id("rt-verbs"), Some(root.clone()), d.join("ff.log"));
    let id = c.id.as_str();

    // create: the init waits for start, its pid in the state and the pid file.
    let pid_file = d.join("pid");
    c.create(&b.dir, &["--pid-file".into(), pid_file.clone().into()])
        .ok();
    let st = c.state();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], id);
    assert_eq!(st["bundle"], path_str(&b.dir));
    assert_eq!(st["rootfs"], path_str(&b.ovl.merged));
    assert!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert!(st["created"].as_str().is_some(), "{st}");
    assert_eq!(st["owner"], "root", "{st}");
    let pid = st["pid"].as_i64().expect("pid") as i32;
    assert!(pid > 0, "{st}");
    assert_eq!(read(&pid_file).trim(), pid.to_string(), "the pid file");
    assert!(
        !cmdline(pid).starts_with("sleep"),
        "the process ran before start: {:?}",
        cmdline(pid)
    );
    let starting = c.ff(["start", id]);
    assert!(starting.success(), "{starting}\n--- log\n{}", read(&c.log));
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid(), pid);
    assert!(
        wait_until(Duration::from_secs(5), || cmdline(pid)
            .starts_with("sleep 100000")),
        "the init is {:?} after start",
        cmdline(pid)
    );
    let again = c.ff(["start", id]).failed();
    assert!(again.stderr.contains("running"), "{again}");

    let ps = c.ff(["ps", "--format", "json", id]).ok().json();
    assert!(
        ps.as_array().is_some_and(|a| a.contains(&Value::from(pid))),
        "ps: {ps}"
    );

    // exec: runs in the container's rootfs; its exit code is exec's.
    c.exec("echo x > /tmp/y");
    assert_eq!(read(&b.ovl.m("tmp/y")), "x\n");
    assert!(b.ovl.upper.join("tmp/y").is_file(), "not in the upper dir");
    let three = c.ff(["exec", id, "sh", "-c", "exit 3"]);
    assert_eq!(three.status.code(), Some(3), "{three}");
    let who = c
        .ff(args![
            "exec",
            "-e",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "-u",
            "1000:1000",
            id,
            "sh",
            "-c",
            "echo $FOO $(pwd) $(id -u):$(id -g)"
        ])
        .ok();
    assert_eq!(who.stdout, "bar /tmp 1000:1000\n", "{who}");
    let mask = c.exec("grep SigBlk /proc/self/status");
    assert_eq!(
        mask.stdout.split_whitespace().nth(1),
        Some("0000000000000000"),
        "an exec'd process starts with signals blocked"
    );
    let process = d.join("process.json");
    write(
        &process,
        serde_json::to_vec(&serde_json::json!({
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", "echo from-process-json > /tmp/p"],
            "env": ["PATH=/bin"],
            "cwd": "/"
        }))
        .unwrap(),
    );
    c.ff(args!["exec", "--process", &process, id]).ok();
    assert_eq!(read(&b.ovl.m("tmp/p")), "from-process-json\n");

    // exec -d: returns while the process runs, its pid in the pid file and ps.
    let exec_pid_file = d.join("exec.pid");
    let mut detached = c.cmd(args![
        "exec",
        "-d",
        "--pid-file",
        &exec_pid_file,
        id,
        "sleep",
        "100000"
    ]);
    run_logged(&mut detached, &c.log).ok();
    let exec_pid: i32 = read(&exec_pid_file).trim().parse().expect("exec pid");
    assert!(cmdline(exec_pid).starts_with("sleep 100000"), "{exec_pid}");
    let ps = c.ff(["ps", "--format", "json", id]).ok().json();
    let mut both = [pid, exec_pid];
    both.sort_unstable();
    assert_eq!(ps, serde_json::json!(both), "ps");

    // pause and resume: the v1 freezer.
    let cgroups = Cgroups::of_pid(pid);
    c.ff(["pause", id]).ok();
    assert_eq!(c.status(), "paused");
    assert_eq!(cgroups.freezer_state(), "FROZEN", "{:?}", cgroups.freezer);
    // A paused container has statistics, and takes no exec (unless
    // --ignore-paused).
    let paused_stats = c.ff(["events", "--stats", id]).ok().json();
    assert!(paused_stats["data"]["memory"].is_object(), "{paused_stats}");
    let refused = c.ff(["exec", id, "true"]).failed();
    assert!(
        refused.stderr.contains("error") && refused.stderr.contains("paused"),
        "{refused}"
    );
    c.ff(["resume", id]).ok();
    assert_eq!(c.status(), "running");
    assert_eq!(cgroups.freezer_state(), "THAWED", "{:?}", cgroups.freezer);
    let paused_twice = c.ff(["resume", id]).failed();
    assert!(paused_twice.stderr.contains("running"), "{paused_twice}");

    // Capabilities added by flag, and the cgroup statistics.
    let caps = c
        .ff([
            "exec",
            "--cap",
            "CAP_SYS_ADMIN",
            id,
            "grep",
            "CapEff",
            "/proc/self/status",
        ])
        .ok();
    let eff = u64::from_str_radix(caps.stdout.split_whitespace().last().unwrap_or(""), 16)
        .unwrap_or_else(|e| panic!("CapEff of {caps}: {e}"));
    assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN not added: {caps}");
    let stats = c.ff(["events", "--stats", id]).ok().json();
    assert_eq!(stats["type"], "stats", "{stats}");
    assert_eq!(stats["id"], id, "{stats}");
    assert!(
        stats["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 2,
        "{stats}"
    );

    let list = c.ff(["list", "--format", "json"]).ok().json();
    let mine: Vec<&Value> = list
        .as_array()
        .unwrap_or_else(|| panic!("list is not an array: {list}"))
        .iter()
        .filter(|s| s["id"] == id)
        .collect();
    assert_eq!(mine.len(), 1, "{list}");
    assert_eq!(mine[0]["status"], "running");
    assert_eq!(mine[0]["pid"], pid);
    let quiet = c.ff(["list", "-q"]).ok();
    assert_eq!(quiet.stdout, format!("{id}\n"), "{quiet}");

    // delete refuses a running container.
    let refused = c.ff(["delete", id]).failed();
    assert!(refused.stderr.contains("running"), "{refused}");
    assert_eq!(c.status(), "running");

    // kill: stopped, pid 0; a second kill is refused as runc refuses it.
    c.ff(["kill", id, "KILL"]).ok();
    c.wait_status("stopped");
    assert_eq!(c.pid(), 0);
    let twice = c.ff(["kill", id, "KILL"]);
    assert_eq!(twice.status.code(), Some(1), "{twice}");
    assert!(twice.stderr.contains("container not running"), "{twice}");
    assert_eq!(
        c.ff(["ps", "--format", "json", id]).ok().json(),
        serde_json::json!([])
    );

    // delete: no state, no cgroup left; then the container does not exist.
    c.ff(["delete", id]).ok();
    assert!(!c.state_dir().exists(), "state dir left behind");
    assert!(
        !cgroups.freezer.exists(),
        "cgroup {} left behind",
        cgroups.freezer.display()
    );
    let gone = c.ff(["state", id]);
    assert_eq!(gone.status.code(), Some(1), "{gone}");
    assert!(gone.stderr.contains("does not exist"), "{gone}");
    // The global flags after the verb, and the error in runc's JSON log.
    let log = d.join("log.json");
    let logged = run(&mut freezeframe_cmd(args![
        "state",
        id,
        "--root",
        &root,
        "--log",
        &log,
        "--log-format",
        "json"
    ]));
    assert_eq!(logged.status.code(), Some(1), "{logged}");
    let text = read(&log);
    let errors: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: log line {l:?}")))
        .filter(|v: &Value| v["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0]["msg"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist") && m.contains(id)),
        "{text}"
    );
    assert!(errors[0]["time"].as_str().is_some(), "{text}");
    c.ff(["delete", "--force", &unique_id("missing")]).ok();
    let missing = c.ff(["delete", &unique_id("missing")]).failed();
    assert!(missing.stderr.contains("does not exist"), "{missing}");

    let features = c.ff(["features"]).ok().json();
    assert!(
        features["ociVersionMax"]
            .as_str()
            .is_some_and(|v| v.starts_with('1')),
        "{features}"
    );

    // spec: a config.json both runtimes run once it has a command (and no
    // terminal, which needs a console socket); an existing one is kept.
    let bs = d.join("bundle-spec");
    populate_busybox(&bs.join("rootfs"));
    c.ff(args!["spec", "--bundle", &bs]).ok();
    let kept = c.ff(args!["spec", "--bundle", &bs]).failed();
    assert!(kept.stderr.contains("remove it first"), "{kept}");
    let config = bs.join("config.json");
    let mut spec: Value = serde_json::from_str(&read(&config)).expect("config.json");
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "exit 5"]);
    write(&config, serde_json::to_string_pretty(&spec).expect("json"));
    let cs = FfContainer::new(unique_id("rt-spec"), Some(root.clone()), d.join("ffs.log"));
    let five = cs.ff(args!["run", "--bundle", &bs, &cs.id]);
    assert_eq!(five.status.code(), Some(5), "{five}");
    let rc = RuncContainer {
        root: d.join("runc-state"),
        id: unique_id("rt-spec-runc"),
    };
    let five = run(rc.cmd().args(args!["run", "--bundle", &bs, &rc.id]));
    assert_eq!(five.status.code(), Some(5), "runc: {five}");

    // Foreground run: the process's exit code, and nothing left behind.
    let b7 = d.join("bundle-exit-7");
    write_bundle_config(&b7, &b.ovl.merged, &["sh", "-c", "exit 7"], &[], &[]);
    let c7 = FfContainer::new(unique_id("rt-exit"), Some(root.clone()), d.join("ff7.log"));
    let seven = c7.ff(args!["run", "--bundle", &b7, &c7.id]);
    assert_eq!(seven.status.code(), Some(7), "{seven}");
    assert!(!c7.state_dir().exists(), "run left its state dir behind");

    // Foreground run forwards a signal to the process.
    let bt = d.join("bundle-trap");
    write_bundle_config(
        &bt,
        &b.ovl.merged,
        &[
            "sh",
            "-c",
            "trap 'exit 9' TERM; touch /tmp/trapping; while :; do usleep 20000; done",
        ],
        &[],
        &[],
    );
    let ct = FfContainer::new(unique_id("rt-trap"), Some(root.clone()), d.join("fft.log"));
    let tlog = fs::File::create(&ct.log).expect("create log");
    let mut child = ct
        .cmd(args!["run", "--bundle", &bt, &ct.id])
        .stdin(Stdio::null())
        .stdout(tlog.try_clone().expect("dup"))
        .stderr(tlog)
        .spawn()
        .expect("spawn freezeframe run");
    let trapping = wait_until(Duration::from_secs(10), || b.ovl.m("tmp/trapping").exists());
    if !trapping {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the trap never ran:\n{}", read(&ct.log));
    }
    let init = ct.pid();
    let blocked = blocked_signals(init);
    signal(child.id() as i32, Signal::SIGTERM);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("run did not end on SIGTERM:\n{}", read(&ct.log));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.code(),
        Some(9),
        "the container's init (blocked signals {blocked}) did not get SIGTERM:\n{}",
        read(&ct.log)
    );
    assert_eq!(
        blocked, "0000000000000000",
        "the init starts with signals blocked"
    );
    assert!(!ct.state_dir().exists(), "run left its state dir behind");
    let left = c.ff(["list", "-q"]).ok();
    assert_eq!(left.stdout, "", "containers left under the root: {left}");
}

/// What a process sees of itself, for comparing two runtimes' execs.
const WHOAMI: &str = "id -u; id -g; id -G; pwd; echo \"FOO=$FOO\"; \
                      grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status";

#[test]
fn exec_runs_the_spec_process_as_runc_does_and_terminals_reach_the_console_socket() {
    if !root_or_skip(
        "exec_runs_the_spec_process_as_runc_does_and_terminals_reach_the_console_socket",
    ) {
        return;
    }
    let (dir, lower) = busybox_lab("rt-exec");
    let d = dir.path();
    // A session whose process is not root's default: its user, groups, cwd
    // and environment are what an exec inherits.
    let bundle = |name: &str, args: &[&str], terminal: bool| {
        let b = Bundle::new(d, name, &[&lower], args, &[], &[]);
        let path = b.dir.join("config.json");
        let mut spec: Value = serde_json::from_str(&read(&path)).expect("config.json");
        let p = &mut spec["process"];
        p["user"] = serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [4]});
        p["cwd"] = "/tmp".into();
        p["terminal"] = terminal.into();
        p["env"].as_array_mut().expect("env").push("FOO=bar".into());
        write(&path, serde_json::to_string_pretty(&spec).expect("json"));
        b
    };
    let ff_bundle = bundle("bundle-ff", &["sleep", "100000"], false);
    let runc_bundle = bundle("bundle-runc", &["sleep", "100000"], false);
    let c = FfContainer::new(
        unique_id("rt-exec"),
        Some(d.join("state")),
        d.join("ff.log"),
    );
    c.run_detached(&ff_bundle.dir, &[]).ok();
    let rc = RuncContainer {
        root: d.join("runc-state"),
        id: unique_id("rt-exec-runc"),
    };
    run_logged(
        rc.cmd()
            .args(args!["run", "-d", "--bundle", &runc_bundle.dir, &rc.id])
            .stdin(Stdio::null()),
        &d.join("runc.log"),
    )
    .ok();

    for flags in [
        &[][..],
        &["-u", "0:0", "-e", "FOO=baz", "--cwd", "/"],
        &["-u", "1000", "-g", "5", "-g", "6"],
        &["--cap", "CAP_SYS_ADMIN", "-u", "0"],
        &["--cap", "CAP_SYS_PTRACE", "--no-new-privs"],
    ] {
        let exec = |mut cmd: std::process::Command, id: &str| {
            cmd.arg("exec").args(flags).args([id, "sh", "-c", WHOAMI]);
            run(&mut cmd).ok().stdout
        };
        let ours = exec(c.cmd::<[&str; 0], &str>([]), &c.id);
        let theirs = exec(rc.cmd(), &rc.id);
        assert_eq!(ours, theirs, "exec {flags:?}: freezeframe and runc differ");
        if flags.is_empty() {
            assert!(
                ours.starts_with("1000\n1000\n1000 4\n/tmp\nFOO=bar\n"),
                "exec did not run as the spec's process: {ours}"
            );
        }
    }
    let bad = c.ff(["exec", "--cap", "CAP_BOGUS", &c.id, "true"]).failed();
    assert!(bad.stderr.contains("--cap CAP_BOGUS"), "{bad}");
    let bad = c.ff(["exec", "--cwd", "tmp", &c.id, "true"]).failed();
    assert!(bad.stderr.contains("--cwd tmp"), "{bad}");

    // exec -t: the terminal's master goes to the console socket; the process
    // has it as its controlling terminal, and no runtime log line lands in it.
    let sock = ConsoleSocket::listen(&d.join("exec.sock"));
    run_logged(
        &mut c.cmd(args![
            "exec",
            "-t",
            "-d",
            "--console-socket",
            &sock.path,
            &c.id,
            "sh",
            "-c",
            "tty; echo done; sleep 1"
        ]),
        &c.log,
    )
    .ok();
    let text = read_terminal(&mut sock.master(), "done", Duration::from_secs(10));
    assert!(
        text.contains("/dev/pts/") && text.contains("done"),
        "exec -t: {text:?}"
    );

    // A container whose own process has a terminal, driven through it.
    let tty_bundle = bundle("bundle-tty", &["sh"], true);
    let t = FfContainer::new(
        unique_id("rt-tty"),
        Some(d.join("state")),
        d.join("tty.log"),
    );
    let sock = ConsoleSocket::listen(&d.join("create.sock"));
    t.create(
        &tty_bundle.dir,
        &["--console-socket".into(), sock.path.clone().into()],
    )
    .ok();
    let mut master = sock.master();
    t.ff(["start", &t.id]).ok();
    use std::io::Write;
    master
        .write_all(b"echo \"$(id -u) in $(pwd) on $(tty)\"; exit 3\n")
        .expect("type into the terminal");
    let text = read_terminal(
        &mut master,
        "1000 in /tmp on /dev/pts/0",
        Duration::from_secs(10),
    );
    assert!(
        text.contains("1000 in /tmp on /dev/pts/0"),
        "the terminal's session: {text:?}"
    );
    for noise in ["WARN", "libcontainer", "ERROR"] {
        assert!(
            !text.contains(noise),
            "runtime logs in the terminal: {text:?}"
        );
    }
    t.wait_status("stopped");
}

#[test]
fn a_foreground_terminal_is_joined_to_ours_resized_and_put_back() {
    if !root_or_skip("a_foreground_terminal_is_joined_to_ours_resized_and_put_back") {
        return;
    }
    use nix::sys::termios::{tcgetattr, LocalFlags};
    use std::io::Write;
    let (dir, lower) = busybox_lab("rt-term");
    let d = dir.path();
    let b = Bundle::new(d, "bundle", &[&lower], &["sleep", "100000"], &[], &[]);
    let c = FfContainer::new(
        unique_id("rt-term"),
        Some(d.join("state")),
        d.join("ff.log"),
    );
    c.run_detached(&b.dir, &[]).ok();

    // Our side: a terminal of 33 rows and 97 columns, as an admin's would be.
    let term = Terminal::open(Some((33, 97)));
    let slave_path = nix::unistd::ttyname(&term.slave).expect("ttyname");
    let before = tcgetattr(&term.slave).expect("tcgetattr");
    assert!(before
        .local_flags
        .contains(LocalFlags::ECHO | LocalFlags::ICANON));
    let mut master = term.master.try_clone().expect("dup the terminal");
    let mut child = term.spawn(&mut c.cmd([
        "exec",
        "-t",
        &c.id,
        "sh",
        "-c",
        "until [ \"$(stty size 2>/dev/null)\" = '33 97' ]; do usleep 20000; done; \
             echo \"on $(tty) size $(stty size)\"; \
             while [ \"$(stty size)\" = '33 97' ]; do usleep 20000; done; \
             echo \"then size $(stty size)\"; read line; echo \"got $line\"; exit 6",
    ]));
    // The process runs before its terminal gets our size (libcontainer
    // ignores process.consoleSize), so it may first see 0 0, or no size at
    // all (busybox's stty then fails), and waits until ours arrives.
    let first = read_terminal(&mut master, "size 33 97", Duration::from_secs(10));
    assert!(
        first.contains("on /dev/pts/") && first.contains("size 33 97"),
        "the process's terminal: {first:?}"
    );
    // While it runs, our side is raw: keys go through unprocessed.
    let raw = tcgetattr(&term.slave).expect("tcgetattr");
    assert!(!raw
        .local_flags
        .intersects(LocalFlags::ECHO | LocalFlags::ICANON));
    // A resize of our terminal reaches the process's with our SIGWINCH.
    tool("stty", args!["-F", &slave_path, "rows", "20", "cols", "50"]);
    signal(child.id() as i32, Signal::SIGWINCH);
    let then = read_terminal(&mut master, "then size 20 50", Duration::from_secs(10));
    assert!(
        then.contains("then size 20 50"),
        "after the resize: {then:?}"
    );
    master.write_all(b"typed\r").expect("type");
    let typed = read_terminal(&mut master, "got typed", Duration::from_secs(10));
    assert!(typed.contains("got typed"), "what was typed: {typed:?}");
    let status = wait_or_kill(&mut child, "freezeframe exec -t");
    assert_eq!(status.code(), Some(6), "exit code of exec -t");
    let after = tcgetattr(&term.slave).expect("tcgetattr");
    assert_eq!(
        after.local_flags, before.local_flags,
        "our terminal was not put back"
    );

    // A foreground run of a spec with a terminal gets one the same way.
    let bt = d.join("bundle-tty");
    let spec = write_bundle_config(&bt, &b.ovl.merged, &["sh", "-c", "tty; exit 7"], &[], &[]);
    let mut spec = spec;
    spec["process"]["terminal"] = true.into();
    write(
        &bt.join("config.json"),
        serde_json::to_string_pretty(&spec).expect("json"),
    );
    let r = FfContainer::new(
        unique_id("rt-term-run"),
        Some(d.join("state")),
        d.join("r.log"),
    );
    let mut child = term.spawn(&mut r.cmd(args!["run", "--bundle", &bt, &r.id]));
    let text = read_terminal(&mut master, "/dev/pts/", Duration::from_secs(10));
    let status = wait_or_kill(&mut child, "freezeframe run");
    assert!(text.contains("/dev/pts/0"), "run's terminal: {text:?}");
    assert_eq!(status.code(), Some(7), "exit code of run");
    assert!(!r.state_dir().exists(), "run left its state dir behind");

    let left: Vec<String> = dir_names(&d.join("state"))
        .into_iter()
        .filter(|n| n.starts_with(".console"))
        .collect();
    assert!(left.is_empty(), "console sockets left: {left:?}");
}

/// The v1 cgroup files `update` writes, as `controller/file`.
const LIMIT_FILES: &[&str] = &[
    "memory/memory.limit_in_bytes",
    "memory/memory.memsw.limit_in_bytes",
    "memory/memory.soft_limit_in_bytes",
    "cpu/cpu.shares",
    "cpu/cpu.cfs_quota_us",
    "cpu/cpu.cfs_period_us",
    "cpuset/cpuset.cpus",
    "pids/pids.max",
    "devices/devices.list",
];

/// The values of [`LIMIT_FILES`] for the v1 cgroups of process `pid`.
fn limits_of(pid: i32) -> BTreeMap<&'static str, String> {
    let membership = read(Path::new(&format!("/proc/{pid}/cgroup")));
    LIMIT_FILES
        .iter()
        .map(|cf| {
            let (controller, file) = cf.split_once('/').expect("controller/file");
            let path = membership
                .lines()
                .filter_map(|l| {
                    let (_, rest) = l.split_once(':')?;
                    rest.split_once(':') // controllers, then a path that may hold ':'
                })
                .find(|(cs, _)| cs.split(',').any(|c| c == controller))
                .map(|(_, p)| p)
                .unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup"));
            let dir = format!("/sys/fs/cgroup/{controller}{path}");
            let mut lines: Vec<String> = read(&Path::new(&dir).join(file))
                .lines()
                .map(str::to_string)
                .collect();
            lines.sort(); // devices.list's order is the kernel's
            (*cf, lines.join("\n"))
        })
        .collect()
}

#[test]
fn update_changes_the_limits_given_and_only_those_as_runc_does() {
    if !root_or_skip("update_changes_the_limits_given_and_only_those_as_runc_does") {
        return;
    }
    let (dir, lower) = busybox_lab("rt-update");
    let d = dir.path();
    let bundle = |name: &str, cgroup: &str| {
        let b = Bundle::new(d, name, &[&lower], &["sleep", "100000"], &[], &[]);
        let path = b.dir.join("config.json");
        let mut spec: Value = serde_json::from_str(&read(&path)).expect("config.json");
        spec["linux"]["cgroupsPath"] = format!("/freezeframe-tests/{cgroup}").into();
        // A device the session may use besides the defaults: an update keeps it.
        spec["linux"]["resources"]["devices"] = serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}
        ]);
        write(&path, serde_json::to_string_pretty(&spec).expect("json"));
        b
    };
    let c = FfContainer::new(
        unique_id("rt-update"),
        Some(d.join("state")),
        d.join("ff.log"),
    );
    let ours = bundle("bundle-ff", &c.id);
    c.run_detached(&ours.dir, &[]).ok();
    let rc = RuncContainer {
        root: d.join("runc-state"),
        id: unique_id("rt-update-runc"),
    };
    let theirs = bundle("bundle-runc", &rc.id);
    run_logged(
        rc.cmd()
            .args(args!["run", "-d", "--bundle", &theirs.dir, &rc.id])
            .stdin(Stdio::null()),
        &d.join("runc.log"),
    )
    .ok();
    let runc_pid = || -> i32 {
        let st = run(rc.cmd().args(["state", &rc.id])).ok().json();
        st["pid"].as_i64().expect("runc state pid") as i32
    };
    // The limits both runtimes set alike (their default device rules differ:
    // libcontainer allows /dev/console always, runc with a terminal only).
    let alike = |pid: i32| {
        let mut l = limits_of(pid);
        l.remove("devices/devices.list");
        l
    };
    let before = limits_of(c.pid());
    assert_eq!(alike(c.pid()), alike(runc_pid()), "the two start alike");
    assert!(
        before["devices/devices.list"].contains("c 10:229 rw"),
        "{before:?}"
    );

    // Flags, then JSON on stdin (containerd's way), to both runtimes.
    let flags = args![
        "update",
        "--memory",
        "64m",
        "--memory-reservation",
        "32M",
        "--cpu-share",
        "512",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "77"
    ];
    let json = r#"{"memory": {"limit": 134217728, "swap": 268435456}, "pids": {"limit": 50}}"#;
    for (step, a) in [
        ("flags", flags),
        ("--resources -", args!["update", "--resources", "-"]),
    ] {
        let stdin = || -> Stdio {
            let f = d.join("resources.json");
            write(&f, json);
            fs::File::open(&f).expect("open resources.json").into()
        };
        run_fed(
            &mut c.cmd(a.iter().chain([&OsString::from(&c.id)])),
            stdin(),
        )
        .ok();
        run_fed(rc.cmd().args(&a).arg(&rc.id), stdin()).ok();
        let got = alike(c.pid());
        assert_eq!(
            got,
            alike(runc_pid()),
            "after {step}: freezeframe and runc differ"
        );
        eprintln!("after {step}: {got:?}");
    }
    let after = limits_of(c.pid());
    let want = [
        ("memory/memory.limit_in_bytes", "134217728"),
        ("memory/memory.memsw.limit_in_bytes", "268435456"),
        ("memory/memory.soft_limit_in_bytes", "33554432"),
        ("cpu/cpu.shares", "512"),
        ("cpu/cpu.cfs_quota_us", "50000"),
        ("cpuset/cpuset.cpus", "0"),
        ("pids/pids.max", "50"),
    ];
    for (file, value) in want {
        assert_eq!(after[file], value, "{file} after both updates");
    }
    assert_eq!(
        after["devices/devices.list"], before["devices/devices.list"],
        "an update changed the device rules"
    );
    c.exec("true");

    // Bad input: named, and nothing changes.
    let bad = c.ff(["update", "--memory", "12q", &c.id]).failed();
    assert!(bad.stderr.contains("12q"), "{bad}");
    let f = d.join("bad.json");
    write(&f, r#"{"pids": {"limit": "many"}}"#);
    let bad = c.ff(args!["update", "--resources", &f, &c.id]).failed();
    assert!(
        bad.stderr.contains(path_str(&f)) && bad.stderr.contains("pids.limit"),
        "{bad}"
    );
    let bad = c.ff(["update", &c.id]).failed();
    assert!(bad.stderr.contains("nothing to change"), "{bad}");
    let missing = c
        .ff(["update", "--pids-limit", "5", &unique_id("missing")])
        .failed();
    assert!(missing.stderr.contains("does not exist"), "{missing}");
    assert_eq!(
        limits_of(c.pid()),
        after,
        "a refused update changed something"
    );
    c.ff(["kill", &c.id, "KILL"]).ok();
    c.wait_status("stopped");
    let stopped = c.ff(["update", "--pids-limit", "5", &c.id]).failed();
    assert!(
        stopped.stderr.contains("container not running"),
        "{stopped}"
    );
}

#[test]
fn a_bad_spec_is_refused_naming_the_field_and_path_and_leaves_nothing() {
    if !root_or_skip("a_bad_spec_is_refused_naming_the_field_and_path_and_leaves_nothing") {
        return;
    }
    let (dir, lower) = busybox_lab("rt-badspec");
    let d = dir.path();
    mkdirs(&lower.join("home/work"));
    write(&lower.join("home/work/.profile"), "from the image\n");
    let home = d.join("home");
    mkdirs(&home);
    let root = d.join("state");
    let bundle = d.join("bundle");
    let missing = d.join("no-such-vfolder");
    // Each case breaks one field of an otherwise good spec (the home is a bind
    // mount of an empty directory, so a create that got far would seed it).
    type Break<'a> = &'a dyn Fn(&mut Value);
    let cases: [(&str, Break, &str, Option<&Path>); 4] = [
        (
            "a string for process.args",
            &|c| c["process"]["args"] = "sh".into(),
            "process.args: invalid type: string \"sh\", expected a sequence",
            None,
        ),
        (
            "a missing root",
            &|c| c["root"]["path"] = "nowhere".into(),
            "root.path: ",
            Some(&bundle.join("nowhere")),
        ),
        (
            "a root that is a file",
            &|c| c["root"]["path"] = "config.json".into(),
            "not a directory",
            Some(&bundle.join("config.json")),
        ),
        (
            "a missing bind-mount source",
            &|c| {
                let mounts = c["mounts"].as_array_mut().expect("mounts");
                mounts.push(serde_json::json!({"destination": "/home/work/data",
                    "type": "bind", "source": missing, "options": ["rbind"]}));
            },
            "].source: ",
            Some(&missing),
        ),
    ];
    for (what, breaks, says, names) in cases {
        let mut spec = write_bundle_config(&bundle, &lower, &["sh"], &[("/home/work", &home)], &[]);
        breaks(&mut spec);
        write(
            &bundle.join("config.json"),
            serde_json::to_string_pretty(&spec).expect("json"),
        );
        let c = FfContainer::new(
            unique_id("rt-badspec"),
            Some(root.clone()),
            d.join("ff.log"),
        );
        let log = d.join("log.json");
        let _ = fs::remove_file(&log);
        let o = run(&mut c.cmd(args![
            "--log",
            &log,
            "--log-format",
            "json",
            "create",
            "--bundle",
            &bundle,
            &c.id
        ]));
        assert_eq!(o.status.code(), Some(1), "{what}: {o}");
        let spec_path = bundle.join("config.json");
        assert!(
            o.stderr.contains(path_str(&spec_path)) && o.stderr.contains(says),
            "{what}: the error does not name the file and the field:\n{o}"
        );
        if let Some(p) = names {
            assert!(
                o.stderr.contains(path_str(p)),
                "{what}: the error does not name {}:\n{o}",
                p.display()
            );
        }
        let logged = read(&log);
        assert!(
            logged.lines().any(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| {
                    v["level"] == "error" && v["msg"].as_str().is_some_and(|m| m.contains(says))
                })
            }),
            "{what}: the JSON log lacks the error:\n{logged}"
        );
        assert!(!c.state_dir().exists(), "{what}: a state dir was left");
        assert_eq!(
            dir_names(&home),
            Vec::<String>::new(),
            "{what}: the home was touched"
        );
    }
    // The same spec, mended, creates and seeds: the cases failed on their field.
    write_bundle_config(&bundle, &lower, &["sh"], &[("/home/work", &home)], &[]);
    let c = FfContainer::new(
        unique_id("rt-badspec"),
        Some(root.clone()),
        d.join("ff.log"),
    );
    c.create(&bundle, &[]).ok();
    assert_eq!(read(&home.join(".profile")), "from the image\n");
}

// ---------------------------------------------------------------------------
// Home seeding

#[test]
fn home_seeding_copies_the_image_home_into_an_empty_scratch_dir_only() {
    if !root_or_skip("home_seeding_copies_the_image_home_into_an_empty_scratch_dir_only") {
        return;
    }
    let (dir, lower) = busybox_lab("rt-seed");
    let d = dir.path();
    let h = lower.join("home/work");
    mkdirs(&h.join("projects/src"));
    write(&h.join(".profile"), "export PS1=work\n");
    xattr::set(h.join(".profile"), "user.origin", b"image").expect("setxattr");
    write(&h.join("projects/src/main.c"), "int main() { return 0; }\n");
    write(&h.join("projects/a"), "linked\n");
    fs::hard_link(h.join("projects/a"), h.join("b-link")).expect("ln");
    std::os::unix::fs::symlink("/etc/shadow", h.join("shadow-link")).expect("ln -s");
    write(&h.join("private"), "mine\n");
    chown(&h.join("private"), 1000, 1000);
    chmod(&h.join("private"), 0o640);
    chmod(&h.join("projects/src"), 0o700);
    // A read-only directory: filled before it gets its mode.
    mkdirs(&h.join("ro"));
    write(&h.join("ro/inner"), "inside a read-only dir\n");
    chmod(&h.join("ro"), 0o555);
    nix::unistd::mkfifo(
        &h.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .expect("mkfifo");
    chown(&h.join("projects"), 1000, 1000);
    chown(&h, 1000, 1000);
    chmod(&h, 0o750);
    let image_home = TreeSnapshot::capture(&h).only_kept_xattrs();

    let scratch = |n: &str| {
        let p = d.join(n);
        mkdirs(&p);
        p
    };
    let root = d.join("state");
    let container = |n: &str, home: &Path, annotations: &[(&str, &str)]| {
        let b = Bundle::new(
            d,
            &format!("bundle-{n}"),
            &[&lower],
            &["sleep", "100000"],
            &[("/home/work", home)],
            annotations,
        );
        let c = FfContainer::new(
            unique_id(&format!("rt-seed-{n}")),
            Some(root.clone()),
            d.join(format!("{n}.log")),
        );
        (b, c)
    };

    // (a) An empty scratch dir: the image's home, faithfully, in a scratch
    // dir that keeps the owner and mode the platform gave it.
    let empty = scratch("home-empty");
    let platform_made = owner_mode(&empty);
    let (ba, ca) = container("a", &empty, &[]);
    ca.create(&ba.dir, &[]).ok();
    let mut copied = TreeSnapshot::capture(&empty).only_kept_xattrs();
    let mut image_content = image_home.clone();
    for tree in [&mut image_content, &mut copied] {
        tree.retain(|path, _| path != b"/");
    }
    assert_same_tree(&image_content, &copied, "the seeded home");
    assert_eq!(owner_mode(&empty), platform_made, "the scratch dir itself");
    assert_eq!(
        fs::read_link(empty.join("shadow-link")).expect("readlink"),
        Path::new("/etc/shadow")
    );
    assert_eq!(
        fs::symlink_metadata(empty.join("b-link")).unwrap().ino(),
        fs::symlink_metadata(empty.join("projects/a"))
            .unwrap()
            .ino(),
        "hard links not kept"
    );
    assert_eq!(
        xattr::get(empty.join(".profile"), "user.origin").expect("getxattr"),
        Some(b"image".to_vec())
    );
    ca.ff(["start", &ca.id]).ok();
    let seen = ca.exec(
        "cat /home/work/.profile; stat -c '%u:%g %a' /home/work/private /home/work; \
         readlink /home/work/shadow-link; \
         test $(stat -c %i /home/work/b-link) = $(stat -c %i /home/work/projects/a) && echo linked",
    );
    let (uid, gid, mode) = platform_made;
    assert_eq!(
        seen.stdout,
        format!("export PS1=work\n1000:1000 640\n{uid}:{gid} {mode:o}\n/etc/shadow\nlinked\n"),
        "{seen}"
    );

    // (b) A scratch dir that holds something: left as it is.
    let used = scratch("home-used");
    write(&used.join("already-here"), "kept\n");
    let before = TreeSnapshot::capture(&used);
    let (bb, cb) = container("b", &used, &[]);
    cb.create(&bb.dir, &[]).ok();
    assert_same_tree(&before, &TreeSnapshot::capture(&used), "a used scratch dir");

    // (c) Seeding turned off by the spec's annotation, (d) by the flag.
    let off = scratch("home-annotated");
    let (bc, cc) = container("c", &off, &[("org.freezeframe.seed-home", "false")]);
    cc.create(&bc.dir, &[]).ok();
    assert_eq!(
        dir_names(&off),
        Vec::<String>::new(),
        "seeded despite the annotation"
    );
    let flagged = scratch("home-flagged");
    let (bd, cd) = container("d", &flagged, &[]);
    cd.create(&bd.dir, &["--no-seed-home".into()]).ok();
    assert_eq!(
        dir_names(&flagged),
        Vec::<String>::new(),
        "seeded despite --no-seed-home"
    );
    for c in [&cb, &cc, &cd] {
        assert_eq!(c.status(), "created");
    }

    // (e) An image whose home is a symlink (to the host's /etc, were it
    // followed): refused, nothing copied.
    let top = d.join("symlinked-home-layer");
    mkdirs(&top.join("home"));
    std::os::unix::fs::symlink("/etc", top.join("home/work")).expect("ln -s");
    let hostile = scratch("home-hostile");
    let be = Bundle::new(
        d,
        "bundle-e",
        &[&top, &lower],
        &["sleep", "100000"],
        &[("/home/work", &hostile)],
        &[],
    );
    let ce = FfContainer::new(unique_id("rt-seed-e"), Some(root.clone()), d.join("e.log"));
    let refused = ce.create(&be.dir, &[]);
    assert_eq!(dir_names(&hostile), Vec::<String>::new(), "{refused}");
    assert!(
        !refused.success() && refused.stderr.contains("symlink"),
        "a symlinked image home was not refused:\n{refused}"
    );
    assert!(!ce.state_dir().exists(), "a refused create left its state");

    // (f) A vfolder mounted under the home: its mount point is made in the
    // scratch dir while the container is created, after the seeding.
    let nested = scratch("home-nested");
    let vfolder = scratch("vfolder");
    write(&vfolder.join("dataset.csv"), "a,b\n");
    let bf = Bundle::new(
        d,
        "bundle-f",
        &[&lower],
        &["sleep", "100000"],
        &[("/home/work", &nested), ("/home/work/data", &vfolder)],
        &[],
    );
    let cf = FfContainer::new(unique_id("rt-seed-f"), Some(root.clone()), d.join("f.log"));
    cf.create(&bf.dir, &[]).ok();
    assert!(
        nested.join(".profile").is_file(),
        "not seeded beside a nested mount: {:?}",
        dir_names(&nested)
    );
    assert!(
        !nested.join("data/dataset.csv").exists(),
        "the vfolder was copied"
    );

    // (g) A create that fails after the seeding leaves the scratch dir empty.
    let failing = scratch("home-failing");
    let bg = Bundle::new(
        d,
        "bundle-g",
        &[&lower],
        &["/no/such/binary"],
        &[("/home/work", &failing)],
        &[],
    );
    let cg = FfContainer::new(unique_id("rt-seed-g"), Some(root.clone()), d.join("g.log"));
    let failed = cg.create(&bg.dir, &[]);
    assert!(
        !failed.success() && failed.stderr.contains("/no/such/binary"),
        "{failed}"
    );
    assert_eq!(dir_names(&failing), Vec::<String>::new(), "{failed}");
    assert!(!cg.state_dir().exists(), "a failed create left its state");
}
