//! Compares the built-in strategies: balance and movement on joins and leaves, then compute
//! time. Run with `cargo run --release -p parti-core --example strategies`.
//!
//! Cases use 3,000 partitions, either equal (weight 100) or skewed (95 % weight 100, 5 % weight
//! 10,000–50,000, seeded). "join" is 100 → 101 workers; "leave" is 101 → 100 workers, worker 51
//! leaving. The previous assignment is the strategy's own result for the starting worker set.
//! moved/floor divides the moved weight by the least any strategy must move: 1/(N+1) of the
//! total weight on a join, the departed worker's weight on a leave. Balanced's skewed leave is
//! then followed by the leader's imbalance rounds (a move budget per round), to show how the
//! load evens out after a membership change that moved only the floor.

// A benchmark binary times itself; the core's ban on clocks is about the library.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use parti_core::plan::{plan, summarize};
use parti_core::strategy::{
    Balanced, BoundedLoad, ConsistentHash, PlanInput, RoundRobin, Strategy, WorkerSlot,
};
use parti_core::{Partition, Rng, WorkerId};
use std::time::{Duration, Instant};

fn workers(ids: impl IntoIterator<Item = u32>) -> Vec<WorkerSlot> {
    ids.into_iter()
        .map(|id| WorkerSlot {
            id: WorkerId(id),
            capacity: 1,
        })
        .collect()
}

fn partitions(n: usize, skewed: bool, seed: u64) -> Vec<Partition> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let weight = if skewed && rng.chance(0.05) {
                rng.range(10_000, 50_000)
            } else {
                100
            };
            Partition::new(&[format!("p{i:06}")], weight).expect("valid partition")
        })
        .collect()
}

/// Plans `from` fresh, then `to` with that result as the previous assignment.
fn transition(
    s: &dyn Strategy,
    parts: &[Partition],
    from: &[u32],
    to: &[u32],
) -> (
    PlanInput,
    parti_core::strategy::Plan,
    parti_core::strategy::Plan,
) {
    let start = PlanInput::new(workers(from.iter().copied()), parts.to_vec());
    let before = plan(s, &start).expect("valid input");
    let mut input = PlanInput::new(workers(to.iter().copied()), parts.to_vec());
    input.previous = before.assignment.clone();
    let after = plan(s, &input).expect("valid input");
    (input, before, after)
}

fn strategies() -> Vec<Box<dyn Strategy>> {
    vec![
        Box::new(Balanced::default()),
        Box::new(ConsistentHash::default()),
        Box::new(BoundedLoad::default()),
        Box::new(RoundRobin),
    ]
}

/// The move budget of each imbalance round after the skewed leave (the leader's default
/// `max_moves_per_round`), and the most rounds shown.
const ROUND_BUDGET: usize = 100;
const MAX_ROUNDS: usize = 20;

fn quality_table() {
    let equal = partitions(3_000, false, 1);
    let skewed = partitions(3_000, true, 7);
    let hundred: Vec<u32> = (1..=100).collect();
    let hundred_one: Vec<u32> = (1..=101).collect();
    let without_51: Vec<u32> = hundred_one.iter().copied().filter(|&w| w != 51).collect();
    println!(
        "{:<16} {:<14} {:>9} {:>9} {:>11} {:>7}",
        "strategy", "case", "max/mean", "min/mean", "moved/floor", "moved"
    );
    for s in strategies() {
        for (case, parts, from, to) in [
            ("join equal", &equal, &hundred, &hundred_one),
            ("leave equal", &equal, &hundred_one, &without_51),
            ("join skewed", &skewed, &hundred, &hundred_one),
            ("leave skewed", &skewed, &hundred_one, &without_51),
        ] {
            let (input, before, after) = transition(s.as_ref(), parts, from, to);
            let total: u64 = parts.iter().map(|p| p.weight()).sum();
            let floor = if to.len() > from.len() {
                total as f64 / to.len() as f64
            } else {
                let gone = WorkerId(51);
                parts
                    .iter()
                    .filter(|p| before.assignment.get(p.id()) == Some(&gone))
                    .map(|p| p.weight() as f64)
                    .sum()
            };
            let sum = summarize(&input, &after);
            println!(
                "{:<16} {:<14} {:>9.3} {:>9.3} {:>11.3} {:>7}",
                s.name(),
                case,
                sum.max_over_mean,
                sum.min_over_mean,
                sum.moved_weight as f64 / floor,
                sum.moved
            );
        }
    }
    // Balanced's trade-off made visible: a membership change moves about the floor and may
    // leave the heaviest worker at mean + heaviest partition; the leader's imbalance rounds
    // (a move budget, 100 partitions by default) then even the load out.
    let s = Balanced::default();
    let (mut input, before, after) = transition(&s, &skewed, &hundred_one, &without_51);
    let floor: u64 = skewed
        .iter()
        .filter(|p| before.assignment.get(p.id()) == Some(&WorkerId(51)))
        .map(|p| p.weight())
        .sum();
    let leave = summarize(&input, &after);
    let (mut moved_weight, mut moved) = (leave.moved_weight, leave.moved);
    let mut current = after;
    input.max_moves = Some(ROUND_BUDGET);
    for round in 1..=MAX_ROUNDS {
        input.previous = current.assignment.clone();
        let next = plan(&s, &input).expect("valid input");
        if next == current {
            break;
        }
        let sum = summarize(&input, &next);
        moved_weight += sum.moved_weight;
        moved += sum.moved;
        println!(
            "{:<16} {:<14} {:>9.3} {:>9.3} {:>11.3} {:>7}",
            "balanced",
            format!("+ round {round}*"),
            sum.max_over_mean,
            sum.min_over_mean,
            moved_weight as f64 / floor as f64,
            moved
        );
        current = next;
    }
    println!(
        "* \"leave skewed\", then imbalance rounds with max_moves = Some({ROUND_BUDGET}) until one \
         changes nothing"
    );
    println!("  (moved/floor and moved add up the leave and the rounds so far)");
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time_table() {
    println!();
    println!("compute time, median of 7 runs (skewed weights; join = N -> N+1 with previous)");
    println!(
        "{:<16} {:>8} {:>11} {:>12} {:>12}",
        "strategy", "workers", "partitions", "fresh", "join"
    );
    for s in strategies() {
        for (nw, np) in [(10u32, 100usize), (100, 10_000), (1_000, 100_000)] {
            let parts = partitions(np, true, 11);
            let fresh = PlanInput::new(workers(1..=nw), parts.clone());
            let mut join = PlanInput::new(workers(1..=nw + 1), parts);
            join.previous = s.assign(&fresh).assignment;
            let time = |input: &PlanInput| {
                median(
                    (0..7)
                        .map(|_| {
                            let t = Instant::now();
                            std::hint::black_box(s.assign(std::hint::black_box(input)));
                            t.elapsed()
                        })
                        .collect(),
                )
            };
            println!(
                "{:<16} {:>8} {:>11} {:>12.2?} {:>12.2?}",
                s.name(),
                nw,
                np,
                time(&fresh),
                time(&join)
            );
        }
    }
}

fn main() {
    quality_table();
    time_table();
}
