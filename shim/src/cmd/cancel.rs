//! `freezeframe cancel ID`: stops a commit of the service; its session is thawed
//! and its temp archive removed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::client::{self, Client, SocketArg};

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
    let client = Client::new(config_path, a.socket.socket.as_deref())?;
    let task = client.call(
        "DELETE",
        &format!("/v1/commits/{}", client::percent_encode(&a.id)),
        None,
    )?;
    client::print_task(&task, a.json)?;
    Ok(ExitCode::SUCCESS)
}
