//! [`start_worker`] and the [`Worker`] object: a running worker against NATS.

use crate::config::{NatsOptions, WorkerConfig};
use crate::error::PartiError;
use crate::events::{forward, EventListener, WorkerState};
use crate::listener::{ForeignListener, RebalanceListener};
use crate::on_runtime;
use crate::plan::Strategy;
use crate::source::{ForeignSource, PartitionSource};
use parti::kv::NatsKv;
use parti::{PartitionId, WorkerId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Connects to NATS, creates (or opens) the fleet's buckets and starts a worker.
///
/// `config` is validated first ([`PartiError::InvalidConfig`] names the field). `strategy` is
/// used while this worker leads (`None`: Balanced). Every event, from the first one, goes to
/// `listener`; `rebalance_listener` is told of every partition gained, revoked or lost (see
/// [`RebalanceListener`] for its rule). Returns once the worker has claimed its ID (`worker_id()` is set, `state()` is
/// past `ClaimingId`, the assignment is empty until the leader's first generation). Fails
/// with [`PartiError::Nats`] if no server is reachable now, the credentials are refused, or a
/// bucket exists with settings that contradict `config`; with [`PartiError::Timeout`] if no ID
/// is claimed within 30 s (the worker is then stopped).
#[uniffi::export(
    async_runtime = "tokio",
    default(strategy = None, listener = None, rebalance_listener = None)
)]
pub async fn start_worker(
    nats: NatsOptions,
    config: WorkerConfig,
    source: Arc<dyn PartitionSource>,
    strategy: Option<Strategy>,
    listener: Option<Arc<dyn EventListener>>,
    rebalance_listener: Option<Arc<dyn RebalanceListener>>,
) -> Result<Arc<Worker>, PartiError> {
    let core_config = config.to_config()?;
    core_config.validate()?;
    let options = nats.to_options();
    on_runtime(async move {
        let (kv, connection) = NatsKv::connect(&options, &core_config).await?;
        let mut builder = parti::Worker::builder()
            .config(core_config)
            .nats(kv)
            .connection_events(connection)
            .source(ForeignSource(source))
            .source_timeout(Duration::from_millis(config.source_timeout_ms));
        if let Some(ms) = config.kv_timeout_ms {
            builder = builder.kv_timeout(Duration::from_millis(ms));
        }
        if let Some(strategy) = strategy {
            builder = builder.strategy(strategy.to_strategy());
        }
        if let Some(listener) = rebalance_listener {
            builder = builder.rebalance_listener(ForeignListener(listener));
        }
        let (handle, events) = builder.start_with_events().await?;
        let forwarder = listener.map(|listener| forward(events, listener));
        Ok(Arc::new(Worker { handle, forwarder }))
    })
    .await
}

/// A running worker. The getters read a snapshot the worker publishes after every step (no
/// round trip, no waiting); the async methods ask the worker and wait for its answer.
///
/// Destroying the object (Kotlin `close()`, or garbage collection) stops event delivery and
/// stops the worker gracefully in the background, as `stop` would; call `stop` to wait for it.
#[derive(uniffi::Object)]
pub struct Worker {
    handle: parti::Worker,
    /// The task delivering events to the listener, if there is one.
    forwarder: Option<tokio::task::AbortHandle>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(forwarder) = &self.forwarder {
            forwarder.abort();
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Worker {
    /// The claimed ID: set when [`start_worker`] returns; `None` after the ID was lost and
    /// after a stop.
    pub fn worker_id(&self) -> Option<u32> {
        self.handle.worker_id().map(|id| id.0)
    }

    /// Whether this worker leads the fleet right now.
    pub fn is_leader(&self) -> bool {
        self.handle.is_leader()
    }

    /// The leader's ID as last seen in KV.
    pub fn leader(&self) -> Option<u32> {
        self.handle.leader().map(|id| id.0)
    }

    /// The worker's lifecycle state.
    pub fn state(&self) -> WorkerState {
        self.handle.state().into()
    }

    /// The partitions this worker owns (sorted): subscribed, or being revoked and not yet
    /// confirmed.
    pub fn assignment(&self) -> Vec<String> {
        self.handle
            .assignment()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The last committed generation this worker applied.
    pub fn generation(&self) -> Option<u64> {
        self.handle.generation().map(|g| g.0)
    }

    /// True once the worker has stopped: nothing more will happen.
    pub fn is_stopped(&self) -> bool {
        self.handle.is_stopped()
    }

    /// Asks the leader to re-read the partition source now. Resolves once the worker
    /// accepted the request, not when the assignment changed (watch the events for that).
    pub async fn refresh_partitions(&self) -> Result<(), PartiError> {
        let handle = self.handle.clone();
        on_runtime(async move { handle.refresh_partitions().await })
            .await
            .map_err(Into::into)
    }

    /// Reports the measured load of partitions this worker holds, partition ID to load
    /// (messages/s, lag, CPU: any number >= 0, one unit across the fleet). Each value replaces
    /// that partition's last one; partitions left out keep theirs. Cheap to call often: the
    /// loads reach KV with the next heartbeat, in the lease (never a write per call); the
    /// leader smooths them (`load_half_life_ms`) and balances on them (a partition without a
    /// report counts at its static weight). Refused as a whole, naming the partition
    /// ([`PartiError::InvalidPartition`]), when a load is negative, NaN or infinite, a
    /// partition is malformed or not held by this worker.
    pub async fn report_load(&self, loads: HashMap<String, f64>) -> Result<(), PartiError> {
        let loads = loads
            .into_iter()
            .map(|(p, l)| Ok((PartitionId::parse(&p)?, l)))
            .collect::<Result<Vec<_>, PartiError>>()?;
        let handle = self.handle.clone();
        on_runtime(async move { handle.report_load(loads).await })
            .await
            .map_err(Into::into)
    }

    /// Pins `partition` to the worker with ID `worker_id`, for the whole fleet: the leader
    /// moves it there and keeps it there while that worker is live. Resolves once the pin is
    /// stored in KV. [`PartiError::InvalidPartition`] if `partition` is malformed.
    pub async fn pin(&self, partition: String, worker_id: u32) -> Result<(), PartiError> {
        let partition = PartitionId::parse(&partition)?;
        let handle = self.handle.clone();
        on_runtime(async move { handle.pin(partition, WorkerId(worker_id)).await })
            .await
            .map_err(Into::into)
    }

    /// Removes `partition`'s pin (nothing happens if it has none); the partition stays where
    /// it is until a plan moves it. [`PartiError::InvalidPartition`] if it is malformed.
    pub async fn unpin(&self, partition: String) -> Result<(), PartiError> {
        let partition = PartitionId::parse(&partition)?;
        let handle = self.handle.clone();
        on_runtime(async move { handle.unpin(partition).await })
            .await
            .map_err(Into::into)
    }

    /// Moves this worker's partitions elsewhere; resolves when its share is empty.
    /// [`PartiError::Stopped`] if the worker stops first.
    pub async fn drain(&self) -> Result<(), PartiError> {
        let handle = self.handle.clone();
        on_runtime(async move { handle.drain().await })
            .await
            .map_err(Into::into)
    }

    /// Stops gracefully and hands the partitions off now, like Kafka's `close()`: revokes
    /// every partition (awaiting `RebalanceListener.onRevoked`), steps down as leader and
    /// deletes the lease, so the leader reassigns at once. Bounded by `shutdown_timeout_ms`
    /// (then [`PartiError::Timeout`]); stopping a stopped worker is fine.
    pub async fn stop(&self) -> Result<(), PartiError> {
        let handle = self.handle.clone();
        on_runtime(async move { handle.stop().await })
            .await
            .map_err(Into::into)
    }

    /// Stops for a restart that follows: like `stop`, but the lease is kept as departing and
    /// the share parked for `restart_grace_ms`, so a restarted instance with the same ID
    /// resumes it (nobody processes it meanwhile).
    pub async fn stop_for_restart(&self) -> Result<(), PartiError> {
        let handle = self.handle.clone();
        on_runtime(async move { handle.stop_for_restart().await })
            .await
            .map_err(Into::into)
    }

    /// Waits until the worker has stopped (however that came about).
    pub async fn wait_stopped(&self) {
        let handle = self.handle.clone();
        on_runtime(async move { handle.stopped().await }).await
    }

    /// Kills the worker at once, as a crash would: no revoke, no lease delete (its partitions
    /// move only when the lease expires). For tests and demos; use `stop` to leave.
    pub fn abort(&self) {
        self.handle.abort();
    }
}
