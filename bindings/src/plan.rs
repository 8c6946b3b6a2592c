//! The pure planning functions: [`plan`] and [`explain`] over the core's strategies, with no
//! network and no runtime.

use crate::error::PartiError;
use parti::parti_core::{self, strategy as s, PartitionId, WorkerId};
use std::collections::{BTreeMap, HashMap};

/// A placement strategy of the core.
#[derive(Clone, Copy, Debug, PartialEq, uniffi::Enum)]
pub enum Strategy {
    /// Sticky, weight- and capacity-aware, minimal movement (the workers' default).
    Balanced,
    /// Consistent hashing on an xxh3 ring.
    ConsistentHash {
        /// Ring points per worker of mean capacity (the Rust default is 64).
        vnodes: u32,
    },
    /// Consistent hashing with a load bound.
    BoundedLoad {
        /// Load bound as a multiple of the mean (the Rust default is 1.25).
        cap: f64,
    },
    /// Deals partitions to workers in turn (ignores weights and the previous assignment).
    RoundRobin,
}

/// The names of the core's built-in strategies (its registry, `strategy::NAMES`); the first
/// is the workers' default.
#[uniffi::export]
pub fn strategy_names() -> Vec<String> {
    s::NAMES.iter().map(|n| n.to_string()).collect()
}

/// The strategy called `name` (one of [`strategy_names`]) with the Rust default parameters;
/// any other name is [`PartiError::InvalidArgument`] listing the valid names.
#[uniffi::export]
pub fn strategy_by_name(name: String) -> Result<Strategy, PartiError> {
    let core = s::by_name(&name)?;
    let every = [
        Strategy::Balanced,
        Strategy::ConsistentHash {
            vnodes: s::ConsistentHash::default().vnodes,
        },
        Strategy::BoundedLoad {
            cap: s::BoundedLoad::default().cap,
        },
        Strategy::RoundRobin,
    ];
    every
        .into_iter()
        .find(|b| b.to_strategy().name() == core.name())
        .ok_or_else(|| PartiError::Internal {
            reason: format!("the core's strategy {name:?} has no binding"),
        })
}

impl Strategy {
    /// The core's strategy object.
    pub fn to_strategy(self) -> Box<dyn parti_core::Strategy> {
        match self {
            Strategy::Balanced => Box::new(s::Balanced::default()),
            Strategy::ConsistentHash { vnodes } => Box::new(s::ConsistentHash { vnodes }),
            Strategy::BoundedLoad { cap } => Box::new(s::BoundedLoad { cap }),
            Strategy::RoundRobin => Box::new(s::RoundRobin),
        }
    }
}

/// A partition: its ID (keys joined by `.`, each key of `A-Z a-z 0-9 - _ = /`) and weight.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Partition {
    /// The ID: keys joined by `.` (also its subject form).
    pub id: String,
    /// Relative cost of owning it, at least 1.
    #[uniffi(default = 100)]
    pub weight: u64,
}

impl Partition {
    /// The core's partition, validated by the core's one rule for an ID given as a string
    /// (`Partition::parse`: `"x.y"` is keys `x` and `y`, as in the CLI and Python).
    pub fn to_partition(&self) -> Result<parti::Partition, PartiError> {
        Ok(parti::Partition::parse(&self.id, self.weight)?)
    }

    /// The record for a core partition.
    pub fn from_partition(p: &parti::Partition) -> Self {
        Partition {
            id: p.id().to_string(),
            weight: p.weight(),
        }
    }
}

/// A live worker as a strategy sees it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct WorkerSlot {
    /// The worker's ID.
    pub id: u32,
    /// Its capacity (at least 1): loads are weight / capacity.
    #[uniffi(default = 1)]
    pub capacity: u32,
}

/// Everything a strategy looks at.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct PlanInput {
    /// Live workers, in any order.
    pub workers: Vec<WorkerSlot>,
    /// Partitions to place, without duplicate IDs.
    pub partitions: Vec<Partition>,
    /// Previous owner of each partition ID.
    #[uniffi(default)]
    pub previous: HashMap<String, u32>,
    /// Partitions pinned to a worker (honoured when that worker is live).
    #[uniffi(default)]
    pub pins: HashMap<String, u32>,
    /// Tolerated overload over the mean (0.05 = 5 %) before a sticky partition moves; `None`
    /// is the planner's default.
    #[uniffi(default = None)]
    pub slack: Option<f64>,
    /// Most partitions that may change owner; `None` is no limit.
    #[uniffi(default = None)]
    pub max_moves: Option<u32>,
    /// Measured load of partitions by ID (any number >= 0): balanced where known, static
    /// weight elsewhere, on one scale (the measured partitions keep their total weight).
    /// Empty: weights only.
    #[uniffi(default)]
    pub loads: HashMap<String, f64>,
}

impl PlanInput {
    /// The core's input; partition IDs are validated.
    pub fn to_input(&self) -> Result<parti_core::PlanInput, PartiError> {
        let owners = |map: &HashMap<String, u32>| {
            map.iter()
                .map(|(p, w)| Ok((PartitionId::parse(p)?, WorkerId(*w))))
                .collect::<Result<BTreeMap<_, _>, PartiError>>()
        };
        let defaults = parti_core::PlanInput::new(Vec::new(), Vec::new());
        Ok(parti_core::PlanInput {
            workers: self
                .workers
                .iter()
                .map(|w| parti_core::WorkerSlot {
                    id: WorkerId(w.id),
                    capacity: w.capacity,
                })
                .collect(),
            partitions: self
                .partitions
                .iter()
                .map(Partition::to_partition)
                .collect::<Result<_, _>>()?,
            previous: owners(&self.previous)?,
            pins: owners(&self.pins)?,
            slack: self.slack.unwrap_or(defaults.slack),
            max_moves: self.max_moves.map(|m| m as usize),
            loads: self
                .loads
                .iter()
                .map(|(p, l)| Ok((PartitionId::parse(p)?, *l)))
                .collect::<Result<_, PartiError>>()?,
        })
    }
}

/// Balance and movement of a plan against its input (loads are weight / capacity).
#[derive(Clone, Copy, Debug, PartialEq, uniffi::Record)]
pub struct PlanSummary {
    /// Heaviest worker's load over the mean (1.0 is perfect).
    pub max_over_mean: f64,
    /// Lightest worker's load over the mean.
    pub min_over_mean: f64,
    /// Partitions whose owner differs from the previous one.
    pub moved: u64,
    /// Total weight of the moved partitions.
    pub moved_weight: u64,
}

/// What [`plan`] computed.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct PlanResult {
    /// Owner of every partition (empty when there are no workers).
    pub assignment: HashMap<String, u32>,
    /// The partitions of each worker, sorted (workers without partitions are absent).
    pub by_worker: HashMap<u32, Vec<String>>,
    /// Balance and movement against the input.
    pub summary: PlanSummary,
}

/// Why one partition lands where the strategy puts it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Explanation {
    /// The partition explained.
    pub partition: String,
    /// Its owner in the plan (`None` only when there are no workers).
    pub owner: Option<u32>,
    /// Its owner in the input's previous assignment.
    pub previous: Option<u32>,
    /// One sentence from the strategy.
    pub reason: String,
}

/// Computes the owner of every partition with `strategy`; validates the input first, as the
/// core's `validate_input` does (each error names the field and what is allowed): a partition
/// or worker listed twice, a capacity of 0 (allowed 1..=4294967295), a bad slack, no workers,
/// `previous` or `pins` naming a partition that is not listed, a pin to a worker that is not
/// listed. A `previous` owner that is not listed is allowed (that previews a leave).
#[uniffi::export]
pub fn plan(strategy: Strategy, input: PlanInput) -> Result<PlanResult, PartiError> {
    let input = input.to_input()?;
    parti_core::validate_input(&input)?;
    let plan = parti_core::plan(strategy.to_strategy().as_ref(), &input)?;
    let summary = parti_core::summarize(&input, &plan);
    Ok(PlanResult {
        assignment: plan
            .assignment
            .iter()
            .map(|(p, w)| (p.to_string(), w.0))
            .collect(),
        by_worker: plan
            .by_worker()
            .into_iter()
            .map(|(w, ps)| (w.0, ps.iter().map(ToString::to_string).collect()))
            .collect(),
        summary: PlanSummary {
            max_over_mean: summary.max_over_mean,
            min_over_mean: summary.min_over_mean,
            moved: summary.moved as u64,
            moved_weight: summary.moved_weight,
        },
    })
}

/// Says why `partition` lands where `strategy` puts it, with its new and previous owner;
/// validates the input as [`plan`] does.
#[uniffi::export]
pub fn explain(
    strategy: Strategy,
    input: PlanInput,
    partition: String,
) -> Result<Explanation, PartiError> {
    let input = input.to_input()?;
    parti_core::validate_input(&input)?;
    let id = PartitionId::parse(&partition)?;
    let e = parti_core::explain(strategy.to_strategy().as_ref(), &input, &id)?;
    Ok(Explanation {
        partition: e.partition.to_string(),
        owner: e.owner.map(|w| w.0),
        previous: e.previous.map(|w| w.0),
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(workers: u32, partitions: usize) -> PlanInput {
        PlanInput {
            workers: (1..=workers)
                .map(|id| WorkerSlot { id, capacity: 1 })
                .collect(),
            partitions: (0..partitions)
                .map(|i| Partition {
                    id: format!("p{i}"),
                    weight: 100,
                })
                .collect(),
            previous: HashMap::new(),
            pins: HashMap::new(),
            slack: None,
            max_moves: None,
            loads: HashMap::new(),
        }
    }

    #[test]
    fn plans_every_partition_once() {
        let result = plan(Strategy::Balanced, input(2, 20)).unwrap();
        assert_eq!(result.assignment.len(), 20);
        assert_eq!(result.by_worker[&1].len(), 10);
        assert_eq!(result.summary.max_over_mean, 1.0);
        let e = explain(Strategy::RoundRobin, input(2, 20), "p3".into()).unwrap();
        assert!(e.owner.is_some() && !e.reason.is_empty());
    }

    #[test]
    fn strategy_names_are_the_cores_and_each_builds_its_strategy() {
        let names = strategy_names();
        assert_eq!(names, s::NAMES.map(String::from).to_vec());
        for name in names {
            let strategy = strategy_by_name(name.clone()).unwrap();
            assert_eq!(strategy.to_strategy().name(), name);
        }
        // Every variant of the binding has a name in the registry.
        for variant in [
            Strategy::Balanced,
            Strategy::ConsistentHash { vnodes: 1 },
            Strategy::BoundedLoad { cap: 2.0 },
            Strategy::RoundRobin,
        ] {
            let name = variant.to_strategy().name().to_string();
            assert!(s::NAMES.contains(&name.as_str()), "{name}");
        }
    }

    #[test]
    fn an_unknown_strategy_name_is_one_error_listing_the_valid_names() {
        let Err(PartiError::InvalidArgument { reason }) = strategy_by_name("fastest".into()) else {
            panic!("an unknown name was accepted");
        };
        assert!(reason.contains("\"fastest\""), "{reason}");
        for name in s::NAMES {
            assert!(reason.contains(name), "{name} in {reason}");
        }
    }

    #[test]
    fn unset_slack_is_the_planners_default() {
        let core = input(2, 4).to_input().unwrap();
        assert_eq!(core.slack, parti_core::PlanInput::new(vec![], vec![]).slack);
    }

    #[test]
    fn loads_move_partitions_off_a_hot_worker_and_bad_loads_name_the_partition() {
        // Worker 1 holds p0..p9, worker 2 p10..p19; worker 1's partitions carry 3x the load.
        // A balancing round, as the leader plans one (with a budget: a plan without one moves
        // only what a change forces).
        let mut i = input(2, 20);
        i.max_moves = Some(100);
        i.previous = (0..20).map(|n| (format!("p{n}"), 1 + n / 10)).collect();
        i.loads = (0..20)
            .map(|n| (format!("p{n}"), if n < 10 { 3.0 } else { 1.0 }))
            .collect();
        let result = plan(Strategy::Balanced, i.clone()).unwrap();
        assert!(result.summary.max_over_mean < 1.1, "{:?}", result.summary);
        assert!(result.summary.moved > 0);
        let moved = (0..10)
            .map(|n| format!("p{n}"))
            .find(|p| result.assignment[p] == 2)
            .expect("a partition left worker 1");
        let e = explain(Strategy::Balanced, i.clone(), moved).unwrap();
        assert!(
            e.reason
                .starts_with("moved for load: worker 1 was at 1.50x mean"),
            "{}",
            e.reason
        );
        i.loads.insert("p3".into(), -1.0);
        assert!(matches!(
            plan(Strategy::Balanced, i.clone()),
            Err(PartiError::InvalidPartition { partition, .. }) if partition == "p3"
        ));
        i.loads.remove("p3");
        i.loads.insert("zz".into(), 1.0);
        assert!(matches!(
            plan(Strategy::Balanced, i),
            Err(PartiError::InvalidPartition { partition, .. }) if partition == "zz"
        ));
    }

    #[test]
    fn bad_inputs_are_named() {
        let mut i = input(2, 2);
        i.partitions.push(i.partitions[0].clone());
        assert!(matches!(
            plan(Strategy::Balanced, i),
            Err(PartiError::InvalidPartition { partition, .. }) if partition == "p0"
        ));
        let mut i = input(1, 2);
        i.partitions[1].id = "a b".into();
        assert!(matches!(
            plan(Strategy::Balanced, i),
            Err(PartiError::InvalidPartition { .. })
        ));
        assert!(matches!(
            explain(Strategy::Balanced, input(1, 2), "zz".into()),
            Err(PartiError::InvalidPartition { .. })
        ));
    }

    /// The `InvalidConfig` of `plan(input)`, which must name `field`; its message.
    fn refused(i: PlanInput, field: &str) -> String {
        let e = plan(Strategy::Balanced, i).unwrap_err();
        assert!(
            matches!(&e, PartiError::InvalidConfig { field: f, .. } if f == field),
            "expected an error on {field}, got {e:?}"
        );
        e.to_string()
    }

    #[test]
    fn hand_built_inputs_are_checked_as_the_core_checks_them() {
        let e = refused(input(0, 3), "workers");
        assert!(e.contains("at least one worker"), "{e}");
        let mut i = input(2, 3);
        i.workers[1].capacity = 0;
        assert!(refused(i, "workers").contains("capacity must be 1..=4294967295"));
        let mut i = input(2, 3);
        i.previous.insert("p9".into(), 1);
        assert!(refused(i, "previous").contains("partition p9 is not in partitions"));
        let mut i = input(2, 3);
        i.pins.insert("p0".into(), 7);
        assert!(refused(i, "pins").contains("pinned to worker 7, which is not in workers"));
        // A previous owner that is gone previews a leave.
        let mut i = input(2, 4);
        i.previous.insert("p0".into(), 3);
        assert_eq!(plan(Strategy::Balanced, i).unwrap().summary.moved, 1);
    }

    #[test]
    fn ids_follow_the_cores_rule_and_long_ones_are_cut() {
        let mut i = input(1, 1);
        i.partitions[0].id = "x.y".into();
        assert_eq!(plan(Strategy::Balanced, i).unwrap().assignment["x.y"], 1);
        let mut i = input(1, 1);
        i.partitions[0].id = "a".repeat(100_000);
        let e = plan(Strategy::Balanced, i).unwrap_err().to_string();
        assert!(e.len() < 300 && e.contains('…'), "{e}");
        let e = explain(Strategy::Balanced, input(1, 1), "b".repeat(100_000))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300 && e.contains('…'), "{e}");
    }
}
