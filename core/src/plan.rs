//! Planning as a pure function: validate a [`PlanInput`], run a [`Strategy`] on it, explain
//! one partition's placement, and summarise a plan's balance and movement.
//!
//! The leader plans through these functions, and so do previews ("what moves if worker 7
//! leaves?"): build the input with the changed worker set and the current assignment as
//! `previous`, call [`plan`], then [`summarize`] or [`Plan::moved_from`].

use crate::partition::validate_partitions;
use crate::strategy::{Plan, PlanInput, Strategy};
use crate::{Error, PartitionId, WorkerId};
use std::collections::BTreeSet;

/// Why one partition is where a strategy puts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The partition explained.
    pub partition: PartitionId,
    /// Its owner in the plan (None only when there are no live workers).
    pub owner: Option<WorkerId>,
    /// Its owner in the input's previous assignment, live or not.
    pub previous: Option<WorkerId>,
    /// One sentence from the strategy, e.g. "kept on its previous owner 3 (load 0.98 of target)".
    pub reason: String,
}

/// Balance and movement of a plan against its input.
///
/// Loads are weight / capacity; the mean is total weight / total capacity. With no partitions
/// or no workers both ratios are 1.0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanSummary {
    /// Heaviest worker's load over the mean (1.0 is perfect).
    pub max_over_mean: f64,
    /// Lightest worker's load over the mean (workers with nothing count as 0).
    pub min_over_mean: f64,
    /// Partitions whose owner differs from the input's previous owner (new partitions and
    /// partitions whose previous owner is gone count only in the second case).
    pub moved: usize,
    /// Total weight of the moved partitions.
    pub moved_weight: u64,
}

/// Validates `input` and computes the owner of every partition with `strategy`.
///
/// Errors (before the strategy runs): a partition listed twice
/// ([`Error::InvalidPartition`]); a worker listed twice or with capacity 0, a total weight
/// that overflows `u64`, or a `slack` that is negative or not finite ([`Error::InvalidConfig`]).
/// Workers may be listed in any order. The plan places every partition on a live worker
/// (checked in debug builds); it is empty when there are no workers.
pub fn plan(strategy: &dyn Strategy, input: &PlanInput) -> Result<Plan, Error> {
    validate(input)?;
    let mut plan = strategy.assign(input);
    honour_pins(input, &mut plan);
    debug_check(strategy, input, &plan);
    Ok(plan)
}

/// Says why `partition` lands where `strategy` puts it, with its new and previous owner.
///
/// Validates like [`plan`]; also errors with [`Error::InvalidPartition`] when `partition` is
/// not in `input.partitions`. Costs about two [`plan`]s (the strategy replays its placement).
pub fn explain(
    strategy: &dyn Strategy,
    input: &PlanInput,
    partition: &PartitionId,
) -> Result<Explanation, Error> {
    validate(input)?;
    if !input.partitions.iter().any(|p| p.id() == partition) {
        return Err(Error::InvalidPartition {
            partition: partition.to_string(),
            reason: "not in the input's partition list".into(),
        });
    }
    let mut plan = strategy.assign(input);
    honour_pins(input, &mut plan);
    let owner = plan.assignment.get(partition).copied();
    Ok(Explanation {
        partition: partition.clone(),
        owner,
        previous: input.previous.get(partition).copied(),
        reason: strategy.explain(input, partition),
    })
}

/// Moves every pinned partition of `plan` to its pin's worker when that worker is in the input.
/// The built-in strategies honour pins already (and balance around them); a custom strategy
/// may not know of them, and pins hold whatever the strategy chose.
pub(crate) fn honour_pins(input: &PlanInput, plan: &mut Plan) {
    for (p, w) in &input.pins {
        if let Some(owner) = plan.assignment.get_mut(p) {
            if input.workers.iter().any(|slot| slot.id == *w) {
                *owner = *w;
            }
        }
    }
}

/// Measures `plan` against `input`: max and min load over the mean, and what moved.
///
/// Use it to compare strategies or to preview a change; partitions of `plan` that are not in
/// `input` are ignored, and so are workers of `plan` that are not in `input`.
pub fn summarize(input: &PlanInput, plan: &Plan) -> PlanSummary {
    let total_weight: u64 = input.partitions.iter().map(|p| p.weight()).sum();
    let total_capacity: u64 = input
        .workers
        .iter()
        .map(|w| u64::from(w.capacity.max(1)))
        .sum();
    let mut load: std::collections::BTreeMap<WorkerId, u64> =
        input.workers.iter().map(|w| (w.id, 0)).collect();
    let mut moved = 0;
    let mut moved_weight = 0;
    for p in &input.partitions {
        let Some(owner) = plan.assignment.get(p.id()) else {
            continue;
        };
        if let Some(l) = load.get_mut(owner) {
            *l += p.weight();
        }
        if input.previous.get(p.id()).is_some_and(|prev| prev != owner) {
            moved += 1;
            moved_weight += p.weight();
        }
    }
    let (mut max, mut min) = (1.0, 1.0);
    if total_weight > 0 && total_capacity > 0 {
        let mean = total_weight as f64 / total_capacity as f64;
        let rel = |w: &crate::strategy::WorkerSlot| {
            load[&w.id] as f64 / f64::from(w.capacity.max(1)) / mean
        };
        max = input.workers.iter().map(rel).fold(f64::MIN, f64::max);
        min = input.workers.iter().map(rel).fold(f64::MAX, f64::min);
    }
    PlanSummary {
        max_over_mean: max,
        min_over_mean: min,
        moved,
        moved_weight,
    }
}

fn validate(input: &PlanInput) -> Result<(), Error> {
    validate_partitions(&input.partitions)?;
    let mut seen = BTreeSet::new();
    for w in &input.workers {
        if !seen.insert(w.id) {
            return Err(Error::InvalidConfig {
                field: "workers",
                reason: format!("worker {} is listed twice", w.id),
            });
        }
        if w.capacity == 0 {
            return Err(Error::InvalidConfig {
                field: "workers",
                reason: format!(
                    "worker {} has capacity 0; capacity must be at least 1",
                    w.id
                ),
            });
        }
    }
    total_weight(&input.partitions)?;
    if !(input.slack.is_finite() && input.slack >= 0.0) {
        return Err(Error::InvalidConfig {
            field: "slack",
            reason: format!(
                "{} is not allowed; use a finite value >= 0 (0.05 = 5 %)",
                input.slack
            ),
        });
    }
    Ok(())
}

/// The partitions' total weight; an error when it overflows `u64` (the leader refuses such a
/// source list when it arrives, as [`plan`] refuses such an input).
pub(crate) fn total_weight(partitions: &[crate::Partition]) -> Result<u64, Error> {
    partitions
        .iter()
        .try_fold(0u64, |sum, p| sum.checked_add(p.weight()))
        .ok_or_else(|| Error::InvalidConfig {
            field: "partitions",
            reason: "the partitions' total weight overflows u64".into(),
        })
}

/// Debug builds check the strategy's contract: every partition exactly once, on a live worker.
fn debug_check(strategy: &dyn Strategy, input: &PlanInput, plan: &Plan) {
    if !cfg!(debug_assertions) {
        return;
    }
    if input.workers.is_empty() {
        debug_assert!(
            plan.assignment.is_empty(),
            "{} assigned partitions with no live worker",
            strategy.name()
        );
        return;
    }
    let live: BTreeSet<WorkerId> = input.workers.iter().map(|w| w.id).collect();
    debug_assert_eq!(
        plan.assignment.len(),
        input.partitions.len(),
        "{} did not place every partition exactly once",
        strategy.name()
    );
    for p in &input.partitions {
        let owner = plan.assignment.get(p.id());
        debug_assert!(
            owner.is_some_and(|w| live.contains(w)),
            "{} placed {} on {owner:?}, not a live worker",
            strategy.name(),
            p.id()
        );
    }
}
