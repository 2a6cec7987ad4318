//! containers-storage (podman, buildah, CRI-O), read from its graph root
//! (`/var/lib/containers/storage`) with the overlay driver, never through a
//! daemon or a lock.
//!
//! - containers: `overlay-containers/containers.json` (`id`, `names`,
//!   `image`);
//! - images: `overlay-images/images.json` (`id`, `names` as
//!   `localhost/x:tag` or `docker.io/library/x:tag`, `layer`: the top layer);
//!   the config is the image's big-data item keyed `sha256:ID`, stored as
//!   `overlay-images/ID/=` and the key in base64 (the store's name for a key
//!   with characters other than `[0-9a-z.]`);
//! - layers: `overlay-layers/layers.json` (`id`, `parent`, `diff-digest`),
//!   each layer's tar-split as `overlay-layers/ID.tar-split.gz` and its
//!   unpacked directory as `overlay/ID/diff`.
//!
//! Every file is opened beneath the graph root without following a symlink,
//! and JSON documents are size-capped.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::docker::{
    check_file, is_component, is_hex, read_capped, sha256_hex, with_default_tag, MIN_PREFIX,
};
use super::stored::{open_store_root, ContainerRecord, RegistryBlob, StoredImage, StoredLayer};
use super::tarsplit::base64_encode;
use crate::fs::open::open_dir_beneath;

/// Largest `images.json`, `layers.json` or `containers.json` read: they list
/// every image, layer or container of the store.
pub const MAX_LIST_SIZE: u64 = 64 << 20;

/// Largest image config read.
const MAX_CONFIG_SIZE: u64 = super::oci::MAX_JSON_SIZE;

pub use super::stored::StoreError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// containers-storage under a graph root, with the overlay driver.
#[derive(Debug, Clone)]
pub struct ContainersStorage {
    root: PathBuf,
}

#[derive(Deserialize)]
struct ContainerEntry {
    id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    names: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    image: String,
}

#[derive(Deserialize)]
struct ImageEntry {
    id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    names: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    layer: String,
}

#[derive(Deserialize)]
struct LayerEntry {
    id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    parent: String,
    #[serde(rename = "diff-digest", default, deserialize_with = "null_as_default")]
    diff_digest: String,
    /// The digest of the blob the layer was pulled as.
    #[serde(
        rename = "compressed-diff-digest",
        default,
        deserialize_with = "null_as_default"
    )]
    compressed_diff_digest: String,
    #[serde(rename = "compressed-size", default)]
    compressed_size: Option<i64>,
    /// The blob's compression: 0 none, 1 bzip2, 2 gzip, 3 xz, 4 zstd.
    #[serde(default)]
    compression: Option<i64>,
}

impl LayerEntry {
    /// The gzip blob the layer was pulled as, when recorded with its size.
    fn registry_blob(&self) -> Option<RegistryBlob> {
        let gzip = match self.compression {
            Some(c) => c == 2,
            None => self.compressed_diff_digest != self.diff_digest,
        };
        let size = u64::try_from(self.compressed_size?).ok()?;
        (gzip
            && sha256_hex(&self.compressed_diff_digest).is_some()
            && self.compressed_diff_digest != self.diff_digest)
            .then(|| RegistryBlob {
                digest: self.compressed_diff_digest.clone(),
                size: Some(size),
                repository: None,
            })
    }
}

/// A field the store may write as `null` as well as leave out.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

const CONTAINERS: &str = "overlay-containers/containers.json";
const IMAGES: &str = "overlay-images/images.json";
const LAYERS: &str = "overlay-layers/layers.json";

impl ContainersStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ContainersStorage { root: root.into() }
    }

    /// The graph root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every container recorded in `overlay-containers/containers.json`. A
    /// missing root or file is an empty list; a corrupt file is an error
    /// naming it.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let Some(root) = self.open_root()? else {
            return Ok(Vec::new());
        };
        let entries: Vec<ContainerEntry> = self.read_list(&root, CONTAINERS)?.unwrap_or_default();
        let file = self.root.join(CONTAINERS);
        Ok(entries
            .into_iter()
            .map(|c| ContainerRecord {
                id: c.id,
                names: c.names,
                image: (!c.image.is_empty()).then_some(c.image),
                file: file.clone(),
            })
            .collect())
    }

    /// The record of the container with this full id, `None` when the store
    /// has none.
    pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>> {
        Ok(self.containers()?.into_iter().find(|c| c.id == id))
    }

    /// An image by `sha256:HEX`, `HEX`, a unique id prefix of at least
    /// [`MIN_PREFIX`] characters, or a name as `images.json` records it
    /// (`localhost/x:tag`, `docker.io/library/x:tag`) or a short form of one
    /// (`x`, `x:tag`, `library/x`; the tag is `latest` by default). A short
    /// name that more than one image answers to is an error listing them.
    ///
    /// The config is the image's big-data item keyed by its id, checked
    /// against it; the layers are the parent chain of the image's top layer
    /// in `layers.json`, each checked against the config's diffID.
    pub fn image(&self, reference: &str) -> Result<StoredImage> {
        let no_image = || Error::NoImage {
            store: "containers-storage",
            root: self.root.clone(),
            reference: reference.to_owned(),
        };
        let root = self.open_root()?.ok_or_else(no_image)?;
        let images: Vec<ImageEntry> = self.read_list(&root, IMAGES)?.ok_or_else(no_image)?;
        let (image, name) = self.resolve(&images, reference)?.ok_or_else(no_image)?;
        let images_path = self.root.join(IMAGES);
        if !(image.id.len() == 64 && is_hex(&image.id)) {
            return Err(Error::Invalid {
                path: images_path,
                reason: format!("image id {:?} is not 64 hex digits", image.id),
            });
        }

        // The store names a big-data file by its key in base64 (after `=`);
        // stores older than that naming used the key itself.
        let key = format!("sha256:{}", image.id);
        let mut rel = format!(
            "overlay-images/{}/={}",
            image.id,
            base64_encode(key.as_bytes())
        );
        let mut read = read_capped(&root, Path::new(&rel), MAX_CONFIG_SIZE);
        if matches!(&read, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            let old = format!("overlay-images/{}/{key}", image.id);
            if let Ok(data) = read_capped(&root, Path::new(&old), MAX_CONFIG_SIZE) {
                (rel, read) = (old, Ok(data));
            }
        }
        let path = self.root.join(&rel);
        let data = read.map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let actual = hex::encode(Sha256::digest(&data));
        if actual != image.id {
            return Err(Error::ConfigDigest { path, actual });
        }
        let config: ImageConfiguration =
            serde_json::from_slice(&data).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;

        let image_id = format!("sha256:{}", image.id);
        let diff_ids = config.rootfs().diff_ids();
        let chain = self.layer_chain(&root, &image.layer, diff_ids.len(), &image_id)?;
        let layers_path = self.root.join(LAYERS);
        let mut layers = Vec::with_capacity(chain.len());
        for (layer, diff_id) in chain.into_iter().zip(diff_ids) {
            if sha256_hex(diff_id).is_none() {
                return Err(Error::Invalid {
                    path: path.clone(),
                    reason: format!("diffID {diff_id:?} is not sha256:HEX"),
                });
            }
            if !layer.diff_digest.is_empty() && layer.diff_digest != *diff_id {
                return Err(Error::DiffId {
                    layer: layer.id,
                    image: image_id,
                    path: layers_path,
                    found: layer.diff_digest,
                    expected: diff_id.clone(),
                });
            }
            let tar_split = format!("overlay-layers/{}.tar-split.gz", layer.id);
            check_file(&root, Path::new(&tar_split)).map_err(|source| Error::Read {
                path: self.root.join(&tar_split),
                source,
            })?;
            let diff_dir = format!("overlay/{}/diff", layer.id);
            open_dir_beneath(root.as_fd(), Path::new(&diff_dir)).map_err(|e| Error::Read {
                path: self.root.join(&diff_dir),
                source: e.into(),
            })?;
            layers.push(StoredLayer {
                diff_id: diff_id.clone(),
                registry: layer.registry_blob().into_iter().collect(),
                id: layer.id,
                tar_split: self.root.join(tar_split),
                diff_dir: self.root.join(diff_dir),
            });
        }
        Ok(StoredImage {
            store: "containers-storage",
            root: self.root.clone(),
            name: name
                .or_else(|| image.names.first().cloned())
                .unwrap_or_else(|| image_id.clone()),
            id: image_id,
            config,
            layers,
        })
    }

    /// The layers from the bottom to `top`, which must be `count` of them.
    fn layer_chain(
        &self,
        root: &OwnedFd,
        top: &str,
        count: usize,
        image: &str,
    ) -> Result<Vec<LayerEntry>> {
        let path = self.root.join(LAYERS);
        let invalid = |reason: String| Error::Invalid {
            path: path.clone(),
            reason,
        };
        let entries: Vec<LayerEntry> = self.read_list(root, LAYERS)?.unwrap_or_default();
        let mut by_id: HashMap<String, LayerEntry> =
            entries.into_iter().map(|l| (l.id.clone(), l)).collect();
        let mut chain = Vec::new();
        let mut next = top.to_owned();
        while !next.is_empty() {
            if chain.len() == count {
                return Err(invalid(format!(
                    "image {image} has more layers than the {count} diffIDs of its config"
                )));
            }
            let layer = by_id.remove(&next).ok_or_else(|| {
                invalid(format!(
                    "layer {next:?} of image {image} is missing (or in a cycle)"
                ))
            })?;
            if !is_component(&layer.id) {
                return Err(invalid(format!(
                    "layer id {:?} is no directory name",
                    layer.id
                )));
            }
            next = layer.parent.clone();
            chain.push(layer);
        }
        if chain.len() != count {
            return Err(invalid(format!(
                "image {image} has {} layers, its config {count} diffIDs",
                chain.len()
            )));
        }
        chain.reverse();
        Ok(chain)
    }

    /// The image `reference` names, and the name it was found by.
    fn resolve<'a>(
        &self,
        images: &'a [ImageEntry],
        reference: &str,
    ) -> Result<Option<(&'a ImageEntry, Option<String>)>> {
        let bare = reference.strip_prefix("sha256:").unwrap_or(reference);
        if bare.len() == 64 && is_hex(bare) {
            return Ok(images.iter().find(|i| i.id == bare).map(|i| (i, None)));
        }
        let wanted = with_default_tag(reference);
        let candidates = [
            wanted.clone(),
            format!("localhost/{wanted}"),
            format!("docker.io/{wanted}"),
            format!("docker.io/library/{wanted}"),
        ];
        let mut named: Vec<(&ImageEntry, &String)> = Vec::new();
        for image in images {
            if let Some(n) = image.names.iter().find(|n| candidates.contains(n)) {
                named.push((image, n));
            }
        }
        // An exact name wins over short forms of other names.
        if let Some(&(image, n)) = named.iter().find(|(_, n)| **n == wanted) {
            return Ok(Some((image, Some(n.clone()))));
        }
        match named.len() {
            1 => return Ok(Some((named[0].0, Some(named[0].1.clone())))),
            0 => {}
            _ => {
                let mut matches: Vec<&str> = named.iter().map(|(_, n)| n.as_str()).collect();
                matches.sort();
                return Err(self.ambiguous(reference, matches.join(", ")));
            }
        }
        if bare.len() < MIN_PREFIX || !is_hex(bare) {
            return Ok(None);
        }
        let mut found: Vec<&ImageEntry> =
            images.iter().filter(|i| i.id.starts_with(bare)).collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop().map(|i| (i, None))),
            _ => {
                let mut ids: Vec<&str> = found.iter().map(|i| i.id.as_str()).collect();
                ids.sort();
                Err(self.ambiguous(reference, ids.join(", ")))
            }
        }
    }

    fn ambiguous(&self, reference: &str, matches: String) -> Error {
        Error::Ambiguous {
            store: "containers-storage",
            root: self.root.clone(),
            reference: reference.to_owned(),
            matches,
        }
    }

    /// Reads and parses the list `rel`; `None` when it does not exist.
    fn read_list<T: serde::de::DeserializeOwned>(
        &self,
        root: &OwnedFd,
        rel: &str,
    ) -> Result<Option<Vec<T>>> {
        let path = self.root.join(rel);
        match read_capped(root, Path::new(rel), MAX_LIST_SIZE) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|source| Error::Json { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    fn open_root(&self) -> Result<Option<OwnedFd>> {
        open_store_root(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::*;
    use crate::source::tarsplit::testing::{make, Item};

    const CONTAINER: &str = "b8fdf6d6fda482c2a8a42e34f66e15537e8448c2d53dc5d83ace180839c81876";

    struct Store {
        tmp: tempfile::TempDir,
        id: String,
        layer_ids: Vec<String>,
        diff_ids: Vec<String>,
    }

    impl Store {
        fn root(&self) -> &Path {
            self.tmp.path()
        }

        fn store(&self) -> ContainersStorage {
            ContainersStorage::new(self.root())
        }

        fn config_file(&self) -> PathBuf {
            let key = format!("sha256:{}", self.id);
            self.root()
                .join("overlay-images")
                .join(&self.id)
                .join(format!("={}", base64_encode(key.as_bytes())))
        }

        fn edit_layers(&self, f: impl FnOnce(&mut Vec<serde_json::Value>)) {
            let path = self.root().join(LAYERS);
            let mut layers: Vec<serde_json::Value> =
                serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            f(&mut layers);
            fs::write(path, serde_json::to_vec(&layers).unwrap()).unwrap();
        }
    }

    /// A graph root as podman 4 leaves it: two image layers and a container
    /// layer, images `localhost/app:latest` (two layers) and
    /// `docker.io/library/base:latest` (one), a container `sess`.
    fn store() -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let layers: [&[Item<'_>]; 2] = [
            &[Item::Dir(b"etc/"), Item::File(b"etc/hello", b"hello\n")],
            &[Item::Dir(b"etc/"), Item::File(b"etc/two", b"two\n")],
        ];
        fs::create_dir_all(root.join("overlay-layers")).unwrap();
        let mut layer_ids: Vec<String> = Vec::new();
        let mut diff_ids: Vec<String> = Vec::new();
        let mut records = Vec::new();
        for (i, items) in layers.iter().enumerate() {
            let id = format!("{i}{}", "a".repeat(63));
            let made = make(
                items,
                &root.join("overlay").join(&id).join("diff"),
                &root.join(format!("overlay-layers/{id}.tar-split.gz")),
            );
            let mut record = json!({"id": id, "diff-digest": made.diff_id,
                                    "compressed-diff-digest": made.diff_id});
            if let Some(parent) = layer_ids.last() {
                record["parent"] = parent.clone().into();
            }
            records.push(record);
            layer_ids.push(id);
            diff_ids.push(made.diff_id);
        }
        records.push(json!({
            "id": "c".repeat(64), "names": ["sess-layer"], "parent": layer_ids[1],
            "diff-digest": null,
        }));
        fs::write(root.join(LAYERS), serde_json::to_vec(&records).unwrap()).unwrap();

        let mut images = Vec::new();
        let mut id = String::new();
        for (name, n) in [
            ("docker.io/library/base:latest", 1),
            ("localhost/app:latest", 2),
        ] {
            let config = serde_json::to_vec(&json!({
                "architecture": "amd64", "os": "linux",
                "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids[..n]},
            }))
            .unwrap();
            id = hex::encode(Sha256::digest(&config));
            let key = format!("sha256:{id}");
            let dir = root.join("overlay-images").join(&id);
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join(format!("={}", base64_encode(key.as_bytes()))),
                &config,
            )
            .unwrap();
            fs::write(dir.join("manifest"), b"{}").unwrap();
            images.push(json!({"id": id, "names": [name], "layer": layer_ids[n - 1],
                               "big-data-names": [key, "manifest"]}));
        }
        fs::write(root.join(IMAGES), serde_json::to_vec(&images).unwrap()).unwrap();
        fs::create_dir_all(root.join("overlay-containers")).unwrap();
        fs::write(
            root.join(CONTAINERS),
            serde_json::to_vec(&json!([{"id": CONTAINER, "names": ["sess"], "image": id,
                                        "layer": "c".repeat(64)}]))
            .unwrap(),
        )
        .unwrap();
        Store {
            tmp,
            id,
            layer_ids,
            diff_ids,
        }
    }

    #[test]
    fn recorded_gzip_blobs_with_their_size_are_registry_blobs() {
        let s = store();
        // The fixture records the diffID as the compressed digest: no blob.
        let got = s.store().image("app").unwrap();
        assert!(got.layers.iter().all(|l| l.registry.is_empty()));

        let blob = format!("sha256:{}", "a".repeat(64));
        s.edit_layers(|l| {
            l[0]["compressed-diff-digest"] = blob.clone().into();
            l[0]["compressed-size"] = 1234.into();
            l[0]["compression"] = 2.into();
            // zstd, and gzip without a size: neither is taken.
            l[1]["compressed-diff-digest"] = format!("sha256:{}", "b".repeat(64)).into();
            l[1]["compressed-size"] = 99.into();
            l[1]["compression"] = 4.into();
        });
        let got = s.store().image("app").unwrap();
        assert_eq!(
            got.layers[0].registry,
            vec![RegistryBlob {
                digest: blob.clone(),
                size: Some(1234),
                repository: None,
            }]
        );
        assert!(got.layers[1].registry.is_empty());
        s.edit_layers(|l| {
            l[1]["compression"] = 2.into();
            l[1]["compressed-size"] = serde_json::Value::Null;
        });
        assert!(s.store().image("app").unwrap().layers[1]
            .registry
            .is_empty());
    }

    #[test]
    fn big_data_names_are_the_store_s() {
        // As found on disk for the key of an image config.
        assert_eq!(
            base64_encode(b"sha256:bcb3a5bc4d9f8a4107dd87c2d2f3784b128d2f3b3ed03cb16c9d200ebbcc0527"),
            "c2hhMjU2OmJjYjNhNWJjNGQ5ZjhhNDEwN2RkODdjMmQyZjM3ODRiMTI4ZDJmM2IzZWQwM2NiMTZjOWQyMDBlYmJjYzA1Mjc="
        );
    }

    #[test]
    fn containers_are_read_with_their_names_and_images() {
        let s = store();
        let record = ContainerRecord {
            id: CONTAINER.into(),
            names: vec!["sess".into()],
            image: Some(s.id.clone()),
            file: s.root().join(CONTAINERS),
        };
        assert_eq!(s.store().containers().unwrap(), vec![record.clone()]);
        assert_eq!(s.store().container(CONTAINER).unwrap(), Some(record));
        assert_eq!(s.store().container("nope").unwrap(), None);
        let none = ContainersStorage::new("/nonexistent/storage");
        assert_eq!(none.containers().unwrap(), vec![]);
        assert!(matches!(
            none.image("app").unwrap_err(),
            Error::NoImage { .. }
        ));
    }

    #[test]
    fn images_are_found_by_name_id_and_prefix_and_their_layers_rebuilt() {
        let s = store();
        let image = format!("sha256:{}", s.id);
        for reference in [
            "app",
            "app:latest",
            "localhost/app",
            "localhost/app:latest",
            image.as_str(),
            &s.id,
            &s.id[..8],
        ] {
            let got = s.store().image(reference).unwrap();
            assert_eq!(got.name, "localhost/app:latest", "{reference}");
            assert_eq!(got.id, image);
            assert_eq!(got.store, "containers-storage");
            assert_eq!(
                got.layers.iter().map(|l| &l.id).collect::<Vec<_>>(),
                s.layer_ids.iter().collect::<Vec<_>>()
            );
            assert_eq!(
                got.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
                s.diff_ids.iter().collect::<Vec<_>>()
            );
            for layer in &got.layers {
                let mut out = Vec::new();
                assert_eq!(layer.write_tar(&mut out).unwrap(), out.len() as u64);
            }
        }
        for reference in ["base", "library/base", "docker.io/library/base:latest"] {
            let got = s.store().image(reference).unwrap();
            assert_eq!(got.name, "docker.io/library/base:latest", "{reference}");
            assert_eq!(got.layers.len(), 1);
        }
        for missing in ["other", "app:2", "abc", "docker.io/app"] {
            let e = s.store().image(missing).unwrap_err();
            assert!(matches!(e, Error::NoImage { .. }), "{missing}: {e}");
        }
    }

    #[test]
    fn a_short_name_two_images_answer_to_is_ambiguous() {
        let s = store();
        let path = s.root().join(IMAGES);
        let mut images: Vec<serde_json::Value> =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        images[0]["names"] = json!(["docker.io/library/app:latest"]);
        fs::write(&path, serde_json::to_vec(&images).unwrap()).unwrap();
        let e = s.store().image("app").unwrap_err();
        assert!(matches!(e, Error::Ambiguous { .. }), "{e}");
        assert!(e.to_string().contains("localhost/app:latest"), "{e}");
        // The full names still tell them apart.
        assert_eq!(s.store().image("localhost/app").unwrap().layers.len(), 2);
        assert_eq!(
            s.store()
                .image("docker.io/library/app")
                .unwrap()
                .layers
                .len(),
            1
        );
    }

    #[test]
    fn corrupt_and_hostile_records_are_named() {
        let s = store();
        fs::write(s.root().join(CONTAINERS), b"[{\"id\": 1}]").unwrap();
        let e = s.store().containers().unwrap_err();
        assert!(
            matches!(e, Error::Json { .. }) && e.to_string().contains("containers.json"),
            "{e}"
        );

        let s = store();
        let mut config = fs::read(s.config_file()).unwrap();
        config.push(b'\n');
        fs::write(s.config_file(), config).unwrap();
        let e = s.store().image("app").unwrap_err();
        assert!(matches!(e, Error::ConfigDigest { .. }), "{e}");
        assert!(e
            .to_string()
            .contains(&s.config_file().display().to_string()));

        let s = store();
        fs::remove_file(s.config_file()).unwrap();
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Read { .. }
        ));

        // A layer whose recorded diff digest is not the config's.
        let s = store();
        s.edit_layers(|l| l[1]["diff-digest"] = format!("sha256:{}", "1".repeat(64)).into());
        let e = s.store().image("app").unwrap_err();
        assert!(
            matches!(e, Error::DiffId { .. }) && e.to_string().contains(&s.layer_ids[1]),
            "{e}"
        );

        // A parent chain that loops, runs out, or is longer than the config.
        let s = store();
        s.edit_layers(|l| l[0]["parent"] = s.layer_ids[1].clone().into());
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Invalid { .. }
        ));
        let s = store();
        s.edit_layers(|l| {
            l.remove(0);
        });
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Invalid { .. }
        ));
        let s = store();
        s.edit_layers(|l| l[0]["parent"] = "c".repeat(64).into());
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Invalid { .. }
        ));

        // Layer ids that would escape.
        let s = store();
        s.edit_layers(|l| {
            l[0]["id"] = "../../x".into();
            l[1]["parent"] = "../../x".into();
        });
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Invalid { .. }
        ));

        // An image id that is not one.
        let s = store();
        let path = s.root().join(IMAGES);
        let text = fs::read_to_string(&path).unwrap().replace(&s.id, "../x");
        fs::write(&path, text).unwrap();
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Invalid { .. }
        ));

        // A layer directory reached through a symlink.
        let s = store();
        let layer = s.root().join("overlay").join(&s.layer_ids[0]);
        fs::rename(layer.join("diff"), layer.join("real")).unwrap();
        std::os::unix::fs::symlink("real", layer.join("diff")).unwrap();
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Read { .. }
        ));

        // A list too large to read.
        let s = store();
        fs::File::create(s.root().join(IMAGES))
            .unwrap()
            .set_len(MAX_LIST_SIZE + 1)
            .unwrap();
        let e = s.store().image("app").unwrap_err();
        assert!(
            matches!(e, Error::Read { .. }) && e.to_string().contains("limit"),
            "{e}"
        );
    }
}
