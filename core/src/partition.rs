//! Partitions: what workers own, with their validation.

use crate::{short_id, Error, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One unit of exclusive ownership: a subject, shard, tenant, stream partition...
///
/// Its [`PartitionId`] is its keys joined by `.`, which is also its subject form (a subject
/// template such as `work.{keys}` turns it into a NATS subject).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Partition {
    id: PartitionId,
    weight: u64,
}

impl Partition {
    /// The default weight of a partition.
    pub const DEFAULT_WEIGHT: u64 = 100;

    /// A partition from its keys and weight.
    ///
    /// Errors if the key list is empty, a key is empty or holds a character not allowed in a
    /// NATS subject token or KV key (allowed: `A-Z a-z 0-9 - _ = /`), or the weight is zero.
    pub fn new<K: AsRef<str>>(keys: &[K], weight: u64) -> Result<Self, Error> {
        let keys: Vec<String> = keys.iter().map(|k| k.as_ref().to_owned()).collect();
        validate_keys(&keys)?;
        let id = PartitionId(keys.join(".").into());
        Self::with_weight(id, weight)
    }

    /// A partition from its ID given as one string (keys joined by `.`, the rule of
    /// [`PartitionId::parse`]) and its weight.
    ///
    /// Every place that takes a partition as a string uses it: `"x.y"` is the partition of
    /// keys `x` and `y` in Rust, the CLI, Python and the bindings alike.
    pub fn parse(id: &str, weight: u64) -> Result<Self, Error> {
        Self::with_weight(PartitionId::parse(id)?, weight)
    }

    fn with_weight(id: PartitionId, weight: u64) -> Result<Self, Error> {
        if weight == 0 {
            return Err(Error::InvalidPartition {
                partition: id.short().into_owned(),
                reason: format!("weight 0 is out of range; allowed 1..={}", u64::MAX),
            });
        }
        Ok(Partition { id, weight })
    }

    /// A partition from an already validated ID.
    pub(crate) fn from_id(id: PartitionId, weight: u64) -> Self {
        Partition {
            id,
            weight: weight.max(1),
        }
    }

    /// A partition from one key with the default weight.
    pub fn single(key: &str) -> Result<Self, Error> {
        Self::new(&[key], Self::DEFAULT_WEIGHT)
    }

    /// The partition's ID (keys joined by `.`).
    pub fn id(&self) -> &PartitionId {
        &self.id
    }

    /// The partition's keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.id.keys()
    }

    /// The subject form: keys joined by `.`.
    pub fn subject(&self) -> &str {
        self.id.as_str()
    }

    /// The partition's relative weight (cost to own it), at least 1.
    pub fn weight(&self) -> u64 {
        self.weight
    }
}

/// Checks a key list; the error names the partition as far as it can be named.
pub(crate) fn validate_keys<K: AsRef<str>>(keys: &[K]) -> Result<(), Error> {
    let bad = |reason: String| {
        let name: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        Err(Error::InvalidPartition {
            partition: short_id(&name.join(".")).into_owned(),
            reason,
        })
    };
    if keys.is_empty() {
        return bad("key list is empty".into());
    }
    let mut len = keys.len() - 1;
    for (i, key) in keys.iter().map(AsRef::as_ref).enumerate() {
        if key.is_empty() {
            return bad(format!("key {i} is empty"));
        }
        if let Some(c) = key.chars().find(|c| !is_key_char(*c)) {
            return bad(format!(
                "key {i} ({:?}) holds {c:?}; allowed are A-Z a-z 0-9 - _ = /",
                short_id(key)
            ));
        }
        len += key.len();
    }
    if len > 256 {
        return bad(format!(
            "id is {len} bytes long; allowed 1..=256 (keys joined by '.')"
        ));
    }
    Ok(())
}

/// Whether `id` (keys joined by `.`) passes [`validate_keys`]: the same rule, without
/// allocating (used on every ID read from KV; the error path still words it).
pub(crate) fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b[0] != b'.'
        && b[b.len() - 1] != b'.'
        && !b.windows(2).any(|w| w == b"..")
        && b.iter().all(|&c| c == b'.' || is_key_char(char::from(c)))
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '/')
}

/// Checks a whole partition list: duplicate IDs are an error naming the partition, and so is a
/// total weight that does not fit in `u64` (no plan could place such a list).
pub fn validate_partitions(partitions: &[Partition]) -> Result<(), Error> {
    crate::plan::total_weight(partitions)?;
    // A list in strictly increasing order (what sources usually give) has no duplicates.
    if partitions.windows(2).all(|w| w[0].id() < w[1].id()) {
        return Ok(());
    }
    let mut seen = BTreeSet::new();
    for p in partitions {
        if !seen.insert(p.id()) {
            return Err(Error::InvalidPartition {
                partition: p.id().short().into_owned(),
                reason: "listed twice".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_id_check_agrees_with_the_worded_one() {
        let long = "a".repeat(256);
        let too_long = format!("{long}.b");
        let cases = [
            "",
            ".",
            "a",
            "a.b",
            "a..b",
            ".a",
            "a.",
            "A-z_0=9/x",
            "a b",
            "a*",
            "a>",
            "é",
            "a.é",
            &long,
            &too_long,
        ];
        for id in cases {
            let keys: Vec<&str> = id.split('.').collect();
            assert_eq!(is_valid_id(id), validate_keys(&keys).is_ok(), "{id:?}");
        }
    }
}
