//! What a runtime's own store says of an image or a container, whichever
//! store it is: the records the Docker and containers-storage readers return.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

/// A container as a runtime recorded it on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// The full container id (the OCI runtime's container id).
    pub id: String,
    /// Its names, without Docker's leading `/`.
    pub names: Vec<String>,
    /// The id of the image it was created from (`sha256:…` or bare hex, as
    /// the store records it), if recorded.
    pub image: Option<String>,
    /// The file the record was read from, for messages.
    pub file: PathBuf,
}

/// An image in a store that keeps layers unpacked: each layer's tar stream is
/// rebuilt from tar-split metadata and the layer's directory.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// `docker` or `containers-storage`.
    pub store: &'static str,
    /// The store's data root.
    pub root: PathBuf,
    /// What it was asked for or is best known by (a repository tag, else its id).
    pub name: String,
    /// The image id: `sha256:` and the config's digest.
    pub id: String,
    pub config: ImageConfiguration,
    /// Bottom layer first; one per diffID of the config.
    pub layers: Vec<StoredLayer>,
}

/// One unpacked layer of a [`StoredImage`].
#[derive(Debug, Clone)]
pub struct StoredLayer {
    /// `sha256:…` of the uncompressed tar stream, from the image config.
    pub diff_id: String,
    /// The store's name for it (a chain id, a layer id), for messages.
    pub id: String,
    /// The gzip-compressed tar-split metadata.
    pub tar_split: PathBuf,
    /// The layer's unpacked directory.
    pub diff_dir: PathBuf,
    /// Where the store recorded this layer's compressed blob in a registry
    /// (it was pulled from or pushed there): Docker's distribution metadata,
    /// containers-storage's `compressed-diff-digest`. Most recent first.
    pub registry: Vec<RegistryBlob>,
}

/// A registry blob that a store recorded for a layer it keeps unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryBlob {
    /// `sha256:…` of the compressed blob.
    pub digest: String,
    /// Its size, when the store recorded it (containers-storage does, Docker
    /// does not).
    pub size: Option<u64>,
    /// The repository it was seen in (`HOST[:PORT]/REPO`, or a Docker Hub
    /// `docker.io/REPO`), when recorded.
    pub repository: Option<String>,
}

/// Errors from reading a store of unpacked layers (Docker's,
/// containers-storage); each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("no image {reference:?} in the {store} store {root}")]
    NoImage {
        store: &'static str,
        root: PathBuf,
        reference: String,
    },
    #[error("image reference {reference:?} is ambiguous in the {store} store {root}: {matches}")]
    Ambiguous {
        store: &'static str,
        root: PathBuf,
        reference: String,
        matches: String,
    },
    #[error("image config {path} is corrupt: its content hashes to sha256:{actual}")]
    ConfigDigest { path: PathBuf, actual: String },
    #[error("layer {layer} of image {image}: {path} records diffID {found}, the image config says {expected}")]
    DiffId {
        layer: String,
        image: String,
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// A store's data root, opened; `None` when it does not exist (a runtime the
/// node does not run).
pub(crate) fn open_store_root(root: &Path) -> Result<Option<OwnedFd>, StoreError> {
    match crate::fs::open::open_root(root) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(StoreError::Read {
            path: root.to_owned(),
            source: e.into(),
        }),
    }
}
