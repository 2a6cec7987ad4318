//! What to leave out of a layer: glob patterns, exact container paths, and
//! the [`Secrets`] of the session's homes.
//!
//! It matches absolute container paths and knows nothing of the trees they
//! come from, of overlays or of how a layer is written.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Container paths left out of the layer: glob patterns and exact paths.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    patterns: Vec<String>,
    set: GlobSet,
    /// Absolute paths matched as they are (mount points), whatever they hold.
    exact: HashSet<Vec<u8>>,
    secrets: Secrets,
}

/// Why [`Exclude::check`] leaves a path out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// A pattern or an exact path (a mount point) names it.
    Pattern,
    /// It is one of the [`Secrets`].
    Secret,
}

impl Exclude {
    /// Patterns match absolute container paths; one without a leading `/` matches
    /// at any depth. An excluded directory is left out with everything below it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut b = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            let full = if p.starts_with('/') {
                p.trim_end_matches('/').to_string()
            } else {
                format!("**/{}", p.trim_end_matches('/'))
            };
            let glob = GlobBuilder::new(if full.is_empty() { "/" } else { &full })
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::Pattern {
                    pattern: p.to_string(),
                    message: e.kind().to_string(),
                })?;
            b.add(glob);
            kept.push(p.to_string());
        }
        let set = b.build().map_err(|e| Error::Pattern {
            pattern: kept.join(", "),
            message: e.to_string(),
        })?;
        Ok(Exclude {
            patterns: kept,
            set,
            exact: Default::default(),
            secrets: Secrets::default(),
        })
    }

    /// Also leaves out these absolute paths, taken literally (no glob syntax).
    pub fn with_paths<P: AsRef<Path>>(mut self, paths: &[P]) -> Self {
        for p in paths {
            let b = p.as_ref().as_os_str().as_bytes();
            let trimmed = if b.len() > 1 {
                b.strip_suffix(b"/").unwrap_or(b)
            } else {
                b
            };
            self.exact.insert(trimmed.to_vec());
        }
        self
    }

    /// Also leaves out `secrets`, in place of any given before.
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Whether the absolute container path `container_path` is left out.
    pub fn matches(&self, container_path: &[u8]) -> bool {
        self.check(container_path).is_some()
    }

    /// Whether the absolute container path `container_path` is left out, and
    /// why. A pattern decides before the secrets: a secret named back in
    /// stays out if a pattern leaves it out.
    pub fn check(&self, container_path: &[u8]) -> Option<Excluded> {
        if self.exact.contains(container_path)
            || !self.patterns.is_empty()
                && self
                    .set
                    .is_match(Path::new(OsStr::from_bytes(container_path)))
        {
            Some(Excluded::Pattern)
        } else if self.secrets.matches(container_path) {
            Some(Excluded::Secret)
        } else {
            None
        }
    }
}

/// The credential files of a home, left out of every layer unless a request
/// names one back in ([`Secrets::include`]). Each is relative to every home
/// [`Secrets`] is given, in the syntax of `session.secret_paths`: a glob
/// (`*` stays within one name, `**` crosses directories), and `!` keeps what
/// an earlier pattern left out. The last pattern that matches a path decides.
///
/// A private key may have any name, so everything directly in `.ssh/` is a
/// secret but what is known to be public: `*.pub`, `known_hosts` and `config`.
pub const DEFAULT_SECRETS: &[&str] = &[
    ".ssh/*",
    "!.ssh/*.pub",
    "!.ssh/known_hosts",
    "!.ssh/known_hosts.old",
    "!.ssh/config",
    ".netrc",
    ".git-credentials",
    ".aws/credentials",
    ".aws/sso/cache",
    ".aws/cli/cache",
    ".docker/config.json",
    ".kube/config",
    ".config/gcloud",
    ".config/gh/hosts.yml",
    ".pypirc",
    ".npmrc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".gnupg/private-keys-v1.d",
    ".gnupg/secring.gpg",
    ".huggingface/token",
    ".cache/huggingface/token",
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".ash_history",
    ".histfile",
    ".local/share/fish/fish_history",
    ".python_history",
    ".ipython/profile_default/history.sqlite",
    ".node_repl_history",
    ".psql_history",
    ".mysql_history",
    ".sqlite_history",
    ".rediscli_history",
    ".lesshst",
    ".viminfo",
];

/// The home that is a secret's home whatever `session.home_path` says: root's.
pub const ROOT_HOME: &str = "/root";

/// Why [`Secrets::include`] refused a path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IncludeError {
    #[error("{path}: must be normalised (no `.`, `..` or empty components)")]
    NotNormal { path: String },
    #[error("{path}: not a secret (no secret pattern leaves it out)")]
    NotSecret { path: String },
    #[error("{path}: inside the secret {secret}, which is left out whole: include {secret}")]
    InsideSecret { path: String, secret: String },
}

/// Paths of the session's homes that hold credentials: left out of the layer,
/// each one listed in the report, unless a request names it back in.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    set: GlobSet,
    /// Per pattern of `set`: whether it keeps rather than leaves out (`!`).
    keeps: Vec<bool>,
    /// Only paths below these can match: `None` when an absolute pattern
    /// could match anywhere.
    prefixes: Option<Vec<Vec<u8>>>,
    /// Absolute paths a request named back in.
    included: HashSet<Vec<u8>>,
}

impl Secrets {
    /// `patterns` (as [`DEFAULT_SECRETS`] spells them, later ones deciding
    /// over earlier ones) relative to each of `homes`; a pattern with a
    /// leading `/` is an absolute container path instead.
    pub fn new<H: AsRef<Path>, S: AsRef<str>>(homes: &[H], patterns: &[S]) -> Result<Self> {
        let mut homes: Vec<String> = homes
            .iter()
            .map(|h| {
                let h = h.as_ref().to_string_lossy();
                h.trim_end_matches('/').to_string()
            })
            .collect();
        homes.sort();
        homes.dedup();
        let mut b = GlobSetBuilder::new();
        let mut keeps = Vec::new();
        let mut anywhere = false;
        for p in patterns {
            let p = p.as_ref();
            let (keep, glob) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p),
            };
            let glob = glob.trim_end_matches('/');
            if glob.is_empty() {
                return Err(Error::Pattern {
                    pattern: p.to_string(),
                    message: "empty pattern".into(),
                });
            }
            let full: Vec<String> = if glob.starts_with('/') {
                anywhere = true;
                vec![glob.to_string()]
            } else {
                homes
                    .iter()
                    .map(|h| format!("{}/{glob}", globset::escape(h)))
                    .collect()
            };
            for f in full {
                let g = GlobBuilder::new(&f)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| Error::Pattern {
                        pattern: p.to_string(),
                        message: e.kind().to_string(),
                    })?;
                b.add(g);
                keeps.push(keep);
            }
        }
        let set = b.build().map_err(|e| Error::Pattern {
            pattern: patterns
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join(", "),
            message: e.to_string(),
        })?;
        Ok(Secrets {
            set,
            keeps,
            prefixes: (!anywhere)
                .then(|| homes.iter().map(|h| format!("{h}/").into_bytes()).collect()),
            included: HashSet::new(),
        })
    }

    /// [`DEFAULT_SECRETS`], then `extra`, under `home` and [`ROOT_HOME`].
    pub fn defaults<S: AsRef<str>>(home: &Path, extra: &[S]) -> Result<Self> {
        let patterns: Vec<&str> = DEFAULT_SECRETS
            .iter()
            .copied()
            .chain(extra.iter().map(AsRef::as_ref))
            .collect();
        Secrets::new(&[home, Path::new(ROOT_HOME)], &patterns)
    }

    /// Whether the patterns leave out the absolute container path `path`,
    /// whatever was included.
    pub fn is_secret(&self, path: &[u8]) -> bool {
        if self.keeps.is_empty() {
            return false;
        }
        if let Some(prefixes) = &self.prefixes {
            if !prefixes.iter().any(|p| path.starts_with(p)) {
                return false;
            }
        }
        let path = Path::new(OsStr::from_bytes(path));
        if !self.set.is_match(path) {
            return false;
        }
        let last = self.set.matches(path).into_iter().max();
        last.is_some_and(|i| !self.keeps[i])
    }

    /// Whether `path` is left out: a secret no request named back in.
    pub fn matches(&self, path: &[u8]) -> bool {
        !self.included.contains(path) && self.is_secret(path)
    }

    /// Names the absolute container path `path` back in. It must be a secret
    /// itself: a path below a secret directory cannot come back without it.
    pub fn include(&mut self, path: &[u8]) -> Result<(), IncludeError> {
        let shown = String::from_utf8_lossy(path).into_owned();
        let trimmed = match path {
            [b'/', rest @ ..] => rest.strip_suffix(b"/").unwrap_or(rest),
            _ => return Err(IncludeError::NotNormal { path: shown }),
        };
        if trimmed
            .split(|&b| b == b'/')
            .any(|c| c.is_empty() || c == b"." || c == b"..")
        {
            return Err(IncludeError::NotNormal { path: shown });
        }
        let path = &path[..trimmed.len() + 1];
        if self.is_secret(path) {
            self.included.insert(path.to_vec());
            return Ok(());
        }
        let mut end = path.len();
        while let Some(i) = path[..end].iter().rposition(|&b| b == b'/') {
            if i > 0 && self.is_secret(&path[..i]) {
                return Err(IncludeError::InsideSecret {
                    path: shown,
                    secret: String::from_utf8_lossy(&path[..i]).into_owned(),
                });
            }
            end = i;
        }
        Err(IncludeError::NotSecret { path: shown })
    }

    /// The absolute paths named back in.
    pub fn included(&self) -> impl Iterator<Item = &[u8]> {
        self.included.iter().map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Secrets {
        Secrets::defaults(Path::new("/home/work"), &[] as &[&str]).unwrap()
    }

    #[test]
    fn the_default_secrets_and_their_decoys() {
        let s = defaults();
        for secret in [
            "/home/work/.ssh/id_rsa",
            "/home/work/.ssh/id_ed25519",
            "/home/work/.ssh/github",
            "/home/work/.ssh/authorized_keys",
            "/home/work/.netrc",
            "/home/work/.git-credentials",
            "/home/work/.aws/credentials",
            "/home/work/.docker/config.json",
            "/home/work/.kube/config",
            "/home/work/.config/gcloud",
            "/home/work/.pypirc",
            "/home/work/.npmrc",
            "/home/work/.bash_history",
            "/home/work/.zsh_history",
            "/home/work/.local/share/fish/fish_history",
            "/root/.ssh/id_rsa",
            "/root/.bash_history",
        ] {
            assert!(s.matches(secret.as_bytes()), "{secret} is kept");
        }
        for kept in [
            "/home/work/.ssh",
            "/home/work/.ssh/id_rsa.pub",
            "/home/work/.ssh/known_hosts",
            "/home/work/.ssh/config",
            "/home/work/notes/.netrc.txt",
            "/home/work/notes/.netrc",
            "/home/work/.config/gcloud/x",
            "/home/work/.aws/config",
            "/home/work/.bash_history.d",
            "/home/other/.netrc",
            "/etc/.netrc",
            "/home/work",
        ] {
            assert!(!s.matches(kept.as_bytes()), "{kept} is left out");
        }
    }

    #[test]
    fn the_last_pattern_decides_and_absolute_ones_match_where_they_say() {
        let s = Secrets::defaults(
            Path::new("/home/u"),
            &["!.npmrc", "work/*.key", "/etc/app/token", "!.ssh/id_rsa"],
        )
        .unwrap();
        assert!(!s.matches(b"/home/u/.npmrc"));
        assert!(s.matches(b"/home/u/work/a.key"));
        assert!(!s.matches(b"/home/u/work/sub/a.key"));
        assert!(s.matches(b"/root/work/a.key"));
        assert!(s.matches(b"/etc/app/token"));
        assert!(!s.matches(b"/home/u/.ssh/id_rsa"));
        assert!(s.matches(b"/home/u/.ssh/id_ecdsa"));
        assert!(!s.matches(b"/home/work/.netrc"), "not a home any more");
        assert!(
            Secrets::new(&["/h"], &["!"]).is_err(),
            "an empty pattern is refused"
        );
    }

    #[test]
    fn a_secret_named_back_in_is_kept_and_nothing_else() {
        let mut s = defaults();
        s.include(b"/home/work/.ssh/id_rsa").unwrap();
        s.include(b"/home/work/.config/gcloud/").unwrap();
        assert!(!s.matches(b"/home/work/.ssh/id_rsa"));
        assert!(!s.matches(b"/home/work/.config/gcloud"));
        assert!(s.matches(b"/home/work/.ssh/id_ed25519"));
        assert!(s.matches(b"/root/.ssh/id_rsa"));
        assert_eq!(
            s.include(b"/home/work/.ssh/id_rsa.pub")
                .unwrap_err()
                .to_string(),
            "/home/work/.ssh/id_rsa.pub: not a secret (no secret pattern leaves it out)"
        );
        assert_eq!(
            s.include(b"/home/work/.aws/sso/cache/x.json")
                .unwrap_err()
                .to_string(),
            "/home/work/.aws/sso/cache/x.json: inside the secret /home/work/.aws/sso/cache, \
             which is left out whole: include /home/work/.aws/sso/cache"
        );
        for bad in [
            &b"/home/work/../work/.netrc"[..],
            b"/home/work//.netrc",
            b"/home/work/./.netrc",
            b".netrc",
        ] {
            assert!(
                matches!(s.include(bad), Err(IncludeError::NotNormal { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn passes_list_each_secret_once_and_count_what_is_not_listed() {
        use crate::walk::{WalkReport, MAX_LISTED};
        let e = Exclude::default().with_secrets(defaults());
        let (mut first, mut second) = (WalkReport::default(), WalkReport::default());
        assert!(first.left_out(&e, b"/home/work/.netrc"));
        assert!(!first.left_out(&e, b"/home/work/notes"));
        assert!(second.left_out(&e, b"/home/work/.netrc"));
        assert!(second.left_out(&e, b"/root/.npmrc"));
        first.merge_secrets(&second);
        assert_eq!(
            first.secrets_excluded,
            ["/home/work/.netrc", "/root/.npmrc"]
        );
        assert_eq!((first.excluded, first.secrets_unlisted), (0, 0));

        let mut many = WalkReport::default();
        for i in 0..MAX_LISTED + 5 {
            assert!(many.left_out(&e, format!("/root/.ssh/k{i}").as_bytes()));
        }
        assert_eq!(many.secrets_excluded.len(), MAX_LISTED);
        assert_eq!(many.secrets_unlisted, 5);
        let mut merged = WalkReport::default();
        merged.merge_secrets(&first);
        merged.merge_secrets(&many);
        assert_eq!(merged.secrets_excluded.len(), MAX_LISTED);
        assert_eq!(merged.secrets_unlisted, 7, "5 unlisted and 2 past the cap");
    }

    #[test]
    fn a_pattern_decides_before_the_secrets() {
        let mut secrets = defaults();
        secrets.include(b"/home/work/.netrc").unwrap();
        let e = Exclude::new(&["/home/work/.netrc", "*.log"])
            .unwrap()
            .with_secrets(secrets);
        assert_eq!(e.check(b"/home/work/.netrc"), Some(Excluded::Pattern));
        assert_eq!(e.check(b"/home/work/.npmrc"), Some(Excluded::Secret));
        assert_eq!(e.check(b"/home/work/a.log"), Some(Excluded::Pattern));
        assert_eq!(e.check(b"/home/work/a.txt"), None);
        assert!(e.matches(b"/home/work/.npmrc"));
        assert!(!Exclude::default().matches(b"/home/work/.npmrc"));
    }
}
