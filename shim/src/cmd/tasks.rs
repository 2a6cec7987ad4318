//! `freezeframe tasks`: the service's commits, oldest first.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::remote::{self, SocketArg};

#[derive(ClapArgs)]
pub struct Args {
    /// Only the commits of this session.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Only the commits in this state (queued, snapshotting, freezing,
    /// finalizing, pushing, done, failed, cancelled).
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    socket: SocketArg,
}

pub fn run(config_path: Option<&Path>, a: Args) -> Result<ExitCode> {
    let client = remote::client(
        config_path,
        a.socket.socket.as_deref(),
        a.socket.owner.clone(),
    )?;
    let tasks = remote::block_on(client.list(a.session.as_deref(), a.state.as_deref()))??;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&tasks)?);
    } else {
        crate::show::tasks(&tasks);
    }
    Ok(ExitCode::SUCCESS)
}
