//! A foreground `run` or `exec`: the signals this process passes on to the
//! container's process, and the wait for its exit code.

use nix::sys::signal::{self, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::console::Console;
use super::error::{Error, Result};

/// Blocks the signals a foreground `run` or `exec` passes on to its process,
/// for [`forward_until_exit`] to wait for.
pub(super) fn block_forwarded_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|source| Error::Wait { pid: 0, source })?;
    Ok(set)
}

/// Waits for `pid` to exit, passing every blocked signal in `set` on to it and
/// reaping other children; returns its exit code (128 + signal if killed).
pub(super) fn forward_until_exit(pid: Pid, set: &SigSet, console: Option<&Console>) -> Result<i32> {
    let wait_err = |source| Error::Wait {
        pid: pid.as_raw(),
        source,
    };
    loop {
        // Reap first: the child may have exited before its SIGCHLD was blocked.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(128 + sig as i32),
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(wait_err(e)),
            }
        }
        let sig = set.wait().map_err(wait_err)?;
        if let (Signal::SIGWINCH, Some(console)) = (sig, console) {
            // The resize reaches the process as its terminal's SIGWINCH.
            console.resize();
        } else if sig != Signal::SIGCHLD {
            // The process may be gone already; its exit is reaped above.
            let _ = signal::kill(pid, sig);
        }
    }
}
