//! containerd's image and container records and its content store, read from
//! containerd's root directory (`/var/lib/containerd`) on disk.
//!
//! containerd keeps its metadata in a bbolt database,
//! `ROOT/io.containerd.metadata.v1.bolt/meta.db`, one bucket per namespace
//! (the layout of containerd 1.x's `metadata/buckets.go`):
//!
//! ```text
//! v1/NAMESPACE/images/NAME/target/{digest, mediatype, size (a Go varint)}
//! v1/NAMESPACE/images/NAME/annotations/KEY = VALUE      (the target's annotations)
//! v1/NAMESPACE/containers/ID/image = NAME               (the image it was made from)
//! v1/NAMESPACE/containers/ID/labels/KEY = VALUE
//! v1/NAMESPACE/containers/ID/spec = a protobuf Any of the runtime spec's JSON
//! ```
//!
//! and the blobs themselves, as they came from the registry, in
//! `ROOT/io.containerd.content.v1.content/blobs/sha256/HEX`: the blob
//! directory of an OCI image layout, which the OCI reader resolves an image's
//! target through.
//!
//! # Why the file, not containerd's API
//!
//! containerd's API would answer the same questions, and on a node where
//! containerd runs the session it is available. The file is read instead:
//!
//! - No daemon is needed: a record can be read while containerd is stopped or
//!   restarting, from a copy of its root, or from a root no daemon serves (a
//!   second containerd, a node's disk mounted elsewhere).
//! - No protobuf or gRPC dependency, and no client for a socket whose API
//!   version varies between nodes; the bbolt format and this schema have been
//!   stable since containerd 1.0.
//! - What is read here is small (one descriptor, one image name), and it is
//!   not trusted: every blob read afterwards through the descriptor is checked
//!   against its digest and size. A read that raced one of containerd's
//!   commits is retried when the meta page changed underneath it, and if a
//!   torn read still slipped through it would name a blob that fails its digest
//!   check, a clear error rather than a wrong image.
//!
//! The database is opened read-only beneath the root, through no symlink,
//! and no lock is taken. A running containerd holds an exclusive `flock` on
//! `meta.db`, which keeps out programs using bbolt itself (bbolt takes a
//! shared lock even to read); this reader needs none, since bbolt commits
//! copy-on-write and publish by rewriting a meta page last, and a read that
//! saw the meta page change is read again.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{Descriptor, Digest, MediaType};
use rustix::fs::OFlags;

use super::bolt::{self, Bucket, Db, Value};
use crate::fs::open::{open_beneath, open_root, BENEATH};

/// The metadata database, relative to containerd's root.
pub const METADATA_DB: &str = "io.containerd.metadata.v1.bolt/meta.db";

/// The content store, relative to containerd's root.
pub const CONTENT_DIR: &str = "io.containerd.content.v1.content";

/// How many times a lookup is read again when containerd committed a
/// transaction while it was being read.
pub const READ_TRIES: usize = 5;

/// The largest image name, container image field, media type or digest
/// accepted from the database.
const MAX_STRING: usize = 4096;

/// The largest runtime spec (a protobuf `Any` holding the spec's JSON)
/// read from a container's record.
pub const MAX_SPEC_SIZE: usize = 8 << 20;

/// The annotation in which CRI (Kubernetes) records the image a container
/// was made from, by the name the pod asked for.
pub const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

/// How many known names an error lists at most.
const LIST_IN_ERRORS: usize = 10;

/// Errors from reading containerd's root; every one names `meta.db` and the
/// namespace, image or container at fault. Kept small (the namespace and
/// name go into one `what`, the bbolt error is boxed): it travels inside
/// every error of a commit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bbolt error names the file.
    #[error("reading {what}: {source}")]
    Bolt {
        path: PathBuf,
        /// `image "NAME" in namespace "NS"`, `container "ID" in namespace "NS"`, ...
        what: String,
        #[source]
        source: Box<bolt::Error>,
    },
    #[error("no namespace {namespace:?} in {path} (namespaces: {known})")]
    NoNamespace {
        path: PathBuf,
        namespace: String,
        known: String,
    },
    /// No image by that name (or its full forms) in the namespace.
    #[error("no {what} in {path} (images: {known})")]
    NoImage {
        path: PathBuf,
        /// `image "NAME" in namespace "NS"`.
        what: String,
        known: String,
    },
    /// An image's or a container's record holds what containerd never writes.
    #[error("invalid record of {what} in {path}: {reason}")]
    BadRecord {
        path: PathBuf,
        what: String,
        reason: String,
    },
    #[error("{path} changed during each of {READ_TRIES} reads of {what}")]
    Unstable { path: PathBuf, what: String },
}

type Result<T> = std::result::Result<T, Error>;

/// What containerd recorded of a container (`v1/NS/containers/ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdContainer {
    pub namespace: String,
    pub id: String,
    /// The `image` field: the image's name for `ctr run` and nerdctl; unset
    /// (`None`) or an image id for some CRI versions.
    pub image: Option<String>,
    /// The container's labels.
    pub labels: BTreeMap<String, String>,
    /// The annotations of its OCI runtime spec, where CRI records the image
    /// name ([`CRI_IMAGE_NAME`]).
    pub annotations: BTreeMap<String, String>,
    /// The database it was read from, for messages.
    pub file: PathBuf,
}

impl ContainerdContainer {
    /// The image the container was made from: CRI's annotation when
    /// present, else the `image` field.
    pub fn image_name(&self) -> Option<&str> {
        self.annotations
            .get(CRI_IMAGE_NAME)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .or(self.image.as_deref())
    }
}

/// containerd's store under its root directory.
#[derive(Debug, Clone)]
pub struct ContainerdStore {
    root: PathBuf,
}

impl ContainerdStore {
    /// The store under `root` (`/var/lib/containerd` by default). Nothing is
    /// read until asked.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ContainerdStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/io.containerd.metadata.v1.bolt/meta.db`.
    pub fn metadata_db(&self) -> PathBuf {
        self.root.join(METADATA_DB)
    }

    /// `ROOT/io.containerd.content.v1.content`: a blob dir laid out as an OCI
    /// layout's (`blobs/sha256/HEX`).
    pub fn content_dir(&self) -> PathBuf {
        self.root.join(CONTENT_DIR)
    }

    /// The namespaces that have a bucket in the database, sorted.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let what = "the namespaces".to_string();
        self.read(&what, |db| {
            let Some(v1) = db.bucket_at(&[b"v1"]).map_err(|e| self.bolt(&what, e))? else {
                return Ok(Vec::new());
            };
            bucket_names(db, &v1).map_err(|e| self.bolt(&what, e))
        })
    }

    /// The names of the images in `namespace`, sorted; empty when the
    /// namespace has none or does not exist.
    pub fn images(&self, namespace: &str) -> Result<Vec<String>> {
        let what = format!("the images of namespace {namespace:?}");
        self.read(&what, |db| {
            let at: [&[u8]; 3] = [b"v1", namespace.as_bytes(), b"images"];
            match db.bucket_at(&at).map_err(|e| self.bolt(&what, e))? {
                Some(images) => bucket_names(db, &images).map_err(|e| self.bolt(&what, e)),
                None => Ok(Vec::new()),
            }
        })
    }

    /// The image name recorded for container `id` in `namespace`
    /// (`v1/NS/containers/ID/image`); `None` when the container or its image
    /// field is absent or empty.
    pub fn container_image(&self, namespace: &str, id: &str) -> Result<Option<String>> {
        let what = format!("container {id:?} in namespace {namespace:?}");
        self.read(&what, |db| {
            let at: [&[u8]; 4] = [b"v1", namespace.as_bytes(), b"containers", id.as_bytes()];
            let Some(c) = db.bucket_at(&at).map_err(|e| self.bolt(&what, e))? else {
                return Ok(None);
            };
            let Some(image) = db.data(&c, b"image").map_err(|e| self.bolt(&what, e))? else {
                return Ok(None);
            };
            let bad = |reason: String| Error::BadRecord {
                path: self.metadata_db(),
                what: what.clone(),
                reason,
            };
            let image = text(image, "image").map_err(bad)?;
            Ok((!image.is_empty()).then_some(image))
        })
    }

    /// The ids of the containers in `namespace`, sorted; empty when the
    /// namespace has none or does not exist.
    pub fn containers(&self, namespace: &str) -> Result<Vec<String>> {
        let what = format!("the containers of namespace {namespace:?}");
        self.read(&what, |db| {
            let at: [&[u8]; 3] = [b"v1", namespace.as_bytes(), b"containers"];
            match db.bucket_at(&at).map_err(|e| self.bolt(&what, e))? {
                Some(c) => bucket_names(db, &c).map_err(|e| self.bolt(&what, e)),
                None => Ok(Vec::new()),
            }
        })
    }

    /// The record of container `id` in `namespace`: its image field, labels
    /// and runtime spec annotations; `None` when containerd has no such
    /// container.
    pub fn container(&self, namespace: &str, id: &str) -> Result<Option<ContainerdContainer>> {
        let what = format!("container {id:?} in namespace {namespace:?}");
        self.read(&what, |db| {
            let bolt = |e| self.bolt(&what, e);
            let bad = |reason: String| Error::BadRecord {
                path: self.metadata_db(),
                what: what.clone(),
                reason,
            };
            let at: [&[u8]; 4] = [b"v1", namespace.as_bytes(), b"containers", id.as_bytes()];
            let Some(c) = db.bucket_at(&at).map_err(bolt)? else {
                return Ok(None);
            };
            let image = match db.data(&c, b"image").map_err(bolt)? {
                Some(i) => Some(text(i, "image").map_err(bad)?).filter(|i| !i.is_empty()),
                None => None,
            };
            let mut labels = BTreeMap::new();
            if let Some(l) = db.bucket(&c, b"labels").map_err(bolt)? {
                for (k, v) in db.entries(&l).map_err(bolt)? {
                    if let Value::Data(v) = v {
                        let k = text(k, "label key").map_err(bad)?;
                        labels.insert(k, text(v, "label value").map_err(bad)?);
                    }
                }
            }
            let annotations = match db.data(&c, b"spec").map_err(bolt)? {
                Some(spec) => spec_annotations(&spec).map_err(bad)?,
                None => BTreeMap::new(),
            };
            Ok(Some(ContainerdContainer {
                namespace: namespace.to_string(),
                id: id.to_string(),
                image,
                labels,
                annotations,
                file: self.metadata_db(),
            }))
        })
    }

    /// The target descriptor of image `name` in `namespace`
    /// (`v1/NS/images/NAME/target`: digest, media type, size; with the
    /// target's annotations when recorded).
    ///
    /// `name` is looked up as given first; when absent, its short forms are
    /// tried as containerd's clients write them in full: `busybox` as
    /// `docker.io/library/busybox:latest`, `user/app:1` as
    /// `docker.io/user/app:1`, a name without tag or digest with `:latest`.
    /// An image in none of these forms is an error naming the image and the
    /// namespace, listing the images there are.
    pub fn image(&self, namespace: &str, name: &str) -> Result<Descriptor> {
        let what = format!("image {name:?} in namespace {namespace:?}");
        self.read(&what, |db| {
            let bolt = |e| self.bolt(&what, e);
            let Some(ns) = db.bucket_at(&[b"v1", namespace.as_bytes()]).map_err(bolt)? else {
                let v1 = db.bucket_at(&[b"v1"]).map_err(bolt)?;
                let known = match v1 {
                    Some(v1) => bucket_names(db, &v1).map_err(bolt)?,
                    None => Vec::new(),
                };
                return Err(Error::NoNamespace {
                    path: self.metadata_db(),
                    namespace: namespace.to_string(),
                    known: listing(&known),
                });
            };
            let images = db.bucket(&ns, b"images").map_err(bolt)?;
            let mut found = None;
            if let Some(images) = &images {
                for candidate in name_forms(name) {
                    if let Some(b) = db.bucket(images, candidate.as_bytes()).map_err(bolt)? {
                        found = Some(b);
                        break;
                    }
                }
            }
            let Some(image) = found else {
                let known = match &images {
                    Some(images) => bucket_names(db, images).map_err(bolt)?,
                    None => Vec::new(),
                };
                return Err(Error::NoImage {
                    path: self.metadata_db(),
                    what: what.clone(),
                    known: listing(&known),
                });
            };
            let bad = |reason: String| Error::BadRecord {
                path: self.metadata_db(),
                what: what.clone(),
                reason,
            };
            let Some(target) = db.bucket(&image, b"target").map_err(bolt)? else {
                return Err(bad("it has no target".to_string()));
            };
            let field = |key: &str| -> Result<Vec<u8>> {
                db.data(&target, key.as_bytes())
                    .map_err(bolt)?
                    .ok_or_else(|| bad(format!("its target has no {key}")))
            };
            let digest = text(field("digest")?, "target digest").map_err(bad)?;
            let digest = Digest::from_str(&digest)
                .map_err(|e| bad(format!("target digest {digest:?}: {e}")))?;
            let media_type = text(field("mediatype")?, "target media type").map_err(bad)?;
            let size = field("size")?;
            let size = go_varint(&size)
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| bad(format!("target size {size:02x?} is not a size")))?;
            let mut desc = Descriptor::new(MediaType::from(media_type.as_str()), size, digest);
            if let Some(a) = db.bucket(&image, b"annotations").map_err(bolt)? {
                let mut annotations = HashMap::new();
                for (k, v) in db.entries(&a).map_err(bolt)? {
                    if let Value::Data(v) = v {
                        let k = text(k, "annotation key").map_err(bad)?;
                        let v = text(v, "annotation value").map_err(bad)?;
                        annotations.insert(k, v);
                    }
                }
                if !annotations.is_empty() {
                    desc.set_annotations(Some(annotations));
                }
            }
            Ok(desc)
        })
    }

    // -- plumbing ------------------------------------------------------------

    /// Opens the database beneath the root, through no symlink.
    fn open_db(&self, what: &str) -> Result<Db> {
        let path = self.metadata_db();
        let open_err = |e: rustix::io::Errno, path: &Path| Error::Open {
            path: path.to_path_buf(),
            source: e.into(),
        };
        let root = open_root(&self.root).map_err(|e| open_err(e, &self.root))?;
        let fd = open_beneath(
            root.as_fd(),
            Path::new(METADATA_DB),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            BENEATH,
        )
        .map_err(|e| open_err(e, &path))?;
        Db::from_file(File::from(fd), path).map_err(|e| self.bolt(what, e))
    }

    /// Runs `lookup` on a fresh view of the database, again when containerd
    /// committed while it ran; its answer (an error too) stands once the
    /// view was still current at its end.
    fn read<T>(&self, what: &str, lookup: impl Fn(&Db) -> Result<T>) -> Result<T> {
        for _ in 0..READ_TRIES {
            let db = self.open_db(what)?;
            let answer = lookup(&db);
            if db.is_current().map_err(|e| self.bolt(what, e))? {
                return answer;
            }
            tracing::debug!(
                path = %db.path().display(),
                what,
                "containerd committed during a read; reading again"
            );
        }
        Err(Error::Unstable {
            path: self.metadata_db(),
            what: what.to_string(),
        })
    }

    fn bolt(&self, what: &str, source: bolt::Error) -> Error {
        Error::Bolt {
            path: self.metadata_db(),
            what: what.to_string(),
            source: Box::new(source),
        }
    }
}

/// The names of the nested buckets of `bucket`, sorted (bbolt keeps keys
/// in byte order); names that are not UTF-8 are shown lossily.
fn bucket_names(db: &Db, bucket: &Bucket) -> std::result::Result<Vec<String>, bolt::Error> {
    Ok(db
        .entries(bucket)?
        .into_iter()
        .filter(|(_, v)| matches!(v, Value::Bucket(_)))
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect())
}

fn listing(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    let mut s = names
        .iter()
        .take(LIST_IN_ERRORS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LIST_IN_ERRORS {
        s.push_str(&format!(" and {} more", names.len() - LIST_IN_ERRORS));
    }
    s
}

/// A string field: UTF-8, at most [`MAX_STRING`] bytes.
fn text(bytes: Vec<u8>, what: &str) -> std::result::Result<String, String> {
    if bytes.len() > MAX_STRING {
        return Err(format!(
            "its {what} is {} bytes, more than {MAX_STRING}",
            bytes.len()
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("its {what} is not UTF-8"))
}

/// The annotations of a runtime spec stored as containerd stores it: a
/// protobuf `google.protobuf.Any` (field 1 the type URL, field 2 the
/// value) whose value is the spec's JSON.
fn spec_annotations(any: &[u8]) -> std::result::Result<BTreeMap<String, String>, String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: Option<BTreeMap<String, String>>,
    }
    if any.len() > MAX_SPEC_SIZE {
        return Err(format!(
            "its spec is {} bytes, more than {MAX_SPEC_SIZE}",
            any.len()
        ));
    }
    let value =
        protobuf_bytes_field(any, 2).ok_or_else(|| "its spec is not a protobuf Any".to_string())?;
    if value.is_empty() {
        return Ok(BTreeMap::new());
    }
    let spec: Spec =
        serde_json::from_slice(value).map_err(|e| format!("its spec is not spec JSON: {e}"))?;
    Ok(spec.annotations.unwrap_or_default())
}

/// The last length-delimited field `number` of a protobuf message (an empty
/// slice when absent); `None` when the message is malformed.
fn protobuf_bytes_field(mut msg: &[u8], number: u64) -> Option<&[u8]> {
    let mut found: &[u8] = &[];
    while !msg.is_empty() {
        let (key, n) = uvarint(msg)?;
        msg = &msg[n..];
        match key & 7 {
            0 => msg = &msg[uvarint(msg)?.1..],
            1 => msg = msg.get(8..)?,
            2 => {
                let (len, n) = uvarint(msg)?;
                let end = n.checked_add(usize::try_from(len).ok()?)?;
                let field = msg.get(n..end)?;
                if key >> 3 == number {
                    found = field;
                }
                msg = &msg[end..];
            }
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(found)
}

/// An unsigned base-128 varint and the bytes it took; `None` when cut short
/// or longer than 64 bits.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        if i == 9 && *byte > 1 {
            return None;
        }
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Decodes Go's `binary.PutVarint`: a zig-zag signed integer in base-128
/// groups, low first. `None` when cut short or longer than 64 bits.
fn go_varint(b: &[u8]) -> Option<i64> {
    let (x, _) = uvarint(b)?;
    let v = (x >> 1) as i64;
    Some(if x & 1 == 0 { v } else { !v })
}

/// `name` and the full forms containerd's clients store for it: a Docker
/// Hub domain (and `library/` for one-component names) when the first
/// component is not a host, `:latest` when no tag or digest is given.
fn name_forms(name: &str) -> Vec<String> {
    let mut forms = vec![name.to_string()];
    let last = name.rsplit('/').next().unwrap_or(name);
    let tagged = last.contains(':') || name.contains('@');
    let first = name.split('/').next().unwrap_or(name);
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = Vec::new();
    if has_host {
        full.push(name.to_string());
    } else if name.contains('/') {
        full.push(format!("docker.io/{name}"));
    } else {
        full.push(format!("docker.io/library/{name}"));
    }
    for f in full {
        if !tagged {
            forms.push(format!("{f}:latest"));
        }
        forms.push(f);
    }
    forms.dedup();
    let mut seen = std::collections::HashSet::new();
    forms.retain(|f| seen.insert(f.clone()));
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_varints_decode_as_go_writes_them() {
        // binary.PutVarint outputs.
        let cases: &[(&[u8], Option<i64>)] = &[
            (&[0x00], Some(0)),
            (&[0x02], Some(1)),
            (&[0x01], Some(-1)),
            (&[0xa0, 0x08], Some(528)),
            (&[0xfe, 0xff, 0x03], Some(32767)),
            (
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                Some(i64::MAX),
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                Some(i64::MIN),
            ),
            (&[], None),
            (&[0x80], None),
            (&[0xff; 10], None),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                None,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(go_varint(bytes), *want, "{bytes:02x?}");
        }
    }

    /// A protobuf `Any` as containerd stores a spec.
    fn any(type_url: &str, value: &[u8]) -> Vec<u8> {
        let mut m = vec![0x0a, type_url.len() as u8];
        m.extend(type_url.as_bytes());
        m.push(0x12);
        let mut n = value.len();
        while n >= 0x80 {
            m.push((n as u8) | 0x80);
            n >>= 7;
        }
        m.push(n as u8);
        m.extend(value);
        m
    }

    #[test]
    fn spec_annotations_come_from_the_any_value() {
        let url = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
        let mut json = br#"{"ociVersion":"1.0.2","process":{"args":["sh"]},"annotations":{"a":"1","io.kubernetes.cri.image-name":"x:1"},"pad":""#.to_vec();
        json.extend(vec![b'p'; 300]);
        json.extend(br#""}"#);
        let got = spec_annotations(&any(url, &json)).unwrap();
        assert_eq!(got.get("a").map(String::as_str), Some("1"));
        assert_eq!(got.get(CRI_IMAGE_NAME).map(String::as_str), Some("x:1"));
        // No annotations, an empty Any: none.
        assert!(spec_annotations(&any(url, b"{}")).unwrap().is_empty());
        assert!(spec_annotations(&[]).unwrap().is_empty());
        // Malformed: cut short, a length past the end, a bad wire type, not JSON.
        let good = any(url, &json);
        for bad in [
            good[..good.len() - 1].to_vec(),
            vec![0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 1],
            vec![0x0b],
            vec![0x12, 0x80],
            any(url, b"not json"),
            any(url, br#"{"annotations":{"a":1}}"#),
        ] {
            assert!(spec_annotations(&bad).is_err(), "{bad:02x?}");
        }
        // Other wire types are skipped.
        let mut mixed = vec![
            0x18, 0x96, 0x01, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0x2d, 0, 0, 0, 0,
        ];
        mixed.extend(any(url, br#"{"annotations":{"b":"2"}}"#));
        assert_eq!(spec_annotations(&mixed).unwrap().len(), 1);
    }

    #[test]
    fn short_names_have_their_full_forms() {
        let cases: &[(&str, &[&str])] = &[
            (
                "busybox",
                &[
                    "busybox",
                    "docker.io/library/busybox:latest",
                    "docker.io/library/busybox",
                ],
            ),
            ("busybox:1", &["busybox:1", "docker.io/library/busybox:1"]),
            (
                "user/app",
                &[
                    "user/app",
                    "docker.io/user/app:latest",
                    "docker.io/user/app",
                ],
            ),
            (
                "registry.local:5000/app",
                &["registry.local:5000/app", "registry.local:5000/app:latest"],
            ),
            ("localhost/x:t", &["localhost/x:t"]),
            (
                "docker.io/library/b@sha256:00",
                &["docker.io/library/b@sha256:00"],
            ),
        ];
        for (name, want) in cases {
            assert_eq!(name_forms(name), *want, "{name}");
        }
    }

    #[test]
    fn errors_stay_small() {
        // They travel inside every error of a commit.
        assert!(
            std::mem::size_of::<Error>() <= 80,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn a_missing_root_names_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerdStore::new(dir.path().join("nothing"));
        let e = store.image("default", "x").unwrap_err().to_string();
        assert!(e.contains("failed to open") && e.contains("nothing"), "{e}");
        let store = ContainerdStore::new(dir.path());
        let e = store
            .container_image("default", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains(METADATA_DB), "{e}");
    }

    #[test]
    fn a_symlinked_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("elsewhere.db");
        std::fs::write(&real, b"x").unwrap();
        let bolt_dir = dir.path().join("io.containerd.metadata.v1.bolt");
        std::fs::create_dir(&bolt_dir).unwrap();
        std::os::unix::fs::symlink(&real, bolt_dir.join("meta.db")).unwrap();
        let e = ContainerdStore::new(dir.path())
            .namespaces()
            .unwrap_err()
            .to_string();
        assert!(e.contains("failed to open") && e.contains("meta.db"), "{e}");
    }
}
