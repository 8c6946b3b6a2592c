//! Who holds what across the cluster, updated incrementally, and how often partitions moved.

use super::NodeId;
use crate::{PartitionId, WorkerId};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// The owners of every held partition, by node, kept in step with each node's holdings.
#[derive(Debug, Default)]
pub(crate) struct Holdings {
    owners: BTreeMap<PartitionId, Vec<NodeId>>,
    /// The worker ID that last gained each partition.
    last_holder: BTreeMap<PartitionId, WorkerId>,
    /// Partitions whose holder ID changed from one ID to another.
    pub(crate) moves: u64,
}

impl Holdings {
    /// Records that `node` (holding worker ID `id`) went from holding `held` to holding `new`,
    /// and updates `held` to `new`. Partitions it gained that another node also holds are
    /// appended to `conflicts`. Returns whether anything changed.
    pub(crate) fn update(
        &mut self,
        node: NodeId,
        id: Option<WorkerId>,
        held: &mut BTreeSet<PartitionId>,
        new: &BTreeSet<PartitionId>,
        conflicts: &mut Vec<PartitionId>,
    ) -> bool {
        // One merge pass over both sorted sets.
        let (mut lost, mut gained) = (Vec::new(), Vec::new());
        let (mut a, mut b) = (held.iter().peekable(), new.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.cmp(y) {
                    Ordering::Less => lost.push(a.next().expect("peeked").clone()),
                    Ordering::Greater => gained.push(b.next().expect("peeked")),
                    Ordering::Equal => {
                        a.next();
                        b.next();
                    }
                },
                (Some(_), None) => lost.push(a.next().expect("peeked").clone()),
                (None, Some(_)) => gained.push(b.next().expect("peeked")),
                (None, None) => break,
            }
        }
        if lost.is_empty() && gained.is_empty() {
            return false;
        }
        for p in lost {
            if let Some(nodes) = self.owners.get_mut(&p) {
                nodes.retain(|n| *n != node);
                if nodes.is_empty() {
                    self.owners.remove(&p);
                }
            }
            held.remove(&p);
        }
        for p in gained {
            held.insert(p.clone());
            let nodes = self.owners.entry(p.clone()).or_default();
            if !nodes.contains(&node) {
                nodes.push(node);
            }
            if nodes.len() > 1 {
                conflicts.push(p.clone());
            }
            if let Some(id) = id {
                match self.last_holder.get_mut(p) {
                    Some(prev) if *prev != id => {
                        self.moves += 1;
                        *prev = id;
                    }
                    Some(_) => {}
                    None => {
                        self.last_holder.insert(p.clone(), id);
                    }
                }
            }
        }
        true
    }

    /// The nodes holding each held partition.
    pub(crate) fn owners(&self) -> &BTreeMap<PartitionId, Vec<NodeId>> {
        &self.owners
    }

    /// The nodes holding `p`.
    pub(crate) fn holders(&self, p: &PartitionId) -> &[NodeId] {
        self.owners.get(p).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<PartitionId> {
        ids.iter().map(|s| PartitionId::parse(s).unwrap()).collect()
    }

    #[test]
    fn moves_count_holder_id_changes_only() {
        let mut h = Holdings::default();
        let mut c = Vec::new();
        let (a, b) = (NodeId(0), NodeId(1));
        let (mut held_a, mut held_b, mut held_c) = (set(&[]), set(&[]), set(&[]));
        h.update(
            a,
            Some(WorkerId(1)),
            &mut held_a,
            &set(&["p1", "p2"]),
            &mut c,
        );
        assert_eq!(h.moves, 0);
        assert_eq!(held_a, set(&["p1", "p2"]));
        // Released and re-taken by the same ID (another node, same ID after a restart).
        h.update(a, Some(WorkerId(1)), &mut held_a, &set(&["p2"]), &mut c);
        h.update(b, Some(WorkerId(1)), &mut held_b, &set(&["p1"]), &mut c);
        assert_eq!(h.moves, 0);
        assert!(c.is_empty());
        // Taken by another ID while still held: a conflict and a move.
        h.update(
            NodeId(2),
            Some(WorkerId(2)),
            &mut held_c,
            &set(&["p2"]),
            &mut c,
        );
        assert_eq!(h.moves, 1);
        assert_eq!(c, set(&["p2"]).into_iter().collect::<Vec<_>>());
        assert_eq!(
            h.holders(&PartitionId::parse("p2").unwrap()),
            &[a, NodeId(2)]
        );
    }
}
