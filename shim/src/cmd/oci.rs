//! The runc-compatible OCI runtime verbs, so containerd's runc shim can run
//! sessions with `freezeframe` as its `BinaryName`. Output formats and exit
//! codes are runc's; errors also go to the `--log` file in the format asked for.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use freezeframe_config::Config;
use freezeframe_runtime::container::{parse_json, CreateOptions, ExecOptions, Runtime, State};
use freezeframe_snapshot::source::{ImageRef, ImageSource};

/// What every runtime verb shares: runc's global flags.
pub struct Globals<'a> {
    pub config: Option<&'a Path>,
    pub root: Option<&'a Path>,
    pub systemd_cgroup: bool,
}

#[derive(Subcommand)]
pub enum Verb {
    /// OCI runtime: create a container from a bundle; it waits for `start`.
    Create(CreateArgs),
    /// OCI runtime: start a created container's process.
    Start(IdArg),
    /// OCI runtime: create and start a container, and wait for it unless detached.
    Run(RunArgs),
    /// OCI runtime: print a container's state as JSON.
    State(IdArg),
    /// OCI runtime: send a signal to a container's init process (or all of them).
    Kill(KillArgs),
    /// OCI runtime: delete a container and its state.
    Delete(DeleteArgs),
    /// OCI runtime: freeze every process of a container.
    Pause(IdArg),
    /// OCI runtime: thaw a paused container.
    Resume(IdArg),
    /// OCI runtime: list the processes of a container.
    Ps(PsArgs),
    /// OCI runtime: run a new process in a container.
    Exec(ExecArgs),
    /// OCI runtime: list the containers under the state root.
    List(ListArgs),
    /// OCI runtime: print a container's cgroup statistics as JSON.
    ///
    /// One JSON line every --interval, or one only with --stats.
    Events(EventsArgs),
    /// OCI runtime: print what this runtime supports, as JSON.
    Features,
    /// OCI runtime: change a container's resource limits.
    ///
    /// Only the values given change. With --resources, they come from a JSON
    /// file (or stdin, `-`) in the runtime spec's `linux.resources` format.
    Update(UpdateArgs),
    /// OCI runtime: write a starting config.json into a bundle directory.
    ///
    /// The bundle's root filesystem goes in its `rootfs` directory.
    Spec(SpecArgs),
}

#[derive(ClapArgs)]
pub struct UpdateArgs {
    /// The new limits as JSON (`linux.resources` of the runtime spec), from
    /// this file or `-` for stdin.
    #[arg(long, short = 'r', value_name = "FILE", conflicts_with_all = [
        "memory", "memory_reservation", "memory_swap", "cpu_share", "cpu_quota",
        "cpu_period", "cpu_rt_runtime", "cpu_rt_period", "cpuset_cpus", "cpuset_mems",
        "pids_limit", "blkio_weight"])]
    resources: Option<PathBuf>,
    /// Memory limit (bytes, or with a unit: 512m, 2g; -1 for none).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_hyphen_values = true)]
    memory: Option<i64>,
    /// Memory soft limit.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_hyphen_values = true)]
    memory_reservation: Option<i64>,
    /// Memory plus swap limit (-1 for none).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// CPU shares, relative to other containers.
    #[arg(long, value_name = "N")]
    cpu_share: Option<u64>,
    /// CPU time allowed per period, in microseconds (-1 for no limit).
    #[arg(long, value_name = "USEC", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// The CPU quota's period, in microseconds.
    #[arg(long, value_name = "USEC")]
    cpu_period: Option<u64>,
    /// Realtime CPU time allowed per period, in microseconds.
    #[arg(long, value_name = "USEC")]
    cpu_rt_runtime: Option<i64>,
    /// The realtime period, in microseconds.
    #[arg(long, value_name = "USEC")]
    cpu_rt_period: Option<u64>,
    /// The CPUs to run on (0-3, 0,1).
    #[arg(long, value_name = "LIST")]
    cpuset_cpus: Option<String>,
    /// The memory nodes to use.
    #[arg(long, value_name = "LIST")]
    cpuset_mems: Option<String>,
    /// Most processes and threads (-1 or 0 for no limit).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block I/O weight, 10 to 1000.
    #[arg(long, value_name = "N")]
    blkio_weight: Option<u16>,
    id: String,
}

/// A size in bytes, as runc and Docker take it: a number, with an optional
/// binary unit (`k`, `m`, `g`, `t`, with or without `b`), or -1.
fn parse_bytes(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
    };
    let n: f64 = digits
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{s:?} is not a size"))?;
    let bytes = n * (1u64 << shift) as f64;
    if bytes > i64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as i64)
}

/// The `linux.resources` an update asks for: from --resources, or the flags.
fn update_resources(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    use serde_json::{json, Map, Value};
    if let Some(path) = &a.resources {
        let text = if path.as_os_str() == "-" {
            let mut text = Vec::new();
            std::io::stdin()
                .read_to_end(&mut text)
                .context("--resources -: reading stdin")?;
            text
        } else {
            std::fs::read(path).with_context(|| format!("--resources {}", path.display()))?
        };
        return parse_json(path, &text).context("--resources");
    }
    // The flags as the same JSON, so both ways meet in one type.
    let section = |pairs: Vec<(&str, Value)>| -> Option<Value> {
        let m: Map<String, Value> = pairs
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        (!m.is_empty()).then_some(Value::Object(m))
    };
    let mut r = Map::new();
    let sections = [
        (
            "memory",
            section(vec![
                ("limit", json!(a.memory)),
                ("reservation", json!(a.memory_reservation)),
                ("swap", json!(a.memory_swap)),
            ]),
        ),
        (
            "cpu",
            section(vec![
                ("shares", json!(a.cpu_share)),
                ("quota", json!(a.cpu_quota)),
                ("period", json!(a.cpu_period)),
                ("realtimeRuntime", json!(a.cpu_rt_runtime)),
                ("realtimePeriod", json!(a.cpu_rt_period)),
                ("cpus", json!(a.cpuset_cpus)),
                ("mems", json!(a.cpuset_mems)),
            ]),
        ),
        ("pids", section(vec![("limit", json!(a.pids_limit))])),
        ("blockIO", section(vec![("weight", json!(a.blkio_weight))])),
    ];
    for (key, value) in sections {
        if let Some(v) = value {
            r.insert(key.into(), v);
        }
    }
    if r.is_empty() {
        anyhow::bail!("update: nothing to change (give --resources or a limit)");
    }
    Ok(serde_json::from_value(Value::Object(r))?)
}

#[derive(ClapArgs)]
pub struct SpecArgs {
    /// The bundle directory to write config.json in.
    #[arg(long, short = 'b', value_name = "DIR", default_value = ".")]
    bundle: PathBuf,
}

#[derive(ClapArgs)]
pub struct EventsArgs {
    /// Print the statistics once and exit.
    #[arg(long)]
    stats: bool,
    /// Without --stats, print them every interval.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
    id: String,
}

#[derive(ClapArgs)]
pub struct IdArg {
    id: String,
}

#[derive(ClapArgs)]
pub struct CreateArgs {
    /// The bundle directory, holding config.json.
    #[arg(long, short = 'b', value_name = "DIR", default_value = ".")]
    bundle: PathBuf,
    /// Write the container's init pid here.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pseudo-terminal's master fd.
    #[arg(long, value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Do not use pivot_root to enter the rootfs.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility; the session keyring is left alone.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many fds beyond stdio (3 and up) to the container.
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: i32,
    /// Do not copy the image's home content into an empty scratch home
    /// [config: runtime.seed_home].
    #[arg(long)]
    no_seed_home: bool,
    /// The container id.
    id: String,
}

#[derive(ClapArgs)]
pub struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    /// Return once the container runs instead of waiting for it.
    #[arg(long, short = 'd')]
    detach: bool,
}

#[derive(ClapArgs)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init.
    #[arg(long, short = 'a')]
    all: bool,
    id: String,
    /// A signal by number or name (9, KILL, SIGKILL).
    #[arg(default_value = "SIGTERM")]
    signal: String,
}

#[derive(ClapArgs)]
pub struct DeleteArgs {
    /// Kill the container first if it still runs; succeed if it does not exist.
    #[arg(long, short = 'f')]
    force: bool,
    id: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(ClapArgs)]
pub struct PsArgs {
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    format: Format,
    id: String,
}

#[derive(ClapArgs)]
pub struct ListArgs {
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    format: Format,
    /// Print the ids only.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(ClapArgs)]
pub struct ExecArgs {
    /// A process.json (the runtime spec's `process`) to run.
    #[arg(long, short = 'p', value_name = "FILE")]
    process: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it.
    #[arg(long, short = 'd')]
    detach: bool,
    /// Write the process's pid here.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pseudo-terminal's master fd.
    #[arg(long, value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Give the command a pseudo-terminal, its master sent to --console-socket
    /// (with --process, process.json's `terminal` decides).
    #[arg(long, short = 't')]
    tty: bool,
    /// Environment variable, KEY=VALUE (repeatable).
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory in the container.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// UID[:GID] to run as.
    #[arg(long, short = 'u', value_name = "UID[:GID]", value_parser = parse_user)]
    user: Option<(u32, Option<u32>)>,
    /// More supplementary group ids (comma-separated or repeated).
    #[arg(long, short = 'g', value_name = "GID", value_delimiter = ',')]
    additional_gids: Vec<u32>,
    /// A capability to add to the process (repeatable), e.g. CAP_NET_ADMIN.
    #[arg(long = "cap", short = 'c', value_name = "CAP")]
    caps: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    no_new_privs: bool,
    /// Exec even into a paused container (the process starts frozen).
    #[arg(long)]
    ignore_paused: bool,
    /// Pass this many fds beyond stdio (3 and up) to the process.
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: i32,
    id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn parse_user(s: &str) -> Result<(u32, Option<u32>), String> {
    let num = |v: &str| {
        v.parse::<u32>()
            .map_err(|_| format!("{v:?} is not a number"))
    };
    match s.split_once(':') {
        Some((u, g)) => Ok((num(u)?, Some(num(g)?))),
        None => Ok((num(s)?, None)),
    }
}

pub fn run(g: &Globals<'_>, verb: Verb) -> Result<ExitCode> {
    let config = Config::load(g.config)?;
    let root = g.root.unwrap_or(&config.runtime.state_root);
    let rt = Runtime::new(root, g.systemd_cgroup);
    let home = config.session.home_path.clone();
    let create_options = |a: CreateArgs| {
        let seed = (config.runtime.seed_home && !a.no_seed_home).then(|| home.clone());
        let opts = CreateOptions {
            bundle: a.bundle,
            pid_file: a.pid_file,
            console_socket: a.console_socket,
            no_pivot: a.no_pivot,
            preserve_fds: a.preserve_fds,
            seed,
            image_digest: Some(manifest_digest),
        };
        (a.id, opts)
    };
    match verb {
        Verb::Create(a) => {
            let (id, opts) = create_options(a);
            if let Some((dir, seeded)) = rt.create(&id, &opts)? {
                tracing::info!(id, dir = %dir.display(), ?seeded, "home seeding");
            }
        }
        Verb::Run(a) => {
            let (id, opts) = create_options(a.create);
            let code = rt.run(&id, &opts, a.detach)?;
            return Ok(exit_code(code));
        }
        Verb::Start(a) => rt.start(&a.id)?,
        Verb::State(a) => print_json(&rt.state(&a.id)?)?,
        Verb::Kill(a) => rt.kill(&a.id, &a.signal, a.all)?,
        Verb::Delete(a) => rt.delete(&a.id, a.force)?,
        Verb::Pause(a) => rt.pause(&a.id)?,
        Verb::Resume(a) => rt.resume(&a.id)?,
        Verb::Ps(a) => {
            let pids = rt.ps(&a.id)?;
            match a.format {
                Format::Json => print_json(&pids)?,
                Format::Table => print_ps_table(&pids)?,
            }
        }
        Verb::Exec(a) => {
            if a.process.is_none() && a.command.is_empty() {
                anyhow::bail!("exec needs --process FILE or a command");
            }
            let opts = ExecOptions {
                process: a.process,
                args: a.command,
                terminal: a.tty,
                env: a.env,
                cwd: a.cwd,
                user: a.user,
                additional_gids: a.additional_gids,
                caps: a.caps,
                no_new_privs: a.no_new_privs,
                ignore_paused: a.ignore_paused,
                detach: a.detach,
                pid_file: a.pid_file,
                console_socket: a.console_socket,
                preserve_fds: a.preserve_fds,
            };
            return Ok(exit_code(rt.exec(&a.id, &opts)?));
        }
        Verb::List(a) => print_list(&rt.list()?, a.format, a.quiet)?,
        Verb::Events(a) => loop {
            let stats = rt.stats(&a.id)?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &stats)?;
            writeln!(out)?;
            out.flush()?;
            if a.stats {
                break;
            }
            std::thread::sleep(a.interval);
        },
        Verb::Features => print_json(&features())?,
        Verb::Spec(a) => write_default_spec(&a.bundle)?,
        Verb::Update(a) => rt.update(&a.id, &update_resources(&a)?)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest digest of `image` when it names a local OCI archive or
/// layout, for the runtime to pin. An image that cannot be read does not stop
/// the container: the commit reports it later, when the base is needed.
fn manifest_digest(image: &str) -> Option<String> {
    let reference = image.parse::<ImageRef>().ok()?;
    match ImageSource::open_ref(&reference).and_then(|s| s.resolve(reference.reference())) {
        Ok(resolved) => Some(resolved.manifest_descriptor.digest().to_string()),
        Err(e) => {
            tracing::warn!(image, "cannot read the base image to pin it: {e}");
            None
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn print_ps_table(pids: &[i32]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:>8}  CMD", "PID")?;
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        writeln!(out, "{pid:>8}  {}", cmd.join(" "))?;
    }
    Ok(())
}

fn print_list(states: &[State], format: Format, quiet: bool) -> Result<()> {
    if quiet {
        let mut out = std::io::stdout().lock();
        for s in states {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    match format {
        Format::Json => print_json(&states),
        Format::Table => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")?;
            for s in states {
                let created = s.created.as_str().unwrap_or("");
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    created,
                    s.owner
                )?;
            }
            Ok(())
        }
    }
}

/// Writes `bundle/config.json` as `runc spec` does: a shell on a terminal in
/// the read-only `rootfs`, with the usual mounts, namespaces and
/// capabilities. An existing file is left alone.
fn write_default_spec(bundle: &Path) -> Result<()> {
    let path = bundle.join("config.json");
    let mut spec = oci_spec::runtime::Spec::default();
    spec.set_hostname(Some("freezeframe".into()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| match path.exists() {
            true => format!("{}: remove it first", path.display()),
            false => format!("creating {}", path.display()),
        })?;
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, &spec)?;
    writeln!(out)?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// What `runc features` reports, for what this runtime implements.
fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
            "noexec", "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime",
            "nosuid", "nosymfollow", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent",
            "slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup",
            "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false },
            "seccomp": { "enabled": true },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": true }
        },
        "annotations": {
            "org.freezeframe.commit": "live commit of running sessions to OCI images",
            "org.freezeframe.seed-home": "false turns home seeding off for one container"
        }
    })
}

/// Where runc's `--log` goes: a file of JSON lines (`{"level","msg","time"}`,
/// which containerd's shim reads back on failure) or of text lines.
pub struct LogFile {
    file: std::sync::Mutex<std::fs::File>,
    json: bool,
}

impl LogFile {
    pub fn open(path: &Path, json: bool) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("--log {}", path.display()))?;
        Ok(Self {
            file: std::sync::Mutex::new(file),
            json,
        })
    }

    pub fn write(&self, level: &str, msg: &str) {
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now());
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": time.to_string() }).to_string()
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}")
        };
        if let Ok(mut f) = self.file.lock() {
            // One write per line, so concurrent writers do not interleave.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Sends tracing events (libcontainer's among them) to the `--log` file.
pub struct LogLayer(pub std::sync::Arc<LogFile>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                if field.name() == "message" {
                    let _ = write!(self.0, "{value:?}");
                } else {
                    let _ = write!(self.0, " {}={value:?}", field.name());
                }
            }
        }
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        self.0.write(level, msg.0.trim_start());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_runc_reads_them() {
        for (text, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("-1", -1),
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("2g", 2 << 30),
            ("2GiB", 2 << 30),
            ("1.5k", 1536),
            ("512kb", 512 << 10),
            ("1t", 1 << 40),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for bad in ["", "m", "12q", "-5", "1e400", "nan", "9999999t"] {
            let e = parse_bytes(bad).expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}
