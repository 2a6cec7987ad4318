//! `freezeframe status ID [--follow]`: one commit of the service.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::client::{self, Client, SocketArg};

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
    let client = Client::new(config_path, a.socket.socket.as_deref())?;
    if a.follow {
        return client::follow(&client, &a.id, a.json, false);
    }
    let task = client.call(
        "GET",
        &format!("/v1/commits/{}", client::percent_encode(&a.id)),
        None,
    )?;
    client::print_task(&task, a.json)?;
    Ok(ExitCode::SUCCESS)
}
