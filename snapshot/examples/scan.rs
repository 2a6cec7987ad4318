//! Times the passes of a live commit over a tree, without a container:
//! `cargo run --release -p freezeframe-snapshot --example scan -- DIR`.
//! Prints the first (recording) pass and the second (delta) pass over an
//! unchanged tree, which is what a live commit of an idle session freezes for.

use std::io::sink;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use freezeframe_snapshot::delta::Baseline;
use freezeframe_snapshot::layer::TarVisitor;
use freezeframe_snapshot::walk::{walk_pass, Pass, Progress, TreeSpec};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: scan DIR"));
    let spec = TreeSpec {
        upper: Some(dir.clone()),
        ..TreeSpec::default()
    };
    let cancel = AtomicBool::new(false);
    let mut baseline = Baseline::new();
    let t = Instant::now();
    let mut v = TarVisitor::new(sink(), &dir);
    walk_pass(
        &spec,
        &mut v,
        &Progress::default(),
        &cancel,
        Pass::Record(&mut baseline),
    )
    .unwrap();
    println!(
        "record pass: {} entries in {:?}",
        baseline.len(),
        t.elapsed()
    );
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for _ in 0..rounds {
        let t = Instant::now();
        let mut v = TarVisitor::new(sink(), &dir);
        walk_pass(
            &spec,
            &mut v,
            &Progress::default(),
            &cancel,
            Pass::Delta(&baseline),
        )
        .unwrap();
        println!(
            "delta pass: {} entries written in {:?}",
            v.entries(),
            t.elapsed()
        );
    }
}
