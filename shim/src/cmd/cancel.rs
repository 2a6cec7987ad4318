//! `freezeframe cancel ID`: stops a commit of the service; its session is thawed
//! and its temp archive removed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::remote::{self, SocketArg};

#[derive(ClapArgs)]
pub struct Args {
    /// The task id.
    id: String,
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
    remote::print(&remote::block_on(client.cancel(&a.id))??, a.json)
}
