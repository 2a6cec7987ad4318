//! A stand-in for the `freezeframe` binary in the guardian's tests.
//!
//! `guardian --version v1|v2 --cgroup DIR` is wired exactly as the real binary's
//! hidden subcommand. `hold --version v1|v2 --cgroup DIR` plays a committer: it
//! starts a guardian, freezes the cgroup, prints `frozen GUARDIAN_PID` and waits to
//! be killed, so that neither the pause nor the guardian is ever dropped.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use freezeframe_runtime::session::freezer::{Cgroup, CgroupVersion};
use freezeframe_runtime::session::guardian::{guardian_main, Guardian};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = match &args[..] {
        [_, v, version, c, dir] if v == "--version" && c == "--cgroup" => version
            .parse::<CgroupVersion>()
            .ok()
            .map(|version| (version, PathBuf::from(dir))),
        _ => None,
    };
    match (args.first().map(String::as_str), target) {
        (Some("guardian"), Some((version, dir))) => guardian_main(version, dir),
        (Some("hold"), Some((version, dir))) => hold(Cgroup::new(version, dir)),
        _ => {
            eprintln!("usage: guardian|hold --version v1|v2 --cgroup DIR");
            ExitCode::from(2)
        }
    }
}

fn hold(cgroup: Cgroup) -> ExitCode {
    let exe = std::env::current_exe().expect("finding this executable");
    let guardian = match Guardian::spawn(&exe, &cgroup) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("hold: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Never dropped: this process waits to be killed with the cgroup frozen.
    let _pause = match cgroup.pause(Duration::from_secs(5)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hold: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "frozen {}", guardian.id())
        .and_then(|()| out.flush())
        .ok();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
