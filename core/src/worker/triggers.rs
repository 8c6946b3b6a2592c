//! The planner's triggers (DESIGN §4's table) as pure functions of the leader's view: which
//! generation is due and why ([`Leadership::pending`]), and when the planner must look again
//! ([`Leadership::wake`]). The planner runs what is due and arms its timer from the rest;
//! nothing else lists these deadlines.

use super::leader::{CommittedGen, Leadership, Peer};
use crate::codec::Phase;
use crate::{Config, Generation, Instant, Partition, PartitionId, WorkerId};
use std::collections::{BTreeMap, BTreeSet};

/// Why a generation is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Nothing was committed yet: the first generation, once the cold-start window ends (or
    /// the expected number of workers is live).
    ColdStart,
    /// The partition list or a pin changed.
    PartitionsChanged,
    /// The committed generation is a step of a multi-step handoff: take the next step.
    Handoff,
    /// A committed share was overwritten in KV: write it again.
    Repair,
    /// A member was declared crashed: its partitions move once they are released.
    Crash(WorkerId),
    /// A member departed: its share is parked until the restart grace ends.
    Departure(WorkerId),
    /// A member drains (by itself or by an operator): its share moves away.
    Drain(WorkerId),
    /// A new instance holds a member's ID: it resumes the share.
    Resumed(WorkerId),
    /// Workers joined: after the scale window (and the rebalance cooldown).
    Joins,
    /// A member's lease is gone for good.
    Left,
    /// The committed assignment is out of balance (considered only when nothing else is due).
    Imbalance,
}

/// A generation that is due.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Due {
    /// When (at or before now: plan now).
    pub(crate) at: Instant,
    /// The phase to plan in.
    pub(crate) phase: Phase,
    /// The move budget (`None`: unlimited).
    pub(crate) budget: Option<usize>,
    /// The earliest cause (the first listed among equally early ones).
    pub(crate) cause: Cause,
}

/// What is pending at one instant.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pending {
    /// The earliest due generation, if any.
    pub(crate) due: Option<Due>,
    /// Workers joined and wait for the scale window.
    pub(crate) joins_pending: bool,
}

impl Peer {
    /// When this worker counts as stuck: it has not applied the committed generation (`gen`,
    /// committed at `at`) for `revoke_timeout + lease_ttl` since then, or since it appeared.
    pub(crate) fn stuck_at(
        &self,
        committed: Option<(Generation, Instant)>,
        cfg: &Config,
    ) -> Option<Instant> {
        let (gen, at) = committed?;
        self.applied
            .is_none_or(|a| a < gen)
            .then(|| at.max(self.since) + cfg.revoke_timeout + cfg.lease_ttl)
    }

    /// Neither declared crashed nor departing.
    pub(crate) fn live(&self) -> bool {
        self.dead.is_none() && self.departing_since.is_none()
    }
}

impl Leadership {
    /// The earliest deadline after `now` of any trigger or liveness check (a silent or stuck
    /// worker, a crashed worker's release or lease re-check, a publish retry, the end of
    /// adoption): when the planner must look again.
    pub(crate) fn wake(&self, now: Instant, cfg: &Config) -> Option<Instant> {
        let mut wake = Wake { now, next: None };
        if let Some(t) = self.retry_at {
            wake.at(t);
        }
        match &self.committed {
            None => wake.at(self.since + cfg.cold_start_window),
            Some(c) if c.shares.values().any(Option::is_none) => {
                wake.at(self.since + cfg.lease_ttl)
            }
            Some(_) => {}
        }
        let committed = self.committed.as_ref().map(|c| (c.record.generation, c.at));
        for p in self.peers.values() {
            match (&p.dead, p.departing_since) {
                (Some(d), _) => {
                    wake.at(d.release_at);
                    if let Some(t) = d.retry_at {
                        wake.at(t);
                    }
                }
                (None, Some(since)) => wake.at(since + cfg.restart_grace),
                (None, None) => wake.at(p.last_seen + cfg.lease_ttl),
            }
            if let Some(j) = p.joined_at {
                wake.at(j + cfg.planned_scale_window);
                wake.at(j + cfg.max_scale_delay);
            }
            if let Some(t) = p.stuck_at(committed, cfg) {
                wake.at(t);
            }
        }
        if let Some(t) = self.last_rebalance {
            wake.at(t + cfg.min_rebalance_interval);
        }
        if let Some(t) = self.imbalance_due {
            wake.at(t);
        }
        wake.next
    }

    /// The earliest due generation (see [`Cause`] for the order among equally early ones),
    /// and whether joins are pending. Pure: reads the view as [`Leadership::note_joins`] and
    /// [`Leadership::check_imbalance`] left it.
    pub(crate) fn pending(&self, now: Instant, cfg: &Config) -> Pending {
        let Some(c) = &self.committed else {
            let live = self.peers.values().filter(|p| p.live()).count();
            let at = match cfg.expected_workers {
                Some(n) if live as u32 >= n => now,
                _ => self.since + cfg.cold_start_window,
            };
            let due = Due {
                at,
                phase: Phase::Scaling,
                budget: None,
                cause: Cause::ColdStart,
            };
            return Pending {
                due: Some(due),
                joins_pending: false,
            };
        };
        let mut due: Option<Due> = None;
        let mut take = |at: Instant, phase: Phase, cause: Cause| {
            if due.is_none_or(|d| d.at > at) {
                due = Some(Due {
                    at,
                    phase,
                    budget: None,
                    cause,
                });
            }
        };
        if self.partitions_dirty {
            take(now, Phase::Rebalancing, Cause::PartitionsChanged);
        }
        if c.record.phase != Phase::Stable {
            take(now, c.record.phase, Cause::Handoff);
        }
        if c.record.members.keys().any(|w| self.share_corrupted(*w)) {
            take(now, c.record.phase, Cause::Repair);
        }
        let members = &c.record.members;
        let mut joins: Option<(Instant, Instant)> = None;
        for (id, p) in &self.peers {
            let member = members.get(id);
            if let Some(d) = &p.dead {
                if member.is_some() {
                    take(d.release_at.max(now), Phase::Emergency, Cause::Crash(*id));
                }
                continue;
            }
            if let Some(since) = p.departing_since {
                if member.is_some() {
                    let at = since + cfg.restart_grace;
                    take(at, Phase::Scaling, Cause::Departure(*id));
                }
                continue;
            }
            if p.draining || p.ctl_draining {
                let holds = c
                    .shares
                    .get(id)
                    .is_some_and(|s| s.as_ref().is_none_or(|s| !s.is_empty()));
                if member.is_some() && holds {
                    take(now, Phase::Rebalancing, Cause::Drain(*id));
                }
                continue;
            }
            match member {
                Some(m) if m.token == p.token => {}
                Some(_) => take(now, Phase::Scaling, Cause::Resumed(*id)),
                None => {
                    if let Some(at) = p.joined_at {
                        joins = Some(joins.map_or((at, at), |(f, l)| (f.min(at), l.max(at))));
                    }
                }
            }
        }
        if let Some((first, last)) = joins {
            let window = (last + cfg.planned_scale_window).min(first + cfg.max_scale_delay);
            let cooldown = self
                .last_rebalance
                .map_or(window, |t| t + cfg.min_rebalance_interval);
            take(window.max(cooldown), Phase::Scaling, Cause::Joins);
        }
        if members.keys().any(|id| !self.peers.contains_key(id)) {
            take(now, Phase::Scaling, Cause::Left);
        }
        let due = due.or_else(|| {
            self.imbalance_due.map(|at| Due {
                at,
                phase: Phase::Rebalancing,
                budget: Some(cfg.max_moves_per_round as usize),
                cause: Cause::Imbalance,
            })
        });
        Pending {
            due,
            joins_pending: joins.is_some(),
        }
    }

    /// Records when each live worker outside the committed generation was first seen (the
    /// joins trigger counts its window from then), and forgets it once the worker is a member.
    pub(crate) fn note_joins(&mut self, now: Instant) {
        let Some(c) = &self.committed else { return };
        for (id, p) in self.peers.iter_mut() {
            if !p.live() || p.draining || p.ctl_draining {
                continue;
            }
            match c.record.members.get(id) {
                Some(m) if m.token == p.token => p.joined_at = None,
                Some(_) => {}
                None => {
                    p.joined_at.get_or_insert(now);
                }
            }
        }
    }

    /// Measures the committed assignment's balance by effective size (measured load where
    /// reported, weight otherwise): once per generation, and at most once a heartbeat while
    /// loads arrive. Out of balance means the most loaded worker is above `1 +
    /// rebalance_threshold` times the mean, or times the heaviest partition where that is more
    /// (no placement can do better than holding it alone). Once out of balance for
    /// `min_rebalance_interval` (and that long after the last planned move, and `load_cooldown`
    /// after this leader took over), a round is due.
    /// Returns whether it measured.
    pub(crate) fn check_imbalance(&mut self, now: Instant, cfg: &Config) -> bool {
        let Some(c) = &self.committed else {
            return false;
        };
        let new_gen = self.imbalance_checked != Some(c.record.generation);
        let loads_due = self.loads.changed
            && self
                .measured_at
                .is_none_or(|t| now >= t + cfg.heartbeat_interval);
        if !new_gen && !loads_due {
            return false;
        }
        self.imbalance_checked = Some(c.record.generation);
        self.measured_at = Some(now);
        self.loads.changed = false;
        let Some(parts) = &self.partitions else {
            return true;
        };
        let sized;
        let parts = if self.loads.is_empty() {
            parts
        } else {
            sized = crate::load::effective_partitions(parts, &self.loads.of(parts));
            &sized
        };
        match balance(parts, c, &self.peers) {
            Some((worker, over, heaviest))
                if crate::load::out_of_balance(over, heaviest, cfg.rebalance_threshold) =>
            {
                let since = *self.imbalance_since.get_or_insert(now);
                let cooldown = self
                    .last_rebalance
                    .map_or(now, |t| t + cfg.min_rebalance_interval);
                // A new leader takes over the rests from the generation it adopted; where that
                // did not say (a record of an older build, or none could be read), it does not
                // know which partitions an earlier leader's rounds moved (they rest for
                // `load_cooldown`): its first round waits that long.
                let rested = match self.rests_known {
                    true => now,
                    false => self.since + cfg.load_cooldown,
                };
                self.imbalance_due = Some(
                    (since + cfg.min_rebalance_interval)
                        .max(cooldown)
                        .max(rested)
                        .max(now),
                );
                self.most_loaded = Some((worker, over));
            }
            _ => {
                self.imbalance_since = None;
                self.imbalance_due = None;
                self.most_loaded = None;
            }
        }
        true
    }
}

/// The earliest of the deadlines after `now` it is shown.
struct Wake {
    now: Instant,
    next: Option<Instant>,
}

impl Wake {
    fn at(&mut self, t: Instant) {
        if t > self.now {
            self.next = Some(self.next.map_or(t, |n| n.min(t)));
        }
    }
}

/// The balance of the committed shares by the sizes in `parts` (sorted by ID; unlisted
/// partitions weigh 0), loads relative to capacity, over the live members that do not drain:
/// the most loaded, its load over the mean (total size over total capacity), and the heaviest
/// partition alone on the biggest worker over the mean (what [`crate::load::out_of_balance`]
/// takes). `None` when it cannot be computed (fewer than two live members, a share unknown,
/// nothing to weigh).
fn balance(
    parts: &[Partition],
    c: &CommittedGen,
    peers: &BTreeMap<WorkerId, Peer>,
) -> Option<(WorkerId, f64, f64)> {
    // Weight of a sorted share: one pass along the sorted partitions.
    let weight = |share: &BTreeSet<PartitionId>| {
        let mut it = parts.iter().peekable();
        let mut sum = 0u128;
        for p in share {
            while it.next_if(|x| x.id() < p).is_some() {}
            if let Some(x) = it.peek().filter(|x| x.id() == p) {
                sum += u128::from(x.weight());
            }
        }
        sum
    };
    let (mut total, mut capacity, mut biggest) = (0f64, 0f64, 0f64);
    let mut max: Option<(WorkerId, f64)> = None;
    let mut members = 0;
    for (id, share) in &c.shares {
        // Draining workers are emptied on purpose: not a sign of imbalance.
        let Some(p) = peers
            .get(id)
            .filter(|p| p.live() && !(p.draining || p.ctl_draining))
        else {
            continue;
        };
        let share = share.as_ref()?;
        let w = weight(share) as f64;
        let cap = f64::from(p.capacity.max(1));
        total += w;
        capacity += cap;
        biggest = biggest.max(cap);
        members += 1;
        if max.is_none_or(|(_, m)| w / cap > m) {
            max = Some((*id, w / cap));
        }
    }
    let (worker, max) = max?;
    if members < 2 || total <= 0.0 {
        return None;
    }
    let mean = total / capacity;
    let heaviest = parts.iter().map(|p| p.weight()).max().unwrap_or(0) as f64;
    Some((worker, max / mean, heaviest / biggest / mean))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{GenRecord, Member, VERSION};
    use crate::worker::leader::Dead;
    use crate::Epoch;
    use std::time::Duration;

    const S: u64 = 1000;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn member(token: u64) -> Member {
        Member {
            token,
            digest: 0,
            chunks: 1,
            count: 0,
            slot: 0,
        }
    }

    /// A leader since t=0 with live workers 1 and 2 (tokens 11, 12, seen at `seen`), both
    /// members of generation 5 committed at `seen` in phase Stable and applied by both.
    fn view(seen: Instant) -> Leadership {
        let mut l = Leadership::new(Epoch(1), 1, Instant::ZERO);
        let mut members = BTreeMap::new();
        let mut shares = BTreeMap::new();
        for id in [1, 2] {
            let mut p = Peer::unseen(10 + id, seen);
            p.revision = Some(1);
            p.applied = Some(Generation(5));
            l.peers.insert(WorkerId(id as u32), p);
            members.insert(WorkerId(id as u32), member(10 + id));
            shares.insert(WorkerId(id as u32), Some(BTreeSet::new()));
        }
        l.committed = Some(CommittedGen {
            at: seen,
            record: GenRecord {
                v: VERSION,
                epoch: Epoch(1),
                generation: Generation(5),
                phase: Phase::Stable,
                trigger: None,
                members,
                resting: None,
            },
            revision: 1,
            shares,
        });
        l
    }

    fn cause(l: &Leadership, now: Instant) -> Option<(Cause, Instant)> {
        l.pending(now, &Config::default())
            .due
            .map(|d| (d.cause, d.at))
    }

    #[test]
    fn a_settled_view_has_nothing_due_and_wakes_for_the_liveness_check() {
        let l = view(at(10 * S));
        let t = l.pending(at(11 * S), &Config::default());
        assert_eq!(t.due, None);
        assert!(!t.joins_pending);
        // Both leases are checked a TTL after they were seen.
        assert_eq!(l.wake(at(11 * S), &Config::default()), Some(at(16 * S)));
    }

    #[test]
    fn cold_start_waits_for_the_window_or_the_expected_workers() {
        let mut l = view(at(0));
        l.committed = None;
        let now = at(S);
        assert_eq!(cause(&l, now), Some((Cause::ColdStart, at(30 * S))));
        let cfg = Config {
            expected_workers: Some(2),
            ..Config::default()
        };
        let due = l.pending(now, &cfg).due.unwrap();
        assert_eq!(
            (due.cause, due.at, due.phase),
            (Cause::ColdStart, now, Phase::Scaling)
        );
        // The leases (seen at 0) are checked at 6 s, before the window ends.
        assert_eq!(l.wake(now, &cfg), Some(at(6 * S)));
        l.peers.values_mut().for_each(|p| p.last_seen = at(40 * S));
        assert_eq!(l.wake(now, &cfg), Some(at(30 * S)));
    }

    #[test]
    fn a_changed_partition_list_is_due_now() {
        let mut l = view(at(0));
        l.partitions_dirty = true;
        let due = l.pending(at(S), &Config::default()).due.unwrap();
        assert_eq!(
            (due.cause, due.at, due.phase),
            (Cause::PartitionsChanged, at(S), Phase::Rebalancing)
        );
    }

    #[test]
    fn an_unfinished_handoff_continues_in_its_phase() {
        let mut l = view(at(0));
        l.committed.as_mut().unwrap().record.phase = Phase::Scaling;
        let due = l.pending(at(S), &Config::default()).due.unwrap();
        assert_eq!((due.cause, due.phase), (Cause::Handoff, Phase::Scaling));
    }

    #[test]
    fn an_overwritten_share_is_repaired() {
        let mut l = view(at(0));
        // The watch caught up with the commit, and the mirror lacks worker 1's share.
        l.assign_seen = 1;
        assert_eq!(cause(&l, at(S)), Some((Cause::Repair, at(S))));
    }

    #[test]
    fn a_crashed_member_is_due_at_its_release() {
        let mut l = view(at(0));
        l.peers.get_mut(&WorkerId(2)).unwrap().dead = Some(Dead {
            release_at: at(7 * S),
            confirmed: true,
            retry_at: Some(at(5 * S)),
        });
        let now = at(6 * S);
        let due = l.pending(now, &Config::default()).due.unwrap();
        assert_eq!(
            (due.cause, due.at, due.phase),
            (Cause::Crash(WorkerId(2)), at(7 * S), Phase::Emergency)
        );
        // Past the release it is due at once; the wake is the release itself.
        assert_eq!(
            cause(&l, at(8 * S)),
            Some((Cause::Crash(WorkerId(2)), at(8 * S)))
        );
        assert_eq!(l.wake(now, &Config::default()), Some(at(7 * S)));
    }

    #[test]
    fn a_departing_member_is_parked_for_the_restart_grace() {
        let mut l = view(at(0));
        l.peers.get_mut(&WorkerId(1)).unwrap().departing_since = Some(at(2 * S));
        let t = l.pending(at(3 * S), &Config::default());
        assert_eq!(
            t.due.map(|d| (d.cause, d.at)),
            Some((Cause::Departure(WorkerId(1)), at(32 * S)))
        );
    }

    #[test]
    fn a_draining_member_that_holds_partitions_gives_them_up_now() {
        let mut l = view(at(0));
        l.peers.get_mut(&WorkerId(1)).unwrap().ctl_draining = true;
        // An empty share: nothing to give up.
        assert_eq!(cause(&l, at(S)), None);
        let c = l.committed.as_mut().unwrap();
        c.shares.insert(WorkerId(1), None); // unknown: may hold anything
        assert_eq!(cause(&l, at(S)), Some((Cause::Drain(WorkerId(1)), at(S))));
    }

    #[test]
    fn a_new_instance_under_a_members_id_resumes_its_share() {
        let mut l = view(at(0));
        l.peers.get_mut(&WorkerId(2)).unwrap().token = 99;
        assert_eq!(cause(&l, at(S)), Some((Cause::Resumed(WorkerId(2)), at(S))));
    }

    #[test]
    fn joins_wait_for_the_scale_window_bounded_by_the_max_delay() {
        let mut l = view(at(0));
        let cfg = Config::default();
        for (id, seen) in [(3, 2 * S), (4, 9 * S)] {
            l.peers
                .insert(WorkerId(id), Peer::unseen(id as u64, at(seen)));
            l.note_joins(at(seen));
        }
        let t = l.pending(at(10 * S), &cfg);
        assert!(t.joins_pending);
        // The window restarts with the last join (9 s + 10 s), capped at first + 30 s.
        assert_eq!(
            t.due.map(|d| (d.cause, d.at)),
            Some((Cause::Joins, at(19 * S)))
        );
        assert_eq!(l.wake(at(10 * S), &cfg), Some(at(12 * S)));
        // The cooldown after a rebalance holds it back further.
        l.last_rebalance = Some(at(15 * S));
        assert_eq!(cause(&l, at(10 * S)), Some((Cause::Joins, at(25 * S))));
        // Once a member, a worker's join time is forgotten.
        let c = l.committed.as_mut().unwrap();
        c.record.members.insert(WorkerId(3), member(3));
        c.record.members.insert(WorkerId(4), member(4));
        l.note_joins(at(20 * S));
        assert!(l.peers.values().all(|p| p.joined_at.is_none()));
        assert!(!l.pending(at(20 * S), &cfg).joins_pending);
    }

    #[test]
    fn a_member_whose_lease_is_gone_left() {
        let mut l = view(at(0));
        l.peers.remove(&WorkerId(2));
        assert_eq!(cause(&l, at(S)), Some((Cause::Left, at(S))));
    }

    #[test]
    fn imbalance_is_measured_once_per_generation_and_only_when_nothing_else_is_due() {
        let mut l = view(at(0));
        let cfg = Config {
            load_cooldown: Duration::from_secs(5),
            ..Config::default()
        };
        let parts: Vec<Partition> = ["a", "b", "c"]
            .iter()
            .map(|k| Partition::new(&[k], 1).unwrap())
            .collect();
        let c = l.committed.as_mut().unwrap();
        c.shares.insert(
            WorkerId(1),
            Some(parts.iter().map(|p| p.id().clone()).collect()),
        );
        l.partitions = Some(parts);
        l.last_rebalance = Some(at(S));
        assert!(l.check_imbalance(at(2 * S), &cfg));
        assert!(
            !l.check_imbalance(at(2 * S), &cfg),
            "measured once per generation"
        );
        let due = l.pending(at(2 * S), &cfg).due.unwrap();
        // Out of balance since 2 s: due once that lasted `min_rebalance_interval` (and the
        // cooldown since the last rebalance is over), with the round's budget.
        assert_eq!(
            (due.cause, due.at, due.budget),
            (Cause::Imbalance, at(12 * S), Some(100))
        );
        assert_eq!(l.most_loaded.map(|(w, _)| w), Some(WorkerId(1)));
        // A leader waits a whole `load_cooldown` after taking over before its first round when
        // it does not know which partitions an earlier leader's rounds moved.
        let mut fresh = view(at(0));
        fresh.committed = l.committed.clone();
        fresh.partitions = l.partitions.clone();
        assert!(fresh.check_imbalance(at(2 * S), &Config::default()));
        assert_eq!(fresh.imbalance_due, Some(at(60 * S)));
        // Unless the generation it adopted said which partitions rest (`GenRecord::resting`).
        let mut told = view(at(0));
        told.committed = l.committed.clone();
        told.partitions = l.partitions.clone();
        told.rests_known = true;
        assert!(told.check_imbalance(at(2 * S), &Config::default()));
        assert_eq!(told.imbalance_due, Some(at(12 * S)));
        // Anything else due comes first.
        l.partitions_dirty = true;
        assert_eq!(
            cause(&l, at(2 * S)),
            Some((Cause::PartitionsChanged, at(2 * S)))
        );
    }

    /// Worker 1 holds `a`, `b`; worker 2 holds `c`, `d` (all weight 1, capacity 1).
    fn two_by_two() -> (Leadership, Vec<Partition>) {
        let mut l = view(at(0));
        let parts: Vec<Partition> = ["a", "b", "c", "d"]
            .iter()
            .map(|k| Partition::new(&[k], 1).unwrap())
            .collect();
        let c = l.committed.as_mut().unwrap();
        let ids = |ks: &[&str]| ks.iter().map(|k| PartitionId::parse(k).unwrap()).collect();
        c.shares.insert(WorkerId(1), Some(ids(&["a", "b"])));
        c.shares.insert(WorkerId(2), Some(ids(&["c", "d"])));
        l.partitions = Some(parts.clone());
        (l, parts)
    }

    fn report(l: &mut Leadership, w: u32, values: &[f32], now: Instant) -> bool {
        let c = l.committed.as_ref().unwrap();
        let share = c.shares[&WorkerId(w)].clone().unwrap();
        let digest = crate::codec::share_digest(&share);
        let r = crate::codec::LoadReport {
            share: digest,
            values: values.iter().map(|v| Some(*v)).collect(),
        };
        let cfg = Config::default();
        l.loads.take(&share, digest, &r, now, cfg.load_half_life)
    }

    #[test]
    fn a_new_leader_sees_a_change_only_where_the_committed_generation_differs() {
        let (mut l, mut parts) = two_by_two();
        assert!(l.committed_reflects_sources());
        // a pin honoured, then one that is not
        l.pins.insert(PartitionId::parse("a").unwrap(), WorkerId(1));
        assert!(l.committed_reflects_sources());
        l.pins.insert(PartitionId::parse("c").unwrap(), WorkerId(1));
        assert!(!l.committed_reflects_sources());
        l.pins.clear();
        // a partition added, or one removed
        parts.push(Partition::new(&["e"], 1).unwrap());
        l.partitions = Some(parts.clone());
        assert!(!l.committed_reflects_sources());
        l.partitions = Some(parts[..3].to_vec());
        assert!(!l.committed_reflects_sources());
        // a share not known yet
        l.partitions = Some(parts[..4].to_vec());
        l.committed
            .as_mut()
            .unwrap()
            .shares
            .insert(WorkerId(2), None);
        assert!(!l.committed_reflects_sources());
    }

    #[test]
    fn measured_load_makes_a_round_due_once_it_lasts_and_balance_clears_it() {
        let (mut l, _) = two_by_two();
        let cfg = Config {
            load_cooldown: Duration::from_secs(5),
            ..Config::default()
        };
        assert!(l.check_imbalance(at(S), &cfg));
        assert_eq!(l.imbalance_due, None, "balanced by weight");
        // Worker 1's partitions carry 3x the load.
        assert!(report(&mut l, 1, &[3.0, 3.0], at(2 * S)));
        assert!(report(&mut l, 2, &[1.0, 1.0], at(2 * S)));
        assert!(
            !l.check_imbalance(at(2 * S), &cfg),
            "at most once a heartbeat"
        );
        assert!(l.check_imbalance(at(3 * S), &cfg));
        let (w, over) = l.most_loaded.unwrap();
        assert_eq!(w, WorkerId(1));
        assert!((over - 1.5).abs() < 1e-9, "{over}");
        assert_eq!(l.imbalance_due, Some(at(13 * S)));
        // Still out of balance later: the same deadline (it counts from the first time).
        report(&mut l, 2, &[1.0, 1.0], at(6 * S));
        assert!(l.check_imbalance(at(6 * S), &cfg));
        assert_eq!(l.imbalance_due, Some(at(13 * S)));
        // Loads even out (smoothed over time): nothing is due any more.
        report(&mut l, 1, &[1.0, 1.0], at(600 * S));
        assert!(l.check_imbalance(at(600 * S), &cfg));
        assert_eq!((l.imbalance_due, l.imbalance_since), (None, None));
    }

    #[test]
    fn noise_within_the_threshold_and_one_heavy_partition_make_no_round() {
        let (mut l, _) = two_by_two();
        let cfg = Config::default();
        // Within the threshold (0.05): 1.04x the mean. (Noisier single reports are smoothed
        // first: scenarios_load's ten_percent_noise test.)
        report(&mut l, 1, &[1.04, 1.04], at(S));
        report(&mut l, 2, &[0.96, 0.96], at(S));
        assert!(l.check_imbalance(at(S), &cfg));
        assert_eq!(l.imbalance_due, None);
        // One partition heavier than everything else together: no placement does better
        // than holding it alone, so that is not out of balance.
        report(&mut l, 1, &[100.0, 0.0], at(1000 * S));
        report(&mut l, 2, &[0.0, 0.0], at(1000 * S));
        assert!(l.check_imbalance(at(1000 * S), &cfg));
        let (w, over) = l.most_loaded.unwrap_or((WorkerId(1), 0.0));
        assert_eq!(l.imbalance_due, None, "worker {w} at {over}");
    }

    #[test]
    fn a_drained_worker_is_not_out_of_balance() {
        let (mut l, _) = two_by_two();
        let cfg = Config::default();
        // Worker 2 drains: its share is emptied on purpose, worker 1 holds everything.
        let c = l.committed.as_mut().unwrap();
        let all = ["a", "b", "c", "d"]
            .iter()
            .map(|k| PartitionId::parse(k).unwrap())
            .collect();
        c.shares.insert(WorkerId(1), Some(all));
        c.shares.insert(WorkerId(2), Some(BTreeSet::new()));
        l.peers.get_mut(&WorkerId(2)).unwrap().draining = true;
        assert!(l.check_imbalance(at(S), &cfg));
        assert_eq!(l.imbalance_due, None);
        // Not draining, the same shares are out of balance.
        l.peers.get_mut(&WorkerId(2)).unwrap().draining = false;
        l.imbalance_checked = None;
        assert!(l.check_imbalance(at(2 * S), &cfg));
        assert!(l.imbalance_due.is_some());
    }

    #[test]
    fn a_report_for_another_share_is_ignored() {
        let (mut l, _) = two_by_two();
        let c = l.committed.as_ref().unwrap();
        let share = c.shares[&WorkerId(1)].clone().unwrap();
        let r = crate::codec::LoadReport {
            share: 12345,
            values: vec![Some(5.0), Some(5.0)],
        };
        let cfg = Config::default();
        assert!(!l.loads.take(
            &share,
            crate::codec::share_digest(&share),
            &r,
            at(S),
            cfg.load_half_life
        ));
        assert!(l.loads.is_empty() && !l.loads.changed);
    }

    #[test]
    fn equally_early_causes_keep_the_first_listed() {
        let mut l = view(at(0));
        l.partitions_dirty = true;
        l.peers.remove(&WorkerId(2));
        assert_eq!(
            cause(&l, at(S)).map(|c| c.0),
            Some(Cause::PartitionsChanged)
        );
    }

    #[test]
    fn a_stuck_worker_and_a_retry_wake_the_planner() {
        let mut l = view(at(0));
        let cfg = Config::default();
        l.committed.as_mut().unwrap().record.generation = Generation(6);
        // WorkerMachine 1 applied only 5: stuck revoke_timeout + lease_ttl (11 s) after the commit.
        l.peers.values_mut().for_each(|p| p.last_seen = at(100 * S));
        let p = &l.peers[&WorkerId(1)];
        assert_eq!(
            p.stuck_at(Some((Generation(6), at(0))), &cfg),
            Some(at(11 * S))
        );
        assert_eq!(l.wake(at(S), &cfg), Some(at(11 * S)));
        l.retry_at = Some(at(2 * S));
        assert_eq!(l.wake(at(S), &cfg), Some(at(2 * S)));
        assert_eq!(
            l.wake(at(3 * S), &cfg),
            Some(at(11 * S)),
            "past deadlines are not shown"
        );
    }
}
