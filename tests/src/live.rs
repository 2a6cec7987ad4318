//! Support for the live-commit tests: writers that keep changing a session while
//! it is committed, each keeping a property that holds at every single moment
//! (so that an image can be checked without seeing the freeze), the checks of
//! those properties on a tree, and a commit runner that stops the committer while
//! the session is frozen so that the frozen moment can be recorded.
//!
//! Every writer works in a directory `D` (one in the rootfs, one in the home) and
//! moves one step at a time, each step ending with a marker that is renamed into
//! place (so it is never torn). Given the marker `m`, the state of the
//! directory must be one of the few states between step `m` and step `m + 1`;
//! an image that mixes two moments (an old name from the first pass and a new one
//! from the frozen pass, a whiteout missed, a file read half-written) is none of
//! them.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::containers::{wait_until, Cgroups, RuncSession};
use crate::{commit_json_args, drain_output, freezeframe_cmd, Outcome, TreeSnapshot};

// ---------------------------------------------------------------------------
// The writers

/// How many numbered files a sequence writer keeps.
pub const SEQ_KEEP: u64 = 50;

/// The writers' directory in the rootfs and in the home (container paths).
/// Runtime mount points a [`RuncSession`] has no file for in the base: the
/// runtime made placeholders for them, and the image leaves them out.
pub const PLACEHOLDERS: [&str; 2] = ["/etc/resolv.conf", "/etc/hostname"];

/// What a live commit's image must be: the merged rootfs as the host sees it
/// with the home at /home/work, vfolders and the runtime's placeholders left
/// out.
pub fn expected_image(s: &RuncSession) -> TreeSnapshot {
    let mut e = TreeSnapshot::capture(&s.rootfs).only_kept_xattrs();
    e.graft(
        "/home/work",
        TreeSnapshot::capture(&s.home).only_kept_xattrs(),
    );
    e.remove_subtree("/home/work/data");
    e.remove_subtree("/home/work/.local");
    for p in PLACEHOLDERS {
        e.remove_subtree(p);
    }
    e
}

/// `s.target()` followed by `rest`: the arguments of a commit of `s`.
pub fn target_and(s: &RuncSession, rest: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    s.target()
        .into_iter()
        .chain(rest.iter().map(|a| a.as_ref().to_owned()))
        .collect()
}

pub const ROOT_DIR: &str = "/data";
pub const HOME_DIR: &str = "/home/work/w";

/// Bytes of one chunk of the big appender.
pub const CHUNK: usize = 65536;

/// The shell functions of every writer (busybox `sh`). Each runs forever.
///
/// - `seq_writer DIR renamed|direct`: step n writes file `n` (through `n.tmp`
///   and a rename, or directly), then renames `counter` (= n) into place, then
///   removes file `n - 50`.
/// - `mutator DIR`: in `DIR/mut`, step i renames a file across two directories
///   and a directory (`ren`), chmods a file and a directory and chowns the file
///   (`cm`), deletes and recreates a directory tree whose names change with i
///   (`rc`), replaces `x` by a file, a directory or a symlink in turn (`tf`),
///   adds a hard link and removes the previous one (`hl`), and replaces a
///   directory by a new one into which it moves its subdirectory, whose file is
///   never touched (`nest`); each part renames its own marker `m`.
/// - `appender`: appends line i to `/data/append.log`, then to
///   `/home/work/w/append.log`.
/// - `big_appender DIR USLEEP`: appends chunk i ("i\n" repeated, 64 KiB) to
///   `DIR/big.log`.
const WRITER_FUNCTIONS: &str = r#"
seq_writer() {
  d=$1; mkdir -p $d; n=0
  while :; do
    n=$((n+1))
    s=$(( (n * 7919) % 20000 + 1 ))
    if [ $2 = renamed ]; then
      yes $n | head -c $s > $d/$n.tmp
      mv $d/$n.tmp $d/$n
    else
      yes $n | head -c $s > $d/$n
    fi
    echo $n > $d/counter.tmp
    mv $d/counter.tmp $d/counter
    if [ $n -gt 50 ]; then rm $d/$((n-50)); fi
    usleep 2000
  done
}

mark() { echo $2 > $1/m.tmp; mv $1/m.tmp $1/m; }

cm_step() {
  c=$1/mut/cm
  case $(($2 % 8)) in
    0) fm=600; dm=700;; 1) fm=640; dm=750;; 2) fm=644; dm=755;; 3) fm=604; dm=711;;
    4) fm=400; dm=770;; 5) fm=660; dm=775;; 6) fm=664; dm=705;; 7) fm=444; dm=701;;
  esac
  chmod $fm $c/f
  chmod $dm $c/dir
  chown $(( $2 % 3 * 1000 )):$(( $2 % 2 * 1000 )) $c/f
  mark $c $2
}

rc_step() {
  r=$1/mut/rc
  rm -rf $r/d
  mkdir $r/d
  echo $2 > $r/d/a$2
  echo $2 > $r/d/b
  mkdir $r/d/sub
  echo $2 > $r/d/sub/c$2
  mark $r $2
}

tf_step() {
  t=$1/mut/tf
  rm -rf $t/x
  case $(($2 % 3)) in
    0) echo $2 > $t/x;;
    1) mkdir $t/x; echo $2 > $t/x/inner;;
    2) ln -s t$2 $t/x;;
  esac
  mark $t $2
}

mutator() {
  d=$1; m=$d/mut
  mkdir -p $m/ren/a $m/ren/b $m/ren/d1/sub $m/cm/dir $m/rc $m/tf $m/hl $m/nest/d/sub
  echo payload > $m/ren/a/f1; echo x > $m/ren/d1/x; echo y > $m/ren/d1/sub/y; mark $m/ren 1
  echo cm > $m/cm/f; cm_step $d 1
  rc_step $d 1
  tf_step $d 1
  echo linked > $m/hl/f; ln $m/hl/f $m/hl/l1; mark $m/hl 1
  echo y > $m/nest/d/sub/y; echo 1 > $m/nest/d/g; mark $m/nest 1
  i=1
  while :; do
    p=$i; i=$((i+1))
    if [ $((i % 2)) = 0 ]; then from=a; to=b; else from=b; to=a; fi
    mv $m/ren/$from/f$p $m/ren/$to/f$i
    mv $m/ren/d$p $m/ren/d$i
    mark $m/ren $i
    cm_step $d $i
    rc_step $d $i
    tf_step $d $i
    ln $m/hl/f $m/hl/l$i; rm $m/hl/l$p; mark $m/hl $i
    mkdir $m/nest/n; echo $i > $m/nest/n/g; mv $m/nest/d/sub $m/nest/n/sub
    rm -rf $m/nest/d; mv $m/nest/n $m/nest/d; mark $m/nest $i
    usleep 2000
  done
}

appender() {
  i=0
  while :; do
    i=$((i+1))
    echo $i >> /data/append.log
    echo $i >> /home/work/w/append.log
    usleep 2000
  done
}

# spread DIR N [US]: in each of N directories, appends a line to `log`, makes a
# new file and removes the one from two steps before, every US microseconds
# (50 ms): changes all over the tree during every pass.
spread() {
  i=0
  while :; do
    i=$((i+1))
    d=1
    while [ $d -le $2 ]; do
      [ -d $1/spread/d$d ] || mkdir -p $1/spread/d$d
      echo $i >> $1/spread/d$d/log
      : > $1/spread/d$d/f$i
      rm -f $1/spread/d$d/f$((i-2))
      d=$((d+1))
    done
    usleep ${3:-50000}
  done
}

# patcher DIR: a 2 MiB file that grows by 4 KiB and has 16 bytes of its
# first 2 MiB overwritten in place, every 20 ms: its metadata says only that
# it grew, so a reader that kept its prefix must check it.
patcher() {
  head -c 2097152 /dev/urandom > $1/patch.bin
  i=0
  while :; do
    i=$((i+1))
    dd if=/dev/urandom of=$1/patch.bin bs=16 count=1 seek=$(( (i * 7919) % 131072 )) conv=notrunc 2>/dev/null
    head -c 4096 /dev/urandom >> $1/patch.bin
    usleep 20000
  done
}

big_appender() {
  i=0
  while :; do i=$((i+1)); yes $i | head -c 65536 >> $1/big.log; usleep $2; done
}
"#;

/// Which writers to run.
#[derive(Debug, Clone, Copy)]
pub struct Writers {
    /// Sequence writers (both styles), mutators, writers spread over 50
    /// directories and patchers (a file changed in place as it grows) in
    /// both trees, and the cross-tree appender.
    pub checked: bool,
    /// Microseconds between the big appender's 64 KiB chunks (in the home);
    /// None: no big appender.
    pub big_every_us: Option<u64>,
}

/// The script that starts the chosen writers in the background and waits.
pub fn writers_script(w: Writers) -> String {
    let mut s = String::from(WRITER_FUNCTIONS);
    s.push_str(&format!("mkdir -p {ROOT_DIR} {HOME_DIR}\n"));
    if w.checked {
        for d in [ROOT_DIR, HOME_DIR] {
            s.push_str(&format!(
                "seq_writer {d}/seq-renamed renamed &\nseq_writer {d}/seq-direct direct &\nmutator {d} &\nspread {d} 50 &\npatcher {d} &\n"
            ));
        }
        s.push_str("appender &\n");
    }
    if let Some(us) = w.big_every_us {
        s.push_str(&format!("big_appender {HOME_DIR} {us} &\n"));
    }
    s.push_str("wait\n");
    s
}

/// `runc exec -d ID sh -c SCRIPT`: a process in the session that runs on after
/// this returns, its output going to `log` (never a pipe we would wait on).
pub fn exec_detached(s: &RuncSession, script: &str, log: &Path) {
    let out = fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let mut c = Command::new("runc");
    if let Some(r) = &s.runc_root {
        c.arg("--root").arg(r);
    }
    let status = c
        .args(["exec", "-d", &s.id, "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup log"))
        .stderr(out)
        .status()
        .expect("spawn runc exec -d");
    assert!(
        status.success(),
        "runc exec -d {} failed ({status}):\n{}",
        s.id,
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// The host path of a container path in a [`RuncSession`]: under the home's host
/// dir for `/home/work/...`, else under the merged rootfs.
pub fn host_path(s: &RuncSession, container: &str) -> PathBuf {
    match container.strip_prefix("/home/work/") {
        Some(rest) => s.home.join(rest),
        None => s.rootfs.join(container.trim_start_matches('/')),
    }
}

/// The number in file `path` ("n\n"), 0 if absent or torn.
pub fn read_number(path: &Path) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Where each checked writer stands in the live session (its counters and
/// rename markers as last written; `appended` left at 0).
pub fn progress(s: &RuncSession) -> Seen {
    let n = |p: &str| read_number(&host_path(s, p));
    Seen {
        seq: [
            n("/data/seq-renamed/counter"),
            n("/data/seq-direct/counter"),
            n("/home/work/w/seq-renamed/counter"),
            n("/home/work/w/seq-direct/counter"),
        ],
        mutator: [n("/data/mut/ren/m"), n("/home/work/w/mut/ren/m")],
        appended: (0, 0),
    }
}

/// Waits (up to 60 s) until every checked writer has gone past `steps` steps.
pub fn wait_for_writers(s: &RuncSession, steps: u64, log: &Path) {
    let ok = wait_until(Duration::from_secs(60), || {
        let p = progress(s);
        p.seq.iter().chain(&p.mutator).all(|&n| n > steps)
    });
    assert!(
        ok,
        "the writers did not get past step {steps} within 60 s: {:?}\nwriters' log:\n{}",
        progress(s),
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Incompressible bulk that makes the first pass take a while: `random` bytes in
/// one file under `/ballast` in the rootfs, and `small` files of 1 KiB under
/// `/home/work/ballast` (written from the host, before the commit).
pub fn add_ballast(s: &RuncSession, random: u64, small: usize) {
    let big = s.rootfs.join("ballast");
    fs::create_dir_all(&big).expect("mkdir ballast");
    crate::write_random(&big.join("random"), random);
    let many = s.home.join("ballast");
    for i in 0..small {
        let d = many.join(format!("{:03}", i / 500));
        if i % 500 == 0 {
            fs::create_dir_all(&d).expect("mkdir ballast dir");
        }
        fs::write(d.join(format!("{i:05}")), format!("{i:05}\n").repeat(170))
            .expect("write ballast file");
    }
}

/// Pages of the file a [`MappedWriter`] writes.
pub const MAPPED_PAGES: usize = 64;

/// A process in the session's cgroups (so frozen with it) that writes a file
/// only through a shared writable mapping: sweep i stores i (8 bytes, little
/// endian) at the start of each page in turn, so at any moment the pages hold
/// i up to some page and i - 1 after it. Once every page is dirty, the kernel
/// updates neither mtime nor ctime for these writes. Killed on drop.
pub struct MappedWriter {
    child: std::process::Child,
    cgroups: Cgroups,
}

const MAPPED_WRITER: &str = r#"
import mmap, os, sys, time
pages = int(sys.argv[2])
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, pages * 4096)
m = mmap.mmap(fd, pages * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
i = 0
while True:
    i += 1
    b = i.to_bytes(8, "little")
    for p in range(pages):
        m[p * 4096 : p * 4096 + 8] = b
    time.sleep(0.001)
"#;

impl MappedWriter {
    /// Starts `python3` writing `path` (a host path inside the session's tree)
    /// and moves it into the session's freezer and unified cgroups.
    pub fn start(path: &Path, cgroups: &Cgroups) -> MappedWriter {
        let child = Command::new("python3")
            .args(["-c", MAPPED_WRITER])
            .arg(path)
            .arg(MAPPED_PAGES.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn python3 (the mapped writer): {e}"));
        let w = MappedWriter {
            child,
            cgroups: cgroups.clone(),
        };
        for dir in [&cgroups.freezer, &cgroups.unified] {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, w.child.id().to_string())
                .unwrap_or_else(|e| panic!("echo {} > {}: {e}", w.child.id(), procs.display()));
        }
        w
    }
}

impl Drop for MappedWriter {
    fn drop(&mut self) {
        // A frozen process dies only once thawed.
        self.cgroups.thaw_quietly();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values at the start of each page of a [`MappedWriter`]'s file, checked
/// to be one moment of a sweep (i up to some page, i - 1 after; the rest of
/// each page zero). Returns the pages' values.
pub fn check_mapped(bytes: &[u8]) -> Result<Vec<u64>, String> {
    if bytes.len() != MAPPED_PAGES * 4096 {
        return Err(format!("the mapped file has {} bytes", bytes.len()));
    }
    let values: Vec<u64> = bytes
        .chunks(4096)
        .map(|p| u64::from_le_bytes(p[..8].try_into().expect("8 bytes")))
        .collect();
    let zeros = bytes.chunks(4096).all(|p| p[8..].iter().all(|&b| b == 0));
    let i = values[0];
    let k = values.iter().take_while(|&&v| v == i).count();
    let sweep = i > 0 && values[k..].iter().all(|&v| v + 1 == i);
    if zeros && sweep {
        Ok(values)
    } else {
        Err(format!(
            "the mapped file is no moment of a sweep: page values {values:?}"
        ))
    }
}

// ---------------------------------------------------------------------------
// Reading a tree

/// What a path is, for the writers' checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Other,
}

/// Every path under `dir` (relative, `a/b`), without following symlinks. Empty
/// if `dir` does not exist.
pub fn shapes(dir: &Path) -> BTreeMap<String, Shape> {
    let mut out = BTreeMap::new();
    fn visit(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Shape>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.expect("readdir");
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let p = e.path();
            let md =
                fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let shape = if md.is_dir() {
                visit(&p, &rel, out);
                Shape::Dir
            } else if md.file_type().is_symlink() {
                Shape::Symlink(
                    fs::read_link(&p)
                        .expect("readlink")
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if md.is_file() {
                Shape::File(fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
            } else {
                Shape::Other
            };
            out.insert(rel, shape);
        }
    }
    visit(dir, "", &mut out);
    out
}

fn line(n: u64) -> Vec<u8> {
    format!("{n}\n").into_bytes()
}

fn show_state(state: &BTreeMap<String, Shape>) -> String {
    let items: Vec<String> = state
        .iter()
        .map(|(p, s)| match s {
            Shape::Dir => format!("{p}/"),
            Shape::File(d) if d.len() <= 24 => format!("{p}={:?}", String::from_utf8_lossy(d)),
            Shape::File(d) => format!("{p}=<{} bytes>", d.len()),
            Shape::Symlink(t) => format!("{p}->{}", String::from_utf8_lossy(t)),
            Shape::Other => format!("{p}?"),
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// The marker `m` of a writer's part: present, whole, a number.
fn marker(state: &BTreeMap<String, Shape>, what: &str) -> Result<u64, String> {
    match state.get("m") {
        Some(Shape::File(d)) => std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.strip_suffix('\n'))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{what}: marker m is not a whole number: {d:?}")),
        other => Err(format!("{what}: no marker file m ({other:?})")),
    }
}

/// `m.tmp` if present: it must hold a prefix of "`next`\n".
fn marker_tmp(state: &BTreeMap<String, Shape>, next: u64, what: &str) -> Result<bool, String> {
    match state.get("m.tmp") {
        None => Ok(false),
        Some(Shape::File(d)) if line(next).starts_with(d) => Ok(true),
        Some(other) => Err(format!(
            "{what}: m.tmp is {other:?}, not a prefix of {next}"
        )),
    }
}

// ---------------------------------------------------------------------------
// The properties

/// Content of the sequence writers' file n: "n\n" repeated, cut at a size
/// derived from n.
pub fn seq_content(n: u64) -> Vec<u8> {
    let size = (n * 7919) % 20000 + 1;
    let unit = line(n);
    unit.iter().copied().cycle().take(size as usize).collect()
}

/// Chunk i of the big appender.
pub fn chunk(i: u64) -> Vec<u8> {
    line(i).iter().copied().cycle().take(CHUNK).collect()
}

/// A sequence writer's directory: a contiguous range of numbered files, each
/// whole (the newest may be partly written only by a direct writer that has not
/// moved its counter yet), the counter at the newest or one behind, and only
/// the files the writer's step allows. Returns the newest number.
pub fn check_sequence(dir: &Path, renamed: bool) -> Result<u64, String> {
    let what = dir.display().to_string();
    let state = shapes(dir);
    let mut nums = Vec::new();
    let mut tmp = None;
    let mut counter_tmp = None;
    let mut counter = None;
    for (name, shape) in &state {
        let Shape::File(data) = shape else {
            return Err(format!("{what}: {name} is not a file: {shape:?}"));
        };
        if let Ok(n) = name.parse::<u64>() {
            nums.push((n, data));
        } else if name == "counter" {
            counter = Some(data);
        } else if name == "counter.tmp" {
            counter_tmp = Some(data);
        } else if let Some(n) = name
            .strip_suffix(".tmp")
            .and_then(|n| n.parse::<u64>().ok())
        {
            if tmp.replace((n, data)).is_some() {
                return Err(format!("{what}: two .tmp files"));
            }
        } else {
            return Err(format!("{what}: unexpected {name}"));
        }
    }
    nums.sort_by_key(|(n, _)| *n);
    let names: Vec<u64> = nums.iter().map(|(n, _)| *n).collect();
    let (Some(&lo), Some(&hi)) = (names.first(), names.last()) else {
        return Err(format!("{what}: no numbered file"));
    };
    if hi - lo + 1 != names.len() as u64 {
        return Err(format!(
            "{what}: numbered files are not contiguous: {names:?}"
        ));
    }
    let c: u64 = counter
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|s| s.strip_suffix('\n'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what}: counter missing or not whole: {counter:?}"))?;
    if c != hi && c + 1 != hi {
        return Err(format!("{what}: counter {c} but files {lo}..={hi}"));
    }
    let keep_from = |newest: u64| newest.saturating_sub(SEQ_KEEP).max(1);
    // Before the counter moves to hi, file hi - 50 is still there; after, it may
    // be removed.
    let lo_ok = if c + 1 == hi {
        lo == keep_from(hi)
    } else {
        lo == keep_from(hi) || lo == keep_from(hi + 1)
    };
    if !lo_ok {
        return Err(format!(
            "{what}: with counter {c}, files {lo}..={hi} keep the wrong number of files"
        ));
    }
    for (n, data) in &nums {
        let want = seq_content(*n);
        let partial_ok = !renamed && *n == hi && c + 1 == hi;
        let ok = **data == want || (partial_ok && want.starts_with(data));
        if !ok {
            return Err(format!(
                "{what}: file {n} is torn or wrong: {} bytes, want {} (\"{n}\\n\" repeated)",
                data.len(),
                want.len()
            ));
        }
    }
    if let Some(d) = counter_tmp {
        if c + 1 != hi || !line(hi).starts_with(d) {
            return Err(format!(
                "{what}: counter.tmp {d:?} with counter {c} and files {lo}..={hi}"
            ));
        }
    }
    if let Some((n, d)) = tmp {
        if !renamed {
            return Err(format!("{what}: a .tmp file from a direct writer"));
        }
        let between_steps = c == hi && lo == keep_from(hi + 1) && counter_tmp.is_none();
        if n != hi + 1 || !between_steps || !seq_content(n).starts_with(d) {
            return Err(format!(
                "{what}: {n}.tmp ({} bytes) with counter {c} and files {lo}..={hi}",
                d.len()
            ));
        }
    }
    Ok(hi)
}

/// A state reached by steps (a directory, a file written, a symlink), as
/// (relative path, shape) in the order the writer makes them.
type Steps = Vec<(String, Shape)>;

/// The state of a part rebuilt every step: given marker m, either what step m
/// left minus some of it (closed under parents: `rm -rf` at work, or all gone),
/// or a prefix of what step m + 1 builds (its last file possibly half-written);
/// with `m.tmp` present, exactly what step m + 1 built.
fn check_rebuilt(dir: &Path, what: &str, steps: impl Fn(u64) -> Steps) -> Result<u64, String> {
    let what = format!("{}: {what}", dir.display());
    let mut state = shapes(dir);
    let m = marker(&state, &what)?;
    let tmp = marker_tmp(&state, m + 1, &what)?;
    state.remove("m");
    state.remove("m.tmp");
    let (cur, next) = (steps(m), steps(m + 1));
    let complete =
        |s: &[(String, Shape)]| -> BTreeMap<String, Shape> { s.iter().cloned().collect() };
    if tmp {
        return if state == complete(&next) {
            Ok(m)
        } else {
            Err(format!(
                "{what}: marker {m} and m.tmp, but the state is {}, not step {}'s {}",
                show_state(&state),
                m + 1,
                show_state(&complete(&next))
            ))
        };
    }
    let full = complete(&cur);
    let subset = state.iter().all(|(p, sh)| {
        full.get(p) == Some(sh)
            && p.rsplit_once('/')
                .is_none_or(|(parent, _)| state.contains_key(parent))
    });
    if subset {
        return Ok(m);
    }
    for k in 0..=next.len() {
        let mut cand = complete(&next[..k]);
        if cand == state {
            return Ok(m);
        }
        if let Some((p, Shape::File(want))) = next.get(k) {
            if let Some(Shape::File(got)) = state.get(p) {
                if want.starts_with(got) {
                    cand.insert(p.clone(), Shape::File(got.clone()));
                    if cand == state {
                        return Ok(m);
                    }
                }
            }
        }
    }
    Err(format!(
        "{what}: marker {m}, but the state {} is neither part of step {m}'s {} nor on the way to step {}'s {}",
        show_state(&state),
        show_state(&full),
        m + 1,
        show_state(&complete(&next))
    ))
}

fn steps(s: &[(&str, Shape)]) -> Steps {
    s.iter()
        .map(|(p, sh)| (p.to_string(), sh.clone()))
        .collect()
}

fn rc_steps(g: u64) -> Steps {
    let (a, c) = (format!("d/a{g}"), format!("d/sub/c{g}"));
    steps(&[
        ("d", Shape::Dir),
        (&a, Shape::File(line(g))),
        ("d/b", Shape::File(line(g))),
        ("d/sub", Shape::Dir),
        (&c, Shape::File(line(g))),
    ])
}

fn tf_steps(g: u64) -> Steps {
    match g % 3 {
        0 => steps(&[("x", Shape::File(line(g)))]),
        1 => steps(&[("x", Shape::Dir), ("x/inner", Shape::File(line(g)))]),
        _ => steps(&[("x", Shape::Symlink(format!("t{g}").into_bytes()))]),
    }
}

/// A directory replaced by a new one that takes over its subdirectory: given
/// marker m, `d` as step m left it (`g` = m, `sub/y`), then `n` made beside it
/// (`g` being written), then `sub` moved into `n`, then `d` removed (`rm -rf`,
/// part by part), then `n` renamed to `d`. `sub/y` is never written after the
/// first step, so only a layer that writes the whole of a replaced directory
/// keeps it.
fn check_nest(dir: &Path) -> Result<u64, String> {
    let what = format!("{}", dir.display());
    let mut state = shapes(dir);
    let m = marker(&state, &what)?;
    let tmp = marker_tmp(&state, m + 1, &what)?;
    state.remove("m");
    state.remove("m.tmp");
    let tree = |at: &str, g: Option<u64>, sub: bool| -> BTreeMap<String, Shape> {
        let mut t = BTreeMap::from([(at.to_string(), Shape::Dir)]);
        if let Some(g) = g {
            t.insert(format!("{at}/g"), Shape::File(line(g)));
        }
        if sub {
            t.insert(format!("{at}/sub"), Shape::Dir);
            t.insert(format!("{at}/sub/y"), Shape::File(b"y\n".to_vec()));
        }
        t
    };
    let (d, n): (BTreeMap<_, _>, BTreeMap<_, _>) = state
        .clone()
        .into_iter()
        .partition(|(p, _)| p.starts_with('d'));
    // `n` just made, its `g` not yet or partly written.
    let mut n_started = tree("n", None, false);
    if let Some(Shape::File(got)) = n.get("n/g") {
        if line(m + 1).starts_with(got) {
            n_started.insert("n/g".into(), Shape::File(got.clone()));
        }
    }
    // What `rm -rf` leaves of `d` once `sub` went: part of it, or nothing.
    let old = tree("d", Some(m), false);
    let d_part_of_old =
        d.iter().all(|(p, sh)| old.get(p) == Some(sh)) && (d.is_empty() || d.contains_key("d"));
    let ok = if tmp {
        state == tree("d", Some(m + 1), true)
    } else {
        state == tree("d", Some(m), true)
            || state == tree("d", Some(m + 1), true)
            || (d == tree("d", Some(m), true) && n == n_started)
            || (d_part_of_old && n == tree("n", Some(m + 1), true))
    };
    if ok {
        Ok(m)
    } else {
        Err(format!(
            "{what}: marker {m}{}, but the state {} is no moment of step {}",
            if tmp { " and m.tmp" } else { "" },
            show_state(&state),
            m + 1
        ))
    }
}

/// Renames: exactly one file `f<k>` (in `a/` for odd k, `b/` for even) and one
/// directory `d<j>` with their fixed content, (k, j) as step m or m + 1 leaves
/// them.
fn check_renames(dir: &Path) -> Result<u64, String> {
    let what = format!("{}", dir.display());
    let state = shapes(dir);
    let m = marker(&state, &what)?;
    let tmp = marker_tmp(&state, m + 1, &what)?;
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for (p, sh) in &state {
        let parts: Vec<&str> = p.split('/').collect();
        match parts.as_slice() {
            ["m" | "m.tmp" | "a" | "b"] => {}
            [side @ ("a" | "b"), name] => {
                let k: u64 = name
                    .strip_prefix('f')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("{what}: unexpected {p}"))?;
                if (k % 2 == 1) != (*side == "a") || *sh != Shape::File(b"payload\n".to_vec()) {
                    return Err(format!("{what}: {p} is {sh:?}"));
                }
                files.push(k);
            }
            [name] if name.starts_with('d') => {
                let j: u64 = name[1..]
                    .parse()
                    .map_err(|_| format!("{what}: unexpected {p}"))?;
                let want: BTreeMap<String, Shape> = [
                    ("x", Shape::File(b"x\n".to_vec())),
                    ("sub", Shape::Dir),
                    ("sub/y", Shape::File(b"y\n".to_vec())),
                ]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b))
                .collect();
                let got = shapes(&dir.join(name));
                if *sh != Shape::Dir || got != want {
                    return Err(format!("{what}: {p} holds {}", show_state(&got)));
                }
                dirs.push(j);
            }
            [first, ..] if first.starts_with('d') => {}
            _ => return Err(format!("{what}: unexpected {p}")),
        }
    }
    let (&[k], &[j]) = (files.as_slice(), dirs.as_slice()) else {
        return Err(format!(
            "{what}: want one renamed file and one renamed dir, got files {files:?} and dirs {dirs:?}"
        ));
    };
    let ok = if tmp {
        (k, j) == (m + 1, m + 1)
    } else {
        [(m, m), (m + 1, m), (m + 1, m + 1)].contains(&(k, j))
    };
    if !ok {
        return Err(format!(
            "{what}: marker {m}{} but file f{k} and dir d{j}",
            if tmp { " and m.tmp" } else { "" }
        ));
    }
    Ok(m)
}

/// (file mode, dir mode, file uid, file gid) after `cm_step i`.
fn cm_state(i: u64) -> (u32, u32, u32, u32) {
    let (f, d) = [
        (0o600, 0o700),
        (0o640, 0o750),
        (0o644, 0o755),
        (0o604, 0o711),
        (0o400, 0o770),
        (0o660, 0o775),
        (0o664, 0o705),
        (0o444, 0o701),
    ][(i % 8) as usize];
    (f, d, (i % 3 * 1000) as u32, (i % 2 * 1000) as u32)
}

/// Metadata changes only: the file's mode, the directory's mode and the file's
/// owner change in that order, then the marker.
fn check_chmods(dir: &Path) -> Result<u64, String> {
    let what = format!("{}", dir.display());
    let state = shapes(dir);
    let m = marker(&state, &what)?;
    let tmp = marker_tmp(&state, m + 1, &what)?;
    let names: Vec<&str> = state.keys().map(String::as_str).collect();
    let want_names: &[&str] = if tmp {
        &["dir", "f", "m", "m.tmp"]
    } else {
        &["dir", "f", "m"]
    };
    if names != want_names || state["f"] != Shape::File(b"cm\n".to_vec()) {
        return Err(format!("{what}: unexpected state {}", show_state(&state)));
    }
    let (f, d) = (
        fs::symlink_metadata(dir.join("f")).expect("lstat f"),
        fs::symlink_metadata(dir.join("dir")).expect("lstat dir"),
    );
    let got = (
        f.permissions().mode() & 0o7777,
        d.permissions().mode() & 0o7777,
        f.uid(),
        f.gid(),
    );
    let (a, b) = (cm_state(m), cm_state(m + 1));
    let valid = [a, (b.0, a.1, a.2, a.3), (b.0, b.1, a.2, a.3), b];
    let ok = if tmp { got == b } else { valid.contains(&got) };
    if !ok {
        return Err(format!(
            "{what}: marker {m}: (f mode, dir mode, uid, gid) = ({:o}, {:o}, {}, {}), \
             not between step {m}'s and step {}'s",
            got.0,
            got.1,
            got.2,
            got.3,
            m + 1
        ));
    }
    Ok(m)
}

/// Hard links: `f` and the links `l<k>` (k as step m or m + 1 leaves them) are
/// one inode.
fn check_links(dir: &Path) -> Result<u64, String> {
    let what = format!("{}", dir.display());
    let state = shapes(dir);
    let m = marker(&state, &what)?;
    let tmp = marker_tmp(&state, m + 1, &what)?;
    let mut links = Vec::new();
    for (p, sh) in &state {
        if p == "m" || p == "m.tmp" {
            continue;
        }
        if *sh != Shape::File(b"linked\n".to_vec()) {
            return Err(format!("{what}: {p} is {sh:?}"));
        }
        if p != "f" {
            links.push(
                p.strip_prefix('l')
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| format!("{what}: unexpected {p}"))?,
            );
        }
    }
    let ok = if tmp {
        links == [m + 1]
    } else {
        links == [m] || links == [m, m + 1] || links == [m + 1]
    };
    if !ok || !state.contains_key("f") {
        return Err(format!(
            "{what}: marker {m}, links {links:?}, f present: {}",
            state.contains_key("f")
        ));
    }
    let ino = |p: &str| fs::symlink_metadata(dir.join(p)).expect("lstat").ino();
    for l in &links {
        if ino(&format!("l{l}")) != ino("f") {
            return Err(format!("{what}: l{l} is not a hard link of f"));
        }
    }
    Ok(m)
}

/// The mutator's six parts in `dir/mut`. Returns the rename marker.
pub fn check_mutator(dir: &Path) -> Result<u64, String> {
    let m = dir.join("mut");
    let r = check_renames(&m.join("ren"))?;
    check_chmods(&m.join("cm"))?;
    check_rebuilt(&m.join("rc"), "delete and recreate", rc_steps)?;
    check_rebuilt(&m.join("tf"), "file, dir, symlink in turn", tf_steps)?;
    check_links(&m.join("hl"))?;
    check_nest(&m.join("nest"))?;
    Ok(r)
}

/// Lines 1..=n, each whole.
fn count_lines(path: &Path) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut n = 0;
    for l in text.split_inclusive('\n') {
        n += 1;
        if l != format!("{n}\n") {
            return Err(format!("{}: line {n} is {l:?}", path.display()));
        }
    }
    Ok(n)
}

/// The cross-tree appender: both logs are 1..=n, and the rootfs's (appended to
/// first) is as long as the home's or one line longer: one moment for both trees.
pub fn check_appends(root: &Path) -> Result<(u64, u64), String> {
    let a = count_lines(&root.join(&ROOT_DIR[1..]).join("append.log"))?;
    let b = count_lines(&root.join(&HOME_DIR[1..]).join("append.log"))?;
    if a != b && a != b + 1 {
        return Err(format!(
            "append.log has {a} lines in the rootfs but {b} in the home: two moments"
        ));
    }
    Ok((a, b))
}

/// The big appender's file: chunks 1..k whole, then a prefix of chunk k + 1.
/// Returns (whole chunks, file size).
pub fn check_big(path: &Path) -> Result<(u64, u64), String> {
    let mut f = fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut i = 0;
    let mut size = 0;
    loop {
        let mut got = 0;
        while got < CHUNK {
            let n = f.read(&mut buf[got..]).expect("read big.log");
            if n == 0 {
                break;
            }
            got += n;
        }
        size += got as u64;
        let want = chunk(i + 1);
        if got == CHUNK && buf == want {
            i += 1;
            continue;
        }
        if got < CHUNK && want.starts_with(&buf[..got]) {
            return Ok((i, size));
        }
        return Err(format!(
            "{}: chunk {} is torn or wrong ({got} bytes)",
            path.display(),
            i + 1
        ));
    }
}

/// What [`check_image`] found.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Newest numbered file of each sequence writer: rootfs renamed, rootfs
    /// direct, home renamed, home direct.
    pub seq: [u64; 4],
    /// The mutators' rename markers, rootfs and home.
    pub mutator: [u64; 2],
    /// Lines of the two append logs.
    pub appended: (u64, u64),
}

/// Every checked writer's property on a whole tree (an unpacked image's rootfs,
/// or a session's view); all failures listed in the error.
pub fn check_image(root: &Path) -> Result<Seen, String> {
    let mut errors = Vec::new();
    let mut seen = Seen::default();
    let mut i = 0;
    for (t, d) in [ROOT_DIR, HOME_DIR].iter().enumerate() {
        let d = root.join(&d[1..]);
        for renamed in [true, false] {
            let sub = if renamed { "seq-renamed" } else { "seq-direct" };
            match check_sequence(&d.join(sub), renamed) {
                Ok(n) => seen.seq[i] = n,
                Err(e) => errors.push(e),
            }
            i += 1;
        }
        match check_mutator(&d) {
            Ok(n) => seen.mutator[t] = n,
            Err(e) => errors.push(e),
        }
    }
    match check_appends(root) {
        Ok(a) => seen.appended = a,
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        Ok(seen)
    } else {
        Err(errors.join("\n"))
    }
}

/// [`check_image`] on a session's live view: the merged rootfs with the home
/// grafted (through symlinks in a temp dir, since the checks take one root).
pub fn session_view(s: &RuncSession, dir: &Path) -> PathBuf {
    let v = dir.join("view");
    fs::create_dir_all(v.join("home/work")).expect("mkdir view");
    std::os::unix::fs::symlink(s.rootfs.join(&ROOT_DIR[1..]), v.join(&ROOT_DIR[1..]))
        .expect("symlink view data");
    std::os::unix::fs::symlink(s.home.join("w"), v.join(&HOME_DIR[1..]))
        .expect("symlink view home");
    v
}

// ---------------------------------------------------------------------------
// Catching the frozen moment

/// The states of every thread of `pid` (`R`, `S`, `D`, `T`, ...).
fn thread_states(pid: i32) -> Vec<char> {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .collect()
}

/// Continues a stopped process when dropped (even when a check panics).
struct StoppedProcess(i32);

impl Drop for StoppedProcess {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

/// What [`commit_stopped_while_frozen`] saw.
pub struct FrozenRun<T> {
    pub outcome: Outcome,
    /// What `during` returned; None if the commit thawed the session before the
    /// committer could be stopped (the frozen pass was too quick to catch).
    pub during: Option<T>,
    /// How long the committer was held stopped.
    pub held: Duration,
}

/// Runs `freezeframe commit --json ARGS`, polling the session's v1 freezer; as
/// soon as it reads FROZEN the committer is stopped (SIGSTOP, every thread), and
/// if the session is still frozen then, `during` runs while nothing can change
/// the session: the committer is stopped with the session frozen (its guardian
/// only thaws when the committer dies), and a live commit freezes only once.
/// Then the committer is continued and runs to completion.
pub fn commit_stopped_while_frozen<T>(
    args: Vec<OsString>,
    cg: &Cgroups,
    during: impl FnOnce() -> T,
) -> FrozenRun<T> {
    let mut cmd = freezeframe_cmd(commit_json_args(args));
    let command = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    let pid = child.id() as i32;
    let (out, err) = drain_output(&mut child);
    let t0 = Instant::now();
    let mut during = Some(during);
    let mut result = None;
    let mut held = Duration::ZERO;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        crate::kill_if_overdue(&mut child, t0, &command);
        if during.is_some() && cg.freezer_state() == "FROZEN" {
            let f = during.take().expect("once");
            kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP the committer");
            let guard = StoppedProcess(pid);
            let h0 = Instant::now();
            let stopped = wait_until(Duration::from_secs(10), || {
                thread_states(pid)
                    .iter()
                    .all(|&c| matches!(c, 'T' | 't' | 'Z' | 'X'))
            });
            assert!(
                stopped,
                "the committer {pid} did not stop: {:?}",
                thread_states(pid)
            );
            if cg.freezer_state() == "FROZEN" {
                let r = f();
                assert_eq!(
                    cg.freezer_state(),
                    "FROZEN",
                    "the session thawed while the committer was stopped"
                );
                result = Some(r);
            }
            drop(guard);
            held = h0.elapsed();
            continue;
        }
        std::thread::sleep(Duration::from_micros(100));
    };
    FrozenRun {
        outcome: Outcome {
            command,
            status,
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        },
        during: result,
        held,
    }
}

#[cfg(test)]
mod tests {
    //! The checks must be able to fail: each is shown a consistent state and a
    //! few states no single moment can produce.

    use super::*;
    use std::os::unix::fs::symlink;

    fn put(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    fn seq_dir(t: &Path, range: std::ops::RangeInclusive<u64>, counter: u64) -> PathBuf {
        let d = t.join("seq");
        for n in range {
            put(&d, &n.to_string(), &seq_content(n));
        }
        put(&d, "counter", &line(counter));
        d
    }

    #[test]
    fn sequence_check_accepts_every_moment_of_a_step_and_nothing_else() {
        let ok = |f: &dyn Fn(&Path) -> PathBuf, renamed| {
            let t = tempfile::tempdir().unwrap();
            let d = f(t.path());
            check_sequence(&d, renamed)
        };
        // Between steps, and just before the removal.
        assert_eq!(ok(&|t| seq_dir(t, 51..=100, 100), true), Ok(100));
        assert_eq!(ok(&|t| seq_dir(t, 50..=100, 100), true), Ok(100));
        // Renamed into place, counter not yet moved.
        assert_eq!(ok(&|t| seq_dir(t, 50..=100, 99), true), Ok(100));
        // A direct writer half-way through file 100.
        assert_eq!(
            ok(
                &|t| {
                    let d = seq_dir(t, 50..=99, 99);
                    put(&d, "100", &seq_content(100)[..7]);
                    d
                },
                false
            ),
            Ok(100)
        );
        // A renamed writer half-way through 101.tmp.
        assert_eq!(
            ok(
                &|t| {
                    let d = seq_dir(t, 51..=100, 100);
                    put(&d, "101.tmp", &seq_content(101)[..5]);
                    d
                },
                true
            ),
            Ok(100)
        );

        type Make = Box<dyn Fn(&Path) -> PathBuf>;
        let bad: Vec<(&str, Make, bool)> = vec![
            (
                "gap",
                Box::new(|t| {
                    let d = seq_dir(t, 51..=100, 100);
                    fs::remove_file(d.join("70")).unwrap();
                    d
                }),
                true,
            ),
            (
                "torn old file",
                Box::new(|t| {
                    let d = seq_dir(t, 51..=100, 100);
                    put(&d, "70", &seq_content(70)[..3]);
                    d
                }),
                false,
            ),
            (
                "torn newest file after the counter moved",
                Box::new(|t| {
                    let d = seq_dir(t, 51..=100, 100);
                    put(&d, "100", &seq_content(100)[..3]);
                    d
                }),
                false,
            ),
            (
                "torn file of a renaming writer",
                Box::new(|t| {
                    let d = seq_dir(t, 50..=100, 99);
                    put(&d, "100", &seq_content(100)[..3]);
                    d
                }),
                true,
            ),
            (
                "counter behind",
                Box::new(|t| seq_dir(t, 51..=100, 98)),
                true,
            ),
            (
                "old file not removed",
                Box::new(|t| seq_dir(t, 40..=100, 100)),
                true,
            ),
            (
                "removed too early",
                Box::new(|t| seq_dir(t, 51..=100, 99)),
                true,
            ),
            (
                "a stale tmp",
                Box::new(|t| {
                    let d = seq_dir(t, 51..=100, 100);
                    put(&d, "90.tmp", b"");
                    d
                }),
                true,
            ),
        ];
        for (what, f, renamed) in bad {
            assert!(ok(&*f, renamed).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn rebuilt_check_rejects_mixed_generations() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("rc");
        fs::create_dir_all(r.join("d/sub")).unwrap();
        put(&r, "m", b"7\n");
        for f in ["d/a7", "d/b", "d/sub/c7"] {
            put(&r, f, b"7\n");
        }
        assert_eq!(check_rebuilt(&r, "rc", rc_steps), Ok(7));
        // rm -rf half-way.
        fs::remove_file(r.join("d/a7")).unwrap();
        fs::remove_file(r.join("d/sub/c7")).unwrap();
        assert_eq!(check_rebuilt(&r, "rc", rc_steps), Ok(7));
        // Step 8 under way.
        fs::remove_dir_all(r.join("d")).unwrap();
        put(&r, "d/a8", b"8\n");
        put(&r, "d/b", b"");
        assert_eq!(check_rebuilt(&r, "rc", rc_steps), Ok(7));
        // A file of step 7 beside one of step 8: two moments.
        put(&r, "d/b", b"7\n");
        assert!(check_rebuilt(&r, "rc", rc_steps).is_err());
        // Step 8's directory over what step 7 left in it: a whiteout missed.
        put(&r, "d/b", b"8\n");
        put(&r, "d/a7", b"7\n");
        assert!(check_rebuilt(&r, "rc", rc_steps).is_err());

        let x = t.path().join("tf");
        fs::create_dir_all(&x).unwrap();
        put(&x, "m", b"5\n");
        symlink("t5", x.join("x")).unwrap();
        assert_eq!(check_rebuilt(&x, "tf", tf_steps), Ok(5));
        fs::remove_file(x.join("x")).unwrap();
        put(&x, "x", b"6\n");
        assert_eq!(check_rebuilt(&x, "tf", tf_steps), Ok(5));
        put(&x, "m.tmp", b"6");
        assert_eq!(check_rebuilt(&x, "tf", tf_steps), Ok(5));
        fs::remove_file(x.join("x")).unwrap();
        fs::create_dir(x.join("x")).unwrap();
        put(&x, "x/inner", b"6\n");
        assert!(
            check_rebuilt(&x, "tf", tf_steps).is_err(),
            "a dir at a file step"
        );
    }

    #[test]
    fn rename_chmod_link_and_append_checks_reject_two_moments() {
        let t = tempfile::tempdir().unwrap();
        let ren = t.path().join("ren");
        put(&ren, "b/f4", b"payload\n");
        for (p, c) in [("d3/x", "x\n"), ("d3/sub/y", "y\n")] {
            put(&ren, p, c.as_bytes());
        }
        fs::create_dir_all(ren.join("a")).unwrap();
        put(&ren, "m", b"3\n");
        assert_eq!(check_renames(&ren), Ok(3));
        // The old name still there: a whiteout missed.
        put(&ren, "a/f3", b"payload\n");
        assert!(check_renames(&ren).is_err());
        fs::remove_file(ren.join("a/f3")).unwrap();
        // Neither name.
        fs::remove_file(ren.join("b/f4")).unwrap();
        assert!(check_renames(&ren).is_err());

        let cm = t.path().join("cm");
        fs::create_dir_all(cm.join("dir")).unwrap();
        put(&cm, "f", b"cm\n");
        put(&cm, "m", b"2\n");
        let (f, d, u, g) = cm_state(3);
        fs::set_permissions(cm.join("f"), fs::Permissions::from_mode(f)).unwrap();
        fs::set_permissions(cm.join("dir"), fs::Permissions::from_mode(cm_state(2).1)).unwrap();
        if nix::unistd::geteuid().is_root() {
            let (_, _, u2, g2) = cm_state(2);
            std::os::unix::fs::chown(cm.join("f"), Some(u2), Some(g2)).unwrap();
            assert_eq!(check_chmods(&cm), Ok(2));
            // The owner of step 3 with the dir mode of step 2: two moments.
            std::os::unix::fs::chown(cm.join("f"), Some(u), Some(g)).unwrap();
            assert!(check_chmods(&cm).is_err());
            fs::set_permissions(cm.join("dir"), fs::Permissions::from_mode(d)).unwrap();
            assert_eq!(check_chmods(&cm), Ok(2));
        }

        let nest = t.path().join("nest");
        put(&nest, "m", b"3\n");
        put(&nest, "d/g", b"3\n");
        put(&nest, "d/sub/y", b"y\n");
        assert_eq!(check_nest(&nest), Ok(3));
        put(&nest, "n/g", b"4");
        assert_eq!(check_nest(&nest), Ok(3));
        fs::rename(nest.join("d/sub"), nest.join("n/sub")).unwrap();
        put(&nest, "n/g", b"4\n");
        assert_eq!(check_nest(&nest), Ok(3));
        fs::remove_file(nest.join("d/g")).unwrap();
        assert_eq!(check_nest(&nest), Ok(3));
        fs::remove_dir(nest.join("d")).unwrap();
        fs::rename(nest.join("n"), nest.join("d")).unwrap();
        assert_eq!(check_nest(&nest), Ok(3));
        // The replaced directory without its untouched file.
        fs::remove_file(nest.join("d/sub/y")).unwrap();
        assert!(check_nest(&nest).is_err());
        // Or with the subdirectory in both places.
        put(&nest, "d/sub/y", b"y\n");
        put(&nest, "n/sub/y", b"y\n");
        put(&nest, "n/g", b"4\n");
        assert!(check_nest(&nest).is_err());

        let hl = t.path().join("hl");
        put(&hl, "f", b"linked\n");
        put(&hl, "m", b"4\n");
        fs::hard_link(hl.join("f"), hl.join("l5")).unwrap();
        assert_eq!(check_links(&hl), Ok(4));
        put(&hl, "l4", b"linked\n");
        assert!(check_links(&hl).is_err(), "a copy is not a hard link");

        let root = t.path().join("root");
        put(&root, "data/append.log", b"1\n2\n3\n");
        put(&root, "home/work/w/append.log", b"1\n2\n");
        assert_eq!(check_appends(&root), Ok((3, 2)));
        put(&root, "home/work/w/append.log", b"1\n");
        assert!(check_appends(&root).is_err());
        put(&root, "home/work/w/append.log", b"1\n2\n3\n4");
        assert!(check_appends(&root).is_err());

        let mut big = chunk(1);
        big.extend(chunk(2));
        big.extend(&chunk(3)[..100]);
        put(t.path(), "big.log", &big);
        assert_eq!(
            check_big(&t.path().join("big.log")),
            Ok((2, 2 * CHUNK as u64 + 100))
        );
        big[CHUNK + 5] = b'x';
        put(t.path(), "big.log", &big);
        assert!(check_big(&t.path().join("big.log")).is_err());
    }
}
