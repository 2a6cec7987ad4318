//! `freezeframe commit`: trees on disk → OCI image archive.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use freezeframe_config::{Config, PauseMode};
use freezeframe_snapshot::changes::Change;
use freezeframe_snapshot::compress::{Algorithm, Settings};
use freezeframe_snapshot::image::ImageMeta;
use freezeframe_snapshot::source::ImageRef;
use freezeframe_snapshot::walk::{Exclude, Graft, OverlayXattrs, Progress, TreeSpec};
use freezeframe_snapshot::{BaseBlobs, CommitReport, CommitRequest, Error};
use indicatif::HumanBytes;

use crate::live::{self, Pause, SessionRequest, Target};
use crate::progress::Bar;
use freezeframe_runtime::freezer::CgroupVersion;

pub fn parse_cgroup_version(s: &str) -> Result<CgroupVersion, String> {
    match s {
        "v1" | "1" => Ok(CgroupVersion::V1),
        "v2" | "2" => Ok(CgroupVersion::V2),
        o => Err(format!("unknown cgroup version {o:?} (expected v1 or v2)")),
    }
}

#[derive(ClapArgs)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["session", "pid", "upper"])))]
pub struct Args {
    /// The container to commit, by id, looked up in the runtime state roots
    /// [config: runtime.roots].
    session: Option<String>,
    /// The container to commit, by its init process.
    #[arg(long, value_name = "PID", conflicts_with = "session")]
    pid: Option<i32>,
    /// Include the content of the container's mount at PATH (e.g. a vfolder under
    /// the home); other mounts are left out (repeatable).
    #[arg(long = "include-mount", value_name = "PATH")]
    include_mounts: Vec<PathBuf>,
    /// auto: a live pass, then a brief freeze for what changed (a second, small
    /// layer); full: frozen for the whole walk; none: never frozen
    /// [config: freeze.pause].
    #[arg(long, value_name = "MODE")]
    pause: Option<Pause>,
    /// Give up (and thaw) if the freeze takes longer [config: freeze.timeout].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    freeze_timeout: Option<std::time::Duration>,
    /// Which cgroup hierarchy to freeze with on a hybrid host (default: the v1
    /// freezer if the session has one, else v2).
    #[arg(long, value_name = "VERSION", value_parser = parse_cgroup_version)]
    cgroup: Option<CgroupVersion>,
    /// Offline mode: the overlay upper dir, with every change made to the image's files.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["session", "pid"])]
    upper: Option<PathBuf>,
    /// A lower dir of the overlay, topmost first (repeatable); needed for
    /// metacopy upper dirs.
    #[arg(long = "lower", value_name = "DIR", requires = "upper")]
    lowers: Vec<PathBuf>,
    /// Offline mode: the session's scratch home directory on the host.
    #[arg(long, value_name = "DIR", requires = "upper")]
    home: Option<PathBuf>,
    /// Where the scratch home is mounted in the container [config: session.home_path].
    #[arg(long, value_name = "PATH")]
    home_path: Option<PathBuf>,
    #[arg(
        long,
        value_name = "REF",
        help = "The base image: oci-layout:DIR[:REF] or oci-archive:FILE[:REF]"
    )]
    base: Option<ImageRef>,
    /// Copy the base image's layer blobs into the archive, or leave them out.
    #[arg(long, value_name = "MODE", default_value = "include")]
    base_blobs: BaseBlobs,
    /// Leave out container paths matching GLOB (repeatable) [config: session.excludes].
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// A Dockerfile-style instruction applied to the config: ENV, LABEL, CMD,
    /// ENTRYPOINT, WORKDIR, USER or EXPOSE (repeatable).
    #[arg(long = "change", value_name = "INSTR", value_parser = valid_change)]
    changes: Vec<String>,
    /// The history entry's comment.
    #[arg(long, short = 'm', value_name = "TEXT")]
    message: Option<String>,
    #[arg(long, value_name = "TEXT")]
    author: Option<String>,
    /// The image's name in index.json (org.opencontainers.image.ref.name).
    #[arg(long, value_name = "REF")]
    tag: Option<String>,
    /// gzip, zstd or none [config: compression.algorithm].
    #[arg(long, value_name = "ALG")]
    compression: Option<Algorithm>,
    /// Compression level [config: compression.level].
    #[arg(long, value_name = "N")]
    level: Option<u32>,
    /// Compression threads, 0 for all cores [config: compression.threads].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// The overlay keeps its metadata in user.overlay.* (mounted with userxattr).
    #[arg(long, requires = "upper")]
    userxattr: bool,
    /// Replace the output if it exists.
    #[arg(long)]
    force: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// The archive to write.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: PathBuf,
    /// Commit through the service (`freezeframe serve`) and follow it: FILE is
    /// then a name inside the service's save location.
    #[arg(long, requires = "session", conflicts_with_all = [
        "pid", "upper", "base", "excludes", "level", "threads", "force",
        "home_path", "cgroup", "freeze_timeout",
    ])]
    via_daemon: bool,
    /// The service's socket [config: server.socket].
    #[arg(long, value_name = "PATH", requires = "via_daemon")]
    socket: Option<PathBuf>,
}

/// Checks a --change instruction at once, keeping its text: the service
/// parses it again on its side.
fn valid_change(s: &str) -> Result<String, String> {
    s.parse::<Change>()
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

pub fn run(config_path: Option<&Path>, root: Option<&Path>, a: Args) -> Result<ExitCode> {
    if a.via_daemon {
        let body = serde_json::json!({
            "session": a.session, "runtime_root": root, "output": a.output,
            "include_mounts": a.include_mounts, "pause": a.pause, "compression": a.compression,
            "tag": a.tag, "author": a.author, "message": a.message, "changes": a.changes,
        });
        return crate::client::commit(config_path, a.socket.as_deref(), body, a.json);
    }
    let config = Config::load(config_path)?;
    let home_path = a.home_path.unwrap_or(config.session.home_path.clone());
    let mut patterns = config.session.excludes.clone();
    patterns.extend(a.excludes);
    let algorithm = a.compression.unwrap_or(config_algorithm(&config));
    let level = match (a.level, a.compression) {
        (Some(l), _) => l,
        // A level from the config belongs to the config's algorithm.
        (None, Some(alg)) if alg != config_algorithm(&config) => alg.default_level(),
        (None, _) => config.compression.effective_level(),
    };
    check_level(algorithm, level)?;
    let settings = Settings {
        algorithm,
        level,
        threads: a.threads.unwrap_or(config.compression.threads as usize),
    };
    let mut meta = ImageMeta::now();
    meta.author = a.author;
    meta.comment = a.message;
    meta.changes = a
        .changes
        .iter()
        .map(|c| c.parse::<Change>())
        .collect::<Result<_, _>>()?;
    meta.tag = a.tag;
    let overlay_xattrs = if a.userxattr {
        OverlayXattrs::User
    } else {
        OverlayXattrs::Trusted
    };

    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&cancel))
            .context("installing signal handlers")?;
    }
    let progress = Arc::new(Progress::default());
    let bar = Bar::start(Arc::clone(&progress), a.json);
    let result = match a.upper {
        Some(upper) => {
            let req = CommitRequest {
                trees: TreeSpec {
                    upper: Some(upper),
                    lowers: a.lowers,
                    grafts: a
                        .home
                        .map(|source| Graft {
                            at: home_path,
                            source,
                        })
                        .into_iter()
                        .collect(),
                    exclude: Exclude::new(&patterns)?,
                    overlay_xattrs,
                },
                base: a.base,
                base_blobs: a.base_blobs,
                compression: settings,
                meta,
                output: a.output,
                overwrite: a.force,
            };
            freezeframe_snapshot::commit(&req, &progress, &cancel)
                .map(|r| Done::Offline(Box::new(r)))
                .map_err(anyhow::Error::from)
        }
        None => {
            let target = match (a.session, a.pid) {
                (Some(id), _) => Target::Id(id),
                (None, Some(pid)) => Target::Pid(pid),
                (None, None) => unreachable!("clap requires a session, --pid or --upper"),
            };
            let req = SessionRequest {
                target,
                roots: root
                    .map(Path::to_path_buf)
                    .map_or_else(|| config.runtime.roots.clone(), |r| vec![r]),
                home_path,
                include_mounts: a.include_mounts,
                excludes: patterns,
                base: a.base,
                base_blobs: a.base_blobs,
                compression: settings,
                meta,
                output: a.output,
                overwrite: a.force,
                pause: a.pause.unwrap_or(match config.freeze.pause {
                    PauseMode::Auto => Pause::Auto,
                    PauseMode::Full => Pause::Full,
                    PauseMode::None => Pause::None,
                }),
                freeze_timeout: a.freeze_timeout.unwrap_or(config.freeze.timeout),
                live_fallback_bytes: config.freeze.live_fallback_bytes,
                cgroup_version: a.cgroup,
            };
            live::commit_session(&req, &progress, &cancel, &live::Quiet)
                .map(|r| Done::Session(Box::new(r)))
        }
    };
    drop(bar);
    let done = match result {
        Ok(r) => r,
        Err(e) if matches!(e.downcast_ref::<Error>(), Some(Error::Cancelled)) => {
            eprintln!("freezeframe: cancelled; nothing was written");
            return Ok(ExitCode::from(130));
        }
        Err(e) => return Err(e),
    };
    match (&done, a.json) {
        (Done::Offline(r), true) => println!("{}", serde_json::to_string_pretty(&json_report(r))?),
        (Done::Offline(r), false) => print_summary(r),
        (Done::Session(r), true) => {
            let mut v = json_report(&r.commit);
            v["frozen_ms"] = r.frozen.frozen_ms.into();
            v["frozen"] = serde_json::to_value(&r.frozen)?;
            v["session"] = serde_json::to_value(&r.session)?;
            v["excluded_mounts"] = serde_json::to_value(&r.excluded_mounts)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        (Done::Session(r), false) => {
            print_summary(&r.commit);
            let f = &r.frozen;
            println!("session   {} (pid {})", r.session.id, r.session.pid);
            println!(
                "frozen    {} ms ({}): {} entries, {} captured while frozen; {} layer(s) added",
                f.frozen_ms,
                f.path,
                f.entries,
                HumanBytes(f.bytes),
                f.layers_added
            );
            println!("base from {}", r.session.base_source);
            for m in &r.excluded_mounts {
                println!(
                    "excluded  {} ({} {})",
                    m.target.display(),
                    m.fs_type,
                    m.source
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

enum Done {
    Offline(Box<CommitReport>),
    Session(Box<live::SessionReport>),
}

fn config_algorithm(config: &Config) -> Algorithm {
    match config.compression.algorithm {
        freezeframe_config::Algorithm::Gzip => Algorithm::Gzip,
        freezeframe_config::Algorithm::Zstd => Algorithm::Zstd,
        freezeframe_config::Algorithm::None => Algorithm::None,
    }
}

fn check_level(alg: Algorithm, level: u32) -> Result<()> {
    let ok = match alg {
        Algorithm::Gzip => level <= 9,
        Algorithm::Zstd => (1..=22).contains(&level),
        Algorithm::None => true,
    };
    anyhow::ensure!(
        ok,
        "--level: {level} is out of range for {alg:?} (gzip 0-9, zstd 1-22)"
    );
    Ok(())
}

/// The `--json` object: the report's fields with the skipped entries grouped.
fn json_report(r: &CommitReport) -> serde_json::Value {
    serde_json::json!({
        "archive": r.archive,
        "size": r.size,
        "archive_sha256": r.archive_sha256,
        "manifest_digest": r.manifest_digest,
        "config_digest": r.config_digest,
        "base": r.base,
        "layers": r.layers,
        "files": r.files,
        "bytes": r.bytes,
        "skipped": {
            "counts": r.walk.skipped_counts,
            "entries": r.walk.skipped,
        },
        "changed_while_read": r.walk.changed,
        "walk": r.walk,
        "elapsed_ms": r.elapsed_ms,
    })
}

pub fn print_summary(r: &CommitReport) {
    let w = &r.walk;
    println!("archive   {} ({})", r.archive.display(), HumanBytes(r.size));
    println!(
        "sha256    {}",
        r.archive_sha256.trim_start_matches("sha256:")
    );
    println!("manifest  {}", r.manifest_digest);
    println!("config    {}", r.config_digest);
    if let Some(b) = &r.base {
        println!("base      {} ({})", b.name, b.digest);
    }
    for l in &r.layers {
        println!(
            "layer     {} {:>10} {}{}",
            l.digest,
            HumanBytes(l.size).to_string(),
            l.media_type.rsplit('.').next().unwrap_or(""),
            if l.included { "" } else { " (not included)" }
        );
    }
    println!(
        "content   {} files, {} dirs, {} symlinks, {} hardlinks, {} devices, {} fifos; {}",
        w.files,
        w.dirs,
        w.symlinks,
        w.hardlinks,
        w.devices,
        w.fifos,
        HumanBytes(w.bytes)
    );
    println!(
        "overlay   {} whiteouts, {} opaque dirs; {} paths excluded",
        w.whiteouts, w.opaque_dirs, w.excluded
    );
    for (reason, n) in &w.skipped_counts {
        println!("skipped   {n} ({reason:?})");
    }
    for s in w.skipped.iter().take(10) {
        println!("          {} ({:?})", s.path, s.reason);
    }
    if !w.changed.is_empty() {
        println!(
            "changed   {} files changed while being read",
            w.changed.len()
        );
    }
    println!("elapsed   {:.2}s", r.elapsed_ms as f64 / 1000.0);
}
