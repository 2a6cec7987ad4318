//! `events --stats`: a container's cgroup statistics in runc's envelope.

use libcgroups::common::CgroupManager;
use libcontainer::container::ContainerStatus;

use super::common::{cgroup_manager, cgroups_error, require_status};
use super::error::Result;
use super::Runtime;

impl Runtime {
    /// The container's cgroup statistics, in runc's `events --stats` envelope
    /// (`{"type": "stats", "id", "data"}`). A paused container has them too.
    pub fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let c = self.load(id)?;
        require_status(&c, &[ContainerStatus::Running, ContainerStatus::Paused])?;
        let op = "cgroup statistics";
        let stats = cgroup_manager(&c, op)?
            .stats()
            .map_err(|e| cgroups_error(&c, op, e))?;
        Ok(serde_json::json!({ "type": "stats", "id": id, "data": stats }))
    }
}
