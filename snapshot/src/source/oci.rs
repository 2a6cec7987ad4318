//! OCI image layout directories and OCI layout archives.
//!
//! An archive is a tar file holding `oci-layout`, `index.json` and
//! `blobs/<alg>/<encoded>` (entries may be prefixed `./`). It is indexed once when
//! opened; blobs are then read in place with positioned reads, so one
//! `ImageSource` can serve several readers at the same time. Every blob read
//! through [`ImageSource::read_blob`], [`ImageSource::read_json`] or
//! [`ImageSource::copy_blob`] is checked against its descriptor's size and digest.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Arch, Descriptor, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageIndexBuilder,
    ImageManifest, MediaType, OciLayout, Os, ANNOTATION_REF_NAME,
};
use serde::de::DeserializeOwned;
use sha2::Digest as _;

/// Largest JSON document (index, manifest, config, `oci-layout`) read from an image.
pub const MAX_JSON_SIZE: u64 = 8 << 20;

/// Deepest chain of image indexes followed from `index.json` to a manifest.
const MAX_INDEX_DEPTH: usize = 4;

/// Docker's media types, found in images made by `docker save` and older tools.
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

const ACCEPTED_FORMS: &str = "expected oci-layout:DIR[:REF], oci-archive:FILE[:REF], \
     docker:NAME|ID, containers-storage:NAME|ID or containerd:[NAMESPACE/]NAME";

/// Errors from opening and reading OCI images.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid image reference {input:?}: {reason}; {ACCEPTED_FORMS}")]
    InvalidRef { input: String, reason: &'static str },
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not {expected}")]
    WrongKind {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{path} is not an OCI image layout: {reason}")]
    NotLayout { path: PathBuf, reason: String },
    #[error("unsupported image layout version {version:?} in {path} (only 1.x is supported)")]
    LayoutVersion { path: PathBuf, version: String },
    #[error("invalid {what} in {path}: {source}")]
    Json {
        path: PathBuf,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("refusing archive entry {entry:?} in {path}: {reason}")]
    BadEntry {
        path: PathBuf,
        entry: String,
        reason: &'static str,
    },
    #[error("{what} in {path} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        path: PathBuf,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("blob {digest} is missing from {path}")]
    MissingBlob { path: PathBuf, digest: Digest },
    #[error("failed to read blob {digest} from {path}: {source}")]
    BlobIo {
        path: PathBuf,
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("failed to write blob {digest} from {path}: {source}")]
    Write {
        path: PathBuf,
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} in {path} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        path: PathBuf,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} in {path} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        path: PathBuf,
        digest: Digest,
        actual: String,
    },
    #[error("cannot verify blob {digest} in {path}: unsupported digest algorithm")]
    UnsupportedDigest { path: PathBuf, digest: Digest },
    #[error("no image named {reference:?} in {path} (available: {available})")]
    RefNotFound {
        path: PathBuf,
        reference: String,
        available: String,
    },
    #[error("{path} holds several images ({available}); name one with :REF")]
    Ambiguous { path: PathBuf, available: String },
    #[error("{path} holds no image")]
    NoImage { path: PathBuf },
    #[error("image index {digest} in {path} has no manifest for {platform}")]
    NoPlatform {
        path: PathBuf,
        digest: Digest,
        platform: String,
    },
    #[error("{what} {digest} in {path} has unsupported media type {media_type}")]
    MediaType {
        path: PathBuf,
        what: &'static str,
        digest: Digest,
        media_type: String,
    },
    #[error("image indexes in {path} are nested more than {MAX_INDEX_DEPTH} deep")]
    TooDeep { path: PathBuf },
    /// Docker's store or containers-storage.
    #[error(transparent)]
    Store(Box<super::stored::StoreError>),
    #[error(transparent)]
    Containerd(Box<super::containerd::Error>),
    /// An unpacked layer's tar stream could not be rebuilt as its store
    /// recorded it.
    #[error(transparent)]
    Layer(Box<super::tarsplit::Error>),
}

/// The store readers' errors, boxed: they are large and rare.
macro_rules! boxed_from {
    ($($error:ty => $variant:ident),* $(,)?) => {$(
        impl From<$error> for SourceError {
            fn from(e: $error) -> Self {
                SourceError::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from! {
    super::stored::StoreError => Store,
    super::containerd::Error => Containerd,
    super::tarsplit::Error => Layer,
}

pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// Where an image comes from, in skopeo's transport syntax.
///
/// `REF` is what follows the last `:` when that contains no `/`; so a path whose
/// last component holds a `:` must be given with a `:REF` (or as `dir:x/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci-layout:DIR[:REF]`: an OCI image layout directory.
    Layout {
        dir: PathBuf,
        reference: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`: a tar archive of an OCI image layout.
    Archive {
        file: PathBuf,
        reference: Option<String>,
    },
}

impl ImageRef {
    /// The directory or archive file.
    pub fn path(&self) -> &Path {
        match self {
            ImageRef::Layout { dir, .. } => dir,
            ImageRef::Archive { file, .. } => file,
        }
    }

    /// The `org.opencontainers.image.ref.name` to look for, if one was given.
    pub fn reference(&self) -> Option<&str> {
        match self {
            ImageRef::Layout { reference, .. } | ImageRef::Archive { reference, .. } => {
                reference.as_deref()
            }
        }
    }
}

impl FromStr for ImageRef {
    type Err = SourceError;

    fn from_str(input: &str) -> Result<Self> {
        let invalid = |reason| SourceError::InvalidRef {
            input: input.to_owned(),
            reason,
        };
        let (archive, rest) = if let Some(rest) = input.strip_prefix("oci-layout:") {
            (false, rest)
        } else if let Some(rest) = input.strip_prefix("oci-archive:") {
            (true, rest)
        } else {
            return Err(invalid("unknown transport"));
        };
        // The reference follows the last ':' unless that ':' is part of the path.
        let (path, reference) = match rest.rsplit_once(':') {
            Some((path, reference)) if !reference.contains('/') => {
                if reference.is_empty() {
                    return Err(invalid("empty reference after ':'"));
                }
                (path, Some(reference.to_owned()))
            }
            _ => (rest, None),
        };
        if path.is_empty() {
            return Err(invalid("empty path"));
        }
        let path = PathBuf::from(path);
        Ok(if archive {
            ImageRef::Archive {
                file: path,
                reference,
            }
        } else {
            ImageRef::Layout {
                dir: path,
                reference,
            }
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match self {
            ImageRef::Layout { .. } => "oci-layout",
            ImageRef::Archive { .. } => "oci-archive",
        };
        write!(f, "{transport}:{}", self.path().display())?;
        if let Some(reference) = self.reference() {
            write!(f, ":{reference}")?;
        }
        Ok(())
    }
}

/// An image manifest chosen in a source, with its configuration.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The descriptor of the manifest (after following any nested index).
    pub manifest_descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// The `org.opencontainers.image.ref.name` of the chosen entry of `index.json`,
    /// or the manifest digest when it has none.
    pub name: String,
}

/// An opened OCI image layout directory or archive.
#[derive(Debug)]
pub struct ImageSource {
    path: PathBuf,
    store: Store,
    index: ImageIndex,
}

#[derive(Debug)]
enum Store {
    Dir,
    Archive {
        file: File,
        blobs: HashMap<Digest, BlobEntry>,
    },
}

/// Where a blob's bytes are in an archive.
#[derive(Debug, Clone, Copy)]
struct BlobEntry {
    offset: u64,
    size: u64,
}

impl ImageSource {
    /// Opens an image layout directory or an archive, whichever `path` is.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        if meta.is_dir() {
            Self::open_dir(path)
        } else if meta.is_file() {
            Self::open_archive(path)
        } else {
            Err(SourceError::WrongKind {
                path: path.to_owned(),
                expected: "a directory or a regular file",
            })
        }
    }

    /// Opens the directory or archive an [`ImageRef`] names, checking it is the
    /// kind its transport says.
    pub fn open_ref(image: &ImageRef) -> Result<Self> {
        let path = image.path();
        let meta = std::fs::metadata(path).map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        match image {
            ImageRef::Layout { .. } if !meta.is_dir() => Err(SourceError::WrongKind {
                path: path.to_owned(),
                expected: "a directory (oci-layout: names an image layout directory)",
            }),
            ImageRef::Archive { .. } if !meta.is_file() => Err(SourceError::WrongKind {
                path: path.to_owned(),
                expected: "a regular file (oci-archive: names a tar archive)",
            }),
            ImageRef::Layout { .. } => Self::open_dir(path),
            ImageRef::Archive { .. } => Self::open_archive(path),
        }
    }

    fn open_dir(dir: &Path) -> Result<Self> {
        let layout = read_capped_file(&dir.join("oci-layout"), "oci-layout")?;
        check_layout(dir, &layout)?;
        let index = read_capped_file(&dir.join("index.json"), "index.json")?;
        let index = parse_index(dir, &index)?;
        Ok(ImageSource {
            path: dir.to_owned(),
            store: Store::Dir,
            index,
        })
    }

    fn open_archive(path: &Path) -> Result<Self> {
        let io_err = |source| SourceError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut magic = [0u8; 4];
        let n = file.read_at(&mut magic, 0).map_err(io_err)?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(SourceError::NotLayout {
                path: path.to_owned(),
                reason: "the archive is compressed; decompress it first".into(),
            });
        }

        let mut blobs = HashMap::new();
        let mut layout = None;
        let mut index = None;
        let mut archive = tar::Archive::new(&file);
        let invalid_tar = |e: io::Error| SourceError::NotLayout {
            path: path.to_owned(),
            reason: format!("invalid tar archive: {e}"),
        };
        for entry in archive.entries_with_seek().map_err(invalid_tar)? {
            let mut entry = entry.map_err(invalid_tar)?;
            let raw_name = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw_name).into_owned();
            let bad = |reason| SourceError::BadEntry {
                path: path.to_owned(),
                entry: shown.clone(),
                reason,
            };
            let Some(name) = layout_name(&raw_name) else {
                return Err(bad("it points outside the image layout"));
            };
            let kind = classify(&name);
            let offset = entry.raw_file_position();
            if offset.checked_add(entry.size()).is_none_or(|end| end > len) {
                return Err(bad("the archive is truncated"));
            }
            if matches!(kind, EntryKind::Other) {
                tracing::debug!(archive = %path.display(), entry = %shown, "ignoring archive entry");
                continue;
            }
            let entry_type = entry.header().entry_type();
            if !(entry_type.is_file() || entry_type.is_contiguous()) {
                return Err(bad(
                    if entry_type.is_symlink() || entry_type.is_hard_link() {
                        "layout files must be regular files, not links"
                    } else {
                        "layout files must be regular files"
                    },
                ));
            }
            let size = entry.size();
            let (what, slot) = match kind {
                EntryKind::Blob(digest) => {
                    if blobs.insert(digest, BlobEntry { offset, size }).is_some() {
                        return Err(bad("the blob appears twice"));
                    }
                    continue;
                }
                EntryKind::Layout => ("oci-layout", &mut layout),
                EntryKind::Index => ("index.json", &mut index),
                EntryKind::Other => continue,
            };
            if slot.is_some() {
                return Err(bad("the file appears twice"));
            }
            if size > MAX_JSON_SIZE {
                return Err(SourceError::TooLarge {
                    path: path.to_owned(),
                    what: what.into(),
                    size,
                    limit: MAX_JSON_SIZE,
                });
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(invalid_tar)?;
            *slot = Some(data);
        }
        let missing = |what| SourceError::NotLayout {
            path: path.to_owned(),
            reason: format!("the archive has no {what}"),
        };
        check_layout(path, &layout.ok_or_else(|| missing("oci-layout"))?)?;
        let index = parse_index(path, &index.ok_or_else(|| missing("index.json"))?)?;
        Ok(ImageSource {
            path: path.to_owned(),
            store: Store::Archive { file, blobs },
            index,
        })
    }

    /// Opens a blob directory laid out as an image layout's `blobs/` (a
    /// containerd content store, say) with `target` as its one image, named
    /// `name`: [`Self::resolve`] then follows it as if `index.json` held it.
    pub fn open_content(dir: &Path, target: Descriptor, name: &str) -> Result<Self> {
        let meta = std::fs::metadata(dir).map_err(|source| SourceError::Io {
            path: dir.to_owned(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(SourceError::WrongKind {
                path: dir.to_owned(),
                expected: "a directory of blobs",
            });
        }
        let mut target = target;
        let mut annotations = target.annotations().clone().unwrap_or_default();
        annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
        target.set_annotations(Some(annotations));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![target])
            .build()
            .map_err(|e| SourceError::NotLayout {
                path: dir.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(ImageSource {
            path: dir.to_owned(),
            store: Store::Dir,
            index,
        })
    }

    /// The directory or archive this image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is an archive rather than a layout directory.
    pub fn is_archive(&self) -> bool {
        matches!(self.store, Store::Archive { .. })
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// Whether the layout holds the blob (the image-layout spec allows blobs to be
    /// absent, e.g. non-distributable layers).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        match &self.store {
            Store::Dir => std::fs::symlink_metadata(self.blob_path(digest))
                .map(|m| m.is_file())
                .unwrap_or(false),
            Store::Archive { blobs, .. } => blobs.contains_key(digest),
        }
    }

    /// The stored size of a blob, as found in the layout (not yet verified).
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        match &self.store {
            Store::Dir => {
                let path = self.blob_path(digest);
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_file() => Ok(m.len()),
                    Ok(_) => Err(self.missing(digest)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.missing(digest)),
                    Err(source) => Err(SourceError::Io { path, source }),
                }
            }
            Store::Archive { blobs, .. } => blobs
                .get(digest)
                .map(|b| b.size)
                .ok_or_else(|| self.missing(digest)),
        }
    }

    /// Reads a blob's raw bytes, without verifying them: use [`Self::copy_blob`]
    /// or [`Self::read_blob`] unless you verify the content yourself.
    pub fn blob_reader(&self, digest: &Digest) -> Result<BlobReader<'_>> {
        match &self.store {
            Store::Dir => {
                let path = self.blob_path(digest);
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&path);
                let file = match file {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(self.missing(digest))
                    }
                    Err(source) => return Err(SourceError::Io { path, source }),
                };
                let meta = file.metadata().map_err(|source| SourceError::Io {
                    path: path.clone(),
                    source,
                })?;
                if !meta.is_file() {
                    return Err(self.missing(digest));
                }
                Ok(BlobReader(ReaderInner::File(file)))
            }
            Store::Archive { file, blobs } => {
                let blob = blobs.get(digest).ok_or_else(|| self.missing(digest))?;
                Ok(BlobReader(ReaderInner::Slice {
                    file,
                    pos: blob.offset,
                    end: blob.offset + blob.size,
                }))
            }
        }
    }

    /// Streams a blob to `out` while checking its size and digest against `desc`;
    /// returns the number of bytes written. On error, `out` may have received
    /// some or all of the (bad) bytes: discard it.
    pub fn copy_blob<W: Write + ?Sized>(&self, desc: &Descriptor, out: &mut W) -> Result<u64> {
        let digest = desc.digest();
        let expected = desc.size();
        let mut hasher = DigestHasher::new(digest.algorithm()).ok_or_else(|| {
            SourceError::UnsupportedDigest {
                path: self.path.clone(),
                digest: digest.clone(),
            }
        })?;
        let stored = self.blob_size(digest)?;
        if stored != expected {
            return Err(self.size_mismatch(digest, expected, stored));
        }
        let mut reader = self.blob_reader(digest)?;
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(SourceError::BlobIo {
                        path: self.path.clone(),
                        digest: digest.clone(),
                        source,
                    })
                }
            };
            total += n as u64;
            if total > expected {
                return Err(self.size_mismatch(digest, expected, total));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|source| SourceError::Write {
                    path: self.path.clone(),
                    digest: digest.clone(),
                    source,
                })?;
        }
        if total != expected {
            return Err(self.size_mismatch(digest, expected, total));
        }
        let actual = hasher.finish();
        if actual != digest.digest() {
            return Err(SourceError::DigestMismatch {
                path: self.path.clone(),
                digest: digest.clone(),
                actual: format!("{}:{actual}", digest.algorithm()),
            });
        }
        Ok(total)
    }

    /// Reads a whole blob of at most `limit` bytes into memory, verified.
    pub fn read_blob(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        if desc.size() > limit {
            return Err(SourceError::TooLarge {
                path: self.path.clone(),
                what: format!("blob {}", desc.digest()),
                size: desc.size(),
                limit,
            });
        }
        let mut data = Vec::with_capacity(desc.size() as usize);
        self.copy_blob(desc, &mut data)?;
        Ok(data)
    }

    /// Reads, verifies and parses a JSON blob of at most [`MAX_JSON_SIZE`] bytes.
    pub fn read_json<T: DeserializeOwned>(&self, desc: &Descriptor) -> Result<T> {
        let data = self.read_blob(desc, MAX_JSON_SIZE)?;
        serde_json::from_slice(&data).map_err(|source| SourceError::Json {
            path: self.path.clone(),
            what: format!("blob {}", desc.digest()),
            source,
        })
    }

    /// Chooses an image: the entry of `index.json` whose
    /// `org.opencontainers.image.ref.name` is `reference`, or the only entry when
    /// `reference` is `None`. Image indexes are followed by choosing the platform
    /// of this machine. The manifest and config are verified.
    pub fn resolve(&self, reference: Option<&str>) -> Result<ResolvedImage> {
        let manifests = self.index.manifests();
        let candidates: Vec<&Descriptor> = match reference {
            Some(reference) => manifests
                .iter()
                .filter(|d| ref_name(d) == Some(reference))
                .collect(),
            None => manifests.iter().collect(),
        };
        let chosen = match candidates.as_slice() {
            [] => {
                return Err(match reference {
                    Some(reference) => SourceError::RefNotFound {
                        path: self.path.clone(),
                        reference: reference.to_owned(),
                        available: describe_entries(manifests),
                    },
                    None => SourceError::NoImage {
                        path: self.path.clone(),
                    },
                })
            }
            [only] => *only,
            several => {
                // Several platforms of one image listed directly in index.json.
                let same_name = several.iter().all(|d| ref_name(d) == ref_name(several[0]));
                match select_platform(several.iter().copied()) {
                    Some(d) if same_name => d,
                    _ => {
                        return Err(SourceError::Ambiguous {
                            path: self.path.clone(),
                            available: describe_entries(manifests),
                        })
                    }
                }
            }
        };
        let name = ref_name(chosen)
            .map(str::to_owned)
            .unwrap_or_else(|| chosen.digest().to_string());
        let mut desc = chosen.clone();
        for _ in 0..=MAX_INDEX_DEPTH {
            match desc_kind(&desc) {
                DescKind::Index => {
                    let index: ImageIndex = self.read_json(&desc)?;
                    let next = select_platform(index.manifests().iter()).ok_or_else(|| {
                        SourceError::NoPlatform {
                            path: self.path.clone(),
                            digest: desc.digest().clone(),
                            platform: format!("{}/{}", Os::Linux, host_arch()),
                        }
                    })?;
                    desc = next.clone();
                }
                DescKind::Manifest => {
                    let manifest: ImageManifest = self.read_json(&desc)?;
                    let config_desc = manifest.config();
                    if !is_config_media_type(config_desc.media_type()) {
                        return Err(SourceError::MediaType {
                            path: self.path.clone(),
                            what: "config",
                            digest: config_desc.digest().clone(),
                            media_type: config_desc.media_type().to_string(),
                        });
                    }
                    let config: ImageConfiguration = self.read_json(config_desc)?;
                    return Ok(ResolvedImage {
                        manifest_descriptor: desc,
                        manifest,
                        config,
                        name,
                    });
                }
                DescKind::Other => {
                    return Err(SourceError::MediaType {
                        path: self.path.clone(),
                        what: "manifest",
                        digest: desc.digest().clone(),
                        media_type: desc.media_type().to_string(),
                    })
                }
            }
        }
        Err(SourceError::TooDeep {
            path: self.path.clone(),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        // A parsed Digest's algorithm and encoded parts never hold '/' or "..".
        self.path
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(digest.digest())
    }

    fn missing(&self, digest: &Digest) -> SourceError {
        SourceError::MissingBlob {
            path: self.path.clone(),
            digest: digest.clone(),
        }
    }

    fn size_mismatch(&self, digest: &Digest, expected: u64, actual: u64) -> SourceError {
        SourceError::SizeMismatch {
            path: self.path.clone(),
            digest: digest.clone(),
            expected,
            actual,
        }
    }
}

/// A blob's raw bytes, from [`ImageSource::blob_reader`].
#[derive(Debug)]
pub struct BlobReader<'a>(ReaderInner<'a>);

#[derive(Debug)]
enum ReaderInner<'a> {
    File(File),
    Slice { file: &'a File, pos: u64, end: u64 },
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            ReaderInner::File(file) => file.read(buf),
            ReaderInner::Slice { file, pos, end } => {
                let want = (*end - *pos).min(buf.len() as u64) as usize;
                if want == 0 {
                    return Ok(0);
                }
                let n = file.read_at(&mut buf[..want], *pos)?;
                *pos += n as u64;
                Ok(n)
            }
        }
    }
}

/// What an entry of `index.json` or of an image index points to.
pub(crate) enum DescKind {
    Index,
    Manifest,
    Other,
}

pub(crate) fn desc_kind(desc: &Descriptor) -> DescKind {
    match desc.media_type() {
        MediaType::ImageIndex => DescKind::Index,
        MediaType::ImageManifest => DescKind::Manifest,
        MediaType::Other(t) if t == DOCKER_MANIFEST_LIST => DescKind::Index,
        MediaType::Other(t) if t == DOCKER_MANIFEST => DescKind::Manifest,
        _ => DescKind::Other,
    }
}

pub(crate) fn is_config_media_type(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageConfig => true,
        MediaType::Other(t) => t == DOCKER_CONFIG,
        _ => false,
    }
}

/// The `org.opencontainers.image.ref.name` annotation of a descriptor.
pub(crate) fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations()
        .as_ref()?
        .get(ANNOTATION_REF_NAME)
        .map(String::as_str)
}

/// The OCI (Go) name of a Rust target architecture.
pub fn oci_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn host_arch() -> Arch {
    Arch::from(oci_arch(std::env::consts::ARCH))
}

/// The first descriptor whose platform is linux on this machine's architecture,
/// or the only descriptor if it names no platform.
fn select_platform<'a>(descs: impl Iterator<Item = &'a Descriptor>) -> Option<&'a Descriptor> {
    let arch = host_arch();
    let descs: Vec<&Descriptor> = descs.collect();
    let native = descs.iter().copied().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == arch)
    });
    native.or(match descs.as_slice() {
        [only] if only.platform().is_none() => Some(*only),
        _ => None,
    })
}

fn describe_entries(manifests: &[Descriptor]) -> String {
    if manifests.is_empty() {
        return "none".into();
    }
    manifests
        .iter()
        .map(|d| match (ref_name(d), d.platform()) {
            (Some(name), Some(p)) => format!("{name} ({}/{})", p.os(), p.architecture()),
            (Some(name), None) => name.to_owned(),
            (None, Some(p)) => format!("unnamed {} ({}/{})", d.digest(), p.os(), p.architecture()),
            (None, None) => format!("unnamed {}", d.digest()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

enum EntryKind {
    Layout,
    Index,
    Blob(Digest),
    Other,
}

/// The name of an archive entry relative to the layout root (`./` and empty
/// components removed), or `None` if it is absolute or climbs with `..`.
fn layout_name(raw: &[u8]) -> Option<String> {
    if raw.starts_with(b"/") {
        return None;
    }
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            part => parts.push(String::from_utf8_lossy(part)),
        }
    }
    Some(parts.join("/"))
}

fn classify(name: &str) -> EntryKind {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["oci-layout"] => EntryKind::Layout,
        ["index.json"] => EntryKind::Index,
        ["blobs", alg, encoded] => match Digest::from_str(&format!("{alg}:{encoded}")) {
            Ok(digest) => EntryKind::Blob(digest),
            Err(_) => EntryKind::Other,
        },
        _ => EntryKind::Other,
    }
}

fn read_capped_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let io_err = |source| SourceError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            SourceError::NotLayout {
                path: path.parent().unwrap_or(path).to_owned(),
                reason: format!("it has no {what}"),
            }
        } else {
            io_err(e)
        }
    })?;
    let mut data = Vec::new();
    file.take(MAX_JSON_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(io_err)?;
    if data.len() as u64 > MAX_JSON_SIZE {
        return Err(SourceError::TooLarge {
            path: path.to_owned(),
            what: what.into(),
            size: std::fs::metadata(path).map_or(data.len() as u64, |m| m.len()),
            limit: MAX_JSON_SIZE,
        });
    }
    Ok(data)
}

fn check_layout(path: &Path, data: &[u8]) -> Result<()> {
    let layout: OciLayout = serde_json::from_slice(data).map_err(|source| SourceError::Json {
        path: path.to_owned(),
        what: "oci-layout".into(),
        source,
    })?;
    let version = layout.image_layout_version();
    if version.split('.').next() != Some("1") {
        return Err(SourceError::LayoutVersion {
            path: path.to_owned(),
            version: version.clone(),
        });
    }
    Ok(())
}

fn parse_index(path: &Path, data: &[u8]) -> Result<ImageIndex> {
    let index: ImageIndex = serde_json::from_slice(data).map_err(|source| SourceError::Json {
        path: path.to_owned(),
        what: "index.json".into(),
        source,
    })?;
    if index.schema_version() != 2 {
        return Err(SourceError::NotLayout {
            path: path.to_owned(),
            reason: format!(
                "index.json has schemaVersion {}, expected 2",
                index.schema_version()
            ),
        });
    }
    Ok(index)
}

/// A running hash in one of the SHA-2 algorithms OCI digests use.
pub(crate) enum DigestHasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl DigestHasher {
    pub(crate) fn new(algorithm: &DigestAlgorithm) -> Option<Self> {
        match algorithm {
            DigestAlgorithm::Sha256 => Some(Self::Sha256(sha2::Sha256::new())),
            DigestAlgorithm::Sha384 => Some(Self::Sha384(sha2::Sha384::new())),
            DigestAlgorithm::Sha512 => Some(Self::Sha512(sha2::Sha512::new())),
            _ => None,
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// The lower-case hex digest.
    pub(crate) fn finish(self) -> String {
        match self {
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha384(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Builders of small OCI layouts and archives for tests of this crate.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;
    use std::io::Write;
    use std::path::Path;

    use oci_spec::image::{Descriptor, Digest, MediaType, ANNOTATION_REF_NAME};
    use serde_json::json;
    use sha2::{Digest as _, Sha256};

    pub(crate) fn sha256(data: &[u8]) -> Digest {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
            .parse()
            .unwrap()
    }

    /// A tar of `files`, and its gzip compression.
    pub(crate) fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Vec<u8>) {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        (tar, gz.finish().unwrap())
    }

    /// An OCI layout being assembled in memory.
    #[derive(Default)]
    pub(crate) struct Layout {
        pub(crate) blobs: Vec<(Digest, Vec<u8>)>,
        pub(crate) manifests: Vec<Descriptor>,
        /// Extra archive entries: (name, data).
        pub(crate) extra: Vec<(String, Vec<u8>)>,
        /// Extra archive entries that are links to `/etc/passwd`.
        pub(crate) links: Vec<(String, tar::EntryType)>,
        /// Prefix every archive entry with `./`.
        pub(crate) dot_prefix: bool,
        pub(crate) layout_version: Option<String>,
    }

    impl Layout {
        pub(crate) fn blob(&mut self, media_type: MediaType, data: Vec<u8>) -> Descriptor {
            let digest = sha256(&data);
            let desc = Descriptor::new(media_type, data.len() as u64, digest.clone());
            if !self.blobs.iter().any(|(d, _)| *d == digest) {
                self.blobs.push((digest, data));
            }
            desc
        }

        /// Adds an image of gzip layers with the given (tar, gzip) pairs; the
        /// config's diffIDs are the tars' digests. Returns the manifest descriptor.
        pub(crate) fn image(&mut self, layers: &[(Vec<u8>, Vec<u8>)]) -> Descriptor {
            let layers: Vec<(MediaType, Vec<u8>, String)> = layers
                .iter()
                .map(|(tar, gz)| {
                    (
                        MediaType::ImageLayerGzip,
                        gz.clone(),
                        sha256(tar).to_string(),
                    )
                })
                .collect();
            self.image_with(&layers)
        }

        /// Adds an image of layers given as (media type, blob, diffID).
        pub(crate) fn image_with(&mut self, layers: &[(MediaType, Vec<u8>, String)]) -> Descriptor {
            let diff_ids: Vec<&String> = layers.iter().map(|(_, _, d)| d).collect();
            let config = json!({
                "architecture": crate::source::oci_arch(std::env::consts::ARCH),
                "os": "linux",
                "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            });
            let config = self.blob(MediaType::ImageConfig, serde_json::to_vec(&config).unwrap());
            let layers: Vec<Descriptor> = layers
                .iter()
                .map(|(media_type, blob, _)| self.blob(media_type.clone(), blob.clone()))
                .collect();
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config,
                "layers": layers,
            });
            self.blob(
                MediaType::ImageManifest,
                serde_json::to_vec(&manifest).unwrap(),
            )
        }

        /// Lists a manifest (or index) in index.json under `name`.
        pub(crate) fn tag(&mut self, mut desc: Descriptor, name: Option<&str>) {
            if let Some(name) = name {
                desc.set_annotations(Some(HashMap::from([(
                    ANNOTATION_REF_NAME.to_owned(),
                    name.to_owned(),
                )])));
            }
            self.manifests.push(desc);
        }

        pub(crate) fn replace_blob(&mut self, digest: &Digest, data: Vec<u8>) {
            let blob = self.blobs.iter_mut().find(|(d, _)| d == digest).unwrap();
            blob.1 = data;
        }

        pub(crate) fn remove_blob(&mut self, digest: &Digest) {
            self.blobs.retain(|(d, _)| d != digest);
        }

        fn files(&self) -> Vec<(String, Vec<u8>)> {
            let version = self.layout_version.as_deref().unwrap_or("1.0.0");
            let index = json!({"schemaVersion": 2, "manifests": self.manifests});
            let mut files = vec![
                (
                    "oci-layout".to_owned(),
                    serde_json::to_vec(&json!({ "imageLayoutVersion": version })).unwrap(),
                ),
                ("index.json".to_owned(), serde_json::to_vec(&index).unwrap()),
            ];
            for (digest, data) in &self.blobs {
                let name = format!("blobs/{}/{}", digest.algorithm(), digest.digest());
                files.push((name, data.clone()));
            }
            files.extend(self.extra.iter().cloned());
            files
        }

        pub(crate) fn write_archive(&self, path: &Path) {
            let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
            let prefix = if self.dot_prefix { "./" } else { "" };
            for (name, data) in self.files() {
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_entry_type(tar::EntryType::Regular);
                // Set the name by hand: append_data refuses "..".
                let full = format!("{prefix}{name}");
                header.as_old_mut().name[..full.len()].copy_from_slice(full.as_bytes());
                header.set_cksum();
                builder.append(&header, data.as_slice()).unwrap();
            }
            for (name, entry_type) in &self.links {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(*entry_type);
                header.set_size(0);
                builder
                    .append_link(&mut header, name, "/etc/passwd")
                    .unwrap();
            }
            builder.into_inner().unwrap().sync_all().unwrap();
        }

        pub(crate) fn write_dir(&self, dir: &Path) {
            for (name, data) in self.files() {
                let path = dir.join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, data).unwrap();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use serde_json::json;

    fn two_images() -> (Layout, Descriptor, Descriptor) {
        let mut layout = Layout::default();
        let a = layout.image(&[layer(&[("a", b"alpha")])]);
        let b = layout.image(&[layer(&[("b", b"beta")]), layer(&[("c", b"gamma")])]);
        layout.tag(a.clone(), Some("a"));
        layout.tag(b.clone(), Some("b"));
        (layout, a, b)
    }

    #[test]
    fn image_ref_parse_and_display() {
        let layout = |dir: &str, r: Option<&str>| ImageRef::Layout {
            dir: dir.into(),
            reference: r.map(Into::into),
        };
        let archive = |file: &str, r: Option<&str>| ImageRef::Archive {
            file: file.into(),
            reference: r.map(Into::into),
        };
        let cases = [
            ("oci-layout:/srv/img", layout("/srv/img", None)),
            (
                "oci-layout:/srv/img:latest",
                layout("/srv/img", Some("latest")),
            ),
            ("oci-layout:rel/dir:v1.2", layout("rel/dir", Some("v1.2"))),
            ("oci-layout:/a:b/c", layout("/a:b/c", None)),
            ("oci-layout:/a:b/c:tag", layout("/a:b/c", Some("tag"))),
            ("oci-archive:/x/img.tar", archive("/x/img.tar", None)),
            ("oci-archive:img.tar:py3", archive("img.tar", Some("py3"))),
        ];
        for (input, expected) in cases {
            let parsed: ImageRef = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed, expected, "{input}");
            assert_eq!(parsed.to_string(), input);
        }
        for bad in [
            "",
            "/srv/img",
            "docker://x",
            "oci:/srv/img",
            "oci-layout:",
            "oci-layout::tag",
            "oci-archive:x.tar:",
        ] {
            let err = bad.parse::<ImageRef>().unwrap_err().to_string();
            assert!(err.contains("oci-layout:DIR[:REF]"), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn resolve_by_ref_in_archive_and_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut layout, a, b) = two_images();
        layout.dot_prefix = true;
        let archive = tmp.path().join("img.tar");
        layout.write_archive(&archive);
        let dir = tmp.path().join("layout");
        layout.write_dir(&dir);

        for path in [&archive, &dir] {
            let source = ImageSource::open(path).unwrap();
            assert_eq!(source.is_archive(), path == &archive);
            assert_eq!(source.index().manifests().len(), 2);
            let img = source.resolve(Some("b")).unwrap();
            assert_eq!(img.name, "b");
            assert_eq!(img.manifest_descriptor.digest(), b.digest());
            assert_eq!(img.manifest.layers().len(), 2);
            assert_eq!(img.config.rootfs().diff_ids().len(), 2);
            let img = source.resolve(Some("a")).unwrap();
            assert_eq!(img.manifest_descriptor.digest(), a.digest());

            let err = source.resolve(Some("zzz")).unwrap_err().to_string();
            assert!(err.contains("\"zzz\"") && err.contains("a, b"), "{err}");
            let err = source.resolve(None).unwrap_err().to_string();
            assert!(err.contains("several images (a, b)"), "{err}");

            // Blobs read back verified, byte for byte.
            let layer = &img.manifest.layers()[0];
            let mut out = Vec::new();
            assert_eq!(source.copy_blob(layer, &mut out).unwrap(), layer.size());
            assert_eq!(sha256(&out), *layer.digest());
            assert!(source.has_blob(layer.digest()));
            assert!(!source.has_blob(&sha256(b"nothing")));
        }
    }

    #[test]
    fn open_ref_checks_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _, _) = two_images();
        let archive = tmp.path().join("img.tar");
        layout.write_archive(&archive);
        let r: ImageRef = format!("oci-archive:{}:a", archive.display())
            .parse()
            .unwrap();
        let source = ImageSource::open_ref(&r).unwrap();
        assert_eq!(source.resolve(r.reference()).unwrap().name, "a");
        let r: ImageRef = format!("oci-layout:{}:a", archive.display())
            .parse()
            .unwrap();
        let err = ImageSource::open_ref(&r).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn resolve_single_unnamed_and_nested_index() {
        let tmp = tempfile::tempdir().unwrap();
        let mut layout = Layout::default();
        let native = layout.image(&[layer(&[("n", b"native")])]);
        let foreign = layout.image(&[layer(&[("f", b"foreign")])]);
        let platform = |arch: &str| json!({"os": "linux", "architecture": arch});
        let mut entries = Vec::new();
        for (desc, arch) in [
            (&foreign, "s390x-not-this-one"),
            (&native, oci_arch(std::env::consts::ARCH)),
        ] {
            let mut entry = serde_json::to_value(desc).unwrap();
            entry["platform"] = platform(arch);
            entries.push(entry);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        let index = layout.blob(MediaType::ImageIndex, serde_json::to_vec(&index).unwrap());
        layout.tag(index.clone(), None);
        let path = tmp.path().join("img.tar");
        layout.write_archive(&path);
        let source = ImageSource::open(&path).unwrap();
        let img = source.resolve(None).unwrap();
        assert_eq!(img.manifest_descriptor.digest(), native.digest());
        assert_eq!(img.name, index.digest().to_string());
    }

    #[test]
    fn resolve_platforms_listed_in_index_json() {
        let tmp = tempfile::tempdir().unwrap();
        let mut layout = Layout::default();
        let native = layout.image(&[layer(&[("n", b"native")])]);
        let foreign = layout.image(&[layer(&[("f", b"foreign")])]);
        for (desc, arch) in [(&foreign, Arch::from("mips64le")), (&native, host_arch())] {
            let mut desc = desc.clone();
            desc.set_platform(Some(
                oci_spec::image::PlatformBuilder::default()
                    .os(Os::Linux)
                    .architecture(arch.clone())
                    .build()
                    .unwrap(),
            ));
            layout.tag(desc, Some("multi"));
        }
        let path = tmp.path().join("img.tar");
        layout.write_archive(&path);
        let source = ImageSource::open(&path).unwrap();
        for reference in [Some("multi"), None] {
            let img = source.resolve(reference).unwrap();
            assert_eq!(img.manifest_descriptor.digest(), native.digest());
            assert_eq!(img.name, "multi");
        }

        // An index with no manifest for this machine.
        let mut layout = Layout::default();
        let mut entry = serde_json::to_value(&foreign).unwrap();
        entry["platform"] = json!({"os": "linux", "architecture": "mips64le"});
        let index = json!({"schemaVersion": 2, "manifests": [entry]});
        let index = layout.blob(MediaType::ImageIndex, serde_json::to_vec(&index).unwrap());
        layout.tag(index.clone(), Some("other"));
        layout.write_archive(&path);
        let err = ImageSource::open(&path).unwrap().resolve(None).unwrap_err();
        assert!(matches!(err, SourceError::NoPlatform { .. }), "{err}");
        assert!(
            err.to_string().contains(&index.digest().to_string()),
            "{err}"
        );
    }

    #[test]
    fn copy_blob_detects_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut layout, a, _) = two_images();
        let mut bad = layout
            .blobs
            .iter()
            .find(|(d, _)| d == a.digest())
            .unwrap()
            .1
            .clone();
        bad[10] ^= 1;
        layout.replace_blob(a.digest(), bad);
        let path = tmp.path().join("img.tar");
        layout.write_archive(&path);
        let source = ImageSource::open(&path).unwrap();
        let err = source.resolve(Some("a")).unwrap_err();
        assert!(matches!(err, SourceError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&a.digest().to_string()), "{err}");
        assert!(err.to_string().contains("img.tar"), "{err}");

        // A descriptor whose size is wrong is refused before anything is copied.
        let mut wrong = a.clone();
        wrong.set_size(a.size() + 1);
        let mut out = Vec::new();
        let err = source.copy_blob(&wrong, &mut out).unwrap_err();
        assert!(matches!(err, SourceError::SizeMismatch { .. }), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn refuses_entries_outside_the_layout_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["../evil", "/etc/passwd", "blobs/../../x", "./../y"] {
            let (mut layout, _, _) = two_images();
            layout.extra.push((name.to_owned(), b"x".to_vec()));
            let path = tmp.path().join("img.tar");
            layout.write_archive(&path);
            let err = ImageSource::open(&path).unwrap_err();
            assert!(matches!(err, SourceError::BadEntry { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{err}");
        }

        // A blob that is a symlink or a hard link.
        for entry_type in [tar::EntryType::Symlink, tar::EntryType::Link] {
            let (mut layout, a, _) = two_images();
            layout.remove_blob(a.digest());
            let name = format!("blobs/sha256/{}", a.digest().digest());
            layout.links.push((name, entry_type));
            let path = tmp.path().join("link.tar");
            layout.write_archive(&path);
            let err = ImageSource::open(&path).unwrap_err();
            assert!(matches!(err, SourceError::BadEntry { .. }), "{err}");
            assert!(err.to_string().contains("not links"), "{err}");
        }
    }

    #[test]
    fn refuses_oversized_json() {
        let tmp = tempfile::tempdir().unwrap();
        let mut layout = Layout::default();
        let mut big = b"{\"x\":\"".to_vec();
        big.resize(MAX_JSON_SIZE as usize + 10, b'a');
        big.extend_from_slice(b"\"}");
        let desc = layout.blob(MediaType::ImageManifest, big);
        layout.tag(desc.clone(), Some("big"));
        let path = tmp.path().join("img.tar");
        layout.write_archive(&path);
        let source = ImageSource::open(&path).unwrap();
        let err = source.resolve(Some("big")).unwrap_err();
        assert!(matches!(err, SourceError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains(&desc.digest().to_string()),
            "{err}"
        );

        // An oversized index.json, in a directory and in an archive.
        let layout = Layout {
            manifests: vec![desc; 80_000],
            ..Layout::default()
        };
        let dir = tmp.path().join("dir");
        layout.write_dir(&dir);
        let err = ImageSource::open(&dir).unwrap_err();
        assert!(matches!(err, SourceError::TooLarge { .. }), "{err}");
        layout.write_archive(&path);
        let err = ImageSource::open(&path).unwrap_err();
        assert!(matches!(err, SourceError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("index.json"), "{err}");
    }

    #[test]
    fn checks_layout_version_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut layout, _, _) = two_images();
        layout.layout_version = Some("2.0.0".into());
        let path = tmp.path().join("img.tar");
        layout.write_archive(&path);
        let err = ImageSource::open(&path).unwrap_err();
        assert!(matches!(err, SourceError::LayoutVersion { .. }), "{err}");

        std::fs::write(&path, b"not a tar at all, just some bytes").unwrap();
        assert!(ImageSource::open(&path).is_err());

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = ImageSource::open(&empty).unwrap_err().to_string();
        assert!(
            err.contains("not an OCI image layout") && err.contains("oci-layout"),
            "{err}"
        );
    }

    #[test]
    fn missing_blob_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut layout, a, _) = two_images();
        layout.remove_blob(a.digest());
        let dir = tmp.path().join("layout");
        layout.write_dir(&dir);
        let source = ImageSource::open(&dir).unwrap();
        let err = source.resolve(Some("a")).unwrap_err();
        assert!(matches!(err, SourceError::MissingBlob { .. }), "{err}");
        assert!(err.to_string().contains(&a.digest().to_string()));
    }

    #[test]
    fn arch_names() {
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("aarch64"), "arm64");
        assert_eq!(oci_arch("riscv64"), "riscv64");
    }
}
