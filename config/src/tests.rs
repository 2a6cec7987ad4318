//! Unit tests of the configuration: defaults, every key parsed, validation
//! messages, and the load order.

use std::path::Path;
use std::time::Duration;

use super::*;

const ORIGIN: &str = "/etc/freezeframe/config.toml";
const EXAMPLE: &str = include_str!("../example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new(ORIGIN))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn defaults() {
    let config = Config::default();
    assert_eq!(
        config.storage.save_location,
        Path::new("/var/lib/freezeframe/images")
    );
    assert_eq!(config.storage.archive_mode, 0o600);
    assert_eq!(config.storage.archive_group, None);
    assert_eq!(config.session.home_path, Path::new("/home/work"));
    assert!(config.session.excludes.is_empty());
    assert!(config.session.secret_paths.is_empty());
    assert_eq!(config.compression.algorithm, Algorithm::Gzip);
    assert_eq!(config.compression.level, None);
    assert_eq!(config.compression.effective_level(), 4);
    assert_eq!(config.compression.threads, 0);
    assert!(config.compression.effective_threads() >= 1);
    assert_eq!(config.freeze.timeout, Duration::from_secs(10));
    assert_eq!(config.freeze.pause, PauseMode::Auto);
    assert_eq!(config.freeze.live_fallback_bytes, 256 * 1024 * 1024);
    assert_eq!(
        config.server.socket,
        Path::new("/run/freezeframe/freezeframe.sock")
    );
    assert_eq!(config.server.socket_mode, 0o660);
    assert_eq!(config.server.socket_group, None);
    assert_eq!(config.server.allowed_uids, [0]);
    assert!(config.server.allowed_gids.is_empty());
    assert_eq!(
        config.server.state_dir,
        Path::new("/var/lib/freezeframe/state")
    );
    assert_eq!(config.server.max_concurrent, 2);
    assert_eq!(config.server.queue_size, 16);
    assert_eq!(config.server.owner_label, None);
    assert_eq!(config.server.lock_dir, None);
    assert!(config.server.cancel_on_shutdown);
    assert_eq!(
        config.runtime.roots,
        [
            "/run/freezeframe",
            "/run/runc",
            "/run/youki",
            "/run/containerd/runc",
            "/run/docker/runtime-runc/moby",
        ]
        .map(PathBuf::from)
    );
    assert_eq!(config.runtime.state_root, Path::new("/run/freezeframe"));
    assert_eq!(config.stores.docker, Path::new("/var/lib/docker"));
    assert_eq!(
        config.stores.containers_storage,
        Path::new("/var/lib/containers/storage")
    );
    assert_eq!(config.stores.containerd, Path::new("/var/lib/containerd"));
}

#[test]
fn defaults_are_valid() {
    validate::config(&Config::default()).unwrap();
}

#[test]
fn empty_file_and_empty_sections_are_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
    let all_empty = "[storage]\n[session]\n[compression]\n[freeze]\n[server]\n[runtime]\n";
    assert_eq!(parse(all_empty).unwrap(), Config::default());
}

#[test]
fn example_file_is_the_defaults() {
    assert_eq!(parse(EXAMPLE).unwrap(), Config::default());
}

/// The keys commented out in the example (`# key = value`) are valid too.
#[test]
fn example_file_commented_keys_parse() {
    let is_commented_key = |line: &str| {
        line.strip_prefix("# ")
            .and_then(|rest| rest.split_once(" = "))
            .is_some_and(|(key, _)| key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    let mut uncommented = 0;
    let text: String = EXAMPLE
        .lines()
        .map(|line| {
            if is_commented_key(line) {
                uncommented += 1;
                format!("{}\n", &line[2..])
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_eq!(
        uncommented, 8,
        "archive_group, level, max_file_size, max_layer_size, socket_group, owner_label, lock_dir, auth_file"
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.storage.archive_group,
        Some(Group::Name("freezeframe-agent".into()))
    );
    assert_eq!(config.compression.level, Some(4));
    assert_eq!(
        config.server.socket_group,
        Some(Group::Name("freezeframe".into()))
    );
    assert!(config.server.owner_label.is_some());
    assert!(config.server.lock_dir.is_some());
}

#[test]
fn full_file_parses() {
    let text = r#"
        [storage]
        save_location = "/srv/images"
        archive_mode = "0640"
        archive_group = "agent"

        [session]
        home_path = "/home/user"
        excludes = ["/home/user/.cache/**", "**/__pycache__", "/tmp/*.{log,tmp}"]
        secret_paths = [".config/app/token", "!.npmrc"]

        [compression]
        algorithm = "zstd"
        level = 19
        threads = 8

        [freeze]
        timeout = "1m 30s"
        pause = "full"
        live_fallback_bytes = 1048576
        precopy_rounds = 2
        precopy_max_bytes = 65536
        fallback_max_pause = "5s"

        [limits]
        max_file_size = 4096
        max_layer_size = 65536

        [server]
        socket = "/run/ff.sock"
        socket_mode = "0600"
        socket_group = "docker"
        allowed_uids = [0, 1000]
        allowed_gids = [998]
        state_dir = "/srv/state"
        max_concurrent = 4
        queue_size = 64
        owner_label = "ai.backend.owner"
        lock_dir = "/run/lock/ff"
        cancel_on_shutdown = false
        header_timeout = "5s"
        idle_timeout = "30s"
        max_connections = 32
        require_owner = true
        retain_for = "1day"
        retain_count = 10

        [runtime]
        roots = ["/run/runc"]
        state_root = "/run/ff"
        seed_home = false

        [stores]
        docker = "/srv/docker"
        containers_storage = "/srv/storage"
        containerd = "/srv/containerd"

        [registry]
        cert_dirs = ["/srv/certs.d"]
        insecure = ["localhost:5000"]
        auth_file = "/srv/auth.json"
    "#;
    let expected = Config {
        storage: Storage {
            save_location: "/srv/images".into(),
            archive_mode: 0o640,
            archive_group: Some(Group::Name("agent".into())),
        },
        session: Session {
            home_path: "/home/user".into(),
            excludes: vec![
                "/home/user/.cache/**".into(),
                "**/__pycache__".into(),
                "/tmp/*.{log,tmp}".into(),
            ],
            secret_paths: vec![".config/app/token".into(), "!.npmrc".into()],
        },
        compression: Compression {
            algorithm: Algorithm::Zstd,
            level: Some(19),
            threads: 8,
        },
        freeze: Freeze {
            timeout: Duration::from_secs(90),
            pause: PauseMode::Full,
            live_fallback_bytes: 1 << 20,
            precopy_rounds: 2,
            precopy_max_bytes: 65536,
            fallback_max_pause: Duration::from_secs(5),
        },
        limits: Limits {
            max_file_size: Some(4096),
            max_layer_size: Some(65536),
        },
        server: Server {
            socket: "/run/ff.sock".into(),
            socket_mode: 0o600,
            socket_group: Some(Group::Name("docker".into())),
            allowed_uids: vec![0, 1000],
            allowed_gids: vec![998],
            state_dir: "/srv/state".into(),
            max_concurrent: 4,
            queue_size: 64,
            owner_label: Some("ai.backend.owner".into()),
            lock_dir: Some("/run/lock/ff".into()),
            cancel_on_shutdown: false,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_connections: 32,
            require_owner: true,
            retain_for: Duration::from_secs(86400),
            retain_count: 10,
        },
        runtime: Runtime {
            roots: vec!["/run/runc".into()],
            state_root: "/run/ff".into(),
            seed_home: false,
        },
        stores: Stores {
            docker: "/srv/docker".into(),
            containers_storage: "/srv/storage".into(),
            containerd: "/srv/containerd".into(),
        },
        registry: Registry {
            cert_dirs: vec!["/srv/certs.d".into()],
            insecure: vec!["localhost:5000".into()],
            auth_file: Some("/srv/auth.json".into()),
        },
    };
    assert_eq!(parse(text).unwrap(), expected);
    assert_eq!(expected.compression.effective_level(), 19);
    assert_eq!(expected.compression.effective_threads(), 8);
}

#[test]
fn effective_level() {
    let cases = [
        (Algorithm::Gzip, None, 4),
        (Algorithm::Gzip, Some(0), 0),
        (Algorithm::Zstd, None, 3),
        (Algorithm::Zstd, Some(22), 22),
        (Algorithm::None, None, 0),
    ];
    for (algorithm, level, expected) in cases {
        let compression = Compression {
            algorithm,
            level,
            threads: 0,
        };
        assert_eq!(compression.effective_level(), expected, "{compression:?}");
    }
}

#[test]
fn values_in_their_other_spellings() {
    type Check = fn(&Config) -> bool;
    let cases: &[(&str, Check)] = &[
        ("[freeze]\ntimeout = \"500ms\"", |c| {
            c.freeze.timeout == Duration::from_millis(500)
        }),
        ("[freeze]\npause = \"none\"", |c| {
            c.freeze.pause == PauseMode::None
        }),
        ("[compression]\nalgorithm = \"none\"", |c| {
            c.compression.algorithm == Algorithm::None
        }),
        ("[compression]\nlevel = 9", |c| {
            c.compression.effective_level() == 9
        }),
        ("[compression]\nthreads = 1024", |c| {
            c.compression.threads == 1024
        }),
        ("[server]\nsocket_mode = 0o640", |c| {
            c.server.socket_mode == 0o640
        }),
        ("[server]\nsocket_mode = \"660\"", |c| {
            c.server.socket_mode == 0o660
        }),
        ("[server]\nsocket_mode = \"0o777\"", |c| {
            c.server.socket_mode == 0o777
        }),
        ("[server]\nsocket_mode = 0", |c| c.server.socket_mode == 0),
        ("[server]\nsocket_group = 998", |c| {
            c.server.socket_group == Some(Group::Gid(998))
        }),
        ("[server]\nsocket_group = \"998\"", |c| {
            c.server.socket_group == Some(Group::Gid(998))
        }),
        ("[session]\nhome_path = \"/a\"", |c| {
            c.session.home_path == Path::new("/a")
        }),
        ("[runtime]\nroots = [\"/x\", \"/y\"]", |c| {
            c.runtime.roots.len() == 2
        }),
    ];
    for (text, check) in cases {
        let config = parse(text).unwrap_or_else(|err| panic!("{text:?}: {err}"));
        assert!(check(&config), "{text:?} gave {config:?}");
    }
}

/// Each bad value is reported as `file: key: what is wrong`.
#[test]
fn validation_errors_name_file_and_key() {
    let cases = [
        (
            "[storage]\nsave_location = \"images\"",
            "storage.save_location: must be an absolute path, got \"images\"",
        ),
        (
            "[storage]\narchive_mode = \"01600\"",
            "storage.archive_mode: 0o1600 is out of range (at most 0o777); write the mode as \"0600\" or 0o600",
        ),
        (
            "[storage]\narchive_mode = \"0440\"",
            "storage.archive_mode: 0o440 must let the owner read and write (0o600)",
        ),
        (
            "[storage]\narchive_group = \"\"",
            "storage.archive_group: must not be empty",
        ),
        (
            "[session]\nhome_path = \"home/work\"",
            "session.home_path: must be an absolute path, got \"home/work\"",
        ),
        (
            "[session]\nhome_path = \"/\"",
            "session.home_path: must not be /, got \"/\"",
        ),
        (
            "[session]\nhome_path = \"/home/work/\"",
            "session.home_path: must not end with a slash, got \"/home/work/\"",
        ),
        (
            "[session]\nhome_path = \"/home/../etc\"",
            "session.home_path: must be normalised (no `.`, `..` or empty components), got \"/home/../etc\"",
        ),
        (
            "[session]\nhome_path = \"/home//work\"",
            "session.home_path: must be normalised (no `.`, `..` or empty components), got \"/home//work\"",
        ),
        (
            "[session]\nhome_path = \"/home/./work\"",
            "session.home_path: must be normalised (no `.`, `..` or empty components), got \"/home/./work\"",
        ),
        (
            "[session]\nexcludes = [\"a\", \"b\", \"c\", \"[unclosed\"]",
            "session.excludes[3]: invalid glob \"[unclosed\": unclosed character class; missing ']'",
        ),
        (
            "[session]\nexcludes = [\"\"]",
            "session.excludes[0]: empty pattern",
        ),
        (
            "[session]\nsecret_paths = [\".a\", \"!\"]",
            "session.secret_paths[1]: empty pattern",
        ),
        (
            "[session]\nsecret_paths = [\"../other/.netrc\"]",
            "session.secret_paths[0]: \"../other/.netrc\" must be normalised (no `.`, `..` or empty components)",
        ),
        (
            "[session]\nsecret_paths = [\"!.ssh/[x\"]",
            "session.secret_paths[0]: invalid glob \"!.ssh/[x\": unclosed character class; missing ']'",
        ),
        (
            "[compression]\nlevel = 12",
            "compression.level: 12 is out of range for gzip (0-9)",
        ),
        (
            "[compression]\nalgorithm = \"zstd\"\nlevel = 0",
            "compression.level: 0 is out of range for zstd (1-22)",
        ),
        (
            "[compression]\nalgorithm = \"zstd\"\nlevel = 23",
            "compression.level: 23 is out of range for zstd (1-22)",
        ),
        (
            "[compression]\nalgorithm = \"none\"\nlevel = 1",
            "compression.level: not used when compression.algorithm is \"none\"; remove it",
        ),
        (
            "[compression]\nthreads = 1025",
            "compression.threads: 1025 is out of range (0-1024; 0 means all available cores)",
        ),
        (
            "[freeze]\ntimeout = \"0s\"",
            "freeze.timeout: must be greater than zero",
        ),
        (
            "[server]\nsocket = \"ff.sock\"",
            "server.socket: must be an absolute path, got \"ff.sock\"",
        ),
        (
            "[server]\nsocket_mode = 660",
            "server.socket_mode: 0o1224 is out of range (at most 0o777); write the mode as \"0660\" or 0o660",
        ),
        (
            "[server]\nsocket_mode = \"01777\"",
            "server.socket_mode: 0o1777 is out of range (at most 0o777); write the mode as \"0660\" or 0o660",
        ),
        (
            "[server]\nsocket_group = \"\"",
            "server.socket_group: must not be empty",
        ),
        (
            "[server]\nstate_dir = \"state\"",
            "server.state_dir: must be an absolute path, got \"state\"",
        ),
        (
            "[server]\nmax_concurrent = 0",
            "server.max_concurrent: must be at least 1",
        ),
        (
            "[server]\nqueue_size = 0",
            "server.queue_size: must be at least 1",
        ),
        (
            "[server]\nowner_label = \"\"",
            "server.owner_label: must not be empty",
        ),
        (
            "[server]\nheader_timeout = \"0s\"",
            "server.header_timeout: must be greater than zero",
        ),
        (
            "[server]\nmax_connections = 0",
            "server.max_connections: must be at least 1",
        ),
        (
            "[server]\nretain_count = 0",
            "server.retain_count: must be at least 1",
        ),
        (
            "[server]\nrequire_owner = true",
            "server.require_owner: needs server.owner_label: the label that names a session's owner",
        ),
        (
            "[server]\nlock_dir = \"locks\"",
            "server.lock_dir: must be an absolute path, got \"locks\"",
        ),
        (
            "[stores]\ndocker = \"docker\"",
            "stores.docker: must be an absolute path, got \"docker\"",
        ),
        (
            "[registry]\ncert_dirs = [\"/etc/certs.d\", \"certs.d\"]",
            "registry.cert_dirs[1]: must be an absolute path, got \"certs.d\"",
        ),
        (
            "[registry]\ninsecure = [\"http://localhost:5000\"]",
            "registry.insecure[0]: \"http://localhost:5000\" is not a registry HOST[:PORT]",
        ),
        (
            "[registry]\nauth_file = \"auth.json\"",
            "registry.auth_file: must be an absolute path, got \"auth.json\"",
        ),
        (
            "[runtime]\nroots = []",
            "runtime.roots: must list at least one directory",
        ),
        (
            "[runtime]\nroots = [\"/run/runc\", \"run/youki\"]",
            "runtime.roots[1]: must be an absolute path, got \"run/youki\"",
        ),
        (
            "[runtime]\nstate_root = \"ff\"",
            "runtime.state_root: must be an absolute path, got \"ff\"",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(text).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { .. }),
            "{text:?}: {err:?}"
        );
        assert_eq!(err.to_string(), format!("{ORIGIN}: {expected}"), "{text:?}");
    }
}

/// Syntax, type and unknown-name errors come from the toml crate, with the file
/// and the line:column of the offending text.
#[test]
fn parse_errors_name_file_and_line_column() {
    let cases = [
        // (text, line:column, a part of the message)
        ("[server]\nsocket = ", "2:10", "unexpected end of file"),
        (
            "[server]\nsocket = \n",
            "2:10",
            "invalid string; expected `\"`, `'`",
        ),
        ("[storage\n", "1:9", ""),
        (
            "\n\n[freeze]\ntimeout = 10",
            "4:11",
            "invalid type: integer `10`, expected a duration such as \"10s\"",
        ),
        (
            "[freeze]\ntimeout = \"10 parsecs\"",
            "2:11",
            "invalid duration \"10 parsecs\"",
        ),
        (
            "[compression]\nalgorithm = \"lz4\"",
            "2:13",
            "unknown variant `lz4`, expected one of `gzip`, `zstd`, `none`",
        ),
        (
            "[freeze]\npause = \"partial\"",
            "2:9",
            "unknown variant `partial`",
        ),
        (
            "[compression]\nlevel = -1",
            "2:9",
            "invalid value: integer `-1`",
        ),
        (
            "[server]\nmax_concurrent = \"2\"",
            "2:18",
            "invalid type: string \"2\"",
        ),
        (
            "[server]\nsocket_mode = \"0698\"",
            "2:15",
            "invalid file mode \"0698\": expected octal digits such as \"0660\"",
        ),
        (
            "[server]\nsocket_mode = -1",
            "2:15",
            "invalid file mode -1: out of range",
        ),
        (
            "[server]\nsocket_group = 4294967296",
            "2:16",
            "invalid gid 4294967296: out of range",
        ),
        (
            "[server]\nsocket_group = true",
            "2:16",
            "expected a group name or a numeric gid",
        ),
        // Columns count characters, not bytes.
        (
            "# ünïcödé\n[server]\nowner_label = \"é\"\nqueue_size = \"é\"",
            "4:14",
            "invalid type: string \"é\"",
        ),
    ];
    for (text, line_column, part) in cases {
        let err = parse(text).unwrap_err();
        assert!(
            matches!(err, ConfigError::Parse { .. }),
            "{text:?}: {err:?}"
        );
        let message = err.to_string();
        let prefix = format!("{ORIGIN}:{line_column}: ");
        assert!(message.starts_with(&prefix), "{text:?}: {message}");
        assert!(message.contains(part), "{text:?}: {message}");
        assert!(!message.contains('\n'), "{text:?}: {message}");
    }
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let cases = [
        ("frobnicate = 1", "1:1", "unknown field `frobnicate`"),
        ("[sesion]\n", "1:2", "unknown field `sesion`"),
        ("[compression]\nlvl = 3", "2:1", "unknown field `lvl`"),
        (
            "[server]\nsocket = \"/a\"\nallowed_users = [0]",
            "3:1",
            "unknown field `allowed_users`",
        ),
        (
            "[storage]\ntemp_prefix = \".tmp\"",
            "2:1",
            "unknown field `temp_prefix`",
        ),
    ];
    for (text, line_column, part) in cases {
        let message = error(text);
        assert!(
            message.starts_with(&format!("{ORIGIN}:{line_column}: {part}")),
            "{text:?}: {message}"
        );
    }
}

#[test]
fn location_of_offset() {
    let text = "ab\ncdé\nf";
    let cases = [
        (0, 1, 1),
        (2, 1, 3),
        (3, 2, 1),
        (5, 2, 3),
        (6, 2, 3), // inside `é`: rounded down to its start
        (7, 2, 4),
        (8, 3, 1),
        (100, 3, 2), // past the end: clamped
    ];
    for (offset, line, column) in cases {
        assert_eq!(
            Location::of_offset(text, offset),
            Location { line, column },
            "offset {offset}"
        );
    }
}

mod load {
    use std::ffi::OsStr;
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::super::*;

    /// A temp dir with three config files, each with its own `queue_size` so a
    /// test can tell which one was read.
    struct Files {
        _dir: tempfile::TempDir,
        explicit: PathBuf,
        env: PathBuf,
        default: PathBuf,
        missing: PathBuf,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, queue_size: usize| {
            let path = dir.path().join(name);
            fs::write(&path, format!("[server]\nqueue_size = {queue_size}\n")).unwrap();
            path
        };
        Files {
            explicit: write("explicit.toml", 1),
            env: write("env.toml", 2),
            default: write("default.toml", 3),
            missing: dir.path().join("missing.toml"),
            _dir: dir,
        }
    }

    fn queue_size(
        explicit: Option<&Path>,
        env: Option<&Path>,
        default: &Path,
    ) -> Result<usize, ConfigError> {
        Config::load_from(explicit, env.map(Path::as_os_str), default)
            .map(|config| config.server.queue_size)
    }

    #[test]
    fn order() {
        let f = files();
        let default_queue = Config::default().server.queue_size;
        let cases: [(Option<&Path>, Option<&Path>, &Path, usize); 6] = [
            (Some(&f.explicit), Some(&f.env), &f.default, 1),
            (Some(&f.explicit), None, &f.missing, 1),
            (None, Some(&f.env), &f.default, 2),
            (None, Some(&f.env), &f.missing, 2),
            (None, None, &f.default, 3),
            (None, None, &f.missing, default_queue),
        ];
        for (explicit, env, default, expected) in cases {
            assert_eq!(
                queue_size(explicit, env, default).unwrap(),
                expected,
                "explicit {explicit:?}, env {env:?}, default {default:?}"
            );
        }
    }

    #[test]
    fn empty_env_var_is_unset() {
        let f = files();
        let config = Config::load_from(None, Some(OsStr::new("")), &f.default).unwrap();
        assert_eq!(config.server.queue_size, 3);
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let f = files();
        let err = queue_size(Some(&f.missing), Some(&f.env), &f.default).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotFound {
                from_env: false,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            format!("{}: config file does not exist", f.missing.display())
        );
    }

    #[test]
    fn missing_env_file_is_an_error() {
        let f = files();
        let err = queue_size(None, Some(&f.missing), &f.default).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { from_env: true, .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "{}: config file does not exist (named by FREEZEFRAME_CONFIG)",
                f.missing.display()
            )
        );
    }

    /// A default file that exists but cannot be read is an error, not silently
    /// the defaults.
    #[test]
    fn unreadable_file_is_an_error() {
        let f = files();
        let dir = f.default.parent().unwrap();
        for (explicit, default) in [(Some(dir), &f.missing), (None, &dir.to_path_buf())] {
            let err = Config::load_from(explicit, None, default).unwrap_err();
            assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
            let message = err.to_string();
            let prefix = format!("failed to read {}: ", dir.display());
            assert!(message.starts_with(&prefix), "{message}");
        }
    }

    #[test]
    fn errors_name_the_file_read() {
        let f = files();
        fs::write(&f.env, "[compression]\nlevel = 12\n").unwrap();
        let err = queue_size(None, Some(&f.env), &f.default).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: compression.level: 12 is out of range for gzip (0-9)",
                f.env.display()
            )
        );
    }

    #[test]
    fn constants() {
        assert_eq!(DEFAULT_PATH, "/etc/freezeframe/config.toml");
        assert_eq!(ENV_VAR, "FREEZEFRAME_CONFIG");
    }
}
