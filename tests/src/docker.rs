//! A private Docker daemon for the Docker node tests: Debian's `dockerd` 20.10
//! with its own data root, exec root and socket, freezeframe added as a runtime,
//! and no networking set up on the host (no bridge, no iptables). The client is
//! always `/usr/bin/docker -H unix://SOCK`, never whatever `docker` is first on
//! the PATH.
//!
//! On drop every container is thawed and removed, the daemon (and the
//! containerd it started) stopped, leftover shims killed, every mount under
//! its directories detached and the directories removed, even when a test
//! panics.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::containers::{populate_busybox, unique_id, unmount_all_under, wait_until, Cgroups};
use crate::{
    args, bin, commit_json_args, layer_entries, mkdirs, run, tempdir, tool, write, Outcome, Value,
};

/// The name freezeframe is added under (`--add-runtime freezeframe=BIN`).
pub const RUNTIME: &str = "freezeframe";

/// A `dockerd` of the test's own, on a socket in a temp dir.
pub struct Dockerd {
    /// The API socket (`-H unix://SOCK`).
    pub sock: PathBuf,
    /// `--data-root`: what freezeframe's `[stores] docker` names.
    pub data_root: PathBuf,
    /// `--exec-root`.
    pub exec_root: PathBuf,
    /// A freezeframe config naming this daemon's runc state root and data root
    /// (and no other store): see [`Dockerd::freezeframe_cmd`].
    pub config: PathBuf,
    daemon: Child,
    dir: TempDir,
}

impl Dockerd {
    /// Starts the daemon and waits (up to 60 s) until it answers.
    pub fn start(name: &str) -> Dockerd {
        let dir = tempdir(name);
        let d = dir.path();
        let (data_root, exec_root, sock) = (d.join("data"), d.join("exec"), d.join("docker.sock"));
        // An empty daemon.json: the host's /etc/docker/daemon.json must not apply.
        let daemon_json = d.join("daemon.json");
        write(&daemon_json, "{}\n");
        let config = d.join("freezeframe.toml");
        write(
            &config,
            format!(
                "[runtime]\nroots = [{:?}]\n\n[stores]\ndocker = {data_root:?}\n\
                 containers_storage = {:?}\ncontainerd = {:?}\n",
                exec_root.join("runtime-runc/moby"),
                d.join("no-containers-storage"),
                d.join("no-containerd"),
            ),
        );
        let log = fs::File::create(d.join("dockerd.log")).expect("create dockerd log");
        let mut runtime = OsString::from(format!("{RUNTIME}="));
        runtime.push(bin());
        let mut host = OsString::from("unix://");
        host.push(&sock);
        let daemon = Command::new("/usr/sbin/dockerd")
            .arg("--config-file")
            .arg(&daemon_json)
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("-H")
            .arg(&host)
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver",
                "overlay2",
                "--add-runtime",
            ])
            .arg(&runtime)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let mut dockerd = Dockerd {
            sock,
            data_root,
            exec_root,
            config,
            daemon,
            dir,
        };
        let up = wait_until(Duration::from_secs(60), || {
            if matches!(dockerd.daemon.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
            dockerd.sock.exists() && dockerd.try_docker(["version"]).success()
        });
        let exited = matches!(dockerd.daemon.try_wait(), Ok(Some(_)));
        assert!(
            up && !exited,
            "dockerd did not come up on {}:\n{}",
            dockerd.sock.display(),
            dockerd.log()
        );
        dockerd
    }

    /// The daemon's own log so far (for a failure's message).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Where Docker's runc (and every runtime it adds) keeps container state:
    /// `EXEC_ROOT/runtime-runc/moby`.
    pub fn runc_root(&self) -> PathBuf {
        self.exec_root.join("runtime-runc/moby")
    }

    /// `DATA_ROOT/containers/ID/config.v2.json`: Docker's record of a container.
    pub fn config_v2(&self, id: &str) -> PathBuf {
        self.data_root
            .join("containers")
            .join(id)
            .join("config.v2.json")
    }

    /// A scratch directory inside the daemon's temp dir.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        mkdirs(&p);
        p
    }

    /// `-H unix://SOCK ARGS`.
    pub fn docker_args<I, S>(&self, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut host = OsString::from("unix://");
        host.push(&self.sock);
        let mut a = args!["-H", host];
        a.extend(args.into_iter().map(|s| s.as_ref().to_owned()));
        a
    }

    /// `docker -H unix://SOCK ARGS`, whatever its exit status. The client
    /// reads no configuration of the host's (its own `DOCKER_CONFIG`, no
    /// `DOCKER_HOST` or context) and builds with the classic builder.
    pub fn try_docker<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("/usr/bin/docker");
        c.args(self.docker_args(args))
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        run(&mut c)
    }

    /// `docker -H unix://SOCK ARGS`, asserting success; a failure shows the
    /// daemon's log too.
    pub fn docker<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let o = self.try_docker(args);
        assert!(
            o.success(),
            "{o}\n--- dockerd.log (tail)\n{}",
            self.log_tail()
        );
        o
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `docker image inspect REF`, the one image's object.
    pub fn image_inspect(&self, reference: &str) -> Value {
        let v = self.docker(["image", "inspect", reference]).json();
        v.get(0)
            .cloned()
            .unwrap_or_else(|| panic!("docker image inspect {reference}: {v}"))
    }

    /// `RootFS.Layers` of an image: its diffIDs, bottom first.
    pub fn image_layers(&self, reference: &str) -> Vec<String> {
        let v = self.image_inspect(reference);
        v["RootFS"]["Layers"]
            .as_array()
            .unwrap_or_else(|| panic!("{reference} has no RootFS.Layers: {v}"))
            .iter()
            .map(|l| l.as_str().expect("diffID string").to_string())
            .collect()
    }

    /// A busybox base image of two layers made the way an admin would: the
    /// rootfs (busybox, `/etc/passwd` with uid 1000 `work`, plus `populate`'s
    /// files) by `docker import`, then `docker build --network none` from
    /// `FROM` that image with `dockerfile` (the lines after `FROM`). Tagged
    /// `tag`.
    pub fn build_base(
        &self,
        tag: &str,
        populate: impl FnOnce(&Path),
        dockerfile: &str,
    ) -> DockerImage {
        let work = self.scratch(&format!("base-{}", tag.replace([':', '/'], "-")));
        let root = work.join("rootfs");
        populate_busybox(&root);
        populate(&root);
        let tar = work.join("rootfs.tar");
        tool("tar", args!["-C", &root, "-cf", &tar, "."]);
        let imported = format!("{tag}-import");
        self.docker(args!["import", &tar, &imported]);
        let ctx = work.join("context");
        mkdirs(&ctx);
        write(
            &ctx.join("Dockerfile"),
            format!("FROM {imported}\n{dockerfile}\n"),
        );
        self.docker(args!["build", "--network", "none", "-q", "-t", tag, &ctx]);
        let _ = fs::remove_dir_all(&root);
        let _ = fs::remove_file(&tar);
        let v = self.image_inspect(tag);
        DockerImage {
            tag: tag.to_string(),
            id: v["Id"].as_str().expect("image Id").to_string(),
            layers: self.image_layers(tag),
        }
    }

    /// `docker run -d --name NAME EXTRA IMAGE CMD...`; the container's id, pid
    /// and cgroups are read back.
    pub fn run(
        &self,
        name: &str,
        extra: Vec<OsString>,
        image: &str,
        cmd: &[&str],
    ) -> DockerContainer<'_> {
        let mut a: Vec<OsString> = args!["run", "-d", "--name", name];
        a.extend(extra);
        a.push(image.into());
        a.extend(cmd.iter().map(OsString::from));
        self.docker(a);
        let mut c = DockerContainer {
            dockerd: self,
            name: name.to_string(),
            id: String::new(),
            pid: 0,
            cgroups: None,
        };
        c.id = c.inspect("{{.Id}}");
        c.pid = c.inspect("{{.State.Pid}}").parse().expect("docker pid");
        c.cgroups = Some(Cgroups::of_pid(c.pid));
        c
    }

    /// `docker load -i ARCHIVE`, whatever its exit status.
    pub fn load(&self, archive: &Path) -> Outcome {
        self.try_docker(args!["load", "-i", archive])
    }

    /// The paths (no `./`, no trailing slash) of the entries of the layer
    /// `docker commit CONTAINER` makes: commit, `docker save`, read the
    /// image's last layer.
    pub fn commit_layer_paths(&self, container: &str) -> BTreeSet<Vec<u8>> {
        let reference = format!("{}:1", unique_id("oracle"));
        self.docker(["commit", container, &reference]);
        let dir = self.scratch(&format!("oracle-{}", reference.replace(':', "-")));
        let saved = dir.join("saved.tar");
        self.docker(args!["save", "-o", &saved, &reference]);
        tool("tar", args!["-xf", &saved, "-C", &dir]);
        let manifest: Value = serde_json::from_str(&crate::read(&dir.join("manifest.json")))
            .expect("docker save's manifest.json");
        let top = manifest[0]["Layers"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no layers in docker save's manifest: {manifest}"));
        let paths = layer_paths(&dir.join(top));
        let _ = fs::remove_dir_all(&dir);
        paths
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.try_docker(["ps", "-aq", "--no-trunc"]).stdout;
        for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let pid = self
                .try_docker(["inspect", "--format", "{{.State.Pid}}", id])
                .stdout
                .trim()
                .parse::<i32>()
                .ok();
            if let Some(cg) = pid.filter(|p| *p > 0).and_then(Cgroups::try_of_pid) {
                cg.thaw_quietly();
            }
            let o = self.try_docker(["rm", "--force", "--volumes", id]);
            if !o.success() {
                eprintln!("teardown: {o}");
            }
        }
        let _ = kill(Pid::from_raw(self.daemon.id() as i32), Signal::SIGTERM);
        let stopped = wait_until(Duration::from_secs(30), || {
            matches!(self.daemon.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            eprintln!("teardown: dockerd did not stop in 30 s; killing it");
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
        // The containerd dockerd started, and any shim of it, by the socket
        // path of this daemon's own exec root.
        let ours = self.exec_root.join("containerd");
        let ours = ours.as_os_str().as_encoded_bytes();
        let leftovers = || {
            std::thread::sleep(Duration::from_millis(20));
            processes_naming(ours)
                .into_iter()
                .filter(|p| *p != std::process::id() as i32)
                .collect::<Vec<_>>()
        };
        if !wait_until(Duration::from_secs(10), || leftovers().is_empty()) {
            for pid in leftovers() {
                eprintln!("teardown: killing leftover process {pid} of the private dockerd");
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        unmount_all_under(self.dir.path());
    }
}

/// Pids of the processes with an argument that contains `needle`.
fn processes_naming(needle: &[u8]) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg.windows(needle.len()).any(|w| w == needle))
                .then_some(pid)
        })
        .collect()
}

/// The entry paths of a layer tar (any compression), normalized: no leading
/// `./` or `/`, no trailing slash, the root itself left out.
pub fn layer_paths(blob: &Path) -> BTreeSet<Vec<u8>> {
    layer_entries(blob)
        .into_iter()
        .filter_map(|e| {
            let mut p: &[u8] = &e.path;
            while let Some(rest) = p.strip_prefix(b"./").or_else(|| p.strip_prefix(b"/")) {
                p = rest;
            }
            let p = p.strip_suffix(b"/").unwrap_or(p);
            (!p.is_empty() && p != b".").then(|| p.to_vec())
        })
        .collect()
}

/// An image built in a [`Dockerd`].
#[derive(Debug, Clone)]
pub struct DockerImage {
    pub tag: String,
    /// `sha256:…`, the config's digest.
    pub id: String,
    /// `RootFS.Layers`: diffIDs, bottom first.
    pub layers: Vec<String>,
}

impl DockerImage {
    /// The id's hex without `sha256:`.
    pub fn hex(&self) -> &str {
        self.id.strip_prefix("sha256:").unwrap_or(&self.id)
    }
}

/// A container of a [`Dockerd`]; removed with the daemon.
pub struct DockerContainer<'d> {
    pub dockerd: &'d Dockerd,
    pub name: String,
    /// The full id, which is also the runc container id.
    pub id: String,
    pub pid: i32,
    cgroups: Option<Cgroups>,
}

impl DockerContainer<'_> {
    /// `docker inspect --format FORMAT NAME`, trimmed.
    pub fn inspect(&self, format: &str) -> String {
        self.dockerd
            .docker(["inspect", "--format", format, &self.name])
            .stdout
            .trim()
            .to_string()
    }

    /// `docker exec NAME sh -c SCRIPT`, asserting success.
    pub fn exec(&self, script: &str) -> Outcome {
        self.dockerd
            .docker(["exec", &self.name, "sh", "-c", script])
    }

    /// `docker exec -u USER NAME sh -c SCRIPT`, asserting success.
    pub fn exec_as(&self, user: &str, script: &str) -> Outcome {
        self.dockerd
            .docker(["exec", "-u", user, &self.name, "sh", "-c", script])
    }

    /// The container's cgroups (read when it started).
    pub fn cgroups(&self) -> &Cgroups {
        self.cgroups.as_ref().expect("a started container")
    }

    /// Running, not paused (per Docker), the same init, and thawed (per both
    /// cgroup hierarchies; per the v1 freezer alone when the container has no
    /// cgroup2 dir of its own, as freezeframe's runtime leaves it on a hybrid
    /// host); panics naming `when` otherwise.
    pub fn assert_running_and_thawed(&self, when: &str) {
        assert_eq!(
            self.inspect("{{.State.Running}} {{.State.Paused}} {{.State.Pid}}"),
            format!("true false {}", self.pid),
            "{when}: docker's state of {}",
            self.name
        );
        let cgroups = self.cgroups();
        if cgroups.unified.join("cgroup.freeze").exists() {
            cgroups.assert_thawed(when);
        } else {
            assert_eq!(
                cgroups.freezer_state(),
                "THAWED",
                "{when}: {} is not thawed",
                cgroups.freezer.display()
            );
        }
    }
}

impl Dockerd {
    /// `freezeframe --config CONFIG ARGS`: freezeframe configured for this
    /// daemon alone (its runc state root, its data root as `[stores] docker`).
    pub fn freezeframe_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&self.config).args(args);
        c.env_remove("FREEZEFRAME_CONFIG");
        c
    }

    /// `freezeframe --config CONFIG commit --json ARGS`, whatever its exit status.
    pub fn try_commit<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.freezeframe_cmd(commit_json_args(args)))
    }

    /// `freezeframe --config CONFIG commit --json ARGS`: asserts success and
    /// returns the report.
    pub fn commit<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.try_commit(args).ok().json()
    }
}

/// Every layer of a commit's `--json` report (base layers first): `layers`,
/// or `commit.layers` if the report nests it.
pub fn report_layers(report: &Value) -> Vec<Value> {
    report["layers"]
        .as_array()
        .or_else(|| report["commit"]["layers"].as_array())
        .unwrap_or_else(|| panic!("no layers in the report: {report}"))
        .clone()
}
