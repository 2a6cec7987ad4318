//! `list`: the state of every container under the root.

use libcontainer::container::Container;

use super::error::{Error, Result};
use super::state::State;
use super::Runtime;

impl Runtime {
    /// Every container under the root, by id; entries that are not containers
    /// (no state file) are skipped.
    pub fn list(&self) -> Result<Vec<State>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if let Ok(c) = Container::load(entry.path()) {
                out.push(State::of(&c));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
