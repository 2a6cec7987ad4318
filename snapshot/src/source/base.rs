//! A commit's base image, wherever it is: an OCI layout or archive, Docker's
//! image store, containers-storage, or containerd's content store.
//!
//! [`BaseRef`] names one in skopeo's transport syntax; [`Base::open`] reads it
//! into what a commit needs: the config to inherit, and each layer either as a
//! stored blob to copy as it is (OCI layouts, containerd) or as an unpacked
//! layer whose tar stream is rebuilt byte for byte (Docker, containers-storage).

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};

use super::containerd::ContainerdStore;
use super::docker::DockerStore;
use super::oci::{ImageRef, ImageSource, Result, SourceError};
use super::storage::ContainersStorage;
use super::stored::{StoredImage, StoredLayer};

/// containerd's namespace when a reference names none.
pub const CONTAINERD_DEFAULT_NAMESPACE: &str = "default";

/// Where a base image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// `oci-layout:DIR[:REF]` or `oci-archive:FILE[:REF]`.
    Oci(ImageRef),
    /// `docker:NAME[:TAG]|ID`: an image in Docker's store.
    Docker(String),
    /// `containers-storage:NAME[:TAG]|ID`: an image in containers-storage.
    ContainersStorage(String),
    /// `containerd:[NAMESPACE/]NAME`: an image in containerd's metadata. With
    /// no namespace, the first component of a name that holds a `/` is tried
    /// as one, then [`CONTAINERD_DEFAULT_NAMESPACE`].
    Containerd {
        namespace: Option<String>,
        name: String,
    },
}

impl FromStr for BaseRef {
    type Err = SourceError;

    fn from_str(input: &str) -> Result<Self> {
        let invalid = |reason| SourceError::InvalidRef {
            input: input.to_owned(),
            reason,
        };
        let (transport, rest) = input
            .split_once(':')
            .ok_or_else(|| invalid("no transport (oci-layout:, oci-archive:, docker:, containers-storage:, containerd:)"))?;
        let name = || {
            if rest.is_empty() {
                Err(invalid("empty image name"))
            } else if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Err(invalid(
                    "the image name holds white space or a control character",
                ))
            } else {
                Ok(rest.to_owned())
            }
        };
        match transport {
            "oci-layout" | "oci-archive" => input.parse().map(BaseRef::Oci),
            "docker" if rest.starts_with("//") => Err(invalid(
                "docker:// names a registry image; a base is read from a local store (docker:NAME names one in Docker's store)",
            )),
            "docker" => name().map(BaseRef::Docker),
            "containers-storage" => name().map(BaseRef::ContainersStorage),
            "containerd" => Ok(BaseRef::Containerd {
                namespace: None,
                name: name()?,
            }),
            _ => Err(invalid("unknown transport")),
        }
    }
}

impl fmt::Display for BaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseRef::Oci(r) => r.fmt(f),
            BaseRef::Docker(name) => write!(f, "docker:{name}"),
            BaseRef::ContainersStorage(name) => write!(f, "containers-storage:{name}"),
            BaseRef::Containerd {
                namespace: Some(ns),
                name,
            } => write!(f, "containerd:{ns}/{name}"),
            BaseRef::Containerd {
                namespace: None,
                name,
            } => write!(f, "containerd:{name}"),
        }
    }
}

impl From<ImageRef> for BaseRef {
    fn from(r: ImageRef) -> Self {
        BaseRef::Oci(r)
    }
}

/// The data roots of the node's image stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stores {
    pub docker: PathBuf,
    pub containers_storage: PathBuf,
    pub containerd: PathBuf,
}

/// One layer of a base image.
#[derive(Debug, Clone)]
pub enum BaseLayer {
    /// A stored blob, copied into the archive as it is: its digest stays the
    /// registry's.
    Blob {
        desc: Box<Descriptor>,
        diff_id: String,
    },
    /// An unpacked layer: its tar stream is rebuilt and compressed as the
    /// commit's own layers are.
    Unpacked(StoredLayer),
}

impl BaseLayer {
    pub fn diff_id(&self) -> &str {
        match self {
            BaseLayer::Blob { diff_id, .. } => diff_id,
            BaseLayer::Unpacked(l) => &l.diff_id,
        }
    }
}

/// An opened base image.
#[derive(Debug)]
pub struct Base {
    /// The reference it was opened by, as the report and annotations give it.
    pub name: String,
    /// The manifest digest when it has a manifest; else the image id (the
    /// config's digest).
    pub digest: String,
    /// Which store it came from, and where: `oci-archive FILE`, `docker
    /// /var/lib/docker`…
    pub store: String,
    pub config: ImageConfiguration,
    /// Bottom layer first.
    pub layers: Vec<BaseLayer>,
    /// Where blobs are read from, for bases made of stored blobs.
    blobs: Option<ImageSource>,
}

impl Base {
    /// Opens the base `r` names, reading stores under `stores`.
    pub fn open(r: &BaseRef, stores: &Stores) -> Result<Base> {
        match r {
            BaseRef::Oci(image) => {
                let src = ImageSource::open_ref(image)?;
                let store = format!(
                    "{} {}",
                    if src.is_archive() {
                        "oci-archive"
                    } else {
                        "oci-layout"
                    },
                    src.path().display()
                );
                Base::from_blobs(src, image.reference(), r.to_string(), store)
            }
            BaseRef::Docker(name) => {
                let store = DockerStore::new(&stores.docker);
                let image = store.image(name)?;
                Ok(Base::unpacked(r, image))
            }
            BaseRef::ContainersStorage(name) => {
                let store = ContainersStorage::new(&stores.containers_storage);
                let image = store.image(name)?;
                Ok(Base::unpacked(r, image))
            }
            BaseRef::Containerd { namespace, name } => {
                let store = ContainerdStore::new(&stores.containerd);
                let mut tries: Vec<(&str, &str)> = Vec::new();
                match namespace {
                    Some(ns) => tries.push((ns, name)),
                    None => {
                        if let Some((ns, rest)) = name.split_once('/') {
                            tries.push((ns, rest));
                        }
                        tries.push((CONTAINERD_DEFAULT_NAMESPACE, name));
                    }
                }
                let mut last = None;
                for (ns, image) in tries {
                    match store.image(ns, image) {
                        Ok(target) => {
                            let src =
                                ImageSource::open_content(&store.content_dir(), target, image)?;
                            let shown = BaseRef::Containerd {
                                namespace: Some(ns.to_owned()),
                                name: image.to_owned(),
                            };
                            let where_ = format!("containerd {}", stores.containerd.display());
                            return Base::from_blobs(src, None, shown.to_string(), where_);
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.expect("at least one namespace is tried").into())
            }
        }
    }

    fn from_blobs(
        src: ImageSource,
        reference: Option<&str>,
        name: String,
        store: String,
    ) -> Result<Base> {
        let resolved = src.resolve(reference)?;
        let layers = layers_of(&resolved.manifest, &resolved.config);
        Ok(Base {
            name,
            digest: resolved.manifest_descriptor.digest().to_string(),
            store,
            config: resolved.config,
            layers,
            blobs: Some(src),
        })
    }

    fn unpacked(r: &BaseRef, image: StoredImage) -> Base {
        let named = match r {
            BaseRef::Docker(_) => BaseRef::Docker(image.name.clone()),
            _ => BaseRef::ContainersStorage(image.name.clone()),
        };
        Base {
            name: named.to_string(),
            digest: image.id,
            store: format!("{} {}", image.store, image.root.display()),
            config: image.config,
            layers: image.layers.into_iter().map(BaseLayer::Unpacked).collect(),
            blobs: None,
        }
    }

    /// The manifest digest of a base read from an OCI layout or archive, as
    /// the runtime pins it.
    pub fn manifest_digest(&self) -> Option<&str> {
        self.blobs.as_ref().map(|_| self.digest.as_str())
    }

    /// Whether a stored blob can be copied (a layout may leave some out).
    pub fn has_blob(&self, desc: &Descriptor) -> bool {
        self.blobs
            .as_ref()
            .is_some_and(|src| src.has_blob(desc.digest()))
    }

    /// Copies a stored blob to `out`, checked against `desc`.
    pub fn copy_blob<W: Write + ?Sized>(&self, desc: &Descriptor, out: &mut W) -> Result<u64> {
        match &self.blobs {
            Some(src) => src.copy_blob(desc, out),
            None => Err(SourceError::MissingBlob {
                path: PathBuf::from(&self.store),
                digest: desc.digest().clone(),
            }),
        }
    }
}

/// The layers of a manifest, paired with the config's diffIDs.
fn layers_of(manifest: &ImageManifest, config: &ImageConfiguration) -> Vec<BaseLayer> {
    let diff_ids = config.rootfs().diff_ids();
    manifest
        .layers()
        .iter()
        .enumerate()
        .map(|(i, desc)| BaseLayer::Blob {
            desc: Box::new(desc.clone()),
            diff_id: diff_ids.get(i).cloned().unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse_by_transport_and_print_back() {
        for s in [
            "docker:busybox:latest",
            "docker:sha256:0123abcd",
            "containers-storage:localhost/x:1",
            "containerd:docker.io/library/busybox:latest",
            "oci-archive:/tmp/a.tar:v1",
            "oci-layout:/tmp/dir",
        ] {
            let r: BaseRef = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        assert!(matches!(
            "containerd:k8s.io/busybox".parse::<BaseRef>().unwrap(),
            BaseRef::Containerd {
                namespace: None,
                ..
            }
        ));
    }

    #[test]
    fn bad_refs_say_why() {
        for (s, why) in [
            ("busybox", "no transport"),
            ("docker:", "empty image name"),
            ("docker://busybox", "registry"),
            ("docker:a b", "white space"),
            ("quay:x", "unknown transport"),
        ] {
            let e = s.parse::<BaseRef>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
