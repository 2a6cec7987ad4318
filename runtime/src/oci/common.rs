//! What the verbs share: loading a container's state, checking its status in
//! runc's words, reading JSON with errors that name the field, the container's
//! cgroup manager, and the console socket of a foreground process.

use std::path::{Path, PathBuf};

use libcgroups::common::AnyCgroupManager;
use libcontainer::container::{Container, ContainerStatus};

use super::console::ConsoleSocket;
use super::error::{lib, Error, Result};
use super::Runtime;

impl Runtime {
    /// The container `id` under the root: [`Error::InvalidId`] for an id that
    /// cannot name a directory there, [`Error::NotExist`] for one without a
    /// state file.
    pub(super) fn load(&self, id: &str) -> Result<Container> {
        check_id(id)?;
        let dir = self.root.join(id);
        if !dir.join("state.json").exists() {
            return Err(Error::NotExist { id: id.into() });
        }
        Container::load(dir).map_err(lib(id, "load its state"))
    }

    /// Creates the state root (mode 0711) if it is not there yet.
    pub(super) fn ensure_root(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(|source| Error::Io {
                path: self.root.clone(),
                source,
            })
    }

    /// A console socket of our own when a foreground process wants a
    /// terminal and the caller has given no socket (its master is then
    /// joined to our stdin and stdout), and the socket libcontainer is to
    /// send the master to: ours, or the one given.
    pub(super) fn console_for(
        &self,
        terminal: Option<bool>,
        detach: bool,
        given: &Option<PathBuf>,
    ) -> Result<(Option<ConsoleSocket>, Option<PathBuf>)> {
        if terminal != Some(true) || detach || given.is_some() {
            return Ok((None, given.clone()));
        }
        let ours = ConsoleSocket::listen(&self.root).map_err(|source| Error::Io {
            path: self.root.clone(),
            source,
        })?;
        let path = ours.path();
        Ok((Some(ours), Some(path)))
    }
}

/// Refuses `op` on a container in a status that does not allow it.
pub(super) fn status_error(c: &Container, op: &'static str) -> Error {
    Error::Status {
        id: c.id().into(),
        op,
        status: status_name(c.status()).into(),
    }
}

/// Refuses a container whose status is not one of `allowed`, in runc's words.
pub(super) fn require_status(c: &Container, allowed: &[ContainerStatus]) -> Result<()> {
    if allowed.contains(&c.status()) {
        Ok(())
    } else {
        Err(not_running(c))
    }
}

pub(super) fn not_running(c: &Container) -> Error {
    Error::NotRunning {
        id: c.id().into(),
        status: status_name(c.status()).into(),
    }
}

pub(super) fn status_name(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

/// Refuses an id that is not runc's: only ASCII letters, digits and `_+,-.`
/// (Go's `^[\w+-\.]+$`), and neither `.` nor `..`, so that no id, however a
/// caller spells it, makes a path outside the state root. Every verb that
/// takes an id checks it before any filesystem use.
pub(super) fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (b'+'..=b'.').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId { id: id.into() })
    }
}

/// Reads a runtime spec (or a process.json) with errors that name the file and
/// the field at fault (`oci-spec`'s own loader says only "serde failed").
pub(super) fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json(path, &text)
}

/// Parses `text`, JSON read from `source` (a file, or what stands for
/// stdin), with an error that names it and the field at fault.
pub fn parse_json<T: serde::de::DeserializeOwned>(source: &Path, text: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| Error::Spec {
        path: source.to_path_buf(),
        message: match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            field => format!("{field}: {}", e.inner()),
        },
    })
}

/// The manager of a container's cgroups, as libcontainer set them up.
pub(super) fn cgroup_manager(c: &Container, op: &'static str) -> Result<AnyCgroupManager> {
    use libcgroups::common::{create_cgroup_manager, CgroupConfig};
    let config = c.spec().map_err(lib(c.id(), "read its config"))?;
    create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: c.systemd(),
        container_name: c.id().into(),
    })
    .map_err(|e| cgroups_error(c, op, e))
}

pub(super) fn cgroups_error(c: &Container, op: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Cgroups {
        id: c.id().into(),
        op,
        message: e.to_string(),
    }
}
