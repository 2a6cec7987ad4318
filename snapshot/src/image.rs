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
        changes::apply(&meta.changes, &mut runtime)?;
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

/// The docker-archive `manifest.json` for one image whose config and layers
/// are blobs of the same archive, as Docker 25's `docker save` writes beside
/// the OCI layout: every `docker load` since 1.10 reads it, where older ones
/// cannot read an OCI layout. `tag` becomes its `RepoTags` when it is a Docker
/// reference (`NAME[:TAG]`, the tag `latest` when none is given).
pub fn docker_manifest(config: &str, layers: &[&str], tag: Option<&str>) -> Result<Vec<u8>> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        repo_tags: Vec<String>,
        layers: Vec<String>,
    }
    let entry = Entry {
        config: crate::archive::blob_name(config),
        repo_tags: tag.and_then(docker_tag).into_iter().collect(),
        layers: layers
            .iter()
            .map(|d| crate::archive::blob_name(d))
            .collect(),
    };
    canonical_json(&[entry])
}

/// The legacy `repositories` file of a tagged docker archive: `{NAME: {TAG:
/// ID}}`, with the top layer's digest as its id. `None` untagged.
pub fn docker_repositories(top_layer: Option<&str>, tag: Option<&str>) -> Result<Option<Vec<u8>>> {
    let (Some(layer), Some(tag)) = (top_layer, tag.and_then(docker_tag)) else {
        return Ok(None);
    };
    let (name, tag) = tag.rsplit_once(':').expect("docker_tag always has a tag");
    let id = layer.split_once(':').map_or(layer, |(_, hex)| hex);
    let doc = serde_json::json!({ name: { tag: id } });
    canonical_json(&doc).map(Some)
}

/// `tag` as a Docker `NAME:TAG` reference, if it is one: path components of
/// lower-case letters, digits and separators (`.`, `_`, `-`), an optional
/// registry host (with a port) first, and an optional tag.
pub fn docker_tag(tag: &str) -> Option<String> {
    let (name, tag) = match tag.rsplit_once(':') {
        Some((name, t)) if !t.contains('/') => (name, Some(t)),
        _ => (tag, None),
    };
    let tag = tag.unwrap_or("latest");
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let mut parts = name.split('/').peekable();
    let mut ok = !name.is_empty() && name.len() <= 255;
    let mut first = true;
    while let Some(part) = parts.next() {
        let host =
            first && parts.peek().is_some() && (part.contains(['.', ':']) || part == "localhost");
        first = false;
        let component_ok = if host {
            part.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
        } else {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        ok &= component_ok;
    }
    (ok && tag_ok).then(|| format!("{name}:{tag}"))
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
    fn docker_tags_are_docker_references_or_nothing() {
        for (tag, want) in [
            ("v1", Some("v1:latest")),
            ("busybox", Some("busybox:latest")),
            ("sess/img:2", Some("sess/img:2")),
            ("localhost:5000/a/b:c", Some("localhost:5000/a/b:c")),
            ("registry.local/x", Some("registry.local/x:latest")),
            ("Upper:1", None),
            ("a:b:c", None),
            ("a//b", None),
            ("a:-x", None),
            ("", None),
        ] {
            assert_eq!(docker_tag(tag).as_deref(), want, "{tag}");
        }
    }

    #[test]
    fn docker_manifest_points_at_the_blobs() {
        let m = docker_manifest(&layer(1).digest, &[&layer(2).digest], Some("x:1")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(
            v[0]["Config"],
            format!("blobs/sha256/{}", hex::encode([1u8; 32]))
        );
        assert_eq!(v[0]["RepoTags"], serde_json::json!(["x:1"]));
        assert_eq!(v[0]["Layers"].as_array().unwrap().len(), 1);
        let r = docker_repositories(Some(&layer(2).digest), Some("x:1"))
            .unwrap()
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(r["x"]["1"], hex::encode([2u8; 32]));
        assert!(docker_repositories(Some(&layer(2).digest), None)
            .unwrap()
            .is_none());
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
