//! The entry points of the fuzz targets: each feeds untrusted bytes to one
//! reader of freezeframe as the program does, and goes as far as a program
//! would with what it got back. Whatever the bytes, an entry returns: an
//! error from the reader is an answer, a panic (or a hang, or unbounded
//! memory) is a bug.
//!
//! The cargo-fuzz targets (`fuzz/fuzz_targets/`) call these, and so do the
//! stable corpus replay and property tests (`tests/tests/fuzz_corpus.rs`),
//! which include this file: the same code runs under libFuzzer and in CI.
//!
//! Readers that take a path get the bytes written to a file in a scratch
//! directory of the calling thread (on `/dev/shm` where there is one).

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};

use freezeframe::api::CommitRequest;
use freezeframe::live::Target;
use freezeframe::plan::{CommitOverrides, CommitPlan, Source};
use freezeframe_runtime::session::mountinfo;
use freezeframe_snapshot::changes::{self, Change};
use freezeframe_snapshot::inspect;
use freezeframe_snapshot::registry::reference::{valid_repository, Reference};
use freezeframe_snapshot::source::base::BaseRef;
use freezeframe_snapshot::source::bolt::{Bucket, Db, Value};
use freezeframe_snapshot::source::tarsplit;
use freezeframe_snapshot::source::ImageSource;

/// A target's entry point.
pub type Entry = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Entry)] = &[
    ("archive", archive),
    ("mountinfo", mountinfo),
    ("request", request),
    ("change", change),
    ("tarsplit", tarsplit),
    ("bolt", bolt),
];

/// The entry of target `name`.
pub fn target(name: &str) -> Option<Entry> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// An OCI archive, as `inspect` reads it and as a base image is read: its
/// index, manifests, configs and layers (every tar entry), and each
/// image's blobs copied out as a commit on that base copies them.
pub fn archive(data: &[u8]) {
    let path = scratch_file("image.tar", data);
    if let Ok(found) = inspect::inspect(&path) {
        let _ = found.to_string();
        for image in &found.images {
            for layer in &image.layers {
                let _ = inspect::layer_entries(&path, layer.digest.as_ref());
            }
        }
    }
    let Ok(source) = ImageSource::open(&path) else {
        return;
    };
    for reference in [None, Some("latest")] {
        let Ok(image) = source.resolve(reference) else {
            continue;
        };
        for desc in image.manifest.layers() {
            let _ = source.copy_blob(desc, &mut std::io::sink());
        }
    }
}

/// `/proc/PID/mountinfo` of a session, and what the lookup takes from its
/// overlay root.
pub fn mountinfo(data: &[u8]) {
    let _ = mountinfo::unescape(data);
    let Ok(mounts) = mountinfo::parse(data) else {
        return;
    };
    for m in &mounts {
        if let Some(lower) = m.super_option("lowerdir") {
            let _ = mountinfo::split_lowerdir(lower);
        }
        let _ = (m.super_option("upperdir"), m.has_super_flag("userxattr"));
    }
}

/// The body of `POST /v1/commits`: deserialized as the server does, its
/// push reference, base and name checked, and resolved into a plan against
/// the default configuration.
pub fn request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<CommitRequest>(data) else {
        return;
    };
    if let Some(push) = &req.push {
        let _ = push.reference.parse::<Reference>();
        if let Some(from) = &push.from {
            let _ = valid_repository(from);
        }
    }
    let base = req.base.as_deref().and_then(|b| b.parse::<BaseRef>().ok());
    let _ = freezeframe::server::output::default_name(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        &req.session,
        req.tag.as_deref(),
    );
    let config = freezeframe_config::Config::default();
    let _ = CommitPlan::resolve(
        &config,
        CommitOverrides {
            runtime_root: req.runtime_root,
            base,
            include_mounts: req.include_mounts,
            pause: req.pause,
            compression: req.compression.map(freezeframe::plan::engine_algorithm),
            threads: Some(1),
            changes: req.changes,
            message: req.message,
            author: req.author,
            tag: req.tag,
            ..CommitOverrides::new(Source::Session(Target::Id(req.session)), PathBuf::new())
        },
    );
}

/// `--change` instructions, one a line, parsed and applied in order to an
/// image config.
pub fn change(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed: Vec<Change> = text.lines().filter_map(|l| l.parse().ok()).collect();
    let mut config = oci_spec::image::Config::default();
    let _ = changes::apply(&parsed, &mut config);
    let _ = serde_json::to_string(&config);
}

/// A layer's tar-split metadata (gzip of JSON lines; bytes that are no gzip
/// stream are compressed first, so the fuzzer works on the lines), sized
/// and reassembled against a small layer directory.
pub fn tarsplit(data: &[u8]) {
    let gz = if data.starts_with(&[0x1f, 0x8b]) {
        data.to_vec()
    } else {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gzip into memory");
        e.finish().expect("gzip into memory")
    };
    let path = scratch_file("layer.tar-split.json.gz", &gz);
    let _ = tarsplit::tar_size(&path);
    let diff = SCRATCH.with(|s| s.borrow_mut().get_or_insert_with(Scratch::new).diff.clone());
    let _ = tarsplit::reassemble(&path, &diff, &mut std::io::sink());
}

/// A bbolt file (containerd's `meta.db`): opened, and every bucket walked
/// (at most [`BOLT_VISITS`] entries, [`BOLT_DEPTH`] buckets deep).
pub fn bolt(data: &[u8]) {
    let path = scratch_file("meta.db", data);
    let Ok(db) = Db::open(&path) else {
        return;
    };
    let _ = (db.page_size(), db.txid(), db.is_current());
    let root = db.root();
    for key in [&b"v1"[..], b"", b"\xff"] {
        let _ = db.get(&root, key);
        let _ = db.data(&root, key);
    }
    let _ = db.bucket_at(&[b"v1", b"default", b"images"]);
    let mut visits = 0;
    walk_bolt(&db, &root, 0, &mut visits);
}

pub const BOLT_VISITS: usize = 10_000;
pub const BOLT_DEPTH: usize = 8;

fn walk_bolt(db: &Db, bucket: &Bucket, depth: usize, visits: &mut usize) {
    let Ok(entries) = db.entries(bucket) else {
        return;
    };
    for (key, value) in entries {
        *visits += 1;
        if *visits > BOLT_VISITS {
            return;
        }
        if let Value::Bucket(inner) = value {
            if depth < BOLT_DEPTH {
                walk_bolt(db, &inner, depth + 1, visits);
            }
        } else {
            let _ = db.get(bucket, &key);
        }
    }
}

/// A scratch directory per thread, with the layer directory that
/// [`tarsplit`] reassembles against.
struct Scratch {
    dir: tempfile::TempDir,
    diff: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("ff-fuzz-").tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("ff-fuzz-").tempdir()
        }
        .expect("a scratch directory");
        let diff = dir.path().join("diff");
        std::fs::create_dir_all(diff.join("dir")).expect("scratch layer dir");
        std::fs::write(diff.join("a"), b"hello\n").expect("scratch layer file");
        std::fs::write(diff.join("dir/b"), b"").expect("scratch layer file");
        let _ = std::os::unix::fs::symlink("a", diff.join("link"));
        Scratch { dir, diff }
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Writes `data` to `name` in this thread's scratch directory.
fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let path = s.get_or_insert_with(Scratch::new).dir.path().join(name);
        std::fs::write(&path, data).expect("write a scratch file");
        path
    })
}
