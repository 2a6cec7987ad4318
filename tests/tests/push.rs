//! `freezeframe push` against a real registry: Debian's `docker-registry`
//! (distribution 2.8) started by each test on a loopback port, with TLS from a
//! CA the test makes, htpasswd (basic) auth, and its access log read back to see
//! which requests were made. skopeo reads what was pushed.
//!
//! Basic auth is htpasswd; bearer tokens come from a token server of a few
//! lines of Python (`TOKEN_SERVER`) that signs them with `openssl`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use freezeframe_tests::registry::*;
use freezeframe_tests::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Bytes gzip cannot shrink, so a layer is about as large as its files.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).expect("reading the archive")))
}

/// A base image from umoci and a commit over it: two layers, the new one
/// `size` bytes of noise.
fn commit_over_base(dir: &Path, name: &str, size: usize, base_blobs: &str) -> (PathBuf, Value) {
    commit_over_base_as(dir, name, size, base_blobs, "gzip")
}

fn commit_over_base_as(
    dir: &Path,
    name: &str,
    size: usize,
    base_blobs: &str,
    compression: &str,
) -> (PathBuf, Value) {
    let base_dir = dir.join("base");
    if !base_dir.exists() {
        mkdirs(&base_dir);
        BaseImage::build(&base_dir, |r| {
            mkdirs(&r.join("etc"));
            write(&r.join("etc/base.conf"), "from the base\n");
        });
    }
    let base = BaseImage {
        layout: base_dir.join("base-layout"),
        tag: "base".into(),
        rootfs: base_dir.join("lower-bundle/rootfs"),
    };
    let upper = dir.join(format!("upper-{name}"));
    mkdirs(&upper.join("data"));
    write(&upper.join("data/noise"), noise(size, size as u64));
    write(&upper.join("data/name"), name);
    let archive = dir.join(format!("{name}.tar"));
    let report = OfflineCommit::new(&upper)
        .base(base.reference())
        .base_blobs(base_blobs)
        .compression(compression)
        .tag("t")
        .output(&archive)
        .commit();
    (archive, report)
}

fn layer_digests(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect()
}

fn outcomes(push: &Value) -> Vec<String> {
    push["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .map(|b| b["outcome"].as_str().expect("outcome").to_owned())
        .collect()
}

#[test]
fn push_reads_back_with_skopeo_and_a_second_repository_mounts() {
    if !root_or_skip("push_reads_back_with_skopeo_and_a_second_repository_mounts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let (archive, report) = commit_over_base(dir.path(), "img", 300_000, "include");
    let layers = layer_digests(&report);
    assert_eq!(layers.len(), 2, "{report}");

    // Small chunks, so the layer goes in PATCHes and the config in one PUT.
    let creds = Registry::creds();
    let out = registry
        .push(
            &archive,
            "team/app:v1",
            &["--creds", &creds, "--chunk-size", "65536"],
        )
        .ok();
    let digest = out.stdout.trim();
    assert_eq!(digest, report["manifest_digest"], "{out}");
    let first = registry.requests();
    assert!(
        first
            .iter()
            .any(|r| r.starts_with("PATCH /v2/team/app/blobs/uploads/")),
        "{first:#?}"
    );

    let inspected = registry.skopeo_inspect("team/app:v1");
    assert_eq!(inspected["Digest"], report["manifest_digest"]);
    assert_eq!(inspected["Layers"], serde_json::json!(layers));

    // skopeo copies it back into an archive: the same manifest, byte for byte.
    let back = dir.path().join("back.tar");
    tool(
        "skopeo",
        args![
            "--insecure-policy",
            "copy",
            "--src-cert-dir",
            registry.certs_d.join(&registry.host),
            "--src-creds",
            &creds,
            format!("docker://{}", registry.reference("team/app:v1")),
            format!("oci-archive:{}:back", back.display())
        ],
    );
    let copied = tool(
        "skopeo",
        args!["inspect", format!("oci-archive:{}:back", back.display())],
    )
    .json();
    assert_eq!(copied["Digest"], report["manifest_digest"]);
    assert_eq!(copied["Layers"], serde_json::json!(layers));

    // The same archive to another repository, mounting from the first: no blob
    // travels again.
    let before = registry.requests().len();
    let out = registry
        .push(
            &archive,
            "other/app:v2",
            &["--from", "team/app", "--creds", &creds, "--json"],
        )
        .ok();
    let pushed = out.json();
    assert_eq!(pushed["manifest_digest"], report["manifest_digest"]);
    assert_eq!(
        outcomes(&pushed),
        ["mounted", "mounted", "mounted"],
        "{out}"
    );
    assert_eq!(pushed["uploaded_bytes"], 0);
    let second = registry.requests().split_off(before);
    assert!(
        second
            .iter()
            .any(|r| r.starts_with("POST /v2/other/app/blobs/uploads/?mount=")),
        "{second:#?}"
    );
    let uploads: Vec<_> = second
        .iter()
        .filter(|r| r.starts_with("PUT /v2/other/app/blobs/") || r.starts_with("PATCH "))
        .collect();
    assert!(uploads.is_empty(), "blobs were sent again: {uploads:#?}");
    assert_eq!(
        registry.skopeo_inspect("other/app:v2")["Digest"],
        report["manifest_digest"]
    );

    // Once more to the first repository: everything is there already.
    let out = registry
        .push(&archive, "team/app:v1", &["--creds", &creds, "--json"])
        .ok();
    assert_eq!(outcomes(&out.json()), ["existing", "existing", "existing"]);
}

#[test]
fn push_of_an_archive_without_base_blobs_needs_them_in_the_registry() {
    if !root_or_skip("push_of_an_archive_without_base_blobs_needs_them_in_the_registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let creds = Registry::creds();
    let (full, _) = commit_over_base(dir.path(), "full", 1000, "include");
    registry
        .push(&full, "base/app:1", &["--creds", &creds])
        .ok();
    let (thin, report) = commit_over_base(dir.path(), "thin", 2000, "omit");
    let layers = layer_digests(&report);
    let base_layer = &layers[0];

    // Nowhere to take the base layer from.
    let out = registry
        .push(&thin, "fresh/app:1", &["--creds", &creds])
        .failed();
    assert!(out.stderr.contains(base_layer.as_str()), "{out}");
    assert!(out.stderr.contains("is not in"), "{out}");

    // Mounted from where the base was pushed; only the new blobs travel.
    let out = registry
        .push(
            &thin,
            "fresh/app:1",
            &["--creds", &creds, "--from", "base/app", "--json"],
        )
        .ok();
    let pushed = out.json();
    let blobs = pushed["blobs"].as_array().unwrap();
    let base_blob = blobs.iter().find(|b| b["digest"] == *base_layer).unwrap();
    assert_eq!(base_blob["outcome"], "mounted", "{out}");
    let new_blob = blobs.iter().find(|b| b["digest"] == layers[1]).unwrap();
    assert_eq!(new_blob["outcome"], "uploaded", "{out}");
    let inspected = registry.skopeo_inspect("fresh/app:1");
    assert_eq!(inspected["Digest"], report["manifest_digest"]);
    assert_eq!(inspected["Layers"], serde_json::json!(layers));
}

#[test]
fn push_fails_clearly_on_bad_credentials_and_leaves_the_archive() {
    if !root_or_skip("push_fails_clearly_on_bad_credentials_and_leaves_the_archive") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let (archive, report) = commit_over_base(dir.path(), "img", 1000, "include");
    let before = sha256_file(&archive);

    let wrong = format!("{USER}:not-{PASSWORD}");
    let out = registry
        .push(&archive, "app:1", &["--creds", &wrong])
        .failed();
    assert!(out.stderr.contains("401 unauthorized"), "{out}");
    assert!(out.stderr.contains("refused the credentials"), "{out}");
    assert!(!out.stderr.contains(PASSWORD), "{out}");

    let out = registry.push(&archive, "app:1", &[]).failed();
    assert!(out.stderr.contains("401 unauthorized"), "{out}");
    assert!(
        out.stderr.contains("no credentials were given or found"),
        "{out}"
    );

    // Without the test's CA, TLS fails and says where CAs are looked for.
    let mut cmd = freezeframe_cmd(args![
        "push",
        &archive,
        registry.reference("app:1"),
        "--cert-dir",
        dir.path()
    ]);
    let out = run(cmd.env("FREEZEFRAME_REGISTRY_CREDS", Registry::creds())).failed();
    assert!(out.stderr.contains("certificate"), "{out}");

    assert_eq!(sha256_file(&archive), before, "the archive changed");
    assert!(inspect(&archive).success());
    let writes: Vec<String> = registry
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT ") || r.starts_with("PATCH ") || r.starts_with("POST "))
        .collect();
    assert!(writes.is_empty(), "a refused push wrote: {writes:#?}");

    // Credentials from Docker's config.json ($DOCKER_CONFIG) are used.
    let docker_config = dir.path().join("docker-config");
    mkdirs(&docker_config);
    write(
        &docker_config.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            registry.host,
            base64(Registry::creds().as_bytes())
        ),
    );
    let mut cmd = freezeframe_cmd(args![
        "push",
        &archive,
        registry.reference("app:1"),
        "--cert-dir",
        &registry.certs_d
    ]);
    cmd.env("DOCKER_CONFIG", &docker_config)
        .env("REGISTRY_AUTH_FILE", registry.certs_d.join("no-auth-file"))
        .env_remove("FREEZEFRAME_REGISTRY_CREDS");
    let out = run(&mut cmd).ok();
    assert_eq!(out.stdout.trim(), report["manifest_digest"], "{out}");
}

#[test]
fn push_with_bearer_tokens_asks_for_push_and_mount_scopes() {
    if !root_or_skip("push_with_bearer_tokens_asks_for_push_and_mount_scopes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with(Auth::Token);
    let (archive, report) = commit_over_base(dir.path(), "img", 5000, "include");
    let creds = Registry::creds();
    let out = registry
        .push(&archive, "team/app:v1", &["--creds", &creds])
        .ok();
    assert_eq!(out.stdout.trim(), report["manifest_digest"], "{out}");
    assert_eq!(
        registry.skopeo_inspect("team/app:v1")["Digest"],
        report["manifest_digest"]
    );

    let out = registry
        .push(
            &archive,
            "other/app:v1",
            &["--creds", &creds, "--from", "team/app", "--json"],
        )
        .ok();
    assert_eq!(
        outcomes(&out.json()),
        ["mounted", "mounted", "mounted"],
        "{out}"
    );
    let scopes = registry.token_scopes();
    assert!(scopes.contains("repository:team/app:pull,push"), "{scopes}");
    assert!(
        scopes.contains("repository:other/app:pull,push repository:team/app:pull"),
        "{scopes}"
    );

    // A repository the user may pull from but not push to.
    let out = registry
        .push(&archive, "readonly/app:v1", &["--creds", &creds])
        .failed();
    assert!(out.stderr.contains("do not allow this"), "{out}");

    let wrong = format!("{USER}:not-{PASSWORD}");
    let out = registry
        .push(&archive, "third/app:v1", &["--creds", &wrong])
        .failed();
    assert!(out.stderr.contains("getting a token from"), "{out}");
    assert!(out.stderr.contains("401 unauthorized"), "{out}");
    assert!(!out.stderr.contains(PASSWORD), "{out}");
}

#[test]
fn push_resumes_after_the_registry_is_killed_and_fails_cleanly_when_it_stays_down() {
    if !root_or_skip(
        "push_resumes_after_the_registry_is_killed_and_fails_cleanly_when_it_stays_down",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::start();
    let creds = Registry::creds();
    // 48 MiB, uncompressed, in 256 KiB chunks: about 190 PATCHes.
    let (archive, report) = commit_over_base_as(dir.path(), "big", 48 << 20, "include", "none");
    let layers = layer_digests(&report);
    let before = sha256_file(&archive);

    let out_path = dir.path().join("push.out");
    let err_path = dir.path().join("push.err");
    let mut push = registry
        .push_cmd(
            &archive,
            "resumed/app:1",
            &[
                "--creds",
                &creds,
                "--chunk-size",
                "262144",
                "--retries",
                "6",
                "--retry-delay",
                "200ms",
                "--json",
            ],
        )
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("starting freezeframe push");
    let patch = "PATCH /v2/resumed/app/blobs/uploads/";
    let start = Instant::now();
    while registry
        .requests_now()
        .iter()
        .filter(|r| r.starts_with(patch))
        .count()
        < 5
    {
        if let Ok(Some(status)) = push.try_wait() {
            panic!(
                "the push ended ({status}) before the registry could be killed:\n{}{}",
                read(&out_path),
                read(&err_path)
            );
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no PATCH seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Down long enough for the push's next request to fail.
    registry.restart(Duration::from_millis(500));
    let status = wait_or_kill(&mut push, "freezeframe push");
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    assert!(status.success(), "{stdout}\n{stderr}");
    let pushed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        pushed["manifest_digest"], report["manifest_digest"],
        "{stderr}"
    );

    // The restarted registry was asked where the upload was, and got the rest:
    // from there when the session survived (the kill fell between requests),
    // else in a new session (distribution drops one whose size is not what
    // its last answer said, as after a PATCH cut short).
    let after = registry.requests();
    assert!(
        after
            .iter()
            .any(|r| r.starts_with("GET /v2/resumed/app/blobs/uploads/")),
        "{after:#?}"
    );
    assert!(after.iter().any(|r| r.starts_with(patch)), "{after:#?}");
    let started_over = after
        .iter()
        .any(|r| r.starts_with("POST /v2/resumed/app/blobs/uploads/"));
    eprintln!(
        "after the restart the upload {}",
        if started_over {
            "started over"
        } else {
            "resumed"
        }
    );
    let inspected = registry.skopeo_inspect("resumed/app:1");
    assert_eq!(inspected["Digest"], report["manifest_digest"]);
    assert_eq!(inspected["Layers"], serde_json::json!(layers));

    // A registry that stays down: the push gives up after its retries.
    registry.kill();
    let started = Instant::now();
    let out = registry
        .push(
            &archive,
            "down/app:1",
            &[
                "--creds",
                &creds,
                "--retries",
                "2",
                "--retry-delay",
                "100ms",
            ],
        )
        .failed();
    assert!(out.stderr.contains("failed"), "{out}");
    assert!(out.stderr.contains(&registry.host), "{out}");
    assert!(started.elapsed() < Duration::from_secs(60), "{out}");
    assert_eq!(sha256_file(&archive), before, "the archive changed");
}

#[test]
fn push_speaks_plain_http_only_to_a_registry_marked_insecure() {
    if !root_or_skip("push_speaks_plain_http_only_to_a_registry_marked_insecure") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with(Auth::PlainHttp);
    let (archive, report) = commit_over_base(dir.path(), "img", 1000, "include");

    // TLS is spoken unless the registry is marked insecure: it fails here.
    let out = registry
        .push(&archive, "app:1", &["--retries", "0"])
        .failed();
    assert!(
        out.stderr
            .contains(&format!("https://{}/v2/", registry.host)),
        "{out}"
    );

    let out = registry
        .push(&archive, "app:1", &["--insecure", "--json"])
        .ok();
    let pushed = out.json();
    assert_eq!(pushed["manifest_digest"], report["manifest_digest"]);
    assert_eq!(
        outcomes(&pushed),
        ["uploaded", "uploaded", "uploaded"],
        "{out}"
    );
    let inspected = tool(
        "skopeo",
        args![
            "inspect",
            "--tls-verify=false",
            format!("docker://{}", registry.reference("app:1"))
        ],
    )
    .json();
    assert_eq!(inspected["Digest"], report["manifest_digest"]);
}

/// Standard base64, padded.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn commit_push_sends_a_running_session_and_leaves_no_archive_without_output() {
    if !root_or_skip("commit_push_sends_a_running_session_and_leaves_no_archive_without_output") {
        return;
    }
    use freezeframe_tests::containers::{populate_busybox, RuncOptions, RuncSession};
    let registry = Registry::start();
    let s = RuncSession::start("push-session", populate_busybox, RuncOptions::default());
    s.exec("echo changed > /etc/pushed");
    let save = s.scratch("save");
    let config = s.scratch("config").join("config.toml");
    fs::write(
        &config,
        format!("[storage]\nsave_location = {:?}\n", save.to_str().unwrap()),
    )
    .unwrap();
    let reference = registry.reference("session:live");
    let commit = |extra: &[&str]| {
        let mut a = args!["--config", &config, "commit"];
        a.extend(s.target());
        a.extend(args![
            "--push",
            &reference,
            "--cert-dir",
            &registry.certs_d,
            "--json"
        ]);
        a.extend(extra.iter().map(Into::into));
        let mut cmd = Command::new(bin());
        cmd.args(a)
            .env_remove("FREEZEFRAME_CONFIG")
            .env("DOCKER_CONFIG", registry.certs_d.join("no-docker-config"))
            .env("REGISTRY_AUTH_FILE", registry.certs_d.join("no-auth-file"))
            .env_remove("FREEZEFRAME_REGISTRY_CREDS");
        run(&mut cmd)
    };

    // A wrong password: the commit is kept, and the error says where.
    let o = commit(&["--creds", "pusher:wrong"]).failed();
    assert!(o.stderr.contains("401"), "{o}");
    assert!(o.stderr.contains("the commit is kept in"), "{o}");
    assert!(!o.stderr.contains("wrong"), "the password is shown:\n{o}");
    let kept: Vec<_> = fs::read_dir(&save).unwrap().flatten().collect();
    assert!(
        kept.iter()
            .any(|e| e.path().extension().is_some_and(|x| x == "tar")),
        "no archive kept after a failed push: {kept:?}"
    );
    for e in kept {
        fs::remove_file(e.path()).unwrap();
    }
    s.assert_running_and_thawed("after a failed push");

    // Pushed with no --output: nothing is left in the save location.
    let report = commit(&["--creds", &Registry::creds()]).ok().json();
    let pushed = report["push"]["manifest_digest"]
        .as_str()
        .expect("push digest");
    assert_eq!(
        registry.skopeo_inspect("session:live")["Digest"],
        pushed,
        "{report}"
    );
    assert_eq!(
        report["manifest_digest"], pushed,
        "the manifest went as written"
    );
    let left: Vec<_> = fs::read_dir(&save)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    s.assert_running_and_thawed("after the push");
}

/// `POST /v1/commits` with `push`: a wrong password fails the task with
/// `push_failed` and keeps the archive; the right one passes through `pushing`
/// to `done`. The password is never in the task records, events or log.
#[test]
fn api_commit_with_push_passes_through_pushing_and_keeps_credentials_off_disk() {
    if !root_or_skip("api_commit_with_push_passes_through_pushing_and_keeps_credentials_off_disk") {
        return;
    }
    use freezeframe_tests::containers::{populate_busybox, RuncOptions, RuncSession};
    use freezeframe_tests::server::{Server, ServerOptions};
    use serde_json::json;
    const WRONG: &str = "wrong-api-secret";
    const LONG: Duration = Duration::from_secs(180);

    let registry = Registry::start();
    let root = tempdir("api-push-root");
    let runc_root = root.path().join("runc");
    let s = RuncSession::start(
        "api-push",
        populate_busybox,
        RuncOptions {
            runc_root: Some(runc_root.clone()),
            ..Default::default()
        },
    );
    s.exec("echo via the api > /etc/pushed");
    let mut srv = Server::start("api-push", &ServerOptions::new(vec![runc_root]));
    // The registry's CA, as the service's config names it.
    srv.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    // Credentials for a push that brings none: the configured auth file.
    let auth_file = root.path().join("auth.json");
    write(
        &auth_file,
        json!({ "auths": { registry.host.clone(): {
            "auth": base64(Registry::creds().as_bytes()) } } })
        .to_string(),
    );
    let mut config = read(&srv.config);
    config.push_str(&format!(
        "\n[registry]\ncert_dirs = [{:?}]\nauth_file = {:?}\n",
        registry.certs_d.display().to_string(),
        auth_file.display().to_string()
    ));
    write(&srv.config, config);
    srv.spawn();
    let save = srv.save.canonicalize().unwrap();
    let on_disk = |srv: &Server| -> String {
        let mut all = srv.log_text();
        for e in fs::read_dir(srv.state.join("tasks")).unwrap().flatten() {
            all.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
        }
        all
    };
    let follow = |id: &str| -> Vec<Value> { srv.get(&format!("/v1/commits/{id}/events")).lines() };

    // A bad reference is refused at admission, naming the field.
    let r = srv.post(
        "/v1/commits",
        &json!({ "session": s.id, "push": { "ref": "Not A Reference" } }),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["field"], "push.ref", "{r:?}");

    // A wrong password: failed, push_failed, 401 said, the archive kept.
    let bad = srv.submit(&json!({
        "session": s.id,
        "output": "bad.tar",
        "push": {
            "ref": registry.reference("api/app:bad"),
            "credentials": { "username": USER, "password": WRONG },
        },
    }));
    let events = follow(&bad);
    let t = &events.last().expect("an end event")["task"];
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(t["error"]["code"], "push_failed", "{t:#}");
    let message = t["error"]["message"].as_str().unwrap();
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("the archive is kept"), "{message}");
    let kept = save.join("bad.tar");
    assert!(kept.is_file(), "the archive is gone: {t:#}");
    assert_eq!(t["result"]["archive"], kept.to_str().unwrap(), "{t:#}");
    assert!(
        events.iter().any(|e| e["state"] == "pushing"),
        "no pushing state: {events:?}"
    );
    let stream = serde_json::to_string(&events).unwrap();
    assert!(!stream.contains(WRONG), "the password is in the events");
    assert!(!on_disk(&srv).contains(WRONG), "the password is on disk");
    s.assert_running_and_thawed("after a failed push");

    // The right password: through pushing to done; skopeo reads the digest.
    let id = srv.submit(&json!({
        "session": s.id,
        "output": "good.tar",
        "push": {
            "ref": registry.reference("api/app:v1"),
            "credentials": { "username": USER, "password": PASSWORD },
        },
    }));
    let events = follow(&id);
    let t = srv.wait_final(&id, LONG);
    assert_eq!(t["state"], "done", "{t:#}");
    let order = [
        "queued",
        "snapshotting",
        "freezing",
        "finalizing",
        "pushing",
        "done",
    ];
    let mut last = 0;
    for e in &events {
        let i = order
            .iter()
            .position(|s| e["state"] == *s)
            .unwrap_or_else(|| panic!("a known state: {e}"));
        assert!(i >= last, "state went back: {e}");
        last = i;
    }
    assert!(events.iter().any(|e| e["state"] == "pushing"), "{events:?}");
    assert!(t["phases_ms"]["pushing"].is_u64(), "{t:#}");
    let push = &t["progress"]["push"];
    assert!(push["bytes_sent"].as_u64().unwrap() > 0, "{t:#}");
    assert_eq!(push["blobs_done"], push["blobs_total"], "{t:#}");
    let digest = t["result"]["push"]["manifest_digest"]
        .as_str()
        .expect("the push's digest");
    assert_eq!(
        registry.skopeo_inspect("api/app:v1")["Digest"],
        digest,
        "{t:#}"
    );
    assert!(save.join("good.tar").is_file(), "the archive stays");

    // No credentials in the request: the configured auth file's.
    let id = srv.submit(&json!({
        "session": s.id,
        "output": "configured.tar",
        "push": { "ref": registry.reference("api/app:configured") },
    }));
    let t = srv.wait_final(&id, LONG);
    assert_eq!(t["state"], "done", "{t:#}");
    assert_eq!(
        registry.skopeo_inspect("api/app:configured")["Digest"],
        t["result"]["push"]["manifest_digest"],
        "{t:#}"
    );

    // The command line sends the push, with --creds as its credentials.
    let mut c = Command::new(bin());
    c.arg("--config")
        .arg(&srv.config)
        .args(["commit", &s.id, "--via-daemon", "-o", "cli.tar", "--json"])
        .arg("--push")
        .arg(registry.reference("api/app:cli"))
        .arg("--creds")
        .arg(Registry::creds())
        .env_remove("FREEZEFRAME_CONFIG")
        .env_remove("FREEZEFRAME_REGISTRY_CREDS");
    let t = run(&mut c).ok().json();
    assert_eq!(t["state"], "done", "{t:#}");
    assert_eq!(
        registry.skopeo_inspect("api/app:cli")["Digest"],
        t["result"]["push"]["manifest_digest"],
        "{t:#}"
    );
    let all = on_disk(&srv);
    assert!(
        !all.contains(PASSWORD) && !all.contains(WRONG),
        "a password is on disk"
    );
    s.assert_running_and_thawed("after the push");
}

/// Cancelling a task while it pushes (to a registry that went away, so the
/// push waits between repeats) ends it `cancelled`, the archive kept.
#[test]
fn api_cancel_while_pushing_ends_cancelled_and_keeps_the_archive() {
    if !root_or_skip("api_cancel_while_pushing_ends_cancelled_and_keeps_the_archive") {
        return;
    }
    use freezeframe_tests::containers::{populate_busybox, RuncOptions, RuncSession};
    use freezeframe_tests::server::{Server, ServerOptions};
    use serde_json::json;

    let mut registry = Registry::start();
    let reference = registry.reference("api/app:cancel");
    registry.kill();
    let root = tempdir("api-push-cancel-root");
    let runc_root = root.path().join("runc");
    let s = RuncSession::start(
        "api-push-cancel",
        populate_busybox,
        RuncOptions {
            runc_root: Some(runc_root.clone()),
            ..Default::default()
        },
    );
    let srv = Server::start("api-push-cancel", &ServerOptions::new(vec![runc_root]));
    let id = srv.submit(&json!({
        "session": s.id,
        "output": "cancel.tar",
        "push": { "ref": reference },
    }));
    srv.wait_state(&id, "pushing", Duration::from_secs(120));
    let r = srv.delete(&format!("/v1/commits/{id}"));
    assert!(r.status < 300, "{r:?}");
    let t = srv.wait_final(&id, Duration::from_secs(60));
    assert_eq!(t["state"], "cancelled", "{t:#}");
    assert_eq!(t["error"]["code"], "cancelled", "{t:#}");
    let kept = srv.save.canonicalize().unwrap().join("cancel.tar");
    assert!(kept.is_file(), "the archive is gone: {t:#}");
    assert_eq!(t["result"]["archive"], kept.to_str().unwrap(), "{t:#}");
    s.assert_running_and_thawed("after a cancelled push");
}
