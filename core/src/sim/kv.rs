//! An in-memory JetStream KV with NATS semantics: the simulator's KV, and the embedded backend
//! of the tokio driver.
//!
//! [`MemKv`] is pure: it never reads a clock (every call that depends on time takes `now`) and
//! it has no watchers of its own. A write returns the change [`Entry`] to fan out to watchers;
//! [`MemKv::snapshot`] gives what a new watch delivers first. A driver wraps it in a mutex and
//! fans the changes out; the simulator delivers them with seeded delays.
//!
//! Semantics, as measured against nats-server 2.15 (see TOOLING.md):
//! - each bucket has its own revision counter; the first write gets revision 1, and every write
//!   (put, delete marker, purge marker) takes the next one;
//! - `Create` is put-if-absent, and also succeeds on a key whose last operation was a delete or
//!   purge;
//! - `Update { revision }` succeeds only if `revision` is the key's last revision. Like NATS
//!   (which checks the subject's last sequence), "last revision" counts delete and purge markers,
//!   and is 0 for a key never written: `Update` with revision 0 on such a key is a create. Any
//!   other revision on a missing or deleted key is [`KvResult::WrongRevision`];
//! - `Delete { revision }` writes a delete marker, with the same optional check;
//! - with a `max_age`, a value expires that long after its last write: [`MemKv::expire`] removes
//!   it and writes a `Purge` marker (NATS `limit_markers`). Markers themselves never expire here
//!   (NATS ages them out after the marker TTL; nothing observable depends on it).

use crate::{Bucket, Entry, Instant, KvOp, KvResult, Operation};
use std::collections::BTreeMap;
use std::time::Duration;

/// An in-memory JetStream KV holding the two parti buckets.
///
/// Call [`MemKv::expire`] with the current time before [`MemKv::apply`] (and whenever
/// [`MemKv::next_expiry`] passes) so that expired keys are gone before anyone looks.
#[derive(Clone, Debug, Default)]
pub struct MemKv {
    leases: Store,
    assign: Store,
    keep_history: bool,
}

#[derive(Clone, Debug, Default)]
struct Store {
    /// Last revision handed out (0: nothing written yet).
    revision: u64,
    max_age: Option<Duration>,
    /// Latest entry per key, markers included.
    keys: BTreeMap<String, Slot>,
    /// Live values by (deadline, revision) → key; only with a `max_age`.
    expiries: BTreeMap<(Instant, u64), String>,
    /// Every write ever made to each key (when history is kept).
    history: BTreeMap<String, Vec<Entry>>,
}

#[derive(Clone, Debug)]
struct Slot {
    entry: Entry,
    written: Instant,
}

impl Slot {
    fn is_live(&self) -> bool {
        self.entry.operation == Operation::Put
    }
}

impl MemKv {
    /// An empty KV: no `max_age` on either bucket, history kept (see [`MemKv::set_keep_history`]).
    pub fn new() -> Self {
        MemKv {
            keep_history: true,
            ..MemKv::default()
        }
    }

    /// Sets (or clears) the `max_age` of a bucket. Values already written expire relative to
    /// their last write under the new setting.
    pub fn set_max_age(&mut self, bucket: Bucket, max_age: Option<Duration>) {
        let store = self.store_mut(bucket);
        store.max_age = max_age;
        store.expiries.clear();
        if let Some(age) = max_age {
            for (key, slot) in &store.keys {
                if slot.is_live() {
                    store
                        .expiries
                        .insert((slot.written + age, slot.entry.revision), key.clone());
                }
            }
        }
    }

    /// The `max_age` of a bucket.
    pub fn max_age(&self, bucket: Bucket) -> Option<Duration> {
        self.store(bucket).max_age
    }

    /// Whether every write is also kept for [`MemKv::history`]. On by default (the simulator's
    /// invariant checks read it); a long-running embedded KV should turn it off.
    pub fn set_keep_history(&mut self, keep: bool) {
        self.keep_history = keep;
        if !keep {
            self.leases.history.clear();
            self.assign.history.clear();
        }
    }

    /// Performs `op` at `now`. Returns its outcome and, for a write that landed, the change entry
    /// to fan out to the watchers of `bucket` (a Put or a Delete marker).
    pub fn apply(&mut self, now: Instant, bucket: Bucket, op: &KvOp) -> (KvResult, Option<Entry>) {
        let keep = self.keep_history;
        let store = self.store_mut(bucket);
        match op {
            KvOp::Get { key } => (KvResult::Value(store.live(key).cloned()), None),
            KvOp::List { prefix } => {
                let entries = store
                    .keys
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .filter(|(_, s)| s.is_live())
                    .map(|(_, s)| s.entry.clone())
                    .collect();
                (KvResult::Entries(entries), None)
            }
            KvOp::Create { key, value } => {
                if store.live(key).is_some() {
                    return (KvResult::AlreadyExists, None);
                }
                store.write(now, bucket, key, Operation::Put, value.clone(), keep)
            }
            KvOp::Update {
                key,
                value,
                revision,
            } => {
                if store.last_revision(key) != *revision {
                    return (KvResult::WrongRevision, None);
                }
                store.write(now, bucket, key, Operation::Put, value.clone(), keep)
            }
            KvOp::Put { key, value } => {
                store.write(now, bucket, key, Operation::Put, value.clone(), keep)
            }
            KvOp::Delete { key, revision } => {
                if revision.is_some_and(|r| store.last_revision(key) != r) {
                    return (KvResult::WrongRevision, None);
                }
                store.write(now, bucket, key, Operation::Delete, Vec::new(), keep)
            }
        }
    }

    /// Removes every value whose last write is `max_age` or more before `now` and returns the
    /// `Purge` markers written in its place (in revision order, leases bucket first), to fan out
    /// to watchers.
    pub fn expire(&mut self, now: Instant) -> Vec<Entry> {
        let keep = self.keep_history;
        let mut out = Vec::new();
        for bucket in [Bucket::Leases, Bucket::Assign] {
            let store = self.store_mut(bucket);
            while let Some((&(deadline, _), _)) = store.expiries.first_key_value() {
                if deadline > now {
                    break;
                }
                let (_, key) = store.expiries.pop_first().expect("checked non-empty");
                let (_, entry) = store.write(now, bucket, &key, Operation::Purge, Vec::new(), keep);
                out.extend(entry);
            }
        }
        out
    }

    /// When the next value expires, if any bucket has a `max_age` and a live value.
    pub fn next_expiry(&self) -> Option<Instant> {
        let first = |s: &Store| s.expiries.first_key_value().map(|((t, _), _)| *t);
        match (first(&self.leases), first(&self.assign)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The latest live entry of every key matching any of `filters` (NATS subject filters), in
    /// revision order: what a new watch delivers before the changes that follow.
    pub fn snapshot(&self, bucket: Bucket, filters: &[String]) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .store(bucket)
            .keys
            .iter()
            .filter(|(k, s)| s.is_live() && filters.iter().any(|f| crate::filter_matches(f, k)))
            .map(|(_, s)| s.entry.clone())
            .collect();
        out.sort_by_key(|e| e.revision);
        out
    }

    /// Every write ever made to `key` (puts and markers, oldest first); empty when history is
    /// off. For invariant checks ("was this generation ever committed?").
    pub fn history(&self, bucket: Bucket, key: &str) -> &[Entry] {
        self.store(bucket)
            .history
            .get(key)
            .map_or(&[], Vec::as_slice)
    }

    /// The last revision handed out in `bucket` (0 before the first write).
    pub fn revision(&self, bucket: Bucket) -> u64 {
        self.store(bucket).revision
    }

    /// The latest live value of `key` (`None` if absent, deleted, purged or expired).
    pub fn get(&self, bucket: Bucket, key: &str) -> Option<&Entry> {
        self.store(bucket).live(key)
    }

    /// The latest entry of `key`, delete and purge markers included.
    pub fn last_entry(&self, bucket: Bucket, key: &str) -> Option<&Entry> {
        self.store(bucket).keys.get(key).map(|s| &s.entry)
    }

    /// Number of live keys in `bucket`.
    pub fn live_keys(&self, bucket: Bucket) -> usize {
        self.store(bucket)
            .keys
            .values()
            .filter(|s| s.is_live())
            .count()
    }

    fn store(&self, bucket: Bucket) -> &Store {
        match bucket {
            Bucket::Leases => &self.leases,
            Bucket::Assign => &self.assign,
        }
    }

    fn store_mut(&mut self, bucket: Bucket) -> &mut Store {
        match bucket {
            Bucket::Leases => &mut self.leases,
            Bucket::Assign => &mut self.assign,
        }
    }
}

impl Store {
    fn live(&self, key: &str) -> Option<&Entry> {
        self.keys.get(key).filter(|s| s.is_live()).map(|s| &s.entry)
    }

    fn last_revision(&self, key: &str) -> u64 {
        self.keys.get(key).map_or(0, |s| s.entry.revision)
    }

    /// Writes the next revision of `key` and returns `Written` with the change entry.
    fn write(
        &mut self,
        now: Instant,
        bucket: Bucket,
        key: &str,
        operation: Operation,
        value: Vec<u8>,
        keep_history: bool,
    ) -> (KvResult, Option<Entry>) {
        self.revision += 1;
        let revision = self.revision;
        let entry = Entry {
            bucket,
            key: key.to_owned(),
            revision,
            operation,
            value,
        };
        let slot = Slot {
            entry: entry.clone(),
            written: now,
        };
        if let Some(old) = self.keys.insert(key.to_owned(), slot) {
            if let (Some(age), true) = (self.max_age, old.is_live()) {
                self.expiries
                    .remove(&(old.written + age, old.entry.revision));
            }
        }
        if let (Some(age), Operation::Put) = (self.max_age, operation) {
            self.expiries.insert((now + age, revision), key.to_owned());
        }
        if keep_history {
            self.history
                .entry(key.to_owned())
                .or_default()
                .push(entry.clone());
        }
        (KvResult::Written { revision }, Some(entry))
    }
}
