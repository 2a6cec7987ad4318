//! A small HTTP/1.1 client for the service's Unix socket, for `tasks`, `status`,
//! `cancel` and `commit --via-daemon`: one request per connection, JSON in and
//! out, and the newline-delimited events stream read as it comes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use freezeframe_config::Config;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde_json::Value;

/// How long a read of the events stream waits (events come every 250 ms), so
/// that an interrupt is noticed.
const EVENT_WAIT: Duration = Duration::from_millis(500);

pub struct Client {
    socket: PathBuf,
}

/// The socket option of the client commands.
#[derive(clap::Args)]
pub struct SocketArg {
    /// The service's socket [config: server.socket].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// An answer: the status and the body, parsed when it is JSON.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Client {
    /// The socket given, else the configured one (`server.socket`).
    pub fn new(config_path: Option<&Path>, socket: Option<&Path>) -> Result<Client> {
        let socket = match socket {
            Some(s) => s.to_path_buf(),
            None => Config::load(config_path)?.server.socket,
        };
        Ok(Client { socket })
    }

    fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket).with_context(|| {
            format!(
                "cannot connect to {} (is `freezeframe serve` running?)",
                self.socket.display()
            )
        })
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<BufReader<UnixStream>> {
        let mut s = self.connect()?;
        let body = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(&body))
            .with_context(|| format!("sending {method} {path} to {}", self.socket.display()))?;
        Ok(BufReader::new(s))
    }

    /// One request and its whole answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let mut r = self.send(method, path, body)?;
        let (status, chunked, length) = read_head(&mut r)?;
        let body = read_body(&mut r, chunked, length)?;
        Ok(Reply { status, body })
    }

    /// A request whose answer must be a success; an error answer becomes an
    /// error that says its code and message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let r = self.request(method, path, body)?;
        if r.status >= 400 {
            bail!("{}", describe_error(&r));
        }
        Ok(r.body)
    }

    /// Reads the events stream of task `id`, calling `each` on every event,
    /// until the `end` event (returned) or until `stop` is set.
    pub fn events(
        &self,
        id: &str,
        stop: &AtomicBool,
        mut each: impl FnMut(&Value),
    ) -> Result<Option<Value>> {
        let path = format!("/v1/commits/{}/events", percent_encode(id));
        let mut r = self.send("GET", &path, None)?;
        let (status, chunked, length) = read_head(&mut r)?;
        if status >= 400 {
            let body = read_body(&mut r, chunked, length)?;
            bail!("{}", describe_error(&Reply { status, body }));
        }
        // Events come every 250 ms: a timeout lets `stop` be noticed.
        r.get_ref()
            .set_read_timeout(Some(EVENT_WAIT))
            .context("setting a read timeout")?;
        let mut pending = Vec::new();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let chunk = match next_data(&mut r, chunked)? {
                Next::Data(c) => c,
                Next::Nothing => continue,
                Next::End => bail!("the events stream of task {id} ended before the task did"),
            };
            pending.extend_from_slice(&chunk);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let event: Value = serde_json::from_slice(&line).with_context(|| {
                    format!("a malformed event: {}", String::from_utf8_lossy(&line))
                })?;
                each(&event);
                if event["event"] == "end" {
                    return Ok(Some(event));
                }
            }
        }
    }
}

/// Reads the status line and headers: the status, whether the body is chunked,
/// and its length if given.
fn read_head(r: &mut impl BufRead) -> Result<(u16, bool, Option<usize>)> {
    let mut line = String::new();
    r.read_line(&mut line).context("reading the answer")?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))?;
    let (mut chunked, mut length) = (false, None);
    loop {
        line.clear();
        r.read_line(&mut line)
            .context("reading the answer's headers")?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse().ok();
            }
        }
    }
    Ok((status, chunked, length))
}

/// The whole body, parsed when it is JSON.
fn read_body(r: &mut impl BufRead, chunked: bool, length: Option<usize>) -> Result<Value> {
    let mut bytes = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(r)? {
            bytes.extend_from_slice(&chunk);
        }
    } else if let Some(n) = length {
        bytes.resize(n, 0);
        r.read_exact(&mut bytes).context("reading the answer")?;
    } else {
        r.read_to_end(&mut bytes).context("reading the answer")?;
    }
    Ok(serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

/// One chunk of a chunked body; `None` after the last.
fn read_chunk(r: &mut impl BufRead) -> Result<Option<Vec<u8>>> {
    let mut line = String::new();
    r.read_line(&mut line).context("reading a chunk")?;
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .with_context(|| format!("a malformed chunk size {line:?}"))?;
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data).context("reading a chunk")?;
    data.truncate(size);
    Ok((size > 0).then_some(data))
}

/// What a read of the events stream gave.
enum Next {
    Data(Vec<u8>),
    End,
    /// Nothing within the read timeout.
    Nothing,
}

/// The next chunk of the stream (or what came, when it is not chunked).
fn next_data(r: &mut BufReader<UnixStream>, chunked: bool) -> Result<Next> {
    match r.fill_buf() {
        Ok([]) => return Ok(Next::End),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(Next::Nothing)
        }
        Err(e) => return Err(e).context("reading events"),
    }
    if !chunked {
        let data = r.buffer().to_vec();
        r.consume(data.len());
        return Ok(Next::Data(data));
    }
    // A chunk has begun: the rest of it follows at once.
    r.get_ref()
        .set_read_timeout(None)
        .context("setting a read timeout")?;
    let chunk = read_chunk(r)?;
    r.get_ref()
        .set_read_timeout(Some(EVENT_WAIT))
        .context("setting a read timeout")?;
    Ok(chunk.map_or(Next::End, Next::Data))
}

fn describe_error(r: &Reply) -> String {
    match (r.body["code"].as_str(), r.body["message"].as_str()) {
        (Some(code), Some(message)) => match r.body["field"].as_str() {
            Some(f) if !message.starts_with(f) => {
                format!("{message} ({code}, field {f}, HTTP {})", r.status)
            }
            _ => format!("{message} ({code}, HTTP {})", r.status),
        },
        _ => format!("HTTP {}: {}", r.status, r.body),
    }
}

/// Follows a task to its end, with a progress line on a terminal; prints the
/// final record (as JSON with `json`) and exits 0 when it is done, 130 when
/// cancelled, 1 otherwise. Ctrl-C cancels the task with `cancel_on_interrupt`,
/// else only stops following it (exit 130).
pub fn follow(
    client: &Client,
    id: &str,
    json: bool,
    cancel_on_interrupt: bool,
) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let bar = (!json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("static template"),
        );
        b.enable_steady_tick(Duration::from_millis(100));
        b
    });
    let end = client.events(id, &stop, |e| {
        if let Some(b) = &bar {
            let p = &e["progress"];
            let frozen = e["frozen_ms"]
                .as_u64()
                .map_or(String::new(), |ms| format!(", frozen {ms} ms"));
            b.set_message(format!(
                "{} {}: {} entries, {} read, {} written{frozen}",
                id,
                e["state"].as_str().unwrap_or("?"),
                p["files"].as_u64().unwrap_or(0),
                HumanBytes(p["bytes_read"].as_u64().unwrap_or(0)),
                HumanBytes(p["bytes_written"].as_u64().unwrap_or(0)),
            ));
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let task = match end? {
        Some(e) => e["task"].clone(),
        None if cancel_on_interrupt => {
            eprintln!("freezeframe: cancelling task {id}");
            client.call(
                "DELETE",
                &format!("/v1/commits/{}", percent_encode(id)),
                None,
            )?
        }
        None => return Ok(ExitCode::from(130)),
    };
    print_task(&task, json)?;
    Ok(match task["state"].as_str() {
        Some("done") => ExitCode::SUCCESS,
        Some("cancelled") => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

/// A task: as JSON, or as a few lines for a person.
pub fn print_task(t: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(t)?);
        return Ok(());
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!("task      {}", s(&t["id"]));
    println!("session   {}", s(&t["session"]));
    println!("state     {}", s(&t["state"]));
    println!("output    {}", s(&t["output"]));
    let p = &t["progress"];
    println!(
        "progress  {} entries, {} read, {} written",
        p["files"].as_u64().unwrap_or(0),
        HumanBytes(p["bytes_read"].as_u64().unwrap_or(0)),
        HumanBytes(p["bytes_written"].as_u64().unwrap_or(0))
    );
    if let Some(ms) = t["frozen_ms"].as_u64() {
        println!("frozen    {ms} ms");
    }
    if let Some(phases) = t["phases_ms"].as_object() {
        let list: Vec<String> = phases.iter().map(|(k, v)| format!("{k} {v} ms")).collect();
        println!("phases    {}", list.join(", "));
    }
    let r = &t["result"];
    if r.is_object() {
        println!(
            "archive   {} ({})",
            s(&r["archive"]),
            HumanBytes(r["size"].as_u64().unwrap_or(0))
        );
        println!("manifest  {}", s(&r["manifest_digest"]));
        println!("config    {}", s(&r["config_digest"]));
        for l in r["layers"].as_array().into_iter().flatten() {
            println!(
                "layer     {} {}",
                s(&l["digest"]),
                HumanBytes(l["size"].as_u64().unwrap_or(0))
            );
        }
    }
    let e = &t["error"];
    if e.is_object() {
        println!("error     {}: {}", s(&e["code"]), s(&e["message"]));
    }
    Ok(())
}

/// `freezeframe commit SESSION --via-daemon`: submits `body` and follows the task.
pub fn commit(
    config_path: Option<&Path>,
    socket: Option<&Path>,
    body: Value,
    json: bool,
) -> Result<ExitCode> {
    let client = Client::new(config_path, socket)?;
    let task = client.call("POST", "/v1/commits", Some(&body))?;
    let id = task["id"].as_str().context("the answer names no task id")?;
    if !json {
        eprintln!("freezeframe: task {id}");
    }
    follow(&client, id, json, true)
}

/// Percent-encodes everything but unreserved characters, for a path segment or
/// a query value.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
