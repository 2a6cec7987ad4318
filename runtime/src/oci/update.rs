//! `update`: changes a container's resource limits in its cgroups.

use libcgroups::common::{get_cgroup_setup, CgroupManager, CgroupSetup, ControllerOpt};
use libcontainer::container::ContainerStatus::{Created, Paused, Running};
use oci_spec::runtime::{LinuxResources, Spec};

use super::common::{cgroup_manager, cgroups_error, load_json, require_status};
use super::error::Result;
use super::Runtime;

impl Runtime {
    /// Changes a container's resource limits as `runc update` does: the values
    /// `changes` holds are written to its cgroups, and no others.
    pub fn update(&self, id: &str, changes: &LinuxResources) -> Result<()> {
        let c = self.load(id)?;
        require_status(&c, &[Running, Paused, Created])?;
        let op = "update";
        let spec = load_json::<Spec>(&c.bundle().join("config.json"))?;
        let limits = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let mut resources = changes.clone();
        // An update does not change device rules. Under cgroup v1 they are
        // left as they are; under v2 they are one program, which libcgroups
        // replaces whole, so the spec's rules go into the new one.
        let v2 = matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified));
        resources.set_devices(limits.and_then(|l| l.devices().clone()).filter(|_| v2));
        // libcgroups writes the OOM killer's switch with any memory change.
        let disable_oom_killer = limits
            .and_then(|l| l.memory().as_ref())
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false);
        cgroup_manager(&c, op)?
            .apply(&ControllerOpt {
                resources: &resources,
                disable_oom_killer,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| cgroups_error(&c, op, e))
    }
}
