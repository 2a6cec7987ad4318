//! `ps`: the processes of a container, from its cgroup.

use libcontainer::container::ContainerStatus;

use super::error::{Error, Result};
use super::Runtime;
use crate::session::freezer::Cgroup;

impl Runtime {
    /// The pids in the container's cgroup (none once it has stopped).
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let c = self.load(id)?;
        let Some(pid) = c.pid().filter(|_| c.status() != ContainerStatus::Stopped) else {
            return Ok(Vec::new());
        };
        let cgroup = |source| Error::Cgroup {
            id: id.into(),
            source,
        };
        let mut pids = Cgroup::of_pid(pid.as_raw(), None)
            .and_then(|cg| cg.pids())
            .map_err(cgroup)?;
        pids.sort_unstable();
        Ok(pids)
    }
}
