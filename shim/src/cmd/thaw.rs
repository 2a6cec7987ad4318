//! `freezeframe thaw`, and the hidden guardian process that thaws for a
//! committer that died.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Result;
use clap::Args as ClapArgs;
use freezeframe_config::Config;
use freezeframe_runtime::session::freezer::CgroupVersion;
use freezeframe_runtime::session::guardian;

use freezeframe::live::{self, Target};
use freezeframe::plan;

#[derive(ClapArgs)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["session", "pid"])))]
pub struct Args {
    /// The container, by id.
    session: Option<String>,
    /// The container, by its init process.
    #[arg(long, value_name = "PID", conflicts_with = "session")]
    pid: Option<i32>,
    /// v1 or v2: which hierarchy to thaw on a hybrid host (default: as commit).
    #[arg(long, value_name = "VERSION", value_parser = CgroupVersion::from_str)]
    cgroup: Option<CgroupVersion>,
}

pub fn run(config_path: Option<&Path>, root: Option<&Path>, a: Args) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let target = match (a.session, a.pid) {
        (Some(id), _) => Target::Id(id),
        (None, Some(pid)) => Target::Pid(pid),
        (None, None) => unreachable!("clap requires one"),
    };
    let roots = root
        .map(Path::to_path_buf)
        .map_or_else(|| config.runtime.roots.clone(), |r| vec![r]);
    let dir = live::thaw(&target, &roots, &plan::stores(&config), a.cgroup)?;
    println!("thawed {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The hidden guardian subcommand's arguments, kept raw: the runtime that
/// writes them when it spawns a guardian reads them back
/// ([`guardian::GuardianArgs`]).
#[derive(ClapArgs)]
pub struct GuardianArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

pub fn guardian(a: GuardianArgs) -> ExitCode {
    match guardian::GuardianArgs::parse(a.args) {
        Ok(g) => guardian::guardian_main(g.version, g.cgroup),
        Err(e) => {
            eprintln!("freezeframe: error: {}: {e}", guardian::SUBCOMMAND);
            // What a command line that does not parse exits with.
            ExitCode::from(2)
        }
    }
}
