//! `parti worker --subscribe` / `--record`: the message handler of a worker that consumes its
//! partitions' subjects, and the record file it appends one line to per handled message.
//!
//! A record line is space-separated:
//!
//! ```text
//! <unix µs> w<worker id> handled <partition> <payload>
//! <unix µs> w<worker id> ack-failed <partition>
//! ```
//!
//! `handled` is written by the handler, before it returns (so before a JetStream message is
//! acknowledged); `ack-failed` when the worker reports that acknowledging a message of the
//! partition failed (the message will be redelivered). The worker ID is `w?` until the worker
//! has claimed one. The payload is written as lossy UTF-8 with `\`, newlines and spaces
//! escaped (`\\`, `\n`, `\s`). Every line is one `write` to a file opened for appending, so a
//! process killed with SIGKILL loses no line it wrote.

use crate::{CliError, CliResult};
use parti::{MessageHandler, PartitionId, WorkerId};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The record file (or none) and the worker's ID, shared by the handler and the event loop.
#[derive(Clone, Default)]
pub struct Recorder {
    file: Option<Arc<Mutex<File>>>,
    /// The claimed worker ID + 1; 0 while unknown.
    worker: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder appending to `path` (created if missing), or one that records nothing.
    pub fn open(path: Option<&Path>) -> CliResult<Self> {
        let file = match path {
            Some(path) => Some(Arc::new(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        CliError::usage(format!("cannot open --record {}: {e}", path.display()))
                    })?,
            ))),
            None => None,
        };
        Ok(Recorder {
            file,
            worker: Arc::default(),
        })
    }

    /// Sets the worker ID written on every later line.
    pub fn set_worker(&self, id: WorkerId) {
        self.worker.store(u64::from(id.0) + 1, Ordering::Relaxed);
    }

    /// The handler: records every message (when recording) and returns at once.
    pub fn handler(&self) -> MessageHandler {
        let recorder = self.clone();
        MessageHandler::new(move |partition, message| {
            let recorder = recorder.clone();
            async move {
                let payload = escape(&String::from_utf8_lossy(&message.payload));
                recorder.line(format_args!("handled {partition} {payload}"));
            }
        })
    }

    /// Records that acknowledging a message of `partition` failed.
    pub fn ack_failed(&self, partition: &PartitionId) {
        self.line(format_args!("ack-failed {partition}"));
    }

    /// Appends `<unix µs> w<id> <what>` as one write. A failed write is reported on stderr
    /// once per failure; the worker keeps running.
    fn line(&self, what: std::fmt::Arguments<'_>) {
        let Some(file) = &self.file else {
            return;
        };
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let worker = match self.worker.load(Ordering::Relaxed) {
            0 => "w?".to_string(),
            n => format!("w{}", n - 1),
        };
        let line = format!("{micros} {worker} {what}\n");
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("error: cannot append to the --record file: {e}");
        }
    }
}

/// The payload on one line, one token: `\` → `\\`, newline → `\n`, space → `\s`; empty →
/// `\0`.
fn escape(payload: &str) -> String {
    if payload.is_empty() {
        return "\\0".into();
    }
    let mut out = String::with_capacity(payload.len());
    for c in payload.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' ' | '\t' => out.push_str("\\s"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn payloads_become_one_token() {
        assert_eq!(escape("42"), "42");
        assert_eq!(escape(""), "\\0");
        assert_eq!(escape("a b\nc\\"), "a\\sb\\nc\\\\");
    }
}
