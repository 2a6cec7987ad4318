//! `freezeframe tasks`: the service's commits, oldest first.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::client::{percent_encode, Client, SocketArg};

#[derive(ClapArgs)]
pub struct Args {
    /// Only the commits of this session.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Only the commits in this state (queued, snapshotting, freezing,
    /// finalizing, done, failed, cancelled).
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    socket: SocketArg,
}

pub fn run(config_path: Option<&Path>, a: Args) -> Result<ExitCode> {
    let client = Client::new(config_path, a.socket.socket.as_deref())?;
    let mut query = Vec::new();
    if let Some(s) = &a.session {
        query.push(format!("session={}", percent_encode(s)));
    }
    if let Some(s) = &a.state {
        query.push(format!("state={}", percent_encode(s)));
    }
    let path = if query.is_empty() {
        "/v1/commits".to_string()
    } else {
        format!("/v1/commits?{}", query.join("&"))
    };
    let tasks = client.call("GET", &path, None)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&tasks)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16}  {:<12}  {:<24}  {:<24}  OUTPUT",
        "ID", "STATE", "SESSION", "CREATED"
    );
    for t in tasks.as_array().into_iter().flatten() {
        let s = |k: &str| t[k].as_str().unwrap_or("-").to_string();
        let outcome = match t["error"]["message"].as_str() {
            Some(m) => format!("{} ({})", s("output"), m),
            None => s("output"),
        };
        println!(
            "{:<16}  {:<12}  {:<24}  {:<24}  {}",
            s("id"),
            s("state"),
            s("session"),
            s("created"),
            outcome
        );
    }
    Ok(ExitCode::SUCCESS)
}
