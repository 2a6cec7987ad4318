//! Sessions and containers, in two halves that do not know each other:
//!
//! - [`session`]: where a running container's state, mounts and cgroup are,
//!   and how to freeze and thaw it (with a guardian that thaws for a committer
//!   that died). This half says *what* to snapshot.
//! - [`oci`]: the OCI runtime verbs on youki's `libcontainer`, one file per
//!   verb, with runc's semantics where containerd depends on them.
//!
//! The crate knows nothing of tar, compression or image formats.

pub mod oci;
pub mod session;

pub use session::{Error, Result, Session};
