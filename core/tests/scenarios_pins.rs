//! Operators' pins (`ctl.pin.<partition>`) on the simulator: a pinned partition goes to its
//! worker and stays there across a leader failover; a pin to a worker that is not live is
//! ignored; removing a pin moves nothing. The simulator checks every invariant after every step
//! (in Strict mode: never two owners during the handoff).

use parti_core::sim::{NodeId, Sim};
use parti_core::{PartitionId, WorkerId};

mod common;
use common::*;

/// The single worker ID holding `p`.
fn owner(sim: &Sim, p: &PartitionId) -> WorkerId {
    let owners = sim.owners();
    let holders = owners.get(p).expect("held");
    assert_eq!(holders.len(), 1, "{p} held by {holders:?}");
    holders[0]
}

/// A partition held by `from`, and a worker ID other than `from`'s on a node in `nodes`.
fn partition_and_other_worker(sim: &Sim, nodes: &[NodeId], from: NodeId) -> (PartitionId, NodeId) {
    let p = sim
        .holdings(from)
        .iter()
        .next()
        .expect("holds some")
        .clone();
    let to = *nodes.iter().find(|n| **n != from).expect("another node");
    (p, to)
}

#[test]
fn a_pin_moves_its_partition_to_the_pinned_worker_and_survives_a_leader_failover() {
    for seed in 41..61 {
        pin_then_failover(seed);
    }
}

fn pin_then_failover(seed: u64) {
    let (mut sim, nodes) = settled(3, 30, seed, |_| {});
    let leader = sim.leader().expect("a leader");
    // Pin a partition of a follower to the leader, so that killing the leader afterwards
    // makes a new leader read the pin from KV and place the partition elsewhere, then back.
    let from = follower(&sim, &nodes);
    let (p, _) = partition_and_other_worker(&sim, &nodes, from);
    let target = sim.worker_id(leader).expect("an ID");
    let before = sim.stats().moves;
    sim.pin(&p, Some(target));
    sim.must_converge(SECS(30));
    assert_eq!(
        owner(&sim, &p),
        target,
        "the pinned partition moved to its worker"
    );
    assert!(all_owned_once(&sim, 30));
    // The pin, plus at most one move to even the counts out again.
    assert!(
        sim.stats().moves - before <= 2,
        "moved {}",
        sim.stats().moves - before
    );

    // Pin it to a follower instead, then kill the leader: the new leader reads the pin.
    let other = follower(&sim, &nodes);
    let other_id = sim.worker_id(other).expect("an ID");
    sim.pin(&p, Some(other_id));
    sim.must_converge(SECS(30));
    assert_eq!(owner(&sim, &p), other_id);
    let killed = sim.kill_leader().expect("a leader to kill");
    assert_ne!(killed, other);
    // The new leader reads the pin before its first plan: the partition never leaves.
    let mut left = false;
    sim.run_until_true(SECS(60), |s| {
        left |= s
            .owners()
            .get(&p)
            .is_some_and(|o| o.as_slice() != [other_id]);
        s.leader().is_some_and(|l| l != killed) && s.is_settled()
    });
    assert!(
        !left,
        "the pinned partition left its worker during the failover"
    );
    sim.must_converge(SECS(60));
    assert_ne!(sim.leader(), Some(killed));
    assert_eq!(owner(&sim, &p), other_id, "the new leader honours the pin");
    assert!(all_owned_once(&sim, 30));
}

#[test]
fn a_pin_to_a_worker_that_is_not_live_is_ignored_and_moves_nothing() {
    let (mut sim, nodes) = settled(3, 30, 42, |_| {});
    let p = sim
        .holdings(nodes[0])
        .iter()
        .next()
        .expect("holds some")
        .clone();
    let holder = owner(&sim, &p);
    let before = sim.stats().moves;
    sim.pin(&p, Some(WorkerId(77)));
    sim.must_converge(SECS(30));
    assert_eq!(owner(&sim, &p), holder);
    assert_eq!(sim.stats().moves, before);
    assert!(all_owned_once(&sim, 30));
}

#[test]
fn removing_a_pin_moves_nothing_and_the_partition_stays_sticky() {
    let (mut sim, nodes) = settled(3, 30, 43, |_| {});
    let (p, to) = partition_and_other_worker(&sim, &nodes, nodes[0]);
    let to_id = sim.worker_id(to).expect("an ID");
    sim.pin(&p, Some(to_id));
    sim.must_converge(SECS(30));
    assert_eq!(owner(&sim, &p), to_id);
    let before = sim.stats().moves;
    sim.pin(&p, None);
    sim.must_converge(SECS(30));
    assert_eq!(owner(&sim, &p), to_id, "sticky once unpinned");
    assert_eq!(sim.stats().moves, before);
    assert!(all_owned_once(&sim, 30));
}

#[test]
fn a_pinned_worker_that_crashes_loses_the_partition_to_another_and_gets_it_back_on_restart() {
    let (mut sim, nodes) = settled(3, 30, 44, |_| {});
    let (p, to) = partition_and_other_worker(&sim, &nodes, nodes[0]);
    let to_id = sim.worker_id(to).expect("an ID");
    sim.pin(&p, Some(to_id));
    sim.must_converge(SECS(30));
    sim.crash(to);
    sim.must_converge(SECS(60));
    assert_ne!(
        owner(&sim, &p),
        to_id,
        "reassigned while its pinned worker is down"
    );
    assert!(all_owned_once(&sim, 30));
    sim.restart(to);
    sim.must_converge(SECS(90));
    // The restart claims the lowest free ID: the one its crashed process held.
    assert_eq!(sim.worker_id(to), Some(to_id));
    assert_eq!(owner(&sim, &p), to_id, "back on the pinned worker");
    assert!(all_owned_once(&sim, 30));
}
