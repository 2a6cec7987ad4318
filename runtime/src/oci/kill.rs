//! `kill`: signals a container's init process, or all of its processes.

use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;

use super::common::not_running;
use super::error::{lib, Error, Result};
use super::Runtime;

impl Runtime {
    /// Sends a signal (`"9"`, `"KILL"` or `"SIGKILL"`) to the init process, or
    /// with `all` to every process of the container.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<()> {
        let signal = Signal::try_from(signal).map_err(|_| Error::Signal(signal.into()))?;
        let mut c = self.load(id)?;
        if !(c.can_kill() || all && c.status() == ContainerStatus::Stopped) {
            return Err(not_running(&c));
        }
        c.kill(signal, all).map_err(lib(id, "kill"))?;
        // libcontainer records the container as stopped once it has sent the
        // signal, whether or not the process ended; a commit believes the
        // state, so it is put right while the process still runs, as runc
        // would show it.
        if c.refresh_status().is_ok() && c.status() != ContainerStatus::Stopped {
            c.save().map_err(lib(id, "kill"))?;
        }
        Ok(())
    }
}
