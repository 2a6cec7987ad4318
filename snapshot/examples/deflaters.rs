//! The two deflate engines freezeframe has used, on the same input, in one
//! process, on one core: zlib-rs (through flate2) and libdeflate, each
//! compressing 1 MiB pieces into gzip members at levels 4 to 6. Prints the
//! seconds and bytes of each, and libdeflate's time as a fraction of zlib-rs's.
//!
//!   cargo run --release -p freezeframe-snapshot --example deflaters -- FILE

use std::io::Write;
use std::time::Instant;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: deflaters FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    let piece = 1 << 20;
    println!("{path}: {} MiB, 1 MiB pieces", data.len() >> 20);
    println!("level  zlib-rs_s  zlib-rs_MiB  libdeflate_s  libdeflate_MiB  time_ratio");
    for level in [4u32, 5, 6] {
        let t = Instant::now();
        let mut zlib = 0;
        for c in data.chunks(piece) {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(c).expect("in memory");
            zlib += e.finish().expect("in memory").len();
        }
        let zlib_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let lvl = libdeflater::CompressionLvl::new(level as i32).expect("level in range");
        let mut c = libdeflater::Compressor::new(lvl);
        let mut out = vec![0u8; c.gzip_compress_bound(piece)];
        let mut libdeflate = 0;
        for p in data.chunks(piece) {
            libdeflate += c.gzip_compress(p, &mut out).expect("bound is enough");
        }
        let libdeflate_s = t.elapsed().as_secs_f64();
        println!(
            "{level:>5}  {zlib_s:>9.2}  {:>11.1}  {libdeflate_s:>12.2}  {:>14.1}  {:>10.2}",
            zlib as f64 / 1048576.0,
            libdeflate as f64 / 1048576.0,
            libdeflate_s / zlib_s
        );
    }
}
