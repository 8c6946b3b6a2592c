//! The JSON files `parti plan` and `parti explain` read (`--file`, `--weights`), parsed
//! strictly: a key given twice in any object, an unknown key in a worker entry, a partition
//! listed twice (under one worker or two), a worker ID or number out of range are each a
//! usage error naming the entry and what is allowed. IDs are echoed through
//! [`short_id`], so a huge one makes a short message.

use parti::parti_core::short_id;
use parti::{PartitionId, WorkerId};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

/// A JSON object whose keys must be distinct, in file order.
///
/// serde_json keeps the last of duplicate keys (as `JSON.parse` does); its author's advice for
/// callers who must refuse them is a map type of their own whose `Deserialize` does
/// (serde-rs/json#762), which is this: `visit_map` fails on the first key seen twice.
#[derive(Debug)]
pub struct UniqueMap<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Visit<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = BTreeSet::new();
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!(
                            "key {:?} is given twice; each key may appear once",
                            short_id(&key)
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(UniqueMap(entries))
            }
        }
        d.deserialize_map(Visit(PhantomData))
    }
}

/// A worker in an assignment file: a list of partition IDs, or an object of exactly
/// `capacity` (optional) and `partitions`.
#[derive(Debug)]
struct WorkerEntry {
    capacity: Option<serde_json::Value>,
    partitions: Vec<String>,
}

/// The object form of [`WorkerEntry`]; any other key is an error naming the allowed ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerObject {
    /// Any JSON value when the key is there (`null` too: it is not the same as leaving the key
    /// out), checked by [`whole_number`].
    #[serde(default, deserialize_with = "present")]
    capacity: Option<serde_json::Value>,
    #[serde(default)]
    partitions: Vec<String>,
}

/// `Some` of whatever value the key has, `null` included.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// A JSON value that must be a whole number in `lo..=hi` (`2.0` and `1e3` are whole); the
/// error names the value (`what` of it, shortened) and the range, and says whether it is not
/// a number, not whole, or out of range.
fn whole_number(
    what: impl Fn(&str) -> String,
    v: &serde_json::Value,
    lo: u64,
    hi: u64,
) -> Result<u64, String> {
    let what = what(&short_id(&v.to_string()));
    let allowed = format!("allowed a whole number {lo}..={hi}");
    let n = match v {
        serde_json::Value::Number(n) => n,
        _ => return Err(format!("{what} is not a number; {allowed}")),
    };
    let value = match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(u), _, _) => Some(u),
        (None, Some(_), _) => None, // negative
        // a float: whole and exactly representable (below 2^53), else refused
        (None, None, Some(f)) if f.fract() != 0.0 => {
            return Err(format!("{what} is not a whole number; {allowed}"))
        }
        (None, None, Some(f)) if (0.0..9.007_199_254_740_992e15).contains(&f) => Some(f as u64),
        _ => None,
    };
    value
        .filter(|u| (lo..=hi).contains(u))
        .ok_or_else(|| format!("{what} is out of range; {allowed}"))
}

impl<'de> Deserialize<'de> for WorkerEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = WorkerEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of partition IDs or {\"capacity\": N, \"partitions\": [...]}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<WorkerEntry, A::Error> {
                let partitions =
                    Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(WorkerEntry {
                    capacity: None,
                    partitions,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<WorkerEntry, A::Error> {
                let o = WorkerObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(WorkerEntry {
                    capacity: o.capacity,
                    partitions: o.partitions,
                })
            }
        }
        d.deserialize_any(Visit)
    }
}

/// One worker of an assignment file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWorker {
    /// Its ID (the object's key).
    pub id: WorkerId,
    /// Its capacity, `1..=u32::MAX` (1 when not given).
    pub capacity: u32,
    /// The partitions it owns.
    pub share: BTreeSet<PartitionId>,
}

/// serde_json's error as a reason: `invalid JSON: ...` when the text is not JSON, the
/// message alone when it is JSON of the wrong shape (an unknown key, a key given twice, ...).
fn describe(e: serde_json::Error) -> String {
    if e.is_data() {
        e.to_string()
    } else {
        format!("invalid JSON: {e}")
    }
}

/// Parses an assignment file's text: a JSON object of worker ID to a list of partition IDs
/// or to `{"capacity": N, "partitions": [...]}`. The error is the reason alone (the caller
/// names the file).
pub fn parse_assignment(text: &str) -> Result<Vec<FileWorker>, String> {
    let map: UniqueMap<WorkerEntry> = serde_json::from_str(text).map_err(describe)?;
    let mut workers = Vec::with_capacity(map.0.len());
    let mut owner: BTreeMap<PartitionId, WorkerId> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (key, entry) in map.0 {
        let id = worker_id(&key)?;
        if !ids.insert(id) {
            return Err(format!(
                "worker {id} is given twice (as {:?}); each worker may appear once",
                short_id(&key)
            ));
        }
        let capacity = match entry.capacity {
            None => 1,
            Some(v) => {
                let what = |v: &str| format!("worker {id}: capacity {v}");
                whole_number(what, &v, 1, u64::from(u32::MAX))? as u32
            }
        };
        let mut share = BTreeSet::new();
        for p in entry.partitions {
            let pid = PartitionId::parse(&p).map_err(|e| format!("worker {id}: {e}"))?;
            if let Some(first) = owner.insert(pid.clone(), id) {
                return Err(if first == id {
                    format!("worker {id} lists partition {} twice", pid.short())
                } else {
                    format!(
                        "partition {} is listed under worker {first} and worker {id}; each \
                         partition has one owner",
                        pid.short()
                    )
                });
            }
            share.insert(pid);
        }
        workers.push(FileWorker {
            id,
            capacity,
            share,
        });
    }
    Ok(workers)
}

/// A worker ID as a JSON key: a whole number `0..=u32::MAX` written plainly (no sign, no
/// leading zeros, which would make `"7"` and `"007"` two spellings of one worker).
fn worker_id(key: &str) -> Result<WorkerId, String> {
    let range = format!("allowed a whole number 0..={}", u32::MAX);
    let digits = key.strip_prefix('-').unwrap_or(key);
    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if !numeric {
        return Err(format!(
            "worker ID {:?} is not a number; {range}",
            short_id(key)
        ));
    }
    match key.parse::<u32>() {
        Ok(n) if n.to_string() == key => Ok(WorkerId(n)),
        Ok(n) => Err(format!(
            "worker ID {:?}: write it as {n} (no leading zeros); {range}",
            short_id(key)
        )),
        Err(_) => Err(format!(
            "worker ID {} is out of range; {range}",
            short_id(key)
        )),
    }
}

/// Parses a weights file's text: a JSON object of partition ID to weight, each a whole number
/// `1..=u64::MAX`, each ID once. The error is the reason alone.
pub fn parse_weights(text: &str) -> Result<BTreeMap<PartitionId, u64>, String> {
    let map: UniqueMap<serde_json::Value> = serde_json::from_str(text).map_err(describe)?;
    let mut out = BTreeMap::new();
    for (id, w) in map.0 {
        let pid = PartitionId::parse(&id).map_err(|e| e.to_string())?;
        let what = |v: &str| format!("weight of {} ({v})", pid.short());
        let weight = whole_number(what, &w, 1, u64::MAX)?;
        out.insert(pid, weight);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_are_plain_whole_numbers_in_range() {
        assert_eq!(worker_id("0"), Ok(WorkerId(0)));
        assert_eq!(worker_id("4294967295"), Ok(WorkerId(u32::MAX)));
        for (key, needle) in [
            (
                "4294967296",
                "worker ID 4294967296 is out of range; allowed a whole number 0..=4294967295",
            ),
            ("-1", "worker ID -1 is out of range"),
            ("99999999999999999999999", "is out of range"),
            ("abc", "worker ID \"abc\" is not a number"),
            ("1.5", "is not a number"),
            ("", "is not a number"),
            ("007", "write it as 7"),
            ("+7", "is not a number"),
        ] {
            let e = worker_id(key).unwrap_err();
            assert!(e.contains(needle), "{key:?}: {e}");
        }
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        let e = parse_weights(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap_err();
        assert!(e.contains("key \"a\" is given twice"), "{e}");
        let e = parse_assignment(r#"{"0": {"capacity": 1, "capacity": 2, "partitions": []}}"#)
            .unwrap_err();
        assert!(e.contains("duplicate field `capacity`"), "{e}");
        let e = parse_assignment(r#"{"0": ["a"], "0": ["b"]}"#).unwrap_err();
        assert!(e.contains("key \"0\" is given twice"), "{e}");
    }

    #[test]
    fn the_object_form_takes_exactly_capacity_and_partitions() {
        let w = parse_assignment(r#"{"3": {"capacity": 2, "partitions": ["x.y", "z"]}, "4": []}"#)
            .unwrap();
        assert_eq!(w[0].id, WorkerId(3));
        assert_eq!(w[0].capacity, 2);
        assert!(w[0].share.contains(&PartitionId::parse("x.y").unwrap()));
        assert_eq!((w[1].capacity, w[1].share.len()), (1, 0));
        let e = parse_assignment(r#"{"1": {"capcity": 2, "partitions": []}}"#).unwrap_err();
        assert!(
            e.contains("unknown field `capcity`, expected `capacity` or `partitions`"),
            "{e}"
        );
        let e = parse_assignment(r#"{"1": 5}"#).unwrap_err();
        assert!(e.contains("a list of partition IDs or"), "{e}");
    }
}
