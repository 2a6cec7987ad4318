//! Pushing images to a registry (the distribution API, OCI distribution spec 1.1).
//!
//! | module | owns |
//! |---|---|
//! | [`reference`](mod@reference) | `HOST[:PORT]/REPO[:TAG][@DIGEST]` |
//! | [`auth`] | credentials (caller, podman's `auth.json`, Docker's `config.json`) and challenges |
//! | [`client`] | one registry's API: blob `HEAD`, mount, uploads, manifest `PUT`; TLS and auth |
//! | [`upload`] | one blob, streamed: monolithic `PUT` or chunked `PATCH`es |
//! | [`manifest`] | the Docker schema 2 form of an OCI manifest |
//! | [`push`](mod@push) | an OCI archive or layout to a repository: [`push_archive`] |
//!
//! Every blob is checked with `HEAD` first and never sent when the repository has
//! it; a blob another repository of the registry has is mounted
//! (`POST …/blobs/uploads/?mount=DIGEST&from=REPO`) rather than sent. Blobs stream
//! from the archive in bounded buffers and are checked against their digest as
//! they go; no blob is ever held in memory.
//!
//! # The HTTP client
//!
//! The client is [`ureq`] 3, blocking, with rustls (ring) and the system's CA
//! bundle plus the CAs Docker and podman read for a registry
//! (`/etc/docker/certs.d/HOST:PORT/*.crt`, `/etc/containers/certs.d/HOST:PORT/*.crt`).
//! A push is a sequence of requests each streaming one body from a file: a
//! blocking client streams a `Read` as a request body directly, where hyper (in
//! the tree for the service, with tokio) would need an async body adapter over
//! blocking file reads, a TLS connector (tokio-rustls) and connection handling
//! written here. ureq adds rustls, ring and a small HTTP/1.1 core to the build
//! and nothing async; its own parts are a few seconds of compile time.
//!
//! Plain HTTP is spoken only to a registry the caller marks insecure.
//! Credentials are never logged, never put in errors (the registry's answers are
//! scrubbed of them), and [`Credentials`] prints no password.
//!
//! After a broken connection (or a 502, 503, 504) a request is repeated with
//! backoff, and an upload resumes from the `Range` the registry reports.
//!
//! A registry that refuses OCI manifests gets the Docker schema 2 form.
//!
//! Not done here yet: client certificates (`*.cert`/`*.key` in the cert dirs),
//! Docker's credential helpers.

pub mod auth;
pub mod client;
pub mod manifest;
pub mod push;
pub mod reference;
pub mod upload;

use std::path::PathBuf;

use crate::source::SourceError;

pub use auth::Credentials;
pub use client::{Client, ClientOptions};
pub use push::{push_archive, BlobOutcome, PushOptions, PushReport, PushedBlob};
pub use reference::Reference;

/// Errors from talking to a registry and pushing to it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: &'static str },
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid CA certificate file {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("invalid credentials file {path}: {reason}")]
    AuthFile { path: PathBuf, reason: String },
    /// The connection failed, or a blob could not be read while it was sent.
    #[error("{what}: request to {url} failed: {source}{hint}")]
    Transport {
        what: String,
        url: String,
        #[source]
        source: Box<ureq::Error>,
        hint: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{what}: the registry answered {status}: {message}")]
    Status {
        what: String,
        url: String,
        status: String,
        message: String,
    },
    #[error("{what}: {url}: {reason}")]
    Protocol {
        what: String,
        url: String,
        reason: String,
    },
    #[error("{what}: getting a token from {realm} failed: {reason}")]
    Token {
        what: String,
        realm: String,
        reason: String,
    },
    /// A blob the manifest lists is neither in the archive nor in the registry.
    #[error(
        "blob {digest} is not in {archive} and the registry has no blob {digest} in {repository}{}: \
         push its base image there first, or commit with the base blobs included",
        from.as_deref().map(|f| format!(" (nor could it be mounted from {f})")).unwrap_or_default()
    )]
    MissingBlob {
        archive: PathBuf,
        digest: String,
        repository: String,
        from: Option<String>,
    },
    #[error("{reference} names digest {expected}, but the image in {archive} is {actual}")]
    DigestMismatch {
        archive: PathBuf,
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("pushing {archive} to {reference} was cancelled")]
    Cancelled { archive: PathBuf, reference: String },
    #[error(transparent)]
    Source(Box<SourceError>),
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        Error::Source(Box::new(e))
    }
}

impl Error {
    /// Whether repeating the request may succeed: a connection refused, reset
    /// or timed out, or a 502, 503 or 504. A blob that could not be read, a
    /// cancelled push or a certificate error is not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { source, .. } => match source.as_ref() {
                ureq::Error::Io(e) => matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::NotConnected
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::TimedOut
                ),
                ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => true,
                ureq::Error::Protocol(_) => true,
                _ => false,
            },
            Error::Status { .. } => matches!(self.status(), Some(502..=504)),
            _ => false,
        }
    }

    /// The HTTP status the registry answered with, for callers that map it.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => status.split(' ').next()?.parse().ok(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
