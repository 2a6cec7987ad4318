//! Hardening, as root: what a hostile image, session or peer does, as it was
//! found to work, and the safe outcome or clear error it now gets.
//!
//! | finding | test |
//! |---|---|
//! | home seeding made device nodes, setuid files, file capabilities and `trusted.*` attributes on the host, and gave the scratch directory the image's owner and mode | [`home_seeding_puts_nothing_host_dangerous_in_the_scratch_dir`] |
//! | a metacopy redirect with `..` read any host file into the archive, and its size-mismatch error told the size of the file; a NUL byte in a redirect panicked | [`metacopy_redirects_are_resolved_beneath_the_lower_dirs_only`] |
//! | archives and sidecars were 0644 in 0755 directories: a home's `~/.ssh/id_rsa` was readable by every local user | [`archives_are_private_unless_the_config_shares_them_with_a_group`] |
//! | `inspect` read PAX headers whole: a 1 MB archive made it use 1.1 GB | [`inspect_refuses_a_huge_pax_header_without_reading_it`] |
//! | a sparse file's holes were read byte by byte (4 GiB of holes: 19 s) | [`sparse_files_are_committed_without_reading_their_holes`] |

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use freezeframe_tests::containers::*;
use freezeframe_tests::*;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

// ---------------------------------------------------------------------------
// Building blocks

/// `(uid, gid, mode & 0o7777)` of a path, not following a symlink.
fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn xattr_of(p: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(p, name).unwrap_or_else(|e| panic!("getxattr {name} {}: {e}", p.display()))
}

/// A bundle whose rootfs is an overlay over `lowers` (topmost first).
struct Bundle {
    dir: PathBuf,
    _ovl: Overlay,
}

impl Bundle {
    fn new(dir: &Path, lowers: &[&Path], binds: &[(&str, &Path)]) -> Bundle {
        let ovl = Overlay::mount(lowers, "");
        let dir = dir.join("bundle");
        write_bundle_config(&dir, &ovl.merged, &["sleep", "100000"], binds, &[]);
        Bundle { dir, _ovl: ovl }
    }
}

/// A file capability (`cap_net_raw+ep`, version 2), in the format the kernel
/// checks.
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

// ---------------------------------------------------------------------------
// Item 1: home seeding

/// An image's home holds a setuid-root shell, a setgid file, a block device
/// `254:0` and `/dev/mem` (`1:1`), both 0666, a file with a capability and
/// `trusted.*` attributes, and the home itself is uid 4242's with mode 0777.
/// Before, `create` reproduced all of it in the host's scratch directory, and
/// gave that directory the image's owner and mode. Now the devices are left
/// out and named in the runtime's log, the setuid and setgid bits are gone,
/// the capability and `trusted.*` attributes stay behind, the scratch
/// directory keeps what the platform gave it, and regular content keeps its
/// owners, modes and `user.*` attributes.
#[test]
fn home_seeding_puts_nothing_host_dangerous_in_the_scratch_dir() {
    if !root_or_skip("home_seeding_puts_nothing_host_dangerous_in_the_scratch_dir") {
        return;
    }
    let dir = tempdir("hd-seed");
    let d = dir.path();
    let lower = d.join("lower");
    populate_busybox(&lower);
    let top = d.join("hostile");
    let h = top.join("home/work");
    mkdirs(&h.join("dev"));
    fs::copy(BUSYBOX, h.join("rootshell")).expect("cp busybox");
    chown(&h.join("rootshell"), 0, 0);
    chmod(&h.join("rootshell"), 0o4755);
    write(&h.join("groupie"), "#!/bin/sh\n");
    chown(&h.join("groupie"), 0, 42);
    chmod(&h.join("groupie"), 0o2755);
    let nodes = [
        ("dev/disk", SFlag::S_IFBLK, makedev(254, 0)),
        ("dev/mem", SFlag::S_IFCHR, makedev(1, 1)),
    ];
    for (name, kind, dev) in nodes {
        mknod(&h.join(name), kind, Mode::from_bits_truncate(0o666), dev).expect("mknod");
        chmod(&h.join(name), 0o666);
    }
    write(&h.join("pinger"), "#!/bin/sh\n");
    chmod(&h.join("pinger"), 0o755);
    xattr::set(h.join("pinger"), "security.capability", &CAP_NET_RAW).expect("setcap");
    xattr::set(h.join("pinger"), "trusted.origin", b"image").expect("setxattr");
    xattr::set(h.join("pinger"), "user.origin", b"image").expect("setxattr");
    write(&h.join("notes"), "mine\n");
    chown(&h.join("notes"), 1000, 1000);
    chmod(&h.join("notes"), 0o640);
    chown(&h, 4242, 4242);
    chmod(&h, 0o777);
    xattr::set(&h, "user.home", b"image").expect("setxattr");

    // The scratch home as a platform makes it: the session user's, private.
    let scratch = d.join("scratch-home");
    mkdirs(&scratch);
    chown(&scratch, 1000, 1000);
    chmod(&scratch, 0o700);
    let bundle = Bundle::new(d, &[&top, &lower], &[("/home/work", &scratch)]);
    let c = FfContainer::new(
        unique_id("hd-seed"),
        Some(d.join("state")),
        d.join("create.log"),
    );
    let created = c.create(&bundle.dir, &[]).ok();

    assert_eq!(
        owner_mode(&scratch),
        (1000, 1000, 0o700),
        "the scratch dir itself"
    );
    assert_eq!(
        xattr_of(&scratch, "user.home"),
        None,
        "the scratch dir itself"
    );
    assert!(scratch.join("dev").is_dir(), "{:?}", dir_names(&scratch));
    assert_eq!(dir_names(&scratch.join("dev")), Vec::<String>::new());
    assert!(
        created.stderr.contains("left out 2 device node(s)")
            && created.stderr.contains("/home/work/dev/disk")
            && created.stderr.contains("/home/work/dev/mem"),
        "the devices are not listed in the runtime's log:\n{created}"
    );
    assert_eq!(owner_mode(&scratch.join("rootshell")), (0, 0, 0o755));
    assert_eq!(owner_mode(&scratch.join("groupie")), (0, 42, 0o755));
    let pinger = scratch.join("pinger");
    assert_eq!(xattr_of(&pinger, "security.capability"), None);
    assert_eq!(xattr_of(&pinger, "trusted.origin"), None);
    assert_eq!(xattr_of(&pinger, "user.origin"), Some(b"image".to_vec()));
    assert_eq!(owner_mode(&scratch.join("notes")), (1000, 1000, 0o640));
    assert_eq!(read(&scratch.join("notes")), "mine\n");
}

// ---------------------------------------------------------------------------
// Items 5 and 13: metacopy redirects

/// With `userxattr`, whoever owns the upper dir sets `user.overlay.*`. Before,
/// a metacopy file whose `user.overlay.redirect` climbed out of the lower dir
/// put a root-only file into the archive, a wrong size made the error tell
/// the file's size, and a NUL byte in the redirect panicked. Now each is
/// refused with an error that names the file and the redirect, tells nothing
/// of what is outside, and writes no archive; a redirect inside the lower
/// dir still gives its data.
#[test]
fn metacopy_redirects_are_resolved_beneath_the_lower_dirs_only() {
    if !root_or_skip("metacopy_redirects_are_resolved_beneath_the_lower_dirs_only") {
        return;
    }
    let dir = tempdir("hd-redirect");
    let d = dir.path();
    let (upper, lower) = (d.join("upper"), d.join("lower"));
    mkdirs(&upper.join("home/work"));
    mkdirs(&lower.join("home/work"));
    let data = "x".repeat(54321);
    write(&lower.join("home/work/data"), &data);
    // A root-only file outside the lower dir, of a size found nowhere else.
    let secret = d.join("host/shadow");
    mkdirs(secret.parent().unwrap());
    write(&secret, "s".repeat(40961));
    chmod(&secret, 0o600);
    let f = upper.join("home/work/f");
    write(&f, "");
    xattr::set(&f, "user.overlay.metacopy", b"").expect("setxattr");
    let commit = |n: &str| {
        let archive = d.join(format!("{n}.tar"));
        let out = OfflineCommit::new(&upper)
            .lower(&lower)
            .userxattr()
            .compression("none")
            .output(&archive)
            .run();
        (out, archive)
    };

    for (n, redirect, size) in [
        ("climb", &b"../../../host/shadow"[..], 40961),
        ("absolute-climb", b"/home/../../host/shadow", 40961),
        ("wrong-size", b"/../host/shadow", 1),
        ("nul", b"/home/work/da\0ta", 54321),
    ] {
        nix::unistd::truncate(&f, size).expect("truncate");
        xattr::set(&f, "user.overlay.redirect", redirect).expect("setxattr");
        let (out, archive) = commit(n);
        assert!(
            !out.success() && out.status.code() == Some(1),
            "{n}: not a clean failure:\n{out}"
        );
        assert!(
            out.stderr.contains("home/work/f")
                && out.stderr.contains("user.overlay.redirect")
                && out.stderr.contains("beneath the lower dirs"),
            "{n}: the error does not say what was refused:\n{out}"
        );
        assert!(
            !out.stderr.contains("40961") && !out.stderr.contains("panicked"),
            "{n}:\n{out}"
        );
        assert!(!archive.exists(), "{n}: an archive was written");
    }

    // Inside the lower dir, the data is read; a wrong size tells no other.
    xattr::set(&f, "user.overlay.redirect", b"data").expect("setxattr");
    nix::unistd::truncate(&f, 7).expect("truncate");
    let (out, _) = commit("inside-wrong-size");
    assert!(
        !out.success() && out.stderr.contains("has size 7") && !out.stderr.contains("54321"),
        "{out}"
    );
    nix::unistd::truncate(&f, 54321).expect("truncate");
    let (out, archive) = commit("inside");
    out.ok();
    inspect(&archive).ok();
    let bytes = fs::read(&archive).expect("read the archive");
    assert!(
        bytes.windows(data.len()).any(|w| w == data.as_bytes()),
        "the lower's data is not in the archive"
    );
}

// ---------------------------------------------------------------------------
// Item 6: who may read an archive

/// Whether `uid:gid` may read `path` (std drops root's supplementary groups
/// as it sets the uid).
fn readable_as(uid: u32, gid: u32, path: &Path) -> bool {
    Command::new("cat")
        .arg(path)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run cat")
        .status
        .success()
}

/// A home holding `~/.ssh/id_rsa` (0600) is committed. Before, the archive and
/// its sidecar were 0644, so every local user could read the key out of it.
/// Now they are 0600 by default; `[storage] archive_mode` and `archive_group`
/// share them with one group (the platform's agent), and no one else.
#[test]
fn archives_are_private_unless_the_config_shares_them_with_a_group() {
    if !root_or_skip("archives_are_private_unless_the_config_shares_them_with_a_group") {
        return;
    }
    let dir = tempdir("hd-modes");
    let d = dir.path();
    // Other users may search the way to the archives, as a save location's.
    chmod(d, 0o755);
    let (upper, home) = (d.join("upper"), d.join("home"));
    mkdirs(&upper.join("etc"));
    write(&upper.join("etc/motd"), "hello\n");
    mkdirs(&home.join(".ssh"));
    write(
        &home.join(".ssh/id_rsa"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    );
    chmod(&home.join(".ssh/id_rsa"), 0o600);
    chown(&home.join(".ssh/id_rsa"), 1000, 1000);
    let (nobody, nogroup, agents) = (65534, 65534, 65533);

    let default = d.join("default.tar");
    OfflineCommit::new(&upper)
        .home(&home)
        .output(&default)
        .run()
        .ok();
    let sidecar = d.join("default.tar.sha256");
    assert_eq!(owner_mode(&default), (0, 0, 0o600));
    assert_eq!(owner_mode(&sidecar), (0, 0, 0o600));
    assert!(readable_as(0, 0, &default));
    assert!(
        !readable_as(nobody, nogroup, &default),
        "another user reads the archive"
    );
    assert!(!readable_as(nobody, nogroup, &sidecar));

    // Shared with the agent's group, by configuration.
    let config = d.join("config.toml");
    write(
        &config,
        format!(
            "[storage]\nsave_location = {:?}\narchive_mode = \"0640\"\narchive_group = {agents}\n",
            d.join("save").display().to_string()
        ),
    );
    let shared = d.join("shared.tar");
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(&config)
        .arg("commit")
        .arg("--upper")
        .arg(&upper)
        .arg("--home")
        .arg(&home)
        .arg("-o")
        .arg(&shared)
        .env_remove("FREEZEFRAME_CONFIG");
    run(&mut cmd).ok();
    assert_eq!(owner_mode(&shared), (0, agents, 0o640));
    assert_eq!(owner_mode(&d.join("shared.tar.sha256")), (0, agents, 0o640));
    assert!(
        readable_as(nobody, agents, &shared),
        "the agent's group cannot read it"
    );
    assert!(
        !readable_as(nobody, nogroup, &shared),
        "another user reads the archive"
    );
    assert!(
        !d.join("save").exists(),
        "an offline commit made the save location"
    );

    // A mode that would lock the owner out is refused, naming the key.
    write(&config, "[storage]\narchive_mode = \"0044\"\n");
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(&config)
        .args(["commit", "--upper"])
        .arg(&upper)
        .arg("-o")
        .arg(d.join("refused.tar"))
        .env_remove("FREEZEFRAME_CONFIG");
    let refused = run(&mut cmd);
    assert!(
        !refused.success() && refused.stderr.contains("storage.archive_mode"),
        "{refused}"
    );
}

// ---------------------------------------------------------------------------
// Item 12: PAX headers in the reader behind `inspect`

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// An OCI archive of one image whose only layer (gzip) is `layer`.
fn one_layer_archive(path: &Path, layer: &[u8], diff_id: &str) {
    let layer_hex = sha256_hex(layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    })
    .to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(config.as_bytes())),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{layer_hex}"),
            "size": layer.len(),
        }],
    })
    .to_string();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256_hex(manifest.as_bytes())),
            "size": manifest.len(),
        }],
    })
    .to_string();
    let mut b = tar::Builder::new(fs::File::create(path).expect("create the archive"));
    let mut add = |name: String, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("append");
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), index.as_bytes());
    add(
        format!("blobs/sha256/{}", sha256_hex(manifest.as_bytes())),
        manifest.as_bytes(),
    );
    add(
        format!("blobs/sha256/{}", sha256_hex(config.as_bytes())),
        config.as_bytes(),
    );
    add(format!("blobs/sha256/{layer_hex}"), layer);
    b.into_inner().expect("finish the archive");
}

/// A layer of about 1 MB, gzip of a tar whose one PAX extended header
/// declares 256 MiB. Before, `inspect` read the header whole (1.1 GB of RSS
/// for a 1 GiB one). Now the layer is a problem that names the header, and
/// `inspect` stays small.
#[test]
fn inspect_refuses_a_huge_pax_header_without_reading_it() {
    if !root_or_skip("inspect_refuses_a_huge_pax_header_without_reading_it") {
        return;
    }
    use std::io::Write as _;
    const PAX: u64 = 256 << 20;
    let dir = tempdir("hd-pax");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/f").expect("path");
    h.set_size(PAX);
    h.set_mode(0o644);
    h.set_cksum();
    // gzip -1 makes the layer in a second, where a debug build's own
    // compressor takes a minute.
    let mut gzip = Command::new("gzip")
        .args(["-1", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = gzip.stdin.take().expect("gzip's stdin");
    let header = h.as_bytes().to_vec();
    let feeder = std::thread::spawn(move || {
        stdin.write_all(&header)?;
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..PAX >> 20 {
            stdin.write_all(&chunk)?;
        }
        stdin.write_all(&[0u8; 1024])
    });
    let layer = gzip.wait_with_output().expect("gzip").stdout;
    feeder.join().expect("feeder").expect("feed gzip");
    assert!(layer.len() < 2 << 20, "{} bytes", layer.len());
    // The diffID is not the tar's: that is another problem, not this one.
    let diff_id = "0".repeat(64);
    let archive = dir.path().join("pax.tar");
    one_layer_archive(&archive, &layer, &diff_id);

    let mut time = Command::new("/usr/bin/time");
    time.args(["-f", "maxrss_kib=%M", "--"])
        .arg(bin())
        .args(["--config", "/dev/null", "inspect"])
        .arg(&archive)
        .env_remove("FREEZEFRAME_CONFIG");
    let out = run(&mut time);
    assert!(
        !out.success(),
        "a layer with a huge PAX header verified:\n{out}"
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("PAX extended header of 268435456 bytes"),
        "the problem does not name the header:\n{out}"
    );
    let rss_kib: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss from GNU time:\n{out}"));
    assert!(rss_kib < 64 * 1024, "inspect used {rss_kib} KiB:\n{out}");
}

// ---------------------------------------------------------------------------
// Item 8: sparse files

/// A 128 MiB file with 12 bytes of data (the finding's 4 GiB, made smaller for a
/// debug build). Before, the commit read all of it.
/// Now its holes are found with `SEEK_DATA`/`SEEK_HOLE` and written as zeros
/// without a read: the commit's reads (`/proc/PID/io` `rchar`, as GNU time
/// cannot show them) stay far below the file's size, and the layer holds the
/// file as it is.
#[test]
fn sparse_files_are_committed_without_reading_their_holes() {
    if !root_or_skip("sparse_files_are_committed_without_reading_their_holes") {
        return;
    }
    use std::io::{Seek, SeekFrom, Write as _};
    const SIZE: u64 = 128 << 20;
    let dir = tempdir("hd-sparse");
    let d = dir.path();
    let upper = d.join("upper");
    mkdirs(&upper);
    let path = upper.join("sparse.img");
    let mut f = fs::File::create(&path).expect("create");
    f.set_len(SIZE).expect("truncate");
    for (at, data) in [(0, b"head"), (SIZE / 2 + 3, b"mid!"), (SIZE - 4, b"tail")] {
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.write_all(data).expect("write");
    }
    drop(f);
    let blocks = fs::metadata(&path).expect("stat").blocks();
    if blocks * 512 >= SIZE {
        skip(
            "sparse_files_are_committed_without_reading_their_holes",
            "no holes here",
        );
        return;
    }

    // The commit, its bytes read counted by the kernel as it exits.
    let archive = d.join("sparse.tar");
    let script = "\"$@\" & pid=$!; rchar=0; while kill -0 $pid 2>/dev/null; do \
         r=$(sed -n 's/^rchar: //p' /proc/$pid/io 2>/dev/null); [ -n \"$r\" ] && rchar=$r; \
         sleep 0.05; done; wait $pid; code=$?; echo rchar=$rchar >&2; exit $code";
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(script).arg("sh");
    let out = OfflineCommit::new(&upper)
        .compression("zstd")
        .level("1")
        .output(&archive)
        .json()
        .run_under(&mut sh);
    assert!(out.success(), "{out}");
    let rchar: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("rchar="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rchar:\n{out}"));
    assert!(
        rchar < SIZE / 4,
        "the commit read {rchar} bytes of a 128 MiB file with 12 bytes of data"
    );

    let report = out.json();
    let layers = report["layers"].as_array().expect("layers");
    let top = layers.last().expect("a layer")["digest"]
        .as_str()
        .expect("digest");
    let layout = extract_archive(&archive, &d.join("x"));
    let entries = layer_entries(&blob_path(&layout, top));
    let e = entries
        .iter()
        .find(|e| e.path == b"sparse.img")
        .expect("sparse.img in the layer");
    assert_eq!(e.size, SIZE);
    assert_eq!(e.sha256, sha256_file(&path), "the layer's copy differs");
}
