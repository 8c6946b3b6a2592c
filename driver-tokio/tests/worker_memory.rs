//! The tokio runner on the in-memory KV: a fleet of workers in one process owns every partition
//! exactly once, follows refreshes, hands partitions over on stop and drain, reports its events
//! in order, awaits `on_revoked` before a partition moves, and survives failing sources, KV
//! watches and listeners.

mod fleet_support;

use futures::future::BoxFuture;
use futures::StreamExt;
use parti::kv::{KvStore, MemoryKv, WatchError, WatchStream};
use parti::{
    Config, DriverWarning, Error, Event, EventStream, Partition, PartitionId, PartitionSource,
    RebalanceListener, SourceError, State, StaticSource, Warning, Worker,
};
use parti_core::{Bucket, KvOp, KvResult};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use fleet_support::{fast_config, partition_ids, partitions};

/// The fleet's timings, with the bounds these scenarios rely on.
fn config() -> Config {
    Config {
        expected_workers: Some(3),
        // Below lease_ttl - safety_margin: a worker does not renew its lease while it stops,
        // so a revoke that outlasts that fences it.
        revoke_timeout: Duration::from_millis(500),
        shutdown_timeout: Duration::from_secs(2),
        ..fast_config()
    }
}

/// How long a scenario may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// Every event of every worker of a fleet, in arrival order, and a signal when one arrives.
#[derive(Clone)]
struct Recorder {
    log: Arc<Mutex<Vec<(usize, Event)>>>,
    tick: watch::Sender<u64>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            log: Arc::default(),
            tick: watch::channel(0).0,
        }
    }

    /// Forwards the events of worker `index` into the log until its stream ends.
    fn follow(&self, index: usize, mut events: EventStream) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                me.log.lock().unwrap().push((index, event));
                me.tick.send_modify(|t| *t += 1);
            }
        });
    }

    fn events_of(&self, index: usize) -> Vec<Event> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Waits, event by event, until `cond` holds; panics with `what` after [`DEADLINE`].
    async fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let mut rx = self.tick.subscribe();
        let waited = tokio::time::timeout(DEADLINE, async {
            loop {
                if cond() {
                    return;
                }
                rx.changed().await.expect("recorder alive");
            }
        })
        .await;
        if waited.is_err() {
            panic!("timed out waiting until {what}");
        }
    }
}

/// Workers sharing one in-memory KV and one partition list.
struct Fleet {
    kv: MemoryKv,
    source: StaticSource,
    workers: Vec<Worker>,
    rec: Recorder,
}

impl Fleet {
    fn new(count: usize) -> Self {
        Fleet {
            kv: MemoryKv::new(config().lease_ttl),
            source: StaticSource::new(partitions(count)),
            workers: Vec::new(),
            rec: Recorder::new(),
        }
    }

    async fn start(n: usize, partitions: usize) -> Self {
        let mut fleet = Fleet::new(partitions);
        for _ in 0..n {
            fleet.add(Worker::builder()).await;
        }
        fleet
    }

    /// Starts one more worker from `builder` (KV, source and config filled in).
    async fn add(&mut self, builder: parti::WorkerBuilder) -> usize {
        let (handle, events) = builder
            .config(config())
            .memory(self.kv.clone())
            .source(self.source.clone())
            .start_with_events()
            .await
            .expect("worker starts");
        let index = self.workers.len();
        self.rec.follow(index, events);
        self.workers.push(handle);
        index
    }

    /// Does every partition of `expected` have exactly one owner among the running workers,
    /// and nobody own anything else?
    fn owned_exactly_once(&self, expected: &BTreeSet<PartitionId>) -> bool {
        let mut owners: BTreeMap<PartitionId, usize> = BTreeMap::new();
        for w in self.workers.iter().filter(|w| !w.is_stopped()) {
            for p in w.assignment() {
                *owners.entry(p).or_default() += 1;
            }
        }
        owners.len() == expected.len()
            && owners.iter().all(|(p, n)| *n == 1 && expected.contains(p))
    }

    async fn wait_owned(&self, expected: &BTreeSet<PartitionId>) {
        let what = format!("{} partitions are owned exactly once", expected.len());
        self.rec
            .wait_until(&what, || {
                self.owned_exactly_once(expected)
                    && self
                        .workers
                        .iter()
                        .filter(|w| !w.is_stopped())
                        .all(|w| w.state() == State::Stable)
            })
            .await;
    }

    fn leader(&self) -> usize {
        let leaders: Vec<usize> = (0..self.workers.len())
            .filter(|i| self.workers[*i].is_leader())
            .collect();
        assert_eq!(leaders.len(), 1, "exactly one leader");
        leaders[0]
    }

    async fn stop_all(&self) {
        for w in &self.workers {
            w.stop().await.expect("stop");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_own_every_partition_exactly_once() {
    let fleet = Fleet::start(3, 30).await;
    fleet.wait_owned(&partition_ids(30)).await;
    fleet.leader();
    let ids_claimed: BTreeSet<_> = fleet.workers.iter().map(|w| w.worker_id()).collect();
    assert_eq!(ids_claimed.len(), 3, "distinct worker IDs");
    for w in &fleet.workers {
        assert_eq!(w.assignment().len(), 10, "balanced");
        assert!(w.generation().is_some());
    }
    fleet.stop_all().await;
}

#[tokio::test(start_paused = true)]
async fn refresh_from_a_follower_adds_partitions() {
    let fleet = Fleet::start(3, 30).await;
    fleet.wait_owned(&partition_ids(30)).await;
    let follower = (0..3).find(|i| *i != fleet.leader()).unwrap();

    fleet.source.update(partitions(40));
    fleet.workers[follower].refresh_partitions().await.unwrap();
    fleet.wait_owned(&partition_ids(40)).await;

    // And shrinking works the same way, from the leader.
    fleet.source.update(partitions(12));
    fleet.workers[fleet.leader()]
        .refresh_partitions()
        .await
        .unwrap();
    fleet.wait_owned(&partition_ids(12)).await;
    fleet.stop_all().await;
}

#[tokio::test(start_paused = true)]
async fn stopping_the_leader_hands_its_partitions_over() {
    let fleet = Fleet::start(3, 30).await;
    fleet.wait_owned(&partition_ids(30)).await;
    let leader = fleet.leader();

    fleet.workers[leader].stop().await.unwrap();
    let stopped = &fleet.workers[leader];
    assert!(stopped.is_stopped());
    assert_eq!(stopped.state(), State::Shutdown);
    assert!(stopped.assignment().is_empty());
    assert_eq!(stopped.worker_id(), None);

    // A new leader takes over and places the handed-off partitions.
    fleet.wait_owned(&partition_ids(30)).await;
    fleet.leader();
    // The stopped worker's event stream ended with its shutdown.
    fleet
        .rec
        .wait_until("the stopped worker reported Shutdown", || {
            fleet.rec.events_of(leader).iter().any(|e| {
                matches!(
                    e,
                    Event::StateChanged {
                        to: State::Shutdown,
                        ..
                    }
                )
            })
        })
        .await;
    // Stopping again is fine; asking a stopped worker for work is not.
    stopped.stop().await.unwrap();
    assert_eq!(stopped.refresh_partitions().await, Err(Error::Stopped));
    assert_eq!(stopped.drain().await, Err(Error::Stopped));
    fleet.stop_all().await;
}

#[tokio::test(start_paused = true)]
async fn drain_resolves_once_the_share_is_empty() {
    let fleet = Fleet::start(3, 30).await;
    fleet.wait_owned(&partition_ids(30)).await;
    let drained = (0..3).find(|i| *i != fleet.leader()).unwrap();

    tokio::time::timeout(DEADLINE, fleet.workers[drained].drain())
        .await
        .expect("drain resolves")
        .unwrap();
    assert!(fleet.workers[drained].assignment().is_empty());
    assert!(fleet.rec.events_of(drained).contains(&Event::Drained));
    // Draining again resolves at once.
    fleet.workers[drained].drain().await.unwrap();

    // The two others own everything; the drained worker stops for good.
    fleet.workers[drained].stop().await.unwrap();
    fleet.wait_owned(&partition_ids(30)).await;
    fleet.stop_all().await;
}

#[tokio::test(start_paused = true)]
async fn a_pin_from_any_worker_moves_the_partition_and_is_listed_until_unpinned() {
    let fleet = Fleet::start(3, 30).await;
    fleet.wait_owned(&partition_ids(30)).await;
    let follower = (0..3).find(|i| *i != fleet.leader()).unwrap();
    let target = (0..3).find(|i| *i != follower).unwrap();
    let p = fleet.workers[follower]
        .assignment()
        .into_iter()
        .next()
        .unwrap();
    let target_id = fleet.workers[target].worker_id().unwrap();

    // The follower pins one of its own partitions to another worker.
    fleet.workers[follower]
        .pin(p.clone(), target_id)
        .await
        .unwrap();
    let listed = parti::pins::pins(&fleet.kv).await.unwrap();
    assert_eq!(listed, BTreeMap::from([(p.clone(), target_id)]));
    fleet
        .rec
        .wait_until("the pinned partition moved to its worker", || {
            fleet.workers[target].assignment().contains(&p)
                && fleet.owned_exactly_once(&partition_ids(30))
        })
        .await;

    fleet.workers[target].unpin(p.clone()).await.unwrap();
    assert!(parti::pins::pins(&fleet.kv).await.unwrap().is_empty());
    // Garbage under a pin key is an error naming it, not a panic.
    let junk = KvOp::Put {
        key: "ctl.pin.p0001".into(),
        value: b"not json".to_vec(),
    };
    assert!(matches!(
        fleet.kv.execute(Bucket::Assign, junk).await,
        KvResult::Written { .. }
    ));
    let err = parti::pins::pins(&fleet.kv).await.unwrap_err();
    assert!(err.to_string().contains("pin"), "{err}");
    fleet.wait_owned(&partition_ids(30)).await;
    fleet.stop_all().await;
    let stopped = fleet.workers[follower].pin(p, target_id).await;
    assert_eq!(stopped, Err(Error::Stopped));
}

#[tokio::test(start_paused = true)]
async fn events_are_ordered_and_generations_increase() {
    let fleet = Fleet::start(3, 30).await;
    fleet.wait_owned(&partition_ids(30)).await;
    // Move partitions around: a refresh adds some, a drain moves a worker's share away.
    fleet.source.update(partitions(45));
    fleet.workers[0].refresh_partitions().await.unwrap();
    fleet.wait_owned(&partition_ids(45)).await;
    fleet.workers[1].drain().await.unwrap();
    fleet.wait_owned(&partition_ids(45)).await;
    fleet.stop_all().await;

    for w in 0..3 {
        let events = fleet.rec.events_of(w);
        // States chain: every transition starts where the previous one ended.
        let states: Vec<(State, State)> = events
            .iter()
            .filter_map(|e| match e {
                Event::StateChanged { from, to } => Some((*from, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(states[0].0, State::Init, "worker {w}: {states:?}");
        for pair in states.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "worker {w}: {states:?}");
        }
        assert_eq!(states.last().unwrap().1, State::Shutdown);
        // The ID comes before any assignment.
        let claimed = events
            .iter()
            .position(|e| matches!(e, Event::IdClaimed(_)))
            .expect("an ID was claimed");
        // Generations increase; the held set follows assigned / revoked exactly.
        let mut held = BTreeSet::new();
        let mut last_gen = None;
        for (i, e) in events.iter().enumerate() {
            if let Event::AssignmentChanged {
                generation,
                assigned,
                revoked,
                lost,
                assignment,
            } = e
            {
                assert!(i > claimed, "worker {w}: assignment before the ID");
                // Dropping everything on a stop repeats the last generation; applying a
                // generation always moves forward.
                let dropped_all = assignment.is_empty() && assigned.is_empty();
                assert!(
                    last_gen < Some(*generation) || (dropped_all && last_gen == Some(*generation)),
                    "worker {w}: generation {generation} after {last_gen:?}"
                );
                last_gen = Some(*generation);
                assert!(assigned.is_disjoint(&held), "worker {w}: re-assigned");
                assert!(revoked.is_subset(&held), "worker {w}: revoked unheld");
                assert!(lost.is_empty(), "worker {w}: lost {lost:?} with no fault");
                held.extend(assigned.iter().cloned());
                held.retain(|p| !revoked.contains(p));
                assert_eq!(&held, assignment, "worker {w}: assignment = held");
            }
        }
        assert!(held.is_empty(), "worker {w}: stop revoked everything");
    }
}

/// What the rebalance listeners saw, in order, across the fleet.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    Assigned(usize, PartitionId),
    RevokeStarted(usize, PartitionId),
    RevokeDone(usize, PartitionId),
}

struct Listener {
    worker: usize,
    log: Arc<Mutex<Vec<Call>>>,
}

impl RebalanceListener for Listener {
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut log = self.log.lock().unwrap();
            log.extend(
                partitions
                    .iter()
                    .map(|p| Call::Assigned(self.worker, p.clone())),
            );
        })
    }

    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.log.lock().unwrap().extend(
                partitions
                    .iter()
                    .map(|p| Call::RevokeStarted(self.worker, p.clone())),
            );
            // In-flight work being finished (simulated; well within revoke_timeout).
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.log.lock().unwrap().extend(
                partitions
                    .iter()
                    .map(|p| Call::RevokeDone(self.worker, p.clone())),
            );
        })
    }
}

#[tokio::test(start_paused = true)]
async fn on_revoked_finishes_before_the_partition_is_granted_elsewhere() {
    let log: Arc<Mutex<Vec<Call>>> = Arc::default();
    let mut fleet = Fleet::new(30);
    for w in 0..3 {
        let listener = Listener {
            worker: w,
            log: log.clone(),
        };
        fleet
            .add(Worker::builder().rebalance_listener(listener))
            .await;
    }
    fleet.wait_owned(&partition_ids(30)).await;

    // A fourth worker joins: partitions move from the three to it.
    let listener = Listener {
        worker: 3,
        log: log.clone(),
    };
    fleet
        .add(Worker::builder().rebalance_listener(listener))
        .await;
    fleet
        .rec
        .wait_until("the newcomer owns partitions", || {
            fleet.workers[3].assignment().len() >= 7 && fleet.owned_exactly_once(&partition_ids(30))
        })
        .await;
    fleet.stop_all().await;

    // Replay the log: nobody is told a partition is assigned while another worker has not
    // finished revoking it.
    let log = log.lock().unwrap().clone();
    let mut owner: BTreeMap<PartitionId, usize> = BTreeMap::new();
    let mut moved = 0;
    for call in &log {
        match call {
            Call::Assigned(w, p) => {
                if let Some(prev) = owner.insert(p.clone(), *w) {
                    panic!("{p} assigned to {w} while {prev} still held it: {log:?}");
                }
                moved += usize::from(*w == 3);
            }
            Call::RevokeStarted(w, p) => assert_eq!(owner.get(p), Some(w)),
            Call::RevokeDone(w, p) => assert_eq!(owner.remove(p), Some(*w)),
        }
    }
    assert!(moved >= 7, "the newcomer got its share: {moved}");
}

/// Panics on its first call, fails on the next two, then lists the partitions.
struct FlakySource {
    calls: AtomicUsize,
    partitions: Vec<Partition>,
}

impl PartitionSource for FlakySource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call == 0 {
            panic!("source exploded");
        }
        Box::pin(async move {
            if call < 3 {
                Err(SourceError::new("database unreachable"))
            } else {
                Ok(self.partitions.clone())
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_is_reported_and_retried_until_it_recovers() {
    let source = Arc::new(FlakySource {
        calls: AtomicUsize::new(0),
        partitions: partitions(30),
    });
    let mut fleet = Fleet::new(0);
    for _ in 0..3 {
        // `source()` below would replace this one: build with the flaky source directly.
        let (handle, events) = Worker::builder()
            .config(config())
            .memory(fleet.kv.clone())
            .source(source.clone())
            .start_with_events()
            .await
            .unwrap();
        fleet.rec.follow(fleet.workers.len(), events);
        fleet.workers.push(handle);
    }
    fleet.wait_owned(&partition_ids(30)).await;

    let failures: Vec<String> = fleet
        .rec
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Warning(Warning::SourceFailed(reason)) => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures[0].contains("source exploded"), "{failures:?}");
    assert!(failures[1].contains("database unreachable"), "{failures:?}");
    assert!(source.calls.load(Ordering::SeqCst) >= 4);
    fleet.stop_all().await;
}

/// A KV whose watches fail: the first attempt of each watch is refused, and every stream
/// breaks after a few entries.
struct BrokenWatches {
    inner: MemoryKv,
    attempts: AtomicUsize,
}

impl KvStore for BrokenWatches {
    fn execute(&self, bucket: Bucket, op: KvOp) -> BoxFuture<'static, KvResult> {
        self.inner.execute(bucket, op)
    }

    fn watch(
        &self,
        bucket: Bucket,
        filters: Vec<String>,
        after: Option<u64>,
    ) -> BoxFuture<'static, Result<WatchStream, WatchError>> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) % 3 == 0 {
            return Box::pin(async { Err(WatchError("no responders".into())) });
        }
        let inner = self.inner.watch(bucket, filters, after);
        Box::pin(async move {
            let stream = inner.await?;
            let broken = stream.take(4).chain(futures::stream::once(async {
                Err(WatchError("connection reset".into()))
            }));
            Ok(Box::pin(broken) as WatchStream)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn broken_watches_are_rebuilt_and_resumed() {
    let mut fleet = Fleet::new(30);
    for _ in 0..3 {
        let kv = Arc::new(BrokenWatches {
            inner: fleet.kv.clone(),
            attempts: AtomicUsize::new(0),
        });
        let (handle, events) = Worker::builder()
            .config(config())
            .kv(kv)
            .source(fleet.source.clone())
            .start_with_events()
            .await
            .unwrap();
        fleet.rec.follow(fleet.workers.len(), events);
        fleet.workers.push(handle);
    }
    fleet.wait_owned(&partition_ids(30)).await;
    let warnings = fleet
        .rec
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                Event::DriverWarning(DriverWarning::WatchFailed { retry_in, .. })
                    if *retry_in >= Duration::from_millis(50) && *retry_in <= Duration::from_secs(2)
            )
        })
        .count();
    assert!(warnings >= 3, "watch failures reported: {warnings}");
    fleet.stop_all().await;
}

/// A [`MemoryKv`] whose operations `intercept` may take over: `Some(future)` answers the
/// operation instead of the KV.
struct InterceptKv<F> {
    inner: MemoryKv,
    intercept: F,
}

impl<F> KvStore for InterceptKv<F>
where
    F: Fn(&KvOp) -> Option<BoxFuture<'static, KvResult>> + Send + Sync + 'static,
{
    fn execute(&self, bucket: Bucket, op: KvOp) -> BoxFuture<'static, KvResult> {
        (self.intercept)(&op).unwrap_or_else(|| self.inner.execute(bucket, op))
    }

    fn watch(
        &self,
        bucket: Bucket,
        filters: Vec<String>,
        after: Option<u64>,
    ) -> BoxFuture<'static, Result<WatchStream, WatchError>> {
        self.inner.watch(bucket, filters, after)
    }
}

#[tokio::test(start_paused = true)]
async fn hung_kv_operations_time_out_and_the_worker_recovers() {
    let mut fleet = Fleet::new(30);
    // The first write of every key hangs forever (the runner times it out).
    let seen = Mutex::new(BTreeSet::new());
    let kv = Arc::new(InterceptKv {
        inner: fleet.kv.clone(),
        intercept: move |op: &KvOp| {
            let first = !matches!(op, KvOp::Get { .. } | KvOp::List { .. })
                && seen.lock().unwrap().insert(op.key().to_owned());
            first.then(|| Box::pin(futures::future::pending()) as BoxFuture<'static, KvResult>)
        },
    });
    let (handle, events) = Worker::builder()
        .config(Config {
            expected_workers: Some(1),
            ..config()
        })
        .kv(kv)
        .kv_timeout(Duration::from_millis(300))
        .source(fleet.source.clone())
        .start_with_events()
        .await
        .unwrap();
    fleet.rec.follow(0, events);
    fleet.workers.push(handle);
    fleet.wait_owned(&partition_ids(30)).await;
    let timed_out = fleet.rec.events_of(0).iter().any(|e| {
        matches!(e, Event::Warning(Warning::KvFailed { reason, .. }) if reason.contains("TimedOut"))
    });
    assert!(timed_out, "a timed-out write was reported");
    fleet.stop_all().await;
}

/// Panics in every callback.
struct PanickingListener;

impl RebalanceListener for PanickingListener {
    fn on_assigned<'a>(&'a self, _: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        Box::pin(async { panic!("listener bug") })
    }

    fn on_revoked<'a>(&'a self, _: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        panic!("listener bug while revoking")
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_listener_is_reported_and_its_revoke_confirmed_at_once() {
    let mut fleet = Fleet::new(10);
    // Alone: the cold-start window ends without the two other expected workers.
    let index = fleet
        .add(Worker::builder().rebalance_listener(PanickingListener))
        .await;
    fleet.wait_owned(&partition_ids(10)).await;
    // The stop revokes through the panicking `on_revoked`: a callback that panicked has
    // returned, so the revoke is confirmed then, not left to the revoke timeout (the rule of
    // every language: see `RebalanceListener`).
    fleet.workers[index].stop().await.unwrap();
    // Every event up to the stop is recorded once the last state change is.
    fleet
        .rec
        .wait_until("the worker reports its shutdown", || {
            fleet.rec.events_of(index).iter().any(|e| {
                matches!(
                    e,
                    Event::StateChanged {
                        to: State::Shutdown,
                        ..
                    }
                )
            })
        })
        .await;
    let events = fleet.rec.events_of(index);
    let panics: Vec<&'static str> = events
        .iter()
        .filter_map(|e| match e {
            Event::DriverWarning(DriverWarning::ListenerPanicked { callback, .. }) => {
                Some(*callback)
            }
            _ => None,
        })
        .collect();
    assert_eq!(panics, ["on_assigned", "on_revoked"]);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Warning(Warning::RevokeTimedOut(_)))),
        "the revoke was confirmed when the callback panicked: {events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_worker() {
    let kv = MemoryKv::new(config().lease_ttl);
    let (handle, events) = Worker::builder()
        .config(config())
        .memory(kv)
        .partitions(partitions(3))
        .start_with_events()
        .await
        .unwrap();
    let clone = handle.clone();
    drop(handle);
    drop(clone);
    let all: Vec<Event> = tokio::time::timeout(DEADLINE, events.collect())
        .await
        .expect("the event stream ends");
    assert!(
        all.iter().any(|e| matches!(
            e,
            Event::StateChanged {
                to: State::Shutdown,
                ..
            }
        )),
        "{all:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn connection_events_reach_the_core() {
    let mut fleet = Fleet::new(5);
    let (up, events) = tokio::sync::mpsc::unbounded_channel();
    let w = fleet.add(Worker::builder().connection_events(events)).await;
    fleet.wait_owned(&partition_ids(5)).await;

    up.send(false).unwrap();
    fleet
        .rec
        .wait_until("the worker is degraded and alerts", || {
            fleet.workers[w].state() == State::Degraded
                && fleet.rec.events_of(w).iter().any(|e| {
                    matches!(
                        e,
                        Event::Alert {
                            level: parti::AlertLevel::Info,
                            ..
                        }
                    )
                })
        })
        .await;
    up.send(true).unwrap();
    fleet.wait_owned(&partition_ids(5)).await;
    fleet.stop_all().await;
}

#[tokio::test]
async fn the_builder_requires_a_kv_a_source_and_a_valid_config() {
    let kv = MemoryKv::new(Duration::from_secs(6));
    let err = Worker::builder()
        .partitions(partitions(1))
        .start()
        .await
        .unwrap_err();
    assert_eq!(err, Error::Missing("kv"));
    let err = Worker::builder()
        .memory(kv.clone())
        .start()
        .await
        .unwrap_err();
    assert_eq!(err, Error::Missing("source"));
    let bad = Config {
        lease_ttl: Duration::from_millis(100),
        ..Config::default()
    };
    let err = Worker::builder()
        .config(bad)
        .memory(kv)
        .partitions(partitions(1))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid(parti_core::Error::InvalidConfig {
                field: "lease_ttl",
                ..
            })
        ),
        "{err}"
    );
}

/// Two workers sharing 10 partitions on one KV with a restart grace of an hour, once settled.
async fn pair_with_long_restart_grace() -> (Worker, Worker) {
    let config = Config {
        restart_grace: Duration::from_secs(3600),
        expected_workers: Some(2),
        ..config()
    };
    let kv = MemoryKv::new(config.lease_ttl);
    let start = || {
        Worker::builder()
            .config(config.clone())
            .memory(kv.clone())
            .partitions(partitions(10))
            .start()
    };
    let (a, b) = (start().await.unwrap(), start().await.unwrap());
    let settled =
        || a.assignment().len() + b.assignment().len() == 10 && !a.assignment().is_empty();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !(settled() && a.state() == State::Stable && b.state() == State::Stable) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the pair settles");
    (a, b)
}

#[tokio::test(start_paused = true)]
async fn stop_hands_off_at_once_and_stop_for_restart_parks_the_share() {
    // stop(): the survivor owns everything long before the hour of restart grace.
    let (a, b) = pair_with_long_restart_grace().await;
    a.stop().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while b.assignment().len() != 10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("stop() hands the partitions off without waiting for the restart grace");
    b.stop().await.unwrap();

    // stop_for_restart(): the share stays parked (nobody else gets it) within the grace. The
    // follower stops: a leader's stop adds a failover, whose race is not what this checks.
    let (x, y) = pair_with_long_restart_grace().await;
    let (a, b) = if x.is_leader() { (y, x) } else { (x, y) };
    let (parked, kept) = (a.assignment(), b.assignment());
    a.stop_for_restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        b.assignment(),
        kept,
        "{parked:?} stay parked for the restart"
    );
    b.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_worker_task_is_reported_stopped_with_a_final_event_and_an_error() {
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Once armed, every operation panics: a bug in a `KvStore` implementation (or in the
    // driver) that kills the worker's task.
    let trigger = armed.clone();
    let kv = Arc::new(InterceptKv {
        inner: MemoryKv::new(config().lease_ttl),
        intercept: move |_: &KvOp| {
            trigger.load(Ordering::SeqCst).then(|| {
                Box::pin(async { panic!("kv implementation bug") as KvResult })
                    as BoxFuture<'static, KvResult>
            })
        },
    });
    let (handle, mut first) = Worker::builder()
        .config(config())
        .kv(kv)
        .partitions(partitions(3))
        .start_with_events()
        .await
        .unwrap();
    let mut later = handle.events();
    assert!(!handle.is_stopped());
    // The next lease renewal panics inside the worker's task.
    armed.store(true, Ordering::SeqCst);
    let deadline = Duration::from_secs(30);
    for stream in [&mut first, &mut later] {
        let end = tokio::time::timeout(deadline, last_event(stream))
            .await
            .expect("the stream ends");
        assert!(
            matches!(
                &end,
                Some(Event::DriverWarning(DriverWarning::TaskPanicked(m))) if m.contains("kv implementation bug")
            ),
            "the last event says the task panicked: {end:?}"
        );
    }
    assert!(handle.is_stopped(), "a dead task is a stopped worker");
    let err = handle.refresh_partitions().await.unwrap_err();
    assert!(
        matches!(&err, Error::Crashed(m) if m.contains("kv implementation bug")),
        "{err:?}"
    );
    // A stream asked for afterwards ends at once; stopping is fine.
    assert!(handle.events().next().await.is_none());
    handle.stopped().await;
    handle.stop().await.unwrap();
}

/// The last event of `stream`, once it ended.
async fn last_event(stream: &mut EventStream) -> Option<Event> {
    let mut last = None;
    while let Some(e) = stream.next().await {
        last = Some(e);
    }
    last
}

/// A listener whose first `on_revoked` never returns; it keeps the set it believes it owns.
#[derive(Default)]
struct StuckOnce {
    owned: Mutex<BTreeSet<PartitionId>>,
    revokes: AtomicUsize,
}

impl RebalanceListener for StuckOnce {
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        self.owned
            .lock()
            .unwrap()
            .extend(partitions.iter().cloned());
        Box::pin(async {})
    }

    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        self.owned
            .lock()
            .unwrap()
            .retain(|p| !partitions.contains(p));
        if self.revokes.fetch_add(1, Ordering::SeqCst) == 0 {
            return Box::pin(futures::future::pending());
        }
        Box::pin(async {})
    }
}

#[tokio::test(start_paused = true)]
async fn the_listener_view_follows_the_core_across_a_revoke_timeout() {
    let listener = Arc::new(StuckOnce::default());
    let mut fleet = Fleet::new(20);
    let a = fleet
        .add(Worker::builder().rebalance_listener(listener.clone()))
        .await;
    let b = fleet.add(Worker::builder()).await;
    fleet.wait_owned(&partition_ids(20)).await;
    // A third worker joins: a's first revoke goes through the stuck on_revoked, the core drops
    // those partitions at the revoke timeout, and the newcomer gets them.
    let c = fleet.add(Worker::builder()).await;
    fleet.wait_owned(&partition_ids(20)).await;
    assert!(!fleet.workers[c].assignment().is_empty());
    assert!(fleet
        .rec
        .events_of(a)
        .iter()
        .any(|e| matches!(e, Event::Warning(Warning::RevokeTimedOut(_)))));
    // Everything comes back to a: the listener is told again, and its view, the handle's and
    // the core's agree.
    fleet.workers[b].stop().await.unwrap();
    fleet.workers[c].stop().await.unwrap();
    fleet.wait_owned(&partition_ids(20)).await;
    fleet
        .rec
        .wait_until("a's listener owns what a's core holds", || {
            *listener.owned.lock().unwrap() == fleet.workers[a].assignment()
        })
        .await;
    assert_eq!(fleet.workers[a].assignment(), partition_ids(20));
    fleet.stop_all().await;
}
