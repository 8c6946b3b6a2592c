//! Subscriptions wired into workers against a real nats-server: in Strict mode no partition is
//! handled by two workers at once, a JetStream rebalance handles every message exactly once, a
//! crashed worker's consumer does not keep its partitions from their next owner, a fenced
//! worker drops the messages it received for the partitions it lost, and subscription errors
//! and bad stream names reach the application.

mod fleet_support;
mod subscription_support;

use async_nats::jetstream;
use parti::kv::MemoryKv;
use parti::testing::NatsServer;
use parti::{Config, DriverWarning, Event, MessageHandler, PartitionId, SubscriptionError, Worker};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleet_support::{fast_config, partition_ids, partitions};
use subscription_support::*;

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
) -> Worker {
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
fn split_between(a: &Worker, b: &Worker, expected: &BTreeSet<PartitionId>) -> bool {
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

/// A worker killed with messages pulled and not acknowledged leaves its consumer behind, and the
/// server's inactive threshold keeps it until their ack wait expires (70 s here). Meanwhile the
/// work queue refuses the next owner's consumer ("filtered consumer not unique"): the next
/// owner deletes the stale one and handles the backlog, the unacknowledged messages included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_workers_consumer_is_taken_over_by_the_next_owner() {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    use futures::StreamExt;
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(connect(&server).await);
    let stream = work_queue(&js, "WORK").await;
    for i in 0..6 {
        js_publish(&js, &format!("work.p{}", i % 2), format!("m{i}")).await;
    }
    // The crashed worker 7: its consumer, two messages pulled and never acknowledged.
    {
        let crashed = jetstream::new(connect(&server).await);
        let consumer = crashed
            .get_stream("WORK")
            .await
            .unwrap()
            .create_consumer(pull::Config {
                durable_name: Some("parti-w7".into()),
                filter_subjects: vec!["work.p0".into(), "work.p1".into()],
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                inactive_threshold: Duration::from_secs(10),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut batch = consumer.fetch().max_messages(2).messages().await.unwrap();
        for _ in 0..2 {
            batch.next().await.unwrap().unwrap();
        }
    }
    let log = Log::new();
    let js_worker = jetstream::new(connect(&server).await);
    let w = start(
        Worker::builder().consume(
            js_worker,
            "WORK",
            template(),
            log.handler(0, Duration::ZERO),
        ),
        &MemoryKv::new(config().lease_ttl),
        2,
        &log,
        0,
    )
    .await;
    log.wait_until("the next owner handles all six messages", || {
        log.handled().len() >= 6
    })
    .await;
    assert_eq!(consumer_names(&stream).await, vec!["parti-w0".to_string()]);
    w.stop().await.unwrap();
    assert_eq!(stream.clone().info().await.unwrap().state.messages, 0);
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

/// A KV that fails every operation while `cut` is set (watches stay open): the worker's lease
/// renewals fail, so it fences itself, as a worker paused past its lease does.
struct CuttableKv {
    inner: MemoryKv,
    cut: Arc<AtomicBool>,
}

impl parti::kv::KvStore for CuttableKv {
    fn execute(
        &self,
        bucket: parti::parti_core::Bucket,
        op: parti::parti_core::KvOp,
    ) -> futures::future::BoxFuture<'static, parti::parti_core::KvResult> {
        if self.cut.load(Ordering::SeqCst) {
            return Box::pin(async { parti::parti_core::KvResult::Failed("cut".into()) });
        }
        self.inner.execute(bucket, op)
    }

    fn watch(
        &self,
        bucket: parti::parti_core::Bucket,
        filters: Vec<String>,
        after: Option<u64>,
    ) -> futures::future::BoxFuture<'static, Result<parti::kv::WatchStream, parti::kv::WatchError>>
    {
        self.inner.watch(bucket, filters, after)
    }
}

/// Signals `on_lost`, which a worker calls once the lost partitions' subscriptions are gone.
struct OnLost(Arc<tokio::sync::Notify>);

impl parti::RebalanceListener for OnLost {
    fn on_lost<'a>(&'a self, _: &'a BTreeSet<PartitionId>) -> futures::future::BoxFuture<'a, ()> {
        self.0.notify_one();
        Box::pin(async {})
    }
}

/// Partitions a worker lost (it fenced itself) may already be another worker's: the messages
/// received for them but not handled yet are dropped, never handled after the loss. (Found by
/// an operator's audit: a worker paused past its lease handled, on waking, 1,320 messages of
/// the 33 partitions it had lost, 957 of them handled by their new owners 7 s earlier.) A
/// graceful revoke still handles them (the drain), as the revoke test above shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_partition_drops_the_messages_it_received_but_did_not_handle() {
    let server = NatsServer::start().expect("nats-server");
    let client = connect(&server).await;
    let (entered, release) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let handled: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let (entered, release, handled) = (entered.clone(), release.clone(), handled.clone());
        MessageHandler::new(move |_, message| {
            let (entered, release, handled) = (entered.clone(), release.clone(), handled.clone());
            async move {
                let payload = String::from_utf8_lossy(&message.payload).into_owned();
                handled.lock().unwrap().push(payload.clone());
                if payload == "1" {
                    // the call in flight when the partition is lost
                    entered.notify_one();
                    release.notified().await;
                }
            }
        })
    };
    let cut = Arc::new(AtomicBool::new(false));
    let kv = CuttableKv {
        inner: MemoryKv::new(config().lease_ttl),
        cut: cut.clone(),
    };
    let log = Log::new();
    let lost = Arc::new(tokio::sync::Notify::new());
    let (worker, events) = Worker::builder()
        .config(Config {
            expected_workers: Some(1),
            ..config()
        })
        .kv(Arc::new(kv))
        .rebalance_listener(OnLost(lost.clone()))
        .partitions(partitions(1))
        .subscribe(client.clone(), template(), handler)
        .start_with_events()
        .await
        .expect("worker starts");
    log.follow(0, events);
    log.wait_until("the worker holds p0", || {
        worker.assignment() == partition_ids(1)
    })
    .await;
    // Until the subscription is live, messages go nowhere: publish until one is handled.
    let first = tokio::time::timeout(DEADLINE, async {
        loop {
            publish(&client, "work.p0", "1").await;
            tokio::select! {
                () = entered.notified() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });
    first.await.expect("the first message is handled");
    // Three more arrive while the handler is busy: received, queued behind the call.
    for payload in ["2", "3", "4"] {
        publish(&client, "work.p0", payload).await;
    }
    barrier(&client).await;
    cut.store(true, Ordering::SeqCst);
    log.wait_until("the worker fences and loses p0", || {
        log.events
            .lock()
            .unwrap()
            .iter()
            .any(|(_, e)| matches!(e, Event::AssignmentChanged { lost, .. } if !lost.is_empty()))
    })
    .await;
    release.notify_one();
    tokio::time::timeout(DEADLINE, lost.notified())
        .await
        .expect("on_lost once p0's subscription is gone");
    let handled = handled.lock().unwrap().clone();
    assert!(
        handled.iter().all(|p| p == "1"),
        "handled after the loss: {handled:?}"
    );
    drop(worker);
}
