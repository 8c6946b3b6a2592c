//! The narrow KV interface the driver runs the core against, and its two implementations:
//! NATS JetStream ([`NatsKv`]) and in-memory ([`MemoryKv`], the embedded default).
//!
//! Both give the same observable semantics (the shared tests in `tests/common` pin them down):
//! - keys are NATS KV keys (`[-/_=.a-zA-Z0-9]`, non-empty dot-separated tokens); any other key
//!   fails with [`KvResult::Failed`] before anything is written;
//! - a new watch (`after: None`) delivers the latest *live* entry of each matching key in
//!   revision order, then every change;
//! - a resumed watch (`after: Some(rev)`) delivers, for every matching key changed after `rev`,
//!   its latest entry, in revision order, then every change. With history 1 (what parti's
//!   buckets keep) that is all NATS still has, so intermediate revisions of a key written several
//!   times during a break are compacted away, on both backends;
//! - a delete or purge marker reaches a watcher only when it can tell something: after a new
//!   watch, only for a key the watch delivered as live; after a resume, except for a key the
//!   watch already reported removed. So a second delete, a delete of a key never written, and
//!   NATS's `MaxAge` purge marker for an aged-out delete marker are not delivered;
//! - an expired lease (`max_age` of the leases bucket) shows up as a `Purge` marker.

mod mem;
mod nats;
mod nats_watch;

pub use mem::MemoryKv;
pub use nats::{
    consumers_needed, open_existing_bucket, ConnectionEvents, NatsError, NatsKv, NatsOptions,
};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use parti_core::{Bucket, Entry, KvOp, KvResult, Operation};
use std::collections::HashSet;
use std::time::Duration;

/// Why a watch broke (the driver rebuilds it with backoff and resumes after the last revision).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("watch failed: {0}")]
pub struct WatchError(pub String);

/// A stream of watch entries; an `Err` item means the watch broke and must be rebuilt.
pub type WatchStream = BoxStream<'static, Result<Entry, WatchError>>;

/// The KV operations parti needs, with NATS semantics (see `parti_core::KvOp`).
///
/// Implementations never panic and never return Rust errors for protocol outcomes: every
/// outcome is a [`KvResult`] (a timeout is `TimedOut`: the write may still land).
pub trait KvStore: Send + Sync + 'static {
    /// Performs one operation on `bucket`.
    fn execute(&self, bucket: Bucket, op: KvOp) -> BoxFuture<'static, KvResult>;

    /// Watches the keys of `bucket` matching any of `filters` (NATS subject filters). With
    /// `after: None`, delivers the latest entry of each matching key, then every change; with
    /// `after: Some(rev)`, delivers every change with a revision above `rev` (a resume).
    fn watch(
        &self,
        bucket: Bucket,
        filters: Vec<String>,
        after: Option<u64>,
    ) -> BoxFuture<'static, Result<WatchStream, WatchError>>;
}

/// Decides, per watch, which delete and purge markers are worth delivering (see the module
/// docs): a marker that removes a key the watcher already knows to be absent is dropped.
#[derive(Debug)]
pub(crate) struct MarkerFilter {
    /// New watch: `keys` are the keys delivered as live. Resume: `keys` are the keys reported
    /// removed since the resume (any other key may be live, as far as the watcher knows).
    new_watch: bool,
    keys: HashSet<String>,
}

impl MarkerFilter {
    /// The filter of a new watch (`after: None`) or of a resume.
    pub(crate) fn new(after: Option<u64>) -> Self {
        MarkerFilter {
            new_watch: after.is_none(),
            keys: HashSet::new(),
        }
    }

    /// Whether to deliver a change of `key`; records it.
    pub(crate) fn admit(&mut self, key: &str, operation: Operation) -> bool {
        match (self.new_watch, operation == Operation::Put) {
            (true, true) => {
                self.keys.insert(key.to_owned());
                true
            }
            (true, false) => self.keys.remove(key),
            (false, true) => {
                self.keys.remove(key);
                true
            }
            (false, false) => self.keys.insert(key.to_owned()),
        }
    }
}

/// Is `key` a valid NATS KV key: non-empty dot-separated tokens of `[-/_=a-zA-Z0-9]`?
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'='))
        })
}

/// The `Failed` result for an invalid key.
/// The time `op` may take given the budget `base` of one request: a listing needs three
/// round trips or more (the key list, then the reads), every other operation one.
pub(crate) fn budget(base: Duration, op: &KvOp) -> Duration {
    match op {
        KvOp::List { .. } => base * 3,
        _ => base,
    }
}

pub(crate) fn invalid_key(key: &str) -> KvResult {
    KvResult::Failed(format!("invalid key {key:?}"))
}

/// Drops filters that another filter already covers (NATS rejects a consumer whose filters
/// overlap), and duplicates. Order of the remaining filters is kept.
pub(crate) fn normalize_filters(filters: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let covered = filters
            .iter()
            .enumerate()
            .any(|(j, g)| j != i && filter_covers(g, f) && (!filter_covers(f, g) || j < i));
        if !covered {
            out.push(f.clone());
        }
    }
    out
}

/// Does every subject matching `narrow` also match `wide`?
fn filter_covers(wide: &str, narrow: &str) -> bool {
    let mut n = narrow.split('.');
    for w in wide.split('.') {
        match (w, n.next()) {
            (">", Some(_)) => return true,
            ("*", Some(t)) if t != ">" => {}
            (w, Some(t)) if w == t && w != "*" && w != ">" => {}
            _ => return false,
        }
    }
    n.next().is_none()
}

/// Can some subject match both `a` and `b`? (NATS refuses a consumer whose filters overlap.)
pub(crate) fn filters_overlap(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(s), Some(t)) if s == "*" || t == "*" || s == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Is `filter` a valid subject filter over keys (tokens non-empty, `>` only last)?
pub(crate) fn valid_filter(filter: &str) -> bool {
    let tokens: Vec<&str> = filter.split('.').collect();
    tokens
        .iter()
        .enumerate()
        .all(|(i, t)| (*t == ">" && i == tokens.len() - 1) || *t == "*" || valid_key(t))
}

/// Checks a watch's filters: at least one, each valid.
pub(crate) fn check_filters(filters: &[String]) -> Result<Vec<String>, WatchError> {
    if filters.is_empty() {
        return Err(WatchError("no filters".into()));
    }
    if let Some(bad) = filters.iter().find(|f| !valid_filter(f)) {
        return Err(WatchError(format!("invalid filter {bad:?}")));
    }
    Ok(normalize_filters(filters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated_like_nats_kv_keys() {
        assert!(valid_key("worker.3"));
        assert!(valid_key("ctl.pin/a=b_c-d"));
        assert!(!valid_key(""));
        assert!(!valid_key(".a"));
        assert!(!valid_key("a."));
        assert!(!valid_key("a..b"));
        assert!(!valid_key("a b"));
        assert!(!valid_key("worker.*"));
        assert!(!valid_key("worker.>"));
    }

    #[test]
    fn covered_and_duplicate_filters_are_dropped() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            normalize_filters(&f(&["worker.*", "worker.3"])),
            f(&["worker.*"])
        );
        assert_eq!(normalize_filters(&f(&["gen", "gen"])), f(&["gen"]));
        assert_eq!(normalize_filters(&f(&["worker.3.>", ">"])), f(&[">"]));
        assert_eq!(
            normalize_filters(&f(&["gen", "worker.3.>", "worker.3"])),
            f(&["gen", "worker.3.>", "worker.3"])
        );
        assert_eq!(normalize_filters(&f(&["a.*", "*.b"])), f(&["a.*", "*.b"]));
    }

    #[test]
    fn markers_for_keys_known_absent_are_dropped() {
        use Operation::{Delete, Purge, Put};
        let mut new_watch = MarkerFilter::new(None);
        assert!(!new_watch.admit("a", Delete), "never delivered live");
        assert!(new_watch.admit("a", Put));
        assert!(new_watch.admit("a", Delete));
        assert!(!new_watch.admit("a", Purge), "already removed");
        let mut resume = MarkerFilter::new(Some(7));
        assert!(
            resume.admit("b", Delete),
            "may have been live before the resume"
        );
        assert!(!resume.admit("b", Purge), "already removed");
        assert!(resume.admit("b", Put));
        assert!(resume.admit("b", Purge));
    }

    #[test]
    fn overlapping_filters_are_detected() {
        assert!(filters_overlap("a.*", "*.b"));
        assert!(filters_overlap("worker.>", "worker.3"));
        assert!(!filters_overlap("gen", "worker.*"));
        assert!(!filters_overlap("worker.*", "worker.3.>"));
        assert!(!filters_overlap("worker.*", "worker"));
    }

    #[test]
    fn filters_are_validated() {
        assert!(valid_filter("worker.*"));
        assert!(valid_filter(">"));
        assert!(valid_filter("worker.3.>"));
        assert!(!valid_filter("worker.>.x"));
        assert!(!valid_filter("worker..x"));
        assert!(!valid_filter(""));
    }
}
