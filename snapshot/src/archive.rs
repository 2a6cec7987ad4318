//! Writes an OCI image layout as a tar archive, durably and atomically.
//!
//! The archive is written to an unnamed file in the destination directory (see
//! [`Unnamed`]), which is given as a path or, by a caller that resolved it
//! safely, as a directory fd ([`ArchiveWriter::create_in`]); every later step
//! works on that fd. Blobs whose digest is only known at the end (the new layer) are
//! streamed straight into the archive after a placeholder header that is
//! rewritten once the digest and size are known. On [`ArchiveWriter::commit`]
//! the file is fsynced, a `NAME.sha256` sidecar is linked into place, then the
//! archive, and the directory fsynced: an archive under its name always has its
//! sidecar, and a commit that fails at the last step takes its sidecar back.
//! Before that, nothing is under the final name, and a writer dropped or a
//! process killed leaves nothing behind. Archive and
//! sidecar are their owner's alone (`0600`) unless the process's
//! [`output_access`] or
//! [`ArchiveWriter::set_access`] says otherwise.
//!
//! It knows the OCI layout's file names and the tar framing of blobs, not what
//! the blobs hold: layers, configs and manifests are made elsewhere.

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;
use rustix::fs::{linkat, renameat, unlinkat, AtFlags};
use sha2::{Digest as _, Sha256};

use crate::digest::sha256_digest;
use crate::error::{Error, IoContext, Result};
use crate::fs::open::{open_root, stat_at};
use crate::fs::output::{output_access, Access, Unnamed};
use crate::fs::Errno;
use crate::tar::{finish_checksum, padding, ustar, Header, BLOCK};

pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI layout archive being written, not yet under its name.
pub struct ArchiveWriter {
    out: Unnamed,
    /// What messages call the file being written: its final path.
    tmp: PathBuf,
    dest: PathBuf,
    /// The final name, in the directory `out` is in.
    name: OsString,
    /// The directory's path, for messages.
    dir_path: PathBuf,
    overwrite: bool,
    /// What the archive and its sidecar get as they are named.
    access: Access,
    blobs: HashSet<String>,
    /// Blobs in the order they were written, for [`ArchiveWriter::rollback`].
    order: Vec<String>,
}

/// A point in the archive to roll back to.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    offset: u64,
    blobs: usize,
}

/// The archive as it was committed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub path: PathBuf,
    pub size: u64,
    /// `sha256:` of the whole archive file, also in the sidecar.
    pub sha256: String,
}

impl ArchiveWriter {
    /// Starts an archive to be committed as `dest`. Fails at once, naming `dest`,
    /// if it exists and `overwrite` is false.
    pub fn create(dest: &Path, overwrite: bool) -> Result<Self> {
        let name = dest.file_name().ok_or_else(|| Error::Invalid {
            field: "output",
            message: format!("{} does not name a file", dest.display()),
        })?;
        // Before anything is opened: an existing output is the error even
        // where its directory cannot be opened for reading.
        if !overwrite && dest.symlink_metadata().is_ok() {
            return Err(Error::Exists {
                path: dest.to_path_buf(),
            });
        }
        let dir_path = parent_dir(dest);
        let dir = open_root(dir_path).at(dir_path)?;
        Self::create_in(dir.as_fd(), name, dest, overwrite)
    }

    /// Starts an archive to be committed as `name` in the directory open as
    /// `dir` (any fd of it, an `O_PATH` one included): the directory a caller
    /// resolved is the one written to, whatever its path does meanwhile.
    /// `dest` is the archive's path, for messages and the report. Fails at
    /// once, naming `dest`, if `name` exists and `overwrite` is false.
    pub fn create_in(
        dir: BorrowedFd<'_>,
        name: &OsStr,
        dest: &Path,
        overwrite: bool,
    ) -> Result<Self> {
        let dir_path = parent_dir(dest);
        let cname = CString::new(name.as_bytes()).map_err(|_| Error::Invalid {
            field: "output",
            message: format!("{} holds a NUL byte", dest.display()),
        })?;
        if !overwrite && stat_at(dir, &cname).is_ok() {
            return Err(Error::Exists {
                path: dest.to_path_buf(),
            });
        }
        let out = Unnamed::new_in(dir, dir_path, &name.to_string_lossy()).at(dir_path)?;
        let mut w = ArchiveWriter {
            out,
            tmp: dest.to_path_buf(),
            dest: dest.to_path_buf(),
            name: name.to_os_string(),
            dir_path: dir_path.to_path_buf(),
            overwrite,
            access: output_access(),
            blobs: HashSet::new(),
            order: Vec::new(),
        };
        w.dir_entry("blobs")?;
        w.dir_entry("blobs/sha256")?;
        w.add_file("oci-layout", OCI_LAYOUT)?;
        Ok(w)
    }

    /// Sets the [`Access`] of the archive and its sidecar, in place of the
    /// process's [`output_access`].
    pub fn set_access(&mut self, access: Access) {
        self.access = access;
        self.out.set_access(access);
    }

    /// The temporary file's path, when the filesystem needed one (for cleanup
    /// records; an unnamed file needs none).
    pub fn temp_path(&self) -> Option<&Path> {
        self.out.temp_path()
    }

    /// The final path, which names the file being written in messages.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The directory the archive is written in, and its path.
    pub fn dir(&self) -> (BorrowedFd<'_>, &Path) {
        (self.out.dir(), &self.dir_path)
    }

    fn file(&mut self) -> &mut File {
        self.out.file()
    }

    fn dir_entry(&mut self, name: &str) -> Result<()> {
        let mut h = ustar(format!("{name}/").as_bytes(), b'5', 0o755, 0, 0, 0, 0, b"");
        finish_checksum(&mut h);
        let tmp = self.tmp.clone();
        self.file().write_all(&h).at(tmp)
    }

    /// Adds a small file at the archive's top level (`oci-layout`, `index.json`).
    pub fn add_file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let h = Header::plain_file(name.as_bytes().to_vec(), data.len() as u64, 0o644);
        let tmp = self.tmp.clone();
        let f = self.file();
        f.write_all(&h.encode()).at(&tmp)?;
        f.write_all(data).at(&tmp)?;
        f.write_all(&[0u8; BLOCK][..padding(data.len() as u64)])
            .at(&tmp)
    }

    /// Adds an in-memory blob and returns its digest.
    pub fn add_blob(&mut self, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        if !self.blobs.contains(&digest) {
            let name = blob_name(&digest);
            self.add_file(&name, data)?;
            self.blobs.insert(digest.clone());
            self.order.push(digest.clone());
        }
        Ok(digest)
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blobs.contains(digest)
    }

    /// Streams a blob whose digest is not known yet. `write` gets a handle to the
    /// archive file positioned after a placeholder header, writes the blob and
    /// returns the handle with the blob's digest and size.
    pub fn stream_blob<T>(
        &mut self,
        write: impl FnOnce(File) -> Result<(File, String, u64, T)>,
    ) -> Result<T> {
        let tmp = self.tmp.clone();
        let mark = self.mark()?;
        let start = mark.offset;
        let f = self.file();
        f.write_all(&[0u8; BLOCK]).at(&tmp)?;
        let handle = f.try_clone().at(&tmp)?;
        let (handle, digest, size, extra) = match write(handle) {
            Ok(written) => written,
            Err(e) => {
                // Leave the archive as it was, so the caller may go on.
                self.rollback(mark)?;
                return Err(e);
            }
        };
        drop(handle);
        let f = self.file();
        let end = f.stream_position().at(&tmp)?;
        if end != start + BLOCK as u64 + size {
            return Err(Error::Io {
                path: tmp,
                source: io::Error::other(format!(
                    "blob {digest} has {size} bytes but {} were written",
                    end - start - BLOCK as u64
                )),
            });
        }
        if self.blobs.contains(&digest) {
            // Already in the archive: drop the copy just written.
            self.rollback(mark)?;
            return Ok(extra);
        }
        let name = blob_name(&digest);
        let mut h = ustar(name.as_bytes(), b'0', 0o644, 0, 0, size, 0, b"");
        finish_checksum(&mut h);
        let f = self.file();
        f.seek(SeekFrom::Start(start)).at(&tmp)?;
        f.write_all(&h).at(&tmp)?;
        f.seek(SeekFrom::Start(end)).at(&tmp)?;
        f.write_all(&[0u8; BLOCK][..padding(size)]).at(&tmp)?;
        self.blobs.insert(digest.clone());
        self.order.push(digest);
        Ok(extra)
    }

    /// The current end of the archive.
    pub fn mark(&mut self) -> Result<Mark> {
        let tmp = self.tmp.clone();
        let offset = self.file().stream_position().at(&tmp)?;
        Ok(Mark {
            offset,
            blobs: self.order.len(),
        })
    }

    /// Drops everything written since `mark`.
    pub fn rollback(&mut self, mark: Mark) -> Result<()> {
        let tmp = self.tmp.clone();
        let f = self.file();
        f.set_len(mark.offset).at(&tmp)?;
        f.seek(SeekFrom::Start(mark.offset)).at(&tmp)?;
        for d in self.order.drain(mark.blobs..) {
            self.blobs.remove(&d);
        }
        Ok(())
    }

    /// Ends the archive, syncs it, and links the sidecar, then the archive,
    /// into place.
    ///
    /// The sidecar goes first, so an archive under its name always has one;
    /// if linking the archive then fails, the sidecar that was there before
    /// (kept under a hidden name meanwhile) is put back, or the new one
    /// removed, so a failed commit leaves neither a new archive nor a
    /// sidecar that does not match what is there. Something other than a
    /// file at the sidecar's name fails the commit before anything is linked.
    /// A process killed between the two links may leave the new sidecar
    /// beside no archive or the old one, never an archive without a sidecar.
    pub fn commit(mut self) -> Result<Committed> {
        let tmp = self.tmp.clone();
        let f = self.file();
        f.write_all(&[0u8; BLOCK * 2]).at(&tmp)?;
        let size = f.stream_position().at(&tmp)?;
        // The layer header was rewritten after its data, so the file's hash is
        // taken from what is on disk; this also reads back what was written.
        f.seek(SeekFrom::Start(0)).at(&tmp)?;
        let sha256 = hash_reader(f).at(&tmp)?;
        f.sync_all().at(&tmp)?;

        let dir = self.dir_path.clone();
        let name = self.name.to_string_lossy().into_owned();
        let sidecar_name = sidecar_name(&self.name);
        let sidecar = dir.join(&sidecar_name);
        let mut side =
            Unnamed::new_in(self.out.dir(), &dir, &sidecar_name.to_string_lossy()).at(&dir)?;
        side.set_access(self.access);
        let line = format!("{}  {name}\n", sha256.trim_start_matches("sha256:"));
        side.file().write_all(line.as_bytes()).at(&sidecar)?;
        side.file().sync_all().at(&sidecar)?;
        let dir_fd = side.dir().try_clone_to_owned().at(&dir)?;

        let previous = keep_previous(dir_fd.as_fd(), &sidecar_name).at(&sidecar)?;
        if let Err(e) = side.persist(&sidecar_name, true) {
            if let Some(kept) = &previous {
                let _ = unlinkat(&dir_fd, kept.as_c_str(), AtFlags::empty());
            }
            return Err::<Committed, _>(e).at(&sidecar);
        }
        let linked = match self.out.persist(&self.name, self.overwrite) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::Exists {
                path: self.dest.clone(),
            }),
            other => other.at(&self.dest),
        };
        if let Err(e) = linked {
            // Put back what was at the sidecar's name before this commit.
            let undone = match &previous {
                Some(kept) => renameat(&dir_fd, kept.as_c_str(), &dir_fd, &sidecar_name),
                None => unlinkat(&dir_fd, &sidecar_name, AtFlags::empty()),
            };
            if let Err(undo) = undone {
                tracing::warn!(
                    "{}: could not restore the sidecar after a failed commit: {undo}",
                    sidecar.display()
                );
            }
            return Err(e);
        }
        if let Some(kept) = &previous {
            let _ = unlinkat(&dir_fd, kept.as_c_str(), AtFlags::empty());
        }
        rustix::fs::fsync(&dir_fd).at(&dir)?;
        Ok(Committed {
            path: self.dest,
            size,
            sha256,
        })
    }
}

/// `NAME.sha256`, the sidecar of archive `NAME`.
fn sidecar_name(name: &OsStr) -> OsString {
    let mut s = name.to_os_string();
    s.push(".sha256");
    s
}

/// Links the file at `sidecar` in `dir`, if there is one, under a hidden
/// name, and returns that name; a commit that fails later puts it back. A
/// directory (or anything that cannot be linked) at `sidecar` is an error:
/// no sidecar could be linked there.
fn keep_previous(dir: BorrowedFd<'_>, sidecar: &OsStr) -> io::Result<Option<CString>> {
    let csidecar = CString::new(sidecar.as_bytes()).map_err(io::Error::other)?;
    match stat_at(dir, &csidecar) {
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
        Ok(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() => {
            return Err(Errno::ISDIR.into());
        }
        Ok(_) => {}
    }
    let mut attempt = 0u32;
    loop {
        let mut kept = b".".to_vec();
        kept.extend_from_slice(sidecar.as_bytes());
        kept.extend_from_slice(format!(".{}-prev{attempt}.tmp", std::process::id()).as_bytes());
        let kept = CString::new(kept).map_err(io::Error::other)?;
        match linkat(dir, &csidecar, dir, kept.as_c_str(), AtFlags::empty()) {
            Ok(()) => return Ok(Some(kept)),
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::EXIST) if attempt < 100 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

pub fn blob_name(digest: &str) -> String {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    format!("blobs/{alg}/{hex}")
}

/// The directory a file path is in (`.` for a bare name).
pub(crate) fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn hash_reader(r: &mut impl Read) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_writer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        let mut w = ArchiveWriter::create(&dest, false).unwrap();
        w.add_blob(b"{}").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn archive_and_sidecar_are_private_unless_given_an_access() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |name: &str| {
            let m = std::fs::metadata(dir.path().join(name)).unwrap();
            (m.mode() & 0o7777, m.gid())
        };
        let me = rustix::process::getegid().as_raw();
        ArchiveWriter::create(&dir.path().join("a.tar"), false)
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(mode("a.tar"), (0o600, me));
        assert_eq!(mode("a.tar.sha256"), (0o600, me));
        let mut w = ArchiveWriter::create(&dir.path().join("b.tar"), false).unwrap();
        w.set_access(Access {
            mode: 0o640,
            gid: Some(me),
        });
        w.commit().unwrap();
        assert_eq!(mode("b.tar"), (0o640, me));
        assert_eq!(mode("b.tar.sha256"), (0o640, me));
    }

    #[test]
    fn an_existing_output_is_kept_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        std::fs::write(&dest, b"precious").unwrap();
        let err = ArchiveWriter::create(&dest, false).err().unwrap();
        assert!(err.to_string().contains("out.tar: already exists"), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
        let w = ArchiveWriter::create(&dest, true).unwrap();
        let done = w.commit().unwrap();
        assert_eq!(done.size, std::fs::metadata(&dest).unwrap().len());
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_directory_at_the_sidecar_name_fails_the_commit_before_the_archive_is_linked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out.tar.sha256")).unwrap();
        let w = ArchiveWriter::create(&dir.path().join("out.tar"), false).unwrap();
        let err = w.commit().err().unwrap();
        assert!(
            err.to_string().contains("out.tar.sha256: Is a directory"),
            "{err}"
        );
        assert_eq!(names(dir.path()), ["out.tar.sha256"]);
        assert!(dir.path().join("out.tar.sha256").is_dir());
    }

    #[test]
    fn a_failed_archive_link_removes_the_new_sidecar() {
        // Something appears at the archive's name between create and commit.
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        let w = ArchiveWriter::create(&dest, false).unwrap();
        std::fs::write(&dest, b"theirs").unwrap();
        let err = w.commit().err().unwrap();
        assert!(err.to_string().contains("out.tar: already exists"), "{err}");
        assert_eq!(names(dir.path()), ["out.tar"]);
        assert_eq!(std::fs::read(&dest).unwrap(), b"theirs");
    }

    #[test]
    fn a_failed_archive_link_puts_the_previous_sidecar_back() {
        // With overwrite, a non-empty directory at the archive's name cannot
        // be replaced; the sidecar already there stays as it was.
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("keep"), b"").unwrap();
        std::fs::write(dir.path().join("out.tar.sha256"), b"old\n").unwrap();
        let w = ArchiveWriter::create(&dest, true).unwrap();
        let err = w.commit().err().unwrap();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", dest.display())),
            "{err}"
        );
        assert_eq!(names(dir.path()), ["out.tar", "out.tar.sha256"]);
        assert!(dest.join("keep").is_file());
        assert_eq!(
            std::fs::read(dir.path().join("out.tar.sha256")).unwrap(),
            b"old\n"
        );
    }

    #[test]
    fn overwriting_a_pair_replaces_both_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        let first = ArchiveWriter::create(&dest, false)
            .unwrap()
            .commit()
            .unwrap();
        let mut w = ArchiveWriter::create(&dest, true).unwrap();
        w.add_file("index.json", b"{}").unwrap();
        let second = w.commit().unwrap();
        assert_ne!(first.sha256, second.sha256);
        assert_eq!(names(dir.path()), ["out.tar", "out.tar.sha256"]);
        let sidecar = std::fs::read_to_string(dir.path().join("out.tar.sha256")).unwrap();
        assert!(sidecar.starts_with(second.sha256.trim_start_matches("sha256:")));
        assert_eq!(
            hash_reader(&mut File::open(&dest).unwrap()).unwrap(),
            second.sha256
        );
    }

    #[test]
    fn an_archive_made_in_a_directory_fd_lands_there_whatever_its_path_does() {
        let t = tempfile::tempdir().unwrap();
        let (out, moved) = (t.path().join("out"), t.path().join("moved"));
        std::fs::create_dir(&out).unwrap();
        let fd = open_root(&out).unwrap();
        let dest = out.join("img.tar");
        let w = ArchiveWriter::create_in(fd.as_fd(), OsStr::new("img.tar"), &dest, false).unwrap();
        std::fs::rename(&out, &moved).unwrap();
        std::fs::create_dir(&out).unwrap();
        let done = w.commit().unwrap();
        assert_eq!(done.path, dest);
        assert!(moved.join("img.tar").is_file() && moved.join("img.tar.sha256").is_file());
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

        let err = ArchiveWriter::create_in(fd.as_fd(), OsStr::new("img.tar"), &dest, false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("img.tar: already exists"), "{err}");
    }

    #[test]
    fn streamed_blobs_get_their_digest_as_name_and_a_sidecar_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("img.tar");
        let mut w = ArchiveWriter::create(&dest, false).unwrap();
        let data = vec![7u8; 1500];
        let want = sha256_digest(&data);
        w.stream_blob(|mut f| {
            f.write_all(&data).unwrap();
            Ok((f, sha256_digest(&data), data.len() as u64, ()))
        })
        .unwrap();
        w.add_file("index.json", b"{}").unwrap();
        let done = w.commit().unwrap();
        let mut names = Vec::new();
        let mut ar = ::tar::Archive::new(File::open(&dest).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            if name.starts_with("blobs/sha256/") && !name.ends_with('/') {
                assert_eq!(body, data);
            }
            names.push(name);
        }
        assert_eq!(
            names,
            vec![
                "blobs/".to_string(),
                "blobs/sha256/".into(),
                "oci-layout".into(),
                blob_name(&want),
                "index.json".into()
            ]
        );
        let sidecar = std::fs::read_to_string(dir.path().join("img.tar.sha256")).unwrap();
        let file_hash = hash_reader(&mut File::open(&dest).unwrap()).unwrap();
        assert_eq!(done.sha256, file_hash);
        assert_eq!(
            sidecar,
            format!("{}  img.tar\n", file_hash.trim_start_matches("sha256:"))
        );
    }
}
