//! The guarantees of DESIGN §5, checked while the simulation runs.
//!
//! - **Exclusive ownership** (Strict mode): no partition is held by two live workers after any
//!   step. Holdings are each worker's [`crate::WorkerMachine::assignment`].
//! - **Committed, increasing generations**: per worker process, the generations reported by
//!   [`crate::Event::AssignmentChanged`] never decrease, and every applied generation `g` with
//!   assigned set `S` matches a `gen` record that was committed in the KV before (its member for
//!   the worker's ID has `digest == share_digest(S)`). A report that only drops partitions at the
//!   same generation (a fence, a revoke timeout) is allowed. Two different records committed for
//!   one generation are a violation too.
//! - **Distinct IDs**: among live workers in an active state (not Init, ClaimingId, Shutdown),
//!   two with the same ID may not both *act* as it. In Strict mode a worker acts as its ID if its
//!   lease in the KV carries its token, or if it holds partitions: the lease holder is unique by
//!   construction, so the check catches a stale holder that failed to fence itself. In both modes
//!   two connected workers may not share an ID for longer than a grace period (the stale one
//!   must learn it lost the ID within a renewal round).
//! - **Convergence** is checked by [`crate::sim::Sim::converge`].
//! - **Balancing rounds** ([`crate::Event::Rebalanced`]), checked on what KV holds (the shares
//!   of the round's generation and of the one before): no round moves more than
//!   `max_moves_per_round` partitions, and no partition moves in two rounds less than
//!   `load_cooldown` apart (`sim/load.rs`).
//!
//! How the checks scale (W workers, P partitions), so that a fleet-size run
//! (`--workers 1000 --partitions 100000`) checks every step: none of them looks at every
//! worker's holdings on every step.
//! - Exclusive ownership is incremental: a step re-reads only the holdings of the nodes it
//!   touched (an emitted subscribe / unsubscribe / assignment or warning, or a changed holding
//!   count), merges each against that node's previous holdings, and updates one index
//!   partition → holders. Cost per step: O(size of the touched holdings + changes × log P).
//! - Committed generations: O(members) per `gen` write, O(share size) per applied share (its
//!   digest), O(log G) to find the record.
//! - Distinct IDs: O(W log W), only on steps that change an ID, a state, a process, or
//!   whether a node holds anything.
//! - Convergence ([`crate::sim::Sim::is_settled`]): O(P log P), only when the layout changed
//!   since the last look.
//! - Balancing rounds: O(P log P) per round (reading and decoding two generations' shares).

use super::NodeId;
use crate::codec::{self, GenRecord, LeaseValue};
use crate::{Bucket, Entry, Epoch, Generation, Instant, Operation, PartitionId, State, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// Which guarantee was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// Strict mode: a partition held by two live workers at once.
    DoubleOwner,
    /// A worker process applied a lower generation than one it applied before.
    GenerationRegressed,
    /// A worker applied a generation / share that no committed `gen` record backs.
    UncommittedShare,
    /// Two different `gen` records were committed with the same generation.
    GenerationReused,
    /// Strict mode: two active workers act as the same ID at once.
    DuplicateId,
    /// Two connected active workers kept the same ID beyond the grace period.
    LingeringDuplicateId,
    /// After the faults stopped, the cluster did not settle within the bound.
    NotConverged,
    /// A worker asked for a timer at the same instant over and over without progress.
    TimerSpin,
    /// A balancing round moved more partitions than `max_moves_per_round`.
    RoundOverBudget,
    /// A balancing round moved a partition that an earlier round had moved less than
    /// `load_cooldown` before.
    RoundInCooldown,
}

/// One broken guarantee, with when and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time of detection.
    pub at: Instant,
    /// Which guarantee.
    pub kind: ViolationKind,
    /// What exactly (nodes, IDs, partitions, generations).
    pub details: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.at, self.kind, self.details)
    }
}

/// A committed record's members: worker ID → (instance token, share digest).
type Shares = BTreeMap<WorkerId, (u64, u64)>;

/// What the ID check needs to know about a running worker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdView {
    pub(crate) node: NodeId,
    pub(crate) id: WorkerId,
    pub(crate) state: State,
    pub(crate) token: u64,
    pub(crate) holds: bool,
    pub(crate) connected: bool,
}

/// The invariant checker's memory: committed generations and duplicate-ID episodes.
#[derive(Debug)]
pub(crate) struct Checker {
    strict: bool,
    /// Committed `gen` records: generation → each record's members.
    committed: BTreeMap<Generation, Vec<Shares>>,
    /// Since when each ID is shared by two connected active workers, and whether reported.
    dup_since: BTreeMap<WorkerId, (Instant, bool)>,
    /// IDs currently acted as by two workers (reported once per episode).
    dup_acting: BTreeSet<WorkerId>,
    pub(crate) violations: Vec<Violation>,
}

impl Checker {
    pub(crate) fn new(strict: bool) -> Self {
        Checker {
            strict,
            committed: BTreeMap::new(),
            dup_since: BTreeMap::new(),
            dup_acting: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    pub(crate) fn record(&mut self, at: Instant, kind: ViolationKind, details: String) {
        self.violations.push(Violation { at, kind, details });
    }

    /// Indexes a KV change if it commits a generation; returns (generation, epoch, members).
    pub(crate) fn on_change(
        &mut self,
        at: Instant,
        e: &Entry,
    ) -> Option<(Generation, Epoch, usize)> {
        if e.bucket != Bucket::Assign || e.key != "gen" || e.operation != Operation::Put {
            return None;
        }
        let rec: GenRecord = codec::decode("gen", &e.value).ok()?;
        let digests: Shares = rec
            .members
            .iter()
            .map(|(w, m)| (*w, (m.token, m.digest)))
            .collect();
        let records = self.committed.entry(rec.generation).or_default();
        let reused = records.iter().any(|r| *r != digests);
        if !records.contains(&digests) {
            records.push(digests);
        }
        if reused {
            let details = format!(
                "{} committed again at rev {} with other shares",
                rec.generation, e.revision
            );
            self.record(at, ViolationKind::GenerationReused, details);
        }
        Some((rec.generation, rec.epoch, rec.members.len()))
    }

    /// Checks one `AssignmentChanged` of the worker on `node` (ID `id`, lease tokens `sessions`)
    /// whose highest applied generation so far was `prev`.
    ///
    /// A report that gains nothing at a generation not above `prev` only drops partitions (a
    /// fence, a lost ID, a stop): always safe. Anything else applies `generation`, which must be
    /// committed; a non-empty share must be the committed share of a member with this ID and one
    /// of this process's tokens (an empty share is what a worker without a share of its own
    /// applies).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_applied(
        &mut self,
        at: Instant,
        node: NodeId,
        id: Option<WorkerId>,
        sessions: &BTreeSet<u64>,
        prev: Option<Generation>,
        generation: Generation,
        added: &BTreeSet<PartitionId>,
        assigned: &BTreeSet<PartitionId>,
    ) {
        let newer = prev.is_none_or(|p| generation > p);
        if !newer && added.is_empty() {
            return;
        }
        if prev.is_some_and(|p| generation < p) {
            let details = format!(
                "node {} gained {} partitions at {generation} after applying {}",
                node.0,
                added.len(),
                prev.expect("checked")
            );
            return self.record(at, ViolationKind::GenerationRegressed, details);
        }
        let Some(records) = self.committed.get(&generation) else {
            let details = format!(
                "node {} applied {generation}, which was never committed",
                node.0
            );
            return self.record(at, ViolationKind::UncommittedShare, details);
        };
        if assigned.is_empty() {
            return;
        }
        let Some(id) = id else {
            let details = format!("node {} applied {generation} without a worker ID", node.0);
            return self.record(at, ViolationKind::UncommittedShare, details);
        };
        let digest = codec::share_digest(assigned);
        let ours = |r: &&Shares| r.get(&id).filter(|(t, _)| sessions.contains(t)).copied();
        if records
            .iter()
            .filter_map(|r| ours(&r))
            .any(|(_, d)| d == digest)
        {
            return;
        }
        let what = if records.iter().all(|r| !r.contains_key(&id)) {
            format!("worker {id} is no member")
        } else if records.iter().all(|r| ours(&r).is_none()) {
            format!("the share of worker {id} is meant for another instance")
        } else {
            "the share digest differs".to_owned()
        };
        let details = format!(
            "node {} (worker {id}) applied {generation} with {} partitions: {what}",
            node.0,
            assigned.len()
        );
        self.record(at, ViolationKind::UncommittedShare, details);
    }

    /// Records a double owner for each partition in `conflicts` (Strict mode only).
    pub(crate) fn on_conflicts(
        &mut self,
        at: Instant,
        conflicts: &[PartitionId],
        holders: impl Fn(&PartitionId) -> String,
    ) {
        if !self.strict {
            return;
        }
        for p in conflicts {
            let details = format!("partition {p} held by {}", holders(p));
            self.record(at, ViolationKind::DoubleOwner, details);
        }
    }

    /// Checks distinct IDs over the running workers in `views` (sorted by node). `lease` reads a
    /// lease's latest live value. Returns when to check again, if a duplicate episode started.
    pub(crate) fn check_ids(
        &mut self,
        at: Instant,
        views: &[IdView],
        lease: impl Fn(WorkerId) -> Option<Entry>,
        grace: Duration,
    ) -> Option<Instant> {
        let active =
            |v: &&IdView| !matches!(v.state, State::Init | State::ClaimingId | State::Shutdown);
        let mut by_id: BTreeMap<WorkerId, Vec<&IdView>> = BTreeMap::new();
        for v in views.iter().filter(active) {
            by_id.entry(v.id).or_default().push(v);
        }
        let mut recheck = None;
        let mut dups = BTreeSet::new();
        let mut acting_dups = BTreeSet::new();
        for (id, group) in by_id.iter().filter(|(_, g)| g.len() > 1) {
            if self.strict {
                let lease_token = lease(*id)
                    .and_then(|e| codec::decode::<LeaseValue>("lease", &e.value).ok())
                    .map(|l| l.token);
                let acting: Vec<&&IdView> = group
                    .iter()
                    .filter(|v| v.holds || lease_token == Some(v.token))
                    .collect();
                if acting.len() > 1 {
                    acting_dups.insert(*id);
                }
                if acting.len() > 1 && !self.dup_acting.contains(id) {
                    let nodes: Vec<String> = acting
                        .iter()
                        .map(|v| {
                            format!(
                                "node {} ({}{})",
                                v.node.0,
                                v.state,
                                if v.holds { ", holding" } else { "" }
                            )
                        })
                        .collect();
                    let details = format!("worker {id} acted as by {}", nodes.join(" and "));
                    self.record(at, ViolationKind::DuplicateId, details);
                }
            }
            if group.iter().filter(|v| v.connected).count() > 1 {
                dups.insert(*id);
                let (since, reported) = self.dup_since.entry(*id).or_insert((at, false));
                if !*reported && at.saturating_duration_since(*since) >= grace {
                    *reported = true;
                    let nodes: Vec<String> = group
                        .iter()
                        .map(|v| format!("node {} ({})", v.node.0, v.state))
                        .collect();
                    let details = format!(
                        "worker {id} shared by {} since {}",
                        nodes.join(" and "),
                        since
                    );
                    self.record(at, ViolationKind::LingeringDuplicateId, details);
                } else if !*reported {
                    recheck = Some(*since + grace);
                }
            }
        }
        self.dup_since.retain(|id, _| dups.contains(id));
        self.dup_acting = acting_dups;
        recheck
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Member, Phase, VERSION};

    fn set(ids: &[&str]) -> BTreeSet<PartitionId> {
        ids.iter().map(|s| PartitionId::parse(s).unwrap()).collect()
    }

    fn gen_entry(generation: u64, members: &[(u32, &BTreeSet<PartitionId>)]) -> Entry {
        let rec = GenRecord {
            v: VERSION,
            epoch: Epoch(1),
            generation: Generation(generation),
            phase: Phase::Stable,
            trigger: None,
            members: members
                .iter()
                .map(|(w, s)| {
                    let m = Member {
                        token: 7,
                        digest: codec::share_digest(*s),
                        chunks: 1,
                        count: s.len() as u32,
                        slot: 0,
                    };
                    (WorkerId(*w), m)
                })
                .collect(),
            resting: None,
        };
        Entry {
            bucket: Bucket::Assign,
            key: "gen".into(),
            revision: generation,
            operation: Operation::Put,
            value: codec::encode(&rec),
        }
    }

    fn kinds(c: &Checker) -> Vec<ViolationKind> {
        c.violations.iter().map(|v| v.kind).collect()
    }

    fn tokens(t: &[u64]) -> BTreeSet<u64> {
        t.iter().copied().collect()
    }

    #[test]
    fn applied_shares_must_match_a_committed_record_for_this_instance() {
        let mut c = Checker::new(true);
        let t = Instant::ZERO;
        let (a, b) = (set(&["p1", "p2"]), set(&["p3"]));
        assert!(c.on_change(t, &gen_entry(1, &[(1, &a), (2, &b)])).is_some());
        let mine = tokens(&[7]);
        c.on_applied(
            t,
            NodeId(0),
            Some(WorkerId(1)),
            &mine,
            None,
            Generation(1),
            &a,
            &a,
        );
        // Without a share of its own a worker applies the empty set.
        c.on_applied(
            t,
            NodeId(3),
            Some(WorkerId(3)),
            &mine,
            None,
            Generation(1),
            &set(&[]),
            &set(&[]),
        );
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        // Another worker's share, an uncommitted generation, a non-member, another instance's share.
        c.on_applied(
            t,
            NodeId(1),
            Some(WorkerId(2)),
            &mine,
            None,
            Generation(1),
            &a,
            &a,
        );
        c.on_applied(
            t,
            NodeId(1),
            Some(WorkerId(2)),
            &mine,
            None,
            Generation(2),
            &b,
            &b,
        );
        c.on_applied(
            t,
            NodeId(2),
            Some(WorkerId(3)),
            &mine,
            None,
            Generation(1),
            &b,
            &b,
        );
        c.on_applied(
            t,
            NodeId(4),
            Some(WorkerId(1)),
            &tokens(&[8]),
            None,
            Generation(1),
            &a,
            &a,
        );
        assert_eq!(kinds(&c), vec![ViolationKind::UncommittedShare; 4]);
        assert!(
            c.violations[3].details.contains("another instance"),
            "{}",
            c.violations[3].details
        );
    }

    #[test]
    fn generations_may_not_go_back_but_pure_drops_pass() {
        let mut c = Checker::new(true);
        let t = Instant::ZERO;
        let mine = tokens(&[7]);
        let a = set(&["p1", "p2"]);
        c.on_change(t, &gen_entry(3, &[(1, &a)]));
        let g = |n| Some(Generation(n));
        let w = Some(WorkerId(1));
        c.on_applied(
            t,
            NodeId(0),
            w,
            &mine,
            g(3),
            Generation(3),
            &set(&[]),
            &set(&["p1"]),
        );
        c.on_applied(
            t,
            NodeId(0),
            w,
            &mine,
            g(3),
            Generation(2),
            &set(&[]),
            &set(&[]),
        );
        assert!(
            c.violations.is_empty(),
            "a fence or revoke timeout only drops"
        );
        c.on_applied(
            t,
            NodeId(0),
            w,
            &mine,
            g(3),
            Generation(2),
            &set(&["p1"]),
            &set(&["p1"]),
        );
        assert_eq!(kinds(&c), vec![ViolationKind::GenerationRegressed]);
    }

    #[test]
    fn two_different_commits_of_one_generation_are_flagged() {
        let mut c = Checker::new(true);
        let t = Instant::ZERO;
        c.on_change(t, &gen_entry(4, &[(1, &set(&["p1"]))]));
        c.on_change(t, &gen_entry(4, &[(1, &set(&["p1"]))]));
        assert!(c.violations.is_empty());
        c.on_change(t, &gen_entry(4, &[(1, &set(&["p2"]))]));
        assert_eq!(kinds(&c), vec![ViolationKind::GenerationReused]);
    }

    fn view(node: usize, id: u32, token: u64, holds: bool, connected: bool) -> IdView {
        IdView {
            node: NodeId(node),
            id: WorkerId(id),
            state: State::Stable,
            token,
            holds,
            connected,
        }
    }

    fn lease(token: u64) -> Entry {
        let v = LeaseValue {
            v: VERSION,
            token,
            capacity: 1,
            applied: None,
            departing: false,
            draining: false,
            loads: None,
        };
        Entry {
            bucket: Bucket::Leases,
            key: "worker.1".into(),
            revision: 1,
            operation: Operation::Put,
            value: codec::encode(&v),
        }
    }

    #[test]
    fn a_stale_holder_of_a_taken_id_is_a_duplicate_in_strict_mode() {
        let grace = Duration::from_secs(10);
        let t = Instant::from_millis(1000);
        // Node 1 took ID 1 (the lease carries its token); node 0 fenced itself: fine.
        let mut c = Checker::new(true);
        let fenced = [view(0, 1, 100, false, false), view(1, 1, 200, false, true)];
        c.check_ids(t, &fenced, |_| Some(lease(200)), grace);
        assert!(c.violations.is_empty());
        // Node 0 still holds partitions: two act as worker 1. Reported once per episode.
        let stale = [view(0, 1, 100, true, false), view(1, 1, 200, false, true)];
        c.check_ids(t, &stale, |_| Some(lease(200)), grace);
        c.check_ids(t, &stale, |_| Some(lease(200)), grace);
        assert_eq!(kinds(&c), vec![ViolationKind::DuplicateId]);
        // Relaxed mode keeps cached partitions on purpose.
        let mut relaxed = Checker::new(false);
        relaxed.check_ids(t, &stale, |_| Some(lease(200)), grace);
        assert!(relaxed.violations.is_empty());
    }

    #[test]
    fn a_shared_id_between_connected_workers_must_resolve_within_the_grace() {
        let grace = Duration::from_secs(10);
        let mut c = Checker::new(false);
        let both = [view(0, 1, 100, false, true), view(1, 1, 200, false, true)];
        let t0 = Instant::from_millis(1000);
        assert_eq!(c.check_ids(t0, &both, |_| None, grace), Some(t0 + grace));
        assert!(c.violations.is_empty());
        c.check_ids(t0 + grace, &both, |_| None, grace);
        assert_eq!(kinds(&c), vec![ViolationKind::LingeringDuplicateId]);
        // Resolved, then shared again: a new episode with a new deadline.
        c.check_ids(t0 + 2 * grace, &both[..1], |_| None, grace);
        let t1 = t0 + 3 * grace;
        assert_eq!(c.check_ids(t1, &both, |_| None, grace), Some(t1 + grace));
    }
}
