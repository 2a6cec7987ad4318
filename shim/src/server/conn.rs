//! The accept loop and each connection's life.
//!
//! - A peer is checked when its connection is accepted, before a byte of it is
//!   read: a peer not on the allow-list gets a `403` written at once and the
//!   connection is closed. Its request, sent or not, is never read.
//! - At most `max_connections` connections from peers other than root are open
//!   at once; one more is closed at accept. Root's are not counted: root's
//!   `/v1/health` answers however many other peers hang around.
//! - The whole request head must arrive within `header_timeout`.
//! - A connection on which no bytes moved, either way, for `idle_timeout` is
//!   closed, unless the server is working on its request (waiting for a
//!   cancelled commit to stop, say). A peer that sends its body, or reads its
//!   answer, too slowly is in that case.
//!
//! Refusals are logged at most once every [`LOG_EVERY`], with how many there
//! were since the last line.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tower_service::Service as _;

use super::error::ApiError;
use super::peer::{Allow, Peer, PeerAddr};

/// The most often a kind of refusal is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a refused peer's connection stays open after its `403` is
/// written, so that a peer still sending its request is not cut off before it
/// reads the answer. Nothing is read meanwhile.
const REFUSED_LINGER: Duration = Duration::from_millis(500);
/// Refused connections lingering at once; beyond it they are closed at once.
const REFUSED_LINGERING: usize = 64;

/// The limits of connections.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Who is let in, and how many are in.
pub struct Gate {
    allow: Allow,
    limits: Limits,
    /// Open connections of peers other than root.
    open: AtomicUsize,
    lingering: AtomicUsize,
    refused: RateLog,
    full: RateLog,
    accept_failed: RateLog,
}

impl Gate {
    pub fn new(allow: Allow, limits: Limits) -> Gate {
        Gate {
            allow,
            limits,
            open: AtomicUsize::new(0),
            lingering: AtomicUsize::new(0),
            refused: RateLog::default(),
            full: RateLog::default(),
            accept_failed: RateLog::default(),
        }
    }
}

/// A warning logged at most once every [`LOG_EVERY`], with the number of
/// occurrences it stands for.
#[derive(Default)]
struct RateLog {
    last: Mutex<Option<Instant>>,
    since: AtomicU64,
}

impl RateLog {
    /// Counts one; `Some(count)` when a line is due.
    fn due(&self) -> Option<u64> {
        let n = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return None;
        }
        *last = Some(Instant::now());
        self.since.fetch_sub(n, Ordering::Relaxed);
        Some(n)
    }
}

/// The credentials of the peer of `stream`, from `SO_PEERCRED`.
fn peer_of(stream: &UnixStream) -> Option<Peer> {
    match stream.peer_cred() {
        Ok(c) => Some(Peer {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the peer's credentials");
            None
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting, asks every connection to finish its request in flight and close,
/// and returns once all have.
pub async fn serve(
    listener: UnixListener,
    router: Router,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopping) = watch::channel(false);
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of fds, say: wait a little rather than spin.
                    if let Some(n) = gate.accept_failed.due() {
                        tracing::warn!(error = %e, times = n, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let peer = peer_of(&stream);
        let Some(p) = peer.filter(|p| gate.allow.permits(p)) else {
            refuse(&gate, stream, peer);
            continue;
        };
        let counted = if p.uid == 0 {
            None
        } else {
            match Slot::take(&gate) {
                Some(slot) => Some(slot),
                None => {
                    if let Some(n) = gate.full.due() {
                        tracing::warn!(
                            uid = p.uid,
                            max_connections = gate.limits.max_connections,
                            times = n,
                            "too many connections: closed a new one at accept"
                        );
                    }
                    continue;
                }
            }
        };
        let router = router.clone();
        let limits = gate.limits.clone();
        let stopping = stopping.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            connection(stream, p, router, &limits, stopping).await;
            drop(counted);
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(alive);
    let _ = all_closed.recv().await;
}

/// A counted connection; the count goes down when it is dropped.
struct Slot(Arc<Gate>);

impl Slot {
    fn take(gate: &Arc<Gate>) -> Option<Slot> {
        let max = gate.limits.max_connections;
        gate.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(gate)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Writes a `403` to a peer that may not call, without reading anything from
/// it, and closes the connection.
fn refuse(gate: &Arc<Gate>, stream: UnixStream, peer: Option<Peer>) {
    let message = match peer {
        Some(p) => format!("uid {} (gid {}) may not use this API", p.uid, p.gid),
        None => "the peer's credentials are unknown".to_string(),
    };
    if let Some(n) = gate.refused.due() {
        tracing::warn!(
            uid = peer.map(|p| p.uid),
            gid = peer.map(|p| p.gid),
            pid = peer.and_then(|p| p.pid),
            times = n,
            "refused a peer at accept"
        );
    }
    let body = serde_json::to_vec(&ApiError::Forbidden(message).body()).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    // A fresh socket's buffer takes the whole answer.
    let _ = stream.try_write(&answer);
    let lingering = gate.lingering.fetch_add(1, Ordering::SeqCst);
    if lingering >= REFUSED_LINGERING {
        gate.lingering.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let gate = Arc::clone(gate);
    tokio::spawn(async move {
        let stream = stream.into_std();
        if let Ok(s) = &stream {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        tokio::time::sleep(REFUSED_LINGER).await;
        drop(stream);
        gate.lingering.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Serves one connection of an allowed peer.
async fn connection(
    stream: UnixStream,
    peer: Peer,
    router: Router,
    limits: &Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = hyper::service::service_fn({
        let activity = Arc::clone(&activity);
        move |req: Request<Incoming>| {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(PeerAddr(Some(peer))));
            let working = Arc::new(AtomicBool::new(false));
            let body = Tracked {
                inner: body,
                activity: Arc::clone(&activity),
                working: Arc::clone(&working),
            };
            if hyper::body::Body::is_end_stream(&body.inner) {
                body.received();
            }
            let req = Request::from_parts(parts, Body::new(body));
            // A router is always ready: no `poll_ready` to wait for.
            let answering = router.clone().call(req);
            let activity = Arc::clone(&activity);
            async move {
                let answer: Result<Response<Body>, _> = answering.await;
                if working.swap(false, Ordering::SeqCst) {
                    activity.working.fetch_sub(1, Ordering::SeqCst);
                }
                activity.touch();
                answer
            }
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let mut check =
        tokio::time::interval((idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutting_down = *stopping.borrow();
    if shutting_down {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(uid = peer.uid, error = %e, "connection ended");
                }
                return;
            }
            changed = stopping.changed(), if !shutting_down => {
                if changed.is_err() || *stopping.borrow() {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = check.tick() => {
                if activity.working.load(Ordering::SeqCst) == 0 && activity.quiet_for() >= idle {
                    tracing::debug!(uid = peer.uid, pid = peer.pid, "closed an idle connection");
                    return;
                }
            }
        }
    }
}

/// When bytes last moved on a connection, and how many of its requests the
/// server is working on (received whole, not yet answered).
struct Activity {
    start: Instant,
    /// Milliseconds from `start`.
    last: AtomicU64,
    working: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            working: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// The socket, noting each read and write that moved bytes.
struct Watched {
    inner: UnixStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that marks its request as the server's work once it has
/// been received whole: from then on, waiting is not the peer's fault.
struct Tracked {
    inner: Incoming,
    activity: Arc<Activity>,
    working: Arc<AtomicBool>,
}

impl Tracked {
    fn received(&self) {
        if !self.working.swap(true, Ordering::SeqCst) {
            self.activity.working.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl hyper::body::Body for Tracked {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.received();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_logged_once_for_many_with_their_count() {
        let log = RateLog::default();
        assert_eq!(log.due(), Some(1));
        for _ in 0..99 {
            assert_eq!(log.due(), None);
        }
        // Once the interval has passed, the next line counts those in between.
        *log.last.lock().unwrap() = Some(Instant::now() - LOG_EVERY);
        assert_eq!(log.due(), Some(100));
        assert_eq!(log.due(), None);
    }

    #[test]
    fn connections_beyond_the_limit_get_no_slot_until_one_is_freed() {
        let gate = Arc::new(Gate::new(
            Allow {
                uids: vec![0],
                gids: Vec::new(),
            },
            Limits {
                header_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(1),
                max_connections: 2,
            },
        ));
        let a = Slot::take(&gate).unwrap();
        let _b = Slot::take(&gate).unwrap();
        assert!(Slot::take(&gate).is_none());
        drop(a);
        assert!(Slot::take(&gate).is_some());
    }
}
