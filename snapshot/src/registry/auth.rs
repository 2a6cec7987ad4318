//! Registry credentials and the `WWW-Authenticate` challenge.
//!
//! Credentials come from the caller, else from podman's `auth.json`
//! (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
//! `/run/containers/UID/auth.json`), else from Docker's `config.json`
//! (`$DOCKER_CONFIG`, else `~/.docker/config.json`), from the `auth` (base64
//! `user:password`) or `username`/`password` of the entry of `auths` that
//! names the registry. Docker's credential helpers (`credsStore`,
//! `credHelpers`) are not run.
//!
//! Credentials never appear in `Debug` output or in errors: [`Credentials`]
//! prints its user name only, and [`Credentials::redact`] scrubs the secret from
//! any text a registry sends back before it goes into an error.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::reference::DOCKER_HUB;
use super::Error;

/// Largest credentials file read.
const MAX_AUTH_FILE: u64 = 1 << 20;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Parses `USER:PASSWORD` (the password may hold `:`).
    pub fn parse(text: &str) -> Option<Self> {
        let (user, password) = text.split_once(':')?;
        (!user.is_empty()).then(|| Credentials::new(user, password))
    }

    /// The value of a basic `Authorization` header.
    pub(crate) fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// `text` with the password and its basic encoding replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if self.password.len() >= 3 {
            out = out.replace(&self.password, "***");
        }
        let basic = self.basic();
        if let Some(encoded) = basic.strip_prefix("Basic ") {
            out = out.replace(encoded, "***");
        }
        out
    }

    /// The credentials the usual files hold for `registry` (and `repository`,
    /// for podman's per-repository entries): podman's `auth.json`, then
    /// Docker's `config.json`. `None` when no file names the registry.
    pub fn lookup(registry: &str, repository: &str) -> Result<Option<Credentials>, Error> {
        Self::lookup_in(&[], registry, repository)
    }

    /// [`Credentials::lookup`], looking in `first` before the usual files.
    pub fn lookup_in(
        first: &[PathBuf],
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credentials>, Error> {
        for path in first.iter().cloned().chain(auth_files()) {
            if let Some(found) = from_file(&path, registry, repository)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

/// The credentials files looked at, in order; missing ones are skipped.
fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    // podman's: $REGISTRY_AUTH_FILE, else its default under the runtime dir.
    match std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        Some(path) => files.push(PathBuf::from(path)),
        None => match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
            Some(dir) => files.push(PathBuf::from(dir).join("containers/auth.json")),
            None => files.push(PathBuf::from(format!(
                "/run/containers/{}/auth.json",
                rustix::process::getuid().as_raw()
            ))),
        },
    }
    match std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        Some(dir) => files.push(PathBuf::from(dir).join("config.json")),
        None => {
            if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
                files.push(PathBuf::from(home).join(".docker/config.json"));
            }
        }
    }
    files
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The entry of one file for `registry`, the most specific key first
/// (`HOST/NAMESPACE` before `HOST`).
pub(crate) fn from_file(
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, Error> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut data = Vec::new();
    file.take(MAX_AUTH_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
    let bad = |reason: String| Error::AuthFile {
        path: path.to_owned(),
        reason,
    };
    if data.len() as u64 > MAX_AUTH_FILE {
        return Err(bad(format!("larger than {MAX_AUTH_FILE} bytes")));
    }
    // serde_json's message names a line and column, never the file's content.
    let parsed: AuthFile = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    let target = format!("{registry}/{repository}");
    let best = parsed
        .auths
        .iter()
        .filter_map(|(key, entry)| {
            let key = normalize_key(key);
            let matches = key == registry || target.starts_with(&format!("{key}/"));
            matches.then_some((key.len(), key, entry))
        })
        .max_by_key(|(len, _, _)| *len);
    let Some((_, key, entry)) = best else {
        return Ok(None);
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| {
                bad(format!(
                    "the auth of {key:?} is not base64 of USER:PASSWORD"
                ))
            })?;
        return Credentials::parse(&decoded).map(Some).ok_or_else(|| {
            bad(format!(
                "the auth of {key:?} is not base64 of USER:PASSWORD"
            ))
        });
    }
    match (&entry.username, &entry.password) {
        (Some(user), Some(password)) if !user.is_empty() => {
            Ok(Some(Credentials::new(user.clone(), password.clone())))
        }
        _ => Ok(None),
    }
}

/// A key of `auths` as `HOST[:PORT][/PATH]`: no scheme, no Docker Hub `/v1/`
/// suffix, Docker Hub's aliases as `docker.io`.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.trim_end_matches('/');
    let (host, path) = match key.split_once('/') {
        Some((host, path)) => (host, Some(path)),
        None => (key, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        other => other,
    };
    match path {
        // Docker's own key for Docker Hub is https://index.docker.io/v1/.
        Some("v1") | Some("v2") | None => host.to_owned(),
        Some(path) => format!("{host}/{path}"),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses the header's value; `None` for schemes other than Basic and
    /// Bearer, or a Bearer challenge without a realm.
    pub(crate) fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(params);
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `key="value", key=value, …`; quoted values may hold commas and `\"`.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.h.io/token",service="h.io",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.h.io/token".into(),
                service: Some("h.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"bearer realm=https://t/x, scope="a,b""#),
            Some(Challenge::Bearer {
                realm: "https://t/x".into(),
                service: None,
                scope: Some("a,b".into()),
            })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }

    #[test]
    fn debug_and_redact_hide_the_password() {
        let c = Credentials::new("user", "s3cret-pw");
        assert!(!format!("{c:?}").contains("s3cret"));
        let basic = c.basic();
        let encoded = basic.strip_prefix("Basic ").unwrap();
        let text = format!("bad s3cret-pw and {encoded}");
        assert_eq!(c.redact(&text), "bad *** and ***");
    }

    #[test]
    fn reads_auth_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("u1:p:w");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{encoded}"}},
                    "h.io:5000": {{"auth": "{encoded}"}},
                    "h.io:5000/team": {{"username": "u2", "password": "p2"}},
                    "other.io": {{}}
                }}}}"#
            ),
        )
        .unwrap();
        let get = |registry: &str, repo: &str| from_file(&path, registry, repo).unwrap();
        assert_eq!(
            get("docker.io", "library/x"),
            Some(Credentials::new("u1", "p:w"))
        );
        assert_eq!(get("h.io:5000", "app"), Some(Credentials::new("u1", "p:w")));
        assert_eq!(
            get("h.io:5000", "team/app"),
            Some(Credentials::new("u2", "p2"))
        );
        assert_eq!(
            get("h.io:5000", "teamx/app"),
            Some(Credentials::new("u1", "p:w"))
        );
        assert_eq!(get("h.io", "app"), None);
        assert_eq!(get("other.io", "app"), None);
        assert_eq!(
            from_file(&dir.path().join("none"), "h.io", "a").unwrap(),
            None
        );

        std::fs::write(&path, r#"{"auths": {"h.io": {"auth": "!!"}}}"#).unwrap();
        let err = from_file(&path, "h.io", "a").unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
    }
}
