//! `freezeframe thaw`, and the hidden guardian process that thaws for a
//! committer that died.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;
use freezeframe_config::Config;
use freezeframe_runtime::freezer::CgroupVersion;

use crate::live::{self, Target};

#[derive(ClapArgs)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["session", "pid"])))]
pub struct Args {
    /// The container, by id.
    session: Option<String>,
    /// The container, by its init process.
    #[arg(long, value_name = "PID", conflicts_with = "session")]
    pid: Option<i32>,
    /// v1 or v2: which hierarchy to thaw on a hybrid host (default: as commit).
    #[arg(long, value_name = "VERSION", value_parser = super::commit::parse_cgroup_version)]
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
    let dir = live::thaw(&target, &roots, a.cgroup)?;
    println!("thawed {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(ClapArgs)]
pub struct GuardianArgs {
    #[arg(long, value_parser = super::commit::parse_cgroup_version)]
    version: CgroupVersion,
    #[arg(long)]
    cgroup: PathBuf,
}

pub fn guardian(a: GuardianArgs) -> ExitCode {
    freezeframe_runtime::guardian::guardian_main(a.version, a.cgroup)
}
