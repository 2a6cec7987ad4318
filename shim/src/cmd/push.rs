//! `freezeframe push ARCHIVE REF`: pushes an OCI archive to a registry and
//! prints the pushed manifest's digest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use freezeframe::api::{PushCredentials, PushRequest};
use freezeframe_snapshot::registry::{
    self, BlobOutcome, Credentials, PushOptions, PushReport, Reference,
};

#[derive(ClapArgs)]
pub struct Args {
    /// The OCI image layout archive (or layout directory) to push.
    archive: PathBuf,
    /// Where to: HOST[:PORT]/REPO[:TAG] (the tag defaults to latest).
    reference: String,
    /// The image in the archive, when it holds several (its ref name).
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Print the push report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// How to reach a registry: shared by `push` and `commit --push`.
#[derive(ClapArgs)]
pub struct RegistryArgs {
    /// A repository of the same registry to mount blobs from instead of
    /// uploading them (default: the base image's repository, when the image's
    /// org.opencontainers.image.base.name names one of this registry).
    #[arg(long, value_name = "REPO")]
    from: Option<String>,
    /// Speak plain HTTP to the registry.
    #[arg(long)]
    insecure: bool,
    /// USER:PASSWORD for the registry (default: $REGISTRY_AUTH_FILE, then
    /// Docker's config.json; with --via-daemon, the service's).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "FREEZEFRAME_REGISTRY_CREDS",
        hide_env_values = true
    )]
    creds: Option<String>,
    /// A directory laid out as /etc/docker/certs.d (HOST:PORT/*.crt CAs), in
    /// place of /etc/docker/certs.d and /etc/containers/certs.d; repeatable.
    #[arg(long, value_name = "DIR")]
    cert_dir: Vec<PathBuf>,
    /// Blobs up to this many bytes go in one request, larger ones in chunks of it.
    #[arg(long, value_name = "BYTES", default_value_t = registry::upload::DEFAULT_CHUNK_SIZE)]
    chunk_size: u64,
    /// Times a request is repeated after a broken connection or a 502/503/504;
    /// an upload resumes where the registry got to.
    #[arg(long, value_name = "N", default_value_t = registry::client::DEFAULT_RETRIES)]
    retries: u32,
    /// The first wait before a repeat, doubled each time (at most 30s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    retry_delay: Duration,
}

impl RegistryArgs {
    /// The push options these flags give, for the image named `image`.
    pub fn options(&self, image: Option<String>) -> Result<PushOptions> {
        let credentials = match self.creds.as_deref() {
            Some(text) => Some(
                Credentials::parse(text)
                    .context("--creds must be USER:PASSWORD with a user name")?,
            ),
            None => None,
        };
        Ok(PushOptions {
            client: registry::ClientOptions {
                insecure: self.insecure,
                cert_dirs: self.cert_dir.clone(),
                credentials,
                auth_files: Vec::new(),
                retries: self.retries,
                retry_delay: self.retry_delay,
            },
            from: self.from.clone(),
            image,
            chunk_size: self.chunk_size,
            ..PushOptions::default()
        })
    }
}

impl RegistryArgs {
    /// The `push` of a service request to `reference`: the mount source,
    /// plain HTTP and credentials travel; the CAs, chunk size and retries are
    /// the service's own (`registry.cert_dirs`), so setting them is refused.
    pub fn service_request(&self, reference: String) -> Result<PushRequest> {
        if !self.cert_dir.is_empty() {
            bail!(
                "--cert-dir does not apply with --via-daemon: the service reads registry.cert_dirs"
            );
        }
        if self.chunk_size != registry::upload::DEFAULT_CHUNK_SIZE
            || self.retries != registry::client::DEFAULT_RETRIES
            || self.retry_delay != Duration::from_secs(1)
        {
            bail!("--chunk-size, --retries and --retry-delay do not apply with --via-daemon");
        }
        let credentials = match self.creds.as_deref() {
            Some(text) => {
                let c = Credentials::parse(text)
                    .context("--creds must be USER:PASSWORD with a user name")?;
                Some(PushCredentials {
                    username: c.username,
                    password: c.password,
                })
            }
            None => None,
        };
        Ok(PushRequest {
            reference,
            from: self.from.clone(),
            insecure: self.insecure,
            credentials,
        })
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let reference: Reference = a.reference.parse()?;
    let options = a.registry.options(a.image)?;
    let report = registry::push_archive(&a.archive, &reference, &options)
        .with_context(|| format!("pushing {} to {reference}", a.archive.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        summary(&report);
        println!("{}", report.manifest_digest);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line on stderr: what travelled and what did not.
pub fn summary(report: &PushReport) {
    let count = |o: BlobOutcome| report.blobs.iter().filter(|b| b.outcome == o).count();
    let mounted = match &report.mount_source {
        Some(from) => format!(" from {from}"),
        None => String::new(),
    };
    eprintln!(
        "pushed {}: {} blobs uploaded ({} bytes), {} mounted{mounted}, {} already there",
        report.reference,
        count(BlobOutcome::Uploaded),
        report.uploaded_bytes,
        count(BlobOutcome::Mounted),
        count(BlobOutcome::Existing),
    );
}
