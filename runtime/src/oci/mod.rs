//! The OCI runtime verbs, on youki's `libcontainer`: what containerd's runc shim
//! calls (`create`, `start`, `state`, `kill`, `delete`, `pause`, `resume`, `ps`,
//! `exec`) plus `run` and `list`, with runc's semantics where the shim depends
//! on them.
//!
//! libcontainer forks: call these from a single-threaded process.

pub mod console;
pub mod seed;

use std::collections::{BTreeMap, HashMap};
use std::io::Seek;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use libcgroups::common::CgroupManager;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::error::LibcontainerError;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{self as nix_signal, SigSet, Signal as NixSignal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{Capabilities, Capability, LinuxResources, Mount, Process, Spec};
use serde::Serialize;

use self::console::{Console, ConsoleSocket};
use self::seed::Seeded;
use crate::session::freezer::Cgroup;
use crate::session::BASE_IMAGE_ANNOTATIONS;

/// The annotation a container's state records its base image under.
pub const IMAGE_ANNOTATION: &str = "org.freezeframe.image";
/// The manifest digest of that image when the container was created, so a
/// commit can tell the image has been replaced since.
pub const IMAGE_MANIFEST_ANNOTATION: &str = "org.freezeframe.image.manifest";
/// A spec annotation that turns home seeding off for one container (`"false"`).
pub const SEED_ANNOTATION: &str = "org.freezeframe.seed-home";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Worded as runc words it: containerd's shim matches "does not exist".
    #[error("container {id:?} does not exist")]
    NotExist { id: String },

    /// Worded as runc words it: containerd's shim matches "container not running".
    #[error("container {id:?}: container not running (status {status})")]
    NotRunning { id: String, status: String },

    #[error("container {id:?}: cannot {op} a container that is {status}")]
    Status {
        id: String,
        op: &'static str,
        status: String,
    },

    #[error("container {id:?}: {op}: {source}")]
    Libcontainer {
        id: String,
        op: &'static str,
        #[source]
        source: Box<LibcontainerError>,
    },

    #[error("{}: {message}", path.display())]
    Spec { path: PathBuf, message: String },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("container {id:?}: seeding {}: {source}", target.display())]
    Seed {
        id: String,
        target: PathBuf,
        #[source]
        source: seed::SeedError,
    },

    #[error("invalid signal {0:?}")]
    Signal(String),

    #[error("container {id:?}: {source}")]
    Cgroup {
        id: String,
        #[source]
        source: crate::session::freezer::Error,
    },

    #[error("container {id:?}: {op}: {message}")]
    Cgroups {
        id: String,
        op: &'static str,
        message: String,
    },

    #[error("container {id:?}: exec: {message}")]
    Exec { id: String, message: String },

    #[error("container {id:?}: terminal: {source}")]
    Console { id: String, source: std::io::Error },

    #[error("waiting for pid {pid}: {source}")]
    Wait { pid: i32, source: nix::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A runtime state root (runc's `--root`) and how cgroups are managed there.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    systemd: bool,
}

/// What `create` and `run` take besides the id.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// Copy the image's content at this container path into the empty scratch
    /// directory bind-mounted there, before the container starts.
    pub seed: Option<PathBuf>,
    /// The manifest digest of the image the spec names, to pin in the state
    /// beside it (this crate knows nothing of image formats); `None` when the
    /// image cannot be read.
    pub image_digest: Option<fn(&str) -> Option<String>>,
}

/// What `exec` takes besides the id.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A process.json in the runtime spec's format (what containerd passes).
    pub process: Option<PathBuf>,
    /// Or the command line, run as runc runs it: the spec's process (its user,
    /// cwd, environment, capabilities, rlimits) with these changes.
    pub args: Vec<String>,
    /// Give the process a pseudo-terminal (runc's `--tty`).
    pub terminal: bool,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    /// Capabilities added to the process's sets.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    /// Exec into a paused container too (runc's `--ignore-paused`).
    pub ignore_paused: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
}

/// A container's state as `runc state` and `runc list --format json` print it.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: serde_json::Value,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What home seeding did, and in which directory, for the caller to log.
pub type SeedReport = Option<(PathBuf, Seeded)>;

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, systemd: bool) -> Self {
        Self {
            root: root.into(),
            systemd,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the container and leaves its init process waiting for `start`.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<SeedReport> {
        self.build(id, opts, true).map(|(_, seeded, _)| seeded)
    }

    /// Creates and starts a container; unless `detach`, waits for it to exit,
    /// forwarding signals, deletes it, and returns its exit code.
    pub fn run(&self, id: &str, opts: &CreateOptions, detach: bool) -> Result<i32> {
        let (mut container, _, console) = self.build(id, opts, detach)?;
        // Blocked only now: the container's processes would inherit the mask.
        // Before its start, the init cannot have exited.
        let forwarded = (!detach).then(block_forwarded_signals).transpose()?;
        let console = match console.map(ConsoleSocket::attach).transpose() {
            Ok(console) => console,
            Err(source) => {
                let _ = container.delete(true);
                return Err(console_error(id, source));
            }
        };
        container.start().map_err(lib(id, "start"))?;
        let Some(forwarded) = forwarded else {
            return Ok(0);
        };
        let pid = container.pid().ok_or_else(|| Error::NotRunning {
            id: id.into(),
            status: "without an init process".into(),
        })?;
        let code = forward_until_exit(pid, &forwarded, console.as_ref());
        if let Some(console) = console {
            console.finish();
        }
        let deleted = container.delete(true).map_err(lib(id, "delete"));
        let code = code?;
        deleted?;
        Ok(code)
    }

    fn build(
        &self,
        id: &str,
        opts: &CreateOptions,
        detach: bool,
    ) -> Result<(Container, SeedReport, Option<ConsoleSocket>)> {
        self.ensure_root()?;
        let bundle = std::path::absolute(&opts.bundle).map_err(|source| Error::Io {
            path: opts.bundle.clone(),
            source,
        })?;
        let spec_path = bundle.join("config.json");
        let spec = load_json::<Spec>(&spec_path)?;
        check_host_paths(&spec_path, &bundle, &spec)?;
        let terminal = spec.process().as_ref().and_then(|p| p.terminal());
        let (console, console_socket) = self.console_for(terminal, detach, &opts.console_socket)?;
        let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .and_then(|b| b.with_pid_file(opts.pid_file.as_ref()))
            .and_then(|b| {
                b.with_console_socket(console_socket.as_ref())
                    .with_preserved_fds(opts.preserve_fds)
                    .validate_id()
            })
            .map_err(lib(id, "create"))?;
        // Seeded before libcontainer mounts anything: it creates the mount
        // points of nested mounts (vfolders) inside the scratch directory,
        // which would then no longer be empty.
        let seeded = match &opts.seed {
            Some(home) => seed_home(id, &bundle, &spec, home)?,
            None => None,
        };
        let built = builder
            .as_init(&bundle)
            .with_systemd(self.systemd)
            // libcontainer takes a console socket only from a detached
            // caller, which is all its `detach` changes.
            .with_detach(detach || console.is_some())
            .with_no_pivot(opts.no_pivot)
            .build()
            .map_err(lib(id, "create"));
        let mut container = match built {
            Ok(c) => c,
            Err(e) => {
                // The scratch directory was empty before the copy: leave it so.
                if let Some((scratch, Seeded::Copied { .. })) = &seeded {
                    if let Err(u) = seed::unseed(scratch) {
                        tracing::error!(id, "undoing the home seeding: {u}");
                    }
                }
                return Err(e);
            }
        };

        // Record the base image under one key, so a later commit finds it
        // whatever key the platform used.
        if let Some(image) = image_of(&spec) {
            let digest = opts.image_digest.and_then(|find| find(&image));
            let annotations = container.state.annotations.get_or_insert_with(HashMap::new);
            annotations.insert(IMAGE_ANNOTATION.into(), image);
            if let Some(digest) = digest {
                annotations.insert(IMAGE_MANIFEST_ANNOTATION.into(), digest);
            }
            container.save().map_err(lib(id, "record the base image"))?;
        }
        Ok((container, seeded, console))
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        if !c.can_start() {
            return Err(self.status_error(&c, "start"));
        }
        c.start().map_err(lib(id, "start"))
    }

    pub fn state(&self, id: &str) -> Result<State> {
        let c = self.load(id)?;
        Ok(state_of(&c))
    }

    /// Every container under the root, by id; entries that are not containers
    /// (no state file) are skipped.
    pub fn list(&self) -> Result<Vec<State>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if let Ok(c) = Container::load(entry.path()) {
                out.push(state_of(&c));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Sends a signal (`"9"`, `"KILL"` or `"SIGKILL"`) to the init process, or
    /// with `all` to every process of the container.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<()> {
        let signal = Signal::try_from(signal).map_err(|_| Error::Signal(signal.into()))?;
        let mut c = self.load(id)?;
        if !(c.can_kill() || all && c.status() == ContainerStatus::Stopped) {
            return Err(not_running(&c));
        }
        c.kill(signal, all).map_err(lib(id, "kill"))
    }

    /// Deletes a stopped (or, with `force`, any) container. As with runc, a
    /// forced delete of a container that does not exist succeeds, and removes a
    /// directory left by a create that never wrote its state.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut c = match self.load(id) {
            Ok(c) => c,
            Err(Error::NotExist { .. }) if force => {
                let dir = self.root.join(id);
                return match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                        path: dir,
                        source: e,
                    }),
                    _ => Ok(()),
                };
            }
            Err(e) => return Err(e),
        };
        if !force
            && !matches!(
                c.status(),
                ContainerStatus::Stopped | ContainerStatus::Created
            )
        {
            return Err(self.status_error(&c, "delete"));
        }
        match c.delete(force) {
            // Another delete (a foreground run's, say) got there first.
            Err(_) if force && !self.root.join(id).exists() => Ok(()),
            other => other.map_err(lib(id, "delete")),
        }
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        if !c.can_pause() {
            return Err(self.status_error(&c, "pause"));
        }
        c.pause().map_err(lib(id, "pause"))
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        if !c.can_resume() {
            return Err(self.status_error(&c, "resume"));
        }
        c.resume().map_err(lib(id, "resume"))
    }

    /// The pids in the container's cgroup (none once it has stopped).
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let c = self.load(id)?;
        let Some(pid) = c.pid().filter(|_| c.status() != ContainerStatus::Stopped) else {
            return Ok(Vec::new());
        };
        let cgroup = |source| Error::Cgroup {
            id: id.into(),
            source,
        };
        let mut pids = Cgroup::of_pid(pid.as_raw(), None)
            .and_then(|cg| cg.pids())
            .map_err(cgroup)?;
        pids.sort_unstable();
        Ok(pids)
    }

    /// Starts a process in the container. Detached, returns 0 once it runs;
    /// otherwise waits for it and returns its exit code.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        let c = self.load(id)?;
        use ContainerStatus::{Created, Paused, Running};
        require_status(
            &c,
            if opts.ignore_paused {
                &[Running, Created, Paused]
            } else {
                &[Running, Created]
            },
        )?;
        // A command line becomes a process.json in an unnamed file, which
        // libcontainer reads (before it forks) through /proc/self/fd.
        let unnamed;
        let (process, terminal) = match &opts.process {
            Some(path) => (path.clone(), load_json::<Process>(path)?.terminal()),
            None => {
                let spec = load_json::<Spec>(&c.bundle().join("config.json"))?;
                let process = exec_process(&spec, opts).map_err(|message| Error::Exec {
                    id: id.into(),
                    message,
                })?;
                unnamed = process_file(&process)?;
                let path = PathBuf::from(format!("/proc/self/fd/{}", unnamed.as_raw_fd()));
                (path, process.terminal())
            }
        };
        let (console, console_socket) =
            self.console_for(terminal, opts.detach, &opts.console_socket)?;
        let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .and_then(|b| b.with_pid_file(opts.pid_file.as_ref()))
            .map(|b| {
                b.with_console_socket(console_socket.as_ref())
                    .with_preserved_fds(opts.preserve_fds)
                    .as_tenant()
                    .with_detach(opts.detach || console.is_some())
                    .with_process(Some(&process))
                    .with_ignore_paused(opts.ignore_paused)
            })
            .and_then(|b| b.build())
            .map_err(lib(id, "exec"))?;
        if opts.detach {
            return Ok(0);
        }
        // Blocked after the fork, which the process would inherit; one that has
        // exited already is reaped by the wait loop's first pass.
        let forwarded = block_forwarded_signals()?;
        let console = console
            .map(ConsoleSocket::attach)
            .transpose()
            .map_err(|source| {
                let _ = nix_signal::kill(pid, NixSignal::SIGKILL);
                console_error(id, source)
            })?;
        let code = forward_until_exit(pid, &forwarded, console.as_ref());
        if let Some(console) = console {
            console.finish();
        }
        code
    }

    /// A console socket of our own when a foreground process wants a
    /// terminal and the caller has given no socket (its master is then
    /// joined to our stdin and stdout), and the socket libcontainer is to
    /// send the master to: ours, or the one given.
    fn console_for(
        &self,
        terminal: Option<bool>,
        detach: bool,
        given: &Option<PathBuf>,
    ) -> Result<(Option<ConsoleSocket>, Option<PathBuf>)> {
        if terminal != Some(true) || detach || given.is_some() {
            return Ok((None, given.clone()));
        }
        let ours = ConsoleSocket::listen(&self.root).map_err(|source| Error::Io {
            path: self.root.clone(),
            source,
        })?;
        let path = ours.path();
        Ok((Some(ours), Some(path)))
    }

    /// The container's cgroup statistics, in runc's `events --stats` envelope
    /// (`{"type": "stats", "id", "data"}`). A paused container has them too.
    pub fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let c = self.load(id)?;
        require_status(&c, &[ContainerStatus::Running, ContainerStatus::Paused])?;
        let op = "cgroup statistics";
        let stats = cgroup_manager(&c, op)?
            .stats()
            .map_err(|e| cgroups_error(&c, op, e))?;
        Ok(serde_json::json!({ "type": "stats", "id": id, "data": stats }))
    }

    /// Changes a container's resource limits as `runc update` does: the values
    /// `changes` holds are written to its cgroups, and no others.
    pub fn update(&self, id: &str, changes: &LinuxResources) -> Result<()> {
        use libcgroups::common::{get_cgroup_setup, CgroupSetup, ControllerOpt};
        let c = self.load(id)?;
        use ContainerStatus::{Created, Paused, Running};
        require_status(&c, &[Running, Paused, Created])?;
        let op = "update";
        let spec = load_json::<Spec>(&c.bundle().join("config.json"))?;
        let limits = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let mut resources = changes.clone();
        // An update does not change device rules. Under cgroup v1 they are
        // left as they are; under v2 they are one program, which libcgroups
        // replaces whole, so the spec's rules go into the new one.
        let v2 = matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified));
        resources.set_devices(limits.and_then(|l| l.devices().clone()).filter(|_| v2));
        // libcgroups writes the OOM killer's switch with any memory change.
        let disable_oom_killer = limits
            .and_then(|l| l.memory().as_ref())
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false);
        cgroup_manager(&c, op)?
            .apply(&ControllerOpt {
                resources: &resources,
                disable_oom_killer,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| cgroups_error(&c, op, e))
    }

    fn load(&self, id: &str) -> Result<Container> {
        let not_exist = || Error::NotExist { id: id.into() };
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(not_exist());
        }
        let dir = self.root.join(id);
        if !dir.join("state.json").exists() {
            return Err(not_exist());
        }
        Container::load(dir).map_err(lib(id, "load its state"))
    }

    fn ensure_root(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(|source| Error::Io {
                path: self.root.clone(),
                source,
            })
    }

    fn status_error(&self, c: &Container, op: &'static str) -> Error {
        Error::Status {
            id: c.id().into(),
            op,
            status: status_name(c.status()).into(),
        }
    }
}

/// The image a spec says the container runs: the first of the annotations a
/// platform may name it by.
fn image_of(spec: &Spec) -> Option<String> {
    let annotations = spec.annotations().as_ref()?;
    BASE_IMAGE_ANNOTATIONS
        .iter()
        .find_map(|k| annotations.get(*k).cloned())
}

/// Reads a runtime spec (or a process.json) with errors that name the file and
/// the field at fault (`oci-spec`'s own loader says only "serde failed").
fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json(path, &text)
}

/// Parses `text`, JSON read from `source` (a file, or what stands for
/// stdin), with an error that names it and the field at fault.
pub fn parse_json<T: serde::de::DeserializeOwned>(source: &Path, text: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| Error::Spec {
        path: source.to_path_buf(),
        message: match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            field => format!("{field}: {}", e.inner()),
        },
    })
}

/// Refuses a container whose status is not one of `allowed`, in runc's words.
fn require_status(c: &Container, allowed: &[ContainerStatus]) -> Result<()> {
    if allowed.contains(&c.status()) {
        Ok(())
    } else {
        Err(not_running(c))
    }
}

fn not_running(c: &Container) -> Error {
    Error::NotRunning {
        id: c.id().into(),
        status: status_name(c.status()).into(),
    }
}

/// The manager of a container's cgroups, as libcontainer set them up.
fn cgroup_manager(c: &Container, op: &'static str) -> Result<libcgroups::common::AnyCgroupManager> {
    use libcgroups::common::{create_cgroup_manager, CgroupConfig};
    let config = c.spec().map_err(lib(c.id(), "read its config"))?;
    create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: c.systemd(),
        container_name: c.id().into(),
    })
    .map_err(|e| cgroups_error(c, op, e))
}

fn cgroups_error(c: &Container, op: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Cgroups {
        id: c.id().into(),
        op,
        message: e.to_string(),
    }
}

fn console_error(id: &str, source: std::io::Error) -> Error {
    Error::Console {
        id: id.into(),
        source,
    }
}

/// Wraps libcontainer's error with the container and what was being done.
fn lib(id: &str, op: &'static str) -> impl FnOnce(LibcontainerError) -> Error {
    let id = id.to_string();
    move |source| Error::Libcontainer {
        id,
        op,
        source: Box::new(source),
    }
}

fn status_name(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

fn state_of(c: &Container) -> State {
    let bundle = c.bundle().clone();
    let rootfs = load_json::<Spec>(&bundle.join("config.json"))
        .ok()
        .and_then(|s| s.root().as_ref().map(|r| bundle.join(r.path())))
        .unwrap_or_else(|| bundle.join("rootfs"));
    let stopped = c.status() == ContainerStatus::Stopped;
    State {
        oci_version: c.state.oci_version.clone(),
        id: c.id().into(),
        pid: c.pid().filter(|_| !stopped).map_or(0, Pid::as_raw),
        status: status_name(c.status()).into(),
        bundle,
        rootfs,
        created: serde_json::to_value(c.created()).unwrap_or_default(),
        owner: c
            .creator()
            .map(|o| o.to_string_lossy().into_owned())
            .unwrap_or_default(),
        annotations: c
            .state
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// Seeds the scratch directory bind-mounted at `home` from the image, unless the
/// spec mounts nothing there or opts out with [`SEED_ANNOTATION`].
fn seed_home(
    id: &str,
    bundle: &Path,
    spec: &Spec,
    home: &Path,
) -> Result<Option<(PathBuf, Seeded)>> {
    let opted_out = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(SEED_ANNOTATION))
        .is_some_and(|v| v == "false");
    let bind = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == home && is_bind(m));
    let (Some(bind), false) = (bind, opted_out) else {
        return Ok(None);
    };
    let Some(source) = bind.source() else {
        return Ok(None);
    };
    let scratch = bundle.join(source);
    let root = spec
        .root()
        .as_ref()
        .map_or_else(|| Path::new("rootfs"), |r| r.path());
    let rootfs = bundle.join(root);
    let seeded = seed::seed(&rootfs, home, &scratch).map_err(|source| Error::Seed {
        id: id.into(),
        target: scratch.clone(),
        source,
    })?;
    Ok(Some((scratch, seeded)))
}

/// The process `runc exec ID ARGS…` runs: the spec's own, with the command
/// line's arguments, terminal, cwd, user, groups, capabilities, environment
/// (a variable given replaces the spec's) and no-new-privileges.
fn exec_process(spec: &Spec, opts: &ExecOptions) -> std::result::Result<Process, String> {
    if opts.args.is_empty() {
        return Err("no command given".into());
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.terminal));
    if let Some(cwd) = &opts.cwd {
        if cwd.is_relative() {
            return Err(format!("--cwd {}: not an absolute path", cwd.display()));
        }
        p.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = opts.user {
        p.user_mut().set_uid(uid);
        if let Some(gid) = gid {
            p.user_mut().set_gid(gid);
        }
    }
    if !opts.additional_gids.is_empty() {
        let user = p.user_mut();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&opts.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    if !opts.caps.is_empty() {
        let added = opts
            .caps
            .iter()
            .map(|c| {
                serde_json::from_value::<Capability>(c.as_str().into())
                    .map_err(|_| format!("--cap {c}: not a capability"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.extend(added.iter().copied());
            Some(set)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        // Ambient capabilities need inheritable ones: only a spec that has
        // some gets them, as with runc.
        if caps.inheritable().is_some() {
            caps.set_ambient(add(caps.ambient()));
        }
        p.set_capabilities(Some(caps));
    }
    if !opts.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &opts.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// `process` as JSON in a memory file, rewound.
fn process_file(process: &Process) -> Result<std::fs::File> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let io = |source| Error::Io {
        path: "memfd:process.json".into(),
        source,
    };
    let fd =
        memfd_create(c"process.json", MemFdCreateFlag::MFD_CLOEXEC).map_err(|e| io(e.into()))?;
    let mut f = std::fs::File::from(fd);
    serde_json::to_writer(&mut f, process).map_err(|e| io(e.into()))?;
    f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    Ok(f)
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// Checks that the host paths a spec names exist, so that a mistake is
/// reported with the field and path at fault: libcontainer finds them only in
/// the container's init, and says "failed to prepare rootfs".
fn check_host_paths(spec_path: &Path, bundle: &Path, spec: &Spec) -> Result<()> {
    let bad = |field: String, path: &Path, why: String| Error::Spec {
        path: spec_path.to_path_buf(),
        message: format!("{field}: {}: {why}", path.display()),
    };
    let root = bundle.join(
        spec.root()
            .as_ref()
            .map_or(Path::new("rootfs"), |r| r.path()),
    );
    match std::fs::metadata(&root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(bad("root.path".into(), &root, "not a directory".into())),
        Err(e) => return Err(bad("root.path".into(), &root, e.to_string())),
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let Some(source) = m.source().as_ref().filter(|_| is_bind(m)) else {
            continue;
        };
        let source = bundle.join(source);
        if let Err(e) = std::fs::metadata(&source) {
            return Err(bad(format!("mounts[{i}].source"), &source, e.to_string()));
        }
    }
    Ok(())
}

/// Blocks the signals a foreground `run` or `exec` passes on to its process,
/// for [`forward_until_exit`] to wait for.
fn block_forwarded_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in [
        NixSignal::SIGINT,
        NixSignal::SIGTERM,
        NixSignal::SIGHUP,
        NixSignal::SIGQUIT,
        NixSignal::SIGUSR1,
        NixSignal::SIGUSR2,
        NixSignal::SIGWINCH,
        NixSignal::SIGCHLD,
    ] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|source| Error::Wait { pid: 0, source })?;
    Ok(set)
}

/// Waits for `pid` to exit, passing every blocked signal in `set` on to it and
/// reaping other children; returns its exit code (128 + signal if killed).
fn forward_until_exit(pid: Pid, set: &SigSet, console: Option<&Console>) -> Result<i32> {
    let wait_err = |source| Error::Wait {
        pid: pid.as_raw(),
        source,
    };
    loop {
        // Reap first: the child may have exited before its SIGCHLD was blocked.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(128 + sig as i32),
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(wait_err(e)),
            }
        }
        let sig = set.wait().map_err(wait_err)?;
        if let (NixSignal::SIGWINCH, Some(console)) = (sig, console) {
            // The resize reaches the process as its terminal's SIGWINCH.
            console.resize();
        } else if sig != NixSignal::SIGCHLD {
            // The process may be gone already; its exit is reaped above.
            let _ = nix_signal::kill(pid, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(process: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": process,
        }))
        .unwrap()
    }

    fn exec(args: &[&str]) -> ExecOptions {
        ExecOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn exec_inherits_the_spec_process_and_changes_only_what_is_given() {
        let s = spec(serde_json::json!({
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [4]},
            "cwd": "/home/work",
            "args": ["sleep", "1000"],
            "env": ["PATH=/bin", "FOO=bar"],
            "terminal": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        }));
        let p = exec_process(&s, &exec(&["sh"])).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[4][..]));
        assert_eq!(p.cwd(), Path::new("/home/work"));
        assert_eq!(
            p.terminal(),
            Some(false),
            "the spec's terminal is not the exec's"
        );
        assert_eq!(p.rlimits(), s.process().as_ref().unwrap().rlimits());

        let opts = ExecOptions {
            env: vec!["FOO=baz".into(), "NEW=1".into()],
            cwd: Some("/tmp".into()),
            user: Some((0, Some(5))),
            additional_gids: vec![6],
            terminal: true,
            no_new_privs: true,
            ..exec(&["id"])
        };
        let p = exec_process(&s, &opts).unwrap();
        assert_eq!(
            p.env().as_deref(),
            Some(&["PATH=/bin".to_string(), "FOO=baz".into(), "NEW=1".into()][..])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (0, 5));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[4, 6][..]));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.no_new_privileges(), Some(true));
    }

    #[test]
    fn exec_caps_are_added_and_ambient_only_beside_inheritable() {
        let caps = |inheritable: bool| {
            let mut c = serde_json::json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                           "permitted": ["CAP_KILL"]});
            if inheritable {
                c["inheritable"] = serde_json::json!(["CAP_KILL"]);
            }
            spec(serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/",
                                    "capabilities": c}))
        };
        let opts = ExecOptions {
            caps: vec!["CAP_SYS_ADMIN".into(), "net_admin".into()],
            ..exec(&["sh"])
        };
        for inheritable in [false, true] {
            let p = exec_process(&caps(inheritable), &opts).unwrap();
            let c = p.capabilities().as_ref().unwrap();
            for set in [c.bounding(), c.effective(), c.permitted()] {
                let set = set.as_ref().unwrap();
                assert!(set.contains(&Capability::SysAdmin) && set.contains(&Capability::NetAdmin));
                assert!(set.contains(&Capability::Kill));
            }
            assert_eq!(
                c.ambient()
                    .as_ref()
                    .is_some_and(|a| a.contains(&Capability::SysAdmin)),
                inheritable
            );
        }
    }

    #[test]
    fn exec_refuses_what_it_cannot_run_naming_the_flag() {
        let s = spec(serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/"}));
        let bad = |opts: ExecOptions| exec_process(&s, &opts).unwrap_err();
        assert_eq!(bad(exec(&[])), "no command given");
        let e = bad(ExecOptions {
            cwd: Some("tmp".into()),
            ..exec(&["sh"])
        });
        assert!(e.contains("--cwd tmp"), "{e}");
        let e = bad(ExecOptions {
            caps: vec!["CAP_NOPE".into()],
            ..exec(&["sh"])
        });
        assert!(e.contains("--cap CAP_NOPE"), "{e}");
    }

    #[test]
    fn host_paths_are_checked_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path();
        let spec_path = bundle.join("config.json");
        let with = |root: &str, source: &str| -> Spec {
            serde_json::from_value(serde_json::json!({
                "ociVersion": "1.0.2",
                "root": {"path": root},
                "mounts": [
                    {"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/data", "source": source, "options": ["rbind"]},
                ],
            }))
            .unwrap()
        };
        std::fs::create_dir(bundle.join("rootfs")).unwrap();
        std::fs::create_dir(bundle.join("data")).unwrap();
        check_host_paths(&spec_path, bundle, &with("rootfs", "data")).unwrap();
        for (root, source, field) in [
            ("nowhere", "data", "root.path: "),
            ("rootfs", "missing", "mounts[1].source: "),
        ] {
            let e = check_host_paths(&spec_path, bundle, &with(root, source))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("No such file"), "{e}");
        }
    }
}
