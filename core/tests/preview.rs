//! A preview is the leader's decision: `plan::plan` on the input an operator can rebuild from
//! KV (the live workers and their capacities, the committed owners as `previous`, the pins, the
//! partitions with their weights) gives exactly the owners the leader settles on after the
//! change. Weighted partitions, uneven capacities and a pin, in both handoff modes; balance
//! rounds are off so that the change's own generation is the last one.

use parti_core::sim::{NodeId, Sim, SimConfig};
use parti_core::strategy::Balanced;
use parti_core::{plan, Config, HandoffMode, Partition, PartitionId, PlanInput, WorkerId};
use parti_core::{Plan, Rng, WorkerSlot};
use std::collections::BTreeMap;

mod common;
use common::SECS;

/// An operator's change to preview.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// A worker of capacity 3 joins.
    Join,
    /// A worker stops for good.
    Leave,
    /// A worker crashes (its lease expires).
    Crash,
    /// A worker drains.
    Drain,
}

/// 40 partitions with weights from 1 to ~2,000 (a few heavy ones), drawn from `seed`.
fn weighted(seed: u64) -> Vec<Partition> {
    let mut rng = Rng::new(seed);
    (0..40)
        .map(|i| {
            let weight = if rng.chance(0.1) {
                rng.range(500, 2000)
            } else {
                rng.range(1, 200)
            };
            Partition::new(&[format!("p{i:02}")], weight).unwrap()
        })
        .collect()
}

/// The owner of every partition, as the sim's workers hold them (one holder each).
fn owners(sim: &Sim) -> BTreeMap<PartitionId, WorkerId> {
    sim.owners()
        .into_iter()
        .map(|(p, holders)| {
            assert_eq!(holders.len(), 1, "{p} held by {holders:?}");
            (p, holders[0])
        })
        .collect()
}

/// `Err` with the partitions whose owner differs, if the preview is not what the leader did.
fn preview_equals_the_leaders_decision(
    seed: u64,
    mode: HandoffMode,
    change: Change,
) -> Result<(), String> {
    let config = Config {
        handoff: mode,
        expected_workers: Some(4),
        rebalance_threshold: 10.0,
        ..Config::default()
    };
    let mut sim = Sim::new(config, SimConfig::default(), seed).unwrap();
    let partitions = weighted(seed);
    sim.set_partitions(partitions.clone());
    let capacities = [1, 2, 1, 4];
    let mut nodes: Vec<(NodeId, u32)> = capacities
        .iter()
        .map(|c| {
            let n = sim.add_node_with(|cfg| cfg.capacity = *c).unwrap();
            (n, *c)
        })
        .collect();
    sim.must_converge(SECS(60));
    // A pin to a worker that stays.
    let pinned = partitions[7].id().clone();
    let pin_to = sim.worker_id(nodes[0].0).expect("an ID");
    sim.pin(&pinned, Some(pin_to));
    sim.must_converge(SECS(60));

    let before = owners(&sim);
    let leader = sim.leader().expect("a leader");
    // Change a follower other than the pinned worker's node.
    let victim = nodes[1..]
        .iter()
        .position(|(n, _)| *n != leader)
        .map(|i| i + 1)
        .expect("a follower");
    match change {
        Change::Join => {
            let n = sim.add_node_with(|cfg| cfg.capacity = 3).unwrap();
            nodes.push((n, 3));
        }
        Change::Leave => {
            sim.stop(nodes[victim].0, true);
            nodes.remove(victim);
        }
        Change::Crash => {
            sim.crash(nodes[victim].0);
            nodes.remove(victim);
        }
        Change::Drain => {
            sim.drain(nodes[victim].0);
            nodes.remove(victim);
        }
    }
    // A drain shows nothing until the leader acts on it, at its next heartbeat.
    sim.run_for(sim.template().heartbeat_interval);
    sim.must_converge(SECS(120));

    let mut workers: Vec<WorkerSlot> = nodes
        .iter()
        .map(|(n, capacity)| WorkerSlot {
            id: sim.worker_id(*n).expect("a live worker has an ID"),
            capacity: *capacity,
        })
        .collect();
    workers.sort_by_key(|w| w.id);
    let input = PlanInput {
        previous: before,
        pins: [(pinned, pin_to)].into(),
        ..PlanInput::new(workers, partitions)
    };
    let preview: Plan = plan(&Balanced::default(), &input).expect("a valid input");
    let actual = owners(&sim);
    let differ: Vec<String> = actual
        .iter()
        .filter(|(p, w)| preview.assignment.get(*p) != Some(*w))
        .map(|(p, w)| format!("{p} on {w}, previewed on {:?}", preview.assignment.get(p)))
        .collect();
    if differ.is_empty() && preview.assignment.len() == actual.len() {
        Ok(())
    } else {
        Err(format!("seed {seed}, {mode:?}, {change:?}: {differ:?}"))
    }
}

#[test]
fn a_preview_equals_the_leaders_next_assignment() {
    let mut failures = Vec::new();
    for seed in 1..=30 {
        for mode in [HandoffMode::Strict, HandoffMode::Relaxed] {
            for change in [Change::Join, Change::Leave, Change::Crash, Change::Drain] {
                if let Err(e) = preview_equals_the_leaders_decision(seed, mode, change) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the preview differs from what the leader did:\n{}",
        failures.join("\n")
    );
}
