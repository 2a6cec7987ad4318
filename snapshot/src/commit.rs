//! Putting it together: base image + new layers → OCI image layout archive.
//!
//! [`Commit`] is staged so that a caller can do the slow, safe parts (opening the
//! base, copying its blobs) before it pauses anything, then add layers, then
//! finish: `begin` → `add_layer`… → `finish`. Dropping it before `finish`
//! removes the temporary archive.
//!
//! It sequences the other modules (source, walk, layer, compression, image,
//! archive) and holds no format knowledge of its own.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::BufWriter;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use oci_spec::image::{Descriptor, ImageConfiguration, MediaType};
use serde::Serialize;

use crate::archive::{ArchiveWriter, Committed, Mark};
use crate::compress::{Encoder, Settings};
use crate::digest::HashingWriter;
use crate::error::{IoContext, Result};
use crate::fs::output::Unnamed;
use crate::image::{self, BaseInfo, ImageMeta};
use crate::layer::{write_layer, LayerInfo, SpoolVisitor};
use crate::precopy::{write_pieces, Piece, PreCopy, SpoolCopy};
use crate::source::base::{Base, BaseLayer, BaseRef, Stores};
use crate::source::{RegistryBlob, SourceError, StoredLayer};
use crate::walk::{walk_pass, Pass, Progress, TreeSpec, WalkReport};

/// Whether the base image's layer blobs are copied into the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseBlobs {
    #[default]
    Include,
    /// Leave them out: the image-layout spec allows missing blobs, and a registry
    /// or store that already has the base needs only the new layer.
    Omit,
}

impl std::str::FromStr for BaseBlobs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "include" => Ok(BaseBlobs::Include),
            "omit" => Ok(BaseBlobs::Omit),
            o => Err(format!(
                "unknown base-blobs mode {o:?} (expected include or omit)"
            )),
        }
    }
}

/// The descriptor of an unpacked base layer left out of the archive: its
/// first recorded registry blob of known size (gzip), else its uncompressed
/// tar by its diffID.
fn omitted_unpacked(layer: &StoredLayer) -> Result<Descriptor> {
    match layer
        .registry
        .iter()
        .find_map(|b| Some((b.digest.as_str(), b.size?)))
    {
        Some((digest, size)) => image::descriptor(MediaType::ImageLayerGzip, size, digest),
        None => image::descriptor(
            MediaType::ImageLayer,
            layer.tar_size().map_err(SourceError::from)?,
            &layer.diff_id,
        ),
    }
}

/// A point in a commit to roll back to.
pub struct CommitMark {
    archive: Mark,
    layers: usize,
    walk: WalkReport,
}

/// A layer captured uncompressed, waiting to be compressed into the archive.
pub struct Spooled {
    spool: Unnamed,
    pieces: Vec<Piece>,
    tar_size: u64,
    reused: u64,
    report: WalkReport,
}

impl Spooled {
    /// What the pass wrote: its entries and bytes.
    pub fn report(&self) -> &WalkReport {
        &self.report
    }

    /// Bytes of file data taken from a pre-copy store, not read in the pass.
    pub fn reused(&self) -> u64 {
        self.reused
    }
}

/// One layer as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
    /// Whether the blob is in the archive.
    pub included: bool,
    /// For a base layer rebuilt from a store, the registry blobs the store
    /// recorded for it (see [`CommitReport::registry_blobs`]).
    #[serde(skip)]
    pub registry: Vec<RegistryBlob>,
}

/// The result of a commit, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CommitReport {
    pub archive: PathBuf,
    pub size: u64,
    pub archive_sha256: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub base: Option<BaseInfo>,
    /// Every layer of the image, base layers first.
    pub layers: Vec<LayerSummary>,
    pub files: u64,
    pub bytes: u64,
    pub walk: WalkReport,
    pub elapsed_ms: u64,
}

impl CommitReport {
    /// The registry blobs recorded for the base layers, by the digest the
    /// manifest names each by: what a push is given as
    /// [`crate::registry::PushOptions::registry_blobs`] to refer to the
    /// registry's copies instead of uploading the archive's (a rebuilt
    /// layer, recompressed, has a digest of its own).
    pub fn registry_blobs(&self) -> BTreeMap<String, Vec<RegistryBlob>> {
        self.layers
            .iter()
            .filter(|l| !l.registry.is_empty())
            .map(|l| (l.digest.clone(), l.registry.clone()))
            .collect()
    }
}

/// A commit in progress.
pub struct Commit {
    archive: ArchiveWriter,
    base: Option<(Base, BaseInfo)>,
    /// The base's layers as the manifest lists them, and as the report does.
    base_descs: Vec<Descriptor>,
    base_layers: Vec<LayerSummary>,
    layers: Vec<LayerInfo>,
    walk: WalkReport,
    started: Instant,
}

impl Commit {
    /// Starts the archive at `output` and puts the base's layers into it
    /// (unless `base_blobs` is `Omit`): stored blobs are copied as they are,
    /// unpacked layers are rebuilt and compressed with `settings`.
    pub fn begin(
        output: &Path,
        overwrite: bool,
        base: Option<Base>,
        base_blobs: BaseBlobs,
        settings: Settings,
    ) -> Result<Self> {
        Self::begin_with(base, base_blobs, settings, || {
            ArchiveWriter::create(output, overwrite)
        })
    }

    /// [`Commit::begin`] for an archive named `name` in the directory open as
    /// `dir`, which a caller resolved (beneath a save location, say): see
    /// [`ArchiveWriter::create_in`]. `output` is the archive's path, for
    /// messages and the report.
    pub fn begin_in(
        dir: BorrowedFd<'_>,
        name: &OsStr,
        output: &Path,
        overwrite: bool,
        base: Option<Base>,
        base_blobs: BaseBlobs,
        settings: Settings,
    ) -> Result<Self> {
        Self::begin_with(base, base_blobs, settings, || {
            ArchiveWriter::create_in(dir, name, output, overwrite)
        })
    }

    fn begin_with(
        base: Option<Base>,
        base_blobs: BaseBlobs,
        settings: Settings,
        archive: impl FnOnce() -> Result<ArchiveWriter>,
    ) -> Result<Self> {
        let started = Instant::now();
        let mut archive = archive()?;
        let mut base_descs = Vec::new();
        let mut base_layers = Vec::new();
        if let Some(base) = &base {
            for layer in &base.layers {
                let mut registry = Vec::new();
                let (desc, included) = match layer {
                    BaseLayer::Blob { desc, .. } => {
                        let included = base_blobs == BaseBlobs::Include && base.has_blob(desc);
                        let digest = desc.digest().to_string();
                        if included && !archive.has_blob(&digest) {
                            let tmp = archive.dest().to_path_buf();
                            archive.stream_blob(|file| {
                                let mut out = BufWriter::with_capacity(1 << 20, file);
                                let n = base.copy_blob(desc, &mut out)?;
                                let file = out.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
                                Ok((file, digest.clone(), n, ()))
                            })?;
                        }
                        (Descriptor::clone(desc), included)
                    }
                    // Rebuilt and recompressed, it has a digest of its own;
                    // the registry blobs its store recorded go with it, for a
                    // push to refer to those instead.
                    BaseLayer::Unpacked(l) if base_blobs == BaseBlobs::Include => {
                        registry.clone_from(&l.registry);
                        (add_unpacked(&mut archive, l, settings)?, true)
                    }
                    // Left out, it is named by the registry blob the store
                    // recorded for it when that has a known size, so a push
                    // finds it in the registry; else by its tar's digest: a
                    // store or `docker load` that has the base finds it by its
                    // diffID either way.
                    BaseLayer::Unpacked(l) => {
                        registry.clone_from(&l.registry);
                        (omitted_unpacked(l)?, false)
                    }
                };
                base_layers.push(LayerSummary {
                    digest: desc.digest().to_string(),
                    diff_id: layer.diff_id().to_owned(),
                    size: desc.size(),
                    media_type: desc.media_type().to_string(),
                    included,
                    registry,
                });
                base_descs.push(desc);
            }
        }
        let base = base.map(|b| {
            let info = BaseInfo {
                name: b.name.clone(),
                digest: b.digest.clone(),
            };
            (b, info)
        });
        Ok(Commit {
            archive,
            base,
            base_descs,
            base_layers,
            layers: Vec::new(),
            walk: WalkReport::default(),
            started,
        })
    }

    /// The temporary archive's path, if the filesystem needed a named one.
    pub fn temp_path(&self) -> Option<&Path> {
        self.archive.temp_path()
    }

    /// Walks `spec` and streams it into the archive as a new layer.
    pub fn add_layer(
        &mut self,
        spec: &TreeSpec,
        settings: Settings,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<(LayerInfo, WalkReport)> {
        let (info, report) = self
            .add_layer_pass(spec, settings, progress, cancel, Pass::Full, None)?
            .expect("a full pass always keeps its layer");
        Ok((info, report))
    }

    /// Like [`Commit::add_layer`], in a pass of a live commit. A delta pass
    /// with nothing to say adds no layer (`None`); one whose tar stream would
    /// pass `limit` bytes stops with [`crate::Error::LayerTooLarge`] and adds nothing.
    pub fn add_layer_pass(
        &mut self,
        spec: &TreeSpec,
        settings: Settings,
        progress: &Progress,
        cancel: &AtomicBool,
        pass: Pass<'_>,
        limit: Option<u64>,
    ) -> Result<Option<(LayerInfo, WalkReport)>> {
        let delta = matches!(pass, Pass::Delta(_));
        let tmp = self.archive.dest().to_path_buf();
        let mark = self.archive.mark()?;
        let (info, report, entries) = self.archive.stream_blob(|file: File| {
            let out = BufWriter::with_capacity(1 << 20, file);
            let (out, info, report, entries) =
                write_layer(spec, settings, out, &tmp, progress, cancel, pass, limit)?;
            let file = out.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
            Ok((
                file,
                info.digest.clone(),
                info.size,
                (info, report, entries),
            ))
        })?;
        if delta && entries == 0 {
            self.archive.rollback(mark)?;
            return Ok(None);
        }
        merge_reports(&mut self.walk, &report);
        self.layers.push(info.clone());
        Ok(Some((info, report)))
    }

    /// A pre-copy store ([`PreCopy`]) in an unnamed scratch file beside the
    /// archive, holding at most `budget` bytes.
    pub fn precopy(&self, budget: u64) -> Result<PreCopy> {
        let (dir, dir_path) = self.archive.dir();
        let store = Unnamed::new_in(dir, dir_path, "freezeframe-precopy").at(dir_path)?;
        PreCopy::new(store, self.archive.dest(), budget)
    }

    /// Captures a pass as an uncompressed tar in an unnamed scratch file beside
    /// the archive, for [`Commit::add_spooled`] to compress later: a live
    /// commit's frozen pass only reads, and compresses after the thaw. File
    /// data `precopy` holds is referred to, not copied. `None` when the pass
    /// found nothing to write; `limit` caps the bytes the pass reads.
    pub fn spool_layer(
        &self,
        spec: &TreeSpec,
        progress: &Progress,
        cancel: &AtomicBool,
        pass: Pass<'_>,
        limit: Option<u64>,
        precopy: Option<&PreCopy>,
    ) -> Result<Option<Spooled>> {
        let dest = self.archive.dest();
        let (dir, dir_path) = self.archive.dir();
        let mut spool = Unnamed::new_in(dir, dir_path, "freezeframe-spool").at(dir_path)?;
        let file = spool.file().try_clone().at(dest)?;
        let copy = precopy.map_or_else(SpoolCopy::plain, PreCopy::spool_copy);
        let mut visitor = SpoolVisitor::new(file, copy, dest, limit);
        let report = walk_pass(spec, &mut visitor, progress, cancel, pass)?;
        let (_, pieces, entries, tar_size, reused) = visitor.finish()?;
        Ok((entries > 0).then_some(Spooled {
            spool,
            pieces,
            tar_size,
            reused,
            report,
        }))
    }

    /// Compresses a spooled layer into the archive, with the pre-copy store
    /// its pass referred to.
    pub fn add_spooled(
        &mut self,
        spooled: Spooled,
        precopy: Option<&PreCopy>,
        settings: Settings,
        progress: &Progress,
    ) -> Result<LayerInfo> {
        let Spooled {
            mut spool,
            pieces,
            tar_size,
            report,
            ..
        } = spooled;
        let dest = self.archive.dest().to_path_buf();
        let src = spool.file();
        let (digest, diff_id, size) = self.archive.stream_blob(|file: File| {
            let out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file))
                .with_progress(progress.bytes_written.clone());
            let mut tar = HashingWriter::new(Encoder::new(settings, out).at(&dest)?);
            write_pieces(&pieces, src, &dest, precopy, &mut tar)?;
            let (enc, diff_id, _) = tar.finish();
            let (out, digest, size) = enc.finish().at(&dest)?.finish();
            let file = out.into_inner().map_err(|e| e.into_error()).at(&dest)?;
            Ok((file, digest.clone(), size, (digest, diff_id, size)))
        })?;
        let info = LayerInfo {
            digest,
            diff_id,
            size,
            tar_size,
            media_type: settings.algorithm.media_type().to_string(),
        };
        merge_reports(&mut self.walk, &report);
        self.layers.push(info.clone());
        Ok(info)
    }

    /// How many layers this commit has added to the base.
    pub fn layers_added(&self) -> usize {
        self.layers.len()
    }

    /// A point to come back to with [`Commit::rollback`].
    pub fn mark(&mut self) -> Result<CommitMark> {
        Ok(CommitMark {
            archive: self.archive.mark()?,
            layers: self.layers.len(),
            walk: self.walk.clone(),
        })
    }

    /// Forgets every layer added since `mark`, and what their walks counted.
    pub fn rollback(&mut self, mark: CommitMark) -> Result<()> {
        self.archive.rollback(mark.archive)?;
        self.layers.truncate(mark.layers);
        self.walk = mark.walk;
        Ok(())
    }

    /// Writes config, manifest and index, and commits the archive.
    pub fn finish(mut self, meta: &ImageMeta) -> Result<CommitReport> {
        let base_config: Option<&ImageConfiguration> = self.base.as_ref().map(|(b, _)| &b.config);
        let config = image::build_config(base_config, &self.layers, meta)?;
        let config_json = image::canonical_json(&config)?;
        let config_digest = self.archive.add_blob(&config_json)?;
        let config_desc = image::descriptor(
            MediaType::ImageConfig,
            config_json.len() as u64,
            &config_digest,
        )?;

        let mut layer_descs = std::mem::take(&mut self.base_descs);
        for l in &self.layers {
            layer_descs.push(image::descriptor(
                MediaType::from(l.media_type.as_str()),
                l.size,
                &l.digest,
            )?);
        }
        let base_info = self.base.as_ref().map(|(_, b)| b.clone());
        let layer_digests: Vec<String> =
            layer_descs.iter().map(|d| d.digest().to_string()).collect();
        let manifest = image::build_manifest(config_desc, layer_descs, base_info.as_ref(), meta)?;
        let manifest_json = image::canonical_json(&manifest)?;
        let manifest_digest = self.archive.add_blob(&manifest_json)?;
        let manifest_desc = image::descriptor(
            MediaType::ImageManifest,
            manifest_json.len() as u64,
            &manifest_digest,
        )?;
        let index = image::build_index(manifest_desc, meta.tag.as_deref())?;
        self.archive
            .add_file("index.json", &image::canonical_json(&index)?)?;
        let layer_digests: Vec<&str> = layer_digests.iter().map(String::as_str).collect();
        let tag = meta.tag.as_deref();
        self.archive.add_file(
            "manifest.json",
            &image::docker_manifest(&config_digest, &layer_digests, tag)?,
        )?;
        if let Some(repos) = image::docker_repositories(layer_digests.last().copied(), tag)? {
            self.archive.add_file("repositories", &repos)?;
        }

        let Committed { path, size, sha256 } = self.archive.commit()?;
        let mut layers = std::mem::take(&mut self.base_layers);
        layers.extend(self.layers.iter().map(|l| LayerSummary {
            digest: l.digest.clone(),
            diff_id: l.diff_id.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            included: true,
            registry: Vec::new(),
        }));
        Ok(CommitReport {
            archive: path,
            size,
            archive_sha256: sha256,
            manifest_digest,
            config_digest,
            base: base_info,
            layers,
            files: self.walk.files,
            bytes: self.walk.bytes,
            walk: self.walk,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
        })
    }
}

/// Rebuilds an unpacked base layer's tar stream and compresses it into the
/// archive; returns its descriptor.
fn add_unpacked(
    archive: &mut ArchiveWriter,
    layer: &StoredLayer,
    settings: Settings,
) -> Result<Descriptor> {
    let dest = archive.dest().to_path_buf();
    let (digest, size) = archive.stream_blob(|file: File| {
        let out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let mut enc = Encoder::new(settings, out).at(&dest)?;
        layer.write_tar(&mut enc).map_err(SourceError::from)?;
        let (out, digest, size) = enc.finish().at(&dest)?.finish();
        let file = out.into_inner().map_err(|e| e.into_error()).at(&dest)?;
        Ok((file, digest.clone(), size, (digest, size)))
    })?;
    image::descriptor(
        MediaType::from(settings.algorithm.media_type()),
        size,
        &digest,
    )
}

fn merge_reports(into: &mut WalkReport, r: &WalkReport) {
    into.files += r.files;
    into.dirs += r.dirs;
    into.symlinks += r.symlinks;
    into.hardlinks += r.hardlinks;
    into.devices += r.devices;
    into.fifos += r.fifos;
    into.whiteouts += r.whiteouts;
    into.opaque_dirs += r.opaque_dirs;
    into.bytes += r.bytes;
    into.excluded += r.excluded;
    for (k, v) in &r.skipped_counts {
        *into.skipped_counts.entry(*k).or_default() += v;
    }
    into.skipped.extend(r.skipped.iter().cloned());
    into.changed.extend(r.changed.iter().cloned());
    into.merge_secrets(r);
}

/// Everything a one-shot commit needs.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub trees: TreeSpec,
    pub base: Option<BaseRef>,
    /// Where `docker:`, `containers-storage:` and `containerd:` bases are read.
    pub stores: Stores,
    pub base_blobs: BaseBlobs,
    pub compression: Settings,
    pub meta: ImageMeta,
    pub output: PathBuf,
    pub overwrite: bool,
}

/// Commits `req.trees` as one new layer on top of the base.
pub fn commit(
    req: &CommitRequest,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<CommitReport> {
    let base = match &req.base {
        Some(r) => Some(Base::open(r, &req.stores)?),
        None => None,
    };
    let mut c = Commit::begin(
        &req.output,
        req.overwrite,
        base,
        req.base_blobs,
        req.compression,
    )?;
    c.add_layer(&req.trees, req.compression, progress, cancel)?;
    c.finish(&req.meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(registry: Vec<RegistryBlob>) -> StoredLayer {
        StoredLayer {
            diff_id: format!("sha256:{}", "d".repeat(64)),
            id: "layer".into(),
            tar_split: "/nonexistent/split.gz".into(),
            diff_dir: "/nonexistent/diff".into(),
            registry,
        }
    }

    #[test]
    fn an_omitted_layer_is_named_by_its_first_registry_blob_of_known_size() {
        let blob = |c: &str, size| RegistryBlob {
            digest: format!("sha256:{}", c.repeat(64)),
            size,
            repository: None,
        };
        let desc = omitted_unpacked(&layer(vec![blob("a", None), blob("b", Some(42))])).unwrap();
        assert_eq!(desc.media_type(), &MediaType::ImageLayerGzip);
        assert_eq!(desc.size(), 42);
        assert_eq!(
            desc.digest().to_string(),
            format!("sha256:{}", "b".repeat(64))
        );
        // No size known: its tar by its diffID (which needs the layer on disk).
        assert!(omitted_unpacked(&layer(vec![blob("a", None)])).is_err());
    }
}
