//! Helpers shared by the simulator scenario tests.
#![allow(dead_code)] // each test file uses a different subset

pub mod kv;

use parti_core::sim::{numbered_partitions, NodeId, Sim, SimConfig};
use parti_core::Config;
use std::time::Duration;

/// Seconds, shorter to read in bounds and deadlines.
pub const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A simulated cluster of `workers` sharing `partitions`, with the default config edited by `edit`.
pub fn cluster(
    workers: u32,
    partitions: u32,
    seed: u64,
    edit: impl FnOnce(&mut Config),
) -> (Sim, Vec<NodeId>) {
    let mut config = Config::default();
    edit(&mut config);
    let mut sim = Sim::new(config, SimConfig::default(), seed).unwrap();
    sim.set_partitions(numbered_partitions(partitions));
    let nodes = (0..workers).map(|_| sim.add_node()).collect();
    (sim, nodes)
}

/// Like [`cluster`], with cold start ending as soon as all `workers` joined.
pub fn expecting(
    workers: u32,
    partitions: u32,
    seed: u64,
    edit: impl FnOnce(&mut Config),
) -> (Sim, Vec<NodeId>) {
    cluster(workers, partitions, seed, |c| {
        c.expected_workers = Some(workers);
        edit(c);
    })
}

/// Like [`expecting`], run until the first assignment settled.
pub fn settled(
    workers: u32,
    partitions: u32,
    seed: u64,
    edit: impl FnOnce(&mut Config),
) -> (Sim, Vec<NodeId>) {
    let (mut sim, nodes) = expecting(workers, partitions, seed, edit);
    sim.must_converge(SECS(60));
    (sim, nodes)
}

/// A running node that does not lead.
pub fn follower(sim: &Sim, nodes: &[NodeId]) -> NodeId {
    let leader = sim.leader().expect("a leader");
    *nodes.iter().find(|n| **n != leader).expect("a follower")
}

/// Every one of `count` partitions is held by exactly one worker.
pub fn all_owned_once(sim: &Sim, count: usize) -> bool {
    let owners = sim.owners();
    owners.len() == count && owners.values().all(|o| o.len() == 1)
}
