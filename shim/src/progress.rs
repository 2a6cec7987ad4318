//! A progress bar on a terminal, fed from the walk's live counters.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use freezeframe_snapshot::walk::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Shows `progress` on stderr until dropped; does nothing when stderr is not a
/// terminal or `quiet` is set.
pub struct Bar {
    bar: Option<ProgressBar>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    pub fn start(progress: Arc<Progress>, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Bar {
                bar: None,
                stop: None,
                thread: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("static template"),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let b = bar.clone();
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            loop {
                let read = progress.bytes_read.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                b.set_message(format!(
                    "{} entries, {} read ({}/s), {} written",
                    progress.entries.load(Ordering::Relaxed),
                    HumanBytes(read),
                    HumanBytes((read as f64 / secs) as u64),
                    HumanBytes(progress.bytes_written.load(Ordering::Relaxed)),
                ));
                b.tick();
                if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                    break;
                }
            }
        });
        Bar {
            bar: Some(bar),
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
