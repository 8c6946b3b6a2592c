//! Following committed generations: watching `gen` and our share, applying them, revoking.

use super::{Timer, WorkerMachine};
use crate::codec::{self, GenRecord, ShareChunk};
use crate::{Action, Bucket, Entry, Event, Instant, Operation, PartitionId, Warning};
use std::collections::BTreeSet;

impl WorkerMachine {
    /// Watches `gen` and our share's chunks.
    pub(crate) fn start_following(&mut self) {
        let id = self.id.expect("following needs an ID");
        let filters = vec!["gen".into(), format!("worker.{id}.>")];
        self.assign_watch = Some(self.watch(Bucket::Assign, filters));
    }

    pub(crate) fn stop_following(&mut self) {
        if let Some(w) = self.assign_watch.take() {
            self.act(Action::Unwatch(w));
        }
        self.gen_seen = None;
        self.my_share = Default::default();
    }

    pub(crate) fn on_assign_entry(&mut self, now: Instant, entry: Entry) {
        if entry.key == "gen" {
            if entry.operation != Operation::Put {
                return;
            }
            match codec::decode::<GenRecord>("gen", &entry.value) {
                Ok(rec) => {
                    if self
                        .gen_seen
                        .as_ref()
                        .is_none_or(|g| rec.generation > g.generation)
                    {
                        self.gen_seen = Some(rec);
                    }
                }
                Err(e) => self.undecodable(entry.key, e),
            }
        } else if let Some((_, slot, index)) = codec::parse_share_key(&entry.key) {
            let asm = &mut self.my_share[slot as usize];
            if entry.operation == Operation::Put {
                match codec::decode::<ShareChunk>("share", &entry.value) {
                    Ok(chunk) if chunk.index == index => asm.insert(chunk),
                    Ok(_) => self.undecodable(entry.key, "chunk index does not match its key"),
                    Err(e) => self.undecodable(entry.key, e),
                }
            } else {
                asm.remove(index);
            }
        }
        self.try_apply(now);
    }

    pub(crate) fn undecodable(&mut self, key: String, reason: impl ToString) {
        self.out.undecodable(key, reason);
    }

    /// Applies the committed generation if it is newer than what we hold and our share of it is
    /// complete. One generation at a time: a newer one waits until revokes finish.
    pub(crate) fn try_apply(&mut self, now: Instant) {
        if self.fenced || self.stopping.is_some() || !self.revoking.is_empty() {
            return;
        }
        let (Some(id), Some(gen)) = (self.id, &self.gen_seen) else {
            return;
        };
        if self.applied.is_some_and(|a| a >= gen.generation) {
            return;
        }
        let target: BTreeSet<PartitionId> = match gen.members.get(&id) {
            // Not for this instance: a predecessor's share, or none at all.
            Some(m) if m.token != self.session => BTreeSet::new(),
            None => BTreeSet::new(),
            Some(m) if self.my_share[m.slot as usize & 1].complete_digest() != Some(m.digest) => {
                return
            }
            // Complete with `m.digest` (checked above), and assemble() checks the content.
            Some(m) => match self.my_share[m.slot as usize & 1].assemble() {
                Some(share) => share,
                None => return, // the content does not match its digest
            },
        };
        let generation = gen.generation;
        let phase = gen.phase;
        let added: BTreeSet<_> = target.difference(&self.held).cloned().collect();
        let removed: BTreeSet<_> = self.held.difference(&target).cloned().collect();
        for p in &added {
            self.act(Action::Subscribe(p.clone()));
        }
        let deadline = now + self.config.revoke_timeout;
        for p in &removed {
            self.act(Action::Unsubscribe(p.clone()));
            self.revoking.insert(p.clone(), deadline);
        }
        if !removed.is_empty() {
            self.timers.set_earliest(Timer::Revoke, deadline);
        }
        self.held.extend(added.iter().cloned());
        if !added.is_empty() || !removed.is_empty() || self.applied.is_none() {
            self.emit(Event::AssignmentChanged {
                generation,
                assigned: added,
                revoked: removed,
                lost: BTreeSet::new(),
                assignment: target,
            });
        }
        self.applying = Some((generation, phase));
        if self.revoking.is_empty() {
            self.finish_apply(now);
        }
    }

    /// Every revoke of the generation being applied is done: report it.
    fn finish_apply(&mut self, now: Instant) {
        let Some((g, phase)) = self.applying.take() else {
            return;
        };
        self.applied = Some(g);
        self.applied_phase = phase;
        if self.draining && self.held.is_empty() && !self.drained_told {
            self.drained_told = true;
            self.emit(Event::Drained);
        }
        self.renew_lease(now);
        self.try_apply(now);
    }

    pub(crate) fn on_unsubscribed(&mut self, now: Instant, p: PartitionId) {
        if self.revoking.remove(&p) {
            self.held.remove(&p);
            self.after_revoke(now);
        }
    }

    pub(crate) fn on_revoke_deadline(&mut self, now: Instant) {
        for p in self.revoking.due(now) {
            self.revoking.remove(&p);
            self.held.remove(&p);
            self.emit(Event::Warning(Warning::RevokeTimedOut(p)));
        }
        self.after_revoke(now);
    }

    fn after_revoke(&mut self, now: Instant) {
        match self.revoking.earliest() {
            Some(d) => self.timers.set(Timer::Revoke, d),
            None => {
                self.timers.clear(Timer::Revoke);
                if self.stopping.is_some() {
                    self.stop_after_revokes(now);
                } else {
                    self.finish_apply(now);
                }
            }
        }
    }

    /// Drops every partition at once (fencing, lost ID): no waiting for confirmations. The
    /// partitions are *lost* ([`Action::Lose`]); those whose revoke was under way were told
    /// already and are reported as lost too.
    pub(crate) fn drop_all(&mut self) {
        let revoking = std::mem::take(&mut self.revoking);
        self.applying = None;
        self.timers.clear(Timer::Revoke);
        if self.held.is_empty() {
            return;
        }
        let removed = std::mem::take(&mut self.held);
        for p in removed.iter().filter(|p| !revoking.contains(p)) {
            self.act(Action::Lose(p.clone())); // the others were asked already
        }
        self.emit(Event::AssignmentChanged {
            generation: self.applied.unwrap_or_default(),
            assigned: BTreeSet::new(),
            revoked: BTreeSet::new(),
            lost: removed,
            assignment: BTreeSet::new(),
        });
    }
}
