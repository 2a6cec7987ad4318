//! Task records on disk: one JSON file per task in `STATE_DIR/tasks/`, replaced
//! atomically (temp file, fsync, rename, fsync of the directory), so a crash
//! leaves either the old record or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::api::Task;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

trait At<T> {
    fn at(self, path: &Path) -> Result<T, Error>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating it, mode 0700) `state_dir/tasks`.
    pub fn open(state_dir: &Path) -> Result<Store, Error> {
        let dir = state_dir.join("tasks");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .at(&dir)?;
        Ok(Store { dir })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Replaces the record of `task.id` with `task`, durably.
    pub fn write(&self, task: &Task) -> Result<(), Error> {
        let path = self.path(&task.id);
        let tmp = self.dir.join(format!(".{}.json.tmp", task.id));
        let json = serde_json::to_vec_pretty(task).map_err(|source| Error::Parse {
            path: path.clone(),
            source,
        })?;
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&json)?;
                f.write_all(b"\n")?;
                f.sync_all()
            })
            .at(&tmp);
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &path).at(&path)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .at(&self.dir)
    }

    /// Removes the record of task `id`; one already gone is not an error.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        if !valid_id(id) {
            return Ok(());
        }
        let path = self.path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).at(&path),
            _ => Ok(()),
        }
    }

    /// Every record, with an error for each file that could not be read.
    pub fn load(&self) -> Result<(Vec<Task>, Vec<Error>), Error> {
        let mut tasks = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let path = entry.at(&self.dir)?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            if name.starts_with('.') {
                // A write that a crash interrupted; the record before it stands.
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match fs::read(&path).at(&path).and_then(|b| {
                serde_json::from_slice::<Task>(&b).map_err(|source| Error::Parse { path, source })
            }) {
                // A record is its file: one whose id names another is not used.
                Ok(task) if valid_id(&task.id) && name == format!("{}.json", task.id) => {
                    tasks.push(task)
                }
                Ok(_) => {}
                Err(e) => bad.push(e),
            }
        }
        Ok((tasks, bad))
    }
}

/// Task ids are the server's own: hex digits (see `tasks::new_id`).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}
