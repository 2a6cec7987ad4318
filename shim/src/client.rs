//! The service's client: HTTP/1.1 with hyper over the Unix socket, one request
//! per connection, the bodies typed as [`crate::api`] defines them, and the
//! events stream read line by line as it comes.

use std::io;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::api::{CommitRequest, ErrorBody, Event, EventKind, Task};

/// Why a call did not get the answer it expected.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {} (is `freezeframe serve` running?): {source}", socket.display())]
    Connect { socket: PathBuf, source: io::Error },

    #[error("sending {method} {path} to {}: {source}", socket.display())]
    Send {
        method: Method,
        path: String,
        socket: PathBuf,
        source: hyper::Error,
    },

    #[error("reading the answer: {0}")]
    Read(#[source] hyper::Error),

    /// The service refused or failed the request, with its error body.
    #[error("{}", describe(*status, body))]
    Api { status: u16, body: ErrorBody },

    /// An error answer without the API's error body.
    #[error("HTTP {status}: {body}")]
    Unexpected {
        status: u16,
        body: serde_json::Value,
    },

    #[error("a malformed answer: {0}")]
    Answer(#[source] serde_json::Error),

    #[error("a malformed event: {line}: {source}")]
    Event {
        line: String,
        source: serde_json::Error,
    },

    #[error("the events stream of task {id} ended before the task did")]
    EndedEarly { id: String },
}

/// `message (code, field f, HTTP status)`, the field left out when the
/// message starts with it.
fn describe(status: u16, b: &ErrorBody) -> String {
    match &b.field {
        Some(f) if !b.message.starts_with(f.as_str()) => {
            format!("{} ({}, field {f}, HTTP {status})", b.message, b.code)
        }
        _ => format!("{} ({}, HTTP {status})", b.message, b.code),
    }
}

type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A client of the service at one socket.
pub struct Client {
    socket: PathBuf,
    /// Named in every call (`?owner=`, or a request's `owner`), as
    /// `server.require_owner` asks.
    owner: Option<String>,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            owner: None,
        }
    }

    /// A client that names `owner` in every call: only that owner's tasks are
    /// seen, and a request that names no owner gets this one.
    pub fn with_owner(mut self, owner: Option<String>) -> Client {
        self.owner = owner;
        self
    }

    /// `path` with the owner's query, if the client has one.
    fn scoped(&self, path: String) -> String {
        match &self.owner {
            None => path,
            Some(o) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{path}{sep}owner={}", percent_encode(o))
            }
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `POST /v1/commits`: the admitted task.
    pub async fn submit(&self, request: &CommitRequest) -> Result<Task> {
        match (&request.owner, &self.owner) {
            (None, Some(owner)) => {
                let request = CommitRequest {
                    owner: Some(owner.clone()),
                    ..request.clone()
                };
                self.call(Method::POST, "/v1/commits", Some(&request)).await
            }
            _ => self.call(Method::POST, "/v1/commits", Some(request)).await,
        }
    }

    /// `GET /v1/commits`: the tasks, oldest first, optionally of one session
    /// and in one state. The state goes as given: the service checks it.
    pub async fn list(&self, session: Option<&str>, state: Option<&str>) -> Result<Vec<Task>> {
        let query: Vec<String> = [("session", session), ("state", state)]
            .into_iter()
            .filter_map(|(k, v)| Some(format!("{k}={}", percent_encode(v?))))
            .collect();
        let path = if query.is_empty() {
            "/v1/commits".to_string()
        } else {
            format!("/v1/commits?{}", query.join("&"))
        };
        self.call::<(), _>(Method::GET, &self.scoped(path), None)
            .await
    }

    /// `GET /v1/commits/{id}`.
    pub async fn get(&self, id: &str) -> Result<Task> {
        self.call::<(), _>(Method::GET, &self.scoped(task_path(id)), None)
            .await
    }

    /// `DELETE /v1/commits/{id}`: the task once it has stopped (or after the
    /// service's wait).
    pub async fn cancel(&self, id: &str) -> Result<Task> {
        self.call::<(), _>(Method::DELETE, &self.scoped(task_path(id)), None)
            .await
    }

    /// `GET /v1/commits/{id}/events`: the stream, read with [`Events::next`].
    pub async fn events(&self, id: &str) -> Result<Events> {
        let path = self.scoped(format!("{}/events", task_path(id)));
        let answer = self.send::<()>(Method::GET, &path, None).await?;
        if answer.status().as_u16() >= 400 {
            return Err(error_answer(answer).await);
        }
        Ok(Events {
            id: id.to_string(),
            body: answer.into_body(),
            pending: Vec::new(),
            ended: false,
        })
    }

    /// One request; a success's body decoded as `T`, an error answer as an
    /// error.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let answer = self.send(method, path, body).await?;
        if answer.status().as_u16() >= 400 {
            return Err(error_answer(answer).await);
        }
        let bytes = read_all(answer).await?;
        serde_json::from_slice(&bytes).map_err(ClientError::Answer)
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Response<Incoming>> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let failed = |source| ClientError::Send {
            method: method.clone(),
            path: path.to_string(),
            socket: self.socket.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(failed)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "the connection to the service failed");
            }
        });
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, "localhost")
            .header(ACCEPT, "application/json");
        let body = match body {
            Some(b) => {
                request = request.header(CONTENT_TYPE, "application/json");
                // Our own types: they always serialize.
                Bytes::from(serde_json::to_vec(b).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .expect("a method, a path and static headers make a request");
        sender.send_request(request).await.map_err(failed)
    }
}

/// The events of one task, as they come.
pub struct Events {
    id: String,
    body: Incoming,
    pending: Vec<u8>,
    ended: bool,
}

impl Events {
    /// The next event; `None` after the `end` event. A stream that stops before
    /// it is an error.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                let event: Event =
                    serde_json::from_slice(&line).map_err(|source| ClientError::Event {
                        line: String::from_utf8_lossy(&line).trim_end().to_string(),
                        source,
                    })?;
                self.ended = event.event == EventKind::End;
                return Ok(Some(event));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.map_err(ClientError::Read)?.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
                None => {
                    return Err(ClientError::EndedEarly {
                        id: self.id.clone(),
                    })
                }
            }
        }
    }
}

async fn read_all(answer: Response<Incoming>) -> Result<Bytes> {
    Ok(answer
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Read)?
        .to_bytes())
}

/// An error answer: the API's error body, or whatever came.
async fn error_answer(answer: Response<Incoming>) -> ClientError {
    let status = answer.status().as_u16();
    let bytes = match read_all(answer).await {
        Ok(b) => b,
        Err(e) => return e,
    };
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => ClientError::Api { status, body },
        Err(_) => ClientError::Unexpected {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
            }),
        },
    }
}

fn task_path(id: &str) -> String {
    format!("/v1/commits/{}", percent_encode(id))
}

/// Percent-encodes everything but unreserved characters, for a path segment or
/// a query value.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Code;

    #[test]
    fn errors_say_message_code_field_and_status() {
        let body = |field: Option<&str>, message: &str| ErrorBody {
            code: Code::InvalidField,
            message: message.into(),
            field: field.map(str::to_string),
        };
        assert_eq!(
            describe(400, &body(Some("tag"), "is empty")),
            "is empty (invalid_field, field tag, HTTP 400)"
        );
        assert_eq!(
            describe(400, &body(Some("tag"), "tag: bad")),
            "tag: bad (invalid_field, HTTP 400)"
        );
        assert_eq!(
            describe(409, &body(None, "task x is already done")),
            "task x is already done (invalid_field, HTTP 409)"
        );
    }

    #[test]
    fn ids_are_percent_encoded() {
        assert_eq!(task_path("a b/c"), "/v1/commits/a%20b%2Fc");
    }
}

/// The client against a small server on a socket of its own: what it reads of
/// answers, error bodies and the events stream.
#[cfg(test)]
mod wire_tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;

    use super::*;
    use crate::api::State;

    fn event(kind: &str, state: &str, task: Option<&str>) -> String {
        let task = task.map_or(String::new(), |t| format!(",\"task\":{t}"));
        format!(
            "{{\"event\":\"{kind}\",\"id\":\"t1\",\"state\":\"{state}\",\"progress\":\
             {{\"files\":1,\"bytes_read\":2,\"bytes_written\":3}},\"frozen_ms\":null,\
             \"time\":\"now\"{task}}}\n"
        )
    }

    fn task(state: &str) -> String {
        format!(
            "{{\"id\":\"t1\",\"session\":\"s\",\"state\":\"{state}\",\"output\":\"/o.tar\",\
             \"request\":{{\"pause\":\"auto\",\"compression\":\"gzip\",\"tag\":null}},\
             \"created\":\"c\",\"started\":null,\"finished\":null,\"phases_ms\":{{}},\
             \"progress\":{{\"files\":0,\"bytes_read\":0,\"bytes_written\":0}},\
             \"frozen_ms\":null,\"result\":null,\"error\":null,\"temp\":null,\
             \"frozen_cgroup\":null,\"lock_file\":null}}"
        )
    }

    /// Serves `router` on a socket in a temporary directory, runs `f` with a
    /// client of it.
    fn with_server<F: std::future::Future<Output = ()>>(
        router: Router,
        f: impl FnOnce(Client) -> F,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
            f(Client::new(&socket)).await;
        });
    }

    #[test]
    fn events_are_read_line_by_line_however_they_are_cut() {
        let whole = format!(
            "{}{}{}",
            event("state", "snapshotting", None),
            event("progress", "snapshotting", None),
            event("end", "done", Some(&task("done")))
        );
        // Cut in the middle of lines, as chunks may come.
        let cuts: Vec<Result<Vec<u8>, Infallible>> = whole
            .as_bytes()
            .chunks(37)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let router = Router::new().route(
            "/v1/commits/{id}/events",
            get(move || async move { Body::from_stream(futures_util::stream::iter(cuts)) }),
        );
        with_server(router, |client| async move {
            let mut events = client.events("t1").await.unwrap();
            let mut kinds = Vec::new();
            while let Some(e) = events.next().await.unwrap() {
                kinds.push(e.event);
                if e.event == EventKind::End {
                    assert_eq!(e.task.unwrap().state, State::Done);
                }
            }
            assert_eq!(
                kinds,
                [EventKind::State, EventKind::Progress, EventKind::End]
            );
        });
    }

    #[test]
    fn a_stream_that_stops_before_the_end_is_an_error() {
        let router = Router::new().route(
            "/v1/commits/{id}/events",
            get(|| async { event("state", "queued", None) }),
        );
        with_server(router, |client| async move {
            let mut events = client.events("t1").await.unwrap();
            assert!(events.next().await.unwrap().is_some());
            let e = events.next().await.unwrap_err();
            assert_eq!(
                e.to_string(),
                "the events stream of task t1 ended before the task did"
            );
        });
    }

    #[test]
    fn answers_are_typed_and_error_answers_say_code_and_status() {
        let router = Router::new()
            .route("/v1/commits/{id}", get(|| async { task("queued") }))
            .route(
                "/v1/commits",
                get(|| async {
                    (
                        StatusCode::CONFLICT,
                        r#"{"code":"conflict","message":"task t1 is already done","field":null}"#,
                    )
                }),
            )
            .fallback(|| async { (StatusCode::BAD_GATEWAY, "not json") });
        with_server(router, |client| async move {
            assert_eq!(client.get("t1").await.unwrap().state, State::Queued);
            match client.list(None, None).await.unwrap_err() {
                e @ ClientError::Api { .. } => {
                    assert_eq!(
                        e.to_string(),
                        "task t1 is already done (conflict, HTTP 409)"
                    )
                }
                e => panic!("{e}"),
            }
            let e = client.cancel("t1").await.unwrap_err();
            assert_eq!(e.to_string(), "HTTP 405: \"\"");
            let Err(e) = client.events("x").await else {
                panic!("an error answer read as a stream")
            };
            assert_eq!(e.to_string(), "HTTP 502: \"not json\"");
        });
    }

    #[test]
    fn a_missing_service_is_named() {
        let client = Client::new("/nonexistent/api.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt.block_on(client.get("t1")).unwrap_err();
        assert!(
            crate::error_chain(&e).starts_with(
                "cannot connect to /nonexistent/api.sock (is `freezeframe serve` running?): "
            ),
            "{e}"
        );
    }
}
