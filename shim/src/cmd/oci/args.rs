//! The runc flags of each OCI runtime verb, one struct per verb as youki's
//! `liboci-cli` has them (that crate's flags differ from ours: short options,
//! kill's default signal, `--no-seed-home`), and their conversion into what
//! the runtime's verb takes.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use freezeframe_runtime::oci::{parse_json, CreateOptions, ExecOptions};
use oci_spec::runtime::LinuxResources;

#[derive(ClapArgs)]
pub struct Create {
    /// The bundle directory, holding config.json.
    #[arg(long, short = 'b', value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's init pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pseudo-terminal's master fd.
    #[arg(long, value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root to enter the rootfs.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; the session keyring is left alone.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many fds beyond stdio (3 and up) to the container.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: i32,
    /// Do not copy the image's home content into an empty scratch home
    /// [config: runtime.seed_home].
    #[arg(long)]
    pub no_seed_home: bool,
    /// The container id.
    pub id: String,
}

#[derive(ClapArgs)]
pub struct Run {
    #[command(flatten)]
    pub create: Create,
    /// Return once the container runs instead of waiting for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
}

#[derive(ClapArgs)]
pub struct Start {
    pub id: String,
}

#[derive(ClapArgs)]
pub struct State {
    pub id: String,
}

#[derive(ClapArgs)]
pub struct Kill {
    /// Signal every process of the container, not only its init.
    #[arg(long, short = 'a')]
    pub all: bool,
    pub id: String,
    /// A signal by number or name (9, KILL, SIGKILL).
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(ClapArgs)]
pub struct Delete {
    /// Kill the container first if it still runs; succeed if it does not exist.
    #[arg(long, short = 'f')]
    pub force: bool,
    pub id: String,
}

#[derive(ClapArgs)]
pub struct Pause {
    pub id: String,
}

#[derive(ClapArgs)]
pub struct Resume {
    pub id: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(ClapArgs)]
pub struct Ps {
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    pub id: String,
}

#[derive(ClapArgs)]
pub struct Exec {
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
    // The help is an attribute, not a doc comment, which would read `[:GID]`
    // as a link.
    #[arg(long, short = 'u', value_name = "UID[:GID]", value_parser = parse_user,
          help = "UID[:GID] to run as")]
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

#[derive(ClapArgs)]
pub struct List {
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    /// Print the ids only.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(ClapArgs)]
pub struct Events {
    /// Print the statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Without --stats, print them every interval.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    pub id: String,
}

#[derive(ClapArgs)]
pub struct Update {
    /// The new limits as JSON (`linux.resources` of the runtime spec), from
    /// this file or `-` for stdin.
    #[arg(long, short = 'r', value_name = "FILE", conflicts_with_all = [
        "memory", "memory_reservation", "memory_swap", "cpu_share", "cpu_quota",
        "cpu_period", "cpu_rt_runtime", "cpu_rt_period", "cpuset_cpus", "cpuset_mems",
        "pids_limit", "blkio_weight"])]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with a unit: 512m, 2g; -1 for none).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_hyphen_values = true)]
    pub memory: Option<i64>,
    /// Memory soft limit.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_hyphen_values = true)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit (-1 for none).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// CPU shares, relative to other containers.
    #[arg(long, value_name = "N")]
    pub cpu_share: Option<u64>,
    /// CPU time allowed per period, in microseconds (-1 for no limit).
    #[arg(long, value_name = "USEC", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// The CPU quota's period, in microseconds.
    #[arg(long, value_name = "USEC")]
    pub cpu_period: Option<u64>,
    /// Realtime CPU time allowed per period, in microseconds.
    #[arg(long, value_name = "USEC")]
    pub cpu_rt_runtime: Option<i64>,
    /// The realtime period, in microseconds.
    #[arg(long, value_name = "USEC")]
    pub cpu_rt_period: Option<u64>,
    /// The CPUs to run on (0-3, 0,1).
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// The memory nodes to use.
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Most processes and threads (-1 or 0 for no limit).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight, 10 to 1000.
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

#[derive(ClapArgs)]
pub struct Spec {
    /// The bundle directory to write config.json in.
    #[arg(long, short = 'b', value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
}

impl Create {
    /// The id, and the options the runtime's `create` takes; `seed` is the
    /// home to seed, if the configuration asks for seeding.
    pub fn options(
        self,
        seed: Option<PathBuf>,
        image_digest: fn(&str) -> Option<String>,
    ) -> (String, CreateOptions) {
        let opts = CreateOptions {
            bundle: self.bundle,
            pid_file: self.pid_file,
            console_socket: self.console_socket,
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
            seed: seed.filter(|_| !self.no_seed_home),
            image_digest: Some(image_digest),
        };
        (self.id, opts)
    }
}

impl Exec {
    /// The id, and the options the runtime's `exec` takes.
    pub fn options(self) -> Result<(String, ExecOptions)> {
        if self.process.is_none() && self.command.is_empty() {
            anyhow::bail!("exec needs --process FILE or a command");
        }
        let opts = ExecOptions {
            process: self.process,
            args: self.command,
            terminal: self.tty,
            env: self.env,
            cwd: self.cwd,
            user: self.user,
            additional_gids: self.additional_gids,
            caps: self.caps,
            no_new_privs: self.no_new_privs,
            ignore_paused: self.ignore_paused,
            detach: self.detach,
            pid_file: self.pid_file,
            console_socket: self.console_socket,
            preserve_fds: self.preserve_fds,
        };
        Ok((self.id, opts))
    }
}

impl Update {
    /// The `linux.resources` an update asks for: from --resources, or the flags.
    pub fn resources(&self) -> Result<LinuxResources> {
        use serde_json::{json, Map, Value};
        if let Some(path) = &self.resources {
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
                    ("limit", json!(self.memory)),
                    ("reservation", json!(self.memory_reservation)),
                    ("swap", json!(self.memory_swap)),
                ]),
            ),
            (
                "cpu",
                section(vec![
                    ("shares", json!(self.cpu_share)),
                    ("quota", json!(self.cpu_quota)),
                    ("period", json!(self.cpu_period)),
                    ("realtimeRuntime", json!(self.cpu_rt_runtime)),
                    ("realtimePeriod", json!(self.cpu_rt_period)),
                    ("cpus", json!(self.cpuset_cpus)),
                    ("mems", json!(self.cpuset_mems)),
                ]),
            ),
            ("pids", section(vec![("limit", json!(self.pids_limit))])),
            (
                "blockIO",
                section(vec![("weight", json!(self.blkio_weight))]),
            ),
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
