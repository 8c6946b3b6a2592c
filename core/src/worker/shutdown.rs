//! Graceful stop: revoke everything, step down, release or mark the lease, stop.

use super::{Purpose, Timer, WorkerMachine};
use crate::codec::{self, LeaseValue};
use crate::{Action, Bucket, Event, Instant, KvOp, Warning};

/// A stop in progress.
#[derive(Clone, Debug)]
pub(crate) struct Stopping {
    /// Delete the lease (no restart follows) instead of marking it departing.
    pub(crate) final_stop: bool,
    /// Writes still waiting for an answer.
    pub(crate) outstanding: usize,
    /// The last writes were sent.
    pub(crate) released: bool,
    /// Nothing more will happen.
    pub(crate) done: bool,
}

impl WorkerMachine {
    pub(crate) fn on_drain(&mut self, now: Instant) {
        if self.stopping.is_some() || self.draining {
            return;
        }
        self.draining = true;
        if self.applied.is_some() && self.held.is_empty() {
            self.drained_told = true;
            self.emit(Event::Drained);
        }
        self.renew_lease(now);
    }

    pub(crate) fn on_stop(&mut self, now: Instant, final_stop: bool) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Stopping {
            final_stop,
            outstanding: 0,
            released: false,
            done: false,
        });
        self.timers
            .set(Timer::Shutdown, now + self.config.shutdown_timeout);
        for t in [
            Timer::Claim,
            Timer::LeaderCheck,
            Timer::Planner,
            Timer::Source,
            Timer::Refresh,
            Timer::Alert,
        ] {
            self.timers.clear(t);
        }
        self.applying = None;
        let deadline = now + self.config.revoke_timeout;
        let to_revoke: Vec<_> = self
            .held
            .iter()
            .filter(|p| !self.revoking.contains(p))
            .cloned()
            .collect();
        for p in to_revoke {
            self.act(Action::Unsubscribe(p.clone()));
            self.revoking.insert(p, deadline);
        }
        if self.revoking.is_empty() {
            self.stop_after_revokes(now);
        } else {
            self.timers.set_earliest(Timer::Revoke, deadline);
            if !self.held.is_empty() {
                let removed = self.held.clone();
                self.emit(Event::AssignmentChanged {
                    generation: self.applied.unwrap_or_default(),
                    assigned: Default::default(),
                    revoked: removed,
                    lost: Default::default(),
                    assignment: Default::default(),
                });
            }
        }
    }

    /// Everything is revoked: give up leadership and the lease.
    pub(crate) fn stop_after_revokes(&mut self, now: Instant) {
        // Wait for a renewal in flight: its new revision is the one the last write must expect.
        if self.stopping.as_ref().is_none_or(|s| s.released) || self.renew_in_flight.is_some() {
            return;
        }
        let s = self.stopping.as_mut().expect("checked");
        s.released = true;
        let final_stop = s.final_stop || self.draining;
        let mut outstanding = 0;
        if let Some(l) = self.leading.as_ref() {
            let revision = l.leader_rev;
            self.step_down(now);
            self.send_kv(
                Bucket::Leases,
                KvOp::Delete {
                    key: "leader".into(),
                    revision: Some(revision),
                },
                Purpose::Stop,
            );
            outstanding += 1;
        }
        if let (Some(id), Some(revision)) = (self.id, self.lease_rev) {
            let key = format!("worker.{id}");
            let op = if final_stop {
                KvOp::Delete {
                    key,
                    revision: Some(revision),
                }
            } else {
                let value = codec::encode(&LeaseValue {
                    departing: true,
                    loads: None, // holds nothing
                    ..self.lease_value()
                });
                KvOp::Update {
                    key,
                    value,
                    revision,
                }
            };
            self.send_kv(Bucket::Leases, op, Purpose::Stop);
            outstanding += 1;
        }
        let s = self.stopping.as_mut().expect("stopping");
        s.outstanding = outstanding;
        if outstanding == 0 {
            self.finish_stop();
        }
    }

    pub(crate) fn on_stop_result(&mut self) {
        let Some(s) = self.stopping.as_mut() else {
            return;
        };
        s.outstanding = s.outstanding.saturating_sub(1);
        if s.outstanding == 0 && s.released {
            self.finish_stop();
        }
    }

    pub(crate) fn on_shutdown_deadline(&mut self, now: Instant) {
        if self.stopping.as_ref().is_some_and(|s| !s.done) {
            self.emit(Event::Warning(Warning::ShutdownTimedOut));
            self.renew_in_flight = None;
            for p in self.revoking.take() {
                self.held.remove(&p);
            }
            self.stop_after_revokes(now);
            self.finish_stop();
        }
    }

    fn finish_stop(&mut self) {
        let Some(s) = self.stopping.as_mut() else {
            return;
        };
        if s.done {
            return;
        }
        s.done = true;
        for w in [self.leader_watch.take(), self.assign_watch.take()]
            .into_iter()
            .flatten()
        {
            self.act(Action::Unwatch(w));
        }
        self.timers = Default::default();
        self.id = None;
    }
}
