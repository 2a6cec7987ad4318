//! `freezeframe serve`: the commit service on its Unix socket.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;
use freezeframe_config::Config;

#[derive(ClapArgs)]
pub struct Args {}

pub fn run(config_path: Option<&Path>, _: Args) -> Result<ExitCode> {
    freezeframe::server::serve(Config::load(config_path)?)?;
    Ok(ExitCode::SUCCESS)
}
