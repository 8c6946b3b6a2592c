//! Fault verbs of the harness, and [`Fault`], their schedulable form.

use super::cluster::Sim;
use super::node::NodeStatus;
use super::trace::TraceKind;
use super::NodeId;
use crate::{codec, Bucket, Input, KvOp, Partition, PartitionId, State, WorkerId};
use std::fmt;

/// A fault (or operator action) the harness can inject, by itself or from a schedule.
///
/// Faults that name a node that does not exist or is in the wrong condition (crashing a crashed
/// node, healing a connected one) do nothing, so random schedules stay valid whatever happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Kill the node's process ([`Sim::crash`]).
    Crash(NodeId),
    /// Start a new process on the node ([`Sim::restart`]).
    Restart(NodeId),
    /// Restart every crashed node.
    RestartCrashed,
    /// Graceful stop ([`Sim::stop`]).
    Stop {
        /// The node.
        node: NodeId,
        /// No restart follows: the lease is deleted.
        final_stop: bool,
    },
    /// Ask the node to drain ([`Sim::drain`]).
    Drain(NodeId),
    /// Add a node and start a worker on it ([`Sim::add_node`]).
    Join,
    /// Cut the node off the KV ([`Sim::isolate`]).
    Isolate(NodeId),
    /// Reconnect the node ([`Sim::heal`]).
    Heal(NodeId),
    /// Start (`true`) or end (`false`) a KV outage ([`Sim::set_kv_outage`]).
    KvOutage(bool),
    /// Crash the current leader ([`Sim::kill_leader`]).
    KillLeader,
    /// Skew the node's clock rate ([`Sim::set_clock_skew`]).
    ClockSkew {
        /// The node.
        node: NodeId,
        /// Rate skew in parts per million.
        ppm: i32,
    },
    /// Shrink the partition list by dropping its last `-delta` entries, or grow it by `delta`
    /// partitions named `p<index>` (as [`numbered_partitions`] names them); at least one
    /// remains. See [`Sim::set_partitions`].
    ResizePartitions(i32),
    /// Ask the node to re-read the partition source ([`Sim::refresh`]); if that node is down
    /// or stopping, the first running node is asked instead (an application calls refresh on
    /// a live instance).
    Refresh(NodeId),
    /// Make the partition source fail (`true`) or work again (`false`).
    SourceFailing(bool),
    /// An operator pins the partition at `index` (modulo the list's length) to the worker ID
    /// `worker`, live or not, or removes its pin (`None`) ([`Sim::pin`]).
    Pin {
        /// Index into the current partition list.
        index: u32,
        /// The worker ID, or `None` to unpin.
        worker: Option<u32>,
    },
    /// End every isolation and outage, repair the source and restart crashed nodes
    /// ([`Sim::heal_all`]).
    HealAll,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash(n) => write!(f, "crash n{}", n.0),
            Fault::Restart(n) => write!(f, "restart n{}", n.0),
            Fault::RestartCrashed => write!(f, "restart-crashed"),
            Fault::Stop { node, final_stop } => {
                write!(
                    f,
                    "stop n{}{}",
                    node.0,
                    if *final_stop { " final" } else { "" }
                )
            }
            Fault::Drain(n) => write!(f, "drain n{}", n.0),
            Fault::Join => write!(f, "join"),
            Fault::Isolate(n) => write!(f, "isolate n{}", n.0),
            Fault::Heal(n) => write!(f, "heal n{}", n.0),
            Fault::KvOutage(true) => write!(f, "kv-outage start"),
            Fault::KvOutage(false) => write!(f, "kv-outage end"),
            Fault::KillLeader => write!(f, "kill-leader"),
            Fault::ClockSkew { node, ppm } => write!(f, "skew n{} {ppm:+}ppm", node.0),
            Fault::ResizePartitions(d) => write!(f, "partitions {d:+}"),
            Fault::Refresh(n) => write!(f, "refresh n{}", n.0),
            Fault::SourceFailing(true) => write!(f, "source fails"),
            Fault::SourceFailing(false) => write!(f, "source works"),
            Fault::HealAll => write!(f, "heal-all"),
            Fault::Pin { index, worker } => match worker {
                Some(w) => write!(f, "pin #{index} to worker {w}"),
                None => write!(f, "unpin #{index}"),
            },
        }
    }
}

/// `count` partitions named `p0000`, `p0001`, ... with the default weight.
pub fn numbered_partitions(count: u32) -> Vec<Partition> {
    (0..count)
        .map(|i| Partition::single(&format!("p{i:04}")).expect("valid key"))
        .collect()
}

impl Sim {
    /// Applies `fault` now and traces it.
    pub fn apply_fault(&mut self, fault: &Fault) {
        self.trace
            .push(self.now, None, TraceKind::Fault(fault.clone()));
        let exists = |n: &NodeId| n.0 < self.nodes.len();
        match fault {
            Fault::Crash(n) if exists(n) => self.crash(*n),
            Fault::Restart(n) if exists(n) => self.restart(*n),
            Fault::RestartCrashed => {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].status == NodeStatus::Crashed {
                        self.restart(NodeId(i));
                    }
                }
            }
            Fault::Stop { node, final_stop } if exists(node) => self.stop(*node, *final_stop),
            Fault::Drain(n) if exists(n) => self.drain(*n),
            Fault::Join
                if self.nodes.len() <= (self.template.id_max - self.template.id_min) as usize =>
            {
                self.add_node();
            }
            Fault::Isolate(n) if exists(n) => self.isolate(*n),
            Fault::Heal(n) if exists(n) => self.heal(*n),
            Fault::KvOutage(active) => self.set_kv_outage(*active),
            Fault::KillLeader => {
                self.kill_leader();
            }
            Fault::ClockSkew { node, ppm } if exists(node) => self.set_clock_skew(*node, *ppm),
            Fault::ResizePartitions(delta) => {
                let count = (self.partitions.len() as i64 + *delta as i64).max(1) as usize;
                let mut partitions = std::mem::take(&mut self.partitions);
                partitions.truncate(count);
                let more = partitions.len() as u32..count as u32;
                partitions.extend(
                    more.map(|i| Partition::single(&format!("p{i:04}")).expect("valid key")),
                );
                self.set_partitions(partitions);
            }
            Fault::Refresh(n) if exists(n) => {
                // The application calls refresh on a live instance: if this one is down or
                // stopping, the first one that is up gets it.
                let up = |i: usize| {
                    self.nodes[i].status == NodeStatus::Running
                        && self.nodes[i].state != State::Shutdown
                };
                if let Some(i) = std::iter::once(n.0)
                    .chain(0..self.nodes.len())
                    .find(|i| up(*i))
                {
                    self.refresh(NodeId(i));
                }
            }
            Fault::SourceFailing(failing) => self.set_source_failing(*failing),
            Fault::HealAll => self.heal_all(),
            Fault::Pin { index, worker } if !self.partitions.is_empty() => {
                let p = self.partitions[*index as usize % self.partitions.len()]
                    .id()
                    .clone();
                self.pin(&p, worker.map(WorkerId));
            }
            _ => {}
        }
        self.finish_step();
    }

    /// Kills node `n`'s process: the worker is dropped, its holdings vanish, everything on its
    /// way to it (replies, watch entries, timers) is discarded. Its writes already in flight
    /// still land. No-op unless running.
    pub fn crash(&mut self, n: NodeId) {
        self.end_process(n, NodeStatus::Crashed);
        self.finish_step();
    }

    /// Starts a new process on node `n` (a new incarnation with a new token, preferring the ID
    /// the node had). A crashed or stopped node restarts at once; a node in the middle of a
    /// graceful stop is killed first (the orchestrator's patience ran out); a running node that
    /// is not stopping is left alone.
    pub fn restart(&mut self, n: NodeId) {
        let node = &self.nodes[n.0];
        if node.status == NodeStatus::Running {
            if node.state != State::Shutdown {
                return;
            }
            self.end_process(n, NodeStatus::Crashed);
        }
        self.spawn(n);
        self.finish_step();
    }

    /// Asks node `n`'s worker to stop gracefully (`Input::Stop`); `final_stop` means no restart
    /// follows. The process exits once the worker reports it stopped.
    pub fn stop(&mut self, n: NodeId, final_stop: bool) {
        self.deliver(n, Input::Stop { final_stop });
        self.finish_step();
    }

    /// Asks node `n`'s worker to drain (`Input::Drain`).
    pub fn drain(&mut self, n: NodeId) {
        self.deliver(n, Input::Drain);
        self.finish_step();
    }

    /// Asks node `n`'s worker to re-read the partition source (`Input::RefreshPartitions`).
    pub fn refresh(&mut self, n: NodeId) {
        self.deliver(n, Input::RefreshPartitions);
        self.finish_step();
    }

    /// Cuts node `n` off the KV: its requests are buffered (and time out for the client),
    /// watch deliveries to it are held, and it is told `Connection(false)` shortly.
    pub fn isolate(&mut self, n: NodeId) {
        self.net.isolate(self.now, n);
        self.ids_dirty = true;
        self.finish_step();
    }

    /// Reconnects node `n`: buffered writes are sent, held watch deliveries resume, and it is
    /// told `Connection(true)`.
    pub fn heal(&mut self, n: NodeId) {
        self.net.heal(self.now, n);
        self.ids_dirty = true;
        self.finish_step();
    }

    /// Starts (`true`) or ends (`false`) a KV outage: every request fails (times out for its
    /// client) and watch deliveries pause until it ends.
    pub fn set_kv_outage(&mut self, active: bool) {
        self.net.set_kv_up(self.now, !active);
        self.ids_dirty = true;
        self.finish_step();
    }

    /// Crashes the node that currently leads; returns it (`None` if nobody leads).
    pub fn kill_leader(&mut self) -> Option<NodeId> {
        let leader = self.leader()?;
        self.crash(leader);
        Some(leader)
    }

    /// Skews node `n`'s clock rate: from now on its local time runs at `1 + ppm / 1e6` times
    /// real time (continuously; the skew survives restarts, it is the machine's clock).
    pub fn set_clock_skew(&mut self, n: NodeId, ppm: i32) {
        self.nodes[n.0].clock.set_ppm(self.now, ppm);
        let fast = u32::try_from(ppm).unwrap_or(0);
        self.rounds.fastest_ppm = self.rounds.fastest_ppm.max(fast);
        self.nodes[n.0].timer = None;
        self.schedule_timer(n);
    }

    /// Replaces the partition list the source returns (workers learn it when they next ask,
    /// e.g. after [`Sim::refresh`]).
    pub fn set_partitions(&mut self, partitions: Vec<Partition>) {
        self.partitions = partitions;
        self.layout_changed_at = self.now;
    }

    /// An operator pins `partition` to the worker with ID `worker` (`None` removes the pin) by
    /// writing `ctl.pin.<partition>`, as `parti pin` does; the leader honours it while that
    /// worker is live.
    pub fn pin(&mut self, partition: &PartitionId, worker: Option<WorkerId>) {
        let key = codec::pin_key(partition);
        let op = match worker {
            Some(worker) => KvOp::Put {
                key,
                value: codec::encode(&codec::PinValue {
                    v: codec::VERSION,
                    worker,
                }),
            },
            None => KvOp::Delete {
                key,
                revision: None,
            },
        };
        let mut changes = std::mem::take(&mut self.changes);
        self.net
            .operator_write(self.now, Bucket::Assign, &op, &mut changes);
        for c in changes.drain(..) {
            self.on_kv_change(&c);
        }
        self.changes = changes;
        self.layout_changed_at = self.now;
        self.finish_step();
    }

    /// Makes the partition source fail (`true`) or work (`false`).
    pub fn set_source_failing(&mut self, failing: bool) {
        self.source_failing = failing;
    }

    /// Ends every fault: heals every node, ends a KV outage, repairs the source and restarts
    /// every crashed node; if no node runs afterwards, adds one. Clock skews stay.
    pub fn heal_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.net.is_isolated(NodeId(i)) {
                self.heal(NodeId(i));
            }
        }
        self.set_kv_outage(false);
        self.source_failing = false;
        for i in 0..self.nodes.len() {
            if self.nodes[i].status == NodeStatus::Crashed {
                self.spawn(NodeId(i));
            }
        }
        if self.running_nodes().is_empty() {
            self.add_node();
        }
        self.finish_step();
    }
}
