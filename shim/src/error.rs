//! The commit pipeline's errors: one typed [`CommitError`] for the plan, the
//! session lookup and the commit itself, each with the stable wire code
//! ([`CommitError::code`]) that the service answers and records.
//!
//! Messages speak of options by the name the plan gives them (`level`,
//! `include_mounts[0]`), never of one caller's flags: the command line adds its
//! own hints at its edge.

use std::path::PathBuf;
use std::time::Duration;

use freezeframe_runtime::oci::IMAGE_MANIFEST_ANNOTATION;

use crate::api::Code;

/// Why a commit could not be planned or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// An option's value is refused; `field` names it as the API does.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },

    /// The session could not be found or looked at.
    #[error(transparent)]
    Lookup(freezeframe_runtime::Error),

    /// A base that the runtime pinned at create is no longer the same image.
    #[error(
        "base image {image}: its manifest is {digest}, but container {id} was created from {pinned} \
         (annotation {IMAGE_MANIFEST_ANNOTATION}); the image was replaced since"
    )]
    BaseReplaced {
        image: String,
        digest: String,
        id: String,
        pinned: String,
    },

    /// The session's runtime recorded its image, and that image cannot be
    /// read (removed since, say): committing without it would make an image
    /// that does not run.
    #[error("container {id} was created from {image}, which cannot be read: {source}")]
    BaseUnreadable {
        id: String,
        image: String,
        #[source]
        source: Box<freezeframe_snapshot::source::SourceError>,
    },

    /// The archive to write is already there.
    #[error("{}: already exists", path.display())]
    OutputExists { path: PathBuf },

    /// Stopped on request; nothing was written.
    #[error("cancelled")]
    Cancelled,

    /// The session changed too fast to be committed while it ran, and the
    /// last resort, a full freeze, ran past its bound: it was thawed.
    #[error(
        "the session changed faster than a live commit could follow, and a full freeze \
         of {} would last over {} (freeze.fallback_max_pause): it was thawed \
         and nothing was written; commit it with --pause full, or when it writes less",
        cgroup.display(),
        humantime::format_duration(*limit)
    )]
    FallbackTooLong { cgroup: PathBuf, limit: Duration },

    #[error("finding this executable for the guardian: {0}")]
    CurrentExe(#[source] std::io::Error),

    /// The session or its mounts failed during the commit.
    #[error(transparent)]
    Runtime(freezeframe_runtime::Error),

    /// Freezing or thawing the session's cgroup failed.
    #[error(transparent)]
    Freezer(#[from] freezeframe_runtime::session::freezer::Error),

    /// The guardian that thaws for a committer that dies failed.
    #[error(transparent)]
    Guardian(#[from] freezeframe_runtime::session::guardian::Error),

    /// The layer engine failed.
    #[error(transparent)]
    Snapshot(freezeframe_snapshot::Error),

    /// The archive was written, and pushing it to the registry failed (or was
    /// cancelled): the archive stays where it was written.
    #[error("pushing {} to {reference} (the archive is kept)", archive.display())]
    Push {
        archive: PathBuf,
        reference: String,
        #[source]
        source: Box<freezeframe_snapshot::registry::Error>,
    },
}

impl CommitError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        CommitError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The stable code of this error, as the API and the task records give it.
    pub fn code(&self) -> Code {
        use freezeframe_runtime::Error as R;
        match self {
            CommitError::Invalid { .. }
            | CommitError::Lookup(R::BadId { .. } | R::Ambiguous { .. }) => Code::InvalidField,
            CommitError::Lookup(R::NotFound { .. } | R::NotRunning { .. })
            | CommitError::Runtime(R::NotFound { .. } | R::NotRunning { .. }) => {
                Code::SessionNotFound
            }
            CommitError::Lookup(R::Names(_)) => Code::CommitFailed,
            CommitError::Lookup(_) => Code::SessionUnsupported,
            CommitError::OutputExists { .. } => Code::OutputExists,
            CommitError::Cancelled => Code::Cancelled,
            CommitError::Push { source, .. } => match source.as_ref() {
                freezeframe_snapshot::registry::Error::Cancelled { .. } => Code::Cancelled,
                _ => Code::PushFailed,
            },
            CommitError::BaseReplaced { .. }
            | CommitError::BaseUnreadable { .. }
            | CommitError::CurrentExe(_)
            | CommitError::Runtime(_)
            | CommitError::Freezer(_)
            | CommitError::Guardian(_)
            | CommitError::FallbackTooLong { .. }
            | CommitError::Snapshot(_) => Code::CommitFailed,
        }
    }

    /// The request field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            CommitError::Invalid { field, .. } => Some(field),
            CommitError::Lookup(
                freezeframe_runtime::Error::BadId { .. }
                | freezeframe_runtime::Error::Ambiguous { .. },
            ) => Some("session"),
            CommitError::OutputExists { .. } => Some("output"),
            _ => None,
        }
    }
}

impl From<freezeframe_snapshot::Error> for CommitError {
    fn from(e: freezeframe_snapshot::Error) -> Self {
        use freezeframe_snapshot::Error as S;
        match e {
            S::Cancelled => CommitError::Cancelled,
            S::Exists { path } => CommitError::OutputExists { path },
            other => CommitError::Snapshot(other),
        }
    }
}

impl From<freezeframe_runtime::Error> for CommitError {
    fn from(e: freezeframe_runtime::Error) -> Self {
        CommitError::Runtime(e)
    }
}

impl From<freezeframe_snapshot::changes::ChangeError> for CommitError {
    fn from(e: freezeframe_snapshot::changes::ChangeError) -> Self {
        CommitError::Snapshot(e.into())
    }
}

impl From<freezeframe_snapshot::source::SourceError> for CommitError {
    fn from(e: freezeframe_snapshot::source::SourceError) -> Self {
        CommitError::Snapshot(e.into())
    }
}
