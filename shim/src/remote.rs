//! The edge of the client commands (`tasks`, `status`, `cancel`, `commit
//! --via-daemon`): the socket option, calls run to completion, and following a
//! task to its end with a progress line.

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use freezeframe::api::{Event, State, Task};
use freezeframe::client::Client;
use freezeframe_config::Config;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use tokio::signal::unix::{signal, SignalKind};

/// The socket option of the client commands.
#[derive(clap::Args)]
pub struct SocketArg {
    /// The service's socket [config: server.socket].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Act as this owner: only its tasks are seen (required by a service with
    /// server.require_owner).
    #[arg(long, value_name = "OWNER", env = "FREEZEFRAME_OWNER")]
    pub owner: Option<String>,
}

/// A client of the socket given, else of the configured one (`server.socket`).
pub fn client(
    config_path: Option<&Path>,
    socket: Option<&Path>,
    owner: Option<String>,
) -> Result<Client> {
    let socket = match socket {
        Some(s) => s.to_path_buf(),
        None => Config::load(config_path)?.server.socket,
    };
    Ok(Client::new(socket).with_owner(owner))
}

/// Runs a client call on a runtime of this thread.
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f))
}

/// Follows a task to its end, with a progress line on a terminal; prints the
/// final record (as JSON with `json`) and exits 0 when it is done, 130 when
/// cancelled, 1 otherwise. Ctrl-C cancels the task with `cancel_on_interrupt`,
/// else only stops following it (exit 130).
pub async fn follow(
    client: &Client,
    id: &str,
    json: bool,
    cancel_on_interrupt: bool,
) -> Result<ExitCode> {
    let mut int = signal(SignalKind::interrupt()).context("installing signal handlers")?;
    let mut term = signal(SignalKind::terminate()).context("installing signal handlers")?;
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("static template"),
        );
        b.enable_steady_tick(Duration::from_millis(100));
        b
    });
    let end = async {
        let mut events = client.events(id).await?;
        while let Some(e) = events.next().await? {
            if let Some(b) = &bar {
                b.set_message(progress_line(id, &e));
            }
            if e.task.is_some() {
                return Ok(e.task);
            }
        }
        Ok::<_, freezeframe::client::ClientError>(None)
    };
    let end = tokio::select! {
        end = end => Some(end),
        _ = int.recv() => None,
        _ = term.recv() => None,
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let task = match end {
        Some(end) => end?.context("the end event carries no task")?,
        None if cancel_on_interrupt => {
            eprintln!("freezeframe: cancelling task {id}");
            client.cancel(id).await?
        }
        None => return Ok(ExitCode::from(130)),
    };
    crate::show::task(&task, json)?;
    Ok(match task.state {
        State::Done => ExitCode::SUCCESS,
        State::Cancelled => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

fn progress_line(id: &str, e: &Event) -> String {
    let p = &e.progress;
    let frozen = e
        .frozen_ms
        .map_or(String::new(), |ms| format!(", frozen {ms} ms"));
    let push = p.push.map_or(String::new(), |push| {
        format!(
            ", pushed {} ({} of {} blobs)",
            HumanBytes(push.bytes_sent),
            push.blobs_done,
            push.blobs_total
        )
    });
    format!(
        "{} {}: {} entries, {} read, {} written{frozen}{push}",
        id,
        e.state.as_str(),
        p.files,
        HumanBytes(p.bytes_read),
        HumanBytes(p.bytes_written),
    )
}

/// The task a call answered, printed.
pub fn print(task: &Task, json: bool) -> Result<ExitCode> {
    crate::show::task(task, json)?;
    Ok(ExitCode::SUCCESS)
}
