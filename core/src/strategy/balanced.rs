//! The default strategy: sticky, weight- and capacity-aware, close to the movement floor.
//!
//! Four passes over the input (loads are always weight / capacity):
//! 1. **Pins**: a partition pinned to a live worker goes there, whatever it costs.
//! 2. **Sticky**: every worker keeps its previous partitions, heaviest first, while it stays
//!    within its quota `target × (1 + slack)` (it may always keep one).
//! 3. **Placement**: the rest (new partitions, those of departed workers, those shed in pass 2)
//!    go heaviest-first to the worker with the least relative load. When a partition fits
//!    nowhere, the worker that can make room by moving off the least weight of *lighter*
//!    partitions takes it, and those lighter partitions are placed in turn. This keeps the
//!    result within quota, so that planning again from it moves nothing.
//! 4. **Refinement**: while the lightest worker is below `target × (1 − slack)` (a newcomer
//!    starts at zero), move to it the partition that best fills the gap from the most loaded
//!    worker that can spare it without falling below that line itself.
//!
//! Why this shape: passes 2–4 move only what the balance bounds force, so a join moves about
//! `(1 − slack)/(N+1)` of the weight and an equal-weight leave moves the departed worker's
//! partitions and nothing else. When partitions are heavy compared with the headroom that
//! `slack` leaves (a partition of half the mean, and every worker already near the mean), a
//! leave cannot meet both the movement floor and the load bound; Balanced then keeps the load
//! bound and moves the least extra weight it finds, because an overloaded result would be
//! reshuffled by the next imbalance-triggered plan anyway.
//!
//! Cost: O(P log P + P log W) for placement; refinement and room-making add
//! O(W + partitions scanned) per partition they move, and they only run when needed.

use super::{
    dead_pin_note, effective_slack, Plan, PlanInput, Prepared, RelLoad, Strategy, NO_WORKER,
};
use crate::{PartitionId, WorkerId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Sticky, weight- and capacity-aware placement; the default strategy.
///
/// Keeps partitions where they are while their owner is within `target × (1 + slack)`, places
/// the rest heaviest-first on the least-loaded worker, then lifts workers below
/// `target × (1 − slack)` (so a newcomer is not idle). Honours pins and `max_moves` (pins win
/// over the budget). Results change with the workers' capacities, the partitions' weights, the
/// previous assignment, pins, `slack` and `max_moves`; never with the order of the input lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Balanced {}

impl Strategy for Balanced {
    fn name(&self) -> &str {
        "balanced"
    }

    fn assign(&self, input: &PlanInput) -> Plan {
        let prep = Prepared::new(input);
        let solver = Solver::run(&prep, input);
        prep.plan(&solver.owner)
    }

    fn explain(&self, input: &PlanInput, partition: &PartitionId) -> String {
        let prep = Prepared::new(input);
        let Some(rank) = prep.rank(partition) else {
            return format!("{partition} is not in the input's partition list");
        };
        if prep.workers.is_empty() {
            return format!("{partition} is not placed: no live worker");
        }
        let s = Solver::run(&prep, input);
        let note = dead_pin_note(input, &prep, rank);
        let gone = input.previous.get(partition).copied();
        format!("{note}{}", s.describe(rank, gone, effective_slack(input)))
    }
}

/// Why a partition left (or stayed with) its previous owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Pinned,
    Kept,
    KeptOverBudget,
    New,
    OverQuota,
    Evicted,
    Refined,
}

/// How the final owner was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    Stayed,
    LeastLoaded,
    MadeRoom,
    NoRoom,
    Refill,
}

struct Solver<'p> {
    prep: &'p Prepared<'p>,
    weight: Vec<u64>,
    pinned: Vec<bool>,
    cap: Vec<u64>,
    target: Vec<f64>,
    quota: Vec<f64>,
    floor: Vec<f64>,
    load: Vec<u64>,
    ver: Vec<u32>,
    owner: Vec<u32>,
    /// Movable (unpinned) partitions per worker as (weight, rank); built on first need.
    items: Option<Vec<BTreeSet<(u64, u32)>>>,
    /// Partitions with a live previous owner that are not (or not yet) on it.
    moved: usize,
    budget: usize,
    cause: Vec<Cause>,
    how: Vec<How>,
}

impl<'p> Solver<'p> {
    fn run(prep: &'p Prepared<'p>, input: &PlanInput) -> Self {
        let nw = prep.workers.len();
        let np = prep.parts.len();
        let slack = effective_slack(input);
        let total_w = prep.total_weight() as f64;
        let total_c = prep.total_capacity().max(1) as f64;
        let cap: Vec<u64> = (0..nw as u32).map(|w| prep.capacity(w)).collect();
        let target: Vec<f64> = cap.iter().map(|&c| total_w * c as f64 / total_c).collect();
        let mut s = Solver {
            prep,
            weight: prep.parts.iter().map(|p| p.weight()).collect(),
            pinned: vec![false; np],
            quota: target.iter().map(|t| t * (1.0 + slack)).collect(),
            floor: target.iter().map(|t| t * (1.0 - slack).max(0.0)).collect(),
            target,
            cap,
            load: vec![0; nw],
            ver: vec![0; nw],
            owner: vec![NO_WORKER; np],
            items: None,
            moved: 0,
            budget: input.max_moves.unwrap_or(usize::MAX),
            cause: vec![Cause::New; np],
            how: vec![How::LeastLoaded; np],
        };
        if nw == 0 {
            return s;
        }
        let orphans = s.pin_and_keep();
        s.place(orphans);
        s.refine();
        debug_assert_eq!(s.moved, s.count_moved(), "move accounting drifted");
        s
    }

    /// Passes 1 and 2. Returns the partitions still to place, as a max-heap by weight.
    fn pin_and_keep(&mut self) -> BinaryHeap<(u64, Reverse<u32>)> {
        let prep = self.prep;
        let mut by_prev: Vec<Vec<u32>> = vec![Vec::new(); prep.workers.len()];
        let mut orphans = Vec::new();
        for rank in 0..prep.parts.len() {
            let w = self.weight[rank];
            if let Some(pin) = prep.pin[rank] {
                self.pinned[rank] = true;
                self.owner[rank] = pin;
                self.load[pin as usize] += w;
                self.cause[rank] = Cause::Pinned;
                self.how[rank] = How::Stayed;
                if prep.prev[rank].is_some_and(|p| p != pin) {
                    self.moved += 1;
                }
            } else if let Some(prev) = prep.prev[rank] {
                by_prev[prev as usize].push(rank as u32);
            } else {
                orphans.push((w, Reverse(rank as u32)));
            }
        }
        for (wi, mut ranks) in by_prev.into_iter().enumerate() {
            ranks.sort_unstable_by_key(|&r| (Reverse(self.weight[r as usize]), r));
            for r in ranks {
                let w = self.weight[r as usize];
                let fits = self.load[wi] == 0 || (self.load[wi] + w) as f64 <= self.quota[wi];
                if fits || self.moved >= self.budget {
                    self.owner[r as usize] = wi as u32;
                    self.load[wi] += w;
                    self.how[r as usize] = How::Stayed;
                    self.cause[r as usize] = if fits {
                        Cause::Kept
                    } else {
                        Cause::KeptOverBudget
                    };
                } else {
                    self.moved += 1;
                    self.cause[r as usize] = Cause::OverQuota;
                    orphans.push((w, Reverse(r)));
                }
            }
        }
        BinaryHeap::from(orphans)
    }

    /// Pass 3: heaviest first onto the least relatively loaded worker, making room if needed.
    fn place(&mut self, mut orphans: BinaryHeap<(u64, Reverse<u32>)>) {
        let mut heap: BinaryHeap<Reverse<RelLoad>> =
            (0..self.load.len() as u32).map(|w| Reverse(self.key(w))).collect();
        while let Some((w, Reverse(rank))) = orphans.pop() {
            let top = loop {
                let Reverse(k) = *heap.peek().expect("one entry per worker");
                if k.ver == self.ver[k.idx as usize] {
                    break k.idx;
                }
                heap.pop();
            };
            let (to, how) = if self.fits(top, w) {
                heap.pop();
                (top, How::LeastLoaded)
            } else if let Some(x) = self.best_fit(w) {
                (x, How::LeastLoaded)
            } else if let Some((x, evict)) = self.cheapest_room(w) {
                for e in evict {
                    self.unassign(e);
                    self.cause[e as usize] = if self.cause[e as usize] == Cause::Kept {
                        Cause::Evicted
                    } else {
                        self.cause[e as usize]
                    };
                    orphans.push((self.weight[e as usize], Reverse(e)));
                }
                (x, How::MadeRoom)
            } else {
                (top, How::NoRoom)
            };
            self.assign(rank, to);
            self.how[rank as usize] = how;
            heap.push(Reverse(self.key(to)));
        }
    }

    /// Pass 4: lift workers below their floor with partitions from the most loaded ones.
    fn refine(&mut self) {
        let nw = self.load.len() as u32;
        if (0..nw).all(|w| self.load[w as usize] as f64 >= self.floor[w as usize]) {
            return;
        }
        let mut order: BTreeSet<RelLoad> = (0..nw).map(|w| self.key(w)).collect();
        let mut stuck: BTreeSet<u32> = BTreeSet::new();
        loop {
            if self.moved >= self.budget {
                return;
            }
            let Some(r) = order.iter().map(|k| k.idx).find(|w| !stuck.contains(w)) else {
                return;
            };
            let ri = r as usize;
            if self.load[ri] as f64 >= self.floor[ri] {
                return;
            }
            let need = self.floor[ri] - self.load[ri] as f64;
            let room = self.quota[ri] - self.load[ri] as f64;
            let mut pick = None;
            for d in order.iter().rev().map(|k| k.idx) {
                let di = d as usize;
                let surplus = self.load[di] as f64 - self.floor[di];
                if d == r || surplus <= 0.0 {
                    break;
                }
                if let Some(p) = self.best_gift(d, need, surplus.min(room)) {
                    pick = Some((d, p));
                    break;
                }
            }
            let Some((d, p)) = pick else {
                stuck.insert(r);
                continue;
            };
            order.remove(&self.key(d));
            order.remove(&self.key(r));
            self.unassign(p);
            self.assign(p, r);
            if self.cause[p as usize] == Cause::Kept {
                self.cause[p as usize] = Cause::Refined;
            }
            self.how[p as usize] = How::Refill;
            order.insert(self.key(d));
            order.insert(self.key(r));
        }
    }

    /// The partition on `d` that best fills `need` without exceeding `limit`: the heaviest
    /// one not above `need`, else the lightest one above it.
    fn best_gift(&mut self, d: u32, need: f64, limit: f64) -> Option<u32> {
        if limit < 1.0 {
            return None;
        }
        let items = &self.items()[d as usize];
        let below = need.min(limit).floor() as u64;
        if let Some(&(_, p)) = items.range(..=(below, u32::MAX)).next_back() {
            return Some(p);
        }
        let above = need.ceil() as u64;
        match items.range((above, 0)..).next() {
            Some(&(w, p)) if w as f64 <= limit => Some(p),
            _ => None,
        }
    }

    /// The fitting worker with the least relative load (capacities differ, so the globally
    /// least-loaded worker is not always the one with the most room).
    fn best_fit(&self, w: u64) -> Option<u32> {
        (0..self.load.len() as u32)
            .filter(|&x| self.fits(x, w))
            .min_by_key(|&x| self.key(x))
    }

    /// The worker that can take a partition of weight `w` by moving off the least weight of
    /// strictly lighter partitions, within the move budget, and those partitions.
    fn cheapest_room(&mut self, w: u64) -> Option<(u32, Vec<u32>)> {
        self.items();
        let mut best: Option<(u64, RelLoad, Vec<u32>)> = None;
        for x in 0..self.load.len() as u32 {
            let xi = x as usize;
            let overflow = (self.load[xi] + w) as f64 - self.quota[xi];
            let mut sum = 0u64;
            let mut costly = 0usize;
            let mut evict = Vec::new();
            let best_sum = best.as_ref().map_or(u64::MAX, |b| b.0);
            let prev = &self.prep.prev;
            let items = &self.items.as_ref().expect("built by items()")[xi];
            for &(iw, r) in items.range(..(w, 0)) {
                if sum as f64 >= overflow || sum + iw > best_sum {
                    break;
                }
                sum += iw;
                costly += usize::from(prev[r as usize] == Some(x));
                evict.push(r);
            }
            let enough = sum as f64 >= overflow && self.moved + costly <= self.budget;
            if enough && sum <= best_sum {
                let key = self.key(x);
                if best.as_ref().is_none_or(|b| (sum, key) < (b.0, b.1)) {
                    best = Some((sum, key, evict));
                }
            }
        }
        best.map(|(_, k, evict)| (k.idx, evict))
    }

    fn fits(&self, x: u32, w: u64) -> bool {
        let xi = x as usize;
        self.load[xi] == 0 || (self.load[xi] + w) as f64 <= self.quota[xi]
    }

    fn key(&self, w: u32) -> RelLoad {
        RelLoad {
            load: self.load[w as usize],
            cap: self.cap[w as usize],
            idx: w,
            ver: self.ver[w as usize],
        }
    }

    /// Movable partitions per worker, built from the current owners on first use.
    fn items(&mut self) -> &mut Vec<BTreeSet<(u64, u32)>> {
        if self.items.is_none() {
            let mut items = vec![BTreeSet::new(); self.load.len()];
            for (rank, &o) in self.owner.iter().enumerate() {
                if o != NO_WORKER && !self.pinned[rank] {
                    items[o as usize].insert((self.weight[rank], rank as u32));
                }
            }
            self.items = Some(items);
        }
        self.items.as_mut().expect("just built")
    }

    fn assign(&mut self, rank: u32, to: u32) {
        let r = rank as usize;
        debug_assert_eq!(self.owner[r], NO_WORKER);
        self.owner[r] = to;
        self.load[to as usize] += self.weight[r];
        self.ver[to as usize] += 1;
        if self.prep.prev[r] == Some(to) {
            self.moved -= 1;
        }
        if let Some(items) = self.items.as_mut() {
            items[to as usize].insert((self.weight[r], rank));
        }
    }

    fn unassign(&mut self, rank: u32) {
        let r = rank as usize;
        let from = self.owner[r];
        self.owner[r] = NO_WORKER;
        self.load[from as usize] -= self.weight[r];
        self.ver[from as usize] += 1;
        if self.prep.prev[r] == Some(from) {
            self.moved += 1;
        }
        if let Some(items) = self.items.as_mut() {
            items[from as usize].remove(&(self.weight[r], rank));
        }
    }

    fn count_moved(&self) -> usize {
        (0..self.owner.len())
            .filter(|&r| self.prep.prev[r].is_some_and(|p| p != self.owner[r]))
            .count()
    }

    /// One sentence on why partition `rank` ends where it does.
    /// `recorded` is the previous owner named by the input, live or not.
    fn describe(&self, rank: usize, recorded: Option<WorkerId>, slack: f64) -> String {
        let prep = self.prep;
        let to = self.owner[rank];
        let to_id = prep.worker_id(to);
        let of_target = |w: u32| {
            let t = self.target[w as usize];
            if t > 0.0 {
                self.load[w as usize] as f64 / t
            } else {
                0.0
            }
        };
        let prev = prep.prev[rank].map(|p| prep.worker_id(p));
        let from = prev.map_or(String::new(), |p| p.to_string());
        let head = match self.cause[rank] {
            Cause::Pinned => return format!("pinned to worker {to_id}"),
            Cause::Kept if self.how[rank] == How::Stayed => {
                return format!(
                    "kept on its previous owner {to_id} (load {:.2} of target)",
                    of_target(to)
                )
            }
            Cause::KeptOverBudget => {
                return format!(
                    "kept on its previous owner {to_id} although it is over quota (load {:.2} \
                     of target): the move budget is spent",
                    of_target(to)
                )
            }
            Cause::Kept | Cause::Refined => format!("moved from {from} (most loaded)"),
            Cause::New => match recorded {
                Some(gone) => format!("its previous owner {gone} is gone; placed"),
                None => "new partition placed".to_owned(),
            },
            Cause::OverQuota => format!("moved from {from} (over quota)"),
            Cause::Evicted => {
                format!("moved from {from} (to make room there for a heavier partition)")
            }
        };
        let tail = match self.how[rank] {
            How::Stayed | How::LeastLoaded => format!("least-loaded worker {to_id}"),
            How::MadeRoom => {
                format!("worker {to_id}, after moving lighter partitions off it to make room")
            }
            How::NoRoom => format!(
                "least-loaded worker {to_id} (no worker had room for weight {})",
                self.weight[rank]
            ),
            How::Refill => format!(
                "worker {to_id}, which was below {:.2} of its target",
                (1.0 - slack).max(0.0)
            ),
        };
        let sep = if head.ends_with("placed") { " on " } else { " to " };
        format!("{head}{sep}{tail}")
    }
}
