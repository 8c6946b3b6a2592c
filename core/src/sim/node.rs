//! One simulated machine: its worker process (if any), its clock and what the harness
//! remembers about it across restarts.

use crate::{Config, Generation, Instant, PartitionId, State, WorkerId, WorkerMachine};
use std::collections::BTreeSet;
use std::time::Duration;

/// What a node's process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeStatus {
    /// A worker process runs.
    Running,
    /// The process crashed (or was killed); [`crate::sim::Sim::restart`] starts a new one.
    Crashed,
    /// The worker stopped gracefully and its process exited.
    Stopped,
}

/// A machine clock whose rate may be skewed: local time runs at `1 + ppm / 1e6` times real time.
///
/// Changing the rate keeps the clock continuous (local time never jumps or goes back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeClock {
    ppm: i32,
    real_base: Instant,
    local_base: Instant,
}

const MILLION: i128 = 1_000_000;

impl Default for NodeClock {
    fn default() -> Self {
        NodeClock {
            ppm: 0,
            real_base: Instant::ZERO,
            local_base: Instant::ZERO,
        }
    }
}

impl NodeClock {
    /// The rate skew in parts per million (positive: the clock runs fast).
    pub fn ppm(&self) -> i32 {
        self.ppm
    }

    /// Local time at real time `real`.
    pub fn local(&self, real: Instant) -> Instant {
        if self.ppm == 0 {
            return self.local_base + (real - self.real_base); // the same, without i128 division
        }
        let elapsed = (real - self.real_base).as_nanos() as i128;
        let scaled = elapsed * (MILLION + self.ppm as i128) / MILLION;
        self.local_base + Duration::from_nanos(scaled as u64)
    }

    /// The earliest real time at which local time reaches `local` (now, if it already has).
    pub fn real(&self, local: Instant, now: Instant) -> Instant {
        if local <= self.local(now) {
            return now;
        }
        if self.ppm == 0 {
            return (self.real_base + (local - self.local_base)).max(now);
        }
        let ahead = (local - self.local_base).as_nanos() as i128;
        let rate = MILLION + self.ppm as i128;
        let real = (ahead * MILLION + rate - 1) / rate; // ceil: local(real) >= local
        (self.real_base + Duration::from_nanos(real as u64)).max(now)
    }

    /// Changes the rate from real time `now` on; `ppm` is clamped to ±100,000.
    pub fn set_ppm(&mut self, now: Instant, ppm: i32) {
        self.local_base = self.local(now);
        self.real_base = now;
        self.ppm = ppm.clamp(-100_000, 100_000);
    }
}

/// One machine of the simulated cluster.
#[derive(Debug)]
pub(crate) struct Node {
    /// The configuration every incarnation starts from (token and preferred ID are filled in).
    pub(crate) base: Config,
    pub(crate) worker: Option<WorkerMachine>,
    pub(crate) status: NodeStatus,
    /// Incremented for every new process.
    pub(crate) incarnation: u32,
    /// The instance token of the current (or last) process.
    pub(crate) token: u64,
    /// The last worker ID any process on this node held: the preferred ID of the next one.
    pub(crate) last_id: Option<WorkerId>,
    pub(crate) clock: NodeClock,
    /// The real time of the timer scheduled for the worker and its sequence number (a popped
    /// timer event with another sequence number is stale).
    pub(crate) timer: Option<(Instant, u64)>,
    /// Consecutive timer firings at the same instant (catches a worker that never advances).
    pub(crate) spins: u32,
    /// A spin of the current process was reported already.
    pub(crate) spin_reported: bool,
    /// Holdings as last observed (the worker's `assignment()`).
    pub(crate) held: BTreeSet<PartitionId>,
    /// Subscribed partitions, as the driver would track them.
    pub(crate) subscribed: BTreeSet<PartitionId>,
    /// The tokens the current process wrote its lease with (its instance token, and the
    /// session tokens it picks after losing an ID): shares for these are its own.
    pub(crate) sessions: BTreeSet<u64>,
    /// The last generation the current process reported applying.
    pub(crate) applied: Option<Generation>,
    /// The state the current process last reported.
    pub(crate) state: State,
}

impl Node {
    pub(crate) fn new(base: Config) -> Self {
        Node {
            last_id: base.preferred_id,
            base,
            worker: None,
            status: NodeStatus::Crashed,
            incarnation: 0,
            token: 0,
            clock: NodeClock::default(),
            timer: None,
            spins: 0,
            spin_reported: false,
            held: BTreeSet::new(),
            subscribed: BTreeSet::new(),
            sessions: BTreeSet::new(),
            applied: None,
            state: State::Init,
        }
    }

    /// The running worker, if the node's process is up.
    pub(crate) fn running(&self) -> Option<&WorkerMachine> {
        match self.status {
            NodeStatus::Running => self.worker.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewed_clock_is_continuous_and_inverts() {
        let mut c = NodeClock::default();
        let t = |ms| Instant::from_millis(ms);
        assert_eq!(c.local(t(1000)), t(1000));
        c.set_ppm(t(1000), 1000);
        assert_eq!(c.local(t(1000)), t(1000));
        assert_eq!(c.local(t(2000)), t(2001));
        let target = t(5000);
        let real = c.real(target, t(1000));
        assert!(c.local(real) >= target);
        assert!(
            c.local(Instant::from_origin(
                real.since_origin() - Duration::from_nanos(1)
            )) < target
        );
        c.set_ppm(t(2000), -1000);
        assert_eq!(c.local(t(2000)), t(2001));
        assert_eq!(c.local(t(3000)), t(3000));
        assert_eq!(c.real(t(10), t(3000)), t(3000));
    }
}
