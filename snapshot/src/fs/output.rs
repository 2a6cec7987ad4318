//! Files that get a name only when they are complete, made in a directory
//! given as an fd.
//!
//! An [`Unnamed`] file is opened with `O_TMPFILE` in its destination directory:
//! it has no name until [`Unnamed::persist`] links it into place, so a process
//! killed halfway (even by SIGKILL) leaves nothing behind. Filesystems without
//! `O_TMPFILE` (NFS, some FUSE) get a hidden temporary name instead, removed on
//! drop; ones left by a killed process are removed the next time a file of the
//! same name is written.
//!
//! Every step works on the directory's fd, so a directory the caller resolved
//! safely (beneath a save location, say) is the one written to, whatever
//! happens to its path meanwhile. It does not know what the file holds.
//!
//! A file is created readable and writable by its owner only, and takes its
//! [`Access`] (the process's [`output_access`] unless set otherwise) just
//! before it gets its name: an image may hold a home's private keys, so no
//! other user reads it unless the configuration says so.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use rustix::fs::{
    fchmod, fchown, linkat, openat, renameat_with, unlinkat, AtFlags, Gid, Mode, OFlags,
    RenameFlags, CWD,
};

use super::open::{open_root, proc_path, read_names};
use super::Errno;

/// Who may read what freezeframe writes out: the permission bits of its
/// files and the group that owns them (unchanged when `None`). Directories it
/// creates for them get [`Access::dir_mode`] and the same group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Permission bits of a file, at most `0o777`.
    pub mode: u32,
    pub gid: Option<u32>,
}

impl Access {
    /// The owner's alone: files `0600`, directories `0700`.
    pub const PRIVATE: Access = Access {
        mode: 0o600,
        gid: None,
    };

    /// The mode of a directory that holds such files: whoever may read the
    /// files may also list and enter it (`0600` gives `0700`, `0640` gives
    /// `0750`), and the owner always may.
    pub const fn dir_mode(&self) -> u32 {
        let read = self.mode & 0o444;
        0o700 | read | (read >> 2)
    }

    /// Gives the open file or directory `fd` the group, then the `mode`.
    pub fn apply(&self, fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
        if let Some(gid) = self.gid {
            fchown(fd, None, Some(Gid::from_raw(gid)))?;
        }
        fchmod(fd, Mode::from_raw_mode(mode & 0o777))?;
        Ok(())
    }
}

impl Default for Access {
    fn default() -> Self {
        Access::PRIVATE
    }
}

/// The [`Access`] files get unless their writer is told otherwise: the
/// process's configuration, set once at start like a umask.
static OUTPUT_ACCESS: RwLock<Access> = RwLock::new(Access::PRIVATE);

/// Sets the [`Access`] of the files this process writes out from now on.
pub fn set_output_access(access: Access) {
    *OUTPUT_ACCESS.write().unwrap_or_else(|e| e.into_inner()) = access;
}

/// The [`Access`] files written out get by default ([`Access::PRIVATE`]
/// unless [`set_output_access`] said otherwise).
pub fn output_access() -> Access {
    *OUTPUT_ACCESS.read().unwrap_or_else(|e| e.into_inner())
}

/// A file being written in a directory, not yet under its final name.
pub struct Unnamed {
    file: File,
    dir: OwnedFd,
    /// The temporary name and its path, when the filesystem has no
    /// `O_TMPFILE`.
    named: Option<(String, PathBuf)>,
    /// What the file gets as it is named.
    access: Access,
}

impl Unnamed {
    /// Creates the file in directory `dir`; `name` is the final name, used for
    /// the temporary one if a name is needed.
    pub fn new(dir: &Path, name: &str) -> io::Result<Self> {
        let fd = open_root(dir)?;
        Self::new_in(fd.as_fd(), dir, name)
    }

    /// Creates the file in the directory open as `dir` (any fd of it, an
    /// `O_PATH` one included), whose path `dir_path` gives, for
    /// [`Unnamed::temp_path`].
    pub fn new_in(dir: BorrowedFd<'_>, dir_path: &Path, name: &str) -> io::Result<Self> {
        // A directory fd of our own, open for reading: usable for fsync, and
        // unaffected by what the caller does with its fd.
        let dir = openat(
            dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mode = Mode::from_raw_mode(0o600);
        let anonymous = openat(
            &dir,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            mode,
        );
        let (file, named) = match anonymous {
            Ok(fd) => (File::from(fd), None),
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
                remove_stale(dir.as_fd(), name);
                let tmp = temp_name(name, std::process::id(), 0);
                let fd = openat(
                    &dir,
                    tmp.as_str(),
                    OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    mode,
                )?;
                let path = dir_path.join(&tmp);
                (File::from(fd), Some((tmp, path)))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Unnamed {
            file,
            dir,
            named,
            access: output_access(),
        })
    }

    /// Sets the [`Access`] the file gets as it is named, in place of the
    /// process's [`output_access`].
    pub fn set_access(&mut self, access: Access) {
        self.access = access;
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The directory the file is in.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The temporary name's path, if the file has one.
    pub fn temp_path(&self) -> Option<&Path> {
        self.named.as_ref().map(|(_, path)| path.as_path())
    }

    /// Gives the file its [`Access`], then its final name `name` in its
    /// directory. Without `overwrite`, an existing file of that name is left
    /// alone and the error is `AlreadyExists`.
    pub fn persist(mut self, name: &OsStr, overwrite: bool) -> io::Result<()> {
        self.access.apply(self.file.as_fd(), self.access.mode)?;
        let flags = if overwrite {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        if let Some((tmp, _)) = self.named.take() {
            let renamed = renameat_with(&self.dir, tmp.as_str(), &self.dir, name, flags);
            if renamed.is_err() {
                let _ = unlinkat(&self.dir, tmp.as_str(), AtFlags::empty());
            }
            return renamed.map_err(io::Error::from);
        }
        let proc = proc_path(self.file.as_fd(), None);
        let link = |to: &OsStr| {
            linkat(CWD, &proc, &self.dir, to, AtFlags::SYMLINK_FOLLOW).map_err(io::Error::from)
        };
        if !overwrite {
            return link(name);
        }
        // Link under a temporary name, then rename over the old file.
        let shown = name.to_string_lossy();
        let mut attempt = 0;
        let tmp = loop {
            let tmp = temp_name(&shown, std::process::id(), attempt);
            match link(OsStr::new(&tmp)) {
                Ok(()) => break tmp,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let renamed = renameat_with(&self.dir, tmp.as_str(), &self.dir, name, flags);
        if renamed.is_err() {
            let _ = unlinkat(&self.dir, tmp.as_str(), AtFlags::empty());
        }
        renamed.map_err(io::Error::from)
    }
}

impl Drop for Unnamed {
    fn drop(&mut self) {
        if let Some((tmp, _)) = self.named.take() {
            let _ = unlinkat(&self.dir, tmp.as_str(), AtFlags::empty());
        }
    }
}

fn temp_name(name: &str, pid: u32, attempt: u32) -> String {
    if attempt == 0 {
        format!(".{name}.{pid}.tmp")
    } else {
        format!(".{name}.{pid}-{attempt}.tmp")
    }
}

/// Removes `.NAME.PID.tmp` files in `dir` whose process is gone.
fn remove_stale(dir: BorrowedFd<'_>, name: &str) {
    let Ok(entries) = read_names(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for file in entries {
        let Some(rest) = std::str::from_utf8(&file)
            .ok()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = unlinkat(dir, OsStr::from_bytes(&file), AtFlags::empty());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn nothing_shows_until_persisted_and_nothing_stays_if_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut u = Unnamed::new(dir.path(), "a.tar").unwrap();
        u.file().write_all(b"data").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(u);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut u = Unnamed::new(dir.path(), "a.tar").unwrap();
        u.file().write_all(b"data").unwrap();
        let dest = dir.path().join("a.tar");
        u.persist(OsStr::new("a.tar"), false).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
    }

    #[test]
    fn files_are_private_unless_given_an_access() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().mode() & 0o7777;
        let u = Unnamed::new(dir.path(), "a.tar").unwrap();
        assert_eq!(u.access, output_access());
        u.persist(OsStr::new("a.tar"), false).unwrap();
        assert_eq!(mode("a.tar"), 0o600);
        let mut u = Unnamed::new(dir.path(), "b.tar").unwrap();
        let gid = rustix::process::getegid().as_raw();
        u.set_access(Access {
            mode: 0o640,
            gid: Some(gid),
        });
        u.persist(OsStr::new("b.tar"), false).unwrap();
        assert_eq!(mode("b.tar"), 0o640);
        assert_eq!(
            std::fs::metadata(dir.path().join("b.tar")).unwrap().gid(),
            gid
        );
    }

    #[test]
    fn directories_may_be_entered_by_whoever_may_read_the_files() {
        for (file, dir) in [
            (0o600, 0o700),
            (0o640, 0o750),
            (0o644, 0o755),
            (0o660, 0o750),
            (0o200, 0o700),
        ] {
            assert_eq!(
                Access {
                    mode: file,
                    gid: None
                }
                .dir_mode(),
                dir,
                "{file:o}"
            );
        }
    }

    #[test]
    fn persisting_over_an_existing_file_needs_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar");
        std::fs::write(&dest, b"old").unwrap();
        let mut u = Unnamed::new(dir.path(), "a.tar").unwrap();
        u.file().write_all(b"new").unwrap();
        let err = u.persist(OsStr::new("a.tar"), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        let mut u = Unnamed::new(dir.path(), "a.tar").unwrap();
        u.file().write_all(b"new").unwrap();
        u.persist(OsStr::new("a.tar"), true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_file_lands_in_the_directory_of_the_fd_even_if_its_path_moves() {
        let t = tempfile::tempdir().unwrap();
        let (first, moved) = (t.path().join("first"), t.path().join("moved"));
        std::fs::create_dir(&first).unwrap();
        let fd = open_root(&first).unwrap();
        let mut u = Unnamed::new_in(fd.as_fd(), &first, "a.tar").unwrap();
        u.file().write_all(b"data").unwrap();
        std::fs::rename(&first, &moved).unwrap();
        std::fs::create_dir(&first).unwrap();
        u.persist(OsStr::new("a.tar"), false).unwrap();
        assert_eq!(std::fs::read(moved.join("a.tar")).unwrap(), b"data");
        assert!(!first.join("a.tar").exists());
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 0x7ffffffe on this machine (pid_max is lower).
        let stale = dir.path().join(".a.tar.2147483646.tmp");
        let mine = dir
            .path()
            .join(format!(".a.tar.{}.tmp", std::process::id()));
        let other = dir.path().join(".b.tar.2147483646.tmp");
        for p in [&stale, &mine, &other] {
            std::fs::write(p, b"").unwrap();
        }
        let fd = open_root(dir.path()).unwrap();
        remove_stale(fd.as_fd(), "a.tar");
        assert!(!stale.exists());
        assert!(mine.exists() && other.exists());
    }
}
