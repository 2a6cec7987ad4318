//! What a session *is* on a node: its init process, its overlay rootfs, its
//! scratch home and every other mount, found from an OCI runtime's state and
//! `/proc/PID/mountinfo`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use freezeframe_snapshot::fs::open::open_in_root as open_in;
use rustix::fs::OFlags;
use serde::Serialize;

use super::error::{Error, Result};
use super::mountinfo::{self, split_lowerdir, Mount};

/// Annotations that may name the image a container was started from, best first.
pub const BASE_IMAGE_ANNOTATIONS: &[&str] = &[
    "org.freezeframe.image",
    "org.opencontainers.image.base.name",
    "io.kubernetes.cri.image-name",
];

/// The shortest id prefix a container is found by.
pub const MIN_ID_PREFIX: usize = 4;

/// A name a runtime recorded for a container (Docker's `config.v2.json`,
/// containers-storage's `containers.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedContainer {
    pub name: String,
    pub id: String,
}

/// A container's state file under a root.
#[derive(Debug)]
struct StateFile {
    id: String,
    file: PathBuf,
    namespace: Option<String>,
}

/// The state file of container `id`, if a root has one.
fn state_file_of(id: &str, roots: &[PathBuf]) -> Option<StateFile> {
    state_files(roots, Some(id)).into_iter().next()
}

/// Every container state file under `roots`, or only those of container
/// `only`, in root order.
fn state_files(roots: &[PathBuf], only: Option<&str>) -> Vec<StateFile> {
    let is_state = |dir: &Path| dir.join("state.json").is_file();
    let wanted = |name: &str| only.is_none_or(|id| id == name);
    let mut out = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = entry.path();
            if wanted(&name) && is_state(&path) {
                out.push(StateFile {
                    id: name,
                    file: path.join("state.json"),
                    namespace: None,
                });
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(inner) = std::fs::read_dir(&path) else {
                continue;
            };
            for c in inner.flatten() {
                let Ok(id) = c.file_name().into_string() else {
                    continue;
                };
                if wanted(&id) && is_state(&c.path()) {
                    out.push(StateFile {
                        id,
                        file: c.path().join("state.json"),
                        namespace: Some(name.clone()),
                    });
                }
            }
        }
    }
    out
}

/// A name, else a unique id prefix, among the containers of `roots`.
fn resolve(target: &str, roots: &[PathBuf], names: Vec<NamedContainer>) -> Result<StateFile> {
    let looked = || {
        roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all = state_files(roots, None);
    let describe = |m: &StateFile| match names.iter().find(|n| n.id == m.id) {
        Some(n) => format!("{} ({})", m.id, n.name),
        None => m.id.clone(),
    };
    let ambiguous = |what: &str, matches: &[StateFile]| Error::Ambiguous {
        target: target.to_string(),
        what: what.to_string(),
        matches: matches.iter().map(describe).collect::<Vec<_>>().join(", "),
    };
    let named: Vec<&NamedContainer> = names.iter().filter(|n| n.name == target).collect();
    if let Some(first) = named.first() {
        let mut running: Vec<StateFile> = all
            .into_iter()
            .filter(|s| named.iter().any(|n| n.id == s.id))
            .collect();
        running.dedup_by(|a, b| a.id == b.id);
        return match running.len() {
            1 => Ok(running.remove(0)),
            0 => Err(Error::NotRunning {
                id: format!("{target} ({})", first.id),
                detail: format!("no runtime state for it in {}", looked()),
            }),
            _ => Err(ambiguous("the name of several containers", &running)),
        };
    }
    let mut matches: Vec<StateFile> = if target.len() >= MIN_ID_PREFIX {
        all.into_iter()
            .filter(|s| s.id.starts_with(target))
            .collect()
    } else {
        Vec::new()
    };
    matches.dedup_by(|a, b| a.id == b.id);
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(Error::NotFound {
            id: target.to_string(),
            looked: looked(),
        }),
        _ => Err(ambiguous("a prefix of several container ids", &matches)),
    }
}

/// A running container, ready to be committed.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub pid: i32,
    /// The runtime state file it was found through, if any.
    pub state_file: Option<PathBuf>,
    /// The namespace dir its state file sits in (`ROOT/NAMESPACE/ID`), as
    /// containerd's runc shim keeps them.
    pub namespace: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// cgroup dirs the runtime recorded: the v1 freezer and the v2 (unified) one.
    pub cgroup_v1_freezer: Option<PathBuf>,
    pub cgroup_v2: Option<PathBuf>,
    pub rootfs: OverlayRoot,
    /// The home path asked for, and the mount found there if any.
    pub home_path: PathBuf,
    pub home: Option<HostMount>,
    /// Every other mount of the container, outermost first.
    pub mounts: Vec<Mount>,
}

/// The container's overlayfs root.
#[derive(Debug, Clone, Serialize)]
pub struct OverlayRoot {
    pub upper: PathBuf,
    /// Lower dirs, topmost first (data-only lowers last).
    pub lowers: Vec<PathBuf>,
    pub userxattr: bool,
    pub redirect_dir: Option<String>,
    pub metacopy: bool,
}

/// A mount of the container whose content lives in a host directory.
#[derive(Debug, Clone, Serialize)]
pub struct HostMount {
    /// Where the container sees it.
    pub target: PathBuf,
    /// The host directory mounted there.
    pub host_dir: PathBuf,
    pub fs_type: String,
}

/// A mount the commit leaves out, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ExcludedMount {
    pub target: PathBuf,
    pub fs_type: String,
    pub source: String,
}

impl Session {
    /// Finds the container `target` names, as an admin types it: its full id,
    /// a name a runtime recorded for it (from `names`, asked only when no
    /// container has that id), or a unique prefix of at least
    /// [`MIN_ID_PREFIX`] characters of its id. A root holds `ID/state.json`
    /// (runc, youki, freezeframe, Docker's runc) or `NAMESPACE/ID/state.json`
    /// (containerd's runc shim).
    pub fn find(
        target: &str,
        roots: &[PathBuf],
        names: impl FnOnce() -> Result<Vec<NamedContainer>>,
        home_path: &Path,
    ) -> Result<Session> {
        check_id(target)?;
        let found = match state_file_of(target, roots) {
            Some(found) => found,
            None => resolve(target, roots, names()?)?,
        };
        let mut session = Session::from_state_file(&found.id, &found.file, home_path)?;
        session.namespace = found.namespace;
        Ok(session)
    }

    fn from_state_file(id: &str, file: &Path, home_path: &Path) -> Result<Session> {
        let state: RuntimeState = read_state(file)?;
        let pid = state
            .init_process_pid
            .or(state.pid)
            .filter(|&p| p > 0)
            .ok_or_else(|| Error::NotRunning {
                id: id.to_string(),
                detail: format!("{} records no init process", file.display()),
            })?;
        if state.status.as_deref() == Some("stopped") {
            return Err(Error::NotRunning {
                id: id.to_string(),
                detail: format!("{} says it has stopped", file.display()),
            });
        }
        // libcontainer's state has no start time: freezeframe's own record
        // beside it, written at create, says which process the pid was.
        let dir = parent_dir(file);
        let start = match state.init_process_start {
            Some(start) => Some(start),
            None => match InitRecord::read(dir)? {
                Some(record) => {
                    record.check(id, pid, &dir.join(INIT_RECORD))?;
                    Some(record.start)
                }
                None => None,
            },
        };
        check_alive(id, pid, start)?;
        let mut annotations = state.annotations.unwrap_or_default();
        for label in state.config.map(|c| c.labels).unwrap_or_default() {
            if let Some((k, v)) = label.split_once('=') {
                annotations
                    .entry(k.to_string())
                    .or_insert_with(|| v.to_string());
            }
        }
        let paths = state.cgroup_paths.unwrap_or_default();
        let mut s = Session::from_pid_named(id, pid, home_path)?;
        s.state_file = Some(file.to_path_buf());
        s.annotations = annotations;
        s.cgroup_v1_freezer = paths.get("freezer").map(PathBuf::from);
        s.cgroup_v2 = paths.get("").map(PathBuf::from);
        Ok(s)
    }

    /// Describes the container whose init process is `pid`.
    pub fn from_pid(pid: i32, home_path: &Path) -> Result<Session> {
        check_alive(&pid.to_string(), pid, None)?;
        Session::from_pid_named(&format!("pid-{pid}"), pid, home_path)
    }

    fn from_pid_named(id: &str, pid: i32, home_path: &Path) -> Result<Session> {
        let mounts = mountinfo::read(&pid.to_string())?;
        let root = mounts
            .iter()
            .rev()
            .find(|m| m.target == Path::new("/"))
            .ok_or_else(|| Error::NotOverlay {
                id: id.to_string(),
                detail: "no mount at /".into(),
            })?;
        let rootfs = overlay_root(id, root)?;
        let host = mountinfo::read("self")?;
        let mut home = None;
        let mut others = Vec::new();
        for m in mounts.iter().filter(|m| m.target != Path::new("/")) {
            if m.target == home_path && home.is_none() {
                home = Some(host_mount(pid, m, &host)?);
            } else {
                others.push(m.clone());
            }
        }
        Ok(Session {
            id: id.to_string(),
            pid,
            state_file: None,
            namespace: None,
            annotations: BTreeMap::new(),
            cgroup_v1_freezer: None,
            cgroup_v2: None,
            rootfs,
            home_path: home_path.to_path_buf(),
            home,
            mounts: others,
        })
    }

    /// The mount at `target`, resolved to its host directory, for a request to
    /// include a mount's content.
    pub fn include_mount(&self, target: &Path) -> Result<HostMount> {
        let m = self
            .mounts
            .iter()
            .rev()
            .find(|m| m.target == target)
            .ok_or_else(|| Error::NoSuchMount {
                id: self.id.clone(),
                target: target.to_path_buf(),
            })?;
        host_mount(self.pid, m, &mountinfo::read("self")?)
    }

    /// Mounts to leave out: every mount but the rootfs, the home and `included`.
    /// Nested mounts under an excluded one are implied and not listed again.
    pub fn excluded_mounts(&self, included: &[PathBuf]) -> Vec<ExcludedMount> {
        let mut out: Vec<ExcludedMount> = Vec::new();
        for m in &self.mounts {
            if included.contains(&m.target) || out.iter().any(|e| m.target.starts_with(&e.target)) {
                continue;
            }
            out.push(ExcludedMount {
                target: m.target.clone(),
                fs_type: m.fs_type.clone(),
                source: m.source.clone(),
            });
        }
        out
    }
}

/// Files that `pids` have mapped shared and writable, as their paths in the
/// container. Writes through such a mapping change a file without touching
/// its mtime or ctime once its pages are dirty, so a commit must not trust a
/// mapped file's metadata to tell whether it changed. Processes that exited
/// meanwhile are skipped; deleted files are left out.
pub fn shared_writable_mappings(pids: &[i32]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for pid in pids {
        let Ok(maps) = std::fs::read(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for line in maps.split(|&b| b == b'\n') {
            // address perms offset dev inode pathname
            let mut fields = line.splitn(6, |&b| b == b' ');
            let perms = fields.nth(1).unwrap_or_default();
            let Some(path) = fields.nth(3) else { continue };
            let path = path.trim_ascii_start();
            if perms.len() == 4
                && perms[1] == b'w'
                && perms[3] == b's'
                && path.starts_with(b"/")
                && !path.ends_with(b" (deleted)")
            {
                let p = PathBuf::from(std::ffi::OsString::from_vec(path.to_vec()));
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The fields of runc's, youki's and libcontainer's state files that matter here.
#[derive(serde::Deserialize, Default)]
struct RuntimeState {
    init_process_pid: Option<i32>,
    init_process_start: Option<u64>,
    pid: Option<i32>,
    /// libcontainer's and youki's: `created`, `running`, `stopped`, ...
    status: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    config: Option<RuncConfig>,
    cgroup_paths: Option<BTreeMap<String, String>>,
}

#[derive(serde::Deserialize, Default)]
struct RuncConfig {
    #[serde(default)]
    labels: Vec<String>,
}

/// Ids name a directory under a state root: no separators, no dot-dot.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.contains('/')
        && id != "."
        && id != ".."
        && !id.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(Error::BadId { id: id.to_string() })
    }
}

/// The file beside libcontainer's `state.json` in which freezeframe records,
/// at create, which process the container's init is ([`InitRecord`]).
pub const INIT_RECORD: &str = "freezeframe-init.json";

/// The most a state file or an init record may hold; a runtime's state
/// (runc's includes the whole config) is far smaller.
const STATE_CAP: u64 = 16 << 20;
const RECORD_CAP: u64 = 4096;

/// Which process a container's init is: its pid, its start time (clock
/// ticks after boot, `/proc/PID/stat` field 22) and the boot it started in.
/// A pid alone names whatever process has it now; a pid with its start time
/// names one process only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRecord {
    pub pid: i32,
    pub start: u64,
    pub boot_id: String,
}

impl InitRecord {
    /// The record of the running process `pid`.
    pub fn of(pid: i32) -> std::io::Result<InitRecord> {
        let stat = procfs::process::Process::new(pid)
            .and_then(|p| p.stat())
            .map_err(std::io::Error::other)?;
        Ok(InitRecord {
            pid,
            start: stat.starttime,
            boot_id: boot_id()?,
        })
    }

    /// Writes the record into the container's state directory `dir`, as a
    /// whole or not at all (a temporary file renamed into place).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = dir.join(format!(".{INIT_RECORD}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(INIT_RECORD))
    }

    /// The record in the container's state directory `dir`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<InitRecord>> {
        let path = dir.join(INIT_RECORD);
        let text = match read_capped(&path, RECORD_CAP) {
            Ok(text) => text,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::Parse {
                path,
                message: e.to_string(),
            })
    }

    /// Refuses a record made for another pid or in another boot than the
    /// state's init `pid`: that state no longer names the process recorded.
    pub fn check(&self, id: &str, pid: i32, path: &Path) -> Result<()> {
        if self.pid != pid {
            return Err(Error::NotRunning {
                id: id.to_string(),
                detail: format!(
                    "the runtime's state names pid {pid}, but {} records its init as pid {}",
                    path.display(),
                    self.pid
                ),
            });
        }
        let now = boot_id().map_err(|source| Error::Io {
            path: PathBuf::from(BOOT_ID),
            source,
        })?;
        if self.boot_id != now {
            return Err(Error::NotRunning {
                id: id.to_string(),
                detail: format!(
                    "{} records an init process of an earlier boot",
                    path.display()
                ),
            });
        }
        Ok(())
    }

    /// Whether the process that has the record's pid now is the one recorded.
    pub fn is_running(&self) -> bool {
        let Ok(now) = boot_id() else { return false };
        now == self.boot_id
            && procfs::process::Process::new(self.pid)
                .and_then(|p| p.stat())
                .is_ok_and(|st| st.starttime == self.start && !matches!(st.state, 'Z' | 'X'))
    }
}

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

fn boot_id() -> std::io::Result<String> {
    Ok(std::fs::read_to_string(BOOT_ID)?.trim().to_string())
}

/// Reads at most `cap` bytes of `path`, which must be a regular file (not
/// reached through a symlink in its last component); more is an error.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(io)?;
    if !f.metadata().map_err(io)?.is_file() {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            message: "not a regular file".into(),
        });
    }
    let mut text = Vec::new();
    f.take(cap + 1).read_to_end(&mut text).map_err(io)?;
    if text.len() as u64 > cap {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            message: format!("larger than {cap} bytes"),
        });
    }
    Ok(text)
}

/// Reads a runtime's state file. libcontainer rewrites its `state.json` in
/// place (truncate, then write), so a reader may find it empty or cut
/// short: such a file is read again a few times before it is reported, as
/// empty or cut short, naming the file.
pub fn read_state<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T> {
    let mut tries = 0;
    loop {
        let text = read_capped(file, STATE_CAP)?;
        match serde_json::from_slice(&text) {
            Ok(state) => return Ok(state),
            Err(e) if e.is_eof() && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                let message = if text.iter().all(u8::is_ascii_whitespace) {
                    "the state file is empty".to_string()
                } else if e.is_eof() {
                    format!("the state file is cut short: {e}")
                } else {
                    format!("the state file is not a runtime state: {e}")
                };
                return Err(Error::Parse {
                    path: file.to_path_buf(),
                    message,
                });
            }
        }
    }
}

fn parent_dir(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new("."))
}

fn check_alive(id: &str, pid: i32, start: Option<u64>) -> Result<()> {
    let stat = procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .map_err(|e| Error::NotRunning {
            id: id.to_string(),
            detail: format!("process {pid}: {e}"),
        })?;
    if stat.state == 'Z' || stat.state == 'X' {
        return Err(Error::NotRunning {
            id: id.to_string(),
            detail: format!("process {pid} has exited"),
        });
    }
    if let Some(start) = start.filter(|s| *s != stat.starttime) {
        return Err(Error::NotRunning {
            id: id.to_string(),
            detail: format!(
                "process {pid} started at tick {} but the runtime's init started at {start}: the pid was reused",
                stat.starttime
            ),
        });
    }
    Ok(())
}

fn overlay_root(id: &str, m: &Mount) -> Result<OverlayRoot> {
    if m.fs_type != "overlay" {
        return Err(Error::NotOverlay {
            id: id.to_string(),
            detail: format!("the rootfs is {} ({}), not overlayfs", m.fs_type, m.source),
        });
    }
    let upper = m
        .super_option("upperdir")
        .ok_or_else(|| Error::NotOverlay {
            id: id.to_string(),
            detail: "the overlay rootfs has no upperdir (read-only)".into(),
        })?;
    let mut lowers: Vec<PathBuf> = m
        .super_option("lowerdir")
        .map(split_lowerdir)
        .unwrap_or_default();
    for (k, v) in &m.super_options {
        if let (Some(v), "lowerdir+" | "datadir+") = (v, k.as_str()) {
            lowers.push(PathBuf::from(v));
        }
    }
    Ok(OverlayRoot {
        upper: PathBuf::from(upper),
        lowers,
        userxattr: m.has_super_flag("userxattr"),
        redirect_dir: m.super_option("redirect_dir").map(str::to_string),
        metacopy: m.super_option("metacopy") == Some("on"),
    })
}

/// Finds the host directory behind a container mount: a host mount of the same
/// device whose root is a prefix of the container mount's root. The result is
/// checked against the mount itself, opened through the container's root
/// without following any symlink.
fn host_mount(pid: i32, m: &Mount, host: &[Mount]) -> Result<HostMount> {
    let best = host
        .iter()
        .filter(|h| (h.major, h.minor) == (m.major, m.minor) && m.root.starts_with(&h.root))
        .max_by_key(|h| h.root.components().count());
    let unresolved = |why: String| Error::MountSource {
        target: m.target.clone(),
        detail: why,
    };
    let h = best.ok_or_else(|| {
        unresolved(format!(
            "no host mount of device {}:{} holds {}",
            m.major,
            m.minor,
            m.root.display()
        ))
    })?;
    let rest = m.root.strip_prefix(&h.root).expect("filtered on prefix");
    let host_dir = h.target.join(rest);
    let on_host = std::fs::metadata(&host_dir)
        .map_err(|e| unresolved(format!("{}: {e}", host_dir.display())))?;
    let in_container = open_in_root(pid, &m.target)
        .and_then(|f| f.metadata().map_err(|e| unresolved(e.to_string())))?;
    if (on_host.dev(), on_host.ino()) != (in_container.dev(), in_container.ino()) {
        return Err(unresolved(format!(
            "{} is not the directory mounted there",
            host_dir.display()
        )));
    }
    Ok(HostMount {
        target: m.target.clone(),
        host_dir,
        fs_type: m.fs_type.clone(),
    })
}

/// Opens a path of the container through `/proc/PID/root`, refusing symlinks and
/// `..` so that content written in the container cannot redirect the open.
fn open_in_root(pid: i32, path: &Path) -> Result<File> {
    let root_path = PathBuf::from(format!("/proc/{pid}/root"));
    let root = File::open(&root_path).map_err(|source| Error::Io {
        path: root_path.clone(),
        source,
    })?;
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let target = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::PATH;
    let fd = open_in(root.as_fd(), &target, flags).map_err(|e| Error::Io {
        path: root_path.join(&target),
        source: e.into(),
    })?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Roots holding state files for `ids` (`ROOT/ID` or `ROOT/NS/ID`).
    fn roots(layout: &[(&str, Option<&str>)]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let roots = vec![dir.path().join("moby"), dir.path().join("containerd")];
        for (id, ns) in layout {
            let d = match ns {
                None => roots[0].join(id),
                Some(ns) => roots[1].join(ns).join(id),
            };
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("state.json"), "{}").unwrap();
        }
        (dir, roots)
    }

    fn named(name: &str, id: &str) -> NamedContainer {
        NamedContainer {
            name: name.into(),
            id: id.into(),
        }
    }

    #[test]
    fn a_full_id_is_found_in_either_layout() {
        let (_d, roots) = roots(&[("abcdef01", None), ("ctr1", Some("k8s.io"))]);
        let s = state_file_of("ctr1", &roots).unwrap();
        assert_eq!(s.namespace.as_deref(), Some("k8s.io"));
        assert!(s.file.ends_with("containerd/k8s.io/ctr1/state.json"));
        assert!(state_file_of("abcdef01", &roots)
            .unwrap()
            .namespace
            .is_none());
        assert!(state_file_of("abcdef", &roots).is_none());
    }

    #[test]
    fn names_and_unique_prefixes_resolve() {
        let (_d, roots) = roots(&[("abcdef01", None), ("abcd9999", None), ("0123ff", None)]);
        let names = vec![named("sess1", "abcdef01"), named("gone", "dead0000")];
        assert_eq!(
            resolve("sess1", &roots, names.clone()).unwrap().id,
            "abcdef01"
        );
        assert_eq!(
            resolve("abcde", &roots, names.clone()).unwrap().id,
            "abcdef01"
        );
        assert_eq!(resolve("0123", &roots, names.clone()).unwrap().id, "0123ff");

        let e = resolve("abcd", &roots, names.clone())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("abcdef01 (sess1)") && e.contains("abcd9999"),
            "{e}"
        );
        assert!(e.contains("prefix of several"), "{e}");

        // Too short to be a prefix, and no such name.
        let e = resolve("abc", &roots, names.clone()).unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        // A name whose container has no runtime state is not running.
        let e = resolve("gone", &roots, names).unwrap_err();
        assert!(matches!(e, Error::NotRunning { .. }), "{e}");
        assert!(e.to_string().contains("dead0000"), "{e}");
    }

    #[test]
    fn a_name_two_runtimes_use_is_ambiguous() {
        let (_d, roots) = roots(&[("aaaa1111", None), ("bbbb2222", None)]);
        let names = vec![named("web", "aaaa1111"), named("web", "bbbb2222")];
        let e = resolve("web", &roots, names).unwrap_err().to_string();
        assert!(e.contains("name of several"), "{e}");
    }

    #[test]
    fn an_empty_or_cut_short_state_file_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        for (text, want) in [
            ("", "the state file is empty"),
            ("{\"pid\": 12", "the state file is cut short"),
            ("[1, 2]", "the state file is not a runtime state"),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = read_state::<RuntimeState>(&file).err().unwrap().to_string();
            assert!(e.starts_with(&file.display().to_string()), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
        std::fs::write(&file, vec![b' '; STATE_CAP as usize + 1]).unwrap();
        let e = read_state::<RuntimeState>(&file).err().unwrap().to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn an_init_record_names_one_process_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(InitRecord::read(dir.path()).unwrap(), None);
        let me = std::process::id() as i32;
        let record = InitRecord::of(me).unwrap();
        record.write(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "a temporary file was left"
        );
        let read = InitRecord::read(dir.path()).unwrap().unwrap();
        assert_eq!(read, record);
        assert!(read.is_running());
        let path = dir.path().join(INIT_RECORD);
        read.check("c", me, &path).unwrap();
        let e = read.check("c", me + 1, &path).unwrap_err().to_string();
        assert!(e.contains(&format!("records its init as pid {me}")), "{e}");

        let reused = InitRecord {
            start: record.start + 1,
            ..record.clone()
        };
        assert!(!reused.is_running());
        let other_boot = InitRecord {
            boot_id: "0".into(),
            ..record
        };
        assert!(!other_boot.is_running());
        let e = other_boot.check("c", me, &path).unwrap_err().to_string();
        assert!(e.contains("earlier boot"), "{e}");

        std::fs::write(&path, "{\"pid\": 1").unwrap();
        assert!(matches!(
            InitRecord::read(dir.path()),
            Err(Error::Parse { .. })
        ));
    }

    /// A libcontainer state that says stopped, or whose pid is now another
    /// process than the one recorded at create, is no session.
    #[test]
    fn a_stopped_state_or_a_reused_pid_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        let me = std::process::id() as i32;
        let state = |status: &str| {
            format!(
                r#"{{"ociVersion":"1.0.2","id":"c","status":"{status}","pid":{me},"bundle":"/"}}"#
            )
        };
        std::fs::write(&file, state("stopped")).unwrap();
        let e = Session::from_state_file("c", &file, Path::new("/home/work"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not running") && e.contains("says it has stopped"),
            "{e}"
        );

        std::fs::write(&file, state("running")).unwrap();
        let record = InitRecord::of(me).unwrap();
        InitRecord {
            start: record.start + 1,
            ..record
        }
        .write(dir.path())
        .unwrap();
        let e = Session::from_state_file("c", &file, Path::new("/home/work"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the pid was reused"), "{e}");
    }
}
