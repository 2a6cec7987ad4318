//! A live commit whose change journal overflows: the kernel's inotify queue
//! limit (`fs.inotify.max_queued_events`) is lowered while the committer
//! creates its journal, and writers in the session change files in hundreds of
//! directories throughout the commit, so events are dropped. The frozen pass
//! must then read everything, say so in the report, and the image must still be
//! exactly the session as it was while frozen.
//!
//! The limit is global and taken when an inotify instance is created: it is
//! lowered just before the commit starts and put back as soon as the session is
//! seen frozen (every journal the frozen pass reads was created before that),
//! or when the commit ends, panicking or not. This file is a test binary of its
//! own with one test, so no other test of this project runs while the limit is
//! low.

use std::fs;
use std::path::PathBuf;

use freezeframe_tests::containers::*;
use freezeframe_tests::live::*;
use freezeframe_tests::*;

const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";

/// The queue limit while the committer starts its journal.
const SMALL_QUEUE: u64 = 16;

/// Directories the churn writers change (`spread` every 10 ms, under `churn`
/// in the rootfs and in the home): hundreds of events in a burst, far more
/// than the lowered queue holds.
const CHURN_DIRS: u32 = 200;

/// The kernel's queue limit, lowered until [`QueueLimit::restore`] or drop.
struct QueueLimit {
    old: String,
}

impl QueueLimit {
    fn lower(to: u64) -> QueueLimit {
        let old = fs::read_to_string(MAX_QUEUED)
            .unwrap_or_else(|e| panic!("read {MAX_QUEUED}: {e}"))
            .trim()
            .to_string();
        fs::write(MAX_QUEUED, to.to_string())
            .unwrap_or_else(|e| panic!("write {to} to {MAX_QUEUED}: {e}"));
        QueueLimit { old }
    }

    fn restore(&self) {
        if let Err(e) = fs::write(MAX_QUEUED, &self.old) {
            eprintln!("cannot restore {MAX_QUEUED} to {}: {e}", self.old);
        }
    }
}

impl Drop for QueueLimit {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Files under `churn` in a tree (both trees' churn writers).
fn churn_files(tree: &TreeSnapshot) -> usize {
    tree.nodes
        .keys()
        .filter(|p| p.windows(7).any(|w| w == b"/churn/"))
        .count()
}

#[test]
fn a_journal_that_overflowed_makes_the_frozen_pass_read_everything() {
    if !root_or_skip("a_journal_that_overflowed_makes_the_frozen_pass_read_everything") {
        return;
    }
    let s = RuncSession::start("journal-overflow", |_| {}, RuncOptions::default());
    add_ballast(&s, 4 << 20, 2000);
    let log = s.scratch("writers").join("writers.log");
    let mut script = writers_script(Writers {
        checked: true,
        big_every_us: None,
    });
    // Before the final `wait`: the churn writers, in the rootfs and the home.
    let wait = script.rfind("wait\n").expect("the script ends with wait");
    script.insert_str(
        wait,
        &format!(
            "mkdir -p {ROOT_DIR}/churn {HOME_DIR}/churn\n\
             spread {ROOT_DIR}/churn {CHURN_DIRS} 10000 &\n\
             spread {HOME_DIR}/churn {CHURN_DIRS} 10000 &\n"
        ),
    );
    exec_detached(&s, &script, &log);
    wait_for_writers(&s, SEQ_KEEP + 10, &log);
    let view = session_view(&s, &s.scratch("view"));

    // As in the frozen-moment oracle of tests/live.rs: the committer is stopped
    // while the session is frozen and the session recorded; a commit whose
    // frozen pass ended before the stop took effect caught nothing, and
    // another one is made.
    const ATTEMPTS: usize = 3;
    let mut caught = None;
    for attempt in 1..=ATTEMPTS {
        let archive: PathBuf = s.out.join(format!("overflow-{attempt}.tar"));
        let before = progress(&s);
        let limit = QueueLimit::lower(SMALL_QUEUE);
        let run = commit_stopped_while_frozen(
            target_and(&s, &[&"--pause", &"auto", &"--tag", &"t", &"-o", &archive]),
            &s.cgroups,
            || {
                limit.restore();
                (expected_image(&s), check_image(&view))
            },
        );
        drop(limit);
        let report = run.outcome.ok().json();
        s.assert_running_and_thawed(&format!("after commit {attempt}"));
        let after = progress(&s);
        assert!(
            after.seq[0] > before.seq[0],
            "the writers are stuck at {before:?}"
        );
        eprintln!(
            "commit {attempt}: caught frozen: {}, committer held {:?}; frozen = {}",
            run.during.is_some(),
            run.held,
            report["frozen"]
        );
        if let Some(d) = run.during {
            caught = Some((archive, report, d));
            break;
        }
    }
    let Some((archive, report, (expected, truth))) = caught else {
        panic!("the session was never caught frozen in {ATTEMPTS} live commits");
    };
    let truth = truth.unwrap_or_else(|e| {
        panic!("the writers' properties fail on the frozen session itself (a test bug):\n{e}")
    });

    let f = &report["frozen"];
    let read = f["frozen_read"].as_str().unwrap_or_default();
    assert!(
        read.starts_with("all: ") && read.contains("overflow"),
        "the journal overflowed, but the report says the frozen pass read {read:?}: {f}"
    );
    let path = f["path"].as_str().unwrap_or_default();
    assert!(
        path.starts_with("auto") && !path.contains("fallback"),
        "not a live commit with a frozen delta pass: path {path:?}"
    );
    assert!(
        churn_files(&expected) > 2 * CHURN_DIRS as usize,
        "the churn writers had written only {} files by the freeze",
        churn_files(&expected)
    );

    let rootfs = unpack_archive(&archive, "t", &s.scratch("unpacked"));
    assert_same_unpacked_tree(
        expected,
        &TreeSnapshot::capture(&rootfs),
        "the image vs the session while frozen",
    );
    let seen = check_image(&rootfs).unwrap_or_else(|e| panic!("the image is not one moment:\n{e}"));
    assert_eq!(
        (seen.seq, seen.mutator),
        (truth.seq, truth.mutator),
        "writers: image vs frozen session"
    );
}
