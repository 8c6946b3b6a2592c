//! Convergence: running a [`Sim`] until it is settled and quiet, and saying what is still
//! unsettled when it is not by the deadline.

use super::cluster::Sim;
use super::invariants::{Violation, ViolationKind};
use super::node::NodeStatus;
use crate::{Instant, Partition, PartitionId, State};
use std::collections::BTreeSet;
use std::time::Duration;

impl Sim {
    /// Runs until the cluster is settled ([`Sim::is_settled`]: every partition held by exactly
    /// one live worker, every worker `Stable`, the committed generation applied) and holdings and states have stayed unchanged for
    /// the quiet period ([`SimConfig::quiet_period`]), or fails when `bound` passes first: the
    /// failure is recorded as a [`ViolationKind::NotConverged`] violation and returned. On
    /// success returns how long after the call the last change happened (zero if the cluster
    /// was settled already).
    pub fn converge(&mut self, bound: Duration) -> Result<Duration, Violation> {
        let start = self.now;
        let deadline = start + bound;
        let quiet = self.quiet_period();
        let mut checked: Option<(Instant, bool)> = None;
        loop {
            let since = self.layout_changed_at;
            let settled = match checked {
                Some((at, ok)) if at == since => ok,
                _ => {
                    let ok = self.is_settled_layout();
                    checked = Some((since, ok));
                    ok
                }
            } && self.committed_is_applied();
            let next = self.next_event_at();
            if settled {
                let done = since + quiet;
                if (self.now >= done || next.is_none_or(|t| t > done)) && done <= deadline {
                    self.now = self.now.max(done);
                    return Ok(since.saturating_duration_since(start));
                }
            }
            if next.is_none_or(|t| t > deadline) {
                self.now = self.now.max(deadline);
                let details = self.unsettled_details(bound);
                self.checker
                    .record(self.now, ViolationKind::NotConverged, details);
                self.report_violations();
                return Err(self
                    .checker
                    .violations
                    .last()
                    .expect("just recorded")
                    .clone());
            }
            self.step();
        }
    }

    /// The quiet period [`Sim::converge`] waits for.
    pub fn quiet_period(&self) -> Duration {
        self.config
            .quiet_period
            .unwrap_or(2 * self.template.heartbeat_interval)
    }

    /// Whether the cluster looks settled right now: every listed partition is held by exactly
    /// one live worker, nothing else is held, every running worker is `Stable` (so no planned
    /// move is pending behind a window), and every running member of the last committed
    /// generation has applied it (right after a commit nothing has changed yet).
    pub fn is_settled(&self) -> bool {
        self.is_settled_layout() && self.committed_is_applied()
    }

    /// Every running member of the last committed generation has applied it.
    fn committed_is_applied(&self) -> bool {
        let Some((generation, record)) = self.gens.last_key_value() else {
            return true;
        };
        self.nodes.iter().filter_map(|n| n.running()).all(|w| {
            w.worker_id()
                .is_none_or(|id| !record.members.contains_key(&id))
                || w.applied_generation() >= Some(*generation)
        })
    }

    /// [`Sim::is_settled`] but for the committed generation: what holdings and states show.
    fn is_settled_layout(&self) -> bool {
        let owners = self.holdings.owners();
        owners.len() == self.partitions.len()
            && self
                .partitions
                .iter()
                .all(|p| self.holdings.holders(p.id()).len() == 1)
            && self
                .nodes
                .iter()
                .all(|n| n.status != NodeStatus::Running || n.state == State::Stable)
    }

    fn unsettled_details(&self, bound: Duration) -> String {
        let listed: BTreeSet<&PartitionId> = self.partitions.iter().map(Partition::id).collect();
        let unowned = listed
            .iter()
            .filter(|p| self.holdings.holders(p).is_empty())
            .count();
        let shared = self
            .holdings
            .owners()
            .values()
            .filter(|n| n.len() > 1)
            .count();
        let stray = self
            .holdings
            .owners()
            .keys()
            .filter(|p| !listed.contains(p))
            .count();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match n.running() {
                Some(w) => format!(
                    "n{i}:{}/{:?}/{}",
                    n.state,
                    w.worker_id().map(|w| w.0),
                    n.held.len()
                ),
                None => format!("n{i}:{:?}", n.status),
            })
            .collect();
        format!(
            "not settled {:.1}s after the faults: {unowned} unowned, {shared} shared, {stray} unlisted of {} partitions; nodes {}",
            bound.as_secs_f64(),
            listed.len(),
            nodes.join(" ")
        )
    }
}
