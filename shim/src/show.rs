//! How the binary prints what the library returns: a commit's report (as a
//! summary or as JSON) and a service task (as a few lines or as JSON).

use anyhow::Result;
use freezeframe::api::Task;
use freezeframe::plan::Committed;
use freezeframe_snapshot::registry::PushReport;
use freezeframe_snapshot::CommitReport;
use indicatif::HumanBytes;

/// A commit's report, and its push's if it was pushed: as one JSON object
/// with `json` (the push under `push`), else as a summary.
pub fn committed(done: &Committed, pushed: Option<&PushReport>, json: bool) -> Result<()> {
    if let (Some(p), false) = (pushed, json) {
        crate::cmd::push::summary(p);
        println!("pushed    {}@{}", p.reference, p.manifest_digest);
    }
    match (done, json) {
        (Committed::Offline(r), true) => {
            let mut v = json_report(r);
            if let Some(p) = pushed {
                v["push"] = serde_json::to_value(p)?;
            }
            println!("{}", serde_json::to_string_pretty(&v)?)
        }
        (Committed::Offline(r), false) => summary(r),
        (Committed::Session(r), true) => {
            let mut v = json_report(&r.commit);
            v["frozen_ms"] = r.frozen.frozen_ms.into();
            v["frozen"] = serde_json::to_value(&r.frozen)?;
            v["session"] = serde_json::to_value(&r.session)?;
            v["excluded_mounts"] = serde_json::to_value(&r.excluded_mounts)?;
            if let Some(p) = pushed {
                v["push"] = serde_json::to_value(p)?;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        (Committed::Session(r), false) => {
            summary(&r.commit);
            let f = &r.frozen;
            println!("session   {} (pid {})", r.session.id, r.session.pid);
            println!(
                "frozen    {} ms ({}): {} entries, {} captured while frozen; {} layer(s) added",
                f.frozen_ms,
                f.path,
                f.entries,
                HumanBytes(f.bytes),
                f.layers_added
            );
            println!("base from {}", r.session.base_source);
            for m in &r.excluded_mounts {
                println!(
                    "excluded  {} ({} {})",
                    m.target.display(),
                    m.fs_type,
                    m.source
                );
            }
        }
    }
    Ok(())
}

/// The `--json` object: the report's fields with the skipped entries grouped.
fn json_report(r: &CommitReport) -> serde_json::Value {
    serde_json::json!({
        "archive": r.archive,
        "size": r.size,
        "archive_sha256": r.archive_sha256,
        "manifest_digest": r.manifest_digest,
        "config_digest": r.config_digest,
        "base": r.base,
        "layers": r.layers,
        "files": r.files,
        "bytes": r.bytes,
        "skipped": {
            "counts": r.walk.skipped_counts,
            "entries": r.walk.skipped,
        },
        "changed_while_read": r.walk.changed,
        "walk": r.walk,
        "elapsed_ms": r.elapsed_ms,
    })
}

fn summary(r: &CommitReport) {
    let w = &r.walk;
    println!("archive   {} ({})", r.archive.display(), HumanBytes(r.size));
    println!(
        "sha256    {}",
        r.archive_sha256.trim_start_matches("sha256:")
    );
    println!("manifest  {}", r.manifest_digest);
    println!("config    {}", r.config_digest);
    if let Some(b) = &r.base {
        println!("base      {} ({})", b.name, b.digest);
    }
    for l in &r.layers {
        println!(
            "layer     {} {:>10} {}{}",
            l.digest,
            HumanBytes(l.size).to_string(),
            l.media_type.rsplit('.').next().unwrap_or(""),
            if l.included { "" } else { " (not included)" }
        );
    }
    println!(
        "content   {} files, {} dirs, {} symlinks, {} hardlinks, {} devices, {} fifos; {}",
        w.files,
        w.dirs,
        w.symlinks,
        w.hardlinks,
        w.devices,
        w.fifos,
        HumanBytes(w.bytes)
    );
    println!(
        "overlay   {} whiteouts, {} opaque dirs; {} paths excluded",
        w.whiteouts, w.opaque_dirs, w.excluded
    );
    if !w.secrets_excluded.is_empty() {
        // One line: the first few; --json lists them all.
        const SHOWN: usize = 10;
        let total = w.secrets_excluded.len() as u64 + w.secrets_unlisted;
        let shown = &w.secrets_excluded[..w.secrets_excluded.len().min(SHOWN)];
        let more = total - shown.len() as u64;
        println!(
            "secrets   {total} left out (--include-secret PATH keeps one): {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more (see --json)")
            } else {
                String::new()
            }
        );
    }
    for (reason, n) in &w.skipped_counts {
        println!("skipped   {n} ({reason:?})");
    }
    for s in w.skipped.iter().take(10) {
        println!("          {} ({:?})", s.path, s.reason);
    }
    if !w.changed.is_empty() {
        println!(
            "changed   {} files changed while being read",
            w.changed.len()
        );
    }
    println!("elapsed   {:.2}s", r.elapsed_ms as f64 / 1000.0);
}

/// A task: as JSON, or as a few lines for a person.
pub fn task(t: &Task, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(t)?);
        return Ok(());
    }
    println!("task      {}", t.id);
    println!("session   {}", t.session);
    println!("state     {}", t.state.as_str());
    println!("output    {}", t.output.display());
    let p = &t.progress;
    println!(
        "progress  {} entries, {} read, {} written",
        p.files,
        HumanBytes(p.bytes_read),
        HumanBytes(p.bytes_written)
    );
    if let Some(push) = &p.push {
        println!(
            "push      {} sent, {} of {} blobs",
            HumanBytes(push.bytes_sent),
            push.blobs_done,
            push.blobs_total
        );
    }
    if let Some(ms) = t.frozen_ms {
        println!("frozen    {ms} ms");
    }
    // By name, as they always were listed.
    let mut phases: Vec<(&str, u64)> = t.phases_ms.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    phases.sort();
    let list: Vec<String> = phases.iter().map(|(k, v)| format!("{k} {v} ms")).collect();
    println!("phases    {}", list.join(", "));
    if let Some(r) = &t.result {
        println!("archive   {} ({})", r.archive.display(), HumanBytes(r.size));
        println!("manifest  {}", r.manifest_digest);
        println!("config    {}", r.config_digest);
        for l in &r.layers {
            println!("layer     {} {}", l.digest, HumanBytes(l.size));
        }
        if let Some(push) = &r.push {
            println!("pushed    {}@{}", push.reference, push.manifest_digest);
        }
    }
    if let Some(e) = &t.error {
        println!("error     {}: {}", e.code, e.message);
    }
    Ok(())
}

/// The service's tasks as a table.
pub fn tasks(tasks: &[Task]) {
    println!(
        "{:<16}  {:<12}  {:<24}  {:<24}  OUTPUT",
        "ID", "STATE", "SESSION", "CREATED"
    );
    for t in tasks {
        let output = t.output.display();
        let outcome = match &t.error {
            Some(e) => format!("{output} ({})", e.message),
            None => output.to_string(),
        };
        println!(
            "{:<16}  {:<12}  {:<24}  {:<24}  {}",
            t.id,
            t.state.as_str(),
            t.session,
            t.created,
            outcome
        );
    }
}
