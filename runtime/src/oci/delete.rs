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
