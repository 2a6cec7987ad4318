//! The `freezeframe` binary: a thin command line over the library crates.

mod cmd;
mod progress;

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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("freezeframe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
