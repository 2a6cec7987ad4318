//! `freezeframe demo`: the whole story on a throwaway session filesystem.
//!
//! Generates a small base image, mounts a real overlay over it, changes files
//! through the mount the way a user would (edits, deletions, a replaced
//! directory, links, a FIFO, xattrs), fills a scratch home with a vfolder mount
//! point in it, commits the lot, verifies the archive and prints what it holds.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use freezeframe_snapshot::changes::Change;
use freezeframe_snapshot::compress::{Algorithm, Settings};
use freezeframe_snapshot::image::ImageMeta;
use freezeframe_snapshot::source::ImageRef;
use freezeframe_snapshot::walk::{Exclude, Graft, Progress, TreeSpec};
use freezeframe_snapshot::{BaseBlobs, CommitRequest};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

#[derive(ClapArgs)]
pub struct Args {
    /// Work in DIR and keep it afterwards (default: a temporary directory, removed).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// gzip, zstd or none.
    #[arg(long, default_value = "gzip")]
    compression: Algorithm,
}

const HOME_PATH: &str = "/home/work";

pub fn run(a: Args) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo mounts an overlay filesystem: run it as root");
    }
    let (work, _cleanup) = match &a.keep {
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let t = tempfile_dir()?;
            (t.clone(), Some(RemoveDir(t)))
        }
    };
    println!("== work dir {}", work.display());

    let base_root = work.join("base-rootfs");
    make_base_rootfs(&base_root)?;
    let base_tar = work.join("base.tar");
    let mut meta = ImageMeta::now();
    meta.tag = Some("demo-base".into());
    meta.created_by = "freezeframe demo: generated base".into();
    meta.changes = vec![
        "ENV PATH=/bin:/usr/bin".parse::<Change>()?,
        "CMD [\"/bin/sh\"]".parse()?,
    ];
    let settings = Settings::new(a.compression);
    let no_cancel = AtomicBool::new(false);
    let base = freezeframe_snapshot::commit(
        &CommitRequest {
            trees: TreeSpec {
                upper: Some(base_root.clone()),
                ..TreeSpec::default()
            },
            base: None,
            base_blobs: BaseBlobs::Include,
            compression: settings,
            meta,
            output: base_tar.clone(),
            overwrite: true,
        },
        &Progress::default(),
        &no_cancel,
    )?;
    println!(
        "== base image {} ({} files)",
        base.archive.display(),
        base.files
    );

    let (upper, ovl_work, merged) = (
        work.join("upper"),
        work.join("ovl-work"),
        work.join("merged"),
    );
    for d in [&upper, &ovl_work, &merged] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        base_root.display(),
        upper.display(),
        ovl_work.display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .with_context(|| format!("mounting an overlay on {}", merged.display()))?;
    let mounted = Unmount(merged.clone());
    println!("== overlay mounted on {}", merged.display());
    change_session(&merged)?;
    let home = work.join("scratch-home");
    make_home(&home)?;
    drop(mounted);

    let output = work.join("session.tar");
    let mut meta = ImageMeta::now();
    meta.tag = Some("demo-session".into());
    meta.comment = Some("frozen by freezeframe demo".into());
    meta.changes = vec![
        "ENV FROZEN=1".parse()?,
        "LABEL ai.backend.demo=yes".parse()?,
    ];
    let report = freezeframe_snapshot::commit(
        &CommitRequest {
            trees: TreeSpec {
                upper: Some(upper),
                lowers: vec![base_root],
                grafts: vec![Graft {
                    at: HOME_PATH.into(),
                    source: home,
                }],
                exclude: Exclude::new(&[format!("{HOME_PATH}/data")])?,
                ..TreeSpec::default()
            },
            base: Some(ImageRef::Archive {
                file: base_tar,
                reference: Some("demo-base".into()),
            }),
            base_blobs: BaseBlobs::Include,
            compression: settings,
            meta,
            output: output.clone(),
            overwrite: true,
        },
        &Progress::default(),
        &no_cancel,
    )?;
    println!("== committed");
    super::commit::print_summary(&report);

    println!("\n== verifying {}", output.display());
    let inspection = freezeframe_snapshot::inspect::inspect(&output)?;
    print!("{inspection}");
    let layer = report.layers.last().context("the commit wrote no layer")?;
    println!("\n== the new layer ({}):", layer.digest);
    let entries = freezeframe_snapshot::inspect::layer_entries(&output, &layer.digest)?;
    for e in &entries {
        println!("  {e}");
    }
    let must = [
        "etc/motd",
        "opt/tools/.wh.b",
        "var/cache/old/.wh..wh..opq",
        "home/work/project/train.py",
    ];
    for m in must {
        if !entries
            .iter()
            .any(|e| e.split_whitespace().last() == Some(m))
        {
            bail!("the layer lacks {m}");
        }
    }
    if entries.iter().any(|e| e.contains("home/work/data/")) {
        bail!("the layer holds the vfolder's content");
    }
    if !inspection.is_ok() {
        bail!("{}: verification failed", output.display());
    }
    println!("\n== ok: rootfs changes and the scratch home are in the image, the vfolder is not");
    Ok(ExitCode::SUCCESS)
}

fn make_base_rootfs(root: &Path) -> Result<()> {
    let files: &[(&str, &str, u32)] = &[
        (
            "etc/os-release",
            "NAME=\"freezeframe demo\"\nID=demo\n",
            0o644,
        ),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nwork:x:1000:1000::/home/work:/bin/sh\n",
            0o644,
        ),
        ("etc/group", "root:x:0:\nwork:x:1000:\n", 0o644),
        ("etc/motd", "welcome to the base image\n", 0o644),
        ("etc/app.conf", "threads = 1\n", 0o644),
        ("usr/share/doc/README", "a generated base image\n", 0o644),
        ("opt/tools/a", "#!/bin/sh\necho a\n", 0o755),
        ("opt/tools/b", "#!/bin/sh\necho b\n", 0o755),
        ("var/cache/old/x", "stale\n", 0o644),
        ("var/cache/old/y", "stale\n", 0o644),
    ];
    for (path, body, mode) in files {
        write(&root.join(path), body.as_bytes(), *mode)?;
    }
    for d in ["bin", "home", "tmp", "root"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    let busybox = Path::new("/bin/busybox");
    if busybox.exists() {
        fs::copy(busybox, root.join("bin/busybox")).context("copying /bin/busybox")?;
        for tool in ["sh", "ls", "cat", "echo"] {
            symlink("busybox", root.join("bin").join(tool))?;
        }
    }
    Ok(())
}

/// What a user does inside a session, done through the overlay mount.
fn change_session(merged: &Path) -> Result<()> {
    let m = |p: &str| merged.join(p);
    write(&m("etc/motd"), b"welcome to a frozen session\n", 0o644)?;
    fs::set_permissions(m("etc/app.conf"), fs::Permissions::from_mode(0o600))?;
    write(&m("opt/newtool/run.sh"), b"#!/bin/sh\necho new\n", 0o755)?;
    fs::remove_file(m("opt/tools/b"))?;
    fs::remove_dir_all(m("var/cache/old"))?;
    fs::create_dir(m("var/cache/old"))?;
    write(&m("var/cache/old/fresh"), b"rebuilt\n", 0o644)?;
    fs::hard_link(m("opt/newtool/run.sh"), m("opt/newtool/run-again.sh"))?;
    symlink("../opt/newtool/run.sh", m("bin/newtool"))?;
    nix::unistd::mkfifo(&m("tmp/pipe"), Mode::from_bits_truncate(0o600))?;
    xattr::set(m("etc/motd"), "user.demo", b"kept")?;
    // The runtime creates the home mount point in the rootfs.
    fs::create_dir_all(m("home/work"))?;
    Ok(())
}

fn make_home(home: &Path) -> Result<()> {
    write(&home.join(".bashrc"), b"export PS1='frozen$ '\n", 0o644)?;
    write(
        &home.join("project/train.py"),
        b"print('training')\n",
        0o644,
    )?;
    write(&home.join("notes.md"), b"# notes\n", 0o600)?;
    // A vfolder's mount point: its content lives elsewhere and is left out.
    write(&home.join("data/dataset.bin"), &[0u8; 4096], 0o644)?;
    Ok(())
}

fn write(path: &Path, body: &[u8], mode: u32) -> Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn tempfile_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!("freezeframe-demo-{}-{i}", std::process::id()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
        }
    }
    bail!("could not create a work directory in {}", base.display())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
