//! What a test or runner can observe of a running [`Sim`].

use super::cluster::{Sim, SimConfig, Stats};
use super::invariants::Violation;
use super::kv::MemKv;
use super::net::Network;
use super::node::NodeStatus;
use super::trace::Trace;
use super::NodeId;
use crate::{Config, Event, Instant, Partition, PartitionId, State, WorkerId, WorkerMachine};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

impl Sim {
    /// Number of nodes ever added.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes whose worker process is running.
    pub fn running_nodes(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .map(NodeId)
            .filter(|n| self.nodes[n.0].status == NodeStatus::Running)
            .collect()
    }

    /// What node `n`'s process is doing.
    pub fn status(&self, n: NodeId) -> NodeStatus {
        self.nodes[n.0].status
    }

    /// The worker on node `n`: the running one, or the one that stopped gracefully (`None` after
    /// a crash).
    pub fn worker(&self, n: NodeId) -> Option<&WorkerMachine> {
        self.nodes[n.0].worker.as_ref()
    }

    /// The worker ID of node `n`'s running worker, if it has claimed one.
    pub fn worker_id(&self, n: NodeId) -> Option<WorkerId> {
        self.nodes[n.0].running().and_then(WorkerMachine::worker_id)
    }

    /// The node whose running worker holds `id`, if any (the lowest node if several).
    pub fn node_of(&self, id: WorkerId) -> Option<NodeId> {
        self.running_nodes()
            .into_iter()
            .find(|n| self.worker_id(*n) == Some(id))
    }

    /// The partitions node `n` held after the last step (empty unless running).
    pub fn holdings(&self, n: NodeId) -> &BTreeSet<PartitionId> {
        &self.nodes[n.0].held
    }

    /// The state node `n`'s worker last reported.
    pub fn state(&self, n: NodeId) -> State {
        self.nodes[n.0].state
    }

    /// The incarnation number of node `n`'s current (or last) process.
    pub fn incarnation(&self, n: NodeId) -> u32 {
        self.nodes[n.0].incarnation
    }

    /// The worker IDs holding each held partition (holders without an ID are left out).
    pub fn owners(&self) -> BTreeMap<PartitionId, Vec<WorkerId>> {
        self.holdings
            .owners()
            .iter()
            .map(|(p, nodes)| {
                (
                    p.clone(),
                    nodes.iter().filter_map(|n| self.worker_id(*n)).collect(),
                )
            })
            .collect()
    }

    /// The nodes holding each held partition.
    pub fn owner_nodes(&self) -> &BTreeMap<PartitionId, Vec<NodeId>> {
        self.holdings.owners()
    }

    /// The running node that leads (the highest epoch if several believe they do).
    pub fn leader(&self) -> Option<NodeId> {
        self.running_nodes()
            .into_iter()
            .filter(|n| {
                self.nodes[n.0]
                    .worker
                    .as_ref()
                    .is_some_and(WorkerMachine::is_leader)
            })
            .max_by_key(|n| {
                (
                    self.nodes[n.0]
                        .worker
                        .as_ref()
                        .and_then(WorkerMachine::epoch),
                    std::cmp::Reverse(n.0),
                )
            })
    }

    /// Every worker event so far, with its time and node (empty unless
    /// [`SimConfig::keep_events`]).
    pub fn events(&self) -> &[(Instant, NodeId, Event)] {
        &self.events
    }

    /// Takes the recorded events, leaving the log empty.
    pub fn take_events(&mut self) -> Vec<(Instant, NodeId, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Every violation found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.checker.violations
    }

    /// The trace of faults and protocol events.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Counters over the run.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The simulated network (and through it the KV).
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The KV.
    pub fn kv(&self) -> &MemKv {
        self.net.kv()
    }

    /// The partition list the source currently returns.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// The worker configuration template.
    pub fn template(&self) -> &Config {
        &self.template
    }

    /// The harness configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The partitions node `n`'s driver is subscribed to (from `Subscribe` / `Unsubscribe`
    /// actions; empty unless running).
    pub fn subscribed(&self, n: NodeId) -> &BTreeSet<PartitionId> {
        &self.nodes[n.0].subscribed
    }

    /// Like [`Sim::converge`], but panics with the violation and the last 80 trace lines if the
    /// cluster does not settle within `bound`, or if any invariant was violated on the way.
    pub fn must_converge(&mut self, bound: Duration) -> Duration {
        match self.converge(bound) {
            Ok(d) => {
                self.assert_clean();
                d
            }
            Err(v) => panic!(
                "{v}\nseed {}; trace tail:\n{}",
                self.seed(),
                self.trace().tail(80)
            ),
        }
    }

    /// Panics with every violation and the last 80 trace lines if any invariant was violated.
    pub fn assert_clean(&self) {
        if let Some(first) = self.violations().first() {
            let all: Vec<String> = self.violations().iter().map(|v| format!("  {v}")).collect();
            panic!(
                "{} violation(s), first: {first}\n{}\nseed {}; trace tail:\n{}",
                all.len(),
                all.join("\n"),
                self.seed(),
                self.trace().tail(80)
            );
        }
    }
}
