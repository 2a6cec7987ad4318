//! Docker nodes, end to end, as root: a private `dockerd` 20.10 (Debian's
//! `docker.io`) with freezeframe added as a runtime, a two-layer base built with
//! `docker import` and `docker build`, and a session run as the platform runs
//! one (`docker run -d` with a scratch home at `/home/work` and a vfolder under
//! it). `freezeframe commit NAME` finds the container and its base from the
//! daemon's data root alone (the config's `[stores] docker`), `docker load`
//! reads the archive, and `docker run --runtime freezeframe` runs it with a
//! fresh, empty home that comes back seeded.
//!
//! Each test starts its own daemon (a second or two): tests run in parallel,
//! and two of them damage the daemon's store on purpose (a corrupt
//! `config.v2.json`, a modified base layer), which must not reach another
//! test's lookups or bases.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use freezeframe_tests::docker::*;
use freezeframe_tests::*;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Building blocks

/// The first layer's own files, on top of busybox; the home is uid 1000's.
fn populate_base(r: &Path) {
    chown(&r.join("home/work"), 1000, 1000);
    write(&r.join("etc/base-file"), "from the first layer\n");
    mkdirs(&r.join("opt"));
}

/// The second layer (a `docker build` step) and the config a commit inherits.
const DOCKERFILE: &str = "\
RUN mkdir -p /opt/app && echo app > /opt/app/file && echo layer2 > /etc/layer2
ENV FF_BASE=1
LABEL org.example.base=busybox
WORKDIR /home/work
CMD [\"sleep\", \"100000\"]";

/// The committed image's tag, as `docker load` names it.
const TAG: &str = "ffsess:committed";

/// A session as the platform runs one: a scratch home (owned by uid 1000) at
/// `/home/work` and a vfolder at `/home/work/data`, the image's own command.
struct Session<'d> {
    c: DockerContainer<'d>,
    home: PathBuf,
    vfolder: PathBuf,
    /// An empty directory for archives.
    out: PathBuf,
}

fn start_session<'d>(d: &'d Dockerd, image: &DockerImage, name: &str) -> Session<'d> {
    let home = d.scratch(&format!("{name}-home"));
    chown(&home, 1000, 1000);
    let vfolder = d.scratch(&format!("{name}-vfolder"));
    let out = d.scratch(&format!("{name}-out"));
    let mut home_mount = home.clone().into_os_string();
    home_mount.push(":/home/work");
    let mut vfolder_mount = vfolder.clone().into_os_string();
    vfolder_mount.push(":/home/work/data");
    let c = d.run(
        name,
        args!["-v", home_mount, "-v", vfolder_mount],
        &image.tag,
        &[],
    );
    Session {
        c,
        home,
        vfolder,
        out,
    }
}

/// A name unique to this test process (Docker wants lowercase).
fn name(what: &str) -> String {
    freezeframe_tests::containers::unique_id(what).to_lowercase()
}

/// Paths without the home (`home/work` and below) and its parent dirs: what
/// is left is the rootfs part of a layer.
fn rootfs_part(paths: &BTreeSet<Vec<u8>>) -> BTreeSet<String> {
    paths
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .filter(|p| p != "home" && p != "home/work" && !p.starts_with("home/work/"))
        .collect()
}

fn str_of(v: &Value, what: &str) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
        .to_string()
}

/// Docker's chain id of a layer stack: chain[0] = diff[0],
/// chain[i] = sha256(chain[i-1] + " " + diff[i]).
fn chain_id(diff_ids: &[String]) -> String {
    let mut chain = diff_ids[0].clone();
    for d in &diff_ids[1..] {
        chain = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{chain} {d}")))
        );
    }
    chain
}

// ---------------------------------------------------------------------------
// The round trip

#[test]
fn docker_session_is_committed_by_name_loaded_by_docker_and_run_with_its_home_seeded() {
    if !root_or_skip(
        "docker_session_is_committed_by_name_loaded_by_docker_and_run_with_its_home_seeded",
    ) {
        return;
    }
    let d = Dockerd::start("docker-roundtrip");
    let base = d.build_base("ffbase:1", populate_base, DOCKERFILE);
    assert_eq!(base.layers.len(), 2, "the base has two layers: {base:?}");
    let s = start_session(&d, &base, &name("sess"));

    // Changes from inside: the rootfs as root, the home as uid 1000, the
    // vfolder, and /etc/hosts (Docker's bind mount, never the image's).
    s.c.exec(
        "echo rootchange > /etc/changed && rm /etc/layer2 && echo more >> /opt/app/file \
         && mkdir -p /srv/new && echo new > /srv/new/file && echo '10.9.9.9 edited' >> /etc/hosts \
         && echo vf > /home/work/data/vfile",
    );
    s.c.exec_as(
        "1000",
        "echo homefile > /home/work/notes && mkdir /home/work/proj && echo code > /home/work/proj/main.py",
    );
    assert_eq!(read(&s.home.join("notes")), "homefile\n");
    assert_eq!(read(&s.vfolder.join("vfile")), "vf\n");

    // The oracle: the layer `docker commit` makes of the same container.
    let oracle = d.commit_layer_paths(&s.c.name);
    s.c.assert_running_and_thawed("after docker commit");
    assert!(
        oracle.contains(b"etc/changed".as_slice()),
        "docker commit's layer: {oracle:?}"
    );

    // --- from here on, the product: lookup by name, base from Docker's store.
    let archive = s.out.join("committed.tar");
    let report = d.commit(args![&s.c.name, "-o", &archive, "--tag", TAG]);
    s.c.assert_running_and_thawed("after freezeframe commit");
    assert_eq!(str_of(&report["session"]["id"], "session.id"), s.c.id);

    let source = report["session"]["base_source"].to_string();
    assert!(
        source.contains("docker")
            && (source.contains(&base.hex()[..12]) || source.contains(&base.tag)),
        "the report names Docker's store and the base image ({} {}): {source}",
        base.tag,
        base.id
    );

    // Base layers first, with Docker's own diffIDs; then the new layer(s).
    let layers = report_layers(&report);
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| str_of(&l["diff_id"], "diff_id"))
        .collect();
    assert!(layers.len() > base.layers.len(), "no new layer: {report}");
    assert_eq!(
        diff_ids[..base.layers.len()],
        base.layers[..],
        "the base diffIDs equal docker image inspect's RootFS.Layers"
    );
    for l in &layers {
        assert_eq!(l["included"], Value::Bool(true), "every blob is in: {l}");
    }

    // One archive: the OCI layout and docker-archive's manifest.json beside it.
    let listing = tool("tar", args!["-tf", &archive]).stdout;
    let names: BTreeSet<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("./"))
        .collect();
    for want in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(
            names.contains(want),
            "{want} is not in the archive:\n{listing}"
        );
    }

    // The new layers hold the rootfs changes docker commit saw, and the home.
    let layout = extract_archive(&archive, &s.out.join("x"));
    let mut ours = BTreeSet::new();
    for l in &layers[base.layers.len()..] {
        ours.extend(layer_paths(&blob_path(
            &layout,
            &str_of(&l["digest"], "digest"),
        )));
    }
    assert_eq!(
        rootfs_part(&ours),
        rootfs_part(&oracle),
        "the new layer's rootfs paths equal docker commit's layer's"
    );
    for want in ["home/work/notes", "home/work/proj/main.py"] {
        assert!(
            ours.contains(want.as_bytes()),
            "{want} is not in the new layer: {ours:?}"
        );
    }
    for absent in ["home/work/data/vfile", "etc/hosts"] {
        assert!(
            !ours.contains(absent.as_bytes()),
            "{absent} is in the new layer"
        );
    }

    // docker load reads it, with Docker's diffIDs and the base's config.
    let loaded = d.load(&archive);
    assert!(
        loaded.success(),
        "docker load of freezeframe's archive:\n{loaded}"
    );
    assert_eq!(d.image_layers(TAG), diff_ids, "docker's RootFS.Layers");
    let config = &d.image_inspect(TAG)["Config"];
    assert_eq!(config["Cmd"], serde_json::json!(["sleep", "100000"]));
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|e| e.contains(&Value::from("FF_BASE=1"))),
        "the base's Env is inherited: {config}"
    );
    assert_eq!(config["Labels"]["org.example.base"], "busybox");
    assert_eq!(config["WorkingDir"], "/home/work");

    // Without the base's blobs (`--base-blobs omit`), the archive still
    // loads on this node, which has the base: Docker keeps the layers it has.
    let omit = s.out.join("omit.tar");
    let slim = d.commit(args![
        &s.c.name,
        "-o",
        &omit,
        "--tag",
        "ffomit:1",
        "--base-blobs",
        "omit"
    ]);
    let slim_layers = report_layers(&slim);
    assert_eq!(
        slim_layers
            .iter()
            .map(|l| l["included"] == Value::Bool(true))
            .collect::<Vec<_>>(),
        (0..slim_layers.len())
            .map(|i| i >= base.layers.len())
            .collect::<Vec<_>>(),
        "only the new layers are in: {slim}"
    );
    d.load(&omit).ok();
    assert_eq!(
        d.image_layers("ffomit:1")[..base.layers.len()],
        base.layers[..],
        "the slim image's base layers are Docker's"
    );
    assert_eq!(
        d.docker([
            "run",
            "--rm",
            "ffomit:1",
            "cat",
            "/opt/app/file",
            "/etc/changed"
        ])
        .stdout,
        "app\nmore\nrootchange\n"
    );

    // docker run --runtime freezeframe with a fresh, empty home.
    let fresh = d.scratch("fresh-home");
    let mut fresh_mount = fresh.clone().into_os_string();
    fresh_mount.push(":/home/work");
    let again = d.run(
        &name("again"),
        args!["--runtime", RUNTIME, "-v", fresh_mount],
        TAG,
        &[],
    );
    let cat = |path: &str| again.exec(&format!("cat {path}")).stdout;
    assert_eq!(cat("/etc/changed"), "rootchange\n");
    assert_eq!(cat("/opt/app/file"), "app\nmore\n");
    assert_eq!(cat("/srv/new/file"), "new\n");
    assert_eq!(cat("/etc/base-file"), "from the first layer\n");
    assert_eq!(cat("/home/work/notes"), "homefile\n");
    assert_eq!(cat("/home/work/proj/main.py"), "code\n");
    again.exec("test ! -e /etc/layer2");
    again.exec("test ! -e /home/work/data/vfile");
    again.exec("! grep -q edited /etc/hosts");
    assert_eq!(
        again.exec("stat -c %u:%g /home/work/notes").stdout,
        "1000:1000\n"
    );
    // Seeded into the host's scratch directory, with its owner.
    assert_eq!(read(&fresh.join("notes")), "homefile\n");
    let meta = fs::metadata(fresh.join("notes")).expect("stat the seeded notes");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        1000,
        "seeded notes' owner"
    );
    assert!(!fresh.join("data/vfile").exists(), "vfolder content seeded");

    s.c.assert_running_and_thawed("at the end");
}

// ---------------------------------------------------------------------------
// freezeframe as Docker's runtime

/// Home seeding on a Docker node, whatever made the image: `docker commit` of
/// a session (whose layer holds a home written into the image), saved, removed
/// and `docker load`ed again, runs with `--runtime freezeframe` and a fresh,
/// empty scratch home, which comes back seeded with the image's home and its
/// owners; runc leaves the same fresh home empty.
#[test]
fn docker_runs_freezeframe_as_its_runtime_and_a_fresh_home_is_seeded_from_the_image() {
    if !root_or_skip(
        "docker_runs_freezeframe_as_its_runtime_and_a_fresh_home_is_seeded_from_the_image",
    ) {
        return;
    }
    let d = Dockerd::start("docker-runtime");
    let base = d.build_base("ffbase:1", populate_base, DOCKERFILE);
    // No scratch home mounted: the home is the image's, committed by Docker.
    let c = d.run(&name("sess"), Vec::new(), &base.tag, &[]);
    c.exec_as("1000", "echo homefile > /home/work/notes");
    c.exec("echo rootchange > /etc/changed");
    d.docker(["commit", &c.name, "ffdocker:committed"]);
    let saved = d.scratch("saved").join("image.tar");
    d.docker(args!["save", "-o", &saved, "ffdocker:committed"]);
    d.docker(["rm", "--force", &c.name]);
    d.docker(["rmi", "ffdocker:committed"]);
    let loaded = d.load(&saved).ok();
    assert!(
        loaded.stdout.contains("ffdocker:committed"),
        "docker load names the image: {loaded}"
    );

    for (runtime, seeded) in [(RUNTIME, true), ("runc", false)] {
        let fresh = d.scratch(&format!("fresh-{runtime}"));
        let mut mount = fresh.clone().into_os_string();
        mount.push(":/home/work");
        let again = d.run(
            &name(runtime),
            args!["--runtime", runtime, "-v", mount],
            "ffdocker:committed",
            &[],
        );
        assert_eq!(again.inspect("{{.HostConfig.Runtime}}"), runtime);
        assert_eq!(again.exec("cat /etc/changed").stdout, "rootchange\n");
        if seeded {
            assert_eq!(again.exec("cat /home/work/notes").stdout, "homefile\n");
            assert_eq!(read(&fresh.join("notes")), "homefile\n");
            let meta = fs::metadata(fresh.join("notes")).expect("stat the seeded notes");
            assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1000);
            // `docker exec` goes through freezeframe too.
            assert_eq!(again.exec_as("1000", "id -u").stdout, "1000\n");
        } else {
            assert!(
                dir_names(&fresh).is_empty(),
                "runc seeded {}",
                fresh.display()
            );
        }
        again.assert_running_and_thawed(runtime);
    }
}

// ---------------------------------------------------------------------------
// Lookup as admins type it

#[test]
fn docker_containers_are_found_by_id_prefix_and_a_base_is_named_by_docker_reference() {
    if !root_or_skip(
        "docker_containers_are_found_by_id_prefix_and_a_base_is_named_by_docker_reference",
    ) {
        return;
    }
    let d = Dockerd::start("docker-lookup");
    let base = d.build_base("ffbase:1", populate_base, DOCKERFILE);
    let s = start_session(&d, &base, &name("sess"));
    s.c.exec("echo x > /etc/changed");
    let id = s.c.id.clone();

    // Docker's short id (12), and a shorter unique prefix.
    for (i, reference) in [&id[..12], &id[..6]].into_iter().enumerate() {
        let out = s.out.join(format!("by-prefix-{i}.tar"));
        let report = d.commit(args![reference, "-o", &out]);
        assert_eq!(
            str_of(&report["session"]["id"], "session.id"),
            id,
            "commit {reference}"
        );
        s.c.assert_running_and_thawed(&format!("after commit {reference}"));
    }

    // A second container whose id shares the first 8 characters: recorded as
    // Docker records one (containers/ID/config.v2.json, under another name)
    // and as runc does (the state root's ID/state.json).
    let twin: String = id[..8]
        .chars()
        .chain(id[8..].chars().map(|c| if c == '0' { '1' } else { '0' }))
        .collect();
    let twin_name = format!("{}-twin", s.c.name);
    let mut record: Value =
        serde_json::from_str(&read(&d.config_v2(&id))).expect("parse config.v2.json");
    record["ID"] = Value::from(twin.clone());
    record["Name"] = Value::from(format!("/{twin_name}"));
    let twin_record = d.config_v2(&twin);
    mkdirs(twin_record.parent().unwrap());
    write(&twin_record, record.to_string());
    let mut state: Value = serde_json::from_str(&read(&d.runc_root().join(&id).join("state.json")))
        .expect("parse runc's state.json");
    state["id"] = Value::from(twin.clone());
    let twin_state = d.runc_root().join(&twin);
    mkdirs(&twin_state);
    write(&twin_state.join("state.json"), state.to_string());

    let out = s.out.join("ambiguous.tar");
    let o = d.try_commit(args![&id[..8], "-o", &out]);
    // Docker must never see the twin: remove it before anything can fail.
    let _ = fs::remove_dir_all(&twin_state);
    let _ = fs::remove_dir_all(twin_record.parent().unwrap());
    let o = o.failed();
    assert!(
        o.stderr.contains(&id[..12]) && o.stderr.contains(&twin[..12]),
        "an ambiguous prefix lists the matches:\n{o}"
    );
    assert!(!out.exists(), "an archive was left by a failed lookup");
    s.c.assert_running_and_thawed("after the ambiguous prefix");

    // Fewer than 4 characters is no prefix.
    let o = d.try_commit(args![&id[..3], "-o", &out]).failed();
    assert!(!out.exists(), "{o}");

    // `--base docker:NAME|ID` names another image of the store than the
    // container's own, by tag and by id.
    let other = d.build_base(
        "ffother:2",
        |r| write(&r.join("etc/other"), "another base\n"),
        DOCKERFILE,
    );
    assert_ne!(other.layers, base.layers);
    for (i, reference) in [other.tag.clone(), other.hex().to_string()]
        .into_iter()
        .enumerate()
    {
        let out = s.out.join(format!("explicit-{i}.tar"));
        let report = d.commit(args![
            &id,
            "--base",
            format!("docker:{reference}"),
            "-o",
            &out
        ]);
        let diff_ids: Vec<String> = report_layers(&report)
            .iter()
            .map(|l| str_of(&l["diff_id"], "diff_id"))
            .collect();
        assert_eq!(
            diff_ids[..other.layers.len()],
            other.layers[..],
            "--base docker:{reference}: {report}"
        );
        s.c.assert_running_and_thawed(&format!("after --base docker:{reference}"));
    }
}

// ---------------------------------------------------------------------------
// Bad stores give clear errors, and nothing is lost

#[test]
fn a_corrupt_config_v2_json_is_an_error_naming_the_file() {
    if !root_or_skip("a_corrupt_config_v2_json_is_an_error_naming_the_file") {
        return;
    }
    let d = Dockerd::start("docker-corrupt");
    let base = d.build_base("ffbase:1", populate_base, DOCKERFILE);
    let s = start_session(&d, &base, &name("sess"));
    s.c.exec("echo x > /etc/changed");

    let record = d.config_v2(&s.c.id);
    write(&record, "{\"ID\": \"truncated");
    let out = s.out.join("corrupt.tar");
    let o = d.try_commit(args![&s.c.name, "-o", &out]).failed();
    assert!(
        o.stderr.contains(path_str(&record)),
        "the error names {}:\n{o}",
        record.display()
    );
    assert!(
        dir_names(&s.out).is_empty(),
        "left behind: {:?}",
        dir_names(&s.out)
    );
    s.c.assert_running_and_thawed("after the failed commit");
}

#[test]
fn a_base_layer_modified_on_disk_fails_naming_the_layer_and_leaves_no_archive() {
    if !root_or_skip("a_base_layer_modified_on_disk_fails_naming_the_layer_and_leaves_no_archive") {
        return;
    }
    let d = Dockerd::start("docker-tampered");
    let base = d.build_base("ffbase:1", populate_base, DOCKERFILE);
    let s = start_session(&d, &base, &name("sess"));
    s.c.exec("echo x > /etc/changed");

    // The top base layer's overlay2 diff dir: a file changed in place, same
    // size, so only its content (the tar-split's CRC) tells.
    let upper = str_of(
        &d.image_inspect(&base.tag)["GraphDriver"]["Data"]["UpperDir"],
        "GraphDriver.Data.UpperDir",
    );
    let file = Path::new(&upper).join("opt/app/file");
    assert_eq!(read(&file), "app\n");
    write(&file, "APP\n");

    let out = s.out.join("tampered.tar");
    let o = d.try_commit(args![&s.c.name, "-o", &out]).failed();
    let cache_id = Path::new(&upper)
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .expect("overlay2/CACHE-ID/diff")
        .to_string();
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let names_the_layer = [cache_id, hex(&base.layers[1]), hex(&chain_id(&base.layers))]
        .iter()
        .any(|n| o.stderr.contains(n.as_str()));
    assert!(
        names_the_layer,
        "the error names the layer (its overlay2 dir, diffID or chain id):\n{o}"
    );
    assert!(
        dir_names(&s.out).is_empty(),
        "left behind: {:?}",
        dir_names(&s.out)
    );
    s.c.assert_running_and_thawed("after the failed commit");
}
