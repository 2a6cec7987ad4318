//! The `freezeframe` binary: a thin command line over the `freezeframe`
//! library and the crates below it. It parses, calls, and prints.

mod cmd;
mod progress;
mod remote;
mod show;

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Commit a running container session into an OCI image, without a daemon.
#[derive(Parser)]
#[command(name = "freezeframe", version, about)]
struct Cli {
    /// Configuration file (default: $FREEZEFRAME_CONFIG, then /etc/freezeframe/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Runtime state root: where containers run by freezeframe keep their state
    /// [config: runtime.state_root]; for commit and thaw, the one root to look a
    /// container up in [config: runtime.roots].
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Write the runtime verbs' log here (runc's --log).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,

    /// The --log file's format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Manage the containers' cgroups through systemd.
    #[arg(long, global = true)]
    systemd_cgroup: bool,

    /// Log debug messages.
    #[arg(long, global = true)]
    debug: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Commit an overlay upper dir and a scratch home into an OCI image archive.
    Commit(Box<cmd::commit::Args>),
    /// Print an archive's manifest, config and layers, verifying every digest.
    Inspect(cmd::inspect::Args),
    /// Push an OCI image archive to a registry; prints the manifest digest.
    Push(cmd::push::Args),
    /// Run a session with freezeframe as its runtime, commit it live, start another from the image.
    Demo(cmd::demo::Args),
    /// Thaw a session's cgroup by hand (after a crash, say).
    Thaw(cmd::thaw::Args),
    /// Serve the commit API (HTTP/1.1 and JSON) on a Unix socket.
    Serve(cmd::serve::Args),
    /// List the service's commits.
    Tasks(cmd::tasks::Args),
    /// Show one commit of the service, or follow it to its end.
    Status(cmd::status::Args),
    /// Cancel a commit of the service.
    Cancel(cmd::cancel::Args),
    #[command(flatten)]
    Runtime(cmd::oci::Verb),
    /// Internal: the process that thaws a frozen session if its committer dies.
    #[command(hide = true)]
    Guardian(cmd::thaw::GuardianArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = match init_logging(&cli) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("freezeframe: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Commit(a) => cmd::commit::run(cli.config.as_deref(), cli.root.as_deref(), *a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Push(a) => cmd::push::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Thaw(a) => cmd::thaw::run(cli.config.as_deref(), cli.root.as_deref(), a),
        Command::Serve(a) => cmd::serve::run(cli.config.as_deref(), a),
        Command::Tasks(a) => cmd::tasks::run(cli.config.as_deref(), a),
        Command::Status(a) => cmd::status::run(cli.config.as_deref(), a),
        Command::Cancel(a) => cmd::cancel::run(cli.config.as_deref(), a),
        Command::Runtime(verb) => {
            let globals = cmd::oci::Globals {
                config: cli.config.as_deref(),
                root: cli.root.as_deref(),
                systemd_cgroup: cli.systemd_cgroup,
            };
            cmd::oci::run(&globals, verb)
        }
        Command::Guardian(a) => return cmd::thaw::guardian(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let message = error_chain(&e);
            if let Some(log) = log {
                log.write("error", &message);
            }
            eprintln!("freezeframe: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by $FREEZEFRAME_LOG (default: warnings), or with
/// `--log` to that file in runc's format, which is where containerd's shim
/// looks for a runtime's errors.
fn init_logging(cli: &Cli) -> anyhow::Result<Option<Arc<cmd::oci::LogFile>>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;

    // Noise, not news: libcgroups warns of every v1 controller a host lacks,
    // and libcontainer of every ambient capability it cannot raise, which
    // `runc spec`'s default asks for without the inheritable ones it needs
    // (runc says nothing). That is its syscall module's only warning.
    let default = if cli.debug {
        "debug"
    } else {
        "warn,libcgroups=error,libcontainer::syscall::linux=error"
    };
    let filter = EnvFilter::try_from_env("FREEZEFRAME_LOG").unwrap_or_else(|_| default.into());
    let registry = tracing_subscriber::registry().with(filter);
    match &cli.log {
        Some(path) => {
            let log = Arc::new(cmd::oci::LogFile::open(
                path,
                cli.log_format == LogFormat::Json,
            )?);
            registry.with(cmd::oci::LogLayer(log.clone())).init();
            Ok(Some(log))
        }
        None => {
            // A copy of stderr, not fd 2 itself: libcontainer logs from the
            // container's init too, after fd 2 has become the container's
            // stderr or terminal, where a runtime's log lines do not belong.
            // The copy is close-on-exec, so it never reaches the container.
            let stderr = std::io::stderr();
            let copy = std::fs::File::from(
                stderr
                    .as_fd()
                    .try_clone_to_owned()
                    .context("duplicating stderr")?,
            );
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(stderr.is_terminal())
                .with_writer(Arc::new(copy));
            registry.with(layer).init();
            Ok(None)
        }
    }
}

/// The error and its causes, each once (see [`freezeframe::error_chain`]).
fn error_chain(e: &anyhow::Error) -> String {
    freezeframe::error_chain(e.as_ref())
}
