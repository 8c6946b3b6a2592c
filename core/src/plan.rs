//! Planning as a pure function: validate a [`PlanInput`], run a [`Strategy`] on it, explain
//! one partition's placement, and summarise a plan's balance and movement.
//!
//! The leader plans through these functions, and so do previews ("what moves if worker 7
//! leaves?"): build the input with the changed worker set and the current assignment as
//! `previous`, call [`plan`], then [`summarize`] or [`Plan::moved_from`].
//!
//! An input built by hand (the CLI's `--file`, Python's and Kotlin's `plan`) should also pass
//! [`validate_input`], which refuses what the leader's own input may hold but a person most
//! likely mistyped: no workers, `previous` or `pins` naming partitions that are not listed,
//! pins to workers that are not listed.

use crate::partition::validate_partitions;
use crate::strategy::{Plan, PlanInput, Strategy};
use crate::{Error, PartitionId, WorkerId};
use std::collections::BTreeMap;
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
/// Loads are weight / capacity; the mean is total weight / total capacity. With measured
/// loads in the input, weights are the effective sizes
/// ([`crate::load::effective_partitions`]), `moved_weight` too. With no partitions or no
/// workers both ratios are 1.0.
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
/// ([`Error::InvalidPartition`]); a worker listed twice or with capacity 0 (allowed
/// `1..=u32::MAX`), a total weight that overflows `u64`, or a `slack` that is negative or not
/// finite ([`Error::InvalidConfig`], naming the field and the allowed range); a load that is
/// negative, not finite or of an unlisted partition ([`Error::InvalidPartition`]). With loads,
/// the strategy balances effective sizes ([`crate::load::effective_partitions`]). Workers may
/// be listed in any order. The plan places every partition on a live worker (checked in debug
/// builds); it is empty when there are no workers. `previous` and `pins` may name partitions
/// and workers that are gone (the leader's input does); [`validate_input`] refuses that.
pub fn plan(strategy: &dyn Strategy, input: &PlanInput) -> Result<Plan, Error> {
    validate(input)?;
    let sized = sized(input);
    let input = sized.as_ref().unwrap_or(input);
    let mut plan = strategy.assign(input);
    honour_pins(input, &mut plan);
    debug_check(strategy, input, &plan);
    Ok(plan)
}

/// With measured loads, the input a strategy sees: partitions at their effective sizes
/// ([`crate::load::effective_partitions`]) and no loads. `None` without loads.
fn sized(input: &PlanInput) -> Option<PlanInput> {
    (!input.loads.is_empty()).then(|| PlanInput {
        workers: input.workers.clone(),
        partitions: crate::load::effective_partitions(&input.partitions, &input.loads),
        previous: input.previous.clone(),
        pins: input.pins.clone(),
        slack: input.slack,
        max_moves: input.max_moves,
        loads: Default::default(),
    })
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
            partition: partition.short().into_owned(),
            reason: "not in the input's partition list".into(),
        });
    }
    let sized = sized(input);
    let input = sized.as_ref().unwrap_or(input);
    let mut plan = strategy.assign(input);
    honour_pins(input, &mut plan);
    let owner = plan.assignment.get(partition).copied();
    let previous = input.previous.get(partition).copied();
    let mut reason = strategy.explain(input, partition);
    if let (Some(_), Some(w)) = (&sized, previous.filter(|w| owner != Some(*w))) {
        // Measured load may have driven the move: say how loaded the previous owner was.
        if let Some(ratio) = previous_load(input, w) {
            reason = format!("moved for load: worker {w} was at {ratio:.2}x mean; {reason}");
        }
    }
    Ok(Explanation {
        partition: partition.clone(),
        owner,
        previous,
        reason,
    })
}

/// Live worker `w`'s load in `input.previous` over the mean (both relative to capacity).
fn previous_load(input: &PlanInput, w: WorkerId) -> Option<f64> {
    let slot = input.workers.iter().find(|s| s.id == w)?;
    let total: f64 = input.partitions.iter().map(|p| p.weight() as f64).sum();
    let capacity: f64 = input
        .workers
        .iter()
        .map(|s| f64::from(s.capacity.max(1)))
        .sum();
    let held: f64 = input
        .partitions
        .iter()
        .filter(|p| input.previous.get(p.id()) == Some(&w))
        .map(|p| p.weight() as f64)
        .sum();
    (total > 0.0).then(|| held / f64::from(slot.capacity.max(1)) / (total / capacity))
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
    if let Some(sized) = sized(input) {
        return summarize(&sized, plan);
    }
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

/// Checks an input a person or a program built by hand, before [`plan`] or [`explain`]: what
/// they refuse, and also
/// - no workers (`workers`: at least one is needed to own the partitions);
/// - a `previous` entry for a partition not in `partitions` (`previous`);
/// - a pin of a partition not in `partitions`, or to a worker not in `workers` (`pins`: a
///   pin holds only while its worker is live, so such a pin would do nothing).
///
/// A `previous` owner that is not in `workers` is allowed: that is how a leave is previewed.
/// Each error is [`Error::InvalidConfig`] naming the field, the entry (IDs cut by
/// [`crate::short_id`]) and what is allowed. The leader does not call it: its input names
/// partitions and workers that have just gone.
pub fn validate_input(input: &PlanInput) -> Result<(), Error> {
    validate(input)?;
    if input.workers.is_empty() {
        return Err(Error::InvalidConfig {
            field: "workers",
            reason: "empty; at least one worker is needed to own the partitions".into(),
        });
    }
    let listed: BTreeSet<&PartitionId> = input.partitions.iter().map(|p| p.id()).collect();
    let unlisted = |field: &'static str, map: &BTreeMap<PartitionId, WorkerId>| match map
        .keys()
        .find(|p| !listed.contains(p))
    {
        Some(p) => Err(Error::InvalidConfig {
            field,
            reason: format!(
                "partition {} is not in partitions; name only listed partitions",
                p.short()
            ),
        }),
        None => Ok(()),
    };
    unlisted("previous", &input.previous)?;
    unlisted("pins", &input.pins)?;
    let workers: BTreeSet<WorkerId> = input.workers.iter().map(|w| w.id).collect();
    if let Some((p, w)) = input.pins.iter().find(|(_, w)| !workers.contains(w)) {
        return Err(Error::InvalidConfig {
            field: "pins",
            reason: format!(
                "partition {} is pinned to worker {w}, which is not in workers; pin only to \
                 listed workers (a pin holds while its worker is live)",
                p.short()
            ),
        });
    }
    Ok(())
}

fn validate(input: &PlanInput) -> Result<(), Error> {
    validate_partitions(&input.partitions)?;
    crate::load::validate(&input.partitions, &input.loads)?;
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
                    "worker {} has capacity 0; capacity must be 1..={}",
                    w.id,
                    u32::MAX
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

/// The partitions' total weight; an error when it overflows `u64` ([`validate_partitions`]
/// refuses such a list, wherever it comes from).
pub(crate) fn total_weight(partitions: &[crate::Partition]) -> Result<u64, Error> {
    partitions
        .iter()
        .try_fold(0u64, |sum, p| sum.checked_add(p.weight()))
        .ok_or_else(|| Error::InvalidConfig {
            field: "partitions",
            reason: format!(
                "the partitions' total weight overflows; allowed up to {} in all",
                u64::MAX
            ),
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
