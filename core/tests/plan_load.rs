//! `plan`, `explain` and `summarize` with measured loads: the strategy balances effective
//! sizes, `explain` says when load drove a move, bad loads are refused naming the partition.

use parti_core::plan::{explain, plan, summarize};
use parti_core::strategy::{Balanced, PlanInput, WorkerSlot};
use parti_core::{Partition, PartitionId, WorkerId};
use std::collections::BTreeMap;

fn id(i: usize) -> PartitionId {
    PartitionId::parse(&format!("p{i:02}")).unwrap()
}

/// 3 workers with 10 partitions each (weight 1); worker 0's partitions carry `hot` times the load.
fn input(hot: f64) -> PlanInput {
    let workers = (0..3)
        .map(|w| WorkerSlot {
            id: WorkerId(w),
            capacity: 1,
        })
        .collect();
    let partitions = (0..30)
        .map(|i| Partition::new(&[format!("p{i:02}")], 1).unwrap())
        .collect();
    let previous: BTreeMap<PartitionId, WorkerId> = (0..30)
        .map(|i| (id(i), WorkerId((i / 10) as u32)))
        .collect();
    let loads = (0..30)
        .map(|i| (id(i), if i < 10 { hot } else { 1.0 }))
        .collect();
    // A balancing round, as the leader plans one (without a budget a plan moves only what a
    // change forces).
    PlanInput {
        previous,
        loads,
        max_moves: Some(100),
        ..PlanInput::new(workers, partitions)
    }
}

#[test]
fn a_plan_balances_measured_load_and_explain_says_so() {
    let input = input(5.0);
    let before = summarize(
        &input,
        &parti_core::strategy::Plan {
            assignment: input.previous.clone(),
        },
    );
    // Worker 0 carries 50 of 70: 2.14x the mean.
    assert!(
        (before.max_over_mean - 50.0 / (70.0 / 3.0)).abs() < 0.01,
        "{before:?}"
    );
    let p = plan(&Balanced::default(), &input).unwrap();
    let after = summarize(&input, &p);
    assert!(after.max_over_mean <= 1.1, "{after:?}");
    let moved: Vec<&PartitionId> = p
        .assignment
        .iter()
        .filter(|(q, w)| input.previous[*q] != **w)
        .map(|(q, _)| q)
        .collect();
    assert!(!moved.is_empty());
    let e = explain(&Balanced::default(), &input, moved[0]).unwrap();
    assert!(
        e.reason.starts_with("moved for load: worker "),
        "{}",
        e.reason
    );
    // Without loads the same input is balanced: nothing moves, and nothing says "load".
    let still = PlanInput {
        loads: BTreeMap::new(),
        ..input.clone()
    };
    let p = plan(&Balanced::default(), &still).unwrap();
    assert_eq!(p.assignment, still.previous);
    let e = explain(&Balanced::default(), &still, &id(0)).unwrap();
    assert!(!e.reason.contains("load:"), "{}", e.reason);
}

#[test]
fn bad_loads_are_refused_naming_the_partition() {
    for (load, words) in [
        (-1.0, "must be a finite number >= 0"),
        (f64::NAN, "finite"),
        (f64::INFINITY, "finite"),
    ] {
        let mut input = input(1.0);
        input.loads.insert(id(3), load);
        let e = plan(&Balanced::default(), &input).unwrap_err().to_string();
        assert!(e.contains("p03") && e.contains(words), "{e}");
    }
    let mut input = input(1.0);
    input.loads.insert(PartitionId::parse("gone").unwrap(), 1.0);
    let e = explain(&Balanced::default(), &input, &id(0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gone") && e.contains("not in the partition list"),
        "{e}"
    );
}

/// Loads that are each finite but whose sum overflows an f64 plan as the same loads scaled
/// down do (they used to make every measured size 1: the two huge partitions stayed together
/// on one worker, reported as balanced).
#[test]
fn loads_whose_sum_overflows_plan_like_smaller_ones_in_proportion() {
    let with = |big: f64| {
        let mut input = input(1.0);
        input.previous = (0..30).map(|i| (id(i), WorkerId(0))).collect();
        input.loads = [(id(0), big), (id(1), big), (id(2), 1.0)].into();
        plan(&Balanced::default(), &input).unwrap()
    };
    let (huge, scaled) = (with(1.7e308), with(1e300));
    assert_eq!(huge, scaled);
    assert_ne!(huge.assignment[&id(0)], huge.assignment[&id(1)]);
}
