//! The commit service under test: `freezeframe serve` started on a temp socket
//! with temp state and save dirs, and a small HTTP/1.1 client that speaks to it
//! over the Unix socket the way any other client would.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::{bin, tempdir, Value};

/// The `[server]` keys a test may change, and the runtime roots.
#[derive(Clone)]
pub struct ServerOptions {
    pub roots: Vec<PathBuf>,
    pub max_concurrent: usize,
    pub queue_size: usize,
    pub socket_mode: u32,
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    pub owner_label: Option<String>,
    pub lock_dir: bool,
    pub cancel_on_shutdown: bool,
    /// More `[server]` lines, as TOML (`header_timeout = "1s"`, say).
    pub extra: Vec<String>,
}

impl ServerOptions {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        ServerOptions {
            roots,
            max_concurrent: 2,
            queue_size: 16,
            socket_mode: 0o660,
            allowed_uids: vec![0],
            allowed_gids: Vec::new(),
            owner_label: None,
            lock_dir: false,
            cancel_on_shutdown: true,
            extra: Vec::new(),
        }
    }
}

/// A running `freezeframe serve`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    pub socket: PathBuf,
    pub save: PathBuf,
    pub state: PathBuf,
    pub lock_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    dir: TempDir,
}

impl Server {
    pub fn start(name: &str, opts: &ServerOptions) -> Server {
        let dir = tempdir(name);
        let d = dir.path();
        // Other users reach the socket only through directories they may search.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        let s = Server {
            socket: d.join("run/api.sock"),
            save: d.join("save"),
            state: d.join("state"),
            lock_dir: d.join("locks"),
            config: d.join("config.toml"),
            log: d.join("serve.log"),
            child: None,
            dir,
        };
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let roots = opts
            .roots
            .iter()
            .map(|r| format!("{:?}", r.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!(
            "[storage]\nsave_location = {:?}\n\n[server]\nsocket = {:?}\nsocket_mode = \"{:o}\"\n\
             state_dir = {:?}\nallowed_uids = [{}]\nallowed_gids = [{}]\nmax_concurrent = {}\n\
             queue_size = {}\ncancel_on_shutdown = {}\n",
            s.save.display().to_string(),
            s.socket.display().to_string(),
            opts.socket_mode,
            s.state.display().to_string(),
            list(&opts.allowed_uids),
            list(&opts.allowed_gids),
            opts.max_concurrent,
            opts.queue_size,
            opts.cancel_on_shutdown,
        );
        if let Some(l) = &opts.owner_label {
            text.push_str(&format!("owner_label = {l:?}\n"));
        }
        if opts.lock_dir {
            text.push_str(&format!(
                "lock_dir = {:?}\n",
                s.lock_dir.display().to_string()
            ));
        }
        for line in &opts.extra {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("\n[runtime]\nroots = [{roots}]\n"));
        fs::write(&s.config, text).expect("write config.toml");
        let mut s = s;
        s.spawn();
        s
    }

    /// The server's temp dir (for files a test puts next to it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `freezeframe serve` (again) and waits until it answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open serve.log");
        let child = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("FREEZEFRAME_LOG", "info")
            .env_remove("FREEZEFRAME_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn freezeframe serve");
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if let Ok(r) = try_request(&self.socket, "GET", "/v1/health", None) {
                assert_eq!(r.status, 200, "health: {r:?}");
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "freezeframe serve exited with {status}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "freezeframe serve did not answer on {} within 20 s:\n{}",
                self.socket.display(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("the server is running").id() as i32
    }

    /// Sends `sig` and waits (at most `timeout`) for the server to exit.
    pub fn stop(&mut self, sig: Signal, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        kill(Pid::from_raw(child.id() as i32), sig).expect("signal the server");
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return status;
            }
            if t0.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not exit within {timeout:?} of {sig}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request; panics if the server cannot be reached.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        try_request(&self.socket, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_text()))
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(&serde_json::to_vec(body).expect("json")))
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None)
    }

    /// `POST /v1/commits`, asserting 202; returns the task id.
    pub fn submit(&self, body: &Value) -> String {
        let r = self.post("/v1/commits", body);
        assert_eq!(r.status, 202, "POST /v1/commits {body}: {r:?}");
        r.json()["id"].as_str().expect("task id").to_string()
    }

    pub fn task(&self, id: &str) -> Value {
        let r = self.get(&format!("/v1/commits/{id}"));
        assert_eq!(r.status, 200, "GET task {id}: {r:?}");
        r.json()
    }

    /// Polls the task until `pred` holds; panics with the task after `timeout`.
    pub fn wait_task(&self, id: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let t0 = Instant::now();
        loop {
            let t = self.task(id);
            if pred(&t) {
                return t;
            }
            assert!(
                t0.elapsed() < timeout,
                "task {id} did not get there within {timeout:?}: {t:#}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls until the task is in `state`.
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        self.wait_task(id, timeout, |t| t["state"] == state)
    }

    /// Polls until the task has ended.
    pub fn wait_final(&self, id: &str, timeout: Duration) -> Value {
        self.wait_task(id, timeout, |t| {
            matches!(t["state"].as_str(), Some("done" | "failed" | "cancelled"))
        })
    }

    /// Temp files in the save location (names starting with a dot).
    pub fn temp_files(&self) -> Vec<String> {
        fs::read_dir(&self.save)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("teardown: the server ignored SIGTERM; killing it");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP answer.
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as newline-delimited JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice(l).unwrap_or_else(|e| {
                    panic!("not a JSON line ({e}): {}", String::from_utf8_lossy(l))
                })
            })
            .collect()
    }
}

/// One HTTP/1.1 request over the Unix socket (`Connection: close`), the whole
/// answer read, chunked or not.
pub fn try_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if let Some(b) = body {
        // The server may answer (and close) before it has read a refused body.
        let _ = s.write_all(b);
    }
    read_response(BufReader::new(s))
}

fn read_response(mut r: impl BufRead) -> std::io::Result<Response> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("not an HTTP status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {l:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Sparse files of zeros: cheap to make, slow enough to commit (every byte is
/// read and compressed) that a test can act while the commit runs. The walk
/// checks for cancellation between entries, so many files, not one big one.
pub fn fill_slow(dir: &Path, files: usize, size: u64) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    for i in 0..files {
        let p = dir.join(format!("zeros-{i:04}"));
        let f = fs::File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        f.set_len(size).expect("set_len");
    }
}
