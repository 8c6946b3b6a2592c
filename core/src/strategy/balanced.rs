//! The default strategy: sticky, weight- and capacity-aware, close to the movement floor.
//! (How it works and why: see [`Balanced`].)

use super::{
    dead_pin_note, effective_slack, Plan, PlanInput, Prepared, RelLoad, Strategy, NO_WORKER,
};
use crate::{PartitionId, WorkerId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Sticky, weight- and capacity-aware placement; the default strategy.
///
/// Results change with the workers' capacities, the partitions' weights, the previous
/// assignment, pins, `slack` and `max_moves` (pins win over the budget); never with the order
/// of the input lists.
///
/// Four passes over the input (loads are always weight / capacity; a worker's *target* is its
/// capacity's share of the total weight):
/// 1. **Pins**: a partition pinned to a live worker goes there, whatever it costs.
/// 2. **Sticky**: every worker keeps its previous partitions, heaviest first, while it stays
///    within its *quota* (it may always keep one): `target × (1 + slack)` in a budgeted round
///    (`max_moves` is `Some`), otherwise the larger of that and `target + heaviest`, *heaviest*
///    being the heaviest partition's weight (in relative load: the mean plus the heaviest
///    partition scaled to the worker's capacity). Workers are visited most loaded first, so a
///    move budget goes where it narrows the imbalance most.
/// 3. **Placement**: the rest (new partitions, those of departed workers, those shed in pass 2)
///    go heaviest-first to the worker whose relative load *after* taking the partition is
///    lowest — the least-loaded worker when capacities are equal, ties by lower ID (with mixed
///    capacities this is what keeps a big partition off a small worker). When a partition
///    fits nowhere within the quota, the worker that can make room by moving off the least
///    weight of *lighter* partitions takes it, and those are placed in turn. A shed partition
///    that fits nowhere and for which no room can be made goes back to its owner (moving it
///    would only shift the overload), and the move it was counted for goes to the next
///    partition pass 2 kept over quota for want of budget. So planning again from the result
///    under the same quota moves nothing, unless a move budget cut the plan short.
/// 4. **Refinement**: while the lightest worker is below `target × (1 − slack)` (a newcomer
///    starts at zero), move to it the partition that best fills its gap from the most loaded
///    worker that can spare one without falling below its own target; else below that line;
///    if none can, from the most loaded worker for which the move still narrows the gap
///    between the two.
///
/// Why this shape: passes 2–4 move only what the quotas force, so a join moves about
/// `(1 − slack)/(N+1)` of the weight and a leave moves the departed worker's partitions and
/// nothing else (DESIGN §5.6). The two quotas split the work between two kinds of plan. A
/// membership or partition change (no `max_moves`) moves at most about the floor and may leave
/// the heaviest worker at mean + heaviest partition: with partitions heavy next to the headroom
/// `slack` leaves, holding every worker to the tight quota would make whoever takes a departed
/// heavy partition shed about as much, which someone else would take, and so on (5× the floor
/// in the 3,000-partition skewed benchmark). Imbalance rounds with a move budget (the leader's,
/// when the heaviest load drifts too far over the mean) then even it out under the tight quota,
/// at most `max_moves` partitions at a time; partitions of departed workers never count against
/// the budget, so `Some(0)` moves exactly the departed share.
///
/// Cost: O(P log P + P·(C + log W)) for the first three passes, C being the number of distinct
/// capacities; making room and refining add O(W + partitions scanned) per partition they move,
/// and run only when needed (1,000 workers and 100,000 partitions plan in 20–30 ms).
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
    KeptNoRoom,
    New,
    OverQuota,
    Evicted,
    Refined,
}

impl Cause {
    /// Whether the partition was left on its previous owner (so taking it off is a move).
    fn on_owner(self) -> bool {
        matches!(
            self,
            Cause::Kept | Cause::KeptOverBudget | Cause::KeptNoRoom
        )
    }
}

/// The line a donor must stay at or above when lifting a worker below its floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    Target,
    Floor,
    Nothing,
}

/// What a donor can hand to a worker below its floor (see [`Solver::gift`]).
enum Gift {
    Stop,
    Nothing,
    Give(u32),
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
        let weight: Vec<u64> = prep.parts.iter().map(|p| p.weight()).collect();
        // a membership or partition change (no budget) moves the minimum and accepts up to
        // one heaviest partition over the target; a budgeted round evens the load out
        let heaviest = match input.max_moves {
            None => weight.iter().copied().max().unwrap_or(0) as f64,
            Some(_) => 0.0,
        };
        let mut s = Solver {
            prep,
            weight,
            pinned: vec![false; np],
            quota: target
                .iter()
                .map(|t| (t * (1.0 + slack)).max(t + heaviest))
                .collect(),
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
        let (orphans, held) = s.pin_and_keep();
        s.place(orphans, held);
        s.refine();
        debug_assert_eq!(s.moved, s.count_moved(), "move accounting drifted");
        s
    }

    /// Passes 1 and 2. Returns the partitions still to place, as a max-heap by weight, and
    /// those kept over quota because the move budget was spent, in the order they were met.
    fn pin_and_keep(&mut self) -> (BinaryHeap<(u64, Reverse<u32>)>, Vec<u32>) {
        let prep = self.prep;
        let mut by_prev: Vec<Vec<u32>> = vec![Vec::new(); prep.workers.len()];
        let mut orphans = Vec::new();
        let mut held = Vec::new();
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
        // most loaded first (previous partitions plus pins, relative to capacity), so that a
        // move budget goes where it narrows the imbalance most; without a budget the order
        // does not matter (each worker keeps what fits its own quota)
        let mut order: Vec<(u64, u64, usize)> = by_prev
            .iter()
            .enumerate()
            .map(|(wi, ranks)| {
                let prev: u64 = ranks.iter().map(|&r| self.weight[r as usize]).sum();
                (self.load[wi] + prev, self.cap[wi], wi)
            })
            .collect();
        order.sort_unstable_by(|&(la, ca, a), &(lb, cb, b)| {
            (u128::from(lb) * u128::from(ca))
                .cmp(&(u128::from(la) * u128::from(cb)))
                .then(a.cmp(&b))
        });
        for (_, _, wi) in order {
            let mut ranks = std::mem::take(&mut by_prev[wi]);
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
                        held.push(r);
                        Cause::KeptOverBudget
                    };
                } else {
                    self.moved += 1;
                    self.cause[r as usize] = Cause::OverQuota;
                    orphans.push((w, Reverse(r)));
                }
            }
        }
        (BinaryHeap::from(orphans), held)
    }

    /// Pass 3: heaviest first onto the worker whose relative load after taking the partition
    /// is lowest (the least-loaded one when capacities are equal), making room if needed.
    ///
    /// A shed partition that goes back to its owner gives its move back to the budget; the
    /// partitions `held` back by the spent budget (still on their owners) are then shed in
    /// turn while the budget lasts and their owner is still over quota, so that a heavy
    /// partition nobody can take does not waste the round.
    fn place(&mut self, mut orphans: BinaryHeap<(u64, Reverse<u32>)>, held: Vec<u32>) {
        let mut classes = Classes::new(&self.cap);
        for x in 0..self.load.len() as u32 {
            classes.push(x, self.load[x as usize], self.ver[x as usize]);
        }
        let mut held = held.into_iter();
        while let Some((w, Reverse(rank))) = orphans
            .pop()
            .or_else(|| self.shed_held(&mut held, &mut classes))
        {
            let top = classes.best(|a, b| self.before(a, b, w), &self.ver);
            let (to, how) = if self.fits(top, w) {
                (top, How::LeastLoaded)
            } else if let Some(x) = self.best_fit(w) {
                (x, How::LeastLoaded)
            } else if let Some((x, evict)) = self.cheapest_room(w) {
                for e in evict {
                    self.unassign(e);
                    if self.cause[e as usize].on_owner() {
                        self.cause[e as usize] = Cause::Evicted;
                    }
                    orphans.push((self.weight[e as usize], Reverse(e)));
                }
                (x, How::MadeRoom)
            } else if let (Cause::OverQuota, Some(prev)) =
                (self.cause[rank as usize], self.prep.prev[rank as usize])
            {
                // shed for being over quota, but nobody has room: moving it would only shift
                // the overload (and planning again would shift it back)
                self.cause[rank as usize] = Cause::KeptNoRoom;
                (prev, How::Stayed)
            } else {
                (top, How::NoRoom)
            };
            self.assign(rank, to);
            self.how[rank as usize] = how;
            classes.push(to, self.load[to as usize], self.ver[to as usize]);
        }
    }

    /// Sheds the next partition `held` back by the spent move budget, if the budget allows a
    /// move again and its owner is still over quota.
    fn shed_held(
        &mut self,
        held: &mut impl Iterator<Item = u32>,
        classes: &mut Classes,
    ) -> Option<(u64, Reverse<u32>)> {
        if self.moved >= self.budget {
            return None;
        }
        let r = held.find(|&r| {
            let o = self.owner[r as usize];
            self.cause[r as usize] == Cause::KeptOverBudget
                && self.prep.prev[r as usize] == Some(o)
                && self.load[o as usize] as f64 > self.quota[o as usize]
        })?;
        let from = self.owner[r as usize];
        self.unassign(r);
        self.cause[r as usize] = Cause::OverQuota;
        classes.push(from, self.load[from as usize], self.ver[from as usize]);
        Some((self.weight[r as usize], Reverse(r)))
    }

    /// Whether worker `a` should take a partition of weight `w` before worker `b`: lower
    /// relative load after taking it, then lower relative load now, then lower ID.
    fn before(&self, a: u32, b: u32, w: u64) -> bool {
        let (la, lb) = (self.load[a as usize], self.load[b as usize]);
        let (ca, cb) = (
            u128::from(self.cap[a as usize]),
            u128::from(self.cap[b as usize]),
        );
        let after = (u128::from(la + w) * cb).cmp(&(u128::from(lb + w) * ca));
        after.then(self.key(a).cmp(&self.key(b))).is_lt()
    }

    /// Pass 4: lift workers below their floor with partitions from the most loaded ones.
    ///
    /// Every move goes from a worker `d` to the lightest worker `r` and leaves both strictly
    /// between their old relative loads (so the sum of load²/capacity falls and the pass
    /// ends). Preferred donors stay at or above their own target (so what the lifted worker
    /// gets comes off the workers most over theirs); next, donors that stay at or above their
    /// floor; only when none can help is a donor allowed below it (then it is lifted in turn),
    /// so a newcomer is not left idle just because every spare partition is heavier than any
    /// worker's surplus.
    fn refine(&mut self) {
        let nw = self.load.len() as u32;
        if (0..nw).all(|w| self.load[w as usize] as f64 >= self.floor[w as usize]) {
            return;
        }
        self.items();
        let mut order: BTreeSet<RelLoad> = (0..nw).map(|w| self.key(w)).collect();
        // workers below their floor that no donor can help; only a worker that just gained
        // can become a new donor for them (donors only lose), so that is all we recheck
        let mut stuck: BTreeSet<u32> = BTreeSet::new();
        while self.moved < self.budget {
            let Some(r) = order.iter().map(|k| k.idx).find(|w| !stuck.contains(w)) else {
                return;
            };
            if self.load[r as usize] as f64 >= self.floor[r as usize] {
                return;
            }
            let mut pick = None;
            'passes: for keep in [Keep::Target, Keep::Floor, Keep::Nothing] {
                for d in order.iter().rev().map(|k| k.idx) {
                    match self.gift(d, r, keep) {
                        Gift::Stop => break,
                        Gift::Nothing => {}
                        Gift::Give(p) => {
                            pick = Some((d, p));
                            break 'passes;
                        }
                    }
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
            if self.cause[p as usize].on_owner() {
                self.cause[p as usize] = Cause::Refined;
            }
            self.how[p as usize] = How::Refill;
            order.insert(self.key(d));
            order.insert(self.key(r));
            // the loosest condition finds a gift whenever a stricter one would
            stuck.retain(|&s| !matches!(self.gift(r, s, Keep::Nothing), Gift::Give(_)));
        }
    }

    /// What donor `d` can hand to the lifted worker `r`: the partition that best fills `r`'s
    /// gap within `r`'s quota (or anything, if `r` is empty) and leaves both strictly between
    /// their current relative loads, and `d` at or above the line `keep` names. `Stop` when
    /// `d`, and so every less loaded donor, cannot qualify.
    fn gift(&self, d: u32, r: u32, keep: Keep) -> Gift {
        let (di, ri) = (d as usize, r as usize);
        let Some(fair) = self.fair_limit(d, r) else {
            return Gift::Stop;
        };
        let room = match self.load[ri] {
            0 => f64::INFINITY,
            l => self.quota[ri] - l as f64,
        };
        let mut limit = room.min(fair as f64);
        let line = match keep {
            Keep::Target => Some(self.target[di]),
            Keep::Floor => Some(self.floor[di]),
            Keep::Nothing => None,
        };
        if let Some(line) = line {
            let surplus = self.load[di] as f64 - line;
            if surplus <= 0.0 {
                return Gift::Stop;
            }
            limit = limit.min(surplus);
        }
        let need = self.floor[ri] - self.load[ri] as f64;
        match self.best_gift(d, need, limit) {
            Some(p) => Gift::Give(p),
            None => Gift::Nothing,
        }
    }

    /// The heaviest weight `w` that `d` may hand to `r` so that afterwards both sit strictly
    /// between their current relative loads; None if `d` is not more loaded than `r`.
    fn fair_limit(&self, d: u32, r: u32) -> Option<u64> {
        let (ld, lr) = (self.load[d as usize], self.load[r as usize]);
        let (cd, cr) = (self.cap[d as usize], self.cap[r as usize]);
        // w·cr < ld·cr − lr·cd (donor stays above r) and w·cd < ld·cr − lr·cd (r stays below d)
        let gap = (u128::from(ld) * u128::from(cr)).checked_sub(u128::from(lr) * u128::from(cd))?;
        if gap == 0 {
            return None;
        }
        let w = (gap - 1) / u128::from(cr.max(cd));
        Some(u64::try_from(w).unwrap_or(u64::MAX))
    }

    /// The partition on `d` that best fills `need` without exceeding `limit`: the heaviest
    /// one not above `need`, else the lightest one above it.
    fn best_gift(&self, d: u32, need: f64, limit: f64) -> Option<u32> {
        if limit < 1.0 {
            return None;
        }
        let items = &self.items.as_ref().expect("built by items()")[d as usize];
        if items.first().is_none_or(|&(w, _)| w as f64 > limit) {
            return None;
        }
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

    /// The best worker (see [`Solver::before`]) among those with room for `w` (capacities
    /// differ, so the best worker overall may lack room while another has it).
    fn best_fit(&self, w: u64) -> Option<u32> {
        (0..self.load.len() as u32)
            .filter(|&x| self.fits(x, w))
            .reduce(|a, b| if self.before(b, a, w) { b } else { a })
    }

    /// The worker that can take a partition of weight `w` most cheaply by moving off
    /// strictly lighter partitions (within the move budget), and those partitions.
    ///
    /// Cost is the weight moved off, counted twice for partitions that will not fit anywhere
    /// either (each of those starts another round of making room). Ties go to the least
    /// relatively loaded worker. Evicting only lighter partitions, while placing heaviest
    /// first, means a partition placed here is never evicted again before the heap runs dry;
    /// each held-back partition restarts the heap at most once, so placement ends.
    fn cheapest_room(&mut self, w: u64) -> Option<(u32, Vec<u32>)> {
        self.items();
        let room: Vec<f64> = (0..self.load.len())
            .map(|x| match self.load[x] {
                0 => f64::INFINITY,
                l => self.quota[x] - l as f64,
            })
            .collect();
        // the most room on any worker, and the second most (for when `x` itself is the first)
        let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for &r in &room {
            if r > first {
                (first, second) = (r, first);
            } else if r > second {
                second = r;
            }
        }
        let mut best: Option<(u64, RelLoad, Vec<u32>)> = None;
        for x in 0..self.load.len() as u32 {
            let Some((sum, evict)) = self.room_on(x, w) else {
                continue;
            };
            let elsewhere = if room[x as usize] == first {
                second
            } else {
                first
            };
            let stuck: u64 = evict
                .iter()
                .map(|&e| self.weight[e as usize])
                .filter(|&ew| ew as f64 > elsewhere)
                .sum();
            let cost = sum + stuck;
            let key = self.key(x);
            if best.as_ref().is_none_or(|b| (cost, key) < (b.0, b.1)) {
                best = Some((cost, key, evict));
            }
        }
        best.map(|(_, k, evict)| (k.idx, evict))
    }

    /// The least weight of partitions lighter than `w` whose removal from `x` makes room for
    /// `w` within the move budget, and those partitions: the lighter of (a) lightest-first
    /// until enough, then dropping the heaviest ones not needed, and (b) the single lightest
    /// partition that is enough on its own.
    fn room_on(&self, x: u32, w: u64) -> Option<(u64, Vec<u32>)> {
        let xi = x as usize;
        // a partition heavier than the quota only fits alone
        let overflow = if w as f64 > self.quota[xi] {
            self.load[xi] as f64
        } else {
            (self.load[xi] + w) as f64 - self.quota[xi]
        };
        let items = &self.items.as_ref().expect("built by items()")[xi];
        let mut sum = 0u64;
        let mut chosen: Vec<(u64, u32)> = Vec::new();
        for &(iw, r) in items.range(..(w, 0)) {
            if sum as f64 >= overflow {
                break;
            }
            sum += iw;
            chosen.push((iw, r));
        }
        if (sum as f64) < overflow {
            return None;
        }
        let mut kept = Vec::with_capacity(chosen.len());
        for &(iw, r) in chosen.iter().rev() {
            if (sum - iw) as f64 >= overflow {
                sum -= iw;
            } else {
                kept.push((iw, r));
            }
        }
        let need = overflow.max(0.0).ceil() as u64;
        let single = (need < w)
            .then(|| items.range((need, 0)..(w, 0)).next())
            .flatten();
        if let Some(&(iw, r)) = single {
            if iw < sum {
                sum = iw;
                kept = vec![(iw, r)];
            }
        }
        let prev = &self.prep.prev;
        let costly = kept
            .iter()
            .filter(|(_, r)| prev[*r as usize] == Some(x))
            .count();
        if self.moved + costly > self.budget {
            return None;
        }
        Some((sum, kept.into_iter().map(|(_, r)| r).collect()))
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
            Cause::KeptNoRoom => {
                return format!(
                    "kept on its previous owner {to_id} although it is over quota (load {:.2} \
                     of target): no other worker has room for weight {}",
                    of_target(to),
                    self.weight[rank]
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
        let sep = if head.ends_with("placed") {
            " on "
        } else {
            " to "
        };
        format!("{head}{sep}{tail}")
    }
}

/// The least-loaded worker of each capacity class, in lazy min-heaps (an entry is stale once
/// its worker's version moved on). Picking the best worker for a partition then costs one look
/// per distinct capacity instead of one per worker.
struct Classes {
    class_of: Vec<usize>,
    heaps: Vec<BinaryHeap<Reverse<(u64, u32, u32)>>>,
}

impl Classes {
    fn new(caps: &[u64]) -> Self {
        let distinct: BTreeSet<u64> = caps.iter().copied().collect();
        let distinct: Vec<u64> = distinct.into_iter().collect();
        Classes {
            class_of: caps
                .iter()
                .map(|c| distinct.binary_search(c).expect("listed"))
                .collect(),
            heaps: vec![BinaryHeap::new(); distinct.len()],
        }
    }

    fn push(&mut self, x: u32, load: u64, ver: u32) {
        self.heaps[self.class_of[x as usize]].push(Reverse((load, x, ver)));
    }

    /// The best worker by `before` among each class's least-loaded worker.
    fn best(&mut self, before: impl Fn(u32, u32) -> bool, ver: &[u32]) -> u32 {
        let mut best: Option<u32> = None;
        for heap in &mut self.heaps {
            while let Some(&Reverse((_, x, v))) = heap.peek() {
                if v == ver[x as usize] {
                    if best.is_none_or(|b| before(x, b)) {
                        best = Some(x);
                    }
                    break;
                }
                heap.pop();
            }
        }
        best.expect("every worker has a live entry")
    }
}
