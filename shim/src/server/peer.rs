//! The Unix socket: binding it (replacing a stale one, refusing a live one),
//! its mode and group, and who is on the other end of each connection
//! (`SO_PEERCRED`, read once when the connection is accepted, see
//! [`super::conn`]).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use freezeframe_config::Group;
use tokio::net::UnixListener;

/// The credentials of a connected peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// A connection's peer, as axum's `ConnectInfo` carries it; `None` when the
/// kernel would not say.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<Peer>);

/// Who may call: any allowed uid, or any allowed (primary) gid.
#[derive(Debug, Clone)]
pub struct Allow {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Allow {
    pub fn permits(&self, p: &Peer) -> bool {
        self.uids.contains(&p.uid) || self.gids.contains(&p.gid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error("{}: another server is listening there", path.display())]
    InUse { path: PathBuf },

    #[error("{}: exists and is not a socket; refusing to replace it", path.display())]
    NotSocket { path: PathBuf },

    #[error("socket_group {name:?}: no such group")]
    NoGroup { name: String },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Binds `path`: creates its parent directory, replaces a stale socket (nobody
/// answers a connect), refuses a live one or any other file, then sets the
/// socket's mode and group. Must be called within a tokio runtime.
pub fn bind(path: &Path, mode: u32, group: Option<&Group>) -> Result<UnixListener, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::InUse {
                    path: path.to_path_buf(),
                });
            }
            tracing::info!(socket = %path.display(), "replacing a stale socket");
            std::fs::remove_file(path).map_err(io_at(path))?;
        }
        Ok(_) => {
            return Err(Error::NotSocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_at(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_at(path))?;
    if let Some(g) = group {
        let gid = match g {
            Group::Gid(gid) => *gid,
            Group::Name(name) => nix::unistd::Group::from_name(name)
                .map_err(|e| io_at(path)(e.into()))?
                .ok_or_else(|| Error::NoGroup { name: name.clone() })?
                .gid
                .as_raw(),
        };
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| io_at(path)(e.into()))?;
    }
    Ok(listener)
}

/// Removes the socket file if it is still the one bound (same inode).
pub fn unlink_if_ours(path: &Path, ino: u64) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == ino) {
        let _ = std::fs::remove_file(path);
    }
}
