//! `freezeframe serve`: the commit service. HTTP/1.1 and JSON over a Unix
//! socket, for the platform's manager and agent: start a commit, watch it, get
//! the result, cancel it.
//!
//! - [`routes`]: the routes, request parsing, admission and answers (the
//!   bodies are [`crate::api`]'s);
//! - [`tasks`]: admission, limits, the commit threads and their records;
//! - [`store`]: task records on disk;
//! - [`peer`]: the socket and its peers' credentials;
//! - [`conn`]: the accept loop, each peer checked before anything is read,
//!   and the limits of connections;
//! - [`output`]: where an archive may be written;
//! - [`error`]: the one mapping of errors to statuses and codes.
//!
//! Commits run on OS threads of their own, never on the async runtime's: the
//! freeze, the walk and the guardian are blocking work. Status calls only copy
//! in-memory state behind a lock that nothing holds for long.

pub mod conn;
pub mod error;
pub mod output;
pub mod peer;
pub mod routes;
pub mod store;
pub mod tasks;

use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use freezeframe_config::Config;
use tokio::signal::unix::{signal, SignalKind};

use conn::Gate;
use peer::Allow;
use routes::App;
use store::Store;
use tasks::{Limits, Manager, Retention};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] io::Error),

    #[error("the server task failed: {0}")]
    Task(#[source] tokio::task::JoinError),

    #[error("installing a {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        source: io::Error,
    },

    #[error(transparent)]
    Output(#[from] output::AccessError),

    #[error("{}: {source}", path.display())]
    Socket { path: PathBuf, source: io::Error },

    #[error(transparent)]
    Store(#[from] store::Error),

    #[error(transparent)]
    Bind(#[from] peer::Error),
}

type Result<T, E = ServeError> = std::result::Result<T, E>;

/// The nice value of the threads that answer the API.
const API_NICE: i32 = -10;

/// Runs the service until SIGTERM or SIGINT; then stops accepting, cancels (or,
/// with `server.cancel_on_shutdown = false`, waits for) the commits in flight,
/// and returns once every session it froze is thawed.
pub fn serve(config: Config) -> Result<()> {
    // A few threads answer the API; commits have threads of their own.
    let workers = std::thread::available_parallelism()
        .map_or(2, NonZeroUsize::get)
        .clamp(2, 4);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("freezeframe-api")
        .on_thread_start(|| {
            // Status calls are answered promptly even while commits keep every
            // core busy. Linux nice values are per thread: commit threads set
            // their own (see `tasks`).
            if let Err(e) = rustix::process::setpriority_process(None, API_NICE) {
                tracing::debug!(error = %e, "cannot raise the API threads' priority");
            }
        })
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?
        // On a worker, not this thread: the accept loop runs at the API's priority.
        .block_on(async { tokio::spawn(run(config)).await })
        .map_err(ServeError::Task)?
}

async fn run(config: Config) -> Result<()> {
    let s = &config.server;
    let handler = |signal| move |source| ServeError::Signal { signal, source };
    let mut term = signal(SignalKind::terminate()).map_err(handler("SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(handler("SIGINT"))?;

    output::configure(&config.storage)?;
    let store = Store::open(&s.state_dir)?;
    let manager = Arc::new(Manager::new(
        store,
        Limits {
            max_concurrent: s.max_concurrent,
            queue_size: s.queue_size,
            lock_dir: s.lock_dir.clone(),
            retain: Retention {
                age: s.retain_for,
                count: s.retain_count,
            },
        },
    ));
    let interrupted = manager.recover()?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "recovered tasks a previous server left unfinished"
        );
    }

    manager.prune(std::time::SystemTime::now());
    // Records age out while nothing finishes too.
    let pruning = {
        let manager = Arc::clone(&manager);
        let every = (s.retain_for / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let manager = Arc::clone(&manager);
                let _ = tokio::task::spawn_blocking(move || {
                    manager.prune(std::time::SystemTime::now())
                })
                .await;
            }
        })
    };

    let listener = peer::bind(&s.socket, s.socket_mode, s.socket_group.as_ref())?;
    let ino = std::fs::metadata(&s.socket)
        .map_err(|source| ServeError::Socket {
            path: s.socket.clone(),
            source,
        })?
        .ino();
    let threads = (config.compression.effective_threads() / s.max_concurrent).max(1);
    let socket = s.socket.clone();
    let cancel_on_shutdown = s.cancel_on_shutdown;
    let allow = Allow {
        uids: s.allowed_uids.clone(),
        gids: s.allowed_gids.clone(),
    };
    let gate = Arc::new(Gate::new(
        allow.clone(),
        conn::Limits {
            header_timeout: s.header_timeout,
            idle_timeout: s.idle_timeout,
            max_connections: s.max_connections,
        },
    ));
    let app = Arc::new(App {
        manager: Arc::clone(&manager),
        allow,
        threads,
        config,
    });
    tracing::info!(socket = %socket.display(), threads, "serving API v1");

    let stopping = Arc::clone(&manager);
    conn::serve(listener, routes::router(app), gate, async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, cancel = cancel_on_shutdown, "shutting down");
        stopping.shut_down(cancel_on_shutdown);
    })
    .await;
    while !manager.idle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pruning.abort();
    peer::unlink_if_ours(&socket, ino);
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_packaged_config_is_valid() {
        let path = std::path::Path::new("../packaging/config.toml");
        let text = include_str!("../../../packaging/config.toml");
        let c = freezeframe_config::Config::from_toml_str(text, path).unwrap();
        assert_eq!(
            c.server.socket,
            std::path::Path::new("/run/freezeframe/freezeframe.sock")
        );
    }
}
