//! containerd's store read from disk, as root, against a private containerd:
//! an image imported with `ctr images import` and a container run with
//! `ctr run`, then `ContainerdStore`'s answers compared with `ctr`'s, the
//! image's blobs found in the content store, and damaged copies of `meta.db`
//! refused with errors naming the file, never a panic.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freezeframe_snapshot::source::containerd::{
    ContainerdStore, Error, CRI_IMAGE_NAME, METADATA_DB,
};
use freezeframe_tests::containers::*;
use freezeframe_tests::*;
use sha2::{Digest as _, Sha256};

/// A private containerd with one image imported (`docker.io/library/NAME:base`)
/// and one container running it.
struct Setup {
    ctd: Containerd,
    reference: String,
    container: String,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let ctd = Containerd::start(name);
        let image = unique_id(name);
        let reference = format!("docker.io/library/{image}:base");
        let archive = ctd.scratch("img").join("base.tar");
        busybox_archive(&ctd.scratch("build"), &reference, &archive);
        ctd.ctr(args!["images", "import", &archive]);
        let container = unique_id(name);
        ctd.ctr([
            "run",
            "-d",
            "--runc-binary",
            "/usr/sbin/runc",
            "--label",
            "team=sessions",
            "--annotation",
            "org.example.note=kept",
            &reference,
            &container,
            "sleep",
            "100000",
        ]);
        Setup {
            ctd,
            reference,
            container,
        }
    }

    /// containerd's root: `root` beside its state dir in the fixture's temp dir.
    fn root(&self) -> PathBuf {
        self.ctd
            .state
            .parent()
            .expect("state dir has a parent")
            .join("root")
    }

    fn store(&self) -> ContainerdStore {
        ContainerdStore::new(self.root())
    }
}

/// `ctr images ls`: the TYPE and DIGEST columns of `reference`.
fn ctr_image(ctd: &Containerd, reference: &str) -> (String, String) {
    let out = ctd.ctr(["images", "ls"]).stdout;
    out.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&reference)).then(|| (f[1].to_string(), f[2].to_string()))
        })
        .unwrap_or_else(|| panic!("no {reference} in ctr images ls:\n{out}"))
}

fn blob(content: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    content.join("blobs/sha256").join(hex)
}

/// Checks that the blob exists in the content store with this size and
/// digest, and returns its bytes.
fn check_blob(content: &Path, digest: &str, size: u64) -> Vec<u8> {
    let path = blob(content, digest);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(bytes.len() as u64, size, "size of {}", path.display());
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        digest,
        "digest of {}",
        path.display()
    );
    bytes
}

/// Every blob an index or manifest names, found in the content store:
/// returns how many were checked.
fn check_tree(content: &Path, media_type: &str, digest: &str, size: u64) -> usize {
    let bytes = check_blob(content, digest, size);
    let doc: Value = serde_json::from_slice(&bytes).expect("an index or manifest");
    let descs = |v: &Value| -> Vec<(String, String, u64)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["mediaType"].as_str().unwrap_or_default().to_string(),
                    d["digest"].as_str().expect("digest").to_string(),
                    d["size"].as_u64().expect("size"),
                )
            })
            .collect()
    };
    let mut n = 1;
    if media_type.contains("index") || media_type.contains("manifest.list") {
        for (mt, d, s) in descs(&doc["manifests"]) {
            n += check_tree(content, &mt, &d, s);
        }
    } else {
        let config = &doc["config"];
        check_blob(
            content,
            config["digest"].as_str().expect("config digest"),
            config["size"].as_u64().expect("config size"),
        );
        n += 1;
        let layers = descs(&doc["layers"]);
        assert!(!layers.is_empty(), "a manifest with no layers: {doc}");
        for (_, d, s) in layers {
            check_blob(content, &d, s);
            n += 1;
        }
    }
    n
}

#[test]
fn image_and_container_records_equal_ctrs_and_the_blobs_are_in_the_content_store() {
    if !root_or_skip(
        "image_and_container_records_equal_ctrs_and_the_blobs_are_in_the_content_store",
    ) {
        return;
    }
    let s = Setup::new("cstore");
    let store = s.store();
    let ns = &s.ctd.ns;

    // The container's image, as `ctr containers info` shows it.
    let info = s.ctd.ctr(["containers", "info", &s.container]).json();
    let image = info["Image"].as_str().expect("Image in containers info");
    assert_eq!(image, s.reference);
    assert_eq!(
        store.container_image(ns, &s.container).unwrap().as_deref(),
        Some(image)
    );
    assert_eq!(
        store.container_image(ns, "no-such-container").unwrap(),
        None
    );
    assert_eq!(
        store.container_image("no-such-ns", &s.container).unwrap(),
        None
    );

    // The whole record: labels and spec annotations as `ctr` shows them.
    let record = store
        .container(ns, &s.container)
        .unwrap()
        .expect("a container record");
    assert_eq!(record.image.as_deref(), Some(image));
    assert_eq!(record.image_name(), Some(image));
    assert_eq!(
        record.labels.get("team").map(String::as_str),
        Some("sessions")
    );
    let labels: BTreeMap<String, String> =
        serde_json::from_value(info["Labels"].clone()).expect("Labels in containers info");
    assert_eq!(record.labels, labels);
    assert_eq!(
        record
            .annotations
            .get("org.example.note")
            .map(String::as_str),
        Some("kept")
    );
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(info["Spec"]["annotations"].clone())
            .expect("Spec.annotations in containers info");
    assert_eq!(record.annotations, annotations);
    assert_eq!(store.container(ns, "no-such-container").unwrap(), None);
    let ids = store.containers(ns).unwrap();
    assert_eq!(ids, vec![s.container.clone()]);

    // A container recorded as CRI records one: the image name in an
    // annotation, which wins over the image field.
    let cri = unique_id("cri");
    s.ctd.ctr([
        "containers",
        "create",
        "--annotation",
        &format!("{CRI_IMAGE_NAME}=registry.example/app:1"),
        &s.reference,
        &cri,
    ]);
    let record = store
        .container(ns, &cri)
        .unwrap()
        .expect("the CRI-like record");
    assert_eq!(record.image.as_deref(), Some(s.reference.as_str()));
    assert_eq!(record.image_name(), Some("registry.example/app:1"));
    assert_eq!(store.containers(ns).unwrap().len(), 2);

    // The image's target, as `ctr images ls` and `ctr content get` show it.
    let desc = store.image(ns, &s.reference).unwrap();
    let (media_type, digest) = ctr_image(&s.ctd, &s.reference);
    assert_eq!(desc.media_type().to_string(), media_type);
    assert_eq!(desc.digest().to_string(), digest);
    let target = s.ctd.ctr(["content", "get", &digest]).stdout;
    assert_eq!(desc.size(), target.len() as u64);

    // Short forms name the same image.
    let short = s.reference.trim_start_matches("docker.io/library/");
    assert_eq!(store.image(ns, short).unwrap(), desc);

    // Listings.
    assert!(store.namespaces().unwrap().contains(ns));
    assert!(store.images(ns).unwrap().contains(&s.reference));
    assert!(store.images("no-such-ns").unwrap().is_empty());

    // Every blob the target reaches is in the content store, whole.
    let n = check_tree(&store.content_dir(), &media_type, &digest, desc.size());
    assert!(n >= 3, "only {n} blobs reached from {digest}");

    // Absent images and namespaces are errors naming them and meta.db.
    let e = store.image(ns, "docker.io/library/absent:1").unwrap_err();
    assert!(matches!(e, Error::NoImage { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("absent:1") && msg.contains(ns.as_str()) && msg.contains(METADATA_DB),
        "{msg}"
    );
    assert!(msg.contains(&s.reference), "the images there are: {msg}");
    let e = store
        .image("no-such-ns", &s.reference)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no namespace \"no-such-ns\"") && e.contains(METADATA_DB),
        "{e}"
    );

    // The image removed under its container: the container still names it,
    // and the image is an error saying it is absent.
    s.ctd.ctr(["images", "rm", &s.reference]);
    assert_eq!(
        store.container_image(ns, &s.container).unwrap().as_deref(),
        Some(s.reference.as_str())
    );
    let e = store.image(ns, &s.reference).unwrap_err();
    assert!(matches!(e, Error::NoImage { .. }), "{e}");
    assert!(e.to_string().contains("(images: none)"), "{e}");
}

#[test]
fn records_read_while_containerd_commits_stay_right() {
    if !root_or_skip("records_read_while_containerd_commits_stay_right") {
        return;
    }
    let s = Setup::new("cbusy");
    let store = s.store();
    let want = store.image(&s.ctd.ns, &s.reference).unwrap();
    // One thread keeps containerd committing (a label per transaction) while
    // this one reads, until it has committed a few dozen times.
    let commits = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (commits, stop) = (Arc::clone(&commits), Arc::clone(&stop));
        let args = s.ctd.ctr_args::<[&str; 0], &str>([]);
        let container = s.container.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let i = commits.load(Ordering::Relaxed);
                let mut a = args.clone();
                a.extend(args!["containers", "label", &container, format!("n={i}")]);
                tool("ctr", a);
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let t0 = Instant::now();
    let mut reads = 0;
    while commits.load(Ordering::Relaxed) < 30 && t0.elapsed() < Duration::from_secs(60) {
        assert_eq!(store.image(&s.ctd.ns, &s.reference).unwrap(), want);
        assert_eq!(
            store
                .container_image(&s.ctd.ns, &s.container)
                .unwrap()
                .as_deref(),
            Some(s.reference.as_str())
        );
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("label writer");
    let commits = commits.load(Ordering::Relaxed);
    eprintln!("{reads} reads while containerd committed {commits} times");
    assert!(
        commits >= 30,
        "containerd committed only {commits} times in 60 s"
    );
}

// ---------------------------------------------------------------------------
// Damaged copies of meta.db

/// A root holding only `meta.db` with these bytes.
fn damaged_root(dir: &Path, name: &str, bytes: &[u8]) -> ContainerdStore {
    let root = dir.join(name);
    let db = root.join(METADATA_DB);
    mkdirs(db.parent().unwrap());
    fs::write(&db, bytes).unwrap_or_else(|e| panic!("write {}: {e}", db.display()));
    ContainerdStore::new(root)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Page size and root bucket page of the meta page with the higher txid (the
/// file is a healthy one, read here independently of the reader under test).
fn current_root(bytes: &[u8]) -> (usize, usize) {
    let ps = le_u32(bytes, 16 + 8) as usize;
    let meta = |p: usize| {
        (
            le_u64(bytes, p * ps + 16 + 48),
            le_u64(bytes, p * ps + 16 + 16),
        )
    };
    let (t0, r0) = meta(0);
    let (t1, r1) = meta(1);
    let root = if t1 > t0 { r1 } else { r0 };
    (ps, root as usize)
}

/// Every lookup the store offers, on a damaged database: each either answers
/// or fails naming meta.db; returns the errors' messages.
fn every_lookup(store: &ContainerdStore, s: &Setup) -> Vec<String> {
    let ns = &s.ctd.ns;
    let mut errors = Vec::new();
    let mut note = |r: Result<(), Error>| {
        if let Err(e) = r {
            let msg = e.to_string();
            assert!(
                msg.contains("meta.db"),
                "an error not naming meta.db: {msg}"
            );
            errors.push(msg);
        }
    };
    note(store.image(ns, &s.reference).map(drop));
    note(store.container_image(ns, &s.container).map(drop));
    note(store.namespaces().map(drop));
    note(store.images(ns).map(drop));
    note(store.container(ns, &s.container).map(drop));
    note(store.containers(ns).map(drop));
    errors
}

#[test]
fn damaged_copies_of_meta_db_give_errors_naming_the_file() {
    if !root_or_skip("damaged_copies_of_meta_db_give_errors_naming_the_file") {
        return;
    }
    let s = Setup::new("cdamage");
    let bytes = fs::read(s.root().join(METADATA_DB)).expect("read meta.db");
    let (ps, root) = current_root(&bytes);
    assert!(ps >= 1024 && bytes.len() >= 4 * ps, "page size {ps}");
    let dir = tempdir("cdamage-copies");
    let dir = dir.path();

    // The copy itself reads as the original does.
    let copy = damaged_root(dir, "copy", &bytes);
    assert_eq!(
        copy.image(&s.ctd.ns, &s.reference).unwrap(),
        s.store().image(&s.ctd.ns, &s.reference).unwrap()
    );

    // Truncated: to nothing, inside the meta pages, right after them, halfway.
    for (name, len) in [
        ("empty", 0),
        ("short", 100),
        ("metas-only", 2 * ps + 10),
        ("half", bytes.len() / 2),
    ] {
        let store = damaged_root(dir, name, &bytes[..len]);
        let errors = every_lookup(&store, &s);
        if name != "half" {
            assert_eq!(errors.len(), 6, "{name}: {errors:?}");
        }
        let e = store.image(&s.ctd.ns, &s.reference);
        if let Err(e) = e {
            eprintln!("{name}: {e}");
        }
    }
    let e = damaged_root(dir, "metas-only2", &bytes[..2 * ps + 10])
        .image(&s.ctd.ns, &s.reference)
        .unwrap_err()
        .to_string();
    assert!(e.contains("beyond the end of the file"), "{e}");

    // Flipped bytes in both meta pages.
    let mut flipped = bytes.clone();
    for p in [0, 1] {
        flipped[p * ps + 16 + 20] ^= 0x5a;
    }
    let store = damaged_root(dir, "flipped", &flipped);
    let e = store
        .image(&s.ctd.ns, &s.reference)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("meta.db is not a bbolt database") && e.contains("checksum"),
        "{e}"
    );
    // In one only: the other is used.
    let mut one = bytes.clone();
    one[16 + 20] ^= 0x5a;
    let store = damaged_root(dir, "one-flipped", &one);
    assert!(store.images(&s.ctd.ns).unwrap().contains(&s.reference));

    // A page id out of range: the root bucket's leaf element for `v1`
    // points at page 2^40.
    let at = root * ps;
    assert_eq!(le_u32(&bytes, at + 8) & 0xffff, 0x02, "a leaf root page");
    let (pos, ksize) = (le_u32(&bytes, at + 16 + 4), le_u32(&bytes, at + 16 + 8));
    let key_at = at + 16 + pos as usize;
    assert_eq!(&bytes[key_at..key_at + ksize as usize], b"v1");
    let value_at = key_at + ksize as usize;
    assert_ne!(le_u64(&bytes, value_at), 0, "v1 is not an inline bucket");
    let mut far = bytes.clone();
    far[value_at..value_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let store = damaged_root(dir, "far", &far);
    let errors = every_lookup(&store, &s);
    assert_eq!(errors.len(), 6, "{errors:?}");
    for e in &errors {
        assert!(
            e.contains(&format!("page {}", 1u64 << 40)) && e.contains("high-water"),
            "{e}"
        );
    }
    // ... and at the root page itself: `v1` is then its own parent, which
    // reads as a tree without the namespace, not as a loop.
    far[value_at..value_at + 8].copy_from_slice(&(root as u64).to_le_bytes());
    let errors = every_lookup(&damaged_root(dir, "cycle", &far), &s);
    assert!(!errors.is_empty());

    // Garbage over each tree page in turn: answers or errors, no panic.
    let pages = bytes.len() / ps;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut failures = 0;
    for p in 2..pages {
        let mut garbled = bytes.clone();
        for b in &mut garbled[p * ps + 8..(p + 1) * ps] {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        let store = damaged_root(dir, &format!("garbled-{p}"), &garbled);
        failures += usize::from(!every_lookup(&store, &s).is_empty());
        fs::remove_dir_all(dir.join(format!("garbled-{p}"))).unwrap();
    }
    assert!(failures > 0, "garbling {pages} pages broke no lookup");
}
