//! Membership on the simulator: cold start, joins, graceful leaves, drains, crashes of a
//! follower right after a rebalance and of the leader, with the time each takes and what moves;
//! many workers starting together claim distinct IDs in a few rounds.

use parti_core::sim::NodeStatus;
use parti_core::{Event, State};

mod common;
use common::*;

#[test]
fn cold_start_of_ten_workers_waits_for_the_window_then_shares_evenly() {
    let (mut sim, nodes) = cluster(10, 200, 21, |_| {});
    sim.run_for(SECS(20));
    assert!(
        sim.owners().is_empty(),
        "nothing is assigned before the cold-start window ends"
    );
    let took = sim.must_converge(SECS(60));
    assert!(took <= SECS(45), "cold start took {took:?}");
    assert!(all_owned_once(&sim, 200));
    for n in &nodes {
        assert_eq!(sim.holdings(*n).len(), 20, "node {n}");
    }
    assert_eq!(sim.stats().moves, 0);
}

#[test]
fn cold_start_ends_as_soon_as_the_expected_workers_joined() {
    let (mut sim, _) = cluster(4, 40, 22, |c| c.expected_workers = Some(4));
    let took = sim.must_converge(SECS(60));
    assert!(took < SECS(2), "took {took:?}");
    assert!(all_owned_once(&sim, 40));
}

#[test]
fn two_workers_starting_together_get_the_two_lowest_ids() {
    for seed in 0..20 {
        let (mut sim, nodes) = cluster(2, 30, seed, |_| {});
        sim.run_until_true(SECS(30), |s| {
            nodes.iter().all(|n| s.worker_id(*n).is_some())
        })
        .expect("every worker claims an ID");
        let ids: std::collections::BTreeSet<u32> = nodes
            .iter()
            .filter_map(|n| sim.worker_id(*n))
            .map(|id| id.0)
            .collect();
        assert_eq!(ids, [0, 1].into(), "seed {seed}");
    }
}

#[test]
fn eighty_workers_starting_together_spread_over_the_free_ids_instead_of_racing_for_one() {
    let workers = 80;
    let (mut sim, nodes) = cluster(workers, 160, 27, |c| c.id_max = 119);
    sim.run_until_true(SECS(30), |s| {
        nodes.iter().all(|n| s.worker_id(*n).is_some())
    })
    .expect("every worker claims an ID");
    // Racing for the lowest free ID lets one worker win per round, and every round costs each
    // loser a listing and a write: about workers² / 2 requests. Spreading after a lost race
    // takes a few rounds.
    let requests = sim.network().stats().requests;
    assert!(
        requests < 20 * u64::from(workers),
        "{requests} KV requests until {workers} workers had IDs"
    );
    let ids: std::collections::BTreeSet<_> =
        nodes.iter().filter_map(|n| sim.worker_id(*n)).collect();
    assert_eq!(ids.len(), workers as usize, "distinct IDs");
}

#[test]
fn a_join_waits_for_the_scale_window_then_moves_about_a_fair_share() {
    let (mut sim, nodes) = cluster(3, 90, 23, |c| c.expected_workers = Some(3));
    sim.must_converge(SECS(30));
    let joined_at = sim.now();
    let newcomer = sim.add_node();
    sim.run_for(SECS(5));
    assert!(
        sim.holdings(newcomer).is_empty(),
        "the planned scale window (10 s) debounces joins"
    );
    sim.must_converge(SECS(60));
    assert!(sim.now() - joined_at >= SECS(10));
    assert!(all_owned_once(&sim, 90));
    let held = sim.holdings(newcomer).len();
    assert!((22..=23).contains(&held), "newcomer holds {held}");
    assert!(sim.stats().moves <= 23, "moved {}", sim.stats().moves);
    for n in nodes {
        assert!((22..=23).contains(&sim.holdings(n).len()));
    }
}

#[test]
fn a_graceful_leave_hands_its_partitions_over_without_an_emergency() {
    let (mut sim, nodes) = cluster(3, 60, 24, |c| c.expected_workers = Some(3));
    sim.must_converge(SECS(30));
    let leaving = nodes[2];
    let handed = sim.holdings(leaving).len() as u64;
    let asked = sim.now();
    sim.stop(leaving, true);
    sim.must_converge(SECS(30));
    assert_eq!(sim.status(leaving), NodeStatus::Stopped);
    assert!(sim.now() - asked < SECS(15), "a leave is planned at once");
    assert!(all_owned_once(&sim, 60));
    assert_eq!(
        sim.stats().moves,
        handed,
        "only the leaver's partitions move"
    );
    assert_eq!(sim.stats().emergencies, 0);
}

#[test]
fn a_drain_moves_everything_away_then_reports_drained() {
    let (mut sim, nodes) = cluster(3, 60, 25, |c| c.expected_workers = Some(3));
    sim.must_converge(SECS(30));
    sim.drain(nodes[1]);
    let drained = sim.run_until_true(SECS(20), |s| {
        s.events()
            .iter()
            .any(|(_, n, e)| *n == nodes[1] && *e == Event::Drained)
    });
    assert!(
        drained.is_some(),
        "no Drained event:\n{}",
        sim.trace().tail(40)
    );
    assert!(sim.holdings(nodes[1]).is_empty());
    sim.must_converge(SECS(30));
    assert!(all_owned_once(&sim, 60));
}

#[test]
fn a_follower_crash_right_after_a_rebalance_is_reassigned_within_ttl_plus_grace() {
    let (mut sim, nodes) = cluster(3, 90, 26, |c| {
        c.expected_workers = Some(3);
        c.planned_scale_window = SECS(1);
    });
    sim.must_converge(SECS(30));
    sim.add_node();
    // Wait for the join's rebalance to commit its first step, then crash a follower at once.
    let gen_before = sim.worker(nodes[0]).unwrap().applied_generation();
    sim.run_until_true(SECS(30), |s| {
        s.worker(nodes[0]).unwrap().applied_generation() > gen_before
    })
    .expect("the join rebalances");
    let leader = sim.leader().unwrap();
    let victim = *nodes.iter().find(|n| **n != leader).unwrap();
    sim.crash(victim);
    let crashed_at = sim.now();
    let done = sim
        .run_until_true(SECS(60), |s| all_owned_once(s, 90))
        .expect("reassigned");
    let cfg = sim.template().clone();
    let bound = cfg.lease_ttl + cfg.emergency_grace + SECS(1);
    assert!(
        done - crashed_at <= bound,
        "reassigned after {:?} (bound {bound:?})",
        done - crashed_at
    );
    sim.must_converge(SECS(60));
    assert!(sim.stats().emergencies >= 1);
}

#[test]
fn a_leader_crash_moves_only_the_leaders_partitions_and_a_new_leader_follows_within_ttl() {
    let (mut sim, _) = cluster(4, 80, 27, |c| c.expected_workers = Some(4));
    sim.must_converge(SECS(30));
    let leader = sim.leader().unwrap();
    let its = sim.holdings(leader).len() as u64;
    let crashed_at = sim.now();
    sim.crash(leader);
    let elected = sim
        .run_until_true(SECS(30), |s| s.leader().is_some())
        .expect("a new leader");
    let cfg = sim.template().clone();
    assert!(
        elected - crashed_at <= cfg.lease_ttl + SECS(1),
        "new leader after {:?}",
        elected - crashed_at
    );
    sim.must_converge(SECS(60));
    assert!(all_owned_once(&sim, 80));
    assert_eq!(
        sim.stats().moves,
        its,
        "a failover moves nothing but the dead leader's partitions"
    );
}

#[test]
fn every_state_transition_is_reported_in_order() {
    let (mut sim, nodes) = cluster(2, 10, 28, |c| c.expected_workers = Some(2));
    sim.must_converge(SECS(30));
    let leader = sim.leader().unwrap();
    let follower = *nodes.iter().find(|n| **n != leader).unwrap();
    let states: Vec<(State, State)> = sim
        .events()
        .iter()
        .filter(|(_, n, _)| *n == follower)
        .filter_map(|(_, _, e)| match e {
            Event::StateChanged { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(states.first(), Some(&(State::Init, State::ClaimingId)));
    assert!(
        states.windows(2).all(|w| w[0].1 == w[1].0),
        "transitions chain: {states:?}"
    );
    assert_eq!(states.last().map(|s| s.1), Some(State::Stable));
    assert!(states.iter().any(|s| s.1 == State::WaitingAssignment));
}

#[test]
fn a_hundred_thousand_partitions_on_three_workers_travel_in_chunks() {
    // Shares of ~33k partitions do not fit one 100 kB value: each is split into chunks.
    let (mut sim, nodes) = cluster(3, 100_000, 29, |c| {
        c.expected_workers = Some(3);
        c.max_value_bytes = 100_000;
    });
    sim.must_converge(SECS(60));
    assert!(all_owned_once(&sim, 100_000));
    let chunks = sim.kv().live_keys(parti_core::Bucket::Assign);
    assert!(
        chunks > 3 * 3,
        "expected several chunks per share, found {chunks} keys"
    );
    for n in &nodes {
        let held = sim.holdings(*n).len();
        assert!((33_333..=33_334).contains(&held), "node {n} holds {held}");
    }
}
