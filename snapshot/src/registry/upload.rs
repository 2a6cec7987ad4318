//! One blob to a registry, streamed: a monolithic `PUT` up to the chunk size,
//! else `PATCH`es of the chunk size each and a closing `PUT`.
//!
//! The bytes go through a [`VerifyingReader`], which hashes them on the way and
//! fails the request's last read if they are not the blob the descriptor names:
//! a corrupt archive never leaves a blob under a wrong digest, even with a
//! registry that would not check.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use oci_spec::image::Digest;

use super::client::Client;
use super::Error;
use crate::source::oci::DigestHasher;

/// Default largest blob sent in one `PUT`, and size of each `PATCH`.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;

/// Reads exactly `expected` bytes from `inner`, hashing them; the read that
/// delivers the last byte fails instead when the digest does not match.
pub struct VerifyingReader<R> {
    inner: R,
    digest: Digest,
    expected: u64,
    read: u64,
    hasher: Option<DigestHasher>,
    matched: bool,
    progress: Option<Arc<AtomicU64>>,
    cancel: Option<Arc<AtomicBool>>,
}

impl<R: Read> VerifyingReader<R> {
    /// `None` when the digest's algorithm is not one we can compute.
    pub fn new(inner: R, digest: &Digest, expected: u64) -> Option<Self> {
        Some(VerifyingReader {
            inner,
            digest: digest.clone(),
            expected,
            read: 0,
            hasher: Some(DigestHasher::new(digest.algorithm())?),
            matched: false,
            progress: None,
            cancel: None,
        })
    }

    /// Adds each byte read to `counter`.
    pub fn with_progress(mut self, counter: Option<Arc<AtomicU64>>) -> Self {
        self.progress = counter;
        self
    }

    /// Fails the next read once `flag` is set.
    pub fn with_cancel(mut self, flag: Option<Arc<AtomicBool>>) -> Self {
        self.cancel = flag;
        self
    }

    /// Reads (and hashes) up to byte `offset`, discarding the bytes: where a
    /// resumed upload goes on from.
    pub fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        let skip = offset.saturating_sub(self.read);
        // The registry has these bytes: they are not sent again.
        let progress = self.progress.take();
        let copied = io::copy(&mut (&mut *self).take(skip), &mut io::sink());
        self.progress = progress;
        if copied? != skip {
            return Err(self.invalid(format!("the archive ends before byte {offset}")));
        }
        Ok(())
    }

    /// Whether every byte was read and matched the digest.
    pub fn verified(&self) -> bool {
        self.matched
    }

    fn invalid(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("blob {}: {what}", self.digest),
        )
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(io::Error::other("push cancelled"));
        }
        let want = (self.expected - self.read).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(self.invalid(format!(
                "the archive holds {} bytes, its descriptor says {}",
                self.read, self.expected
            )));
        }
        self.read += n as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        if self.read == self.expected {
            let actual = self.hasher.take().map(DigestHasher::finish);
            if actual.as_deref() != Some(self.digest.digest()) {
                return Err(self.invalid(format!(
                    "corrupt in the archive: its content hashes to {}:{}",
                    self.digest.algorithm(),
                    actual.unwrap_or_default()
                )));
            }
            self.matched = true;
        }
        if let Some(progress) = &self.progress {
            progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Sends a blob of `size` bytes to the upload session at `location`.
///
/// `open(offset)` gives a fresh reader of the blob, read (and hashed) up to
/// `offset` ([`VerifyingReader::skip_to`]). After a broken connection, or a
/// 401 (a bearer token that expired), the client waits, asks the registry how
/// much it holds (answering any new challenge), and resumes from there with
/// chunks, or starts a new session when the registry lost this one: at most
/// the client's retries times. On failure the session
/// is cancelled.
pub fn upload_blob<R: Read>(
    client: &mut Client,
    repository: &str,
    location: String,
    digest: &Digest,
    size: u64,
    open: &mut dyn FnMut(u64) -> Result<VerifyingReader<R>, Error>,
    chunk_size: u64,
) -> Result<(), Error> {
    let chunk_size = chunk_size.max(1);
    let mut location = location;
    let mut offset = 0;
    let mut attempt = 0;
    loop {
        let sent = open(offset).and_then(|mut reader| {
            send(
                client,
                &mut location,
                digest,
                size,
                &mut reader,
                offset,
                chunk_size,
            )
        });
        let error = match sent {
            Ok(()) => return Ok(()),
            // A 401 mid-upload is a token that expired: asking for the
            // upload's status answers the challenge anew.
            Err(e)
                if (e.is_transient() || e.status() == Some(401)) && attempt < client.retries() =>
            {
                e
            }
            Err(e) => {
                client.cancel_upload(&location);
                return Err(e);
            }
        };
        attempt += 1;
        tracing::warn!(%digest, error = %error, "blob upload broken; resuming");
        client.backoff(attempt, &|| format!("uploading blob {digest}"));
        match client.upload_status(&location, digest)? {
            Some((next, received)) if received <= size => {
                location = next;
                offset = received;
            }
            _ => {
                location = client.start_upload(repository, digest)?;
                offset = 0;
            }
        }
    }
}

/// Sends the blob from byte `offset` on (the reader is there): one `PUT` when
/// it is all of a small blob, else `PATCH`es and a closing `PUT`. `location`
/// follows the registry's answers, so that after a failure it is the one to ask
/// for the upload's status.
fn send<R: Read>(
    client: &mut Client,
    location: &mut String,
    digest: &Digest,
    size: u64,
    reader: &mut VerifyingReader<R>,
    offset: u64,
    chunk_size: u64,
) -> Result<(), Error> {
    if offset == 0 && size <= chunk_size {
        return client.put_blob(location, digest, reader, size);
    }
    let mut start = offset;
    while start < size {
        let len = chunk_size.min(size - start);
        let mut chunk = (&mut *reader).take(len);
        *location = client.patch_blob(location, digest, start, &mut chunk, len)?;
        start += len;
    }
    if !reader.verified() {
        return Err(Error::Protocol {
            what: format!("uploading blob {digest}"),
            url: location.clone(),
            reason: "the blob was not read to its end".into(),
        });
    }
    client.finish_upload(location, digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;
    use std::str::FromStr;

    fn digest_of(data: &[u8]) -> Digest {
        Digest::from_str(&sha256_digest(data)).unwrap()
    }

    #[test]
    fn passes_the_right_bytes() {
        let data = vec![7u8; 100_000];
        let digest = digest_of(&data);
        let mut r = VerifyingReader::new(&data[..], &digest, data.len() as u64).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(r.verified());
    }

    #[test]
    fn fails_the_last_read_on_a_wrong_digest() {
        let data = vec![7u8; 1000];
        let digest = digest_of(b"other");
        let mut r = VerifyingReader::new(&data[..], &digest, data.len() as u64).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(!r.verified());
    }

    #[test]
    fn fails_a_short_blob() {
        let data = vec![7u8; 10];
        let digest = digest_of(&data);
        let mut r = VerifyingReader::new(&data[..], &digest, 11).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("holds 10 bytes"), "{err}");
    }

    #[test]
    fn stops_at_the_expected_size_and_when_cancelled() {
        let data = [7u8; 20];
        let digest = digest_of(&data[..10]);
        let mut r = VerifyingReader::new(&data[..], &digest, 10).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 10);

        let cancel = Arc::new(AtomicBool::new(true));
        let mut r = VerifyingReader::new(&data[..], &digest, 10)
            .unwrap()
            .with_cancel(Some(cancel));
        assert!(r.read(&mut [0; 4]).is_err());
    }
}
