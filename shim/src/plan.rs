//! The commit plan: what one commit will do, resolved from the configuration
//! and one set of [`CommitOverrides`] — which `freezeframe commit`'s flags and
//! the body of `POST /v1/commits` both fill. [`CommitPlan::resolve`] is the one
//! place where each option is converted, defaulted and validated; a new option
//! is added here once and reaches both callers.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use freezeframe_config::{Config, PauseMode};
use freezeframe_runtime::session::freezer::CgroupVersion;
use freezeframe_snapshot::changes::Change;
use freezeframe_snapshot::compress::{Algorithm, Settings};
use freezeframe_snapshot::image::ImageMeta;
use freezeframe_snapshot::source::base::{BaseRef, Stores};
use freezeframe_snapshot::walk::{
    Exclude, Graft, Limits, OverlayXattrs, Progress, Secrets, TreeSpec,
};
use freezeframe_snapshot::{BaseBlobs, CommitReport, CommitRequest};

use crate::error::CommitError;
use crate::live::{self, Observer, SessionReport, SessionRequest, Target};

/// What to commit.
pub enum Source {
    /// A running container: walked live or frozen (see [`live`]).
    Session(Target),
    /// Trees on disk, committed as they are.
    Offline {
        /// The overlay upper dir.
        upper: PathBuf,
        /// Lower dirs, topmost first.
        lowers: Vec<PathBuf>,
        /// The session's scratch home on the host, grafted at the home path.
        home: Option<PathBuf>,
        /// The overlay keeps its metadata in `user.overlay.*`.
        userxattr: bool,
    },
}

/// A caller's word on one commit: every field left unset (`None`, empty) takes
/// the configuration's value. The command line and the API fill the same
/// fields; what one of them cannot set, it leaves unset.
pub struct CommitOverrides {
    pub source: Source,
    /// The one runtime state root to look the session up in, instead of the
    /// configured `runtime.roots`. (Which roots a caller may name is the
    /// service's policy, checked before it fills this.)
    pub runtime_root: Option<PathBuf>,
    /// Container paths of mounts whose content goes into the image.
    pub include_mounts: Vec<PathBuf>,
    pub home_path: Option<PathBuf>,
    /// Patterns added to the configured `session.excludes`.
    pub excludes: Vec<String>,
    /// Secrets to commit after all: each a path the secret set leaves out,
    /// relative to the home or an absolute container path.
    pub include_secrets: Vec<PathBuf>,
    pub pause: Option<PauseMode>,
    pub freeze_timeout: Option<Duration>,
    pub cgroup: Option<CgroupVersion>,
    pub base: Option<BaseRef>,
    pub base_blobs: BaseBlobs,
    pub compression: Option<Algorithm>,
    pub level: Option<u32>,
    /// Compression threads; 0 means every core this process may use.
    pub threads: Option<usize>,
    /// Dockerfile-style instructions, as given.
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub tag: Option<String>,
    /// The history entry's `created_by`, when not the default.
    pub created_by: Option<String>,
    pub output: PathBuf,
    /// Replace the output if it exists.
    pub overwrite: bool,
    /// Bytes of one file's data, and of one layer's [config: limits.*].
    pub max_file_size: Option<u64>,
    pub max_layer_size: Option<u64>,
}

impl CommitOverrides {
    /// Overrides that change nothing but what is committed and where to.
    pub fn new(source: Source, output: PathBuf) -> Self {
        CommitOverrides {
            source,
            runtime_root: None,
            include_mounts: Vec::new(),
            home_path: None,
            excludes: Vec::new(),
            include_secrets: Vec::new(),
            pause: None,
            freeze_timeout: None,
            cgroup: None,
            base: None,
            base_blobs: BaseBlobs::Include,
            compression: None,
            level: None,
            threads: None,
            changes: Vec::new(),
            message: None,
            author: None,
            tag: None,
            created_by: None,
            output,
            overwrite: false,
            max_file_size: None,
            max_layer_size: None,
        }
    }
}

/// A commit, fully resolved: ready to run.
pub enum CommitPlan {
    Offline(CommitRequest),
    Session(SessionRequest),
}

/// What a commit produced.
pub enum Committed {
    Offline(Box<CommitReport>),
    Session(Box<SessionReport>),
}

impl Committed {
    /// The commit's report, whichever kind of commit it was.
    pub fn report(&self) -> &CommitReport {
        match self {
            Committed::Offline(r) => r,
            Committed::Session(r) => &r.commit,
        }
    }
}

impl CommitPlan {
    /// Resolves `o` against `config`. Options are checked in a fixed order
    /// (changes, include mounts, tag, level, excludes, included secrets), so
    /// that a request with several faults is always refused for the same one.
    pub fn resolve(config: &Config, o: CommitOverrides) -> Result<CommitPlan, CommitError> {
        let mut changes = Vec::with_capacity(o.changes.len());
        for (i, c) in o.changes.iter().enumerate() {
            changes.push(
                c.parse::<Change>()
                    .map_err(|e| CommitError::invalid(format!("changes[{i}]"), e.to_string()))?,
            );
        }
        for (i, m) in o.include_mounts.iter().enumerate() {
            if !m.is_absolute() {
                return Err(CommitError::invalid(
                    format!("include_mounts[{i}]"),
                    "must be an absolute path in the container",
                ));
            }
        }
        if o.tag.as_deref().is_some_and(str::is_empty) {
            return Err(CommitError::invalid("tag", "is empty"));
        }
        let compression = compression(config, o.compression, o.level, o.threads)?;

        let mut meta = ImageMeta::now();
        meta.author = o.author;
        meta.comment = o.message;
        meta.changes = changes;
        meta.tag = o.tag;
        if let Some(by) = o.created_by {
            meta.created_by = by;
        }
        let home_path = o.home_path.unwrap_or(config.session.home_path.clone());
        let mut patterns = config.session.excludes.clone();
        patterns.extend(o.excludes);
        let exclude =
            Exclude::new(&patterns)?.with_secrets(secrets(config, &home_path, &o.include_secrets)?);
        let limits = Limits {
            max_file_size: o.max_file_size.or(config.limits.max_file_size),
            max_layer_size: o.max_layer_size.or(config.limits.max_layer_size),
        };

        Ok(match o.source {
            Source::Offline {
                upper,
                lowers,
                home,
                userxattr,
            } => CommitPlan::Offline(CommitRequest {
                trees: TreeSpec {
                    upper: Some(upper),
                    lowers,
                    grafts: home
                        .map(|source| Graft {
                            at: home_path,
                            source,
                        })
                        .into_iter()
                        .collect(),
                    exclude,
                    overlay_xattrs: if userxattr {
                        OverlayXattrs::User
                    } else {
                        OverlayXattrs::Trusted
                    },
                    limits,
                    roots: Default::default(),
                },
                base: o.base,
                stores: stores(config),
                base_blobs: o.base_blobs,
                compression,
                meta,
                output: o.output,
                overwrite: o.overwrite,
            }),
            Source::Session(target) => CommitPlan::Session(SessionRequest {
                target,
                roots: o
                    .runtime_root
                    .map_or_else(|| config.runtime.roots.clone(), |r| vec![r]),
                home_path,
                include_mounts: o.include_mounts,
                exclude,
                limits,
                base: o.base,
                stores: stores(config),
                base_blobs: o.base_blobs,
                compression,
                meta,
                output: o.output,
                output_dir: None,
                overwrite: o.overwrite,
                pause: o.pause.unwrap_or(config.freeze.pause),
                freeze_timeout: o.freeze_timeout.unwrap_or(config.freeze.timeout),
                live_fallback_bytes: config.freeze.live_fallback_bytes,
                precopy_rounds: config.freeze.precopy_rounds,
                precopy_max_bytes: config.freeze.precopy_max_bytes,
                fallback_max_pause: config.freeze.fallback_max_pause,
                cgroup_version: o.cgroup,
            }),
        })
    }

    /// The layers' compression, as resolved.
    pub fn compression(&self) -> Settings {
        match self {
            CommitPlan::Offline(r) => r.compression,
            CommitPlan::Session(r) => r.compression,
        }
    }

    /// Runs the commit; `observer` is told of a session commit's phases.
    pub fn run(
        &self,
        progress: &Progress,
        cancel: &AtomicBool,
        observer: &dyn Observer,
    ) -> Result<Committed, CommitError> {
        match self {
            CommitPlan::Offline(req) => freezeframe_snapshot::commit(req, progress, cancel)
                .map(|r| Committed::Offline(Box::new(r)))
                .map_err(CommitError::from),
            CommitPlan::Session(req) => live::commit_session(req, progress, cancel, observer)
                .map(|r| Committed::Session(Box::new(r))),
        }
    }
}

/// The secret set: the built-in one and `session.secret_paths`, under the
/// home and `/root`, less the paths `include` names back in (relative to the
/// home, or absolute).
fn secrets(
    config: &Config,
    home_path: &std::path::Path,
    include: &[PathBuf],
) -> Result<Secrets, CommitError> {
    let mut secrets = Secrets::defaults(home_path, &config.session.secret_paths)?;
    for (i, p) in include.iter().enumerate() {
        let abs = home_path.join(p);
        secrets
            .include(abs.as_os_str().as_encoded_bytes())
            .map_err(|e| CommitError::invalid(format!("include_secrets[{i}]"), e.to_string()))?;
    }
    Ok(secrets)
}

/// The configured data roots of the node's runtimes.
pub fn stores(config: &Config) -> Stores {
    Stores {
        docker: config.stores.docker.clone(),
        containers_storage: config.stores.containers_storage.clone(),
        containerd: config.stores.containerd.clone(),
    }
}

/// The compression settings: a level from the configuration belongs to the
/// configuration's algorithm, so another algorithm takes its own default.
fn compression(
    config: &Config,
    algorithm: Option<Algorithm>,
    level: Option<u32>,
    threads: Option<usize>,
) -> Result<Settings, CommitError> {
    let configured = config.compression.algorithm;
    let algorithm = algorithm.unwrap_or(engine_algorithm(configured));
    let named = config_algorithm(algorithm);
    let level = match level {
        Some(l) => l,
        None if named == configured => config.compression.effective_level(),
        None => named.default_level(),
    };
    if !named.levels().is_none_or(|r| r.contains(&level)) {
        return Err(CommitError::invalid(
            "level",
            format!("{level} is out of range for {algorithm:?} (gzip 0-9, zstd 1-22)"),
        ));
    }
    Ok(Settings {
        algorithm,
        level,
        threads: freezeframe_config::effective_threads(
            threads.unwrap_or(config.compression.threads as usize),
        ),
    })
}

/// The configuration's name of an algorithm as the layer engine's.
pub fn engine_algorithm(a: freezeframe_config::Algorithm) -> Algorithm {
    match a {
        freezeframe_config::Algorithm::Gzip => Algorithm::Gzip,
        freezeframe_config::Algorithm::Zstd => Algorithm::Zstd,
        freezeframe_config::Algorithm::None => Algorithm::None,
    }
}

/// The layer engine's algorithm as the configuration names it.
pub fn config_algorithm(a: Algorithm) -> freezeframe_config::Algorithm {
    match a {
        Algorithm::Gzip => freezeframe_config::Algorithm::Gzip,
        Algorithm::Zstd => freezeframe_config::Algorithm::Zstd,
        Algorithm::None => freezeframe_config::Algorithm::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(config: &Config, f: impl FnOnce(&mut CommitOverrides)) -> Result<Settings, String> {
        let mut o = CommitOverrides::new(Source::Session(Target::Id("s".into())), "/x".into());
        f(&mut o);
        CommitPlan::resolve(config, o)
            .map(|p| p.compression())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_level_from_the_config_belongs_to_the_configs_algorithm() {
        let mut config = Config::default();
        config.compression.level = Some(9);
        let s = plan(&config, |_| {}).unwrap();
        assert_eq!((s.algorithm, s.level), (Algorithm::Gzip, 9));
        let s = plan(&config, |o| o.compression = Some(Algorithm::Gzip)).unwrap();
        assert_eq!(s.level, 9);
        let s = plan(&config, |o| o.compression = Some(Algorithm::Zstd)).unwrap();
        assert_eq!((s.algorithm, s.level), (Algorithm::Zstd, 3));
        let s = plan(&config, |o| {
            o.compression = Some(Algorithm::Zstd);
            o.level = Some(19);
        })
        .unwrap();
        assert_eq!(s.level, 19);
        assert_eq!(
            plan(&config, |o| o.level = Some(10)).unwrap_err(),
            "level: 10 is out of range for Gzip (gzip 0-9, zstd 1-22)"
        );
        assert!(plan(&config, |o| {
            o.compression = Some(Algorithm::None);
            o.level = Some(40);
        })
        .is_ok());
    }

    #[test]
    fn threads_zero_means_every_core() {
        let config = Config::default();
        assert!(plan(&config, |o| o.threads = Some(0)).unwrap().threads >= 1);
        assert_eq!(plan(&config, |o| o.threads = Some(3)).unwrap().threads, 3);
    }

    #[test]
    fn fields_are_checked_in_order_and_named_as_the_api_names_them() {
        let config = Config::default();
        let e = plan(&config, |o| {
            o.changes = vec!["ENV A=1".into(), "RUN x".into()];
            o.tag = Some(String::new());
        })
        .unwrap_err();
        assert!(e.starts_with("changes[1]: "), "{e}");
        let e = plan(&config, |o| {
            o.include_mounts = vec!["/a".into(), "b".into()]
        })
        .unwrap_err();
        assert_eq!(
            e,
            "include_mounts[1]: must be an absolute path in the container"
        );
        let e = plan(&config, |o| o.tag = Some(String::new())).unwrap_err();
        assert_eq!(e, "tag: is empty");
    }

    #[test]
    fn included_secrets_are_checked_against_the_secret_set() {
        let mut config = Config::default();
        config.session.secret_paths = vec!["work/*.key".into()];
        assert!(plan(&config, |o| {
            o.include_secrets = vec![
                ".ssh/id_rsa".into(),
                "/root/.bash_history".into(),
                "work/a.key".into(),
            ]
        })
        .is_ok());
        let e = plan(&config, |o| {
            o.include_secrets = vec![".netrc".into(), ".ssh/id_rsa.pub".into()]
        })
        .unwrap_err();
        assert_eq!(
            e,
            "include_secrets[1]: /home/work/.ssh/id_rsa.pub: not a secret (no secret pattern \
             leaves it out)"
        );
        let e = plan(&config, |o| {
            o.home_path = Some("/home/u".into());
            o.include_secrets = vec!["../work/.netrc".into()];
        })
        .unwrap_err();
        assert!(e.starts_with("include_secrets[0]: /home/u/../work/.netrc: must be normalised"));
    }
}
