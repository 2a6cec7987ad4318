//! The commit service end to end, as root: the real `freezeframe serve` on a temp
//! socket, driven over HTTP-over-Unix-socket, committing real runc containers
//! (overlay rootfs, scratch home, vfolders). Archives are read back with umoci and
//! skopeo; sessions are checked thawed by reading their cgroups.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use freezeframe_tests::containers::*;
use freezeframe_tests::server::*;
use freezeframe_tests::*;
use nix::sys::signal::Signal;
use serde_json::json;
use tempfile::TempDir;

const LONG: Duration = Duration::from_secs(180);
/// Enough zeros that a commit runs for many seconds (debug build), in files small
/// enough that cancellation, checked between entries, is prompt.
const SLOW_FILES: usize = 400;
const SLOW_SIZE: u64 = 4 << 20;

/// A private runc state root, and a container started in it.
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

fn runc_root(name: &str) -> TempDir {
    tempdir(&format!("{name}-root"))
}

fn options(root: &TempDir) -> ServerOptions {
    ServerOptions::new(vec![root.path().join("runc")])
}

fn error_of(r: &Response) -> (u16, String, Option<String>) {
    let v = r.json();
    let keys: Vec<&String> = v.as_object().expect("error object").keys().collect();
    assert_eq!(keys, ["code", "field", "message"], "error shape: {v}");
    (
        r.status,
        v["code"].as_str().expect("code").to_string(),
        v["field"].as_str().map(str::to_string),
    )
}

/// The real path of the save location (the server reports real paths).
fn real(p: &Path) -> PathBuf {
    p.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_commit_polled_to_done_unpacks_with_umoci() {
    if !root_or_skip("a_commit_polled_to_done_unpacks_with_umoci") {
        return;
    }
    let root = runc_root("srv-done");
    let s = session("srv-done", &root);
    s.exec("echo made in the session > /etc/made && mkdir -p /opt/new && echo x > /opt/new/file && rm /etc/motd 2>/dev/null; true");
    fs::write(s.home.join("notes.txt"), "home notes\n").unwrap();
    fs::write(s.data.join("vfolder.txt"), "not in the image\n").unwrap();
    let srv = Server::start("srv-done", &options(&root));

    let id = srv.submit(&json!({
        "session": s.id,
        "output": "done.tar",
        "tag": "snap",
        "message": "committed through the API",
        "author": "tests",
        "changes": ["ENV FOO=bar"],
    }));
    let t = srv.wait_final(&id, LONG);
    assert_eq!(t["state"], "done", "{t:#}");
    let archive = real(&srv.save).join("done.tar");
    let r = &t["result"];
    assert_eq!(r["archive"], archive.to_str().unwrap());
    assert_eq!(
        r["size"].as_u64().unwrap(),
        fs::metadata(&archive).unwrap().len()
    );
    assert_eq!(
        format!("sha256:{}", sha256_file(&archive)),
        r["archive_sha256"].as_str().unwrap()
    );
    assert!(archive.with_file_name("done.tar.sha256").is_file());
    assert!(r["manifest_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(
        r["layers"].as_array().unwrap().len() >= 2,
        "base + new: {r}"
    );
    for phase in ["queued", "snapshotting", "freezing", "finalizing"] {
        assert!(t["phases_ms"][phase].is_u64(), "no {phase} timing: {t:#}");
    }
    assert!(t["frozen_ms"].is_u64(), "{t:#}");
    assert!(t["progress"]["files"].as_u64().unwrap() > 0, "{t:#}");
    assert!(t["temp"].is_null() && t["frozen_cgroup"].is_null(), "{t:#}");
    assert!(t["error"].is_null());
    assert!(srv.temp_files().is_empty(), "{:?}", srv.temp_files());

    // Peers read it: umoci unpacks the image, skopeo reads its config.
    let out = tempdir("srv-done-unpack");
    let rootfs = unpack_archive(&archive, "snap", out.path());
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/made")).unwrap(),
        "made in the session\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("opt/new/file")).unwrap(),
        "x\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("home/work/notes.txt")).unwrap(),
        "home notes\n"
    );
    assert!(!rootfs.join("home/work/data/vfolder.txt").exists());
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "the base is in the image"
    );
    let config = skopeo_config(&archive);
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"FOO=bar"), "{config:#}");
    s.assert_running_and_thawed("after a commit through the API");

    // The list, filtered.
    let q = |query: &str| -> Vec<String> {
        let r = srv.get(&format!("/v1/commits{query}"));
        assert_eq!(r.status, 200, "{r:?}");
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(q(""), [id.as_str()]);
    assert_eq!(q(&format!("?session={}&state=done", s.id)), [id.as_str()]);
    assert!(q("?state=failed").is_empty());
    assert!(q("?session=another").is_empty());
    assert_eq!(srv.get("/v1/version").json()["api"], "v1");
    assert_eq!(srv.get("/v1/health").json()["status"], "ok");
}

#[test]
fn the_events_stream_follows_a_commit_to_its_end() {
    if !root_or_skip("the_events_stream_follows_a_commit_to_its_end") {
        return;
    }
    let root = runc_root("srv-events");
    let s = session("srv-events", &root);
    fill_slow(&s.rootfs.join("zeros"), 40, SLOW_SIZE);
    let srv = Server::start("srv-events", &options(&root));
    let id = srv.submit(&json!({ "session": s.id, "pause": "full", "output": "events.tar" }));
    let r = srv.get(&format!("/v1/commits/{id}/events"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let events = r.lines();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"state"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "end").count(), 1);
    assert!(
        kinds.contains(&"progress"),
        "a commit of seconds reports progress: {kinds:?}"
    );
    let end = events.last().unwrap();
    assert_eq!(end["task"]["state"], "done", "{end:#}");
    assert_eq!(end["task"]["id"], id.as_str());
    // States come in order, each once; progress never goes back.
    let order = ["queued", "snapshotting", "freezing", "finalizing", "done"];
    let mut last_state = 0;
    let mut last_written = 0;
    for e in &events {
        assert_eq!(e["id"], id.as_str());
        let i = order
            .iter()
            .position(|s| e["state"] == *s)
            .expect("a known state");
        assert!(i >= last_state, "state went back: {e}");
        if e["event"] == "state" {
            assert!(i > last_state || last_state == 0, "state repeated: {e}");
        }
        last_state = i;
        let w = e["progress"]["bytes_written"].as_u64().unwrap();
        assert!(w >= last_written, "progress went back: {e}");
        last_written = w;
    }
    assert!(events.iter().any(|e| e["state"] == "freezing"), "{kinds:?}");
    // A finished task's stream is just its end.
    let again = srv.get(&format!("/v1/commits/{id}/events")).lines();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["event"], "end");
    let missing = srv.get("/v1/commits/0000000000000000/events");
    assert_eq!(error_of(&missing).1, "not_found");
    s.assert_running_and_thawed("after the events test");
}

#[test]
fn cancel_thaws_removes_the_temp_file_and_the_lock_and_a_second_commit_conflicts() {
    if !root_or_skip(
        "cancel_thaws_removes_the_temp_file_and_the_lock_and_a_second_commit_conflicts",
    ) {
        return;
    }
    let root = runc_root("srv-cancel");
    let s = session("srv-cancel", &root);
    fill_slow(&s.rootfs.join("zeros"), SLOW_FILES, SLOW_SIZE);
    let mut opts = options(&root);
    opts.lock_dir = true;
    let srv = Server::start("srv-cancel", &opts);
    let id = srv.submit(&json!({ "session": s.id, "pause": "full", "output": "cancel.tar" }));
    let lock = srv.lock_dir.join(&s.id);
    assert_eq!(
        fs::read_to_string(&lock).unwrap(),
        format!("{id}\n"),
        "the lock file names the task"
    );
    let t = srv.wait_state(&id, "freezing", LONG);
    assert!(t["frozen_cgroup"]["dir"].is_string(), "{t:#}");
    assert!(
        s.cgroups.wait_v1("FROZEN", Duration::from_secs(10)),
        "the session froze"
    );
    // A named temp archive where the filesystem has no O_TMPFILE; else none.
    let temp = t["temp"].as_str().map(PathBuf::from);
    assert_eq!(srv.temp_files().len(), usize::from(temp.is_some()), "{t:#}");

    // One commit in flight per session.
    let second = srv.post(
        "/v1/commits",
        &json!({ "session": s.id, "output": "other.tar" }),
    );
    assert_eq!(
        error_of(&second),
        (409, "conflict".into(), None),
        "{second:?}"
    );

    let r = srv.delete(&format!("/v1/commits/{id}"));
    assert_eq!(r.status, 200, "{r:?}");
    let t = r.json();
    assert_eq!(t["state"], "cancelled", "{t:#}");
    assert_eq!(t["error"]["code"], "cancelled");
    assert!(t["temp"].is_null() && t["frozen_cgroup"].is_null(), "{t:#}");
    s.assert_running_and_thawed("right after the cancel answered");
    assert!(srv.temp_files().is_empty(), "{:?}", srv.temp_files());
    assert!(temp.is_none_or(|p| !p.exists()));
    assert!(!srv.save.join("cancel.tar").exists());
    assert!(!lock.exists(), "the lock file is removed");

    // Cancelling again is a no-op; an unknown task is 404.
    assert_eq!(srv.delete(&format!("/v1/commits/{id}")).status, 200);
    let r = srv.delete("/v1/commits/0123456789abcdef");
    assert_eq!(error_of(&r), (404, "not_found".into(), None));
    // The session is free again.
    fs::remove_dir_all(s.rootfs.join("zeros")).unwrap();
    let next = srv.submit(&json!({ "session": s.id, "output": "after-cancel.tar" }));
    assert_eq!(srv.wait_final(&next, LONG)["state"], "done");
    s.assert_running_and_thawed("after the commit that followed the cancel");
}

/// What, method, path, body; expected status, code, field.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<Vec<u8>>,
    u16,
    &'static str,
    Option<&'static str>,
);

#[test]
fn bad_requests_get_a_status_a_stable_code_and_the_field() {
    if !root_or_skip("bad_requests_get_a_status_a_stable_code_and_the_field") {
        return;
    }
    let root = runc_root("srv-bad");
    let s = session("srv-bad", &root);
    let mut opts = options(&root);
    // The fixture annotates every container with its base image: a stand-in
    // for the platform's owner label.
    opts.owner_label = Some("org.freezeframe.image".into());
    let srv = Server::start("srv-bad", &opts);
    let outside = srv.dir().join("outside");
    fs::create_dir(&outside).unwrap();
    symlink(&outside, srv.save.join("escape")).unwrap();
    fs::create_dir(srv.save.join("sub")).unwrap();
    symlink("../../outside", srv.save.join("sub/up")).unwrap();
    fs::write(srv.save.join("taken.tar"), "").unwrap();
    let owner = s.base.reference().into_string().unwrap();

    let sid = s.id.as_str();
    let commit = |extra: serde_json::Value| {
        let mut b = json!({ "session": sid });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        serde_json::to_vec(&b).unwrap()
    };
    let big = format!(
        r#"{{"session":"{sid}","message":"{}"}}"#,
        "m".repeat(70 * 1024)
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("unknown field", "POST", "/v1/commits", Some(commit(json!({ "bogus": 1 }))), 400, "unknown_field", Some("bogus")),
        ("wrong type", "POST", "/v1/commits", Some(commit(json!({ "tag": 7 }))), 400, "invalid_field", Some("tag")),
        ("wrong type in a list", "POST", "/v1/commits", Some(commit(json!({ "changes": ["ENV A=1", 2] }))), 400, "invalid_field", Some("changes[1]")),
        ("unknown enum value", "POST", "/v1/commits", Some(commit(json!({ "pause": "sometimes" }))), 400, "invalid_field", Some("pause")),
        ("missing session", "POST", "/v1/commits", Some(br#"{"tag":"x"}"#.to_vec()), 400, "invalid_field", Some("session")),
        ("malformed JSON", "POST", "/v1/commits", Some(br#"{"session": "#.to_vec()), 400, "bad_request", None),
        ("not an object", "POST", "/v1/commits", Some(b"[1, 2]".to_vec()), 400, "bad_request", None),
        ("trailing bytes", "POST", "/v1/commits", Some(commit(json!({})).into_iter().chain(*b"}").collect()), 400, "bad_request", None),
        ("empty body", "POST", "/v1/commits", Some(Vec::new()), 400, "bad_request", None),
        ("oversize body", "POST", "/v1/commits", Some(big.into_bytes()), 400, "body_too_large", None),
        ("bad change", "POST", "/v1/commits", Some(commit(json!({ "changes": ["RUN rm -rf /"] }))), 400, "invalid_field", Some("changes[0]")),
        ("relative include", "POST", "/v1/commits", Some(commit(json!({ "include_mounts": ["home/work/data"] }))), 400, "invalid_field", Some("include_mounts[0]")),
        ("no such mount", "POST", "/v1/commits", Some(commit(json!({ "include_mounts": ["/nowhere"] }))), 400, "invalid_field", Some("include_mounts[0]")),
        ("runtime root elsewhere", "POST", "/v1/commits", Some(commit(json!({ "runtime_root": "/etc" }))), 400, "invalid_field", Some("runtime_root")),
        ("output ..", "POST", "/v1/commits", Some(commit(json!({ "output": "../x.tar" }))), 400, "invalid_field", Some("output")),
        ("output .. inside", "POST", "/v1/commits", Some(commit(json!({ "output": "sub/../../x.tar" }))), 400, "invalid_field", Some("output")),
        ("output absolute", "POST", "/v1/commits", Some(commit(json!({ "output": "/tmp/x.tar" }))), 400, "invalid_field", Some("output")),
        ("output NUL", "POST", "/v1/commits", Some(commit(json!({ "output": "a\u{0}b.tar" }))), 400, "invalid_field", Some("output")),
        ("output through a symlink out", "POST", "/v1/commits", Some(commit(json!({ "output": "escape/x.tar" }))), 400, "invalid_field", Some("output")),
        ("output through a relative symlink out", "POST", "/v1/commits", Some(commit(json!({ "output": "sub/up/x.tar" }))), 400, "invalid_field", Some("output")),
        ("output exists", "POST", "/v1/commits", Some(commit(json!({ "output": "taken.tar" }))), 409, "output_exists", Some("output")),
        ("bad session id", "POST", "/v1/commits", Some(commit(json!({ "session": "../etc" }))), 400, "invalid_field", Some("session")),
        ("unknown session", "POST", "/v1/commits", Some(commit(json!({ "session": "no-such-session" }))), 404, "session_not_found", None),
        ("wrong owner", "POST", "/v1/commits", Some(commit(json!({ "owner": "someone-else" }))), 403, "forbidden", None),
        ("unknown task", "GET", "/v1/commits/0123456789abcdef", None, 404, "not_found", None),
        ("unknown task events", "GET", "/v1/commits/nope/events", None, 404, "not_found", None),
        ("unknown endpoint", "GET", "/v2/commits", None, 404, "not_found", None),
        ("wrong method", "PUT", "/v1/commits", Some(commit(json!({}))), 405, "method_not_allowed", None),
        ("unknown query parameter", "GET", "/v1/commits?colour=red", None, 400, "unknown_field", Some("colour")),
        ("unknown state", "GET", "/v1/commits?state=sleeping", None, 400, "invalid_field", Some("state")),
    ];
    for (what, method, path, body, status, code, field) in cases {
        let r = srv.request(method, path, body.as_deref());
        let got = error_of(&r);
        assert_eq!(
            got,
            (status, code.to_string(), field.map(str::to_string)),
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing was written outside"
    );
    assert!(
        srv.get("/v1/commits").json().as_array().unwrap().is_empty(),
        "no task was made"
    );

    // The right owner is let through.
    let id = srv.submit(&json!({ "session": sid, "owner": owner, "output": "owned.tar" }));
    assert_eq!(srv.wait_final(&id, LONG)["state"], "done");
    s.assert_running_and_thawed("after the bad requests");
}

#[test]
fn a_full_queue_answers_503_and_a_queued_commit_cancels_at_once() {
    if !root_or_skip("a_full_queue_answers_503_and_a_queued_commit_cancels_at_once") {
        return;
    }
    let root = runc_root("srv-queue");
    let (a, b, c) = (
        session("srv-queue-a", &root),
        session("srv-queue-b", &root),
        session("srv-queue-c", &root),
    );
    fill_slow(&a.rootfs.join("zeros"), SLOW_FILES, SLOW_SIZE);
    let mut opts = options(&root);
    opts.max_concurrent = 1;
    opts.queue_size = 1;
    let srv = Server::start("srv-queue", &opts);
    let ida = srv.submit(&json!({ "session": a.id, "pause": "full", "output": "a.tar" }));
    let idb = srv.submit(&json!({ "session": b.id, "output": "b.tar" }));
    assert_eq!(srv.task(&idb)["state"], "queued");
    let health = srv.get("/v1/health").json();
    assert_eq!(
        (health["running"].as_u64(), health["queued"].as_u64()),
        (Some(1), Some(1)),
        "{health}"
    );
    let full = srv.post(
        "/v1/commits",
        &json!({ "session": c.id, "output": "c.tar" }),
    );
    assert_eq!(
        error_of(&full),
        (503, "queue_full".into(), None),
        "{full:?}"
    );

    // A queued commit is cancelled without ever running.
    let r = srv.delete(&format!("/v1/commits/{idb}"));
    assert_eq!(r.status, 200);
    let t = r.json();
    assert_eq!(t["state"], "cancelled", "{t:#}");
    assert!(t["started"].is_null(), "{t:#}");
    // Room again: c waits for a, which is cancelled, then c runs.
    let idc = srv.submit(&json!({ "session": c.id, "output": "c.tar" }));
    assert_eq!(srv.task(&idc)["state"], "queued");
    assert_eq!(
        srv.delete(&format!("/v1/commits/{ida}")).json()["state"],
        "cancelled"
    );
    assert_eq!(srv.wait_final(&idc, LONG)["state"], "done");
    for s in [&a, &b, &c] {
        s.assert_running_and_thawed("after the queue test");
    }
}

#[test]
fn an_output_directory_replaced_by_a_symlink_after_admission_does_not_move_the_archive() {
    let name =
        "an_output_directory_replaced_by_a_symlink_after_admission_does_not_move_the_archive";
    if !root_or_skip(name) {
        return;
    }
    let root = runc_root("srv-swap");
    let (a, b) = (session("srv-swap-a", &root), session("srv-swap-b", &root));
    fill_slow(&a.rootfs.join("zeros"), SLOW_FILES, SLOW_SIZE);
    let mut opts = options(&root);
    opts.max_concurrent = 1;
    let srv = Server::start("srv-swap", &opts);
    // a holds the only slot, so b is admitted (its directory made and
    // resolved) and then waits.
    let ida = srv.submit(&json!({ "session": a.id, "pause": "full", "output": "a.tar" }));
    let idb = srv.submit(&json!({ "session": b.id, "output": "sub/b.tar" }));
    assert_eq!(srv.task(&idb)["state"], "queued");
    assert!(srv.save.join("sub").is_dir());

    // After admission, the directory is moved away and a symlink out of the
    // save location takes its name.
    let outside = tempdir("srv-swap-outside");
    fs::rename(srv.save.join("sub"), srv.save.join("moved")).unwrap();
    symlink(outside.path(), srv.save.join("sub")).unwrap();

    assert_eq!(
        srv.delete(&format!("/v1/commits/{ida}")).json()["state"],
        "cancelled"
    );
    let t = srv.wait_final(&idb, LONG);
    assert_eq!(t["state"], "done", "{t:#}");
    let moved = srv.save.join("moved");
    assert_eq!(
        format!("sha256:{}", sha256_file(&moved.join("b.tar"))),
        t["result"]["archive_sha256"].as_str().unwrap(),
        "{t:#}"
    );
    let sidecar = fs::read_to_string(moved.join("b.tar.sha256")).unwrap();
    assert!(sidecar.ends_with("  b.tar\n"), "{sidecar:?}");
    assert_eq!(
        dir_names(outside.path()),
        Vec::<String>::new(),
        "something was written through the symlink"
    );
    for s in [&a, &b] {
        s.assert_running_and_thawed("after the swapped output");
    }
}

#[test]
fn peers_not_on_the_allow_list_get_403() {
    if !root_or_skip("peers_not_on_the_allow_list_get_403") {
        return;
    }
    let root = runc_root("srv-peer");
    let mut opts = options(&root);
    opts.socket_mode = 0o666;
    opts.allowed_gids = vec![65533];
    let srv = Server::start("srv-peer", &opts);
    let mode = fs::metadata(&srv.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);

    // curl in a child that drops to another uid (and gid) before it connects.
    // A child that drops to another uid (and gid) before it connects: python3's
    // http.client over the Unix socket.
    const GET_HEALTH: &str = "import http.client, socket, sys\n\
        class C(http.client.HTTPConnection):\n\
        \x20   def connect(self):\n\
        \x20       self.sock = socket.socket(socket.AF_UNIX)\n\
        \x20       self.sock.connect(sys.argv[1])\n\
        c = C('localhost')\n\
        c.request('GET', '/v1/health')\n\
        r = c.getresponse()\n\
        print(r.status)\n\
        print(r.read().decode())\n";
    let get_as = |uid: u32, gid: u32| {
        let out = Command::new("python3")
            .args(["-c", GET_HEALTH])
            .arg(&srv.socket)
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run python3");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "python3 as {uid}:{gid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (code, body) = text.split_once('\n').expect("status line");
        (code.to_string(), body.trim().to_string())
    };
    let (code, body) = get_as(65534, 65534);
    assert_eq!(code, "403", "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "forbidden", "{v}");
    assert!(v["message"].as_str().unwrap().contains("uid 65534"), "{v}");
    // An allowed gid is let in; so is root.
    assert_eq!(get_as(65534, 65533).0, "200");
    assert_eq!(get_as(0, 0).0, "200");

    // A second server on the same socket is refused; the first keeps serving.
    let second = run(Command::new(bin())
        .arg("--config")
        .arg(&srv.config)
        .arg("serve"));
    assert!(!second.success(), "{second}");
    assert!(
        second.stderr.contains("another server is listening there"),
        "{second}"
    );
    assert_eq!(srv.get("/v1/health").status, 200);
}

#[test]
fn sigkill_while_frozen_the_guardian_thaws_and_a_restart_marks_the_task_interrupted() {
    if !root_or_skip(
        "sigkill_while_frozen_the_guardian_thaws_and_a_restart_marks_the_task_interrupted",
    ) {
        return;
    }
    let root = runc_root("srv-kill");
    let s = session("srv-kill", &root);
    fill_slow(&s.rootfs.join("zeros"), SLOW_FILES, SLOW_SIZE);
    let mut opts = options(&root);
    opts.lock_dir = true;
    let mut srv = Server::start("srv-kill", &opts);
    let id = srv.submit(&json!({ "session": s.id, "pause": "full", "output": "killed.tar" }));
    let t = srv.wait_state(&id, "freezing", LONG);
    assert!(
        s.cgroups.wait_v1("FROZEN", Duration::from_secs(10)),
        "the session froze"
    );
    let temp = t["temp"].as_str().map(PathBuf::from);

    srv.stop(Signal::SIGKILL, Duration::from_secs(5));
    assert!(
        s.cgroups.wait_v1("THAWED", Duration::from_secs(2)),
        "the guardian did not thaw the session within 2 s of the server's death"
    );
    // A named temp archive outlives the server; an unnamed one went with it.
    assert_eq!(
        srv.temp_files().len(),
        usize::from(temp.is_some()),
        "{:?}",
        srv.temp_files()
    );
    assert!(srv.lock_dir.join(&s.id).exists());

    srv.spawn();
    let t = srv.task(&id);
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(t["error"]["code"], "interrupted", "{t:#}");
    assert!(t["temp"].is_null() && t["frozen_cgroup"].is_null() && t["finished"].is_string());
    assert!(srv.temp_files().is_empty(), "{:?}", srv.temp_files());
    assert!(
        !srv.lock_dir.join(&s.id).exists(),
        "the lock file is removed"
    );
    assert!(!srv.save.join("killed.tar").exists());
    s.assert_running_and_thawed("after the restart");
    assert!(srv.log_text().contains("marked interrupted"));

    // The session can be committed again.
    fs::remove_dir_all(s.rootfs.join("zeros")).unwrap();
    let next = srv.submit(&json!({ "session": s.id, "output": "after-restart.tar" }));
    assert_eq!(srv.wait_final(&next, LONG)["state"], "done");
}

#[test]
fn sigterm_cancels_thaws_and_exits_0() {
    if !root_or_skip("sigterm_cancels_thaws_and_exits_0") {
        return;
    }
    let root = runc_root("srv-term");
    let s = session("srv-term", &root);
    fill_slow(&s.rootfs.join("zeros"), SLOW_FILES, SLOW_SIZE);
    let mut srv = Server::start("srv-term", &options(&root));
    let id = srv.submit(&json!({ "session": s.id, "pause": "full" }));
    srv.wait_state(&id, "freezing", LONG);
    assert!(s.cgroups.wait_v1("FROZEN", Duration::from_secs(10)));
    let status = srv.stop(Signal::SIGTERM, Duration::from_secs(60));
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        srv.log_text()
    );
    s.assert_running_and_thawed("after SIGTERM");
    assert!(srv.temp_files().is_empty(), "{:?}", srv.temp_files());
    assert!(!srv.socket.exists(), "the socket is removed");
    let record: Value = serde_json::from_slice(
        &fs::read(srv.state.join("tasks").join(format!("{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "cancelled", "{record:#}");
}

#[test]
fn sigterm_without_cancel_on_shutdown_lets_the_commit_finish() {
    if !root_or_skip("sigterm_without_cancel_on_shutdown_lets_the_commit_finish") {
        return;
    }
    let root = runc_root("srv-drain");
    let s = session("srv-drain", &root);
    fill_slow(&s.rootfs.join("zeros"), 30, SLOW_SIZE);
    let mut opts = options(&root);
    opts.cancel_on_shutdown = false;
    let mut srv = Server::start("srv-drain", &opts);
    let id = srv.submit(&json!({ "session": s.id, "pause": "full", "output": "drained.tar" }));
    srv.wait_task(&id, LONG, |t| t["state"] != "queued");
    let status = srv.stop(Signal::SIGTERM, LONG);
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        srv.log_text()
    );
    let record: Value = serde_json::from_slice(
        &fs::read(srv.state.join("tasks").join(format!("{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "done", "{record:#}");
    assert!(srv.save.join("drained.tar").is_file());
    s.assert_running_and_thawed("after a drained shutdown");
}

#[test]
fn the_cli_commits_through_the_service_and_reads_its_tasks() {
    if !root_or_skip("the_cli_commits_through_the_service_and_reads_its_tasks") {
        return;
    }
    let root = runc_root("srv-cli");
    let s = session("srv-cli", &root);
    let srv = Server::start("srv-cli", &options(&root));
    let ff = |args: &[&str]| {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&srv.config).args(args);
        c.env_remove("FREEZEFRAME_CONFIG");
        run(&mut c)
    };
    // The socket comes from the config.
    let rootdir = root.path().join("runc");
    let out = ff(&[
        "commit",
        &s.id,
        "--root",
        rootdir.to_str().unwrap(),
        "--via-daemon",
        "-o",
        "cli.tar",
        "--tag",
        "cli",
        "--change",
        "ENV MODE=frozen",
        "--change",
        "WORKDIR /home/work",
        "--json",
    ])
    .ok();
    let t = out.json();
    assert_eq!(t["state"], "done", "{t:#}");
    let id = t["id"].as_str().unwrap();
    assert!(srv.save.join("cli.tar").is_file());
    // The --change instructions went with the request, as skopeo reads them.
    let config = skopeo_config(&srv.save.join("cli.tar"));
    assert_eq!(config["config"]["WorkingDir"], "/home/work", "{config:#}");
    assert!(
        config["config"]["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "MODE=frozen")),
        "{config:#}"
    );

    let sock = srv.socket.to_str().unwrap();
    let status = ff(&["status", id, "--json", "--socket", sock]).ok().json();
    assert_eq!(status["id"], id);
    let human = ff(&["status", id, "--socket", sock]).ok().stdout;
    assert!(
        human.contains("state     done") && human.contains("cli.tar"),
        "{human}"
    );
    let follow = ff(&["status", id, "--follow", "--json", "--socket", sock])
        .ok()
        .json();
    assert_eq!(follow["state"], "done");
    let list = ff(&["tasks", "--json", "--socket", sock, "--state", "done"])
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let table = ff(&["tasks", "--socket", sock]).ok().stdout;
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with(id)),
        "{table}"
    );

    let refused = ff(&["cancel", id, "--socket", sock]);
    assert!(!refused.success());
    assert!(
        refused.stderr.contains("already done (conflict, HTTP 409)"),
        "{refused}"
    );
    let missing = ff(&["status", "0123456789abcdef", "--socket", sock]);
    assert!(
        !missing.success() && missing.stderr.contains("not_found"),
        "{missing}"
    );
    let nobody = ff(&["tasks", "--socket", "/nonexistent/api.sock"]);
    assert!(
        nobody.stderr.contains("is `freezeframe serve` running?"),
        "{nobody}"
    );
    s.assert_running_and_thawed("after the CLI test");
}

#[test]
fn the_python_clients_commit_and_list() {
    if !root_or_skip("the_python_clients_commit_and_list") {
        return;
    }
    let root = runc_root("srv-py");
    let s = session("srv-py", &root);
    let srv = Server::start("srv-py", &options(&root));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/client.py");
    let py = |args: &[&str]| {
        let mut c = Command::new("python3");
        c.arg(&script).arg("--socket").arg(&srv.socket).args(args);
        run(&mut c)
    };
    let out = py(&["commit", &s.id, "--output", "py.tar", "--tag", "py"]).ok();
    let t: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(t["state"], "done", "{t:#}");
    let archive = srv.save.join("py.tar");
    let unpacked = tempdir("srv-py-unpack");
    unpack_archive(&archive, "py", unpacked.path());
    let list: Value = serde_json::from_str(&py(&["list", "--state", "done"]).ok().stdout).unwrap();
    assert_eq!(list[0]["id"], t["id"]);
    // The README's example: it follows the events to the end.
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let api = &readme[readme.find("### The service API").expect("the API section")..];
    let code = api
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a python block in the API section");
    let example = srv.dir().join("readme_example.py");
    fs::write(&example, code).unwrap();
    let out = run(Command::new("python3")
        .arg(&example)
        .arg(&srv.socket)
        .arg(&s.id))
    .ok();
    let t: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(t["state"], "done", "{t:#}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("finalizing ") || l.starts_with("done ")),
        "{out}"
    );
    assert!(Path::new(t["result"]["archive"].as_str().unwrap()).is_file());

    let refused = py(&["commit", "no-such-session"]);
    assert_eq!(refused.status.code(), Some(2), "{refused}");
    assert!(refused.stderr.contains("session_not_found"), "{refused}");
    s.assert_running_and_thawed("after the python client");
}
