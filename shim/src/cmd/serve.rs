//! `freezeframe serve`: the commit service on its Unix socket.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;
use freezeframe_config::Config;

#[derive(ClapArgs)]
pub struct Args {}

pub fn run(config_path: Option<&Path>, _: Args) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    // Before any thread starts: each inherits its creator's capabilities.
    freezeframe::caps::for_serve(&config)?;
    freezeframe::server::serve(config)?;
    Ok(ExitCode::SUCCESS)
}
