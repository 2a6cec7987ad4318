//! One archive, every loader: a committed image (a base of its own plus a new
//! layer, tagged) is one file that `docker load` (Docker 20.10, which reads
//! only the docker-archive format), `podman load`, `skopeo` (as an OCI archive
//! and as a docker archive), `umoci unpack` and `ctr images import` all read,
//! because it holds a docker-archive `manifest.json` (and `repositories`) next
//! to the OCI layout, pointing at the same blobs, as Docker 25's `docker save`
//! writes it. Each loader's view of the layers is checked against the report.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use freezeframe_tests::containers::*;
use freezeframe_tests::docker::Dockerd;
use freezeframe_tests::*;

/// A committed, tagged archive in a temp dir of its own.
struct Built {
    archive: PathBuf,
    /// `localhost/NAME:v1`.
    tag: String,
    /// NAME: unique to this test process and call.
    name: String,
    report: Value,
    dir: tempfile::TempDir,
}

impl Built {
    fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        mkdirs(&p);
        p
    }

    fn diff_ids(&self) -> Vec<String> {
        self.layers().iter().map(|l| l.0.clone()).collect()
    }

    fn digests(&self) -> Vec<String> {
        self.layers().iter().map(|l| l.1.clone()).collect()
    }

    /// (diff_id, digest) of each layer, base first.
    fn layers(&self) -> Vec<(String, String)> {
        self.report["layers"]
            .as_array()
            .unwrap_or_else(|| panic!("no layers in the report: {}", self.report))
            .iter()
            .map(|l| {
                (
                    l["diff_id"].as_str().expect("diff_id").to_string(),
                    l["digest"].as_str().expect("digest").to_string(),
                )
            })
            .collect()
    }

    fn config_digest(&self) -> &str {
        self.report["config_digest"]
            .as_str()
            .expect("config_digest")
    }
}

/// What a container of the image prints, and must.
const CHECK_SCRIPT: &str = "cat /opt/base/base.txt /opt/app/app.txt";
const CHECK_OUTPUT: &str = "base layer\napp layer\n";

/// A base of one layer (busybox and a file), then a commit on it that adds
/// another, tagged `localhost/NAME:v1` unless `tagged` is false.
fn committed_archive(prefix: &str, tagged: bool) -> Built {
    let dir = tempdir(prefix);
    let name = unique_id("load");
    let root = dir.path().join("base-rootfs");
    populate_busybox(&root);
    mkdirs(&root.join("opt/base"));
    write(&root.join("opt/base/base.txt"), "base layer\n");
    let base = dir.path().join("base.tar");
    OfflineCommit::new(&root)
        .tag("base")
        .change(r#"CMD ["sleep", "100000"]"#)
        .output(&base)
        .commit();
    let upper = dir.path().join("upper");
    mkdirs(&upper.join("opt/app"));
    write(&upper.join("opt/app/app.txt"), "app layer\n");
    let archive = dir.path().join("image.tar");
    let tag = format!("localhost/{name}:v1");
    let mut commit = OfflineCommit::new(&upper)
        .base(oci_archive_ref(&base))
        .output(&archive);
    if tagged {
        commit = commit.tag(&tag);
    }
    let report = commit.commit();
    Built {
        archive,
        tag,
        name,
        report,
        dir,
    }
}

/// Every member of a tar file: its name and, for small JSON files, its text.
fn members(archive: &Path) -> BTreeMap<String, Option<String>> {
    let f = fs::File::open(archive).unwrap_or_else(|e| panic!("open {}: {e}", archive.display()));
    let mut ar = tar::Archive::new(f);
    let mut out = BTreeMap::new();
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let text = if !name.starts_with("blobs/") && e.size() < 1 << 20 {
            let mut s = String::new();
            e.read_to_string(&mut s).ok().map(|_| s)
        } else {
            None
        };
        out.insert(name, text);
    }
    out
}

fn json_member(members: &BTreeMap<String, Option<String>>, name: &str) -> Value {
    let text = members
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in the archive: {:?}", members.keys()))
        .as_deref()
        .unwrap_or_else(|| panic!("{name} is not text"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {text}"))
}

/// `blobs/sha256/HEX` of a digest: where both layouts name a blob.
fn blob_member(digest: &str) -> String {
    format!(
        "blobs/sha256/{}",
        digest.strip_prefix("sha256:").expect("sha256 digest")
    )
}

#[test]
fn the_archive_holds_a_docker_archive_manifest_for_the_oci_layouts_blobs() {
    let b = committed_archive("loaders-layout", true);
    let m = members(&b.archive);
    for name in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(m.contains_key(name), "no {name} in {:?}", m.keys());
    }
    let manifest = json_member(&m, "manifest.json");
    let entries = manifest.as_array().expect("manifest.json is an array");
    assert_eq!(entries.len(), 1, "{manifest}");
    let e = &entries[0];
    assert_eq!(e["Config"], blob_member(b.config_digest()).as_str());
    let layers: Vec<String> = b.digests().iter().map(|d| blob_member(d)).collect();
    assert_eq!(e["Layers"], serde_json::json!(layers));
    assert_eq!(e["RepoTags"], serde_json::json!([b.tag]));
    for path in layers.iter().chain([&blob_member(b.config_digest())]) {
        assert!(
            m.contains_key(path),
            "manifest.json names {path}, not in the archive"
        );
    }
    let repositories = json_member(&m, "repositories");
    let repo = format!("localhost/{}", b.name);
    assert!(
        repositories[&repo]["v1"].is_string(),
        "repositories has no {repo}:v1: {repositories}"
    );

    // Untagged: still a manifest.json, without tags, and no repositories.
    let u = committed_archive("loaders-untagged", false);
    let m = members(&u.archive);
    let manifest = json_member(&m, "manifest.json");
    let tags = &manifest[0]["RepoTags"];
    assert!(
        tags.is_null() || tags.as_array().is_some_and(Vec::is_empty),
        "RepoTags of an untagged archive: {tags}"
    );
    assert!(
        !m.contains_key("repositories"),
        "an untagged archive has repositories"
    );
}

#[test]
fn skopeo_reads_it_as_an_oci_archive_and_as_a_docker_archive() {
    let b = committed_archive("loaders-skopeo", true);
    let oci = skopeo_inspect(&b.archive);
    assert_eq!(oci["Digest"], b.report["manifest_digest"]);
    assert_eq!(oci["Layers"], serde_json::json!(b.digests()));

    let mut docker = OsString::from("docker-archive:");
    docker.push(&b.archive);
    let config = tool("skopeo", args!["inspect", "--config", &docker]).json();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(b.diff_ids()),
        "the diffIDs skopeo reads through manifest.json"
    );
    // By its tag, as RepoTags names it.
    let mut by_tag = docker.clone();
    by_tag.push(":");
    by_tag.push(&b.tag);
    tool("skopeo", args!["inspect", "--config", &by_tag]);

    // Copies check every blob: by digest from the OCI side; from the docker
    // side each layer is decompressed and checked against its diffID.
    let out = skopeo_copy_to_dir(&b.archive, &b.scratch("from-oci"));
    assert!(out.success(), "{out}");
    let mut dest = OsString::from("dir:");
    dest.push(b.scratch("from-docker"));
    tool(
        "skopeo",
        args!["--insecure-policy", "copy", "--quiet", &docker, dest],
    );
}

#[test]
fn umoci_unpacks_it() {
    if !root_or_skip("umoci_unpacks_it") {
        return;
    }
    let b = committed_archive("loaders-umoci", true);
    let layout = extract_archive(&b.archive, &b.scratch("layout-probe"));
    let index: Value = serde_json::from_str(&read(&layout.join("index.json"))).expect("index.json");
    let reference = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_else(|| panic!("no ref.name in index.json: {index}"))
        .to_string();
    let rootfs = unpack_archive(&b.archive, &reference, &b.scratch("umoci"));
    assert_eq!(read(&rootfs.join("opt/base/base.txt")), "base layer\n");
    assert_eq!(read(&rootfs.join("opt/app/app.txt")), "app layer\n");
    assert!(rootfs.join("bin/busybox").is_file());
}

#[test]
fn podman_load_reads_it_and_runs_it() {
    if !root_or_skip("podman_load_reads_it_and_runs_it") {
        return;
    }
    let b = committed_archive("loaders-podman", true);
    let image = PodmanImage::load(&b.archive, b.config_digest());
    assert!(
        try_tool("podman", ["image", "exists", &b.tag]).success(),
        "podman load did not name the image {}",
        b.tag
    );
    let layers = tool(
        "podman",
        [
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            &image.id,
        ],
    );
    assert_eq!(
        serde_json::from_str::<Value>(layers.stdout.trim()).expect("RootFS.Layers"),
        serde_json::json!(b.diff_ids())
    );
    let mut a: Vec<OsString> = args!["run", "--rm", "--network", "none"];
    a.extend(PODMAN_RUN_FLAGS.iter().map(OsString::from));
    a.extend(args![&b.tag, "sh", "-c", CHECK_SCRIPT]);
    assert_eq!(tool("podman", a).stdout, CHECK_OUTPUT);
}

#[test]
fn ctr_images_import_reads_it_and_runs_it() {
    if !root_or_skip("ctr_images_import_reads_it_and_runs_it") {
        return;
    }
    let b = committed_archive("loaders-ctr", true);
    let ctd = Containerd::start("loaders-ctd");
    ctd.ctr_explained(args!["images", "import", &b.archive]);
    let list = ctd.ctr(["images", "ls"]).stdout;
    let (reference, target) = list
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first()?.contains(&b.name)).then(|| (f[0].to_string(), f[2].to_string()))
        })
        .unwrap_or_else(|| panic!("no image named after {} in ctr images ls:\n{list}", b.name));
    let mut manifest = ctd.ctr(["content", "get", &target]).json();
    if manifest["manifests"].is_array() {
        let first = manifest["manifests"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_string();
        manifest = ctd.ctr(["content", "get", &first]).json();
    }
    let digests: Vec<String> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(digests, b.digests(), "the imported image's blobs");
    let check = ctd.ctr_explained([
        "run",
        "--rm",
        "--runc-binary",
        "/usr/sbin/runc",
        &reference,
        &format!("{}-check", b.name),
        "sh",
        "-c",
        CHECK_SCRIPT,
    ]);
    assert_eq!(check.stdout, CHECK_OUTPUT);
}

#[test]
fn docker_load_reads_it_and_runs_it() {
    if !root_or_skip("docker_load_reads_it_and_runs_it") {
        return;
    }
    let b = committed_archive("loaders-docker", true);
    let dockerd = Dockerd::start("loaders-dockerd");
    let loaded = dockerd.load(&b.archive);
    assert!(loaded.success(), "{loaded}");
    assert!(
        loaded.stdout.contains(&b.tag),
        "docker load did not name the image {}: {loaded}",
        b.tag
    );
    assert_eq!(dockerd.image_layers(&b.tag), b.diff_ids());
    assert_eq!(
        dockerd.image_inspect(&b.tag)["Id"],
        b.config_digest(),
        "the image id is the config's digest"
    );
    let out = dockerd.docker([
        "run",
        "--rm",
        "--network",
        "none",
        &b.tag,
        "sh",
        "-c",
        CHECK_SCRIPT,
    ]);
    assert_eq!(out.stdout, CHECK_OUTPUT);
}
