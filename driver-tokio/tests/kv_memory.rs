//! The in-memory backend (`MemoryKv`) has NATS KV semantics: the shared checks of
//! tests/common, plus expiry on a paused clock and the end of watches when the store is dropped.

mod common;

use futures::StreamExt;
use parti::kv::{KvStore, MemoryKv};
use parti_core::{Bucket, Operation};
use std::time::Duration;

fn store() -> MemoryKv {
    MemoryKv::new(Duration::from_secs(6))
}

#[tokio::test]
async fn create_is_put_if_absent() {
    common::create_is_put_if_absent(&store()).await;
}

#[tokio::test]
async fn update_is_a_cas_on_the_last_revision() {
    common::update_is_a_cas_on_the_last_revision(&store()).await;
}

#[tokio::test]
async fn delete_checks_the_expected_revision() {
    common::delete_checks_the_expected_revision(&store()).await;
}

#[tokio::test]
async fn get_returns_the_latest_entry() {
    common::get_returns_the_latest_entry(&store()).await;
}

#[tokio::test]
async fn list_returns_live_keys_with_the_prefix() {
    common::list_returns_live_keys_with_the_prefix(&store()).await;
}

#[tokio::test]
async fn watch_delivers_the_snapshot_then_changes_in_order() {
    common::watch_delivers_the_snapshot_then_changes_in_order(&store()).await;
}

#[tokio::test]
async fn resumed_watch_delivers_exactly_the_later_changes() {
    common::resumed_watch_delivers_exactly_the_later_changes(&store()).await;
}

#[tokio::test]
async fn watch_across_filters_keeps_revision_order() {
    common::watch_across_filters_keeps_revision_order(&store()).await;
}

#[tokio::test]
async fn concurrent_creates_have_one_winner() {
    common::concurrent_creates_have_one_winner(&store()).await;
}

#[tokio::test]
async fn markers_for_keys_already_gone_are_not_delivered() {
    common::markers_for_keys_already_gone_are_not_delivered(&store()).await;
}

#[tokio::test]
async fn invalid_keys_and_filters_are_refused() {
    common::invalid_keys_and_filters_are_refused(&store()).await;
}

#[tokio::test(start_paused = true)]
async fn lease_expiry_shows_up_as_a_purge_marker() {
    let ttl = Duration::from_secs(1);
    common::lease_expiry_shows_up_as_a_purge_marker(&MemoryKv::new(ttl), ttl).await;
}

#[tokio::test(start_paused = true)]
async fn a_renewed_lease_expires_a_ttl_after_its_last_write() {
    let ttl = Duration::from_secs(6);
    let kv = MemoryKv::new(ttl);
    let mut watch = kv
        .watch(Bucket::Leases, vec![">".into()], None)
        .await
        .unwrap();
    let mut revision = common::write(&kv, Bucket::Leases, common::create("worker.1", "v")).await;
    let start = tokio::time::Instant::now();
    common::next(&mut watch, common::PROMPT).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        revision = common::write(
            &kv,
            Bucket::Leases,
            common::update("worker.1", "v", revision),
        )
        .await;
        common::next(&mut watch, common::PROMPT).await;
    }
    let purge = common::next(&mut watch, ttl + common::PROMPT).await;
    assert_eq!(purge.operation, Operation::Purge);
    assert_eq!(start.elapsed(), Duration::from_secs(12) + ttl);
}

#[tokio::test]
async fn watches_end_when_the_last_clone_is_dropped() {
    let kv = store();
    let clone = kv.clone();
    let mut watch = kv
        .watch(Bucket::Assign, vec![">".into()], None)
        .await
        .unwrap();
    drop(kv);
    common::write(&clone, Bucket::Assign, common::put("k", "v")).await;
    common::expect(&mut watch, "k", Operation::Put, "v").await;
    drop(clone);
    let end = tokio::time::timeout(common::PROMPT, watch.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn the_expiry_task_ends_with_the_last_clone() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let kv = store();
    common::write(&kv, Bucket::Leases, common::put("worker.1", "v")).await;
    assert_eq!(metrics.num_alive_tasks(), 1, "the expiry task runs");
    drop(kv);
    tokio::time::timeout(common::PROMPT, async {
        while metrics.num_alive_tasks() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the expiry task ends");
}
