//! The planner: when the next generation is due (DESIGN §4's trigger table), liveness of the
//! workers, and the computation of the next generation on the way to the target.

use super::handoff::{self, Committed, Shares};
use super::leader::{CommittedGen, Dead, LeaderReq, Peer};
use super::{Timer, Worker};
use crate::codec::Phase;
use crate::strategy::{PlanInput, WorkerSlot};
use crate::{Instant, KvOp, Partition, PartitionId, State, WorkerId};
use std::collections::{BTreeMap, BTreeSet};

impl Worker {
    /// The planner: runs after every step while leading.
    pub(crate) fn leader_tick(&mut self, now: Instant) {
        let Some(l) = self.leading.as_mut() else {
            return;
        };
        if l.partitions.is_none() && l.source_failures > 0 {
            l.partitions = l.committed_partitions();
        }
        if !l.gen_loaded || l.sealing || l.partitions.is_none() {
            return;
        }
        self.check_liveness(now);
        let l = self.leading.as_mut().expect("leading");
        if l.publish.is_some() {
            return;
        }
        // A new leader waits (at most a TTL) to learn every committed share from its watch.
        let adopting = l
            .committed
            .as_ref()
            .is_some_and(|c| c.shares.values().any(Option::is_none))
            && now < l.since + self.config.lease_ttl;
        if adopting || l.retry_at.is_some_and(|t| t > now) {
            self.arm_planner(now);
            return;
        }
        l.retry_at = None;
        let due = self.plan_due(now);
        if due.is_none() {
            self.leading.as_mut().expect("leading").activity = None; // nothing pending
        }
        if let Some((at, phase, budget)) = due {
            if at <= now {
                let l = self.leading.as_mut().expect("leading");
                if l.dirty || l.imbalance_due.is_some_and(|t| t <= now) {
                    l.dirty = false;
                    self.plan_and_publish(now, phase, budget);
                }
            }
        }
        self.arm_planner(now);
        self.refresh_leader_state();
    }

    /// Declares crashed the workers not seen for a TTL; deletes their leases by CAS.
    fn check_liveness(&mut self, now: Instant) {
        let ttl = self.config.lease_ttl;
        let grace = self.config.emergency_grace;
        // A live worker that has not applied the committed generation long after its revoke
        // timeout is stuck: evict it like a crashed one (its lease is deleted, so it fences).
        let stuck_after = self.config.revoke_timeout + ttl;
        let l = self.leading.as_mut().expect("leading");
        let committed = l.committed.as_ref().map(|c| (c.record.generation, c.at));
        let mut deletes = Vec::new();
        for (id, p) in l.peers.iter_mut() {
            let stuck = committed.is_some_and(|(g, at)| {
                now >= at.max(p.since) + stuck_after && p.applied.is_none_or(|a| a < g)
            });
            if p.dead.is_none()
                && p.departing_since.is_none()
                && (now >= p.last_seen + ttl || stuck)
            {
                // A silent worker fenced itself by now: it dropped everything `lease_ttl -
                // safety_margin` after sending its last successful renewal, which we saw no
                // earlier than it was sent. Its partitions are released `emergency_grace` after
                // our deadline for it (counted from the update we saw, not from whenever this
                // runs), once the CAS delete below proves that no later renewal landed. A stuck
                // worker is still renewing and learns that its lease is gone at its next
                // renewal, or fences within a TTL.
                let release_at = if stuck {
                    now + ttl
                } else {
                    (p.last_seen + ttl).min(now) + grace
                };
                p.dead = Some(Dead {
                    release_at,
                    confirmed: false,
                    retry_at: None,
                });
                deletes.push((*id, p.revision));
            } else if let Some(d) = p
                .dead
                .as_mut()
                .filter(|d| d.retry_at.is_some_and(|t| t <= now))
            {
                d.retry_at = None;
                deletes.push((*id, p.revision));
            }
        }
        if !deletes.is_empty() {
            l.activity = Some(State::Emergency);
            l.dirty = true;
        }
        for (id, revision) in deletes {
            let key = format!("worker.{id}");
            match revision {
                Some(revision) => self.leader_kv(
                    KvOp::Delete {
                        key,
                        revision: Some(revision),
                    },
                    LeaderReq::PeerDelete(id),
                ),
                None => self.leader_kv(KvOp::Get { key }, LeaderReq::PeerGet(id)),
            };
        }
    }

    /// When the next generation is due, in which phase, with which move budget.
    fn plan_due(&mut self, now: Instant) -> Option<(Instant, Phase, Option<usize>)> {
        let cfg = &self.config;
        let l = self.leading.as_mut().expect("leading");
        let Some(c) = &l.committed else {
            // Cold start.
            let live = l
                .peers
                .values()
                .filter(|p| p.dead.is_none() && p.departing_since.is_none())
                .count();
            let at = match cfg.expected_workers {
                Some(n) if live as u32 >= n => now,
                _ => l.since + cfg.cold_start_window,
            };
            l.activity = Some(State::Scaling);
            return Some((at, Phase::Scaling, None));
        };
        let mut due: Option<(Instant, Phase)> = None;
        let mut take = |at: Instant, phase: Phase| {
            due = Some(match due {
                Some((t, p)) if t <= at => (t, p),
                _ => (at, phase),
            });
        };
        if l.partitions_dirty {
            take(now, Phase::Rebalancing);
        }
        if c.record.phase != Phase::Stable {
            take(now, c.record.phase); // continue a multi-step handoff
        }
        if c.record.members.keys().any(|w| l.share_corrupted(*w)) {
            take(now, c.record.phase); // rewrite a committed share that was overwritten
        }
        let members = &c.record.members;
        let mut first_join: Option<Instant> = None;
        let mut last_join: Option<Instant> = None;
        for (id, p) in l.peers.iter_mut() {
            let member = members.get(id);
            if let Some(d) = &p.dead {
                if member.is_some() {
                    take(d.release_at.max(now), Phase::Emergency);
                }
                continue;
            }
            if let Some(since) = p.departing_since {
                if member.is_some() {
                    take(since + cfg.restart_grace, Phase::Scaling);
                }
                continue;
            }
            if p.draining || p.ctl_draining {
                if member.is_some_and(|_| {
                    c.shares
                        .get(id)
                        .is_some_and(|s| s.as_ref().is_none_or(|s| !s.is_empty()))
                }) {
                    take(now, Phase::Rebalancing);
                }
                continue;
            }
            match member {
                Some(m) if m.token == p.token => p.joined_at = None,
                Some(_) => take(now, Phase::Scaling), // the same ID came back: resume its share
                None => {
                    let at = *p.joined_at.get_or_insert(now);
                    first_join = Some(first_join.map_or(at, |f| f.min(at)));
                    last_join = Some(last_join.map_or(at, |f| f.max(at)));
                }
            }
        }
        if let (Some(first), Some(last)) = (first_join, last_join) {
            let window = (last + cfg.planned_scale_window).min(first + cfg.max_scale_delay);
            let cooldown = l
                .last_rebalance
                .map_or(window, |t| t + cfg.min_rebalance_interval);
            take(window.max(cooldown), Phase::Scaling);
            l.activity.get_or_insert(State::Scaling);
        }
        // Members that left for good (their lease was deleted).
        if members.keys().any(|id| !l.peers.contains_key(id)) {
            take(now, Phase::Scaling);
        }
        if let Some((at, phase)) = due {
            return Some((at, phase, None));
        }
        // Nothing else to do: is the committed assignment out of balance?
        if l.imbalance_checked != Some(c.record.generation) {
            l.imbalance_checked = Some(c.record.generation);
            l.imbalance_due = None;
            if let Some(parts) = &l.partitions {
                if imbalance(parts, c, &l.peers) > cfg.rebalance_threshold {
                    let at = l
                        .last_rebalance
                        .map_or(now, |t| t + cfg.min_rebalance_interval);
                    l.imbalance_due = Some(at.max(now));
                }
            }
        }
        l.imbalance_due.map(|at| {
            (
                at,
                Phase::Rebalancing,
                Some(cfg.max_moves_per_round as usize),
            )
        })
    }

    fn arm_planner(&mut self, now: Instant) {
        let ttl = self.config.lease_ttl;
        let grace = self.config.restart_grace;
        let window = self.config.planned_scale_window;
        let l = self.leading.as_ref().expect("leading");
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if let Some(t) = l.retry_at {
            consider(t);
        }
        match &l.committed {
            None => consider(l.since + self.config.cold_start_window),
            Some(c) if c.shares.values().any(Option::is_none) => consider(l.since + ttl),
            Some(_) => {}
        }
        for p in l.peers.values() {
            match (&p.dead, p.departing_since) {
                (Some(d), _) => {
                    consider(d.release_at);
                    if let Some(t) = d.retry_at {
                        consider(t);
                    }
                }
                (None, Some(since)) => consider(since + grace),
                (None, None) => consider(p.last_seen + ttl),
            }
            if let Some(j) = p.joined_at {
                consider(j + window);
                consider(j + self.config.max_scale_delay);
            }
        }
        if let Some(t) = l.last_rebalance {
            consider(t + self.config.min_rebalance_interval);
        }
        if let Some(t) = l.imbalance_due {
            consider(t);
        }
        if let Some(c) = &l.committed {
            let stuck_after = self.config.revoke_timeout + ttl;
            for p in l
                .peers
                .values()
                .filter(|p| p.applied.is_none_or(|a| a < c.record.generation))
            {
                consider(c.at.max(p.since) + stuck_after);
            }
        }
        match next {
            Some(t) => self.timers.set(Timer::Planner, t),
            None => self.timers.clear(Timer::Planner),
        }
    }

    /// Shows the planner's activity as the leader's state.
    pub(crate) fn refresh_leader_state(&mut self) {
        if self.degraded_since.is_none() && self.stopping.is_none() {
            let s = self.settled_state();
            if self.applied.is_some() || self.leading.as_ref().is_some_and(|l| l.activity.is_some())
            {
                self.set_state(s);
            }
        }
    }

    /// Computes the target and the next generation on the way to it, and publishes it.
    fn plan_and_publish(&mut self, now: Instant, phase: Phase, budget: Option<usize>) {
        let mode = self.config.handoff;
        let grace = self.config.restart_grace;
        let reuse = self.leading.as_mut().expect("leading").plan_parts.take();
        let l = self.leading.as_ref().expect("leading");
        let empty = Committed::new();
        let committed = l.committed.as_ref().map_or(&empty, |c| &c.shares);
        let members = l.committed.as_ref().map(|c| &c.record.members);

        // Frozen shares: workers restarting within their grace, and crashed workers whose
        // partitions may not be granted yet.
        let mut frozen: Shares = Shares::new();
        // Frozen members whose share is unknown: their record entry is carried over verbatim
        // (they may hold anything, which blocks every grant until they are released).
        let mut keep = BTreeMap::new();
        let mut tokens: BTreeMap<WorkerId, u64> = BTreeMap::new();
        let mut exempt: BTreeSet<WorkerId> = BTreeSet::new();
        let mut eligible: Vec<WorkerSlot> = Vec::new();
        let barrier = l.barrier_complete();
        // Sorted by ID (as received from the source, or from the committed shares).
        let parts = l.partitions.as_ref().expect("planner runs with partitions");
        let listed = |p: &PartitionId| parts.binary_search_by(|x| x.id().cmp(p)).is_ok();
        for (id, p) in &l.peers {
            let member = members.and_then(|m| m.get(id));
            let parked = match (&p.dead, p.departing_since) {
                (Some(d), _) => !(d.confirmed && d.release_at <= now),
                (None, Some(since)) => since + grace > now,
                (None, None) => false,
            };
            let holds_nothing = p.departing_since.is_some()
                || p.dead
                    .as_ref()
                    .is_some_and(|d| d.confirmed && d.release_at <= now);
            // A new instance under a member's ID: the old one departed, or lost the ID and
            // dropped everything, so the committed share is held by nobody.
            let replaced = member.is_some_and(|m| m.token != p.token);
            if holds_nothing || replaced {
                exempt.insert(*id);
            }
            if parked {
                match (member, committed.get(id)) {
                    (Some(m), Some(Some(share))) => {
                        // Removed partitions leave a frozen share too (a revoke is always safe).
                        let listed = share.iter().filter(|p| listed(p)).cloned().collect();
                        frozen.insert(*id, listed);
                        tokens.insert(*id, m.token);
                    }
                    (Some(m), _) => {
                        keep.insert(*id, m.clone());
                    }
                    (None, _) => {}
                }
                continue;
            }
            if holds_nothing {
                continue;
            }
            tokens.insert(*id, p.token);
            if !(p.draining || p.ctl_draining) {
                eligible.push(WorkerSlot {
                    id: *id,
                    capacity: p.capacity,
                });
            }
        }
        // Members gone for good hold nothing.
        for id in committed.keys() {
            if !l.peers.contains_key(id) {
                exempt.insert(*id);
            }
        }
        let free: Vec<Partition> = if frozen.values().all(BTreeSet::is_empty) {
            match reuse {
                Some(list) if list == *parts => list,
                _ => parts.clone(),
            }
        } else {
            let frozen_parts: BTreeSet<&PartitionId> = frozen.values().flatten().collect();
            parts
                .iter()
                .filter(|p| !frozen_parts.contains(p.id()))
                .cloned()
                .collect()
        };
        // Sticky by ID: a restarted instance under the same ID resumes its predecessor's share.
        // (Built in one go from the pairs; a later worker wins a duplicate, as with inserts.)
        let shares = || {
            eligible
                .iter()
                .filter_map(|slot| match committed.get(&slot.id) {
                    Some(Some(share)) => Some((slot.id, share)),
                    _ => None,
                })
        };
        let mut pairs = Vec::with_capacity(shares().map(|(_, s)| s.len()).sum());
        for (w, share) in shares() {
            pairs.extend(share.iter().map(|p| (p.clone(), w)));
        }
        let previous: BTreeMap<PartitionId, WorkerId> = pairs.into_iter().collect();
        let input = PlanInput {
            workers: eligible.clone(),
            partitions: free,
            previous,
            pins: l.pins.clone(),
            slack: 0.05,
            max_moves: budget,
        };
        let mut plan = self.strategy.assign(&input);
        crate::plan::honour_pins(&input, &mut plan);
        let PlanInput {
            partitions: plan_parts,
            ..
        } = input;
        // Each worker's partitions come out of the plan in order: build every set in one go.
        let room = plan.assignment.len() / eligible.len().max(1) + 8;
        let mut lists: BTreeMap<WorkerId, Vec<PartitionId>> = eligible
            .iter()
            .map(|w| (w.id, Vec::with_capacity(room)))
            .collect();
        for (p, w) in plan.assignment {
            if let Some(s) = lists.get_mut(&w) {
                s.push(p);
            }
        }
        let mut target: Shares = lists
            .into_iter()
            .map(|(w, list)| (w, BTreeSet::from_iter(list)))
            .collect();
        // Workers still applying (draining ones) keep an empty share until they leave.
        for id in tokens.keys() {
            target.entry(*id).or_default();
        }
        target.extend(frozen);
        let next = handoff::next_step(mode, committed, &target, &exempt, barrier);
        let reached = next == target;
        let repair = next.keys().any(|w| l.share_corrupted(*w));
        let unchanged = !repair
            && members.is_some_and(|m| {
                m.len() == next.len() + keep.len()
                    && next.iter().all(|(w, s)| {
                        m.get(w)
                            .is_some_and(|mm| Some(mm.token) == tokens.get(w).copied())
                            && committed.get(w).is_some_and(|c| c.as_ref() == Some(s))
                    })
            });
        let new_phase = if reached { Phase::Stable } else { phase };
        let same_phase = l
            .committed
            .as_ref()
            .is_some_and(|c| c.record.phase == new_phase);
        let l = self.leading.as_mut().expect("leading");
        l.plan_parts = Some(plan_parts);
        if unchanged && same_phase {
            if reached {
                l.activity = None;
                l.partitions_dirty = false;
                l.imbalance_due = None;
            }
            return;
        }
        let planned = budget.is_some() || phase == Phase::Scaling;
        // Labelled with what produced it, also when it reaches the target in one step.
        self.publish(next, tokens, keep, new_phase, phase, planned);
    }
}

/// Heaviest load over mean load minus one, over the committed shares (loads relative to
/// capacity); 0 when it cannot be computed. `parts` is sorted by ID.
fn imbalance(parts: &[Partition], c: &CommittedGen, peers: &BTreeMap<WorkerId, Peer>) -> f64 {
    // Weight of a sorted share: one pass along the sorted partitions (unlisted ones weigh 0).
    let weight = |share: &BTreeSet<PartitionId>| {
        let mut it = parts.iter().peekable();
        let mut sum = 0;
        for p in share {
            while it.next_if(|x| x.id() < p).is_some() {}
            if let Some(x) = it.peek().filter(|x| x.id() == p) {
                sum += x.weight();
            }
        }
        sum
    };
    let mut loads = Vec::new();
    for (id, share) in &c.shares {
        let Some(p) = peers
            .get(id)
            .filter(|p| p.dead.is_none() && p.departing_since.is_none())
        else {
            continue;
        };
        let Some(share) = share else { return 0.0 };
        let w: u64 = weight(share);
        loads.push(w as f64 / p.capacity as f64);
    }
    if loads.len() < 2 {
        return 0.0;
    }
    let mean = loads.iter().sum::<f64>() / loads.len() as f64;
    let max = loads.iter().cloned().fold(0.0, f64::max);
    if mean <= 0.0 {
        0.0
    } else {
        max / mean - 1.0
    }
}
