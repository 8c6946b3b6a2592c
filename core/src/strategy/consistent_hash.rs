//! Consistent hashing on an xxh3 ring: stateless placement for users who want a partition's
//! owner to depend only on the worker set.

use super::{dead_pin_note, Plan, PlanInput, Prepared, Strategy, NO_WORKER};
use crate::PartitionId;
use xxhash_rust::xxh3::xxh3_64;

/// Consistent hashing: each worker owns the arcs of an xxh3 ring that end at its points.
///
/// A worker gets `vnodes` points scaled by its capacity relative to the mean capacity (at
/// least one); point `v` of worker `id` sits at `xxh3(id as u32 LE ‖ v as u32 LE)`. A
/// partition goes to the first point at or after `xxh3(partition ID)`, wrapping around.
/// The result depends only on the worker set, their capacities, pins and `vnodes` (weights,
/// the previous assignment, `slack` and `max_moves` are ignored), so a join or leave moves
/// roughly the joining or leaving worker's share, but loads are only balanced statistically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsistentHash {
    /// Ring points per worker of mean capacity (0 is treated as 1). More points, better
    /// balance, slower planning. Default 64.
    pub vnodes: u32,
}

impl ConsistentHash {
    /// The default number of ring points per worker.
    pub const DEFAULT_VNODES: u32 = 64;
}

impl Default for ConsistentHash {
    fn default() -> Self {
        ConsistentHash {
            vnodes: Self::DEFAULT_VNODES,
        }
    }
}

/// A sorted ring of `(position, worker index, vnode)`.
pub(crate) struct Ring {
    points: Vec<(u64, u32, u32)>,
}

impl Ring {
    /// Builds the ring for the prepared workers (empty if there are none).
    pub fn new(prep: &Prepared<'_>, vnodes: u32) -> Self {
        let vnodes = u128::from(vnodes.max(1));
        let n = prep.workers.len() as u128;
        let total = u128::from(prep.total_capacity().max(1));
        let mut points = Vec::new();
        for w in 0..prep.workers.len() as u32 {
            let cap = u128::from(prep.capacity(w));
            // round(vnodes × cap / mean cap), at least 1, in integers
            let count = ((2 * vnodes * cap * n + total) / (2 * total)).max(1);
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            let id = prep.worker_id(w).0.to_le_bytes();
            for v in 0..count {
                let mut key = [0u8; 8];
                key[..4].copy_from_slice(&id);
                key[4..].copy_from_slice(&v.to_le_bytes());
                points.push((xxh3_64(&key), w, v));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// Where a partition hashes to.
    pub fn hash(id: &PartitionId) -> u64 {
        xxh3_64(id.as_str().as_bytes())
    }

    /// Index of the first point at or after `h`, wrapping around.
    pub fn start(&self, h: u64) -> usize {
        let i = self.points.partition_point(|p| p.0 < h);
        if i == self.points.len() {
            0
        } else {
            i
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// The point at index `i` modulo the ring size.
    pub fn at(&self, i: usize) -> (u64, u32, u32) {
        self.points[i % self.points.len()]
    }
}

impl Strategy for ConsistentHash {
    fn name(&self) -> &str {
        "consistent-hash"
    }

    fn assign(&self, input: &PlanInput) -> Plan {
        let prep = Prepared::new(input);
        if prep.workers.is_empty() {
            return Plan::default();
        }
        let ring = Ring::new(&prep, self.vnodes);
        let owner: Vec<u32> = (0..prep.parts.len())
            .map(|r| match prep.pin[r] {
                Some(pin) => pin,
                None => ring.at(ring.start(Ring::hash(prep.parts[r].id()))).1,
            })
            .collect();
        debug_assert!(owner.iter().all(|&o| o != NO_WORKER));
        prep.plan(&owner)
    }

    fn explain(&self, input: &PlanInput, partition: &PartitionId) -> String {
        let prep = Prepared::new(input);
        let Some(rank) = prep.rank(partition) else {
            return format!("{partition} is not in the input's partition list");
        };
        if prep.workers.is_empty() {
            return format!("{partition} is not placed: no live worker");
        }
        if let Some(pin) = prep.pin[rank] {
            return format!("pinned to worker {}", prep.worker_id(pin));
        }
        let ring = Ring::new(&prep, self.vnodes);
        let h = Ring::hash(partition);
        let (pos, w, v) = ring.at(ring.start(h));
        format!(
            "{}hash {h:#018x} falls on ring point {pos:#018x} (worker {}, vnode {v} of {} \
             points in all)",
            dead_pin_note(input, &prep, rank),
            prep.worker_id(w),
            ring.len()
        )
    }
}
