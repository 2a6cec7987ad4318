//! `freezeframe commit`: a running session, or trees on disk, into an OCI
//! image archive. The flags fill the library's [`CommitOverrides`]; the plan
//! does the rest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args as ClapArgs;
use freezeframe::api::CommitRequest;
use freezeframe::live::{Quiet, Target};
use freezeframe::plan::{config_algorithm, Committed, Source};
use freezeframe::{CommitError, CommitOverrides, CommitPlan};
use freezeframe_config::{Config, PauseMode};
use freezeframe_runtime::session::freezer::CgroupVersion;
use freezeframe_snapshot::changes::Change;
use freezeframe_snapshot::compress::Algorithm;
use freezeframe_snapshot::registry::{self, PushOptions, PushReport, Reference};
use freezeframe_snapshot::source::base::BaseRef;
use freezeframe_snapshot::walk::Progress;
use freezeframe_snapshot::BaseBlobs;

use crate::cmd::push::RegistryArgs;
use crate::progress::Bar;
use crate::remote;

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
    #[arg(long, value_name = "MODE", value_parser = pause_modes())]
    pause: Option<PauseMode>,
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
        help = "The base image: oci-layout:DIR[:REF], oci-archive:FILE[:REF], docker:NAME|ID, \
                containers-storage:NAME|ID or containerd:[NAMESPACE/]NAME \
                (default: the image the session's runtime recorded)"
    )]
    base: Option<BaseRef>,
    /// Copy the base image's layer blobs into the archive, or leave them out.
    #[arg(long, value_name = "MODE", default_value = "include")]
    base_blobs: BaseBlobs,
    /// Leave out container paths matching GLOB (repeatable) [config: session.excludes].
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// Commit a path that the secret set leaves out (an ~/.ssh key, .netrc, a
    /// shell history…) after all: relative to the home, or absolute; exactly
    /// as the report lists it (repeatable) [config: session.secret_paths].
    #[arg(long = "include-secret", value_name = "PATH")]
    include_secrets: Vec<PathBuf>,
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
    /// Stop with an error naming the file if one file holds more than SIZE
    /// bytes (apparent size; K, M, G, T suffixes are powers of 1024)
    /// [config: limits.max_file_size].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_file_size: Option<u64>,
    /// Stop with an error if one layer would hold more than SIZE bytes of file
    /// data [config: limits.max_layer_size].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_layer_size: Option<u64>,
    /// The overlay keeps its metadata in user.overlay.* (mounted with userxattr).
    #[arg(long, requires = "upper")]
    userxattr: bool,
    /// Replace the output if it exists.
    #[arg(long)]
    force: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// The archive to write [default: a session's commit goes to the save
    /// location, named as the service names it].
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Push the image to HOST[:PORT]/REPO[:TAG] once committed. Without
    /// --output, the archive is removed after a push that succeeds (with
    /// --via-daemon it stays in the save location).
    #[arg(long, value_name = "REF")]
    push: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Commit through the service (`freezeframe serve`) and follow it: FILE is
    /// then a name inside the service's save location.
    #[arg(long, requires = "session", conflicts_with_all = [
        "pid", "upper", "excludes", "level", "threads", "force",
        "home_path", "cgroup", "freeze_timeout", "max_file_size", "max_layer_size",
    ])]
    via_daemon: bool,
    /// The service's socket [config: server.socket].
    #[arg(long, value_name = "PATH", requires = "via_daemon")]
    socket: Option<PathBuf>,
    /// With --via-daemon: the owner the commit is made for (required by a
    /// service with server.require_owner).
    #[arg(long, value_name = "OWNER", requires = "via_daemon")]
    owner: Option<String>,
}

/// The pause modes, as `--pause` takes and documents them.
fn pause_modes() -> impl TypedValueParser<Value = PauseMode> {
    PossibleValuesParser::new([
        PossibleValue::new("auto").help(
            "A first pass while the session runs, then a brief freeze that captures only \
             what changed since, as a second small layer",
        ),
        PossibleValue::new("full").help("Frozen for the whole walk"),
        PossibleValue::new("none")
            .help("Never frozen: files may change while they are read (they are reported)"),
    ])
    .map(|s| s.parse::<PauseMode>().expect("one of the possible values"))
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
        let client = remote::client(config_path, a.socket.as_deref(), a.owner.clone())?;
        let json = a.json;
        let request = a.request(root)?;
        return remote::block_on(async {
            let task = client.submit(&request).await?;
            if !json {
                eprintln!("freezeframe: task {}", task.id);
            }
            remote::follow(&client, &task.id, json, true).await
        })?;
    }
    let config = Config::load(config_path)?;
    freezeframe::server::output::set_access(&config.storage)?;
    let json = a.json;
    let output = match &a.output {
        Some(output) => output.clone(),
        None => default_output(&config, &a)?,
    };
    // A bad reference or flag fails before anything is frozen or written.
    let push = match &a.push {
        Some(r) => {
            let reference: Reference = r.parse().context("--push")?;
            let mut options = a.registry.options(None)?;
            options.client.auth_files = config.registry.auth_file.iter().cloned().collect();
            Some((reference, options, a.output.is_none()))
        }
        None => None,
    };
    let plan = CommitPlan::resolve(&config, a.overrides(root, output)).map_err(with_flags)?;
    if matches!(plan, CommitPlan::Session(_)) {
        freezeframe::caps::for_commit(&config)?;
    }
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&cancel))
            .context("installing signal handlers")?;
    }
    let progress = Arc::new(Progress::default());
    let bar = Bar::start(Arc::clone(&progress), json);
    let result = plan.run(&progress, &cancel, &Quiet);
    drop(bar);
    match result {
        Ok(done) => {
            let pushed = match push {
                Some((reference, options, scratch)) => {
                    Some(push_committed(&done, &reference, &options, scratch)?)
                }
                None => None,
            };
            crate::show::committed(&done, pushed.as_ref(), json)?
        }
        Err(CommitError::Cancelled) => {
            eprintln!("freezeframe: cancelled; nothing was written");
            return Ok(ExitCode::from(130));
        }
        Err(e) => return Err(with_flags(e)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Pushes a committed archive. An archive made only to be pushed is removed
/// after the push; one that fails to push is kept, and the error says where.
fn push_committed(
    done: &Committed,
    reference: &Reference,
    options: &PushOptions,
    scratch: bool,
) -> Result<PushReport> {
    let archive = done.report().archive.clone();
    // Base layers left out are found in the registry as their store recorded them.
    let options = PushOptions {
        registry_blobs: done.report().registry_blobs(),
        ..options.clone()
    };
    let report = registry::push_archive(&archive, reference, &options).with_context(|| {
        format!(
            "pushing to {reference} (the commit is kept in {})",
            archive.display()
        )
    })?;
    if scratch {
        for path in [archive.clone(), sidecar_of(&archive)] {
            if let Err(e) = std::fs::remove_file(&path) {
                eprintln!("freezeframe: removing {}: {e}", path.display());
            }
        }
    }
    Ok(report)
}

/// The `NAME.sha256` written beside an archive.
fn sidecar_of(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Where a commit goes when no --output is given: the save location, under
/// the name the service would give it.
fn default_output(config: &Config, a: &Args) -> Result<PathBuf> {
    let session = match (&a.session, a.pid) {
        (Some(s), _) => s.clone(),
        (None, Some(pid)) => format!("pid-{pid}"),
        (None, None) => bail!("--output is needed to commit trees on disk (--upper)"),
    };
    let save = &config.storage.save_location;
    let access = freezeframe_snapshot::fs::output::output_access();
    freezeframe::server::output::create_save_location(save, access)?;
    let name = freezeframe::server::output::default_name(
        std::time::SystemTime::now(),
        &session,
        a.tag.as_deref(),
    );
    Ok(save.join(name))
}

impl Args {
    fn overrides(self, root: Option<&Path>, output: PathBuf) -> CommitOverrides {
        let source = match (self.upper, self.session, self.pid) {
            (Some(upper), _, _) => Source::Offline {
                upper,
                lowers: self.lowers,
                home: self.home,
                userxattr: self.userxattr,
            },
            (None, Some(id), _) => Source::Session(Target::Id(id)),
            (None, None, Some(pid)) => Source::Session(Target::Pid(pid)),
            (None, None, None) => unreachable!("clap requires a session, --pid or --upper"),
        };
        CommitOverrides {
            runtime_root: root.map(Path::to_path_buf),
            include_mounts: self.include_mounts,
            home_path: self.home_path,
            excludes: self.excludes,
            include_secrets: self.include_secrets,
            pause: self.pause,
            freeze_timeout: self.freeze_timeout,
            cgroup: self.cgroup,
            base: self.base,
            base_blobs: self.base_blobs,
            compression: self.compression,
            level: self.level,
            threads: self.threads,
            changes: self.changes,
            message: self.message,
            author: self.author,
            tag: self.tag,
            overwrite: self.force,
            max_file_size: self.max_file_size,
            max_layer_size: self.max_layer_size,
            ..CommitOverrides::new(source, output)
        }
    }

    /// The service's request: what `--via-daemon` lets through.
    fn request(self, root: Option<&Path>) -> Result<CommitRequest> {
        let output = self
            .output
            .map(|o| {
                o.into_os_string()
                    .into_string()
                    .map_err(|o| anyhow!("{}: not UTF-8", Path::new(&o).display()))
            })
            .transpose()?;
        Ok(CommitRequest {
            session: self.session.context("--via-daemon needs a session")?,
            runtime_root: root.map(Path::to_path_buf),
            output,
            tag: self.tag,
            author: self.author,
            message: self.message,
            changes: self.changes,
            include_mounts: self.include_mounts,
            include_secrets: self.include_secrets,
            compression: self.compression.map(config_algorithm),
            pause: self.pause,
            owner: None,
            base: self.base.map(|b| b.to_string()),
            push: self
                .push
                .map(|r| self.registry.service_request(r))
                .transpose()?,
        })
    }
}

/// The library's error, with the hints only the command line can give: the
/// flag a field is set with, and the flag that gets past a refusal.
fn with_flags(e: CommitError) -> anyhow::Error {
    match e {
        CommitError::Invalid { field, message } => {
            let name = field.split('[').next().unwrap_or(&field);
            let flag = match name {
                "include_mounts" => "include-mount",
                "include_secrets" => "include-secret",
                "changes" => "change",
                other => other,
            };
            anyhow!("--{flag}: {message}")
        }
        CommitError::OutputExists { path } => anyhow!(
            "{}: already exists (pass --force to overwrite it)",
            path.display()
        ),
        e @ CommitError::BaseReplaced { .. } => anyhow!("{e}. Name the right one with --base"),
        CommitError::Snapshot(freezeframe_snapshot::Error::MetacopyWithoutLowers { path }) => {
            anyhow!(
                "{}: file holds only metadata (overlay metacopy=on); its data is in a lower \
                 dir: pass the lower dirs (--lower) so the layer can include it",
                path.display()
            )
        }
        e @ CommitError::Snapshot(freezeframe_snapshot::Error::FileTooLarge { .. }) => {
            anyhow!("{e}; --max-file-size sets another limit")
        }
        e @ CommitError::Snapshot(freezeframe_snapshot::Error::LayerLimit { .. }) => {
            anyhow!("{e}; --max-layer-size sets another limit")
        }
        e => e.into(),
    }
}

/// A size in bytes: digits, optionally followed by K, M, G or T (powers of
/// 1024, with an optional `iB` or `B`).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is no size (bytes, or a number with K, M, G or T)"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_s_errors_get_the_flags_that_set_or_get_past_them() {
        let said = |e| crate::error_chain(&with_flags(e));
        assert_eq!(
            said(CommitError::invalid("level", "10 is out of range")),
            "--level: 10 is out of range"
        );
        assert_eq!(
            said(CommitError::invalid(
                "include_mounts[2]",
                "must be absolute"
            )),
            "--include-mount: must be absolute"
        );
        assert_eq!(
            said(CommitError::OutputExists {
                path: "/x.tar".into()
            }),
            "/x.tar: already exists (pass --force to overwrite it)"
        );
        assert!(said(CommitError::BaseReplaced {
            image: "oci-archive:/img".into(),
            digest: "sha256:a".into(),
            id: "c".into(),
            pinned: "sha256:b".into(),
        })
        .ends_with("; the image was replaced since. Name the right one with --base"));
        assert_eq!(
            said(CommitError::Snapshot(
                freezeframe_snapshot::Error::MetacopyWithoutLowers {
                    path: "/upper/usr/bin/tool".into()
                }
            )),
            "/upper/usr/bin/tool: file holds only metadata (overlay metacopy=on); its data is \
             in a lower dir: pass the lower dirs (--lower) so the layer can include it"
        );
        assert_eq!(
            said(CommitError::Snapshot(
                freezeframe_snapshot::Error::FileTooLarge {
                    path: "/data/big".into(),
                    size: 3,
                    limit: 2,
                }
            )),
            "/data/big: file holds 3 bytes, more than the limit of 2 (limits.max_file_size); \
             --max-file-size sets another limit"
        );
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        for bad in ["", "M", "1.5G", "1P", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_library_s_messages_name_no_flag() {
        let exists = freezeframe_snapshot::Error::Exists {
            path: "/x.tar".into(),
        };
        assert_eq!(exists.to_string(), "/x.tar: already exists");
        let metacopy = freezeframe_snapshot::Error::MetacopyWithoutLowers {
            path: "/upper/f".into(),
        };
        assert!(!metacopy.to_string().contains("--"), "{metacopy}");
        assert!(!CommitError::from(exists).to_string().contains("--"));
    }
}
