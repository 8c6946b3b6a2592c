//! Round-robin: the simplest stateless placement.

use super::{dead_pin_note, Plan, PlanInput, Prepared, Strategy};
use crate::PartitionId;

/// Deals partitions (sorted by ID, pinned ones left out) to workers (sorted by ID) in turn.
///
/// Ignores weights, capacities, the previous assignment, `slack` and `max_moves`: the result
/// depends only on the two sorted ID lists and pins. Balanced by count, but a join or leave
/// reshuffles almost everything; prefer [`super::Balanced`] unless that is what you want.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundRobin;

impl RoundRobin {
    fn owners(prep: &Prepared<'_>) -> Vec<u32> {
        let n = prep.workers.len() as u64;
        let mut next = 0u64;
        prep.pin
            .iter()
            .map(|pin| match pin {
                Some(p) => *p,
                None => {
                    let w = (next % n) as u32;
                    next += 1;
                    w
                }
            })
            .collect()
    }
}

impl Strategy for RoundRobin {
    fn name(&self) -> &str {
        "round-robin"
    }

    fn assign(&self, input: &PlanInput) -> Plan {
        let prep = Prepared::new(input);
        if prep.workers.is_empty() {
            return Plan::default();
        }
        prep.plan(&Self::owners(&prep))
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
        let position = prep.pin[..rank].iter().filter(|p| p.is_none()).count();
        let n = prep.workers.len();
        format!(
            "{}it is number {position} (from 0) among the unpinned partitions in ID order; \
             {position} mod {n} workers = {}, so worker {}",
            dead_pin_note(input, &prep, rank),
            position % n,
            prep.worker_id((position % n) as u32)
        )
    }
}
