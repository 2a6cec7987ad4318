//! Errors of session discovery: each names the container, path or mount at fault.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },

    #[error(
        "invalid container id {id:?}: ids name a directory and may not hold '/' or be '.' or '..'"
    )]
    BadId { id: String },

    #[error("no container {id:?} in the runtime state roots {looked}")]
    NotFound { id: String, looked: String },

    #[error("{target:?} is {what}: {matches}; give the full id")]
    Ambiguous {
        target: String,
        what: String,
        matches: String,
    },

    /// A runtime's record of container names could not be read.
    #[error("{0}")]
    Names(String),

    #[error("container {id}: not running: {detail}")]
    NotRunning { id: String, detail: String },

    #[error("container {id}: cannot commit its rootfs: {detail}")]
    NotOverlay { id: String, detail: String },

    #[error("container {id} has no mount at {}", target.display())]
    NoSuchMount { id: String, target: PathBuf },

    #[error("mount at {}: cannot find its host directory: {detail}", target.display())]
    MountSource { target: PathBuf, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
