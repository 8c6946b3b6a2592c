//! The leader's view of the cluster and the planner's triggers.
//!
//! The leader watches every lease (`worker.*`) and the whole assignment bucket. Triggers are not
//! queued as events: each step compares the view (live workers, partitions) with the committed
//! generation and decides when the next generation is due (DESIGN §4's table).

use super::handoff::{Committed, Shares};
use super::load::LoadView;
use super::outbox::Outbox;
use super::timers::Timers;
use super::{Purpose, Timer, WorkerMachine};
use crate::codec::{self, GenRecord, LazyShare, LeaseValue};
use crate::strategy::{PlanInput, Strategy};
use crate::Config;
use crate::{
    Bucket, Entry, Epoch, Event, Generation, Instant, KvOp, Operation, Partition, PartitionId,
    RequestId, State, Warning, WatchId, WorkerId,
};
use std::collections::BTreeMap;
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
    /// A balancing round: what it moved and why.
    pub(crate) round: Option<super::publish::Round>,
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
    /// The planner compared the adopted generation with the partition list and the pins
    /// (`tick`, once its watch caught up with that generation). Until then neither the first
    /// list nor a pin counts as a change by itself: a new leader that plans at once as for
    /// changed partitions moves for load outside any round's budget and rests.
    pub(crate) looked: bool,
    /// Bumped whenever the partition list or a pin changes.
    pub(crate) partitions_version: u64,
    /// Operators' pins (`ctl.pin.<partition>`), handed to the strategy.
    pub(crate) pins: BTreeMap<PartitionId, WorkerId>,
    pub(crate) list_req: Option<RequestId>,
    pub(crate) source_failures: u32,
    /// `None` while loading; `Some(None)` with no usable generation (cold start).
    pub(crate) gen_loaded: bool,
    /// The adopted generation said which partitions rest (or there was none): rounds need not
    /// wait a whole `load_cooldown` after the takeover.
    pub(crate) rests_known: bool,
    pub(crate) sealing: bool,
    pub(crate) committed: Option<CommittedGen>,
    /// Revision of an undecodable `gen` to overwrite (cold start over foreign bytes).
    pub(crate) foreign_gen_rev: Option<u64>,
    /// Every share slot's chunks as seen in KV.
    pub(crate) mirror: BTreeMap<(WorkerId, u8), LazyShare>,
    /// Highest revision the assignment watch delivered: the mirror is up to date until then.
    pub(crate) assign_seen: u64,
    pub(crate) publish: Option<Publish>,
    pub(crate) publish_seq: u64,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) last_rebalance: Option<Instant>,
    pub(crate) imbalance_checked: Option<Generation>,
    pub(crate) imbalance_due: Option<Instant>,
    /// When the balance was last measured.
    pub(crate) measured_at: Option<Instant>,
    /// Since when every measurement found the committed assignment out of balance.
    pub(crate) imbalance_since: Option<Instant>,
    /// The most loaded worker at the last measurement, and its load over the mean.
    pub(crate) most_loaded: Option<(WorkerId, f64)>,
    /// Reported partition loads, smoothed; partitions resting after a balancing round.
    pub(crate) loads: LoadView,
    /// Something changed since the planner last looked.
    pub(crate) dirty: bool,
    /// The last plan's input and its assignment. The next plan reuses the partition list
    /// while it is equal (saves cloning every partition ID), and the whole result when the
    /// input is equal (the planner runs after every change, and most runs of a handoff in
    /// progress see the input of the one before).
    pub(crate) last_plan: Option<(PlanInput, BTreeMap<PartitionId, WorkerId>)>,
    /// The target of the handoff in progress (Strict mode publishes it in steps): a partition
    /// revoked and not granted yet has no committed owner, and the next plan takes its owner
    /// here as its previous one, so every step heads for the target the change was planned to
    /// (the one a preview of the change shows). `None` once a generation reaches it.
    pub(crate) heading: Option<Shares>,
    /// A later leader committed: the worker steps down once the current call returns.
    pub(crate) deposed: bool,
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
            looked: false,
            partitions_version: 0,
            pins: BTreeMap::new(),
            list_req: None,
            source_failures: 0,
            gen_loaded: false,
            rests_known: false,
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
            measured_at: None,
            imbalance_since: None,
            most_loaded: None,
            loads: LoadView::default(),
            dirty: true,
            last_plan: None,
            heading: None,
            deposed: false,
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
                .and_then(LazyShare::complete_digest)
                != Some(m.digest)
    }

    /// Whether the committed generation already reflects the partition list and the pins:
    /// every listed partition in exactly one known share and nothing else, every pin to a live
    /// worker honoured (true without a generation: the cold start plans everything).
    pub(crate) fn committed_reflects_sources(&self) -> bool {
        let (Some(c), Some(parts)) = (&self.committed, &self.partitions) else {
            return self.committed.is_none();
        };
        let listed = |p: &PartitionId| parts.binary_search_by(|x| x.id().cmp(p)).is_ok();
        let mut held = 0;
        for share in c.shares.values() {
            let Some(share) = share else { return false };
            if !share.iter().all(listed) {
                return false;
            }
            held += share.len();
        }
        // all listed and as many as listed: each once, unless one is twice and another none
        let once = held == parts.len()
            && c.shares
                .values()
                .flatten()
                .flatten()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == held;
        once && self.pins.iter().all(|(p, w)| {
            let live = self.peers.get(w).is_some_and(|peer| peer.live());
            !live
                || !listed(p)
                || c.shares
                    .get(w)
                    .is_some_and(|s| s.as_ref().is_some_and(|s| s.contains(p)))
        })
    }

    /// While the source fails, a new leader plans with the partitions of the committed
    /// generation (at the default weight) rather than not at all: crashed workers' partitions
    /// must not wait for the source. `None` if the committed shares are not all known.
    pub(crate) fn committed_partitions(&self) -> Option<Vec<Partition>> {
        let c = self.committed.as_ref()?;
        let mut ids = std::collections::BTreeSet::new();
        for share in c.shares.values() {
            ids.extend(share.as_ref()?.iter().cloned());
        }
        Some(
            ids.into_iter()
                .map(|id| Partition::from_id(id, Partition::DEFAULT_WEIGHT))
                .collect(),
        )
    }

    /// Whether every worker that may still hold partitions has applied the committed
    /// generation. A worker declared dead counts until its release (by then it fenced itself):
    /// one evicted as stuck, or that crashed, before applying a revoke may still hold what it
    /// was asked to give up, and nobody may be granted that before.
    pub(crate) fn barrier_complete(&self, now: Instant) -> bool {
        let Some(c) = &self.committed else {
            return true;
        };
        let released = |p: &Peer| {
            p.dead
                .as_ref()
                .is_some_and(|d| d.confirmed && d.release_at <= now)
        };
        self.peers
            .values()
            .filter(|p| p.departing_since.is_none() && !released(p))
            .all(|p| p.applied >= Some(c.record.generation))
    }

    /// The watches this role started.
    pub(crate) fn watches(&self) -> impl Iterator<Item = WatchId> {
        self.lease_watch.into_iter().chain(self.assign_watch)
    }
}

/// What the leader role borrows from its worker for one call: the configuration, the strategy,
/// the outputs and the timers.
pub(crate) struct Cx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) strategy: &'a dyn Strategy,
    pub(crate) out: &'a mut Outbox,
    pub(crate) timers: &'a mut Timers,
}

impl WorkerMachine {
    /// Runs `f` on the leader role, if leading, with what it borrows from the worker; steps down
    /// afterwards if the role found a later leader.
    pub(crate) fn lead<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Leadership, &mut Cx<'_>) -> R,
    ) -> Option<R> {
        let l = self.leading.as_deref_mut()?;
        let mut cx = Cx {
            config: &self.config,
            strategy: self.strategy.as_ref(),
            out: &mut self.out,
            timers: &mut self.timers,
        };
        let r = f(l, &mut cx);
        if l.deposed {
            self.step_down(now);
        }
        Some(r)
    }

    /// Refresh: the leader re-reads its source; a follower asks the leader through `ctl.refresh`.
    pub(crate) fn on_refresh(&mut self, now: Instant) {
        if self.leading.is_some() {
            self.lead(now, |l, cx| l.list_partitions(cx));
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
}

impl Leadership {
    /// Begins the leader role: watch leases and assignments, read the source and `gen`.
    pub(crate) fn start(&mut self, cx: &mut Cx<'_>) {
        self.lease_watch = Some(cx.out.watch(Bucket::Leases, vec!["worker.*".into()]));
        self.assign_watch = Some(cx.out.watch(Bucket::Assign, vec![">".into()]));
        self.list_partitions(cx);
        self.kv(cx, KvOp::Get { key: "gen".into() }, LeaderReq::GenGet);
    }

    /// Sends a KV request of the leader role (to the assign bucket unless it names a lease).
    pub(crate) fn kv(&self, cx: &mut Cx<'_>, op: KvOp, what: LeaderReq) -> RequestId {
        let bucket = match what {
            LeaderReq::PeerDelete(_) | LeaderReq::PeerGet(_) => Bucket::Leases,
            _ => Bucket::Assign,
        };
        let epoch = self.epoch;
        cx.out.send_kv(bucket, op, Purpose::Leading { epoch, what })
    }

    /// Asks the application's source for the partitions.
    pub(crate) fn list_partitions(&mut self, cx: &mut Cx<'_>) {
        let id = cx.out.new_request();
        self.list_req = Some(id);
        cx.out.act(crate::Action::ListPartitions(id));
    }

    /// The source answered request `id`.
    pub(crate) fn on_partitions(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        id: RequestId,
        result: Result<Vec<Partition>, String>,
    ) {
        if self.list_req != Some(id) {
            return;
        }
        self.list_req = None;
        let list = match result {
            Ok(list) => {
                // the next look unasked (a failure backs off instead, below)
                let poll = cx.config.source_poll_interval;
                if !poll.is_zero() {
                    cx.timers.set(Timer::Source, now + poll);
                }
                list
            }
            Err(e) => {
                self.source_failures += 1;
                let backoff = cx.config.heartbeat_interval * self.source_failures.min(8);
                cx.timers.set(Timer::Source, now + backoff);
                cx.out.emit(Event::Warning(Warning::SourceFailed(e)));
                return;
            }
        };
        if let Err(e) = crate::partition::validate_partitions(&list) {
            cx.out
                .emit(Event::Warning(Warning::InvalidPartitions(e.to_string())));
            return;
        }
        self.source_failures = 0;
        let mut list = list;
        list.sort_by(|a, b| a.id().cmp(b.id()));
        if self.partitions.as_ref() != Some(&list) {
            self.partitions = Some(list);
            self.partitions_dirty |= self.looked;
            self.partitions_version += 1;
            self.dirty = true;
        }
    }

    /// An entry from one of the role's watches.
    pub(crate) fn on_watch_entry(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        watch: WatchId,
        entry: Entry,
    ) {
        if Some(watch) == self.lease_watch {
            self.on_peer_lease(cx, now, entry);
        } else if Some(watch) == self.assign_watch {
            self.on_assign_all(cx, entry);
        }
    }

    fn on_peer_lease(&mut self, cx: &mut Cx<'_>, now: Instant, entry: Entry) {
        let Some(id) = codec::parse_lease_key(&entry.key) else {
            return;
        };
        if entry.operation != Operation::Put {
            self.dirty = true;
            match self.peers.get_mut(&id) {
                Some(p) if p.dead.is_some() => self.confirm_dead(cx, id),
                Some(p) if p.departing_since.is_some() => p.revision = None,
                Some(p) if entry.operation == Operation::Purge => {
                    // Expired without renewal: it fenced itself by now, and no renewal can land
                    // any more. The grace counts from our own deadline for it (a TTL after the
                    // last update we saw), or from now if the server expired it earlier: the
                    // marker is not waited for, and does not delay the release either.
                    let deadline = p.last_seen + cx.config.lease_ttl;
                    p.dead = Some(Dead {
                        release_at: now.min(deadline) + cx.config.emergency_grace,
                        confirmed: false,
                        retry_at: None,
                    });
                    self.activity = Some(State::Emergency);
                    self.confirm_dead(cx, id);
                }
                Some(_) => {
                    self.peers.remove(&id); // a graceful final leave: it holds nothing
                }
                None => {}
            }
            return;
        }
        let v = match codec::decode::<LeaseValue>("lease", &entry.value) {
            Ok(v) => v,
            Err(e) => return cx.out.undecodable(entry.key, e),
        };
        let fresh = !self.peers.contains_key(&id);
        if fresh {
            self.dirty = true;
        }
        let peer = self
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
        if peer.revision.is_some_and(|r| entry.revision <= r) {
            // Already known (read back by a GET before the watch delivered it): nothing new,
            // and in particular no proof of life against a delete we sent for this revision.
            return;
        }
        // What the planner looks at, apart from `applied`, and `applied` itself.
        let view = |p: &Peer| {
            let rest = (
                p.token,
                p.capacity,
                p.draining,
                p.departing_since.is_some(),
                p.dead.is_some(),
            );
            (rest, p.applied)
        };
        let before = view(peer);
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
        let after = view(peer);
        // A report of an applied generation matters to the planner only once it completes the
        // barrier; anything else that changed always does.
        let only_applied = before.0 == after.0;
        if before != after && (!only_applied || self.barrier_complete(now)) {
            self.dirty = true;
        }
        // Loads reach the planner through the balance measurement, not as a change of view.
        if let (Some(report), Some(c)) = (&v.loads, &self.committed) {
            let member = c.record.members.get(&id).filter(|m| m.token == v.token);
            if let (Some(m), Some(Some(share))) = (member, c.shares.get(&id)) {
                self.loads
                    .take(share, m.digest, report, now, cx.config.load_half_life);
            }
        }
    }

    /// An operator set or removed a pin (`ctl.pin.<partition>`): the next plan honours it. A
    /// pin that cannot be read is reported and ignored.
    fn on_pin_entry(&mut self, cx: &mut Cx<'_>, entry: Entry) {
        let id = &entry.key[codec::PIN_PREFIX.len()..];
        let read = PartitionId::parse(id).map_err(|e| e.to_string());
        let pin = match entry.operation {
            Operation::Put => read.and_then(|p| {
                codec::decode::<codec::PinValue>("pin", &entry.value)
                    .map(|v| (p, Some(v.worker)))
                    .map_err(|e| e.to_string())
            }),
            _ => read.map(|p| (p, None)),
        };
        let (partition, worker) = match pin {
            Ok(pin) => pin,
            Err(reason) => {
                cx.out.emit(Event::Warning(Warning::Undecodable {
                    key: entry.key,
                    reason,
                }));
                return;
            }
        };
        let changed = match worker {
            Some(w) => self.pins.insert(partition, w) != Some(w),
            None => self.pins.remove(&partition).is_some(),
        };
        if changed {
            self.partitions_dirty |= self.looked;
            self.partitions_version += 1;
            self.dirty = true;
        }
    }

    fn on_assign_all(&mut self, cx: &mut Cx<'_>, entry: Entry) {
        self.assign_seen = self.assign_seen.max(entry.revision);
        if entry.key == "gen" {
            let newer = entry.operation == Operation::Put
                && codec::decode::<GenRecord>("gen", &entry.value)
                    .is_ok_and(|r| r.epoch > self.epoch);
            if newer {
                self.deposed = true; // a later leader committed
            }
        } else if entry.key == "ctl.refresh" {
            if entry.operation == Operation::Put {
                self.list_partitions(cx);
            }
        } else if entry.key.starts_with(codec::PIN_PREFIX) {
            self.on_pin_entry(cx, entry);
        } else if let Some(rest) = entry.key.strip_prefix("ctl.drain.") {
            if let Ok(id) = rest.parse::<u32>() {
                if let Some(p) = self.peers.get_mut(&WorkerId(id)) {
                    p.ctl_draining = entry.operation == Operation::Put;
                    self.dirty = true;
                }
            }
        } else if let Some((id, slot, index)) = codec::parse_share_key(&entry.key) {
            let asm = self.mirror.entry((id, slot)).or_default();
            if entry.operation == Operation::Put {
                asm.put(index, entry.value);
            } else {
                asm.remove(index);
            }
            // Fill in a committed share we did not know yet.
            if let Some(c) = &mut self.committed {
                if let (Some(m), Some(None)) = (
                    c.record.members.get(&id).filter(|m| m.slot == slot),
                    c.shares.get(&id),
                ) {
                    if let Some(share) = asm
                        .assemble()
                        .filter(|s| codec::share_digest(s) == m.digest)
                    {
                        c.shares.insert(id, Some(share));
                        self.dirty = true;
                    }
                }
            }
        }
    }
}

/// How long to wait before retrying a failed publish.
pub(crate) fn retry_delay(heartbeat: Duration) -> Duration {
    heartbeat / 4
}
