//! Semantic checks every `KvStore` backend must pass, written once and run against both
//! `MemoryKv` (tests/kv_memory.rs) and `NatsKv` (tests/kv_nats.rs).
#![allow(dead_code)]

use futures::StreamExt;
use parti::kv::{KvStore, WatchStream};
use parti_core::{Bucket, Entry, KvOp, KvResult, Operation};
use std::time::Duration;

/// Deadline for an entry that should arrive promptly.
pub const PROMPT: Duration = Duration::from_secs(5);

pub fn put(key: &str, value: &str) -> KvOp {
    KvOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

pub fn create(key: &str, value: &str) -> KvOp {
    KvOp::Create {
        key: key.into(),
        value: value.into(),
    }
}

pub fn update(key: &str, value: &str, revision: u64) -> KvOp {
    KvOp::Update {
        key: key.into(),
        value: value.into(),
        revision,
    }
}

pub fn delete(key: &str, revision: Option<u64>) -> KvOp {
    KvOp::Delete {
        key: key.into(),
        revision,
    }
}

pub fn get(key: &str) -> KvOp {
    KvOp::Get { key: key.into() }
}

/// Performs `op` and returns the revision of the write, panicking on any other outcome.
pub async fn write(kv: &dyn KvStore, bucket: Bucket, op: KvOp) -> u64 {
    let what = format!("{op:?}");
    match kv.execute(bucket, op).await {
        KvResult::Written { revision } => revision,
        other => panic!("{what}: expected Written, got {other:?}"),
    }
}

/// The value of `key`, if live.
pub async fn value(kv: &dyn KvStore, bucket: Bucket, key: &str) -> Option<Vec<u8>> {
    match kv.execute(bucket, get(key)).await {
        KvResult::Value(entry) => entry.map(|e| e.value),
        other => panic!("get {key}: expected Value, got {other:?}"),
    }
}

/// The next entry of `watch`, panicking if none arrives within `deadline`.
pub async fn next(watch: &mut WatchStream, deadline: Duration) -> Entry {
    match tokio::time::timeout(deadline, watch.next()).await {
        Ok(Some(Ok(entry))) => entry,
        Ok(Some(Err(err))) => panic!("watch failed: {err}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch entry within {deadline:?}"),
    }
}

/// Asserts the next entry is `(key, operation, value)`; returns its revision.
pub async fn expect(watch: &mut WatchStream, key: &str, operation: Operation, value: &str) -> u64 {
    let entry = next(watch, PROMPT).await;
    assert_eq!(
        (entry.key.as_str(), entry.operation, entry.value.as_slice()),
        (key, operation, value.as_bytes()),
        "unexpected watch entry {entry:?}"
    );
    entry.revision
}

pub async fn create_is_put_if_absent(kv: &dyn KvStore) {
    let b = Bucket::Assign;
    let r1 = write(kv, b, create("c.key", "one")).await;
    assert_eq!(
        kv.execute(b, create("c.key", "two")).await,
        KvResult::AlreadyExists
    );
    assert_eq!(value(kv, b, "c.key").await.as_deref(), Some(&b"one"[..]));
    let r2 = write(kv, b, delete("c.key", None)).await;
    assert!(r2 > r1);
    let r3 = write(kv, b, create("c.key", "three")).await;
    assert!(r3 > r2, "create over a delete marker succeeds");
    assert_eq!(value(kv, b, "c.key").await.as_deref(), Some(&b"three"[..]));
}

pub async fn update_is_a_cas_on_the_last_revision(kv: &dyn KvStore) {
    let b = Bucket::Assign;
    let r1 = write(kv, b, put("u.key", "one")).await;
    let r2 = write(kv, b, update("u.key", "two", r1)).await;
    assert!(r2 > r1);
    assert_eq!(
        kv.execute(b, update("u.key", "stale", r1)).await,
        KvResult::WrongRevision
    );
    assert_eq!(value(kv, b, "u.key").await.as_deref(), Some(&b"two"[..]));
    assert_eq!(
        kv.execute(b, update("u.missing", "x", r2)).await,
        KvResult::WrongRevision,
        "a CAS on a key never written fails"
    );
    let r3 = write(kv, b, delete("u.key", None)).await;
    assert_eq!(
        kv.execute(b, update("u.key", "x", r2)).await,
        KvResult::WrongRevision,
        "a CAS on the revision before a delete fails"
    );
    write(kv, b, update("u.key", "back", r3)).await;
    write(kv, b, update("u.fresh", "x", 0)).await;
}

pub async fn delete_checks_the_expected_revision(kv: &dyn KvStore) {
    let b = Bucket::Assign;
    let r1 = write(kv, b, put("d.key", "v")).await;
    assert_eq!(
        kv.execute(b, delete("d.key", Some(r1 + 100))).await,
        KvResult::WrongRevision
    );
    assert_eq!(value(kv, b, "d.key").await.as_deref(), Some(&b"v"[..]));
    let r2 = write(kv, b, delete("d.key", Some(r1))).await;
    assert!(r2 > r1);
    assert_eq!(kv.execute(b, get("d.key")).await, KvResult::Value(None));
    assert_eq!(kv.execute(b, get("d.never")).await, KvResult::Value(None));
    write(kv, b, delete("d.key", None)).await;
}

pub async fn get_returns_the_latest_entry(kv: &dyn KvStore) {
    let b = Bucket::Leases;
    write(kv, b, put("g.key", "one")).await;
    let r = write(kv, b, put("g.key", "two")).await;
    let expected = Entry {
        bucket: b,
        key: "g.key".into(),
        revision: r,
        operation: Operation::Put,
        value: b"two".to_vec(),
    };
    assert_eq!(
        kv.execute(b, get("g.key")).await,
        KvResult::Value(Some(expected))
    );
}

pub async fn list_returns_live_keys_with_the_prefix(kv: &dyn KvStore) {
    let b = Bucket::Assign;
    write(kv, b, put("worker.2", "w2")).await;
    write(kv, b, put("worker.1", "w1")).await;
    write(kv, b, put("worker.3", "w3")).await;
    write(kv, b, delete("worker.3", None)).await;
    write(kv, b, put("gen", "g")).await;
    write(kv, b, put("workers", "not a match")).await;
    let KvResult::Entries(entries) = kv
        .execute(
            b,
            KvOp::List {
                prefix: "worker.".into(),
            },
        )
        .await
    else {
        panic!("expected Entries");
    };
    let got: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![("worker.1", &b"w1"[..]), ("worker.2", &b"w2"[..])]
    );
    assert!(entries
        .iter()
        .all(|e| e.operation == Operation::Put && e.bucket == b));
}

pub async fn watch_delivers_the_snapshot_then_changes_in_order(kv: &dyn KvStore) {
    let b = Bucket::Assign;
    write(kv, b, put("w.1", "a")).await;
    write(kv, b, put("other", "x")).await;
    write(kv, b, put("w.3", "c")).await;
    write(kv, b, put("w.2", "b")).await;
    write(kv, b, delete("w.3", None)).await;
    write(kv, b, put("w.1", "a2")).await;
    let mut watch = kv
        .watch(b, vec!["w.*".into(), "gen".into()], None)
        .await
        .expect("watch");
    // Snapshot: the latest live entry of each key, in revision order; no marker for w.3.
    expect(&mut watch, "w.2", Operation::Put, "b").await;
    let mut last = expect(&mut watch, "w.1", Operation::Put, "a2").await;
    for (op, key, operation, value) in [
        (put("w.4", "d"), "w.4", Operation::Put, "d"),
        (put("other", "y"), "", Operation::Put, ""),
        (put("gen", "g1"), "gen", Operation::Put, "g1"),
        (delete("w.1", None), "w.1", Operation::Delete, ""),
        (put("w.2", "b2"), "w.2", Operation::Put, "b2"),
    ] {
        let written = write(kv, b, op).await;
        if key.is_empty() {
            continue;
        }
        let revision = expect(&mut watch, key, operation, value).await;
        assert_eq!(revision, written);
        assert!(revision > last, "revisions increase");
        last = revision;
    }
    // Nothing else is pending: the next entry is the next matching write.
    write(kv, b, put("w.5", "e")).await;
    expect(&mut watch, "w.5", Operation::Put, "e").await;
}

pub async fn resumed_watch_delivers_exactly_the_later_changes(kv: &dyn KvStore) {
    let b = Bucket::Assign;
    write(kv, b, put("r.1", "old")).await;
    write(kv, b, put("r.2", "old")).await;
    let after = write(kv, b, put("r.3", "old")).await;
    let r1 = write(kv, b, put("r.4", "new")).await;
    write(kv, b, put("r.5", "first")).await;
    write(kv, b, put("elsewhere", "x")).await;
    let r3 = write(kv, b, delete("r.2", None)).await;
    let r4 = write(kv, b, put("r.5", "second")).await;
    let mut watch = kv
        .watch(b, vec!["r.*".into()], Some(after))
        .await
        .expect("watch");
    // Every key changed after `after`, with its latest entry (r.5's first write is compacted
    // away, as NATS does with history 1), in revision order.
    assert_eq!(expect(&mut watch, "r.4", Operation::Put, "new").await, r1);
    assert_eq!(expect(&mut watch, "r.2", Operation::Delete, "").await, r3);
    assert_eq!(
        expect(&mut watch, "r.5", Operation::Put, "second").await,
        r4
    );
    let r5 = write(kv, b, put("r.1", "newer")).await;
    assert_eq!(expect(&mut watch, "r.1", Operation::Put, "newer").await, r5);
}

pub async fn watch_across_filters_keeps_revision_order(kv: &dyn KvStore) {
    let b = Bucket::Leases;
    let mut watch = kv
        .watch(b, vec!["leader".into(), "worker.*".into()], None)
        .await
        .expect("watch");
    let mut written = Vec::new();
    for i in 0..20 {
        let key = if i % 3 == 0 {
            "leader".to_string()
        } else {
            format!("worker.{i}")
        };
        written.push((key.clone(), write(kv, b, put(&key, "v")).await));
    }
    for (key, revision) in written {
        let entry = next(&mut watch, PROMPT).await;
        assert_eq!((entry.key, entry.revision), (key, revision));
    }
}

pub async fn lease_expiry_shows_up_as_a_purge_marker(kv: &dyn KvStore, ttl: Duration) {
    let b = Bucket::Leases;
    let mut watch = kv
        .watch(b, vec!["worker.*".into()], None)
        .await
        .expect("watch");
    // A lease deleted before: NATS ages its delete marker out too (with a Purge marker of its
    // own, before worker.7 expires); the watcher already knows the key is gone.
    write(kv, b, create("worker.8", "leaving")).await;
    write(kv, b, delete("worker.8", None)).await;
    expect(&mut watch, "worker.8", Operation::Put, "leaving").await;
    expect(&mut watch, "worker.8", Operation::Delete, "").await;
    let created = write(kv, b, create("worker.7", "lease")).await;
    assert_eq!(
        expect(&mut watch, "worker.7", Operation::Put, "lease").await,
        created
    );
    let entry = next(&mut watch, ttl + PROMPT).await;
    assert_eq!(
        (entry.key.as_str(), entry.operation),
        ("worker.7", Operation::Purge),
        "unexpected entry {entry:?}"
    );
    assert!(entry.revision > created);
    assert_eq!(kv.execute(b, get("worker.7")).await, KvResult::Value(None));
    assert_eq!(
        kv.execute(b, update("worker.7", "renew", created)).await,
        KvResult::WrongRevision,
        "a renewal after expiry fails"
    );
    write(kv, b, create("worker.7", "again")).await;
    expect(&mut watch, "worker.7", Operation::Put, "again").await;
    // The assignment bucket has no max_age.
    let kept = write(kv, Bucket::Assign, put("gen", "kept")).await;
    let KvResult::Value(Some(entry)) = kv.execute(Bucket::Assign, get("gen")).await else {
        panic!("gen vanished");
    };
    assert_eq!(entry.revision, kept);
}

pub async fn concurrent_creates_have_one_winner(kv: &dyn KvStore) {
    let results = futures::future::join_all(
        (0..5).map(|i| kv.execute(Bucket::Leases, create("leader", &format!("candidate {i}")))),
    )
    .await;
    let won = results
        .iter()
        .filter(|r| matches!(r, KvResult::Written { .. }))
        .count();
    let lost = results
        .iter()
        .filter(|r| **r == KvResult::AlreadyExists)
        .count();
    assert_eq!((won, lost), (1, 4), "{results:?}");
}

pub async fn invalid_keys_and_filters_are_refused(kv: &dyn KvStore) {
    for key in ["", "a..b", "a b", "worker.*", ".a"] {
        assert!(
            matches!(
                kv.execute(Bucket::Assign, put(key, "v")).await,
                KvResult::Failed(_)
            ),
            "key {key:?}"
        );
    }
    assert!(kv.watch(Bucket::Assign, vec![], None).await.is_err());
    assert!(kv
        .watch(Bucket::Assign, vec!["a.>.b".into()], None)
        .await
        .is_err());
}

pub async fn markers_for_keys_already_gone_are_not_delivered(kv: &dyn KvStore) {
    let b = Bucket::Assign;
    write(kv, b, put("m.1", "live")).await;
    write(kv, b, put("m.2", "gone")).await;
    write(kv, b, delete("m.2", None)).await;
    let mut watch = kv.watch(b, vec!["m.*".into()], None).await.expect("watch");
    expect(&mut watch, "m.1", Operation::Put, "live").await;
    write(kv, b, delete("m.2", None)).await;
    write(kv, b, delete("m.never", None)).await;
    write(kv, b, delete("m.1", None)).await;
    write(kv, b, delete("m.1", None)).await;
    write(kv, b, put("m.3", "sentinel")).await;
    expect(&mut watch, "m.1", Operation::Delete, "").await;
    expect(&mut watch, "m.3", Operation::Put, "sentinel").await;
}
