//! The leader lease: following it, acquiring it, renewing it, stepping down.

use super::leader::Leadership;
use super::{Purpose, Timer, WorkerMachine};
use crate::codec::{self, LeaderValue};
use crate::{Bucket, Entry, Epoch, Event, Instant, KvOp, KvResult, Operation, WorkerId};

/// The leader lease as this worker last saw it.
#[derive(Clone, Debug)]
pub(crate) struct LeaderSeen {
    /// Revision of the last write seen.
    pub(crate) revision: u64,
    /// The leader's ID.
    pub(crate) worker: WorkerId,
}

const LEADER_KEY: &str = "leader";

impl WorkerMachine {
    /// Watches the leader lease and tries to take it.
    pub(crate) fn start_election(&mut self) {
        self.leader_watch = Some(self.watch(Bucket::Leases, vec![LEADER_KEY.into()]));
        self.try_acquire(None);
    }

    pub(crate) fn stop_election(&mut self) {
        if let Some(w) = self.leader_watch.take() {
            self.act(crate::Action::Unwatch(w));
        }
        self.leader_seen = None;
        self.timers.clear(Timer::LeaderCheck);
    }

    fn leader_value(&self) -> Vec<u8> {
        codec::encode(&LeaderValue {
            v: codec::VERSION,
            worker: self.id.expect("leader candidates have an ID"),
            token: self.session,
        })
    }

    /// Creates the leader key, or takes it over by CAS from a leader that stopped renewing.
    fn try_acquire(&mut self, takeover: Option<u64>) {
        if self.acquiring
            || self.leading.is_some()
            || self.stopping.is_some()
            || self.fenced
            || self.id.is_none()
        {
            return;
        }
        self.acquiring = true;
        let value = self.leader_value();
        let key = LEADER_KEY.to_owned();
        let op = match takeover {
            Some(revision) => KvOp::Update {
                key,
                value,
                revision,
            },
            None => KvOp::Create { key, value },
        };
        self.send_kv(Bucket::Leases, op, Purpose::LeaderAcquire);
    }

    pub(crate) fn on_leader_entry(&mut self, now: Instant, entry: Entry) {
        match entry.operation {
            Operation::Put => {
                let value = match codec::decode::<LeaderValue>("leader", &entry.value) {
                    Ok(v) => v,
                    Err(e) => {
                        self.emit(Event::Warning(crate::Warning::Undecodable {
                            key: entry.key,
                            reason: e.to_string(),
                        }));
                        return;
                    }
                };
                let ours = value.token == self.session;
                if let Some(l) = &mut self.leading {
                    if ours {
                        l.leader_rev = l.leader_rev.max(entry.revision);
                    } else {
                        self.step_down(now);
                    }
                }
                self.leader_seen = Some(LeaderSeen {
                    revision: entry.revision,
                    worker: value.worker,
                });
                if self.leading.is_none() {
                    // Take over if it is not renewed for a TTL (counted on our clock from now).
                    self.timers.set(
                        Timer::LeaderCheck,
                        now + self.config.lease_ttl + self.stagger(),
                    );
                }
            }
            Operation::Delete | Operation::Purge => {
                self.leader_seen = None;
                if self.leading.is_some() {
                    self.step_down(now);
                }
                self.try_acquire(None);
            }
        }
    }

    /// A small per-ID delay so followers do not all race for an expired lease at once.
    fn stagger(&self) -> std::time::Duration {
        let rank = self
            .id
            .map_or(0, |id| id.0.saturating_sub(self.config.id_min)) as u64;
        std::time::Duration::from_millis(5 * (rank % 64))
    }

    /// Campaigns again once unfenced: a take-over check or the lease's expiry (its purge
    /// marker) that came while this worker was fenced was refused, and nothing else would
    /// retry it — a fleet whose leader died during a KV outage would stay without one.
    pub(crate) fn resume_election(&mut self, now: Instant) {
        if self.leader_watch.is_none() || self.leading.is_some() {
            return;
        }
        match self.timers.get(Timer::LeaderCheck) {
            Some(at) if at > now && self.leader_seen.is_some() => {}
            _ => self.on_leader_check(),
        }
    }

    pub(crate) fn on_leader_check(&mut self) {
        let takeover = self.leader_seen.as_ref().map(|l| l.revision);
        self.try_acquire(takeover);
    }

    pub(crate) fn on_acquire_result(&mut self, now: Instant, result: KvResult) {
        self.acquiring = false;
        match result {
            KvResult::Written { revision } => self.become_leader(now, revision),
            KvResult::AlreadyExists => {
                // Someone leads; the watch tells who. Arm a check in case the watch is slow.
                self.timers
                    .set_earliest(Timer::LeaderCheck, now + self.config.lease_ttl);
            }
            _ => {
                // Unknown or lost race: read the key to learn the truth.
                self.send_kv(
                    Bucket::Leases,
                    KvOp::Get {
                        key: LEADER_KEY.into(),
                    },
                    Purpose::LeaderReread,
                );
            }
        }
    }

    pub(crate) fn on_leader_reread(&mut self, now: Instant, result: KvResult) {
        match result {
            KvResult::Value(Some(e)) => {
                let ours = codec::decode::<LeaderValue>("leader", &e.value)
                    .is_ok_and(|v| v.token == self.session);
                match &mut self.leading {
                    Some(l) if ours => l.leader_rev = e.revision,
                    Some(_) => self.step_down(now),
                    // Our doubtful acquire landed: we lead since that revision. A later write by
                    // us would have a higher revision, which is fine as an epoch too.
                    None if ours => self.become_leader(now, e.revision),
                    None => {
                        self.timers
                            .set_earliest(Timer::LeaderCheck, now + self.config.lease_ttl);
                    }
                }
            }
            KvResult::Value(None) => {
                if self.leading.is_some() {
                    self.step_down(now);
                }
                self.try_acquire(None);
            }
            _ => {
                self.timers
                    .set_earliest(Timer::LeaderCheck, now + self.config.heartbeat_interval);
            }
        }
    }

    fn become_leader(&mut self, now: Instant, revision: u64) {
        if self.stopping.is_some() || self.id.is_none() {
            return;
        }
        if let Some(l) = &mut self.leading {
            // A second answer about the same acquisition (a re-read raced the write's result).
            l.leader_rev = l.leader_rev.max(revision);
            return;
        }
        let epoch = Epoch(revision);
        self.timers.clear(Timer::LeaderCheck);
        self.leading = Some(Box::new(Leadership::new(epoch, revision, now)));
        self.leader_seen = Some(LeaderSeen {
            revision,
            worker: self.id.expect("checked"),
        });
        self.timers.set(
            Timer::LeaderFence,
            now + (self.config.lease_ttl - self.config.safety_margin),
        );
        self.timers.set(
            Timer::LeaderRenew,
            now + leader_renew_interval(&self.config),
        );
        self.emit(Event::LeadershipChanged {
            is_leader: true,
            epoch,
        });
        self.lead(now, |l, cx| l.start(cx));
    }

    /// Renews the leader lease by CAS (see [`leader_renew_interval`] for how often), or checks
    /// on the renewal in flight: one unanswered for [`leader_retry_delay`] may be lost, so it
    /// is sent again (a duplicate that lands fails its CAS and is sorted out by a re-read).
    pub(crate) fn renew_leader(&mut self, now: Instant) {
        let retry = leader_retry_delay(&self.config);
        let Some(l) = &mut self.leading else { return };
        if let Some(sent) = l.renew_in_flight.filter(|sent| now < *sent + retry) {
            self.timers.set(Timer::LeaderRenew, sent + retry);
            return;
        }
        l.renew_in_flight = Some(now);
        let (revision, epoch) = (l.leader_rev, l.epoch);
        let value = self.leader_value();
        self.send_kv(
            Bucket::Leases,
            KvOp::Update {
                key: LEADER_KEY.into(),
                value,
                revision,
            },
            Purpose::LeaderRenew { sent: now, epoch },
        );
        // Look again if no answer came by then; a successful answer re-arms the regular renewal.
        self.timers.set(Timer::LeaderRenew, now + retry);
    }

    pub(crate) fn on_leader_renew(
        &mut self,
        now: Instant,
        sent: Instant,
        epoch: Epoch,
        result: KvResult,
    ) {
        let Some(l) = self.leading.as_mut().filter(|l| l.epoch == epoch) else {
            return;
        };
        if l.renew_in_flight == Some(sent) {
            l.renew_in_flight = None;
        }
        match result {
            KvResult::Written { revision } => {
                l.leader_rev = revision;
                let fence = sent + (self.config.lease_ttl - self.config.safety_margin);
                // An older renewal answering late must not pull the fence back.
                if self
                    .timers
                    .get(Timer::LeaderFence)
                    .is_none_or(|t| t < fence)
                {
                    self.timers.set(Timer::LeaderFence, fence);
                    self.timers.set(
                        Timer::LeaderRenew,
                        sent + leader_renew_interval(&self.config),
                    );
                }
            }
            KvResult::WrongRevision => {
                // The renewal check still armed sends the next one, from the revision re-read.
                self.send_kv(
                    Bucket::Leases,
                    KvOp::Get {
                        key: LEADER_KEY.into(),
                    },
                    Purpose::LeaderReread,
                );
            }
            other => {
                self.warn_kv(LEADER_KEY, &other);
                let retry = now + leader_retry_delay(&self.config);
                self.timers.set_earliest(Timer::LeaderRenew, retry);
            }
        }
    }

    /// The leader lease was not renewed in time: stop leading at once.
    pub(crate) fn on_leader_fence(&mut self, now: Instant) {
        if self.leading.is_some() {
            self.step_down(now);
        }
    }

    /// Stops leading (if leading): forgets the leader role's watches and requests.
    pub(crate) fn step_down(&mut self, now: Instant) {
        let Some(l) = self.leading.take() else { return };
        for w in l.watches() {
            self.act(crate::Action::Unwatch(w));
        }
        self.timers.clear(Timer::LeaderFence);
        self.timers.clear(Timer::LeaderRenew);
        self.timers.clear(Timer::Planner);
        self.timers.clear(Timer::Source);
        self.emit(Event::LeadershipChanged {
            is_leader: false,
            epoch: l.epoch,
        });
        if self.stopping.is_none() && self.id.is_some() {
            self.timers.set_earliest(
                Timer::LeaderCheck,
                now + self.config.lease_ttl + self.stagger(),
            );
        }
    }
}

/// How often the leader renews the leader lease: `lease_ttl - safety_margin -
/// heartbeat_interval / 2` (4 s with the defaults), but at least every heartbeat.
///
/// The leader lease used to be renewed every heartbeat, next to the worker lease: two writes per
/// heartbeat. Renewing it only as often as its expiry requires brings the leader to 1.5 writes
/// per heartbeat with the defaults (30 worker-lease + 15 leader-lease writes a minute).
///
/// Fencing does not depend on this interval. The leader stops leading `lease_ttl -
/// safety_margin` after *sending* its last successful renewal (`Timer::LeaderFence`, on its own
/// clock), while nobody else can take the lease before it has gone unrenewed for `lease_ttl`: the
/// server expires it `lease_ttl` after the write landed (no earlier than it was sent), and
/// followers take it over by CAS only `lease_ttl` after the last renewal they saw, on their
/// clocks. Both deadlines count from the last successful renewal, however far apart renewals
/// are; a deposed leader's late commit fails its CAS on `gen` in any case. What the interval
/// trades is slack: the renewal goes out `heartbeat_interval / 2` before the fence would fire,
/// and a failed or unanswered one is retried every [`leader_retry_delay`] until then.
pub(crate) fn leader_renew_interval(config: &crate::Config) -> std::time::Duration {
    let hb = config.heartbeat_interval;
    (config.lease_ttl - config.safety_margin)
        .saturating_sub(hb / 2)
        .max(hb)
}

/// How long the leader waits for the answer to a renewal (or after a failed one) before sending
/// another: a quarter heartbeat.
pub(crate) fn leader_retry_delay(config: &crate::Config) -> std::time::Duration {
    config.heartbeat_interval / 4
}
