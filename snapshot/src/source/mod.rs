//! Reading images: OCI image layouts and archives, and the image stores of the
//! runtimes a node runs (Docker, containers-storage, containerd).
//!
//! A commit starts from a base image, and `freezeframe inspect` reads back what a
//! commit wrote. Everything read here is treated as untrusted: JSON documents
//! are size-capped, blobs are checked against their digests, and a layer rebuilt
//! from a store is checked against its diffID.
//!
//! | module | reads |
//! |---|---|
//! | [`oci`] | OCI image layout directories and archives, and blob directories laid out as one (containerd's content store) |
//! | [`docker`] | Docker's image store (overlay2) from its data root: containers, names, image configs, layers |
//! | [`storage`] | containers-storage (podman, buildah, CRI-O; overlay) from its graph root: containers, images, layers |
//! | [`tarsplit`] | tar-split metadata: a layer's tar stream rebuilt byte for byte from it and the layer's unpacked directory |
//!
//! It reads images; it never writes one, and knows nothing of walks or layers
//! being made.

pub mod docker;
pub mod oci;
pub mod storage;
pub mod tarsplit;

pub use oci::*;
pub mod stored;

pub use stored::{ContainerRecord, StoredImage, StoredLayer};
