//! `resume`: thaws a paused container.

use super::common::status_error;
use super::error::{lib, Result};
use super::Runtime;

impl Runtime {
    pub fn resume(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        if !c.can_resume() {
            return Err(status_error(&c, "resume"));
        }
        c.resume().map_err(lib(id, "resume"))
    }
}
