//! Secrets stay out by default, as root: a home's credential files (`~/.ssh`
//! private keys and `authorized_keys`, `.netrc`, `.git-credentials`,
//! `.aws/credentials`, `.docker/config.json`, `.kube/config`,
//! `.config/gcloud`, `.pypirc`, `.npmrc`, shell histories) were committed into
//! the image with everything else in the home. Now they are left out, each one
//! listed in the report (`walk.secrets_excluded`, the task's
//! `result.secrets_excluded`); `--include-secret PATH` (the request's
//! `include_secrets`) brings exactly that path back, and `[session]
//! secret_paths` extends the set.
//!
//! | case | test |
//! |---|---|
//! | offline commit of a home with every default secret and look-alike decoys | [`every_default_secret_is_left_out_and_listed_and_decoys_are_kept`] |
//! | `--include-secret` brings back exactly one path; a path that is not a secret is refused | [`include_secret_brings_back_exactly_that_path`] |
//! | `[session] secret_paths` adds paths, absolute ones, and `!` exceptions | [`the_config_extends_the_secret_set`] |
//! | a live commit of a running session (two passes), secrets in the home and `/root` | [`a_live_commit_leaves_secrets_out_of_both_passes`] |
//! | the service: `include_secrets` in the request, `secrets_excluded` in the result | [`the_api_lists_secrets_and_takes_include_secrets`] |

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use freezeframe_tests::containers::*;
use freezeframe_tests::server::*;
use freezeframe_tests::*;
use serde_json::json;

/// Every default secret of the issue, relative to the home, as the report
/// lists it (a directory secret as the directory). Each file's content is
/// `SECRET-<path>`, so that the archive's bytes can be searched for it.
const SECRETS: [&str; 14] = [
    ".ssh/id_rsa",
    ".ssh/id_ed25519",
    ".ssh/authorized_keys",
    ".netrc",
    ".git-credentials",
    ".aws/credentials",
    ".docker/config.json",
    ".kube/config",
    ".config/gcloud",
    ".pypirc",
    ".npmrc",
    ".bash_history",
    ".zsh_history",
    ".local/share/fish/fish_history",
];

/// Files inside the secret directories, left out with them.
const INSIDE: [&str; 2] = [
    ".config/gcloud/credentials.db",
    ".config/gcloud/configurations/config_default",
];

/// Look-alikes that are no secret, kept.
const DECOYS: [&str; 8] = [
    ".ssh/id_rsa.pub",
    ".ssh/known_hosts",
    ".ssh/config",
    "notes/.netrc.txt",
    "notes/bash_history",
    ".aws/config",
    ".docker/daemon.json",
    ".config/other/config",
];

/// A home holding [`SECRETS`], [`INSIDE`] and [`DECOYS`].
fn secret_home(home: &Path) {
    for rel in SECRETS.iter().filter(|s| **s != ".config/gcloud") {
        put(home, rel);
    }
    for rel in INSIDE.iter().chain(&DECOYS) {
        put(home, rel);
    }
    chmod(&home.join(".ssh"), 0o700);
}

fn put(root: &Path, rel: &str) {
    let p = root.join(rel);
    mkdirs(p.parent().unwrap());
    write(&p, marker(rel));
    chmod(&p, 0o600);
}

fn marker(rel: &str) -> String {
    format!("SECRET-{rel}\n")
}

fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

/// [`SECRETS`] as a runc session's report lists them: its vfolder at
/// `/home/work/.local` is a mount, left out whole (and listed as one), so the
/// fish history in the home's placeholder dir is not walked.
fn session_secrets() -> BTreeSet<String> {
    let mut s = under("/home/work", &SECRETS);
    assert!(s.remove("/home/work/.local/share/fish/fish_history"));
    s
}

fn under(prefix: &str, rels: &[&str]) -> BTreeSet<String> {
    rels.iter().map(|r| format!("{prefix}/{r}")).collect()
}

/// The report's `walk.secrets_excluded`, as a set; asserts no path is listed
/// twice and none went unlisted.
fn listed(report: &Value) -> BTreeSet<String> {
    let walk = &report["walk"];
    let list: Vec<String> = walk["secrets_excluded"]
        .as_array()
        .unwrap_or_else(|| panic!("no walk.secrets_excluded in {report:#}"))
        .iter()
        .map(|v| v.as_str().expect("a path").to_string())
        .collect();
    let unique = set(list.clone());
    assert_eq!(unique.len(), list.len(), "a secret listed twice: {list:?}");
    assert_eq!(walk["secrets_unlisted"], 0, "{walk:#}");
    unique
}

/// Every path of every layer this commit added, as `/path`.
fn added_paths(archive: &Path, report: &Value, scratch: &Path) -> BTreeSet<String> {
    let layout = extract_archive(archive, scratch);
    let layers = report["layers"].as_array().expect("layers");
    let added = report["frozen"]["layers_added"].as_u64().unwrap_or(1) as usize;
    layers[layers.len() - added..]
        .iter()
        .flat_map(|l| layer_entries(&blob_path(&layout, l["digest"].as_str().expect("digest"))))
        .map(|e| {
            let p = String::from_utf8_lossy(&e.path).into_owned();
            format!("/{}", p.trim_start_matches("./").trim_start_matches('/'))
        })
        .collect()
}

/// Whether `needle` is anywhere in the (uncompressed) archive's bytes.
fn archive_holds(archive: &Path, needle: &str) -> bool {
    let blob = fs::read(archive).unwrap();
    blob.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Asserts that no secret, nor anything inside one, is among `paths`, and
/// that no secret's content is in the archive; `kept` are the exceptions.
fn assert_no_secret(archive: &Path, paths: &BTreeSet<String>, home: &str, kept: &[&str]) {
    for rel in SECRETS.iter().chain(&INSIDE).filter(|r| !kept.contains(r)) {
        let p = format!("{home}/{rel}");
        assert!(
            !paths
                .iter()
                .any(|x| x == &p || x.starts_with(&format!("{p}/"))),
            "{p} is in the layer"
        );
        if *rel != ".config/gcloud" {
            assert!(
                !archive_holds(archive, &marker(rel)),
                "the content of {p} is in the archive"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Offline commits

/// A home with every default secret, and decoys named like them. Before,
/// every one of them was in the layer (the home is committed whole). Now no
/// secret, no file inside a secret directory and no secret's bytes are in the
/// archive, the report lists each secret once, and every decoy is kept.
#[test]
fn every_default_secret_is_left_out_and_listed_and_decoys_are_kept() {
    if !root_or_skip("every_default_secret_is_left_out_and_listed_and_decoys_are_kept") {
        return;
    }
    let dir = tempdir("sec-default");
    let d = dir.path();
    let (upper, home) = (d.join("upper"), d.join("home"));
    mkdirs(&upper.join("etc"));
    write(&upper.join("etc/motd"), "hello\n");
    secret_home(&home);
    let archive = d.join("img.tar");
    let report = OfflineCommit::new(&upper)
        .home(&home)
        .compression("none")
        .output(&archive)
        .commit();

    assert_eq!(listed(&report), under("/home/work", &SECRETS));
    let paths = added_paths(&archive, &report, &d.join("x"));
    assert_no_secret(&archive, &paths, "/home/work", &[]);
    for rel in DECOYS {
        assert!(
            paths.contains(&format!("/home/work/{rel}")),
            "decoy {rel} is missing: {paths:?}"
        );
    }
    // The directories holding secrets stay, with their modes.
    for d in ["/home/work/.ssh", "/home/work/.config", "/home/work/.aws"] {
        assert!(paths.contains(d), "{d} is missing");
    }
    assert!(paths.contains("/etc/motd"));

    // The summary says it in one line.
    let out = OfflineCommit::new(&upper)
        .home(&home)
        .output(d.join("summary.tar"))
        .run()
        .ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("secrets "))
        .unwrap_or_else(|| panic!("no secrets line:\n{}", out.stdout));
    assert!(
        line.contains(&format!("{} left out", SECRETS.len())) && line.contains("/home/work/.netrc"),
        "{line}"
    );
}

/// `--include-secret .ssh/id_rsa` (relative to the home) and
/// `--include-secret /home/work/.config/gcloud` bring back exactly those two,
/// with their content; the rest stays out and listed. A path that is no secret,
/// one inside a secret directory, and one with `..` are refused, naming the flag.
#[test]
fn include_secret_brings_back_exactly_that_path() {
    if !root_or_skip("include_secret_brings_back_exactly_that_path") {
        return;
    }
    let dir = tempdir("sec-include");
    let d = dir.path();
    let (upper, home) = (d.join("upper"), d.join("home"));
    mkdirs(&upper);
    secret_home(&home);
    let base = OfflineCommit::new(&upper)
        .home(&home)
        .compression("none")
        .output(d.join("base.tar"))
        .commit();
    let before = added_paths(&d.join("base.tar"), &base, &d.join("x1"));

    let archive = d.join("img.tar");
    let report = OfflineCommit::new(&upper)
        .home(&home)
        .compression("none")
        .arg("--include-secret")
        .arg(".ssh/id_rsa")
        .arg("--include-secret")
        .arg("/home/work/.config/gcloud/")
        .output(&archive)
        .commit();
    let after = added_paths(&archive, &report, &d.join("x2"));
    let back: BTreeSet<String> = after.difference(&before).cloned().collect();
    assert_eq!(
        back,
        set([
            "/home/work/.ssh/id_rsa",
            "/home/work/.config/gcloud",
            "/home/work/.config/gcloud/credentials.db",
            "/home/work/.config/gcloud/configurations",
            "/home/work/.config/gcloud/configurations/config_default",
        ])
    );
    assert!(before.is_subset(&after));
    assert!(archive_holds(&archive, &marker(".ssh/id_rsa")));
    assert_no_secret(
        &archive,
        &after,
        "/home/work",
        &[".ssh/id_rsa", ".config/gcloud", INSIDE[0], INSIDE[1]],
    );
    let mut expected = under("/home/work", &SECRETS);
    expected.remove("/home/work/.ssh/id_rsa");
    expected.remove("/home/work/.config/gcloud");
    assert_eq!(listed(&report), expected);

    for (path, says) in [
        (
            ".ssh/id_rsa.pub",
            "--include-secret: /home/work/.ssh/id_rsa.pub: not a secret",
        ),
        (
            ".config/gcloud/credentials.db",
            "--include-secret: /home/work/.config/gcloud/credentials.db: inside the secret \
             /home/work/.config/gcloud",
        ),
        (
            "../work/.netrc",
            "--include-secret: /home/work/../work/.netrc: must be normalised",
        ),
    ] {
        let out = OfflineCommit::new(&upper)
            .home(&home)
            .arg("--include-secret")
            .arg(path)
            .output(d.join("refused.tar"))
            .run()
            .failed();
        assert!(out.stderr.contains(says), "{path}: {}", out.stderr);
        assert!(!d.join("refused.tar").exists());
    }
}

/// `[session] secret_paths` adds a path under every home (the home path and
/// `/root`), an absolute path, and with `!` keeps a default one (`.npmrc`).
#[test]
fn the_config_extends_the_secret_set() {
    if !root_or_skip("the_config_extends_the_secret_set") {
        return;
    }
    let dir = tempdir("sec-config");
    let d = dir.path();
    let (upper, home) = (d.join("upper"), d.join("home"));
    for rel in [
        "etc/app/key",
        "etc/app/public",
        "root/.config/app/token",
        "root/.bash_history",
    ] {
        put(&upper, rel);
    }
    for rel in [
        ".config/app/token",
        ".config/app/settings",
        ".npmrc",
        ".netrc",
    ] {
        put(&home, rel);
    }
    let config = d.join("config.toml");
    write(
        &config,
        "[session]\nhome_path = \"/home/u\"\n\
         secret_paths = [\".config/app/token\", \"/etc/app/key\", \"!.npmrc\"]\n",
    );
    let archive = d.join("img.tar");
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(&config)
        .args(
            OfflineCommit::new(&upper)
                .home(&home)
                .compression("none")
                .output(&archive)
                .json()
                .argv(),
        )
        .env_remove("FREEZEFRAME_CONFIG");
    let report = run(&mut cmd).ok().json();
    assert_eq!(
        listed(&report),
        set([
            "/etc/app/key",
            "/home/u/.config/app/token",
            "/home/u/.netrc",
            "/root/.bash_history",
            "/root/.config/app/token",
        ])
    );
    let paths = added_paths(&archive, &report, &d.join("x"));
    for kept in [
        "/etc/app/public",
        "/home/u/.config/app/settings",
        "/home/u/.npmrc",
    ] {
        assert!(paths.contains(kept), "{kept} is missing");
    }
    for gone in [
        "/etc/app/key",
        "/home/u/.config/app/token",
        "/root/.bash_history",
    ] {
        assert!(!paths.contains(gone), "{gone} is in the layer");
    }
}

// ---------------------------------------------------------------------------
// A running session

/// A runc session whose home, `/root` and included vfolder (`.local`) hold
/// secrets, committed live (a first pass while it runs, a second while
/// frozen) while a loop keeps appending to `~/.bash_history`, so the second
/// pass finds it changed. Neither layer holds a secret, and each is listed once.
#[test]
fn a_live_commit_leaves_secrets_out_of_both_passes() {
    if !root_or_skip("a_live_commit_leaves_secrets_out_of_both_passes") {
        return;
    }
    let root = tempdir("sec-live-root");
    let s = RuncSession::start(
        "sec-live",
        |_| {},
        RuncOptions {
            runc_root: Some(root.path().join("runc")),
            ..Default::default()
        },
    );
    secret_home(&s.home);
    put(&s.local, "share/fish/fish_history");
    s.exec(
        "mkdir -p /root/.ssh && echo SECRET-root-key > /root/.ssh/id_rsa && \
         echo SECRET-root-history > /root/.ash_history && echo kept > /root/notes",
    );
    let history = s.home.join(".bash_history");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let history = history.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut f = fs::OpenOptions::new().append(true).open(&history).unwrap();
                f.write_all(b"SECRET-.bash_history\n").unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let archive = s.out.join("live.tar");
    let report = commit([
        s.id.as_str(),
        "--root",
        root.path().join("runc").to_str().unwrap(),
        "--pause",
        "auto",
        "--include-mount",
        "/home/work/.local",
        "--compression",
        "none",
        "--base",
        s.base.reference().to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(report["frozen"]["path"], "auto", "{report:#}");

    // The vfolder at .local is in: its fish history is a secret like the rest.
    let mut expected = under("/home/work", &SECRETS);
    expected.insert("/root/.ssh/id_rsa".into());
    expected.insert("/root/.ash_history".into());
    assert_eq!(listed(&report), expected);
    let paths = added_paths(&archive, &report, &s.scratch("x"));
    assert_no_secret(&archive, &paths, "/home/work", &[]);
    for gone in ["/root/.ssh/id_rsa", "/root/.ash_history"] {
        assert!(!paths.contains(gone), "{gone} is in a layer");
    }
    assert!(!archive_holds(&archive, "SECRET-root-key"));
    assert!(!archive_holds(&archive, "SECRET-root-history"));
    for kept in [
        "/root/notes",
        "/home/work/.ssh/id_rsa.pub",
        "/home/work/notes/.netrc.txt",
    ] {
        assert!(paths.contains(kept), "{kept} is missing");
    }
    s.assert_running_and_thawed("after the commit");
}

// ---------------------------------------------------------------------------
// The service

/// Through `POST /v1/commits`: the task's result lists every secret left out;
/// `include_secrets` brings one back; a path that is no secret is 400
/// `invalid_field` naming `include_secrets[0]`, before anything runs. `commit
/// --via-daemon --include-secret` sends it along.
#[test]
fn the_api_lists_secrets_and_takes_include_secrets() {
    if !root_or_skip("the_api_lists_secrets_and_takes_include_secrets") {
        return;
    }
    let root = tempdir("sec-api-root");
    let runc_root = root.path().join("runc");
    let s = RuncSession::start(
        "sec-api",
        |_| {},
        RuncOptions {
            runc_root: Some(runc_root.clone()),
            ..Default::default()
        },
    );
    secret_home(&s.home);
    let srv = Server::start("sec-api", &ServerOptions::new(vec![runc_root]));

    let r = srv.post(
        "/v1/commits",
        &json!({ "session": s.id, "include_secrets": [".ssh/id_rsa.pub"] }),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let e = r.json();
    assert_eq!(e["code"], "invalid_field", "{e}");
    assert_eq!(e["field"], "include_secrets[0]", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("not a secret"),
        "{e}"
    );

    let id = srv.submit(&json!({
        "session": s.id,
        "output": "api.tar",
        "compression": "none",
        "include_secrets": [".netrc"],
    }));
    let t = srv.wait_final(&id, Duration::from_secs(180));
    assert_eq!(t["state"], "done", "{t:#}");
    let listed: BTreeSet<String> = t["result"]["secrets_excluded"]
        .as_array()
        .unwrap_or_else(|| panic!("no result.secrets_excluded: {t:#}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut expected = session_secrets();
    expected.remove("/home/work/.netrc");
    assert_eq!(listed, expected);
    let archive: PathBuf = srv.save.join("api.tar");
    assert!(archive_holds(&archive, &marker(".netrc")));
    for rel in SECRETS
        .iter()
        .filter(|r| **r != ".netrc" && **r != ".config/gcloud")
    {
        assert!(
            !archive_holds(&archive, &marker(rel)),
            "the content of {rel} is in the archive"
        );
    }
    assert!(archive_holds(&archive, &marker(".ssh/id_rsa.pub")));

    let mut cli = Command::new(bin());
    cli.arg("--config")
        .arg(&srv.config)
        .args(["commit", &s.id, "--root"])
        .arg(root.path().join("runc"))
        .args(["--via-daemon", "-o", "cli.tar", "--compression", "none"])
        .args(["--include-secret", ".ssh/id_ed25519", "--json"])
        .env_remove("FREEZEFRAME_CONFIG");
    let t = run(&mut cli).ok().json();
    assert_eq!(t["state"], "done", "{t:#}");
    let cli_archive = srv.save.join("cli.tar");
    assert!(archive_holds(&cli_archive, &marker(".ssh/id_ed25519")));
    assert!(!archive_holds(&cli_archive, &marker(".ssh/id_rsa")));
    assert!(!archive_holds(&cli_archive, &marker(".netrc")));
    s.assert_running_and_thawed("after the commits");
}
