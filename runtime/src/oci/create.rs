//! `create`: builds a container from a bundle and leaves its init process
//! waiting for `start`. Before libcontainer sees the bundle, the host paths its
//! spec names are checked and the scratch home is seeded; after, the init
//! process is recorded beside the container's state, and the base image in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{Mount, Spec};

use super::common::{check_id, load_json};
use super::console::ConsoleSocket;
use super::error::{lib, Error, Result};
use super::seed::{self, Seeded};
use super::{Runtime, IMAGE_ANNOTATION, IMAGE_MANIFEST_ANNOTATION, SEED_ANNOTATION};
use crate::session::lookup::{InitRecord, INIT_RECORD};
use crate::session::BASE_IMAGE_ANNOTATIONS;

/// What `create` and `run` take besides the id.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// Copy the image's content at this container path into the empty scratch
    /// directory bind-mounted there, before the container starts.
    pub seed: Option<PathBuf>,
    /// The manifest digest of the image the spec names, to pin in the state
    /// beside it (this crate knows nothing of image formats); `None` when the
    /// image cannot be read.
    pub image_digest: Option<fn(&str) -> Option<String>>,
}

/// What home seeding did, and in which directory, for the caller to log.
pub type SeedReport = Option<(PathBuf, Seeded)>;

impl Runtime {
    /// Creates the container and leaves its init process waiting for `start`.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<SeedReport> {
        self.build(id, opts, true).map(|(_, seeded, _)| seeded)
    }

    /// Builds the container (`create`, and the first half of `run`), with the
    /// console socket of a foreground terminal when it needs one of ours.
    pub(super) fn build(
        &self,
        id: &str,
        opts: &CreateOptions,
        detach: bool,
    ) -> Result<(Container, SeedReport, Option<ConsoleSocket>)> {
        check_id(id)?;
        self.ensure_root()?;
        let bundle = std::path::absolute(&opts.bundle).map_err(|source| Error::Io {
            path: opts.bundle.clone(),
            source,
        })?;
        let spec_path = bundle.join("config.json");
        let spec = load_json::<Spec>(&spec_path)?;
        check_host_paths(&spec_path, &bundle, &spec)?;
        let terminal = spec.process().as_ref().and_then(|p| p.terminal());
        let (console, console_socket) = self.console_for(terminal, detach, &opts.console_socket)?;
        let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .and_then(|b| b.with_pid_file(opts.pid_file.as_ref()))
            .and_then(|b| {
                b.with_console_socket(console_socket.as_ref())
                    .with_preserved_fds(opts.preserve_fds)
                    .validate_id()
            })
            .map_err(lib(id, "create"))?;
        // Seeded before libcontainer mounts anything: it creates the mount
        // points of nested mounts (vfolders) inside the scratch directory,
        // which would then no longer be empty.
        let seeded = match &opts.seed {
            Some(home) => seed_home(id, &bundle, &spec, home)?,
            None => None,
        };
        let built = builder
            .as_init(&bundle)
            .with_systemd(self.systemd)
            // libcontainer takes a console socket only from a detached
            // caller, which is all its `detach` changes.
            .with_detach(detach || console.is_some())
            .with_no_pivot(opts.no_pivot)
            .build()
            .map_err(lib(id, "create"));
        let mut container = match built {
            Ok(c) => c,
            Err(e) => {
                // The scratch directory was empty before the copy: leave it so.
                if let Some((scratch, Seeded::Copied { .. })) = &seeded {
                    if let Err(u) = seed::unseed(scratch) {
                        tracing::error!(id, "undoing the home seeding: {u}");
                    }
                }
                return Err(e);
            }
        };

        // Which process the init is, beside libcontainer's state (which has
        // only its pid): a commit, and every verb, can tell it from a
        // process that got the pid later.
        if let Some(pid) = container.pid() {
            let root = container.root.clone();
            InitRecord::of(pid.as_raw())
                .and_then(|r| r.write(&root))
                .map_err(|source| Error::Io {
                    path: root.join(INIT_RECORD),
                    source,
                })?;
        }

        // Record the base image under one key, so a later commit finds it
        // whatever key the platform used.
        if let Some(image) = image_of(&spec) {
            let digest = opts.image_digest.and_then(|find| find(&image));
            let annotations = container.state.annotations.get_or_insert_with(HashMap::new);
            annotations.insert(IMAGE_ANNOTATION.into(), image);
            if let Some(digest) = digest {
                annotations.insert(IMAGE_MANIFEST_ANNOTATION.into(), digest);
            }
            container.save().map_err(lib(id, "record the base image"))?;
        }
        Ok((container, seeded, console))
    }
}

/// The image a spec says the container runs: the first of the annotations a
/// platform may name it by.
fn image_of(spec: &Spec) -> Option<String> {
    let annotations = spec.annotations().as_ref()?;
    BASE_IMAGE_ANNOTATIONS
        .iter()
        .find_map(|k| annotations.get(*k).cloned())
}

/// Seeds the scratch directory bind-mounted at `home` from the image, unless the
/// spec mounts nothing there or opts out with [`SEED_ANNOTATION`].
fn seed_home(id: &str, bundle: &Path, spec: &Spec, home: &Path) -> Result<SeedReport> {
    let opted_out = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(SEED_ANNOTATION))
        .is_some_and(|v| v == "false");
    let bind = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == home && is_bind(m));
    let (Some(bind), false) = (bind, opted_out) else {
        return Ok(None);
    };
    let Some(source) = bind.source() else {
        return Ok(None);
    };
    let scratch = bundle.join(source);
    let root = spec
        .root()
        .as_ref()
        .map_or_else(|| Path::new("rootfs"), |r| r.path());
    let rootfs = bundle.join(root);
    let seeded = seed::seed(&rootfs, home, &scratch).map_err(|source| Error::Seed {
        id: id.into(),
        target: scratch.clone(),
        source,
    })?;
    if let Seeded::Copied { devices, .. } = &seeded {
        if devices.count > 0 {
            let listed: Vec<String> = devices
                .paths
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let more = if devices.count > listed.len() as u64 {
                ", ..."
            } else {
                ""
            };
            tracing::warn!(
                id,
                scratch = %scratch.display(),
                "home seeding left out {} device node(s) of the image: {}{more}",
                devices.count,
                listed.join(", "),
            );
        }
    }
    Ok(Some((scratch, seeded)))
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// Checks that the host paths a spec names exist, so that a mistake is
/// reported with the field and path at fault: libcontainer finds them only in
/// the container's init, and says "failed to prepare rootfs".
fn check_host_paths(spec_path: &Path, bundle: &Path, spec: &Spec) -> Result<()> {
    let bad = |field: String, path: &Path, why: String| Error::Spec {
        path: spec_path.to_path_buf(),
        message: format!("{field}: {}: {why}", path.display()),
    };
    let root = bundle.join(
        spec.root()
            .as_ref()
            .map_or(Path::new("rootfs"), |r| r.path()),
    );
    match std::fs::metadata(&root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(bad("root.path".into(), &root, "not a directory".into())),
        Err(e) => return Err(bad("root.path".into(), &root, e.to_string())),
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let Some(source) = m.source().as_ref().filter(|_| is_bind(m)) else {
            continue;
        };
        let source = bundle.join(source);
        if let Err(e) = std::fs::metadata(&source) {
            return Err(bad(format!("mounts[{i}].source"), &source, e.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_checked_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path();
        let spec_path = bundle.join("config.json");
        let with = |root: &str, source: &str| -> Spec {
            serde_json::from_value(serde_json::json!({
                "ociVersion": "1.0.2",
                "root": {"path": root},
                "mounts": [
                    {"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/data", "source": source, "options": ["rbind"]},
                ],
            }))
            .unwrap()
        };
        std::fs::create_dir(bundle.join("rootfs")).unwrap();
        std::fs::create_dir(bundle.join("data")).unwrap();
        check_host_paths(&spec_path, bundle, &with("rootfs", "data")).unwrap();
        for (root, source, field) in [
            ("nowhere", "data", "root.path: "),
            ("rootfs", "missing", "mounts[1].source: "),
        ] {
            let e = check_host_paths(&spec_path, bundle, &with(root, source))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("No such file"), "{e}");
        }
    }
}
