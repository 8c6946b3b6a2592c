//! Plugging the manager into a worker: [`crate::WorkerBuilder::subscribe`] and
//! [`crate::WorkerBuilder::consume`], and the runner's [`Subscriptions`] seam.

use super::jetstream::ConsumerName;
use super::{valid_name, MessageHandler, SubjectTemplate, SubscriptionManager};
use crate::events::DriverWarning;
use crate::handle::Snapshot;
use crate::listener::{caught, ListenerSubscriptions, Subscriptions};
use crate::{Error, RebalanceListener, WorkerBuilder};
use futures::future::BoxFuture;
use parti_core::{Config, PartitionId};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What the builder was asked to consume.
pub(crate) enum SubscriptionSpec {
    Core {
        client: async_nats::Client,
        template: SubjectTemplate,
        handler: MessageHandler,
    },
    JetStream {
        context: async_nats::jetstream::Context,
        stream: String,
        template: SubjectTemplate,
        handler: MessageHandler,
    },
}

impl WorkerBuilder {
    /// Consumes the worker's partitions with core NATS: one subscription per owned partition
    /// on `client`, to the subject `template` gives it; `handler` is called for every message
    /// (see [`crate::subscriptions`]).
    ///
    /// A revoke is confirmed to the core only after the partition is unsubscribed, the
    /// messages already received for it are handled, and its handler call in flight returned
    /// (cancelled past 90% of `revoke_timeout`). A [`RebalanceListener`] set too is told
    /// `on_assigned` before the subscriptions start and `on_revoked` after they stopped.
    /// Replaces an earlier `subscribe` or `consume`.
    pub fn subscribe(
        mut self,
        client: async_nats::Client,
        template: SubjectTemplate,
        handler: MessageHandler,
    ) -> Self {
        self.subscription = Some(SubscriptionSpec::Core {
            client,
            template,
            handler,
        });
        self
    }

    /// Consumes the worker's partitions from the JetStream `stream` (work-queue retention)
    /// through one durable pull consumer named `<bucket_prefix>-w<worker id>`, filtering the
    /// subjects of the owned partitions; recreated whenever they change, deleted when the
    /// share becomes empty (on stop). `handler` is called for every message, which is
    /// acknowledged when it returns (see [`crate::subscriptions`]). Revokes are confirmed as
    /// with [`WorkerBuilder::subscribe`]. `start()` fails on a stream name NATS would refuse.
    /// Replaces an earlier `subscribe` or `consume`.
    pub fn consume(
        mut self,
        jetstream: async_nats::jetstream::Context,
        stream: impl Into<String>,
        template: SubjectTemplate,
        handler: MessageHandler,
    ) -> Self {
        self.subscription = Some(SubscriptionSpec::JetStream {
            context: jetstream,
            stream: stream.into(),
            template,
            handler,
        });
        self
    }
}

/// The runner's subscriptions: the listener alone, or a manager and the listener.
pub(crate) fn plug(
    spec: Option<SubscriptionSpec>,
    listener: Arc<dyn RebalanceListener>,
    config: &Config,
    snapshot: watch::Receiver<Snapshot>,
) -> Result<Box<dyn Subscriptions>, Error> {
    let Some(spec) = spec else {
        return Ok(Box::new(ListenerSubscriptions(listener)));
    };
    // Unbounded: warnings are few (one per failed subscribe, retried with backoff) and the
    // worker's loop forwards each at once.
    let (tx, rx) = mpsc::unbounded_channel();
    // Below the runner's own bound, so the manager cancels a stuck handler (and says so)
    // before the runner gives up on the revoke.
    let drain_timeout = config.revoke_timeout.mul_f64(0.9);
    let manager = match spec {
        SubscriptionSpec::Core {
            client,
            template,
            handler,
        } => SubscriptionManager::builder(template, handler)
            .drain_timeout(drain_timeout)
            .warnings(tx)
            .core_nats(client),
        SubscriptionSpec::JetStream {
            context,
            stream,
            template,
            handler,
        } => {
            let stream = valid_name("stream", stream)?;
            let name = ConsumerName::Worker {
                prefix: config.bucket_prefix.clone(),
                id: Box::new(move || snapshot.borrow().worker_id),
            };
            SubscriptionManager::builder(template, handler)
                .drain_timeout(drain_timeout)
                .warnings(tx)
                .jetstream_named(context, stream, name)
        }
    };
    Ok(Box::new(ManagerSubscriptions {
        manager,
        listener,
        warnings: Some(rx),
    }))
}

/// [`Subscriptions`] through a [`SubscriptionManager`], with the listener around it.
struct ManagerSubscriptions {
    manager: SubscriptionManager,
    listener: Arc<dyn RebalanceListener>,
    warnings: Option<mpsc::UnboundedReceiver<DriverWarning>>,
}

impl ManagerSubscriptions {
    /// Stops `partitions`, waits until they are released, then tells the listener
    /// (`on_lost` if `lost`, else `on_revoked`).
    fn release(
        &self,
        partitions: BTreeSet<PartitionId>,
        lost: bool,
    ) -> BoxFuture<'static, Result<(), String>> {
        let manager = self.manager.clone();
        let listener = self.listener.clone();
        Box::pin(async move {
            manager
                .apply_delta(&BTreeSet::new(), &partitions, lost)
                .released
                .await;
            caught(async move {
                if lost {
                    listener.on_lost(&partitions).await
                } else {
                    listener.on_revoked(&partitions).await
                }
            })
            .await
        })
    }
}

impl Subscriptions for ManagerSubscriptions {
    /// Tells the listener, then starts the partitions without waiting for them to be live
    /// (retries go on in the background; later batches are ordered after this one).
    fn on_subscribe(
        &self,
        partitions: BTreeSet<PartitionId>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let manager = self.manager.clone();
        let listener = self.listener.clone();
        Box::pin(async move {
            let told = {
                let partitions = partitions.clone();
                caught(async move { listener.on_assigned(&partitions).await }).await
            };
            drop(manager.apply_delta(&partitions, &BTreeSet::new(), false));
            told
        })
    }

    /// Stops the partitions, waits until they are released, then tells the listener.
    fn on_unsubscribe(
        &self,
        partitions: BTreeSet<PartitionId>,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.release(partitions, false)
    }

    /// Stops the partitions, waits until their handlers returned, then tells the listener.
    fn on_lose(&self, partitions: BTreeSet<PartitionId>) -> BoxFuture<'static, Result<(), String>> {
        self.release(partitions, true)
    }

    fn warnings(&mut self) -> Option<mpsc::UnboundedReceiver<DriverWarning>> {
        self.warnings.take()
    }
}
