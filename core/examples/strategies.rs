//! Compares the built-in strategies: balance and movement on joins and leaves, then compute
//! time. Run with `cargo run --release -p parti-core --example strategies`.
//!
//! Cases use 3,000 partitions, either equal (weight 100) or skewed (95 % weight 100, 5 % weight
//! 10,000–50,000, seeded). "join" is 100 → 101 workers; "leave" is 101 → 100 workers, worker 51
//! leaving. "heavy-tail" rows use 10,000 partitions with lognormal weights (σ = 2, median 100)
//! on 250 → 251 workers (join) and 251 → 250 (leave, worker 126 leaving). The previous
//! assignment is the strategy's own result for the starting worker set. moved/floor divides
//! the moved weight by [`Bounds::floor`]: the least weight that must move for the result to be
//! balanced (about the newcomer's share up to the line on a join, the departed weight on a
//! leave, more when lumpy partitions force it; see `parti_core::strategy::bounds`).
//!
//! Balanced's skewed leave is then followed by the leader's imbalance rounds: the strategy
//! called again with the round's result as the previous assignment and `max_moves` set, as the
//! leader does when a round is due, until a round changes nothing. `leave skewed + rounds` uses
//! the leader's default budget (100 partitions per round), `budget 1` one partition per round;
//! `rounds` counts the rounds that moved something, and moved/floor and moved add up the leave
//! and its rounds (over the leave's floor).
//!
//! Then measured load (3,000 equal partitions, 100 balanced workers): `hot partition` (one
//! partition at 30x), `load shift` (loads redrawn from a lognormal, σ = 1) and `noise 10%`
//! (every look draws loads within ±10 % of 1, 20 looks): rounds of the default budget while the
//! leader's trigger (`rebalance_threshold`) fires; moved/floor over the loaded input's floor.

// A benchmark binary times itself; the core's ban on clocks is about the library.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use parti_core::load::{effective_partitions, out_of_balance};
use parti_core::plan::{plan, summarize, PlanSummary};
use parti_core::strategy::{
    Balanced, BoundedLoad, Bounds, ConsistentHash, PlanInput, RoundRobin, Strategy, WorkerSlot,
};
use parti_core::{Config, Partition, Rng, WorkerId};
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

/// `n` partitions with lognormal weights (σ = 2, median 100), seeded.
fn heavy_tail(n: usize, seed: u64) -> Vec<Partition> {
    let mut rng = Rng::new(seed);
    let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0..n)
        .map(|i| {
            let (u, v) = (unit().max(1e-300), unit());
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            let weight = ((100.0 * (2.0 * z).exp()).round() as u64).max(1);
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
const MAX_ROUNDS: usize = 1_000;

fn quality_table() {
    let equal = partitions(3_000, false, 1);
    let skewed = partitions(3_000, true, 7);
    let tail = heavy_tail(10_000, 3);
    let hundred: Vec<u32> = (1..=100).collect();
    let hundred_one: Vec<u32> = (1..=101).collect();
    let without_51: Vec<u32> = hundred_one.iter().copied().filter(|&w| w != 51).collect();
    let w250: Vec<u32> = (1..=250).collect();
    let w251: Vec<u32> = (1..=251).collect();
    let without_126: Vec<u32> = w251.iter().copied().filter(|&w| w != 126).collect();
    println!(
        "{:<16} {:<22} {:>6} {:>9} {:>9} {:>11} {:>7}",
        "strategy", "case", "rounds", "max/mean", "min/mean", "moved/floor", "moved"
    );
    for s in strategies() {
        for (case, parts, from, to) in [
            ("join equal", &equal, &hundred, &hundred_one),
            ("leave equal", &equal, &hundred_one, &without_51),
            ("join skewed", &skewed, &hundred, &hundred_one),
            ("leave skewed", &skewed, &hundred_one, &without_51),
            ("join heavy-tail", &tail, &w250, &w251),
            ("leave heavy-tail", &tail, &w251, &without_126),
        ] {
            let (input, _, after) = transition(s.as_ref(), parts, from, to);
            let floor = Bounds::of(&input).floor;
            let sum = summarize(&input, &after);
            println!(
                "{:<16} {:<22} {:>6} {:>9.3} {:>9.3} {:>11.3} {:>7}",
                s.name(),
                case,
                "-",
                sum.max_over_mean,
                sum.min_over_mean,
                sum.moved_weight as f64 / floor.max(1) as f64,
                sum.moved
            );
        }
    }
    // The leader's imbalance rounds after Balanced's skewed leave.
    for (case, budget) in [("leave skewed + rounds", ROUND_BUDGET), ("budget 1", 1)] {
        let s = Balanced::default();
        let (mut input, _, after) = transition(&s, &skewed, &hundred_one, &without_51);
        let floor = Bounds::of(&input).floor;
        let leave = summarize(&input, &after);
        let (mut moved_weight, mut moved) = (leave.moved_weight, leave.moved);
        let mut current = after;
        let mut last = leave;
        let mut rounds = 0;
        input.max_moves = Some(budget);
        while rounds < MAX_ROUNDS {
            input.previous = current.assignment.clone();
            let next = plan(&s, &input).expect("valid input");
            if next == current {
                break;
            }
            last = summarize(&input, &next);
            moved_weight += last.moved_weight;
            moved += last.moved;
            rounds += 1;
            current = next;
        }
        println!(
            "{:<16} {:<22} {:>6} {:>9.3} {:>9.3} {:>11.3} {:>7}",
            "balanced",
            case,
            rounds,
            last.max_over_mean,
            last.min_over_mean,
            moved_weight as f64 / floor as f64,
            moved
        );
    }
}

/// Whether the leader's trigger fires on `current` with `input.loads` (its rule,
/// [`out_of_balance`], on the effective sizes; equal capacities).
fn round_due(input: &PlanInput, current: &parti_core::strategy::Plan) -> bool {
    let sized = effective_partitions(&input.partitions, &input.loads);
    let total: u64 = sized.iter().map(Partition::weight).sum();
    let mean = total as f64 / input.workers.len() as f64;
    let heaviest = sized.iter().map(Partition::weight).max().unwrap_or(0) as f64;
    let max = summarize(input, current).max_over_mean;
    out_of_balance(max, heaviest / mean, Config::default().rebalance_threshold)
}

/// Rounds of the leader's default budget while its trigger fires and a round changes
/// something: (rounds, the last summary, moved weight, moved partitions, the last plan).
fn rounds(
    input: &mut PlanInput,
    mut current: parti_core::strategy::Plan,
    looks: usize,
) -> (usize, PlanSummary, u64, usize, parti_core::strategy::Plan) {
    let s = Balanced::default();
    input.max_moves = Some(ROUND_BUDGET);
    let (mut n, mut weight, mut moved) = (0, 0, 0);
    for _ in 0..looks {
        if !round_due(input, &current) {
            continue;
        }
        input.previous = current.assignment.clone();
        let next = plan(&s, input).expect("valid input");
        if next == current {
            break;
        }
        let sum = summarize(input, &next);
        weight += sum.moved_weight;
        moved += sum.moved;
        n += 1;
        current = next;
    }
    input.previous = current.assignment.clone();
    (n, summarize(input, &current), weight, moved, current)
}

/// Measured load on 3,000 equal partitions on 100 balanced workers: one partition turning
/// 30x hot, 10 % noise on every report (20 looks), loads redrawn from a lognormal (σ = 1).
/// moved/floor is over the floor of the loaded input (`Bounds::of` on effective sizes).
fn load_table() {
    let parts = partitions(3_000, false, 1);
    let s = Balanced::default();
    let start = PlanInput::new(workers(1..=100), parts.clone());
    let balanced = plan(&s, &start).expect("valid input");
    let mut rng = Rng::new(5);
    let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let ids: Vec<_> = parts.iter().map(|p| p.id().clone()).collect();
    let hot = ids
        .iter()
        .map(|p| (p.clone(), if p.as_str() == "p001234" { 30.0 } else { 1.0 }))
        .collect();
    let shifted = ids
        .iter()
        .map(|p| {
            let (u, v) = (unit().max(1e-300), unit());
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            (p.clone(), z.exp())
        })
        .collect();
    for (case, loads, looks) in [("hot partition", hot, 10), ("load shift", shifted, 10)] {
        let mut input = PlanInput {
            previous: balanced.assignment.clone(),
            loads,
            ..start.clone()
        };
        let sized = PlanInput {
            partitions: effective_partitions(&input.partitions, &input.loads),
            loads: Default::default(),
            ..input.clone()
        };
        let floor = Bounds::of(&sized).floor;
        let (n, last, weight, moved, _) = rounds(&mut input, balanced.clone(), looks);
        row(case, n, &last, weight as f64 / floor.max(1) as f64, moved);
    }
    // Noise: every look draws new loads within +-10 % of 1; a round only when the trigger fires.
    let mut input = PlanInput {
        previous: balanced.assignment.clone(),
        ..start.clone()
    };
    let (mut n, mut moved, mut current) = (0, 0, balanced.clone());
    for _ in 0..20 {
        input.loads = ids
            .iter()
            .map(|p| (p.clone(), 0.9 + 0.2 * unit()))
            .collect();
        let (r, _, _, m, after) = rounds(&mut input, current, 1);
        current = after;
        n += r;
        moved += m;
    }
    let last = summarize(&input, &current);
    row("noise 10% (20 looks)", n, &last, 0.0, moved);
}

fn row(case: &str, rounds: usize, s: &PlanSummary, over_floor: f64, moved: usize) {
    println!(
        "{:<16} {:<22} {:>6} {:>9.3} {:>9.3} {:>11.3} {:>7}",
        "balanced", case, rounds, s.max_over_mean, s.min_over_mean, over_floor, moved
    );
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time_table() {
    println!();
    println!(
        "compute time of the core call, median of 7 runs (3 for the last four rows; skewed weights; \
         join = N -> N+1 with previous)"
    );
    println!(
        "{:<16} {:>8} {:>11} {:>12} {:>12}",
        "strategy", "workers", "partitions", "fresh", "join"
    );
    for s in strategies() {
        for (nw, np) in [(10u32, 100usize), (100, 10_000), (1_000, 100_000)] {
            time_row(s.as_ref(), nw, np, 7);
        }
    }
    // few partitions per worker, the largest fleet, and more workers than partitions: Balanced
    // only (the default), median of 3
    let s = Balanced::default();
    for (nw, np) in [
        (8_000u32, 80_000usize),
        (100_000, 1_000_000),
        (8_000, 4_000),
        (100_000, 50_000),
    ] {
        time_row(&s, nw, np, 3);
    }
}

/// Times a fresh plan and a join (N → N+1 with the fresh plan as previous), median of `runs`.
fn time_row(s: &dyn Strategy, nw: u32, np: usize, runs: usize) {
    let parts = partitions(np, true, 11);
    let fresh = PlanInput::new(workers(1..=nw), parts.clone());
    let mut join = PlanInput::new(workers(1..=nw + 1), parts);
    join.previous = s.assign(&fresh).assignment;
    let time = |input: &PlanInput| {
        median(
            (0..runs)
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

fn main() {
    quality_table();
    load_table();
    time_table();
}
