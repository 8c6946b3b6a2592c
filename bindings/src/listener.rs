//! The rebalance listener, implemented in the foreign language (Kotlin: `suspend fun`s).

use crate::events::ids;
use futures::future::BoxFuture;
use parti::PartitionId;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a foreign rebalance listener may throw. Any exception counts: one that is not a
/// `ListenerError` arrives as `Failed` with its text.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum ListenerError {
    /// The callback failed.
    #[error("{reason}")]
    Failed {
        /// What the callback said.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for ListenerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        ListenerError::Failed { reason: e.reason }
    }
}

/// Told when this worker gains or loses partitions, like Kafka's `ConsumerRebalanceListener`;
/// implemented in the foreign language (Kotlin: `suspend` functions, so a callback may finish
/// in-flight work without blocking a thread).
///
/// The rule is the same in Rust, Python and Kotlin. Calls come one at a time, in order.
/// `on_revoked` (a handoff) is awaited before the partitions are released: in Strict mode
/// nobody else gets them until it returns or throws (then the revoke is confirmed and a
/// `DriverWarning` of kind `listener_failed` is sent), or until the config's `revoke_timeout_ms`
/// passes (the call is then abandoned). `on_lost` is told after a fence or a lost ID, when the
/// partitions may already be another worker's: do not commit in-flight work there. In Kafka,
/// `onPartitionsLost` defaults to `onPartitionsRevoked`; implement both the same way to get that.
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait RebalanceListener: Send + Sync {
    /// Partitions this worker now owns (start consuming them).
    async fn on_assigned(&self, partitions: Vec<String>) -> Result<(), ListenerError>;
    /// Partitions this worker hands off (stop consuming them; commit and return when done).
    async fn on_revoked(&self, partitions: Vec<String>) -> Result<(), ListenerError>;
    /// Partitions this worker lost without a handoff (stop at once; do not commit).
    async fn on_lost(&self, partitions: Vec<String>) -> Result<(), ListenerError>;
}

/// A foreign [`RebalanceListener`] as the driver's `parti::RebalanceListener`.
pub(crate) struct ForeignListener(pub(crate) Arc<dyn RebalanceListener>);

/// Awaits a foreign call; a thrown exception is handed to the driver as a failed callback
/// (`parti::listener_failed`), exactly as it treats a panicking Rust listener.
async fn told<F>(callback: &'static str, call: F)
where
    F: std::future::Future<Output = Result<(), ListenerError>>,
{
    if let Err(e) = call.await {
        parti::listener_failed(format!("{callback} threw: {e}"));
    }
}

impl parti::RebalanceListener for ForeignListener {
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        Box::pin(told("on_assigned", self.0.on_assigned(ids(partitions))))
    }

    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        Box::pin(told("on_revoked", self.0.on_revoked(ids(partitions))))
    }

    fn on_lost<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        Box::pin(told("on_lost", self.0.on_lost(ids(partitions))))
    }
}
