//! runc's `--log`: the file containerd's shim reads a runtime's errors back
//! from, in its text or JSON line format, and the tracing layer that writes
//! every event there.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Where runc's `--log` goes: a file of JSON lines (`{"level","msg","time"}`,
/// which containerd's shim reads back on failure) or of text lines.
pub struct LogFile {
    file: std::sync::Mutex<std::fs::File>,
    json: bool,
}

impl LogFile {
    pub fn open(path: &Path, json: bool) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("--log {}", path.display()))?;
        Ok(Self {
            file: std::sync::Mutex::new(file),
            json,
        })
    }

    pub fn write(&self, level: &str, msg: &str) {
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now());
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": time.to_string() }).to_string()
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}")
        };
        if let Ok(mut f) = self.file.lock() {
            // One write per line, so concurrent writers do not interleave.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Sends tracing events (libcontainer's among them) to the `--log` file.
pub struct LogLayer(pub std::sync::Arc<LogFile>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                if field.name() == "message" {
                    let _ = write!(self.0, "{value:?}");
                } else {
                    let _ = write!(self.0, " {}={value:?}", field.name());
                }
            }
        }
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        self.0.write(level, msg.0.trim_start());
    }
}
