//! Pins down the simulator's mechanics that do not depend on the worker's logic beyond the KV:
//! the simulated network (delays, watch order, isolation buffering, outages, drops, late
//! writes), random schedules and the harness's bounded drive.

use parti_core::sim::{
    numbered_partitions, random_schedule, Delivery, Fault, MemKv, NetConfig, Network, NodeId, Sim,
    SimConfig, ViolationKind,
};
use parti_core::{
    Action, Bucket, Config, Entry, Input, Instant, KvOp, KvResult, Operation, RequestId, WatchId,
};
use std::time::Duration;

mod common;
use common::kv::*;

// ----- Network -----

const A: NodeId = NodeId(0);
const B: NodeId = NodeId(1);

fn net(config: NetConfig) -> Network {
    let mut kv = MemKv::new();
    kv.set_max_age(Bucket::Leases, Some(Duration::from_secs(6)));
    let mut net = Network::new(config, kv, 7);
    net.attach(t(0), A, 1);
    net.attach(t(0), B, 1);
    net
}

/// Runs the network until `until`, returning every delivery with its time.
fn run(net: &mut Network, until: Instant) -> Vec<(Instant, Delivery)> {
    let mut out = Vec::new();
    let (mut ds, mut cs) = (Vec::new(), Vec::new());
    while net.next_at().is_some_and(|at| at <= until) {
        let at = net.step(&mut ds, &mut cs).unwrap();
        out.extend(ds.drain(..).map(|d| (at, d)));
        cs.clear();
    }
    out
}

fn kv_action(id: u64, bucket: Bucket, op: KvOp) -> Action {
    Action::Kv {
        id: RequestId(id),
        bucket,
        op,
    }
}

fn results(ds: &[(Instant, Delivery)], node: NodeId) -> Vec<(RequestId, KvResult)> {
    ds.iter()
        .filter(|(_, d)| d.node == node)
        .filter_map(|(_, d)| match &d.input {
            Input::KvResult { id, result } => Some((*id, result.clone())),
            _ => None,
        })
        .collect()
}

fn watched(ds: &[(Instant, Delivery)], node: NodeId) -> Vec<(WatchId, Entry)> {
    ds.iter()
        .filter(|(_, d)| d.node == node)
        .filter_map(|(_, d)| match &d.input {
            Input::WatchEntry { watch, entry } => Some((*watch, entry.clone())),
            _ => None,
        })
        .collect()
}

fn connections(ds: &[(Instant, Delivery)], node: NodeId) -> Vec<bool> {
    ds.iter()
        .filter(|(_, d)| d.node == node)
        .filter_map(|(_, d)| match d.input {
            Input::Connection(up) => Some(up),
            _ => None,
        })
        .collect()
}

#[test]
fn a_kv_request_is_answered_once_after_two_delays() {
    let mut net = net(NetConfig::default());
    assert_eq!(
        net.send(
            t(0),
            A,
            kv_action(1, Bucket::Leases, create("worker.0", "a"))
        ),
        None
    );
    let ds = run(&mut net, t(10_000));
    let answers: Vec<_> = ds
        .iter()
        .filter(|(_, d)| matches!(d.input, Input::KvResult { .. }))
        .collect();
    assert_eq!(
        answers.len(),
        1,
        "exactly one answer, no timeout after the reply"
    );
    let (at, d) = answers[0];
    assert_eq!(
        d.input,
        Input::KvResult {
            id: RequestId(1),
            result: written(1)
        }
    );
    assert!(
        *at >= t(0) + Duration::from_micros(200) && *at <= t(4),
        "{at}"
    );
    assert_eq!(net.pending_requests(), 0);
}

#[test]
fn other_actions_are_handed_back() {
    let mut net = net(NetConfig::default());
    assert_eq!(
        net.send(t(0), A, Action::ListPartitions(RequestId(3))),
        Some(Action::ListPartitions(RequestId(3)))
    );
}

#[test]
fn a_watch_delivers_its_snapshot_then_every_change_in_order() {
    let mut net = net(NetConfig::default());
    net.send(t(0), B, kv_action(1, Bucket::Leases, put("worker.1", "x")));
    net.send(t(0), B, kv_action(2, Bucket::Leases, put("leader", "x")));
    run(&mut net, t(10));
    let filters = vec!["worker.*".to_owned()];
    net.send(
        t(10),
        A,
        Action::Watch {
            id: WatchId(1),
            bucket: Bucket::Leases,
            filters,
        },
    );
    // A burst of writes whose replies and fan-out race each other.
    for i in 0..200u64 {
        let at = t(10) + Duration::from_micros(i * 37);
        run(&mut net, at);
        net.send(
            at,
            B,
            kv_action(
                10 + i,
                Bucket::Leases,
                put(&format!("worker.{}", i % 7), "v"),
            ),
        );
    }
    let ds = run(&mut net, t(1000));
    let entries = watched(&ds, A);
    let revisions: Vec<u64> = entries.iter().map(|(_, e)| e.revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {revisions:?}"
    );
    assert!(
        entries.iter().all(|(_, e)| e.key.starts_with("worker.")),
        "filters apply"
    );
    assert_eq!(
        *revisions.last().unwrap(),
        net.kv().revision(Bucket::Leases)
    );
    for k in 0..7 {
        let key = format!("worker.{k}");
        let last = entries
            .iter()
            .rev()
            .find(|(_, e)| e.key == key)
            .map(|(_, e)| e);
        assert_eq!(
            last,
            net.kv().get(Bucket::Leases, &key),
            "{key} ends at its latest value"
        );
    }
    let times: Vec<Instant> = ds
        .iter()
        .filter(|(_, d)| d.node == A)
        .map(|(at, _)| *at)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn a_watch_starts_with_the_latest_value_of_each_matching_key() {
    let mut net = net(NetConfig::default());
    net.send(
        t(0),
        B,
        kv_action(1, Bucket::Leases, put("worker.1", "old")),
    );
    net.send(t(1), B, kv_action(2, Bucket::Leases, put("leader", "x")));
    net.send(
        t(2),
        B,
        kv_action(3, Bucket::Leases, put("worker.1", "new")),
    );
    run(&mut net, t(10));
    net.send(
        t(10),
        A,
        Action::Watch {
            id: WatchId(1),
            bucket: Bucket::Leases,
            filters: vec!["worker.*".into()],
        },
    );
    let mut ds = run(&mut net, t(20));
    net.send(t(20), B, kv_action(4, Bucket::Leases, put("worker.2", "x")));
    ds.extend(run(&mut net, t(100)));
    let got: Vec<(String, u64)> = watched(&ds, A)
        .into_iter()
        .map(|(_, e)| (e.key, e.revision))
        .collect();
    assert_eq!(
        got,
        [("worker.1".to_owned(), 3), ("worker.2".to_owned(), 4)]
    );
}

#[test]
fn an_unwatched_watch_delivers_nothing_more() {
    let mut net = net(NetConfig::default());
    net.send(
        t(0),
        A,
        Action::Watch {
            id: WatchId(1),
            bucket: Bucket::Assign,
            filters: vec![">".into()],
        },
    );
    run(&mut net, t(10));
    net.send(t(10), B, kv_action(1, Bucket::Assign, put("gen", "1")));
    run(&mut net, t(20));
    net.send(t(20), A, Action::Unwatch(WatchId(1)));
    net.send(t(20), B, kv_action(2, Bucket::Assign, put("gen", "2")));
    let ds = run(&mut net, t(100));
    assert!(watched(&ds, A).is_empty());
}

#[test]
fn an_isolated_node_times_out_then_its_buffered_writes_land_at_the_heal() {
    let mut net = net(NetConfig::default());
    net.isolate(t(0), A);
    net.send(
        t(0),
        A,
        kv_action(1, Bucket::Leases, put("worker.0", "late")),
    );
    net.send(
        t(0),
        A,
        kv_action(
            2,
            Bucket::Leases,
            KvOp::Get {
                key: "worker.0".into(),
            },
        ),
    );
    let ds = run(&mut net, t(20_000));
    assert_eq!(
        results(&ds, A),
        [
            (RequestId(1), KvResult::TimedOut),
            (RequestId(2), KvResult::TimedOut)
        ]
    );
    assert_eq!(connections(&ds, A), [false]);
    assert_eq!(
        net.kv().get(Bucket::Leases, "worker.0"),
        None,
        "nothing reached the KV"
    );
    net.heal(t(20_000), A);
    let ds = run(&mut net, t(21_000));
    assert_eq!(
        net.kv().get(Bucket::Leases, "worker.0").unwrap().value,
        b"late"
    );
    assert!(results(&ds, A).is_empty(), "the client already gave up");
    assert_eq!(connections(&ds, A), [true]);
}

#[test]
fn a_request_healed_before_its_timeout_gets_its_real_answer() {
    let mut net = net(NetConfig::default());
    net.isolate(t(0), A);
    net.send(
        t(0),
        A,
        kv_action(1, Bucket::Leases, create("worker.0", "a")),
    );
    run(&mut net, t(1000));
    net.heal(t(1000), A);
    let ds = run(&mut net, t(20_000));
    assert_eq!(results(&ds, A), [(RequestId(1), written(1))]);
}

#[test]
fn watch_deliveries_to_an_isolated_node_are_held_until_the_heal() {
    let mut net = net(NetConfig::default());
    net.send(
        t(0),
        A,
        Action::Watch {
            id: WatchId(5),
            bucket: Bucket::Leases,
            filters: vec!["leader".into()],
        },
    );
    run(&mut net, t(10));
    net.isolate(t(10), A);
    for i in 0..5 {
        net.send(
            t(10 + i),
            B,
            kv_action(i, Bucket::Leases, put("leader", &i.to_string())),
        );
    }
    let ds = run(&mut net, t(5000));
    assert!(watched(&ds, A).is_empty());
    net.heal(t(5000), A);
    net.send(
        t(5000),
        B,
        kv_action(9, Bucket::Leases, put("leader", "after")),
    );
    let ds = run(&mut net, t(6000));
    let revs: Vec<u64> = watched(&ds, A).iter().map(|(_, e)| e.revision).collect();
    assert_eq!(revs, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_watch_started_while_isolated_starts_at_the_heal() {
    let mut net = net(NetConfig::default());
    net.send(t(0), B, kv_action(1, Bucket::Assign, put("gen", "1")));
    run(&mut net, t(10));
    net.isolate(t(10), A);
    net.send(
        t(10),
        A,
        Action::Watch {
            id: WatchId(1),
            bucket: Bucket::Assign,
            filters: vec!["gen".into()],
        },
    );
    net.send(t(20), B, kv_action(2, Bucket::Assign, put("gen", "2")));
    assert!(watched(&run(&mut net, t(3000)), A).is_empty());
    net.heal(t(3000), A);
    let revs: Vec<u64> = watched(&run(&mut net, t(4000)), A)
        .iter()
        .map(|(_, e)| e.revision)
        .collect();
    assert_eq!(
        revs,
        [2],
        "the snapshot is taken when the request reaches the KV"
    );
}

#[test]
fn a_kv_outage_times_everyone_out_and_pauses_watches() {
    let mut net = net(NetConfig {
        buffered_land_prob: 0.0,
        ..NetConfig::default()
    });
    net.send(
        t(0),
        A,
        Action::Watch {
            id: WatchId(1),
            bucket: Bucket::Leases,
            filters: vec![">".into()],
        },
    );
    run(&mut net, t(10));
    net.set_kv_up(t(10), false);
    net.send(t(10), B, kv_action(1, Bucket::Leases, put("leader", "x")));
    let ds = run(&mut net, t(8000));
    assert_eq!(results(&ds, B), [(RequestId(1), KvResult::TimedOut)]);
    assert_eq!(
        (connections(&ds, A), connections(&ds, B)),
        (vec![false], vec![false])
    );
    net.set_kv_up(t(8000), true);
    let ds = run(&mut net, t(9000));
    assert_eq!(
        net.kv().revision(Bucket::Leases),
        0,
        "the buffered write was lost"
    );
    assert_eq!(
        (connections(&ds, A), connections(&ds, B)),
        (vec![true], vec![true])
    );
}

#[test]
fn a_lost_write_times_out_yet_may_land_later() {
    let config = NetConfig {
        drop_prob: 1.0,
        late_land_prob: 1.0,
        ..NetConfig::default()
    };
    let mut net = net(config);
    for i in 0..20 {
        net.send(
            t(0),
            A,
            kv_action(i, Bucket::Assign, put(&format!("k{i}"), "v")),
        );
    }
    let ds = run(&mut net, t(5000));
    assert_eq!(results(&ds, A).len(), 20);
    assert!(results(&ds, A)
        .iter()
        .all(|(_, r)| *r == KvResult::TimedOut));
    let before = net.kv().revision(Bucket::Assign);
    run(&mut net, t(20_000));
    assert_eq!(
        net.kv().revision(Bucket::Assign),
        20,
        "every lost write landed by two timeouts"
    );
    assert!(before < 20, "some land after the client timed out");
    assert_eq!(net.stats().landed_late, 20);
}

#[test]
fn writes_in_flight_from_a_crashed_process_still_land_without_an_answer() {
    let mut net = net(NetConfig::default());
    net.send(
        t(0),
        A,
        kv_action(1, Bucket::Assign, put("worker.0", "last words")),
    );
    net.detach(A);
    let ds = run(&mut net, t(10_000));
    assert!(ds.iter().all(|(_, d)| d.node != A));
    assert!(net.kv().get(Bucket::Assign, "worker.0").is_some());
    // A new incarnation is a new process: nothing of the old one reaches it.
    net.attach(t(10_000), A, 2);
    net.send(
        t(10_000),
        A,
        kv_action(
            1,
            Bucket::Assign,
            KvOp::Get {
                key: "worker.0".into(),
            },
        ),
    );
    let ds = run(&mut net, t(11_000));
    assert!(ds.iter().all(|(_, d)| d.incarnation == 2));
}

#[test]
fn expired_leases_reach_watchers_as_purge_markers() {
    let mut net = net(NetConfig::default());
    net.send(
        t(0),
        A,
        Action::Watch {
            id: WatchId(1),
            bucket: Bucket::Leases,
            filters: vec!["worker.*".into()],
        },
    );
    net.send(
        t(0),
        B,
        kv_action(1, Bucket::Leases, create("worker.1", "b")),
    );
    let ds = run(&mut net, t(7000));
    let ops: Vec<(u64, Operation)> = watched(&ds, A)
        .iter()
        .map(|(_, e)| (e.revision, e.operation))
        .collect();
    assert_eq!(ops, [(1, Operation::Put), (2, Operation::Purge)]);
}

#[test]
fn the_same_seed_gives_the_same_deliveries() {
    let go = || {
        let config = NetConfig {
            drop_prob: 0.3,
            ..NetConfig::default()
        };
        let mut net = net(config);
        net.send(
            t(0),
            A,
            Action::Watch {
                id: WatchId(1),
                bucket: Bucket::Leases,
                filters: vec![">".into()],
            },
        );
        for i in 0..50 {
            net.send(t(i), B, kv_action(i, Bucket::Leases, put("k", "v")));
        }
        run(&mut net, t(30_000))
    };
    assert_eq!(go(), go());
}

// ----- schedules and the harness -----

#[test]
fn random_schedules_are_seeded_sorted_and_within_the_duration() {
    let d = Duration::from_secs(60);
    let a = random_schedule(1, 5, d);
    assert_eq!(a, random_schedule(1, 5, d));
    assert_ne!(a, random_schedule(2, 5, d));
    assert!(a.faults.len() > 5);
    assert!(a.faults.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(a.faults.iter().all(|(at, _)| *at < Instant::from_origin(d)));
    let all: Vec<Fault> = (0..200)
        .flat_map(|s| random_schedule(s, 5, d).faults)
        .map(|(_, f)| f)
        .collect();
    let has = |p: fn(&Fault) -> bool| all.iter().any(p);
    assert!(has(|f| matches!(f, Fault::Crash(_))) && has(|f| matches!(f, Fault::Isolate(_))));
    assert!(has(|f| matches!(f, Fault::KvOutage(true))) && has(|f| matches!(f, Fault::KillLeader)));
    assert!(has(
        |f| matches!(f, Fault::ClockSkew { ppm, .. } if ppm.abs() <= 1000)
    ));
    assert!(
        has(|f| matches!(f, Fault::Join))
            && has(|f| matches!(
                f,
                Fault::Stop {
                    final_stop: false,
                    ..
                }
            ))
    );
    assert!(
        has(|f| matches!(f, Fault::ResizePartitions(_))) && has(|f| matches!(f, Fault::Drain(_)))
    );
}

#[test]
fn processes_get_new_incarnations_and_tokens_on_restart() {
    let mut sim = Sim::new(Config::default(), SimConfig::default(), 3).unwrap();
    let n = sim.add_node();
    let first = sim.worker(n).unwrap().config().instance_token;
    sim.run_for(Duration::from_secs(1));
    sim.crash(n);
    assert!(sim.worker(n).is_none());
    assert!(sim.holdings(n).is_empty());
    sim.restart(n);
    assert_eq!(sim.incarnation(n), 2);
    assert_ne!(sim.worker(n).unwrap().config().instance_token, first);
}

#[test]
fn convergence_fails_loudly_when_the_kv_never_comes_back() {
    let mut sim = Sim::new(Config::default(), SimConfig::default(), 4).unwrap();
    sim.set_partitions(numbered_partitions(10));
    sim.set_kv_outage(true);
    sim.add_node();
    let err = sim.converge(Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.kind, ViolationKind::NotConverged);
    assert!(err.details.contains("10 unowned"), "{}", err.details);
    assert_eq!(sim.now(), Instant::from_millis(30_000));
    assert!(sim.trace().tail(5).contains("VIOLATION NotConverged"));
}

#[test]
fn an_empty_cluster_with_nothing_to_own_is_settled_after_the_quiet_period() {
    let mut sim = Sim::new(Config::default(), SimConfig::default(), 5).unwrap();
    assert_eq!(sim.quiet_period(), Duration::from_secs(4));
    assert_eq!(sim.converge(Duration::from_secs(10)), Ok(Duration::ZERO));
    assert_eq!(sim.now(), Instant::from_millis(4000));
}

#[test]
fn the_same_seed_replays_the_same_run_step_for_step() {
    let spec = |seed| {
        let mut spec = parti_core::sim::RunSpec::new(seed, 3, 30, Duration::from_secs(20));
        spec.sim.trace_kv = true;
        spec
    };
    let play = |seed| {
        let spec = spec(seed);
        let schedule = random_schedule(seed, spec.workers, spec.duration);
        let mut sim = Sim::new(spec.config.clone(), spec.sim.clone(), seed).unwrap();
        sim.set_partitions(numbered_partitions(spec.partitions));
        for _ in 0..spec.workers {
            sim.add_node();
        }
        for (at, fault) in &schedule.faults {
            sim.schedule_fault(*at, fault.clone());
        }
        sim.run_until(Instant::from_origin(spec.duration));
        (
            sim.trace().tail(usize::MAX),
            sim.stats().clone(),
            sim.network().stats().clone(),
        )
    };
    assert_eq!(play(11), play(11));
    assert_ne!(play(11).0, play(12).0);
}
