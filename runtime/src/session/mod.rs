//! The session half of the crate: what a running container *is* on a node and
//! how to hold it still. Lookup ([`lookup`]: its init, overlay rootfs, scratch
//! home and mounts, from a runtime's state), `/proc/PID/mountinfo`
//! ([`mountinfo`]), the cgroup freezer ([`freezer`]), and the guardian process
//! that thaws a session whose committer died ([`guardian`]).
//!
//! It knows nothing of the OCI runtime verbs ([`crate::oci`]), which only read
//! its freezer for `ps`.

pub mod error;
pub mod freezer;
pub mod guardian;
pub mod lookup;
pub mod mountinfo;

pub use error::{Error, Result};
pub use lookup::{
    shared_writable_mappings, ExcludedMount, HostMount, NamedContainer, OverlayRoot, Session,
    BASE_IMAGE_ANNOTATIONS, MIN_ID_PREFIX,
};
