//! Docker's image store, read from its data root (`/var/lib/docker`) with the
//! overlay2 storage driver, never through the daemon.
//!
//! - containers: `containers/ID/config.v2.json` (`ID`, `Name` as `/name`,
//!   `Image` as `sha256:…`);
//! - image names: `image/overlay2/repositories.json`, familiar names
//!   (`busybox:latest`, `org/app:1`) mapped to image ids;
//! - image configs: `image/overlay2/imagedb/content/sha256/ID`, whose sha256
//!   is the id;
//! - layers: `image/overlay2/layerdb/sha256/CHAINID/` (`diff`, `cache-id`,
//!   `tar-split.json.gz`), the chain id of layer `i` being
//!   `sha256(chain[i-1] + " " + diff[i])` and that of the bottom layer its
//!   diffID; the unpacked layer is `overlay2/CACHEID/diff`.
//!
//! Every file is opened beneath the data root without following a symlink,
//! and JSON documents are size-capped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;
use oci_spec::image::ImageConfiguration;
use rustix::fs::OFlags;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::oci::MAX_JSON_SIZE;
use super::stored::{open_store_root, ContainerRecord, RegistryBlob, StoredImage, StoredLayer};
use crate::fs::open::{open_beneath, open_dir_beneath, read_names, stat, BENEATH};

/// Largest small file (`diff`, `cache-id`) read from a layer's record.
const MAX_SMALL_FILE: u64 = 4096;

/// Shortest image id prefix looked up.
pub const MIN_PREFIX: usize = 4;

pub use super::stored::StoreError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Docker's store under a data root, with the overlay2 driver.
#[derive(Debug, Clone)]
pub struct DockerStore {
    root: PathBuf,
}

/// What is read of a container's `config.v2.json`.
#[derive(Deserialize)]
struct ContainerConfig {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Image", default)]
    image: String,
}

/// `repositories.json`: repository → reference → image id.
#[derive(Deserialize, Default)]
struct Repositories {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

const IMAGE_DIR: &str = "image/overlay2";
const CONFIG_DIR: &str = "image/overlay2/imagedb/content/sha256";
const LAYER_DIR: &str = "image/overlay2/layerdb/sha256";
const V2METADATA_DIR: &str = "image/overlay2/distribution/v2metadata-by-diffid/sha256";

/// One entry of `v2metadata-by-diffid/sha256/HEX`: a registry blob that Docker
/// pulled or pushed this layer as.
#[derive(Deserialize)]
struct V2Metadata {
    #[serde(rename = "Digest")]
    digest: String,
    #[serde(rename = "SourceRepository", default)]
    source_repository: String,
}

impl DockerStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DockerStore { root: root.into() }
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every container recorded in `containers/*/config.v2.json`. A missing
    /// root or `containers` directory is an empty list; a directory without
    /// `config.v2.json` (a container being created) is passed over; a
    /// corrupt `config.v2.json` is an error naming it.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let Some(root) = self.open_root()? else {
            return Ok(Vec::new());
        };
        let dir = match open_dir_beneath(root.as_fd(), Path::new("containers")) {
            Ok(dir) => dir,
            Err(rustix::io::Errno::NOENT) => return Ok(Vec::new()),
            Err(e) => return Err(self.read_error("containers", e.into())),
        };
        let mut names =
            read_names(dir.as_fd()).map_err(|e| self.read_error("containers", e.into()))?;
        names.sort();
        let mut records = Vec::new();
        for name in names {
            let Ok(id) = String::from_utf8(name) else {
                continue;
            };
            if let Some(record) = self.read_container(&root, &id)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// The record of the container with this full id, `None` when Docker has
    /// none.
    pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>> {
        if !is_component(id) {
            return Ok(None);
        }
        match self.open_root()? {
            Some(root) => self.read_container(&root, id),
            None => Ok(None),
        }
    }

    fn read_container(&self, root: &OwnedFd, id: &str) -> Result<Option<ContainerRecord>> {
        let rel = format!("containers/{id}/config.v2.json");
        let path = self.root.join(&rel);
        let data = match read_capped(root, Path::new(&rel), MAX_JSON_SIZE) {
            Ok(data) => data,
            // No config yet (a container being created), or no directory.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                return Ok(None)
            }
            Err(source) => return Err(Error::Read { path, source }),
        };
        let config: ContainerConfig =
            serde_json::from_slice(&data).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;
        if config.id != id {
            return Err(Error::Invalid {
                path,
                reason: format!(
                    "it records container {:?} in the directory of {id}",
                    config.id
                ),
            });
        }
        let name = config.name.strip_prefix('/').unwrap_or(&config.name);
        Ok(Some(ContainerRecord {
            id: config.id.clone(),
            names: if name.is_empty() {
                Vec::new()
            } else {
                vec![name.to_owned()]
            },
            image: (!config.image.is_empty()).then_some(config.image),
            file: path,
        }))
    }

    /// An image by `sha256:HEX`, `HEX`, a unique id prefix of at least
    /// [`MIN_PREFIX`] characters, or a repository `NAME[:TAG]` or
    /// `NAME@DIGEST` (as `repositories.json` records it; `docker.io/library/`
    /// and `docker.io/` forms are accepted, the tag is `latest` by default).
    ///
    /// The config is read from `imagedb` and checked against the id; each
    /// layer is found in `layerdb` by its chain id, its recorded diffID
    /// checked against the config's, and its overlay2 directory found by its
    /// cache id.
    pub fn image(&self, reference: &str) -> Result<StoredImage> {
        let no_image = || Error::NoImage {
            store: "docker",
            root: self.root.clone(),
            reference: reference.to_owned(),
        };
        let root = self.open_root()?.ok_or_else(no_image)?;
        let repositories = self.repositories(&root)?;
        let (id, name) = match self.resolve(&root, &repositories, reference)? {
            Some(found) => found,
            None => return Err(no_image()),
        };

        let rel = format!("{CONFIG_DIR}/{id}");
        let path = self.root.join(&rel);
        let data = match read_capped(&root, Path::new(&rel), MAX_JSON_SIZE) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(no_image()),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let actual = hex::encode(Sha256::digest(&data));
        if actual != id {
            return Err(Error::ConfigDigest { path, actual });
        }
        let config: ImageConfiguration =
            serde_json::from_slice(&data).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;

        let image_id = format!("sha256:{id}");
        let mut layers = Vec::new();
        let mut chain: Option<String> = None;
        for diff_id in config.rootfs().diff_ids() {
            let hex = sha256_hex(diff_id).ok_or_else(|| Error::Invalid {
                path: path.clone(),
                reason: format!("diffID {diff_id:?} is not sha256:HEX"),
            })?;
            let chain_id = match &chain {
                None => format!("sha256:{hex}"),
                Some(parent) => format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(format!("{parent} {diff_id}")))
                ),
            };
            layers.push(self.layer(&root, &image_id, &chain_id, diff_id)?);
            chain = Some(chain_id);
        }
        let name = name.unwrap_or_else(|| {
            tags_of(&repositories, &image_id)
                .into_iter()
                .next()
                .unwrap_or_else(|| image_id.clone())
        });
        Ok(StoredImage {
            store: "docker",
            root: self.root.clone(),
            name,
            id: image_id,
            config,
            layers,
        })
    }

    /// Layer `chain_id` (`sha256:HEX`) of `image`, which must hold `diff_id`.
    fn layer(
        &self,
        root: &OwnedFd,
        image: &str,
        chain_id: &str,
        diff_id: &str,
    ) -> Result<StoredLayer> {
        let hex = &chain_id["sha256:".len()..];
        let dir = format!("{LAYER_DIR}/{hex}");
        let read_small = |name: &str| -> Result<String> {
            let rel = format!("{dir}/{name}");
            let data = read_capped(root, Path::new(&rel), MAX_SMALL_FILE).map_err(|source| {
                Error::Read {
                    path: self.root.join(&rel),
                    source,
                }
            })?;
            String::from_utf8(data)
                .map(|s| s.trim().to_owned())
                .map_err(|_| Error::Invalid {
                    path: self.root.join(&rel),
                    reason: "not UTF-8".into(),
                })
        };
        let found = read_small("diff")?;
        if found != diff_id {
            return Err(Error::DiffId {
                layer: chain_id.to_owned(),
                image: image.to_owned(),
                path: self.root.join(format!("{dir}/diff")),
                found,
                expected: diff_id.to_owned(),
            });
        }
        let cache_id = read_small("cache-id")?;
        if !is_component(&cache_id) {
            return Err(Error::Invalid {
                path: self.root.join(format!("{dir}/cache-id")),
                reason: format!("{cache_id:?} is no directory name"),
            });
        }
        let tar_split = format!("{dir}/tar-split.json.gz");
        check_file(root, Path::new(&tar_split)).map_err(|source| Error::Read {
            path: self.root.join(&tar_split),
            source,
        })?;
        let diff_dir = format!("overlay2/{cache_id}/diff");
        open_dir_beneath(root.as_fd(), Path::new(&diff_dir)).map_err(|e| Error::Read {
            path: self.root.join(&diff_dir),
            source: e.into(),
        })?;
        Ok(StoredLayer {
            diff_id: diff_id.to_owned(),
            id: chain_id.to_owned(),
            tar_split: self.root.join(tar_split),
            diff_dir: self.root.join(diff_dir),
            registry: self.registry_blobs(root, diff_id)?,
        })
    }

    /// The registry blobs Docker recorded for the layer `diff_id`
    /// (`distribution/v2metadata-by-diffid`), most recent first; none when it
    /// recorded nothing. Entries whose digest is not `sha256:HEX` are passed
    /// over.
    fn registry_blobs(&self, root: &OwnedFd, diff_id: &str) -> Result<Vec<RegistryBlob>> {
        let Some(hex) = sha256_hex(diff_id) else {
            return Ok(Vec::new());
        };
        let rel = format!("{V2METADATA_DIR}/{hex}");
        let path = self.root.join(&rel);
        let data = match read_capped(root, Path::new(&rel), MAX_JSON_SIZE) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                return Ok(Vec::new())
            }
            Err(source) => return Err(Error::Read { path, source }),
        };
        let entries: Option<Vec<V2Metadata>> =
            serde_json::from_slice(&data).map_err(|source| Error::Json { path, source })?;
        // Docker appends the newest entry last.
        Ok(entries
            .unwrap_or_default()
            .into_iter()
            .rev()
            .filter(|m| sha256_hex(&m.digest).is_some())
            .map(|m| RegistryBlob {
                digest: m.digest,
                size: None,
                repository: (!m.source_repository.is_empty()).then_some(m.source_repository),
            })
            .collect())
    }

    /// The image id (bare hex) `reference` names, and the name it was found
    /// by when it is a repository name.
    fn resolve(
        &self,
        root: &OwnedFd,
        repositories: &Repositories,
        reference: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        if let Some(hex) = sha256_hex(reference) {
            return Ok(Some((hex.to_owned(), None)));
        }
        if is_hex(reference) && reference.len() == 64 {
            return Ok(Some((reference.to_owned(), None)));
        }
        let familiar = familiar_name(reference);
        for refs in repositories.repositories.values() {
            if let Some(id) = refs.get(&familiar) {
                let hex = sha256_hex(id).ok_or_else(|| Error::Invalid {
                    path: self.root.join(IMAGE_DIR).join("repositories.json"),
                    reason: format!("{familiar:?} maps to {id:?}, not sha256:HEX"),
                })?;
                return Ok(Some((hex.to_owned(), Some(familiar))));
            }
        }
        let prefix = reference.strip_prefix("sha256:").unwrap_or(reference);
        if prefix.len() < MIN_PREFIX || !is_hex(prefix) {
            return Ok(None);
        }
        let dir = match open_dir_beneath(root.as_fd(), Path::new(CONFIG_DIR)) {
            Ok(dir) => dir,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.read_error(CONFIG_DIR, e.into())),
        };
        let mut matches: Vec<String> = read_names(dir.as_fd())
            .map_err(|e| self.read_error(CONFIG_DIR, e.into()))?
            .into_iter()
            .filter_map(|n| String::from_utf8(n).ok())
            .filter(|n| n.starts_with(prefix) && n.len() == 64 && is_hex(n))
            .collect();
        matches.sort();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.pop().map(|id| (id, None))),
            _ => Err(Error::Ambiguous {
                store: "docker",
                root: self.root.clone(),
                reference: reference.to_owned(),
                matches: matches.join(", "),
            }),
        }
    }

    fn repositories(&self, root: &OwnedFd) -> Result<Repositories> {
        let rel = format!("{IMAGE_DIR}/repositories.json");
        let path = self.root.join(&rel);
        match read_capped(root, Path::new(&rel), MAX_JSON_SIZE) {
            Ok(data) => {
                serde_json::from_slice(&data).map_err(|source| Error::Json { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Repositories::default()),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// The data root, open; `None` when it does not exist.
    fn open_root(&self) -> Result<Option<OwnedFd>> {
        open_store_root(&self.root)
    }

    fn read_error(&self, rel: &str, source: io::Error) -> Error {
        Error::Read {
            path: self.root.join(rel),
            source,
        }
    }
}

/// The repository references (`name:tag`) that point at `image_id`, sorted.
fn tags_of(repositories: &Repositories, image_id: &str) -> Vec<String> {
    let mut tags: Vec<String> = repositories
        .repositories
        .values()
        .flat_map(|refs| refs.iter())
        .filter(|(r, id)| *id == image_id && !r.contains('@'))
        .map(|(r, _)| r.clone())
        .collect();
    tags.sort();
    tags
}

/// A reference in Docker's familiar form, as `repositories.json` keys it:
/// no `docker.io/` or `library/` prefix, and `:latest` when it has neither a
/// tag nor a digest.
pub(crate) fn familiar_name(reference: &str) -> String {
    let mut name = reference;
    for prefix in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
            break;
        }
    }
    let name = name.strip_prefix("library/").unwrap_or(name);
    with_default_tag(name)
}

/// `name` with `:latest` appended when it has neither a tag nor a digest.
pub(crate) fn with_default_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// The hex of `sha256:HEX` (64 lower-case hex digits).
pub(crate) fn sha256_hex(s: &str) -> Option<&str> {
    s.strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && is_hex(hex))
}

pub(crate) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` can be one path component of a store: no `/`, not `.` or
/// `..`, no NUL, not empty.
pub(crate) fn is_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

/// Opens the regular file `rel` beneath `root`, through no symlink.
fn open_file_beneath(root: &OwnedFd, rel: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = open_beneath(root.as_fd(), rel, flags, BENEATH)?;
    let st = stat(&fd)?;
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(File::from(fd))
}

/// Checks that `rel` beneath `root` is a regular file reached through no
/// symlink.
pub(crate) fn check_file(root: &OwnedFd, rel: &Path) -> io::Result<()> {
    open_file_beneath(root, rel).map(drop)
}

/// Reads the regular file `rel` beneath `root` (through no symlink), at most
/// `limit` bytes of it; a larger file is an error.
pub(crate) fn read_capped(root: &OwnedFd, rel: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_file_beneath(root, rel)?;
    let mut data = Vec::new();
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the limit of {limit} bytes"),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::*;
    use crate::source::tarsplit::testing::{make, Item};

    const CONTAINER: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

    struct Store {
        tmp: tempfile::TempDir,
        id: String,
        diff_ids: Vec<String>,
        chain_ids: Vec<String>,
    }

    impl Store {
        fn root(&self) -> &Path {
            self.tmp.path()
        }

        fn store(&self) -> DockerStore {
            DockerStore::new(self.root())
        }

        fn layer_dir(&self, i: usize) -> PathBuf {
            self.root()
                .join(LAYER_DIR)
                .join(&self.chain_ids[i]["sha256:".len()..])
        }

        fn config_file(&self) -> PathBuf {
            self.root().join(CONFIG_DIR).join(&self.id)
        }

        fn container_file(&self) -> PathBuf {
            self.root()
                .join("containers")
                .join(CONTAINER)
                .join("config.v2.json")
        }
    }

    /// A data root as Docker 20.10 leaves it: two layers, an image tagged
    /// `app:latest` and `org/tool:1`, a container `sess` of it.
    fn store() -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let layers: [&[Item<'_>]; 2] = [
            &[Item::Dir(b"etc/"), Item::File(b"etc/hello", b"hello\n")],
            &[Item::Dir(b"etc/"), Item::File(b"etc/two", b"two\n")],
        ];
        let mut diff_ids: Vec<String> = Vec::new();
        let mut chain_ids: Vec<String> = Vec::new();
        for (i, items) in layers.iter().enumerate() {
            let cache_id = format!("{i}cache{}", "9".repeat(58));
            let tmp_split = root.join("split.gz");
            let made = make(
                items,
                &root.join("overlay2").join(&cache_id).join("diff"),
                &tmp_split,
            );
            let chain = match chain_ids.last() {
                None => made.diff_id.clone(),
                Some(parent) => format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(format!("{parent} {}", made.diff_id)))
                ),
            };
            let dir = root.join(LAYER_DIR).join(&chain["sha256:".len()..]);
            fs::create_dir_all(&dir).unwrap();
            fs::rename(&tmp_split, dir.join("tar-split.json.gz")).unwrap();
            fs::write(dir.join("diff"), &made.diff_id).unwrap();
            fs::write(dir.join("cache-id"), &cache_id).unwrap();
            fs::write(dir.join("size"), "6").unwrap();
            if let Some(parent) = chain_ids.last() {
                fs::write(dir.join("parent"), parent).unwrap();
            }
            diff_ids.push(made.diff_id);
            chain_ids.push(chain);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin", "A=1"], "Cmd": null, "Entrypoint": null,
                       "OnBuild": null, "Volumes": {"/data": {}}, "Labels": {"a": "b"},
                       "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/srv",
                       "Healthcheck": {"Test": ["CMD", "true"]}, "StopSignal": "SIGINT"},
            "container_config": {"Cmd": ["/bin/sh", "-c", "x"]},
            "docker_version": "20.10.24",
            "history": [{"created_by": "import"}, {"created_by": "RUN x"}],
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let id = hex::encode(Sha256::digest(&config));
        fs::create_dir_all(root.join(CONFIG_DIR)).unwrap();
        fs::write(root.join(CONFIG_DIR).join(&id), &config).unwrap();
        let image = format!("sha256:{id}");
        fs::write(
            root.join(IMAGE_DIR).join("repositories.json"),
            serde_json::to_vec(&json!({"Repositories": {
                "app": {"app:latest": image},
                "org/tool": {"org/tool:1": image, "org/tool@sha256:abc": image},
            }}))
            .unwrap(),
        )
        .unwrap();
        let dir = root.join("containers").join(CONTAINER);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.v2.json"),
            serde_json::to_vec(&json!({"ID": CONTAINER, "Name": "/sess", "Image": image,
                                       "Config": {"Image": "app"}, "State": {"Running": true}}))
            .unwrap(),
        )
        .unwrap();
        // A container being created, without its config yet, and a stray file.
        fs::create_dir_all(root.join("containers").join("f".repeat(64))).unwrap();
        fs::write(root.join("containers").join("stray"), b"").unwrap();
        Store {
            tmp,
            id,
            diff_ids,
            chain_ids,
        }
    }

    #[test]
    fn containers_are_read_with_their_names_and_images() {
        let s = store();
        let all = s.store().containers().unwrap();
        assert_eq!(
            all,
            vec![ContainerRecord {
                id: CONTAINER.into(),
                names: vec!["sess".into()],
                image: Some(format!("sha256:{}", s.id)),
                file: s.container_file(),
            }]
        );
        assert_eq!(
            s.store().container(CONTAINER).unwrap(),
            Some(all[0].clone())
        );
        assert_eq!(s.store().container(&"f".repeat(64)).unwrap(), None);
        assert_eq!(s.store().container("nope").unwrap(), None);
        assert_eq!(s.store().container("../containers").unwrap(), None);
    }

    #[test]
    fn a_missing_root_has_nothing() {
        let s = DockerStore::new("/nonexistent/docker");
        assert_eq!(s.containers().unwrap(), vec![]);
        assert_eq!(s.container(CONTAINER).unwrap(), None);
        assert!(matches!(s.image("app").unwrap_err(), Error::NoImage { .. }));
    }

    #[test]
    fn images_are_found_by_name_id_and_prefix_and_their_layers_rebuilt() {
        let s = store();
        let image = format!("sha256:{}", s.id);
        for (reference, name) in [
            ("app", "app:latest"),
            ("app:latest", "app:latest"),
            ("docker.io/library/app", "app:latest"),
            ("library/app:latest", "app:latest"),
            ("org/tool:1", "org/tool:1"),
            ("docker.io/org/tool:1", "org/tool:1"),
            (image.as_str(), "app:latest"),
            (&s.id, "app:latest"),
            (&s.id[..6], "app:latest"),
            (&image[..14], "app:latest"),
        ] {
            let got = s.store().image(reference).unwrap();
            assert_eq!(got.name, name, "{reference}");
            assert_eq!(got.id, image);
            assert_eq!(got.store, "docker");
            assert_eq!(got.root, s.root());
            assert_eq!(
                got.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
                s.diff_ids.iter().collect::<Vec<_>>()
            );
            assert_eq!(
                got.layers.iter().map(|l| &l.id).collect::<Vec<_>>(),
                s.chain_ids.iter().collect::<Vec<_>>()
            );
        }
        let got = s.store().image("app").unwrap();
        let config = got.config.config().clone().unwrap();
        assert_eq!(config.env().clone().unwrap(), vec!["PATH=/bin", "A=1"]);
        assert_eq!(config.working_dir().as_deref(), Some("/srv"));
        assert_eq!(config.volumes().clone().unwrap(), vec!["/data"]);
        assert_eq!(config.exposed_ports().clone().unwrap(), vec!["80/tcp"]);
        assert_eq!(config.labels().clone().unwrap()["a"], "b");
        assert_eq!(got.config.history().as_ref().map(Vec::len), Some(2));
        for layer in &got.layers {
            let mut out = Vec::new();
            let n = layer.write_tar(&mut out).unwrap();
            assert_eq!(n, out.len() as u64);
            assert_eq!(layer.tar_size().unwrap(), n);
        }
        for missing in ["other", "app:2", "abc", "0000000", "docker.io/other/app"] {
            let e = s.store().image(missing).unwrap_err();
            assert!(matches!(e, Error::NoImage { .. }), "{missing}: {e}");
        }
    }

    #[test]
    fn distribution_metadata_gives_registry_blobs_newest_first() {
        let s = store();
        let got = s.store().image("app").unwrap();
        assert!(got.layers.iter().all(|l| l.registry.is_empty()));

        let dir = s.root().join(V2METADATA_DIR);
        fs::create_dir_all(&dir).unwrap();
        let (old, new) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        fs::write(
            dir.join(&s.diff_ids[1]["sha256:".len()..]),
            serde_json::to_vec(&json!([
                {"Digest": old, "SourceRepository": "docker.io/library/app", "HMAC": ""},
                {"Digest": "md5:x", "SourceRepository": "r", "HMAC": ""},
                {"Digest": new, "SourceRepository": "localhost:5000/app", "HMAC": "ab"},
            ]))
            .unwrap(),
        )
        .unwrap();
        let got = s.store().image("app").unwrap();
        assert!(got.layers[0].registry.is_empty());
        assert_eq!(
            got.layers[1].registry,
            vec![
                RegistryBlob {
                    digest: new,
                    size: None,
                    repository: Some("localhost:5000/app".into()),
                },
                RegistryBlob {
                    digest: old,
                    size: None,
                    repository: Some("docker.io/library/app".into()),
                },
            ]
        );

        // Corrupt metadata is named.
        fs::write(dir.join(&s.diff_ids[1]["sha256:".len()..]), b"{").unwrap();
        let e = s.store().image("app").unwrap_err();
        assert!(
            matches!(e, Error::Json { .. }) && e.to_string().contains("v2metadata-by-diffid"),
            "{e}"
        );
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_matches() {
        let s = store();
        let other = format!(
            "{}{}",
            &s.id[..4],
            if &s.id[4..5] == "0" { "1" } else { "0" }.repeat(60)
        );
        fs::write(s.root().join(CONFIG_DIR).join(&other), b"{}").unwrap();
        let e = s.store().image(&s.id[..4]).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Ambiguous { .. }), "{msg}");
        assert!(msg.contains(&s.id) && msg.contains(&other), "{msg}");
    }

    #[test]
    fn a_corrupt_container_config_is_named() {
        let s = store();
        fs::write(s.container_file(), b"{\"ID\": ").unwrap();
        for e in [
            s.store().containers().unwrap_err(),
            s.store().container(CONTAINER).unwrap_err(),
        ] {
            assert!(matches!(e, Error::Json { .. }), "{e}");
            assert!(e
                .to_string()
                .contains(&s.container_file().display().to_string()));
        }
        // Another container's id in it.
        fs::write(s.container_file(), br#"{"ID": "0123"}"#).unwrap();
        assert!(matches!(
            s.store().containers().unwrap_err(),
            Error::Invalid { .. }
        ));
        // Too large to be one.
        let mut big = br#"{"ID": ""#.to_vec();
        big.resize(MAX_JSON_SIZE as usize + 10, b'x');
        fs::write(s.container_file(), &big).unwrap();
        let e = s.store().containers().unwrap_err();
        assert!(
            matches!(e, Error::Read { .. }) && e.to_string().contains("limit"),
            "{e}"
        );
        // A symlink to a good one elsewhere.
        let elsewhere = s.root().join("elsewhere.json");
        fs::write(&elsewhere, format!(r#"{{"ID": "{CONTAINER}"}}"#)).unwrap();
        fs::remove_file(s.container_file()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, s.container_file()).unwrap();
        assert!(matches!(
            s.store().containers().unwrap_err(),
            Error::Read { .. }
        ));
    }

    #[test]
    fn a_tampered_image_config_is_named() {
        let s = store();
        let mut config = fs::read(s.config_file()).unwrap();
        config.push(b' ');
        fs::write(s.config_file(), &config).unwrap();
        let e = s.store().image("app").unwrap_err();
        assert!(matches!(e, Error::ConfigDigest { .. }), "{e}");
        assert!(e
            .to_string()
            .contains(&s.config_file().display().to_string()));

        let s = store();
        fs::write(s.root().join(IMAGE_DIR).join("repositories.json"), b"[").unwrap();
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Json { .. }
        ));
    }

    #[test]
    fn layer_records_that_disagree_or_escape_are_refused() {
        let s = store();
        fs::write(
            s.layer_dir(1).join("diff"),
            format!("sha256:{}", "1".repeat(64)),
        )
        .unwrap();
        let e = s.store().image("app").unwrap_err();
        assert!(matches!(e, Error::DiffId { .. }), "{e}");
        assert!(e.to_string().contains(&s.chain_ids[1]), "{e}");

        for cache_id in ["../../etc", "", "a/b", ".."] {
            let s = store();
            fs::write(s.layer_dir(0).join("cache-id"), cache_id).unwrap();
            let e = s.store().image("app").unwrap_err();
            assert!(matches!(e, Error::Invalid { .. }), "{cache_id}: {e}");
        }

        // The layer directory or the tar-split reached through a symlink.
        let s = store();
        let cache_id = fs::read_to_string(s.layer_dir(0).join("cache-id")).unwrap();
        let layer = s.root().join("overlay2").join(&cache_id);
        fs::rename(layer.join("diff"), layer.join("real")).unwrap();
        std::os::unix::fs::symlink("real", layer.join("diff")).unwrap();
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Read { .. }
        ));
        let s = store();
        let split = s.layer_dir(1).join("tar-split.json.gz");
        fs::rename(&split, s.root().join("split.gz")).unwrap();
        std::os::unix::fs::symlink(s.root().join("split.gz"), &split).unwrap();
        let e = s.store().image("app").unwrap_err();
        assert!(matches!(e, Error::Read { .. }), "{e}");
        assert!(e.to_string().contains("tar-split.json.gz"), "{e}");

        // A layer missing from layerdb.
        let s = store();
        fs::remove_dir_all(s.layer_dir(1)).unwrap();
        assert!(matches!(
            s.store().image("app").unwrap_err(),
            Error::Read { .. }
        ));
    }

    #[test]
    fn familiar_names_are_docker_s() {
        for (input, familiar) in [
            ("busybox", "busybox:latest"),
            ("docker.io/library/busybox:1.36", "busybox:1.36"),
            ("docker.io/org/x", "org/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost:5000/x:2", "localhost:5000/x:2"),
            ("ghcr.io/o/x@sha256:ab", "ghcr.io/o/x@sha256:ab"),
        ] {
            assert_eq!(familiar_name(input), familiar, "{input}");
        }
    }
}
