//! Partition-source changes on the simulator (the seed report's Phase-4 refresh cases): additions,
//! removals and weight changes reach every worker, every partition is owned exactly once, removed
//! ones are released, and a manual refresh is not held back by the rebalance cooldown.

use parti_core::sim::{numbered_partitions, NodeId, Sim};
use parti_core::{Partition, PartitionId};

mod common;
use common::*;

/// Every listed partition has exactly one owner and nothing else is held.
fn assert_owned_exactly_once(sim: &Sim) {
    let owners = sim.owners();
    let listed: Vec<_> = sim.partitions().iter().map(|p| p.id().clone()).collect();
    assert_eq!(
        owners.keys().cloned().collect::<Vec<_>>(),
        listed,
        "held set differs from the list"
    );
    for (p, o) in &owners {
        assert_eq!(o.len(), 1, "{p} owned by {o:?}");
    }
}

#[test]
fn refresh_adding_partitions_50_to_70_assigns_the_new_ones_and_moves_nothing() {
    let (mut sim, nodes) = settled(3, 50, 11, |_| {});
    sim.set_partitions(numbered_partitions(70));
    sim.refresh(follower(&sim, &nodes));
    sim.must_converge(SECS(30));
    assert_owned_exactly_once(&sim);
    assert_eq!(
        sim.stats().moves,
        0,
        "new partitions go to workers, old ones stay"
    );
    for n in &nodes {
        let held = sim.holdings(*n).len();
        assert!((23..=24).contains(&held), "node {n} holds {held} of 70");
    }
}

#[test]
fn refresh_removing_partitions_100_to_70_releases_the_removed_ones() {
    let (mut sim, nodes) = settled(3, 100, 12, |_| {});
    let before = sim.stats().moves;
    sim.set_partitions(numbered_partitions(70));
    sim.refresh(nodes[0]);
    sim.must_converge(SECS(30));
    assert_owned_exactly_once(&sim);
    for n in &nodes {
        assert!(
            sim.holdings(*n).iter().all(|p| p.as_str() < "p0070"),
            "node {n} kept a removed partition"
        );
        assert_eq!(
            sim.subscribed(*n),
            sim.holdings(*n),
            "node {n}: unsubscribed what it released"
        );
    }
    // Balance is restored with at most a handful of moves (70 / 3 does not divide evenly).
    assert!(
        sim.stats().moves - before <= 10,
        "moved {}",
        sim.stats().moves - before
    );
}

#[test]
fn refresh_changing_weights_100_to_200_keeps_every_partition_owned_and_balanced() {
    let (mut sim, nodes) = settled(3, 100, 13, |_| {});
    let heavier: Vec<Partition> = sim
        .partitions()
        .iter()
        .enumerate()
        .map(|(i, p)| Partition::new(&[p.subject()], if i < 30 { 200 } else { 100 }).unwrap())
        .collect();
    sim.set_partitions(heavier.clone());
    sim.refresh(follower(&sim, &nodes));
    sim.must_converge(SECS(30));
    assert_owned_exactly_once(&sim);
    let weight = |n: &NodeId| -> u64 {
        sim.holdings(*n)
            .iter()
            .map(|p| heavier.iter().find(|q| q.id() == p).unwrap().weight())
            .sum()
    };
    let loads: Vec<u64> = nodes.iter().map(weight).collect();
    let mean = loads.iter().sum::<u64>() / 3;
    assert!(
        loads.iter().all(|l| *l <= mean + 200),
        "loads {loads:?} around mean {mean}"
    );
}

#[test]
fn manual_refresh_bypasses_the_rebalance_cooldown() {
    // A long cooldown: a join would wait for it, a refresh must not.
    let (mut sim, nodes) = settled(3, 50, 14, |c| {
        c.min_rebalance_interval = SECS(120);
        c.planned_scale_window = SECS(1);
    });
    sim.add_node();
    sim.must_converge(SECS(180)); // the join rebalance starts the cooldown
    sim.set_partitions(numbered_partitions(60));
    let asked = sim.now();
    sim.refresh(follower(&sim, &nodes));
    let done = sim
        .run_until_true(SECS(30), |s| {
            s.owners().len() == 60 && s.owners().values().all(|o| o.len() == 1)
        })
        .expect("the new partitions are owned");
    assert!(
        done - asked < SECS(2),
        "refresh took {:?} despite the cooldown",
        done - asked
    );
    sim.assert_clean();
}

#[test]
fn a_failing_source_is_retried_and_its_list_applied_once_it_recovers() {
    let (mut sim, nodes) = settled(3, 30, 15, |_| {});
    sim.set_source_failing(true);
    sim.set_partitions(numbered_partitions(40));
    sim.refresh(nodes[1]);
    sim.run_for(SECS(5));
    assert_eq!(
        sim.owners().len(),
        30,
        "nothing changes while the source fails"
    );
    sim.set_source_failing(false);
    sim.must_converge(SECS(60));
    assert_owned_exactly_once(&sim);
}

#[test]
fn a_new_leader_reassigns_a_leavers_partitions_while_the_source_fails() {
    let (mut sim, _) = settled(3, 30, 16, |_| {});
    sim.set_source_failing(true);
    let leader = sim.leader().unwrap();
    sim.stop(leader, true);
    // The new leader cannot read the source: it plans with the committed partitions.
    let done = sim.run_until_true(SECS(30), |s| {
        s.leader().is_some_and(|l| l != leader)
            && s.owners().len() == 30
            && s.owners().values().all(|o| o.len() == 1)
    });
    assert!(
        done.is_some(),
        "the leaver's partitions stayed unowned:\n{}",
        sim.trace().tail(40)
    );
    sim.set_source_failing(false);
    sim.must_converge(SECS(60));
    assert_owned_exactly_once(&sim);
}

#[test]
fn a_refresh_that_only_changes_weights_rebalances_at_once() {
    // Balanced by count, then 30 of one worker's partitions double their weight: the refresh
    // rebalances by the new weights (not only a later imbalance round).
    let (mut sim, nodes) = settled(3, 100, 5, |_| {});
    let heavy: Vec<PartitionId> = sim.holdings(nodes[0]).iter().take(30).cloned().collect();
    let parts: Vec<Partition> = numbered_partitions(100)
        .into_iter()
        .map(|p| {
            let w = if heavy.contains(p.id()) { 200 } else { 100 };
            Partition::new(&[p.id().as_str()], w).unwrap()
        })
        .collect();
    sim.set_partitions(parts.clone());
    sim.refresh(nodes[1]);
    sim.must_converge(SECS(30));
    let load = |n| -> u64 {
        sim.holdings(n)
            .iter()
            .map(|p| parts.iter().find(|q| q.id() == p).unwrap().weight())
            .sum()
    };
    let loads: Vec<u64> = nodes.iter().map(|n| load(*n)).collect();
    let mean = loads.iter().sum::<u64>() as f64 / 3.0;
    let max = *loads.iter().max().unwrap() as f64;
    assert!(max <= 1.05 * mean, "loads {loads:?}");
}

/// A refresh asked of a worker that dies before passing it on is lost with it (its
/// `ctl.refresh` write waits in the buffer of a client cut off from NATS); the leader's own poll
/// of the source (`source_poll_interval`) still brings the change in. With the poll off, the
/// removed partitions stay held: the poll is what makes it good.
#[test]
fn a_refresh_lost_with_its_worker_is_made_good_by_the_leaders_poll() {
    for (poll, seen) in [(SECS(20), true), (SECS(0), false)] {
        let (mut sim, nodes) = settled(3, 60, 12, |c| c.source_poll_interval = poll);
        let f = follower(&sim, &nodes);
        sim.set_partitions(numbered_partitions(50));
        sim.isolate(f);
        sim.refresh(f);
        sim.crash(f);
        if seen {
            sim.must_converge(SECS(60));
            assert_owned_exactly_once(&sim);
        } else {
            sim.run_for(SECS(60));
            assert_eq!(sim.owners().len(), 60, "the refresh was not lost after all");
        }
    }
}
