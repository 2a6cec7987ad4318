//! `run`: `create` and `start` in one, and unless detached, the wait for the
//! container's exit with signals passed on, then its deletion.

use super::console::ConsoleSocket;
use super::create::CreateOptions;
use super::error::{console_error, lib, Error, Result};
use super::foreground::{block_forwarded_signals, forward_until_exit};
use super::Runtime;

impl Runtime {
    /// Creates and starts a container; unless `detach`, waits for it to exit,
    /// forwarding signals, deletes it, and returns its exit code.
    pub fn run(&self, id: &str, opts: &CreateOptions, detach: bool) -> Result<i32> {
        let (mut container, _, console) = self.build(id, opts, detach)?;
        // Blocked only now: the container's processes would inherit the mask.
        // Before its start, the init cannot have exited.
        let forwarded = (!detach).then(block_forwarded_signals).transpose()?;
        let console = match console.map(ConsoleSocket::attach).transpose() {
            Ok(console) => console,
            Err(source) => {
                let _ = container.delete(true);
                return Err(console_error(id, source));
            }
        };
        container.start().map_err(lib(id, "start"))?;
        let Some(forwarded) = forwarded else {
            return Ok(0);
        };
        let pid = container.pid().ok_or_else(|| Error::NotRunning {
            id: id.into(),
            status: "without an init process".into(),
        })?;
        let code = forward_until_exit(pid, &forwarded, console.as_ref());
        if let Some(console) = console {
            console.finish();
        }
        let deleted = container.delete(true).map_err(lib(id, "delete"));
        let code = code?;
        deleted?;
        Ok(code)
    }
}
