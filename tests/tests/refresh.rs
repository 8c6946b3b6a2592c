//! `refresh_partitions` on real NATS with three workers: added partitions are granted exactly
//! once, removed ones are released everywhere, weight changes rebalance without losing any, and
//! a refresh is acted on at once even while a planned rebalance would still be cooling down.

mod common;

use common::{ids, partitions, Cluster, DEADLINE};
use parti::{Partition, PartitionId, StaticSource};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_adding_50_to_70_grants_each_new_partition_exactly_once_and_moves_none() {
    let source = StaticSource::new(partitions(0..50));
    let cluster = Cluster::start("refresh-add", 3, source.clone()).await;
    cluster.wait_settled(&ids(&partitions(0..50))).await;

    source.update(partitions(0..70));
    let follower = (cluster.leader() + 1) % 3;
    cluster
        .handle(follower)
        .refresh_partitions()
        .await
        .expect("refresh");
    cluster.wait_settled(&ids(&partitions(0..70))).await;

    // Balanced is sticky: 50 on 3 workers are within the quota of 70 on 3, so the 20 new
    // partitions fill the gaps and nothing that was owned moves.
    let grants = cluster.ledger.grants();
    let moved: Vec<_> = grants.iter().filter(|(_, g)| g.len() > 1).collect();
    assert!(moved.is_empty(), "existing partitions moved: {moved:?}");
    let sizes: Vec<usize> = cluster
        .running()
        .map(|m| m.handle.assignment().len())
        .collect();
    assert!(
        sizes.iter().all(|n| (23..=24).contains(n)),
        "balanced: {sizes:?}"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_removing_100_to_70_releases_the_removed_partitions_everywhere() {
    let source = StaticSource::new(partitions(0..100));
    let cluster = Cluster::start("refresh-remove", 3, source.clone()).await;
    cluster.wait_settled(&ids(&partitions(0..100))).await;

    source.update(partitions(0..70));
    let leader = cluster.leader();
    cluster
        .handle(leader)
        .refresh_partitions()
        .await
        .expect("refresh");
    let remaining = ids(&partitions(0..70));
    cluster.wait_settled(&remaining).await;

    // No orphans: no handle and no listener still holds a removed partition.
    let removed = ids(&partitions(70..100));
    for m in cluster.running() {
        let held: BTreeSet<PartitionId> = m.handle.assignment();
        assert!(held.is_disjoint(&removed), "a removed partition is held");
    }
    let owners = cluster.ledger.owners();
    assert!(
        removed.iter().all(|p| !owners.contains_key(p)),
        "a listener was not told a removed partition was revoked"
    );
    let sizes: Vec<usize> = cluster
        .running()
        .map(|m| m.handle.assignment().len())
        .collect();
    assert!(sizes.iter().all(|n| (23..=24).contains(n)), "{sizes:?}");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_doubling_the_weight_of_30_partitions_rebalances_by_weight_and_keeps_all_owned() {
    let source = StaticSource::new(partitions(0..100));
    let cluster = Cluster::start("refresh-weight", 3, source.clone()).await;
    let all = ids(&partitions(0..100));
    cluster.wait_settled(&all).await;

    // Double the weight of 30 partitions of one worker, so its load is far above the mean and
    // the leader has to move some of them.
    let heavy_owner = cluster.leader();
    let heavy: BTreeSet<PartitionId> = cluster
        .handle(heavy_owner)
        .assignment()
        .into_iter()
        .take(30)
        .collect();
    assert_eq!(heavy.len(), 30);
    let weight_of = |p: &PartitionId| if heavy.contains(p) { 200 } else { 100 };
    let reweighted: Vec<Partition> = partitions(0..100)
        .iter()
        .map(|p| Partition::new(&[p.id().as_str()], weight_of(p.id())).unwrap())
        .collect();
    source.update(reweighted);
    cluster
        .handle(heavy_owner)
        .refresh_partitions()
        .await
        .expect("refresh");

    // Settled on the same partitions, with the loads balanced by the new weights (DESIGN §5.6:
    // the heaviest worker carries at most max(heaviest partition, 1.05 × mean)).
    let balanced = || {
        cluster.check_settled(&all)?;
        let loads: Vec<u64> = cluster
            .running()
            .map(|m| m.handle.assignment().iter().map(weight_of).sum())
            .collect();
        let mean = loads.iter().sum::<u64>() as f64 / loads.len() as f64;
        let max = *loads.iter().max().unwrap() as f64;
        if max <= (1.05 * mean).max(200.0) {
            Ok(())
        } else {
            Err(format!("loads {loads:?} not balanced (mean {mean:.0})"))
        }
    };
    common::wait_for(DEADLINE, "loads are balanced by the new weights", balanced).await;
    cluster.ledger.assert_never_two_owners();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_refresh_bypasses_a_30_s_rebalance_cooldown() {
    let config = parti::Config {
        min_rebalance_interval: Duration::from_secs(30),
        ..common::config("refresh-cooldown", 3)
    };
    let source = StaticSource::new(partitions(0..50));
    let cluster = Cluster::start_with(config, 3, source.clone()).await;
    cluster.wait_settled(&ids(&partitions(0..50))).await;

    // Two refreshes in a row: each is acted on at once, the second one although a rebalance
    // has just happened.
    for upto in [60, 70] {
        source.update(partitions(0..upto));
        let follower = (cluster.leader() + 1) % 3;
        cluster
            .handle(follower)
            .refresh_partitions()
            .await
            .expect("refresh");
        let took = cluster.wait_settled(&ids(&partitions(0..upto))).await;
        assert!(
            took < Duration::from_secs(3),
            "refresh to {upto} took {took:?}: held back by the cooldown?"
        );
    }
    cluster.stop_all().await;
}
