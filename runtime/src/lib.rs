//! Sessions and containers: where a container's state, mounts and cgroup are, how
//! to freeze and thaw it, and the OCI runtime verbs. This crate says *what* to
//! snapshot; it knows nothing of tar, compression or image formats.

pub mod console;
pub mod container;
pub mod error;
pub mod freezer;
pub mod guardian;
pub mod mountinfo;
pub mod seed;
pub mod session;

pub use error::{Error, Result};
pub use session::Session;
