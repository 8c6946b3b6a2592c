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
/// Calls are made one at a time, in the order the core decided them. The rule, the same in
/// Rust, Python and Kotlin:
/// - **revoked** (a handoff): `on_revoked` is awaited before the core is told the partitions
///   are released; in Strict mode no other worker gets them until it returns (finish or commit
///   in-flight work there). A callback that panics has returned too: the revoke is confirmed at
///   once and the panic reported as [`crate::DriverWarning::ListenerPanicked`]. A callback still
///   running after the config's `revoke_timeout` is cancelled, reported as
///   [`crate::DriverWarning::ListenerTimedOut`], and the core drops the partitions anyway.
/// - **lost** (the worker fenced itself or lost its ID): the partitions may already be another
///   worker's. `on_lost` is told afterwards and nothing waits for it; do not commit there.
/// - **assigned**: `on_assigned` runs before later changes are told.
///
/// No callback ever stops the worker. Every method has a default: `on_assigned` and
/// `on_revoked` do nothing, and `on_lost` calls `on_revoked` (as Kafka's `onPartitionsLost`
/// does), so a listener that only stops its consumers in `on_revoked` stops them on a loss
/// too. Implement with `Box::pin(async move { ... })`.
pub trait RebalanceListener: Send + Sync + 'static {
    /// Partitions this worker now owns (start consuming them).
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        let _ = partitions;
        Box::pin(async {})
    }

    /// Partitions this worker hands off (stop consuming them; commit and return when done).
    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        let _ = partitions;
        Box::pin(async {})
    }

    /// Partitions this worker lost without a handoff: they may already be another worker's.
    /// Stop consuming them and drop in-flight work without committing it. Defaults to
    /// [`RebalanceListener::on_revoked`].
    fn on_lost<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        self.on_revoked(partitions)
    }
}

impl<L: RebalanceListener + ?Sized> RebalanceListener for Arc<L> {
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        (**self).on_assigned(partitions)
    }

    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        (**self).on_revoked(partitions)
    }

    fn on_lost<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        (**self).on_lost(partitions)
    }
}

/// Ends a failed callback of a listener implemented in another language (an exception in
/// Python, Kotlin...): the driver handles it as it handles a panicking Rust callback. The call
/// has returned (a revoke is confirmed) and [`crate::DriverWarning::ListenerPanicked`] carries
/// `message`; the panic hook does not run, so nothing is printed. Call it inside the future a
/// [`RebalanceListener`] method returns; it does not return.
pub fn listener_failed(message: String) -> ! {
    std::panic::resume_unwind(Box::new(message))
}

/// The listener used when none is set: does nothing.
#[derive(Debug, Default)]
pub(crate) struct NoListener;

impl RebalanceListener for NoListener {}

/// What the runner does with `Action::Subscribe` / `Unsubscribe` / `Lose`, in batches.
///
/// The runner calls these one at a time, in order, and confirms an unsubscribe to the core
/// when `on_unsubscribe`'s future resolves (`Err` carries a panic message, reported as a
/// warning), or drops it at `revoke_timeout`. One
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

    /// Stop consuming `partitions` that were lost (nothing is confirmed to the core).
    fn on_lose(&self, partitions: BTreeSet<PartitionId>) -> BoxFuture<'static, Result<(), String>>;

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

    fn on_lose(&self, partitions: BTreeSet<PartitionId>) -> BoxFuture<'static, Result<(), String>> {
        let l = self.0.clone();
        caught(async move { l.on_lost(&partitions).await })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The callbacks a listener got, in order.
    struct Recorder {
        calls: Mutex<Vec<&'static str>>,
    }

    /// Implements only `on_revoked`.
    struct OnlyRevoked(Arc<Recorder>);

    impl RebalanceListener for OnlyRevoked {
        fn on_revoked<'a>(&'a self, _: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
            self.0.calls.lock().unwrap().push("on_revoked");
            Box::pin(async {})
        }
    }

    /// Implements `on_revoked` and `on_lost`.
    struct Both(Arc<Recorder>);

    impl RebalanceListener for Both {
        fn on_revoked<'a>(&'a self, _: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
            self.0.calls.lock().unwrap().push("on_revoked");
            Box::pin(async {})
        }

        fn on_lost<'a>(&'a self, _: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
            self.0.calls.lock().unwrap().push("on_lost");
            Box::pin(async {})
        }
    }

    fn lose(listener: Arc<dyn RebalanceListener>) {
        let p = BTreeSet::from([PartitionId::parse("a").unwrap()]);
        let subs = ListenerSubscriptions(listener);
        futures::executor::block_on(subs.on_lose(p)).unwrap();
    }

    #[test]
    fn on_lost_defaults_to_on_revoked_like_kafka_and_an_override_replaces_it() {
        let rec = Arc::new(Recorder {
            calls: Mutex::new(Vec::new()),
        });
        lose(Arc::new(OnlyRevoked(rec.clone())));
        assert_eq!(*rec.calls.lock().unwrap(), ["on_revoked"]);
        let rec = Arc::new(Recorder {
            calls: Mutex::new(Vec::new()),
        });
        lose(Arc::new(Both(rec.clone())));
        assert_eq!(*rec.calls.lock().unwrap(), ["on_lost"]);
    }

    #[test]
    fn a_panicking_callback_is_an_error_carrying_its_message() {
        let r = futures::executor::block_on(caught(async { panic!("boom") }));
        assert_eq!(r, Err("boom".to_owned()));
    }

    #[test]
    fn listener_failed_is_caught_like_a_panic_carrying_its_message() {
        let r = futures::executor::block_on(caught(async { listener_failed("threw".into()) }));
        assert_eq!(r, Err("threw".to_owned()));
    }
}
