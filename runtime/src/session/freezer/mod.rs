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

mod locate;
mod pause;
#[cfg(test)]
mod tests;

pub use pause::Pause;

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
