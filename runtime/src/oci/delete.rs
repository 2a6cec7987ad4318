//! `delete`: removes a stopped (or, forced, any) container and its state.

use std::path::PathBuf;

use libcontainer::container::{Container, ContainerStatus, State};

use super::common::status_error;
use super::error::{lib, Error, Result};
use super::Runtime;
use crate::session::lookup::InitRecord;

impl Runtime {
    /// Deletes a stopped (or, with `force`, any) container. As with runc, a
    /// forced delete of a container that does not exist succeeds, and removes a
    /// directory left by a create that never wrote its state.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut c = match self.load(id) {
            Ok(c) => c,
            Err(Error::NotExist { .. }) if force => {
                let dir = self.root.join(id);
                return match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                        path: dir,
                        source: e,
                    }),
                    _ => Ok(()),
                };
            }
            Err(Error::BadState { .. }) if force => return self.delete_unreadable(id),
            Err(e) => return Err(e),
        };
        if !force
            && !matches!(
                c.status(),
                ContainerStatus::Stopped | ContainerStatus::Created
            )
        {
            return Err(status_error(&c, "delete"));
        }
        match c.delete(force) {
            // Another delete (a foreground run's, say) got there first.
            Err(_) if force && !self.root.join(id).exists() => Ok(()),
            other => other.map_err(lib(id, "delete")),
        }
    }
}

impl Runtime {
    /// A forced delete of a container whose state file cannot be read: its
    /// init, if the record made at create says which it is and it still
    /// runs, is killed, and the container is deleted as a stopped one (its
    /// cgroup, from the config libcontainer keeps beside the state, removed,
    /// and its directory). Nothing else is known of it.
    fn delete_unreadable(&self, id: &str) -> Result<()> {
        let dir = self.root.join(id);
        match InitRecord::read(&dir) {
            Ok(Some(record)) if record.is_running() => kill_recorded(&record)?,
            Ok(_) => {}
            Err(e) => tracing::warn!(id, "{e}"),
        }
        let mut state = State::new(id, ContainerStatus::Stopped, None, PathBuf::new());
        state.use_systemd = self.systemd;
        let mut c = Container { state, root: dir };
        match c.delete(true) {
            Err(_) if !self.root.join(id).exists() => Ok(()),
            other => other.map_err(lib(id, "delete")),
        }
    }
}

/// Kills the recorded init through a pidfd, opened and then checked against
/// the record, so no other process that gets its pid is signalled, and waits
/// up to 5 s for it to be gone.
fn kill_recorded(record: &InitRecord) -> Result<()> {
    use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
    let Some(pid) = Pid::from_raw(record.pid) else {
        return Ok(());
    };
    let Ok(fd) = pidfd_open(pid, PidfdFlags::empty()) else {
        return Ok(());
    };
    if !record.is_running() {
        return Ok(());
    }
    let _ = pidfd_send_signal(&fd, Signal::KILL);
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let _ = poll(
        &mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)],
        PollTimeout::from(5000u16),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// runc refuses such ids before any path is made of them; a forced
    /// delete used to fall through "does not exist" and remove
    /// `root.join(id)`, which for these is outside the root.
    #[test]
    fn ids_that_leave_the_state_root_are_refused_and_nothing_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("state");
        let victim = t.path().join("victim");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep"), "x").unwrap();
        let rt = Runtime::new(&root, false);
        let absolute = victim.to_str().unwrap().to_string();
        for id in [
            "..",
            "../victim",
            ".",
            "",
            "a/b",
            absolute.as_str(),
            "x\0y",
            "é",
        ] {
            let e = rt.delete(id, true).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidId { id: i } if i == id),
                "{id:?}: {e}"
            );
            assert!(e.to_string().contains("invalid format"), "{e}");
            assert!(rt.state(id).is_err() && rt.kill(id, "KILL", false).is_err());
        }
        assert!(
            victim.join("keep").exists(),
            "a forced delete removed a host dir"
        );
        assert!(root.exists());
        // A valid id that names nothing is still runc's "does not exist",
        // and a forced delete of it succeeds.
        for id in ["abc", "a_b+c,d-e.f", "3f1c2a9e7b10"] {
            let e = rt.state(id).unwrap_err();
            assert!(e.to_string().contains("does not exist"), "{e}");
            rt.delete(id, true).unwrap();
        }
    }
}
