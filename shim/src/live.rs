//! Committing a running session: find it, decide what to read, freeze it for the
//! walk (live, full or not at all), always thaw, and write the archive.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use freezeframe_config::PauseMode;
use freezeframe_runtime::session::freezer::{Cgroup, CgroupVersion};
use freezeframe_runtime::session::guardian::Guardian;
use freezeframe_runtime::session::{
    shared_writable_mappings, ExcludedMount, HostMount, OverlayRoot,
};
use freezeframe_runtime::Session;
use freezeframe_snapshot::compress::Settings;
use freezeframe_snapshot::delta::Baseline;
use freezeframe_snapshot::image::ImageMeta;
use freezeframe_snapshot::journal::Journal;
use freezeframe_snapshot::source::base::{BaseRef, Stores};
use freezeframe_snapshot::walk::{Exclude, Graft, Limits, OverlayXattrs, Pass, Progress, TreeSpec};
use freezeframe_snapshot::{BaseBlobs, Commit, CommitReport};
use serde::Serialize;

use crate::base;
use crate::error::CommitError;

type Result<T, E = CommitError> = std::result::Result<T, E>;

/// Which session, and how to commit it; made by [`crate::plan::CommitPlan`].
pub struct SessionRequest {
    pub target: Target,
    pub roots: Vec<PathBuf>,
    pub home_path: PathBuf,
    pub include_mounts: Vec<PathBuf>,
    /// The configured and requested patterns; the mounts left out are added.
    pub exclude: Exclude,
    /// How large a file and a layer may be.
    pub limits: Limits,
    pub base: Option<BaseRef>,
    /// Where names and bases are read from the runtimes' own stores.
    pub stores: Stores,
    pub base_blobs: BaseBlobs,
    pub compression: Settings,
    pub meta: ImageMeta,
    pub output: PathBuf,
    /// The directory `output` is in, when the caller resolved it (the service,
    /// beneath its save location): the archive and its sidecar are written
    /// through this fd, and `output`'s path is not looked up again.
    pub output_dir: Option<OwnedFd>,
    pub overwrite: bool,
    /// `auto`: a live first pass, then a brief freeze that captures only what
    /// changed since, as a second small layer; `full`: frozen for the whole
    /// walk; `none`: never frozen (files that change while read are reported).
    pub pause: PauseMode,
    pub freeze_timeout: Duration,
    /// With `PauseMode::Auto`: a frozen pass with more file data than this falls
    /// back to a full freeze.
    pub live_fallback_bytes: u64,
    pub cgroup_version: Option<CgroupVersion>,
}

/// A session by its container id, or by its init process.
pub enum Target {
    Id(String),
    Pid(i32),
}

/// The session as the report describes it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub pid: i32,
    pub state_file: Option<PathBuf>,
    pub rootfs: OverlayRoot,
    pub home: Option<HostMount>,
    pub included_mounts: Vec<HostMount>,
    pub cgroup: Option<PathBuf>,
    /// Where the base image came from: `--base`, an annotation, or none.
    pub base_source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    #[serde(flatten)]
    pub commit: CommitReport,
    pub session: SessionInfo,
    pub excluded_mounts: Vec<ExcludedMount>,
    pub frozen: Frozen,
}

/// What the pause cost and what it captured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Frozen {
    /// How the session was paused: `auto` (live first pass + frozen delta),
    /// `auto-fallback-full` (the delta was too large: one layer, frozen),
    /// `full`, or `none`.
    pub path: String,
    pub frozen_ms: u64,
    /// Entries and bytes of file data written while frozen.
    pub entries: u64,
    pub bytes: u64,
    /// Layers this commit added to the base: 1, or 2 for a live commit whose
    /// frozen pass found changes.
    pub layers_added: usize,
    /// What the frozen pass read: `journal` (only what the change journal
    /// listed since the live pass, and files no journal can see), or `all`
    /// with why the journal could not be trusted; empty without a live pass.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub frozen_read: String,
}

/// The session `target` names; a failure is a [`CommitError::Lookup`].
pub fn find(
    target: &Target,
    roots: &[PathBuf],
    stores: &Stores,
    home_path: &Path,
) -> Result<Session> {
    match target {
        Target::Id(id) => Session::find(id, roots, || base::container_names(stores), home_path),
        Target::Pid(pid) => Session::from_pid(*pid, home_path),
    }
    .map_err(CommitError::Lookup)
}

/// The session's freezer cgroup: the one its runtime recorded, else its init
/// process's.
pub fn cgroup_of(
    session: &Session,
    prefer: Option<CgroupVersion>,
) -> Result<Cgroup, freezeframe_runtime::session::freezer::Error> {
    let recorded = match prefer {
        Some(CgroupVersion::V2) => session.cgroup_v2.clone().map(|d| (CgroupVersion::V2, d)),
        _ => session
            .cgroup_v1_freezer
            .clone()
            .filter(|d| d.join("freezer.state").exists())
            .map(|d| (CgroupVersion::V1, d))
            .or_else(|| match prefer {
                None => session
                    .cgroup_v2
                    .clone()
                    .filter(|d| d.join("cgroup.freeze").exists())
                    .map(|d| (CgroupVersion::V2, d)),
                _ => None,
            }),
    };
    Ok(match recorded {
        Some((v, dir)) => Cgroup::new(v, dir),
        None => Cgroup::of_pid(session.pid, prefer)?,
    })
}

/// Where a commit is; a service records these to report progress and to
/// recover after a crash (which cgroup to thaw, which temp file to remove).
pub enum Phase<'a> {
    /// The session was found; the archive is being written, under the name
    /// `temp` on filesystems that need one (else unnamed: nothing to clean up).
    Writing {
        session: &'a Session,
        temp: Option<&'a Path>,
    },
    /// The first pass of a live commit, with the session running.
    Snapshotting,
    /// About to freeze `cgroup`.
    Freezing { cgroup: &'a Cgroup },
    /// The cgroup is thawed again.
    Thawed,
    /// Writing config, manifest and index; syncing.
    Finalizing,
}

/// Told of every [`Phase`] as the commit reaches it.
pub trait Observer: Sync {
    fn phase(&self, phase: Phase<'_>);
}

/// An observer that does nothing, for one-shot commits.
pub struct Quiet;

impl Observer for Quiet {
    fn phase(&self, _: Phase<'_>) {}
}

pub fn commit_session(
    req: &SessionRequest,
    progress: &Progress,
    cancel: &AtomicBool,
    observer: &dyn Observer,
) -> Result<SessionReport> {
    // Gone since it was admitted, say: a failure of the commit, not of the
    // request.
    let session = match find(&req.target, &req.roots, &req.stores, &req.home_path) {
        Err(CommitError::Lookup(e)) => return Err(CommitError::Runtime(e)),
        other => other?,
    };
    let included = req
        .include_mounts
        .iter()
        .map(|t| session.include_mount(t))
        .collect::<Result<Vec<_>, _>>()?;
    let excluded = session.excluded_mounts(&req.include_mounts);
    let base::Chosen {
        base,
        source: base_source,
    } = base::choose(&session, req.base.as_ref(), &req.stores)?;

    let mut grafts: Vec<Graft> = session
        .home
        .iter()
        .chain(&included)
        .map(|m| Graft {
            at: m.target.clone(),
            source: m.host_dir.clone(),
        })
        .collect();
    grafts.sort_by(|a, b| a.at.cmp(&b.at));
    let exclude = req.exclude.clone().with_paths(
        &excluded
            .iter()
            .map(|m| m.target.clone())
            .collect::<Vec<_>>(),
    );
    let mut trees = TreeSpec {
        upper: Some(session.rootfs.upper.clone()),
        lowers: session.rootfs.lowers.clone(),
        grafts,
        exclude,
        overlay_xattrs: if session.rootfs.userxattr {
            OverlayXattrs::User
        } else {
            OverlayXattrs::Trusted
        },
        limits: req.limits,
        roots: Default::default(),
    };
    // Every pass reads through these fds: no root is looked up by path again.
    trees.open_roots()?;
    check_graft_roots(session.pid, &trees)?;

    // The slow, safe part first: base blobs are copied while the session runs.
    let mut commit = match &req.output_dir {
        Some(dir) => {
            let name = req.output.file_name().ok_or_else(|| {
                CommitError::invalid(
                    "output",
                    format!("{} does not name a file", req.output.display()),
                )
            })?;
            Commit::begin_in(
                dir.as_fd(),
                name,
                &req.output,
                req.overwrite,
                base,
                req.base_blobs,
                req.compression,
            )?
        }
        None => Commit::begin(
            &req.output,
            req.overwrite,
            base,
            req.base_blobs,
            req.compression,
        )?,
    };
    observer.phase(Phase::Writing {
        session: &session,
        temp: commit.temp_path(),
    });
    let cgroup = match req.pause {
        PauseMode::None => None,
        PauseMode::Auto | PauseMode::Full => Some(cgroup_of(&session, req.cgroup_version)?),
    };
    let frozen = match &cgroup {
        None => {
            let (_, r) = commit.add_layer(&trees, req.compression, progress, cancel)?;
            Frozen {
                path: "none".into(),
                entries: r.entries(),
                layers_added: 1,
                ..Frozen::default()
            }
        }
        Some(cg) => frozen_commit(req, &mut commit, &trees, cg, progress, cancel, observer)?,
    };
    observer.phase(Phase::Finalizing);
    let report = commit.finish(&req.meta)?;
    Ok(SessionReport {
        commit: report,
        session: SessionInfo {
            id: session.id.clone(),
            pid: session.pid,
            state_file: session.state_file.clone(),
            rootfs: session.rootfs.clone(),
            home: session.home.clone(),
            included_mounts: included,
            cgroup: cgroup.map(|c| c.dir().to_path_buf()),
            base_source,
        },
        excluded_mounts: excluded,
        frozen,
    })
}

/// Checks that each grafted tree, as opened for the walk, is the directory
/// the session has mounted at its container path (seen through
/// `/proc/PID/root`, resolved in that root without following a symlink): the
/// lookup checked the same by path, and the path may have changed since.
fn check_graft_roots(pid: i32, trees: &TreeSpec) -> Result<()> {
    use freezeframe_snapshot::fs::open::{open_in_root, open_root, stat};
    use rustix::fs::OFlags;
    let proc_root = PathBuf::from(format!("/proc/{pid}/root"));
    let root = open_root(&proc_root).map_err(|e| freezeframe_snapshot::Error::Io {
        path: proc_root.clone(),
        source: e.into(),
    })?;
    for (i, g) in trees.grafts.iter().enumerate() {
        let Some(opened) = trees.graft_root(i) else {
            continue;
        };
        let in_session = proc_root.join(g.at.strip_prefix("/").unwrap_or(&g.at));
        let seen = open_in_root(root.as_fd(), &g.at, OFlags::PATH | OFlags::DIRECTORY)
            .and_then(stat)
            .map_err(|e| freezeframe_snapshot::Error::Io {
                path: in_session.clone(),
                source: e.into(),
            })?;
        if (seen.st_dev, seen.st_ino) != opened.id {
            return Err(freezeframe_snapshot::Error::Refused {
                path: g.source.clone(),
                message: format!(
                    "not the directory the session has mounted at {}",
                    g.at.display()
                ),
            }
            .into());
        }
    }
    Ok(())
}

/// Where a mapped file may be in the layer: as a container path (a process in
/// the session), or as a host path under the upper dir or a grafted tree (a
/// process that shares the session's cgroup from outside it). Relative, no
/// leading `/`; marking a path that is not in the tree is harmless.
fn container_paths(path: &Path, trees: &TreeSpec) -> Vec<Vec<u8>> {
    let rel = |p: &Path| p.as_os_str().as_encoded_bytes().to_vec();
    let mut out = vec![rel(path.strip_prefix("/").unwrap_or(path))];
    if let Some(rest) = trees.upper.as_ref().and_then(|u| path.strip_prefix(u).ok()) {
        out.push(rel(rest));
    }
    for g in &trees.grafts {
        if let Ok(rest) = path.strip_prefix(&g.source) {
            let at = g.at.strip_prefix("/").unwrap_or(&g.at);
            out.push(rel(&at.join(rest)));
        }
    }
    out
}

/// What the frozen pass captured.
enum Captured {
    /// A layer already in the archive.
    Written(freezeframe_snapshot::walk::WalkReport),
    /// A layer to compress now that the session runs again, if any.
    Spooled(Option<freezeframe_snapshot::commit::Spooled>),
}

/// Adds the session's layers with the cgroup frozen as briefly as `req.pause`
/// allows, and always thawed: by the freezer's `Pause` on every return and unwind, and by the
/// guardian process if this one is killed.
fn frozen_commit(
    req: &SessionRequest,
    commit: &mut Commit,
    trees: &TreeSpec,
    cg: &Cgroup,
    progress: &Progress,
    cancel: &AtomicBool,
    observer: &dyn Observer,
) -> Result<Frozen> {
    let mut baseline = Baseline::new();
    if req.pause == PauseMode::Auto {
        match Journal::start(&std::env::temp_dir()) {
            Ok(j) => baseline.attach_journal(j),
            Err(e) => {
                tracing::warn!(error = %e, "no change journal: the frozen pass reads everything")
            }
        }
    }
    let mut frozen_read = String::new();
    let before_live = commit.mark()?;
    let live = req.pause == PauseMode::Auto;
    if live {
        observer.phase(Phase::Snapshotting);
        let t = Instant::now();
        let pass = Pass::Record(&mut baseline);
        commit.add_layer_pass(trees, req.compression, progress, cancel, pass, None)?;
        tracing::info!(
            entries = baseline.len(),
            ms = t.elapsed().as_millis() as u64,
            "live pass done"
        );
    }
    let exe = std::env::current_exe().map_err(CommitError::CurrentExe)?;
    let guardian = Guardian::spawn(&exe, cg)?;
    observer.phase(Phase::Freezing { cgroup: cg });
    let pause = cg.pause(req.freeze_timeout);
    let pause = match pause {
        Ok(p) => p,
        Err(e) => {
            observer.phase(Phase::Thawed);
            return Err(e.into());
        }
    };
    let mut path = if live { "auto" } else { "full" };
    // Live: the frozen pass only reads what changed into a spool; it is
    // compressed after the thaw. Full: the whole layer is written frozen.
    let captured = if live {
        // Writes through shared mappings leave no trace in metadata: re-read
        // every file a session process has mapped shared and writable.
        let pids = cg.pids().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list the session's processes; shared mappings not checked");
            Vec::new()
        });
        for path in shared_writable_mappings(&pids) {
            for rel in container_paths(&path, trees) {
                baseline.mark_changed(&rel);
            }
        }
        frozen_read = match baseline.restrict_to_journal() {
            Ok(visit) => format!("journal: {} names", visit.len()),
            Err(why) => format!("all: {why}"),
        };
        let pass = Pass::Delta(&baseline);
        let limit = Some(req.live_fallback_bytes);
        match commit.spool_layer(trees, progress, cancel, pass, limit) {
            Err(freezeframe_snapshot::Error::LayerTooLarge { .. }) => {
                // So much changed that the second layer would be large: one
                // layer, all of it read frozen.
                path = "auto-fallback-full";
                // No early return while frozen: the thaw below must be told.
                commit
                    .rollback(before_live)
                    .and_then(|()| commit.add_layer(trees, req.compression, progress, cancel))
                    .map(|(_, r)| Captured::Written(r))
            }
            other => other.map(Captured::Spooled),
        }
    } else {
        commit
            .add_layer(trees, req.compression, progress, cancel)
            .map(|(_, r)| Captured::Written(r))
    };
    tracing::info!(
        ms = pause.frozen_for().as_millis() as u64,
        "frozen pass done"
    );
    let frozen_for = pause.resume()?;
    observer.phase(Phase::Thawed);
    guardian.release()?;
    let (entries, bytes) = match captured? {
        Captured::Written(r) => (r.entries(), r.bytes),
        Captured::Spooled(None) => (0, 0),
        Captured::Spooled(Some(spooled)) => {
            let (entries, bytes) = (spooled.report().entries(), spooled.report().bytes);
            commit.add_spooled(spooled, req.compression, progress)?;
            (entries, bytes)
        }
    };
    Ok(Frozen {
        path: path.into(),
        frozen_ms: frozen_for.as_millis() as u64,
        entries,
        bytes,
        layers_added: commit.layers_added(),
        frozen_read,
    })
}

/// Thaws a session by hand.
pub fn thaw(
    target: &Target,
    roots: &[PathBuf],
    stores: &Stores,
    prefer: Option<CgroupVersion>,
) -> Result<PathBuf, CommitError> {
    let session = find(target, roots, stores, Path::new("/"))?;
    let cg = cgroup_of(&session, prefer)?;
    cg.thaw()?;
    Ok(cg.dir().to_path_buf())
}
