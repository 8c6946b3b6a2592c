//! [`MemoryKv`]: the embedded KV backend, for `parti demo`, single-process fleets and fast tests.
//!
//! It wraps the simulator's pure [`MemKv`] (NATS semantics, time passed in) in a mutex, reads
//! the tokio clock, runs `max_age` expiry in a background task, and fans every change out to
//! watchers. Every change is applied and fanned out under the same lock, so watchers see the
//! bucket's changes in revision order, and a new watch registers atomically with the snapshot it
//! starts from: nothing is missed and nothing is delivered twice.

use super::{
    check_filters, invalid_key, valid_key, KvStore, MarkerFilter, WatchError, WatchStream,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use parti_core::sim::MemKv;
use parti_core::{filter_matches, Bucket, Entry, Instant, KvOp, KvResult, Operation};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// An in-memory KV with the two parti buckets and NATS semantics; cheap to clone (all clones
/// share one store).
///
/// - The leases bucket has `max_age = lease_ttl`; an expired lease is removed and a `Purge`
///   marker is written in its place (like NATS with `limit_markers`), pushed to watchers by a
///   background task that sleeps until the next expiry. The task starts with the first operation
///   or watch polled on a tokio runtime and ends when the last clone is dropped; expiry is also
///   applied before every operation, so results are right even without it.
/// - Time is read from `tokio::time::Instant`, so tests on a paused tokio clock
///   (`start_paused`) drive expiry too; outside a paused test it is the monotonic clock.
/// - History is off: only the latest entry of each key is kept (like parti's NATS buckets,
///   history 1). The latest delete or purge marker of each deleted key is kept too, which is
///   what a resumed watch delivers (see the [module docs](super)). Nothing is ever compacted
///   away, so memory grows with the number of distinct keys ever written.
/// - Watch streams never fail; they end when the last clone of the store is dropped.
#[derive(Clone)]
pub struct MemoryKv {
    shared: Arc<Shared>,
}

struct Shared {
    /// The moment `parti_core::Instant::ZERO` stands for.
    origin: tokio::time::Instant,
    state: Mutex<State>,
    /// Wakes the expiry task: a new, earlier expiry, or the store was dropped.
    wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

struct State {
    kv: MemKv,
    /// Per bucket, the marker of every key whose latest operation is a delete or purge.
    markers: BTreeMap<Bucket, BTreeMap<String, Entry>>,
    watchers: Vec<Watcher>,
    expiry_task_started: bool,
    /// The expiry the task sleeps until (`None`: until woken).
    scheduled: Option<Instant>,
}

struct Watcher {
    bucket: Bucket,
    filters: Vec<String>,
    markers: MarkerFilter,
    tx: mpsc::UnboundedSender<Entry>,
}

impl MemoryKv {
    /// An empty store whose leases bucket expires values `lease_ttl` after their last write
    /// (pass `Config::lease_ttl`).
    pub fn new(lease_ttl: Duration) -> Self {
        let mut kv = MemKv::new();
        kv.set_keep_history(false);
        kv.set_max_age(Bucket::Leases, Some(lease_ttl));
        MemoryKv {
            shared: Arc::new(Shared {
                origin: tokio::time::Instant::now(),
                state: Mutex::new(State {
                    kv,
                    markers: BTreeMap::new(),
                    watchers: Vec::new(),
                    expiry_task_started: false,
                    scheduled: None,
                }),
                wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// The `max_age` of the leases bucket (the lease TTL given to [`MemoryKv::new`]).
    pub fn lease_ttl(&self) -> Duration {
        self.shared
            .lock()
            .kv
            .max_age(Bucket::Leases)
            .unwrap_or_default()
    }

    /// Performs `op` now (expiring what is due first) and fans the change out.
    fn apply(&self, bucket: Bucket, op: &KvOp) -> KvResult {
        if !matches!(op, KvOp::List { .. }) && !valid_key(op.key()) {
            return invalid_key(op.key());
        }
        let mut state = self.shared.lock();
        let now = self.shared.now();
        self.start_expiry_task(&mut state);
        state.expire(now);
        let (result, change) = state.kv.apply(now, bucket, op);
        if let Some(entry) = change {
            state.publish(entry);
            state.wake_expiry_if_earlier(&self.shared.wake);
        }
        result
    }

    /// Registers a watch and returns its receiver, already holding the initial entries.
    fn register(
        &self,
        bucket: Bucket,
        filters: Vec<String>,
        after: Option<u64>,
    ) -> mpsc::UnboundedReceiver<Entry> {
        // Unbounded like a NATS watch's push consumer: the watcher (the worker's loop) reads
        // every entry as it comes; the KV's own writes are paced by the workers' requests.
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.shared.lock();
        let now = self.shared.now();
        self.start_expiry_task(&mut state);
        state.expire(now);
        let mut initial = state.kv.snapshot(bucket, &filters);
        if let Some(after) = after {
            initial.retain(|e| e.revision > after);
            let markers = state
                .markers
                .get(&bucket)
                .into_iter()
                .flat_map(|m| m.values());
            initial.extend(
                markers
                    .filter(|e| e.revision > after)
                    .filter(|e| filters.iter().any(|f| filter_matches(f, &e.key)))
                    .cloned(),
            );
            initial.sort_by_key(|e| e.revision);
        }
        let mut markers = MarkerFilter::new(after);
        for entry in initial {
            if markers.admit(&entry.key, entry.operation) {
                // The receiver is still in our hands: this cannot fail.
                let _ = tx.send(entry);
            }
        }
        state.watchers.push(Watcher {
            bucket,
            filters,
            markers,
            tx,
        });
        rx
    }

    /// Starts the expiry task once, if we are on a tokio runtime.
    fn start_expiry_task(&self, state: &mut State) {
        if state.expiry_task_started {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.expiry_task_started = true;
        let weak = Arc::downgrade(&self.shared);
        let wake = self.shared.wake.clone();
        runtime.spawn(async move {
            loop {
                let deadline = {
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    let mut state = shared.lock();
                    state.expire(shared.now());
                    state.scheduled = state.kv.next_expiry();
                    state.scheduled.map(|t| shared.origin + t.since_origin())
                };
                match deadline {
                    Some(deadline) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(deadline) => {}
                            () = wake.notified() => {}
                        }
                    }
                    None => wake.notified().await,
                }
            }
        });
    }
}

impl Shared {
    fn now(&self) -> Instant {
        Instant::from_origin(tokio::time::Instant::now().saturating_duration_since(self.origin))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Expires what is due at `now` and fans the purge markers out.
    fn expire(&mut self, now: Instant) {
        for entry in self.kv.expire(now) {
            self.publish(entry);
        }
    }

    /// Records `entry` as its key's latest change and sends it to every matching watcher,
    /// dropping watchers whose stream is gone.
    fn publish(&mut self, entry: Entry) {
        let markers = self.markers.entry(entry.bucket).or_default();
        if entry.operation == Operation::Put {
            markers.remove(&entry.key);
        } else {
            markers.insert(entry.key.clone(), entry.clone());
        }
        self.watchers.retain_mut(|w| {
            if w.bucket == entry.bucket
                && w.filters.iter().any(|f| filter_matches(f, &entry.key))
                && w.markers.admit(&entry.key, entry.operation)
            {
                w.tx.send(entry.clone()).is_ok()
            } else {
                !w.tx.is_closed()
            }
        });
    }

    /// Wakes the expiry task if a write made the next expiry earlier than its deadline.
    fn wake_expiry_if_earlier(&self, wake: &Notify) {
        if !self.expiry_task_started {
            return;
        }
        let next = self.kv.next_expiry();
        let earlier = match (next, self.scheduled) {
            (Some(next), Some(scheduled)) => next < scheduled,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier {
            wake.notify_one();
        }
    }
}

impl KvStore for MemoryKv {
    fn execute(&self, bucket: Bucket, op: KvOp) -> BoxFuture<'static, KvResult> {
        let this = self.clone();
        async move { this.apply(bucket, &op) }.boxed()
    }

    fn watch(
        &self,
        bucket: Bucket,
        filters: Vec<String>,
        after: Option<u64>,
    ) -> BoxFuture<'static, Result<WatchStream, WatchError>> {
        let this = self.clone();
        async move {
            let filters = check_filters(&filters)?;
            let mut rx = this.register(bucket, filters, after);
            let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok);
            Ok(stream.boxed())
        }
        .boxed()
    }
}

impl fmt::Debug for MemoryKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("MemoryKv")
            .field("leases_revision", &state.kv.revision(Bucket::Leases))
            .field("assign_revision", &state.kv.revision(Bucket::Assign))
            .field("watchers", &state.watchers.len())
            .finish_non_exhaustive()
    }
}
