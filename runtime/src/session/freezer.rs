//! Freezing and thawing a session's cgroup, on cgroup v1 (the `freezer` controller)
//! and cgroup v2 (`cgroup.freeze`), including hybrid hosts that have both.
//!
//! Everything goes through the files of one cgroup directory, so tests can point a
//! [`Cgroup`] at a temp dir of fake files with a thread playing the kernel.
//!
//! | | request | done when |
//! |---|---|---|
//! | v1 | `FROZEN` / `THAWED` to `freezer.state` | `freezer.state` reads `FROZEN` |
//! | v2 | `1` / `0` to `cgroup.freeze` | `cgroup.events` says `frozen 1` |
//!
//! A freeze that does not complete in time is thawed back before the error is
//! returned, and a [`Pause`] thaws on drop (also when unwinding from a panic). For a
//! committer killed with SIGKILL, see [`super::guardian`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

/// Which cgroup hierarchy a [`Cgroup`] lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// The v1 `freezer` controller's hierarchy.
    V1,
    /// The unified (cgroup2) hierarchy.
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

impl FromStr for CgroupVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" | "1" => Ok(CgroupVersion::V1),
            "v2" | "2" => Ok(CgroupVersion::V2),
            _ => Err(format!("unknown cgroup version {s:?} (expected v1 or v2)")),
        }
    }
}

/// What the kernel reports about a freezer cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze; some tasks are still running.
    Freezing,
    Frozen,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("failed to write {value:?} to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: &'static str,
        source: io::Error,
    },

    #[error("unexpected content in {}: {content:?}", path.display())]
    Parse { path: PathBuf, content: String },

    #[error("no cgroup {version} {what} mount in /proc/self/mountinfo")]
    NoMount {
        version: CgroupVersion,
        what: &'static str,
    },

    #[error("process {pid} is in no cgroup {version} {what} hierarchy (see /proc/{pid}/cgroup)")]
    NotInCgroup {
        pid: i32,
        version: CgroupVersion,
        what: &'static str,
    },

    #[error("process {pid}: its cgroup {path} is not visible under any cgroup {version} mount")]
    NotVisible {
        pid: i32,
        version: CgroupVersion,
        path: String,
    },

    #[error("process {pid} is in the root cgroup {}: refusing to freeze the whole host", dir.display())]
    RootCgroup { pid: i32, dir: PathBuf },

    #[error("cgroup {} holds this process too: freezing it would freeze freezeframe itself", dir.display())]
    ContainsSelf { dir: PathBuf },

    #[error("cgroup {} has no cgroup.freeze (the cgroup v2 freezer needs linux 5.2 or later)", dir.display())]
    NoV2Freezer { dir: PathBuf },

    #[error("cgroup {} did not freeze within {timeout:?}", dir.display())]
    Timeout { dir: PathBuf, timeout: Duration },

    #[error("cgroup {} did not freeze within {timeout:?}, and thawing it back failed: {thaw}", dir.display())]
    TimeoutNotThawed {
        dir: PathBuf,
        timeout: Duration,
        thaw: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

const V1_STATE: &str = "freezer.state";
const V2_FREEZE: &str = "cgroup.freeze";
const V2_EVENTS: &str = "cgroup.events";

/// The freezer cgroup of a session: a version and a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    version: CgroupVersion,
    dir: PathBuf,
}

impl Cgroup {
    /// A cgroup at an explicit directory: from a runtime's state file, or a test's
    /// temp dir of fake files.
    pub fn new(version: CgroupVersion, dir: impl Into<PathBuf>) -> Self {
        Cgroup {
            version,
            dir: dir.into(),
        }
    }

    /// The freezer cgroup of process `pid`, from `/proc/PID/cgroup` and this
    /// process's mountinfo.
    ///
    /// With `prefer` unset: the v1 freezer cgroup when `pid` is in a non-root one,
    /// else its cgroup v2 cgroup (which must have `cgroup.freeze`). The root cgroup,
    /// and a cgroup that holds this process too, are refused.
    pub fn of_pid(pid: i32, prefer: Option<CgroupVersion>) -> Result<Self> {
        let read = |path: PathBuf| {
            fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
        };
        let theirs = read(PathBuf::from(format!("/proc/{pid}/cgroup")))?;
        let ours = read(PathBuf::from("/proc/self/cgroup"))?;
        let path = PathBuf::from("/proc/self/mountinfo");
        let text = fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let mounts = crate::session::mountinfo::parse(&text)
            .map_err(|content| Error::Parse { path, content })?;
        resolve(pid, &theirs, &ours, &mounts, prefer)
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the kernel says now. On v2, `Thawed` means this cgroup has not been
    /// asked to freeze (`cgroup.freeze` 0), whatever its ancestors do.
    pub fn state(&self) -> Result<FreezerState> {
        match self.version {
            CgroupVersion::V1 => {
                let (path, content) = self.read(V1_STATE)?;
                match content.trim_end() {
                    "THAWED" => Ok(FreezerState::Thawed),
                    "FREEZING" => Ok(FreezerState::Freezing),
                    "FROZEN" => Ok(FreezerState::Frozen),
                    _ => Err(Error::Parse { path, content }),
                }
            }
            CgroupVersion::V2 => {
                let (path, content) = self.read(V2_FREEZE)?;
                match content.trim_end() {
                    "0" => Ok(FreezerState::Thawed),
                    "1" if self.v2_frozen()?.0 => Ok(FreezerState::Frozen),
                    "1" => Ok(FreezerState::Freezing),
                    _ => Err(Error::Parse { path, content }),
                }
            }
        }
    }

    /// Freezes every task in the cgroup and waits until the kernel says they all
    /// are. If that takes longer than `timeout`, or waiting fails, the cgroup is
    /// thawed back before the error is returned.
    pub fn freeze(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        match self.version {
            CgroupVersion::V1 => self.write(V1_STATE, "FROZEN")?,
            CgroupVersion::V2 => self.write(V2_FREEZE, "1")?,
        }
        let failure = match self.wait_frozen(start + timeout) {
            Ok(true) => {
                tracing::debug!(cgroup = %self.dir.display(), version = %self.version,
                    took_us = start.elapsed().as_micros() as u64, "froze");
                return Ok(());
            }
            Ok(false) => Error::Timeout {
                dir: self.dir.clone(),
                timeout,
            },
            Err(e) => e,
        };
        match self.thaw() {
            Ok(()) => Err(failure),
            Err(thaw) => {
                // The timeout/read failure is the one to report; say loudly that the
                // session is left frozen.
                tracing::error!(cgroup = %self.dir.display(), error = %thaw,
                    "freeze failed and thawing it back failed too: the session stays frozen");
                match failure {
                    Error::Timeout { dir, timeout } => Err(Error::TimeoutNotThawed {
                        dir,
                        timeout,
                        thaw: Box::new(thaw),
                    }),
                    other => Err(other),
                }
            }
        }
    }

    /// Asks the kernel to thaw the cgroup. Thawing is immediate; this does not wait.
    pub fn thaw(&self) -> Result<()> {
        match self.version {
            CgroupVersion::V1 => self.write(V1_STATE, "THAWED"),
            CgroupVersion::V2 => self.write(V2_FREEZE, "0"),
        }
    }

    /// The processes in the cgroup (`cgroup.procs`, nested cgroups included).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            let path = dir.join("cgroup.procs");
            let text = fs::read_to_string(&path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            for line in text.lines().filter(|l| !l.is_empty()) {
                let pid = line.parse().map_err(|_| Error::Parse {
                    path: path.clone(),
                    content: line.to_string(),
                })?;
                pids.push(pid);
            }
            if let Ok(entries) = fs::read_dir(&dir) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        Ok(pids)
    }

    /// Freezes the cgroup for as long as the returned [`Pause`] lives.
    ///
    /// A cgroup that is already frozen or freezing (paused by its owner, say with
    /// `runc pause`) is left as it is: the pause waits for it to be frozen, does
    /// not thaw it on a timeout, and does not thaw it when it ends.
    pub fn pause(&self, timeout: Duration) -> Result<Pause<'_>> {
        let since = Instant::now();
        let ours = match self.state()? {
            FreezerState::Thawed => {
                self.freeze(timeout)?;
                true
            }
            FreezerState::Frozen => false,
            FreezerState::Freezing => {
                if !self.wait_frozen(since + timeout)? {
                    return Err(Error::Timeout {
                        dir: self.dir.clone(),
                        timeout,
                    });
                }
                false
            }
        };
        Ok(Pause {
            cgroup: self,
            since,
            ours,
            resumed: false,
        })
    }

    fn read(&self, file: &str) -> Result<(PathBuf, String)> {
        let path = self.dir.join(file);
        match fs::read_to_string(&path) {
            Ok(content) => Ok((path, content)),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    fn write(&self, file: &str, value: &'static str) -> Result<()> {
        let path = self.dir.join(file);
        // No O_CREAT: a missing control file means a wrong dir or version.
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|source| Error::Write {
                path,
                value,
                source,
            })
    }

    /// Whether `cgroup.events` says `frozen 1`, and the file it was read from.
    fn v2_frozen(&self) -> Result<(bool, File)> {
        let path = self.dir.join(V2_EVENTS);
        let read = |source| Error::Read {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(read)?;
        let mut content = String::new();
        file.read_to_string(&mut content).map_err(read)?;
        let frozen = content
            .lines()
            .find_map(|l| l.strip_prefix("frozen "))
            .map(str::trim);
        match frozen {
            Some("0") => Ok((false, file)),
            Some("1") => Ok((true, file)),
            _ => Err(Error::Parse { path, content }),
        }
    }

    /// Waits until the kernel reports the cgroup frozen; false at the deadline.
    ///
    /// v1 has no notification: poll with a backoff from 100 µs to 10 ms. On v2 the
    /// kernel raises POLLPRI on `cgroup.events` when it changes, but at most once
    /// per 20 ms per file (later changes are delayed), so the wait for it is capped
    /// by the same backoff; that also serves fake files. The file is reopened each
    /// round so that a test's kernel may replace it.
    fn wait_frozen(&self, deadline: Instant) -> Result<bool> {
        let mut nap = Duration::from_micros(100);
        loop {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            match self.version {
                CgroupVersion::V1 => {
                    if self.state()? == FreezerState::Frozen {
                        return Ok(true);
                    }
                    if left.is_zero() {
                        return Ok(false);
                    }
                    std::thread::sleep(nap.min(left));
                }
                CgroupVersion::V2 => {
                    let (frozen, file) = self.v2_frozen()?;
                    if frozen {
                        return Ok(true);
                    }
                    if left.is_zero() {
                        return Ok(false);
                    }
                    // poll() counts whole milliseconds.
                    let ms = nap.min(left).as_millis().clamp(1, 1000) as u16;
                    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
                    // An error (EINTR) only means: look again.
                    let _ = nix::poll::poll(&mut fds, PollTimeout::from(ms));
                }
            }
            nap = (nap * 2).min(Duration::from_millis(10));
        }
    }
}

/// A frozen cgroup, thawed when this is dropped (or [`Pause::resume`]d) unless it
/// was already frozen before the pause began.
#[must_use = "dropping a Pause thaws the cgroup at once"]
pub struct Pause<'a> {
    cgroup: &'a Cgroup,
    since: Instant,
    ours: bool,
    resumed: bool,
}

impl Pause<'_> {
    /// How long the cgroup has been frozen by this pause (from the freeze request).
    pub fn frozen_for(&self) -> Duration {
        self.since.elapsed()
    }

    /// Whether the cgroup was already frozen by someone else, so that ending this
    /// pause leaves it frozen.
    pub fn was_frozen(&self) -> bool {
        !self.ours
    }

    /// Ends the pause: thaws the cgroup (unless it was frozen before) and returns
    /// how long it was frozen.
    pub fn resume(mut self) -> Result<Duration> {
        let frozen = self.frozen_for();
        self.resumed = true;
        if self.ours {
            self.cgroup.thaw()?;
        }
        tracing::debug!(cgroup = %self.cgroup.dir.display(), frozen_ms = frozen.as_millis() as u64,
            thawed = self.ours, "pause ended");
        Ok(frozen)
    }
}

impl Drop for Pause<'_> {
    fn drop(&mut self) {
        if self.resumed || !self.ours {
            return;
        }
        if let Err(e) = self.cgroup.thaw() {
            tracing::error!(cgroup = %self.cgroup.dir.display(), error = %e,
                "failed to thaw the session at the end of a pause");
        }
    }
}

/// A process's place in one hierarchy, from `/proc/PID/cgroup`.
fn membership(proc_cgroup: &str, version: CgroupVersion) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let mut f = line.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let hit = match version {
            CgroupVersion::V1 => id != "0" && controllers.split(',').any(|c| c == "freezer"),
            CgroupVersion::V2 => id == "0" && controllers.is_empty(),
        };
        hit.then_some(path)
    })
}

/// The directory of a cgroup path, under the first mount of its hierarchy that
/// shows it (a mount's root may be a sub-cgroup, as in a cgroup namespace), and
/// whether it is that mount's top.
fn locate(
    pid: i32,
    path: Option<&str>,
    version: CgroupVersion,
    mounts: &[crate::session::mountinfo::Mount],
) -> Result<(PathBuf, bool)> {
    let what = hierarchy(version);
    let mut fitting = mounts
        .iter()
        .filter(|m| match version {
            CgroupVersion::V1 => m.fs_type == "cgroup" && m.has_super_flag("freezer"),
            CgroupVersion::V2 => m.fs_type == "cgroup2",
        })
        .peekable();
    if fitting.peek().is_none() {
        return Err(Error::NoMount { version, what });
    }
    let path = path.ok_or(Error::NotInCgroup { pid, version, what })?;
    fitting
        .find_map(|m| {
            let rel = Path::new(path).strip_prefix(&m.root).ok()?;
            let top = rel.as_os_str().is_empty();
            Some((
                if top {
                    m.target.clone()
                } else {
                    m.target.join(rel)
                },
                top,
            ))
        })
        .ok_or_else(|| Error::NotVisible {
            pid,
            version,
            path: path.to_string(),
        })
}

fn hierarchy(version: CgroupVersion) -> &'static str {
    match version {
        CgroupVersion::V1 => "freezer",
        CgroupVersion::V2 => "unified",
    }
}

/// [`Cgroup::of_pid`] on text already read: `theirs` and `ours` are
/// `/proc/PID/cgroup` of the target and of this process.
fn resolve(
    pid: i32,
    theirs: &str,
    ours: &str,
    mounts: &[crate::session::mountinfo::Mount],
    prefer: Option<CgroupVersion>,
) -> Result<Cgroup> {
    let pick = |version: CgroupVersion| -> Result<Cgroup> {
        let path = membership(theirs, version);
        let (dir, is_root) = locate(pid, path, version, mounts)?;
        if is_root {
            return Err(Error::RootCgroup { pid, dir });
        }
        if let Some(mine) = membership(ours, version) {
            if path.is_some_and(|p| Path::new(mine).starts_with(p)) {
                return Err(Error::ContainsSelf { dir });
            }
        }
        if version == CgroupVersion::V2 && !dir.join(V2_FREEZE).exists() {
            return Err(Error::NoV2Freezer { dir });
        }
        Ok(Cgroup::new(version, dir))
    };
    match prefer {
        Some(version) => pick(version),
        None => {
            let v1 = membership(theirs, CgroupVersion::V1).filter(|p| *p != "/");
            match v1.map(|_| pick(CgroupVersion::V1)) {
                Some(Ok(cg)) => Ok(cg),
                // No usable v1 freezer (not in one, or not mounted here): v2.
                Some(Err(Error::NoMount { .. } | Error::NotVisible { .. })) | None => {
                    pick(CgroupVersion::V2)
                }
                Some(Err(e)) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;

    /// Replaces a file the way the kernel changes it: all at once.
    fn put(dir: &Path, file: &str, content: &str) {
        let tmp = dir.join(format!(".{file}.tmp"));
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, dir.join(file)).unwrap();
    }

    fn get(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    fn fake(version: CgroupVersion) -> (tempfile::TempDir, Cgroup) {
        let tmp = tempfile::tempdir().unwrap();
        match version {
            CgroupVersion::V1 => put(tmp.path(), V1_STATE, "THAWED\n"),
            CgroupVersion::V2 => {
                put(tmp.path(), V2_FREEZE, "0\n");
                put(tmp.path(), V2_EVENTS, "populated 1\nfrozen 0\n");
            }
        }
        let cg = Cgroup::new(version, tmp.path());
        (tmp, cg)
    }

    /// A thread playing the v2 kernel: once `cgroup.freeze` reads 1, it waits
    /// `delay` (None: forever) and reports `frozen 1`; it reports `frozen 0` when
    /// `cgroup.freeze` goes back to 0 and stops when told to.
    fn v2_kernel(
        dir: PathBuf,
        delay: Option<Duration>,
        stop: Arc<AtomicBool>,
    ) -> thread::JoinHandle<bool> {
        thread::spawn(move || {
            let mut asked_at = None;
            let mut saw_thaw = false;
            while !stop.load(Ordering::Relaxed) {
                let freeze = fs::read_to_string(dir.join(V2_FREEZE)).unwrap_or_default();
                match (freeze.trim(), asked_at) {
                    ("1", None) => asked_at = Some(Instant::now()),
                    ("1", Some(at)) if delay.is_some_and(|d| at.elapsed() >= d) => {
                        put(&dir, V2_EVENTS, "populated 1\nfrozen 1\n")
                    }
                    ("0", Some(_)) => {
                        saw_thaw = true;
                        asked_at = None;
                        put(&dir, V2_EVENTS, "populated 1\nfrozen 0\n");
                    }
                    _ => {}
                }
                thread::sleep(Duration::from_millis(1));
            }
            saw_thaw
        })
    }

    #[test]
    fn state_table() {
        use FreezerState::*;
        /// Version, control files and their content, the state (None: a parse error).
        type Case = (
            CgroupVersion,
            &'static [(&'static str, &'static str)],
            Option<FreezerState>,
        );
        let cases: &[Case] = &[
            (CgroupVersion::V1, &[(V1_STATE, "THAWED\n")], Some(Thawed)),
            (
                CgroupVersion::V1,
                &[(V1_STATE, "FREEZING\n")],
                Some(Freezing),
            ),
            (CgroupVersion::V1, &[(V1_STATE, "FROZEN\n")], Some(Frozen)),
            (CgroupVersion::V1, &[(V1_STATE, "frozen\n")], None),
            (CgroupVersion::V1, &[(V1_STATE, "")], None),
            (
                CgroupVersion::V2,
                &[(V2_FREEZE, "0\n"), (V2_EVENTS, "populated 1\nfrozen 0\n")],
                Some(Thawed),
            ),
            (
                CgroupVersion::V2,
                &[(V2_FREEZE, "1\n"), (V2_EVENTS, "populated 1\nfrozen 0\n")],
                Some(Freezing),
            ),
            (
                CgroupVersion::V2,
                &[(V2_FREEZE, "1\n"), (V2_EVENTS, "populated 0\nfrozen 1\n")],
                Some(Frozen),
            ),
            // Frozen by an ancestor: not by this cgroup.
            (
                CgroupVersion::V2,
                &[(V2_FREEZE, "0\n"), (V2_EVENTS, "populated 1\nfrozen 1\n")],
                Some(Thawed),
            ),
            (
                CgroupVersion::V2,
                &[(V2_FREEZE, "1\n"), (V2_EVENTS, "populated 1\n")],
                None,
            ),
            (
                CgroupVersion::V2,
                &[(V2_FREEZE, "2\n"), (V2_EVENTS, "frozen 0\n")],
                None,
            ),
        ];
        for (version, files, want) in cases {
            let tmp = tempfile::tempdir().unwrap();
            for (f, c) in *files {
                put(tmp.path(), f, c);
            }
            let got = Cgroup::new(*version, tmp.path()).state();
            match want {
                Some(w) => assert_eq!(got.unwrap(), *w, "{version} {files:?}"),
                None => {
                    let e = got.unwrap_err();
                    assert!(matches!(e, Error::Parse { .. }), "{version} {files:?}: {e}");
                    assert!(e.to_string().contains(tmp.path().to_str().unwrap()), "{e}");
                }
            }
        }
    }

    #[test]
    fn missing_files_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = Cgroup::new(CgroupVersion::V1, tmp.path().join("gone"));
        let e = cg.state().unwrap_err().to_string();
        assert!(
            e.starts_with("failed to read ") && e.contains("gone/freezer.state"),
            "{e}"
        );
        let e = cg.thaw().unwrap_err().to_string();
        assert!(
            e.starts_with("failed to write \"THAWED\" to ") && e.contains("gone/freezer.state"),
            "{e}"
        );
        // Nothing was created in the (fake) cgroup dir.
        let cg = Cgroup::new(CgroupVersion::V2, tmp.path());
        assert!(cg.freeze(Duration::from_millis(10)).is_err());
        assert!(!tmp.path().join(V2_FREEZE).exists());
    }

    #[test]
    fn v1_freeze_and_thaw_write_the_state() {
        let (tmp, cg) = fake(CgroupVersion::V1);
        // With no kernel behind it the fake file reads back what was written.
        cg.freeze(Duration::from_secs(1)).unwrap();
        assert_eq!(get(tmp.path(), V1_STATE), "FROZEN");
        assert_eq!(cg.state().unwrap(), FreezerState::Frozen);
        cg.thaw().unwrap();
        assert_eq!(get(tmp.path(), V1_STATE), "THAWED");
    }

    #[test]
    fn v1_pause_waits_for_an_owners_freeze_and_leaves_it_frozen() {
        let (tmp, cg) = fake(CgroupVersion::V1);
        put(tmp.path(), V1_STATE, "FREEZING\n");
        let dir = tmp.path().to_path_buf();
        let kernel = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            put(&dir, V1_STATE, "FROZEN\n");
        });
        let start = Instant::now();
        let pause = cg.pause(Duration::from_secs(5)).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(pause.was_frozen());
        kernel.join().unwrap();
        drop(pause);
        assert_eq!(get(tmp.path(), V1_STATE), "FROZEN\n");
    }

    #[test]
    fn v1_pause_of_an_owners_freeze_that_never_completes_times_out_untouched() {
        let (tmp, cg) = fake(CgroupVersion::V1);
        put(tmp.path(), V1_STATE, "FREEZING\n");
        let e = cg.pause(Duration::from_millis(50)).err().unwrap();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert_eq!(get(tmp.path(), V1_STATE), "FREEZING\n");
    }

    #[test]
    fn v1_pause_thaws_on_drop_resume_and_panic() {
        let (tmp, cg) = fake(CgroupVersion::V1);
        {
            let pause = cg.pause(Duration::from_secs(1)).unwrap();
            assert!(!pause.was_frozen());
            assert_eq!(get(tmp.path(), V1_STATE), "FROZEN");
        }
        assert_eq!(get(tmp.path(), V1_STATE), "THAWED");

        let pause = cg.pause(Duration::from_secs(1)).unwrap();
        thread::sleep(Duration::from_millis(20));
        let frozen = pause.resume().unwrap();
        assert!(frozen >= Duration::from_millis(20), "{frozen:?}");
        assert_eq!(get(tmp.path(), V1_STATE), "THAWED");

        let r = std::panic::catch_unwind(|| {
            let _pause = cg.pause(Duration::from_secs(1)).unwrap();
            assert_eq!(get(tmp.path(), V1_STATE), "FROZEN");
            panic!("the walk failed");
        });
        assert!(r.is_err());
        assert_eq!(get(tmp.path(), V1_STATE), "THAWED");
    }

    #[test]
    fn resume_reports_a_thaw_failure() {
        let (tmp, cg) = fake(CgroupVersion::V1);
        let pause = cg.pause(Duration::from_secs(1)).unwrap();
        fs::remove_file(tmp.path().join(V1_STATE)).unwrap();
        let e = pause.resume().unwrap_err();
        assert!(
            matches!(
                e,
                Error::Write {
                    value: "THAWED",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn v2_freeze_waits_for_the_kernel() {
        let (tmp, cg) = fake(CgroupVersion::V2);
        let stop = Arc::new(AtomicBool::new(false));
        let kernel = v2_kernel(
            tmp.path().into(),
            Some(Duration::from_millis(100)),
            stop.clone(),
        );
        let start = Instant::now();
        cg.freeze(Duration::from_secs(5)).unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert_eq!(cg.state().unwrap(), FreezerState::Frozen);
        cg.thaw().unwrap();
        assert_eq!(get(tmp.path(), V2_FREEZE), "0");
        stop.store(true, Ordering::Relaxed);
        kernel.join().unwrap();
    }

    #[test]
    fn v2_freeze_timeout_thaws_back() {
        let (tmp, cg) = fake(CgroupVersion::V2);
        let stop = Arc::new(AtomicBool::new(false));
        let kernel = v2_kernel(tmp.path().into(), None, stop.clone());
        let start = Instant::now();
        let e = cg.freeze(Duration::from_millis(200)).unwrap_err();
        let took = start.elapsed();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "cgroup {} did not freeze within 200ms",
                tmp.path().display()
            )
        );
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(get(tmp.path(), V2_FREEZE), "0");
        thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        assert!(kernel.join().unwrap(), "the kernel never saw the thaw");
        // The pause API reports the same and leaves the cgroup thawed.
        let e = cg.pause(Duration::from_millis(50)).err().unwrap();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert_eq!(get(tmp.path(), V2_FREEZE), "0");
    }

    #[test]
    fn v2_timeout_whose_thaw_fails_says_so() {
        let (tmp, cg) = fake(CgroupVersion::V2);
        let dir = tmp.path().to_path_buf();
        // The kernel removes cgroup.freeze as soon as the freeze is asked for.
        let kernel = thread::spawn(move || loop {
            if fs::read_to_string(dir.join(V2_FREEZE))
                .unwrap_or_default()
                .trim()
                == "1"
            {
                fs::remove_file(dir.join(V2_FREEZE)).unwrap();
                return;
            }
            thread::sleep(Duration::from_millis(1));
        });
        let e = cg.freeze(Duration::from_millis(200)).unwrap_err();
        kernel.join().unwrap();
        assert!(matches!(e, Error::TimeoutNotThawed { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("and thawing it back failed: failed to write \"0\" to "),
            "{msg}"
        );
    }

    #[test]
    fn v2_pause_of_frozen_cgroup_stays_frozen() {
        let (tmp, cg) = fake(CgroupVersion::V2);
        put(tmp.path(), V2_FREEZE, "1\n");
        put(tmp.path(), V2_EVENTS, "populated 1\nfrozen 1\n");
        let pause = cg.pause(Duration::from_secs(1)).unwrap();
        assert!(pause.was_frozen());
        pause.resume().unwrap();
        assert_eq!(get(tmp.path(), V2_FREEZE), "1\n");
        drop(cg.pause(Duration::from_secs(1)).unwrap());
        assert_eq!(get(tmp.path(), V2_FREEZE), "1\n");
    }

    #[test]
    fn version_strings() {
        for (s, v) in [
            ("v1", CgroupVersion::V1),
            ("v2", CgroupVersion::V2),
            ("2", CgroupVersion::V2),
        ] {
            assert_eq!(s.parse::<CgroupVersion>().unwrap(), v);
        }
        assert_eq!(CgroupVersion::V1.to_string(), "v1");
        assert!("v3".parse::<CgroupVersion>().is_err());
    }

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn mounts(text: &str, v2_at: Option<&Path>) -> Vec<crate::session::mountinfo::Mount> {
        let mut m = crate::session::mountinfo::parse(text.as_bytes()).unwrap();
        // Point the cgroup2 mount at a temp dir so cgroup.freeze can be probed.
        if let Some(at) = v2_at {
            for x in m.iter_mut().filter(|x| x.fs_type == "cgroup2") {
                x.target = at.to_path_buf();
            }
        }
        m
    }

    #[test]
    fn resolve_table() {
        let v2 = tempfile::tempdir().unwrap();
        for d in ["kubepods/pod1/c1", "pod1/c1", "session"] {
            fs::create_dir_all(v2.path().join(d)).unwrap();
            put(&v2.path().join(d), V2_FREEZE, "0\n");
        }
        fs::create_dir_all(v2.path().join("old")).unwrap(); // no cgroup.freeze
        let root = v2.path();
        let hybrid = mounts(HYBRID, Some(root));
        let pure_v2 = mounts(
            "25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            Some(root),
        );
        // A cgroup namespace: the v2 mount shows the cgroup "/kubepods" at its top.
        let nested = {
            let mut m = pure_v2.clone();
            m[0].root = PathBuf::from("/kubepods");
            m
        };
        let comounted = mounts(
            "37 31 0:34 / /cg/freezer,devices rw - cgroup cgroup rw,devices,freezer\n",
            None,
        );
        let me = "6:freezer:/\n0::/\n";
        use CgroupVersion::*;
        /// The cgroup found, or which error.
        type Want = std::result::Result<(CgroupVersion, PathBuf), &'static str>;
        /// Name, mounts, the target's /proc/PID/cgroup, preference, outcome.
        type Case<'a> = (
            &'a str,
            &'a [crate::session::mountinfo::Mount],
            &'a str,
            Option<CgroupVersion>,
            Want,
        );
        let cases: Vec<Case> = vec![
            (
                "hybrid, v1 freezer cgroup wins",
                &hybrid,
                "9:name=systemd:/x\n6:freezer:/sess/a\n0::/session\n",
                None,
                Ok((V1, "/sys/fs/cgroup/freezer/sess/a".into())),
            ),
            (
                "hybrid, preferring v2",
                &hybrid,
                "6:freezer:/sess/a\n0::/session\n",
                Some(V2),
                Ok((V2, root.join("session"))),
            ),
            (
                "hybrid, v1 root: falls back to v2",
                &hybrid,
                "6:freezer:/\n0::/session\n",
                None,
                Ok((V2, root.join("session"))),
            ),
            (
                "freezer co-mounted with another controller",
                &comounted,
                "4:devices,freezer:/s\n",
                None,
                Ok((V1, "/cg/freezer,devices/s".into())),
            ),
            (
                "hybrid, both root",
                &hybrid,
                "6:freezer:/\n0::/\n",
                None,
                Err("root"),
            ),
            (
                "hybrid, v1 root preferred",
                &hybrid,
                "6:freezer:/\n0::/s\n",
                Some(V1),
                Err("root"),
            ),
            (
                "pure v2",
                &pure_v2,
                "0::/kubepods/pod1/c1\n",
                None,
                Ok((V2, root.join("kubepods/pod1/c1"))),
            ),
            (
                "pure v2, v1 asked for",
                &pure_v2,
                "0::/session\n",
                Some(V1),
                Err("no v1"),
            ),
            ("pure v2, root", &pure_v2, "0::/\n", None, Err("root")),
            (
                "v2 without cgroup.freeze",
                &pure_v2,
                "0::/old\n",
                None,
                Err("no freeze"),
            ),
            (
                "cgroup namespace",
                &nested,
                "0::/kubepods/pod1/c1\n",
                None,
                Ok((V2, root.join("pod1/c1"))),
            ),
            (
                "cgroup namespace top",
                &nested,
                "0::/kubepods\n",
                None,
                Err("root"),
            ),
            (
                "outside the namespace",
                &nested,
                "0::/other\n",
                None,
                Err("not visible"),
            ),
            (
                "no v2 membership",
                &hybrid,
                "6:freezer:/\n",
                None,
                Err("no v2"),
            ),
        ];
        for (name, mounts, theirs, prefer, want) in cases {
            let got = resolve(42, theirs, me, mounts, prefer);
            match (want, got) {
                (Ok((v, d)), Ok(cg)) => assert_eq!(cg, Cgroup::new(v, d), "{name}"),
                (Err(kind), Err(e)) => {
                    let ok = match kind {
                        "root" => matches!(e, Error::RootCgroup { .. }),
                        "no v1" => matches!(e, Error::NoMount { version: V1, .. }),
                        "no v2" => matches!(e, Error::NotInCgroup { version: V2, .. }),
                        "no freeze" => matches!(e, Error::NoV2Freezer { .. }),
                        "not visible" => matches!(e, Error::NotVisible { .. }),
                        _ => unreachable!(),
                    };
                    assert!(ok, "{name}: wanted {kind}, got {e}");
                }
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
        }
        let e = resolve(42, "6:freezer:/\n0::/\n", me, &hybrid, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "process 42 is in the root cgroup {}: refusing to freeze the whole host",
                root.display()
            )
        );
    }

    #[test]
    fn refuses_a_cgroup_that_holds_this_process() {
        let hybrid = mounts(HYBRID, None);
        for (theirs, ours) in [
            ("6:freezer:/sess\n0::/\n", "6:freezer:/sess\n0::/\n"),
            ("6:freezer:/sess\n0::/\n", "6:freezer:/sess/sub\n0::/\n"),
        ] {
            let e = resolve(42, theirs, ours, &hybrid, None).unwrap_err();
            assert!(matches!(e, Error::ContainsSelf { .. }), "{e}");
        }
        // A sibling whose name merely starts the same is fine.
        let cg = resolve(
            42,
            "6:freezer:/sess\n0::/\n",
            "6:freezer:/session\n0::/\n",
            &hybrid,
            None,
        )
        .unwrap();
        assert_eq!(cg.dir(), Path::new("/sys/fs/cgroup/freezer/sess"));
    }
}
