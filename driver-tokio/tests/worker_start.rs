//! What `WorkerBuilder::start` promises when it returns: the worker has claimed its ID (so
//! `worker_id()` is set and the state is past `ClaimingId`), every time; and a start that
//! cannot claim an ID fails with `Error::NoId` after the claim timeout, stopping the worker;
//! a `MemoryKv` whose lease TTL differs from the config's `lease_ttl` is refused; and so is a
//! fixed partition list that cannot be planned.

mod fleet_support;

use parti::kv::MemoryKv;
use parti::{Config, Error, State, Worker, WorkerId};
use std::time::Duration;

use fleet_support::{fast_config, partitions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_id_and_state_are_set_as_soon_as_start_returns() {
    let kv = MemoryKv::new(fast_config().lease_ttl);
    let mut workers = Vec::new();
    for i in 0..8 {
        let (w, _events) = Worker::builder()
            .config(fast_config())
            .memory(kv.clone())
            .partitions(partitions(16))
            .start_with_events()
            .await
            .unwrap();
        assert_eq!(w.worker_id(), Some(WorkerId(i)), "start {i}");
        assert!(
            !matches!(w.state(), State::Init | State::ClaimingId),
            "start {i}: state {:?}",
            w.state()
        );
        workers.push(w);
    }
    // `start` (without events) makes the same promise.
    let w = Worker::builder()
        .config(fast_config())
        .memory(kv.clone())
        .partitions(partitions(16))
        .start()
        .await
        .unwrap();
    assert_eq!(w.worker_id(), Some(WorkerId(8)));
    workers.push(w);
    for w in workers {
        w.stop().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_start_that_cannot_claim_an_id_fails_and_stops_the_worker() {
    let kv = MemoryKv::new(fast_config().lease_ttl);
    let config = Config {
        id_min: 0,
        id_max: 0,
        ..fast_config()
    };
    let first = Worker::builder()
        .config(config.clone())
        .memory(kv.clone())
        .partitions(partitions(4))
        .start()
        .await
        .unwrap();
    let second = Worker::builder()
        .config(config)
        .memory(kv.clone())
        .partitions(partitions(4))
        .claim_timeout(Duration::from_secs(3))
        .start()
        .await;
    assert_eq!(
        second.unwrap_err(),
        Error::NoId {
            waited: Duration::from_secs(3)
        }
    );
    assert_eq!(first.worker_id(), Some(WorkerId(0)));
    first.stop().await.unwrap();
}

#[tokio::test]
async fn a_memory_kv_whose_lease_ttl_differs_from_the_config_is_refused_naming_both() {
    let config = fast_config(); // lease_ttl 1 s
    let kv = MemoryKv::new(Duration::from_secs(6));
    let err = Worker::builder()
        .config(config.clone())
        .memory(kv)
        .partitions(partitions(4))
        .start()
        .await
        .unwrap_err();
    let Error::Invalid(parti_core::Error::InvalidConfig { field, reason }) = &err else {
        panic!("expected a config error, got {err:?}");
    };
    assert_eq!(*field, "lease_ttl");
    assert!(
        reason.contains("after 6s") && reason.contains("lease_ttl is 1s"),
        "the message names neither TTL: {err}"
    );

    // The same builder with a store of the config's TTL starts.
    let w = Worker::builder()
        .config(config.clone())
        .memory(MemoryKv::new(config.lease_ttl))
        .partitions(partitions(4))
        .start()
        .await
        .unwrap();
    w.stop().await.unwrap();
}

/// A fixed partition list no plan could place fails the start, naming the problem: a total
/// weight over `u64` (the worker used to start and wait for an assignment forever), or a
/// partition listed twice.
#[tokio::test]
async fn a_partition_list_that_cannot_be_planned_fails_the_start() {
    let config = fast_config();
    let heavy = parti::Partition::new(&["a"], u64::MAX).unwrap();
    let b = parti::Partition::new(&["b"], 1).unwrap();
    for (list, needle) in [
        (vec![heavy, b.clone()], "total weight overflows"),
        (vec![b.clone(), b], "listed twice"),
    ] {
        let err = Worker::builder()
            .config(config.clone())
            .memory(MemoryKv::new(config.lease_ttl))
            .partitions(list)
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid(_)) && err.to_string().contains(needle),
            "expected {needle:?}, got {err:?}"
        );
    }
}
