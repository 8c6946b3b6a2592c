//! The worker's timer table: one optional deadline per timer kind.

use crate::Instant;

/// Every timer the worker may arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Retry the ID claim.
    Claim,
    /// Renew the worker lease.
    Heartbeat,
    /// Strict: drop everything; Relaxed: enter degraded mode. `lease_ttl - safety_margin` after
    /// the last successful renewal was sent.
    Fence,
    /// Leader lease: stop leading if not renewed in time.
    LeaderFence,
    /// Leader lease: the next renewal, or a retry of one that failed or went unanswered.
    LeaderRenew,
    /// Follower: the leader lease was not renewed for a TTL; try to take over.
    LeaderCheck,
    /// Earliest revoke deadline.
    Revoke,
    /// Next degraded-mode alert level.
    Alert,
    /// Leader: the planner's next decision (windows, grace, retries, liveness).
    Planner,
    /// Leader: retry listing partitions.
    Source,
    /// Follower: retry asking the leader for a refresh.
    Refresh,
    /// Bound on a graceful stop.
    Shutdown,
}

const COUNT: usize = Timer::Shutdown as usize + 1;

/// A tiny table of deadlines keyed by [`Timer`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers([Option<Instant>; COUNT]);

impl Timers {
    /// Arms (or re-arms) `t` at `at`.
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.0[t as usize] = Some(at);
    }

    /// Arms `t` at `at` unless it is already armed earlier.
    pub(crate) fn set_earliest(&mut self, t: Timer, at: Instant) {
        let slot = &mut self.0[t as usize];
        if slot.is_none_or(|cur| at < cur) {
            *slot = Some(at);
        }
    }

    /// Disarms `t`.
    pub(crate) fn clear(&mut self, t: Timer) {
        self.0[t as usize] = None;
    }

    /// The deadline of `t`, if armed.
    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        self.0[t as usize]
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Disarms and returns every timer due at `now`, in table order.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = Vec::new();
        for (i, slot) in self.0.iter_mut().enumerate() {
            if slot.is_some_and(|at| at <= now) {
                *slot = None;
                due.push(ALL[i]);
            }
        }
        due
    }
}

const ALL: [Timer; COUNT] = [
    Timer::Claim,
    Timer::Heartbeat,
    Timer::Fence,
    Timer::LeaderFence,
    Timer::LeaderRenew,
    Timer::LeaderCheck,
    Timer::Revoke,
    Timer::Alert,
    Timer::Planner,
    Timer::Source,
    Timer::Refresh,
    Timer::Shutdown,
];
