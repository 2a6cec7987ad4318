//! The layer engine: turns directory trees into OCI image layers and archives.
//!
//! It walks trees with fd-relative syscalls, converts overlayfs whiteouts to OCI
//! ones, streams a tar through compression and digests in one pass, and writes and
//! reads OCI image layout archives. It knows nothing of containers, cgroups or
//! sockets: callers say which trees to read and what to leave out.
//!
//! Where things are:
//!
//! | module | owns |
//! |---|---|
//! | [`walk`] | the tree walk: excludes, grafts, overlay semantics, traversal |
//! | [`delta`] | what a second pass over a live tree writes |
//! | [`journal`] | which names changed since a live pass read them (inotify) |
//! | [`precopy`] | file data read before the freeze, for the frozen pass to reuse |
//! | [`layer`] | the walk's events as an OCI layer tar (whiteouts included) |
//! | [`tar`] | the deterministic tar encoder |
//! | [`compress`], [`digest`] | compression and digests, on the fly |
//! | [`image`], [`changes`] | the image's config, manifest and index |
//! | [`archive`], [`commit`](mod@commit) | the OCI layout archive, and a commit start to end |
//! | [`source`], [`inspect`] | reading images back |
//! | [`registry`] | pushing images to a registry |
//! | [`fs`] | every fd-relative syscall on untrusted trees |

pub mod archive;
pub mod changes;
pub mod commit;
pub mod compress;
pub mod delta;
pub mod digest;
pub mod error;
pub mod fs;
pub mod image;
pub mod inspect;
pub mod journal;
pub mod layer;
pub mod precopy;
pub mod registry;
pub mod source;
pub mod tar;
pub mod walk;

pub use commit::{commit, BaseBlobs, Commit, CommitReport, CommitRequest};
pub use error::{Error, Result};
