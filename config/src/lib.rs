//! Typed configuration for freezeframe: the TOML file format, its defaults, its
//! validation, and where the file is looked for.
//!
//! This crate owns `config.toml` and nothing else. It knows nothing of containers,
//! cgroups, tar or sockets: it says *where* and *how much*, and the other crates
//! act on it. Every section and key has a default, so a missing file or section is
//! a complete configuration; unknown keys are errors, so a typo is never silently
//! ignored. `example.toml` next to this crate's `Cargo.toml` lists every key at its
//! default.
//!
//! [`Config::load`] looks, in order, at:
//! 1. an explicit path (the `--config` flag), which must exist;
//! 2. the file named by [`ENV_VAR`] (when set and not empty), which must exist;
//! 3. [`DEFAULT_PATH`], if it exists;
//! 4. otherwise, all defaults.

mod de;
mod error;
mod validate;

#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{ConfigError, Location};

/// The config file read when neither an explicit path nor [`ENV_VAR`] names one.
pub const DEFAULT_PATH: &str = "/etc/freezeframe/config.toml";

/// The environment variable that names the config file.
pub const ENV_VAR: &str = "FREEZEFRAME_CONFIG";

/// The whole configuration, one field per `[section]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub storage: Storage,
    pub session: Session,
    pub compression: Compression,
    pub freeze: Freeze,
    pub limits: Limits,
    pub server: Server,
    pub runtime: Runtime,
    pub stores: Stores,
    pub registry: Registry,
}

/// `[storage]`: where committed images go, and who may read them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Directory that receives image archives. Absolute.
    pub save_location: PathBuf,
    /// Permission bits of archives and their sidecars, at most `0o777`; the
    /// directories freezeframe creates for them let in whoever may read them.
    #[serde(deserialize_with = "de::mode")]
    pub archive_mode: u32,
    /// Group owning archives, sidecars and the directories created for them;
    /// unchanged when `None`.
    pub archive_group: Option<Group>,
}

/// `[session]`: what of a session's filesystem goes into the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Session {
    /// The scratch home inside the container. Absolute and normalised.
    pub home_path: PathBuf,
    /// Glob patterns on container paths that are never committed. Each is known
    /// to compile with `globset::Glob::new`.
    pub excludes: Vec<String>,
    /// Secret paths added to the built-in set of credential files (`.ssh`
    /// keys, `.netrc`, shell histories…), which are left out and listed in the
    /// report: globs relative to the home and to `/root` (absolute with a
    /// leading `/`); `!PATTERN` keeps what an earlier one left out.
    pub secret_paths: Vec<String>,
}

/// `[compression]`: how layers are compressed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compression {
    pub algorithm: Algorithm,
    /// `None` means the algorithm's default; see [`Compression::effective_level`].
    pub level: Option<u32>,
    /// Compression threads; 0 means all cores the process may use
    /// (see [`Compression::effective_threads`]). At most 1024.
    pub threads: u32,
}

/// The layer compression algorithm, as the config file and the API spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// `[freeze]`: how a session is paused while it is committed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Freeze {
    /// How long to wait for the cgroup to report frozen.
    #[serde(deserialize_with = "de::duration")]
    pub timeout: Duration,
    pub pause: PauseMode,
    /// If the frozen pass of a live commit would read more file data than
    /// this, it stops: the session is thawed for one more pre-copy round and
    /// frozen again, and the second time it falls back to freezing the
    /// session for the whole commit.
    pub live_fallback_bytes: u64,
    /// Live rounds between a live commit's first pass and its freeze, each
    /// reading what changed since the first pass ahead of the freeze; they
    /// stop early once little changes. 0: none.
    pub precopy_rounds: u32,
    /// Bytes of file data the rounds may keep in a scratch file beside the
    /// archive; what changes past it is read while frozen.
    pub precopy_max_bytes: u64,
    /// The longest the last-resort full freeze may last: past it the commit
    /// stops with an error and the session is thawed.
    #[serde(deserialize_with = "de::duration")]
    pub fallback_max_pause: Duration,
}

/// `[limits]`: how much a commit reads before it stops with an error naming
/// what was too large; each unset (the default) is no limit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes of one file's data (its apparent size, holes included).
    pub max_file_size: Option<u64>,
    /// Bytes of file data in one layer (apparent sizes, holes included).
    pub max_layer_size: Option<u64>,
}

/// How long the session is frozen: the one pause type of the config file, the
/// command line and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseMode {
    /// A live first pass, then a brief freeze for what changed.
    #[default]
    Auto,
    /// Frozen for the whole commit.
    Full,
    /// Never frozen: the image may mix states from different moments.
    None,
}

/// `[server]`: the Unix-socket API and its task queue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    pub socket: PathBuf,
    /// Permission bits of the socket file, at most `0o777`.
    #[serde(deserialize_with = "de::mode")]
    pub socket_mode: u32,
    /// Group owning the socket file; unchanged when `None`.
    pub socket_group: Option<Group>,
    /// Peer uids allowed to use the API.
    pub allowed_uids: Vec<u32>,
    /// Peer gids allowed to use the API.
    pub allowed_gids: Vec<u32>,
    pub state_dir: PathBuf,
    /// Commits that run at once; at least 1.
    pub max_concurrent: usize,
    /// Commits that may wait for a slot; at least 1.
    pub queue_size: usize,
    /// Container label/annotation key whose value names the session's owner.
    pub owner_label: Option<String>,
    /// Directory of the platform's lock files.
    pub lock_dir: Option<PathBuf>,
    /// Cancel running commits (and thaw) on shutdown rather than wait for them.
    pub cancel_on_shutdown: bool,
    /// A connection's whole request head must arrive within this.
    #[serde(deserialize_with = "de::duration")]
    pub header_timeout: Duration,
    /// A connection with no request in progress and no bytes moving either way
    /// for this long is closed.
    #[serde(deserialize_with = "de::duration")]
    pub idle_timeout: Duration,
    /// Connections open at once from peers other than root; beyond it a new one
    /// is closed at accept. At least 1.
    pub max_connections: usize,
    /// Every call names an `owner`, and sees only the tasks of that owner.
    /// Needs `owner_label`.
    pub require_owner: bool,
    /// Finished task records older than this are removed, from memory and disk.
    #[serde(deserialize_with = "de::duration")]
    pub retain_for: Duration,
    /// At most this many finished task records are kept (the newest); at least 1.
    pub retain_count: usize,
}

/// A group named in the config: by name, resolved by whoever uses it, or by gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    Name(String),
    Gid(u32),
}

/// `[runtime]`: where to find containers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Runtime {
    /// OCI runtime state roots searched for a container id, in order.
    pub roots: Vec<PathBuf>,
    /// freezeframe's own state root, when it runs as the OCI runtime.
    pub state_root: PathBuf,
    /// When freezeframe runs a container whose image has content at the home
    /// path, copy it into the empty scratch directory mounted there.
    pub seed_home: bool,
}

/// `[stores]`: the data roots of the runtimes a node runs, where a session's
/// name and base image are read from disk. A root that does not exist is a
/// runtime this node does not run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stores {
    /// Docker's data root (`dockerd --data-root`); its overlay2 image store.
    pub docker: PathBuf,
    /// containers-storage's graph root (podman, CRI-O, buildah).
    pub containers_storage: PathBuf,
    /// containerd's root (its metadata and content store).
    pub containerd: PathBuf,
}

/// `[registry]`: how the service reaches registries it pushes to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registry {
    /// Directories laid out as `/etc/docker/certs.d` (`DIR/HOST[:PORT]/*.crt`):
    /// the CAs trusted for a registry on top of the system's roots. Empty means
    /// `/etc/docker/certs.d` and `/etc/containers/certs.d`.
    pub cert_dirs: Vec<PathBuf>,
    /// Registries (`HOST[:PORT]`) the service may speak plain HTTP to, when a
    /// push asks for it.
    pub insecure: Vec<String>,
    /// A credentials file (podman's `auth.json`, Docker's `config.json`
    /// format) looked at before `$REGISTRY_AUTH_FILE` and Docker's, when a
    /// push brings no credentials of its own.
    pub auth_file: Option<PathBuf>,
}

impl Default for Stores {
    fn default() -> Self {
        Self {
            docker: "/var/lib/docker".into(),
            containers_storage: "/var/lib/containers/storage".into(),
            containerd: "/var/lib/containerd".into(),
        }
    }
}

impl Config {
    /// Loads the configuration in the order described in the crate docs.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let env = std::env::var_os(ENV_VAR);
        Self::load_from(explicit, env.as_deref(), Path::new(DEFAULT_PATH))
    }

    /// [`Config::load`] with the environment variable's value and the default
    /// path passed in, so tests need not touch the process environment.
    fn load_from(
        explicit: Option<&Path>,
        env: Option<&OsStr>,
        default_path: &Path,
    ) -> Result<Self, ConfigError> {
        let env = env.filter(|value| !value.is_empty()).map(Path::new);
        let (path, required, from_env) = match (explicit, env) {
            (Some(path), _) => (path, true, false),
            (None, Some(path)) => (path, true, true),
            (None, None) => (default_path, false, false),
        };
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                if required {
                    return Err(ConfigError::NotFound {
                        path: path.to_owned(),
                        from_env,
                    });
                }
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates `text`; `origin` is the file it came from, for errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|err| {
            let span = err.span();
            let mut message = one_line(err.message());
            if message.is_empty() {
                // toml says nothing when the text stops in the middle of a value.
                message = match &span {
                    Some(span) if span.start >= text.len() => "unexpected end of file",
                    _ => "invalid toml",
                }
                .to_owned();
            }
            ConfigError::Parse {
                path: origin.to_owned(),
                location: span.map(|span| Location::of_offset(text, span.start)),
                message,
            }
        })?;
        validate::config(&config).map_err(|invalid| ConfigError::Invalid {
            path: origin.to_owned(),
            key: invalid.key,
            message: invalid.message,
        })?;
        Ok(config)
    }
}

impl Compression {
    /// The configured level, or the algorithm's default: 5 for gzip, 3 for zstd
    /// (0 for none, where it is unused).
    pub fn effective_level(&self) -> u32 {
        self.level.unwrap_or(self.algorithm.default_level())
    }

    /// The configured thread count, or for 0 the cores this process may use;
    /// see [`effective_threads`].
    pub fn effective_threads(&self) -> usize {
        effective_threads(self.threads as usize)
    }
}

/// `threads`, or for 0 the cores this process may use, at least 1: the one
/// place where "0 means all cores" is decided, for the config, the command
/// line's `--threads` and the service's share alike. The standard library's
/// count takes the affinity mask and the cgroup's CPU quota into account.
pub fn effective_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        n => n,
    }
}

impl Algorithm {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::None => "none",
        }
    }

    /// The level used when none is given: 4 for gzip, 3 for zstd (0 for none,
    /// where it is unused). The one table of default levels.
    pub fn default_level(self) -> u32 {
        match self {
            Self::Gzip => 4,
            Self::Zstd => 3,
            Self::None => 0,
        }
    }

    /// The levels the algorithm accepts; `None` where it takes no level.
    pub fn levels(self) -> Option<RangeInclusive<u32>> {
        match self {
            Self::Gzip => Some(0..=9),
            Self::Zstd => Some(1..=22),
            Self::None => None,
        }
    }
}

impl FromStr for PauseMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "full" => Ok(Self::Full),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown pause mode {other:?} (expected auto, full or none)"
            )),
        }
    }
}

impl PauseMode {
    /// The name used in the config file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Full => "full",
            Self::None => "none",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            save_location: "/var/lib/freezeframe/images".into(),
            archive_mode: 0o600,
            archive_group: None,
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Self {
            home_path: "/home/work".into(),
            excludes: Vec::new(),
            secret_paths: Vec::new(),
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Gzip,
            level: None,
            threads: 0,
        }
    }
}

impl Default for Freeze {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            pause: PauseMode::Auto,
            live_fallback_bytes: 256 << 20,
            precopy_rounds: 4,
            precopy_max_bytes: 4 << 30,
            fallback_max_pause: Duration::from_secs(60),
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Self {
            socket: "/run/freezeframe/freezeframe.sock".into(),
            socket_mode: 0o660,
            socket_group: None,
            allowed_uids: vec![0],
            allowed_gids: Vec::new(),
            state_dir: "/var/lib/freezeframe/state".into(),
            max_concurrent: 2,
            queue_size: 16,
            owner_label: None,
            lock_dir: None,
            cancel_on_shutdown: true,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 128,
            require_owner: false,
            retain_for: Duration::from_secs(7 * 24 * 3600),
            retain_count: 1000,
        }
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            roots: [
                "/run/freezeframe",
                "/run/runc",
                "/run/youki",
                "/run/containerd/runc",
                "/run/docker/runtime-runc/moby",
            ]
            .map(PathBuf::from)
            .to_vec(),
            state_root: "/run/freezeframe".into(),
            seed_home: true,
        }
    }
}

/// The toml crate's messages may span lines; ours are one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
