//! The subscription manager against a real nats-server: subscriptions follow the assigned set
//! (created, updated on rebalance, all gone after close), errors are clear and `close()`
//! joins them all, JetStream consumers are recreated so no message of a gained partition is
//! skipped or handled twice across a rebalance, and in Strict mode no partition is handled by
//! two workers at once.

mod fleet_support;

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use parti::kv::MemoryKv;
use parti::subscriptions::SubscriptionManagerBuilder;
use parti::testing::NatsServer;
use parti::{
    Config, DriverWarning, Event, EventStream, MessageHandler, PartitionId, SubjectTemplate,
    SubscriptionError, SubscriptionManager, Worker, WorkerHandle,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

use fleet_support::{fast_config, partition_ids, partitions};

/// How long anything expected may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

fn id(s: &str) -> PartitionId {
    PartitionId::parse(s).unwrap()
}

fn ids(names: &[&str]) -> BTreeSet<PartitionId> {
    names.iter().map(|s| id(s)).collect()
}

fn template() -> SubjectTemplate {
    SubjectTemplate::parse("work.{keys}").unwrap()
}

async fn connect(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.expect("connect")
}

/// One handler call: which worker, which partition, the payload, and whether it is the start
/// or the end of the call.
#[derive(Clone, Debug)]
struct Call {
    worker: usize,
    partition: PartitionId,
    payload: String,
    start: bool,
}

/// Every handler call (start and end) in the order they happened, every worker event, and a
/// signal on each.
#[derive(Clone)]
struct Log {
    calls: Arc<Mutex<Vec<Call>>>,
    events: Arc<Mutex<Vec<(usize, Event)>>>,
    tick: Arc<watch::Sender<u64>>,
}

impl Log {
    fn new() -> Self {
        Log {
            calls: Arc::default(),
            events: Arc::default(),
            tick: Arc::new(watch::channel(0).0),
        }
    }

    fn push(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        self.tick.send_modify(|t| *t += 1);
    }

    /// A handler for `worker` that logs the start and end of every call, `work` apart.
    fn handler(&self, worker: usize, work: Duration) -> MessageHandler {
        let log = self.clone();
        MessageHandler::new(move |partition, message| {
            let log = log.clone();
            async move {
                let payload = String::from_utf8_lossy(&message.payload).into_owned();
                let mut call = Call {
                    worker,
                    partition,
                    payload,
                    start: true,
                };
                log.push(call.clone());
                if !work.is_zero() {
                    // Simulated work: widens the window in which two owners would overlap.
                    tokio::time::sleep(work).await;
                }
                call.start = false;
                log.push(call);
            }
        })
    }

    /// Finished calls: (worker, partition, payload).
    fn handled(&self) -> Vec<(usize, PartitionId, String)> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| !c.start)
            .map(|c| (c.worker, c.partition.clone(), c.payload.clone()))
            .collect()
    }

    fn payloads(&self) -> Vec<String> {
        self.handled().into_iter().map(|(_, _, p)| p).collect()
    }

    /// Forwards a worker's events into the log.
    fn follow(&self, worker: usize, mut events: EventStream) {
        let log = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                log.events.lock().unwrap().push((worker, event));
                log.tick.send_modify(|t| *t += 1);
            }
        });
    }

    /// Waits, change by change, until `cond` holds; fails the test after [`DEADLINE`].
    async fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let mut rx = self.tick.subscribe();
        let waited = tokio::time::timeout(DEADLINE, async {
            loop {
                if cond() {
                    return;
                }
                rx.changed().await.expect("log alive");
            }
        })
        .await;
        if waited.is_err() {
            panic!("timed out waiting until {what}");
        }
    }

    /// Checks that no partition's handler calls of two workers overlap.
    fn assert_no_concurrent_owners(&self) {
        let calls = self.calls.lock().unwrap();
        let mut inside: HashMap<PartitionId, BTreeMap<usize, usize>> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            let workers = inside.entry(call.partition.clone()).or_default();
            if call.start {
                if let Some((other, _)) =
                    workers.iter().find(|(w, n)| **w != call.worker && **n > 0)
                {
                    panic!(
                        "partition {}: worker {} started a call (log entry {i}) while worker \
                         {other} was still handling one",
                        call.partition, call.worker
                    );
                }
                *workers.entry(call.worker).or_default() += 1;
            } else {
                *workers.get_mut(&call.worker).expect("started") -= 1;
            }
        }
    }
}

/// Waits for a message on a plain subscription: everything `client` published before it has
/// been processed by the server and delivered.
async fn barrier(client: &async_nats::Client) {
    let subject = client.new_inbox();
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.publish(subject, "barrier".into()).await.unwrap();
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("barrier message")
        .expect("subscription open");
}

async fn publish(client: &async_nats::Client, subject: &str, payload: &str) {
    client
        .publish(subject.to_owned(), payload.to_owned().into())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Core NATS, standalone (the seed's four cases)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn creation_subscribes_every_assigned_partition() {
    let server = NatsServer::start().unwrap();
    let client = connect(&server).await;
    let log = Log::new();
    let manager =
        SubscriptionManager::core_nats(client.clone(), template(), log.handler(0, Duration::ZERO));

    let assigned = ids(&["a", "b.c", "d"]);
    manager.update(&assigned).await.unwrap();
    assert_eq!(manager.partitions(), assigned);

    publish(&client, "work.a", "1").await;
    publish(&client, "work.b.c", "2").await;
    publish(&client, "work.d", "3").await;
    log.wait_until("each partition's message is handled", || {
        log.handled().len() == 3
    })
    .await;
    let mut seen: Vec<(PartitionId, String)> =
        log.handled().into_iter().map(|(_, p, m)| (p, m)).collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (id("a"), "1".to_string()),
            (id("b.c"), "2".to_string()),
            (id("d"), "3".to_string())
        ]
    );
    manager.close().await.unwrap();
}

#[tokio::test]
async fn update_on_rebalance_starts_gained_and_stops_revoked_partitions() {
    let server = NatsServer::start().unwrap();
    let client = connect(&server).await;
    let log = Log::new();
    let manager =
        SubscriptionManager::core_nats(client.clone(), template(), log.handler(0, Duration::ZERO));

    manager.update(&ids(&["a", "b"])).await.unwrap();
    publish(&client, "work.a", "a1").await;
    publish(&client, "work.b", "b1").await;
    log.wait_until("a1 and b1 are handled", || log.handled().len() == 2)
        .await;

    // Rebalance: a is revoked, c gained, b kept.
    manager.update(&ids(&["b", "c"])).await.unwrap();
    assert_eq!(manager.partitions(), ids(&["b", "c"]));
    publish(&client, "work.a", "a2").await;
    publish(&client, "work.b", "b2").await;
    publish(&client, "work.c", "c2").await;
    log.wait_until("b2 and c2 are handled", || log.handled().len() >= 4)
        .await;
    // a2 was published before b2 and c2 on the same connection: it would have arrived first.
    barrier(&client).await;
    let mut payloads = log.payloads();
    payloads.sort();
    assert_eq!(payloads, vec!["a1", "b1", "b2", "c2"]);
    manager.close().await.unwrap();
}

#[tokio::test]
async fn close_removes_every_subscription() {
    let server = NatsServer::start().unwrap();
    let client = connect(&server).await;
    let log = Log::new();
    let manager =
        SubscriptionManager::core_nats(client.clone(), template(), log.handler(0, Duration::ZERO));
    manager.update(&ids(&["a", "b"])).await.unwrap();

    assert_eq!(manager.close().await, Ok(()));
    assert!(manager.is_closed());
    assert!(manager.partitions().is_empty());

    publish(&client, "work.a", "late").await;
    publish(&client, "work.b", "late").await;
    barrier(&client).await;
    assert!(log.handled().is_empty(), "no subscription is left");

    // Closed for good: updates are refused, closing again is fine.
    assert_eq!(
        manager.update(&ids(&["a"])).await,
        Err(SubscriptionError::Closed)
    );
    assert_eq!(manager.close().await, Ok(()));
}

#[tokio::test]
async fn bad_input_and_cancellation_get_clear_errors() {
    let server = NatsServer::start().unwrap();
    let client = connect(&server).await;
    let log = Log::new();
    let manager =
        SubscriptionManager::core_nats(client.clone(), template(), log.handler(0, Duration::ZERO));

    // A cancelled operation changes nothing.
    assert_eq!(
        manager
            .update_until(&ids(&["a"]), std::future::ready(()))
            .await,
        Err(SubscriptionError::Cancelled)
    );
    assert!(manager.partitions().is_empty());

    // Empty and malformed keys.
    assert_eq!(
        manager.update([Vec::<&str>::new()]).await,
        Err(SubscriptionError::EmptyKeys)
    );
    assert!(matches!(
        manager.update([["ok"], ["not ok"]]).await,
        Err(SubscriptionError::InvalidPartition(_))
    ));

    // Duplicates, given as IDs or as key lists.
    assert_eq!(
        manager.update([id("a"), id("b"), id("a")]).await,
        Err(SubscriptionError::DuplicatePartition { partition: id("a") })
    );
    assert_eq!(
        manager.update([vec!["x", "y"], vec!["x", "y"]]).await,
        Err(SubscriptionError::DuplicatePartition {
            partition: id("x.y")
        })
    );
    assert!(
        manager.partitions().is_empty(),
        "refused updates change nothing"
    );

    // Templates: the error names the problem; a key the partition lacks; a shared subject.
    let err = SubjectTemplate::parse("work.{nope}").unwrap_err();
    assert!(
        err.to_string().contains("unknown placeholder `{nope}`"),
        "{err}"
    );
    let by_second_key = SubscriptionManager::core_nats(
        client.clone(),
        SubjectTemplate::parse("work.{key1}").unwrap(),
        log.handler(0, Duration::ZERO),
    );
    assert_eq!(
        by_second_key.update(&ids(&["a"])).await,
        Err(SubscriptionError::MissingKey {
            partition: id("a"),
            index: 1,
            keys: 1
        })
    );
    assert_eq!(
        by_second_key.update(&ids(&["a.x", "b.x"])).await,
        Err(SubscriptionError::SubjectConflict {
            subject: "work.x".into(),
            first: id("a.x"),
            second: id("b.x"),
        })
    );
    by_second_key.close().await.unwrap();

    // Valid input still works afterwards.
    manager.update([["a"]]).await.unwrap();
    assert_eq!(manager.partitions(), ids(&["a"]));
    manager.close().await.unwrap();
}

/// A handler that blocks partition `a` until released, and says when it entered.
fn blocking_handler(entered: Arc<Notify>, release: Arc<Notify>) -> MessageHandler {
    MessageHandler::new(move |_, _| {
        let (entered, release) = (entered.clone(), release.clone());
        async move {
            entered.notify_one();
            release.notified().await;
        }
    })
}

#[tokio::test]
async fn waiting_updates_are_cancelled_by_their_cancel_future_and_by_close() {
    let server = NatsServer::start().unwrap();
    let client = connect(&server).await;
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let manager = SubscriptionManager::core_nats(
        client.clone(),
        template(),
        blocking_handler(entered.clone(), release.clone()),
    );
    manager.update(&ids(&["a"])).await.unwrap();
    publish(&client, "work.a", "stuck").await;
    tokio::time::timeout(DEADLINE, entered.notified())
        .await
        .expect("handler entered");

    // Revoking `a` waits for its in-flight call: cancel that wait. (`yield_now` is pending
    // on its first poll, so the update starts, then resolves on the next.)
    assert_eq!(
        manager
            .update_until(Vec::<PartitionId>::new(), tokio::task::yield_now())
            .await,
        Err(SubscriptionError::Cancelled)
    );
    assert!(
        manager.partitions().is_empty(),
        "the revoke goes on in the background"
    );

    // Gaining `a` again waits for its previous call too; closing cancels that wait.
    let regain = tokio::spawn({
        let manager = manager.clone();
        async move { manager.update(&ids(&["a"])).await }
    });
    // On this single-threaded runtime the update runs until it waits.
    tokio::task::yield_now().await;
    assert_eq!(manager.partitions(), ids(&["a"]), "the update is waiting");
    assert!(!regain.is_finished());
    let close = tokio::spawn({
        let manager = manager.clone();
        async move { manager.close().await }
    });
    let result = tokio::time::timeout(DEADLINE, regain)
        .await
        .expect("update ends");
    assert_eq!(result.unwrap(), Err(SubscriptionError::Cancelled));
    release.notify_one();
    assert_eq!(
        tokio::time::timeout(DEADLINE, close)
            .await
            .unwrap()
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        manager.update(&ids(&["a"])).await,
        Err(SubscriptionError::Closed)
    );
}

#[tokio::test]
async fn close_returns_every_error_joined() {
    let server = NatsServer::start().unwrap();
    let client = connect(&server).await;
    let reported = Arc::new(Mutex::new(Vec::new()));
    let tick = Arc::new(Notify::new());
    let handler = MessageHandler::new(|partition: PartitionId, _| async move {
        if partition.as_str() != "stuck" {
            panic!("cannot handle {partition}");
        }
        std::future::pending::<()>().await;
    });
    let manager = SubscriptionManager::builder(template(), handler)
        .drain_timeout(Duration::from_millis(100))
        .on_error({
            let (reported, tick) = (reported.clone(), tick.clone());
            move |e| {
                reported.lock().unwrap().push(e.clone());
                tick.notify_one();
            }
        })
        .core_nats(client.clone());
    manager.update(&ids(&["a", "b", "stuck"])).await.unwrap();
    publish(&client, "work.a", "x").await;
    publish(&client, "work.b", "x").await;
    publish(&client, "work.stuck", "x").await;
    tokio::time::timeout(DEADLINE, async {
        while reported.lock().unwrap().len() < 2 {
            tick.notified().await;
        }
    })
    .await
    .expect("both panics reported");
    // The panicking partitions keep working.
    publish(&client, "work.a", "y").await;

    // `stuck` never returns: close cancels it after the drain timeout, and says so.
    let joined = manager.close().await.unwrap_err();
    let mut panicked: Vec<String> = joined
        .errors()
        .iter()
        .filter_map(|e| match e {
            SubscriptionError::HandlerPanicked { partition, .. } => Some(partition.to_string()),
            _ => None,
        })
        .collect();
    panicked.sort();
    panicked.dedup();
    assert_eq!(panicked, vec!["a", "b"], "{joined}");
    assert!(
        joined.errors().contains(&SubscriptionError::DrainTimedOut {
            partition: id("stuck"),
            after: Duration::from_millis(100),
        }),
        "{joined}"
    );
    assert!(joined.len() >= 3);
    let text = joined.to_string();
    assert!(
        text.contains("cannot handle a") && text.contains("cannot handle b"),
        "{text}"
    );
    assert!(text.contains("partition stuck did not return"), "{text}");
}

#[tokio::test]
async fn failed_subscribes_are_retried_with_backoff_and_all_reported() {
    let server = NatsServer::start().unwrap();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .event_callback(move |event| {
            let closed_tx = closed_tx.clone();
            async move {
                if matches!(event, async_nats::Event::Closed) {
                    let _ = closed_tx.send(());
                }
            }
        })
        .connect(server.url())
        .await
        .unwrap();
    // A drained (closed) client refuses every further subscription.
    client.drain().await.unwrap();
    tokio::time::timeout(DEADLINE, closed_rx.recv())
        .await
        .expect("the client closes");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let manager = SubscriptionManager::builder(template(), MessageHandler::new(|_, _| async {}))
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .on_error(move |e| {
            let _ = tx.send(e.clone());
        })
        .core_nats(client);

    let failures = async {
        let mut seen = 0;
        while seen < 4 {
            rx.recv().await.expect("errors reported");
            seen += 1;
        }
    };
    let result = tokio::time::timeout(DEADLINE, manager.update_until(&ids(&["a"]), failures))
        .await
        .expect("the cancel future resolves");
    assert_eq!(result, Err(SubscriptionError::Cancelled));

    let joined = manager.close().await.unwrap_err();
    assert!(joined.len() >= 4, "{joined}");
    let attempts: Vec<u32> = joined
        .errors()
        .iter()
        .filter_map(|e| match e {
            SubscriptionError::Subscribe {
                partition,
                subject,
                attempt,
                ..
            } => {
                assert_eq!((partition, subject.as_str()), (&id("a"), "work.a"));
                Some(*attempt)
            }
            SubscriptionError::SubscriptionLost { .. } => None,
            other => panic!("unexpected error {other}"),
        })
        .collect();
    assert!(attempts.len() >= 3, "{joined}");
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "{attempts:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// JetStream, standalone
// ---------------------------------------------------------------------------------------------

async fn work_queue(js: &jetstream::Context, name: &str) -> stream::Stream {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec!["work.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("create stream")
}

async fn js_publish(js: &jetstream::Context, subject: &str, payload: String) {
    js.publish(subject.to_owned(), payload.into())
        .await
        .unwrap()
        .await
        .expect("stored");
}

async fn consumer_names(stream: &stream::Stream) -> Vec<String> {
    stream
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|n| n.unwrap())
        .collect()
}

#[tokio::test]
async fn jetstream_consumer_is_recreated_so_a_gained_backlog_is_not_skipped() {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(connect(&server).await);
    let work = work_queue(&js, "WORK").await;
    let log = Log::new();
    let manager = SubscriptionManager::builder(template(), log.handler(0, Duration::ZERO))
        .jetstream(js.clone(), "WORK", "standalone")
        .unwrap();

    manager.update(&ids(&["a"])).await.unwrap();
    for i in 0..5 {
        js_publish(&js, "work.a", format!("a{i}")).await;
        js_publish(&js, "work.b", format!("b{i}")).await;
    }
    log.wait_until("a's messages are handled", || log.handled().len() == 5)
        .await;
    assert!(log.payloads().iter().all(|p| p.starts_with('a')));

    // b's messages wait in the stream; gaining b (a new consumer) delivers them all.
    manager.update(&ids(&["a", "b"])).await.unwrap();
    js_publish(&js, "work.a", "a5".into()).await;
    log.wait_until("every message is handled", || log.handled().len() == 11)
        .await;
    let mut payloads = log.payloads();
    payloads.sort();
    let mut expected: Vec<String> = (0..5).map(|i| format!("b{i}")).collect();
    expected.extend((0..6).map(|i| format!("a{i}")));
    expected.sort();
    assert_eq!(payloads, expected, "each message exactly once");
    // In order within a partition.
    let b_order: Vec<String> = log
        .handled()
        .into_iter()
        .filter(|(_, p, _)| *p == id("b"))
        .map(|(_, _, m)| m)
        .collect();
    assert_eq!(b_order, (0..5).map(|i| format!("b{i}")).collect::<Vec<_>>());

    assert_eq!(consumer_names(&work).await, vec!["standalone".to_string()]);
    manager.close().await.unwrap();
    assert!(
        consumer_names(&work).await.is_empty(),
        "the consumer is removed on close"
    );
}

#[tokio::test]
async fn jetstream_consumer_creation_is_retried_until_the_stream_exists() {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(connect(&server).await);
    let log = Log::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let manager = SubscriptionManager::builder(template(), log.handler(0, Duration::ZERO))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .on_error(move |e| {
            let _ = tx.send(e.clone());
        })
        .jetstream(js.clone(), "LATE", "late")
        .unwrap();

    let update = tokio::spawn({
        let manager = manager.clone();
        async move { manager.update(&ids(&["a"])).await }
    });
    let first = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let create_failed = |e: &SubscriptionError| {
        matches!(e, SubscriptionError::Consumer { stream, action: "create", attempt: 1, .. }
            if stream == "LATE")
    };
    assert!(create_failed(&first), "{first:?}");
    assert!(!update.is_finished(), "the update waits for the consumer");

    work_queue(&js, "LATE").await;
    tokio::time::timeout(DEADLINE, update)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    js_publish(&js, "work.a", "hello".into()).await;
    log.wait_until("the message is handled", || log.handled().len() == 1)
        .await;

    // Every failed attempt was kept for close().
    let joined = manager.close().await.unwrap_err();
    assert!(joined.errors().iter().all(|e| matches!(
        e,
        SubscriptionError::Consumer {
            action: "create",
            ..
        }
    )));
    assert!(joined.errors().contains(&first));
}

#[tokio::test]
async fn jetstream_refuses_a_stream_that_is_not_a_work_queue() {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(connect(&server).await);
    js.create_stream(stream::Config {
        name: "LIMITS".into(),
        subjects: vec!["work.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let manager = SubscriptionManager::builder(template(), MessageHandler::new(|_, _| async {}))
        .on_error(move |e| {
            let _ = tx.send(e.clone());
        })
        .jetstream(js, "LIMITS", "c")
        .unwrap();
    let first_error = async {
        rx.recv().await;
    };
    assert_eq!(
        manager.update_until(&ids(&["a"]), first_error).await,
        Err(SubscriptionError::Cancelled)
    );
    let joined = manager.close().await.unwrap_err();
    assert!(joined.to_string().contains("needs WorkQueue"), "{joined}");
    // Names NATS would refuse are refused up front.
    let builder: SubscriptionManagerBuilder =
        SubscriptionManager::builder(template(), MessageHandler::new(|_, _| async {}));
    let server_js = jetstream::new(connect(&server).await);
    assert_eq!(
        builder.jetstream(server_js, "WORK", "a.b").unwrap_err(),
        SubscriptionError::InvalidName {
            what: "consumer",
            name: "a.b".into()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Wired into workers
// ---------------------------------------------------------------------------------------------

/// The fleet's timings, with room for the subscription manager's revokes.
fn config() -> Config {
    Config {
        revoke_timeout: Duration::from_millis(800),
        shutdown_timeout: Duration::from_secs(3),
        ..fast_config()
    }
}

async fn start(
    builder: parti::WorkerBuilder,
    kv: &MemoryKv,
    n: usize,
    log: &Log,
    index: usize,
) -> WorkerHandle {
    let (handle, events) = builder
        .config(config())
        .memory(kv.clone())
        .partitions(partitions(n))
        .start_with_events()
        .await
        .expect("worker starts");
    log.follow(index, events);
    handle
}

/// Both workers own a non-empty share, together exactly `expected`, disjoint.
fn split_between(a: &WorkerHandle, b: &WorkerHandle, expected: &BTreeSet<PartitionId>) -> bool {
    let (sa, sb) = (a.assignment(), b.assignment());
    !sa.is_empty()
        && !sb.is_empty()
        && sa.is_disjoint(&sb)
        && sa.union(&sb).cloned().collect::<BTreeSet<_>>() == *expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_handoff_never_has_two_workers_handling_a_partition() {
    const N: usize = 6;
    let server = NatsServer::start().unwrap();
    let kv = MemoryKv::new(config().lease_ttl);
    let log = Log::new();
    let work = Duration::from_millis(2);

    // A publisher that keeps every partition busy until told to stop.
    let publisher = connect(&server).await;
    let publishing = Arc::new(AtomicBool::new(true));
    let pump = tokio::spawn({
        let (publisher, publishing) = (publisher.clone(), publishing.clone());
        async move {
            let mut i = 0u64;
            while publishing.load(Ordering::Relaxed) {
                let subject = format!("work.p{}", i % N as u64);
                publish(&publisher, &subject, &format!("m{i}")).await;
                i += 1;
                if i % N as u64 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });

    let w0 = start(
        Worker::builder().subscribe(connect(&server).await, template(), log.handler(0, work)),
        &kv,
        N,
        &log,
        0,
    )
    .await;
    let expected = partition_ids(N);
    log.wait_until("worker 0 owns and handles every partition", || {
        w0.assignment() == expected
            && expected
                .iter()
                .all(|p| log.handled().iter().any(|(w, q, _)| *w == 0 && q == p))
    })
    .await;

    let w1 = start(
        Worker::builder().subscribe(connect(&server).await, template(), log.handler(1, work)),
        &kv,
        N,
        &log,
        1,
    )
    .await;
    log.wait_until(
        "the partitions are split and worker 1 handles its share",
        || {
            split_between(&w0, &w1, &expected)
                && w1
                    .assignment()
                    .iter()
                    .all(|p| log.handled().iter().any(|(w, q, _)| *w == 1 && q == p))
        },
    )
    .await;
    // Worker 0 still handles what it kept.
    let kept = w0.assignment();
    let before = log.handled().len();
    log.wait_until("worker 0 handles its remaining share", || {
        kept.iter().all(|p| {
            log.handled()[before..]
                .iter()
                .any(|(w, q, _)| *w == 0 && q == p)
        })
    })
    .await;

    publishing.store(false, Ordering::Relaxed);
    pump.await.unwrap();
    w0.stop().await.unwrap();
    w1.stop().await.unwrap();

    // The moved partitions were handled by both workers, never at once.
    let moved = w1_moved(&log);
    assert!(
        !moved.is_empty(),
        "some partitions moved from worker 0 to worker 1"
    );
    log.assert_no_concurrent_owners();

    // Stopped workers have no subscription left.
    let handled = log.handled().len();
    for i in 0..N {
        publish(&publisher, &format!("work.p{i}"), "after stop").await;
    }
    barrier(&publisher).await;
    assert_eq!(
        log.handled().len(),
        handled,
        "nothing is handled after stop"
    );
    let warnings: Vec<Event> = log
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e.clone())
        .filter(|e| matches!(e, Event::DriverWarning(DriverWarning::Subscription(_))))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// Partitions handled by worker 0 and later by worker 1.
fn w1_moved(log: &Log) -> BTreeSet<PartitionId> {
    let handled = log.handled();
    let by = |w: usize| -> BTreeSet<PartitionId> {
        handled
            .iter()
            .filter(|(x, _, _)| *x == w)
            .map(|(_, p, _)| p.clone())
            .collect()
    };
    by(0).intersection(&by(1)).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_rebalance_between_two_workers_handles_every_message_exactly_once() {
    const N: usize = 4;
    let server = NatsServer::start().unwrap();
    let kv = MemoryKv::new(config().lease_ttl);
    let log = Log::new();
    let work = Duration::from_millis(1);
    let js = jetstream::new(connect(&server).await);
    let stream = work_queue(&js, "WORK").await;
    let mut published = 0usize;
    let mut publish_batch = |js: jetstream::Context, count: usize| {
        let first = published;
        published += count;
        async move {
            for i in first..first + count {
                js_publish(&js, &format!("work.p{}", i % N), format!("m{i}")).await;
            }
        }
    };

    // A backlog before anyone consumes.
    publish_batch(js.clone(), 100).await;
    let consumer = |index: usize, log: &Log| {
        let log = log.clone();
        let server_url = server.url();
        async move {
            let js = jetstream::new(async_nats::connect(server_url).await.unwrap());
            Worker::builder().consume(js, "WORK", template(), log.handler(index, work))
        }
    };
    let w0 = start(consumer(0, &log).await, &kv, N, &log, 0).await;
    let expected = partition_ids(N);
    log.wait_until("worker 0 handles the backlog", || {
        log.handled().len() == 100
    })
    .await;
    assert_eq!(w0.assignment(), expected);
    assert_eq!(consumer_names(&stream).await, vec!["parti-w0".to_string()]);

    // Messages keep coming while worker 1 joins and the partitions are split.
    let during = tokio::spawn(publish_batch(js.clone(), 300));
    let w1 = start(consumer(1, &log).await, &kv, N, &log, 1).await;
    log.wait_until("the partitions are split", || {
        split_between(&w0, &w1, &expected)
    })
    .await;
    during.await.unwrap();
    // And after the split.
    publish_batch(js.clone(), 100).await;
    log.wait_until("every message is handled", || {
        log.handled().len() >= published
    })
    .await;

    // Exactly once: no gap, no duplicate, even for the partitions that moved.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in log.payloads() {
        *counts.entry(p).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handled twice: {twice:?}");
    assert_eq!(counts.len(), published, "every message is handled");
    assert!(
        !w1_moved(&log).is_empty(),
        "some partitions moved to worker 1"
    );
    log.assert_no_concurrent_owners();

    let mut names = consumer_names(&stream).await;
    names.sort();
    assert_eq!(names, vec!["parti-w0".to_string(), "parti-w1".to_string()]);
    w0.stop().await.unwrap();
    w1.stop().await.unwrap();
    assert!(
        consumer_names(&stream).await.is_empty(),
        "consumers are removed on stop"
    );
    assert_eq!(
        stream.clone().info().await.unwrap().state.messages,
        0,
        "all acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reports_subscription_errors_as_driver_warnings() {
    let server = NatsServer::start().unwrap();
    let kv = MemoryKv::new(config().lease_ttl);
    let log = Log::new();
    let client = connect(&server).await;
    let handler =
        MessageHandler::new(|p: PartitionId, _| async move { panic!("bad message for {p}") });
    let w = start(
        Worker::builder().subscribe(client.clone(), template(), handler),
        &kv,
        1,
        &log,
        0,
    )
    .await;
    let panicked = || {
        log.events.lock().unwrap().iter().any(|(_, e)| {
            matches!(
                e,
                Event::DriverWarning(DriverWarning::Subscription(
                    SubscriptionError::HandlerPanicked { partition, .. }
                )) if partition.as_str() == "p0"
            )
        })
    };
    log.wait_until("the worker owns p0", || w.assignment().len() == 1)
        .await;
    // The subscription starts in the background after the assignment: publish until a
    // message meets it.
    let pump = tokio::spawn({
        let client = client.clone();
        async move {
            loop {
                publish(&client, "work.p0", "boom").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    log.wait_until("the handler's panic is reported", panicked)
        .await;
    pump.abort();
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_worker_refuses_a_bad_stream_name() {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(connect(&server).await);
    let result = Worker::builder()
        .config(config())
        .memory(MemoryKv::new(config().lease_ttl))
        .partitions(partitions(1))
        .consume(
            js,
            "bad.name",
            template(),
            MessageHandler::new(|_, _| async {}),
        )
        .start()
        .await;
    assert_eq!(
        result.unwrap_err(),
        parti::Error::Subscription(SubscriptionError::InvalidName {
            what: "stream",
            name: "bad.name".into()
        })
    );
}
