//! `delete`: removes a stopped (or, forced, any) container and its state.

use libcontainer::container::ContainerStatus;

use super::common::status_error;
use super::error::{lib, Error, Result};
use super::Runtime;

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
