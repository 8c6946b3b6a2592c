//! Who holds what across the cluster, updated incrementally, and how often partitions moved.

use super::NodeId;
use crate::{PartitionId, WorkerId};
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
    /// Records that `node` (holding worker ID `id`) went from holding `old` to holding `new`.
    /// Partitions it gained that another node also holds are appended to `conflicts`.
    pub(crate) fn update(
        &mut self,
        node: NodeId,
        id: Option<WorkerId>,
        old: &BTreeSet<PartitionId>,
        new: &BTreeSet<PartitionId>,
        conflicts: &mut Vec<PartitionId>,
    ) {
        for p in old.difference(new) {
            if let Some(nodes) = self.owners.get_mut(p) {
                nodes.retain(|n| *n != node);
                if nodes.is_empty() {
                    self.owners.remove(p);
                }
            }
        }
        for p in new.difference(old) {
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
        h.update(a, Some(WorkerId(1)), &set(&[]), &set(&["p1", "p2"]), &mut c);
        assert_eq!(h.moves, 0);
        // Released and re-taken by the same ID (another node, same ID after a restart).
        h.update(a, Some(WorkerId(1)), &set(&["p1", "p2"]), &set(&["p2"]), &mut c);
        h.update(b, Some(WorkerId(1)), &set(&[]), &set(&["p1"]), &mut c);
        assert_eq!(h.moves, 0);
        assert!(c.is_empty());
        // Taken by another ID while still held: a conflict and a move.
        h.update(NodeId(2), Some(WorkerId(2)), &set(&[]), &set(&["p2"]), &mut c);
        assert_eq!(h.moves, 1);
        assert_eq!(c, set(&["p2"]).into_iter().collect::<Vec<_>>());
        assert_eq!(h.holders(&PartitionId::parse("p2").unwrap()), &[a, NodeId(2)]);
    }
}
