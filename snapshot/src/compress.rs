//! Layer compression: parallel gzip, multi-threaded zstd, or none.
//!
//! The gzip stream is cut into fixed 1 MiB pieces compressed on worker threads
//! by libdeflate, each into gzip members of its own ([`ParGzip`]), so the output
//! bytes do not depend on the number of threads.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libdeflater::{CompressionLvl, Compressor};
use serde::Serialize;

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Gzip,
    Zstd,
    None,
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gzip" => Ok(Algorithm::Gzip),
            "zstd" => Ok(Algorithm::Zstd),
            "none" => Ok(Algorithm::None),
            other => Err(format!(
                "unknown compression {other:?} (expected gzip, zstd or none)"
            )),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Gzip => "gzip",
            Algorithm::Zstd => "zstd",
            Algorithm::None => "none",
        })
    }
}

impl Algorithm {
    pub fn media_type(self) -> &'static str {
        match self {
            Algorithm::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Algorithm::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Algorithm::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// Compression settings for one layer, resolved by the caller: the default
/// levels and what "0 threads" means are the configuration's to decide
/// (`freezeframe_config::Algorithm::default_level`,
/// `freezeframe_config::effective_threads`), not the engine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub algorithm: Algorithm,
    pub level: u32,
    /// Worker threads, at least 1 (0 is taken as 1). The output does not
    /// depend on it.
    pub threads: usize,
}

/// A compressing writer; [`Encoder::finish`] flushes and returns the inner writer.
pub enum Encoder<W: Write + Send + 'static> {
    Gzip(ParGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write + Send + 'static> Encoder<W> {
    pub fn new(settings: Settings, out: W) -> io::Result<Self> {
        let threads = settings.threads.max(1);
        Ok(match settings.algorithm {
            Algorithm::Gzip => Encoder::Gzip(ParGzip::new(out, settings.level, threads)),
            Algorithm::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, settings.level as i32)?;
                // Always at least one worker: zstd's output is then the same for any
                // number of workers, so the digest does not depend on the machine.
                enc.multithread(threads.max(1) as u32)?;
                // Small jobs keep the memory of the workers' queues bounded
                // (zstd's default job is several times its window).
                enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB))?;
                enc.include_checksum(false)?;
                Encoder::Zstd(enc)
            }
            Algorithm::None => Encoder::None(out),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(_) => Ok(()),
            Encoder::Zstd(z) => z.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// The gzip stream is a sequence of members of at most this much input each.
const GZ_MEMBER: usize = 1 << 20;
/// Within a member's input, runs of blocks of this size are deflated or, when
/// they look incompressible, stored.
const GZ_BLOCK: usize = 128 * 1024;
const ZSTD_JOB: u32 = 2 << 20;

struct Job {
    data: Vec<u8>,
    reply: SyncSender<io::Result<Done>>,
}

struct Done {
    /// One or more complete gzip members.
    members: Vec<u8>,
    /// The input buffer, handed back for reuse.
    data: Vec<u8>,
}

/// A gzip writer that compresses 1 MiB pieces of its input on a pool of
/// threads, each into gzip members of its own (RFC 1952 §2.2: a gzip file is
/// a series of members; every reader of layers reads them all).
///
/// Each piece is compressed by libdeflate, which is several times faster than
/// zlib at the same ratio but has no streaming interface; a piece starts
/// without the 32 KiB of history before it, which costs well under 1% of size
/// at this piece size. A piece depends on nothing but its own bytes, so the
/// output does not depend on the number of threads or on how it was written.
pub struct ParGzip<W: Write> {
    out: Option<W>,
    buf: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    pending: VecDeque<Receiver<io::Result<Done>>>,
    max_pending: usize,
    spare: Vec<Vec<u8>>,
    /// Whether a member was written: an empty stream still gets one.
    wrote: bool,
}

impl<W: Write> ParGzip<W> {
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || worker(&rx, level))
            })
            .collect();
        ParGzip {
            out: Some(out),
            buf: Vec::with_capacity(GZ_MEMBER),
            jobs: Some(tx),
            workers,
            pending: VecDeque::new(),
            max_pending: threads * 2,
            spare: Vec::new(),
            wrote: false,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZ_MEMBER));
        let data = std::mem::replace(&mut self.buf, next);
        let (reply, done) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .expect("jobs channel open until finish")
            .send(Job { data, reply })
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.pending.push_back(done);
        self.wrote = true;
        while self.pending.len() > self.max_pending {
            self.collect_one()?;
        }
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let done = rx
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))??;
        let out = self.out.as_mut().expect("writer present until finish");
        out.write_all(&done.members)?;
        let mut data = done.data;
        data.clear();
        self.spare.push(data);
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || !self.wrote {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.collect_one()?;
        }
        let out = self.out.take().expect("writer present until finish");
        self.stop_workers();
        Ok(out)
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<W: Write> Drop for ParGzip<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

impl<W: Write> Write for ParGzip<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            let room = GZ_MEMBER - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == GZ_MEMBER {
                self.submit()?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A worker's compressors: libdeflate keeps no state from one call to the
/// next, so reusing them changes no output byte.
struct Deflaters {
    deflate: Compressor,
    store: Compressor,
    /// Output buffer, reused.
    scratch: Vec<u8>,
}

fn worker(jobs: &Mutex<Receiver<Job>>, level: u32) {
    let level = CompressionLvl::new(level.min(12) as i32).unwrap_or_default();
    let mut d = Deflaters {
        deflate: Compressor::new(level),
        store: Compressor::new(CompressionLvl::new(0).unwrap_or_default()),
        scratch: Vec::new(),
    };
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let done = members(&mut d, &job.data).map(|members| Done {
            members,
            data: job.data,
        });
        let _ = job.reply.send(done);
    }
}

/// `data` as gzip members: each run of blocks that look alike (incompressible
/// or not) is one member, deflated or stored.
fn members(d: &mut Deflaters, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    let mut blocks = data.chunks(GZ_BLOCK).peekable();
    let mut start = 0;
    if data.is_empty() {
        member(&mut d.deflate, &mut d.scratch, data, &mut out)?;
        return Ok(out);
    }
    while let Some(b) = blocks.next() {
        let stored = incompressible(b);
        let mut end = start + b.len();
        while let Some(next) = blocks.peek() {
            if incompressible(next) != stored {
                break;
            }
            end += next.len();
            blocks.next();
        }
        let c = if stored { &mut d.store } else { &mut d.deflate };
        member(c, &mut d.scratch, &data[start..end], &mut out)?;
        start = end;
    }
    Ok(out)
}

fn member(
    c: &mut Compressor,
    scratch: &mut Vec<u8>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    scratch.resize(c.gzip_compress_bound(data.len()), 0);
    let n = c.gzip_compress(data, scratch).map_err(io::Error::other)?;
    out.extend_from_slice(&scratch[..n]);
    Ok(())
}

/// Whether a block looks incompressible (already compressed or random): its
/// order-0 entropy is within a few hundredths of a bit of 8 bits per byte.
/// Deflating such data costs the most CPU for no gain, so it is stored.
///
/// Four 4 KiB windows spread over the block decide first: text and most other
/// data are far below 8 bits there, and the block is not counted whole. Random
/// data measures at least 7.98 bits in 16 KiB, so only a sample above 7.9 has
/// the whole block counted.
fn incompressible(data: &[u8]) -> bool {
    const WINDOW: usize = 4096;
    if data.len() < WINDOW {
        return false;
    }
    if data.len() >= 8 * WINDOW {
        let mut counts = [0u32; 256];
        for k in 0..4 {
            let at = k * data.len() / 4;
            count(&data[at..at + WINDOW], &mut counts);
        }
        if entropy(&counts, 4 * WINDOW) < 7.9 {
            return false;
        }
    }
    let mut counts = [0u32; 256];
    count(data, &mut counts);
    entropy(&counts, data.len()) > 7.99
}

fn count(data: &[u8], counts: &mut [u32; 256]) {
    for &b in data {
        counts[b as usize] += 1;
    }
}

/// Order-0 entropy in bits per byte of `n` bytes counted in `counts`.
fn entropy(counts: &[u32; 256], n: usize) -> f64 {
    let n = n as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        let mut state = 0x1234_5678u32;
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (state >> 24) as u8
                } else {
                    b"freezeframe "[i % 12]
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut g = ParGzip::new(Vec::new(), 6, threads);
        for c in data.chunks(chunk.max(1)) {
            g.write_all(c).unwrap();
        }
        g.finish().unwrap()
    }

    #[test]
    fn gzip_round_trips_at_every_size() {
        for n in [
            0,
            1,
            1000,
            GZ_BLOCK - 1,
            GZ_BLOCK,
            GZ_BLOCK + 1,
            5 * GZ_BLOCK + 17,
            GZ_MEMBER - 1,
            GZ_MEMBER,
            GZ_MEMBER + 1,
            3 * GZ_MEMBER + 17,
        ] {
            let data = sample(n);
            let z = gzip(&data, 3, 7000);
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(z.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "size {n}");
        }
    }

    /// Source text, as a layer of a real tree mostly is: the crate's own
    /// files, each block of it different.
    fn text(n: usize) -> Vec<u8> {
        let files = [
            include_str!("compress.rs"),
            include_str!("tar.rs"),
            include_str!("layer.rs"),
            include_str!("inspect.rs"),
            include_str!("source/oci.rs"),
        ];
        let mut out = Vec::with_capacity(n + 100_000);
        for i in 0.. {
            if out.len() >= n {
                break;
            }
            out.extend_from_slice(files[i % files.len()].as_bytes());
            out.extend_from_slice(format!("// {i}\n").as_bytes());
        }
        out.truncate(n);
        out
    }

    #[test]
    fn gzip_output_of_text_does_not_depend_on_threads() {
        let data = text(16 * GZ_BLOCK + 5);
        for level in [1, 5, 9] {
            let mut g = ParGzip::new(Vec::new(), level, 1);
            g.write_all(&data).unwrap();
            let one = g.finish().unwrap();
            for threads in [2, 3, 4] {
                let mut g = ParGzip::new(Vec::new(), level, threads);
                g.write_all(&data).unwrap();
                assert!(
                    g.finish().unwrap() == one,
                    "level {level}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn gzip_output_does_not_depend_on_threads_or_write_sizes() {
        let data = sample(3 * GZ_BLOCK + 999);
        let one = gzip(&data, 1, 4096);
        assert_eq!(one, gzip(&data, 4, 100_000));
        assert_eq!(one, gzip(&data, 2, 1));
    }

    #[test]
    fn incompressible_blocks_are_stored_and_still_decode() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = vec![0u8; 3 * GZ_BLOCK + 5];
        for b in random.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        assert!(incompressible(&random[..GZ_BLOCK]));
        assert!(!incompressible(&sample(GZ_BLOCK)));
        let mut mixed = sample(GZ_BLOCK + 3);
        mixed.extend_from_slice(&random);
        mixed.extend_from_slice(&sample(1000));
        for data in [&random[..], &mixed[..], &random[..GZ_BLOCK]] {
            let z = gzip(data, 2, 9000);
            assert!(z.len() < data.len() + data.len() / 1000 + 64);
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(z.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn zstd_output_does_not_depend_on_threads() {
        let data = sample(2 << 20);
        let run = |threads| {
            let settings = Settings {
                algorithm: Algorithm::Zstd,
                level: 3,
                threads,
            };
            let mut e = Encoder::new(settings, Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let a = run(1);
        assert_eq!(a, run(3));
        assert_eq!(zstd::decode_all(a.as_slice()).unwrap(), data);
    }
}
