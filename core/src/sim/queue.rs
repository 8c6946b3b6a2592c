//! A deterministic timed event queue: events pop in (time, insertion order).

use crate::Instant;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A min-queue of events ordered by time, ties broken by insertion order, so that the same
/// pushes always pop in the same order.
///
/// The heap orders small keys only; the events wait in a slab of reused slots, so sifting moves
/// a 32-byte key instead of a whole event, and a steady queue allocates nothing.
#[derive(Debug)]
pub(crate) struct Queue<E> {
    heap: BinaryHeap<Item>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    seq: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct Item {
    at: Instant,
    seq: u64,
    slot: u32,
}

impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    /// Reversed: the earliest (time, seq) is the greatest, so the max-heap pops it first.
    /// (`seq` is unique, so `slot` never decides.)
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<E> Queue<E> {
    /// Schedules `event` at `at`.
    pub(crate) fn push(&mut self, at: Instant, event: E) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 queued events")
            }
        };
        self.heap.push(Item {
            at,
            seq: self.seq,
            slot,
        });
    }

    /// The time of the next event.
    pub(crate) fn peek_time(&self) -> Option<Instant> {
        self.heap.peek().map(|i| i.at)
    }

    /// Removes and returns the next event.
    pub(crate) fn pop(&mut self) -> Option<(Instant, E)> {
        let item = self.heap.pop()?;
        let event = self.slots[item.slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(item.slot);
        Some((item.at, event))
    }

    /// Number of queued events.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut q = Queue::default();
        q.push(Instant::from_millis(5), "c");
        q.push(Instant::from_millis(1), "a");
        q.push(Instant::from_millis(5), "d");
        q.push(Instant::from_millis(1), "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }
}
