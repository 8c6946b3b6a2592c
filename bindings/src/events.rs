//! A worker's events as foreign code sees them, and the task that delivers them to a foreign
//! [`EventListener`].

use crate::error::duration_ms;
use parti::{Event, EventStream, PartitionId};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The worker's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum WorkerState {
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

impl From<parti::State> for WorkerState {
    fn from(s: parti::State) -> Self {
        use parti::State as S;
        match s {
            S::Init => WorkerState::Init,
            S::ClaimingId => WorkerState::ClaimingId,
            S::Election => WorkerState::Election,
            S::WaitingAssignment => WorkerState::WaitingAssignment,
            S::Stable => WorkerState::Stable,
            S::Scaling => WorkerState::Scaling,
            S::Rebalancing => WorkerState::Rebalancing,
            S::Emergency => WorkerState::Emergency,
            S::Degraded => WorkerState::Degraded,
            S::Shutdown => WorkerState::Shutdown,
        }
    }
}

/// Severity of a degraded-mode alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
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

impl From<parti::AlertLevel> for AlertLevel {
    fn from(l: parti::AlertLevel) -> Self {
        match l {
            parti::AlertLevel::Info => AlertLevel::Info,
            parti::AlertLevel::Warn => AlertLevel::Warn,
            parti::AlertLevel::Error => AlertLevel::Error,
            parti::AlertLevel::Critical => AlertLevel::Critical,
        }
    }
}

/// An event of a running worker, in the order the worker produced it.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum WorkerEvent {
    /// The worker's state changed.
    StateChanged {
        /// Previous state.
        from: WorkerState,
        /// New state.
        to: WorkerState,
    },
    /// The worker claimed its ID.
    IdClaimed {
        /// The claimed ID.
        worker_id: u32,
    },
    /// This worker's partitions changed (Kafka's words: `assigned`, `revoked` and `lost` are
    /// the changes, `assignment` the whole set).
    AssignmentChanged {
        /// The committed generation now applied.
        generation: u64,
        /// Partitions gained, sorted.
        assigned: Vec<String>,
        /// Partitions handed off, sorted.
        revoked: Vec<String>,
        /// Partitions lost without a handoff (a fence, a lost ID), sorted.
        lost: Vec<String>,
        /// Every partition the worker now owns, sorted.
        assignment: Vec<String>,
    },
    /// This worker became leader or stopped leading.
    LeadershipChanged {
        /// Whether this worker now leads.
        is_leader: bool,
        /// The epoch of the leadership gained or lost.
        epoch: u64,
    },
    /// Degraded (Relaxed mode): NATS unreachable for `degraded_for_ms`.
    Alert {
        /// Severity, rising with the duration.
        level: AlertLevel,
        /// How long the worker has been degraded, in milliseconds.
        degraded_for_ms: u64,
    },
    /// The worker's share is empty after a drain: it may now stop.
    Drained,
    /// Leader: a balancing round moved partitions for load ("moved for load: worker 3 was at
    /// 1.31x mean"), at most `max_moves_per_round` of them; see `Worker.report_load`.
    Rebalanced {
        /// The generation the round published.
        generation: u64,
        /// Partitions it moved.
        moved: u32,
        /// The most loaded worker when the round was planned.
        worker: u32,
        /// That worker's load over the mean (both relative to capacity).
        max_over_mean: f64,
    },
    /// A non-fatal problem the core or the driver handles by itself (it retries).
    Warning {
        /// A stable snake_case name of its kind (`fenced`, `revoke_timed_out`,
        /// `listener_failed`, ...), the same in every language and in the metrics labels.
        kind: String,
        /// What happened, in one sentence.
        message: String,
    },
}

/// Sorted IDs as strings.
pub(crate) fn ids(set: &BTreeSet<PartitionId>) -> Vec<String> {
    set.iter().map(ToString::to_string).collect()
}

impl WorkerEvent {
    /// The foreign form of a driver event; `None` for kinds added later that the bindings do
    /// not know yet.
    pub fn from_event(e: Event) -> Option<Self> {
        Some(match e {
            Event::StateChanged { from, to } => WorkerEvent::StateChanged {
                from: from.into(),
                to: to.into(),
            },
            Event::IdClaimed(id) => WorkerEvent::IdClaimed { worker_id: id.0 },
            Event::AssignmentChanged {
                generation,
                assigned,
                revoked,
                lost,
                assignment,
            } => WorkerEvent::AssignmentChanged {
                generation: generation.0,
                assigned: ids(&assigned),
                revoked: ids(&revoked),
                lost: ids(&lost),
                assignment: ids(&assignment),
            },
            Event::LeadershipChanged { is_leader, epoch } => WorkerEvent::LeadershipChanged {
                is_leader,
                epoch: epoch.0,
            },
            Event::Alert {
                level,
                degraded_for,
            } => WorkerEvent::Alert {
                level: level.into(),
                degraded_for_ms: duration_ms(degraded_for),
            },
            Event::Drained => WorkerEvent::Drained,
            Event::Rebalanced {
                generation,
                moved,
                worker,
                max_over_mean,
            } => WorkerEvent::Rebalanced {
                generation: generation.0,
                moved,
                worker: worker.0,
                max_over_mean,
            },
            Event::Warning(w) => WorkerEvent::Warning {
                kind: w.kind().to_owned(),
                message: w.to_string(),
            },
            Event::DriverWarning(w) => WorkerEvent::Warning {
                kind: w.kind().to_owned(),
                message: w.to_string(),
            },
            _ => return None,
        })
    }
}

/// Receives a worker's events; implemented in the foreign language.
///
/// Called one event at a time, in order, on a thread of the library's blocking pool (never on
/// a runtime thread): a slow callback delays later events of this worker, nothing else. An
/// exception thrown by the callback is ignored.
#[uniffi::export(foreign)]
pub trait EventListener: Send + Sync {
    /// One event of the worker.
    fn on_event(&self, event: WorkerEvent);
}

/// Spawns (on the current runtime) the task that hands `events` to `listener` until the
/// stream ends; aborting it stops the delivery.
pub(crate) fn forward(
    mut events: EventStream,
    listener: Arc<dyn EventListener>,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let Some(event) = WorkerEvent::from_event(event) else {
                continue;
            };
            let listener = listener.clone();
            // A panic (a foreign exception) is the listener's problem: keep delivering.
            let _ = tokio::task::spawn_blocking(move || listener.on_event(event)).await;
        }
    })
    .abort_handle()
}
