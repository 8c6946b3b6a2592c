//! Placement strategies: pure, deterministic functions from workers, partitions and the previous
//! assignment to a new assignment.

mod balanced;
mod bounded_load;
pub mod bounds;
mod consistent_hash;
mod round_robin;

pub use balanced::Balanced;
pub use bounded_load::BoundedLoad;
pub use bounds::Bounds;
pub use consistent_hash::ConsistentHash;
pub use round_robin::RoundRobin;

use crate::{Error, Partition, PartitionId, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

/// The slack the leader plans with, and the default of every preview ([`PlanInput::new`]):
/// a sticky partition stays on a worker up to 5 % over its target load.
pub const DEFAULT_SLACK: f64 = 0.05;

/// The names of the built-in strategies, as [`by_name`] accepts them and as their
/// [`Strategy::name`] returns them. The first, `balanced`, is the one a worker uses unless
/// told otherwise. This is the list every CLI flag and binding offers.
pub const NAMES: [&str; 4] = ["balanced", "consistent-hash", "bounded-load", "round-robin"];

/// The constructor of each strategy in [`NAMES`], in the same order (default parameters).
const BUILTINS: [fn() -> Box<dyn Strategy>; 4] = [
    || Box::<Balanced>::default(),
    || Box::<ConsistentHash>::default(),
    || Box::<BoundedLoad>::default(),
    || Box::new(RoundRobin),
];

/// The built-in strategy called `name` (exactly one of [`NAMES`]), with its default
/// parameters. Any other name is [`Error::UnknownStrategy`], whose message lists [`NAMES`].
pub fn by_name(name: &str) -> Result<Box<dyn Strategy>, Error> {
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| BUILTINS[i]())
        .ok_or_else(|| Error::UnknownStrategy { name: name.into() })
}

/// A live worker as a strategy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSlot {
    /// The worker's ID.
    pub id: WorkerId,
    /// Its capacity (at least 1): loads are weight / capacity.
    pub capacity: u32,
}

/// Everything a strategy may look at.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanInput {
    /// Live workers, sorted by ID, without duplicates.
    pub workers: Vec<WorkerSlot>,
    /// Partitions to place, without duplicate IDs.
    pub partitions: Vec<Partition>,
    /// The previous owner of each partition (partitions or workers that no longer exist may
    /// appear; ignore them).
    pub previous: BTreeMap<PartitionId, WorkerId>,
    /// Partitions an operator pinned to a worker (honoured when that worker is live).
    pub pins: BTreeMap<PartitionId, WorkerId>,
    /// Tolerated overload over the mean (0.05 = 5 %) before a sticky partition is moved.
    pub slack: f64,
    /// Most partitions that may change owner (None = no limit). Partitions without a live
    /// previous owner do not count.
    pub max_moves: Option<usize>,
    /// Measured load of partitions (any non-negative unit): [`crate::plan::plan`] balances on
    /// it where known, on the static weight elsewhere ([`crate::plan::effective_partitions`]).
    /// Strategies see the result as partition weights, and this map empty.
    pub loads: BTreeMap<PartitionId, f64>,
}

impl PlanInput {
    /// An input with no previous assignment, no pins, [`DEFAULT_SLACK`], no move limit and no
    /// measured load.
    pub fn new(workers: Vec<WorkerSlot>, partitions: Vec<Partition>) -> Self {
        PlanInput {
            workers,
            partitions,
            previous: BTreeMap::new(),
            pins: BTreeMap::new(),
            slack: DEFAULT_SLACK,
            max_moves: None,
            loads: BTreeMap::new(),
        }
    }
}

/// A strategy's result: the owner of every partition (empty if there are no workers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Owner of each partition.
    pub assignment: BTreeMap<PartitionId, WorkerId>,
}

impl Plan {
    /// The partitions of each worker (workers without partitions are absent).
    pub fn by_worker(&self) -> BTreeMap<WorkerId, BTreeSet<PartitionId>> {
        let mut out: BTreeMap<WorkerId, BTreeSet<PartitionId>> = BTreeMap::new();
        for (p, w) in &self.assignment {
            out.entry(*w).or_default().insert(p.clone());
        }
        out
    }

    /// Partitions whose owner differs from `previous` (new partitions do not count).
    pub fn moved_from<'a>(
        &'a self,
        previous: &'a BTreeMap<PartitionId, WorkerId>,
    ) -> impl Iterator<Item = &'a PartitionId> + 'a {
        self.assignment
            .iter()
            .filter(move |(p, w)| previous.get(*p).is_some_and(|old| old != *w))
            .map(|(p, _)| p)
    }
}

/// A placement strategy. Implementations must be pure and deterministic across platforms (no
/// hash maps whose order reaches the result, no unseeded randomness, no clock).
pub trait Strategy: Debug + Send + Sync {
    /// A short name for logs and tables (`balanced`, `consistent-hash`, ...).
    fn name(&self) -> &str;

    /// Computes the owner of every partition.
    fn assign(&self, input: &PlanInput) -> Plan;

    /// Why `partition` lands where [`Strategy::assign`] puts it, in one sentence.
    fn explain(&self, input: &PlanInput, partition: &PartitionId) -> String {
        match self.assign(input).assignment.get(partition) {
            Some(w) => format!("{} places {partition} on worker {w}", self.name()),
            None => format!("{partition} is not placed (unknown partition or no live worker)"),
        }
    }
}

/// Marks "no worker" in the owner vectors strategies build internally.
pub(crate) const NO_WORKER: u32 = u32::MAX;

/// A [`PlanInput`] re-indexed for the built-in strategies: workers sorted by ID, partitions
/// sorted by ID (a partition's *rank* is its position in that order), and the live previous
/// owner and live pin of every partition as worker indexes. Sorting makes every strategy
/// independent of the order in which the caller lists workers and partitions.
pub(crate) struct Prepared<'a> {
    /// Live workers, sorted by ID.
    pub workers: Vec<&'a WorkerSlot>,
    /// Partitions sorted by ID.
    pub parts: Vec<&'a Partition>,
    /// Previous owner of each partition (by rank), if that worker is live.
    pub prev: Vec<Option<u32>>,
    /// Pinned worker of each partition (by rank), if that worker is live.
    pub pin: Vec<Option<u32>>,
    /// Whether `previous` names an owner for each partition (by rank), live or not.
    pub previous_listed: Vec<bool>,
}

impl<'a> Prepared<'a> {
    /// Sorts and indexes `input` in O(P log P + W log W), with no per-partition map lookups.
    pub fn new(input: &'a PlanInput) -> Self {
        let mut workers: Vec<&WorkerSlot> = input.workers.iter().collect();
        workers.sort_by_key(|w| w.id);
        let mut parts: Vec<&Partition> = input.partitions.iter().collect();
        parts.sort_by(|a, b| a.id().cmp(b.id()));
        let mut out = Prepared {
            workers,
            parts,
            prev: Vec::new(),
            pin: Vec::new(),
            previous_listed: Vec::new(),
        };
        let (prev, listed) = out.live_join(&input.previous);
        out.prev = prev;
        out.previous_listed = listed;
        out.pin = out.live_join(&input.pins).0;
        out
    }

    /// The index of a live worker.
    pub fn worker_index(&self, id: WorkerId) -> Option<u32> {
        self.workers
            .binary_search_by_key(&id, |w| w.id)
            .ok()
            .map(|i| i as u32)
    }

    /// The rank of a partition, if it is in the input.
    pub fn rank(&self, id: &PartitionId) -> Option<usize> {
        self.parts.binary_search_by(|p| p.id().cmp(id)).ok()
    }

    /// The ID of worker index `w`.
    pub fn worker_id(&self, w: u32) -> WorkerId {
        self.workers[w as usize].id
    }

    /// Capacity of worker index `w` (at least 1 even if the input says 0).
    pub fn capacity(&self, w: u32) -> u64 {
        u64::from(self.workers[w as usize].capacity.max(1))
    }

    /// Sum of all partition weights.
    pub fn total_weight(&self) -> u64 {
        self.parts.iter().map(|p| p.weight()).sum()
    }

    /// Sum of all worker capacities.
    pub fn total_capacity(&self) -> u64 {
        (0..self.workers.len() as u32)
            .map(|w| self.capacity(w))
            .sum()
    }

    /// Turns an owner per rank (worker indexes, [`NO_WORKER`] for none) into a [`Plan`].
    pub fn plan(&self, owner: &[u32]) -> Plan {
        let assignment = self
            .parts
            .iter()
            .zip(owner)
            .filter(|(_, &w)| w != NO_WORKER)
            .map(|(p, &w)| (p.id().clone(), self.worker_id(w)))
            .collect();
        Plan { assignment }
    }

    /// Walks the sorted partitions and a sorted map side by side: the map's worker for each
    /// rank, kept only when that worker is live; and whether the map lists the rank at all.
    fn live_join(&self, map: &BTreeMap<PartitionId, WorkerId>) -> (Vec<Option<u32>>, Vec<bool>) {
        let mut out = vec![None; self.parts.len()];
        let mut listed = vec![false; self.parts.len()];
        let mut it = map.iter().peekable();
        for (rank, p) in self.parts.iter().enumerate() {
            while it.next_if(|(k, _)| *k < p.id()).is_some() {}
            if let Some((k, w)) = it.peek() {
                if *k == p.id() {
                    out[rank] = self.worker_index(**w);
                    listed[rank] = true;
                }
            }
        }
        (out, listed)
    }
}

/// Relative load of worker `idx` (`load / cap`), ordered exactly (cross-multiplied, no floats),
/// ties by lower worker index (= lower worker ID). `ver` lets lazy heaps spot stale entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RelLoad {
    pub load: u64,
    pub cap: u64,
    pub idx: u32,
    pub ver: u32,
}

impl Ord for RelLoad {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (u128::from(self.load) * u128::from(o.cap))
            .cmp(&(u128::from(o.load) * u128::from(self.cap)))
            .then(self.idx.cmp(&o.idx))
            .then(self.ver.cmp(&o.ver))
    }
}

impl PartialOrd for RelLoad {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// The slack to use: the input's when finite and non-negative, else 0.
pub(crate) fn effective_slack(input: &PlanInput) -> f64 {
    if input.slack.is_finite() && input.slack >= 0.0 {
        input.slack
    } else {
        0.0
    }
}

/// Describes where a pin points when it is not honoured (its worker is not live), as a prefix
/// for explanations; empty otherwise.
pub(crate) fn dead_pin_note(input: &PlanInput, prep: &Prepared<'_>, rank: usize) -> String {
    match input.pins.get(prep.parts[rank].id()) {
        Some(w) if prep.pin[rank].is_none() => {
            format!("pinned to worker {w}, which is not live; ")
        }
        _ => String::new(),
    }
}
