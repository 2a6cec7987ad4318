//! `start`: runs the process of a created container.

use super::common::status_error;
use super::error::{lib, Result};
use super::Runtime;

impl Runtime {
    pub fn start(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        if !c.can_start() {
            return Err(status_error(&c, "start"));
        }
        c.start().map_err(lib(id, "start"))
    }
}
