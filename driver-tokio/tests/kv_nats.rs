//! The NATS backend (`NatsKv` over a real nats-server 2.15) has the same semantics as the
//! in-memory one (the shared checks of tests/common), creates its buckets safely under a race,
//! refuses a bucket with contradicting settings, and survives a server kill and restart.

mod common;

use futures::StreamExt;
use parti::kv::{ConnectionEvents, KvStore, NatsError, NatsKv, NatsOptions};
use parti::testing::NatsServer;
use parti_core::{Bucket, Config, KvResult, Operation};
use std::time::{Duration, Instant};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

fn config(lease_ttl: Duration) -> Config {
    Config {
        bucket_prefix: "t".into(),
        lease_ttl,
        ..Config::default()
    }
}

fn options(server: &NatsServer) -> NatsOptions {
    NatsOptions {
        request_timeout: REQUEST_TIMEOUT,
        ping_interval: Duration::from_millis(500),
        ..NatsOptions::new(server.url())
    }
}

async fn connect(server: &NatsServer, lease_ttl: Duration) -> NatsKv {
    let (kv, _events) = NatsKv::connect(&options(server), &config(lease_ttl))
        .await
        .expect("connect");
    kv
}

async fn fresh(lease_ttl: Duration) -> (NatsServer, NatsKv) {
    let server = NatsServer::start().expect("start nats-server");
    let kv = connect(&server, lease_ttl).await;
    (server, kv)
}

#[tokio::test]
async fn create_is_put_if_absent() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::create_is_put_if_absent(&kv).await;
}

#[tokio::test]
async fn update_is_a_cas_on_the_last_revision() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::update_is_a_cas_on_the_last_revision(&kv).await;
}

#[tokio::test]
async fn delete_checks_the_expected_revision() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::delete_checks_the_expected_revision(&kv).await;
}

#[tokio::test]
async fn get_returns_the_latest_entry() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::get_returns_the_latest_entry(&kv).await;
}

#[tokio::test]
async fn list_returns_live_keys_with_the_prefix() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::list_returns_live_keys_with_the_prefix(&kv).await;
}

#[tokio::test]
async fn watch_delivers_the_snapshot_then_changes_in_order() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::watch_delivers_the_snapshot_then_changes_in_order(&kv).await;
}

#[tokio::test]
async fn resumed_watch_delivers_exactly_the_later_changes() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::resumed_watch_delivers_exactly_the_later_changes(&kv).await;
}

#[tokio::test]
async fn watch_across_filters_keeps_revision_order() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::watch_across_filters_keeps_revision_order(&kv).await;
}

#[tokio::test]
async fn concurrent_creates_have_one_winner() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::concurrent_creates_have_one_winner(&kv).await;
}

#[tokio::test]
async fn markers_for_keys_already_gone_are_not_delivered() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::markers_for_keys_already_gone_are_not_delivered(&kv).await;
}

#[tokio::test]
async fn invalid_keys_and_filters_are_refused() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    common::invalid_keys_and_filters_are_refused(&kv).await;
}

#[tokio::test]
async fn lease_expiry_shows_up_as_a_purge_marker() {
    let ttl = Duration::from_secs(1);
    let (_server, kv) = fresh(ttl).await;
    common::lease_expiry_shows_up_as_a_purge_marker(&kv, ttl).await;
}

#[tokio::test]
async fn concurrent_bucket_creation_by_five_workers_succeeds() {
    let server = NatsServer::start().expect("start nats-server");
    let config = config(Duration::from_secs(6));
    let options = options(&server);
    let results =
        futures::future::join_all((0..5).map(|_| NatsKv::connect(&options, &config))).await;
    let stores: Vec<NatsKv> = results.into_iter().map(|r| r.expect("connect").0).collect();
    let revision = common::write(&stores[0], Bucket::Assign, common::put("gen", "g")).await;
    for kv in &stores {
        let KvResult::Value(Some(entry)) = kv.execute(Bucket::Assign, common::get("gen")).await
        else {
            panic!("every worker sees the same bucket");
        };
        assert_eq!(entry.revision, revision);
    }
}

#[tokio::test]
async fn an_existing_leases_bucket_with_another_ttl_is_refused() {
    let server = NatsServer::start().expect("start nats-server");
    connect(&server, Duration::from_secs(6)).await;
    let err = NatsKv::connect(&options(&server), &config(Duration::from_secs(3)))
        .await
        .expect_err("a different lease TTL must be refused");
    assert!(
        matches!(&err, NatsError::BucketMismatch { bucket, field: "max_age", .. } if bucket == "t-leases"),
        "{err}"
    );
}

#[tokio::test]
async fn connecting_to_no_server_fails() {
    let server = NatsServer::start().expect("start nats-server");
    let options = options(&server);
    drop(server);
    let err = NatsKv::connect(&options, &config(Duration::from_secs(6)))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, NatsError::Connect { .. }), "{err}");
}

async fn next_event(events: &mut ConnectionEvents) -> bool {
    tokio::time::timeout(common::PROMPT, events.recv())
        .await
        .expect("a connection event")
        .expect("events open")
}

#[tokio::test]
async fn a_watch_survives_a_server_kill_and_restart() {
    let mut server = NatsServer::start().expect("start nats-server");
    let (kv, mut events) = NatsKv::connect(&options(&server), &config(Duration::from_secs(6)))
        .await
        .expect("connect");
    assert!(next_event(&mut events).await, "connected at start");
    let mut watch = kv
        .watch(Bucket::Assign, vec!["worker.*".into()], None)
        .await
        .expect("watch");
    // A second watch is polled all along, as the driver's loop does.
    let mut polled = kv
        .watch(Bucket::Assign, vec!["worker.3".into()], None)
        .await
        .expect("watch");
    let (polled_tx, mut polled_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = polled.next().await {
            let _ = polled_tx.send(item);
        }
    });
    let before = common::write(&kv, Bucket::Assign, common::put("worker.1", "a")).await;
    common::expect(&mut watch, "worker.1", Operation::Put, "a").await;

    server.kill();
    assert!(!next_event(&mut events).await, "disconnected");

    // A request while the server is down ends within its budget, with an honest outcome.
    let started = Instant::now();
    let result = kv
        .execute(Bucket::Assign, common::put("worker.2", "lost?"))
        .await;
    assert!(
        matches!(result, KvResult::TimedOut | KvResult::Failed(_)),
        "{result:?}"
    );
    assert!(started.elapsed() < REQUEST_TIMEOUT + Duration::from_millis(500));
    let result = kv.execute(Bucket::Assign, common::get("worker.1")).await;
    assert!(
        matches!(result, KvResult::TimedOut | KvResult::Failed(_)),
        "{result:?}"
    );

    server.restart().expect("restart nats-server");
    assert!(next_event(&mut events).await, "reconnected");
    // The put sent while down had an unknown outcome: it may have landed after the reconnect.
    let deadline = Instant::now() + common::PROMPT;
    let after = loop {
        match kv
            .execute(Bucket::Assign, common::put("worker.3", "b"))
            .await
        {
            KvResult::Written { revision } => break revision,
            other => assert!(
                Instant::now() < deadline,
                "no write after restart: {other:?}"
            ),
        }
    };
    assert!(after > before, "file storage kept the revisions");
    let entry = tokio::time::timeout(common::PROMPT, polled_rx.recv())
        .await
        .expect("the polled watch delivers after the restart")
        .expect("open")
        .expect("no watch error");
    assert_eq!((entry.key.as_str(), entry.revision), ("worker.3", after));
    loop {
        let entry = common::next(&mut watch, common::PROMPT).await;
        assert_ne!(entry.key, "worker.1", "nothing is delivered twice");
        if entry.key == "worker.3" {
            assert_eq!((entry.revision, entry.operation), (after, Operation::Put));
            break;
        }
        assert_eq!(entry.key, "worker.2");
    }
    // And it keeps going.
    let later = common::write(&kv, Bucket::Assign, common::delete("worker.3", None)).await;
    let entry = common::next(&mut watch, common::PROMPT).await;
    assert_eq!(
        (entry.key.as_str(), entry.operation, entry.revision),
        ("worker.3", Operation::Delete, later)
    );
    assert_eq!(
        common::value(&kv, Bucket::Assign, "worker.1")
            .await
            .as_deref(),
        Some(&b"a"[..])
    );
}

#[tokio::test]
async fn overlapping_filters_are_watched_through_one_consumer() {
    let (_server, kv) = fresh(Duration::from_secs(6)).await;
    let b = Bucket::Assign;
    let mut watch = kv
        .watch(b, vec!["a.*".into(), "*.b".into()], None)
        .await
        .expect("watch");
    common::write(&kv, b, common::put("a.b", "1")).await;
    common::write(&kv, b, common::put("c.c", "no")).await;
    common::write(&kv, b, common::put("c.b", "2")).await;
    common::write(&kv, b, common::put("a.c", "3")).await;
    for (key, value) in [("a.b", "1"), ("c.b", "2"), ("a.c", "3")] {
        common::expect(&mut watch, key, Operation::Put, value).await;
    }
    // Nothing else is pending: the next entry is the next matching write.
    common::write(&kv, b, common::put("a.a", "4")).await;
    common::expect(&mut watch, "a.a", Operation::Put, "4").await;
}

#[tokio::test]
async fn buckets_allow_a_consumer_per_watch_of_every_worker_the_id_range_admits() {
    let server = NatsServer::start().expect("start nats-server");
    // 2,000 IDs: more watchers than nats-server 2.15's default of 1,000 consumers a stream.
    let wide = Config {
        id_max: 1999,
        ..config(Duration::from_secs(6))
    };
    let needed = parti::kv::consumers_needed(&wide);
    assert!(needed > 1000, "{needed}");
    for _ in 0..2 {
        // The second connect finds the buckets raised already and leaves them be.
        NatsKv::connect(&options(&server), &wide)
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(
            async_nats::connect(server.url()).await.expect("raw client"),
        );
        for bucket in [wide.leases_bucket(), wide.assign_bucket()] {
            let mut stream = js
                .get_stream(format!("KV_{bucket}"))
                .await
                .expect("the bucket's stream");
            let info = stream.info().await.expect("stream info");
            assert_eq!(info.config.max_consumers, needed, "{bucket}");
        }
    }
    // A fleet whose IDs fit the server's default leaves its buckets' limit alone.
    let small = Config {
        bucket_prefix: "small".into(),
        ..config(Duration::from_secs(6))
    };
    NatsKv::connect(&options(&server), &small)
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.expect("raw"));
    let mut stream = js
        .get_stream(format!("KV_{}", small.leases_bucket()))
        .await
        .expect("the small fleet's stream");
    let info = stream.info().await.expect("stream info");
    assert!(
        info.config.max_consumers <= 0,
        "{}",
        info.config.max_consumers
    );
}
