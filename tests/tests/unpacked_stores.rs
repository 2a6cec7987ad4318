//! The readers of stores that keep layers unpacked, as root, against a real
//! containers-storage: podman with a private graph root builds an image of
//! several layers (`podman import`, then `podman build --network none`), and
//! the library reads it from disk. Every layer rebuilt from its tar-split
//! metadata hashes to the diffID podman reports; a base file modified on disk
//! fails naming the layer.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use freezeframe_snapshot::source::storage::ContainersStorage;
use freezeframe_snapshot::source::tarsplit;
use freezeframe_tests::containers::populate_busybox;
use freezeframe_tests::*;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// podman on a private graph root, run root and tmpdir, removed on drop.
struct PrivatePodman {
    dir: TempDir,
}

impl PrivatePodman {
    fn new() -> PrivatePodman {
        PrivatePodman {
            dir: tempfile::Builder::new()
                .prefix("ff-unpacked-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn graph_root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn args<I, S>(&self, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let d = self.dir.path();
        let mut a: Vec<OsString> = args![
            "--root",
            d.join("root"),
            "--runroot",
            d.join("run"),
            "--tmpdir",
            d.join("tmp"),
            "--storage-driver",
            "overlay",
            "--events-backend",
            "none",
        ];
        a.extend(args.into_iter().map(|s| s.as_ref().to_owned()));
        a
    }

    fn run<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        tool("podman", self.args(args))
    }
}

impl Drop for PrivatePodman {
    fn drop(&mut self) {
        for args in [
            args!["rm", "--all", "--force"],
            args!["rmi", "--all", "--force"],
        ] {
            let o = try_tool("podman", self.args(args));
            if !o.success() {
                eprintln!("cleanup: {}: {}", o.command, o.stderr);
            }
        }
        // Anything the store left mounted under its directory, deepest first.
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&dir))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Hashes what is written through it.
struct Hasher(Sha256, u64);

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn json_strings(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn podman_layers_are_rebuilt_to_their_diff_ids_and_a_modified_file_names_its_layer() {
    if !root_or_skip("podman_layers_are_rebuilt_to_their_diff_ids") {
        return;
    }
    let podman = PrivatePodman::new();
    let work = podman.dir.path();

    // The base: a busybox rootfs, with a name that is not UTF-8 and a file
    // larger than any copy buffer.
    let rootfs = work.join("rootfs");
    populate_busybox(&rootfs);
    write(
        &rootfs.join("etc").join(OsStr::from_bytes(b"caf\xe9")),
        "latin-1\n",
    );
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(rootfs.join("etc/big"), &big).unwrap();
    fs::set_permissions(rootfs.join("etc/big"), fs::Permissions::from_mode(0o600)).unwrap();
    let base_tar = work.join("base.tar");
    tool("tar", args!["-C", &rootfs, "-cf", &base_tar, "."]);
    podman.run(args![
        "import",
        &base_tar,
        "localhost/ff-unpacked-base:latest"
    ]);

    // Two layers on top: files added, one removed (a whiteout), one changed.
    let ctx = work.join("ctx");
    mkdirs(&ctx);
    write(
        &ctx.join("Containerfile"),
        "FROM localhost/ff-unpacked-base:latest\n\
         RUN echo two > /etc/two && rm /etc/group && mkdir -p /srv/d && echo x > /srv/d/f\n\
         RUN echo more >> /etc/passwd && ln -s two /etc/two-link && rm -r /srv/d\n",
    );
    podman.run(args![
        "build",
        "--runtime",
        "runc",
        "--network",
        "none",
        "-t",
        "localhost/ff-unpacked:latest",
        &ctx
    ]);
    podman.run(args![
        "create",
        "--name",
        "ff-unpacked-c",
        "localhost/ff-unpacked:latest",
        "true"
    ]);
    let expected = json_strings(
        &podman
            .run(args![
                "image",
                "inspect",
                "--format",
                "{{json .RootFS.Layers}}",
                "localhost/ff-unpacked:latest"
            ])
            .stdout,
    );
    assert_eq!(expected.len(), 3, "{expected:?}");
    let image_id = podman
        .run(args![
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "localhost/ff-unpacked:latest"
        ])
        .stdout
        .trim()
        .to_owned();

    // The library reads it all from disk.
    let store = ContainersStorage::new(podman.graph_root());
    let container = store
        .containers()
        .unwrap()
        .into_iter()
        .find(|c| c.names == ["ff-unpacked-c"])
        .expect("the container is listed");
    assert_eq!(container.image.as_deref(), Some(image_id.as_str()));
    assert_eq!(store.container(&container.id).unwrap(), Some(container));

    for reference in [
        "ff-unpacked",
        "localhost/ff-unpacked:latest",
        &image_id[..12],
    ] {
        let image = store.image(reference).unwrap();
        assert_eq!(image.name, "localhost/ff-unpacked:latest");
        assert_eq!(image.id, format!("sha256:{image_id}"));
        assert_eq!(image.config.rootfs().diff_ids(), &expected);
    }
    let image = store.image("ff-unpacked").unwrap();
    assert_eq!(
        image
            .layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    for layer in &image.layers {
        let mut hasher = Hasher(Sha256::new(), 0);
        let written = layer.write_tar(&mut hasher).unwrap();
        assert_eq!(written, hasher.1);
        assert_eq!(layer.tar_size().unwrap(), written);
        assert_eq!(
            format!("sha256:{}", hex::encode(hasher.0.finalize())),
            layer.diff_id
        );
    }
    let base = store.image("ff-unpacked-base").unwrap();
    assert_eq!(base.layers.len(), 1);
    assert_eq!(base.layers[0].id, image.layers[0].id);

    // A base file modified on disk, its size kept: the layer is named.
    let target = image.layers[0].diff_dir.join("etc/big");
    let mut changed = big.clone();
    changed[1_500_000] ^= 1;
    fs::write(&target, &changed).unwrap();
    let e = image.layers[0]
        .write_tar(&mut Hasher(Sha256::new(), 0))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, tarsplit::Error::Layer { id, source }
            if *id == image.layers[0].id && matches!(**source, tarsplit::Error::Checksum { .. })),
        "{msg}"
    );
    assert!(
        msg.contains(&image.layers[0].id) && msg.contains("etc/big"),
        "{msg}"
    );
    // The upper layers do not read it, and still rebuild.
    for layer in &image.layers[1..] {
        layer.write_tar(&mut Hasher(Sha256::new(), 0)).unwrap();
    }
}
