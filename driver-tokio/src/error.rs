//! The crate's error type.

use std::time::Duration;

/// What can go wrong when starting or commanding a worker.
///
/// Protocol outcomes (an ID lost, leadership lost, a source failing) are not errors: they arrive
/// as [`crate::Event`]s on [`crate::Worker::events`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid input, as the core says it: a bad configuration (the error names the field), a
    /// malformed partition, an unknown strategy.
    #[error(transparent)]
    Invalid(#[from] parti_core::Error),
    /// NATS could not be reached, or a bucket could not be created or bound.
    #[error("nats: {0}")]
    Nats(String),
    /// The worker has stopped (or stopped before the request finished).
    #[error("worker stopped")]
    Stopped,
    /// The request did not finish within its bound.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// [`crate::WorkerBuilder::start`] gave up: no worker ID was claimed in time (every ID of
    /// `id_min..=id_max` is held by a live worker, or the KV does not answer). The worker was
    /// stopped.
    #[error(
        "no worker id claimed within {waited:?} (every id of id_min..=id_max taken, or the kv \
         does not answer)"
    )]
    NoId {
        /// How long the start waited.
        waited: Duration,
    },
    /// The builder lacks a required part.
    #[error("missing {0}: set it on the WorkerBuilder")]
    Missing(&'static str),
    /// The worker's task died (a bug: it panicked with this message). The worker is stopped:
    /// its lease expires and the fleet reassigns its partitions; the handle reports
    /// [`crate::Worker::is_stopped`] and every event stream ended with
    /// [`crate::DriverWarning::TaskPanicked`].
    #[error("worker task crashed: {0}")]
    Crashed(String),
    /// The subscription manager refused its input (a bad stream name, subject template...).
    #[error(transparent)]
    Subscription(#[from] crate::subscriptions::SubscriptionError),
}
