//! Newtypes for every identifier, so they cannot be mixed up.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A worker's stable ID, claimed from `[Config::id_min, Config::id_max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub u32);

/// A partition's ID: its keys joined by `.` (also its subject form).
///
/// Built by [`crate::Partition::new`], which validates the keys; an ID read from KV is
/// re-validated before use. Cheap to clone (a shared string).
#[derive(Clone, Debug, Eq, Serialize)]
#[serde(transparent)]
pub struct PartitionId(pub(crate) Arc<str>);

/// Hashes the string, as the derived impl did (consistent with `Eq` below).
impl Hash for PartitionId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Equal strings, compared inline (see the order below); the same pointer is equal at once.
impl PartialEq for PartitionId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || {
            let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
        }
    }
}

/// The order of the strings (bytewise), compared inline: IDs are short and are compared a lot
/// (every ordered set of partitions), where a `memcmp` call costs more than the comparison.
impl Ord for PartitionId {
    fn cmp(&self, other: &Self) -> Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return Ordering::Equal;
        }
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        for (x, y) in a.iter().zip(b) {
            if x != y {
                return x.cmp(y);
            }
        }
        a.len().cmp(&b.len())
    }
}

impl PartialOrd for PartitionId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Reads a string straight into the shared string (one allocation; borrowed when the format
/// allows), like `Arc<str>`'s own impl but without its intermediate `Box<str>`.
impl<'de> Deserialize<'de> for PartitionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = PartitionId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PartitionId, E> {
                Ok(PartitionId(Arc::from(s)))
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<PartitionId, E> {
                match std::str::from_utf8(b) {
                    Ok(s) => Ok(PartitionId(Arc::from(s))),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(b), &self)),
                }
            }
        }
        d.deserialize_str(Visit)
    }
}

/// An assignment generation: increases by one with every committed assignment.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

/// A leadership epoch: the KV revision at which leadership was acquired. Monotonic across leaders.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

/// Identifies one [`crate::Action`] whose outcome comes back as an [`crate::Input`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Identifies one watch started by [`crate::Action::Watch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub u64);

impl PartitionId {
    /// The ID as a string (keys joined by `.`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The partition's keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// The ID as messages show it: [`short_id`] of [`PartitionId::as_str`].
    pub fn short(&self) -> Cow<'_, str> {
        short_id(&self.0)
    }

    /// Parses and validates an ID (as read from KV or given by a user): keys joined by `.`,
    /// each of `A-Z a-z 0-9 - _ = /`, at most 256 bytes in all. The one rule for IDs given
    /// as a string, in every language and the CLI.
    pub fn parse(s: &str) -> Result<Self, crate::Error> {
        let keys: Vec<&str> = s.split('.').collect();
        crate::partition::validate_keys(&keys)?;
        Ok(PartitionId(Arc::from(s)))
    }
}

/// Longest text [`short_id`] shows whole, in characters.
const SHORT_MAX: usize = 64;
/// Characters [`short_id`] keeps from the start and from the end of a longer text.
const SHORT_HEAD: usize = 40;
const SHORT_TAIL: usize = 16;

/// An ID (or any text a user gave as one) as messages show it: whole up to 64 characters;
/// longer, its first 40 and last 16 characters around `…`, a character no ID may hold.
///
/// Every message of parti that echoes a partition ID or key goes through it (the core's
/// errors, the CLI, the bindings), so a 100,000-character ID makes a one-line message.
pub fn short_id(id: &str) -> Cow<'_, str> {
    let count = id.chars().count();
    if count <= SHORT_MAX {
        return Cow::Borrowed(id);
    }
    let head: String = id.chars().take(SHORT_HEAD).collect();
    let tail: String = id.chars().skip(count - SHORT_TAIL).collect();
    Cow::Owned(format!("{head}…{tail}"))
}

impl Generation {
    /// The next generation.
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}
