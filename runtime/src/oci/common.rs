//! What the verbs share: loading a container's state, checking its status in
//! runc's words, reading JSON with errors that name the field, the container's
//! cgroup manager, and the console socket of a foreground process.

use std::path::{Path, PathBuf};

use libcgroups::common::AnyCgroupManager;
use libcontainer::container::{Container, ContainerStatus, State};

use super::console::ConsoleSocket;
use super::error::{lib, Error, Result};
use super::Runtime;
use crate::session::lookup::{read_state, InitRecord};

impl Runtime {
    /// The container `id` under the root: [`Error::InvalidId`] for an id that
    /// cannot name a directory there, [`Error::NotExist`] for one without a
    /// state file, [`Error::BadState`] for a state file that is empty, cut
    /// short or not a state.
    ///
    /// A pid in the state that no longer names the init process recorded at
    /// create ([`InitRecord`]) is dropped, so the container is stopped: its
    /// init is gone, and the process that has the pid now is another's,
    /// which no verb may signal, freeze or join.
    pub(super) fn load(&self, id: &str) -> Result<Container> {
        check_id(id)?;
        let dir = self.root.join(id);
        let file = dir.join("state.json");
        if !file.exists() {
            return Err(Error::NotExist { id: id.into() });
        }
        let mut state: State = read_state(&file).map_err(|e| Error::BadState {
            id: id.into(),
            message: e.to_string(),
        })?;
        if let Some(pid) = state.pid {
            let same = match InitRecord::read(&dir) {
                Ok(Some(record)) => record.pid == pid && record.is_running(),
                // Made before init records were kept.
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(id, "{e}");
                    true
                }
            };
            if !same {
                state.pid = None;
            }
        }
        let mut c = Container { state, root: dir };
        c.refresh_status().map_err(lib(id, "load its state"))?;
        Ok(c)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::lookup::INIT_RECORD;

    fn container(root: &Path, id: &str, state: &str) -> PathBuf {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.json"), state).unwrap();
        dir
    }

    fn running(id: &str, pid: i32) -> String {
        format!(
            r#"{{"ociVersion":"1.0.2","id":"{id}","status":"running","pid":{pid},"bundle":"/","useSystemd":false}}"#
        )
    }

    /// libcontainer alone takes any live process with the state's pid for
    /// the container's init, and would turn even a stopped state running
    /// again. With the record made at create, a pid that now names another
    /// process leaves the container stopped, and nothing is signalled.
    #[test]
    fn a_pid_that_is_no_longer_the_recorded_init_is_a_stopped_container() {
        let t = tempfile::tempdir().unwrap();
        let rt = Runtime::new(t.path(), false);
        let me = std::process::id() as i32;
        let record = InitRecord::of(me).unwrap();

        let dir = container(t.path(), "ours", &running("ours", me));
        record.write(&dir).unwrap();
        let st = rt.state("ours").unwrap();
        assert_eq!((st.status.as_str(), st.pid), ("running", me));

        for (id, reused) in [
            (
                "reused",
                InitRecord {
                    start: record.start + 1,
                    ..record.clone()
                },
            ),
            (
                "other-pid",
                InitRecord {
                    pid: me + 1,
                    ..record.clone()
                },
            ),
        ] {
            let dir = container(t.path(), id, &running(id, me));
            reused.write(&dir).unwrap();
            let st = rt.state(id).unwrap();
            assert_eq!((st.status.as_str(), st.pid), ("stopped", 0), "{id}");
            let e = rt.kill(id, "CONT", false).unwrap_err();
            assert!(matches!(e, Error::NotRunning { .. }), "{id}: {e}");
            let stopped = format!(
                r#"{{"ociVersion":"1.0.2","id":"{id}","status":"stopped","pid":{me},"bundle":"/","useSystemd":false}}"#
            );
            std::fs::write(dir.join("state.json"), stopped).unwrap();
            assert_eq!(rt.state(id).unwrap().status, "stopped", "{id}");
        }
    }

    /// libcontainer rewrites state.json in place: a reader may find it empty
    /// or cut short. Each verb names the file; list names it and lists the
    /// others; a forced delete still removes the container's directory.
    #[test]
    fn an_empty_or_cut_short_state_is_named_and_a_forced_delete_removes_it() {
        let t = tempfile::tempdir().unwrap();
        let rt = Runtime::new(t.path(), false);
        let me = std::process::id() as i32;
        let ok = container(t.path(), "fine", &running("fine", me));
        InitRecord::of(me).unwrap().write(&ok).unwrap();
        let full = running("cut", me);
        for (id, text) in [("empty", ""), ("cut", &full[..full.len() / 2])] {
            let dir = container(t.path(), id, text);
            let e = rt.state(id).unwrap_err().to_string();
            assert!(
                e.contains(&dir.join("state.json").display().to_string())
                    && e.contains("unreadable state"),
                "{e}"
            );
            let e = rt.delete(id, false).unwrap_err();
            assert!(matches!(e, Error::BadState { .. }), "{e}");
            assert!(dir.exists());
        }
        let listed: Vec<String> = rt.list().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(listed, ["fine"]);
        for id in ["empty", "cut"] {
            rt.delete(id, true).unwrap();
            assert!(!t.path().join(id).exists(), "{id}");
        }
        assert!(ok.join(INIT_RECORD).exists() && ok.join("state.json").exists());
    }
}
