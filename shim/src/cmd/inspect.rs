//! `freezeframe inspect`: show an archive and verify every digest in it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

#[derive(ClapArgs)]
pub struct Args {
    /// The OCI image layout archive to read.
    file: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let inspection = freezeframe_snapshot::inspect::inspect(&a.file)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{inspection}");
    }
    Ok(if inspection.is_ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!("freezeframe: {}: verification failed", a.file.display());
        ExitCode::FAILURE
    })
}
