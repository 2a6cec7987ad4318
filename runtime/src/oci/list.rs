//! `list`: the state of every container under the root.

use super::error::{Error, Result};
use super::state::State;
use super::Runtime;

impl Runtime {
    /// Every container under the root, by id; entries that are not containers
    /// (no state file) are skipped, and so are containers whose state cannot
    /// be read, each named in a warning.
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
            let path = entry.path();
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !path.join("state.json").is_file() {
                continue;
            }
            // As runc does: a container whose state cannot be read is named
            // on stderr, and the others are listed.
            match self.load(&id) {
                Ok(c) => out.push(State::of(&c)),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
