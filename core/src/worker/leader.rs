//! The leader's view of the cluster and the planner's triggers.
//!
//! The leader watches every lease (`worker.*`) and the whole assignment bucket. Triggers are not
//! queued as events: each step compares the view (live workers, partitions) with the committed
//! generation and decides when the next generation is due (DESIGN §4's table).

use super::handoff::{self, Committed, Shares};
use super::{Purpose, Timer, Worker};
use crate::codec::{self, GenRecord, LeaseValue, Phase, ShareAssembler, ShareChunk};
use crate::strategy::{PlanInput, WorkerSlot};
use crate::{
    Bucket, Entry, Epoch, Event, Generation, Instant, KvOp, Operation, Partition, PartitionId,
    RequestId, State, Warning, WatchId, WorkerId,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What a leader-role request was for.
#[derive(Clone, Debug)]
pub(crate) enum LeaderReq {
    /// Reading `gen` at the start of leadership (or after a doubtful seal).
    GenGet,
    /// Sealing the adopted generation under our epoch.
    Seal(GenRecord),
    /// Writing one chunk of a share of publish number `.0`.
    ShareWrite(u64),
    /// Committing a generation.
    Commit,
    /// Re-reading `gen` after a doubtful commit.
    CommitReread,
    /// Deleting the lease of a worker declared dead.
    PeerDelete(WorkerId),
    /// Reading the lease of a worker we never saw.
    PeerGet(WorkerId),
}

/// A worker as the leader sees it.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) token: u64,
    pub(crate) capacity: u32,
    pub(crate) applied: Option<Generation>,
    pub(crate) draining: bool,
    pub(crate) ctl_draining: bool,
    pub(crate) departing_since: Option<Instant>,
    /// Revision of its lease as last seen (None: never seen).
    pub(crate) revision: Option<u64>,
    pub(crate) last_seen: Instant,
    /// When this instance (token) was first seen.
    pub(crate) since: Instant,
    pub(crate) dead: Option<Dead>,
    /// First time it was seen live but not a member of the committed generation.
    pub(crate) joined_at: Option<Instant>,
}

impl Peer {
    /// A committed member whose lease the leader has not seen yet.
    pub(crate) fn unseen(token: u64, now: Instant) -> Self {
        Peer {
            token,
            capacity: 1,
            applied: None,
            draining: false,
            ctl_draining: false,
            departing_since: None,
            revision: None,
            last_seen: now,
            since: now,
            dead: None,
            joined_at: None,
        }
    }
}

/// A worker declared crashed.
#[derive(Clone, Debug)]
pub(crate) struct Dead {
    /// Its partitions may be granted from then on (if `confirmed`).
    pub(crate) release_at: Instant,
    /// Its lease is certainly gone (our CAS delete landed, or the key is absent).
    pub(crate) confirmed: bool,
    /// When to check its lease again after a failed delete or read.
    pub(crate) retry_at: Option<Instant>,
}

/// The committed generation as the leader knows it.
#[derive(Clone, Debug)]
pub(crate) struct CommittedGen {
    /// When it was committed (or adopted), on our clock.
    pub(crate) at: Instant,
    pub(crate) record: GenRecord,
    pub(crate) revision: u64,
    pub(crate) shares: Committed,
}

/// The assignment in flight.
#[derive(Clone, Debug)]
pub(crate) struct Publish {
    pub(crate) record: GenRecord,
    pub(crate) shares: Shares,
    pub(crate) seq: u64,
    pub(crate) outstanding: usize,
    pub(crate) committing: bool,
    pub(crate) planned: bool,
    /// The partition list version it was planned from.
    pub(crate) partitions_version: u64,
}

/// State of the leader role; exists only while leading.
#[derive(Debug)]
pub(crate) struct Leadership {
    pub(crate) epoch: Epoch,
    pub(crate) leader_rev: u64,
    /// When the newest leader renewal still in flight was sent.
    pub(crate) renew_in_flight: Option<Instant>,
    pub(crate) since: Instant,
    /// What the planner is doing (shown as the leader's state), if anything.
    pub(crate) activity: Option<State>,
    pub(crate) lease_watch: Option<WatchId>,
    pub(crate) assign_watch: Option<WatchId>,
    pub(crate) peers: BTreeMap<WorkerId, Peer>,
    pub(crate) partitions: Option<Vec<Partition>>,
    /// The partitions changed since the last generation that reflects them.
    pub(crate) partitions_dirty: bool,
    /// Bumped whenever the partition list changes.
    pub(crate) partitions_version: u64,
    pub(crate) list_req: Option<RequestId>,
    pub(crate) source_failures: u32,
    /// `None` while loading; `Some(None)` with no usable generation (cold start).
    pub(crate) gen_loaded: bool,
    pub(crate) sealing: bool,
    pub(crate) committed: Option<CommittedGen>,
    /// Revision of an undecodable `gen` to overwrite (cold start over foreign bytes).
    pub(crate) foreign_gen_rev: Option<u64>,
    /// Every share slot's chunks as seen in KV.
    pub(crate) mirror: BTreeMap<(WorkerId, u8), ShareAssembler>,
    /// Highest revision the assignment watch delivered: the mirror is up to date until then.
    pub(crate) assign_seen: u64,
    pub(crate) publish: Option<Publish>,
    pub(crate) publish_seq: u64,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) last_rebalance: Option<Instant>,
    pub(crate) imbalance_checked: Option<Generation>,
    pub(crate) imbalance_due: Option<Instant>,
    /// Something changed since the planner last looked.
    pub(crate) dirty: bool,
}

impl Leadership {
    pub(crate) fn new(epoch: Epoch, leader_rev: u64, now: Instant) -> Self {
        Leadership {
            epoch,
            leader_rev,
            renew_in_flight: None,
            since: now,
            activity: None,
            lease_watch: None,
            assign_watch: None,
            peers: BTreeMap::new(),
            partitions: None,
            partitions_dirty: false,
            partitions_version: 0,
            list_req: None,
            source_failures: 0,
            gen_loaded: false,
            sealing: false,
            committed: None,
            foreign_gen_rev: None,
            mirror: BTreeMap::new(),
            assign_seen: 0,
            publish: None,
            publish_seq: 0,
            retry_at: None,
            last_rebalance: None,
            imbalance_checked: None,
            imbalance_due: None,
            dirty: true,
        }
    }

    /// Whether worker `w`'s committed share is not what KV holds although the watch has caught
    /// up with the commit (a write of an aborted publish that landed late, or a deposed
    /// leader's): it must be written again.
    pub(crate) fn share_corrupted(&self, w: WorkerId) -> bool {
        let Some(c) = &self.committed else {
            return false;
        };
        let Some(m) = c.record.members.get(&w) else {
            return false;
        };
        if !matches!(c.shares.get(&w), Some(Some(_))) {
            return false;
        }
        self.assign_seen >= c.revision
            && self
                .mirror
                .get(&(w, m.slot))
                .and_then(ShareAssembler::complete_digest)
                != Some(m.digest)
    }

    /// Whether every live worker has applied the committed generation.
    pub(crate) fn barrier_complete(&self) -> bool {
        let Some(c) = &self.committed else {
            return true;
        };
        self.peers
            .values()
            .filter(|p| p.dead.is_none() && p.departing_since.is_none())
            .all(|p| p.applied >= Some(c.record.generation))
    }

    /// The watches this role started.
    pub(crate) fn watches(&self) -> impl Iterator<Item = WatchId> {
        self.lease_watch.into_iter().chain(self.assign_watch)
    }
}

impl Worker {
    /// Begins the leader role: watch leases and assignments, read the source and `gen`.
    pub(crate) fn start_leading(&mut self, now: Instant) {
        let lease_watch = self.watch(Bucket::Leases, vec!["worker.*".into()]);
        let assign_watch = self.watch(Bucket::Assign, vec![">".into()]);
        let l = self.leading.as_mut().expect("leading");
        l.lease_watch = Some(lease_watch);
        l.assign_watch = Some(assign_watch);
        self.list_partitions();
        self.leader_kv(KvOp::Get { key: "gen".into() }, LeaderReq::GenGet);
        let _ = now;
    }

    /// Sends a KV request of the leader role (to the assign bucket unless it names a lease).
    pub(crate) fn leader_kv(&mut self, op: KvOp, what: LeaderReq) -> RequestId {
        let epoch = self.epoch().expect("leader requests need leadership");
        let bucket = match what {
            LeaderReq::PeerDelete(_) | LeaderReq::PeerGet(_) => Bucket::Leases,
            _ => Bucket::Assign,
        };
        self.send_kv(bucket, op, Purpose::Leading { epoch, what })
    }

    /// Asks the application's source for the partitions (leader only).
    pub(crate) fn list_partitions(&mut self) {
        if self.leading.is_none() {
            return;
        }
        let id = self.new_request();
        self.leading.as_mut().expect("leading").list_req = Some(id);
        self.act(crate::Action::ListPartitions(id));
    }

    pub(crate) fn on_partitions(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Vec<Partition>, String>,
    ) {
        let Some(l) = self.leading.as_mut().filter(|l| l.list_req == Some(id)) else {
            return;
        };
        l.list_req = None;
        let list = match result {
            Ok(list) => list,
            Err(e) => {
                l.source_failures += 1;
                let backoff = self.config.heartbeat_interval * l.source_failures.min(8);
                self.timers.set(Timer::Source, now + backoff);
                self.emit(Event::Warning(Warning::SourceFailed(e)));
                return;
            }
        };
        if let Err(e) = crate::partition::validate_partitions(&list) {
            self.emit(Event::Warning(Warning::InvalidPartitions(e.to_string())));
            return;
        }
        l.source_failures = 0;
        let mut list = list;
        list.sort_by(|a, b| a.id().cmp(b.id()));
        if l.partitions.as_ref() != Some(&list) {
            l.partitions = Some(list);
            l.partitions_dirty = true;
            l.partitions_version += 1;
            l.dirty = true;
        }
    }

    /// Refresh: the leader re-reads its source; a follower asks the leader through `ctl.refresh`.
    pub(crate) fn on_refresh(&mut self, now: Instant) {
        if self.leading.is_some() {
            self.list_partitions();
        } else if self.id.is_none() {
            // Not part of the cluster yet: ask once we are.
            self.timers
                .set(Timer::Refresh, now + self.config.heartbeat_interval / 4);
        } else {
            let nonce = self.rng.next_u64();
            let value = codec::encode(&codec::CtlValue {
                v: codec::VERSION,
                nonce,
            });
            self.send_kv(
                Bucket::Assign,
                KvOp::Put {
                    key: "ctl.refresh".into(),
                    value,
                },
                Purpose::CtlPut,
            );
        }
    }

    pub(crate) fn on_leader_watch_entry(&mut self, now: Instant, watch: WatchId, entry: Entry) {
        let Some(l) = self.leading.as_ref() else {
            return;
        };
        if Some(watch) == l.lease_watch {
            self.on_peer_lease(now, entry);
        } else if Some(watch) == l.assign_watch {
            self.on_assign_all(now, entry);
        }
    }

    fn on_peer_lease(&mut self, now: Instant, entry: Entry) {
        let Some(id) = codec::parse_lease_key(&entry.key) else {
            return;
        };
        let l = self.leading.as_mut().expect("leading");
        if entry.operation != Operation::Put {
            l.dirty = true;
            match l.peers.get_mut(&id) {
                Some(p) if p.dead.is_some() => {
                    if let Some(d) = &mut p.dead {
                        d.confirmed = true;
                    }
                }
                Some(p) if p.departing_since.is_some() => p.revision = None,
                Some(p) if entry.operation == Operation::Purge => {
                    // Expired without renewal: it fenced itself by now.
                    p.dead = Some(Dead {
                        release_at: now + self.config.emergency_grace,
                        confirmed: true,
                        retry_at: None,
                    });
                    l.activity = Some(State::Emergency);
                }
                Some(_) => {
                    l.peers.remove(&id); // a graceful final leave: it holds nothing
                }
                None => {}
            }
            return;
        }
        let v = match codec::decode::<LeaseValue>("lease", &entry.value) {
            Ok(v) => v,
            Err(e) => return self.undecodable(entry.key, e),
        };
        let l = self.leading.as_mut().expect("leading");
        let fresh = !l.peers.contains_key(&id);
        if fresh {
            l.dirty = true;
        }
        let peer = l
            .peers
            .entry(id)
            .or_insert_with(|| Peer::unseen(v.token, now));
        if peer.token != v.token {
            // Another instance claimed the ID (a restart resuming its share, or a newcomer).
            peer.token = v.token;
            peer.since = now;
            peer.applied = None;
            peer.dead = None;
            peer.joined_at = None;
        }
        if peer.dead.as_ref().is_some_and(|d| d.confirmed) {
            return; // a late renewal from before our delete: ignore
        }
        let before = (
            peer.token,
            peer.capacity,
            peer.applied,
            peer.draining,
            peer.departing_since.is_some(),
            peer.dead.is_some(),
        );
        peer.dead = None;
        peer.capacity = v.capacity;
        peer.applied = v.applied;
        peer.draining = v.draining;
        peer.revision = Some(entry.revision);
        peer.last_seen = now;
        match (v.departing, peer.departing_since) {
            (true, None) => peer.departing_since = Some(now),
            (false, Some(_)) => peer.departing_since = None,
            _ => {}
        }
        let after = (
            peer.token,
            peer.capacity,
            peer.applied,
            peer.draining,
            peer.departing_since.is_some(),
            peer.dead.is_some(),
        );
        // A report of an applied generation matters to the planner only once it completes the
        // barrier; anything else that changed always does.
        let only_applied = (before.0, before.1, before.3, before.4, before.5)
            == (after.0, after.1, after.3, after.4, after.5);
        if before != after && (!only_applied || l.barrier_complete()) {
            l.dirty = true;
        }
    }

    fn on_assign_all(&mut self, now: Instant, entry: Entry) {
        let l = self.leading.as_mut().expect("leading");
        l.assign_seen = l.assign_seen.max(entry.revision);
        if entry.key == "gen" {
            let newer = entry.operation == Operation::Put
                && codec::decode::<GenRecord>("gen", &entry.value).is_ok_and(|r| r.epoch > l.epoch);
            if newer {
                self.step_down(now); // a later leader committed
            }
        } else if entry.key == "ctl.refresh" {
            if entry.operation == Operation::Put {
                self.list_partitions();
            }
        } else if let Some(rest) = entry.key.strip_prefix("ctl.drain.") {
            if let Ok(id) = rest.parse::<u32>() {
                if let Some(p) = l.peers.get_mut(&WorkerId(id)) {
                    p.ctl_draining = entry.operation == Operation::Put;
                    l.dirty = true;
                }
            }
        } else if let Some((id, slot, index)) = codec::parse_share_key(&entry.key) {
            let asm = l.mirror.entry((id, slot)).or_default();
            if entry.operation == Operation::Put {
                match codec::decode::<ShareChunk>("share", &entry.value) {
                    Ok(c) if c.index == index => asm.insert(c),
                    _ => asm.remove(index),
                }
            } else {
                asm.remove(index);
            }
            // Fill in a committed share we did not know yet.
            if let Some(c) = &mut l.committed {
                if let (Some(m), Some(None)) = (
                    c.record.members.get(&id).filter(|m| m.slot == slot),
                    c.shares.get(&id),
                ) {
                    if let Some(share) = asm
                        .assemble()
                        .filter(|s| codec::share_digest(s) == m.digest)
                    {
                        c.shares.insert(id, Some(share));
                        l.dirty = true;
                    }
                }
            }
        }
    }

    /// The planner: runs after every step while leading.
    pub(crate) fn leader_tick(&mut self, now: Instant) {
        let Some(l) = self.leading.as_mut() else {
            return;
        };
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
                // A silent worker fenced itself by now; a stuck one is still renewing and learns
                // that its lease is gone at its next renewal, or fences within a TTL.
                let release_at = if stuck { now + ttl } else { now + grace };
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
        let mut barrier = true;
        let generation = l.committed.as_ref().map(|c| c.record.generation);
        let parts = l.partitions.as_ref().expect("planner runs with partitions");
        let listed: BTreeSet<&PartitionId> = parts.iter().map(Partition::id).collect();
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
                        let listed = share
                            .iter()
                            .filter(|p| listed.contains(p))
                            .cloned()
                            .collect();
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
            if generation.is_some() && p.applied < generation {
                barrier = false;
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
        let frozen_parts: BTreeSet<&PartitionId> = frozen.values().flatten().collect();
        let free: Vec<Partition> = parts
            .iter()
            .filter(|p| !frozen_parts.contains(p.id()))
            .cloned()
            .collect();
        // Sticky by ID: a restarted instance under the same ID resumes its predecessor's share.
        let mut previous = BTreeMap::new();
        for slot in &eligible {
            if let Some(Some(share)) = committed.get(&slot.id) {
                for p in share {
                    previous.insert(p.clone(), slot.id);
                }
            }
        }
        let input = PlanInput {
            workers: eligible.clone(),
            partitions: free,
            previous,
            pins: BTreeMap::new(),
            slack: 0.05,
            max_moves: budget,
        };
        let plan = self.strategy.assign(&input);
        let mut target: Shares = eligible.iter().map(|w| (w.id, BTreeSet::new())).collect();
        for (p, w) in plan.assignment {
            if let Some(s) = target.get_mut(&w) {
                s.insert(p);
            }
        }
        // Workers still applying (draining ones) keep an empty share until they leave.
        for (id, t) in &tokens {
            target.entry(*id).or_default();
            let _ = t;
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
        if unchanged && same_phase {
            let l = self.leading.as_mut().expect("leading");
            if reached {
                l.activity = None;
                l.partitions_dirty = false;
                l.imbalance_due = None;
            }
            return;
        }
        let planned = budget.is_some() || phase == Phase::Scaling;
        self.publish(now, next, tokens, keep, new_phase, planned);
    }
}

/// Heaviest load over mean load minus one, over the committed shares (loads relative to
/// capacity); 0 when it cannot be computed.
fn imbalance(parts: &[Partition], c: &CommittedGen, peers: &BTreeMap<WorkerId, Peer>) -> f64 {
    let weights: BTreeMap<&PartitionId, u64> = parts.iter().map(|p| (p.id(), p.weight())).collect();
    let mut loads = Vec::new();
    for (id, share) in &c.shares {
        let Some(p) = peers
            .get(id)
            .filter(|p| p.dead.is_none() && p.departing_since.is_none())
        else {
            continue;
        };
        let Some(share) = share else { return 0.0 };
        let w: u64 = share.iter().filter_map(|x| weights.get(x)).sum();
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

/// How long to wait before retrying a failed publish.
pub(crate) fn retry_delay(heartbeat: Duration) -> Duration {
    heartbeat / 4
}
