//! The runc-compatible OCI runtime verbs, so containerd's runc shim can run
//! sessions with `freezeframe` as its `BinaryName`: parse the verb's flags
//! ([`args`]), call the runtime's verb, print what runc prints. Output formats
//! and exit codes are runc's; errors also go to the `--log` file ([`log`]) in
//! the format asked for.

mod args;
mod log;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use freezeframe_config::Config;
use freezeframe_runtime::oci::{self, Runtime, State};
use freezeframe_snapshot::source::{ImageRef, ImageSource};

use args::Format;
pub use log::{LogFile, LogLayer};

/// What every runtime verb shares: runc's global flags.
pub struct Globals<'a> {
    pub config: Option<&'a Path>,
    pub root: Option<&'a Path>,
    pub systemd_cgroup: bool,
}

#[derive(Subcommand)]
pub enum Verb {
    /// OCI runtime: create a container from a bundle; it waits for `start`.
    Create(args::Create),
    /// OCI runtime: start a created container's process.
    Start(args::Start),
    /// OCI runtime: create and start a container, and wait for it unless detached.
    Run(args::Run),
    /// OCI runtime: print a container's state as JSON.
    State(args::State),
    /// OCI runtime: send a signal to a container's init process (or all of them).
    Kill(args::Kill),
    /// OCI runtime: delete a container and its state.
    Delete(args::Delete),
    /// OCI runtime: freeze every process of a container.
    Pause(args::Pause),
    /// OCI runtime: thaw a paused container.
    Resume(args::Resume),
    /// OCI runtime: list the processes of a container.
    Ps(args::Ps),
    /// OCI runtime: run a new process in a container.
    Exec(args::Exec),
    /// OCI runtime: list the containers under the state root.
    List(args::List),
    /// OCI runtime: print a container's cgroup statistics as JSON.
    ///
    /// One JSON line every --interval, or one only with --stats.
    Events(args::Events),
    /// OCI runtime: print what this runtime supports, as JSON.
    Features,
    /// OCI runtime: change a container's resource limits.
    ///
    /// Only the values given change. With --resources, they come from a JSON
    /// file (or stdin, `-`) in the runtime spec's `linux.resources` format.
    Update(args::Update),
    /// OCI runtime: write a starting config.json into a bundle directory.
    ///
    /// The bundle's root filesystem goes in its `rootfs` directory.
    Spec(args::Spec),
}

pub fn run(g: &Globals<'_>, verb: Verb) -> Result<ExitCode> {
    let config = Config::load(g.config)?;
    let root = g.root.unwrap_or(&config.runtime.state_root);
    let rt = Runtime::new(root, g.systemd_cgroup);
    let seed = config
        .runtime
        .seed_home
        .then(|| config.session.home_path.clone());
    match verb {
        Verb::Create(a) => {
            let (id, opts) = a.options(seed, manifest_digest);
            if let Some((dir, seeded)) = rt.create(&id, &opts)? {
                tracing::info!(id, dir = %dir.display(), ?seeded, "home seeding");
            }
        }
        Verb::Run(a) => {
            let (id, opts) = a.create.options(seed, manifest_digest);
            return Ok(exit_code(rt.run(&id, &opts, a.detach)?));
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
            let (id, opts) = a.options()?;
            return Ok(exit_code(rt.exec(&id, &opts)?));
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
        Verb::Features => print_json(&oci::features())?,
        Verb::Spec(a) => oci::write_default_spec(&a.bundle)?,
        Verb::Update(a) => rt.update(&a.id, &a.resources()?)?,
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
