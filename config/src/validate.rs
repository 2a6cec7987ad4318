//! Checks that need more than a type: ranges, absolute paths, globs. Each failure
//! names its key as a dotted path; `lib.rs` adds the file.

use std::path::Path;

use crate::{
    Compression, Config, Freeze, Group, Registry, Runtime, Server, Session, Storage, Stores,
};

/// A bad value: its key and what is wrong with it.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub key: String,
    pub message: String,
}

type Check = Result<(), Invalid>;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

pub(crate) fn config(config: &Config) -> Check {
    storage(&config.storage)?;
    session(&config.session)?;
    compression(&config.compression)?;
    freeze(&config.freeze)?;
    server(&config.server)?;
    runtime(&config.runtime)?;
    stores(&config.stores)?;
    registry(&config.registry)
}

fn registry(registry: &Registry) -> Check {
    for (i, dir) in registry.cert_dirs.iter().enumerate() {
        absolute(&format!("registry.cert_dirs[{i}]"), dir)?;
    }
    for (i, host) in registry.insecure.iter().enumerate() {
        let bad = host.is_empty()
            || host.contains("://")
            || host.contains('/')
            || host.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(invalid(
                format!("registry.insecure[{i}]"),
                format!("{host:?} is not a registry HOST[:PORT]"),
            ));
        }
    }
    if let Some(file) = &registry.auth_file {
        absolute("registry.auth_file", file)?;
    }
    Ok(())
}

fn stores(stores: &Stores) -> Check {
    absolute("stores.docker", &stores.docker)?;
    absolute("stores.containers_storage", &stores.containers_storage)?;
    absolute("stores.containerd", &stores.containerd)
}

fn storage(storage: &Storage) -> Check {
    absolute("storage.save_location", &storage.save_location)?;
    if storage.archive_mode > 0o777 {
        return Err(invalid(
            "storage.archive_mode",
            format!(
                r#"{:#o} is out of range (at most 0o777); write the mode as "0600" or 0o600"#,
                storage.archive_mode
            ),
        ));
    }
    if storage.archive_mode & 0o600 != 0o600 {
        return Err(invalid(
            "storage.archive_mode",
            format!(
                "{:#o} must let the owner read and write (0o600)",
                storage.archive_mode
            ),
        ));
    }
    if storage.archive_group == Some(Group::Name(String::new())) {
        return Err(invalid("storage.archive_group", "must not be empty"));
    }
    Ok(())
}

fn session(session: &Session) -> Check {
    home_path("session.home_path", &session.home_path)?;
    for (i, pattern) in session.excludes.iter().enumerate() {
        let key = format!("session.excludes[{i}]");
        if pattern.is_empty() {
            return Err(invalid(key, "empty pattern"));
        }
        if let Err(err) = globset::Glob::new(pattern) {
            return Err(invalid(
                key,
                format!("invalid glob {pattern:?}: {}", err.kind()),
            ));
        }
    }
    for (i, pattern) in session.secret_paths.iter().enumerate() {
        let key = format!("session.secret_paths[{i}]");
        let glob = pattern.strip_prefix('!').unwrap_or(pattern);
        if glob.trim_end_matches('/').is_empty() {
            return Err(invalid(key, "empty pattern"));
        }
        if glob
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(invalid(
                key,
                format!("{pattern:?} must be normalised (no `.`, `..` or empty components)"),
            ));
        }
        if let Err(err) = globset::Glob::new(glob) {
            return Err(invalid(
                key,
                format!("invalid glob {pattern:?}: {}", err.kind()),
            ));
        }
    }
    Ok(())
}

fn compression(compression: &Compression) -> Check {
    const MAX_THREADS: u32 = 1024;

    if let Some(level) = compression.level {
        let Some(range) = compression.algorithm.levels() else {
            return Err(invalid(
                "compression.level",
                r#"not used when compression.algorithm is "none"; remove it"#,
            ));
        };
        if !range.contains(&level) {
            return Err(invalid(
                "compression.level",
                format!(
                    "{level} is out of range for {} ({}-{})",
                    compression.algorithm,
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
    if compression.threads > MAX_THREADS {
        return Err(invalid(
            "compression.threads",
            format!(
                "{} is out of range (0-{MAX_THREADS}; 0 means all available cores)",
                compression.threads
            ),
        ));
    }
    Ok(())
}

fn freeze(freeze: &Freeze) -> Check {
    if freeze.timeout.is_zero() {
        return Err(invalid("freeze.timeout", "must be greater than zero"));
    }
    Ok(())
}

fn server(server: &Server) -> Check {
    absolute("server.socket", &server.socket)?;
    if server.socket_mode > 0o777 {
        return Err(invalid(
            "server.socket_mode",
            format!(
                r#"{:#o} is out of range (at most 0o777); write the mode as "0660" or 0o660"#,
                server.socket_mode
            ),
        ));
    }
    if server.socket_group == Some(Group::Name(String::new())) {
        return Err(invalid("server.socket_group", "must not be empty"));
    }
    absolute("server.state_dir", &server.state_dir)?;
    if server.max_concurrent == 0 {
        return Err(invalid("server.max_concurrent", "must be at least 1"));
    }
    if server.queue_size == 0 {
        return Err(invalid("server.queue_size", "must be at least 1"));
    }
    if server.owner_label.as_deref() == Some("") {
        return Err(invalid("server.owner_label", "must not be empty"));
    }
    if let Some(lock_dir) = &server.lock_dir {
        absolute("server.lock_dir", lock_dir)?;
    }
    for (key, d) in [
        ("server.header_timeout", server.header_timeout),
        ("server.idle_timeout", server.idle_timeout),
        ("server.retain_for", server.retain_for),
    ] {
        if d.is_zero() {
            return Err(invalid(key, "must be greater than zero"));
        }
    }
    if server.max_connections == 0 {
        return Err(invalid("server.max_connections", "must be at least 1"));
    }
    if server.retain_count == 0 {
        return Err(invalid("server.retain_count", "must be at least 1"));
    }
    if server.require_owner && server.owner_label.is_none() {
        return Err(invalid(
            "server.require_owner",
            "needs server.owner_label: the label that names a session's owner",
        ));
    }
    Ok(())
}

fn runtime(runtime: &Runtime) -> Check {
    if runtime.roots.is_empty() {
        return Err(invalid("runtime.roots", "must list at least one directory"));
    }
    for (i, root) in runtime.roots.iter().enumerate() {
        absolute(&format!("runtime.roots[{i}]"), root)?;
    }
    absolute("runtime.state_root", &runtime.state_root)
}

fn absolute(key: &str, path: &Path) -> Check {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "must be an absolute path, got {:?}",
                path.display().to_string()
            ),
        ))
    }
}

/// Absolute and normalised: no `.`, `..` or empty components, no trailing slash,
/// not `/` itself. The home is matched against mount points by string, so
/// `/home/work/` and `/home/./work` would silently match nothing.
fn home_path(key: &str, path: &Path) -> Check {
    let text = path.to_string_lossy();
    let problem = if !text.starts_with('/') {
        "must be an absolute path"
    } else if text == "/" {
        "must not be /"
    } else if text.ends_with('/') {
        "must not end with a slash"
    } else if text[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        "must be normalised (no `.`, `..` or empty components)"
    } else {
        return Ok(());
    };
    Err(invalid(key, format!("{problem}, got {text:?}")))
}
