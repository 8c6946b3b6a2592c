//! What the application is told: the core's events with Kafka-style names, plus the driver's own
//! non-fatal problems, delivered in order on an [`EventStream`].

use futures::Stream;
use parti_core::{AlertLevel, Bucket, Epoch, Generation, PartitionId, State, Warning, WorkerId};
use std::collections::BTreeSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// An event of a running worker, from [`crate::Worker::events`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
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
    /// This worker's partitions changed (a committed generation was applied, or partitions
    /// were dropped on a fence or a stop).
    AssignmentChanged {
        /// The committed generation now applied (the last applied one for a fence or a stop).
        generation: Generation,
        /// Partitions gained ([`crate::RebalanceListener::on_assigned`]).
        assigned: BTreeSet<PartitionId>,
        /// Partitions handed off ([`crate::RebalanceListener::on_revoked`]).
        revoked: BTreeSet<PartitionId>,
        /// Partitions lost without a handoff on a fence or a lost ID; they may already be
        /// another worker's ([`crate::RebalanceListener::on_lost`]).
        lost: BTreeSet<PartitionId>,
        /// Every partition the worker now owns.
        assignment: BTreeSet<PartitionId>,
    },
    /// This worker became leader or stopped leading.
    LeadershipChanged {
        /// Whether this worker now leads.
        is_leader: bool,
        /// The epoch of the leadership gained or lost.
        epoch: Epoch,
    },
    /// Degraded (Relaxed mode): NATS unreachable for `degraded_for`.
    Alert {
        /// Severity, rising with the duration.
        level: AlertLevel,
        /// How long the worker has been degraded.
        degraded_for: Duration,
    },
    /// The worker's share is empty after [`crate::Worker::drain`]: it may now stop.
    Drained,
    /// A non-fatal problem the core handles by itself (it retries).
    Warning(Warning),
    /// A non-fatal problem of the driver (a broken watch, a failing listener).
    DriverWarning(DriverWarning),
}

impl From<parti_core::Event> for Event {
    fn from(e: parti_core::Event) -> Self {
        use parti_core::Event as E;
        match e {
            E::StateChanged { from, to } => Event::StateChanged { from, to },
            E::IdClaimed(id) => Event::IdClaimed(id),
            E::AssignmentChanged {
                generation,
                assigned,
                revoked,
                lost,
                assignment,
            } => Event::AssignmentChanged {
                generation,
                assigned,
                revoked,
                lost,
                assignment,
            },
            E::LeadershipChanged { is_leader, epoch } => {
                Event::LeadershipChanged { is_leader, epoch }
            }
            E::Alert {
                level,
                degraded_for,
            } => Event::Alert {
                level,
                degraded_for,
            },
            E::Drained => Event::Drained,
            E::Warning(w) => Event::Warning(w),
        }
    }
}

/// A non-fatal problem of the driver itself, reported by [`Event::DriverWarning`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverWarning {
    /// A KV watch failed or ended; it is rebuilt after `retry_in` and resumes after the last
    /// revision it delivered.
    WatchFailed {
        /// The watched bucket.
        bucket: Bucket,
        /// What went wrong.
        reason: String,
        /// The backoff before the rebuild (50 ms doubling up to 2 s).
        retry_in: Duration,
    },
    /// A rebalance listener callback panicked (or, in another language, raised). It has
    /// returned all the same: a revoke is confirmed (see [`crate::RebalanceListener`]).
    ListenerPanicked {
        /// `on_assigned`, `on_revoked` or `on_lost`.
        callback: &'static str,
        /// The panic message.
        message: String,
    },
    /// A rebalance listener callback did not finish within `revoke_timeout`; it was cancelled.
    ListenerTimedOut {
        /// `on_assigned`, `on_revoked` or `on_lost`.
        callback: &'static str,
        /// The bound that was exceeded.
        after: Duration,
    },
    /// The core refused an input from the driver (a bug; reported rather than crashing).
    InputRejected(String),
    /// The subscription manager hit a problem (a subscribe retried, a handler that
    /// panicked, a consumer that could not be created yet; see [`crate::subscriptions`]).
    Subscription(crate::subscriptions::SubscriptionError),
    /// The worker's task panicked (a bug) and is gone: the last event of every stream. The
    /// worker is stopped without a handoff; its lease expires and the fleet reassigns its
    /// partitions. Requests fail with [`crate::Error::Crashed`].
    TaskPanicked(String),
}

impl DriverWarning {
    /// A stable snake_case name of the warning's kind (`"watch_failed"`, ...), for metrics
    /// labels and for matching in other languages.
    pub fn kind(&self) -> &'static str {
        match self {
            DriverWarning::WatchFailed { .. } => "watch_failed",
            DriverWarning::ListenerPanicked { .. } => "listener_failed",
            DriverWarning::ListenerTimedOut { .. } => "listener_timed_out",
            DriverWarning::InputRejected(_) => "input_rejected",
            DriverWarning::Subscription(_) => "subscription",
            DriverWarning::TaskPanicked(_) => "task_panicked",
        }
    }
}

/// One line for a log: what happened and what the worker does about it.
impl std::fmt::Display for DriverWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverWarning::WatchFailed {
                bucket,
                reason,
                retry_in,
            } => write!(
                f,
                "the watch of {bucket:?} failed ({reason}); rebuilding in {retry_in:?}"
            ),
            DriverWarning::ListenerPanicked { callback, message } => {
                write!(f, "{callback} failed: {message}")
            }
            DriverWarning::ListenerTimedOut { callback, after } => {
                write!(
                    f,
                    "{callback} did not return within {after:?}; went on without it"
                )
            }
            DriverWarning::InputRejected(m) => write!(f, "the core refused an input: {m}"),
            DriverWarning::Subscription(e) => write!(f, "subscription: {e}"),
            DriverWarning::TaskPanicked(m) => write!(
                f,
                "the worker's task panicked ({m}); it stopped without a handoff"
            ),
        }
    }
}

/// The ordered stream of a worker's events, from [`crate::Worker::events`].
///
/// Lossless and unbounded: consume it, or drop it. It ends when the worker has stopped.
#[derive(Debug)]
pub struct EventStream {
    pub(crate) rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    /// The next event, or `None` once the worker has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_warnings_have_distinct_kinds_and_say_what_happened() {
        let warnings = [
            (
                DriverWarning::WatchFailed {
                    bucket: Bucket::Leases,
                    reason: "consumer gone".into(),
                    retry_in: Duration::from_millis(250),
                },
                "consumer gone",
            ),
            (
                DriverWarning::ListenerPanicked {
                    callback: "on_revoked",
                    message: "boom".into(),
                },
                "on_revoked failed: boom",
            ),
            (
                DriverWarning::ListenerTimedOut {
                    callback: "on_assigned",
                    after: Duration::from_secs(5),
                },
                "on_assigned did not return",
            ),
            (DriverWarning::InputRejected("late".into()), "late"),
        ];
        let kinds: BTreeSet<&str> = warnings.iter().map(|(w, _)| w.kind()).collect();
        assert_eq!(kinds.len(), warnings.len());
        for (w, needle) in &warnings {
            assert!(w.to_string().contains(needle), "{w} lacks {needle:?}");
        }
    }
}
