//! The core's view of JetStream KV: buckets, entries, operations and their outcomes.
//!
//! Drivers map these onto async-nats (or the in-memory [`crate::sim::MemKv`]); the semantics are
//! NATS's: revisions increase per bucket, `Create` is put-if-absent, `Update` is a CAS on the
//! key's last revision (a missing key fails it too), watches deliver the latest value of each
//! matching key and then every change, deletes and purges included.

/// The two buckets parti uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// `<prefix>-leases`: `worker.<id>` leases and the `leader` lease; `max_age` = lease TTL.
    Leases,
    /// `<prefix>-assign`: `gen`, `worker.<id>` shares (and their chunks), `ctl.*` intents.
    Assign,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A value was written.
    Put,
    /// The key was deleted (a delete marker).
    Delete,
    /// The key was purged (also how an expired per-key TTL shows up).
    Purge,
}

/// One KV entry, as a watch or a get delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The bucket.
    pub bucket: Bucket,
    /// The key.
    pub key: String,
    /// The bucket-wide revision of this change.
    pub revision: u64,
    /// Put, Delete or Purge.
    pub operation: Operation,
    /// The value (empty for Delete / Purge).
    pub value: Vec<u8>,
}

/// A KV operation the core asks the driver to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Put-if-absent (succeeds also on a key whose last operation was a delete).
    Create {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// CAS: write only if the key's last revision is `revision`.
    Update {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Expected last revision.
        revision: u64,
    },
    /// Unconditional write.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Delete, optionally only if the key's last revision is `revision`.
    Delete {
        /// Key.
        key: String,
        /// Expected last revision, if any.
        revision: Option<u64>,
    },
    /// Read the latest entry of a key.
    Get {
        /// Key.
        key: String,
    },
    /// Read the latest entry of every live key starting with `prefix`.
    List {
        /// Key prefix (e.g. `worker.`).
        prefix: String,
    },
}

impl KvOp {
    /// The key this operation touches (the prefix for `List`).
    pub fn key(&self) -> &str {
        match self {
            KvOp::Create { key, .. }
            | KvOp::Update { key, .. }
            | KvOp::Put { key, .. }
            | KvOp::Delete { key, .. }
            | KvOp::Get { key } => key,
            KvOp::List { prefix } => prefix,
        }
    }
}

/// The outcome of a [`KvOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvResult {
    /// A write landed at this revision.
    Written {
        /// The revision of the write.
        revision: u64,
    },
    /// A `Get`: the latest entry, or `None` if the key is absent or its last op was a delete.
    Value(Option<Entry>),
    /// A `List`: the live entries.
    Entries(Vec<Entry>),
    /// `Create` found the key present.
    AlreadyExists,
    /// `Update` / `Delete` with revision found another revision (or no key).
    WrongRevision,
    /// No answer in time: the write may still land later. Re-read before trusting anything.
    TimedOut,
    /// Any other failure (no connection, permission, ...), with the driver's description.
    Failed(String),
}

/// Does `key` match the NATS subject filter `filter` (`*` one token, `>` the rest)?
pub fn filter_matches(filter: &str, key: &str) -> bool {
    let mut keys = Tokens(Some(key.as_bytes()));
    for f in Tokens(Some(filter.as_bytes())) {
        match (f, keys.next()) {
            (b">", Some(_)) => return true,
            (b"*", Some(_)) => {}
            (f, Some(k)) if f == k => {}
            _ => return false,
        }
    }
    keys.next().is_none()
}

/// The `.`-separated tokens of a subject, as `str::split('.')` yields them (a plain byte scan:
/// subjects are short, and this runs for every watch on every KV change in the simulator).
struct Tokens<'a>(Option<&'a [u8]>);

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0?;
        match rest.iter().position(|&b| b == b'.') {
            Some(i) => {
                self.0 = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.0 = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::filter_matches;

    #[test]
    fn filters_match_like_nats_subjects() {
        assert!(filter_matches("worker.*", "worker.3"));
        assert!(!filter_matches("worker.*", "worker.3.1"));
        assert!(filter_matches("worker.3.>", "worker.3.1"));
        assert!(!filter_matches("worker.3.>", "worker.3"));
        assert!(filter_matches(">", "gen"));
        assert!(filter_matches("gen", "gen"));
        assert!(!filter_matches("gen", "general"));
        assert!(filter_matches("worker.3.>", "worker.3."));
        assert!(!filter_matches("worker.*", "worker"));
        assert!(filter_matches("", ""));
        assert!(!filter_matches("a.*.c", "a.b"));
        assert!(filter_matches("a.*.c", "a..c"));
    }
}
