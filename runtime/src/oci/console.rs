//! The terminal of a foreground `run` or `exec` given no `--console-socket`:
//! the container's process gets a pseudo-terminal of its own, and this
//! process joins its master to its own stdin and stdout, in raw mode, passing
//! on window size changes, as runc does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, SetArg, Termios};
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::termios::{tcgetwinsize, tcsetwinsize};

/// How long the runtime waits for the terminal's master once the process runs.
const WAIT: Duration = Duration::from_secs(10);
/// How long it waits for the last output once the process has exited.
const DRAIN: Duration = Duration::from_secs(2);

/// A socket, in a private directory of its own, for libcontainer to send the
/// terminal's master to.
pub struct ConsoleSocket {
    dir: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens in a new directory `parent/.console-PID`, mode 0700.
    pub fn listen(parent: &Path) -> io::Result<Self> {
        let dir = parent.join(format!(".console-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // a dead run's, with our pid
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        match UnixListener::bind(dir.join("sock")) {
            Ok(listener) => Ok(ConsoleSocket { dir, listener }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The master the container's process sent, joined to this process's
    /// stdin and stdout by two threads. Block the signals the caller waits
    /// for first: the threads inherit the mask, and must never take them.
    pub fn attach(self) -> io::Result<Console> {
        let master = self.receive()?;
        Console::attach(master)
    }

    fn receive(&self) -> io::Result<OwnedFd> {
        let ready = {
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            poll(
                &mut fds,
                PollTimeout::try_from(WAIT).unwrap_or(PollTimeout::MAX),
            )?
        };
        if ready == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no terminal came to {} in {WAIT:?}", self.path().display()),
            ));
        }
        let (conn, _) = self.listener.accept()?;
        let mut name = [0u8; 4096];
        let mut iov = [io::IoSliceMut::new(&mut name)];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        recvmsg(&conn, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
        for cmsg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = cmsg {
                if let Some(fd) = fds.next() {
                    return Ok(fd);
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: a message without a terminal", self.path().display()),
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A container process's terminal, joined to this process's stdin and stdout.
/// Dropping it puts this process's terminal back as it was.
pub struct Console {
    master: File,
    saved: Option<Termios>,
    drained: mpsc::Receiver<()>,
}

impl Console {
    fn attach(master: OwnedFd) -> io::Result<Self> {
        let master = File::from(master);
        let (done, drained) = mpsc::channel();
        let mut from = master.try_clone()?;
        std::thread::spawn(move || {
            copy(&mut from, &mut io::stdout());
            let _ = done.send(());
        });
        let mut to = master.try_clone()?;
        // Never joined: it blocks reading stdin until this process exits.
        std::thread::spawn(move || copy(&mut io::stdin(), &mut to));
        // Raw mode, so that keys (^C included) reach the container unchanged.
        let stdin = io::stdin();
        let saved = match termios::tcgetattr(stdin.as_fd()) {
            Ok(t) => {
                let mut raw = t.clone();
                termios::cfmakeraw(&mut raw);
                termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
                Some(t)
            }
            Err(_) => None, // not a terminal: nothing to set or restore
        };
        let console = Console {
            master,
            saved,
            drained,
        };
        console.resize();
        Ok(console)
    }

    /// Gives the container's terminal this process's window size (the kernel
    /// then sends SIGWINCH to its foreground process group).
    pub fn resize(&self) {
        // A descriptor that is no terminal gets ENOTTY: nothing to pass on.
        if let Ok(size) = tcgetwinsize(io::stdin()) {
            let _ = tcsetwinsize(&self.master, size);
        }
    }

    /// Once the process has exited: waits (a little) for its last output to
    /// reach stdout, then restores this process's terminal.
    pub fn finish(self) {
        let _ = self.drained.recv_timeout(DRAIN);
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Copies until end of file or an error (EIO: the terminal's last process has
/// gone).
fn copy(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}
