//! Committing sessions on a podman or a containerd node, as root, with the base
//! image read from the runtime's own store rather than named by the caller: a
//! podman container (base from containers-storage, each layer rebuilt from its
//! tar-split metadata) and a containerd `ctr run` container (base blobs copied
//! from the content store as they are). Each is committed by the name the node
//! knows it by, with only the stores and the state roots configured; the result
//! is loaded back into a runtime and run, and the session keeps running, thawed.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use freezeframe_tests::containers::*;
use freezeframe_tests::*;

// ---------------------------------------------------------------------------
// Building blocks

/// A config file of the test's: `[runtime] roots` when given (else the
/// defaults), and `[stores]` (`docker`, `containers_storage`, `containerd`).
fn node_config(dir: &Path, roots: &[&Path], stores: &[(&str, &Path)]) -> PathBuf {
    let mut text = String::new();
    if !roots.is_empty() {
        let list: Vec<String> = roots.iter().map(|r| format!("{:?}", path_str(r))).collect();
        text.push_str(&format!("[runtime]\nroots = [{}]\n", list.join(", ")));
    }
    text.push_str("[stores]\n");
    for (store, root) in stores {
        text.push_str(&format!("{store} = {:?}\n", path_str(root)));
    }
    let path = dir.join("freezeframe.toml");
    write(&path, text);
    path
}

/// `freezeframe --config CONFIG commit --json ARGS`, run while the session's
/// freezer is sampled; asserts success and returns the report.
fn commit_with(config: &Path, args: Vec<OsString>, cgroups: &Cgroups) -> Value {
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(config)
        .args(commit_json_args(args))
        .env_remove("FREEZEFRAME_CONFIG");
    let w = run_watching(&mut cmd, || cgroups.freezer_state() != "THAWED");
    let report = w.outcome.ok().json();
    eprintln!(
        "frozen_ms = {}, freeze seen from outside: {}",
        report["frozen_ms"], w.probe_seen
    );
    report
}

/// `-v HOST:CONTAINER`.
fn volume(host: &Path, container: &str) -> Vec<OsString> {
    let mut v = host.as_os_str().to_owned();
    v.push(":");
    v.push(container);
    vec!["-v".into(), v]
}

/// The report's layers as (diff_id, digest, included), base layers first.
fn report_layers(report: &Value) -> Vec<(String, String, bool)> {
    report["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in the report: {report}"))
        .iter()
        .map(|l| {
            (
                l["diff_id"].as_str().expect("diff_id").to_string(),
                l["digest"].as_str().expect("digest").to_string(),
                l["included"].as_bool().expect("included"),
            )
        })
        .collect()
}

/// `session.base_source`, which names the store and the image it used.
fn base_source(report: &Value) -> String {
    report["session"]["base_source"]
        .as_str()
        .unwrap_or_else(|| panic!("no session.base_source in the report: {report}"))
        .to_string()
}

/// A string array of JSON as a `Vec<String>`.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// The entries of the layers after the first `base` ones, from the archive
/// extracted into `scratch`.
fn new_layer_entries(layout: &Path, report: &Value, base: usize) -> Vec<LayerEntry> {
    report_layers(report)[base..]
        .iter()
        .flat_map(|(_, digest, _)| layer_entries(&blob_path(layout, digest)))
        .collect()
}

/// A commit with `--base STORE:… --base-blobs omit` of the base a first commit
/// detected: the same base layers, none of their blobs in the archive, and a
/// new layer that is.
fn assert_explicit_base(report: &Value, base: &[(String, String, bool)], store: &str) {
    let layers = report_layers(report);
    assert!(layers.len() > base.len(), "no new layer: {layers:?}");
    let (old, new) = layers.split_at(base.len());
    let ids = |l: &[(String, String, bool)]| l.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(ids(old), ids(base), "--base {store}: the base diffIDs");
    assert!(
        old.iter().all(|l| !l.2) && new.iter().all(|l| l.2),
        "--base-blobs omit leaves out the base blobs only: {layers:?}"
    );
    let source = base_source(report);
    assert!(
        source == "--base" || source.contains(store),
        "base_source: {source}"
    );
}

/// A layer entry's path without `./` or `/` in front.
fn entry_path(e: &LayerEntry) -> String {
    let p = e.path.strip_prefix(b"./").unwrap_or(&e.path);
    String::from_utf8_lossy(p.strip_prefix(b"/").unwrap_or(p)).into_owned()
}

/// Paths of the entries, as a set.
fn entry_paths(entries: &[LayerEntry]) -> BTreeSet<String> {
    entries.iter().map(entry_path).collect()
}

/// What the changes below must leave in the new layer(s), and what they must not.
fn assert_new_layer(entries: &[LayerEntry], what: &str) {
    let paths = entry_paths(entries);
    for p in ["etc/new.conf", "bin/.wh.vi", "home/work/notes/n"] {
        assert!(
            paths.contains(p),
            "{what}: {p} is not in the new layer: {paths:?}"
        );
    }
    let note = entries
        .iter()
        .find(|e| entry_path(e) == "home/work/notes/n")
        .expect("notes/n");
    assert_eq!(
        (note.uid, note.gid),
        (1000, 1000),
        "{what}: the home file made by uid 1000"
    );
    for p in &paths {
        assert!(
            !p.starts_with("home/work/data/") && p != "etc/hosts",
            "{what}: {p} is in the new layer (a vfolder or a runtime mount)"
        );
    }
}

/// The rootfs changes (as root) and the home changes (as uid 1000) every
/// session here gets, and the edits that must stay out of the image.
const ROOT_CHANGES: &str = "set -e; echo node > /etc/new.conf; rm /bin/vi; \
                            echo 10.1.1.1 edited >> /etc/hosts; echo in-vfolder > /home/work/data/d";
const HOME_CHANGES: &str = "set -e; mkdir -p /home/work/notes; echo note > /home/work/notes/n";

/// What a container of the committed image prints, and must.
const CHECK_SCRIPT: &str = "cat /etc/new.conf /home/work/notes/n /opt/app/app.txt /opt/base/layer1.txt; \
                            test ! -e /bin/vi && echo no-vi; test ! -e /home/work/data/d && echo no-vfolder";
const CHECK_OUTPUT: &str = "node\nnote\napp layer\nbase layer 1\nno-vi\nno-vfolder\n";

/// The base's first layer: busybox, the base's own `/etc/hosts` and a file.
fn populate_layer1(root: &Path) {
    populate_busybox(root);
    write(&root.join("etc/hosts"), BASE_HOSTS);
    mkdirs(&root.join("opt/base"));
    write(&root.join("opt/base/layer1.txt"), "base layer 1\n");
}

// ---------------------------------------------------------------------------
// podman

/// Images a test tagged in podman's store; removed (by name) on drop.
#[derive(Default)]
struct PodmanTags(Vec<String>);

impl Drop for PodmanTags {
    fn drop(&mut self) {
        for name in self.0.iter().rev() {
            let o = try_tool("podman", ["rmi", "--force", name]);
            if !o.success() {
                eprintln!("teardown: {o}");
            }
        }
    }
}

/// A base of two layers in podman's store, as a node builds one: `podman import`
/// of a busybox tree made with GNU tar, then `podman build --network none` adding
/// a file and config. Returns the built image's name.
fn podman_base(dir: &Path, name: &str, tags: &mut PodmanTags) -> String {
    let root = dir.join("base-rootfs");
    populate_layer1(&root);
    let tarball = dir.join("base-layer1.tar");
    tool(
        "tar",
        args!["--numeric-owner", "-C", &root, "-cf", &tarball, "."],
    );
    let imported = format!("localhost/{name}-import:1");
    tool(
        "podman",
        args![
            "import",
            "--change",
            r#"CMD ["sleep", "100000"]"#,
            "--change",
            "ENV BASE_LAYER=1",
            &tarball,
            &imported
        ],
    );
    tags.0.push(imported.clone());
    let ctx = dir.join("build");
    mkdirs(&ctx.join("app"));
    write(&ctx.join("app/app.txt"), "app layer\n");
    write(
        &ctx.join("Containerfile"),
        format!(
            "FROM {imported}\nCOPY app /opt/app\nENV APP_MODE=base\n\
             LABEL org.freezeframe.test=nodes\nEXPOSE 8080\nWORKDIR /opt/app\n"
        ),
    );
    let built = format!("localhost/{name}-base:1");
    tool(
        "podman",
        args![
            "build",
            "--network",
            "none",
            "--pull=never",
            "-t",
            &built,
            "-f",
            ctx.join("Containerfile"),
            &ctx
        ],
    );
    tags.0.push(built.clone());
    built
}

/// `podman image inspect`'s RootFS.Layers of `image`.
fn podman_diff_ids(image: &str) -> Vec<String> {
    let out = tool(
        "podman",
        [
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            image,
        ],
    );
    serde_json::from_str::<Vec<String>>(out.stdout.trim())
        .unwrap_or_else(|e| panic!("RootFS.Layers of {image}: {e}: {}", out.stdout))
}

/// The image config inherited from the base built by [`podman_base`].
fn assert_inherited_config(config: &Value, what: &str) {
    let env = strings(&config["config"]["Env"]);
    for want in ["APP_MODE=base", "BASE_LAYER=1"] {
        assert!(
            env.iter().any(|e| e == want),
            "{what}: {want} not in Env {env:?}"
        );
    }
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["sleep", "100000"]),
        "{what}: Cmd"
    );
    assert_eq!(
        config["config"]["WorkingDir"], "/opt/app",
        "{what}: WorkingDir"
    );
    assert_eq!(
        config["config"]["Labels"]["org.freezeframe.test"], "nodes",
        "{what}: Labels"
    );
    assert!(
        config["config"]["ExposedPorts"]
            .as_object()
            .is_some_and(|p| p.contains_key("8080/tcp")),
        "{what}: ExposedPorts {}",
        config["config"]["ExposedPorts"]
    );
}

#[test]
fn a_podman_container_commits_by_name_with_its_base_from_containers_storage() {
    if !root_or_skip("a_podman_container_commits_by_name_with_its_base_from_containers_storage") {
        return;
    }
    let dir = tempdir("nodes-podman");
    let name = unique_id("pod");
    let mut tags = PodmanTags::default();
    let base = podman_base(dir.path(), &name, &mut tags);
    let base_diff_ids = podman_diff_ids(&base);
    assert!(
        base_diff_ids.len() >= 2,
        "the base should have 2 layers or more: {base_diff_ids:?}"
    );
    let base_id = tool("podman", ["image", "inspect", "--format", "{{.Id}}", &base])
        .stdout
        .trim()
        .to_string();

    let (home, data) = (dir.path().join("home"), dir.path().join("data"));
    mkdirs(&home);
    mkdirs(&data);
    chown(&home, 1000, 1000);
    write(&data.join("host-dataset"), "vfolder content\n");
    let mut extra = volume(&home, "/home/work");
    extra.extend(volume(&data, "/home/work/data"));
    let c = PodmanContainer::run(&name, &extra, &base, &["sh", "-c", WRITER]);
    c.exec(ROOT_CHANGES);
    tool(
        "podman",
        ["exec", "-u", "1000", &name, "sh", "-c", HOME_CHANGES],
    );
    assert_writer_advances(c.pid, "before the commit");

    let graph_root = tool("podman", ["info", "--format", "{{.Store.GraphRoot}}"])
        .stdout
        .trim()
        .to_string();
    let config = node_config(
        dir.path(),
        &[],
        &[("containers_storage", Path::new(&graph_root))],
    );
    let archive = dir.path().join("out.tar");
    let tag = format!("localhost/{name}-committed:1");
    let report = commit_with(
        &config,
        args![&name, "--tag", &tag, "-o", &archive],
        &c.cgroups,
    );
    assert_eq!(c.inspect("{{.State.Status}}"), "running");
    c.cgroups.assert_thawed("after the commit");
    assert_writer_advances(c.pid, "after the commit");

    assert_eq!(report["session"]["id"], c.id.as_str());
    // podman copies the image's annotations into the container's spec, and
    // `podman build` annotates an image with the image it was built FROM
    // (org.opencontainers.image.base.name): that names the import, not the
    // container's image. The base is what containers-storage records.
    let source = base_source(&report);
    assert!(
        source.contains("containers-storage")
            && (source.contains(&base) || source.contains(&base_id[..12])),
        "base_source should name containers-storage and {base} ({base_id}): {source}"
    );
    let layers = report_layers(&report);
    let n = base_diff_ids.len();
    assert!(layers.len() > n, "no new layer: {layers:?}");
    assert_eq!(
        layers[..n].iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
        base_diff_ids,
        "the base layers' diffIDs are podman's"
    );
    assert!(
        layers.iter().all(|l| l.2),
        "every blob is in the archive: {layers:?}"
    );

    // Each base blob, as gzip -dc reads it, hashes to its diffID: the layers
    // were rebuilt byte for byte.
    let layout = extract_archive(&archive, &dir.path().join("extracted"));
    for (diff_id, digest, _) in &layers[..n] {
        assert_eq!(
            &peer_diff_id(&blob_path(&layout, digest)),
            diff_id,
            "base blob {digest}"
        );
    }
    assert_new_layer(&new_layer_entries(&layout, &report, n), "podman");
    assert_inherited_config(&skopeo_config(&archive), "podman");

    // The same base named explicitly, its blobs left out.
    let omitted = dir.path().join("omitted.tar");
    let explicit = commit_with(
        &config,
        args![
            &name,
            "--base",
            format!("containers-storage:{base}"),
            "--base-blobs",
            "omit",
            "-o",
            &omitted
        ],
        &c.cgroups,
    );
    assert_explicit_base(&explicit, &layers[..n], "containers-storage");
    c.cgroups.assert_thawed("after the second commit");

    // podman loads it, shares the base, and runs it with no home mounted.
    let loaded = PodmanImage::load(&archive, report["config_digest"].as_str().unwrap());
    let loaded_layers = podman_diff_ids(&loaded.id);
    assert_eq!(
        loaded_layers[..n],
        base_diff_ids[..],
        "the loaded image's base"
    );
    assert!(
        try_tool("podman", ["image", "exists", &tag]).success(),
        "podman load did not name the image {tag}"
    );
    let mut a: Vec<OsString> = args!["run", "--rm", "--network", "none"];
    a.extend(PODMAN_RUN_FLAGS.iter().map(OsString::from));
    a.extend(args![&loaded.id, "sh", "-c", CHECK_SCRIPT]);
    assert_eq!(tool("podman", a).stdout, CHECK_OUTPUT);
    drop(loaded);
    drop(c);
    drop(tags);
}

/// A podman session of an image freezeframe committed is committed on that
/// image: its base is what containers-storage records for the container, all
/// of the image's layers. The image's manifest names its own base
/// (org.opencontainers.image.base.name, here an archive that still exists),
/// and podman copies that annotation into the container's spec; taking it for
/// the container's image would drop the first commit's layer.
#[test]
fn a_podman_session_of_a_committed_image_is_committed_on_that_image() {
    if !root_or_skip("a_podman_session_of_a_committed_image_is_committed_on_that_image") {
        return;
    }
    let dir = tempdir("nodes-recommit");
    let name = unique_id("recommit");
    let root = dir.path().join("layer1-rootfs");
    populate_layer1(&root);
    let grandparent = dir.path().join("layer1.tar");
    OfflineCommit::new(&root)
        .tag("layer1")
        .change(r#"CMD ["sleep", "100000"]"#)
        .output(&grandparent)
        .commit();
    let upper = dir.path().join("first-upper");
    mkdirs(&upper.join("opt/app"));
    write(&upper.join("opt/app/app.txt"), "app layer\n");
    let first = dir.path().join("first.tar");
    let tag = format!("localhost/{name}:first");
    let made = OfflineCommit::new(&upper)
        .base(oci_archive_ref(&grandparent))
        .tag(&tag)
        .output(&first)
        .commit();
    let image = PodmanImage::load(&first, made["config_digest"].as_str().unwrap());
    let image_layers = podman_diff_ids(&image.id);
    assert_eq!(image_layers.len(), 2, "{image_layers:?}");

    let c = PodmanContainer::run(&name, &[], &image.id, &["sleep", "100000"]);
    c.exec("echo second > /opt/second.txt");
    let graph_root = tool("podman", ["info", "--format", "{{.Store.GraphRoot}}"])
        .stdout
        .trim()
        .to_string();
    let config = node_config(
        dir.path(),
        &[],
        &[("containers_storage", Path::new(&graph_root))],
    );
    let archive = dir.path().join("second.tar");
    let report = commit_with(
        &config,
        args![&name, "--tag", "second", "-o", &archive],
        &c.cgroups,
    );
    c.cgroups.assert_thawed("after the commit");
    let source = base_source(&report);
    let layers = report_layers(&report);
    assert!(
        layers.len() > 2,
        "base from {source}: the first commit's layer is missing: {layers:?}"
    );
    assert_eq!(
        layers[..2].iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
        image_layers,
        "base from {source}: the base is the container's image"
    );
    let rootfs = unpack_archive(&archive, &ref_name(&archive), &dir.path().join("unpacked"));
    assert_eq!(read(&rootfs.join("opt/app/app.txt")), "app layer\n");
    assert_eq!(read(&rootfs.join("opt/second.txt")), "second\n");
    drop(c);
    drop(image);
}

/// The `org.opencontainers.image.ref.name` of an archive's one image.
fn ref_name(archive: &Path) -> String {
    let dir = tempdir("nodes-index");
    let layout = extract_archive(archive, dir.path());
    let index: Value = serde_json::from_str(&read(&layout.join("index.json"))).expect("index.json");
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_else(|| panic!("no ref.name in index.json: {index}"))
        .to_string()
}

// ---------------------------------------------------------------------------
// containerd

/// A two-layer OCI archive tagged `reference`: busybox (freezeframe's offline
/// commit), then a layer with an app file and config on top of it.
fn two_layer_archive(dir: &Path, reference: &str) -> PathBuf {
    let first = dir.join("layer1.tar");
    let root = dir.join("layer1-rootfs");
    populate_layer1(&root);
    OfflineCommit::new(&root)
        .tag("layer1")
        .change("ENV PATH=/usr/bin:/bin")
        .change(r#"CMD ["sleep", "100000"]"#)
        .output(&first)
        .commit();
    let upper = dir.join("layer2-upper");
    mkdirs(&upper.join("opt/app"));
    write(&upper.join("opt/app/app.txt"), "app layer\n");
    let archive = dir.join("base.tar");
    OfflineCommit::new(&upper)
        .base(oci_archive_ref(&first))
        .change("ENV APP_MODE=base")
        .change("WORKDIR /opt/app")
        .tag(reference)
        .output(&archive)
        .commit();
    archive
}

/// The image manifest a containerd image resolves to (through an index, if
/// its target is one), from the content store by `ctr content get`.
fn content_manifest(ctd: &Containerd, reference: &str) -> Value {
    let list = ctd.ctr(["images", "ls"]).stdout;
    let digest = list
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&reference)).then(|| f[2].to_string())
        })
        .unwrap_or_else(|| panic!("no {reference} in ctr images ls:\n{list}"));
    let mut doc = ctd.ctr(["content", "get", &digest]).json();
    if doc["manifests"].is_array() {
        let first = doc["manifests"][0]["digest"]
            .as_str()
            .expect("index manifest digest")
            .to_string();
        doc = ctd.ctr(["content", "get", &first]).json();
    }
    doc
}

/// The name `ctr images import` gave the image whose reference mentions `name`.
fn imported_name(ctd: &Containerd, name: &str) -> String {
    let list = ctd.ctr(["images", "ls", "-q"]).stdout;
    list.lines()
        .map(str::trim)
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("no image named after {name} in ctr images ls:\n{list}"))
        .to_string()
}

/// `--mount` of a bind, as `ctr run` takes it.
fn ctr_bind(src: &Path, dst: &str) -> String {
    format!("type=bind,src={},dst={dst},options=rbind:rw", src.display())
}

#[test]
fn a_containerd_container_commits_with_its_base_blobs_from_the_content_store() {
    if !root_or_skip("a_containerd_container_commits_with_its_base_blobs_from_the_content_store") {
        return;
    }
    let ctd = Containerd::start("nodes-ctd");
    let root = ctd.state.with_file_name("root");
    let name = unique_id("ctd");
    let reference = format!("docker.io/library/{name}:base");
    let base = two_layer_archive(&ctd.scratch("build"), &reference);
    ctd.ctr(args!["images", "import", &base]);
    let manifest = content_manifest(&ctd, &reference);
    let base_digests: Vec<String> = manifest["layers"]
        .as_array()
        .expect("manifest layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(base_digests.len(), 2, "{manifest}");

    let (home, data, injected) = (
        ctd.scratch("home"),
        ctd.scratch("data"),
        ctd.scratch("injected"),
    );
    chown(&home, 1000, 1000);
    write(&data.join("host-dataset"), "vfolder content\n");
    // The platform's runtime mounts a hosts file of its own, as Docker and podman do.
    let hosts = injected.join("hosts");
    write(&hosts, INJECTED_HOSTS);
    ctd.ctr([
        "run",
        "-d",
        "--runc-binary",
        "/usr/sbin/runc",
        "--mount",
        &ctr_bind(&home, "/home/work"),
        "--mount",
        &ctr_bind(&data, "/home/work/data"),
        "--mount",
        &ctr_bind(&hosts, "/etc/hosts"),
        &reference,
        &name,
        "sh",
        "-c",
        WRITER,
    ]);
    let pid = ctd.task_pid(&name);
    let cgroups = Cgroups::of_pid(pid);
    ctd.ctr_explained([
        "task",
        "exec",
        "--exec-id",
        "root-changes",
        &name,
        "sh",
        "-c",
        ROOT_CHANGES,
    ]);
    ctd.ctr_explained([
        "task",
        "exec",
        "--exec-id",
        "home-changes",
        "--user",
        "1000",
        &name,
        "sh",
        "-c",
        HOME_CHANGES,
    ]);
    assert_writer_advances(pid, "before the commit");

    let config = node_config(
        &ctd.scratch("config"),
        &[Path::new(CONTAINERD_RUNC_ROOT)],
        &[("containerd", &root)],
    );
    let archive = ctd.scratch("out").join("out.tar");
    let tag = format!("docker.io/library/{name}:committed");
    let report = commit_with(
        &config,
        args![&name, "--tag", &tag, "-o", &archive],
        &cgroups,
    );
    assert_eq!(ctd.task_status(&name), "RUNNING");
    cgroups.assert_thawed("after the commit");
    assert_writer_advances(pid, "after the commit");

    assert_eq!(report["session"]["id"], name.as_str());
    let source = base_source(&report);
    assert!(
        source.contains("containerd") && source.contains(&reference),
        "base_source should name containerd and {reference}: {source}"
    );
    let layers = report_layers(&report);
    assert!(layers.len() > 2, "no new layer: {layers:?}");
    assert_eq!(
        layers[..2].iter().map(|l| l.1.clone()).collect::<Vec<_>>(),
        base_digests,
        "the base blobs keep the content store's digests"
    );
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let base_config = ctd.ctr(["content", "get", config_digest]).json();
    assert_eq!(
        layers[..2].iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
        strings(&base_config["rootfs"]["diff_ids"]),
        "the base diffIDs"
    );
    let layout = extract_archive(&archive, &ctd.scratch("extracted"));
    let content = root.join("io.containerd.content.v1.content/blobs/sha256");
    for digest in &base_digests {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let copied = blob_path(&layout, digest);
        assert_eq!(
            sha256_file(&copied),
            hex,
            "{} is not its digest",
            copied.display()
        );
        assert_eq!(
            fs::read(&copied).expect("read the copy"),
            fs::read(content.join(hex)).expect("read the content store's blob"),
            "blob {digest} differs from the content store's"
        );
    }
    assert_new_layer(&new_layer_entries(&layout, &report, 2), "containerd");
    let image_config = skopeo_config(&archive);
    let env = strings(&image_config["config"]["Env"]);
    assert!(env.iter().any(|e| e == "APP_MODE=base"), "Env {env:?}");
    assert_eq!(image_config["config"]["WorkingDir"], "/opt/app");

    // The same base named explicitly, with its namespace, its blobs left out.
    let explicit = commit_with(
        &config,
        args![
            &name,
            "--base",
            format!("containerd:{}/{reference}", ctd.ns),
            "--base-blobs",
            "omit",
            "-o",
            ctd.scratch("out").join("omitted.tar")
        ],
        &cgroups,
    );
    assert_explicit_base(&explicit, &layers[..2], "containerd");
    cgroups.assert_thawed("after the second commit");

    // A containerd that never saw the base imports it and runs it.
    let other = Containerd::start("nodes-ctd-import");
    other.ctr(args!["images", "import", &archive]);
    let imported = imported_name(&other, &name);
    let check = other.ctr_explained([
        "run",
        "--rm",
        "--runc-binary",
        "/usr/sbin/runc",
        &imported,
        &format!("{name}-check"),
        "sh",
        "-c",
        CHECK_SCRIPT,
    ]);
    assert_eq!(check.stdout, CHECK_OUTPUT);
    let digests: Vec<String> = content_manifest(&other, &imported)["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(
        digests[..2],
        base_digests[..],
        "the imported image's base blobs"
    );
    drop(other);
}
