//! The partitions being revoked, each with its deadline, and the earliest deadline at hand:
//! a worker told to let go of 100,000 partitions hears back one at a time, and each answer
//! must cost O(log n), not a scan of what is left.

use crate::{Instant, PartitionId};
use std::collections::BTreeMap;

/// Partitions under revoke with their deadlines, plus how many share each deadline.
#[derive(Debug, Default)]
pub(crate) struct Revoking {
    deadline_of: BTreeMap<PartitionId, Instant>,
    /// Deadline → how many partitions have it (revokes come in batches with one deadline).
    deadlines: BTreeMap<Instant, usize>,
}

impl Revoking {
    /// Starts revoking `p` by `deadline` (a partition already under revoke keeps its first).
    pub fn insert(&mut self, p: PartitionId, deadline: Instant) {
        if let std::collections::btree_map::Entry::Vacant(e) = self.deadline_of.entry(p) {
            e.insert(deadline);
            *self.deadlines.entry(deadline).or_default() += 1;
        }
    }

    /// Ends the revoke of `p`; whether it was under way.
    pub fn remove(&mut self, p: &PartitionId) -> bool {
        let Some(d) = self.deadline_of.remove(p) else {
            return false;
        };
        match self.deadlines.get_mut(&d) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                self.deadlines.remove(&d);
            }
        }
        true
    }

    /// Whether `p` is under revoke.
    pub fn contains(&self, p: &PartitionId) -> bool {
        self.deadline_of.contains_key(p)
    }

    /// Whether nothing is under revoke.
    pub fn is_empty(&self) -> bool {
        self.deadline_of.is_empty()
    }

    /// The earliest deadline, if anything is under revoke.
    pub fn earliest(&self) -> Option<Instant> {
        self.deadlines.keys().next().copied()
    }

    /// The partitions whose deadline is at or before `now`.
    pub fn due(&self, now: Instant) -> Vec<PartitionId> {
        if self.earliest().is_none_or(|d| d > now) {
            return Vec::new();
        }
        self.deadline_of
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Ends every revoke; the partitions that were under way.
    pub fn take(&mut self) -> Vec<PartitionId> {
        self.deadlines.clear();
        std::mem::take(&mut self.deadline_of).into_keys().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pid(s: &str) -> PartitionId {
        PartitionId::parse(s).unwrap()
    }

    #[test]
    fn the_earliest_deadline_follows_inserts_and_removes() {
        let t0 = Instant::ZERO;
        let (t1, t2) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
        let mut r = Revoking::default();
        assert_eq!(r.earliest(), None);
        r.insert(pid("a"), t2);
        r.insert(pid("b"), t1);
        r.insert(pid("c"), t1);
        r.insert(pid("b"), t2); // already under revoke: keeps t1
        assert_eq!(r.earliest(), Some(t1));
        assert_eq!(r.due(t1), vec![pid("b"), pid("c")]);
        assert!(r.remove(&pid("b")));
        assert!(!r.remove(&pid("b")));
        assert_eq!(r.earliest(), Some(t1), "c still has t1");
        assert!(r.remove(&pid("c")));
        assert_eq!(r.earliest(), Some(t2));
        assert!(r.due(t1).is_empty());
        assert!(r.contains(&pid("a")) && !r.contains(&pid("c")));
        assert_eq!(r.take(), vec![pid("a")]);
        assert!(r.is_empty() && r.earliest().is_none());
    }
}
