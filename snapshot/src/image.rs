//! The new image's JSON documents: config, manifest and index.
//!
//! JSON is serialised with sorted keys, so the same inputs always give the same
//! digests.
//!
//! It builds documents from what it is given (layer digests, base config,
//! metadata); it reads no trees and writes no files.

use std::collections::HashMap;
use std::time::SystemTime;

use oci_spec::image::{
    Arch, Config, Descriptor, HistoryBuilder, ImageConfiguration, ImageIndex, ImageIndexBuilder,
    ImageManifest, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use serde::Serialize;

use crate::changes::{self, Change};
use crate::error::{Error, Result};
use crate::layer::LayerInfo;
use crate::source::oci_arch;

pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What the committer says about the new image.
#[derive(Debug, Clone)]
pub struct ImageMeta {
    pub created: SystemTime,
    pub author: Option<String>,
    /// The history entry's comment (`--message`).
    pub comment: Option<String>,
    pub created_by: String,
    pub changes: Vec<Change>,
    /// `org.opencontainers.image.ref.name` in `index.json`.
    pub tag: Option<String>,
}

impl ImageMeta {
    /// `created` is `SOURCE_DATE_EPOCH` when set, so that whole images can be
    /// reproduced; otherwise now.
    pub fn now() -> Self {
        let created = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or_else(SystemTime::now, |secs| {
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
            });
        ImageMeta {
            created,
            author: None,
            comment: None,
            created_by: "freezeframe commit".into(),
            changes: Vec::new(),
            tag: None,
        }
    }

    pub fn created_rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(self.created).to_string()
    }
}

/// The base config with the new layers appended and the changes applied; an empty
/// linux config for this machine's architecture when there is no base.
pub fn build_config(
    base: Option<&ImageConfiguration>,
    layers: &[LayerInfo],
    meta: &ImageMeta,
) -> Result<ImageConfiguration> {
    let mut config = match base {
        Some(b) => b.clone(),
        None => {
            let mut c = ImageConfiguration::default();
            c.set_architecture(Arch::from(oci_arch(std::env::consts::ARCH)));
            c.set_os(Os::Linux);
            c.set_rootfs(
                RootFsBuilder::default()
                    .diff_ids(Vec::<String>::new())
                    .build()
                    .map_err(invalid)?,
            );
            c.set_history(None);
            c.set_config(None);
            c
        }
    };
    let created = meta.created_rfc3339();
    config.set_created(Some(created.clone()));
    if meta.author.is_some() {
        config.set_author(meta.author.clone());
    }
    if !meta.changes.is_empty() {
        let mut runtime = config.config().clone().unwrap_or_else(Config::default);
        changes::apply(&meta.changes, &mut runtime);
        config.set_config(Some(runtime));
    }
    let mut history = config.history().clone().unwrap_or_default();
    for layer in layers {
        config
            .rootfs_mut()
            .diff_ids_mut()
            .push(layer.diff_id.clone());
        let mut h = HistoryBuilder::default()
            .created(created.clone())
            .created_by(meta.created_by.clone())
            .build()
            .map_err(invalid)?;
        h.set_author(meta.author.clone());
        h.set_comment(meta.comment.clone());
        history.push(h);
    }
    config.set_history(Some(history));
    Ok(config)
}

/// Where the image came from, for the manifest's annotations.
#[derive(Debug, Clone, Serialize)]
pub struct BaseInfo {
    pub name: String,
    pub digest: String,
}

pub fn build_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    base: Option<&BaseInfo>,
    meta: &ImageMeta,
) -> Result<ImageManifest> {
    let mut annotations = HashMap::new();
    annotations.insert(ANNOTATION_CREATED.to_string(), meta.created_rfc3339());
    if let Some(b) = base {
        annotations.insert(ANNOTATION_BASE_NAME.to_string(), b.name.clone());
        annotations.insert(ANNOTATION_BASE_DIGEST.to_string(), b.digest.clone());
    }
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .annotations(annotations)
        .build()
        .map_err(invalid)
}

pub fn build_index(manifest: Descriptor, tag: Option<&str>) -> Result<ImageIndex> {
    let mut manifest = manifest;
    if let Some(tag) = tag {
        let mut a = HashMap::new();
        a.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
        manifest.set_annotations(Some(a));
    }
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest])
        .build()
        .map_err(invalid)
}

/// Serialises with object keys sorted, so equal documents have equal digests.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let v = serde_json::to_value(value).map_err(invalid)?;
    serde_json::to_vec(&v).map_err(invalid)
}

/// A descriptor for a blob of known digest.
pub fn descriptor(media_type: MediaType, size: u64, digest: &str) -> Result<Descriptor> {
    let d: oci_spec::image::Digest = digest.parse().map_err(invalid)?;
    Ok(Descriptor::new(media_type, size, d))
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid {
        field: "image document",
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> LayerInfo {
        LayerInfo {
            digest: format!("sha256:{}", hex::encode([n; 32])),
            diff_id: format!("sha256:{}", hex::encode([n + 100; 32])),
            size: 10,
            tar_size: 1024,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    #[test]
    fn config_without_base_is_linux_on_this_arch_with_one_layer() {
        let meta = ImageMeta {
            created: SystemTime::UNIX_EPOCH,
            author: Some("ann".into()),
            comment: Some("snap".into()),
            ..ImageMeta::now()
        };
        let c = build_config(None, &[layer(1)], &meta).unwrap();
        assert_eq!(c.os(), &Os::Linux);
        assert_eq!(c.rootfs().diff_ids(), &vec![layer(1).diff_id]);
        assert_eq!(c.created().as_deref(), Some("1970-01-01T00:00:00Z"));
        let h = c.history().as_ref().unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].comment().as_deref(), Some("snap"));
        assert_eq!(h[0].author().as_deref(), Some("ann"));
    }

    #[test]
    fn config_with_base_keeps_its_settings_and_appends() {
        let meta = ImageMeta {
            created: SystemTime::UNIX_EPOCH,
            ..ImageMeta::now()
        };
        let mut runtime = Config::default();
        runtime.set_env(Some(vec!["PATH=/bin".into()]));
        runtime.set_cmd(Some(vec!["sh".into()]));
        let base = build_config(None, &[layer(1)], &meta).unwrap();
        let mut base = base;
        base.set_config(Some(runtime));
        let c = build_config(Some(&base), &[layer(2)], &meta).unwrap();
        assert_eq!(c.rootfs().diff_ids().len(), 2);
        assert_eq!(c.history().as_ref().unwrap().len(), 2);
        let rc = c.config().as_ref().unwrap();
        assert_eq!(rc.cmd().as_deref(), Some(&["sh".to_string()][..]));
    }

    #[test]
    fn canonical_json_sorts_annotations() {
        let meta = ImageMeta {
            created: SystemTime::UNIX_EPOCH,
            ..ImageMeta::now()
        };
        let base = BaseInfo {
            name: "b".into(),
            digest: layer(9).digest,
        };
        let cfg = descriptor(MediaType::ImageConfig, 2, &layer(3).digest).unwrap();
        let m = build_manifest(cfg, vec![], Some(&base), &meta).unwrap();
        let a = canonical_json(&m).unwrap();
        for _ in 0..5 {
            assert_eq!(a, canonical_json(&m.clone()).unwrap());
        }
        let s = String::from_utf8(a).unwrap();
        let i = s.find(ANNOTATION_BASE_DIGEST).unwrap();
        let j = s.find(ANNOTATION_CREATED).unwrap();
        assert!(i < j, "{s}");
    }
}
