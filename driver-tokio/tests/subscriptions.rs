//! The subscription manager with core NATS against a real nats-server: subscriptions follow the
//! assigned set (created, updated on rebalance, all gone after close), errors are clear,
//! waiting updates are cancelled, failed subscribes are retried, and `close()` joins every
//! error.

mod subscription_support;

use parti::testing::NatsServer;
use parti::{MessageHandler, PartitionId, SubjectTemplate, SubscriptionError, SubscriptionManager};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

use subscription_support::*;

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
