//! `state`: a container's state as runc prints it, which `list` prints for
//! every container.

use std::collections::BTreeMap;
use std::path::PathBuf;

use libcontainer::container::{Container, ContainerStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use serde::Serialize;

use super::common::{load_json, status_name};
use super::error::Result;
use super::Runtime;

/// A container's state as `runc state` and `runc list --format json` print it.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: serde_json::Value,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Runtime {
    pub fn state(&self, id: &str) -> Result<State> {
        let c = self.load(id)?;
        Ok(State::of(&c))
    }
}

impl State {
    /// What `c`'s state file says, with the rootfs its spec names and no pid
    /// once it has stopped.
    pub(super) fn of(c: &Container) -> State {
        let bundle = c.bundle().clone();
        let rootfs = load_json::<Spec>(&bundle.join("config.json"))
            .ok()
            .and_then(|s| s.root().as_ref().map(|r| bundle.join(r.path())))
            .unwrap_or_else(|| bundle.join("rootfs"));
        let stopped = c.status() == ContainerStatus::Stopped;
        State {
            oci_version: c.state.oci_version.clone(),
            id: c.id().into(),
            pid: c.pid().filter(|_| !stopped).map_or(0, Pid::as_raw),
            status: status_name(c.status()).into(),
            bundle,
            rootfs,
            created: serde_json::to_value(c.created()).unwrap_or_default(),
            owner: c
                .creator()
                .map(|o| o.to_string_lossy().into_owned())
                .unwrap_or_default(),
            annotations: c
                .state
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }
}
