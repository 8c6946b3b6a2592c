//! Claiming a worker ID, renewing its lease, fencing, and degraded-mode alerts.

use super::{Purpose, Timer, WorkerMachine};
use crate::codec::{self, LeaseValue};
use crate::{
    AlertLevel, Bucket, Event, HandoffMode, Instant, KvOp, KvResult, Operation, Warning, WorkerId,
};
use std::collections::BTreeMap;

/// How long a lease renewal may stay unanswered before another is sent.
///
/// Renewals are CAS writes on the revision the previous one returned, so they cannot be
/// pipelined: a second renewal on the same revision fails as soon as the first lands, and the
/// re-read it causes costs another round trip. On a link whose round trip exceeds a heartbeat,
/// sending one every heartbeat regardless would make every other renewal fail. So a duplicate is
/// sent only once the first may be lost: after half the fence window (`lease_ttl -
/// safety_margin`), which leaves the other half for the duplicate to land; never sooner than a
/// heartbeat. A renewal that answers late triggers the next one at once (`renew_again`).
pub(crate) fn renewal_presumed_lost(config: &crate::Config) -> std::time::Duration {
    ((config.lease_ttl - config.safety_margin) / 2).max(config.heartbeat_interval)
}

/// What the claimer learned about one ID.
enum Slot {
    Live,
    Departing(u64),
}

impl WorkerMachine {
    /// Starts (or restarts) claiming an ID: list the leases, then pick.
    pub(crate) fn start_claim(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.send_kv(
            Bucket::Leases,
            KvOp::List {
                prefix: "worker.".into(),
            },
            Purpose::ClaimList,
        );
    }

    pub(crate) fn on_claim_list(&mut self, now: Instant, result: KvResult) {
        let entries = match result {
            KvResult::Entries(e) => e,
            other => {
                self.warn_kv("worker.*", &other);
                self.timers
                    .set(Timer::Claim, now + self.config.heartbeat_interval);
                return;
            }
        };
        let mut slots = BTreeMap::new();
        for e in &entries {
            let Some(id) = codec::parse_lease_key(&e.key) else {
                continue;
            };
            if e.operation != Operation::Put {
                continue;
            }
            match codec::decode::<LeaseValue>("lease", &e.value) {
                Ok(v) if v.token == self.session => {
                    // A claim of ours whose answer was lost landed after all; its lease counts
                    // from the earliest moment it can have been written.
                    let sent = self.claim_sent.unwrap_or(now);
                    return self.claimed(now, id, e.revision, sent);
                }
                Ok(v) if v.departing => {
                    slots.insert(id, Slot::Departing(e.revision));
                }
                _ => {
                    slots.insert(id, Slot::Live);
                }
            }
        }
        match self.pick_id(&slots) {
            Some((id, revision)) => {
                let value = codec::encode(&self.lease_value());
                let key = format!("worker.{id}");
                let op = match revision {
                    Some(revision) => KvOp::Update {
                        key,
                        value,
                        revision,
                    },
                    None => KvOp::Create { key, value },
                };
                self.claim_sent.get_or_insert(now);
                self.send_kv(Bucket::Leases, op, Purpose::ClaimWrite { id, sent: now });
            }
            None => {
                self.emit(Event::Warning(Warning::IdRangeExhausted {
                    min: self.config.id_min,
                    max: self.config.id_max,
                }));
                self.timers.set(Timer::Claim, now + self.config.lease_ttl);
            }
        }
    }

    /// Preferred ID first, then the ID this worker lost (each if free, or departing: taken
    /// over by CAS); without a preferred ID, the lowest departing lease (a restart resumes its
    /// predecessor's share); then a free ID (see [`WorkerMachine::pick_free`]).
    fn pick_id(&mut self, slots: &BTreeMap<WorkerId, Slot>) -> Option<(WorkerId, Option<u64>)> {
        for wanted in [self.config.preferred_id, self.previous_id]
            .into_iter()
            .flatten()
        {
            match slots.get(&wanted) {
                None => return Some((wanted, None)),
                Some(Slot::Departing(rev)) => return Some((wanted, Some(*rev))),
                Some(Slot::Live) => {}
            }
        }
        if self.config.preferred_id.is_none() {
            if let Some((id, Slot::Departing(rev))) =
                slots.iter().find(|(_, s)| matches!(s, Slot::Departing(_)))
            {
                return Some((*id, Some(*rev)));
            }
        }
        self.pick_free(slots).map(|id| (id, None))
    }

    /// The lowest free ID on the first two attempts (two workers starting together get the two
    /// lowest); after further lost races, one drawn at random from the lowest free IDs, a
    /// window that doubles with every loss (8, 16, 32, ...). Many workers starting
    /// together then spread over the free IDs in a few rounds instead of all racing for the
    /// same one each round, which costs every loser a listing per ID taken (W² / 2 requests).
    fn pick_free(&mut self, slots: &BTreeMap<WorkerId, Slot>) -> Option<WorkerId> {
        let mut free = (self.config.id_min..=self.config.id_max)
            .map(WorkerId)
            .filter(|id| !slots.contains_key(id));
        if self.claim_attempts < 2 {
            return free.next();
        }
        let window = 8usize << (self.claim_attempts - 2).min(20);
        let candidates: Vec<WorkerId> = free.take(window).collect();
        if candidates.is_empty() {
            return None;
        }
        let i = self.rng.below(candidates.len() as u64) as usize;
        Some(candidates[i])
    }

    pub(crate) fn on_claim_write(
        &mut self,
        now: Instant,
        id: WorkerId,
        sent: Instant,
        result: KvResult,
    ) {
        match result {
            KvResult::Written { revision } => self.claimed(now, id, revision, sent),
            KvResult::AlreadyExists | KvResult::WrongRevision | KvResult::TimedOut => {
                // Someone was faster, or the outcome is unknown: look again (a landed claim of
                // ours is recognised by its token).
                self.claim_attempts += 1;
                if self.claim_attempts > 3 * (self.config.id_max - self.config.id_min + 1) {
                    self.claim_attempts = 0;
                    self.timers
                        .set(Timer::Claim, now + self.config.heartbeat_interval);
                } else {
                    self.start_claim();
                }
            }
            other => {
                self.warn_kv(&format!("worker.{id}"), &other);
                self.timers
                    .set(Timer::Claim, now + self.config.heartbeat_interval);
            }
        }
    }

    fn claimed(&mut self, now: Instant, id: WorkerId, revision: u64, sent: Instant) {
        self.id = Some(id);
        self.claim_attempts = 0;
        self.claim_sent = None;
        self.lease_rev = Some(revision);
        self.lease_ok_sent = Some(sent);
        self.fenced = false;
        self.emit(Event::IdClaimed(id));
        // The lease counts from when the claim was sent: renew a heartbeat after that (at once
        // if the claim's round trip took longer), not a heartbeat after its answer.
        self.timers.set(
            Timer::Heartbeat,
            (sent + self.config.heartbeat_interval).max(now),
        );
        self.arm_fence();
        self.start_following();
        self.start_election();
        self.update_degraded(now);
    }

    /// Our lease as it should read now.
    pub(crate) fn lease_value(&self) -> LeaseValue {
        LeaseValue {
            v: codec::VERSION,
            token: self.session,
            capacity: self.config.capacity,
            applied: self.applied,
            departing: false,
            draining: self.draining,
            loads: self.load_report(),
        }
    }

    pub(crate) fn on_heartbeat(&mut self, now: Instant) {
        self.timers
            .set(Timer::Heartbeat, now + self.config.heartbeat_interval);
        self.renew_lease(now);
    }

    /// Renews our lease by CAS now (or right after the renewal in flight).
    pub(crate) fn renew_lease(&mut self, now: Instant) {
        let (Some(id), Some(revision)) = (self.id, self.lease_rev) else {
            return;
        };
        // A stopping worker keeps its lease alive while its revokes finish.
        if self.stopping.as_ref().is_some_and(|s| s.released) {
            return;
        }
        // One renewal at a time (a CAS cannot be pipelined), unless the one in flight may be
        // lost: waiting for its timeout could let the lease lapse.
        if let Some(sent) = self.renew_in_flight {
            let lost_at = sent + renewal_presumed_lost(&self.config);
            if now < lost_at {
                // Renew again when it answers, or as soon as it may be lost (not at the next
                // heartbeat, which may come after the fence: one lost renewal cost the lease).
                self.renew_again = true;
                self.timers.set_earliest(Timer::Heartbeat, lost_at);
                return;
            }
        }
        self.renew_in_flight = Some(now);
        self.renew_again = false;
        let value = codec::encode(&self.lease_value());
        self.send_kv(
            Bucket::Leases,
            KvOp::Update {
                key: format!("worker.{id}"),
                value,
                revision,
            },
            Purpose::LeaseRenew { sent: now },
        );
    }

    pub(crate) fn on_renew_result(&mut self, now: Instant, sent: Instant, result: KvResult) {
        if self.renew_in_flight == Some(sent) {
            self.renew_in_flight = None;
        }
        match result {
            KvResult::Written { revision } => {
                self.lease_rev = Some(revision);
                self.renewed(now, sent);
            }
            KvResult::WrongRevision => {
                // Lost to someone else, or a timed-out renewal of ours landed: re-read.
                let Some(id) = self.id else { return };
                self.send_kv(
                    Bucket::Leases,
                    KvOp::Get {
                        key: format!("worker.{id}"),
                    },
                    Purpose::LeaseReread,
                );
                return;
            }
            other => {
                if let Some(id) = self.id {
                    self.warn_kv(&format!("worker.{id}"), &other);
                }
            }
        }
        if self.renew_again && self.renew_in_flight.is_none() {
            self.renew_lease(now);
        }
        if self.stopping.is_some() && self.revoking.is_empty() {
            self.stop_after_revokes(now); // it was waiting for this renewal
        }
    }

    pub(crate) fn on_lease_reread(&mut self, now: Instant, result: KvResult) {
        match result {
            KvResult::Value(Some(e))
                if codec::decode::<LeaseValue>("lease", &e.value)
                    .is_ok_and(|v| v.token == self.session) =>
            {
                // Still ours; carry on from the revision we now know.
                self.lease_rev = Some(e.revision);
                self.renew_lease(now);
            }
            KvResult::Value(_) => self.lose_id(now),
            _ => {} // unknown: the next heartbeat tries again; the fence timer bounds the doubt
        }
    }

    /// Our lease is gone (it expired, or someone else holds our ID): drop everything and claim
    /// again, the lost ID first.
    fn lose_id(&mut self, now: Instant) {
        let Some(id) = self.id.take() else { return };
        self.previous_id = Some(id);
        self.emit(Event::Warning(Warning::IdLost(id)));
        self.drop_all();
        self.step_down(now);
        self.stop_following();
        self.stop_election();
        self.lease_rev = None;
        self.lease_ok_sent = None;
        self.applied = None;
        self.session = self.rng.next_u64();
        self.timers.clear(Timer::Heartbeat);
        self.timers.clear(Timer::Fence);
        self.start_claim();
    }

    fn renewed(&mut self, now: Instant, sent: Instant) {
        if self.lease_ok_sent.is_none_or(|t| sent > t) {
            self.lease_ok_sent = Some(sent);
        }
        self.arm_fence();
        if self.fenced {
            self.fenced = false;
            self.try_apply(now);
            self.resume_election(now);
        }
        self.update_degraded(now);
    }

    fn arm_fence(&mut self) {
        if let Some(sent) = self.lease_ok_sent {
            let at = sent + (self.config.lease_ttl - self.config.safety_margin);
            self.timers.set(Timer::Fence, at);
        }
    }

    /// The lease was not renewed for `lease_ttl - safety_margin`.
    pub(crate) fn on_fence_deadline(&mut self, now: Instant) {
        if self.config.handoff == HandoffMode::Strict && !self.fenced {
            self.fenced = true;
            self.emit(Event::Warning(Warning::Fenced));
            self.drop_all();
            self.applied = None;
            if self.stopping.is_some() {
                self.stop_after_revokes(now);
            }
        }
        self.update_degraded(now);
    }

    pub(crate) fn on_connection(&mut self, now: Instant, up: bool) {
        self.connected = up;
        self.update_degraded(now);
    }

    fn lease_overdue(&self, now: Instant) -> bool {
        self.timers.get(Timer::Fence).is_none_or(|at| at <= now) && self.id.is_some()
    }

    /// Enters or leaves degraded mode from the connection flag, fencing and renewal state.
    pub(crate) fn update_degraded(&mut self, now: Instant) {
        let degraded =
            !self.connected || (self.id.is_some() && (self.fenced || self.lease_overdue(now)));
        match (degraded, self.degraded_since) {
            (true, None) => {
                self.degraded_since = Some(now);
                self.alert_level = None;
                self.on_alert(now);
            }
            (false, Some(_)) => {
                self.degraded_since = None;
                self.alert_level = None;
                self.timers.clear(Timer::Alert);
            }
            _ => {}
        }
    }

    /// Raises the alert levels that are due and arms the next.
    pub(crate) fn on_alert(&mut self, now: Instant) {
        let Some(since) = self.degraded_since else {
            return;
        };
        let degraded_for = now - since;
        let levels = [
            AlertLevel::Info,
            AlertLevel::Warn,
            AlertLevel::Error,
            AlertLevel::Critical,
        ];
        let next = self.alert_level.map_or(0, |l| l + 1);
        let mut reached = None;
        for i in next..4 {
            if degraded_for >= self.config.alert_after[i] {
                reached = Some(i);
            }
        }
        if let Some(i) = reached {
            self.alert_level = Some(i);
            self.emit(Event::Alert {
                level: levels[i],
                degraded_for,
            });
        }
        let following = self.alert_level.map_or(0, |l| l + 1);
        if following < 4 {
            self.timers
                .set(Timer::Alert, since + self.config.alert_after[following]);
        }
    }
}
