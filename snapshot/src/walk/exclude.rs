//! What to leave out of a layer: glob patterns and exact container paths.
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

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the absolute container path `container_path` is left out.
    pub fn matches(&self, container_path: &[u8]) -> bool {
        self.exact.contains(container_path)
            || !self.patterns.is_empty()
                && self
                    .set
                    .is_match(Path::new(OsStr::from_bytes(container_path)))
    }
}
