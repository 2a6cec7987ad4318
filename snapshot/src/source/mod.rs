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
//! | [`base`] | a commit's base, wherever it is: the one entry point |
//! | [`oci`] | OCI image layout directories and archives, and blob directories laid out as one (containerd's content store) |
//! | [`docker`] | Docker's overlay2 image store and its container records |
//! | [`storage`] | containers-storage (podman): images, layers and container records |
//! | [`tarsplit`] | an unpacked layer's tar stream, rebuilt byte for byte from tar-split metadata |
//! | [`containerd`] | containerd's metadata (images, containers) and content store |
//! | [`bolt`] | bbolt files (containerd's `meta.db`), read-only, from the file on disk |
//! | [`stored`] | the records the store readers return |
//!
//! It reads images; it never writes one, and knows nothing of walks or layers
//! being made.

pub mod base;
pub mod bolt;
pub mod containerd;
pub mod docker;
pub mod oci;
pub mod storage;
pub mod stored;
pub mod tarsplit;

pub use oci::*;
pub use stored::{ContainerRecord, RegistryBlob, StoredImage, StoredLayer};
