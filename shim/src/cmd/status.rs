//! `freezeframe status ID [--follow]`: one commit of the service.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::remote::{self, SocketArg};

#[derive(ClapArgs)]
pub struct Args {
    /// The task id.
    id: String,
    /// Follow the task to its end (a progress line on a terminal); exit 0 if it
    /// is done, 130 if cancelled, 1 if it failed.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print the task as JSON.
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
    if a.follow {
        return remote::block_on(remote::follow(&client, &a.id, a.json, false))?;
    }
    remote::print(&remote::block_on(client.get(&a.id))??, a.json)
}
