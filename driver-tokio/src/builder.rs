//! Putting a worker together: configuration, KV, partition source, strategy, listener.

use crate::handle::{Snapshot, TaskEnd};
use crate::kv::{KvStore, MemoryKv, NatsKv};
use crate::listener::NoListener;
use crate::runner::{Runner, RunnerParts};
use crate::{Error, EventStream, PartitionSource, RebalanceListener, StaticSource, Worker};
use futures::FutureExt;
use parti_core::strategy::Strategy;
use parti_core::{Config, Partition};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Default of [`WorkerBuilder::claim_timeout`].
pub const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_secs(30);

/// Default of [`WorkerBuilder::source_timeout`].
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures and starts a worker. A KV store and a partition source are required.
#[must_use = "a builder does nothing until start() is called"]
pub struct WorkerBuilder {
    config: Config,
    kv: Option<Arc<dyn KvStore>>,
    /// The leases' TTL of a KV given through [`WorkerBuilder::memory`], checked against the
    /// config's `lease_ttl` on start.
    memory_lease_ttl: Option<Duration>,
    source: Option<Arc<dyn PartitionSource>>,
    /// Why the list given through [`WorkerBuilder::partitions`] is invalid, reported on start.
    invalid_partitions: Option<parti_core::Error>,
    strategy: Option<Box<dyn Strategy>>,
    listener: Arc<dyn RebalanceListener>,
    connection: Option<mpsc::UnboundedReceiver<bool>>,
    kv_timeout: Option<Duration>,
    source_timeout: Duration,
    claim_timeout: Duration,
    /// Set by `subscribe` / `consume` (subscriptions/worker.rs).
    pub(crate) subscription: Option<crate::subscriptions::SubscriptionSpec>,
    #[cfg(feature = "metrics")]
    metrics: Option<Arc<crate::metrics::Families>>,
}

impl Default for WorkerBuilder {
    fn default() -> Self {
        WorkerBuilder {
            config: Config::default(),
            kv: None,
            memory_lease_ttl: None,
            source: None,
            invalid_partitions: None,
            strategy: None,
            listener: Arc::new(NoListener),
            connection: None,
            kv_timeout: None,
            source_timeout: DEFAULT_SOURCE_TIMEOUT,
            claim_timeout: DEFAULT_CLAIM_TIMEOUT,
            subscription: None,
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("kv", &self.kv.is_some())
            .field("source", &self.source.is_some())
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// The protocol configuration. An `instance_token` of 0 is replaced by a random one.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The KV store every worker of the fleet shares (required, or use
    /// [`WorkerBuilder::memory`] / [`WorkerBuilder::nats`]).
    pub fn kv(mut self, kv: Arc<dyn KvStore>) -> Self {
        self.kv = Some(kv);
        self.memory_lease_ttl = None;
        self
    }

    /// Runs against an in-memory KV (tests, demos). Clones of a `MemoryKv` share one store:
    /// give each worker of an in-process fleet a clone of the same one.
    ///
    /// The store expires leases itself, so it must be created with the config's lease TTL
    /// (`MemoryKv::new(config.lease_ttl)`): otherwise [`WorkerBuilder::start`] fails with
    /// [`Error::Invalid`] naming both durations.
    pub fn memory(self, kv: MemoryKv) -> Self {
        let lease_ttl = kv.lease_ttl();
        let mut builder = self.kv(Arc::new(kv));
        builder.memory_lease_ttl = Some(lease_ttl);
        builder
    }

    /// Runs against NATS JetStream KV.
    pub fn nats(self, kv: NatsKv) -> Self {
        self.kv(Arc::new(kv))
    }

    /// The application's partition source (required, or use [`WorkerBuilder::partitions`]).
    /// Only the leader reads it, so give every worker an equivalent source.
    pub fn source(mut self, source: impl PartitionSource) -> Self {
        self.source = Some(Arc::new(source));
        self.invalid_partitions = None;
        self
    }

    /// A fixed partition list (a [`StaticSource`]; to change it later, build the
    /// `StaticSource` yourself, keep a clone and pass it to [`WorkerBuilder::source`]). A list
    /// with a partition twice, or whose total weight overflows `u64`, fails the start.
    pub fn partitions(self, partitions: Vec<Partition>) -> Self {
        let invalid = parti_core::partition::validate_partitions(&partitions).err();
        let mut builder = self.source(StaticSource::new(partitions));
        builder.invalid_partitions = invalid;
        builder
    }

    /// The placement strategy used while this worker leads (default `Balanced`).
    pub fn strategy(mut self, strategy: Box<dyn Strategy>) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Told when partitions are assigned and revoked (default: nobody).
    pub fn rebalance_listener(mut self, listener: impl RebalanceListener) -> Self {
        self.listener = Arc::new(listener);
        self
    }

    /// Connection up (`true`) / down (`false`) notifications for the core (degraded mode in
    /// Relaxed handoff, faster fencing decisions in Strict).
    pub fn connection_events(mut self, events: mpsc::UnboundedReceiver<bool>) -> Self {
        self.connection = Some(events);
        self
    }

    /// How long one KV operation may take before the core is told `TimedOut` (its outcome is
    /// then unknown); a listing gets three times as long. Default: the heartbeat interval, at
    /// least 1 s.
    pub fn kv_timeout(mut self, timeout: Duration) -> Self {
        self.kv_timeout = Some(timeout);
        self
    }

    /// How long one call of the partition source may take before it counts as failed.
    /// Default [`DEFAULT_SOURCE_TIMEOUT`] (10 s).
    pub fn source_timeout(mut self, timeout: Duration) -> Self {
        self.source_timeout = timeout;
        self
    }

    /// Records this worker's metrics (`parti_*`, see the README's list) into the application's
    /// `registry`, the one it serves on `/metrics`. Several workers may share a registry: their
    /// series differ by the `prefix` and `worker_id` labels, and parti's families are
    /// registered into a registry only once. The families are the process's: every registry
    /// they are in shows every worker of the process that records metrics.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, registry: &mut crate::metrics::Registry) -> Self {
        self.metrics = Some(crate::metrics::register(registry));
        self
    }

    /// How long [`WorkerBuilder::start`] waits for the worker to claim an ID before it stops
    /// the worker and fails with [`Error::NoId`]. Default 30 s. A claim takes one or two KV
    /// round trips; it waits longer only while every ID of `id_min..=id_max` is taken (it
    /// retries each `lease_ttl`) or the KV does not answer.
    pub fn claim_timeout(mut self, timeout: Duration) -> Self {
        self.claim_timeout = timeout;
        self
    }

    /// Validates the configuration, starts the worker on the current tokio runtime and waits
    /// until it has claimed its ID.
    ///
    /// When this returns, [`Worker::worker_id`] is `Some`, [`Worker::state`] is
    /// past [`State::ClaimingId`](parti_core::State::ClaimingId) (usually `Election` or
    /// `WaitingAssignment`), and [`Worker::assignment`] is still empty: partitions come
    /// with the first generation the leader commits (after its cold-start window), announced
    /// by [`crate::Event::AssignmentChanged`]. If no ID is claimed within
    /// [`WorkerBuilder::claim_timeout`], the worker is stopped and this fails with
    /// [`Error::NoId`]; if it stops first, with [`Error::Stopped`].
    ///
    /// Events emitted before [`Worker::events`] is called are not replayed; use
    /// [`WorkerBuilder::start_with_events`] to see them all.
    pub async fn start(self) -> Result<Worker, Error> {
        let timeout = self.claim_timeout;
        let handle = self.launch(None)?;
        handle.claimed(timeout).await?;
        Ok(handle)
    }

    /// Like [`WorkerBuilder::start`], with an event stream that sees every event from the
    /// first one on.
    pub async fn start_with_events(self) -> Result<(Worker, EventStream), Error> {
        let timeout = self.claim_timeout;
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = self.launch(Some(tx))?;
        handle.claimed(timeout).await?;
        Ok((handle, EventStream { rx }))
    }

    fn launch(
        mut self,
        subscriber: Option<mpsc::UnboundedSender<crate::Event>>,
    ) -> Result<Worker, Error> {
        let kv = self.kv.take().ok_or(Error::Missing("kv"))?;
        let source = self.source.take().ok_or(Error::Missing("source"))?;
        if let Some(e) = self.invalid_partitions.take() {
            return Err(e.into());
        }
        if self.config.instance_token == 0 {
            self.config.instance_token = random_token();
        }
        self.config.validate()?;
        self.check_memory_lease_ttl()?;
        let kv_timeout = self
            .kv_timeout
            .unwrap_or(self.config.heartbeat_interval.max(Duration::from_secs(1)));
        let shutdown_timeout = self.config.shutdown_timeout;
        // At error level, so the span is enabled (and its fields shown) whatever level of the
        // worker's events a filter lets through.
        let span = tracing::error_span!(
            "worker",
            prefix = %self.config.bucket_prefix,
            instance = %format_args!("{:016x}", self.config.instance_token),
            worker_id = tracing::field::Empty,
        );
        #[cfg(feature = "metrics")]
        let recorder = self
            .metrics
            .take()
            .map(|f| crate::metrics::Recorder::new(f, &self.config.bucket_prefix));
        let observer = crate::observe::Observer::new(
            span.clone(),
            #[cfg(feature = "metrics")]
            recorder,
        );
        let origin = tokio::time::Instant::now();
        let now = parti_core::Instant::ZERO;
        let core = match self.strategy.take() {
            Some(s) => parti_core::WorkerMachine::with_strategy(self.config, s, now)?,
            None => parti_core::WorkerMachine::new(self.config, now)?,
        };
        let initial = Snapshot {
            worker_id: None,
            is_leader: false,
            leader: None,
            state: core.state(),
            assignment: Arc::default(),
            generation: None,
            stopped: false,
        };
        let (snapshot_tx, snapshot_rx) = watch::channel(initial);
        // The listener alone, or the subscription manager around it.
        let subscriptions = crate::subscriptions::plug(
            self.subscription.take(),
            self.listener,
            core.config(),
            snapshot_rx.clone(),
        )?;
        // Unbounded, and bounded all the same: every command but `Subscribe` carries a reply
        // its caller awaits, so the queue holds at most one command per pending call.
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let end = Arc::new(TaskEnd::new(subscriber.clone()));
        let runner = Runner::new(RunnerParts {
            core,
            origin,
            kv,
            kv_timeout,
            source,
            source_timeout: self.source_timeout,
            subscriptions,
            commands: command_rx,
            connection: self.connection,
            subscribers: subscriber.into_iter().collect(),
            snapshot: snapshot_tx,
            observer,
        });
        // The supervisor: a panic of the runner is caught and recorded, and every event
        // stream ends, also when the task is aborted (the guard's drop).
        let guard_end = end.clone();
        let supervised = async move {
            let mut guard = EndGuard {
                end: guard_end,
                crash: None,
            };
            if let Err(panic) = AssertUnwindSafe(runner.run()).catch_unwind().await {
                guard.crash = Some(crate::listener::panic_message(panic.as_ref()));
            }
        };
        let task = tokio::spawn(tracing::Instrument::instrument(supervised, span));
        Ok(Worker {
            commands: command_tx,
            snapshot: snapshot_rx,
            shutdown_timeout,
            task: task.abort_handle(),
            end,
        })
    }

    /// A [`MemoryKv`] expires leases after its own TTL: one that differs from the config's
    /// `lease_ttl` would expire live workers' leases (shorter) or keep dead workers' (longer)
    /// against what every worker computes from the config.
    fn check_memory_lease_ttl(&self) -> Result<(), Error> {
        match self.memory_lease_ttl {
            Some(kv_ttl) if kv_ttl != self.config.lease_ttl => {
                Err(Error::Invalid(parti_core::Error::InvalidConfig {
                    field: "lease_ttl",
                    reason: format!(
                        "the MemoryKv expires leases after {kv_ttl:?} but the config's \
                         lease_ttl is {:?}: create the MemoryKv with the config's lease_ttl",
                        self.config.lease_ttl
                    ),
                }))
            }
            _ => Ok(()),
        }
    }
}

/// A random, non-zero instance token: the std hasher's per-process random keys, the wall clock,
/// the process ID and a counter.
fn random_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(wall.as_nanos());
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
}

/// Ends the task's record when the supervised future finishes or is dropped (aborted).
struct EndGuard {
    end: Arc<TaskEnd>,
    crash: Option<String>,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.end.finish(self.crash.take());
    }
}

#[cfg(test)]
mod tests {
    use super::random_token;

    #[test]
    fn random_tokens_differ_and_are_not_zero() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, 0);
        assert_ne!(a, b);
    }
}
