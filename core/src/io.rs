//! What goes into a [`crate::WorkerMachine`] and what comes out of it.

use crate::{
    Bucket, Entry, Epoch, Generation, KvOp, KvResult, Partition, PartitionId, RequestId, WatchId,
    WorkerId,
};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// An input to [`crate::WorkerMachine::handle_input`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A watch delivered an entry (in revision order per watch).
    WatchEntry {
        /// The watch that delivered it.
        watch: WatchId,
        /// The entry.
        entry: Entry,
    },
    /// The outcome of an earlier [`Action::Kv`].
    KvResult {
        /// The request it answers.
        id: RequestId,
        /// Its outcome.
        result: KvResult,
    },
    /// The outcome of an earlier [`Action::ListPartitions`]: the application's partitions, or
    /// why the source failed (the core reports it and retries).
    Partitions {
        /// The request it answers.
        id: RequestId,
        /// The partitions or the source's error.
        result: Result<Vec<Partition>, String>,
    },
    /// The driver finished unsubscribing a partition after [`Action::Unsubscribe`].
    Unsubscribed(PartitionId),
    /// The application asks the leader to re-read the partition source now.
    RefreshPartitions,
    /// The application asks to move this worker's partitions elsewhere before it stops.
    Drain,
    /// Graceful stop. `final_stop` deletes the lease (no restart expected); otherwise the lease is
    /// marked `departing` so a restarted instance resumes the same share.
    Stop {
        /// True if no restart follows.
        final_stop: bool,
    },
    /// The connection to NATS came up (`true`) or went down (`false`).
    Connection(bool),
    /// The application's measured load of partitions this worker holds (messages/s, lag, CPU:
    /// any non-negative number, one unit across the fleet). Merged into the last report per
    /// partition; it reaches KV with the next lease renewal (never a write per report), and
    /// the leader plans on it. Refused as a whole when a value is negative or not finite, or a
    /// partition is not held.
    ReportLoad(Vec<(PartitionId, f64)>),
}

/// IO the driver must perform, from [`crate::WorkerMachine::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Perform a KV operation; answer with [`Input::KvResult`] with the same `id`.
    Kv {
        /// Correlates the answer.
        id: RequestId,
        /// Which bucket.
        bucket: Bucket,
        /// What to do.
        op: KvOp,
    },
    /// Start a watch over the keys matching any of `filters`: deliver the latest entry of each
    /// matching key, then every change, as [`Input::WatchEntry`]. If the watch breaks, rebuild it
    /// and resume after the last delivered revision.
    Watch {
        /// Names the watch in later inputs and in [`Action::Unwatch`].
        id: WatchId,
        /// Which bucket.
        bucket: Bucket,
        /// NATS subject filters over keys (`worker.*`, `gen`, ...).
        filters: Vec<String>,
    },
    /// Stop a watch.
    Unwatch(WatchId),
    /// Ask the application's partition source; answer with [`Input::Partitions`].
    ListPartitions(RequestId),
    /// Start consuming a partition.
    Subscribe(PartitionId),
    /// Stop consuming a partition that is being handed off (revoked); confirm with
    /// [`Input::Unsubscribed`] once in-flight work is done. In Strict mode nobody else gets it
    /// before the confirmation (or `revoke_timeout`).
    Unsubscribe(PartitionId),
    /// Stop consuming a partition at once: it is *lost*, not handed off (the worker fenced itself
    /// or lost its ID), and may already be another worker's, so in-flight work must not be
    /// committed. Nothing is confirmed.
    Lose(PartitionId),
}

/// What the application is told, from [`crate::WorkerMachine::poll_event`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The worker's state changed.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
    },
    /// The worker claimed its ID.
    IdClaimed(WorkerId),
    /// This worker's partitions changed. The words are Kafka's: `assigned`, `revoked` and
    /// `lost` are what changed, `assignment` the whole set.
    AssignmentChanged {
        /// The committed generation now applied (the last applied one when partitions were
        /// dropped on a fence, a lost ID or a stop).
        generation: Generation,
        /// Partitions gained.
        assigned: BTreeSet<PartitionId>,
        /// Partitions handed off: unsubscribed, and confirmed before anyone else gets them
        /// ([`Action::Unsubscribe`]).
        revoked: BTreeSet<PartitionId>,
        /// Partitions dropped without a handoff: they may already be another worker's
        /// ([`Action::Lose`]).
        lost: BTreeSet<PartitionId>,
        /// Every partition now held.
        assignment: BTreeSet<PartitionId>,
    },
    /// This worker became leader (`is_leader`) or stopped being leader.
    LeadershipChanged {
        /// Whether this worker now leads.
        is_leader: bool,
        /// The epoch of the leadership gained or lost.
        epoch: Epoch,
    },
    /// Degraded for `degraded_for`: NATS unreachable (Relaxed mode keeps its partitions) or, in
    /// Strict mode, fenced because the lease could not be renewed.
    Alert {
        /// Severity, rising with the duration.
        level: AlertLevel,
        /// How long the worker has been degraded.
        degraded_for: Duration,
    },
    /// The worker's share is empty after [`Input::Drain`]: it may now stop.
    Drained,
    /// Leader: a balancing round published generation `generation`, moving `moved` partitions
    /// (at most `max_moves_per_round`), because `worker` had been the most loaded at
    /// `max_over_mean` times the mean load (measured load or weight, relative to capacity)
    /// for `min_rebalance_interval`. Reads as "moved for load: worker 3 was at 1.31x mean".
    Rebalanced {
        /// The generation the round published.
        generation: Generation,
        /// Partitions it moved.
        moved: u32,
        /// The most loaded worker when the round was planned.
        worker: WorkerId,
        /// That worker's load over the mean (both relative to capacity).
        max_over_mean: f64,
    },
    /// Something went wrong that the worker handles by itself (it retries); for the logs.
    Warning(Warning),
}

/// A non-fatal problem, reported by [`Event::Warning`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// Every ID in `[id_min, id_max]` is taken; the claim is retried after a lease TTL.
    IdRangeExhausted {
        /// Lowest ID of the range.
        min: u32,
        /// Highest ID of the range.
        max: u32,
    },
    /// This worker's lease is gone (it expired while the worker could not renew it, or
    /// another instance holds the ID): it dropped everything and claims again, this ID first.
    IdLost(WorkerId),
    /// Strict mode: the lease could not be renewed in time; every partition was dropped.
    Fenced,
    /// A revoke was not confirmed within `revoke_timeout`; the partition was dropped anyway.
    RevokeTimedOut(PartitionId),
    /// The partition source failed; it is retried.
    SourceFailed(String),
    /// A partition list from the source was rejected.
    InvalidPartitions(String),
    /// A value in KV could not be decoded; it was ignored.
    Undecodable {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A KV operation failed; it is retried.
    KvFailed {
        /// The key.
        key: String,
        /// The outcome.
        reason: String,
    },
    /// Leader: a worker stopped renewing its lease; its partitions are reassigned.
    WorkerCrashed(WorkerId),
    /// The stop did not finish within `shutdown_timeout`; the worker stopped anyway.
    ShutdownTimedOut,
}

impl Warning {
    /// A stable snake_case name of the warning's kind (`"fenced"`, `"kv_failed"`, ...), for
    /// metrics labels and for matching in other languages.
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::IdRangeExhausted { .. } => "id_range_exhausted",
            Warning::IdLost(_) => "id_lost",
            Warning::Fenced => "fenced",
            Warning::RevokeTimedOut(_) => "revoke_timed_out",
            Warning::SourceFailed(_) => "source_failed",
            Warning::InvalidPartitions(_) => "invalid_partitions",
            Warning::Undecodable { .. } => "undecodable",
            Warning::KvFailed { .. } => "kv_failed",
            Warning::WorkerCrashed(_) => "worker_crashed",
            Warning::ShutdownTimedOut => "shutdown_timed_out",
        }
    }
}

/// One line for a log: what happened and what the worker does about it.
impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::IdRangeExhausted { min, max } => {
                write!(
                    f,
                    "every worker ID in {min}..={max} is taken; retrying after a lease TTL"
                )
            }
            Warning::IdLost(id) => write!(
                f,
                "lost worker ID {id} (its lease expired or another instance holds it); dropped \
                 everything, claiming it again if free"
            ),
            Warning::Fenced => {
                f.write_str("lease not renewed in time: dropped every partition (fenced)")
            }
            Warning::RevokeTimedOut(p) => {
                write!(
                    f,
                    "the revoke of {p} was not confirmed in time; dropped anyway"
                )
            }
            Warning::SourceFailed(m) => write!(f, "the partition source failed (retrying): {m}"),
            Warning::InvalidPartitions(m) => {
                write!(f, "the partition source returned an unusable list: {m}")
            }
            Warning::Undecodable { key, reason } => {
                write!(f, "ignored an undecodable KV value at {key}: {reason}")
            }
            Warning::KvFailed { key, reason } => {
                write!(f, "a KV operation on {key} failed (retrying): {reason}")
            }
            Warning::WorkerCrashed(id) => write!(
                f,
                "worker {id} stopped renewing its lease; its partitions are reassigned"
            ),
            Warning::ShutdownTimedOut => {
                f.write_str("the stop did not finish within shutdown_timeout; stopped anyway")
            }
        }
    }
}

/// Severity of a degraded-mode alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertLevel {
    /// Just degraded.
    Info,
    /// Degraded for `alert_after[1]`.
    Warn,
    /// Degraded for `alert_after[2]`.
    Error,
    /// Degraded for `alert_after[3]`.
    Critical,
}

/// The worker's lifecycle state; every transition is an [`Event::StateChanged`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Created, not started.
    Init,
    /// Claiming a worker ID.
    ClaimingId,
    /// ID claimed; finding or becoming the leader.
    Election,
    /// Waiting for a first assignment.
    WaitingAssignment,
    /// Assignment applied, nothing moving.
    Stable,
    /// Workers joining or leaving: a planned move is in progress.
    Scaling,
    /// Partitions or weights changed, or a drain / imbalance: a planned move is in progress.
    Rebalancing,
    /// A worker crashed: its partitions are being reassigned.
    Emergency,
    /// NATS unreachable (Relaxed: cached assignment kept; Strict: fenced).
    Degraded,
    /// Stopping or stopped.
    Shutdown,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 10] = [
        State::Init,
        State::ClaimingId,
        State::Election,
        State::WaitingAssignment,
        State::Stable,
        State::Scaling,
        State::Rebalancing,
        State::Emergency,
        State::Degraded,
        State::Shutdown,
    ];

    /// The state's snake_case name (`"claiming_id"`, `"stable"`, ...): the one spelling of the
    /// metrics' `state` label, the Python API and `parti status --json`.
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "init",
            State::ClaimingId => "claiming_id",
            State::Election => "election",
            State::WaitingAssignment => "waiting_assignment",
            State::Stable => "stable",
            State::Scaling => "scaling",
            State::Rebalancing => "rebalancing",
            State::Emergency => "emergency",
            State::Degraded => "degraded",
            State::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PartitionId, WorkerId};

    #[test]
    fn every_state_has_one_distinct_snake_case_name() {
        let names: std::collections::BTreeSet<&str> = State::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), State::ALL.len());
        for s in State::ALL {
            let camel: String = s
                .name()
                .split('_')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            assert_eq!(camel, format!("{s:?}"), "{} spells {s:?}", s.name());
        }
    }

    #[test]
    fn every_warning_has_a_distinct_kind_and_a_message_naming_its_subject() {
        let p = PartitionId::parse("orders.eu").unwrap();
        let warnings = [
            (Warning::IdRangeExhausted { min: 3, max: 9 }, "3..=9"),
            (Warning::IdLost(WorkerId(4)), "4"),
            (Warning::Fenced, "fenced"),
            (Warning::RevokeTimedOut(p), "orders.eu"),
            (Warning::SourceFailed("db down".into()), "db down"),
            (Warning::InvalidPartitions("dup".into()), "dup"),
            (
                Warning::Undecodable {
                    key: "k1".into(),
                    reason: "eof".into(),
                },
                "k1",
            ),
            (
                Warning::KvFailed {
                    key: "k2".into(),
                    reason: "timeout".into(),
                },
                "timeout",
            ),
            (Warning::WorkerCrashed(WorkerId(7)), "worker 7"),
            (Warning::ShutdownTimedOut, "shutdown_timeout"),
        ];
        let kinds: BTreeSet<&str> = warnings.iter().map(|(w, _)| w.kind()).collect();
        assert_eq!(kinds.len(), warnings.len());
        for (w, needle) in &warnings {
            assert!(w.to_string().contains(needle), "{w} lacks {needle:?}");
        }
    }
}
