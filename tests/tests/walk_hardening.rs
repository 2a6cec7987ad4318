//! Hardening of the walk, as root: what a hostile session's tree does to a
//! commit, as it was found to work, and the safe outcome or clear error it
//! now gets.
//!
//! | finding | test |
//! |---|---|
//! | a file swapped with a char device (`RENAME_EXCHANGE`) between the walk's `fstatat` and its open made commits open `1:3` devices | [`the_walk_never_opens_a_device_swapped_in_for_a_file`] |

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freezeframe_tests::*;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use rustix::fs::inotify;

// ---------------------------------------------------------------------------
// Finding 7: device nodes opened under a rename race

/// Opens of the watched inodes so far, read from an inotify fd.
fn opens_seen(ino: &impl AsFd) -> u64 {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = inotify::Reader::new(ino, &mut buf);
    let mut n = 0;
    loop {
        match reader.next() {
            Ok(e) => {
                if e.events().contains(inotify::ReadFlags::OPEN) {
                    n += 1;
                }
            }
            Err(rustix::io::Errno::AGAIN) => return n,
            Err(e) => panic!("reading inotify events: {e}"),
        }
    }
}

/// The upper dir holds pairs of a regular file and a char device `1:3`, and
/// a thread keeps exchanging each pair's names with `RENAME_EXCHANGE` while
/// commits run one after another. Before, the walk opened a name after its
/// `fstatat` and checked what it got only after the open: commits opened
/// the devices thousands of times. Now a name is opened `O_PATH` (which
/// opens nothing), checked, and only the checked inode is opened for
/// reading: inotify, watching the device inodes themselves, sees no open.
#[test]
fn the_walk_never_opens_a_device_swapped_in_for_a_file() {
    if !root_or_skip("the_walk_never_opens_a_device_swapped_in_for_a_file") {
        return;
    }
    const PAIRS: usize = 64;
    let dir = tempdir("wh-swap");
    let d = dir.path();
    let upper = d.join("upper");
    mkdirs(&upper);
    let ino = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
        .expect("inotify_init");
    for i in 0..PAIRS {
        write(&upper.join(format!("f{i}")), "file content");
        let dev = upper.join(format!("d{i}"));
        mknod(
            &dev,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .expect("mknod");
        // A watch is on the inode: it follows the device whatever its name.
        inotify::add_watch(&ino, &dev, inotify::WatchFlags::OPEN).expect("inotify_add_watch");
    }
    // The watch itself works: an ordinary open of a device is seen.
    drop(std::fs::File::open(upper.join("d0")).expect("open d0"));
    assert_eq!(opens_seen(&ino), 1, "inotify does not report device opens");

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, upper) = (stop.clone(), swaps.clone(), upper.clone());
        std::thread::spawn(move || {
            let dirfd = rustix::fs::open(
                &upper,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .expect("open upper");
            while !stop.load(Ordering::Relaxed) {
                for i in 0..PAIRS {
                    rustix::fs::renameat_with(
                        &dirfd,
                        format!("f{i}"),
                        &dirfd,
                        format!("d{i}"),
                        rustix::fs::RenameFlags::EXCHANGE,
                    )
                    .expect("renameat2");
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let start = Instant::now();
    let (mut commits, mut devices_written) = (0, 0);
    let out = d.join("out.tar");
    while start.elapsed() < Duration::from_secs(8) {
        let o = OfflineCommit::new(&upper)
            .compression("none")
            .output(&out)
            .force()
            .json()
            .run();
        assert!(o.success(), "{o}");
        devices_written += o.json()["walk"]["devices"].as_u64().unwrap_or(0);
        commits += 1;
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    let opened = opens_seen(&ino);
    eprintln!(
        "{commits} commits, {} swaps, {devices_written} devices written, {opened} device opens",
        swaps.load(Ordering::Relaxed)
    );
    assert!(commits >= 5, "only {commits} commits ran");
    assert!(
        swaps.load(Ordering::Relaxed) > 1000,
        "the swapper hardly ran"
    );
    assert_eq!(opened, 0, "commits opened a device node {opened} times");
}
