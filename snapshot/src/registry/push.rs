//! An OCI image archive (or layout directory) to a registry repository.
//!
//! The image's config and layers go first, each only if the repository lacks
//! it: `HEAD`, then a mount from the `from` repository when one is given, then
//! an upload streamed from the archive. A blob the archive lacks (a commit
//! written with `--base-blobs omit`) must already be in the registry. The
//! manifest goes last, byte for byte as the archive holds it, so its digest is
//! the archive's (unless a layer is renamed, below); a registry that refuses
//! OCI manifests (415, or 400
//! `MANIFEST_INVALID`) gets its Docker schema 2 form instead, which names the
//! same blobs and has a digest of its own.
//!
//! A base layer that a commit left out as an uncompressed tar (named by its
//! diffID, as a store that keeps layers unpacked knows it) is looked up among
//! the registry blobs the store recorded for it ([`PushOptions::registry_blobs`]):
//! the first that the repository has, or that can be mounted from the
//! repository it was recorded in, takes its place in the manifest with the
//! digest and size the registry answers. Nothing of it is uploaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde::Serialize;

use super::client::{Client, ClientOptions, Mount};
use super::manifest::to_docker_schema2;
use super::reference::Reference;
use super::upload::{upload_blob, VerifyingReader, DEFAULT_CHUNK_SIZE};
use super::Error;
use crate::digest::sha256_digest;
use crate::image::{canonical_json, ANNOTATION_BASE_NAME};
use crate::source::oci::DOCKER_MANIFEST;
use crate::source::{ImageSource, RegistryBlob, SourceError, MAX_JSON_SIZE};

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// TLS, credentials, insecure.
    pub client: ClientOptions,
    /// A repository of the same registry to mount missing blobs from (the base
    /// image's repository). `None` takes it from the manifest's
    /// `org.opencontainers.image.base.name` when that names an image of the
    /// same registry ([`base_repository`]).
    pub from: Option<String>,
    /// The image in the archive (`org.opencontainers.image.ref.name`), when it
    /// holds several.
    pub image: Option<String>,
    /// Blobs up to this size go in one `PUT`; larger ones in `PATCH`es of it.
    pub chunk_size: u64,
    /// Bytes of blobs sent so far, for progress reports.
    pub progress: Option<Arc<AtomicU64>>,
    /// Set to stop the push; it ends with [`Error::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Blobs (config and layers) handled so far, for progress reports.
    pub blobs_done: Option<Arc<AtomicU64>>,
    /// Registry blobs known to hold a layer the archive lacks, by the digest
    /// the manifest names it by (an uncompressed base layer's diffID): the
    /// gzip blobs a store recorded for it, most likely first. See the module
    /// documentation.
    pub registry_blobs: BTreeMap<String, Vec<RegistryBlob>>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            client: ClientOptions::default(),
            from: None,
            image: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            progress: None,
            cancel: None,
            blobs_done: None,
            registry_blobs: BTreeMap::new(),
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobOutcome {
    /// The repository had it.
    Existing,
    /// Mounted from the `from` repository.
    Mounted,
    /// Sent from the archive.
    Uploaded,
}

/// One blob of the pushed image.
#[derive(Debug, Clone, Serialize)]
pub struct PushedBlob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub outcome: BlobOutcome,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// Where the image went, `HOST[:PORT]/REPO:TAG` (or `@DIGEST`).
    pub reference: String,
    /// The manifest's digest: `REPO@DIGEST` names exactly this image.
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub manifest_size: u64,
    /// The repository blobs were mounted from, when one was given or found.
    pub mount_source: Option<String>,
    /// The config first, then the layers in order.
    pub blobs: Vec<PushedBlob>,
    /// Bytes of blobs sent (mounted and existing blobs count nothing).
    pub uploaded_bytes: u64,
}

/// Pushes the image in `archive` (an OCI layout archive or directory) to
/// `reference`.
pub fn push_archive(
    archive: &Path,
    reference: &Reference,
    options: &PushOptions,
) -> Result<PushReport, Error> {
    if let Some(from) = &options.from {
        if !super::reference::valid_repository(from) {
            return Err(Error::InvalidReference {
                input: from.clone(),
                reason: "not a repository name to mount from (lower-case [a-z0-9] components \
                         separated by . _ - and /)",
            });
        }
    }
    let source = ImageSource::open(archive)?;
    let image = source.resolve(options.image.as_deref())?;
    let manifest_desc = &image.manifest_descriptor;
    let manifest_digest = manifest_desc.digest().clone();
    if let Some(expected) = &reference.digest {
        if *expected != manifest_digest {
            return Err(Error::DigestMismatch {
                archive: archive.to_owned(),
                reference: reference.to_string(),
                expected: expected.to_string(),
                actual: manifest_digest.to_string(),
            });
        }
    }
    // The bytes as stored, verified against the descriptor's digest.
    let manifest_bytes = source.read_blob(manifest_desc, MAX_JSON_SIZE)?;

    let repository = reference.repository.as_str();
    let mut client = Client::new(&reference.registry, repository, &options.client)?;
    let mut scopes = vec![format!("repository:{repository}:pull,push")];
    let from = options.from.clone().or_else(|| {
        let name = image
            .manifest
            .annotations()
            .as_ref()?
            .get(ANNOTATION_BASE_NAME)?;
        base_repository(name, &reference.registry)
    });
    let from = from.filter(|f| f != repository);
    if let Some(from) = &from {
        scopes.push(format!("repository:{from}:pull"));
    }
    // The repositories recorded for layers to be found, on this registry.
    let mut sources: Vec<&str> = Vec::new();
    for desc in image.manifest.layers() {
        for blob in options
            .registry_blobs
            .get(desc.digest().as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(r) = blob
                .repository
                .as_deref()
                .and_then(|r| same_registry(r, &reference.registry))
            {
                if r != repository && Some(r) != from.as_deref() && !sources.contains(&r) {
                    sources.push(r);
                }
            }
        }
    }
    scopes.extend(sources.iter().map(|r| format!("repository:{r}:pull")));
    client.set_scopes(scopes);

    let pusher = Pusher {
        archive: archive.to_owned(),
        from: from.clone(),
        reference,
        source: &source,
        options,
    };
    let mut blobs = Vec::new();
    let mut uploaded_bytes = 0;
    let mut layers = image.manifest.layers().clone();
    let mut renamed = false;
    for i in 0..=layers.len() {
        pusher.check_cancel()?;
        let desc = match i {
            0 => image.manifest.config(),
            _ => &layers[i - 1],
        };
        let (desc, outcome) = match pusher.find_recorded(&mut client, desc)? {
            Some((found, outcome)) => {
                tracing::info!(
                    layer = %desc.digest(),
                    blob = %found.digest(),
                    "layer found in the registry as the blob its store recorded"
                );
                layers[i - 1] = found;
                renamed = true;
                (&layers[i - 1], outcome)
            }
            None => {
                let outcome = pusher.push_blob(&mut client, desc)?;
                (desc, outcome)
            }
        };
        if outcome == BlobOutcome::Uploaded {
            uploaded_bytes += desc.size();
        }
        tracing::info!(
            digest = %desc.digest(),
            size = desc.size(),
            outcome = ?outcome,
            "blob pushed"
        );
        blobs.push(PushedBlob {
            digest: desc.digest().to_string(),
            size: desc.size(),
            media_type: desc.media_type().to_string(),
            outcome,
        });
        if let Some(done) = &options.blobs_done {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
    pusher.check_cancel()?;

    let (manifest_bytes, manifest_digest) = if renamed {
        let mut manifest = image.manifest.clone();
        manifest.set_layers(layers);
        let bytes = canonical_json(&manifest).map_err(|e| Error::Protocol {
            what: format!("rewriting the manifest of {}", archive.display()),
            url: String::new(),
            reason: e.to_string(),
        })?;
        let digest = sha256_digest(&bytes);
        if let Some(expected) = &reference.digest {
            return Err(Error::DigestMismatch {
                archive: archive.to_owned(),
                reference: reference.to_string(),
                expected: expected.to_string(),
                actual: digest,
            });
        }
        (bytes, digest)
    } else {
        (manifest_bytes, manifest_digest.to_string())
    };
    let media_type = manifest_desc.media_type().to_string();
    let target = reference.manifest_reference();
    let (manifest_bytes, media_type, manifest_digest, answered) =
        match client.put_manifest(repository, &target, &media_type, &manifest_bytes) {
            Ok(answered) => (manifest_bytes, media_type, manifest_digest, answered),
            // A pinned digest cannot be kept through a conversion.
            Err(e) if refuses_oci(&e) && reference.digest.is_none() => {
                let Ok(docker) = to_docker_schema2(&manifest_bytes) else {
                    return Err(e);
                };
                tracing::warn!(
                    error = %e,
                    "the registry refused the OCI manifest; pushing its Docker schema 2 form"
                );
                let answered =
                    client.put_manifest(repository, &target, DOCKER_MANIFEST, &docker)?;
                let digest = sha256_digest(&docker);
                (docker, DOCKER_MANIFEST.to_owned(), digest, answered)
            }
            Err(e) => return Err(e),
        };
    if let Some(answered) = answered {
        if answered != manifest_digest {
            return Err(Error::Protocol {
                what: format!("pushing the manifest {repository}:{target}"),
                url: client.url(&format!("/v2/{repository}/manifests/{target}")),
                reason: format!(
                    "the registry stored it as {answered}, not as {manifest_digest}: \
                     it rewrote the manifest"
                ),
            });
        }
    }
    Ok(PushReport {
        reference: reference.to_string(),
        manifest_digest,
        manifest_media_type: media_type,
        manifest_size: manifest_bytes.len() as u64,
        mount_source: from,
        blobs,
        uploaded_bytes,
    })
}

/// The repository of `registry` that a base image's name (as a commit's
/// `org.opencontainers.image.base.name` gives it: `docker:NAME`,
/// `containers-storage:NAME`, `containerd:[NAMESPACE/]NAME`) is in, when it is
/// an image of that registry: where its blobs can be mounted from.
pub fn base_repository(base_name: &str, registry: &str) -> Option<String> {
    let candidates: Vec<&str> = if let Some(name) = ["docker://", "docker:", "containers-storage:"]
        .iter()
        .find_map(|p| base_name.strip_prefix(p))
    {
        vec![name]
    } else {
        let name = base_name.strip_prefix("containerd:")?;
        // With or without a namespace in front.
        std::iter::once(name)
            .chain(name.split_once('/').map(|(_, rest)| rest))
            .collect()
    };
    candidates
        .into_iter()
        .filter_map(|c| c.parse::<Reference>().ok())
        .find(|r| r.registry == registry)
        .map(|r| r.repository)
}

/// The repository of `name` (`HOST[:PORT]/REPO`, as a store records where
/// a blob came from) when it is on `registry`.
fn same_registry<'a>(name: &'a str, registry: &str) -> Option<&'a str> {
    let repository = name.strip_prefix(registry)?.strip_prefix('/')?;
    super::reference::valid_repository(repository).then_some(repository)
}

/// Whether a manifest `PUT` failed because the registry does not take OCI
/// manifests: 415, or 400 `MANIFEST_INVALID`.
fn refuses_oci(e: &Error) -> bool {
    match e {
        Error::Status { message, .. } => match e.status() {
            Some(415) => true,
            Some(400) => message.contains("MANIFEST_INVALID"),
            _ => false,
        },
        _ => false,
    }
}

struct Pusher<'a> {
    archive: PathBuf,
    /// The repository to mount from.
    from: Option<String>,
    reference: &'a Reference,
    source: &'a ImageSource,
    options: &'a PushOptions,
}

impl Pusher<'_> {
    fn check_cancel(&self) -> Result<(), Error> {
        match &self.options.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Cancelled {
                archive: self.archive.clone(),
                reference: self.reference.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn push_blob(&self, client: &mut Client, desc: &Descriptor) -> Result<BlobOutcome, Error> {
        let repository = self.reference.repository.as_str();
        let digest = desc.digest();
        if client.blob_size(repository, digest)?.is_some() {
            return Ok(BlobOutcome::Existing);
        }
        let from = self.from.as_deref();
        let session = match from {
            Some(from) => match client.mount_blob(repository, digest, from)? {
                Mount::Mounted => return Ok(BlobOutcome::Mounted),
                Mount::Upload(location) => Some(location),
            },
            None => None,
        };
        if !self.source.has_blob(digest) {
            if let Some(location) = &session {
                client.cancel_upload(location);
            }
            return Err(self.missing(digest, from));
        }
        let result = self.upload(client, desc, session);
        if result.is_err() {
            self.check_cancel()?;
        }
        result.map(|()| BlobOutcome::Uploaded)
    }

    /// For a base layer whose store recorded registry blobs for it (other
    /// than the one the manifest names), the first of them that the
    /// repository has or that can be mounted into it (from the repository it
    /// was recorded in, else from the `from` one): its gzip descriptor, with
    /// the size the registry answers. `None` when none is found, or no blob
    /// was recorded: the archive's blob, if it has it, is pushed then.
    fn find_recorded(
        &self,
        client: &mut Client,
        desc: &Descriptor,
    ) -> Result<Option<(Descriptor, BlobOutcome)>, Error> {
        let Some(candidates) = self.options.registry_blobs.get(desc.digest().as_ref()) else {
            return Ok(None);
        };
        if candidates
            .iter()
            .any(|b| b.digest == desc.digest().as_ref())
        {
            return Ok(None);
        }
        let repository = self.reference.repository.as_str();
        for blob in candidates {
            let Ok(digest) = blob.digest.parse::<Digest>() else {
                continue;
            };
            let found = |size: u64, outcome| {
                let desc = Descriptor::new(MediaType::ImageLayerGzip, size, digest.clone());
                Ok(Some((desc, outcome)))
            };
            if let Some(size) = client.blob_size(repository, &digest)? {
                return found(size, BlobOutcome::Existing);
            }
            let recorded = blob
                .repository
                .as_deref()
                .and_then(|r| same_registry(r, &self.reference.registry));
            let mut tried = Vec::new();
            for from in recorded.into_iter().chain(self.from.as_deref()) {
                if from == repository || tried.contains(&from) {
                    continue;
                }
                tried.push(from);
                match client.mount_blob(repository, &digest, from)? {
                    Mount::Mounted => {
                        if let Some(size) = client.blob_size(repository, &digest)? {
                            return found(size, BlobOutcome::Mounted);
                        }
                    }
                    Mount::Upload(location) => client.cancel_upload(&location),
                }
            }
        }
        Ok(None)
    }

    fn upload(
        &self,
        client: &mut Client,
        desc: &Descriptor,
        session: Option<String>,
    ) -> Result<(), Error> {
        let digest = desc.digest();
        let stored = self.source.blob_size(digest)?;
        if stored != desc.size() {
            if let Some(location) = &session {
                client.cancel_upload(location);
            }
            return Err(SourceError::SizeMismatch {
                path: self.archive.clone(),
                digest: digest.clone(),
                expected: desc.size(),
                actual: stored,
            }
            .into());
        }
        let location = match session {
            Some(location) => location,
            None => client.start_upload(&self.reference.repository, digest)?,
        };
        let mut open = |offset: u64| -> Result<_, Error> {
            let reader = self.source.blob_reader(digest)?;
            let mut reader = VerifyingReader::new(reader, digest, desc.size())
                .ok_or_else(|| SourceError::UnsupportedDigest {
                    path: self.archive.clone(),
                    digest: digest.clone(),
                })?
                .with_progress(self.options.progress.clone())
                .with_cancel(self.options.cancel.clone());
            reader
                .skip_to(offset)
                .map_err(|source| SourceError::BlobIo {
                    path: self.archive.clone(),
                    digest: digest.clone(),
                    source,
                })?;
            Ok(reader)
        };
        upload_blob(
            client,
            &self.reference.repository,
            location,
            digest,
            desc.size(),
            &mut open,
            self.options.chunk_size,
        )
    }

    fn missing(&self, digest: &Digest, from: Option<&str>) -> Error {
        Error::MissingBlob {
            archive: self.archive.clone(),
            digest: digest.to_string(),
            repository: self.reference.repository.clone(),
            from: from.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::str::FromStr;

    use super::*;

    /// Writes a blob into an OCI layout directory; returns its descriptor JSON.
    fn blob(dir: &Path, media_type: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
        std::fs::write(path, data).unwrap();
        format!(
            r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}}}"#,
            data.len()
        )
    }

    /// A registry over plain HTTP that has every blob and refuses OCI
    /// manifests; answers one request per connection and records them.
    fn serve_refusing_oci(listener: TcpListener) -> Vec<String> {
        let mut seen = Vec::new();
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut content_type = String::new();
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end().to_ascii_lowercase();
                if header.is_empty() {
                    break;
                }
                if let Some(v) = header.strip_prefix("content-type: ") {
                    content_type = v.to_owned();
                }
                if let Some(v) = header.strip_prefix("content-length: ") {
                    length = v.parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request = line.split(' ').take(2).collect::<Vec<_>>().join(" ");
            let answer = if request.starts_with("HEAD ") {
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 10\r\n\r\n".to_owned()
            } else if content_type.contains("oci") {
                let error =
                    r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#;
                format!(
                    "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{error}",
                    error.len()
                )
            } else {
                format!(
                    "HTTP/1.1 201 Created\r\nconnection: close\r\ndocker-content-digest: {}\r\ncontent-length: 0\r\n\r\n",
                    sha256_digest(&body)
                )
            };
            stream.write_all(answer.as_bytes()).unwrap();
            let done = request.starts_with("PUT ") && !content_type.contains("oci");
            seen.push(format!("{request} {content_type}"));
            if done {
                return seen;
            }
        }
        seen
    }

    #[test]
    fn finds_the_base_repository_in_the_base_name() {
        let cases = [
            ("docker:reg.io:5000/team/base:1", "reg.io:5000", Some("team/base")),
            ("docker:ubuntu:22.04", "docker.io", Some("library/ubuntu")),
            ("containers-storage:reg.io/base:1", "reg.io", Some("base")),
            ("containerd:k8s.io/reg.io:5000/team/base:1", "reg.io:5000", Some("team/base")),
            ("containerd:reg.io/base@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "reg.io", Some("base")),
            ("docker:reg.io:5000/team/base:1", "other.io", None),
            ("oci-archive:/x/base.tar:t", "reg.io", None),
            ("docker:sha256:0123", "reg.io", None),
        ];
        for (name, registry, expected) in cases {
            assert_eq!(
                base_repository(name, registry).as_deref(),
                expected,
                "{name} in {registry}"
            );
        }
    }

    #[test]
    fn falls_back_to_docker_schema2_when_oci_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path();
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let config = blob(
            layout,
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let layer = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":10}"#;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{config},"layers":[{layer}]}}"#
        );
        let manifest_desc = blob(
            layout,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        );
        std::fs::write(
            layout.join("index.json"),
            format!(r#"{{"schemaVersion":2,"manifests":[{manifest_desc}]}}"#),
        )
        .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || serve_refusing_oci(listener));
        let reference = Reference::from_str(&format!("127.0.0.1:{port}/app:1")).unwrap();
        let options = PushOptions {
            client: ClientOptions {
                insecure: true,
                credentials: Some(super::super::Credentials::new("u", "p")),
                cert_dirs: vec![layout.join("none")],
                retries: 0,
                ..ClientOptions::default()
            },
            ..PushOptions::default()
        };
        let report = push_archive(layout, &reference, &options).unwrap();
        let seen = server.join().unwrap();
        assert_eq!(report.manifest_media_type, DOCKER_MANIFEST);
        assert_ne!(report.manifest_digest, sha256_digest(manifest.as_bytes()));
        assert!(report
            .blobs
            .iter()
            .all(|b| b.outcome == BlobOutcome::Existing));
        let puts: Vec<_> = seen.iter().filter(|r| r.starts_with("PUT ")).collect();
        assert_eq!(puts.len(), 2, "{seen:#?}");
        assert!(puts[0].ends_with("application/vnd.oci.image.manifest.v1+json"));
        assert!(puts[1].ends_with(DOCKER_MANIFEST));
    }

    /// A registry over plain HTTP, one request per connection, that has the
    /// blobs `present` (digest → size) and mounts none; records the requests
    /// (`METHOD PATH`) and the manifest put, and ends with it.
    fn serve_with(listener: TcpListener, present: Vec<(String, u64)>) -> (Vec<String>, Vec<u8>) {
        let mut seen = Vec::new();
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end().to_ascii_lowercase();
                if header.is_empty() {
                    break;
                }
                if let Some(v) = header.strip_prefix("content-length: ") {
                    length = v.parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request = line.split(' ').take(2).collect::<Vec<_>>().join(" ");
            seen.push(request.clone());
            let answer = if request.starts_with("HEAD ") {
                match present.iter().find(|(d, _)| request.ends_with(d.as_str())) {
                    Some((_, size)) => format!(
                        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {size}\r\n\r\n"
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
                            .to_owned()
                    }
                }
            } else if request.starts_with("POST ") {
                "HTTP/1.1 202 Accepted\r\nconnection: close\r\nlocation: /v2/app/blobs/uploads/u1\r\ncontent-length: 0\r\n\r\n"
                    .to_owned()
            } else if request.starts_with("DELETE ") {
                "HTTP/1.1 204 No Content\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
                    .to_owned()
            } else {
                format!(
                    "HTTP/1.1 201 Created\r\nconnection: close\r\ndocker-content-digest: {}\r\ncontent-length: 0\r\n\r\n",
                    sha256_digest(&body)
                )
            };
            stream.write_all(answer.as_bytes()).unwrap();
            if request.starts_with("PUT ") && request.contains("/manifests/") {
                return (seen, body);
            }
        }
        (seen, Vec::new())
    }

    #[test]
    fn an_omitted_uncompressed_layer_is_named_by_the_recorded_blob_the_registry_has() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path();
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let diff_id = format!("sha256:{}", "d".repeat(64));
        let config = blob(
            layout,
            "application/vnd.oci.image.config.v1+json",
            format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#)
                .as_bytes(),
        );
        let layer = format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{diff_id}","size":10240}}"#
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{config},"layers":[{layer}]}}"#
        );
        let manifest_desc = blob(
            layout,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        );
        std::fs::write(
            layout.join("index.json"),
            format!(r#"{{"schemaVersion":2,"manifests":[{manifest_desc}]}}"#),
        )
        .unwrap();
        let config_digest = sha256_digest(
            format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#)
                .as_bytes(),
        );

        // The first recorded blob is gone; the second is there.
        let (gone, there) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let present = vec![(there.clone(), 1234), (config_digest, 100)];
        let server = std::thread::spawn(move || serve_with(listener, present));
        let reference = Reference::from_str(&format!("127.0.0.1:{port}/app:1")).unwrap();
        let recorded = |digest: &str, repository: Option<String>| RegistryBlob {
            digest: digest.to_owned(),
            size: None,
            repository,
        };
        let options = PushOptions {
            client: ClientOptions {
                insecure: true,
                cert_dirs: vec![layout.join("none")],
                retries: 0,
                ..ClientOptions::default()
            },
            registry_blobs: BTreeMap::from([(
                diff_id.clone(),
                vec![
                    recorded(&gone, Some(format!("127.0.0.1:{port}/base"))),
                    recorded(&there, Some("elsewhere.io/base".into())),
                ],
            )]),
            ..PushOptions::default()
        };
        let report = push_archive(layout, &reference, &options).unwrap();
        let (seen, put) = server.join().unwrap();

        // The gone one was tried in the registry and mounted from its
        // repository (the session the registry opened instead is cancelled).
        assert!(
            seen.contains(&format!("HEAD /v2/app/blobs/{gone}")),
            "{seen:#?}"
        );
        assert!(
            seen.contains(&format!(
                "POST /v2/app/blobs/uploads/?mount={gone}&from=base"
            )),
            "{seen:#?}"
        );
        assert!(seen.iter().any(|r| r.starts_with("DELETE ")), "{seen:#?}");
        assert!(
            !seen
                .iter()
                .any(|r| r.contains("PATCH") || r.contains("?digest=")),
            "nothing uploaded: {seen:#?}"
        );
        let put: serde_json::Value = serde_json::from_slice(&put).unwrap();
        assert_eq!(put["layers"][0]["digest"], there.as_str());
        assert_eq!(put["layers"][0]["size"], 1234);
        assert_eq!(
            put["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(report.blobs[1].digest, there);
        assert_eq!(report.blobs[1].outcome, BlobOutcome::Existing);
        assert_eq!(report.uploaded_bytes, 0);
        assert_ne!(report.manifest_digest, sha256_digest(manifest.as_bytes()));
    }

    #[test]
    fn a_recorded_repository_counts_on_its_registry_only() {
        assert_eq!(
            same_registry("reg.io:5000/team/base", "reg.io:5000"),
            Some("team/base")
        );
        assert_eq!(same_registry("reg.io:5000/team/base", "reg.io"), None);
        assert_eq!(same_registry("reg.io/Bad", "reg.io"), None);
        assert_eq!(
            same_registry("docker.io/library/x", "docker.io"),
            Some("library/x")
        );
    }
}
