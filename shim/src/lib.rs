//! The freezeframe application: the one commit pipeline that the command line
//! and the service share, the service itself, and its client.
//!
//! - [`plan`]: a commit's options, resolved once from the configuration and
//!   the caller's overrides, converted and validated there and nowhere else;
//! - [`live`]: a running session committed: found, walked live or frozen, and
//!   always thawed;
//! - [`base`]: which base image a session's commit starts from, read from the
//!   node's runtime stores;
//! - [`error`]: the pipeline's typed errors and their stable wire codes;
//! - [`api`]: the service's request and response bodies, shared by the server
//!   and the client;
//! - [`server`]: the service on its Unix socket;
//! - [`client`]: the service's client, over the same socket;
//! - [`caps`]: the capabilities a commit and the service need, checked at
//!   start, and the service's drop of the others.
//!
//! The `freezeframe` binary parses its command line, calls into this crate and
//! prints.

pub mod api;
pub mod base;
pub mod caps;
pub mod client;
pub mod error;
pub mod live;
pub mod plan;
pub mod server;

pub use error::CommitError;
pub use plan::{CommitOverrides, CommitPlan};

/// The error and its causes, each once: our error types put their cause in
/// their own message, so a cause already said is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}
