//! Support for freezeframe's end-to-end tests: the binary under test, real overlay
//! mounts, snapshots of directory trees to compare, and the peers (umoci, skopeo,
//! GNU tar) used as oracles for what freezeframe writes.
//!
//! Everything here panics with a readable message on failure: these are test
//! helpers, and a panic is how a test reports.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::dir::Dir;
use nix::fcntl::{readlinkat, AtFlags, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstatat, major, minor, Mode, SFlag};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub use serde_json::Value;

pub mod containers;
pub mod docker;
pub mod live;
pub mod registry;
pub mod server;

// ---------------------------------------------------------------------------
// The binary under test

/// `mkdir -p`, panicking with the path.
pub fn mkdirs(p: &Path) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
}

/// Writes a file, panicking with the path.
pub fn write(p: &Path, content: impl AsRef<[u8]>) {
    fs::write(p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Reads a text file, panicking with the path.
pub fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// `chmod MODE PATH`, panicking with the mode and path.
pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// `chown -h UID:GID PATH` (a symlink itself, not its target), panicking with
/// the owner and path.
pub fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {uid}:{gid} {}: {e}", p.display()));
}

/// A path as text, to compare with a report's fields; panics unless UTF-8.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The `freezeframe` binary: `$FREEZEFRAME_BIN`, else `target/debug/freezeframe`
/// next to the test executable's `deps/` directory.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FREEZEFRAME_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FREEZEFRAME_BIN={} does not exist",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test>-<hash> → target/debug/freezeframe
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable has no grandparent");
    let p = dir.join("freezeframe");
    assert!(
        p.is_file(),
        "{} does not exist: run `cargo build -p freezeframe` first (or set FREEZEFRAME_BIN)",
        p.display()
    );
    p
}

/// Says why a test cannot run here: a skip on a developer's machine, a failure
/// under CI (`$CI` set), which runs as root with every tool installed, so a
/// skip there would hide a real problem. The one gate of every crate's tests.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: cannot run under CI: {why}");
    }
    eprintln!("skipping {test}: {why}");
}

/// True when the test can run as root; otherwise [`skip`]s it and returns false.
pub fn root_or_skip(name: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip(name, "needs root (overlay mounts, mknod, chown, cgroups)");
    }
    root
}

/// What a finished process said.
#[derive(Debug)]
pub struct Outcome {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics unless the process exited 0, showing what it said.
    pub fn ok(self) -> Self {
        assert!(self.status.success(), "{self}");
        self
    }

    /// Panics if the process exited 0.
    pub fn failed(self) -> Self {
        assert!(
            !self.status.success(),
            "expected a failure, got success:\n{self}"
        );
        self
    }

    /// stdout parsed as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n{}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// How long any one process may run before the test gives up on it (a commit
/// that opened a FIFO would otherwise hang the suite).
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits for `child` to exit; kills it and panics after [`PROCESS_TIMEOUT`].
pub fn wait_or_kill(child: &mut std::process::Child, command: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        kill_if_overdue(child, start, command);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// For wait loops that do more than wait: kills `child` and panics once it
/// has run [`PROCESS_TIMEOUT`] since `start`.
pub fn kill_if_overdue(child: &mut std::process::Child, start: Instant, command: &str) {
    if start.elapsed() > PROCESS_TIMEOUT {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command} still running after {PROCESS_TIMEOUT:?}; killed");
    }
}

/// Runs a command to completion, capturing its output; kills it and panics after
/// [`PROCESS_TIMEOUT`].
pub fn run(cmd: &mut Command) -> Outcome {
    run_fed(cmd, Stdio::null())
}

/// [`run`] with `stdin` as the command's standard input.
pub fn run_fed(cmd: &mut Command, stdin: impl Into<Stdio>) -> Outcome {
    let command = format!("{cmd:?}");
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    let (out, err) = drain_output(&mut child);
    let status = wait_or_kill(&mut child, &command);
    Outcome {
        command,
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `freezeframe` with the given arguments, isolated from any host configuration
/// (`--config /dev/null`: an empty file, all defaults).
pub fn freezeframe_cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(bin());
    c.arg("--config").arg("/dev/null").args(args);
    c.env_remove("FREEZEFRAME_CONFIG");
    c
}

/// Runs `freezeframe` with the given arguments.
pub fn freezeframe<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&mut freezeframe_cmd(args))
}

/// `commit --json ARGS`: the arguments of a commit whose report is read.
pub fn commit_json_args<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut all: Vec<OsString> = vec!["commit".into(), "--json".into()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
    all
}

/// `freezeframe commit --json ARGS`: asserts success and returns the report.
pub fn commit<I, S>(args: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    freezeframe(commit_json_args(args)).ok().json()
}

/// An offline `freezeframe commit --upper DIR …`: the upper dir and whatever else
/// is given, in the order given. [`OfflineCommit::commit`] asserts success and
/// returns the `--json` report; [`OfflineCommit::run`] returns the outcome.
///
/// ```no_run
/// # use freezeframe_tests::OfflineCommit;
/// # use std::path::Path;
/// # let (upper, home, archive) = (Path::new("u"), Path::new("h"), Path::new("a.tar"));
/// let report = OfflineCommit::new(upper)
///     .home(home)
///     .exclude("/home/work/data")
///     .tag("t")
///     .output(archive)
///     .commit();
/// ```
#[derive(Debug, Clone)]
#[must_use = "an invocation does nothing until it is run"]
pub struct OfflineCommit {
    json: bool,
    args: Vec<OsString>,
}

impl OfflineCommit {
    /// `--upper UPPER`.
    pub fn new(upper: impl AsRef<OsStr>) -> Self {
        OfflineCommit {
            json: false,
            args: Vec::new(),
        }
        .opt("--upper", upper)
    }

    fn opt(mut self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        self.args.push(flag.into());
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// `--lower DIR` (once per lower, topmost first).
    pub fn lower(self, dir: impl AsRef<OsStr>) -> Self {
        self.opt("--lower", dir)
    }

    /// `--home DIR`.
    pub fn home(self, dir: impl AsRef<OsStr>) -> Self {
        self.opt("--home", dir)
    }

    /// `--home-path PATH`.
    pub fn home_path(self, path: impl AsRef<OsStr>) -> Self {
        self.opt("--home-path", path)
    }

    /// `--exclude PATTERN`.
    pub fn exclude(self, pattern: impl AsRef<OsStr>) -> Self {
        self.opt("--exclude", pattern)
    }

    /// `--base REFERENCE`.
    pub fn base(self, reference: impl AsRef<OsStr>) -> Self {
        self.opt("--base", reference)
    }

    /// `--base-blobs MODE`.
    pub fn base_blobs(self, mode: impl AsRef<OsStr>) -> Self {
        self.opt("--base-blobs", mode)
    }

    /// `--tag TAG`.
    pub fn tag(self, tag: impl AsRef<OsStr>) -> Self {
        self.opt("--tag", tag)
    }

    /// `--change INSTRUCTION`.
    pub fn change(self, instruction: impl AsRef<OsStr>) -> Self {
        self.opt("--change", instruction)
    }

    /// `--author AUTHOR`.
    pub fn author(self, author: impl AsRef<OsStr>) -> Self {
        self.opt("--author", author)
    }

    /// `--message MESSAGE`.
    pub fn message(self, message: impl AsRef<OsStr>) -> Self {
        self.opt("--message", message)
    }

    /// `--compression ALGORITHM`.
    pub fn compression(self, algorithm: impl AsRef<OsStr>) -> Self {
        self.opt("--compression", algorithm)
    }

    /// `--level LEVEL`.
    pub fn level(self, level: impl AsRef<OsStr>) -> Self {
        self.opt("--level", level)
    }

    /// `--threads N`.
    pub fn threads(self, n: impl AsRef<OsStr>) -> Self {
        self.opt("--threads", n)
    }

    /// `--userxattr`.
    pub fn userxattr(self) -> Self {
        self.arg("--userxattr")
    }

    /// `--force`.
    pub fn force(self) -> Self {
        self.arg("--force")
    }

    /// `-o FILE`.
    pub fn output(self, file: impl AsRef<OsStr>) -> Self {
        self.opt("-o", file)
    }

    /// `--json`, right after `commit` (as [`commit`] passes it).
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }

    /// Any other argument, as it is.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Other arguments, as they are.
    pub fn args<I, S>(self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        args.into_iter().fold(self, Self::arg)
    }

    /// `commit [--json] ARGS`: the arguments after `freezeframe --config …`.
    pub fn argv(&self) -> Vec<OsString> {
        if self.json {
            return commit_json_args(&self.args);
        }
        let mut all: Vec<OsString> = vec!["commit".into()];
        all.extend(self.args.iter().cloned());
        all
    }

    /// The command, not started, as [`freezeframe_cmd`] makes it.
    pub fn cmd(&self) -> Command {
        freezeframe_cmd(self.argv())
    }

    /// Runs `WRAPPER BIN --config /dev/null commit …`: the commit under another
    /// program (`prlimit`, GNU `time`), isolated as [`freezeframe_cmd`] isolates
    /// it, whatever its exit status.
    pub fn run_under(&self, wrapper: &mut Command) -> Outcome {
        wrapper
            .arg(bin())
            .arg("--config")
            .arg("/dev/null")
            .args(self.argv())
            .env_remove("FREEZEFRAME_CONFIG");
        run(wrapper)
    }

    /// Runs it, whatever its exit status.
    pub fn run(&self) -> Outcome {
        run(&mut self.cmd())
    }

    /// Runs it with `--json`: asserts success and returns the report.
    pub fn commit(&self) -> Value {
        self.clone().json().run().ok().json()
    }
}

/// `freezeframe inspect FILE`.
pub fn inspect(archive: &Path) -> Outcome {
    freezeframe([OsStr::new("inspect"), archive.as_os_str()])
}

/// Builds an argument list from anything path- or string-like.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        vec![$(::std::ffi::OsString::from($a)),*]
    };
}

// ---------------------------------------------------------------------------
// Peers

/// Runs a peer tool and asserts it succeeded.
pub fn tool<I, S>(program: &str, args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(program).args(args)).ok()
}

/// Runs a peer tool, whatever its exit status.
pub fn try_tool<I, S>(program: &str, args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(program).args(args))
}

/// A base image built by umoci itself, so the base is a peer's work.
pub struct BaseImage {
    /// The OCI image layout directory.
    pub layout: PathBuf,
    pub tag: String,
    /// The base unpacked by umoci from the repacked image: exactly what the image
    /// holds, used as the overlay's lower dir.
    pub rootfs: PathBuf,
}

impl BaseImage {
    /// `umoci init` + `new` + `unpack`, `populate(rootfs)`, `umoci repack`, then a
    /// fresh `umoci unpack` whose rootfs becomes [`BaseImage::rootfs`] (umoci's
    /// repack drops sub-second mtimes, so the populated tree is not the image).
    pub fn build(dir: &Path, populate: impl FnOnce(&Path)) -> BaseImage {
        let layout = dir.join("base-layout");
        let tag = "base".to_string();
        let image = image_arg(&layout, &tag);
        tool("umoci", args!["init", "--layout", &layout]);
        tool("umoci", args!["new", "--image", &image]);
        let bundle = dir.join("base-bundle");
        tool("umoci", args!["unpack", "--image", &image, &bundle]);
        populate(&bundle.join("rootfs"));
        tool("umoci", args!["repack", "--image", &image, &bundle]);
        fs::remove_dir_all(&bundle).expect("removing the base bundle");
        let lower = dir.join("lower-bundle");
        tool("umoci", args!["unpack", "--image", &image, &lower]);
        BaseImage {
            layout,
            tag,
            rootfs: lower.join("rootfs"),
        }
    }

    /// `--base` value: `oci-layout:DIR:TAG`.
    pub fn reference(&self) -> OsString {
        let mut s = OsString::from("oci-layout:");
        s.push(image_arg(&self.layout, &self.tag));
        s
    }

    /// `umoci config --image LAYOUT:TAG ARGS` (changes the base's config in place).
    pub fn umoci_config<I, S>(&self, args: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut a: Vec<OsString> = args!["config", "--image", image_arg(&self.layout, &self.tag)];
        a.extend(args.into_iter().map(|s| s.as_ref().to_owned()));
        tool("umoci", a);
    }
}

fn image_arg(layout: &Path, tag: &str) -> OsString {
    let mut s = layout.as_os_str().to_owned();
    s.push(":");
    s.push(tag);
    s
}

/// Extracts `archive` (an OCI image layout in a tar) into `dir/layout` with GNU
/// tar and unpacks the image tagged `tag` with umoci into `dir/bundle`; returns
/// the bundle's rootfs. Panics if either peer refuses.
pub fn unpack_archive(archive: &Path, tag: &str, dir: &Path) -> PathBuf {
    let out = try_unpack_archive(archive, tag, dir);
    assert!(
        out.success(),
        "umoci could not unpack {}:\n{out}",
        archive.display()
    );
    dir.join("bundle/rootfs")
}

/// [`unpack_archive`] that returns umoci's outcome instead of asserting it.
pub fn try_unpack_archive(archive: &Path, tag: &str, dir: &Path) -> Outcome {
    let layout = extract_archive(archive, dir);
    try_tool(
        "umoci",
        args![
            "unpack",
            "--image",
            image_arg(&layout, tag),
            dir.join("bundle")
        ],
    )
}

/// Extracts the archive with GNU tar into `dir/layout` and returns that dir.
pub fn extract_archive(archive: &Path, dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    fs::create_dir_all(&layout).expect("mkdir layout");
    tool("tar", args!["-xf", archive, "-C", &layout]);
    layout
}

/// `oci-archive:FILE`: an archive as skopeo and `--base` name it.
pub fn oci_archive_ref(archive: &Path) -> OsString {
    let mut r = OsString::from("oci-archive:");
    r.push(archive);
    r
}

/// `skopeo inspect oci-archive:FILE` (the image's manifest, summarized), parsed.
pub fn skopeo_inspect(archive: &Path) -> Value {
    tool("skopeo", args!["inspect", oci_archive_ref(archive)]).json()
}

/// `skopeo inspect --config oci-archive:FILE`: the image config, parsed.
pub fn skopeo_config(archive: &Path) -> Value {
    tool(
        "skopeo",
        args!["inspect", "--config", oci_archive_ref(archive)],
    )
    .json()
}

/// One entry of a layer tar, as the `tar` crate reads it (PAX and GNU long names
/// resolved).
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// The stored path, without a trailing slash.
    pub path: Vec<u8>,
    pub kind: tar::EntryType,
    /// Symlink target or hardlink source.
    pub link: Option<Vec<u8>>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// sha256 of the entry's data, hex.
    pub sha256: String,
    /// PAX records (`SCHILY.xattr.*`, `mtime`, …) by key.
    pub pax: BTreeMap<String, Vec<u8>>,
}

/// Every entry of a layer blob (gzip, zstd or uncompressed, by magic number).
pub fn layer_entries(blob: &Path) -> Vec<LayerEntry> {
    let mut f = fs::File::open(blob).unwrap_or_else(|e| panic!("open {}: {e}", blob.display()));
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).expect("read magic");
    drop(f);
    let f = fs::File::open(blob).expect("reopen blob");
    let reader: Box<dyn Read> = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(f).expect("zstd decoder"))
    } else {
        Box::new(f)
    };
    let mut ar = tar::Archive::new(reader);
    let mut out = Vec::new();
    for e in ar
        .entries()
        .unwrap_or_else(|e| panic!("reading layer {}: {e}", blob.display()))
    {
        let mut e = e.unwrap_or_else(|e| panic!("reading layer {}: {e}", blob.display()));
        let mut pax = BTreeMap::new();
        if let Some(exts) = e.pax_extensions().expect("pax extensions") {
            for ext in exts {
                let ext = ext.expect("pax record");
                pax.insert(
                    String::from_utf8_lossy(ext.key_bytes()).into_owned(),
                    ext.value_bytes().to_vec(),
                );
            }
        }
        let mut path = e.path_bytes().into_owned();
        if path.len() > 1 && path.ends_with(b"/") {
            path.pop();
        }
        let h = e.header();
        let (kind, mode, uid, gid, size) = (
            h.entry_type(),
            h.mode().expect("mode"),
            h.uid().expect("uid"),
            h.gid().expect("gid"),
            e.size(),
        );
        let pax_id = |k: &str, header: u64| {
            pax.get(k)
                .map(|v| String::from_utf8_lossy(v).parse().expect("numeric pax id"))
                .unwrap_or(header)
        };
        let (uid, gid) = (pax_id("uid", uid), pax_id("gid", gid));
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let sha256 = sha256_reader(&mut e);
        out.push(LayerEntry {
            path,
            kind,
            link,
            mode,
            uid,
            gid,
            size,
            sha256,
            pax,
        });
    }
    out
}

/// A layer blob's diffID as the peers compute it: the sha256 (`sha256:…`) of what
/// `gzip -dc` or `zstd -dc` (by magic number) or `cat` writes.
pub fn peer_diff_id(blob: &Path) -> String {
    let mut magic = [0u8; 4];
    let n = fs::File::open(blob)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or_else(|e| panic!("read {}: {e}", blob.display()));
    let mut decompress = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Command::new("gzip")
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Command::new("zstd")
    } else {
        return format!("sha256:{}", sha256_file(blob));
    };
    let program = decompress.get_program().to_string_lossy().into_owned();
    let mut child = decompress
        .arg("-dc")
        .arg(blob)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let digest = sha256_reader(child.stdout.as_mut().expect("stdout"));
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "{program} -dc {} failed: {status}",
        blob.display()
    );
    format!("sha256:{digest}")
}

/// `skopeo copy oci-archive:FILE dir:DEST`, which checks every blob's digest.
pub fn skopeo_copy_to_dir(archive: &Path, dest: &Path) -> Outcome {
    let src = oci_archive_ref(archive);
    let mut dst = OsString::from("dir:");
    dst.push(dest);
    try_tool(
        "skopeo",
        args!["--insecure-policy", "copy", "--quiet", src, dst],
    )
}

/// The blob file of `digest` (`sha256:…`) inside an extracted layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

// ---------------------------------------------------------------------------
// Mounts

/// A real overlay mount over the given lower dirs, with its own upper, work and
/// merged dirs in a temp dir; lazily unmounted on drop, even when a test panics.
pub struct Overlay {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    // Dropped after `Drop::drop` unmounted the overlay.
    _dir: TempDir,
}

impl Overlay {
    /// Mounts an overlay over `lowers` (topmost first). `options` are extra mount
    /// options such as `redirect_dir=on,metacopy=on`, or "".
    pub fn mount(lowers: &[&Path], options: &str) -> Overlay {
        let dir = tempfile::Builder::new()
            .prefix("ff-overlay-")
            .tempdir()
            .expect("tempdir");
        let (upper, work, merged) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            fs::create_dir(d).expect("mkdir");
        }
        let lowerdir = lowers
            .iter()
            .map(|p| p.to_str().expect("utf-8 lower path"))
            .collect::<Vec<_>>()
            .join(":");
        let mut data = format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        if !options.is_empty() {
            data.push(',');
            data.push_str(options);
        }
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -t overlay -o {data} {}: {e}", merged.display()));
        Overlay {
            lowers: lowers.iter().map(|p| p.to_path_buf()).collect(),
            upper,
            work,
            merged,
            _dir: dir,
        }
    }

    /// `merged/rel`.
    pub fn m(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.merged.join(rel)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.merged, MntFlags::MNT_DETACH) {
            eprintln!("umount {}: {e}", self.merged.display());
        }
    }
}

/// A tmpfs of a given size (`2m`); lazily unmounted on drop.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: Option<TempDir>,
}

impl Tmpfs {
    /// Mounted on a fresh temp dir of its own.
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("ff-tmpfs-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("mnt");
        fs::create_dir(&path).expect("mkdir");
        let mut t = Tmpfs::mount_on(&path, size);
        t._dir = Some(dir);
        t
    }

    /// Mounted on an existing directory (e.g. a vfolder inside a home).
    pub fn mount_on(path: &Path, size: &str) -> Tmpfs {
        let data = format!("size={size},mode=0755");
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -t tmpfs -o {data} {}: {e}", path.display()));
        Tmpfs {
            path: path.to_path_buf(),
            _dir: None,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.path, MntFlags::MNT_DETACH) {
            eprintln!("umount {}: {e}", self.path.display());
        }
    }
}

/// A fresh temp dir for one test.
pub fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ff-{prefix}-"))
        .tempdir()
        .expect("tempdir")
}

/// Names in a directory, sorted (for "nothing was left behind" checks).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dirent")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Content helpers

/// Writes `len` bytes from `/dev/urandom` (incompressible content).
pub fn write_random(path: &Path, len: u64) {
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut r = fs::File::open("/dev/urandom")
        .expect("open /dev/urandom")
        .take(len);
    let n = std::io::copy(&mut r, &mut f).expect("copy random bytes");
    assert_eq!(n, len);
    f.flush().expect("flush");
}

/// sha256 of a file's content, hex.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    sha256_reader(&mut f)
}

fn sha256_reader(r: &mut impl Read) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// A path built from raw bytes (for non-UTF-8 names).
pub fn bytes_path(base: &Path, rel: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(rel))
}

/// A path's bytes shown readably: printable ASCII as is, the rest escaped.
pub fn show(path: &[u8]) -> String {
    let mut s = String::new();
    for &b in path {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Tree snapshots

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// One entry of a [`TreeSnapshot`]: everything an image must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits incl. setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files only (0 otherwise).
    pub size: u64,
    /// sha256 of a regular file's content.
    pub sha256: Option<String>,
    pub target: Option<Vec<u8>>,
    /// (major, minor) of a device.
    pub rdev: Option<(u64, u64)>,
    pub mtime: (i64, i64),
    /// Every extended attribute, by name (see [`TreeSnapshot::only_kept_xattrs`]).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// (st_dev, st_ino): paths sharing it (non-directories) are one hardlink group.
    pub inode: (u64, u64),
}

/// Every path of a tree (as container-style absolute byte paths, `/` for the
/// root) with its [`Node`]. Captured with fd-relative syscalls that never follow
/// a symlink, without recursion, so deep trees work.
#[derive(Debug, Clone, Default)]
pub struct TreeSnapshot {
    pub nodes: BTreeMap<Vec<u8>, Node>,
}

/// The xattrs an image layer keeps: `security.capability` and `user.*` except
/// `user.overlay.*`.
pub fn kept_xattr(name: &[u8]) -> bool {
    name == b"security.capability"
        || (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if p != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    path == prefix
        || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
        || prefix == b"/"
}

fn read_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) => panic!("listxattr {}: {e}", path.display()),
    };
    for name in names {
        if let Some(v) =
            xattr::get(path, &name).unwrap_or_else(|e| panic!("getxattr {}: {e}", path.display()))
        {
            m.insert(name.into_vec(), v);
        }
    }
    m
}

fn list_names(dir: &mut Dir) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = dir
        .iter()
        .map(|e| e.expect("readdir").file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    names.sort();
    names.reverse(); // popped from the end: visited in order
    names
}

fn node_from(st: &nix::sys::stat::FileStat, xattrs: BTreeMap<Vec<u8>, Vec<u8>>) -> Node {
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let kind = match fmt {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        SFlag::S_IFCHR => Kind::CharDevice,
        SFlag::S_IFBLK => Kind::BlockDevice,
        SFlag::S_IFIFO => Kind::Fifo,
        SFlag::S_IFSOCK => Kind::Socket,
        _ => panic!("unknown file type {:o}", st.st_mode),
    };
    Node {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if kind == Kind::File {
            st.st_size as u64
        } else {
            0
        },
        sha256: None,
        target: None,
        rdev: matches!(kind, Kind::CharDevice | Kind::BlockDevice)
            .then(|| (major(st.st_rdev), minor(st.st_rdev))),
        mtime: (st.st_mtime, st.st_mtime_nsec),
        xattrs,
        inode: (st.st_dev, st.st_ino),
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl TreeSnapshot {
    /// Records every path under `root` (the root itself as `/`).
    pub fn capture(root: &Path) -> TreeSnapshot {
        let mut nodes = BTreeMap::new();
        let mut rootdir = Dir::open(root, DIR_FLAGS, Mode::empty())
            .unwrap_or_else(|e| panic!("open {}: {e}", root.display()));
        let st = nix::sys::stat::fstat(rootdir.as_raw_fd()).expect("fstat root");
        nodes.insert(b"/".to_vec(), node_from(&st, read_xattrs(root)));

        struct Level {
            dir: Dir,
            path: Vec<u8>,
            names: Vec<Vec<u8>>,
        }
        let names = list_names(&mut rootdir);
        let mut stack = vec![Level {
            dir: rootdir,
            path: b"/".to_vec(),
            names,
        }];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.pop() else {
                stack.pop();
                continue;
            };
            let fd = top.dir.as_raw_fd();
            let path = join(&top.path, &name);
            let osname = OsStr::from_bytes(&name);
            let via_proc = PathBuf::from(format!("/proc/self/fd/{fd}")).join(osname);
            let st = fstatat(Some(fd), osname, AtFlags::AT_SYMLINK_NOFOLLOW)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", show(&path)));
            let mut node = node_from(&st, read_xattrs(&via_proc));
            match node.kind {
                Kind::File => {
                    let mut f = fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(OFlag::O_NOFOLLOW.bits())
                        .open(&via_proc)
                        .unwrap_or_else(|e| panic!("open {}: {e}", show(&path)));
                    node.sha256 = Some(sha256_reader(&mut f));
                }
                Kind::Symlink => {
                    let t = readlinkat(Some(fd), osname)
                        .unwrap_or_else(|e| panic!("readlink {}: {e}", show(&path)));
                    node.target = Some(t.into_vec());
                }
                Kind::Dir => {
                    let mut d = Dir::openat(Some(fd), osname, DIR_FLAGS, Mode::empty())
                        .unwrap_or_else(|e| panic!("open {}: {e}", show(&path)));
                    let names = list_names(&mut d);
                    nodes.insert(path.clone(), node);
                    stack.push(Level {
                        dir: d,
                        path,
                        names,
                    });
                    continue;
                }
                _ => {}
            }
            nodes.insert(path, node);
        }
        TreeSnapshot { nodes }
    }

    /// The node at a path (`/a/b`).
    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<&Node> {
        self.nodes.get(path.as_ref())
    }

    pub fn get_mut(&mut self, path: impl AsRef<[u8]>) -> Option<&mut Node> {
        self.nodes.get_mut(path.as_ref())
    }

    /// Keeps only the xattrs an image keeps ([`kept_xattr`]).
    pub fn only_kept_xattrs(mut self) -> Self {
        for n in self.nodes.values_mut() {
            n.xattrs.retain(|k, _| kept_xattr(k));
        }
        self
    }

    /// Keeps the entries for which `f` is true.
    pub fn retain(&mut self, mut f: impl FnMut(&[u8], &Node) -> bool) {
        self.nodes.retain(|p, n| f(p, n));
    }

    /// Removes `path` and everything under it.
    pub fn remove_subtree(&mut self, path: impl AsRef<[u8]>) {
        let p = path.as_ref();
        self.nodes.retain(|k, _| !is_under(k, p));
    }

    /// Replaces whatever is at `at` with `tree` (its `/` becomes `at`). Parents of
    /// `at` must exist already.
    pub fn graft(&mut self, at: impl AsRef<[u8]>, tree: TreeSnapshot) {
        let at = at.as_ref();
        self.remove_subtree(at);
        for (p, n) in tree.nodes {
            let path = if p == b"/" {
                at.to_vec()
            } else {
                let mut v = at.to_vec();
                v.extend_from_slice(&p);
                v
            };
            self.nodes.insert(path, n);
        }
    }

    /// Paths (other than `path`) sharing `path`'s inode, for non-directories.
    pub fn hardlinks_of(&self, path: &[u8]) -> BTreeSet<Vec<u8>> {
        let Some(n) = self.nodes.get(path) else {
            return BTreeSet::new();
        };
        if n.kind == Kind::Dir {
            return BTreeSet::new();
        }
        self.nodes
            .iter()
            .filter(|(p, o)| o.inode == n.inode && o.kind != Kind::Dir && p.as_slice() != path)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn link_groups(&self) -> BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> {
        let mut by_inode: BTreeMap<(u64, u64), Vec<&Vec<u8>>> = BTreeMap::new();
        for (p, n) in &self.nodes {
            if n.kind != Kind::Dir {
                by_inode.entry(n.inode).or_default().push(p);
            }
        }
        let mut out = BTreeMap::new();
        for paths in by_inode.values().filter(|v| v.len() > 1) {
            for p in paths {
                let others = paths
                    .iter()
                    .filter(|o| o != &p)
                    .map(|o| (*o).clone())
                    .collect();
                out.insert((*p).clone(), others);
            }
        }
        out
    }
}

fn show_xattrs(x: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let items: Vec<String> = x
        .iter()
        .map(|(k, v)| format!("{}={}", show(k), show(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn show_set(s: &BTreeSet<Vec<u8>>) -> String {
    let items: Vec<String> = s.iter().map(|p| show(p)).collect();
    format!("[{}]", items.join(", "))
}

/// Every difference between `expected` and `actual`, one readable line each;
/// empty when the trees match in every path, type, mode, owner, size, content,
/// link target, device number, mtime (to the nanosecond), xattr and hardlink
/// group.
pub fn diff(expected: &TreeSnapshot, actual: &TreeSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    let (ge, ga) = (expected.link_groups(), actual.link_groups());
    let none = BTreeSet::new();
    for (p, e) in &expected.nodes {
        let Some(a) = actual.nodes.get(p) else {
            out.push(format!("missing {}: {:?}", show(p), e.kind));
            continue;
        };
        let path = show(p);
        if e.kind != a.kind {
            out.push(format!(
                "{path}: type expected {:?}, got {:?}",
                e.kind, a.kind
            ));
            continue;
        }
        if e.mode != a.mode {
            out.push(format!(
                "{path}: mode expected {:04o}, got {:04o}",
                e.mode, a.mode
            ));
        }
        if (e.uid, e.gid) != (a.uid, a.gid) {
            out.push(format!(
                "{path}: owner expected {}:{}, got {}:{}",
                e.uid, e.gid, a.uid, a.gid
            ));
        }
        if e.size != a.size {
            out.push(format!("{path}: size expected {}, got {}", e.size, a.size));
        }
        if e.sha256 != a.sha256 {
            out.push(format!(
                "{path}: content differs (sha256 {:?} vs {:?})",
                e.sha256, a.sha256
            ));
        }
        if e.target != a.target {
            out.push(format!(
                "{path}: link target expected {:?}, got {:?}",
                e.target.as_deref().map(show),
                a.target.as_deref().map(show)
            ));
        }
        if e.rdev != a.rdev {
            out.push(format!(
                "{path}: device expected {:?}, got {:?}",
                e.rdev, a.rdev
            ));
        }
        if e.mtime != a.mtime {
            out.push(format!(
                "{path}: mtime expected {}.{:09}, got {}.{:09}",
                e.mtime.0, e.mtime.1, a.mtime.0, a.mtime.1
            ));
        }
        if e.xattrs != a.xattrs {
            out.push(format!(
                "{path}: xattrs expected {}, got {}",
                show_xattrs(&e.xattrs),
                show_xattrs(&a.xattrs)
            ));
        }
        let (le, la) = (ge.get(p).unwrap_or(&none), ga.get(p).unwrap_or(&none));
        if le != la {
            out.push(format!(
                "{path}: hardlinked with {} expected, got {}",
                show_set(le),
                show_set(la)
            ));
        }
    }
    for (p, a) in &actual.nodes {
        if !expected.nodes.contains_key(p) {
            out.push(format!("unexpected {}: {:?}", show(p), a.kind));
        }
    }
    out
}

/// Panics listing every difference, if any.
pub fn assert_same_tree(expected: &TreeSnapshot, actual: &TreeSnapshot, what: &str) {
    let d = diff(expected, actual);
    assert!(
        d.is_empty(),
        "{what}: {} difference(s):\n  {}",
        d.len(),
        d.join("\n  ")
    );
}

/// [`assert_same_tree`] for a tree unpacked from layers: a layer carries no
/// entry for `/`, so the unpacked root keeps the mtime it had before, and only
/// the root's mtime is taken from `actual`; its mode, owner and xattrs must
/// still agree.
pub fn assert_same_unpacked_tree(mut expected: TreeSnapshot, actual: &TreeSnapshot, what: &str) {
    expected.get_mut("/").expect("root").mtime = actual.get("/").expect("root").mtime;
    assert_same_tree(&expected, actual, what);
}

/// Reads a child's stdout and stderr to their ends on two threads, so neither
/// pipe can fill up and block it; join the handles for the text.
pub fn drain_output(
    child: &mut std::process::Child,
) -> (
    std::thread::JoinHandle<String>,
    std::thread::JoinHandle<String>,
) {
    fn drain(r: Option<Box<dyn Read + Send>>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    }
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    (out, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn set_mtime(p: &Path, sec: i64, nsec: i64) {
        use nix::sys::stat::{utimensat, UtimensatFlags};
        use nix::sys::time::TimeSpec;
        utimensat(
            None,
            p,
            &TimeSpec::UTIME_OMIT,
            &TimeSpec::new(sec, nsec),
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    /// The same small tree in `root`, all mtimes pinned.
    fn tree(root: &Path) {
        fs::create_dir_all(root.join("d/e")).unwrap();
        fs::write(root.join("d/f"), "content").unwrap();
        fs::hard_link(root.join("d/f"), root.join("g")).unwrap();
        fs::write(root.join(OsStr::from_bytes(b"odd\n\xff")), "x").unwrap();
        symlink("d/f", root.join("s")).unwrap();
        let odd = bytes_path(root, b"odd\n\xff");
        for p in [
            root.join("d/e"),
            root.join("d/f"),
            root.join("s"),
            odd,
            root.join("d"),
            root.to_path_buf(),
        ] {
            set_mtime(&p, 1_000, 5);
        }
    }

    fn pair() -> (TempDir, PathBuf, PathBuf) {
        let t = TempDir::new().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        tree(&a);
        tree(&b);
        (t, a, b)
    }

    fn diff_after(change: impl FnOnce(&Path)) -> Vec<String> {
        let (_t, a, b) = pair();
        change(&b);
        diff(&TreeSnapshot::capture(&a), &TreeSnapshot::capture(&b))
    }

    #[test]
    fn identical_trees_have_no_differences() {
        let (_t, a, b) = pair();
        let sa = TreeSnapshot::capture(&a);
        assert_eq!(diff(&sa, &TreeSnapshot::capture(&b)), Vec::<String>::new());
        assert_eq!(sa.nodes.len(), 7);
        assert_eq!(sa.hardlinks_of(b"/g"), BTreeSet::from([b"/d/f".to_vec()]));
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        type Change = Box<dyn FnOnce(&Path)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "mode",
                Box::new(|b| {
                    fs::set_permissions(b.join("d/f"), fs::Permissions::from_mode(0o4755)).unwrap()
                }),
                "/d/f: mode",
            ),
            (
                "content",
                Box::new(|b| {
                    fs::write(b.join("d/f"), "CONTENT").unwrap();
                    set_mtime(&b.join("d/f"), 1_000, 5)
                }),
                "/d/f: content differs",
            ),
            (
                "size",
                Box::new(|b| {
                    fs::write(b.join("d/f"), "longer content").unwrap();
                    set_mtime(&b.join("d/f"), 1_000, 5)
                }),
                "/d/f: size",
            ),
            (
                "mtime nsec",
                Box::new(|b| set_mtime(&b.join("d/e"), 1_000, 6)),
                "/d/e: mtime expected 1000.000000005, got 1000.000000006",
            ),
            (
                "xattr",
                Box::new(|b| xattr::set(b.join("d/f"), "user.k", b"v").unwrap()),
                "/d/f: xattrs",
            ),
            (
                "target",
                Box::new(|b| {
                    fs::remove_file(b.join("s")).unwrap();
                    symlink("d/e", b.join("s")).unwrap();
                    set_mtime(&b.join("s"), 1_000, 5)
                }),
                "/s: link target",
            ),
            (
                "hardlink",
                Box::new(|b| {
                    fs::remove_file(b.join("g")).unwrap();
                    fs::copy(b.join("d/f"), b.join("g")).unwrap();
                    set_mtime(&b.join("g"), 1_000, 5)
                }),
                "/g: hardlinked with",
            ),
            (
                "missing",
                Box::new(|b| fs::remove_file(b.join(OsStr::from_bytes(b"odd\n\xff"))).unwrap()),
                "missing /odd\\n\\xff",
            ),
            (
                "unexpected",
                Box::new(|b| fs::write(b.join("d/e/new"), "").unwrap()),
                "unexpected /d/e/new",
            ),
            (
                "type",
                Box::new(|b| {
                    fs::remove_file(b.join("s")).unwrap();
                    fs::write(b.join("s"), "").unwrap()
                }),
                "/s: type expected Symlink, got File",
            ),
        ];
        for (what, change, want) in cases {
            let d = diff_after(change);
            assert!(
                d.iter().any(|l| l.starts_with(want)),
                "{what}: no line starting with {want:?} in {d:#?}"
            );
        }
    }

    #[test]
    fn graft_and_remove_subtree_rewrite_paths() {
        let (_t, a, b) = pair();
        let mut s = TreeSnapshot::capture(&a);
        s.graft("/d/e", TreeSnapshot::capture(&b));
        assert!(s.get("/d/e/d/f").is_some());
        assert!(s.get("/d/e/s").is_some());
        s.remove_subtree("/d/e/d");
        assert!(s.get("/d/e/d").is_none() && s.get("/d/e/d/f").is_none());
        assert!(s.get("/d/e/s").is_some() && s.get("/d/f").is_some());
    }

    #[test]
    fn kept_xattrs_are_capability_and_user_but_not_overlay() {
        for (name, kept) in [
            ("security.capability", true),
            ("user.x", true),
            ("user.overlay.opaque", false),
            ("trusted.foo", false),
            ("trusted.overlay.opaque", false),
            ("security.selinux", false),
        ] {
            assert_eq!(kept_xattr(name.as_bytes()), kept, "{name}");
        }
    }
}
