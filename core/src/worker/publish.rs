//! Writing shares and committing generations; sealing the adopted generation.

use super::handoff::{Committed, Shares};
use super::leader::{retry_delay, CommittedGen, LeaderReq, Publish};
use super::Worker;
use crate::codec::{self, GenRecord, Member, Phase};
use crate::{Event, Instant, KvOp, KvResult, WorkerId};
use std::collections::BTreeMap;

impl Worker {
    /// Writes the shares that changed, then (once all landed) commits `gen` by CAS.
    pub(crate) fn publish(
        &mut self,
        shares: Shares,
        tokens: BTreeMap<WorkerId, u64>,
        keep: BTreeMap<WorkerId, Member>,
        phase: Phase,
        trigger: Phase,
        planned: bool,
    ) {
        let max_bytes = self.config.max_value_bytes;
        let l = self.leading.as_ref().expect("leading");
        let generation = l
            .committed
            .as_ref()
            .map_or(crate::Generation(1), |c| c.record.generation.next());
        let mut members = BTreeMap::new();
        let mut writes = Vec::new();
        for (w, share) in &shares {
            let digest = codec::share_digest(share);
            let old = l.committed.as_ref().and_then(|c| c.record.members.get(w));
            let known = l
                .committed
                .as_ref()
                .and_then(|c| c.shares.get(w))
                .is_some_and(|s| s.as_ref() == Some(share))
                && !l.share_corrupted(*w);
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
        let record = GenRecord {
            v: codec::VERSION,
            epoch: l.epoch,
            generation,
            phase,
            trigger: Some(trigger),
            members,
        };
        let seq = l.publish_seq + 1;
        let outstanding = writes.len();
        for op in writes {
            self.leader_kv(op, LeaderReq::ShareWrite(seq));
        }
        let l = self.leading.as_mut().expect("leading");
        l.publish_seq = seq;
        let partitions_version = l.partitions_version;
        l.publish = Some(Publish {
            record,
            shares,
            seq,
            outstanding,
            committing: false,
            planned,
            partitions_version,
        });
        self.maybe_commit();
    }

    fn maybe_commit(&mut self) {
        let l = self.leading.as_mut().expect("leading");
        let Some(p) = l.publish.as_mut() else { return };
        if p.outstanding > 0 || p.committing {
            return;
        }
        p.committing = true;
        let value = codec::encode(&p.record);
        let key = "gen".to_owned();
        let op = match (&l.committed, l.foreign_gen_rev) {
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
        self.leader_kv(op, LeaderReq::Commit);
    }

    /// Routes the result of a leader-role request.
    pub(crate) fn on_leader_result(&mut self, now: Instant, what: LeaderReq, result: KvResult) {
        match what {
            LeaderReq::GenGet => self.on_gen_get(now, result),
            LeaderReq::Seal(record) => match result {
                KvResult::Written { revision } => self.adopt(now, record, revision),
                _ => self.reload_gen(),
            },
            LeaderReq::ShareWrite(seq) => self.on_share_written(now, seq, result),
            LeaderReq::Commit => match result {
                KvResult::Written { revision } => self.committed(now, revision),
                other => {
                    if let KvResult::Failed(_) = other {
                        self.warn_kv("gen", &other);
                    }
                    self.leader_kv(KvOp::Get { key: "gen".into() }, LeaderReq::CommitReread);
                }
            },
            LeaderReq::CommitReread => self.on_commit_reread(now, result),
            LeaderReq::PeerDelete(id) => self.on_peer_deleted(now, id, result),
            LeaderReq::PeerGet(id) => self.on_peer_get(now, id, result),
        }
    }

    fn reload_gen(&mut self) {
        let l = self.leading.as_mut().expect("leading");
        l.sealing = false;
        l.gen_loaded = false;
        self.leader_kv(KvOp::Get { key: "gen".into() }, LeaderReq::GenGet);
    }

    fn on_gen_get(&mut self, now: Instant, result: KvResult) {
        let epoch = self.epoch().expect("leading");
        match result {
            KvResult::Value(None) => {
                let l = self.leading.as_mut().expect("leading");
                l.gen_loaded = true;
            }
            KvResult::Value(Some(e)) => match codec::decode::<GenRecord>("gen", &e.value) {
                Ok(rec) if rec.epoch > epoch => self.step_down(now),
                Ok(rec) => {
                    // Seal: re-commit the same assignment under our epoch, so that a deposed
                    // leader's late commit fails its CAS.
                    let sealed = GenRecord {
                        epoch,
                        generation: rec.generation.next(),
                        ..rec
                    };
                    let value = codec::encode(&sealed);
                    let l = self.leading.as_mut().expect("leading");
                    l.sealing = true;
                    self.leader_kv(
                        KvOp::Update {
                            key: "gen".into(),
                            value,
                            revision: e.revision,
                        },
                        LeaderReq::Seal(sealed),
                    );
                }
                Err(err) => {
                    self.undecodable("gen".into(), err);
                    let l = self.leading.as_mut().expect("leading");
                    l.foreign_gen_rev = Some(e.revision);
                    l.gen_loaded = true;
                }
            },
            _ => {
                // Unknown: try again shortly.
                self.leader_kv(KvOp::Get { key: "gen".into() }, LeaderReq::GenGet);
            }
        }
    }

    /// The sealed generation is ours: learn its shares from the mirror and watch its members.
    fn adopt(&mut self, now: Instant, record: GenRecord, revision: u64) {
        let l = self.leading.as_mut().expect("leading");
        let shares: Committed = record
            .members
            .iter()
            .map(|(w, m)| {
                let share = l
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
            if !l.peers.contains_key(w) {
                unseen.push(*w);
                l.peers
                    .insert(*w, super::leader::Peer::unseen(m.token, now));
            }
        }
        l.committed = Some(CommittedGen {
            at: now,
            record,
            revision,
            shares,
        });
        l.sealing = false;
        l.gen_loaded = true;
        l.dirty = true;
        for w in unseen {
            self.leader_kv(
                KvOp::Get {
                    key: format!("worker.{w}"),
                },
                LeaderReq::PeerGet(w),
            );
        }
    }

    fn on_share_written(&mut self, now: Instant, seq: u64, result: KvResult) {
        let l = self.leading.as_mut().expect("leading");
        if l.publish.as_ref().is_none_or(|p| p.seq != seq) {
            return; // a write of an aborted publish
        }
        match result {
            KvResult::Written { .. } => {
                if let Some(p) = l.publish.as_mut() {
                    p.outstanding -= 1;
                }
                self.maybe_commit();
            }
            other => {
                self.warn_kv("worker.*", &other);
                self.abort_publish(now);
            }
        }
    }

    fn abort_publish(&mut self, now: Instant) {
        let delay = retry_delay(self.config.heartbeat_interval);
        let l = self.leading.as_mut().expect("leading");
        l.publish = None;
        l.retry_at = Some(now + delay);
        l.dirty = true;
    }

    fn committed(&mut self, now: Instant, revision: u64) {
        let l = self.leading.as_mut().expect("leading");
        let Some(p) = l.publish.take() else { return };
        if p.planned {
            l.last_rebalance = Some(now);
        }
        if p.record.phase == Phase::Stable && p.partitions_version == l.partitions_version {
            l.activity = None;
            l.partitions_dirty = false;
            l.imbalance_due = None;
        }
        let mut shares: Committed = p.shares.into_iter().map(|(w, s)| (w, Some(s))).collect();
        for w in p.record.members.keys() {
            shares.entry(*w).or_insert(None); // carried over unknown
        }
        l.committed = Some(CommittedGen {
            at: now,
            record: p.record,
            revision,
            shares,
        });
        l.foreign_gen_rev = None;
        l.dirty = true;
    }

    fn on_commit_reread(&mut self, now: Instant, result: KvResult) {
        let epoch = self.epoch().expect("leading");
        let l = self.leading.as_mut().expect("leading");
        let Some(p) = &l.publish else { return };
        match result {
            KvResult::Value(Some(e)) => match codec::decode::<GenRecord>("gen", &e.value) {
                Ok(rec) if rec == p.record => self.committed(now, e.revision),
                Ok(rec) if rec.epoch > epoch => self.step_down(now),
                _ => {
                    // Someone else committed (a deposed leader before our seal): start over from it.
                    self.abort_publish(now);
                    self.reload_gen();
                }
            },
            KvResult::Value(None) => {
                self.abort_publish(now);
                self.reload_gen();
            }
            _ => self.abort_publish(now),
        }
    }

    fn on_peer_deleted(&mut self, now: Instant, id: WorkerId, result: KvResult) {
        match result {
            KvResult::Written { .. } => self.confirm_dead(id),
            KvResult::WrongRevision | KvResult::TimedOut => {
                self.leader_kv(
                    KvOp::Get {
                        key: format!("worker.{id}"),
                    },
                    LeaderReq::PeerGet(id),
                );
            }
            other => {
                self.warn_kv(&format!("worker.{id}"), &other);
                self.retry_peer_check(now, id);
            }
        }
    }

    fn on_peer_get(&mut self, now: Instant, id: WorkerId, result: KvResult) {
        match result {
            KvResult::Value(None) => {
                let release_at = now + self.config.emergency_grace;
                let l = self.leading.as_mut().expect("leading");
                if let Some(p) = l
                    .peers
                    .get_mut(&id)
                    .filter(|p| p.dead.is_none() && p.revision.is_none())
                {
                    p.dead = Some(super::leader::Dead {
                        release_at,
                        confirmed: false,
                        retry_at: None,
                    });
                    l.activity = Some(crate::State::Emergency);
                }
                self.confirm_dead(id)
            }
            KvResult::Value(Some(e)) => {
                // Still there: it renewed after all (the watch will tell), or we never saw it.
                let l = self.leading.as_mut().expect("leading");
                if let Some(p) = l.peers.get_mut(&id) {
                    let newer = p.revision.is_none_or(|r| e.revision > r);
                    if newer {
                        p.dead = None;
                        p.revision = Some(e.revision);
                        p.last_seen = now;
                    } else {
                        // The same revision we tried to delete: delete again.
                        p.dead = None;
                    }
                    l.dirty = true;
                }
            }
            _ => self.retry_peer_check(now, id),
        }
    }

    /// A crashed worker's lease could not be checked: try again a little later.
    fn retry_peer_check(&mut self, now: Instant, id: WorkerId) {
        let at = now + retry_delay(self.config.heartbeat_interval);
        let l = self.leading.as_mut().expect("leading");
        if let Some(d) = l.peers.get_mut(&id).and_then(|p| p.dead.as_mut()) {
            d.retry_at = Some(at);
        }
    }

    fn confirm_dead(&mut self, id: WorkerId) {
        let l = self.leading.as_mut().expect("leading");
        if let Some(d) = l.peers.get_mut(&id).and_then(|p| p.dead.as_mut()) {
            d.confirmed = true;
            l.dirty = true;
        }
        self.emit(Event::Warning(crate::Warning::WorkerCrashed(id)));
    }
}
