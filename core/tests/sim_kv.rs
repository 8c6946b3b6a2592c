//! Pins down the simulator's in-memory KV (`MemKv`): NATS semantics of create, update, put,
//! delete, get and list, revisions per bucket, expiry as purge markers, snapshots and history.

use parti_core::sim::MemKv;
use parti_core::{Bucket, KvOp, KvResult, Operation};
use std::time::Duration;

mod common;
use common::kv::*;

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
