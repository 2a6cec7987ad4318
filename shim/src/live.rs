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
use freezeframe_snapshot::precopy::PreCopy;
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
    /// With `PauseMode::Auto`: a frozen pass that would read more file data
    /// than this stops; the session is thawed for one more pre-copy round and
    /// frozen again, then falls back to a full freeze.
    pub live_fallback_bytes: u64,
    /// With `PauseMode::Auto`: live rounds after the first pass that read
    /// ahead what changed, so that the frozen pass reads little.
    pub precopy_rounds: u32,
    /// Bytes of file data those rounds may keep.
    pub precopy_max_bytes: u64,
    /// The longest the last-resort full freeze may last.
    pub fallback_max_pause: Duration,
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
    /// `auto-fallback-full` (the delta was too large, twice: one layer,
    /// frozen), `full`, or `none`.
    pub path: String,
    /// How long the session was frozen, over every freeze.
    pub frozen_ms: u64,
    /// How many times it was frozen: 2 when the first frozen pass found too
    /// much changed, and the session ran again for another pre-copy round.
    pub freezes: u32,
    /// Entries written while frozen, and bytes of file data read while
    /// frozen.
    pub entries: u64,
    pub bytes: u64,
    /// Bytes of file data the frozen pass wrote from pre-copy rounds' copies
    /// (checked against the frozen files), not read while frozen.
    pub reused_bytes: u64,
    /// The pre-copy rounds run before the freeze.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub precopy: Vec<PrecopyRound>,
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

/// A pre-copy round as the report gives it.
#[derive(Debug, Clone, Serialize)]
pub struct PrecopyRound {
    pub ms: u64,
    /// Bytes read from files into the store.
    pub read: u64,
    /// Bytes of earlier copies checked against the files, and kept.
    pub checked: u64,
    /// What the round looked at: `journal: N names` or `all: why`.
    pub looked_at: String,
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

/// How many times a live commit freezes the session before the last resort:
/// the second time, after one more pre-copy round.
const FREEZE_ATTEMPTS: u32 = 2;

/// Pre-copy rounds stop once one reads no more than this...
const CONVERGED_BYTES: u64 = 16 << 20;
/// ...in no longer than this: what changes during such a round, the frozen
/// pass reads.
const CONVERGED_TIME: Duration = Duration::from_millis(500);

/// What a frozen pass captured.
enum Captured {
    /// A layer already in the archive (a full freeze).
    Written(freezeframe_snapshot::walk::WalkReport),
    /// A layer to compress now that the session runs again, if any.
    Spooled(Option<freezeframe_snapshot::commit::Spooled>),
}

/// The commit's side of a live commit: the baseline of its first pass, and
/// the file data read ahead.
struct Live {
    baseline: Baseline,
    precopy: Option<PreCopy>,
    /// Where the commit was before the first pass: what the last resort
    /// rolls back to.
    before: Option<freezeframe_snapshot::commit::CommitMark>,
}

/// Adds the session's layers with the cgroup frozen as briefly as `req.pause`
/// allows, and always thawed: by the freezer's `Pause` on every return and
/// unwind, and by the guardian process if this one is killed.
///
/// `auto`: a live first pass writes layer one; pre-copy rounds read ahead
/// what changes; the frozen pass reads what changed since (only the names
/// the change journal lists, when it is complete) into a spool, compressed as
/// layer two after the thaw. Too much changed while frozen: thawed, one more
/// round, frozen again; then a full freeze, bounded, as the last resort.
fn frozen_commit(
    req: &SessionRequest,
    commit: &mut Commit,
    trees: &TreeSpec,
    cg: &Cgroup,
    progress: &Progress,
    cancel: &AtomicBool,
    observer: &dyn Observer,
) -> Result<Frozen> {
    let mut frozen = Frozen {
        path: "full".into(),
        ..Frozen::default()
    };
    let mut live = match req.pause {
        PauseMode::Auto => Some(live_passes(
            req,
            commit,
            trees,
            progress,
            cancel,
            observer,
            &mut frozen,
        )?),
        _ => None,
    };
    let exe = std::env::current_exe().map_err(CommitError::CurrentExe)?;
    let guardian = Guardian::spawn(&exe, cg)?;
    let mut frozen_for = Duration::ZERO;
    let captured = loop {
        observer.phase(Phase::Freezing { cgroup: cg });
        let pause = match cg.pause(req.freeze_timeout) {
            Ok(p) => p,
            Err(e) => {
                observer.phase(Phase::Thawed);
                return Err(e.into());
            }
        };
        frozen.freezes += 1;
        // No early return while frozen: the thaw below must be told.
        let captured = match &mut live {
            None => commit
                .add_layer(trees, req.compression, progress, cancel)
                .map(|(_, r)| Captured::Written(r))
                .map_err(CommitError::from),
            Some(live) => {
                let last_try = frozen.freezes >= FREEZE_ATTEMPTS;
                match frozen_delta(req, commit, trees, cg, live, progress, cancel, &mut frozen) {
                    Err(freezeframe_snapshot::Error::LayerTooLarge { .. }) if last_try => {
                        // So much changed, twice, that the second layer would
                        // be large: one layer, all of it read frozen.
                        frozen.path = "auto-fallback-full".into();
                        full_fallback(req, commit, trees, live, progress, cancel)
                    }
                    other => other.map_err(CommitError::from),
                }
            }
        };
        tracing::info!(
            ms = pause.frozen_for().as_millis() as u64,
            "frozen pass done"
        );
        frozen_for += pause.resume()?;
        observer.phase(Phase::Thawed);
        match (captured, &mut live) {
            (
                Err(CommitError::Snapshot(freezeframe_snapshot::Error::LayerTooLarge { .. })),
                Some(live),
            ) => {
                tracing::info!("too much changed while frozen: one more pre-copy round");
                observer.phase(Phase::Snapshotting);
                if let Err(e) = precopy_round(trees, live, progress, cancel, &mut frozen) {
                    break Err(e);
                }
            }
            // Not asked for: the last resort's bound stopped it.
            (Err(CommitError::Cancelled), _)
                if !cancel.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                break Err(CommitError::FallbackTooLong {
                    cgroup: cg.dir().to_path_buf(),
                    limit: req.fallback_max_pause,
                });
            }
            (other, _) => break other,
        }
    };
    guardian.release()?;
    let captured = captured?;
    frozen.frozen_ms = frozen_for.as_millis() as u64;
    match captured {
        Captured::Written(r) => {
            frozen.entries = r.entries();
            frozen.bytes = r.bytes;
        }
        Captured::Spooled(None) => {}
        Captured::Spooled(Some(spooled)) => {
            frozen.entries = spooled.report().entries();
            frozen.reused_bytes = spooled.reused();
            frozen.bytes = spooled.report().bytes.saturating_sub(spooled.reused());
            let precopy = live.as_ref().and_then(|l| l.precopy.as_ref());
            commit.add_spooled(spooled, precopy, req.compression, progress)?;
        }
    }
    frozen.layers_added = commit.layers_added();
    Ok(frozen)
}

/// The live part of a live commit: the first pass (layer one), with the
/// change journal watching, then the pre-copy rounds.
fn live_passes(
    req: &SessionRequest,
    commit: &mut Commit,
    trees: &TreeSpec,
    progress: &Progress,
    cancel: &AtomicBool,
    observer: &dyn Observer,
    frozen: &mut Frozen,
) -> Result<Live> {
    frozen.path = "auto".into();
    let mut baseline = Baseline::new();
    match Journal::start(&std::env::temp_dir()) {
        Ok(j) => baseline.attach_journal(j),
        Err(e) => {
            tracing::warn!(error = %e, "no change journal: the frozen pass reads everything")
        }
    }
    let before = commit.mark()?;
    observer.phase(Phase::Snapshotting);
    let t = Instant::now();
    let pass = Pass::Record(&mut baseline);
    commit.add_layer_pass(trees, req.compression, progress, cancel, pass, None)?;
    tracing::info!(
        entries = baseline.len(),
        ms = t.elapsed().as_millis() as u64,
        "live pass done"
    );
    let mut live = Live {
        baseline,
        precopy: None,
        before: Some(before),
    };
    if req.precopy_rounds == 0 {
        return Ok(live);
    }
    live.precopy = Some(commit.precopy(req.precopy_max_bytes)?);
    let mut last_read = u64::MAX;
    for _ in 0..req.precopy_rounds {
        let round = precopy_round(trees, &mut live, progress, cancel, frozen)?;
        let journaled = round.looked_at.starts_with("journal");
        let quick = Duration::from_millis(round.ms) <= CONVERGED_TIME;
        let converged = round.read <= CONVERGED_BYTES && quick;
        // Without a journal each round stats the whole tree: one is enough.
        // A round that read no less than the one before will not be
        // followed by a smaller one: the session writes faster than the
        // rounds read.
        if !journaled || converged || round.read >= last_read {
            break;
        }
        last_read = round.read;
    }
    Ok(live)
}

/// One pre-copy round, with the session running; the report lists it.
fn precopy_round(
    trees: &TreeSpec,
    live: &mut Live,
    progress: &Progress,
    cancel: &AtomicBool,
    frozen: &mut Frozen,
) -> Result<PrecopyRound> {
    let Some(pre) = live.precopy.as_mut() else {
        return Ok(PrecopyRound {
            ms: 0,
            read: 0,
            checked: 0,
            looked_at: String::new(),
        });
    };
    let t = Instant::now();
    let looked_at = looked_at(live.baseline.restrict_to_journal().map(|v| v.len()));
    let r = pre.round(trees, &mut live.baseline, progress, cancel)?;
    let round = PrecopyRound {
        ms: t.elapsed().as_millis() as u64,
        read: r.read,
        checked: r.checked,
        looked_at,
    };
    tracing::info!(
        ms = round.ms,
        read = round.read,
        checked = round.checked,
        "pre-copy round done"
    );
    frozen.precopy.push(round.clone());
    Ok(round)
}

fn looked_at(
    visit: std::result::Result<usize, freezeframe_snapshot::journal::Incomplete>,
) -> String {
    match visit {
        Ok(n) => format!("journal: {n} names"),
        Err(why) => format!("all: {why}"),
    }
}

/// The frozen pass of a live commit: what changed since the first pass, read
/// into a spool; file data the pre-copy rounds kept is referred to, once
/// checked. Stops with [`freezeframe_snapshot::Error::LayerTooLarge`] past
/// `req.live_fallback_bytes` read.
#[allow(clippy::too_many_arguments)]
fn frozen_delta(
    req: &SessionRequest,
    commit: &mut Commit,
    trees: &TreeSpec,
    cg: &Cgroup,
    live: &mut Live,
    progress: &Progress,
    cancel: &AtomicBool,
    frozen: &mut Frozen,
) -> std::result::Result<Captured, freezeframe_snapshot::Error> {
    // Writes through shared mappings leave no trace in metadata: re-read
    // every file a session process has mapped shared and writable.
    let pids = cg.pids().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list the session's processes; shared mappings not checked");
        Vec::new()
    });
    for path in shared_writable_mappings(&pids) {
        for rel in container_paths(&path, trees) {
            live.baseline.mark_changed(&rel);
            if let Some(pre) = &mut live.precopy {
                pre.forget(&rel);
            }
        }
    }
    frozen.frozen_read = looked_at(live.baseline.restrict_to_journal().map(|v| v.len()));
    let pass = Pass::Delta(&live.baseline);
    let limit = Some(req.live_fallback_bytes);
    commit
        .spool_layer(trees, progress, cancel, pass, limit, live.precopy.as_ref())
        .map(Captured::Spooled)
}

/// The last resort, with the session frozen: the first layer rolled back and
/// everything written in one frozen layer, for at most
/// `req.fallback_max_pause` (past it, [`CommitError::Cancelled`] with the
/// caller's flag unset).
fn full_fallback(
    req: &SessionRequest,
    commit: &mut Commit,
    trees: &TreeSpec,
    live: &mut Live,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Captured> {
    use std::sync::atomic::Ordering;
    if let Some(before) = live.before.take() {
        commit.rollback(before)?;
    }
    let stop = AtomicBool::new(false);
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let written = std::thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            let deadline = Instant::now() + req.fallback_max_pause;
            loop {
                match finished.recv_timeout(Duration::from_millis(10)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if cancel.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        });
        let written = commit.add_layer(trees, req.compression, progress, stop);
        drop(done);
        written
    });
    Ok(Captured::Written(written?.1))
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
