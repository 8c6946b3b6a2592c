//! Crash detection and the leader's idle cost on the simulator: a crashed worker's partitions
//! are reassigned `lease_ttl + emergency_grace` after its last renewal (the leader's own timer,
//! not the expiry marker), never before it fenced itself; an idle leader writes at most 1.5 times
//! per heartbeat; behind a round trip longer than a heartbeat, renewals follow each other back to
//! back without fencing. All times are virtual.

use parti_core::sim::NodeId;
use parti_core::{Bucket, WorkerId};
use std::time::Duration;

mod common;
use common::*;

/// The revision of `worker.<id>` in the KV, if it exists.
fn lease_revision(sim: &parti_core::sim::Sim, id: WorkerId) -> Option<u64> {
    sim.kv()
        .get(Bucket::Leases, &format!("worker.{id}"))
        .map(|e| e.revision)
}

/// Runs until node `n`'s lease was renewed once more, and returns that moment.
fn just_renewed(sim: &mut parti_core::sim::Sim, n: NodeId) -> parti_core::Instant {
    let id = sim.worker_id(n).expect("an ID");
    let before = lease_revision(sim, id);
    sim.run_until_true(SECS(5), |s| lease_revision(s, id) != before)
        .expect("a renewal within a heartbeat")
}

#[test]
fn a_crash_right_after_a_renewal_is_reassigned_within_ttl_plus_grace() {
    let (mut sim, nodes) = settled(3, 90, 11, |_| {});
    let victim = follower(&sim, &nodes);
    let renewed = just_renewed(&mut sim, victim);
    sim.crash(victim);
    let cfg = sim.template().clone();
    let reassigned = sim
        .run_until_true(SECS(30), |s| all_owned_once(s, 90))
        .expect("the victim's partitions are reassigned");
    let took = reassigned - renewed;
    // Not before the victim certainly fenced (a TTL after the renewal, on the leader's clock) ...
    assert!(took >= cfg.lease_ttl, "reassigned after {took:?}");
    // ... and not later than the grace after that, plus a few simulated round trips.
    let bound = cfg.lease_ttl + cfg.emergency_grace + Duration::from_millis(100);
    assert!(
        took <= bound,
        "reassigned {took:?} after the last renewal (bound {bound:?})\n{}",
        sim.trace().tail(40)
    );
    sim.assert_clean();
}

#[test]
fn the_default_grace_keeps_reassignment_within_ttl_plus_half_a_second() {
    let cfg = parti_core::Config::default();
    assert!(cfg.lease_ttl + cfg.emergency_grace <= cfg.lease_ttl + Duration::from_millis(450));
}

#[test]
fn an_idle_leader_writes_at_most_one_and_a_half_times_per_heartbeat() {
    let (mut sim, _) = settled(3, 30, 12, |_| {});
    sim.run_for(SECS(10));
    let leader = sim.leader().expect("a leader");
    let id = sim.worker_id(leader).expect("an ID");
    let count = |s: &parti_core::sim::Sim, key: &str| s.kv().history(Bucket::Leases, key).len();
    let own = format!("worker.{id}");
    let (leader0, own0) = (count(&sim, "leader"), count(&sim, &own));
    let window = SECS(60);
    sim.run_for(window);
    assert_eq!(sim.leader(), Some(leader), "the leader stayed");
    let heartbeats = (window.as_millis() / sim.template().heartbeat_interval.as_millis()) as usize;
    let leader_writes = count(&sim, "leader") - leader0;
    let own_writes = count(&sim, &own) - own0;
    assert!(own_writes <= heartbeats, "{own_writes} worker-lease writes");
    assert!(
        2 * (leader_writes + own_writes) <= 3 * heartbeats,
        "{leader_writes} leader-lease + {own_writes} worker-lease writes in {heartbeats} heartbeats"
    );
    assert!(leader_writes > 0, "the leader lease is still renewed");
    sim.assert_clean();
}

/// Lease writes on `worker.<id>` in the KV's history, and how many of the worker's events were
/// fences.
fn writes_and_fences(sim: &parti_core::sim::Sim, n: NodeId) -> (usize, usize) {
    let id = sim.worker_id(n).expect("an ID");
    let writes = sim
        .kv()
        .history(Bucket::Leases, &format!("worker.{id}"))
        .len();
    let fences = sim
        .events()
        .iter()
        .filter(|(_, node, e)| {
            *node == n && matches!(e, parti_core::Event::Warning(parti_core::Warning::Fenced))
        })
        .count();
    (writes, fences)
}

#[test]
fn a_round_trip_longer_than_a_heartbeat_renews_back_to_back_without_fencing() {
    use parti_core::sim::{numbered_partitions, Sim, SimConfig};
    // 150–250 ms each way: a round trip of 300–500 ms against a 200 ms heartbeat, well inside
    // the 1.5 s fence window.
    let mut sim_config = SimConfig::default();
    sim_config.net.kv_delay = (Duration::from_millis(150), Duration::from_millis(250));
    sim_config.net.watch_delay = (Duration::from_millis(150), Duration::from_millis(250));
    let config = parti_core::Config {
        expected_workers: Some(3),
        heartbeat_interval: Duration::from_millis(200),
        lease_ttl: SECS(2),
        safety_margin: Duration::from_millis(500),
        ..parti_core::Config::default()
    };
    let mut sim = Sim::new(config, sim_config, 13).unwrap();
    sim.set_partitions(numbered_partitions(30));
    let nodes: Vec<NodeId> = (0..3).map(|_| sim.add_node()).collect();
    sim.must_converge(SECS(60));
    let before: Vec<_> = nodes.iter().map(|n| writes_and_fences(&sim, *n)).collect();
    let moves = sim.stats().moves;
    let window = SECS(30);
    sim.run_for(window);
    for (n, (writes0, fences0)) in nodes.iter().zip(before) {
        let (writes, fences) = writes_and_fences(&sim, *n);
        assert_eq!(fences, fences0, "node {n} fenced behind a slow link");
        // Renewals follow each other as fast as the round trip allows (400 ms on average): no
        // duplicate on the same revision wastes a round trip failing its CAS and re-reading.
        let renewals = writes - writes0;
        assert!(
            renewals >= (window.as_millis() / 450) as usize,
            "node {n} renewed only {renewals} times in {window:?}"
        );
    }
    assert_eq!(sim.stats().moves, moves, "nothing moved");
    sim.assert_clean();
}

/// Found by the simulator (seed 4116 of `--seeds 5000`): the leader, fenced by a KV outage,
/// renews its own lease at the very deadline at which it declares itself crashed. Its GET reads
/// the renewal back before the watch delivers it; the stale watch entry must not revive the
/// peer, and the marker of the leader's own CAS delete must not read as a graceful leave (which
/// granted the partitions while their holder still had them).
#[test]
fn a_renewal_at_the_crash_deadline_never_gives_a_partition_two_owners() {
    let outcome = parti_core::sim::run_seed(&parti_core::sim::RunSpec::new(4116, 5, 100, SECS(60)));
    assert!(outcome.passed(), "{}", outcome.report.unwrap_or_default());
}

/// The assignment deltas a node reported: (revoked, lost) partitions over all its events.
fn revoked_and_lost(sim: &parti_core::sim::Sim, n: NodeId) -> (usize, usize) {
    sim.events().iter().filter(|(_, node, _)| *node == n).fold(
        (0, 0),
        |(r, l), (_, _, e)| match e {
            parti_core::Event::AssignmentChanged { revoked, lost, .. } => {
                (r + revoked.len(), l + lost.len())
            }
            _ => (r, l),
        },
    )
}

#[test]
fn a_fenced_worker_reports_its_partitions_lost_and_a_handoff_reports_them_revoked() {
    let (mut sim, nodes) = settled(3, 30, 21, |_| {});
    let victim = follower(&sim, &nodes);
    let held = sim.holdings(victim).len();
    assert!(held > 0, "the follower holds partitions");
    assert_eq!(revoked_and_lost(&sim, victim), (0, 0));
    // Cut off past the fence window: it fences (Strict) and drops everything as lost.
    sim.isolate(victim);
    sim.run_for(sim.template().lease_ttl + SECS(1));
    let (revoked, lost) = revoked_and_lost(&sim, victim);
    assert_eq!(
        (revoked, lost),
        (0, held),
        "a fence loses, it does not revoke"
    );
    sim.heal(victim);
    sim.must_converge(SECS(60));
    // A graceful final stop hands its partitions off: revoked, never lost.
    let other = *nodes
        .iter()
        .find(|n| **n != victim && Some(**n) != sim.leader())
        .unwrap_or(&victim);
    let before = revoked_and_lost(&sim, other);
    let held = sim.holdings(other).len();
    assert!(held > 0, "{other} holds partitions");
    sim.stop(other, true);
    sim.must_converge(SECS(60));
    let after = revoked_and_lost(&sim, other);
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (held, 0),
        "a stop revokes, it does not lose"
    );
}

/// One lost renewal does not fence a worker: the duplicate goes out as soon as the first may be
/// lost (half the fence window after it was sent), not at the next heartbeat, which with the
/// defaults comes after the fence (one lost renewal cost a worker its lease and the fleet an
/// emergency: simulator seed 3611).
#[test]
fn one_lost_renewal_does_not_fence_the_worker() {
    use parti_core::sim::{numbered_partitions, NetConfig, Sim, SimConfig};
    use parti_core::{Config, Event, Warning};
    for seed in 0..10 {
        let config = Config {
            expected_workers: Some(3),
            ..Config::default()
        };
        // what a node sends while cut off is lost for good
        let net = NetConfig {
            buffered_land_prob: 0.0,
            ..NetConfig::default()
        };
        let sim_config = SimConfig {
            net,
            ..SimConfig::default()
        };
        let mut sim = Sim::new(config, sim_config, 40 + seed).unwrap();
        sim.set_partitions(numbered_partitions(60));
        let nodes: Vec<NodeId> = (0..3).map(|_| sim.add_node()).collect();
        sim.must_converge(SECS(60));
        let victim = follower(&sim, &nodes);
        let held = sim.holdings(victim).clone();
        let id = sim.worker_id(victim).expect("an ID");
        just_renewed(&mut sim, victim);
        // cut it off across its next renewal (a heartbeat after this one), which is lost
        sim.run_for(Duration::from_millis(1_800));
        let before = sim
            .kv()
            .history(Bucket::Leases, &format!("worker.{id}"))
            .len();
        sim.isolate(victim);
        sim.run_for(Duration::from_millis(400));
        sim.heal(victim);
        let after = sim
            .kv()
            .history(Bucket::Leases, &format!("worker.{id}"))
            .len();
        assert_eq!(before, after, "seed {seed}: no renewal was lost");
        sim.run_for(SECS(10));
        let fenced = sim
            .events()
            .iter()
            .any(|(_, n, e)| *n == victim && matches!(e, Event::Warning(Warning::Fenced)));
        assert!(
            !fenced,
            "seed {seed}: one lost renewal fenced the worker:\n{}",
            sim.trace().tail(40)
        );
        assert_eq!(sim.holdings(victim), &held, "seed {seed}");
    }
}
