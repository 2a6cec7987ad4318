//! The `freezeframe` binary: a thin command line over the library crates.

mod client;
mod cmd;
mod live;
mod progress;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Commit a running container session into an OCI image, without a daemon.
#[derive(Parser)]
#[command(name = "freezeframe", version, about)]
struct Cli {
    /// Configuration file (default: $FREEZEFRAME_CONFIG, then /etc/freezeframe/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Commit an overlay upper dir and a scratch home into an OCI image archive.
    Commit(Box<cmd::commit::Args>),
    /// Print an archive's manifest, config and layers, verifying every digest.
    Inspect(cmd::inspect::Args),
    /// Build a throwaway session on a real overlay mount, commit it and verify it.
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
    /// Internal: the process that thaws a frozen session if its committer dies.
    #[command(hide = true)]
    Guardian(cmd::thaw::GuardianArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FREEZEFRAME_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Commit(a) => cmd::commit::run(cli.config.as_deref(), *a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Thaw(a) => cmd::thaw::run(cli.config.as_deref(), a),
        Command::Serve(a) => cmd::serve::run(cli.config.as_deref(), a),
        Command::Tasks(a) => cmd::tasks::run(cli.config.as_deref(), a),
        Command::Status(a) => cmd::status::run(cli.config.as_deref(), a),
        Command::Cancel(a) => cmd::cancel::run(cli.config.as_deref(), a),
        Command::Guardian(a) => return cmd::thaw::guardian(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("freezeframe: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once: our error types put their cause in
/// their own message, so a cause already said is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
