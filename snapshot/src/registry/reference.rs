//! Image references in a registry: `HOST[:PORT]/REPO[:TAG][@DIGEST]`.
//!
//! The first path component is the registry when it holds a `.` or a `:`, or is
//! `localhost`; otherwise the reference is Docker Hub's (`docker.io`), where a
//! one-component repository is in `library/`. Repository names follow the
//! distribution spec: lower-case components of `[a-z0-9]` joined by `.`, `_`,
//! `__`, `-` runs, separated by `/`.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

use super::Error;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's distribution API is served.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The tag a reference with neither tag nor digest names.
pub const DEFAULT_TAG: &str = "latest";

/// The longest reference accepted, and the longest tag (the spec's limit).
const MAX_REFERENCE: usize = 4096;
const MAX_TAG: usize = 128;

/// A parsed image reference in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `HOST[:PORT]` as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository, e.g. `team/app`.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// The manifest digest, when given.
    pub digest: Option<Digest>,
}

impl Reference {
    /// The host and port the distribution API is served from.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// What a manifest is pushed under: the tag, else the digest.
    pub fn manifest_reference(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => tag.clone(),
            (None, Some(digest)) => digest.to_string(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
}

/// The host and port Docker Hub's API is served from, else `registry` itself.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |reason: &'static str| Error::InvalidReference {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        if input.len() > MAX_REFERENCE {
            return Err(bad("it is too long"));
        }
        if let Some(rest) = input.strip_prefix("docker://") {
            return rest
                .parse()
                .map_err(|_| bad("not a valid registry reference"));
        }
        let (name, digest) = match input.split_once('@') {
            Some((name, digest)) => {
                let digest = Digest::from_str(digest).map_err(|_| bad("invalid digest"))?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name[..at], Some(&name[at + 1..]))
            }
            None => (name, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(bad(
                    "invalid tag (up to 128 of [A-Za-z0-9_.-], not starting with . or -)",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        if !valid_registry(&registry) {
            return Err(bad("invalid registry host (HOST[:PORT])"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(bad(
                "invalid repository name (lower-case [a-z0-9] components separated by . _ - and /)",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= MAX_TAG
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `HOST[:PORT]`, `HOST` a DNS name or IPv4 address, or `[IPv6]`.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                match tail {
                    "" => ("x", None),
                    _ => match tail.strip_prefix(':') {
                        Some(port) => ("x", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok
}

/// Whether `repository` is a valid repository name (`team/app`).
pub fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(valid_path_component)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_references() {
        let cases: &[(&str, &str, &str, Option<&str>, bool)] = &[
            (
                "127.0.0.1:5000/app",
                "127.0.0.1:5000",
                "app",
                Some("latest"),
                false,
            ),
            (
                "127.0.0.1:5000/team/app:v1",
                "127.0.0.1:5000",
                "team/app",
                Some("v1"),
                false,
            ),
            ("localhost/app:1.0", "localhost", "app", Some("1.0"), false),
            (
                "registry.example.com/a/b/c",
                "registry.example.com",
                "a/b/c",
                Some("latest"),
                false,
            ),
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
            ),
            ("user/app:x", "docker.io", "user/app", Some("x"), false),
            ("[::1]:5000/app:t", "[::1]:5000", "app", Some("t"), false),
            ("docker://h.io/app", "h.io", "app", Some("latest"), false),
        ];
        for &(input, registry, repository, tag, _) in cases {
            let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, registry, "{input}");
            assert_eq!(r.repository, repository, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest, None, "{input}");
        }
    }

    #[test]
    fn parses_digests() {
        let r: Reference = format!("h.io:5000/app@{DIGEST}").parse().unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().to_string(), DIGEST);
        assert_eq!(r.manifest_reference(), DIGEST);
        let r: Reference = format!("h.io:5000/app:t@{DIGEST}").parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.manifest_reference(), "t");
        assert_eq!(r.to_string(), format!("h.io:5000/app:t@{DIGEST}"));
    }

    #[test]
    fn refuses_bad_references() {
        for input in [
            "",
            "h.io/App",
            "h.io/app:",
            "h.io/app:-x",
            "h.io/app@sha256:zz",
            "h.io:99999/app",
            "h.io:/app",
            "h.io/a//b",
            "h.io/a..b",
            "h.io/-a",
            "h_x.io/app",
            "[zz]:5/app",
            "h.io/",
        ] {
            assert!(
                input.parse::<Reference>().is_err(),
                "{input:?} was accepted"
            );
        }
    }

    #[test]
    fn docker_hub_api_host() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r: Reference = "h.io:5000/x".parse().unwrap();
        assert_eq!(r.api_host(), "h.io:5000");
    }
}
