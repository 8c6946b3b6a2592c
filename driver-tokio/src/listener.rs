//! Telling the application which partitions it gained and lost, Kafka-style, and the internal
//! seam where a subscription manager plugs in.

use crate::events::DriverWarning;
use futures::future::BoxFuture;
use futures::FutureExt;
use parti_core::PartitionId;
use std::any::Any;
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Called when this worker gains or loses partitions, like Kafka's `ConsumerRebalanceListener`.
///
/// Calls are made one at a time, in the order the core decided them. `on_revoked` is awaited
/// before the core is told the partitions are released: in Strict mode, no other worker gets
/// them until it returns (finish or hand off in-flight work there). Each call is bounded by the
/// config's `revoke_timeout`: past it the call is cancelled and the core drops the partitions
/// anyway. A panicking callback is reported as [`crate::DriverWarning::ListenerPanicked`] and
/// never stops the worker.
///
/// Both methods have empty defaults; implement with `Box::pin(async move { ... })`.
pub trait RebalanceListener: Send + Sync + 'static {
    /// Partitions this worker now owns (start consuming them).
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        let _ = partitions;
        Box::pin(async {})
    }

    /// Partitions this worker is losing (stop consuming them; return when done).
    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        let _ = partitions;
        Box::pin(async {})
    }
}

impl<L: RebalanceListener + ?Sized> RebalanceListener for Arc<L> {
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        (**self).on_assigned(partitions)
    }

    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        (**self).on_revoked(partitions)
    }
}

/// The listener used when none is set: does nothing.
#[derive(Debug, Default)]
pub(crate) struct NoListener;

impl RebalanceListener for NoListener {}

/// What the runner does with `Action::Subscribe` / `Action::Unsubscribe`, in batches.
///
/// The runner calls these one at a time, in order, and confirms an unsubscribe to the core
/// only when `on_unsubscribe`'s future resolves `Ok`. `Err` carries a panic message. One
/// implementation forwards to a [`RebalanceListener`]; the subscription manager (NATS
/// subscriptions per partition, or a pull consumer per worker) is the other
/// (`crate::subscriptions::plug`).
pub(crate) trait Subscriptions: Send + Sync {
    /// Start consuming `partitions`.
    fn on_subscribe(
        &self,
        partitions: BTreeSet<PartitionId>,
    ) -> BoxFuture<'static, Result<(), String>>;

    /// Stop consuming `partitions`; resolve once in-flight work is done.
    fn on_unsubscribe(
        &self,
        partitions: BTreeSet<PartitionId>,
    ) -> BoxFuture<'static, Result<(), String>>;

    /// Warnings produced in the background, for the runner to publish (taken once).
    fn warnings(&mut self) -> Option<mpsc::UnboundedReceiver<DriverWarning>> {
        None
    }
}

/// [`Subscriptions`] that forwards to the application's [`RebalanceListener`].
pub(crate) struct ListenerSubscriptions(pub(crate) Arc<dyn RebalanceListener>);

impl Subscriptions for ListenerSubscriptions {
    fn on_subscribe(
        &self,
        partitions: BTreeSet<PartitionId>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let l = self.0.clone();
        caught(async move { l.on_assigned(&partitions).await })
    }

    fn on_unsubscribe(
        &self,
        partitions: BTreeSet<PartitionId>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let l = self.0.clone();
        caught(async move { l.on_revoked(&partitions).await })
    }
}

/// Runs `fut`, turning a panic (also one while creating the inner future) into `Err`.
pub(crate) fn caught<F>(fut: F) -> BoxFuture<'static, Result<(), String>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    AssertUnwindSafe(fut)
        .catch_unwind()
        .map(|r| r.map_err(|p| panic_message(p.as_ref())))
        .boxed()
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
