//! The service's wire types, API v1: the request and response bodies that the
//! server answers and the client reads, one serde definition each, as
//! `api/openapi.yaml` describes them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use freezeframe_config::{Algorithm, PauseMode};
use freezeframe_runtime::session::freezer::CgroupVersion;
use serde::{Deserialize, Serialize};

/// The body of `POST /v1/commits` (`CommitRequest` in the API document).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    pub session: String,
    pub runtime_root: Option<PathBuf>,
    pub output: Option<String>,
    pub tag: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub changes: Vec<String>,
    #[serde(default)]
    pub include_mounts: Vec<PathBuf>,
    /// Paths the secret set leaves out to commit after all, as
    /// `--include-secret` takes them: relative to the home, or absolute.
    #[serde(default)]
    pub include_secrets: Vec<PathBuf>,
    pub compression: Option<Algorithm>,
    pub pause: Option<PauseMode>,
    pub owner: Option<String>,
    /// The base image, as `freezeframe commit --base` takes it: an image in a
    /// runtime's store (`docker:`, `containers-storage:`, `containerd:`), or
    /// an OCI layout or archive beneath the save location. Default: the image
    /// the session's runtime recorded.
    pub base: Option<String>,
    /// Push the committed image to a registry once the archive is written.
    pub push: Option<PushRequest>,
}

/// Where and how to push a commit (`push` of a `CommitRequest`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// `HOST[:PORT]/REPO[:TAG]`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// A repository of the same registry to mount blobs from. Default: the
    /// base image's repository, when its name is an image of that registry.
    pub from: Option<String>,
    /// Plain HTTP: only to a registry the service's config lists in
    /// `registry.insecure`.
    #[serde(default)]
    pub insecure: bool,
    /// Default: the service's own (podman's `auth.json`, Docker's
    /// `config.json`), else anonymous. Kept in memory only, for the task's life.
    pub credentials: Option<PushCredentials>,
}

/// A registry user and password; printed without the password.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for PushCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The query of `GET /v1/commits`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub session: Option<String>,
    pub state: Option<State>,
    /// Only this owner's tasks; required with `server.require_owner`.
    pub owner: Option<String>,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Admitted, waiting for a slot.
    Queued,
    /// Running with the session running: copying the base, the first pass of a
    /// live commit, or the whole walk with `pause: none`.
    Snapshotting,
    /// The session is frozen (or being frozen) for the walk.
    Freezing,
    /// Writing config, manifest and index; syncing.
    Finalizing,
    /// Pushing the written archive to the registry the request named.
    Pushing,
    Done,
    Failed,
    Cancelled,
}

impl State {
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Snapshotting => "snapshotting",
            State::Freezing => "freezing",
            State::Finalizing => "finalizing",
            State::Pushing => "pushing",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }
}

/// A task as the API shows it and as it is persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub session: String,
    /// The owner the request named, once checked against `server.owner_label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub state: State,
    /// The archive's final path.
    pub output: PathBuf,
    pub request: Summary,
    /// RFC 3339 times.
    pub created: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Milliseconds spent in each state entered so far.
    pub phases_ms: BTreeMap<State, u64>,
    pub progress: Counts,
    /// How long the session was frozen (so far, while frozen).
    pub frozen_ms: Option<u64>,
    pub result: Option<TaskResult>,
    pub error: Option<TaskError>,
    /// While running: the temporary archive, removed if the task does not finish.
    /// Unset where the archive is written unnamed (`O_TMPFILE`): a file with no
    /// name goes away with the process that wrote it.
    pub temp: Option<PathBuf>,
    /// While the session is frozen: its cgroup, thawed on recovery.
    pub frozen_cgroup: Option<FrozenCgroup>,
    /// While admitted: the platform's lock file for the session.
    pub lock_file: Option<PathBuf>,
}

/// What was asked for, as the record shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub pause: String,
    pub compression: String,
    pub tag: Option<String>,
    /// The reference the image is pushed to (never the credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Entries written to the layers so far (files, directories, links…).
    pub files: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// While and once pushing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushCounts>,
}

/// How far a push got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushCounts {
    /// Bytes of blobs sent so far.
    pub bytes_sent: u64,
    /// Blobs (config and layers) handled, out of `blobs_total`.
    pub blobs_done: u64,
    pub blobs_total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub archive: PathBuf,
    pub size: u64,
    pub archive_sha256: String,
    pub manifest_digest: String,
    pub config_digest: String,
    /// Every layer of the image, base layers first.
    pub layers: Vec<Layer>,
    /// How the session was paused: `auto`, `auto-fallback-full`, `full` or `none`.
    pub pause_path: String,
    pub files: u64,
    pub bytes: u64,
    /// Paths left out as secrets, the first 1000 of them.
    #[serde(default)]
    pub secrets_excluded: Vec<String>,
    /// Secrets left out beyond those listed (at least this many).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub secrets_unlisted: u64,
    /// What the push did, when one was asked for and it went through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushResult>,
}

/// A push's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushResult {
    /// Where the image went, `HOST[:PORT]/REPO:TAG`.
    pub reference: String,
    /// The pushed manifest's digest: the archive's, or that of its Docker
    /// schema 2 form where the registry refused OCI manifests.
    pub manifest_digest: String,
    pub manifest_media_type: String,
    /// The repository blobs were mounted from, when one was given or found.
    pub mount_source: Option<String>,
    /// The config first, then the layers.
    pub blobs: Vec<PushedBlob>,
    /// Bytes of blobs sent; blobs mounted or already there count nothing.
    pub uploaded_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushedBlob {
    pub digest: String,
    pub size: u64,
    /// `existing`, `mounted` or `uploaded`.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
    pub included: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskError {
    pub code: Code,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrozenCgroup {
    pub version: CgroupVersion,
    pub dir: PathBuf,
    /// Frozen by its owner before the commit: left frozen on recovery.
    pub paused_before: bool,
}

/// What a line of the events stream reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The task entered a state.
    State,
    /// Every 250 ms while nothing else happens.
    Progress,
    /// The last line; `task` is the final record.
    End,
}

/// One line of `GET /v1/commits/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub event: EventKind,
    pub id: String,
    pub state: State,
    pub progress: Counts,
    pub frozen_ms: Option<u64>,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

/// The answer of `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub running: usize,
    pub queued: usize,
}

/// The answer of `GET /v1/version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
    pub api: String,
}

/// The stable error codes of the API and of failed tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    BadRequest,
    InvalidField,
    UnknownField,
    BodyTooLarge,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    SessionNotFound,
    SessionUnsupported,
    Conflict,
    OutputExists,
    QueueFull,
    ShuttingDown,
    Internal,
    /// A task the server was running when it stopped without finishing it.
    Interrupted,
    Cancelled,
    CommitFailed,
    /// The commit was written but the push failed: the archive is kept.
    PushFailed,
}

impl Code {
    /// The code as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::InvalidField => "invalid_field",
            Code::UnknownField => "unknown_field",
            Code::BodyTooLarge => "body_too_large",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::SessionNotFound => "session_not_found",
            Code::SessionUnsupported => "session_unsupported",
            Code::Conflict => "conflict",
            Code::OutputExists => "output_exists",
            Code::QueueFull => "queue_full",
            Code::ShuttingDown => "shutting_down",
            Code::Internal => "internal",
            Code::Interrupted => "interrupted",
            Code::Cancelled => "cancelled",
            Code::CommitFailed => "commit_failed",
            Code::PushFailed => "push_failed",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: Code,
    pub message: String,
    pub field: Option<String>,
}

/// For counts left out of the JSON when there are none.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_serde_spells_them() {
        use Code::*;
        for c in [
            BadRequest,
            InvalidField,
            UnknownField,
            BodyTooLarge,
            Forbidden,
            NotFound,
            MethodNotAllowed,
            SessionNotFound,
            SessionUnsupported,
            Conflict,
            OutputExists,
            QueueFull,
            ShuttingDown,
            Internal,
            Interrupted,
            Cancelled,
            CommitFailed,
            PushFailed,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
