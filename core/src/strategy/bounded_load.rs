//! Consistent hashing with bounded loads: the ring decides, but no worker may exceed a bound.

use super::consistent_hash::Ring;
use super::{dead_pin_note, ConsistentHash, Plan, PlanInput, Prepared, RelLoad, Strategy};
use crate::PartitionId;
use std::cmp::Reverse;

/// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam).
///
/// Uses the [`ConsistentHash`] ring with its default points. Each worker may carry at most
/// `ceil(cap × total weight × its capacity / total capacity)` (a worker may always take one
/// partition). Pinned partitions are placed first; the rest heaviest-first (ties by ID), each
/// on the first worker along the ring from its hash that has room; if none has room (a very
/// heavy partition), on the least relatively loaded worker. So the heaviest worker carries at
/// most `cap × mean + heaviest partition`. The result depends on the worker set, capacities,
/// weights, pins and `cap`; not on the previous assignment, `slack` or `max_moves`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundedLoad {
    /// Load bound as a multiple of the mean (values below 1.0, and NaN, act as 1.0). Lower is
    /// better balanced but moves more on joins and leaves. Default 1.25.
    pub cap: f64,
}

impl BoundedLoad {
    /// The default load bound over the mean.
    pub const DEFAULT_CAP: f64 = 1.25;
}

impl Default for BoundedLoad {
    fn default() -> Self {
        BoundedLoad {
            cap: Self::DEFAULT_CAP,
        }
    }
}

/// What happened to one partition during placement, for `explain`.
struct Trace {
    first: u32,
    steps: usize,
    first_load: u64,
    no_room: bool,
}

impl BoundedLoad {
    /// Places everything; when `watch` is a rank, also reports how that partition was placed.
    fn run(
        &self,
        prep: &Prepared<'_>,
        watch: Option<usize>,
    ) -> (Vec<u32>, Vec<u64>, Option<Trace>) {
        let nw = prep.workers.len();
        let np = prep.parts.len();
        let cap = if self.cap >= 1.0 { self.cap } else { 1.0 };
        let total_w = prep.total_weight() as f64;
        let total_c = prep.total_capacity().max(1) as f64;
        let bound: Vec<u64> = (0..nw as u32)
            .map(|w| (cap * total_w * prep.capacity(w) as f64 / total_c).ceil() as u64)
            .collect();
        let mut owner = vec![super::NO_WORKER; np];
        let mut load = vec![0u64; nw];
        let mut trace = None;
        if nw == 0 {
            return (owner, load, trace);
        }
        let ring = Ring::new(prep, ConsistentHash::DEFAULT_VNODES);
        let mut order: Vec<usize> = Vec::with_capacity(np);
        for (rank, pin) in prep.pin.iter().enumerate() {
            match pin {
                Some(p) => {
                    owner[rank] = *p;
                    load[*p as usize] += prep.parts[rank].weight();
                }
                None => order.push(rank),
            }
        }
        order.sort_by_key(|&r| (Reverse(prep.parts[r].weight()), r));
        let mut seen = vec![u32::MAX; nw];
        for rank in order {
            let w = prep.parts[rank].weight();
            let start = ring.start(Ring::hash(prep.parts[rank].id()));
            let first = ring.at(start).1;
            let mut chosen = None;
            let mut steps = 0;
            for i in 0..ring.len() {
                let x = ring.at(start + i).1;
                if seen[x as usize] == rank as u32 {
                    continue;
                }
                seen[x as usize] = rank as u32;
                let xl = load[x as usize];
                if xl == 0 || xl + w <= bound[x as usize] {
                    chosen = Some(x);
                    break;
                }
                steps += 1;
            }
            let to = chosen.unwrap_or_else(|| {
                (0..nw as u32)
                    .min_by_key(|&x| RelLoad {
                        load: load[x as usize],
                        cap: prep.capacity(x),
                        idx: x,
                        ver: 0,
                    })
                    .expect("at least one worker")
            });
            if watch == Some(rank) {
                trace = Some(Trace {
                    first,
                    steps,
                    first_load: load[first as usize],
                    no_room: chosen.is_none(),
                });
            }
            owner[rank] = to;
            load[to as usize] += w;
        }
        (owner, bound, trace)
    }
}

impl Strategy for BoundedLoad {
    fn name(&self) -> &str {
        "bounded-load"
    }

    fn assign(&self, input: &PlanInput) -> Plan {
        let prep = Prepared::new(input);
        let (owner, _, _) = self.run(&prep, None);
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
        let (owner, bound, trace) = self.run(&prep, Some(rank));
        let t = trace.expect("the watched partition is placed");
        let to = prep.worker_id(owner[rank]);
        let first = prep.worker_id(t.first);
        let note = dead_pin_note(input, &prep, rank);
        let w = prep.parts[rank].weight();
        if t.no_room {
            format!(
                "{note}no worker along the ring had room for weight {w}; placed on least-loaded \
                 worker {to}"
            )
        } else if t.steps == 0 {
            format!(
                "{note}its hash points to worker {to}, which had room (load {} + {w} within \
                 bound {})",
                t.first_load, bound[t.first as usize]
            )
        } else {
            format!(
                "{note}its hash points to worker {first}, which was full (load {} + {w} over \
                 bound {}); worker {to} is the next along the ring with room ({} full workers \
                 skipped)",
                t.first_load, bound[t.first as usize], t.steps
            )
        }
    }
}
