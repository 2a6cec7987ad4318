//! Issue 14's findings against the service, as root, on the real `freezeframe
//! serve`: each test reproduces the finding as it was found, and asserts the
//! safe outcome.
//!
//! | finding | test |
//! |---|---|
//! | 9: forbidden peers read, held and counted | `a_forbidden_peer_is_answered_at_accept_and_never_read` |
//! | 9: slow peers exhaust the server | `slow_peers_beyond_max_connections_are_closed_and_root_still_answers` |
//! | 9: no header or idle timeout | `half_sent_requests_and_idle_connections_are_closed_after_their_timeouts` |
//! | 10: calls not scoped by owner | `with_require_owner_every_call_sees_only_its_owners_tasks` |
//! | 10: records never pruned | `finished_records_are_pruned_by_count_at_start_and_on_a_timer` |
//! | capabilities | `serve_and_commit_name_a_missing_capability`, `the_service_keeps_only_the_capabilities_it_uses` |

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freezeframe_tests::containers::*;
use freezeframe_tests::server::*;
use freezeframe_tests::*;
use nix::sys::signal::Signal;
use serde_json::json;
use tempfile::TempDir;

const LONG: Duration = Duration::from_secs(180);
const NOBODY: u32 = 65534;

fn runc_root(name: &str) -> TempDir {
    tempdir(&format!("{name}-root"))
}

fn session(name: &str, root: &TempDir) -> RuncSession {
    RuncSession::start(
        name,
        |_| {},
        RuncOptions {
            runc_root: Some(root.path().join("runc")),
            ..Default::default()
        },
    )
}

/// Options for a server that never commits (no runtime root holds a session).
fn no_sessions(name: &str) -> (TempDir, ServerOptions) {
    let root = runc_root(name);
    let opts = ServerOptions::new(vec![root.path().join("runc")]);
    (root, opts)
}

/// The server's open sockets (the listener included).
fn sockets_of(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// How long root's `GET /v1/health` takes; asserts it answers 200.
fn health_time(srv: &Server) -> Duration {
    let t0 = Instant::now();
    let r = try_request(&srv.socket, "GET", "/v1/health", None)
        .unwrap_or_else(|e| panic!("health: {e}\n{}", srv.log_text()));
    assert_eq!(r.status, 200, "{r:?}");
    t0.elapsed()
}

/// Opens `n` connections to `socket` as `uid`, each sending the start of a
/// request head and never the rest, and holds them until dropped.
struct Holder(Child);

const HOLD: &str = "import socket, sys\n\
    socks = []\n\
    for i in range(int(sys.argv[2])):\n\
    \x20   s = socket.socket(socket.AF_UNIX)\n\
    \x20   s.connect(sys.argv[1])\n\
    \x20   try:\n\
    \x20       s.sendall(b'GET /v1/health HTTP/1.1\\r\\nHost: x\\r\\n')\n\
    \x20   except OSError:\n\
    \x20       pass\n\
    \x20   socks.append(s)\n\
    print('ready', flush=True)\n\
    sys.stdin.read()\n";

impl Holder {
    fn start(socket: &Path, uid: u32, n: usize) -> Holder {
        let mut child = Command::new("python3")
            .args(["-c", HOLD])
            .arg(socket)
            .arg(n.to_string())
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the holder did not connect");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// As `uid`: connects, sends `send` (maybe nothing) and reads until the server
/// closes; then, after the server has surely closed, reads once more. Prints
/// the seconds to the end of the answer, the answer, and how the last read
/// ended: `reset` when the server closed with bytes of ours unread.
const PROBE: &str = "import socket, sys, time\n\
    s = socket.socket(socket.AF_UNIX)\n\
    s.connect(sys.argv[1])\n\
    s.settimeout(5)\n\
    if sys.argv[2]:\n\
    \x20   s.sendall(sys.argv[2].encode())\n\
    t = time.time()\n\
    data = b''\n\
    end = 'eof'\n\
    try:\n\
    \x20   while True:\n\
    \x20       b = s.recv(4096)\n\
    \x20       if not b:\n\
    \x20           break\n\
    \x20       data += b\n\
    except socket.timeout:\n\
    \x20   end = 'timeout'\n\
    except ConnectionResetError:\n\
    \x20   end = 'reset'\n\
    took = time.time() - t\n\
    if end == 'eof':\n\
    \x20   time.sleep(1.5)\n\
    \x20   try:\n\
    \x20       s.recv(1)\n\
    \x20   except ConnectionResetError:\n\
    \x20       end = 'reset'\n\
    print(round(took, 3))\n\
    print(end)\n\
    print(data.decode(errors='replace'))\n";

fn probe(socket: &Path, uid: u32, send: &str) -> (f64, String, String) {
    let out = Command::new("python3")
        .args(["-c", PROBE])
        .arg(socket)
        .arg(send)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "probe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.splitn(3, '\n');
    let took = lines.next().unwrap().parse().unwrap();
    let end = lines.next().unwrap().to_string();
    (took, end, lines.next().unwrap_or("").to_string())
}

#[test]
fn a_forbidden_peer_is_answered_at_accept_and_never_read() {
    if !root_or_skip("a_forbidden_peer_is_answered_at_accept_and_never_read") {
        return;
    }
    let (_root, mut opts) = no_sessions("hard-forbid");
    opts.socket_mode = 0o666;
    let srv = Server::start("hard-forbid", &opts);

    // As found: the server waited for a whole request before it looked at
    // the peer. Now a peer that sends nothing is answered at once.
    let (took, end, answer) = probe(&srv.socket, NOBODY, "");
    assert!(answer.starts_with("HTTP/1.1 403"), "{end}: {answer:?}");
    assert!(answer.contains(r#""code":"forbidden""#), "{answer}");
    assert!(answer.contains("uid 65534"), "{answer}");
    assert!(took < 1.0, "the answer took {took} s");
    // Half a request: answered the same, and closed with those bytes unread
    // (the kernel reports a reset to a peer whose bytes were never read).
    let (took, end, answer) = probe(&srv.socket, NOBODY, "GET /v1/health HTTP/1.1\r\nHo");
    assert!(answer.starts_with("HTTP/1.1 403"), "{end}: {answer:?}");
    assert!(took < 1.0, "the answer took {took} s");
    assert_eq!(end, "reset", "the server read what the peer sent");

    // 200 forbidden peers holding half requests: none is kept, root's health
    // answers within a second.
    let base = sockets_of(srv.pid());
    let holder = Holder::start(&srv.socket, NOBODY, 200);
    for _ in 0..3 {
        let t = health_time(&srv);
        assert!(t < Duration::from_secs(1), "health took {t:?}");
    }
    assert!(
        wait_until(Duration::from_secs(3), || sockets_of(srv.pid()) <= base + 2),
        "the server still holds {} sockets (before: {base})",
        sockets_of(srv.pid())
    );
    drop(holder);
    // Refusals are logged, not once per connection.
    let log = srv.log_text();
    let lines = log.matches("refused a peer at accept").count();
    assert!((1..=3).contains(&lines), "{lines} lines:\n{log}");
}

#[test]
fn slow_peers_beyond_max_connections_are_closed_and_root_still_answers() {
    if !root_or_skip("slow_peers_beyond_max_connections_are_closed_and_root_still_answers") {
        return;
    }
    let (_root, mut opts) = no_sessions("hard-slow");
    opts.socket_mode = 0o666;
    opts.allowed_uids = vec![0, NOBODY];
    // Long enough that only the limit, not the timeout, closes them here.
    opts.extra = vec![
        "max_connections = 16".into(),
        r#"header_timeout = "60s""#.into(),
    ];
    let srv = Server::start("hard-slow", &opts);
    let base = sockets_of(srv.pid());

    // As found: every half-sent request of an allowed peer was held, 200 of
    // them. Now at most 16 are.
    let holder = Holder::start(&srv.socket, NOBODY, 200);
    for _ in 0..3 {
        let t = health_time(&srv);
        assert!(t < Duration::from_secs(1), "health took {t:?}");
    }
    assert!(
        wait_until(Duration::from_secs(3), || sockets_of(srv.pid())
            <= base + 16),
        "the server holds {} sockets (before: {base}, limit 16)",
        sockets_of(srv.pid())
    );
    assert!(
        srv.log_text().contains("too many connections"),
        "{}",
        srv.log_text()
    );
    drop(holder);
    // Room again once they are gone.
    assert!(wait_until(Duration::from_secs(3), || sockets_of(srv.pid()) <= base));
    let (_, _, answer) = probe(
        &srv.socket,
        NOBODY,
        "GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// Seconds until the server closes a connection on which `send` was sent.
fn closed_after(socket: &Path, send: &[u8], limit: Duration) -> Duration {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let t0 = Instant::now();
    s.write_all(send).unwrap();
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "still open after {:?} ({e}); read so far: {:?}",
            t0.elapsed(),
            String::from_utf8_lossy(&buf)
        ),
    }
    t0.elapsed()
}

#[test]
fn half_sent_requests_and_idle_connections_are_closed_after_their_timeouts() {
    if !root_or_skip("half_sent_requests_and_idle_connections_are_closed_after_their_timeouts") {
        return;
    }
    let (_root, mut opts) = no_sessions("hard-timeouts");
    opts.extra = vec![
        r#"header_timeout = "1s""#.into(),
        r#"idle_timeout = "2s""#.into(),
    ];
    let srv = Server::start("hard-timeouts", &opts);
    let limit = Duration::from_secs(8);

    // As found: a half-sent head was waited for without end.
    let t = closed_after(&srv.socket, b"GET /v1/health HTTP/1.1\r\nHo", limit);
    assert!(
        t >= Duration::from_millis(900) && t < Duration::from_secs(3),
        "{t:?}"
    );
    // A head sent a byte at a time, each well within the idle timeout, is
    // still cut at the header timeout.
    let mut s = UnixStream::connect(&srv.socket).unwrap();
    let t0 = Instant::now();
    let cut = b"GET /v1/health HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'))
        .take(200)
        .any(|b| {
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(&[*b]).is_err()
        });
    assert!(
        cut && t0.elapsed() < Duration::from_secs(4),
        "{:?}",
        t0.elapsed()
    );
    // A body that stops coming: closed at the idle timeout.
    let t = closed_after(
        &srv.socket,
        b"POST /v1/commits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"session\":",
        limit,
    );
    assert!(
        t >= Duration::from_millis(1900) && t < Duration::from_secs(5),
        "{t:?}"
    );
    // A kept-alive connection that asks nothing more: answered, then closed.
    let mut s = UnixStream::connect(&srv.socket).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let t0 = Instant::now();
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("still open after {:?}: {e}", t0.elapsed()));
    assert!(
        String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"),
        "{all:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(health_time(&srv) < Duration::from_secs(1));
}

fn error_code(r: &Response) -> (u16, String, Option<String>) {
    let v = r.json();
    (
        r.status,
        v["code"].as_str().unwrap_or_default().to_string(),
        v["field"].as_str().map(str::to_string),
    )
}

#[test]
fn with_require_owner_every_call_sees_only_its_owners_tasks() {
    if !root_or_skip("with_require_owner_every_call_sees_only_its_owners_tasks") {
        return;
    }
    let root = runc_root("hard-owner");
    let s = session("hard-owner", &root);
    fill_slow(&s.rootfs.join("zeros"), 400, 4 << 20);
    let mut opts = ServerOptions::new(vec![root.path().join("runc")]);
    // The fixture annotates every container with its base image: a stand-in
    // for the platform's owner label.
    opts.owner_label = Some("org.freezeframe.image".into());
    opts.extra = vec!["require_owner = true".into()];
    let srv = Server::start("hard-owner", &opts);
    let owner = s.base.reference().into_string().unwrap();

    // A commit must name its owner.
    let r = srv.post(
        "/v1/commits",
        &json!({ "session": s.id, "output": "x.tar" }),
    );
    assert_eq!(
        error_code(&r),
        (400, "invalid_field".into(), Some("owner".into()))
    );
    let id = srv.submit(&json!({
        "session": s.id, "owner": owner, "pause": "full", "output": "owned.tar",
    }));
    let mine = format!("owner={}", owner.replace(':', "%3A").replace('/', "%2F"));
    let task = srv.get(&format!("/v1/commits/{id}?{mine}"));
    assert_eq!(task.status, 200, "{task:?}");
    assert_eq!(task.json()["owner"], owner.as_str());

    // As found: any caller saw and cancelled any task. Now a call that names
    // no owner is refused, and another owner's sees nothing: 404, as for a
    // task that does not exist.
    for (method, path) in [
        ("GET", "/v1/commits".to_string()),
        ("GET", format!("/v1/commits/{id}")),
        ("GET", format!("/v1/commits/{id}/events")),
        ("DELETE", format!("/v1/commits/{id}")),
    ] {
        let r = srv.request(method, &path, None);
        assert_eq!(
            error_code(&r),
            (400, "invalid_field".into(), Some("owner".into())),
            "{method} {path}: {r:?}"
        );
    }
    let other = "owner=someone-else";
    for (method, path) in [
        ("GET", format!("/v1/commits/{id}?{other}")),
        ("GET", format!("/v1/commits/{id}/events?{other}")),
        ("DELETE", format!("/v1/commits/{id}?{other}")),
    ] {
        let r = srv.request(method, &path, None);
        assert_eq!(
            error_code(&r),
            (404, "not_found".into(), None),
            "{method} {path}: {r:?}"
        );
    }
    let listed = srv.get(&format!("/v1/commits?{other}"));
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json(), json!([]));
    // Still running: the other owner's DELETE did nothing.
    let t = srv.get(&format!("/v1/commits/{id}?{mine}")).json();
    assert!(
        !matches!(t["state"].as_str(), Some("cancelled" | "failed")),
        "{t:#}"
    );

    // The client commands name the owner with --owner (or FREEZEFRAME_OWNER):
    // without one they are refused, as another owner they see nothing.
    let sock = srv.socket.to_str().unwrap();
    let o = freezeframe(["tasks", "--json", "--socket", sock]).failed();
    assert!(o.stderr.contains("owner"), "{o}");
    let o = freezeframe(["tasks", "--json", "--socket", sock, "--owner", &owner]).ok();
    assert_eq!(o.json()[0]["id"], id.as_str(), "{o}");
    let o = freezeframe([
        "tasks",
        "--json",
        "--socket",
        sock,
        "--owner",
        "someone-else",
    ])
    .ok();
    assert_eq!(o.json(), json!([]), "{o}");
    let o = freezeframe([
        "status",
        &id,
        "--json",
        "--socket",
        sock,
        "--owner",
        "someone-else",
    ])
    .failed();
    assert!(o.stderr.contains("not_found"), "{o}");
    let o = run(freezeframe_cmd(["status", &id, "--json", "--socket", sock])
        .env("FREEZEFRAME_OWNER", &owner))
    .ok();
    assert_eq!(o.json()["owner"], owner.as_str(), "{o}");
    // A commit through the service without an owner is refused before it
    // is queued.
    let o = freezeframe([
        "commit",
        "--via-daemon",
        "--socket",
        sock,
        "-o",
        "cli.tar",
        &s.id,
    ])
    .failed();
    assert!(o.stderr.contains("owner"), "{o}");

    // The owner sees it, lists it, cancels it and follows it to its end.
    let listed = srv.get(&format!("/v1/commits?{mine}")).json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["id"], id.as_str());
    let r = srv.delete(&format!("/v1/commits/{id}?{mine}"));
    assert_eq!(r.json()["state"], "cancelled", "{r:?}");
    let events = srv.get(&format!("/v1/commits/{id}/events?{mine}"));
    assert_eq!(events.status, 200);
    assert_eq!(events.lines().last().unwrap()["event"], "end");
    s.assert_running_and_thawed("after the owner's cancel");
}

fn record_files(srv: &Server) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(srv.state.join("tasks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn listed(srv: &Server) -> Vec<String> {
    let mut v: Vec<String> = srv
        .get("/v1/commits")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn finished_records_are_pruned_by_count_at_start_and_on_a_timer() {
    if !root_or_skip("finished_records_are_pruned_by_count_at_start_and_on_a_timer") {
        return;
    }
    let root = runc_root("hard-retain");
    let s = session("hard-retain", &root);
    let mut opts = ServerOptions::new(vec![root.path().join("runc")]);
    opts.extra = vec!["retain_count = 2".into(), r#"retain_for = "1h""#.into()];
    let mut srv = Server::start("hard-retain", &opts);
    let commit = |srv: &Server, n: usize| {
        let id = srv.submit(&json!({
            "session": s.id, "pause": "none", "output": format!("r{n}.tar"),
        }));
        assert_eq!(srv.wait_final(&id, LONG)["state"], "done");
        id
    };

    // As found: every record stayed, in memory and on disk. Now the newest 2.
    let ids: Vec<String> = (0..3).map(|n| commit(&srv, n)).collect();
    let mut newest = ids[1..].to_vec();
    newest.sort();
    // (The task shows done a moment before its record is pruned.)
    let files: Vec<String> = newest.iter().map(|id| format!("{id}.json")).collect();
    assert!(
        wait_until(Duration::from_secs(3), || listed(&srv) == newest
            && record_files(&srv) == files),
        "{:?} {:?}",
        listed(&srv),
        record_files(&srv)
    );

    // Restarted with a short age: what is older goes at start.
    srv.stop(Signal::SIGTERM, Duration::from_secs(30));
    let text = fs::read_to_string(&srv.config).unwrap();
    fs::write(
        &srv.config,
        text.replace(r#"retain_for = "1h""#, r#"retain_for = "2s""#),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    srv.spawn();
    assert!(listed(&srv).is_empty(), "{:?}", listed(&srv));
    assert!(record_files(&srv).is_empty(), "{:?}", record_files(&srv));

    // And while it runs, a record ages out on the timer.
    let id = commit(&srv, 3);
    assert_eq!(listed(&srv), [id.as_str()]);
    assert!(
        wait_until(Duration::from_secs(6), || listed(&srv).is_empty()
            && record_files(&srv).is_empty()),
        "{:?} {:?}",
        listed(&srv),
        record_files(&srv)
    );
    s.assert_running_and_thawed("after the retention test");
}

/// `capsh --drop=CAPS -- -c 'exec "$0" "$@"' BIN ARGS...`: the binary with
/// `caps` gone from its bounding set, so from every set it starts with. Killed
/// after 20 s: a `serve` that starts does not return by itself.
fn without(caps: &str, args: &[&std::ffi::OsStr]) -> Outcome {
    run(Command::new("timeout")
        .arg("20")
        .arg("capsh")
        .arg(format!("--drop={caps}"))
        .args(["--", "-c", r#"exec "$0" "$@""#])
        .arg(bin())
        .args(args)
        .env_remove("FREEZEFRAME_CONFIG"))
}

#[test]
fn serve_and_commit_name_a_missing_capability() {
    if !root_or_skip("serve_and_commit_name_a_missing_capability") {
        return;
    }
    let root = runc_root("hard-caps");
    let s = session("hard-caps", &root);
    let (_r, opts) = no_sessions("hard-caps-srv");
    let srv = Server::start("hard-caps-srv", &opts);
    let config = srv.dir().join("other.toml");
    let text = fs::read_to_string(&srv.config)
        .unwrap()
        .replace("run/api.sock", "run/other.sock");
    fs::write(&config, text).unwrap();

    // As found: nothing was checked; a serve without CAP_DAC_READ_SEARCH
    // started, and its commits failed file by file.
    for (cap, named) in [
        (
            "cap_dac_read_search",
            "CAP_DAC_READ_SEARCH: read every file of the session",
        ),
        (
            "cap_sys_admin",
            "CAP_SYS_ADMIN: read the overlay's trusted.overlay.* attributes",
        ),
    ] {
        let out = without(
            cap,
            &["--config".as_ref(), config.as_os_str(), "serve".as_ref()],
        );
        assert!(!out.success(), "serve without {cap}: {out}");
        assert!(out.stderr.contains(named), "serve without {cap}: {out}");
        assert!(!srv.dir().join("run/other.sock").exists());
    }

    let archive = srv.dir().join("c.tar");
    let root_dir = root.path().join("runc");
    let commit = |caps: &str| {
        without(
            caps,
            &[
                "--config".as_ref(),
                config.as_os_str(),
                "--root".as_ref(),
                root_dir.as_os_str(),
                "commit".as_ref(),
                s.id.as_ref(),
                "-o".as_ref(),
                archive.as_os_str(),
            ],
        )
    };
    let out = commit("cap_sys_ptrace,cap_dac_read_search");
    assert!(!out.success(), "{out}");
    for named in [
        "CAP_SYS_PTRACE: reach the session's mounts and files",
        "CAP_DAC_READ_SEARCH: read every file of the session",
    ] {
        assert!(out.stderr.contains(named), "{out}");
    }
    assert!(!archive.exists());
    s.assert_running_and_thawed("after the refused commit");
    // With what it needs (and nothing more a service keeps) it commits.
    let out = commit("cap_net_admin,cap_mknod,cap_setuid,cap_setgid,cap_kill");
    assert!(out.success(), "{out}");
    assert!(archive.is_file());
}

/// A thread's capability sets, from its status file.
fn cap_sets(status: &str) -> Vec<(String, u64)> {
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.starts_with("Cap")
                .then(|| (k.to_string(), u64::from_str_radix(v.trim(), 16).unwrap()))
        })
        .collect()
}

#[test]
fn the_service_keeps_only_the_capabilities_it_uses() {
    if !root_or_skip("the_service_keeps_only_the_capabilities_it_uses") {
        return;
    }
    let root = runc_root("hard-keep");
    let s = session("hard-keep", &root);
    let srv = Server::start(
        "hard-keep",
        &ServerOptions::new(vec![root.path().join("runc")]),
    );
    // CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_SYS_PTRACE,
    // CAP_SYS_ADMIN, CAP_SYS_NICE.
    let kept: u64 = [1, 2, 3, 19, 21, 23].iter().map(|b| 1u64 << b).sum();
    let check = |when: &str| {
        let tasks: Vec<_> = fs::read_dir(format!("/proc/{}/task", srv.pid()))
            .unwrap()
            .flatten()
            .collect();
        assert!(tasks.len() > 1, "{when}: threads are checked too");
        for t in tasks {
            let status = fs::read_to_string(t.path().join("status")).unwrap();
            for (set, value) in cap_sets(&status) {
                let expected = match set.as_str() {
                    "CapInh" | "CapAmb" => 0,
                    _ => kept,
                };
                // As found: root's full sets.
                assert_eq!(
                    value,
                    expected,
                    "{when}: {set} of thread {:?}",
                    t.file_name()
                );
            }
        }
    };
    check("at start");
    // What it keeps is enough: a commit of a live session goes through.
    let id = srv.submit(&json!({ "session": s.id, "output": "kept.tar" }));
    let t = srv.wait_final(&id, LONG);
    assert_eq!(t["state"], "done", "{t:#}");
    check("after a commit");
    s.assert_running_and_thawed("after a commit by the reduced service");
}
