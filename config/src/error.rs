//! The one error type of this crate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
///
/// Every message names the file; a bad value also names its key as a dotted path
/// (`compression.level`, `session.excludes[3]`), so an admin knows what to edit.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named explicitly or by [`ENV_VAR`](crate::ENV_VAR) does not exist.
    #[error("{}: config file does not exist{}", .path.display(), named_by(*.from_env))]
    NotFound {
        path: PathBuf,
        /// `true` when the path came from [`ENV_VAR`](crate::ENV_VAR).
        from_env: bool,
    },

    /// The file exists but could not be read (permissions, a directory, not UTF-8).
    #[error("failed to read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },

    /// TOML syntax error, wrong type, unknown key or unknown enum value.
    #[error("{}: {message}", at(.path, *.location))]
    Parse {
        path: PathBuf,
        /// Where in the file, when the toml crate knows.
        location: Option<Location>,
        message: String,
    },

    /// The file parsed, but a value is not acceptable.
    #[error("{}: {key}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        /// Dotted path of the key, e.g. `compression.level`.
        key: String,
        message: String,
    },
}

/// A 1-based line and column (in characters) in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The line and column of byte `offset` in `text`.
    pub(crate) fn of_offset(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

fn named_by(from_env: bool) -> String {
    if from_env {
        format!(" (named by {})", crate::ENV_VAR)
    } else {
        String::new()
    }
}

fn at(path: &Path, location: Option<Location>) -> String {
    match location {
        Some(location) => format!("{}:{location}", path.display()),
        None => path.display().to_string(),
    }
}
