//! The handoff rule: from the committed assignment and the target, the next generation.
//!
//! Strict mode never lets two workers hold a partition at once. A generation may *revoke* at any
//! time, but it may *grant* a partition only when (a) every live worker has applied the latest
//! committed generation (the barrier) and (b) no worker that may still hold the partition has it
//! in its committed share. A worker whose committed share is unknown (its share key was
//! overwritten) may hold anything, so nothing is granted until a generation rewrites its share.
//! Relaxed mode publishes the target in one step.

use crate::{HandoffMode, PartitionId, WorkerId};
use std::collections::{BTreeMap, BTreeSet};

/// Shares per worker; `None` is a share whose content is unknown.
pub(crate) type Committed = BTreeMap<WorkerId, Option<BTreeSet<PartitionId>>>;
/// Shares per worker.
pub(crate) type Shares = BTreeMap<WorkerId, BTreeSet<PartitionId>>;

/// The next generation's shares on the way from `committed` to `target`.
///
/// `exempt` are members known to hold nothing (departed, dead and fenced); `barrier` is whether
/// every live worker has applied the committed generation.
pub(crate) fn next_step(
    mode: HandoffMode,
    committed: &Committed,
    target: &Shares,
    exempt: &BTreeSet<WorkerId>,
    barrier: bool,
) -> Shares {
    if mode == HandoffMode::Relaxed {
        return target.clone();
    }
    // Without the grant conditions, every worker keeps what it has of its target.
    let kept_only = || {
        target
            .iter()
            .map(|(w, t)| {
                let kept = match committed.get(w) {
                    Some(Some(c)) => c.intersection(t).cloned().collect(),
                    _ => BTreeSet::new(),
                };
                (*w, kept)
            })
            .collect()
    };
    if !barrier {
        return kept_only();
    }
    // Who may hold each partition now (a partition is normally in one committed share), as
    // (partition, worker) pairs sorted by partition, then by worker.
    let mut held_by: Vec<(&PartitionId, WorkerId)> = Vec::new();
    for (w, share) in committed.iter().filter(|(w, _)| !exempt.contains(w)) {
        match share {
            Some(share) => held_by.extend(share.iter().map(|p| (p, *w))),
            None => return kept_only(),
        }
    }
    held_by.sort_by(|a, b| a.0.cmp(b.0)); // stable: workers stay in order
    let grantable = |p: &PartitionId, w: &WorkerId| {
        let from = held_by.partition_point(|(q, _)| *q < p);
        held_by[from..]
            .iter()
            .take_while(|(q, _)| *q == p)
            .all(|(_, h)| h == w)
    };
    // What `w` keeps of its committed share, plus the grants: every target partition that no
    // other worker may hold (what it keeps is a subset of its target, so one sorted pass).
    target
        .iter()
        .map(|(w, t)| {
            let share = match committed.get(w) {
                Some(Some(c)) => {
                    let mut c = c.iter().peekable();
                    t.iter()
                        .filter(|p| {
                            while c.next_if(|q| q < p).is_some() {}
                            c.peek() == Some(p) || grantable(p, w)
                        })
                        .cloned()
                        .collect()
                }
                _ => t.iter().filter(|p| grantable(p, w)).cloned().collect(),
            };
            (*w, share)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<PartitionId> {
        items
            .iter()
            .map(|s| PartitionId::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn strict_move_is_revoke_then_grant() {
        let (a, b) = (WorkerId(0), WorkerId(1));
        let committed: Committed = [(a, Some(set(&["p1", "p2"]))), (b, Some(set(&[])))].into();
        let target: Shares = [(a, set(&["p1"])), (b, set(&["p2"]))].into();
        let none = BTreeSet::new();
        // Without the barrier only the revoke goes out.
        let step1 = next_step(HandoffMode::Strict, &committed, &target, &none, false);
        assert_eq!(step1, [(a, set(&["p1"])), (b, set(&[]))].into());
        // With the barrier but p2 still in A's committed share: still only the revoke.
        let step1b = next_step(HandoffMode::Strict, &committed, &target, &none, true);
        assert_eq!(step1b, step1);
        // Once A's revoke is committed and applied, p2 is granted to B.
        let committed2: Committed = step1.iter().map(|(w, s)| (*w, Some(s.clone()))).collect();
        assert_eq!(
            next_step(HandoffMode::Strict, &committed2, &target, &none, true),
            target
        );
    }

    #[test]
    fn strict_grants_a_dead_workers_partitions_once_exempt() {
        let (a, b) = (WorkerId(0), WorkerId(1));
        let committed: Committed = [(a, Some(set(&["p1"]))), (b, Some(set(&["p2"])))].into();
        let target: Shares = [(b, set(&["p1", "p2"]))].into();
        let not_yet = next_step(
            HandoffMode::Strict,
            &committed,
            &target,
            &BTreeSet::new(),
            true,
        );
        assert_eq!(not_yet, [(b, set(&["p2"]))].into());
        let exempt = [a].into();
        assert_eq!(
            next_step(HandoffMode::Strict, &committed, &target, &exempt, true),
            target
        );
    }

    #[test]
    fn unknown_share_blocks_every_grant_and_is_rewritten() {
        let (a, b) = (WorkerId(0), WorkerId(1));
        let committed: Committed = [(a, None), (b, Some(set(&[])))].into();
        let target: Shares = [(a, set(&["p1"])), (b, set(&["p2"]))].into();
        let next = next_step(
            HandoffMode::Strict,
            &committed,
            &target,
            &BTreeSet::new(),
            true,
        );
        assert_eq!(next, [(a, set(&[])), (b, set(&[]))].into());
    }

    #[test]
    fn relaxed_publishes_the_target_at_once() {
        let a = WorkerId(0);
        let committed: Committed = [(a, Some(set(&["p1"])))].into();
        let target: Shares = [(WorkerId(1), set(&["p1"]))].into();
        assert_eq!(
            next_step(
                HandoffMode::Relaxed,
                &committed,
                &target,
                &BTreeSet::new(),
                false
            ),
            target
        );
    }
}
