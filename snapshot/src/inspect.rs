//! Reading back and verifying an OCI archive or layout: `freezeframe inspect`.
//!
//! Every image of `index.json` (through nested indexes, all platforms) is read:
//! the manifest and config must be present and match their digests; each layer
//! present is checked against its digest and size, decompressed according to its
//! media type, hashed and parsed as tar, and the hash compared with the config's
//! diffID. Absent layers are allowed (the image-layout spec permits missing
//! blobs) and are reported as such. What is wrong with the content is collected
//! in [`Inspection::problems`]; only an archive that cannot be opened at all is
//! an error.
//!
//! It only reads, through [`crate::source`]; it shares no code with the writer,
//! so that it checks what was written rather than what was meant.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use serde::Serialize;

use crate::source::{
    desc_kind, is_config_media_type, ref_name, DescKind, DigestHasher, ImageSource, SourceError,
    MAX_JSON_SIZE,
};

/// Deepest chain of image indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

/// Most bytes of one PAX extended header, GNU long name or GNU long link
/// that are read: the tar crate would read one whole, and a small compressed
/// layer can declare gigabytes of one.
pub const MAX_TAR_META: u64 = 1 << 20;

const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_FOREIGN_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Errors that prevent inspecting at all (content problems are in
/// [`Inspection::problems`] instead).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Source(#[from] SourceError),

    #[error("{}: layer {digest}: {message}", path.display())]
    Layer {
        path: PathBuf,
        digest: String,
        message: String,
    },
}

/// What `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The archive (or layout directory) inspected.
    pub archive: PathBuf,
    pub images: Vec<ImageReport>,
    /// One line per thing found wrong, naming the blob at fault.
    pub problems: Vec<String>,
}

/// One image manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// `org.opencontainers.image.ref.name` of its entry in `index.json`.
    pub ref_name: Option<String>,
    /// `os/arch[/variant]` when an image index names it.
    pub platform: Option<String>,
    pub manifest_digest: Digest,
    /// `None` if the manifest could not be read.
    pub config_digest: Option<Digest>,
    /// The config as found, if it could be read.
    pub config: Option<serde_json::Value>,
    pub layers: Vec<LayerReport>,
}

/// One layer of an image.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub digest: Digest,
    /// The config's diffID for this layer.
    pub diff_id: Option<String>,
    pub media_type: String,
    /// Compressed size, from the manifest.
    pub size: u64,
    /// Whether the archive holds the blob.
    pub present: bool,
    /// Whether its digest, size and diffID were all checked and found right.
    pub verified: bool,
    /// Number of tar entries, if the layer could be read.
    pub entries: Option<u64>,
    /// Size of the uncompressed tar stream, if the layer could be read.
    pub uncompressed_size: Option<u64>,
}

impl Inspection {
    /// No problem found (absent layers are not a problem).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Opens and verifies the OCI archive or layout directory at `path`.
pub fn inspect(path: &Path) -> Result<Inspection, InspectError> {
    let source = ImageSource::open(path)?;
    let mut inspector = Inspector {
        source: &source,
        images: Vec::new(),
        problems: Vec::new(),
        layers: HashMap::new(),
    };
    let manifests = source.index().manifests();
    if manifests.is_empty() {
        inspector.problems.push("index.json lists no image".into());
    }
    for desc in manifests {
        inspector.visit(desc, ref_name(desc), 0);
    }
    Ok(Inspection {
        archive: path.to_owned(),
        images: inspector.images,
        problems: inspector.problems,
    })
}

struct Inspector<'a> {
    source: &'a ImageSource,
    images: Vec<ImageReport>,
    problems: Vec<String>,
    /// Layers already read, by digest: a layer shared by several images is
    /// read once.
    layers: HashMap<Digest, LayerCheck>,
}

impl Inspector<'_> {
    fn visit(&mut self, desc: &Descriptor, name: Option<&str>, depth: usize) {
        let what = match name {
            Some(name) => format!("image {name:?}"),
            None => format!("image {}", desc.digest()),
        };
        match desc_kind(desc) {
            DescKind::Index if depth >= MAX_INDEX_DEPTH => self.problems.push(format!(
                "{what}: image indexes nested more than {MAX_INDEX_DEPTH} deep at {}",
                desc.digest()
            )),
            DescKind::Index => match self.source.read_json::<ImageIndex>(desc) {
                Ok(index) => {
                    if index.manifests().is_empty() {
                        self.problems
                            .push(format!("{what}: image index {} is empty", desc.digest()));
                    }
                    for child in index.manifests() {
                        self.visit(child, name.or(ref_name(child)), depth + 1);
                    }
                }
                Err(e) => self.problems.push(format!("{what}: image index: {e}")),
            },
            DescKind::Manifest => self.image(desc, name, &what),
            DescKind::Other => self.problems.push(format!(
                "{what}: {} has unsupported media type {}",
                desc.digest(),
                desc.media_type()
            )),
        }
    }

    fn image(&mut self, desc: &Descriptor, name: Option<&str>, what: &str) {
        let mut report = ImageReport {
            ref_name: name.map(str::to_owned),
            platform: desc.platform().as_ref().map(|p| {
                let mut s = format!("{}/{}", p.os(), p.architecture());
                if let Some(variant) = p.variant() {
                    s = format!("{s}/{variant}");
                }
                s
            }),
            manifest_digest: desc.digest().clone(),
            config_digest: None,
            config: None,
            layers: Vec::new(),
        };
        let manifest = match self.source.read_json::<ImageManifest>(desc) {
            Ok(manifest) => manifest,
            Err(e) => {
                self.problems.push(format!("{what}: manifest: {e}"));
                self.images.push(report);
                return;
            }
        };
        let config_desc = manifest.config();
        report.config_digest = Some(config_desc.digest().clone());
        let is_image = is_config_media_type(config_desc.media_type());
        if !is_image {
            self.problems.push(format!(
                "{what}: config {} has media type {}, not an image config; diffIDs not checked",
                config_desc.digest(),
                config_desc.media_type()
            ));
        }
        let mut diff_ids: Option<Vec<String>> = None;
        match self.source.read_blob(config_desc, MAX_JSON_SIZE) {
            Ok(bytes) => {
                match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(value) => report.config = Some(value),
                    Err(e) => self.problems.push(format!(
                        "{what}: config {} is not JSON: {e}",
                        config_desc.digest()
                    )),
                }
                if is_image && report.config.is_some() {
                    match serde_json::from_slice::<ImageConfiguration>(&bytes) {
                        Ok(config) => diff_ids = Some(config.rootfs().diff_ids().clone()),
                        Err(e) => self.problems.push(format!(
                            "{what}: config {} is not a valid image config: {e}",
                            config_desc.digest()
                        )),
                    }
                }
            }
            Err(e) => self.problems.push(format!("{what}: config: {e}")),
        }
        if let Some(ids) = &diff_ids {
            if ids.len() != manifest.layers().len() {
                self.problems.push(format!(
                    "{what}: config {} lists {} diffIDs but the manifest has {} layers",
                    config_desc.digest(),
                    ids.len(),
                    manifest.layers().len()
                ));
            }
        }

        for (i, layer) in manifest.layers().iter().enumerate() {
            let diff_id = diff_ids.as_ref().and_then(|ids| ids.get(i)).cloned();
            let present = self.source.has_blob(layer.digest());
            let mut report_layer = LayerReport {
                digest: layer.digest().clone(),
                diff_id: diff_id.clone(),
                media_type: layer.media_type().to_string(),
                size: layer.size(),
                present,
                verified: false,
                entries: None,
                uncompressed_size: None,
            };
            let at = format!("{what}: layer {} ({})", i + 1, layer.digest());
            if !present {
                tracing::debug!(layer = %layer.digest(), "layer absent from the archive");
                report.layers.push(report_layer);
                continue;
            }
            let check = self
                .layers
                .entry(layer.digest().clone())
                .or_insert_with(|| check_layer(self.source, layer));
            report_layer.entries = check.entries;
            report_layer.uncompressed_size = check.uncompressed_size;
            if let Some(error) = &check.error {
                self.problems.push(format!("{at}: {error}"));
            } else if is_image {
                match (&check.diff_id, &diff_id) {
                    (_, None) => {} // reported above as a diffID count mismatch
                    (None, Some(_)) => self.problems.push(format!(
                        "{at}: media type {} is not a known layer type; its diffID was not checked",
                        layer.media_type()
                    )),
                    (Some(actual), Some(expected)) if actual == expected => {
                        report_layer.verified = true;
                    }
                    (Some(actual), Some(expected)) => self.problems.push(format!(
                        "{at}: its uncompressed content hashes to {actual} but the config's diffID is {expected}"
                    )),
                }
            } else {
                report_layer.verified = true;
            }
            report.layers.push(report_layer);
        }
        self.images.push(report);
    }
}

/// The result of reading one layer blob.
struct LayerCheck {
    /// `sha256:...` of the uncompressed stream, if the media type is a layer's.
    diff_id: Option<String>,
    entries: Option<u64>,
    uncompressed_size: Option<u64>,
    /// What is wrong with the blob itself.
    error: Option<String>,
}

enum Compression {
    None,
    Gzip,
    Zstd,
    /// Not a layer media type we know: only the digest is checked.
    Unknown,
}

fn compression(media_type: &MediaType) -> Compression {
    match media_type {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Compression::None,
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Compression::Gzip,
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Compression::Zstd,
        MediaType::Other(t) if t == DOCKER_LAYER_GZIP || t == DOCKER_FOREIGN_LAYER_GZIP => {
            Compression::Gzip
        }
        _ => Compression::Unknown,
    }
}

/// Reads a layer blob once: its digest and size, and through the decompressor
/// its uncompressed digest and tar entries.
fn check_layer(source: &ImageSource, desc: &Descriptor) -> LayerCheck {
    let mut check = LayerCheck {
        diff_id: None,
        entries: None,
        uncompressed_size: None,
        error: None,
    };
    let digest = desc.digest();
    let fail = |mut check: LayerCheck, error: String| {
        check.error = Some(error);
        check
    };
    let stored = match source.blob_size(digest) {
        Ok(size) => size,
        Err(e) => return fail(check, e.to_string()),
    };
    if stored != desc.size() {
        return fail(
            check,
            format!(
                "the blob is {stored} bytes, the manifest says {}",
                desc.size()
            ),
        );
    }
    let Some(hasher) = DigestHasher::new(digest.algorithm()) else {
        return fail(check, "unsupported digest algorithm".into());
    };
    let reader = match source.blob_reader(digest) {
        Ok(reader) => reader,
        Err(e) => return fail(check, e.to_string()),
    };
    let mut raw = HashingReader::new(reader, hasher);
    let scanned = match compression(desc.media_type()) {
        Compression::None => Some(scan_tar(&mut raw)),
        Compression::Gzip => Some(scan_tar(flate2::read::MultiGzDecoder::new(&mut raw))),
        Compression::Zstd => Some(zstd::Decoder::new(&mut raw).and_then(scan_tar)),
        Compression::Unknown => None,
    };
    // Whatever the decompressor left (or all of it, for unknown types) still
    // counts for the digest.
    let drained = io::copy(&mut raw, &mut io::sink());
    let (actual, size) = raw.finish();
    if let Err(e) = drained {
        return fail(check, format!("failed to read the blob: {e}"));
    }
    if size != desc.size() {
        return fail(
            check,
            format!("read {size} bytes, the manifest says {}", desc.size()),
        );
    }
    if actual != digest.digest() {
        return fail(
            check,
            format!(
                "the blob is corrupt: its content hashes to {}:{actual}",
                digest.algorithm()
            ),
        );
    }
    match scanned {
        Some(Ok(scan)) => {
            check.diff_id = Some(format!("sha256:{}", scan.sha256));
            check.entries = Some(scan.entries);
            check.uncompressed_size = Some(scan.size);
            check
        }
        Some(Err(e)) => fail(
            check,
            format!("cannot read the layer as {}: {e}", desc.media_type()),
        ),
        None => check,
    }
}

/// Lists the entries of one layer of the image in `path` as `TYPE MODE UID:GID
/// PATH[ -> TARGET]` lines, in stream order.
pub fn layer_entries(path: &Path, layer_digest: &str) -> Result<Vec<String>, InspectError> {
    let source = ImageSource::open(path)?;
    let resolved = source.resolve(None)?;
    let desc = resolved
        .manifest
        .layers()
        .iter()
        .find(|d| d.digest().to_string() == layer_digest)
        .ok_or_else(|| InspectError::Layer {
            path: path.to_path_buf(),
            digest: layer_digest.to_string(),
            message: "no such layer in the image".into(),
        })?;
    let reader = source.blob_reader(desc.digest())?;
    let stream: Box<dyn Read + '_> = match compression(desc.media_type()) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::new(reader).map_err(|e| layer_error(path, desc, e))?)
        }
        Compression::Unknown => {
            return Err(InspectError::Layer {
                path: path.to_path_buf(),
                digest: layer_digest.to_string(),
                message: format!("unknown layer media type {}", desc.media_type()),
            })
        }
    };
    let mut archive = tar::Archive::new(stream);
    let mut lines = Vec::new();
    for_each_entry(&mut archive, |entry, meta| {
        let h = entry.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            _ => '-',
        };
        let id = |key, header: io::Result<u64>| {
            meta.pax_number(key).unwrap_or_else(|| header.unwrap_or(0))
        };
        let path = meta.path().unwrap_or_else(|| entry.path_bytes());
        let mut line = format!(
            "{kind} {:04o} {}:{} {}",
            h.mode().unwrap_or(0) & 0o7777,
            id("uid", h.uid()),
            id("gid", h.gid()),
            String::from_utf8_lossy(&path).trim_end_matches('/')
        );
        if let Some(target) = meta.link().or_else(|| entry.link_name_bytes()) {
            line.push_str(" -> ");
            line.push_str(&String::from_utf8_lossy(&target));
        }
        lines.push(line);
        Ok(())
    })
    .map_err(|e| layer_error(path, desc, e))?;
    Ok(lines)
}

/// What the extension headers before an entry said: PAX records, a GNU long
/// name and a GNU long link, each read bounded by [`MAX_TAR_META`].
#[derive(Default)]
struct TarMeta {
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl TarMeta {
    /// The first well-formed PAX record `key`, as the tar crate takes it.
    fn pax_value(&self, key: &str) -> Option<&[u8]> {
        tar::PaxExtensions::new(self.pax.as_deref()?)
            .map_while(Result::ok)
            .find(|r| r.key() == Ok(key))
            .map(|r| r.value_bytes())
    }

    fn pax_number(&self, key: &str) -> Option<u64> {
        std::str::from_utf8(self.pax_value(key)?).ok()?.parse().ok()
    }

    fn path(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        let long = self
            .long_name
            .as_deref()
            .map(|n| n.strip_suffix(b"\0").unwrap_or(n));
        self.pax_value("path").or(long).map(Into::into)
    }

    fn link(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        let long = self
            .long_link
            .as_deref()
            .map(|n| n.strip_suffix(b"\0").unwrap_or(n));
        self.pax_value("linkpath").or(long).map(Into::into)
    }
}

fn invalid_tar(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Calls `f` with each entry of `archive` and what its extension headers
/// said. The entries are iterated raw, and the extension headers (PAX `x`,
/// GNU `L` and `K`) read here, each refused when it declares more than
/// [`MAX_TAR_META`] bytes, so that no header is read whole into memory. As
/// the tar crate would, a PAX `size` gives the entry's size: one that
/// disagrees with the entry's header is refused, so that the raw framing is
/// the one any reader sees.
fn for_each_entry<R: Read>(
    archive: &mut tar::Archive<R>,
    mut f: impl FnMut(&mut tar::Entry<'_, R>, &TarMeta) -> io::Result<()>,
) -> io::Result<()> {
    let mut meta = TarMeta::default();
    let mut pending = false;
    for entry in archive.entries()?.raw(true) {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let size = entry.header().entry_size()?;
        let slot = if kind.is_pax_local_extensions() {
            Some((&mut meta.pax, "PAX extended header"))
        } else if kind.is_gnu_longname() {
            Some((&mut meta.long_name, "GNU long name"))
        } else if kind.is_gnu_longlink() {
            Some((&mut meta.long_link, "GNU long link"))
        } else {
            None
        };
        if let Some((slot, what)) = slot {
            if size > MAX_TAR_META {
                return Err(invalid_tar(format!(
                    "a {what} of {size} bytes, more than the {MAX_TAR_META} read"
                )));
            }
            if slot.is_some() {
                return Err(invalid_tar(format!("two {what}s describe one entry")));
            }
            let mut data = Vec::with_capacity(size as usize);
            (&mut entry).take(MAX_TAR_META).read_to_end(&mut data)?;
            *slot = Some(data);
            pending = true;
            continue;
        }
        let shown = || String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if kind.is_gnu_sparse() && entry.header().as_gnu().is_some_and(|g| g.is_extended()) {
            return Err(invalid_tar(format!(
                "{}: GNU sparse entries with extension headers are not read",
                shown()
            )));
        }
        // The tar crate gives a PAX size to no extension header.
        let sized = !kind.is_pax_global_extensions();
        if let Some(pax_size) = meta.pax_number("size").filter(|_| sized) {
            if pax_size != size {
                return Err(invalid_tar(format!(
                    "{}: its PAX size {pax_size} disagrees with its header's {size}",
                    shown()
                )));
            }
        }
        f(&mut entry, &meta)?;
        meta = TarMeta::default();
        pending = false;
    }
    if pending {
        return Err(invalid_tar(
            "extension headers describe an entry that never comes".into(),
        ));
    }
    Ok(())
}

fn layer_error(path: &Path, desc: &Descriptor, e: io::Error) -> InspectError {
    InspectError::Layer {
        path: path.to_path_buf(),
        digest: desc.digest().to_string(),
        message: e.to_string(),
    }
}

struct Scan {
    sha256: String,
    entries: u64,
    size: u64,
}

/// Hashes an uncompressed layer stream to its end and counts its tar entries.
fn scan_tar(reader: impl Read) -> io::Result<Scan> {
    let mut hashed = HashingReader::new(
        reader,
        DigestHasher::new(&oci_spec::image::DigestAlgorithm::Sha256).expect("sha256 is supported"),
    );
    let mut entries = 0;
    {
        let mut archive = tar::Archive::new(&mut hashed);
        for_each_entry(&mut archive, |_, _| {
            entries += 1;
            Ok(())
        })?;
    }
    // The diffID covers the whole stream, padding after the end blocks included.
    io::copy(&mut hashed, &mut io::sink())?;
    let (sha256, size) = hashed.finish();
    Ok(Scan {
        sha256,
        entries,
        size,
    })
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: DigestHasher,
    count: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R, hasher: DigestHasher) -> Self {
        HashingReader {
            inner,
            hasher,
            count: 0,
        }
    }

    /// The hex digest and the number of bytes read.
    fn finish(self) -> (String, u64) {
        (self.hasher.finish(), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl fmt::Display for Inspection {
    /// A one-screen summary for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "archive {}", self.archive.display())?;
        for image in &self.images {
            write!(
                f,
                "image {}",
                image.ref_name.as_deref().unwrap_or("(unnamed)")
            )?;
            if let Some(platform) = &image.platform {
                write!(f, " ({platform})")?;
            }
            writeln!(f)?;
            writeln!(f, "  manifest  {}", short(&image.manifest_digest))?;
            if let Some(config_digest) = &image.config_digest {
                write!(f, "  config    {}", short(config_digest))?;
                if let Some(config) = &image.config {
                    let field = |k: &str| config.get(k).and_then(|v| v.as_str());
                    if let (Some(os), Some(arch)) = (field("os"), field("architecture")) {
                        write!(f, "  {os}/{arch}")?;
                    }
                    if let Some(created) = field("created") {
                        write!(f, "  created {created}")?;
                    }
                }
                writeln!(f)?;
            }
            for (i, layer) in image.layers.iter().enumerate() {
                write!(
                    f,
                    "  layer {:<3} {}  {:<5} {:>10}",
                    i + 1,
                    short(&layer.digest),
                    short_media_type(&layer.media_type),
                    human_size(layer.size)
                )?;
                if let Some(size) = layer.uncompressed_size {
                    write!(f, " -> {:>10}", human_size(size))?;
                }
                if let Some(entries) = layer.entries {
                    write!(f, "  {entries} entries")?;
                }
                let state = if !layer.present {
                    "absent"
                } else if layer.verified {
                    "verified"
                } else {
                    "NOT VERIFIED"
                };
                writeln!(f, "  {state}")?;
            }
        }
        if self.problems.is_empty() {
            let absent = self
                .images
                .iter()
                .flat_map(|i| &i.layers)
                .filter(|l| !l.present)
                .count();
            write!(f, "ok")?;
            if absent > 0 {
                write!(f, " ({absent} layers absent, as the image layout allows)")?;
            }
            writeln!(f)
        } else {
            writeln!(f, "{} problems:", self.problems.len())?;
            for problem in &self.problems {
                writeln!(f, "  - {problem}")?;
            }
            Ok(())
        }
    }
}

/// `sha256:` and the first 12 hex digits.
fn short(digest: &Digest) -> String {
    let hex = digest.digest();
    format!("{}:{}", digest.algorithm(), &hex[..hex.len().min(12)])
}

fn short_media_type(media_type: &str) -> &str {
    match compression(&MediaType::from(media_type)) {
        Compression::None => "tar",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::Unknown => media_type,
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::test_support::*;
    use std::io::Write;

    fn find_blob<'a>(layout: &'a Layout, digest: &Digest) -> &'a Vec<u8> {
        &layout.blobs.iter().find(|(d, _)| d == digest).unwrap().1
    }

    fn manifest_of(layout: &Layout, desc: &Descriptor) -> ImageManifest {
        serde_json::from_slice(find_blob(layout, desc.digest())).unwrap()
    }

    /// An image "app" of two gzip layers, the first of 3 entries.
    fn app() -> (Layout, Descriptor) {
        let mut layout = Layout::default();
        let img = layout.image(&[
            layer(&[("etc/a", b"a"), ("etc/b", b"bb"), ("etc/c", b"ccc")]),
            layer(&[("home/work/x", b"x")]),
        ]);
        layout.tag(img.clone(), Some("app"));
        (layout, img)
    }

    fn inspect_archive(layout: &Layout) -> Inspection {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("img.tar");
        layout.write_archive(&path);
        inspect(&path).unwrap()
    }

    #[test]
    fn good_archive_verifies() {
        let (layout, img) = app();
        let ins = inspect_archive(&layout);
        assert!(ins.is_ok(), "{ins}");
        assert_eq!(ins.images.len(), 1);
        let image = &ins.images[0];
        assert_eq!(image.ref_name.as_deref(), Some("app"));
        assert_eq!(&image.manifest_digest, img.digest());
        assert_eq!(image.config.as_ref().unwrap()["os"], "linux");
        let first = &image.layers[0];
        assert!(first.present && first.verified);
        assert_eq!(first.entries, Some(3));
        let (tar, _) = layer(&[("etc/a", b"a"), ("etc/b", b"bb"), ("etc/c", b"ccc")]);
        assert_eq!(first.uncompressed_size, Some(tar.len() as u64));
        assert_eq!(first.diff_id.as_deref(), Some(sha256(&tar).as_ref()));

        let text = ins.to_string();
        assert!(
            text.contains("image app") && text.contains("verified"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("ok"), "{text}");
        let json = serde_json::to_value(&ins).unwrap();
        assert_eq!(json["images"][0]["layers"][0]["entries"], 3);
        assert_eq!(json["problems"], serde_json::json!([]));
    }

    #[test]
    fn all_layer_media_types() {
        let (tar, gz) = layer(&[("a", b"a")]);
        let zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
        let diff_id = sha256(&tar).to_string();
        let docker = MediaType::Other(DOCKER_LAYER_GZIP.into());
        let mut layout = Layout::default();
        let img = layout.image_with(&[
            (MediaType::ImageLayer, tar.clone(), diff_id.clone()),
            (MediaType::ImageLayerGzip, gz.clone(), diff_id.clone()),
            (MediaType::ImageLayerZstd, zst.clone(), diff_id.clone()),
            (docker, gz.clone(), diff_id.clone()),
            (
                MediaType::ImageLayerNonDistributableZstd,
                zst,
                diff_id.clone(),
            ),
        ]);
        layout.tag(img, None);
        let ins = inspect_archive(&layout);
        assert!(ins.is_ok(), "{ins}");
        let layers = &ins.images[0].layers;
        assert_eq!(layers.len(), 5);
        assert!(
            layers.iter().all(|l| l.verified && l.entries == Some(1)),
            "{ins}"
        );
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let (tar, _) = layer(&[("a", b"a"), ("b", b"b")]);
        let (head, tail) = tar.split_at(512);
        let mut gz = Vec::new();
        for part in [head, tail] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            gz.extend(enc.finish().unwrap());
        }
        let mut layout = Layout::default();
        let img = layout.image_with(&[(MediaType::ImageLayerGzip, gz, sha256(&tar).to_string())]);
        layout.tag(img, None);
        let ins = inspect_archive(&layout);
        assert!(ins.is_ok(), "{ins}");
        assert_eq!(ins.images[0].layers[0].entries, Some(2));
    }

    #[test]
    fn corrupt_layer_byte_is_reported() {
        let (mut layout, img) = app();
        let layer_digest = manifest_of(&layout, &img).layers()[1].digest().clone();
        let mut bytes = find_blob(&layout, &layer_digest).clone();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        layout.replace_blob(&layer_digest, bytes);
        let ins = inspect_archive(&layout);
        assert!(!ins.is_ok());
        assert_eq!(ins.problems.len(), 1, "{ins}");
        let problem = &ins.problems[0];
        assert!(problem.contains(&layer_digest.to_string()), "{problem}");
        assert!(problem.contains("corrupt"), "{problem}");
        assert!(problem.contains("layer 2"), "{problem}");
        assert!(!ins.images[0].layers[1].verified);
        assert!(ins.images[0].layers[0].verified);
    }

    #[test]
    fn wrong_diff_id_is_reported() {
        let (tar, gz) = layer(&[("a", b"a")]);
        let mut layout = Layout::default();
        let wrong = sha256(b"something else").to_string();
        let img = layout.image_with(&[(MediaType::ImageLayerGzip, gz, wrong.clone())]);
        layout.tag(img, Some("x"));
        let ins = inspect_archive(&layout);
        assert_eq!(ins.problems.len(), 1, "{ins}");
        let problem = &ins.problems[0];
        assert!(
            problem.contains(&wrong) && problem.contains(sha256(&tar).as_ref()),
            "{problem}"
        );
        assert!(problem.contains("diffID"), "{problem}");
        assert!(!ins.images[0].layers[0].verified);
    }

    #[test]
    fn missing_layer_is_absent_not_a_problem() {
        let (mut layout, img) = app();
        let layer_digest = manifest_of(&layout, &img).layers()[0].digest().clone();
        layout.remove_blob(&layer_digest);
        let ins = inspect_archive(&layout);
        assert!(ins.is_ok(), "{ins}");
        let layers = &ins.images[0].layers;
        assert!(!layers[0].present && !layers[0].verified);
        assert!(layers[1].present && layers[1].verified);
        assert!(ins.to_string().contains("absent"));
    }

    #[test]
    fn missing_config_or_manifest_is_a_problem() {
        let (mut layout, img) = app();
        let config = manifest_of(&layout, &img).config().digest().clone();
        layout.remove_blob(&config);
        let ins = inspect_archive(&layout);
        assert_eq!(ins.problems.len(), 1, "{ins}");
        assert!(ins.problems[0].contains(&config.to_string()), "{ins}");
        assert!(ins.problems[0].contains("config"), "{ins}");
        assert!(ins.images[0].config.is_none());

        let (mut layout, img) = app();
        layout.remove_blob(img.digest());
        let ins = inspect_archive(&layout);
        assert_eq!(ins.problems.len(), 1, "{ins}");
        assert!(ins.problems[0].contains("manifest") && ins.problems[0].contains("missing"));
        assert!(ins.to_string().contains("1 problems"));
    }

    #[test]
    fn diff_id_count_mismatch_is_a_problem() {
        let (tar, gz) = layer(&[("a", b"a")]);
        let mut layout = Layout::default();
        let good = layout.image(&[(tar.clone(), gz.clone())]);
        // Same config, one more layer in the manifest.
        let mut manifest: serde_json::Value =
            serde_json::from_slice(find_blob(&layout, good.digest())).unwrap();
        let extra = manifest["layers"][0].clone();
        manifest["layers"].as_array_mut().unwrap().push(extra);
        let bad = layout.blob(
            MediaType::ImageManifest,
            serde_json::to_vec(&manifest).unwrap(),
        );
        layout.tag(bad, None);
        let ins = inspect_archive(&layout);
        assert_eq!(ins.problems.len(), 1, "{ins}");
        assert!(
            ins.problems[0].contains("1 diffIDs but the manifest has 2 layers"),
            "{ins}"
        );
    }

    #[test]
    fn nested_index_reports_every_platform() {
        let mut layout = Layout::default();
        let a = layout.image(&[layer(&[("a", b"a")])]);
        let b = layout.image(&[layer(&[("b", b"b")])]);
        let mut entries = Vec::new();
        for (desc, arch) in [(&a, "amd64"), (&b, "arm64")] {
            let mut entry = serde_json::to_value(desc).unwrap();
            entry["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
            entries.push(entry);
        }
        let index = serde_json::json!({"schemaVersion": 2, "manifests": entries});
        let index = layout.blob(MediaType::ImageIndex, serde_json::to_vec(&index).unwrap());
        layout.tag(index, Some("multi"));
        let ins = inspect_archive(&layout);
        assert!(ins.is_ok(), "{ins}");
        let platforms: Vec<_> = ins
            .images
            .iter()
            .map(|i| i.platform.clone().unwrap())
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
        assert!(ins
            .images
            .iter()
            .all(|i| i.ref_name.as_deref() == Some("multi")));
    }

    #[test]
    fn truncated_gzip_is_reported() {
        let (tar, gz) = layer(&[("a", &[7u8; 5000])]);
        let mut layout = Layout::default();
        let cut = gz[..gz.len() - 20].to_vec();
        let img = layout.image_with(&[(MediaType::ImageLayerGzip, cut, sha256(&tar).to_string())]);
        layout.tag(img, None);
        let ins = inspect_archive(&layout);
        assert_eq!(ins.problems.len(), 1, "{ins}");
        assert!(ins.problems[0].contains("cannot read the layer"), "{ins}");
    }

    #[test]
    fn unopenable_archive_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("nothing.tar");
        let err = inspect(&path).unwrap_err().to_string();
        assert!(err.contains("nothing.tar"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }
}

#[cfg(test)]
mod tar_meta_tests {
    use super::*;

    fn header(kind: tar::EntryType, path: &str, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_path(path).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    #[test]
    fn a_huge_extension_header_is_refused_before_it_is_read() {
        for (kind, what) in [
            (tar::EntryType::XHeader, "PAX extended header"),
            (tar::EntryType::GNULongName, "GNU long name"),
            (tar::EntryType::GNULongLink, "GNU long link"),
        ] {
            let h = header(kind, "meta", 1 << 30);
            // A gigabyte of header data that must not be read (or stored).
            let stream =
                io::Cursor::new(h.as_bytes().to_vec()).chain(io::repeat(b'a').take(1 << 30));
            let mut counted = HashingReader::new(
                stream,
                DigestHasher::new(&oci_spec::image::DigestAlgorithm::Sha256).unwrap(),
            );
            let err = scan_tar(&mut counted).err().unwrap().to_string();
            assert!(
                err.contains(what) && err.contains("1073741824 bytes"),
                "{err}"
            );
            assert!(counted.count < 1 << 20, "{} bytes read", counted.count);
        }
    }

    #[test]
    fn long_names_and_pax_records_name_the_entry_they_precede() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("dir/{}", "n".repeat(150));
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, &long, &b"x"[..]).unwrap();
        b.append_pax_extensions([("path", &b"pax/name"[..]), ("uid", b"4242")])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, "short", 2);
        b.append(&h, &b"yy"[..]).unwrap();
        b.append_pax_extensions([("size", &b"3"[..])]).unwrap();
        h.set_size(3);
        h.set_cksum();
        b.append(&h, &b"zzz"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut seen = Vec::new();
        for_each_entry(&mut tar::Archive::new(&bytes[..]), |entry, meta| {
            let path = meta
                .path()
                .unwrap_or_else(|| entry.path_bytes())
                .into_owned();
            seen.push((String::from_utf8(path).unwrap(), meta.pax_number("uid")));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (long.clone(), None),
                ("pax/name".into(), Some(4242)),
                ("short".into(), None)
            ]
        );

        // A PAX size that disagrees with the header is refused.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"1000"[..])]).unwrap();
        b.append(&header(tar::EntryType::Regular, "f", 2), &b"yy"[..])
            .unwrap();
        let bytes = b.into_inner().unwrap();
        let err = for_each_entry(&mut tar::Archive::new(&bytes[..]), |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("f: its PAX size 1000 disagrees"), "{err}");

        // So are headers that describe no entry.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", &b"x"[..])]).unwrap();
        let bytes = b.into_inner().unwrap();
        let err = for_each_entry(&mut tar::Archive::new(&bytes[..]), |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("never comes"), "{err}");
    }
}
