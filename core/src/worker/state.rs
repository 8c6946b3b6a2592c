//! The public [`State`]: derived from the worker's fields in one place, shown at the end of
//! every step.

use super::WorkerMachine;
use crate::codec::Phase;
use crate::{Event, State};

impl WorkerMachine {
    /// The state the worker is in, first match wins: `Shutdown` once stopping; `Degraded` while
    /// NATS is unreachable or the lease is overdue; `ClaimingId` without an ID; while leading,
    /// the planner's activity (`Scaling`, `Rebalancing`, `Emergency`) if it has one; before the
    /// first applied generation `WaitingAssignment` once a leader is known (or we lead), else
    /// `Election`; then the phase of the last applied generation.
    pub(crate) fn derived_state(&self) -> State {
        if self.stopping.is_some() {
            return State::Shutdown;
        }
        if self.degraded_since.is_some() {
            return State::Degraded;
        }
        if self.id.is_none() {
            return State::ClaimingId;
        }
        if let Some(s) = self.leading.as_ref().and_then(|l| l.activity) {
            return s;
        }
        if self.applied.is_none() {
            return if self.leader_seen.is_some() || self.leading.is_some() {
                State::WaitingAssignment
            } else {
                State::Election
            };
        }
        match self.applied_phase {
            Phase::Stable => State::Stable,
            Phase::Scaling => State::Scaling,
            Phase::Rebalancing => State::Rebalancing,
            Phase::Emergency => State::Emergency,
        }
    }

    /// Shows [`WorkerMachine::derived_state`], emitting the transition: the only writer of `state`,
    /// run at the end of every step.
    pub(crate) fn update_state(&mut self) {
        let to = self.derived_state();
        if self.state != to {
            let from = std::mem::replace(&mut self.state, to);
            self.emit(Event::StateChanged { from, to });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::election::LeaderSeen;
    use super::super::leader::Leadership;
    use super::super::shutdown::Stopping;
    use super::*;
    use crate::{Config, Epoch, Generation, Instant, WorkerId};

    fn worker() -> WorkerMachine {
        let config = Config {
            instance_token: 7,
            ..Config::default()
        };
        WorkerMachine::new(config, Instant::ZERO).unwrap()
    }

    #[test]
    fn each_rule_wins_over_the_ones_after_it() {
        let mut w = worker();
        assert_eq!(w.state(), State::ClaimingId, "shown from the start");
        w.id = Some(WorkerId(3));
        assert_eq!(w.derived_state(), State::Election);
        w.leader_seen = Some(LeaderSeen {
            revision: 1,
            worker: WorkerId(0),
        });
        assert_eq!(w.derived_state(), State::WaitingAssignment);
        w.applied = Some(Generation(4));
        w.applied_phase = Phase::Rebalancing;
        assert_eq!(w.derived_state(), State::Rebalancing);
        w.applied_phase = Phase::Stable;
        assert_eq!(w.derived_state(), State::Stable);
        let mut l = Leadership::new(Epoch(1), 1, Instant::ZERO);
        l.activity = Some(State::Emergency);
        w.leading = Some(Box::new(l));
        assert_eq!(w.derived_state(), State::Emergency);
        w.id = None;
        assert_eq!(w.derived_state(), State::ClaimingId);
        w.degraded_since = Some(Instant::ZERO);
        assert_eq!(w.derived_state(), State::Degraded);
        w.stopping = Some(Stopping {
            final_stop: true,
            outstanding: 0,
            released: false,
            done: false,
        });
        assert_eq!(w.derived_state(), State::Shutdown);
    }

    #[test]
    fn a_change_is_shown_once_with_its_event() {
        let mut w = worker();
        while w.poll_event().is_some() {}
        w.id = Some(WorkerId(3));
        w.update_state();
        w.update_state();
        let events: Vec<Event> = std::iter::from_fn(|| w.poll_event()).collect();
        assert_eq!(
            events,
            vec![Event::StateChanged {
                from: State::ClaimingId,
                to: State::Election
            }]
        );
        assert_eq!(w.state(), State::Election);
    }
}
