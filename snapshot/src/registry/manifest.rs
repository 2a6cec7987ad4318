//! The Docker schema 2 form of an OCI image manifest, for registries that
//! refuse OCI media types.
//!
//! The blobs stay as they are: only the media types in the manifest change
//! (the manifest's, the config's and each layer's), so the converted manifest
//! names the same config and layers by the same digests. Its own digest is new.

use serde_json::Value;

use crate::source::oci::{DOCKER_CONFIG, DOCKER_MANIFEST};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Layer media types: OCI's, and Docker's for the same bytes.
const LAYERS: &[(&str, &str)] = &[
    (
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    (
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar",
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ),
];

/// Why a manifest has no schema 2 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSchema2 {
    NotOciManifest,
    /// A layer media type Docker's schema 2 has no name for (zstd, say).
    Layer(String),
    Invalid(String),
}

impl std::fmt::Display for NoSchema2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoSchema2::NotOciManifest => write!(f, "it is not an OCI image manifest"),
            NoSchema2::Layer(t) => write!(f, "Docker's schema 2 has no media type for {t} layers"),
            NoSchema2::Invalid(e) => write!(f, "it cannot be read: {e}"),
        }
    }
}

/// The Docker schema 2 form of an OCI image manifest's bytes.
pub fn to_docker_schema2(oci: &[u8]) -> Result<Vec<u8>, NoSchema2> {
    let mut doc: Value =
        serde_json::from_slice(oci).map_err(|e| NoSchema2::Invalid(e.to_string()))?;
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| NoSchema2::Invalid("not a JSON object".into()))?;
    if obj.get("mediaType").and_then(Value::as_str) != Some(OCI_MANIFEST) {
        return Err(NoSchema2::NotOciManifest);
    }
    obj.insert("mediaType".into(), DOCKER_MANIFEST.into());
    // Fields schema 2 does not have.
    for field in ["annotations", "artifactType", "subject"] {
        obj.remove(field);
    }
    let config = obj
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| NoSchema2::Invalid("no config".into()))?;
    match config.get("mediaType").and_then(Value::as_str) {
        Some(OCI_CONFIG) | Some(DOCKER_CONFIG) => {
            config.insert("mediaType".into(), DOCKER_CONFIG.into());
        }
        other => return Err(NoSchema2::Layer(other.unwrap_or("untyped").to_owned())),
    }
    let layers = obj
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| NoSchema2::Invalid("no layers".into()))?;
    for layer in layers {
        let layer = layer
            .as_object_mut()
            .ok_or_else(|| NoSchema2::Invalid("a layer is not an object".into()))?;
        let media_type = layer
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or("untyped")
            .to_owned();
        let docker = LAYERS
            .iter()
            .find(|(oci, docker)| *oci == media_type || *docker == media_type)
            .map(|(_, docker)| *docker)
            .ok_or(NoSchema2::Layer(media_type))?;
        layer.insert("mediaType".into(), docker.into());
    }
    serde_json::to_vec(&doc).map_err(|e| NoSchema2::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_media_types_and_keeps_digests() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":3},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bb","size":4},
                      {"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:cc","size":5}],
            "annotations":{"a":"b"}}"#;
        let docker: Value = serde_json::from_slice(&to_docker_schema2(oci).unwrap()).unwrap();
        assert_eq!(docker["mediaType"], DOCKER_MANIFEST);
        assert_eq!(docker["schemaVersion"], 2);
        assert_eq!(docker["config"]["mediaType"], DOCKER_CONFIG);
        assert_eq!(docker["config"]["digest"], "sha256:aa");
        assert_eq!(
            docker["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(docker["layers"][1]["digest"], "sha256:cc");
        assert_eq!(docker.get("annotations"), None);
    }

    #[test]
    fn refuses_what_schema2_cannot_say() {
        let zstd = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":3},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:bb","size":4}]}"#;
        assert_eq!(
            to_docker_schema2(zstd),
            Err(NoSchema2::Layer(
                "application/vnd.oci.image.layer.v1.tar+zstd".into()
            ))
        );
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(to_docker_schema2(docker), Err(NoSchema2::NotOciManifest));
    }
}
