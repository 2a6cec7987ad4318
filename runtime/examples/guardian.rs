//! A stand-in for the `freezeframe` binary in the guardian's tests.
//!
//! `guardian --version v1|v2 --cgroup DIR` is read by the same parser as the
//! real binary's hidden subcommand. `hold --version v1|v2 --cgroup DIR` plays a committer: it
//! starts a guardian, freezes the cgroup, prints `frozen GUARDIAN_PID` and waits to
//! be killed, so that neither the pause nor the guardian is ever dropped.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use freezeframe_runtime::session::freezer::Cgroup;
use freezeframe_runtime::session::guardian::{guardian_main, Guardian, GuardianArgs, SUBCOMMAND};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let verb = args.next();
    match (
        verb.as_ref().and_then(|v| v.to_str()),
        GuardianArgs::parse(args),
    ) {
        (Some(SUBCOMMAND), Ok(a)) => guardian_main(a.version, a.cgroup),
        (Some("hold"), Ok(a)) => hold(Cgroup::new(a.version, a.cgroup)),
        (_, parsed) => {
            if let Err(e) = parsed {
                eprintln!("{e}");
            }
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
