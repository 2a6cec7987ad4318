//! Files that get a name only when they are complete.
//!
//! An [`Unnamed`] file is opened with `O_TMPFILE` in its destination directory:
//! it has no name until [`Unnamed::persist`] links it into place, so a process
//! killed halfway (even by SIGKILL) leaves nothing behind. Filesystems without
//! `O_TMPFILE` (NFS, some FUSE) get a hidden temporary name instead, removed on
//! drop; ones left by a killed process are removed the next time a file of the
//! same name is written.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{renameat2, AtFlags, OFlag, RenameFlags};

/// A file being written in a directory, not yet under its final name.
pub struct Unnamed {
    file: File,
    dir: PathBuf,
    /// The temporary name, when the filesystem has no `O_TMPFILE`.
    named: Option<PathBuf>,
}

impl Unnamed {
    /// Creates the file in `dir`; `name` is the final name, used for the
    /// temporary one if a name is needed.
    pub fn new(dir: &Path, name: &str) -> io::Result<Self> {
        let anonymous = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o644)
            .custom_flags(OFlag::O_TMPFILE.bits())
            .open(dir);
        match anonymous {
            Ok(file) => Ok(Unnamed {
                file,
                dir: dir.to_path_buf(),
                named: None,
            }),
            Err(e) if matches!(e.raw_os_error(), Some(c) if c == Errno::EOPNOTSUPP as i32 || c == Errno::EISDIR as i32 || c == Errno::EINVAL as i32) =>
            {
                remove_stale(dir, name);
                let tmp = dir.join(temp_name(name, std::process::id(), 0));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&tmp)?;
                Ok(Unnamed {
                    file,
                    dir: dir.to_path_buf(),
                    named: Some(tmp),
                })
            }
            Err(e) => Err(e),
        }
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temporary name, if the file has one.
    pub fn temp_path(&self) -> Option<&Path> {
        self.named.as_deref()
    }

    /// Gives the file its final name `dest` (in the same directory). Without
    /// `overwrite`, an existing `dest` is left alone and the error is
    /// `AlreadyExists`.
    pub fn persist(mut self, dest: &Path, overwrite: bool) -> io::Result<()> {
        let flags = if overwrite {
            RenameFlags::empty()
        } else {
            RenameFlags::RENAME_NOREPLACE
        };
        if let Some(tmp) = self.named.take() {
            let renamed = renameat2(None, &tmp, None, dest, flags);
            if renamed.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            return renamed.map_err(io::Error::from);
        }
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        let link = |to: &Path| {
            nix::unistd::linkat(
                None,
                proc_path.as_path(),
                None,
                to,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from)
        };
        if !overwrite {
            return link(dest);
        }
        // Link under a temporary name, then rename over the old file.
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut attempt = 0;
        let tmp = loop {
            let tmp = self.dir.join(temp_name(&name, std::process::id(), attempt));
            match link(&tmp) {
                Ok(()) => break tmp,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let renamed = std::fs::rename(&tmp, dest);
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed
    }
}

impl Drop for Unnamed {
    fn drop(&mut self) {
        if let Some(tmp) = self.named.take() {
            let _ = std::fs::remove_file(tmp);
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

/// Removes `.NAME.PID.tmp` files whose process is gone.
fn remove_stale(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(rest) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
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
        u.persist(&dest, false).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
    }

    #[test]
    fn persisting_over_an_existing_file_needs_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar");
        std::fs::write(&dest, b"old").unwrap();
        let mut u = Unnamed::new(dir.path(), "a.tar").unwrap();
        u.file().write_all(b"new").unwrap();
        let err = u.persist(&dest, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        let mut u = Unnamed::new(dir.path(), "a.tar").unwrap();
        u.file().write_all(b"new").unwrap();
        u.persist(&dest, true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
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
        remove_stale(dir.path(), "a.tar");
        assert!(!stale.exists());
        assert!(mine.exists() && other.exists());
    }
}
