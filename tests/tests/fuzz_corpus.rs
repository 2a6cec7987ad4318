//! The fuzz targets on stable, for CI: every input of the corpus
//! (`tests/fuzz-corpus/TARGET/`: seeds, and what fuzzing found, minimized)
//! replayed through the targets' own entry points (`fuzz/src/entries.rs`,
//! included here), and a property test per target that feeds it a few
//! thousand deterministic random mutations of its seeds. An error from a
//! reader is fine; a panic fails the test, and the input that caused it is
//! written to the temp dir to be added to the corpus once fixed.
//!
//! `bench/fuzz.sh` runs the same targets under libFuzzer, for longer.

#[path = "../../fuzz/src/entries.rs"]
#[allow(dead_code)]
mod entries;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus")
}

/// The inputs of `target`'s corpus, by file name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("read the corpus dir");
            let data = std::fs::read(e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            (e.file_name().to_string_lossy().into_owned(), data)
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` on `data`; a panic is reported with `what` and the input
/// saved for replay.
fn run_one(target: &str, what: &str, data: &[u8]) {
    let entry = entries::target(target).expect("a target");
    let started = Instant::now();
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| entry(data))) {
        let saved = std::env::temp_dir().join(format!("fuzz-{target}-{what}"));
        let _ = std::fs::write(&saved, data);
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!(
            "{target}: {what} panicked: {message} (input saved as {})",
            saved.display()
        );
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "{target}: {what} took {took:?}"
    );
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let mut dirs: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("the corpus dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "README.md")
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = entries::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    targets.sort();
    assert_eq!(dirs, targets);
    for t in &targets {
        assert!(!corpus(t).is_empty(), "{t}: empty corpus");
    }
}

#[test]
fn the_corpus_replays_without_a_panic() {
    for (target, _) in entries::TARGETS {
        for (name, data) in corpus(target) {
            run_one(target, &name, &data);
        }
    }
}

/// The seeds are inputs the readers accept, so that mutations start from
/// the shapes that reach deep into them.
#[test]
fn the_seeds_are_inputs_the_readers_accept() {
    use freezeframe_snapshot::inspect;
    use freezeframe_snapshot::source::bolt::Db;
    use freezeframe_snapshot::source::tarsplit;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, data) in corpus("archive") {
        let path = dir.path().join(&name);
        std::fs::write(&path, &data).expect("write");
        let found = inspect::inspect(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(found.is_ok() && found.images.len() == 1, "{name}: {found}");
        assert!(found.images[0].layers.iter().all(|l| l.verified), "{found}");
    }
    for (name, data) in corpus("mountinfo") {
        let mounts = freezeframe_runtime::session::mountinfo::parse(&data)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!mounts.is_empty(), "{name}");
    }
    for name in ["minimal.json", "full.json"] {
        let data = std::fs::read(corpus_dir().join("request").join(name)).expect("seed");
        let req: freezeframe::api::CommitRequest =
            serde_json::from_slice(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!req.session.is_empty());
    }
    let all = std::fs::read_to_string(corpus_dir().join("change/all.txt")).expect("seed");
    for line in all.lines() {
        line.parse::<freezeframe_snapshot::changes::Change>()
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    }
    let diff = dir.path().join("diff");
    std::fs::create_dir_all(diff.join("dir")).expect("mkdir");
    std::fs::write(diff.join("a"), b"hello\n").expect("write");
    std::fs::write(diff.join("dir/b"), b"").expect("write");
    let layer = std::fs::read(corpus_dir().join("tarsplit/layer.jsonl")).expect("seed");
    let split = dir.path().join("tar-split.json.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &layer).expect("gzip");
    std::fs::write(&split, gz.finish().expect("gzip")).expect("write");
    let mut tar = Vec::new();
    tarsplit::reassemble(&split, &diff, &mut tar).expect("reassemble the seed");
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .expect("tar")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["dir/", "a", "dir/b", "link"]);
    let db_path = dir.path().join("meta.db");
    std::fs::write(
        &db_path,
        std::fs::read(corpus_dir().join("bolt/nested.db")).expect("seed"),
    )
    .expect("write");
    let db = Db::open(&db_path).expect("open the seed");
    let images = db
        .bucket_at(&[b"v1", b"default", b"images"])
        .expect("read")
        .expect("v1/default/images");
    assert_eq!(db.entries(&images).expect("entries").len(), 2);
}

/// Tokens that matter to the readers, for the mutations to insert.
const TOKENS: &[&[u8]] = &[
    b"\0",
    b"\n",
    b" ",
    b"\\",
    b"\\040",
    b"\\134",
    b":",
    b",",
    b"=",
    b" - ",
    b"$",
    b"${",
    b"}",
    b":-",
    b"\"",
    b"'",
    b"[",
    b"]",
    b"{",
    b"}",
    b"null",
    b"-1",
    b"4294967295",
    b"18446744073709551615",
    b"1e999",
    b"..",
    b"/",
    b"../",
    b"ustar\0",
    b"\xff\xff\xff\xff",
    b"\x1f\x8b",
    b"\x28\xb5\x2f\xfd",
    b"\xed\xda\x0c\xed",
    b"sha256:",
    b"blobs/sha256/",
];

/// One random change to `data`: a bit flipped, a byte set, a range removed,
/// repeated or overwritten, a token inserted, the tail cut, or a piece of
/// another seed spliced in.
fn mutate(rng: &mut fastrand::Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = data.len();
    let at = |rng: &mut fastrand::Rng| if len == 0 { 0 } else { rng.usize(..len) };
    match rng.u8(..9) {
        0 if len > 0 => {
            let i = at(rng);
            data[i] ^= 1 << rng.u8(..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            data[i] = *rng
                .choice(&[0u8, 0xff, 0x7f, 0x80, b'0', b'9', b'/', b' '])
                .unwrap();
        }
        2 if len > 0 => {
            let i = at(rng);
            let n = rng.usize(1..=(len - i).min(64));
            data.drain(i..i + n);
        }
        3 if len > 0 => {
            let i = at(rng);
            let n = rng.usize(1..=(len - i).min(64));
            let piece = data[i..i + n].to_vec();
            let j = rng.usize(..=len);
            data.splice(j..j, piece);
        }
        4 => {
            let token = *rng.choice(TOKENS).unwrap();
            let j = rng.usize(..=len);
            data.splice(j..j, token.iter().copied());
        }
        5 if len > 0 => data.truncate(rng.usize(..len)),
        6 if len >= 8 => {
            // A little-endian or big-endian integer overwritten with an
            // edge value (sizes, offsets, counts, page ids).
            let i = rng.usize(..len - 7);
            let v: u64 = *rng
                .choice(&[
                    0,
                    1,
                    0x7f,
                    0x80,
                    0xffff,
                    0x7fff_ffff,
                    u32::MAX as u64,
                    u64::MAX,
                ])
                .unwrap();
            let bytes = if rng.bool() {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let n = *rng.choice(&[1usize, 2, 4, 8]).unwrap();
            data[i..i + n].copy_from_slice(&bytes[..n]);
        }
        7 if !seeds.is_empty() => {
            let other = rng.choice(seeds).unwrap();
            if !other.is_empty() {
                let i = rng.usize(..other.len());
                let n = rng.usize(1..=(other.len() - i).min(256));
                let j = rng.usize(..=len);
                data.splice(j..j, other[i..i + n].iter().copied());
            }
        }
        _ => {
            let j = rng.usize(..=len);
            data.insert(j, rng.u8(..));
        }
    }
}

/// `cases` deterministic random mutations of `target`'s corpus (one to
/// eight changes each), each run through the target.
fn mutations(target: &str, cases: usize) {
    let seeds: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, d)| d).collect();
    let seed = target.bytes().fold(0x5eed_u64, |h, b| {
        h.wrapping_mul(0x100_0000_01b3) ^ u64::from(b)
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    for case in 0..cases {
        let mut data = rng.choice(&seeds).expect("a seed").clone();
        for _ in 0..rng.usize(1..=8) {
            mutate(&mut rng, &mut data, &seeds);
        }
        run_one(target, &format!("case-{case}"), &data);
    }
}

#[test]
fn mutated_archives_do_not_panic() {
    mutations("archive", 1500);
}

#[test]
fn mutated_mountinfo_does_not_panic() {
    mutations("mountinfo", 5000);
}

#[test]
fn mutated_requests_do_not_panic() {
    mutations("request", 5000);
}

#[test]
fn mutated_changes_do_not_panic() {
    mutations("change", 1500);
}

#[test]
fn mutated_tar_split_metadata_does_not_panic() {
    mutations("tarsplit", 2000);
}

#[test]
fn mutated_bolt_files_do_not_panic() {
    mutations("bolt", 3000);
}
