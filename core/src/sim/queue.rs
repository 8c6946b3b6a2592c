//! A deterministic timed event queue: events pop in (time, insertion order).

use crate::Instant;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// A min-queue of events ordered by time, ties broken by insertion order, so that the same
/// pushes always pop in the same order.
///
/// The heap orders small keys only; the events wait in a slab of reused slots, so sifting moves
/// a 32-byte key instead of a whole event, and a steady queue allocates nothing. Events pushed
/// in time order ([`Queue::push_in_order`], e.g. timeouts a fixed delay after a monotonic now)
/// skip the heap: they wait in a FIFO lane, and `pop` takes the earlier of the two heads.
#[derive(Debug)]
pub(crate) struct Queue<E> {
    heap: BinaryHeap<Item>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    lane: VecDeque<(Instant, u64, E)>,
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
            lane: VecDeque::new(),
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

    /// Schedules `event` at `at`, cheaply when `at` is no earlier than the last event pushed
    /// this way (the usual case for its callers); otherwise like [`Queue::push`]. Either way the
    /// event pops in (time, insertion order) among all others.
    pub(crate) fn push_in_order(&mut self, at: Instant, event: E) {
        if self.lane.back().is_some_and(|(last, _, _)| at < *last) {
            return self.push(at, event);
        }
        self.seq += 1;
        self.lane.push_back((at, self.seq, event));
    }

    /// The time of the next event.
    pub(crate) fn peek_time(&self) -> Option<Instant> {
        let heap = self.heap.peek().map(|i| i.at);
        let lane = self.lane.front().map(|(at, _, _)| *at);
        match (heap, lane) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes and returns the next event.
    pub(crate) fn pop(&mut self) -> Option<(Instant, E)> {
        let lane_first = match (self.heap.peek(), self.lane.front()) {
            (None, None) => return None,
            (Some(i), Some((at, seq, _))) => (*at, *seq) < (i.at, i.seq),
            (heap, _) => heap.is_none(),
        };
        if lane_first {
            let (at, _, event) = self.lane.pop_front().expect("peeked");
            return Some((at, event));
        }
        let item = self.heap.pop().expect("peeked");
        let event = self.slots[item.slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(item.slot);
        Some((item.at, event))
    }

    /// Number of queued events.
    pub(crate) fn len(&self) -> usize {
        self.heap.len() + self.lane.len()
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

    #[test]
    fn in_order_pushes_interleave_by_time_then_insertion_order() {
        let mut q = Queue::default();
        q.push_in_order(Instant::from_millis(2), "b");
        q.push(Instant::from_millis(2), "c");
        q.push(Instant::from_millis(1), "a");
        q.push_in_order(Instant::from_millis(3), "e");
        q.push_in_order(Instant::from_millis(2), "d"); // out of order: goes to the heap
        q.push(Instant::from_millis(3), "f");
        assert_eq!(q.len(), 6);
        assert_eq!(q.peek_time(), Some(Instant::from_millis(1)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["a", "b", "c", "d", "e", "f"]);
    }
}
