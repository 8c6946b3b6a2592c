//! `Worker::report_load` on the in-memory KV: a bad batch (negative, NaN, infinite or too large
//! load, a partition not held) is refused as a whole naming the partition and leaves nothing
//! behind; an accepted report reaches the worker's lease with a later heartbeat, aligned to
//! the held share; a stopped worker answers `Error::Stopped`.

mod fleet_support;

use futures::StreamExt;
use parti::kv::{KvStore, MemoryKv};
use parti::{Config, Error, Event, EventStream, PartitionId, StaticSource, Worker};
use parti_core::codec::{self, LeaseValue, LoadReport};
use parti_core::{Bucket, KvOp, KvResult};
use std::collections::BTreeSet;
use std::time::Duration;

use fleet_support::{fast_config, partition_ids, partitions};

/// How long a step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

fn id(s: &str) -> PartitionId {
    PartitionId::parse(s).unwrap()
}

/// One worker alone on a fresh in-memory KV, serving p0..p3; returns once it holds them all.
async fn lone_worker() -> (Worker, MemoryKv) {
    let config = Config {
        expected_workers: Some(1),
        ..fast_config()
    };
    let kv = MemoryKv::new(config.lease_ttl);
    let (worker, mut events) = Worker::builder()
        .config(config)
        .memory(kv.clone())
        .source(StaticSource::new(partitions(4)))
        .start_with_events()
        .await
        .expect("worker starts");
    let all = partition_ids(4);
    next_matching(
        &mut events,
        "the worker holds p0..p3",
        |e| matches!(e, Event::AssignmentChanged { assignment, .. } if *assignment == all),
    )
    .await;
    (worker, kv)
}

async fn next_matching(events: &mut EventStream, what: &str, want: impl Fn(&Event) -> bool) {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(e) = events.next().await {
            if want(&e) {
                return;
            }
        }
        panic!("the event stream ended before {what}");
    })
    .await;
    assert!(found.is_ok(), "timed out waiting until {what}");
}

/// The worker's lease as stored.
async fn lease(kv: &MemoryKv, worker: &Worker) -> LeaseValue {
    lease_entry(kv, worker).await.1
}

/// The worker's lease as stored, with its revision.
async fn lease_entry(kv: &MemoryKv, worker: &Worker) -> (u64, LeaseValue) {
    let key = format!("worker.{}", worker.worker_id().expect("an ID").0);
    match kv.execute(Bucket::Leases, KvOp::Get { key }).await {
        KvResult::Value(Some(e)) => (
            e.revision,
            codec::decode::<LeaseValue>("lease", &e.value).unwrap(),
        ),
        other => panic!("no lease: {other:?}"),
    }
}

/// The partition a refusal names, and why.
fn refusal(r: Result<(), Error>) -> (String, String) {
    match r {
        Err(Error::Invalid(parti::parti_core::Error::InvalidPartition { partition, reason })) => {
            (partition, reason)
        }
        other => panic!("expected an InvalidPartition refusal, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_bad_batch_is_refused_whole_naming_the_partition_and_keeps_nothing() {
    let (worker, kv) = lone_worker().await;
    worker
        .report_load([(id("p0"), 1.0), (id("p1"), 2.0)])
        .await
        .expect("held partitions, finite loads");
    let too_big = f64::from(f32::MAX) * 2.0;
    for (bad, load, words) in [
        ("p1", -1.0, "finite number >= 0"),
        ("p1", f64::NAN, "finite"),
        ("p1", f64::INFINITY, "finite"),
        ("p1", too_big, "at most"),
        ("q9", 1.0, "not held by this worker"),
    ] {
        let batch = [(id("p0"), 5.0), (id(bad), load)];
        let (partition, reason) = refusal(worker.report_load(batch).await);
        assert_eq!(partition, bad, "{reason}");
        assert!(reason.contains(words), "{bad} = {load}: {reason}");
    }
    // The next heartbeats carry what was accepted: p0 at 1.0 (not the refused 5.0), p1 at 2.0,
    // nothing for p2 and p3, in the order of the held share it names.
    let held: BTreeSet<PartitionId> = partition_ids(4);
    let want = LoadReport {
        share: codec::share_digest(&held),
        values: vec![Some(1.0), Some(2.0), None, None],
    };
    let waited = tokio::time::timeout(DEADLINE, async {
        loop {
            if lease(&kv, &worker).await.loads.as_ref() == Some(&want) {
                return;
            }
            // Paused clock: this advances virtual time to the next renewal.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the lease never carried {want:?}: {:?}",
        lease(&kv, &worker).await.loads
    );
    worker.stop().await.unwrap();
    assert!(matches!(
        worker.report_load([(id("p0"), 1.0)]).await,
        Err(Error::Stopped)
    ));
}

#[tokio::test(start_paused = true)]
async fn an_empty_report_is_accepted_and_writes_no_loads() {
    let (worker, kv) = lone_worker().await;
    worker.report_load([]).await.expect("nothing to refuse");
    let (first, _) = lease_entry(&kv, &worker).await;
    // Two renewals later the lease still carries no loads.
    let after = tokio::time::timeout(DEADLINE, async {
        loop {
            let (revision, value) = lease_entry(&kv, &worker).await;
            if revision > first + 1 {
                return value;
            }
            // Paused clock: this advances virtual time to the next renewal.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the lease is renewed");
    assert_eq!(after.loads, None);
    worker.stop().await.unwrap();
}
