//! Capabilities: what a commit of a running session and the service need,
//! checked when they start, and the service's drop of every other one.
//!
//! A commit of a session needs, in its effective set:
//!
//! | capability | why |
//! |---|---|
//! | `CAP_DAC_READ_SEARCH` | read every file and directory of the session, whoever owns it |
//! | `CAP_SYS_ADMIN` | read the overlay's `trusted.overlay.*` attributes: whiteouts, opaque directories, redirects |
//! | `CAP_SYS_PTRACE` | reach the session's mounts and files through `/proc/PID` of its init, which may hold capabilities of its own |
//! | `CAP_CHOWN` | give archives (and the socket) the configured group, when `storage.archive_group` (or `server.socket_group`) is set |
//!
//! Without `CAP_SYS_ADMIN` the walk reads no `trusted.*` attribute and gets no
//! error either: an opaque directory's marker is lost, and the image silently
//! shows again what the session deleted. Without `CAP_SYS_PTRACE`, a process
//! with the service's few capabilities may not open `/proc/PID/root` of an
//! init that holds others (`Permission denied`). Without both
//! `CAP_DAC_READ_SEARCH` and `CAP_DAC_OVERRIDE`, a directory of mode 0700
//! owned by a user of the container cannot be read.
//!
//! The service keeps those and, when it has them, `CAP_DAC_OVERRIDE` (write a
//! cgroup's freezer, a lock or an output directory that another user owns),
//! `CAP_FOWNER` (read files without changing their access time) and
//! `CAP_SYS_NICE` (answer the API at a higher priority than commits run at).
//! Every other capability is dropped from the effective, permitted,
//! inheritable, ambient and bounding sets before any thread is started, so
//! that no thread, and no process the service starts (the guardian), has it.

use caps::{CapSet, Capability, CapsHashSet};
use freezeframe_config::Config;

/// A capability a command needs, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub cap: Capability,
    pub why: &'static str,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.cap, self.why)
    }
}

/// Kept by the service when it has them; nothing fails without them.
pub const USEFUL: &[Need] = &[
    Need {
        cap: Capability::CAP_DAC_OVERRIDE,
        why: "write a freezer, lock or output directory that another user owns",
    },
    Need {
        cap: Capability::CAP_FOWNER,
        why: "read files without changing their access time",
    },
    Need {
        cap: Capability::CAP_SYS_NICE,
        why: "answer the API at a higher priority than commits",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error(
        "freezeframe {command} lacks {}: {}; run it as root with these capabilities",
        if missing.len() == 1 { "a capability it needs" } else { "capabilities it needs" },
        missing.iter().map(Need::to_string).collect::<Vec<_>>().join("; ")
    )]
    Missing {
        command: &'static str,
        missing: Vec<Need>,
    },

    #[error("reading the {set} capability set: {source}")]
    Read {
        set: &'static str,
        source: caps::errors::CapsError,
    },

    #[error("dropping {cap} from the {set} capability set: {source}")]
    Drop {
        cap: String,
        set: &'static str,
        source: caps::errors::CapsError,
    },
}

/// What a commit of a running session needs, under `config`.
pub fn commit_needs(config: &Config) -> Vec<Need> {
    let mut needs = vec![
        Need {
            cap: Capability::CAP_DAC_READ_SEARCH,
            why: "read every file of the session",
        },
        Need {
            cap: Capability::CAP_SYS_ADMIN,
            why: "read the overlay's trusted.overlay.* attributes (whiteouts, opaque directories)",
        },
        Need {
            cap: Capability::CAP_SYS_PTRACE,
            why: "reach the session's mounts and files through /proc/PID of its init",
        },
    ];
    if config.storage.archive_group.is_some() {
        needs.push(Need {
            cap: Capability::CAP_CHOWN,
            why: "give archives the group storage.archive_group",
        });
    }
    needs
}

/// What the service needs, under `config`: what its commits need, and the
/// socket's group.
pub fn serve_needs(config: &Config) -> Vec<Need> {
    let mut needs = commit_needs(config);
    if config.server.socket_group.is_some() && config.storage.archive_group.is_none() {
        needs.push(Need {
            cap: Capability::CAP_CHOWN,
            why: "give the socket the group server.socket_group",
        });
    }
    needs
}

fn read(set: CapSet, name: &'static str) -> Result<CapsHashSet, CapsError> {
    caps::read(None, set).map_err(|source| CapsError::Read { set: name, source })
}

/// Fails, naming each one and why, unless every capability of `needs` is in
/// this thread's effective set.
pub fn check(command: &'static str, needs: &[Need]) -> Result<(), CapsError> {
    let effective = read(CapSet::Effective, "effective")?;
    let missing: Vec<Need> = needs
        .iter()
        .filter(|n| !effective.contains(&n.cap))
        .copied()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CapsError::Missing { command, missing })
    }
}

/// `commit` of a running session: checks what it needs.
pub fn for_commit(config: &Config) -> Result<(), CapsError> {
    check("commit", &commit_needs(config))
}

/// `serve`: checks what it needs, then drops every capability but those and
/// [`USEFUL`]. Call it before any thread is started: capabilities are per
/// thread, and threads inherit them. Returns the set kept.
pub fn for_serve(config: &Config) -> Result<CapsHashSet, CapsError> {
    let needs = serve_needs(config);
    check("serve", &needs)?;
    let kept: CapsHashSet = needs.iter().chain(USEFUL).map(|n| n.cap).collect();
    keep_only(&kept)?;
    tracing::debug!(kept = ?kept, "dropped every other capability");
    read(CapSet::Effective, "effective")
}

/// Drops every capability not in `kept` from every set of this thread.
pub fn keep_only(kept: &CapsHashSet) -> Result<(), CapsError> {
    let drop = |cap: Capability, set: &'static str| {
        move |source| CapsError::Drop {
            cap: cap.to_string(),
            set,
            source,
        }
    };
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes
    // with the effective set below.
    for cap in read(CapSet::Bounding, "bounding")? {
        if !kept.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(drop(cap, "bounding"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|source| CapsError::Drop {
        cap: "every capability".into(),
        set: "ambient",
        source,
    })?;
    // Effective before permitted: the effective set must stay within the
    // permitted one.
    for (set, name) in [
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ] {
        let now = read(set, name)?;
        let next: CapsHashSet = now.intersection(kept).copied().collect();
        if next != now {
            caps::set(None, set, &next).map_err(|source| CapsError::Drop {
                cap: now
                    .difference(&next)
                    .map(Capability::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                set: name,
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_capability_is_named_with_its_reason() {
        let e = CapsError::Missing {
            command: "serve",
            missing: commit_needs(&Config::default())[..2].to_vec(),
        };
        assert_eq!(
            e.to_string(),
            "freezeframe serve lacks capabilities it needs: CAP_DAC_READ_SEARCH: read every \
             file of the session; CAP_SYS_ADMIN: read the overlay's trusted.overlay.* \
             attributes (whiteouts, opaque directories); run it as root with these capabilities"
        );
    }

    #[test]
    fn a_group_to_set_needs_cap_chown_once() {
        let mut c = Config::default();
        let chown = |needs: Vec<Need>| {
            needs
                .iter()
                .filter(|n| n.cap == Capability::CAP_CHOWN)
                .count()
        };
        assert_eq!(chown(serve_needs(&c)), 0);
        c.server.socket_group = Some(freezeframe_config::Group::Gid(5));
        assert_eq!(chown(serve_needs(&c)), 1);
        assert_eq!(chown(commit_needs(&c)), 0);
        c.storage.archive_group = Some(freezeframe_config::Group::Gid(5));
        assert_eq!(chown(serve_needs(&c)), 1);
        assert_eq!(chown(commit_needs(&c)), 1);
    }
}
