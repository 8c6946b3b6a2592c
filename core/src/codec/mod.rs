//! Versioned encodings of the values parti stores in KV.
//!
//! Every value is JSON with a version field `"v":1`. Decoders reject other versions, foreign
//! bytes and truncated values with [`Error::Decode`]; they never panic. Partition IDs read back
//! are validated again.
//!
//! | key (bucket) | value |
//! |---|---|
//! | `worker.<id>` (leases) | [`LeaseValue`] |
//! | `leader` (leases) | [`LeaderValue`] |
//! | `gen` (assign) | [`GenRecord`] |
//! | `worker.<id>.<slot>.<k>` (assign) | [`ShareChunk`] k of the share in slot 0 or 1 (chunk 0 is the head) |
//! | `ctl.refresh`, `ctl.drain.<id>` (assign) | [`CtlValue`] |
//! | `ctl.pin.<partition>` (assign) | [`PinValue`] |

mod canonical;
mod lazy;

pub(crate) use lazy::LazyShare;

use crate::{Epoch, Error, Generation, PartitionId, WorkerId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The only encoding version this build reads and writes.
pub const VERSION: u32 = 1;

/// A worker's lease: who holds the ID and what it reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// Encoding version.
    pub v: u32,
    /// The holding instance's token (tells a restarted instance from its predecessor).
    pub token: u64,
    /// Capacity relative to other workers.
    pub capacity: u32,
    /// The last committed generation this worker applied.
    #[serde(default)]
    pub applied: Option<Generation>,
    /// Stopped for a restart: holds nothing; its share is parked for `restart_grace`.
    #[serde(default)]
    pub departing: bool,
    /// Asked to be drained: the leader moves its partitions away.
    #[serde(default)]
    pub draining: bool,
    /// The loads the application reported for the partitions it holds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loads: Option<LoadReport>,
}

/// Partition loads carried by a lease, aligned to the partitions the worker holds.
///
/// Compact by design: the lease is written every heartbeat anyway, so loads cost no extra
/// write, and instead of repeating every partition ID the values follow the held partitions in
/// ID order, named by their [`share_digest`]. The leader uses a report only when the digest
/// equals the digest of the worker's committed share (then both lists are the same); during a
/// handoff it waits for the next heartbeat. About 4 to 10 bytes per partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// [`share_digest`] of the partitions the values belong to.
    pub share: u64,
    /// One value per partition, in ID order; `null` where the application reported none.
    pub values: Vec<Option<f32>>,
}

/// The leader lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderValue {
    /// Encoding version.
    pub v: u32,
    /// The leader's worker ID.
    pub worker: WorkerId,
    /// The leader's instance token.
    pub token: u64,
}

/// One worker's entry in a committed generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The instance this share is meant for: another instance with the same ID ignores it.
    pub token: u64,
    /// [`share_digest`] of the share.
    pub digest: u64,
    /// Number of chunks the share is stored in (at least 1).
    pub chunks: u32,
    /// Number of partitions in the share.
    pub count: u32,
    /// Which of the worker's two share slots holds it (0 or 1). A leader writes a changed share
    /// into the slot the committed generation does not use, so an unfinished publish never
    /// overwrites a committed share.
    #[serde(default)]
    pub slot: u8,
}

/// What the planner was doing when it committed a generation (`phase` is mirrored into
/// followers' state; `trigger` says what started the planning round).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The target assignment is reached.
    Stable,
    /// Joins or leaves in progress.
    Scaling,
    /// Partition changes, drains or imbalance in progress.
    Rebalancing,
    /// A crash is being handled.
    Emergency,
}

/// The commit record `gen`: a generation is committed by a CAS update of this key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenRecord {
    /// Encoding version.
    pub v: u32,
    /// The epoch of the leader that committed it.
    pub epoch: Epoch,
    /// The generation.
    pub generation: Generation,
    /// Where the handoff stands: `Stable` once the planner's target is reached, else the
    /// phase of the multi-step handoff still under way.
    pub phase: Phase,
    /// What made the leader compute this generation (`Emergency` for a crash, `Scaling` for a
    /// join, leave or restart, `Rebalancing` for changed partitions, a drain, a pin or load),
    /// also when `phase` is already `Stable`. Absent in records of older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Phase>,
    /// Every worker with a share in this generation.
    pub members: BTreeMap<WorkerId, Member>,
    /// Partitions that balancing rounds moved and that still rest where they are, with how long
    /// (ms) after this record is committed, at least, their rest lasts: a new leader takes the
    /// rests over and balances at once instead of waiting a whole `load_cooldown`. Empty
    /// without rounds; absent in records of older builds, or when the rests would take more
    /// than a quarter of `Config::max_value_bytes` (a new leader then waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resting: Option<BTreeMap<PartitionId, u64>>,
}

/// One chunk of a worker's share, stored at `worker.<id>.<slot>.<k>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareChunk {
    /// Encoding version.
    pub v: u32,
    /// [`share_digest`] of the whole share this chunk belongs to.
    pub digest: u64,
    /// This chunk's index.
    pub index: u32,
    /// How many chunks the share has.
    pub count: u32,
    /// The partitions in this chunk.
    pub partitions: Vec<PartitionId>,
}

/// An operator's or worker's intent under `ctl.*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtlValue {
    /// Encoding version.
    pub v: u32,
    /// Makes each request a distinct write.
    pub nonce: u64,
}

/// An operator's pin under `ctl.pin.<partition>` ([`pin_key`]): the leader places the partition
/// on `worker` while that worker is live, whatever the strategy would choose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinValue {
    /// Encoding version.
    pub v: u32,
    /// The worker the partition is pinned to.
    pub worker: WorkerId,
}

/// Prefix of the pin keys in the assign bucket.
pub const PIN_PREFIX: &str = "ctl.pin.";

/// The assign-bucket key of `partition`'s pin.
pub fn pin_key(partition: &PartitionId) -> String {
    format!("{PIN_PREFIX}{partition}")
}

/// Encodes any of the values above.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512); // most values fit: no regrowth on the way
    serde_json::to_writer(&mut out, value).expect("parti values always serialize");
    out
}

/// Decodes a value, checking its version; `what` names it in the error.
pub fn decode<T: DeserializeOwned + Versioned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, Error> {
    let err = |reason: String| Error::Decode { what, reason };
    // Fast paths, one parse: the canonical bytes (everything parti writes) without serde, then
    // any object that decodes as `T`; such a value tells its version itself. Anything else
    // takes the two-step path below, which also words every error.
    let parsed = match T::decode_canonical(bytes) {
        Some(value) => Some(value),
        None if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => {
            serde_json::from_slice::<T>(bytes).ok()
        }
        None => None,
    };
    if let Some(value) = parsed {
        match value.version() {
            Some(VERSION) => {
                value.check().map_err(err)?;
                return Ok(value);
            }
            Some(v) => {
                return Err(err(format!(
                    "unsupported version {v} (this build reads {VERSION})"
                )))
            }
            None => {}
        }
    }
    #[derive(Deserialize)]
    struct Probe {
        v: Option<u64>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| err(format!("not a parti value: {e}")))?;
    match probe.v {
        Some(v) if v == VERSION as u64 => {}
        Some(v) => {
            return Err(err(format!(
                "unsupported version {v} (this build reads {VERSION})"
            )))
        }
        None => return Err(err("no version field \"v\"".into())),
    }
    let value: T = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
    value.check().map_err(err)?;
    Ok(value)
}

/// Values that check themselves after decoding.
pub trait Versioned {
    /// Semantic checks beyond the JSON shape.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// The value's version field `v`, if the type has one: lets [`decode`] parse only once.
    fn version(&self) -> Option<u32> {
        None
    }

    /// Reads the canonical encoding (exactly what [`encode`] writes) without serde; `None` for
    /// any other bytes, which [`decode`] then reads with serde. Must agree with serde on every
    /// input it accepts.
    fn decode_canonical(bytes: &[u8]) -> Option<Self>
    where
        Self: Sized,
    {
        let _ = bytes;
        None
    }
}

impl Versioned for LeaseValue {
    fn version(&self) -> Option<u32> {
        Some(self.v)
    }
    fn decode_canonical(bytes: &[u8]) -> Option<Self> {
        canonical::lease(bytes)
    }
    fn check(&self) -> Result<(), String> {
        let bad_load = self
            .loads
            .iter()
            .flat_map(|r| r.values.iter().flatten())
            .find(|l| !(l.is_finite() && **l >= 0.0));
        match bad_load {
            Some(l) => Err(format!("load {l} is not a finite number >= 0")),
            None if self.capacity == 0 => Err("capacity is 0".into()),
            None => Ok(()),
        }
    }
}
impl Versioned for LeaderValue {
    fn version(&self) -> Option<u32> {
        Some(self.v)
    }
    fn decode_canonical(bytes: &[u8]) -> Option<Self> {
        canonical::leader(bytes)
    }
}
impl Versioned for CtlValue {
    fn version(&self) -> Option<u32> {
        Some(self.v)
    }
    fn decode_canonical(bytes: &[u8]) -> Option<Self> {
        canonical::ctl(bytes)
    }
}
impl Versioned for PinValue {
    fn version(&self) -> Option<u32> {
        Some(self.v)
    }
}
impl Versioned for GenRecord {
    fn version(&self) -> Option<u32> {
        Some(self.v)
    }
    fn decode_canonical(bytes: &[u8]) -> Option<Self> {
        canonical::gen(bytes)
    }
    fn check(&self) -> Result<(), String> {
        match self.members.values().find(|m| m.chunks == 0) {
            Some(_) => Err("a member has 0 chunks".into()),
            None => Ok(()),
        }
    }
}
impl Versioned for ShareChunk {
    fn version(&self) -> Option<u32> {
        Some(self.v)
    }
    fn decode_canonical(bytes: &[u8]) -> Option<Self> {
        canonical::share(bytes)
    }
    fn check(&self) -> Result<(), String> {
        if self.count == 0 || self.index >= self.count {
            return Err(format!("chunk {} of {}", self.index, self.count));
        }
        for p in &self.partitions {
            if !crate::partition::is_valid_id(p.as_str()) {
                PartitionId::parse(p.as_str()).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// Content digest of a share: xxh3 (64-bit, seed 0) over the sorted partition IDs, each
/// followed by `\n`.
pub fn share_digest<'a>(partitions: impl IntoIterator<Item = &'a PartitionId>) -> u64 {
    // One-shot over the concatenation: the same value as streaming it, at a fraction of the
    // cost for short IDs.
    let mut bytes = Vec::with_capacity(1024);
    for p in partitions {
        bytes.extend_from_slice(p.as_str().as_bytes());
        bytes.push(b'\n');
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Splits a share into encoded chunks of at most about `max_bytes` each (chunk 0 first).
pub fn encode_share(partitions: &BTreeSet<PartitionId>, max_bytes: usize) -> Vec<Vec<u8>> {
    let digest = share_digest(partitions);
    // Group partitions so that each chunk's JSON stays under the limit (with room for the
    // envelope): each ID costs its length plus quotes and a comma.
    let budget = max_bytes.saturating_sub(128).max(64);
    let mut groups: Vec<Vec<&PartitionId>> = vec![Vec::new()];
    let mut size = 0;
    for p in partitions {
        let cost = p.as_str().len() + 3;
        if size + cost > budget && !groups.last().expect("one group").is_empty() {
            groups.push(Vec::new());
            size = 0;
        }
        size += cost;
        groups.last_mut().expect("one group").push(p);
    }
    /// [`ShareChunk`] over borrowed IDs: the same fields, so the same bytes.
    #[derive(Serialize)]
    struct ChunkRef<'a> {
        v: u32,
        digest: u64,
        index: u32,
        count: u32,
        partitions: &'a [&'a PartitionId],
    }
    let count = groups.len() as u32;
    groups
        .iter()
        .enumerate()
        .map(|(i, partitions)| {
            encode(&ChunkRef {
                v: VERSION,
                digest,
                index: i as u32,
                count,
                partitions,
            })
        })
        .collect()
}

/// The KV key (assign bucket) of chunk `index` of the share of worker `id` in `slot`.
pub fn share_key(id: WorkerId, slot: u8, index: u32) -> String {
    format!("worker.{id}.{slot}.{index}")
}

/// Parses a share key `worker.<id>.<slot>.<k>` into the worker, slot and chunk index.
pub fn parse_share_key(key: &str) -> Option<(WorkerId, u8, u32)> {
    let mut parts = key.strip_prefix("worker.")?.split('.');
    let id = parse_id(parts.next()?)?;
    let slot = match parts.next()? {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let index = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((id, slot, index))
}

/// Parses a lease key `worker.<id>` (leases bucket).
pub fn parse_lease_key(key: &str) -> Option<WorkerId> {
    parse_id(key.strip_prefix("worker.")?)
}

fn parse_id(s: &str) -> Option<WorkerId> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok().map(WorkerId)
}

/// The digest announced by every chunk of a share, if all of chunk 0's `count` chunks are
/// present and agree on digest and count; `chunk(i)` gives chunk `i`'s (digest, count).
pub(crate) fn complete_digest(chunk: impl Fn(u32) -> Option<(u64, u32)>) -> Option<u64> {
    let (digest, count) = chunk(0)?;
    (0..count)
        .all(|i| chunk(i) == Some((digest, count)))
        .then_some(digest)
}

/// Gathers the chunks of one worker's share as they arrive and yields the whole share once every
/// chunk of the same digest is present.
#[derive(Clone, Debug, Default)]
pub struct ShareAssembler {
    chunks: BTreeMap<u32, ShareChunk>,
}

impl ShareAssembler {
    /// Records a chunk (replacing any older chunk with the same index).
    pub fn insert(&mut self, chunk: ShareChunk) {
        self.chunks.insert(chunk.index, chunk);
    }

    /// Forgets chunk `index` (its key was deleted).
    pub fn remove(&mut self, index: u32) {
        self.chunks.remove(&index);
    }

    /// The digest announced by chunk 0, if present.
    pub fn head_digest(&self) -> Option<u64> {
        self.chunks.get(&0).map(|c| c.digest)
    }

    /// The digest announced by every chunk, if all chunks of the head's share are present
    /// (cheap: the content is not re-hashed; [`ShareAssembler::assemble`] verifies it).
    pub fn complete_digest(&self) -> Option<u64> {
        complete_digest(|i| self.chunks.get(&i).map(|c| (c.digest, c.count)))
    }

    /// The whole share if every chunk of the head's digest is present and the content matches
    /// the digest.
    pub fn assemble(&self) -> Option<BTreeSet<PartitionId>> {
        let head = self.chunks.get(&0)?;
        let mut all = Vec::new();
        for i in 0..head.count {
            let c = self.chunks.get(&i)?;
            if c.digest != head.digest || c.count != head.count {
                return None;
            }
            all.extend(c.partitions.iter().cloned());
        }
        // Chunks hold sorted runs: building the set in one go is linear.
        let out = BTreeSet::from_iter(all);
        (share_digest(&out) == head.digest).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> PartitionId {
        PartitionId::parse(s).unwrap()
    }

    #[test]
    fn share_round_trips_through_chunks() {
        let parts: BTreeSet<_> = (0..5000).map(|i| pid(&format!("orders.{i}"))).collect();
        let chunks = encode_share(&parts, 4096);
        assert!(chunks.len() > 10);
        assert!(chunks.iter().all(|c| c.len() <= 4096));
        let mut asm = ShareAssembler::default();
        for c in chunks.iter().rev() {
            let chunk: ShareChunk = decode("share", c).unwrap();
            assert_eq!(&encode(&chunk), c, "chunks encode like a ShareChunk");
            asm.insert(chunk);
        }
        assert_eq!(asm.assemble(), Some(parts));
    }

    #[test]
    fn share_digest_is_streaming_xxh3_over_the_ids() {
        for n in [0, 1, 7, 40, 300, 3000] {
            let parts: BTreeSet<_> = (0..n).map(|i| pid(&format!("t.{i}"))).collect();
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for p in &parts {
                h.update(p.as_str().as_bytes());
                h.update(b"\n");
            }
            assert_eq!(share_digest(&parts), h.digest(), "{n} partitions");
        }
        assert_eq!(share_digest(&BTreeSet::new()), 0x2d06_8005_38d3_94c2);
    }

    #[test]
    fn empty_share_is_one_chunk() {
        let chunks = encode_share(&BTreeSet::new(), 4096);
        assert_eq!(chunks.len(), 1);
        let mut asm = ShareAssembler::default();
        asm.insert(decode("share", &chunks[0]).unwrap());
        assert_eq!(asm.assemble(), Some(BTreeSet::new()));
    }

    #[test]
    fn unknown_version_is_refused_by_name() {
        let err = decode::<LeaderValue>("leader", br#"{"v":2,"worker":1,"token":3}"#).unwrap_err();
        assert!(err.to_string().contains("unsupported version 2"), "{err}");
    }

    #[test]
    fn worker_keys_parse_strictly() {
        assert_eq!(parse_lease_key("worker.12"), Some(WorkerId(12)));
        assert_eq!(parse_lease_key("worker.012"), None);
        assert_eq!(parse_lease_key("worker.+1"), None);
        assert_eq!(parse_lease_key("worker."), None);
        assert_eq!(parse_lease_key("leader"), None);
        assert_eq!(
            parse_share_key(&share_key(WorkerId(12), 1, 3)),
            Some((WorkerId(12), 1, 3))
        );
        assert_eq!(parse_share_key("worker.12.2.0"), None);
        assert_eq!(parse_share_key("worker.12.0"), None);
        assert_eq!(parse_share_key("worker.12.0.0.0"), None);
    }
}
