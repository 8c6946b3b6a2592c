//! The subscription manager's JetStream consumer against a real nats-server: the consumer is
//! recreated so a gained partition's backlog is not skipped, its creation is retried until the
//! stream exists, and a stream that is not a work queue is refused.

mod subscription_support;

use async_nats::jetstream::{self, stream};
use parti::subscriptions::SubscriptionManagerBuilder;
use parti::testing::NatsServer;
use parti::{MessageHandler, SubscriptionError, SubscriptionManager};
use std::time::Duration;

use subscription_support::*;

// ---------------------------------------------------------------------------------------------
// JetStream, standalone
// ---------------------------------------------------------------------------------------------

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
