//! `commit --push` of a Docker session whose base was pulled from the
//! registry pushed to: Debian's `docker-registry` on a loopback port with TLS
//! and htpasswd auth, and a private `dockerd` that trusts its CA. Docker keeps
//! its base layers unpacked and records the registry blobs it pulled them as
//! (`distribution/v2metadata-by-diffid`); with `--base-blobs omit` the push
//! refers to those blobs, found with a `HEAD` or mounted from the base's
//! repository, and uploads only the new layer, the config and the manifest.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use freezeframe_tests::docker::*;
use freezeframe_tests::registry::*;
use freezeframe_tests::*;
use serde_json::Value;

/// The registry's CA where dockerd looks for it
/// (`/etc/docker/certs.d/HOST:PORT/ca.crt`), removed when dropped.
struct TrustedByDocker {
    dir: PathBuf,
}

impl TrustedByDocker {
    fn new(registry: &Registry) -> TrustedByDocker {
        let dir = PathBuf::from("/etc/docker/certs.d").join(&registry.host);
        mkdirs(&dir);
        fs::copy(
            registry.certs_d.join(&registry.host).join("ca.crt"),
            dir.join("ca.crt"),
        )
        .expect("installing the registry's CA for dockerd");
        TrustedByDocker { dir }
    }
}

impl Drop for TrustedByDocker {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The second layer of the base, and a command that keeps a session running.
const DOCKERFILE: &str = "\
RUN echo layer2 > /etc/layer2
CMD [\"sleep\", \"100000\"]";

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn commit_push_of_a_docker_session_refers_to_the_base_blobs_the_registry_has() {
    if !root_or_skip("commit_push_of_a_docker_session_refers_to_the_base_blobs_the_registry_has") {
        return;
    }
    let registry = Registry::start();
    let _trust = TrustedByDocker::new(&registry);
    let d = Dockerd::start("push-docker");
    let local = format!(
        "{}:1",
        freezeframe_tests::containers::unique_id("ffpushbase").to_lowercase()
    );
    d.build_base(&local, |_| {}, DOCKERFILE);

    // The base goes to the registry, leaves the daemon, and comes back pulled.
    let base_ref = registry.reference("base:1");
    d.docker(args!["login", "-u", USER, "-p", PASSWORD, &registry.host]);
    d.docker(args!["tag", &local, &base_ref]);
    d.docker(args!["push", &base_ref]);
    d.docker(args!["rmi", &base_ref, &local, format!("{local}-import")]);
    d.docker(args!["pull", &base_ref]);
    let base_layers = strings(&registry.skopeo_inspect("base:1")["Layers"]);
    assert_eq!(base_layers.len(), 2, "the base has two layers");

    let name = freezeframe_tests::containers::unique_id("pushsess").to_lowercase();
    let c = d.run(&name, Vec::new(), &base_ref, &[]);
    c.exec("echo changed > /etc/pushed");

    // Left out of the archive, or rebuilt and recompressed into it: either
    // way the push refers to the registry's copies of the base.
    for (tag, omit) in [("app:1", true), ("app-included:1", false)] {
        let before = registry.requests().len();
        let archive = d.scratch("out").join(format!("pushed-{omit}.tar"));
        let reference = registry.reference(tag);
        let mut cmd = d.freezeframe_cmd(args![
            "commit",
            &name,
            "--push",
            &reference,
            "--base-blobs",
            if omit { "omit" } else { "include" },
            "--cert-dir",
            &registry.certs_d,
            "--creds",
            Registry::creds(),
            "-o",
            &archive,
            "--json"
        ]);
        cmd.env("DOCKER_CONFIG", registry.certs_d.join("no-docker-config"))
            .env("REGISTRY_AUTH_FILE", registry.certs_d.join("no-auth-file"))
            .env_remove("FREEZEFRAME_REGISTRY_CREDS");
        let report = run(&mut cmd).ok().json();
        c.assert_running_and_thawed("after the commit and push");

        // The pushed image lists the base's registry blobs first.
        let pushed = registry.skopeo_inspect(tag);
        assert_eq!(
            pushed["Digest"], report["push"]["manifest_digest"],
            "{report}"
        );
        let layers = strings(&pushed["Layers"]);
        assert!(layers.len() > base_layers.len(), "no new layer: {pushed}");
        assert_eq!(
            layers[..base_layers.len()],
            base_layers[..],
            "the base's registry blobs come first"
        );
        let outcomes: Vec<&str> = report["push"]["blobs"]
            .as_array()
            .expect("push blobs")
            .iter()
            .map(|b| b["outcome"].as_str().unwrap())
            .collect();
        assert!(
            outcomes[1..=base_layers.len()]
                .iter()
                .all(|o| *o == "mounted" || *o == "existing"),
            "base blobs uploaded: {report}"
        );

        // The access log: nothing of the base uploaded, only the new layer(s)
        // and the config.
        let requests = registry.requests();
        let during = &requests[before..];
        let uploaded: BTreeSet<String> = during
            .iter()
            .filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/"))
            .filter_map(|r| {
                let digest = r.split("digest=").nth(1)?;
                Some(digest.split('&').next()?.replace("%3A", ":"))
            })
            .collect();
        let expected: BTreeSet<String> = layers[base_layers.len()..]
            .iter()
            .cloned()
            .chain([report["config_digest"]
                .as_str()
                .expect("config_digest")
                .to_owned()])
            .collect();
        assert_eq!(
            uploaded,
            expected,
            "only the new layer(s) and the config are uploaded:\n{}",
            during.join("\n")
        );
        for digest in &base_layers {
            assert!(
                !during
                    .iter()
                    .any(|r| (r.starts_with("PUT ") || r.starts_with("PATCH "))
                        && r.replace("%3A", ":").contains(digest.as_str())),
                "base blob {digest} uploaded:\n{}",
                during.join("\n")
            );
        }
        let manifests = during
            .iter()
            .filter(|r| r.starts_with("PUT ") && r.contains("/manifests/"))
            .count();
        assert_eq!(manifests, 1, "{}", during.join("\n"));

        // Docker pulls it and runs it with the session's change.
        d.docker(args!["pull", &reference]);
        let out = d.docker(args!["run", "--rm", &reference, "cat", "/etc/pushed"]);
        assert_eq!(out.stdout.trim(), "changed", "{out}");
    }
}
