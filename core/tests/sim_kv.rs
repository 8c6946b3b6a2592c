//! Pins down the simulator's mechanics that do not depend on the worker's logic: the in-memory
//! KV's NATS semantics, the simulated network (delays, watch order, isolation buffering,
//! outages, drops, late writes), random schedules and the harness's bounded drive.

use parti_core::sim::{
    numbered_partitions, random_schedule, Delivery, Fault, MemKv, NetConfig, Network, NodeId, Sim,
    SimConfig, ViolationKind,
};
use parti_core::{
    Action, Bucket, Config, Entry, Input, Instant, KvOp, KvResult, Operation, RequestId, WatchId,
};
use std::time::Duration;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn put(key: &str, value: &str) -> KvOp {
    KvOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn create(key: &str, value: &str) -> KvOp {
    KvOp::Create {
        key: key.into(),
        value: value.into(),
    }
}

fn update(key: &str, value: &str, revision: u64) -> KvOp {
    KvOp::Update {
        key: key.into(),
        value: value.into(),
        revision,
    }
}

fn written(r: u64) -> KvResult {
    KvResult::Written { revision: r }
}

// ----- MemKv -----

#[test]
fn revisions_count_per_bucket_from_one() {
    let mut kv = MemKv::new();
    assert_eq!(kv.revision(Bucket::Leases), 0);
    assert_eq!(kv.apply(t(0), Bucket::Leases, &put("a", "1")).0, written(1));
    assert_eq!(kv.apply(t(0), Bucket::Leases, &put("b", "1")).0, written(2));
    assert_eq!(kv.apply(t(0), Bucket::Assign, &put("a", "1")).0, written(1));
    assert_eq!(
        kv.apply(
            t(0),
            Bucket::Leases,
            &KvOp::Delete {
                key: "a".into(),
                revision: None
            }
        )
        .0,
        written(3)
    );
    assert_eq!(
        (kv.revision(Bucket::Leases), kv.revision(Bucket::Assign)),
        (3, 1)
    );
}

#[test]
fn create_is_put_if_absent_and_succeeds_again_after_a_delete() {
    let mut kv = MemKv::new();
    let (r, change) = kv.apply(t(0), Bucket::Leases, &create("k", "a"));
    assert_eq!(r, written(1));
    let change = change.unwrap();
    assert_eq!(
        (change.key.as_str(), change.revision, change.operation),
        ("k", 1, Operation::Put)
    );
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &create("k", "b")),
        (KvResult::AlreadyExists, None)
    );
    kv.apply(
        t(0),
        Bucket::Leases,
        &KvOp::Delete {
            key: "k".into(),
            revision: None,
        },
    );
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &create("k", "c")).0,
        written(3)
    );
    assert_eq!(kv.get(Bucket::Leases, "k").unwrap().value, b"c");
}

#[test]
fn create_succeeds_on_an_expired_key() {
    let mut kv = MemKv::new();
    kv.set_max_age(Bucket::Leases, Some(Duration::from_secs(6)));
    kv.apply(t(0), Bucket::Leases, &create("k", "a"));
    kv.expire(t(6000));
    assert_eq!(
        kv.apply(t(6000), Bucket::Leases, &create("k", "b")).0,
        written(3)
    );
}

#[test]
fn update_is_a_cas_on_the_last_revision() {
    let mut kv = MemKv::new();
    kv.apply(t(0), Bucket::Leases, &create("k", "a"));
    kv.apply(t(0), Bucket::Leases, &put("other", "x"));
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &update("k", "b", 2)),
        (KvResult::WrongRevision, None)
    );
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &update("k", "b", 1)).0,
        written(3)
    );
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &update("k", "c", 1)).0,
        KvResult::WrongRevision
    );
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &update("k", "c", 3)).0,
        written(4)
    );
}

#[test]
fn update_of_a_missing_or_deleted_key_fails_like_nats() {
    let mut kv = MemKv::new();
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &update("missing", "v", 5)).0,
        KvResult::WrongRevision
    );
    kv.apply(t(0), Bucket::Leases, &put("k", "a"));
    kv.apply(
        t(0),
        Bucket::Leases,
        &KvOp::Delete {
            key: "k".into(),
            revision: None,
        },
    );
    // The revision we last wrote is no longer the last one: the delete marker is.
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &update("k", "b", 1)).0,
        KvResult::WrongRevision
    );
    // NATS checks the subject's last sequence: 0 means "never written", the marker's counts.
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &update("fresh", "v", 0)).0,
        written(3)
    );
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &update("k", "b", 2)).0,
        written(4)
    );
}

#[test]
fn put_overwrites_unconditionally() {
    let mut kv = MemKv::new();
    kv.apply(t(0), Bucket::Assign, &put("gen", "1"));
    assert_eq!(
        kv.apply(t(0), Bucket::Assign, &put("gen", "2")).0,
        written(2)
    );
    assert_eq!(kv.get(Bucket::Assign, "gen").unwrap().value, b"2");
}

#[test]
fn delete_writes_a_marker_and_may_expect_a_revision() {
    let mut kv = MemKv::new();
    kv.apply(t(0), Bucket::Leases, &put("leader", "a"));
    let wrong = KvOp::Delete {
        key: "leader".into(),
        revision: Some(7),
    };
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &wrong),
        (KvResult::WrongRevision, None)
    );
    let (r, change) = kv.apply(
        t(0),
        Bucket::Leases,
        &KvOp::Delete {
            key: "leader".into(),
            revision: Some(1),
        },
    );
    assert_eq!(r, written(2));
    let marker = change.unwrap();
    assert_eq!(
        (marker.operation, marker.value.len()),
        (Operation::Delete, 0)
    );
    assert_eq!(
        kv.last_entry(Bucket::Leases, "leader").unwrap().operation,
        Operation::Delete
    );
}

#[test]
fn get_returns_none_for_absent_and_deleted_keys() {
    let mut kv = MemKv::new();
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &KvOp::Get { key: "k".into() })
            .0,
        KvResult::Value(None)
    );
    kv.apply(t(0), Bucket::Leases, &put("k", "a"));
    match kv.apply(t(0), Bucket::Leases, &KvOp::Get { key: "k".into() }) {
        (KvResult::Value(Some(e)), None) => {
            assert_eq!((e.revision, e.value.as_slice()), (1, &b"a"[..]))
        }
        other => panic!("unexpected {other:?}"),
    }
    kv.apply(
        t(0),
        Bucket::Leases,
        &KvOp::Delete {
            key: "k".into(),
            revision: None,
        },
    );
    assert_eq!(
        kv.apply(t(0), Bucket::Leases, &KvOp::Get { key: "k".into() })
            .0,
        KvResult::Value(None)
    );
}

#[test]
fn list_returns_the_live_keys_under_a_prefix() {
    let mut kv = MemKv::new();
    for k in ["worker.1", "worker.2", "worker.3", "workers", "leader"] {
        kv.apply(t(0), Bucket::Leases, &put(k, "v"));
    }
    kv.apply(
        t(0),
        Bucket::Leases,
        &KvOp::Delete {
            key: "worker.2".into(),
            revision: None,
        },
    );
    let KvResult::Entries(entries) = kv
        .apply(
            t(0),
            Bucket::Leases,
            &KvOp::List {
                prefix: "worker.".into(),
            },
        )
        .0
    else {
        panic!("not a list");
    };
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["worker.1", "worker.3"]);
}

#[test]
fn values_expire_max_age_after_their_last_write_as_purge_markers() {
    let mut kv = MemKv::new();
    kv.set_max_age(Bucket::Leases, Some(Duration::from_secs(6)));
    kv.apply(t(0), Bucket::Leases, &put("worker.1", "a"));
    kv.apply(t(1000), Bucket::Leases, &put("worker.2", "b"));
    kv.apply(t(2000), Bucket::Leases, &update("worker.1", "a2", 1)); // renewal at 2 s
    kv.apply(t(0), Bucket::Assign, &put("gen", "g"));
    assert_eq!(kv.next_expiry(), Some(t(7000)));
    assert!(kv.expire(t(6999)).is_empty());
    let purged = kv.expire(t(7000));
    assert_eq!(purged.len(), 1);
    let p = &purged[0];
    assert_eq!(
        (p.key.as_str(), p.operation, p.revision),
        ("worker.2", Operation::Purge, 4)
    );
    assert_eq!(kv.get(Bucket::Leases, "worker.2"), None);
    assert_eq!(kv.next_expiry(), Some(t(8000)));
    assert_eq!(kv.expire(t(60_000)).len(), 1);
    assert_eq!(
        kv.next_expiry(),
        None,
        "markers and the assign bucket never expire"
    );
    assert!(kv.get(Bucket::Assign, "gen").is_some());
}

#[test]
fn snapshot_gives_the_latest_live_entry_per_matching_key_in_revision_order() {
    let mut kv = MemKv::new();
    kv.apply(t(0), Bucket::Assign, &put("worker.2", "a"));
    kv.apply(t(0), Bucket::Assign, &put("worker.1", "a"));
    kv.apply(t(0), Bucket::Assign, &put("gen", "g"));
    kv.apply(t(0), Bucket::Assign, &put("worker.2", "b"));
    kv.apply(t(0), Bucket::Assign, &put("worker.3", "a"));
    kv.apply(
        t(0),
        Bucket::Assign,
        &KvOp::Delete {
            key: "worker.3".into(),
            revision: None,
        },
    );
    kv.apply(t(0), Bucket::Assign, &put("worker.1.1", "chunk"));
    let snap = kv.snapshot(Bucket::Assign, &["worker.*".into(), "gen".into()]);
    let got: Vec<(&str, u64)> = snap.iter().map(|e| (e.key.as_str(), e.revision)).collect();
    assert_eq!(got, [("worker.1", 2), ("gen", 3), ("worker.2", 4)]);
}

#[test]
fn history_keeps_every_write_to_a_key_unless_turned_off() {
    let mut kv = MemKv::new();
    kv.set_max_age(Bucket::Leases, Some(Duration::from_secs(1)));
    kv.apply(t(0), Bucket::Leases, &put("k", "a"));
    kv.apply(t(0), Bucket::Leases, &put("k", "b"));
    kv.apply(
        t(0),
        Bucket::Leases,
        &KvOp::Delete {
            key: "k".into(),
            revision: None,
        },
    );
    kv.apply(t(0), Bucket::Leases, &put("k", "c"));
    kv.expire(t(5000));
    let ops: Vec<Operation> = kv
        .history(Bucket::Leases, "k")
        .iter()
        .map(|e| e.operation)
        .collect();
    assert_eq!(
        ops,
        [
            Operation::Put,
            Operation::Put,
            Operation::Delete,
            Operation::Put,
            Operation::Purge
        ]
    );
    kv.set_keep_history(false);
    kv.apply(t(5000), Bucket::Leases, &put("k", "d"));
    assert!(kv.history(Bucket::Leases, "k").is_empty());
}

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
