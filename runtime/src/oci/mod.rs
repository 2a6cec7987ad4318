//! The OCI runtime half of the crate, on youki's `libcontainer`: what
//! containerd's runc shim calls (`create`, `start`, `state`, `kill`, `delete`,
//! `pause`, `resume`, `ps`, `exec`) plus `run`, `list`, `events --stats`,
//! `update`, `features` and `spec`, with runc's semantics where the shim
//! depends on them.
//!
//! One file per verb, each an `impl` block of [`Runtime`]; what they share
//! (loading state, status checks, reading JSON) is in `common`. The terminal
//! of a foreground process is [`console`]'s, and home seeding [`seed`]'s.
//!
//! libcontainer forks: call these from a single-threaded process.

mod common;
pub mod console;
mod error;
mod foreground;
pub mod seed;

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod resume;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::path::{Path, PathBuf};

pub use common::parse_json;
pub use create::{CreateOptions, SeedReport};
pub use error::{Error, Result};
pub use exec::ExecOptions;
pub use features::features;
pub use spec::write_default_spec;
pub use state::State;

/// The annotation a container's state records its base image under.
pub const IMAGE_ANNOTATION: &str = "org.freezeframe.image";
/// The manifest digest of that image when the container was created, so a
/// commit can tell the image has been replaced since.
pub const IMAGE_MANIFEST_ANNOTATION: &str = "org.freezeframe.image.manifest";
/// A spec annotation that turns home seeding off for one container (`"false"`).
pub const SEED_ANNOTATION: &str = "org.freezeframe.seed-home";

/// A runtime state root (runc's `--root`) and how cgroups are managed there.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    systemd: bool,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, systemd: bool) -> Self {
        Self {
            root: root.into(),
            systemd,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
