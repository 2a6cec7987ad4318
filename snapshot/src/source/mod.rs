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
//! | [`bolt`] | bbolt database files, read-only, from disk (containerd's `meta.db`) |
//! | [`containerd`] | containerd's image and container records (`meta.db`) and where its content store is |
//!
//! It reads images; it never writes one, and knows nothing of walks or layers
//! being made.

pub mod bolt;
pub mod containerd;
pub mod oci;

pub use oci::*;
pub mod stored;

pub use stored::{ContainerRecord, StoredImage, StoredLayer};
