//! API v1: routes, request parsing, admission (the node's checks on a request)
//! and the answers. The bodies are the [`crate::api`] types; what a request
//! commits is the [`CommitPlan`]'s to decide.
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /v1/commits` | 202 and the task |
//! | `GET /v1/commits?session=ID&state=S` | the tasks, oldest first |
//! | `GET /v1/commits/{id}` | the task |
//! | `DELETE /v1/commits/{id}` | cancels; the task once it has stopped |
//! | `GET /v1/commits/{id}/events` | newline-delimited JSON events until the task ends |
//! | `GET /v1/health`, `GET /v1/version` | |
//!
//! Every call on tasks takes `?owner=NAME`: only that owner's tasks are seen,
//! and another's answer 404 as if they did not exist. With
//! `server.require_owner`, every call on tasks must name its owner (a commit
//! in its body).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use freezeframe_config::{Config, Registry as RegistryConfig};
use freezeframe_runtime::Session;
use freezeframe_snapshot::registry::{self, ClientOptions, Credentials, PushOptions, Reference};
use freezeframe_snapshot::source::base::BaseRef;
use freezeframe_snapshot::source::SourceError;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::output;
use super::peer::{Allow, PeerAddr};
use super::tasks::{now_rfc3339, Admission, Manager, PushPlan};
use crate::api::{
    CommitRequest, Event, EventKind, Health, ListQuery, PushRequest, State as TaskState, Summary,
    Task, Version,
};
use crate::live::{self, Target};
use crate::plan::{engine_algorithm, CommitOverrides, CommitPlan, Source};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long `DELETE` waits for a running commit to stop before it answers.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// How often the events stream reports progress.
const EVENT_INTERVAL: Duration = Duration::from_millis(250);

pub struct App {
    pub manager: Arc<Manager>,
    pub config: Config,
    pub allow: Allow,
    /// Compression threads of each commit: the cores shared among
    /// `max_concurrent` commits.
    pub threads: usize,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/commits", post(create).get(list))
        .route("/v1/commits/{id}", get(show).delete(cancel))
        .route("/v1/commits/{id}/events", get(events))
        .route("/v1/health", get(health))
        .route("/v1/version", get(version))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), authorize))
        .with_state(app)
}

/// Refuses peers that are not on the allow-list.
async fn authorize(
    State(app): State<Arc<App>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    req: Request,
    next: Next,
) -> Response {
    match peer {
        Some(p) if app.allow.permits(&p) => next.run(req).await,
        Some(p) => {
            tracing::warn!(uid = p.uid, gid = p.gid, pid = p.pid, "refused a peer");
            ApiError::Forbidden(format!(
                "uid {} (gid {}) may not use this API",
                p.uid, p.gid
            ))
            .into_response()
        }
        None => ApiError::Forbidden("the peer's credentials are unknown".into()).into_response(),
    }
}

/// The query of the calls on one task.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskQuery {
    owner: Option<String>,
}

/// A query's parameters, or a refusal naming the unknown or malformed one.
fn query<T>(query: Result<Query<T>, QueryRejection>, known: &str) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|r| {
        let text = r.body_text();
        match text.split('`').nth(1) {
            Some(name) if text.contains("unknown field") => ApiError::UnknownField {
                field: name.to_string(),
                message: format!("unknown query parameter {name:?} (known: {known})"),
            },
            _ if text.contains("variant") => ApiError::invalid("state", text),
            _ => ApiError::BadRequest(text),
        }
    })
}

impl App {
    /// The owner a call is scoped to: the one it names; with
    /// `server.require_owner`, naming none is refused.
    fn scope(&self, owner: Option<String>) -> Result<Option<String>, ApiError> {
        match owner {
            Some(o) if o.is_empty() => Err(ApiError::invalid("owner", "must not be empty")),
            None if self.config.server.require_owner => Err(ApiError::invalid(
                "owner",
                "required: the server is configured with require_owner",
            )),
            owner => Ok(owner),
        }
    }

    /// The task, if it exists and the scope may see it.
    fn visible(&self, id: &str, owner: Option<&str>) -> Result<Task, ApiError> {
        self.manager
            .get(id)
            .filter(|t| owner.is_none_or(|o| t.owner.as_deref() == Some(o)))
            .ok_or_else(|| no_task(id))
    }
}

async fn create(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CommitRequest = parse_json(&body_bytes(body)?)?;
    let task = blocking(move || app.admit(body)).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/commits/{}", task.id))],
        Json(task),
    )
        .into_response())
}

async fn list(
    State(app): State<Arc<App>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<Task>>, ApiError> {
    let q = query(q, "session, state, owner")?;
    let owner = app.scope(q.owner)?;
    Ok(Json(app.manager.list(
        q.session.as_deref(),
        q.state,
        owner.as_deref(),
    )))
}

async fn show(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    q: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<Json<Task>, ApiError> {
    let owner = app.scope(query(q, "owner")?.owner)?;
    app.visible(&id, owner.as_deref()).map(Json)
}

async fn cancel(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    q: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let owner = app.scope(query(q, "owner")?.owner)?;
    app.visible(&id, owner.as_deref())?;
    app.manager.cancel(&id)?;
    app.manager.wait_final(&id, CANCEL_WAIT).await;
    let task = app.manager.get(&id).ok_or_else(|| no_task(&id))?;
    // 202 if it has not stopped yet.
    let status = if task.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(task)).into_response())
}

async fn events(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    q: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let owner = app.scope(query(q, "owner")?.owner)?;
    app.visible(&id, owner.as_deref())?;
    let changes = app.manager.watch(&id).ok_or_else(|| no_task(&id))?;
    struct Stream {
        app: Arc<App>,
        id: String,
        changes: tokio::sync::watch::Receiver<TaskState>,
        tick: tokio::time::Interval,
        last: Option<TaskState>,
        progress_due: bool,
        done: bool,
    }
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + EVENT_INTERVAL, EVENT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Stream {
        app,
        id,
        changes,
        tick,
        last: None,
        progress_due: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let task = s.app.manager.get(&s.id)?;
            let kind = if task.state.is_final() {
                s.done = true;
                EventKind::End
            } else if s.last != Some(task.state) {
                EventKind::State
            } else if s.progress_due {
                EventKind::Progress
            } else {
                tokio::select! {
                    changed = s.changes.changed() => {
                        if changed.is_err() {
                            s.tick.tick().await;
                        }
                    }
                    _ = s.tick.tick() => s.progress_due = true,
                }
                continue;
            };
            s.last = Some(task.state);
            s.progress_due = false;
            let event = Event {
                event: kind,
                id: task.id.clone(),
                state: task.state,
                progress: task.progress,
                frozen_ms: task.frozen_ms,
                time: now_rfc3339(),
                task: None,
            };
            let event = Event {
                task: (kind == EventKind::End).then_some(task),
                ..event
            };
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            return Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), s));
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn health(State(app): State<Arc<App>>) -> Json<Health> {
    let (running, queued) = app.manager.counts();
    Json(Health {
        status: "ok".into(),
        running,
        queued,
    })
}

async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").into(),
        api: "v1".into(),
    })
}

fn no_task(id: &str) -> ApiError {
    ApiError::NotFound(format!("no task {id:?}"))
}

/// The body, or why it could not be read: past [`BODY_LIMIT`] it is refused.
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| match r {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::BodyTooLarge { limit: BODY_LIMIT }
        }
        other => ApiError::BadRequest(format!(
            "cannot read the request body: {}",
            other.body_text()
        )),
    })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty; a JSON object is expected".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Runs blocking work (session lookup, file system checks) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("a request handler failed: {e}")))?
}

impl App {
    /// Checks a commit request against the node (the session, its owner, the
    /// output) and hands its plan to the task manager. Blocking.
    fn admit(&self, b: CommitRequest) -> Result<Task, ApiError> {
        let cfg = &self.config;
        // Checked first: nothing about the session is looked at for a push
        // that cannot go.
        let push = b
            .push
            .as_ref()
            .map(|p| check_push(&cfg.registry, p))
            .transpose()?;
        // With require_owner, a request must name an owner (checked against
        // owner_label below).
        let owner = self.scope(b.owner.clone())?;
        let runtime_root = b
            .runtime_root
            .as_deref()
            .map(|r| self.check_root(r))
            .transpose()?;
        let base = b.base.as_deref().map(|r| self.check_base(r)).transpose()?;
        let plan = CommitPlan::resolve(
            cfg,
            CommitOverrides {
                runtime_root,
                base,
                include_mounts: b.include_mounts.clone(),
                include_secrets: b.include_secrets,
                pause: b.pause,
                compression: b.compression.map(engine_algorithm),
                threads: Some(self.threads),
                changes: b.changes,
                message: b.message,
                author: b.author,
                tag: b.tag.clone(),
                created_by: Some("freezeframe serve".into()),
                // Decided below, once the session is known.
                ..CommitOverrides::new(
                    Source::Session(Target::Id(b.session.clone())),
                    PathBuf::new(),
                )
            },
        )?;
        let CommitPlan::Session(mut request) = plan else {
            unreachable!("a session was asked for");
        };

        let session = live::find(
            &request.target,
            &request.roots,
            &request.stores,
            &request.home_path,
        )?;
        self.check_owner(&session, b.owner.as_deref())?;
        for (i, m) in b.include_mounts.iter().enumerate() {
            if !session.mounts.iter().any(|x| &x.target == m) {
                return Err(ApiError::invalid(
                    format!("include_mounts[{i}]"),
                    format!("session {} has no mount at {}", session.id, m.display()),
                ));
            }
        }
        let summary = Summary {
            pause: request.pause.as_str().into(),
            compression: request.compression.algorithm.to_string(),
            tag: b.tag.clone(),
            push: push.as_ref().map(|p| p.reference.to_string()),
        };

        let save = &cfg.storage.save_location;
        let rel = match &b.output {
            Some(o) => o.clone(),
            None => output::default_name(SystemTime::now(), &b.session, b.tag.as_deref()),
        };
        let out = output::resolve(save, &rel)?;
        request.output = out.path;
        request.output_dir = Some(out.dir);
        Ok(self.manager.submit(Admission {
            session: session.id,
            // Kept only once checked against the label.
            owner: owner.filter(|_| cfg.server.owner_label.is_some()),
            request,
            summary,
            push,
        })?)
    }
}

/// A push's reference, mount source, transport and credentials, as the
/// options of the push. Plain HTTP only to a registry that the config lists in
/// `registry.insecure`.
fn check_push(cfg: &RegistryConfig, p: &PushRequest) -> Result<PushPlan, ApiError> {
    {
        let reference: Reference = p
            .reference
            .parse()
            .map_err(|e: registry::Error| ApiError::invalid("push.ref", e.to_string()))?;
        if let Some(from) = &p.from {
            if !registry::reference::valid_repository(from) {
                return Err(ApiError::invalid(
                    "push.from",
                    format!(
                        "{from:?} is not a repository name (lower-case [a-z0-9] components \
                         separated by . _ - and /)"
                    ),
                ));
            }
        }
        if p.insecure && !cfg.insecure.contains(&reference.registry) {
            return Err(ApiError::invalid(
                "push.insecure",
                format!(
                    "plain HTTP to {} is not allowed: the service's config does not list it \
                     in registry.insecure",
                    reference.registry
                ),
            ));
        }
        let credentials = match &p.credentials {
            Some(c) if c.username.is_empty() => {
                return Err(ApiError::invalid(
                    "push.credentials.username",
                    "must not be empty",
                ))
            }
            Some(c) => Some(Credentials::new(&c.username, &c.password)),
            None => None,
        };
        Ok(PushPlan {
            reference,
            options: PushOptions {
                client: ClientOptions {
                    insecure: p.insecure,
                    cert_dirs: cfg.cert_dirs.clone(),
                    credentials,
                    auth_files: cfg.auth_file.iter().cloned().collect(),
                    ..ClientOptions::default()
                },
                from: p.from.clone(),
                ..PushOptions::default()
            },
        })
    }
}

impl App {
    /// A runtime root must be one of the configured roots or below one.
    fn check_root(&self, root: &Path) -> Result<PathBuf, ApiError> {
        let bad = |m: &str| ApiError::invalid("runtime_root", m);
        if !root.is_absolute() {
            return Err(bad("must be absolute"));
        }
        if root
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(bad("may not hold '..'"));
        }
        let known = &self.config.runtime.roots;
        if !known.iter().any(|k| root.starts_with(k)) {
            return Err(bad(&format!(
                "{} is not one of the configured runtime roots ({}) or below one",
                root.display(),
                known
                    .iter()
                    .map(|k| k.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(root.to_path_buf())
    }

    /// A base a caller names: any image of the node's stores, or an OCI
    /// layout or archive beneath the save location (the service reads as
    /// root; a caller may not have it read elsewhere).
    fn check_base(&self, reference: &str) -> Result<BaseRef, ApiError> {
        let r: BaseRef = reference
            .parse()
            .map_err(|e: SourceError| ApiError::invalid("base", e.to_string()))?;
        if let BaseRef::Oci(image) = &r {
            let save = &self.config.storage.save_location;
            let path = image.path();
            let inside = path.is_absolute()
                && !path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
                && path.starts_with(save);
            if !inside {
                return Err(ApiError::invalid(
                    "base",
                    format!(
                        "{} is not beneath the save location {}",
                        path.display(),
                        save.display()
                    ),
                ));
            }
        }
        Ok(r)
    }

    /// With `server.owner_label` set, a request that names an owner must name
    /// the one the container's label or annotation names. A request that names
    /// none is not checked.
    fn check_owner(&self, session: &Session, owner: Option<&str>) -> Result<(), ApiError> {
        let (Some(key), Some(owner)) = (&self.config.server.owner_label, owner) else {
            return Ok(());
        };
        match session.annotations.get(key) {
            Some(v) if v == owner => Ok(()),
            Some(_) => Err(ApiError::Forbidden(format!(
                "owner {owner:?} does not match the {key} of session {}",
                session.id
            ))),
            None => Err(ApiError::Forbidden(format!(
                "session {} has no {key} label or annotation, so its owner cannot be checked",
                session.id
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Code;
    use freezeframe_config::PauseMode;

    #[test]
    fn bodies_are_refused_with_a_code_and_the_field_serde_names() {
        #[rustfmt::skip]
        let cases: &[(&str, Code, Option<&str>)] = &[
            (r#"{"session":"s","bogus":1}"#, Code::UnknownField, Some("bogus")),
            (r#"{"session":"s","pause":3}"#, Code::InvalidField, Some("pause")),
            (r#"{"session":"s","pause":"sometimes"}"#, Code::InvalidField, Some("pause")),
            (r#"{"session":"s","tag":["x"]}"#, Code::InvalidField, Some("tag")),
            (r#"{"session":"s","changes":["ENV A=1",2]}"#, Code::InvalidField, Some("changes[1]")),
            (r#"{"session":"s","include_mounts":"/x"}"#, Code::InvalidField, Some("include_mounts")),
            (r#"{"session":"s","session":"t"}"#, Code::InvalidField, Some("session")),
            (r#"{"tag":"x"}"#, Code::InvalidField, Some("session")),
            (r#"{"session":"s","pause":tru}"#, Code::InvalidField, Some("pause")),
            (r#"{"session":"s""#, Code::BadRequest, None),
            (r#"{"session":"s"}}"#, Code::BadRequest, None),
            (r#"[1]"#, Code::BadRequest, None),
            (r#""session""#, Code::BadRequest, None),
            ("", Code::BadRequest, None),
            (" \n", Code::BadRequest, None),
            ("\u{0}", Code::BadRequest, None),
        ];
        for (body, code, field) in cases {
            let e = parse_json::<CommitRequest>(body.as_bytes()).unwrap_err();
            let b = e.body();
            assert_eq!(
                (b.code, b.field.as_deref()),
                (*code, *field),
                "{body:?}: {e}"
            );
            assert!(!b.message.is_empty());
        }
        let ok: CommitRequest =
            parse_json(br#"{"session":"s","pause":"full","compression":"zstd","output":null}"#)
                .unwrap();
        assert_eq!(ok.session, "s");
        assert!(matches!(ok.pause, Some(PauseMode::Full)));
        assert!(ok.output.is_none());
    }

    #[test]
    fn every_code_has_one_status() {
        use ApiError::*;
        let all = [
            (BadRequest(String::new()), 400, "bad_request"),
            (ApiError::invalid("f", "m"), 400, "invalid_field"),
            (
                UnknownField {
                    field: "f".into(),
                    message: "m".into(),
                },
                400,
                "unknown_field",
            ),
            (BodyTooLarge { limit: 1 }, 400, "body_too_large"),
            (Forbidden(String::new()), 403, "forbidden"),
            (NotFound(String::new()), 404, "not_found"),
            (MethodNotAllowed, 405, "method_not_allowed"),
            (SessionNotFound(String::new()), 404, "session_not_found"),
            (
                SessionUnsupported(String::new()),
                422,
                "session_unsupported",
            ),
            (Conflict(String::new()), 409, "conflict"),
            (OutputExists { path: "/x".into() }, 409, "output_exists"),
            (
                QueueFull {
                    running: 1,
                    queued: 1,
                },
                503,
                "queue_full",
            ),
            (ShuttingDown, 503, "shutting_down"),
            (Internal(String::new()), 500, "internal"),
        ];
        let openapi = include_str!("../../../api/openapi.yaml");
        for (e, status, code) in all {
            let (s, c) = e.status_and_code();
            assert_eq!(s.as_u16(), status, "{e:?}");
            assert_eq!(serde_json::to_value(c).unwrap(), code, "{e:?}");
            assert!(
                openapi.contains(&format!("        - {code}\n")),
                "{code} is not in api/openapi.yaml"
            );
        }
        assert_eq!(super::super::error::status(Code::PushFailed).as_u16(), 502);
        for c in [
            Code::Interrupted,
            Code::Cancelled,
            Code::CommitFailed,
            Code::PushFailed,
        ] {
            let code = serde_json::to_value(c).unwrap();
            let code = code.as_str().unwrap();
            assert!(
                openapi.contains(&format!("        - {code}\n")),
                "{code} is not in api/openapi.yaml"
            );
        }
    }

    #[test]
    fn push_requests_are_checked_field_by_field() {
        let cfg = RegistryConfig {
            cert_dirs: vec!["/certs".into()],
            insecure: vec!["localhost:5000".into()],
            auth_file: None,
        };
        let req = |json: &str| -> PushRequest {
            let body: CommitRequest =
                parse_json(format!(r#"{{"session":"s","push":{json}}}"#).as_bytes()).unwrap();
            body.push.unwrap()
        };
        let refused = |json: &str| check_push(&cfg, &req(json)).unwrap_err().body();
        for (json, field) in [
            (r#"{"ref":"Not A Ref"}"#, "push.ref"),
            (
                r#"{"ref":"reg.example:5000/app:1","from":"Bad/Repo"}"#,
                "push.from",
            ),
            (
                r#"{"ref":"reg.example:5000/app","insecure":true}"#,
                "push.insecure",
            ),
            (
                r#"{"ref":"reg.example/app","credentials":{"username":"","password":"p"}}"#,
                "push.credentials.username",
            ),
        ] {
            let b = refused(json);
            assert_eq!(
                (b.code, b.field.as_deref()),
                (Code::InvalidField, Some(field)),
                "{json}"
            );
        }
        let plan = check_push(
            &cfg,
            &req(
                r#"{"ref":"localhost:5000/team/app:v1","from":"base/cuda","insecure":true,
                     "credentials":{"username":"u","password":"s3cret"}}"#,
            ),
        )
        .unwrap();
        assert_eq!(plan.reference.to_string(), "localhost:5000/team/app:v1");
        assert_eq!(plan.options.from.as_deref(), Some("base/cuda"));
        assert!(plan.options.client.insecure);
        assert_eq!(plan.options.client.cert_dirs, cfg.cert_dirs);
        assert!(!format!("{plan:?}").contains("s3cret"));
        // Unknown fields of the push object are refused too; the password is
        // not repeated in the message.
        let e = parse_json::<CommitRequest>(
            br#"{"session":"s","push":{"ref":"r/a","credentials":{"username":"u","password":"s3cret","x":1}}}"#,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let r = req(r#"{"ref":"r.example/a","credentials":{"username":"u","password":"s3cret"}}"#);
        assert!(!format!("{r:?}").contains("s3cret"));
    }
}
