//! The guardian: a small process that thaws a frozen session when the process that
//! froze it dies, even by SIGKILL, when no destructor runs.
//!
//! The committer starts it *before* freezing, holding the write end of its stdin.
//! However the committer ends, the kernel closes that pipe; the guardian reads EOF
//! and thaws. A committer that thawed the session itself says `release` first.
//!
//! ```text
//! committer                         guardian (own process group, SIGINT/TERM/HUP ignored)
//!   Guardian::spawn ─────────────▶  notes whether the cgroup is already paused
//!                   ◀── "ready\n"   blocks reading stdin
//!   cgroup.pause(), walk, resume()
//!   guardian.release() ─"release"─▶ exits 0, cgroup untouched
//!   (or dies)       ───── EOF ────▶ thaws (unless it was paused at start), exits
//! ```
//!
//! Spawn it before freezing: a cgroup that is already frozen when the guardian
//! starts was paused by its owner, and the guardian leaves it as it found it.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};

use super::freezer::{self, Cgroup, CgroupVersion, FreezerState};

/// How long a guardian may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Thaw attempts after the committer died, and the pause between them.
const THAW_ATTEMPTS: u32 = 5;
const THAW_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to start the guardian {} for cgroup {}: {source}", exe.display(), dir.display())]
    Spawn {
        exe: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },

    #[error("the guardian {} for cgroup {} did not start: {detail}", exe.display(), dir.display())]
    NotReady {
        exe: PathBuf,
        dir: PathBuf,
        detail: String,
    },

    #[error("failed to release the guardian of cgroup {}: {source}", dir.display())]
    Release { dir: PathBuf, source: io::Error },

    #[error("the guardian of cgroup {} failed: {status}", dir.display())]
    Failed { dir: PathBuf, status: ExitStatus },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The binary's hidden subcommand that runs [`guardian_main`].
pub const SUBCOMMAND: &str = "guardian";

/// What a guardian is started with: `EXE guardian --version v1|v2 --cgroup DIR`.
/// [`Guardian::spawn`] writes it with [`GuardianArgs::to_args`]; the binary's
/// hidden subcommand reads it back with [`GuardianArgs::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardianArgs {
    pub version: CgroupVersion,
    pub cgroup: PathBuf,
}

impl GuardianArgs {
    const VERSION: &'static str = "--version";
    const CGROUP: &'static str = "--cgroup";

    /// The arguments that guard `cgroup`.
    pub fn of(cgroup: &Cgroup) -> Self {
        GuardianArgs {
            version: cgroup.version(),
            cgroup: cgroup.dir().to_path_buf(),
        }
    }

    /// The command line after the executable, [`SUBCOMMAND`] first.
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            SUBCOMMAND.into(),
            Self::VERSION.into(),
            self.version.to_string().into(),
            Self::CGROUP.into(),
            self.cgroup.clone().into(),
        ]
    }

    /// Reads the arguments after [`SUBCOMMAND`]: both flags, in either order,
    /// each as `--flag VALUE` or `--flag=VALUE`.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> std::result::Result<Self, String> {
        let (mut version, mut cgroup) = (None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let bytes = arg.as_bytes();
            let (flag, inline) = match bytes.iter().position(|&b| b == b'=') {
                Some(i) if bytes.starts_with(b"--") => {
                    (&bytes[..i], Some(OsStr::from_bytes(&bytes[i + 1..])))
                }
                _ => (bytes, None),
            };
            let (name, slot) = if flag == Self::VERSION.as_bytes() {
                (Self::VERSION, &mut version)
            } else if flag == Self::CGROUP.as_bytes() {
                (Self::CGROUP, &mut cgroup)
            } else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let value = match inline.map(OsStr::to_os_string).or_else(|| args.next()) {
                Some(value) => value,
                None => return Err(format!("{name} needs a value")),
            };
            if slot.replace(value).is_some() {
                return Err(format!("{name} given twice"));
            }
        }
        let version = version
            .ok_or_else(|| format!("{} is required", Self::VERSION))?
            .to_str()
            .ok_or_else(|| format!("{}: not UTF-8", Self::VERSION))?
            .parse()?;
        let cgroup = cgroup.ok_or_else(|| format!("{} is required", Self::CGROUP))?;
        Ok(GuardianArgs {
            version,
            cgroup: cgroup.into(),
        })
    }
}

/// A running guardian process. Dropping it without [`Guardian::release`] closes its
/// stdin, so it thaws the cgroup, and waits for it.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
    waited: bool,
}

impl Guardian {
    /// Starts `exe guardian --version v1|v2 --cgroup DIR` ([`GuardianArgs`]; `exe` is normally
    /// [`std::env::current_exe`]) in its own process group, so a terminal's Ctrl-C
    /// does not reach it, and waits until it says `ready`.
    ///
    /// Call it before freezing: the guardian notes whether the cgroup is already
    /// frozen when it starts (paused by its owner) and then never thaws it.
    pub fn spawn(exe: &Path, cgroup: &Cgroup) -> Result<Self> {
        let dir = cgroup.dir().to_path_buf();
        let mut child = Command::new(exe)
            .args(GuardianArgs::of(cgroup).to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                exe: exe.to_path_buf(),
                dir: dir.clone(),
                source,
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let said = match stdout {
            Some(mut out) => read_line(&mut out, READY_TIMEOUT),
            None => Err("no stdout pipe".to_string()),
        };
        match said {
            Ok(line) if line == "ready\n" => {}
            other => {
                let detail = match other {
                    Ok(line) if line.is_empty() => silent_exit(&mut child),
                    Ok(line) => format!("it said {line:?} instead of \"ready\""),
                    Err(e) => e,
                };
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::NotReady {
                    exe: exe.to_path_buf(),
                    dir,
                    detail,
                });
            }
        }
        tracing::debug!(pid = child.id(), cgroup = %dir.display(), "guardian ready");
        Ok(Guardian {
            child,
            stdin,
            dir,
            waited: false,
        })
    }

    /// The guardian's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The commit thawed the session itself: tells the guardian to exit without
    /// touching the cgroup, and waits for it.
    pub fn release(mut self) -> Result<()> {
        let dir = self.dir.clone();
        let told = match self.stdin.take() {
            Some(mut stdin) => stdin.write_all(b"release\n").and_then(|()| stdin.flush()),
            None => Ok(()),
        };
        // Waits whether or not the word got through (the pipe is closed by now).
        self.waited = true;
        let status = self.child.wait().map_err(|source| Error::Release {
            dir: dir.clone(),
            source,
        })?;
        if !status.success() {
            return Err(Error::Failed { dir, status });
        }
        // Exited 0 without the word: it read EOF and thawed the cgroup.
        told.map_err(|source| Error::Release { dir, source })
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        if self.waited {
            return;
        }
        drop(self.stdin.take());
        match self.child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::error!(cgroup = %self.dir.display(), %status,
                "the guardian failed to thaw the session"),
            Err(e) => tracing::error!(cgroup = %self.dir.display(), error = %e,
                "failed to wait for the guardian"),
        }
    }
}

/// Reads up to and including the first newline within `timeout`; "" on EOF.
fn read_line(out: &mut ChildStdout, timeout: Duration) -> std::result::Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("it said nothing within {timeout:?}"));
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("polling its stdout failed: {e}")),
        }
        let mut chunk = [0u8; 64];
        match out.read(&mut chunk) {
            Ok(0) => return Ok(String::from_utf8_lossy(&buf).into_owned()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') || buf.len() > 1024 {
                    return Ok(String::from_utf8_lossy(&buf).into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading its stdout failed: {e}")),
        }
    }
}

/// Why a guardian that closed its stdout without a word did so.
fn silent_exit(child: &mut Child) -> String {
    for _ in 0..100 {
        if let Ok(Some(status)) = child.try_wait() {
            return format!("it exited with {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    "it closed its stdout".to_string()
}

/// The guardian process's main: `freezeframe guardian --version v1|v2 --cgroup DIR`.
///
/// Ignores SIGINT, SIGTERM and SIGHUP (by blocking them: call this before any other
/// thread starts), prints `ready`, and reads stdin: on `release` it exits 0 and
/// leaves the cgroup alone; on EOF (the committer is gone, however it ended) it
/// thaws the cgroup, retrying a few times, unless the cgroup was already frozen
/// when the guardian started.
pub fn guardian_main(version: CgroupVersion, cgroup: PathBuf) -> ExitCode {
    let mut ignored = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        ignored.add(sig);
    }
    if let Err(e) = ignored.thread_block() {
        tracing::error!(error = %e, "guardian: failed to block signals");
        return ExitCode::FAILURE;
    }
    let cg = Cgroup::new(version, cgroup);
    let paused_before = match cg.state() {
        Ok(state) => state != FreezerState::Thawed,
        Err(e) => {
            tracing::error!(error = %e, "guardian: cannot guard this cgroup");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = io::stdout().lock();
    if stdout
        .write_all(b"ready\n")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // The committer is gone before we started: nothing of ours is frozen yet.
        return ExitCode::FAILURE;
    }
    drop(stdout);

    let mut stdin = io::stdin().lock();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.trim_end() == "release" => return ExitCode::SUCCESS,
            Ok(_) if line.trim().is_empty() => {}
            Ok(_) => tracing::warn!(line = line.trim_end(), "guardian: unknown command"),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "guardian: reading stdin failed; thawing");
                break;
            }
        }
    }
    if paused_before {
        tracing::info!(cgroup = %cg.dir().display(), "guardian: the cgroup was paused before; left as it is");
        return ExitCode::SUCCESS;
    }
    if matches!(cg.state(), Ok(FreezerState::Thawed)) {
        // The committer ended on an error path and had thawed it already.
        tracing::debug!(cgroup = %cg.dir().display(), "guardian: already thawed");
        return ExitCode::SUCCESS;
    }
    for attempt in 1..=THAW_ATTEMPTS {
        match cg.thaw() {
            Ok(()) => {
                tracing::warn!(cgroup = %cg.dir().display(), "guardian: the committer ended without thawing the session; thawed it");
                return ExitCode::SUCCESS;
            }
            Err(freezer::Error::Write { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                tracing::warn!(cgroup = %cg.dir().display(), "guardian: the cgroup is gone; nothing to thaw");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, "guardian: thaw failed");
                std::thread::sleep(THAW_RETRY);
            }
        }
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_argv_written_is_the_argv_read() {
        for version in [CgroupVersion::V1, CgroupVersion::V2] {
            let args = GuardianArgs::of(&Cgroup::new(version, "/sys/fs/cgroup/a b=c"));
            let argv = args.to_args();
            assert_eq!(argv[0], SUBCOMMAND);
            assert_eq!(GuardianArgs::parse(argv.into_iter().skip(1)), Ok(args));
        }
    }

    #[test]
    fn either_order_and_inline_values_are_read() {
        let want = Ok(GuardianArgs {
            version: CgroupVersion::V2,
            cgroup: "/cg".into(),
        });
        for argv in [
            os(&["--cgroup", "/cg", "--version", "v2"]),
            os(&["--version=2", "--cgroup=/cg"]),
        ] {
            assert_eq!(GuardianArgs::parse(argv), want);
        }
    }

    #[test]
    fn bad_argv_is_refused_with_the_reason() {
        for (argv, why) in [
            (os(&["--cgroup", "/cg"]), "--version is required"),
            (os(&["--version", "v1"]), "--cgroup is required"),
            (
                os(&["--version", "v3", "--cgroup", "/cg"]),
                "unknown cgroup version",
            ),
            (
                os(&["--version", "v1", "--cgroup"]),
                "--cgroup needs a value",
            ),
            (
                os(&["--version", "v1", "--version", "v2"]),
                "--version given twice",
            ),
            (os(&["--pid", "1"]), "unexpected argument \"--pid\""),
        ] {
            let e = GuardianArgs::parse(argv).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
