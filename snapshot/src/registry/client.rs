//! A blocking client for one registry's distribution API (v2 / OCI distribution
//! spec 1.1): blob `HEAD`, cross-repository mount, uploads, manifest `PUT`.
//!
//! Authentication is answered when a request meets a 401: the client reads the
//! `WWW-Authenticate` challenge and either sends basic credentials or fetches a
//! bearer token for the scopes it was given ([`Client::set_scopes`]), then
//! repeats the request. Requests that stream a body cannot be repeated, so a
//! push always starts an upload (a body-less `POST`) before sending bytes: that
//! `POST` is where the challenge is met.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::image::Digest;
use ureq::http::{self, Method, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

use super::auth::{Challenge, Credentials};
use super::reference::api_host;
use super::Error;

/// Largest error body or token answer read from a registry.
const MAX_ANSWER: u64 = 1 << 20;
/// How much of a registry's error text goes into an error message.
const MAX_MESSAGE: usize = 400;

/// Where Docker and podman look for a registry's CA certificates: one
/// directory per `HOST[:PORT]` under each, holding `*.crt` files.
pub const SYSTEM_CERT_DIRS: &[&str] = &["/etc/docker/certs.d", "/etc/containers/certs.d"];

/// The system's CA bundle, first found of these (unless `$SSL_CERT_FILE`).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Default number of times a request is repeated after a broken connection or
/// a 502/503/504, and the first wait (doubled each time, at most
/// 30 seconds).
pub const DEFAULT_RETRIES: u32 = 4;
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Speak plain HTTP to this registry (only for registries an admin lists
    /// as insecure).
    pub insecure: bool,
    /// Directories laid out as `/etc/docker/certs.d`: `DIR/HOST[:PORT]/*.crt`
    /// are trusted as CAs for the registry, on top of the system's roots.
    /// Empty means [`SYSTEM_CERT_DIRS`].
    pub cert_dirs: Vec<PathBuf>,
    /// Credentials; `None` looks in `auth_files`, then in the usual files
    /// ([`Credentials::lookup`]), and otherwise goes anonymous.
    pub credentials: Option<Credentials>,
    /// Credentials files (`auth.json` / `config.json` format) looked at
    /// before the usual ones: the one an admin configured.
    pub auth_files: Vec<PathBuf>,
    /// Times a request is repeated after a broken connection or a 502, 503 or
    /// 504; an upload resumes where the registry says it got to.
    pub retries: u32,
    /// The first wait before a repeat, doubled each time.
    pub retry_delay: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            cert_dirs: Vec::new(),
            auth_files: Vec::new(),
            credentials: None,
            retries: DEFAULT_RETRIES,
            retry_delay: DEFAULT_RETRY_DELAY,
        }
    }
}

/// What a request sends.
pub(crate) enum Payload<'a> {
    None,
    Bytes(&'a [u8]),
    /// Exactly `len` bytes from the reader; such a request is never repeated.
    Stream {
        reader: &'a mut dyn Read,
        len: u64,
    },
}

/// The result of a mount request.
#[derive(Debug)]
pub(crate) enum Mount {
    Mounted,
    /// The registry did not mount but opened an upload session here.
    Upload(String),
}

/// A client of one registry.
pub struct Client {
    agent: Agent,
    /// `HOST[:PORT]` as the reference names it.
    registry: String,
    /// `https://HOST[:PORT]` (or `http://`).
    base: String,
    insecure: bool,
    credentials: Option<Credentials>,
    /// The `Authorization` header value in use.
    authorization: Option<String>,
    /// The scopes a bearer token is asked for.
    scopes: Vec<String>,
    retries: u32,
    retry_delay: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `registry` (`HOST[:PORT]`, as in a reference), whose
    /// credentials, if none are given, are looked up for `repository`.
    pub fn new(registry: &str, repository: &str, options: &ClientOptions) -> Result<Client, Error> {
        let host = api_host(registry);
        let credentials = match &options.credentials {
            Some(c) => Some(c.clone()),
            None => Credentials::lookup_in(&options.auth_files, registry, repository)?,
        };
        let cert_dirs: Vec<PathBuf> = if options.cert_dirs.is_empty() {
            SYSTEM_CERT_DIRS.iter().map(PathBuf::from).collect()
        } else {
            options.cert_dirs.clone()
        };
        let roots = root_certs(registry, &cert_dirs)?;
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build();
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .https_only(!options.insecure)
            .max_redirects(3)
            .user_agent(concat!("freezeframe/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(600)))
            .timeout_per_read(Some(Duration::from_secs(300)))
            .timeout_per_write(Some(Duration::from_secs(300)))
            .tls_config(tls)
            .build();
        let scheme = if options.insecure { "http" } else { "https" };
        Ok(Client {
            agent: config.new_agent(),
            registry: registry.to_owned(),
            base: format!("{scheme}://{host}"),
            insecure: options.insecure,
            credentials,
            authorization: None,
            scopes: Vec::new(),
            retries: options.retries,
            retry_delay: options.retry_delay,
        })
    }

    /// The registry as the reference names it.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Whether credentials were given or found.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The scopes a bearer token is asked for, e.g. `repository:team/app:pull,push`.
    pub fn set_scopes(&mut self, scopes: Vec<String>) {
        self.scopes = scopes;
    }

    /// The URL of an API path (`/v2/…`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An upload `Location` as an absolute URL.
    pub(crate) fn resolve_location(&self, location: &str) -> String {
        if location.starts_with("https://") || location.starts_with("http://") {
            location.to_owned()
        } else if location.starts_with('/') {
            self.url(location)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    /// `HEAD /v2/REPO/blobs/DIGEST`: the blob's size when the repository has it.
    pub fn blob_size(&mut self, repository: &str, digest: &Digest) -> Result<Option<u64>, Error> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let what = || format!("checking blob {digest} in {repository}");
        let mut resp = self.send(Method::HEAD, &url, &[], Payload::None, &what)?;
        match resp.status().as_u16() {
            200 => Ok(Some(
                header(&resp, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            _ => Err(self.status_error(&what(), &url, &mut resp)),
        }
    }

    /// `POST /v2/REPO/blobs/uploads/?mount=DIGEST&from=FROM`.
    pub(crate) fn mount_blob(
        &mut self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, Error> {
        let url = self.url(&format!(
            "/v2/{repository}/blobs/uploads/?mount={digest}&from={from}"
        ));
        let what = || format!("mounting blob {digest} from {from} into {repository}");
        let mut resp = self.send(Method::POST, &url, &[], Payload::Bytes(&[]), &what)?;
        match resp.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Upload(self.location(&what(), &url, &resp)?)),
            _ => Err(self.status_error(&what(), &url, &mut resp)),
        }
    }

    /// `POST /v2/REPO/blobs/uploads/`: opens an upload session, returns its URL.
    pub(crate) fn start_upload(
        &mut self,
        repository: &str,
        digest: &Digest,
    ) -> Result<String, Error> {
        let url = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let what = || format!("starting the upload of blob {digest} to {repository}");
        let mut resp = self.send(Method::POST, &url, &[], Payload::Bytes(&[]), &what)?;
        match resp.status().as_u16() {
            202 => self.location(&what(), &url, &resp),
            _ => Err(self.status_error(&what(), &url, &mut resp)),
        }
    }

    /// `PUT LOCATION?digest=DIGEST` with the whole blob: ends the upload.
    pub(crate) fn put_blob(
        &mut self,
        location: &str,
        digest: &Digest,
        reader: &mut dyn Read,
        len: u64,
    ) -> Result<(), Error> {
        let url = with_query(location, "digest", digest.as_ref());
        let what = || format!("uploading blob {digest}");
        let headers = [("content-type", "application/octet-stream")];
        let payload = Payload::Stream { reader, len };
        let mut resp = self.send(Method::PUT, &url, &headers, payload, &what)?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(self.status_error(&what(), &url, &mut resp)),
        }
    }

    /// `PATCH LOCATION` with bytes `start..start+len` of the blob; returns the
    /// location of the next request.
    pub(crate) fn patch_blob(
        &mut self,
        location: &str,
        digest: &Digest,
        start: u64,
        reader: &mut dyn Read,
        len: u64,
    ) -> Result<String, Error> {
        let url = location.to_owned();
        let what = || format!("uploading bytes {start}.. of blob {digest}");
        let range = format!("{start}-{}", start + len - 1);
        let headers = [
            ("content-type", "application/octet-stream"),
            ("content-range", range.as_str()),
        ];
        let payload = Payload::Stream { reader, len };
        let mut resp = self.send(Method::PATCH, &url, &headers, payload, &what)?;
        match resp.status().as_u16() {
            202 => self.location(&what(), &url, &resp),
            _ => Err(self.status_error(&what(), &url, &mut resp)),
        }
    }

    /// `PUT LOCATION?digest=DIGEST` with no body: ends a chunked upload.
    pub(crate) fn finish_upload(&mut self, location: &str, digest: &Digest) -> Result<(), Error> {
        let url = with_query(location, "digest", digest.as_ref());
        let what = || format!("finishing the upload of blob {digest}");
        let mut resp = self.send(Method::PUT, &url, &[], Payload::Bytes(&[]), &what)?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(self.status_error(&what(), &url, &mut resp)),
        }
    }

    /// `GET LOCATION`: how many bytes of an upload the registry holds, and the
    /// location to go on from; `None` when the session is gone (the registry
    /// answers 404, or 400 for a session it no longer knows).
    pub(crate) fn upload_status(
        &mut self,
        location: &str,
        digest: &Digest,
    ) -> Result<Option<(String, u64)>, Error> {
        let what = || format!("asking how much of blob {digest} the registry has");
        let mut resp = self.send(Method::GET, location, &[], Payload::None, &what)?;
        match resp.status().as_u16() {
            204 | 202 | 200 => {
                let next = header(&resp, "location")
                    .map(|l| self.resolve_location(l))
                    .unwrap_or_else(|| location.to_owned());
                // `Range: 0-LAST`; distribution says 0-0 for an empty upload too,
                // so 0-0 counts as nothing (a byte sent twice is refused, not kept).
                let received = header(&resp, "range")
                    .and_then(|r| {
                        let r = r.trim();
                        let r = r.strip_prefix("bytes=").unwrap_or(r);
                        r.strip_prefix("0-")?.parse::<u64>().ok()
                    })
                    .map_or(0, |last| if last == 0 { 0 } else { last + 1 });
                Ok(Some((next, received)))
            }
            400 | 404 => Ok(None),
            _ => Err(self.status_error(&what(), location, &mut resp)),
        }
    }

    /// `DELETE LOCATION`: drops an upload session; best effort, after a failure.
    pub(crate) fn cancel_upload(&mut self, location: &str) {
        let what = || "cancelling an upload".to_owned();
        if let Err(e) = self.send(Method::DELETE, location, &[], Payload::None, &what) {
            tracing::debug!(error = %e, "cancelling an upload session failed");
        }
    }

    /// `PUT /v2/REPO/manifests/REFERENCE`: returns the digest the registry
    /// gives (`Docker-Content-Digest`), if any.
    pub fn put_manifest(
        &mut self,
        repository: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> Result<Option<String>, Error> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let what = || format!("pushing the manifest {repository}:{reference}");
        let headers = [("content-type", media_type)];
        let mut resp = self.send(Method::PUT, &url, &headers, Payload::Bytes(manifest), &what)?;
        match resp.status().as_u16() {
            201 | 200 | 204 => Ok(header(&resp, "docker-content-digest").map(str::to_owned)),
            _ => Err(self.status_error(&what(), &url, &mut resp)),
        }
    }

    /// Sends a request, answering one authentication challenge on a 401 when
    /// the payload can be sent again.
    pub(crate) fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        mut payload: Payload<'_>,
        what: &dyn Fn() -> String,
    ) -> Result<Response<Body>, Error> {
        let mut answered = false;
        let mut attempt = 0;
        loop {
            let repeatable = !matches!(payload, Payload::Stream { .. });
            let result = self.send_once(&method, url, headers, &mut payload, what);
            if repeatable && attempt < self.retries {
                let transient = match &result {
                    Err(e) => e.is_transient(),
                    Ok(resp) => matches!(resp.status().as_u16(), 502..=504),
                };
                if transient {
                    attempt += 1;
                    self.backoff(attempt, what);
                    continue;
                }
            }
            let resp = result?;
            if resp.status().as_u16() == 401 && repeatable && !answered {
                if let Some(challenge) =
                    header(&resp, "www-authenticate").and_then(Challenge::parse)
                {
                    answered = true;
                    if self.answer(&challenge, what)? {
                        continue;
                    }
                }
            }
            return Ok(resp);
        }
    }

    /// Waits before repeat number `attempt` (1, 2, …).
    pub(crate) fn backoff(&self, attempt: u32, what: &dyn Fn() -> String) {
        let delay = self
            .retry_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(MAX_RETRY_DELAY);
        tracing::warn!(what = %what(), attempt, ?delay, "registry request failed; retrying");
        std::thread::sleep(delay);
    }

    /// The number of repeats allowed.
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    fn send_once(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: &mut Payload<'_>,
        what: &dyn Fn() -> String,
    ) -> Result<Response<Body>, Error> {
        {
            let mut builder = http::Request::builder().method(method.clone()).uri(url);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            if let Some(auth) = &self.authorization {
                if self.same_origin(url) {
                    builder = builder.header("authorization", auth.as_str());
                }
            }
            match payload {
                Payload::None => self.run(builder, SendBody::none(), url, what),
                Payload::Bytes(bytes) => {
                    // A fresh cursor on each attempt: the bytes are sent again in full.
                    let mut cursor: &[u8] = bytes;
                    let builder = builder.header("content-length", bytes.len().to_string());
                    self.run(builder, SendBody::from_reader(&mut cursor), url, what)
                }
                Payload::Stream { reader, len } => {
                    let builder = builder.header("content-length", len.to_string());
                    self.run(builder, SendBody::from_reader(&mut **reader), url, what)
                }
            }
        }
    }

    fn run(
        &self,
        builder: http::request::Builder,
        body: SendBody<'_>,
        url: &str,
        what: &dyn Fn() -> String,
    ) -> Result<Response<Body>, Error> {
        let request = builder.body(body).map_err(|e| Error::Protocol {
            what: what(),
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        self.agent.run(request).map_err(|e| {
            let hint = match &e {
                ureq::Error::Io(io) if io.to_string().contains("certificate") => format!(
                    " (trusted CAs for {0}: the system's, and *.crt in DIR/{0}/ of each \
                     certs.d directory)",
                    self.registry
                ),
                _ => String::new(),
            };
            Error::Transport {
                what: what(),
                url: url.to_owned(),
                source: Box::new(e),
                hint,
            }
        })
    }

    /// Sets the `Authorization` a challenge asks for; false when there is
    /// nothing new to send.
    fn answer(&mut self, challenge: &Challenge, what: &dyn Fn() -> String) -> Result<bool, Error> {
        match challenge {
            Challenge::Basic => {
                let Some(credentials) = &self.credentials else {
                    return Ok(false);
                };
                let basic = credentials.basic();
                if self.authorization.as_deref() == Some(basic.as_str()) {
                    return Ok(false);
                }
                self.authorization = Some(basic);
                Ok(true)
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let token = self.fetch_token(realm, service.as_deref(), scope.as_deref(), what)?;
                self.authorization = Some(format!("Bearer {token}"));
                Ok(true)
            }
        }
    }

    /// `GET REALM?service=…&scope=…`, with basic credentials when there are any.
    fn fetch_token(
        &mut self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        what: &dyn Fn() -> String,
    ) -> Result<String, Error> {
        let token_error = |reason: String| Error::Token {
            what: what(),
            realm: realm.to_owned(),
            reason,
        };
        let plain_ok = self.insecure && realm.starts_with("http://");
        if !(realm.starts_with("https://") || plain_ok) {
            return Err(token_error(
                "the token realm is not an https URL (plain http only for an insecure registry)"
                    .into(),
            ));
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        if let Some(scope) = scope {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        for scope in &scopes {
            query.push(("scope", scope));
        }
        let mut url = realm.to_owned();
        for (name, value) in query {
            url = with_query(&url, name, value);
        }
        let mut builder = http::Request::builder().method(Method::GET).uri(&url);
        if let Some(credentials) = &self.credentials {
            builder = builder.header("authorization", credentials.basic());
        }
        let request = builder
            .body(SendBody::none())
            .map_err(|e| token_error(e.to_string()))?;
        let mut resp = self
            .agent
            .run(request)
            .map_err(|e| token_error(format!("cannot reach the token server: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| token_error(format!("cannot read the token server's answer: {e}")))?;
        if status != 200 {
            let message = self.registry_message(&text);
            return Err(token_error(format!("{}: {message}", plain_status(status))));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_str(&text)
            .map_err(|e| token_error(format!("the token server's answer is not a token: {e}")))?;
        token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| token_error("the token server's answer holds no token".into()))
    }

    fn same_origin(&self, url: &str) -> bool {
        url.strip_prefix(&self.base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    fn location(&self, what: &str, url: &str, resp: &Response<Body>) -> Result<String, Error> {
        header(resp, "location")
            .map(|l| self.resolve_location(l))
            .ok_or_else(|| Error::Protocol {
                what: what.to_owned(),
                url: url.to_owned(),
                reason: "the registry's answer has no Location header".into(),
            })
    }

    /// The error for an unexpected status: 401 and 403 said plainly, with the
    /// registry's own message, credentials scrubbed.
    pub(crate) fn status_error(&self, what: &str, url: &str, resp: &mut Response<Body>) -> Error {
        let status = resp.status().as_u16();
        // A token without the scope the request needs: a 401 that means 403.
        let insufficient_scope = header(resp, "www-authenticate")
            .is_some_and(|h| h.to_ascii_lowercase().contains("insufficient_scope"));
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        let said = self.registry_message(&text);
        let plain = match status {
            401 if self.credentials.is_none() => format!(
                "authentication required, and no credentials were given or found for {}",
                self.registry
            ),
            401 if insufficient_scope => {
                "the credentials do not allow this (insufficient scope)".to_owned()
            }
            401 => "the registry refused the credentials".to_owned(),
            403 => "the credentials do not allow this".to_owned(),
            _ => String::new(),
        };
        let message = match (plain.is_empty(), said.is_empty()) {
            (_, true) if plain.is_empty() => "no details".to_owned(),
            (_, true) => plain,
            (true, false) => said,
            (false, false) => format!("{plain} ({said})"),
        };
        Error::Status {
            what: what.to_owned(),
            url: url.to_owned(),
            status: plain_status(status),
            message,
        }
    }

    /// The registry's error document as `CODE: message; …`, or its text, cut
    /// short and with credentials scrubbed.
    fn registry_message(&self, text: &str) -> String {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<ErrorEntry>,
        }
        #[derive(serde::Deserialize)]
        struct ErrorEntry {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let message = match serde_json::from_str::<Errors>(text) {
            Ok(doc) if !doc.errors.is_empty() => doc
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            _ if text.trim().is_empty() => String::new(),
            _ => text.trim().to_owned(),
        };
        let message = match &self.credentials {
            Some(c) => c.redact(&message),
            None => message,
        };
        let message: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        match message.char_indices().nth(MAX_MESSAGE) {
            Some((at, _)) => format!("{}…", &message[..at]),
            None => message,
        }
    }
}

/// `401 unauthorized`, `403 forbidden`, … for messages.
fn plain_status(status: u16) -> String {
    match http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {}", reason.to_lowercase()),
        None => status.to_string(),
    }
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `url` with `name=value` appended to its query (the value percent-encoded).
pub(crate) fn with_query(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut out = format!("{url}{sep}{name}=");
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The system's CA bundle, then `DIR/REGISTRY/*.crt` of each cert dir.
fn root_certs(registry: &str, cert_dirs: &[PathBuf]) -> Result<Vec<Certificate<'static>>, Error> {
    let mut roots = Vec::new();
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            SYSTEM_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        });
    if let Some(bundle) = bundle {
        add_pem_file(&bundle, &mut roots)?;
    }
    for dir in cert_dirs {
        let host_dir = dir.join(registry);
        let entries = match std::fs::read_dir(&host_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Error::Io {
                    path: host_dir,
                    source,
                })
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: host_dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "crt") {
                files.push(path);
            }
        }
        files.sort();
        for file in files {
            add_pem_file(&file, &mut roots)?;
        }
    }
    Ok(roots)
}

/// The certificates of a PEM file (other PEM items are skipped).
fn add_pem_file(path: &Path, roots: &mut Vec<Certificate<'static>>) -> Result<(), Error> {
    let data = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let before = roots.len();
    for item in ureq::tls::parse_pem(&data) {
        match item {
            Ok(PemItem::Certificate(cert)) => roots.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Certificate {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }
    if roots.len() == before {
        return Err(Error::Certificate {
            path: path.to_owned(),
            reason: "it holds no PEM certificate".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_queries() {
        assert_eq!(
            with_query("https://h/u", "digest", "sha256:ab"),
            "https://h/u?digest=sha256:ab"
        );
        assert_eq!(
            with_query("https://h/u?_state=x", "scope", "repository:a/b:pull,push"),
            "https://h/u?_state=x&scope=repository:a%2Fb:pull%2Cpush"
        );
    }

    #[test]
    fn says_statuses_plainly() {
        assert_eq!(plain_status(401), "401 unauthorized");
        assert_eq!(plain_status(403), "403 forbidden");
        assert_eq!(plain_status(599), "599");
    }

    #[test]
    fn resolves_locations() {
        let options = ClientOptions {
            insecure: true,
            credentials: Some(Credentials::new("u", "p")),
            cert_dirs: vec![PathBuf::from("/nonexistent")],
            ..ClientOptions::default()
        };
        let client = Client::new("h.io:5000", "app", &options).unwrap();
        assert_eq!(
            client.resolve_location("/v2/app/blobs/uploads/x"),
            "http://h.io:5000/v2/app/blobs/uploads/x"
        );
        assert_eq!(client.resolve_location("https://o/x"), "https://o/x");
        assert!(client.same_origin("http://h.io:5000/v2/"));
        assert!(!client.same_origin("http://h.io:50001/v2/"));
    }
}
