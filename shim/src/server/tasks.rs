//! The task manager: admits commits (one in flight per session, `max_concurrent`
//! running, `queue_size` waiting), runs each on an OS thread of its own, keeps
//! every task's record in memory behind a lock held only to copy or change it,
//! persists each change, and recovers what a previous server left unfinished.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use freezeframe_runtime::session::freezer::{Cgroup, FreezerState};
use freezeframe_snapshot::registry::{self, PushOptions, PushReport, Reference};
use freezeframe_snapshot::walk::Progress;
use tokio::sync::watch;

use super::store::Store;
use crate::api::{
    Code, Counts, FrozenCgroup, Layer, PushCounts, PushResult, PushedBlob, State, Summary, Task,
    TaskError, TaskResult,
};
use crate::error::CommitError;
use crate::live::{self, Observer, Phase, SessionReport, SessionRequest};

/// A task just admitted.
fn queued(id: &str, session: &str, owner: Option<String>, output: &Path, request: Summary) -> Task {
    Task {
        id: id.to_string(),
        session: session.to_string(),
        owner,
        state: State::Queued,
        output: output.to_path_buf(),
        request,
        created: now_rfc3339(),
        started: None,
        finished: None,
        phases_ms: BTreeMap::new(),
        progress: Counts::default(),
        frozen_ms: None,
        result: None,
        error: None,
        temp: None,
        frozen_cgroup: None,
        lock_file: None,
    }
}

/// Why the manager refused a request.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the server is shutting down")]
    ShuttingDown,

    #[error("session {session} already has a commit in flight: task {task}")]
    SessionBusy { session: String, task: String },

    #[error("{}: another commit in flight writes there", path.display())]
    OutputBusy { path: PathBuf },

    #[error("the queue is full: {running} commits running and {queued} waiting")]
    QueueFull { running: usize, queued: usize },

    #[error("no task {id}")]
    NoTask { id: String },

    #[error("task {id} is already {}", state.as_str())]
    Ended { id: String, state: State },

    #[error("task {id} vanished")]
    Vanished { id: String },
}

impl Refusal {
    pub fn code(&self) -> Code {
        match self {
            Refusal::ShuttingDown => Code::ShuttingDown,
            Refusal::SessionBusy { .. } | Refusal::OutputBusy { .. } | Refusal::Ended { .. } => {
                Code::Conflict
            }
            Refusal::QueueFull { .. } => Code::QueueFull,
            Refusal::NoTask { .. } => Code::NotFound,
            Refusal::Vanished { .. } => Code::Internal,
        }
    }
}

/// An admitted request, ready to run.
pub struct Admission {
    pub session: String,
    /// The owner the request named, checked.
    pub owner: Option<String>,
    /// The resolved plan of a session commit.
    pub request: SessionRequest,
    pub summary: Summary,
    /// Where to push the archive once written.
    pub push: Option<PushPlan>,
}

/// A push to make after the commit. Its credentials live here, in memory,
/// for the task's life: never in the record, the events or the logs.
#[derive(Debug)]
pub struct PushPlan {
    pub reference: Reference,
    /// TLS, credentials, insecure, mount source; progress and cancel are set
    /// when the push starts.
    pub options: PushOptions,
}

/// A push's counters, read for the progress the task shows.
#[derive(Default)]
struct PushLive {
    bytes: Arc<AtomicU64>,
    blobs: Arc<AtomicU64>,
    total: AtomicU64,
}

/// How a task ended.
struct Outcome {
    /// The commit's report, when the archive was written.
    report: Option<Box<SessionReport>>,
    push: Option<PushResult>,
    error: Option<TaskError>,
}

impl From<TaskError> for Outcome {
    fn from(error: TaskError) -> Self {
        Outcome {
            report: None,
            push: None,
            error: Some(error),
        }
    }
}

pub struct Limits {
    pub max_concurrent: usize,
    pub queue_size: usize,
    pub lock_dir: Option<PathBuf>,
    pub retain: Retention,
}

/// How long, and how many, finished task records are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Records that finished longer ago are removed.
    pub age: Duration,
    /// Beyond the newest `count` finished records, the older ones are removed.
    pub count: usize,
}

/// A task in memory.
struct Entry {
    task: Task,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
    /// When the current state was entered.
    since: Instant,
    /// When the task reached its final state.
    finished_at: Option<SystemTime>,
    frozen_since: Option<Instant>,
    /// The request, until a thread takes it.
    pending: Option<Box<SessionRequest>>,
    /// The push to make after the commit, until the thread takes it.
    push: Option<Box<PushPlan>>,
    /// Set when a push is asked for.
    push_live: Option<Arc<PushLive>>,
    changed: watch::Sender<State>,
}

impl Entry {
    fn new(task: Task, pending: Option<Box<SessionRequest>>) -> Entry {
        let (changed, _) = watch::channel(task.state);
        Entry {
            task,
            progress: Arc::new(Progress::default()),
            cancel: Arc::new(AtomicBool::new(false)),
            since: Instant::now(),
            finished_at: None,
            frozen_since: None,
            pending,
            push: None,
            push_live: None,
            changed,
        }
    }
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Entry>,
    queue: VecDeque<String>,
    running: usize,
    /// Session id → its task in flight.
    sessions: HashMap<String, String>,
    /// Outputs of tasks in flight: two commits may not write one file.
    outputs: HashSet<PathBuf>,
    shutting_down: bool,
}

pub struct Manager {
    inner: Mutex<Inner>,
    store: Store,
    /// Serializes record writes, so the last write holds the latest state.
    writing: Mutex<()>,
    limits: Limits,
}

impl Manager {
    pub fn new(store: Store, limits: Limits) -> Self {
        Manager {
            inner: Mutex::new(Inner::default()),
            store,
            writing: Mutex::new(()),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data: keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the records a previous server left, and finishes those it did not:
    /// thaws the cgroup it had frozen (unless its owner had paused it), removes
    /// the temp archive and the lock file, and marks the task `failed` with code
    /// `interrupted`. Returns how many were interrupted.
    pub fn recover(&self) -> Result<usize, super::store::Error> {
        let (tasks, bad) = self.store.load()?;
        for e in bad {
            tracing::warn!(error = %e, "skipping an unreadable task record");
        }
        let mut interrupted = 0;
        for mut task in tasks {
            if !task.state.is_final() {
                interrupted += 1;
                clean_up_after(&task);
                task.state = State::Failed;
                task.finished = Some(now_rfc3339());
                task.error = Some(TaskError {
                    code: Code::Interrupted,
                    message: "the server stopped before the commit finished".into(),
                });
                task.temp = None;
                task.frozen_cgroup = None;
                task.lock_file = None;
                if let Err(e) = self.store.write(&task) {
                    tracing::error!(task = %task.id, error = %e, "cannot record the interrupted task");
                }
                tracing::warn!(task = %task.id, session = %task.session, "marked interrupted");
            }
            // A time that does not parse counts from now.
            let finished_at = task
                .finished
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .unwrap_or_else(SystemTime::now);
            let mut entry = Entry::new(task, None);
            entry.finished_at = Some(finished_at);
            self.lock().tasks.insert(entry.task.id.clone(), entry);
        }
        Ok(interrupted)
    }

    /// Admits a commit of `a.session` to `a.request.output`: refused when the
    /// server is shutting down, the session or the output already has a commit
    /// in flight, or the queue is full. Blocking: it persists the record and
    /// writes the lock file.
    pub fn submit(self: &Arc<Self>, a: Admission) -> Result<Task, Refusal> {
        let output = a.request.output.clone();
        let (id, start) = {
            let mut inner = self.lock();
            if inner.shutting_down {
                return Err(Refusal::ShuttingDown);
            }
            if let Some(other) = inner.sessions.get(&a.session) {
                return Err(Refusal::SessionBusy {
                    session: a.session.clone(),
                    task: other.clone(),
                });
            }
            if inner.outputs.contains(&output) {
                return Err(Refusal::OutputBusy { path: output });
            }
            let start = inner.running < self.limits.max_concurrent;
            if !start && inner.queue.len() >= self.limits.queue_size {
                return Err(Refusal::QueueFull {
                    running: inner.running,
                    queued: inner.queue.len(),
                });
            }
            let id = loop {
                let id = new_id();
                if !inner.tasks.contains_key(&id) {
                    break id;
                }
            };
            let mut task = queued(&id, &a.session, a.owner, &output, a.summary);
            task.lock_file = self.limits.lock_dir.as_ref().map(|d| d.join(&a.session));
            let mut entry = Entry::new(task, Some(Box::new(a.request)));
            if let Some(push) = a.push {
                entry.push = Some(Box::new(push));
                entry.push_live = Some(Arc::default());
            }
            inner.tasks.insert(id.clone(), entry);
            inner.sessions.insert(a.session.clone(), id.clone());
            inner.outputs.insert(output);
            if start {
                inner.running += 1;
            } else {
                inner.queue.push_back(id.clone());
            }
            (id, start)
        };
        self.persist(&id);
        self.write_lock_file(&id);
        if start {
            self.spawn(id.clone());
        }
        self.get(&id).ok_or(Refusal::Vanished { id })
    }

    /// The task now, progress and timings included.
    pub fn get(&self, id: &str) -> Option<Task> {
        self.lock().tasks.get(id).map(view)
    }

    /// Tasks, oldest first, optionally of one session, in one state and of
    /// one owner.
    pub fn list(
        &self,
        session: Option<&str>,
        state: Option<State>,
        owner: Option<&str>,
    ) -> Vec<Task> {
        let mut out: Vec<Task> = self
            .lock()
            .tasks
            .values()
            .filter(|e| session.is_none_or(|s| e.task.session == s))
            .filter(|e| owner.is_none_or(|o| e.task.owner.as_deref() == Some(o)))
            .filter(|e| state.is_none_or(|s| e.task.state == s))
            .map(view)
            .collect();
        out.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        out
    }

    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.running, inner.queue.len())
    }

    /// A receiver told of each change of the task's state.
    pub fn watch(&self, id: &str) -> Option<watch::Receiver<State>> {
        self.lock().tasks.get(id).map(|e| e.changed.subscribe())
    }

    /// Asks a task to stop. A queued task is cancelled at once; a running one is
    /// told to stop and ends `cancelled` once its session is thawed and its temp
    /// archive removed (see [`Manager::wait_final`]). Cancelling a cancelled task
    /// is a no-op; a task that is done or failed is a conflict.
    pub fn cancel(&self, id: &str) -> Result<(), Refusal> {
        let was_queued = {
            let mut inner = self.lock();
            let entry = inner
                .tasks
                .get(id)
                .ok_or_else(|| Refusal::NoTask { id: id.to_string() })?;
            match entry.task.state {
                State::Cancelled => return Ok(()),
                state if state.is_final() => {
                    return Err(Refusal::Ended {
                        id: id.to_string(),
                        state,
                    })
                }
                _ => {}
            }
            entry.cancel.store(true, Ordering::SeqCst);
            let queued = inner.queue.iter().position(|q| q == id);
            if let Some(i) = queued {
                inner.queue.remove(i);
            }
            queued.is_some()
        };
        if was_queued {
            self.finish(id, cancelled().into());
        }
        Ok(())
    }

    /// Waits (at most `timeout`) for a task to reach a final state.
    pub async fn wait_final(&self, id: &str, timeout: Duration) {
        let Some(mut changes) = self.watch(id) else {
            return;
        };
        let _ = tokio::time::timeout(timeout, changes.wait_for(|s| s.is_final())).await;
    }

    /// Refuses new commits from now on; with `cancel`, cancels every task in
    /// flight (queued ones at once). See [`Manager::idle`].
    pub fn shut_down(&self, cancel: bool) {
        let queued: Vec<String> = {
            let mut inner = self.lock();
            inner.shutting_down = true;
            if !cancel {
                return;
            }
            for e in inner.tasks.values() {
                if !e.task.state.is_final() {
                    e.cancel.store(true, Ordering::SeqCst);
                }
            }
            inner.queue.drain(..).collect()
        };
        for id in queued {
            self.finish(&id, cancelled().into());
        }
    }

    /// No commit is running or waiting.
    pub fn idle(&self) -> bool {
        let inner = self.lock();
        inner.running == 0 && inner.queue.is_empty()
    }

    fn spawn(self: &Arc<Self>, id: String) {
        let me = Arc::clone(self);
        let name = format!("commit-{id}");
        let spawned = std::thread::Builder::new().name(name).spawn({
            let id = id.clone();
            move || me.run(&id)
        });
        if let Err(e) = spawned {
            self.finish(
                &id,
                TaskError {
                    code: Code::Internal,
                    message: format!("cannot start a thread for the commit: {e}"),
                }
                .into(),
            );
            self.release_slot();
        }
    }

    /// The commit thread.
    fn run(self: Arc<Self>, id: &str) {
        let taken = {
            let mut inner = self.lock();
            inner.tasks.get_mut(id).and_then(|e| {
                let req = e.pending.take()?;
                set_state(e, State::Snapshotting);
                e.task.started = Some(now_rfc3339());
                let push = e.push.take().zip(e.push_live.clone());
                Some((req, push, Arc::clone(&e.progress), Arc::clone(&e.cancel)))
            })
        };
        let Some((req, push, progress, cancel)) = taken else {
            self.release_slot();
            return;
        };
        // Background work: the sessions and the API come first. The threads
        // this one starts (compression) inherit its priority.
        set_nice(COMMIT_NICE);
        self.persist(id);
        let outcome = if cancel.load(Ordering::SeqCst) {
            Err(cancelled())
        } else {
            let observer = TaskObserver { manager: &self, id };
            match std::panic::catch_unwind(AssertUnwindSafe(|| {
                live::commit_session(&req, &progress, &cancel, &observer)
            })) {
                Ok(Ok(report)) => Ok(Box::new(report)),
                Ok(Err(e)) => Err(task_error(&e)),
                Err(panic) => Err(TaskError {
                    code: Code::Internal,
                    message: format!("the commit panicked: {}", panic_message(&panic)),
                }),
            }
        };
        let outcome = match (outcome, push) {
            (Ok(report), Some((plan, live))) => {
                let pushed = self.push(id, &report, *plan, &live, &cancel);
                let (push, error) = match pushed {
                    Ok(p) => (Some(p), None),
                    Err(e) => (None, Some(e)),
                };
                Outcome {
                    report: Some(report),
                    push,
                    error,
                }
            }
            (Ok(report), None) => Outcome {
                report: Some(report),
                push: None,
                error: None,
            },
            (Err(e), _) => e.into(),
        };
        self.finish(id, outcome);
        self.release_slot();
    }

    /// Pushes the archive a commit wrote; it stays whatever happens.
    fn push(
        &self,
        id: &str,
        report: &SessionReport,
        plan: PushPlan,
        live: &PushLive,
        cancel: &Arc<AtomicBool>,
    ) -> Result<PushResult, TaskError> {
        let archive = report.commit.archive.clone();
        // The config, then every layer of the manifest.
        live.total
            .store(report.commit.layers.len() as u64 + 1, Ordering::Relaxed);
        self.update(id, |e| {
            // The archive has its final name: nothing to clean up any more.
            e.task.temp = None;
            set_state(e, State::Pushing);
        });
        self.persist(id);
        if cancel.load(Ordering::SeqCst) {
            return Err(cancelled());
        }
        tracing::info!(task = id, reference = %plan.reference, "pushing the archive");
        let options = PushOptions {
            progress: Some(Arc::clone(&live.bytes)),
            blobs_done: Some(Arc::clone(&live.blobs)),
            cancel: Some(Arc::clone(cancel)),
            registry_blobs: report.commit.registry_blobs(),
            ..plan.options
        };
        let pushed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            registry::push_archive(&archive, &plan.reference, &options)
        }));
        match pushed {
            Ok(Ok(r)) => Ok(push_result(&r)),
            // Cancelled while a request failed or waited to be repeated.
            Ok(Err(_)) if cancel.load(Ordering::SeqCst) => Err(cancelled()),
            Ok(Err(source)) => Err(task_error(&CommitError::Push {
                archive,
                reference: plan.reference.to_string(),
                source: Box::new(source),
            })),
            Err(panic) => Err(TaskError {
                code: Code::Internal,
                message: format!("the push panicked: {}", panic_message(&panic)),
            }),
        }
    }

    /// Frees a running slot and starts the next queued task, if any.
    fn release_slot(self: &Arc<Self>) {
        let next = {
            let mut inner = self.lock();
            inner.running = inner.running.saturating_sub(1);
            let next = inner.queue.pop_front();
            if next.is_some() {
                inner.running += 1;
            }
            next
        };
        if let Some(id) = next {
            self.spawn(id);
        }
    }

    /// Puts a task in its final state, frees its session and output, persists it
    /// and removes its lock file.
    fn finish(&self, id: &str, outcome: Outcome) {
        // The lock file goes first: whoever sees the task end sees it gone.
        let lock_file = self
            .lock()
            .tasks
            .get_mut(id)
            .and_then(|e| e.task.lock_file.take());
        if let Some(f) = lock_file {
            remove_lock_file(&f);
        }
        {
            let mut inner = self.lock();
            let Some(e) = inner.tasks.get_mut(id) else {
                return;
            };
            let state = match &outcome.error {
                None => State::Done,
                Some(err) if err.code == Code::Cancelled => State::Cancelled,
                Some(_) => State::Failed,
            };
            // A push that fails leaves the written archive, and the result
            // says where it is.
            let result = outcome.report.as_deref().map(task_result);
            if let Some(r) = &result {
                e.task.frozen_ms = Some(r.1);
            }
            e.task.result = result.map(|(mut r, _)| {
                r.push = outcome.push;
                r
            });
            e.task.error = outcome.error;
            e.task.progress = live_counts(e);
            e.task.temp = None;
            e.task.frozen_cgroup = None;
            e.task.finished = Some(now_rfc3339());
            e.finished_at = Some(SystemTime::now());
            set_state(e, state);
            let session = e.task.session.clone();
            let output = e.task.output.clone();
            if inner.sessions.get(&session).is_some_and(|t| t == id) {
                inner.sessions.remove(&session);
            }
            inner.outputs.remove(&output);
        }
        self.persist(id);
        self.prune(SystemTime::now());
    }

    /// Removes the records of finished tasks, from memory and disk, that
    /// finished longer than the retention's age before `now` or are beyond its
    /// count (the oldest go first). Tasks in flight are never removed.
    /// Returns how many were.
    pub fn prune(&self, now: SystemTime) -> usize {
        let retain = self.limits.retain;
        // Held while records are removed, so that no write brings one back.
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let removed: Vec<String> = {
            let mut inner = self.lock();
            let mut done: Vec<(SystemTime, &String)> = inner
                .tasks
                .iter()
                .filter(|(_, e)| e.task.state.is_final())
                .filter_map(|(id, e)| Some((e.finished_at?, id)))
                .collect();
            // Newest first.
            done.sort_by(|a, b| b.cmp(a));
            let removed: Vec<String> = done
                .iter()
                .enumerate()
                .filter(|(i, (at, _))| {
                    *i >= retain.count || now.duration_since(*at).unwrap_or_default() > retain.age
                })
                .map(|(_, (_, id))| (*id).clone())
                .collect();
            for id in &removed {
                inner.tasks.remove(id);
            }
            removed
        };
        for id in &removed {
            if let Err(e) = self.store.remove(id) {
                tracing::warn!(task = %id, error = %e, "cannot remove a task record");
            }
        }
        if !removed.is_empty() {
            tracing::info!(removed = removed.len(), "pruned finished task records");
        }
        removed.len()
    }

    /// Writes the task's current record.
    fn persist(&self, id: &str) {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let Some(task) = self.lock().tasks.get(id).map(|e| e.task.clone()) else {
            return;
        };
        if let Err(e) = self.store.write(&task) {
            tracing::error!(task = id, error = %e, "cannot persist the task record");
        }
    }

    fn write_lock_file(&self, id: &str) {
        let Some(path) = self
            .lock()
            .tasks
            .get(id)
            .and_then(|e| e.task.lock_file.clone())
        else {
            return;
        };
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, format!("{id}\n")));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the lock file");
        }
        // The task may have ended in the meantime (cancelled while queued).
        let ended = self
            .lock()
            .tasks
            .get(id)
            .is_none_or(|e| e.task.lock_file.is_none());
        if ended {
            remove_lock_file(&path);
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.lock().tasks.get_mut(id) {
            f(e);
        }
    }
}

fn remove_lock_file(f: &Path) {
    if let Err(e) = std::fs::remove_file(f) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %f.display(), error = %e, "cannot remove the lock file");
        }
    }
}

/// Reports a running commit's phases into its task.
struct TaskObserver<'a> {
    manager: &'a Manager,
    id: &'a str,
}

impl Observer for TaskObserver<'_> {
    fn phase(&self, phase: Phase<'_>) {
        match phase {
            Phase::Writing { session, temp } => {
                tracing::info!(task = self.id, session = %session.id, pid = session.pid,
                    temp = ?temp, "writing the archive");
                // An unnamed archive (O_TMPFILE) leaves nothing to clean up.
                let temp = temp.map(Path::to_path_buf);
                self.manager.update(self.id, |e| e.task.temp = temp);
            }
            Phase::Snapshotting => {
                self.manager
                    .update(self.id, |e| set_state(e, State::Snapshotting));
            }
            Phase::Freezing { cgroup } => {
                // Recorded durably before the freeze, so a restart knows to thaw.
                let frozen = FrozenCgroup {
                    version: cgroup.version(),
                    dir: cgroup.dir().to_path_buf(),
                    paused_before: cgroup.state().is_ok_and(|s| s != FreezerState::Thawed),
                };
                // The frozen pass runs at normal priority: the pause is what
                // users feel.
                set_nice(0);
                self.manager.update(self.id, |e| {
                    e.task.frozen_cgroup = Some(frozen);
                    e.frozen_since = Some(Instant::now());
                    set_state(e, State::Freezing);
                });
            }
            Phase::Thawed => {
                set_nice(COMMIT_NICE);
                self.manager.update(self.id, |e| {
                    e.task.frozen_cgroup = None;
                    if let Some(t) = e.frozen_since.take() {
                        e.task.frozen_ms = Some(t.elapsed().as_millis() as u64);
                    }
                });
            }
            Phase::Finalizing => {
                self.manager
                    .update(self.id, |e| set_state(e, State::Finalizing));
            }
        }
        self.manager.persist(self.id);
    }
}

/// Undoes what an unfinished task may have left: a frozen cgroup, a temp archive
/// (and the checksum sidecar's temp file next to it), a lock file.
fn clean_up_after(task: &Task) {
    if let Some(cg) = &task.frozen_cgroup {
        if cg.paused_before {
            tracing::info!(cgroup = %cg.dir.display(), "left frozen: its owner had paused it");
        } else {
            match Cgroup::new(cg.version, &cg.dir).thaw() {
                Ok(()) => tracing::warn!(cgroup = %cg.dir.display(), task = %task.id, "thawed"),
                Err(e) => tracing::error!(task = %task.id, error = %e, "cannot thaw"),
            }
        }
    }
    if let Some(temp) = &task.temp {
        for f in [Some(temp.clone()), sidecar_temp(temp)]
            .into_iter()
            .flatten()
        {
            match std::fs::remove_file(&f) {
                Ok(()) => tracing::warn!(file = %f.display(), "removed a leftover temp file"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!(file = %f.display(), error = %e, "cannot remove"),
            }
        }
    }
    if let Some(f) = &task.lock_file {
        let _ = std::fs::remove_file(f);
    }
}

/// Where the archive writer has to name its temp file (no `O_TMPFILE`), it is
/// `.NAME.PID.tmp` and the sidecar's `.NAME.sha256.PID.tmp` (see
/// `snapshot::unnamed`).
fn sidecar_temp(temp: &Path) -> Option<PathBuf> {
    let name = temp.file_name()?.to_str()?;
    let stem = name.strip_suffix(".tmp")?;
    let (base, pid) = stem.rsplit_once('.')?;
    Some(temp.with_file_name(format!("{base}.sha256.{pid}.tmp")))
}

/// The nice value of a commit's threads, but while its session is frozen.
const COMMIT_NICE: i32 = 10;

/// Sets this thread's nice value (Linux nice values are per thread; threads it
/// starts inherit it). Going back down needs CAP_SYS_NICE, which root has.
fn set_nice(nice: i32) {
    if let Err(e) = rustix::process::setpriority_process(None, nice) {
        tracing::debug!(nice, error = %e, "cannot set the commit thread's priority");
    }
}

fn set_state(e: &mut Entry, state: State) {
    if e.task.state == state {
        return;
    }
    *e.task.phases_ms.entry(e.task.state).or_default() += e.since.elapsed().as_millis() as u64;
    e.since = Instant::now();
    e.task.state = state;
    e.changed.send_replace(state);
}

/// The record with live progress and the time spent so far in the current state.
fn view(e: &Entry) -> Task {
    let mut t = e.task.clone();
    if !t.state.is_final() {
        t.progress = live_counts(e);
        *t.phases_ms.entry(t.state).or_default() += e.since.elapsed().as_millis() as u64;
        if let Some(since) = e.frozen_since {
            t.frozen_ms = Some(since.elapsed().as_millis() as u64);
        }
    }
    t
}

fn live_counts(e: &Entry) -> Counts {
    let p = &e.progress;
    Counts {
        files: p.entries.load(Ordering::Relaxed),
        bytes_read: p.bytes_read.load(Ordering::Relaxed),
        bytes_written: p.bytes_written.load(Ordering::Relaxed),
        push: e.push_live.as_deref().map(|l| PushCounts {
            bytes_sent: l.bytes.load(Ordering::Relaxed),
            blobs_done: l.blobs.load(Ordering::Relaxed),
            blobs_total: l.total.load(Ordering::Relaxed),
        }),
    }
}

fn push_result(r: &PushReport) -> PushResult {
    PushResult {
        reference: r.reference.clone(),
        manifest_digest: r.manifest_digest.clone(),
        manifest_media_type: r.manifest_media_type.clone(),
        mount_source: r.mount_source.clone(),
        blobs: r
            .blobs
            .iter()
            .map(|b| PushedBlob {
                digest: b.digest.clone(),
                size: b.size,
                outcome: serde_json::to_value(b.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            })
            .collect(),
        uploaded_bytes: r.uploaded_bytes,
    }
}

/// The result and the frozen time.
fn task_result(r: &SessionReport) -> (TaskResult, u64) {
    let c = &r.commit;
    (
        TaskResult {
            archive: c.archive.clone(),
            size: c.size,
            archive_sha256: c.archive_sha256.clone(),
            manifest_digest: c.manifest_digest.clone(),
            config_digest: c.config_digest.clone(),
            layers: c
                .layers
                .iter()
                .map(|l| Layer {
                    digest: l.digest.clone(),
                    diff_id: l.diff_id.clone(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                    included: l.included,
                })
                .collect(),
            pause_path: r.frozen.path.clone(),
            files: c.files,
            bytes: c.bytes,
            secrets_excluded: c.walk.secrets_excluded.clone(),
            secrets_unlisted: c.walk.secrets_unlisted,
            push: None,
        },
        r.frozen.frozen_ms,
    )
}

fn cancelled() -> TaskError {
    TaskError {
        code: Code::Cancelled,
        message: "cancelled".into(),
    }
}

/// The stable code of a failed commit, and its whole message.
fn task_error(e: &CommitError) -> TaskError {
    TaskError {
        code: e.code(),
        message: crate::error_chain(e),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// 16 random hex digits.
fn new_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        // Unique enough for a fallback: time and a counter.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        b = (t ^ N.fetch_add(1, Ordering::Relaxed).rotate_left(48)).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use freezeframe_runtime::session::freezer::CgroupVersion;

    #[test]
    fn the_sidecar_temp_is_named_like_the_archive_writer_names_it() {
        assert_eq!(
            sidecar_temp(Path::new("/s/.a.tar.42.tmp")).unwrap(),
            Path::new("/s/.a.tar.sha256.42.tmp")
        );
        assert_eq!(sidecar_temp(Path::new("/s/x")), None);
    }

    fn record(id: &str, state: State, dir: &Path) -> Task {
        let summary = Summary {
            pause: "full".into(),
            compression: "gzip".into(),
            tag: None,
            push: None,
        };
        let mut t = queued(
            id,
            &format!("session-{id}"),
            None,
            &dir.join(format!("{id}.tar")),
            summary,
        );
        t.state = state;
        t
    }

    /// A fake v1 freezer cgroup: a directory with `freezer.state`.
    fn fake_cgroup(dir: &Path, state: &str) -> FrozenCgroup {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("freezer.state"), state).unwrap();
        FrozenCgroup {
            version: CgroupVersion::V1,
            dir: dir.to_path_buf(),
            paused_before: false,
        }
    }

    #[test]
    fn recovery_thaws_removes_leftovers_and_marks_unfinished_tasks_interrupted() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let store = Store::open(&d.join("state")).unwrap();

        // Killed while frozen, with a named temp archive, its sidecar's and a lock file.
        let mut frozen = record("a", State::Freezing, d);
        frozen.frozen_cgroup = Some(fake_cgroup(&d.join("cg-a"), "FROZEN\n"));
        let temp = d.join(".a.tar.4242.tmp");
        std::fs::write(&temp, "partial").unwrap();
        std::fs::write(d.join(".a.tar.sha256.4242.tmp"), "partial").unwrap();
        frozen.temp = Some(temp.clone());
        frozen.lock_file = Some(d.join("lock-a"));
        std::fs::write(d.join("lock-a"), "a\n").unwrap();
        store.write(&frozen).unwrap();
        // Paused by its owner before the commit froze it: left frozen.
        let mut owners = record("b", State::Freezing, d);
        let mut cg = fake_cgroup(&d.join("cg-b"), "FROZEN\n");
        cg.paused_before = true;
        owners.frozen_cgroup = Some(cg);
        store.write(&owners).unwrap();
        // Never started.
        store.write(&record("c", State::Queued, d)).unwrap();
        // Finished: untouched.
        let mut done = record("d", State::Done, d);
        done.finished = Some(now_rfc3339());
        store.write(&done).unwrap();
        // A write a crash interrupted, and a file that is not a record.
        std::fs::write(d.join("state/tasks/.e.json.tmp"), "{").unwrap();
        std::fs::write(d.join("state/tasks/f.json"), "not json").unwrap();

        let m = Manager::new(
            store,
            Limits {
                max_concurrent: 1,
                queue_size: 1,
                lock_dir: None,
                retain: Retention {
                    age: Duration::from_secs(3600),
                    count: 100,
                },
            },
        );
        assert_eq!(m.recover().unwrap(), 3);
        let read = |cg: &str| std::fs::read_to_string(d.join(cg).join("freezer.state")).unwrap();
        assert_eq!(read("cg-a"), "THAWED");
        assert_eq!(read("cg-b"), "FROZEN\n");
        assert!(!temp.exists() && !d.join(".a.tar.sha256.4242.tmp").exists());
        assert!(!d.join("lock-a").exists());
        assert!(!d.join("state/tasks/.e.json.tmp").exists());
        for id in ["a", "b", "c"] {
            let t = m.get(id).unwrap();
            assert_eq!(t.state, State::Failed, "{id}");
            assert_eq!(t.error.as_ref().unwrap().code, Code::Interrupted, "{id}");
            assert!(t.temp.is_none() && t.frozen_cgroup.is_none() && t.finished.is_some());
        }
        assert_eq!(m.get("d").unwrap().state, State::Done);
        assert!(m.get("f").is_none());
        // What was recovered is on disk too.
        let (again, _) = Store::open(&d.join("state")).unwrap().load().unwrap();
        assert!(again.iter().all(|t| t.state.is_final()), "{again:?}");
        assert!(m.idle());
    }

    #[test]
    fn pruning_removes_old_and_surplus_finished_records_but_never_running_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let store = Store::open(&d.join("state")).unwrap();
        let hour = Duration::from_secs(3600);
        let now = SystemTime::now();
        // Finished 5, 4, 3, 2 and 1 hours ago; one running, started long ago.
        for (i, id) in ["e5", "d4", "c3", "b2", "a1"].iter().enumerate() {
            let mut t = record(id, State::Done, d);
            let at = now - hour * (5 - i as u32);
            t.finished = Some(humantime::format_rfc3339_millis(at).to_string());
            store.write(&t).unwrap();
        }
        store.write(&record("r0", State::Queued, d)).unwrap();
        let m = Manager::new(
            store,
            Limits {
                max_concurrent: 1,
                queue_size: 1,
                lock_dir: None,
                retain: Retention {
                    age: hour * 4 + Duration::from_secs(60),
                    count: 3,
                },
            },
        );
        // The running one is marked interrupted, so finishes now.
        assert_eq!(m.recover().unwrap(), 1);
        // e5 is too old; of the rest only the newest 3 (r0, a1, b2) stay.
        assert_eq!(m.prune(now), 3);
        let ids = |m: &Manager| -> Vec<String> {
            m.list(None, None, None).into_iter().map(|t| t.id).collect()
        };
        let mut kept = ids(&m);
        kept.sort();
        assert_eq!(kept, ["a1", "b2", "r0"]);
        let mut on_disk: Vec<String> = std::fs::read_dir(d.join("state/tasks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, ["a1.json", "b2.json", "r0.json"]);
        // Nothing left to prune; later, everything is.
        assert_eq!(m.prune(now), 0);
        assert_eq!(m.prune(now + hour * 24), 3);
        assert!(ids(&m).is_empty());
    }

    #[test]
    fn ids_are_hex_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
