//! Fault scenarios on the deterministic simulator: the guarantees of DESIGN §5 under crashes,
//! restarts, isolation, outages, clock skew and random fault schedules. (The simulator checks
//! every invariant after every step; `must_converge` panics with the trace on a violation.)

use parti_core::sim::{run_seed, NodeStatus, RunSpec, TraceKind};
use parti_core::{AlertLevel, Event, HandoffMode, State, WorkerId};

use std::time::Duration;

mod common;
use common::*;

#[test]
fn a_fresh_cluster_gives_every_partition_exactly_one_owner() {
    let (sim, nodes) = settled(3, 100, 1, |_| {});
    let owners = sim.owners();
    assert_eq!(owners.len(), 100);
    assert!(owners.values().all(|o| o.len() == 1));
    for n in &nodes {
        let held = sim.holdings(*n).len();
        assert!((30..=37).contains(&held), "node {n} holds {held}");
        assert_eq!(sim.subscribed(*n), sim.holdings(*n));
    }
    assert_eq!(sim.stats().moves, 0);
    assert_eq!(sim.stats().emergencies, 0);
}

#[test]
fn a_rolling_restart_moves_nothing_and_raises_no_emergency() {
    let (mut sim, nodes) = settled(4, 100, 2, |_| {});
    for n in nodes {
        sim.stop(n, false);
        let exited = sim.run_until_true(SECS(15), |s| s.status(n) == NodeStatus::Stopped);
        assert!(
            exited.is_some(),
            "node {n} did not stop:\n{}",
            sim.trace().tail(40)
        );
        sim.run_for(SECS(1));
        sim.restart(n);
        sim.must_converge(SECS(120));
    }
    assert_eq!(sim.stats().moves, 0, "{}", sim.trace().tail(60));
    assert_eq!(sim.stats().emergencies, 0, "{}", sim.trace().tail(60));
}

#[test]
fn a_leader_restart_moves_nothing() {
    let (mut sim, _) = settled(3, 60, 3, |_| {});
    let leader = sim.leader().unwrap();
    sim.stop(leader, false);
    sim.run_until_true(SECS(15), |s| s.status(leader) == NodeStatus::Stopped)
        .expect("the leader stops");
    sim.run_until_true(SECS(30), |s| s.leader().is_some())
        .expect("a new leader");
    sim.restart(leader);
    sim.must_converge(SECS(120));
    assert_eq!(sim.stats().moves, 0, "{}", sim.trace().tail(60));
}

#[test]
fn a_crashed_follower_is_replaced_soon_after_its_lease_expires() {
    let (mut sim, nodes) = settled(3, 90, 4, |_| {});
    let victim = follower(&sim, &nodes);
    let lost = sim.holdings(victim).len() as u64;
    sim.crash(victim);
    let took = sim.must_converge(SECS(60));
    let cfg = sim.template().clone();
    assert!(
        took <= cfg.lease_ttl + cfg.emergency_grace + SECS(2),
        "took {took:?}"
    );
    assert_eq!(sim.stats().moves, lost);
    assert!(sim.stats().emergencies >= 1);
}

#[test]
fn the_generation_after_a_crash_is_labelled_with_the_emergency_that_produced_it() {
    use parti_core::codec::{decode, GenRecord, Phase};
    let (mut sim, nodes) = settled(3, 90, 4, |_| {});
    let gens = |sim: &parti_core::sim::Sim| -> Vec<GenRecord> {
        let history = sim.kv().history(parti_core::Bucket::Assign, "gen");
        history
            .iter()
            .filter_map(|e| decode::<GenRecord>("gen", &e.value).ok())
            .collect()
    };
    let before = gens(&sim).len();
    assert!(gens(&sim)
        .iter()
        .all(|g| g.trigger != Some(Phase::Emergency)));
    sim.crash(follower(&sim, &nodes));
    sim.must_converge(SECS(60));
    let after = gens(&sim);
    let new = &after[before..];
    assert!(!new.is_empty(), "a generation after the crash");
    // The crash is handled in one step: the target is reached (phase stable), and the record
    // says what produced it.
    assert!(
        new.iter()
            .all(|g| g.trigger == Some(Phase::Emergency) && g.phase == Phase::Stable),
        "{new:?}"
    );
}

#[test]
fn an_isolated_worker_fences_before_its_partitions_move() {
    let (mut sim, nodes) = settled(3, 60, 5, |_| {});
    let victim = follower(&sim, &nodes);
    sim.isolate(victim);
    sim.run_for(SECS(20));
    assert!(
        sim.holdings(victim).is_empty(),
        "a cut-off worker must have fenced"
    );
    sim.heal(victim);
    sim.must_converge(SECS(120));
}

/// A worker whose lease expired while it was cut off claims its old ID again once it is back
/// (when no one else took it), so the outage does not shuffle IDs, and with them shares,
/// between processes. (It claimed the lowest free ID: after an outage that cost every worker
/// its lease, every process ended up with another worker's ID.)
#[test]
fn a_worker_that_lost_its_id_claims_it_again_when_free() {
    let (mut sim, nodes) = settled(3, 60, 5, |_| {});
    let victim = follower(&sim, &nodes);
    let id = sim.worker_id(victim).expect("an ID");
    sim.isolate(victim);
    sim.run_for(SECS(20));
    sim.heal(victim);
    sim.must_converge(SECS(120));
    // it lost the ID when it found its lease gone, and claimed one again: the same
    let claims: Vec<WorkerId> = sim
        .trace()
        .entries()
        .filter(|e| e.node == Some(victim))
        .filter_map(|e| match e.what {
            TraceKind::IdClaimed(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(claims, [id, id], "{}", sim.trace().tail(40));
    assert_eq!(sim.worker_id(victim), Some(id));
}

#[test]
fn an_isolated_leader_is_replaced_without_double_ownership() {
    let (mut sim, _) = settled(3, 60, 6, |_| {});
    let leader = sim.leader().unwrap();
    sim.isolate(leader);
    sim.run_for(SECS(20));
    sim.heal(leader);
    sim.must_converge(SECS(120));
}

#[test]
fn a_kv_outage_in_strict_mode_fences_everyone_then_recovers_fully() {
    let (mut sim, nodes) = settled(3, 60, 7, |_| {});
    sim.set_kv_outage(true);
    sim.run_for(SECS(10));
    for n in &nodes {
        assert!(
            sim.holdings(*n).is_empty(),
            "node {n} must fence when it cannot renew"
        );
        assert_eq!(sim.state(*n), State::Degraded, "node {n}");
    }
    sim.set_kv_outage(false);
    sim.must_converge(SECS(120));
    let owners = sim.owners();
    assert_eq!(owners.len(), 60);
    assert!(owners.values().all(|o| o.len() == 1));
}

/// A new leader that crashes early in a KV outage leaves its lease to expire while every
/// follower is fenced: their take-over check fires while they are fenced, and they hear of the
/// expiry (the purge marker) as the outage ends, before their own renewals unfence them. One of
/// them must still campaign: without a leader nothing is rebalanced. (Seed 4974 of the
/// simulator example went 70 s without a leader this way.) Heartbeats of 250 ms make every
/// follower renew just before the outage, so none loses its ID (which would restart its
/// election).
#[test]
fn a_leader_lost_during_a_kv_outage_is_replaced_after_it() {
    for seed in 0..20 {
        let (mut sim, _) = settled(3, 60, 100 + seed, |c| {
            c.heartbeat_interval = Duration::from_millis(250);
        });
        let old = sim.leader().unwrap();
        sim.crash(old);
        sim.run_until_true(SECS(30), |s| s.leader().is_some_and(|l| l != old))
            .expect("a new leader");
        let leader = sim.leader().unwrap();
        sim.restart(old);
        sim.run_for(Duration::from_millis(500));
        sim.set_kv_outage(true);
        sim.crash(leader);
        sim.run_for(Duration::from_millis(5_600));
        sim.set_kv_outage(false);
        let led = sim.run_until_true(SECS(30), |s| s.leader().is_some_and(|l| l != leader));
        assert!(
            led.is_some(),
            "seed {}: no leader 30 s after the outage:\n{}",
            100 + seed,
            sim.trace().tail(60)
        );
        sim.restart(leader);
        sim.must_converge(SECS(120));
    }
}

#[test]
fn a_kv_outage_in_relaxed_mode_keeps_the_assignment_and_escalates_alerts() {
    let (mut sim, nodes) = expecting(3, 60, 8, |c| {
        c.handoff = HandoffMode::Relaxed;
        c.alert_after = [SECS(0), SECS(3), SECS(6), SECS(9)];
    });
    sim.must_converge(SECS(60));
    let before: Vec<_> = nodes.iter().map(|n| sim.holdings(*n).clone()).collect();
    let since = sim.now();
    sim.set_kv_outage(true);
    sim.run_for(SECS(12));
    let after: Vec<_> = nodes.iter().map(|n| sim.holdings(*n).clone()).collect();
    assert_eq!(before, after, "degraded mode keeps the cached assignment");
    for n in &nodes {
        assert_eq!(sim.state(*n), State::Degraded);
        let levels: Vec<AlertLevel> = sim
            .events()
            .iter()
            .filter(|(t, m, _)| *t >= since && m == n)
            .filter_map(|(_, _, e)| match e {
                Event::Alert { level, .. } => Some(*level),
                _ => None,
            })
            .collect();
        assert_eq!(
            levels,
            [
                AlertLevel::Info,
                AlertLevel::Warn,
                AlertLevel::Error,
                AlertLevel::Critical
            ],
            "node {n}"
        );
    }
    sim.set_kv_outage(false);
    sim.must_converge(SECS(120));
    for n in &nodes {
        assert_eq!(sim.state(*n), State::Stable);
    }
}

#[test]
fn a_join_takes_a_fair_share_and_moves_little() {
    let (mut sim, _) = settled(4, 100, 9, |_| {});
    let newcomer = sim.add_node();
    sim.must_converge(SECS(120));
    let held = sim.holdings(newcomer).len();
    assert!((19..=21).contains(&held), "newcomer holds {held}");
    assert!(sim.stats().moves <= 21, "moved {}", sim.stats().moves);
}

#[test]
fn skewed_clocks_keep_ownership_exclusive() {
    let (mut sim, nodes) = settled(3, 60, 10, |_| {});
    sim.set_clock_skew(nodes[0], 1000);
    sim.set_clock_skew(nodes[1], -1000);
    let victim = follower(&sim, &nodes);
    sim.isolate(victim);
    sim.run_for(SECS(20));
    sim.heal(victim);
    sim.must_converge(SECS(120));
}

#[test]
fn random_schedules_keep_every_guarantee() {
    for seed in 0..20 {
        let outcome = run_seed(&RunSpec::new(seed, 5, 100, SECS(60)));
        assert!(outcome.passed(), "{}", outcome.report.unwrap_or_default());
    }
}

/// Regression: a repair (rewriting a share that a late write had overwritten) that also fed a
/// newcomer revoked partitions for it in a generation labelled Stable, so no one took the
/// next step: the partitions stayed unowned until the next imbalance round (52 s and 50 s in
/// these seeds, inside the simulator's settle bound). A step short of its target is now
/// labelled Rebalancing and the handoff goes on at once.
#[test]
fn a_handoff_started_by_a_repair_is_finished_at_once() {
    for seed in [2431, 3743] {
        let outcome = run_seed(&RunSpec::new(seed, 5, 100, SECS(60)));
        assert!(outcome.passed(), "{}", outcome.report.unwrap_or_default());
        let converge = outcome.converge_ms.expect("converged");
        assert!(converge <= 15_000, "seed {seed} converged in {converge} ms");
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let spec = RunSpec::new(42, 5, 100, SECS(60));
    let (a, b) = (run_seed(&spec), run_seed(&spec));
    assert_eq!(
        (a.moves, a.emergencies, a.steps, a.converge_ms),
        (b.moves, b.emergencies, b.steps, b.converge_ms)
    );
    assert!(a.steps > 1000, "a real run: {} steps", a.steps);
}
