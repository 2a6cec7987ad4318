//! Which base image a session's commit starts from, and which names a node's
//! runtimes know its containers by: both read from the runtimes' own stores on
//! disk, never through a daemon.
//!
//! A base is, best first: the one the caller named; the one an annotation of
//! the container names; the image the session's own runtime recorded for it
//! (Docker's `config.v2.json`, containers-storage's `containers.json`,
//! containerd's metadata). A runtime that records an image that is gone is an
//! error: an image committed without its base would not run. A container no
//! store records (a bare runc bundle) is committed without a base, and the
//! report says why.

use freezeframe_runtime::oci::IMAGE_MANIFEST_ANNOTATION;
use freezeframe_runtime::session::NamedContainer;
use freezeframe_runtime::Session;
use freezeframe_snapshot::source::base::{Base, BaseRef, Stores};
use freezeframe_snapshot::source::containerd::ContainerdStore;
use freezeframe_snapshot::source::docker::DockerStore;
use freezeframe_snapshot::source::storage::ContainersStorage;
use freezeframe_snapshot::source::{ContainerRecord, SourceError};

use crate::error::CommitError;

type Result<T, E = CommitError> = std::result::Result<T, E>;

/// The annotation CRI puts on a container: the image it was created from, by
/// name, in containerd's `k8s.io` namespace.
const CRI_IMAGE_ANNOTATION: &str = "io.kubernetes.cri.image-name";
const CRI_NAMESPACE: &str = "k8s.io";

/// The base image, opened, and where it came from in words.
pub struct Chosen {
    pub base: Option<Base>,
    pub source: String,
}

/// Chooses and opens the base of a commit of `session`.
pub fn choose(session: &Session, named: Option<&BaseRef>, stores: &Stores) -> Result<Chosen> {
    if let Some(r) = named {
        let base = open_pinned(session, r, stores)?;
        return Ok(Chosen {
            base: Some(base),
            source: "--base".into(),
        });
    }
    if let Some((key, value)) = session.base_image_annotation() {
        match annotated(session, key, value) {
            Some(r) => {
                let base = open_pinned(session, &r, stores)?;
                return Ok(Chosen {
                    source: format!("annotation {key}: {}", base.name),
                    base: Some(base),
                });
            }
            None => {
                return Ok(Chosen {
                    base: None,
                    source: format!(
                        "none: annotation {key}={value} names no image freezeframe can read; \
                         the base config is empty"
                    ),
                })
            }
        }
    }
    recorded(session, stores)
}

/// The base an annotation names: a reference in our syntax, or CRI's image
/// name in containerd.
fn annotated(session: &Session, key: &str, value: &str) -> Option<BaseRef> {
    if key == CRI_IMAGE_ANNOTATION {
        return Some(BaseRef::Containerd {
            namespace: Some(
                session
                    .namespace
                    .clone()
                    .unwrap_or_else(|| CRI_NAMESPACE.into()),
            ),
            name: value.to_owned(),
        });
    }
    value.parse().ok()
}

/// The image the session's runtime recorded for it, in the first store that
/// records the container.
fn recorded(session: &Session, stores: &Stores) -> Result<Chosen> {
    let id = &session.id;
    let docker = DockerStore::new(&stores.docker);
    let image = docker.container(id).map_err(SourceError::from)?;
    if let Some(found) = from_record(image, "docker", stores, BaseRef::Docker)? {
        return Ok(found);
    }
    let storage = ContainersStorage::new(&stores.containers_storage);
    let image = storage.container(id).map_err(SourceError::from)?;
    if let Some(found) = from_record(
        image,
        "containers-storage",
        stores,
        BaseRef::ContainersStorage,
    )? {
        return Ok(found);
    }
    if let Some(ns) = &session.namespace {
        let containerd = ContainerdStore::new(&stores.containerd);
        if let Some(name) = containerd
            .container_image(ns, id)
            .map_err(SourceError::from)?
        {
            let r = BaseRef::Containerd {
                namespace: Some(ns.clone()),
                name,
            };
            let base = Base::open(&r, stores).map_err(|e| recorded_but_unreadable(id, &r, e))?;
            return Ok(Chosen {
                source: format!(
                    "containerd {}: image {} of container {ns}/{id}",
                    stores.containerd.display(),
                    base.name
                ),
                base: Some(base),
            });
        }
    }
    Ok(Chosen {
        base: None,
        source: format!(
            "none: no store records container {id} (docker {}, containers-storage {}, containerd {}); \
             the base config is empty",
            stores.docker.display(),
            stores.containers_storage.display(),
            stores.containerd.display()
        ),
    })
}

fn from_record(
    record: Option<ContainerRecord>,
    store: &str,
    stores: &Stores,
    reference: fn(String) -> BaseRef,
) -> Result<Option<Chosen>> {
    let Some(record) = record else {
        return Ok(None);
    };
    let Some(image) = record.image.clone() else {
        return Err(CommitError::invalid(
            "base",
            format!(
                "{}: container {} records no image; name its base with --base",
                record.file.display(),
                record.id
            ),
        ));
    };
    let r = reference(image);
    let base = Base::open(&r, stores).map_err(|e| recorded_but_unreadable(&record.id, &r, e))?;
    Ok(Some(Chosen {
        source: format!(
            "{store} {}: image {} ({}) of container {}",
            record.file.display(),
            base.name,
            base.digest,
            record.id
        ),
        base: Some(base),
    }))
}

fn recorded_but_unreadable(id: &str, r: &BaseRef, e: SourceError) -> CommitError {
    CommitError::BaseUnreadable {
        id: id.to_owned(),
        image: r.to_string(),
        source: Box::new(e),
    }
}

/// Opens `r`; a base the runtime pinned at create must still be the same
/// image: layers carried over from another would not be what the session's
/// rootfs sits on.
fn open_pinned(session: &Session, r: &BaseRef, stores: &Stores) -> Result<Base> {
    let base = Base::open(r, stores)?;
    let (Some(pinned), Some(digest)) = (
        session.annotations.get(IMAGE_MANIFEST_ANNOTATION),
        base.manifest_digest(),
    ) else {
        return Ok(base);
    };
    if digest != pinned {
        return Err(CommitError::BaseReplaced {
            image: base.name.clone(),
            digest: digest.to_owned(),
            id: session.id.clone(),
            pinned: pinned.clone(),
        });
    }
    Ok(base)
}

/// Every container name the node's runtimes recorded, for a lookup by name.
pub fn container_names(stores: &Stores) -> Result<Vec<NamedContainer>, freezeframe_runtime::Error> {
    let names_error = |e: &dyn std::fmt::Display| freezeframe_runtime::Error::Names(e.to_string());
    let mut records = DockerStore::new(&stores.docker)
        .containers()
        .map_err(|e| names_error(&e))?;
    records.extend(
        ContainersStorage::new(&stores.containers_storage)
            .containers()
            .map_err(|e| names_error(&e))?,
    );
    Ok(records
        .into_iter()
        .flat_map(|r| {
            r.names.into_iter().map(move |name| NamedContainer {
                name,
                id: r.id.clone(),
            })
        })
        .collect())
}
