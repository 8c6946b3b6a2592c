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
    let mut next: Shares = target
        .iter()
        .map(|(w, t)| {
            let kept = match committed.get(w) {
                Some(Some(c)) => c.intersection(t).cloned().collect(),
                _ => BTreeSet::new(),
            };
            (*w, kept)
        })
        .collect();
    if !barrier {
        return next;
    }
    // Who may hold each partition now (a partition is normally in one committed share).
    let mut held_by: BTreeMap<&PartitionId, Vec<WorkerId>> = BTreeMap::new();
    for (w, share) in committed.iter().filter(|(w, _)| !exempt.contains(w)) {
        match share {
            Some(share) => share
                .iter()
                .for_each(|p| held_by.entry(p).or_default().push(*w)),
            None => return next,
        }
    }
    for (w, t) in target {
        let grants: Vec<PartitionId> = t
            .iter()
            .filter(|p| !next[w].contains(*p))
            .filter(|p| held_by.get(p).is_none_or(|hs| hs.iter().all(|h| h == w)))
            .cloned()
            .collect();
        next.get_mut(w)
            .expect("every target worker is in next")
            .extend(grants);
    }
    next
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
