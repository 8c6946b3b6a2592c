//! The replayable trace: every fault and key protocol event, with its virtual time.

use super::faults::Fault;
use super::invariants::ViolationKind;
use super::NodeId;
use crate::{Bucket, Epoch, Generation, Instant, Operation, State, Warning, WorkerId};
use std::collections::VecDeque;
use std::fmt;

/// One line of the trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEntry {
    /// Virtual (real) time.
    pub at: Instant,
    /// The node concerned, if any.
    pub node: Option<NodeId>,
    /// What happened.
    pub what: TraceKind,
}

/// What a trace line records.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceKind {
    /// A fault was applied.
    Fault(Fault),
    /// A new worker process started.
    Started {
        /// Its incarnation number on the node.
        incarnation: u32,
        /// Its instance token.
        token: u64,
        /// The ID it prefers (the node's previous ID).
        preferred: Option<WorkerId>,
    },
    /// The process crashed: its holdings vanished.
    Crashed,
    /// The worker finished a graceful stop and its process exited.
    Exited,
    /// The worker's state changed.
    State {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
    /// The worker claimed an ID.
    IdClaimed(WorkerId),
    /// Leadership gained or lost.
    Leadership {
        /// Whether the worker now leads.
        is_leader: bool,
        /// The epoch.
        epoch: Epoch,
    },
    /// The worker applied a generation.
    Assignment {
        /// The generation.
        generation: Generation,
        /// Partitions gained.
        added: usize,
        /// Partitions lost.
        removed: usize,
        /// Partitions now assigned.
        assigned: usize,
    },
    /// The worker said its share is empty after a drain.
    Drained,
    /// The leader committed a balancing round.
    Rebalanced {
        /// The round's generation.
        generation: Generation,
        /// Partitions it says it moved.
        moved: u32,
    },
    /// The worker reported a warning.
    Warning(Warning),
    /// A generation was committed in the KV (`gen` written).
    Commit {
        /// The generation.
        generation: Generation,
        /// The committing leader's epoch.
        epoch: Epoch,
        /// The KV revision of the commit.
        revision: u64,
        /// Number of members.
        members: usize,
    },
    /// A KV change (only with [`crate::sim::SimConfig::trace_kv`]); the entry's node is the writer.
    Kv {
        /// Bucket.
        bucket: Bucket,
        /// Key.
        key: String,
        /// Revision.
        revision: u64,
        /// Put, Delete or Purge.
        operation: Operation,
    },
    /// The worker refused an input with an error.
    InputRefused(String),
    /// An invariant was violated (details in the violation list).
    Violation(ViolationKind),
    /// A free-form note from the harness.
    Note(String),
}

/// A bounded log of [`TraceEntry`]s (the oldest are dropped past the limit).
#[derive(Clone, Debug)]
pub struct Trace {
    entries: VecDeque<TraceEntry>,
    limit: usize,
    dropped: u64,
    /// Running FNV-1a hash of every entry pushed (and every byte absorbed), when enabled.
    fingerprint: Option<u64>,
}

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Folds `bytes` into an FNV-1a hash (stable across Rust versions, unlike `DefaultHasher`).
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Feeds formatted text into an FNV-1a hash.
struct FnvWriter(u64);

impl fmt::Write for FnvWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = fnv(self.0, s.as_bytes());
        Ok(())
    }
}

impl Trace {
    /// An empty trace keeping at most `limit` entries.
    pub fn new(limit: usize) -> Self {
        Trace {
            entries: VecDeque::new(),
            limit: limit.max(1),
            dropped: 0,
            fingerprint: None,
        }
    }

    /// Starts (or stops) keeping a running hash of every entry pushed from now on, whether or
    /// not the limit later drops it: see [`Trace::fingerprint`].
    pub fn set_fingerprint(&mut self, on: bool) {
        self.fingerprint = on.then_some(FNV_OFFSET);
    }

    /// The running hash of every entry pushed (its `Debug` text) and every byte passed to
    /// [`Trace::absorb`] since [`Trace::set_fingerprint`], or `None` if not enabled. Two runs
    /// with equal fingerprints traced the same things in the same order.
    pub fn fingerprint(&self) -> Option<u64> {
        self.fingerprint
    }

    /// Folds the `Debug` text of `what` into the fingerprint (no-op unless enabled): for facts
    /// that are not trace entries, such as every KV change with its value.
    pub fn absorb(&mut self, what: &dyn fmt::Debug) {
        if let Some(h) = self.fingerprint {
            use fmt::Write as _;
            let mut w = FnvWriter(h);
            let _ = writeln!(w, "{what:?}");
            self.fingerprint = Some(w.0);
        }
    }

    /// Whether a fingerprint is being kept.
    pub fn fingerprinting(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Appends an entry.
    pub fn push(&mut self, at: Instant, node: Option<NodeId>, what: TraceKind) {
        if let Some(h) = self.fingerprint {
            use fmt::Write as _;
            let mut w = FnvWriter(h);
            let _ = writeln!(w, "{at:?} {node:?} {what:?}");
            self.fingerprint = Some(w.0);
        }
        if self.entries.len() == self.limit {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(TraceEntry { at, node, what });
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &TraceEntry> {
        self.entries.iter()
    }

    /// Number of entries dropped because of the limit.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The last `n` entries, one per line.
    pub fn tail(&self, n: usize) -> String {
        let skip = self.entries.len().saturating_sub(n);
        let mut out = String::new();
        for e in self.entries.iter().skip(skip) {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>10.3}s ", self.at.since_origin().as_secs_f64())?;
        match self.node {
            Some(n) => write!(f, "n{:<3} ", n.0)?,
            None => write!(f, "     ")?,
        }
        match &self.what {
            TraceKind::Fault(x) => write!(f, "FAULT {x}"),
            TraceKind::Started {
                incarnation,
                token,
                preferred,
            } => {
                write!(
                    f,
                    "start #{incarnation} token={token:016x} preferred={preferred:?}"
                )
            }
            TraceKind::Crashed => write!(f, "CRASH"),
            TraceKind::Exited => write!(f, "exited"),
            TraceKind::State { from, to } => write!(f, "state {from} -> {to}"),
            TraceKind::IdClaimed(id) => write!(f, "id {id}"),
            TraceKind::Leadership { is_leader, epoch } => {
                write!(
                    f,
                    "{} {epoch}",
                    if *is_leader { "LEADS" } else { "steps down" }
                )
            }
            TraceKind::Assignment {
                generation,
                added,
                removed,
                assigned,
            } => {
                write!(f, "applies {generation}: +{added} -{removed} = {assigned}")
            }
            TraceKind::Drained => write!(f, "drained"),
            TraceKind::Rebalanced { generation, moved } => {
                write!(f, "round {generation} moved {moved} for load")
            }
            TraceKind::Warning(w) => write!(f, "warning {w:?}"),
            TraceKind::Commit {
                generation,
                epoch,
                revision,
                members,
            } => {
                write!(
                    f,
                    "commit {generation} {epoch} rev={revision} members={members}"
                )
            }
            TraceKind::Kv {
                bucket,
                key,
                revision,
                operation,
            } => {
                write!(f, "kv {bucket:?} {key} rev={revision} {operation:?}")
            }
            TraceKind::InputRefused(e) => write!(f, "input refused: {e}"),
            TraceKind::Violation(k) => write!(f, "VIOLATION {k:?}"),
            TraceKind::Note(s) => write!(f, "{s}"),
        }
    }
}
