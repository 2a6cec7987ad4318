//! `pause`: freezes every process of a running container.

use super::common::status_error;
use super::error::{lib, Result};
use super::Runtime;

impl Runtime {
    pub fn pause(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        if !c.can_pause() {
            return Err(status_error(&c, "pause"));
        }
        c.pause().map_err(lib(id, "pause"))
    }
}
