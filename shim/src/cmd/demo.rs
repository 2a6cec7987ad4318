//! `freezeframe demo`: the whole story, with freezeframe as the runtime.
//!
//! Generates a small base image, starts a session from it the way a platform
//! does (an overlay rootfs, a scratch home, a vfolder under the home) with
//! freezeframe as its OCI runtime, changes the rootfs and the home from inside,
//! commits the running session live, starts a second session from the archive
//! with a fresh, empty home, and shows that the changes and the home are there
//! and the vfolder's content is not.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, ensure, Context, Result};
use clap::Args as ClapArgs;
use freezeframe_snapshot::changes::Change;
use freezeframe_snapshot::compress::{Algorithm, Settings};
use freezeframe_snapshot::image::ImageMeta;
use freezeframe_snapshot::walk::{Progress, TreeSpec};
use freezeframe_snapshot::{BaseBlobs, CommitRequest};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chown, Gid, Uid};

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
/// The session user's uid and gid, as on Backend.AI.
const WORK_ID: u32 = 1000;

pub fn run(a: Args) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo mounts overlays and runs containers: run it as root");
    }
    for tool in ["umoci", "tar"] {
        ensure!(
            which(tool),
            "the demo unpacks images with {tool}: install it (scripts/deps.sh build)"
        );
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
    let base = freezeframe_snapshot::commit(
        &CommitRequest {
            trees: TreeSpec {
                upper: Some(base_root),
                ..TreeSpec::default()
            },
            base: None,
            stores: freezeframe::plan::stores(&freezeframe_config::Config::default()),
            base_blobs: BaseBlobs::Include,
            compression: Settings {
                algorithm: a.compression,
                level: freezeframe::plan::config_algorithm(a.compression).default_level(),
                threads: freezeframe_config::effective_threads(0),
            },
            meta,
            output: base_tar.clone(),
            overwrite: true,
        },
        &Progress::default(),
        &AtomicBool::new(false),
    )?;
    println!(
        "== base image {} ({} files)",
        base.archive.display(),
        base.files
    );

    let id = format!("freezeframe-demo-{}", std::process::id());
    let first = Session::start(&work, &format!("{id}-1"), &base_tar, "demo-base")?;
    let dataset = first.vfolder.join("dataset.csv");
    write(&dataset, b"a,b\n1,2\n", 0o644)?;
    chown(
        &dataset,
        Some(Uid::from_raw(WORK_ID)),
        Some(Gid::from_raw(WORK_ID)),
    )?;
    println!(
        "\n== session {} runs with freezeframe as its runtime",
        first.id
    );
    first.exec(&[], CHANGE_ROOTFS)?;
    first.exec(&["-u", "1000:1000"], CHANGE_HOME)?;
    println!("   changed the rootfs (as root) and the home (as uid {WORK_ID}) from inside");

    let frozen = work.join("frozen.tar");
    println!("\n== freezeframe commit {} (live)", first.id);
    let status = ff([
        OsStr::new("commit"),
        OsStr::new(&first.id),
        OsStr::new("--tag"),
        OsStr::new("demo-frozen"),
        OsStr::new("--compression"),
        OsStr::new(&a.compression.to_string()),
        OsStr::new("-o"),
        frozen.as_os_str(),
    ])
    .status()
    .context("running freezeframe commit")?;
    ensure!(status.success(), "freezeframe commit failed ({status})");
    let inspection = freezeframe_snapshot::inspect::inspect(&frozen)?;
    print!("{inspection}");
    ensure!(
        inspection.is_ok(),
        "{}: verification failed",
        frozen.display()
    );
    let still = first.exec(&[], "echo running")?;
    ensure!(
        still.trim() == "running",
        "the first session stopped during the commit"
    );
    drop(first);

    let second = Session::start(&work, &format!("{id}-2"), &frozen, "demo-frozen")?;
    println!(
        "\n== session {} started from {} with a fresh, empty home",
        second.id,
        frozen.display()
    );
    let seen = second.exec(&[], SHOW)?;
    print!("{seen}");
    for want in EXPECTED {
        ensure!(seen.contains(want), "the second session lacks {want:?}");
    }
    let train = second.home.join("project/train.py");
    let meta = fs::symlink_metadata(&train)
        .with_context(|| format!("the home was not seeded: {}", train.display()))?;
    ensure!(
        (meta.uid(), meta.gid()) == (WORK_ID, WORK_ID),
        "{} is owned by {}:{}",
        train.display(),
        meta.uid(),
        meta.gid()
    );
    println!(
        "\n== ok: the rootfs changes and the home came back (seeded into {}), the vfolder's content did not",
        second.home.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What a user does to the image, as root inside the session.
const CHANGE_ROOTFS: &str = "set -e
echo 'welcome to a frozen session' > /etc/motd
chmod 600 /etc/app.conf
rm /opt/tools/b
rm -r /var/cache/old && mkdir /var/cache/old && echo rebuilt > /var/cache/old/fresh
mkdir -p /opt/newtool && printf '#!/bin/sh\\necho new\\n' > /opt/newtool/run.sh
chmod 755 /opt/newtool/run.sh && ln -s /opt/newtool/run.sh /bin/newtool";

/// What the user does in the home, as the session user.
const CHANGE_HOME: &str = "set -e
mkdir -p /home/work/project
echo \"print('training')\" > /home/work/project/train.py
echo '# notes' > /home/work/notes.md && chmod 600 /home/work/notes.md
echo 'more rows' >> /home/work/data/dataset.csv";

/// What the second session shows of itself.
const SHOW: &str = "cat /etc/motd /var/cache/old/fresh /home/work/project/train.py
ls /opt/tools | sed 's/^/tool: /'
ls -ln /home/work/project/train.py | awk '{print \"train.py owner:\", $3\":\"$4}'
/bin/newtool
[ -e /var/cache/old/x ] || echo 'old cache: gone'
[ -e /home/work/data/dataset.csv ] || echo 'vfolder content: absent'";

const EXPECTED: &[&str] = &[
    "welcome to a frozen session",
    "rebuilt",
    "print('training')",
    "tool: a",
    "train.py owner: 1000:1000",
    "new",
    "old cache: gone",
    "vfolder content: absent",
];

/// A session as a platform runs one: the image unpacked (by umoci) under an
/// overlay, a scratch home, a vfolder at `~/data`, freezeframe as the runtime.
/// Dropping it deletes the container and unmounts the overlay.
struct Session {
    id: String,
    home: PathBuf,
    vfolder: PathBuf,
    merged: PathBuf,
}

impl Session {
    fn start(work: &Path, id: &str, archive: &Path, tag: &str) -> Result<Session> {
        let dir = work.join(id);
        let d = |n: &str| -> Result<PathBuf> {
            let p = dir.join(n);
            fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
            Ok(p)
        };
        let (layout, upper, ovl_work, merged, bundle, home, vfolder) = (
            d("layout")?,
            d("upper")?,
            d("ovl-work")?,
            d("merged")?,
            d("bundle")?,
            d("scratch-home")?,
            d("vfolder")?,
        );
        let lower = dir.join("lower");
        tool(
            "tar",
            [
                OsStr::new("-xf"),
                archive.as_os_str(),
                OsStr::new("-C"),
                layout.as_os_str(),
            ],
        )?;
        let mut image = layout.into_os_string();
        image.push(format!(":{tag}"));
        tool(
            "umoci",
            [
                OsStr::new("raw"),
                OsStr::new("unpack"),
                OsStr::new("--image"),
                &image,
                lower.as_os_str(),
            ],
        )?;
        chown(
            &home,
            Some(Uid::from_raw(WORK_ID)),
            Some(Gid::from_raw(WORK_ID)),
        )?;
        chown(
            &vfolder,
            Some(Uid::from_raw(WORK_ID)),
            Some(Gid::from_raw(WORK_ID)),
        )?;
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
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
        let session = Session {
            id: id.to_string(),
            home,
            vfolder,
            merged,
        };
        let mut image_ref = PathBuf::from("oci-archive:");
        image_ref.as_mut_os_string().push(archive);
        let config = spec(&session, &image_ref);
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        // The container inherits the runtime's stdio: a file, never a pipe that
        // would stay open as long as the session runs.
        let log_path = dir.join("run.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let status = ff([
            OsStr::new("run"),
            OsStr::new("-d"),
            OsStr::new("--bundle"),
            bundle.as_os_str(),
            OsStr::new(id),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running freezeframe run")?;
        ensure!(
            status.success(),
            "freezeframe run {id} failed: {}",
            fs::read_to_string(&log_path).unwrap_or_default()
        );
        Ok(session)
    }

    /// Runs `sh -c SCRIPT` in the session and returns what it printed.
    fn exec(&self, flags: &[&str], script: &str) -> Result<String> {
        let mut args: Vec<&OsStr> = vec![OsStr::new("exec")];
        args.extend(flags.iter().map(OsStr::new));
        args.extend([
            self.id.as_ref(),
            OsStr::new("sh"),
            OsStr::new("-c"),
            OsStr::new(script),
        ]);
        let out = ff(args)
            .stdin(Stdio::null())
            .output()
            .context("running freezeframe exec")?;
        ensure!(
            out.status.success(),
            "in {}: {script}: {}{}",
            self.id,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = ff(["delete", "--force", &self.id])
            .stderr(Stdio::null())
            .status();
        let _ = umount2(&self.merged, MntFlags::MNT_DETACH);
    }
}

/// The session's runtime spec: what a platform writes for containerd.
fn spec(s: &Session, image: &Path) -> serde_json::Value {
    let bind = |dst: &str, src: &Path| serde_json::json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rw"]});
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sleep", "100000"],
            "env": ["PATH=/bin:/usr/bin", "HOME=/home/work"],
            "cwd": "/",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "capabilities": {
                "bounding": CAPS, "effective": CAPS, "permitted": CAPS
            },
            "noNewPrivileges": true
        },
        "root": {"path": s.merged, "readonly": false},
        "hostname": "session",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            bind(HOME_PATH, &s.home),
            bind("/home/work/data", &s.vfolder)
        ],
        "annotations": {"org.freezeframe.image": image},
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Docker's default capabilities.
const CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// This very binary, for the runtime verbs and commit a platform would call.
fn ff<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("freezeframe"));
    let mut c = Command::new(exe);
    c.args(args);
    c
}

fn tool<I, S>(program: &str, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
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
    for d in ["bin", "home/work", "tmp", "root", "proc", "sys", "dev"] {
        fs::create_dir_all(root.join(d))?;
    }
    chown(
        &root.join("home/work"),
        Some(Uid::from_raw(WORK_ID)),
        Some(Gid::from_raw(WORK_ID)),
    )?;
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    let busybox = Path::new("/bin/busybox");
    fs::copy(busybox, root.join("bin/busybox"))
        .context("copying /bin/busybox (Debian's busybox-static)")?;
    let applets = Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" {
            symlink("busybox", root.join("bin").join(applet))?;
        }
    }
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

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
