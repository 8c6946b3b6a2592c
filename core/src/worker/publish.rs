//! Writing shares and committing generations; sealing the adopted generation.

use super::handoff::{Committed, Shares};
use super::leader::{retry_delay, CommittedGen, Cx, LeaderReq, Leadership, Publish};
use crate::codec::{self, GenRecord, Member, Phase};
use crate::{Event, Instant, KvOp, KvResult, PartitionId, WorkerId};
use std::collections::BTreeMap;

/// How a generation is labelled.
pub(crate) struct Label {
    /// Its phase (`Stable` once it reaches the target).
    pub(crate) phase: Phase,
    /// What produced it (the phase it was planned in).
    pub(crate) trigger: Phase,
    /// A planned move (a scale window or a budgeted round): restarts the rebalance cooldown.
    pub(crate) planned: bool,
    /// A balancing round: said with [`Event::Rebalanced`] once committed.
    pub(crate) round: Option<Round>,
}

/// What a balancing round moved, and why.
#[derive(Clone, Debug)]
pub(crate) struct Round {
    /// The partitions it moves (they rest for `load_cooldown` from its commit).
    pub(crate) moved: Vec<PartitionId>,
    /// The most loaded worker, and its load over the mean, when the round was planned.
    pub(crate) worker: WorkerId,
    pub(crate) max_over_mean: f64,
}

impl Leadership {
    /// Writes the shares that changed, then (once all landed) commits `gen` by CAS.
    pub(crate) fn publish(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        shares: Shares,
        tokens: BTreeMap<WorkerId, u64>,
        keep: BTreeMap<WorkerId, Member>,
        label: Label,
    ) {
        let Label {
            phase,
            trigger,
            planned,
            round,
        } = label;
        let max_bytes = cx.config.max_value_bytes;
        let generation = self
            .committed
            .as_ref()
            .map_or(crate::Generation(1), |c| c.record.generation.next());
        let mut members = BTreeMap::new();
        let mut writes = Vec::new();
        for (w, share) in &shares {
            let digest = codec::share_digest(share);
            let old = self
                .committed
                .as_ref()
                .and_then(|c| c.record.members.get(w));
            let known = self
                .committed
                .as_ref()
                .and_then(|c| c.shares.get(w))
                .is_some_and(|s| s.as_ref() == Some(share))
                && !self.share_corrupted(*w);
            let (chunks, slot) = match old {
                Some(m) if m.digest == digest && known => (m.chunks, m.slot),
                _ => {
                    // The slot the committed generation does not use for this worker.
                    let slot = old.map_or(0, |m| 1 - (m.slot & 1));
                    let encoded = codec::encode_share(share, max_bytes);
                    let n = encoded.len() as u32;
                    for (i, value) in encoded.into_iter().enumerate() {
                        writes.push(KvOp::Put {
                            key: codec::share_key(*w, slot, i as u32),
                            value,
                        });
                    }
                    (n, slot)
                }
            };
            let token = tokens.get(w).copied().expect("every member has a token");
            members.insert(
                *w,
                Member {
                    token,
                    digest,
                    chunks,
                    count: share.len() as u32,
                    slot,
                },
            );
        }
        members.extend(keep);
        let moved = round.as_ref().map_or(&[][..], |r| &r.moved[..]);
        let cooldown = cx.config.load_cooldown;
        let resting = self.loads.rests_for_record(now, moved, cooldown, max_bytes);
        let record = GenRecord {
            v: codec::VERSION,
            epoch: self.epoch,
            generation,
            phase,
            trigger: Some(trigger),
            members,
            resting,
        };
        let seq = self.publish_seq + 1;
        let outstanding = writes.len();
        for op in writes {
            self.kv(cx, op, LeaderReq::ShareWrite(seq));
        }
        self.publish_seq = seq;
        let partitions_version = self.partitions_version;
        self.publish = Some(Publish {
            record,
            shares,
            seq,
            outstanding,
            committing: false,
            planned,
            partitions_version,
            round,
        });
        self.maybe_commit(cx);
    }

    fn maybe_commit(&mut self, cx: &mut Cx<'_>) {
        let Some(p) = self.publish.as_mut() else {
            return;
        };
        if p.outstanding > 0 || p.committing {
            return;
        }
        p.committing = true;
        let value = codec::encode(&p.record);
        let key = "gen".to_owned();
        let op = match (&self.committed, self.foreign_gen_rev) {
            (Some(c), _) => KvOp::Update {
                key,
                value,
                revision: c.revision,
            },
            (None, Some(revision)) => KvOp::Update {
                key,
                value,
                revision,
            },
            (None, None) => KvOp::Create { key, value },
        };
        self.kv(cx, op, LeaderReq::Commit);
    }

    /// Routes the result of a leader-role request.
    pub(crate) fn on_result(
        &mut self,
        cx: &mut Cx<'_>,
        now: Instant,
        what: LeaderReq,
        result: KvResult,
    ) {
        match what {
            LeaderReq::GenGet => self.on_gen_get(cx, result),
            LeaderReq::Seal(record) => match result {
                KvResult::Written { revision } => self.adopt(cx, now, record, revision),
                _ => self.reload_gen(cx),
            },
            LeaderReq::ShareWrite(seq) => self.on_share_written(cx, now, seq, result),
            LeaderReq::Commit => match result {
                KvResult::Written { revision } => self.committed(cx, now, revision),
                other => {
                    if let KvResult::Failed(_) = other {
                        cx.out.warn_kv("gen", &other);
                    }
                    self.kv(cx, KvOp::Get { key: "gen".into() }, LeaderReq::CommitReread);
                }
            },
            LeaderReq::CommitReread => self.on_commit_reread(cx, now, result),
            LeaderReq::PeerDelete(id) => self.on_peer_deleted(cx, now, id, result),
            LeaderReq::PeerGet(id) => self.on_peer_get(cx, now, id, result),
        }
    }

    fn reload_gen(&mut self, cx: &mut Cx<'_>) {
        self.sealing = false;
        self.gen_loaded = false;
        self.kv(cx, KvOp::Get { key: "gen".into() }, LeaderReq::GenGet);
    }

    fn on_gen_get(&mut self, cx: &mut Cx<'_>, result: KvResult) {
        let epoch = self.epoch;
        match result {
            KvResult::Value(None) => {
                self.gen_loaded = true;
                self.rests_known = true; // no generation, no round yet
            }
            KvResult::Value(Some(e)) => match codec::decode::<GenRecord>("gen", &e.value) {
                Ok(rec) if rec.epoch > epoch => self.deposed = true,
                Ok(rec) => {
                    // Seal: re-commit the same assignment under our epoch, so that a deposed
                    // leader's late commit fails its CAS.
                    let sealed = GenRecord {
                        epoch,
                        generation: rec.generation.next(),
                        ..rec
                    };
                    let value = codec::encode(&sealed);
                    self.sealing = true;
                    self.kv(
                        cx,
                        KvOp::Update {
                            key: "gen".into(),
                            value,
                            revision: e.revision,
                        },
                        LeaderReq::Seal(sealed),
                    );
                }
                Err(err) => {
                    cx.out.undecodable("gen".into(), err);
                    self.foreign_gen_rev = Some(e.revision);
                    self.gen_loaded = true;
                }
            },
            _ => {
                // Unknown: try again shortly.
                self.kv(cx, KvOp::Get { key: "gen".into() }, LeaderReq::GenGet);
            }
        }
    }

    /// The sealed generation is ours: learn its shares from the mirror and watch its members.
    fn adopt(&mut self, cx: &mut Cx<'_>, now: Instant, record: GenRecord, revision: u64) {
        if let Some(rests) = &record.resting {
            self.loads.take_rests(rests, now);
            self.rests_known = true;
        }
        let shares: Committed = record
            .members
            .iter()
            .map(|(w, m)| {
                let share = self
                    .mirror
                    .get(&(*w, m.slot))
                    .and_then(|a| a.assemble())
                    .filter(|s| codec::share_digest(s) == m.digest);
                (*w, share)
            })
            .collect();
        // Members whose lease we have not seen: read it now. Absent means it expired or was
        // deleted, so the worker holds nothing any more (see `on_peer_get`).
        let mut unseen = Vec::new();
        for (w, m) in &record.members {
            if !self.peers.contains_key(w) {
                unseen.push(*w);
                self.peers
                    .insert(*w, super::leader::Peer::unseen(m.token, now));
            }
        }
        self.committed = Some(CommittedGen {
            at: now,
            record,
            revision,
            shares,
        });
        self.sealing = false;
        self.gen_loaded = true;
        self.dirty = true;
        for w in unseen {
            self.kv(
                cx,
                KvOp::Get {
                    key: format!("worker.{w}"),
                },
                LeaderReq::PeerGet(w),
            );
        }
    }

    fn on_share_written(&mut self, cx: &mut Cx<'_>, now: Instant, seq: u64, result: KvResult) {
        if self.publish.as_ref().is_none_or(|p| p.seq != seq) {
            return; // a write of an aborted publish
        }
        match result {
            KvResult::Written { .. } => {
                if let Some(p) = self.publish.as_mut() {
                    p.outstanding -= 1;
                }
                self.maybe_commit(cx);
            }
            other => {
                cx.out.warn_kv("worker.*", &other);
                self.abort_publish(cx, now);
            }
        }
    }

    fn abort_publish(&mut self, cx: &mut Cx<'_>, now: Instant) {
        let delay = retry_delay(cx.config.heartbeat_interval);
        self.publish = None;
        self.retry_at = Some(now + delay);
        self.dirty = true;
    }

    fn committed(&mut self, cx: &mut Cx<'_>, now: Instant, revision: u64) {
        let Some(p) = self.publish.take() else { return };
        if p.planned {
            self.last_rebalance = Some(now);
        }
        if let Some(r) = p.round {
            cx.out.emit(Event::Rebalanced {
                generation: p.record.generation,
                moved: r.moved.len() as u32,
                worker: r.worker,
                max_over_mean: r.max_over_mean,
            });
            // they moved now: the cooldown counts from here, not from the plan
            self.loads.rest(r.moved, now + cx.config.load_cooldown);
        }
        if p.partitions_version == self.partitions_version {
            // The change is planned and committed (once, within the budget, like a round): the
            // next steps of its handoff head for that target instead of planning afresh, with
            // a fresh budget, at every step.
            self.partitions_dirty = false;
            if p.record.phase == Phase::Stable {
                self.activity = None;
                self.imbalance_due = None;
            }
        }
        let mut shares: Committed = p.shares.into_iter().map(|(w, s)| (w, Some(s))).collect();
        for w in p.record.members.keys() {
            shares.entry(*w).or_insert(None); // carried over unknown
        }
        self.committed = Some(CommittedGen {
            at: now,
            record: p.record,
            revision,
            shares,
        });
        self.foreign_gen_rev = None;
        self.dirty = true;
    }

    fn on_commit_reread(&mut self, cx: &mut Cx<'_>, now: Instant, result: KvResult) {
        let epoch = self.epoch;
        let Some(p) = &self.publish else { return };
        match result {
            KvResult::Value(Some(e)) => match codec::decode::<GenRecord>("gen", &e.value) {
                Ok(rec) if rec == p.record => self.committed(cx, now, e.revision),
                Ok(rec) if rec.epoch > epoch => self.deposed = true,
                _ => {
                    // Someone else committed (a deposed leader before our seal): start over from it.
                    self.abort_publish(cx, now);
                    self.reload_gen(cx);
                }
            },
            KvResult::Value(None) => {
                self.abort_publish(cx, now);
                self.reload_gen(cx);
            }
            _ => self.abort_publish(cx, now),
        }
    }

    fn on_peer_deleted(&mut self, cx: &mut Cx<'_>, now: Instant, id: WorkerId, result: KvResult) {
        match result {
            KvResult::Written { .. } => self.confirm_dead(cx, id),
            KvResult::WrongRevision | KvResult::TimedOut => {
                self.kv(
                    cx,
                    KvOp::Get {
                        key: format!("worker.{id}"),
                    },
                    LeaderReq::PeerGet(id),
                );
            }
            other => {
                cx.out.warn_kv(&format!("worker.{id}"), &other);
                self.retry_peer_check(cx, now, id);
            }
        }
    }

    fn on_peer_get(&mut self, cx: &mut Cx<'_>, now: Instant, id: WorkerId, result: KvResult) {
        match result {
            KvResult::Value(None) => {
                let release_at = now + cx.config.emergency_grace;
                if let Some(p) = self
                    .peers
                    .get_mut(&id)
                    .filter(|p| p.dead.is_none() && p.revision.is_none())
                {
                    p.dead = Some(super::leader::Dead {
                        release_at,
                        confirmed: false,
                        retry_at: None,
                    });
                    self.activity = Some(crate::State::Emergency);
                }
                self.confirm_dead(cx, id)
            }
            KvResult::Value(Some(e)) => {
                // Still there: it renewed after all (the watch will tell), or we never saw it.
                if let Some(p) = self.peers.get_mut(&id) {
                    let newer = p.revision.is_none_or(|r| e.revision > r);
                    if newer {
                        p.dead = None;
                        p.revision = Some(e.revision);
                        p.last_seen = now;
                    } else if let Some(d) = p.dead.as_mut() {
                        // The same revision we tried to delete (the delete timed out): delete
                        // again at once. It stays declared crashed meanwhile: had the delete
                        // landed after all, its marker must not read as a graceful leave.
                        d.retry_at = Some(now);
                    }
                    self.dirty = true;
                }
            }
            _ => self.retry_peer_check(cx, now, id),
        }
    }

    /// A crashed worker's lease could not be checked: try again a little later.
    fn retry_peer_check(&mut self, cx: &mut Cx<'_>, now: Instant, id: WorkerId) {
        let at = now + retry_delay(cx.config.heartbeat_interval);
        if let Some(d) = self.peers.get_mut(&id).and_then(|p| p.dead.as_mut()) {
            d.retry_at = Some(at);
        }
    }

    /// A crashed peer is certainly gone (its lease is deleted or expired): its partitions may
    /// be released at `release_at`. Said once per crash, whichever of the delete's reply, its
    /// watch marker or an expiry marker comes first.
    pub(super) fn confirm_dead(&mut self, cx: &mut Cx<'_>, id: WorkerId) {
        if let Some(d) = self
            .peers
            .get_mut(&id)
            .and_then(|p| p.dead.as_mut())
            .filter(|d| !d.confirmed)
        {
            d.confirmed = true;
            self.dirty = true;
            cx.out
                .emit(Event::Warning(crate::Warning::WorkerCrashed(id)));
        }
    }
}
