//! What "balanced" and "the least that must move" mean, as numbers anyone can compute for a
//! [`PlanInput`]: LPT's balance, the balance ceiling, the lower line and the movement floor.
//!
//! All loads are relative to capacity (weight / capacity); the *mean* is total weight / total
//! capacity. The definitions, in the order they build on each other:
//!
//! - **LPT** (longest processing time first): pinned partitions on their pinned worker, then
//!   every other partition, heaviest first (ties by partition ID), onto the worker whose relative
//!   load *after* taking it is lowest (ties: lower relative load now, then lower worker ID). It
//!   ignores the previous assignment. Its heaviest relative load is [`Bounds::lpt`], the
//!   reference for the best balance one can achieve: LPT is within 4/3 of the optimum on equal
//!   workers, and no built-in plan may be worse than it by more than the ceiling allows.
//! - **Ceiling** ([`Bounds::ceiling`]): the largest of `(1 + slack) × mean`, the heaviest
//!   partition over the largest capacity (some worker must carry it), and LPT's heaviest
//!   relative load. A plan is *balanced* when no worker is above the ceiling and no worker is
//!   below `(1 − 2·slack) × level` (see the line).
//! - **Level and line** ([`Bounds::level`], [`Bounds::line`]): the level is the mean of what is
//!   left once *giants* are set aside — a partition heavier than `(1 + slack) ×` the level times
//!   the capacity of the largest worker not yet holding a giant (it fits no balanced worker)
//!   takes that worker for itself (heaviest partition to the largest worker, and so on). The line is `(1 − slack) × level`: a worker that falls
//!   below `(1 − 2·slack) × level` (a newcomer starts at zero) must be lifted to the line, as
//!   far as partition sizes allow; the gap between the two is hysteresis, so that a small
//!   drift (a refresh that adds 5 % of weight) moves nothing.
//! - **Floor** ([`Bounds::floor`]): a lower bound on the weight a plan must move (in
//!   [`crate::plan::PlanSummary::moved_weight`]'s sense) to be balanced, starting from
//!   `input.previous`: the *forced* weight (partitions whose previous owner is gone, or that a
//!   pin takes off their owner) plus the *live floor*, the larger of
//!   - *up*: for each worker above the ceiling with what it keeps, that excess (at least its
//!     lightest movable partition), plus what lumpy partitions force: what must land somewhere
//!     (the partitions without a live owner, and one partition — at least the lightest — of
//!     each worker above the ceiling) lands, for its `k` heaviest, on at most `k` workers, so
//!     at least their weight minus the `k` largest headrooms under the ceiling must move off
//!     those workers (the largest such amount over `k`); a worker above the ceiling counts as
//!     headroom what is left once it shed its counted excess (else a swap between two
//!     overloaded workers counted twice: the floor was above what balanced plans moved);
//!   - *fit*: a partition that must land fits only on workers whose limit (the ceiling times
//!     the capacity) holds it. The heaviest lands on one of them, which sheds what it keeps
//!     beyond its limit less that partition; and for each weight `t`, those at least as heavy
//!     land on the workers whose limit holds `t`, which together shed what they receive
//!     beyond their room. Shedding is in whole partitions: at least the lightest such a worker
//!     keeps, and while those workers keep at most 10 partitions and what lands has no live
//!     owner, exactly the lightest set of them that can land elsewhere and weighs enough (the
//!     excess above is counted with it);
//!   - *down*: each worker below `(1 − 2·slack) × level` must receive at least its shortfall
//!     under the line (and at least the lightest movable partition); partitions without a
//!     live owner count towards that for free, but the `k` heaviest of them land on at most
//!     `k` workers: together with the others they cover at most the `k` largest shortfalls
//!     plus the others' weight.
//!
//!   On a join that is about the newcomer's share up to the line; on a leave, the leaver's
//!   weight; more when lumpy partitions force it. [`Bounds::share`] is the floor without the
//!   lumpy and excess terms (the departed weight, the newcomers' shortfall).
//!
//! [`Balanced`](super::Balanced) promises, on every input without a move budget: a plan that
//! takes at most 1.1 × the live floor off live owners (so it moves at most 1.1 × the floor)
//! and is balanced as far as it can find moves that help — or, where the floor and the balance
//! bound cannot both hold, a plan that stops there and leaves the rest to the leader's budgeted
//! imbalance rounds. (Tested on 560 seeded inputs in `core/tests/placement_bounds.rs`.)

use super::{PlanInput, Prepared, NO_WORKER};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Balance and movement bounds for one input (see the [module docs](self) for definitions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Total weight over total capacity.
    pub mean: f64,
    /// LPT's heaviest relative load (weight / capacity).
    pub lpt: f64,
    /// Highest relative load a balanced plan allows.
    pub ceiling: f64,
    /// Mean relative load once giant partitions are set aside with a worker each.
    pub level: f64,
    /// Lowest relative load a balanced plan allows, as far as partition sizes allow.
    pub line: f64,
    /// Least weight a plan must move from `input.previous` to be balanced (a lower bound).
    pub floor: u64,
    /// The floor without what lumpy partitions force: departed weight, newcomers' shortfall.
    pub share: u64,
}

impl Bounds {
    /// Computes the bounds of `input` in O(P log P + P·C·log W) (C distinct capacities).
    ///
    /// Call it to judge a plan (ratios of [`crate::plan::summarize`]'s figures to these);
    /// the result depends on the workers, weights, pins, `previous` and `slack`, never on
    /// `max_moves` or the order of the lists.
    pub fn of(input: &PlanInput) -> Bounds {
        let prep = Prepared::new(input);
        let lim = Limits::new(&prep, input);
        let Floor { floor, share, .. } = lim.floor(&prep);
        let (total, cap) = (
            prep.total_weight() as f64,
            prep.total_capacity().max(1) as f64,
        );
        Bounds {
            mean: total / cap,
            lpt: lim.lpt_rel,
            ceiling: lim.ceiling_rel,
            level: lim.level,
            line: lim.line_rel,
            floor,
            share,
        }
    }
}

/// The bounds as per-worker integer loads, shared by [`Bounds`] and the Balanced solver.
pub(crate) struct Limits {
    /// Highest load each worker may carry (the ceiling times its capacity).
    pub limit: Vec<u64>,
    /// What a lifted worker is lifted to, at least (the line times its capacity).
    pub line: Vec<u64>,
    /// Load below which a worker is lifted: `(1 − 2·slack) × level × capacity`.
    pub trigger: Vec<u64>,
    /// What a lifted worker is filled up to, at most (the level times its capacity).
    pub target: Vec<u64>,
    /// LPT's owner of each partition (by rank).
    pub lpt_owner: Vec<u32>,
    lpt_rel: f64,
    ceiling_rel: f64,
    line_rel: f64,
    level: f64,
}

impl Limits {
    /// Runs LPT and derives the ceiling, line and target of every worker.
    pub fn new(prep: &Prepared<'_>, input: &PlanInput) -> Limits {
        let nw = prep.workers.len();
        let slack = super::effective_slack(input);
        let cap: Vec<u64> = (0..nw as u32).map(|w| prep.capacity(w)).collect();
        let total = prep.total_weight();
        let total_c = prep.total_capacity().max(1);
        let mean = total as f64 / total_c as f64;
        let weight: Vec<u64> = prep.parts.iter().map(|p| p.weight()).collect();
        let mut by_weight: Vec<u32> = (0..weight.len() as u32).collect();
        by_weight.sort_unstable_by_key(|&r| (Reverse(weight[r as usize]), r));
        let (lpt_owner, lpt_load) = lpt(prep, &weight, &by_weight, &cap);
        // LPT's heaviest relative load, exactly (load, capacity)
        let (mut ll, mut lc) = (0u64, 1u64);
        for (x, &l) in lpt_load.iter().enumerate() {
            if u128::from(l) * u128::from(lc) > u128::from(ll) * u128::from(cap[x]) {
                (ll, lc) = (l, cap[x]);
            }
        }
        let heaviest = by_weight.first().map_or(0, |&r| weight[r as usize]);
        let cap_max = cap.iter().copied().max().unwrap_or(1);
        let limit: Vec<u64> = cap
            .iter()
            .map(|&c| {
                let spread = to_u64((1.0 + slack) * mean * c as f64);
                let giant = u128::from(heaviest) * u128::from(c) / u128::from(cap_max);
                let lpt = (u128::from(ll) * u128::from(c)).div_ceil(u128::from(lc));
                spread.max(sat(giant)).max(sat(lpt))
            })
            .collect();
        let level = water_level(&weight, &by_weight, &cap, total, slack);
        let line: Vec<u64> = cap
            .iter()
            .map(|&c| to_u64((1.0 - slack).max(0.0) * level * c as f64))
            .collect();
        let trigger: Vec<u64> = cap
            .iter()
            .map(|&c| to_u64((1.0 - 2.0 * slack).max(0.0) * level * c as f64))
            .collect();
        let target: Vec<u64> = cap.iter().map(|&c| to_u64(level * c as f64)).collect();
        let lpt_rel = ll as f64 / lc as f64;
        let ceiling_rel = ((1.0 + slack) * mean)
            .max(heaviest as f64 / cap_max as f64)
            .max(lpt_rel);
        Limits {
            limit,
            line,
            trigger,
            target,
            lpt_owner,
            lpt_rel,
            ceiling_rel,
            line_rel: (1.0 - slack).max(0.0) * level,
            level,
        }
    }

    /// The floor, the share and the live floor (see the module docs), from the previous
    /// assignment.
    pub fn floor(&self, prep: &Prepared<'_>) -> Floor {
        let nw = prep.workers.len();
        if nw == 0 {
            return Floor::default();
        }
        let mut kept = vec![0u64; nw];
        let mut lightest_kept = vec![u64::MAX; nw];
        let mut kept_n = vec![0usize; nw];
        let mut forced = 0u128; // weight that moves whatever happens
        let mut lightest = u64::MAX;
        let mut free: Vec<u64> = Vec::new(); // partitions without a live owner
        for (rank, p) in prep.parts.iter().enumerate() {
            let w = p.weight();
            let had_owner = prep.previous_listed[rank];
            match (prep.pin[rank], prep.prev[rank]) {
                (Some(pin), prev) => {
                    kept[pin as usize] += w;
                    if had_owner && prev != Some(pin) {
                        forced += u128::from(w);
                    }
                }
                (None, Some(prev)) => {
                    kept[prev as usize] += w;
                    kept_n[prev as usize] += 1;
                    lightest_kept[prev as usize] = lightest_kept[prev as usize].min(w);
                    lightest = lightest.min(w);
                }
                (None, None) => {
                    if had_owner {
                        forced += u128::from(w);
                    }
                    lightest = lightest.min(w);
                    free.push(w);
                }
            }
        }
        let mut excess = 0u128;
        let mut headroom: Vec<u64> = Vec::with_capacity(nw);
        let mut inflow = 0u128;
        let mut needs: Vec<u64> = Vec::new();
        // what must land somewhere: the free partitions, and from each worker above its limit
        // one partition at least as heavy as its lightest
        let mut landing = free.clone();
        // the heaviest of the landing partitions that leave a live owner
        let mut leaving: Option<u64> = None;
        for x in 0..nw {
            let (k, lim) = (kept[x], self.limit[x]);
            // room under the limit; a worker above it has, once it shed what its excess
            // counts (at least its lightest partition), what that leaves over
            let mut room = lim.saturating_sub(k);
            let shed = must_shed(k, lim, lightest_kept[x]);
            if shed > 0 {
                excess += u128::from(shed);
                room = shed - (k - lim);
                landing.push(lightest_kept[x]);
                leaving = leaving.max(Some(lightest_kept[x]));
            }
            headroom.push(room);
            if k < self.trigger[x] && lightest != u64::MAX {
                let need = (self.line[x] - k).max(lightest);
                inflow += u128::from(need);
                needs.push(need);
            }
        }
        // the k heaviest of those land on at most k workers
        free.sort_unstable_by(|a, b| b.cmp(a));
        landing.sort_unstable_by(|a, b| b.cmp(a));
        headroom.sort_unstable_by(|a, b| b.cmp(a));
        let (mut lumpy, mut sum) = (0u128, 0i128);
        for (i, &w) in landing.iter().enumerate() {
            sum += i128::from(w) - i128::from(headroom.get(i).copied().unwrap_or(0));
            lumpy = lumpy.max(sum.max(0) as u128);
        }
        // the k heaviest free partitions land on at most k workers: together with the rest
        // they cover at most the k largest shortfalls plus the rest's weight (least over k)
        needs.sort_unstable_by(|a, b| b.cmp(a));
        let mut rest: u128 = free.iter().map(|&w| u128::from(w)).sum();
        let (mut covered, mut top) = (rest, 0u128);
        for (k, &w) in free.iter().enumerate() {
            rest -= u128::from(w);
            top += u128::from(needs.get(k).copied().unwrap_or(0));
            covered = covered.min(top + rest);
        }
        let down = inflow.saturating_sub(covered);
        let live = (excess + lumpy)
            .max(excess + self.room_for(landing.first().copied(), &kept, &lightest_kept))
            .max(self.fits_only(prep, (&landing, leaving), &kept, &lightest_kept, &kept_n))
            .max(down);
        Floor {
            floor: sat(forced + live),
            share: sat(forced + down),
            live: sat(live),
        }
    }

    /// What landing the heaviest partition `h` that must land costs beyond the workers'
    /// excess: it lands on a worker whose limit can hold it, which must then shed what it
    /// keeps beyond its limit less `h` (at least its lightest partition, if anything) — of
    /// which its own excess is already counted. The least over the workers.
    fn room_for(&self, h: Option<u64>, kept: &[u64], lightest_kept: &[u64]) -> u128 {
        let Some(h) = h else { return 0 };
        let mut least: Option<u128> = None;
        for x in 0..kept.len() {
            let (k, lim) = (kept[x], self.limit[x]);
            if lim < h {
                continue;
            }
            let light = lightest_kept[x];
            if k.saturating_add(h) > lim && light == u64::MAX {
                continue; // holds nothing it could shed
            }
            let counted = must_shed(k, lim, light);
            let cost = u128::from(must_shed(k.saturating_add(h), lim, light) - counted);
            least = Some(least.map_or(cost, |l| l.min(cost)));
        }
        least.unwrap_or(0)
    }

    /// What the live owners must shed when heavy partitions fit only on some workers: for
    /// each weight `t` among `landing` (heaviest first), those at least as heavy land on
    /// workers whose limit holds `t`, which together shed at least what they receive beyond
    /// their room (and their own excess), while the other workers shed their excess. What
    /// they shed is whole partitions: at least the lightest one of them keeps, and, while they
    /// keep at most [`EXACT_SHED`] partitions and all that lands comes from no live owner (so
    /// what they shed must leave them), exactly the lightest set of those that fit elsewhere
    /// (at most the largest limit among the others) that weighs enough. `landing` is sorted
    /// heaviest first; `leaving` is the heaviest of its partitions that leave a live owner.
    fn fits_only(
        &self,
        prep: &Prepared<'_>,
        (landing, leaving): (&[u64], Option<u64>),
        kept: &[u64],
        lightest_kept: &[u64],
        kept_n: &[usize],
    ) -> u128 {
        let exc = |x: usize| i128::from(must_shed(kept[x], self.limit[x], lightest_kept[x]));
        let total_exc: i128 = (0..kept.len()).map(exc).sum();
        let mut by_limit: Vec<usize> = (0..kept.len()).collect();
        by_limit.sort_unstable_by_key(|&x| Reverse(self.limit[x]));
        let (mut best, mut landed, mut room, mut inside_exc) = (0i128, 0i128, 0i128, 0i128);
        let (mut lightest, mut next, mut inside_n) = (u64::MAX, 0, 0usize);
        // the partitions the workers inside keep while they are few, lightest first, and the
        // sums of the sets of the first `m` of them (built when needed)
        let mut few: Option<Vec<u64>> = None;
        let mut sums: Option<(usize, Vec<u128>)> = None;
        for (i, &t) in landing.iter().enumerate() {
            landed += i128::from(t);
            if landing.get(i + 1) == Some(&t) {
                continue;
            }
            while let Some(&x) = by_limit.get(next).filter(|&&x| self.limit[x] >= t) {
                room += i128::from(self.limit[x]) - i128::from(kept[x]);
                inside_exc += exc(x);
                lightest = lightest.min(lightest_kept[x]);
                inside_n += kept_n[x];
                if kept_n[x] > 0 {
                    (few, sums) = (None, None);
                }
                next += 1;
            }
            let need = landed - room;
            let from_no_owner = leaving.is_none_or(|w| w < t);
            let shed = if need <= 0 || lightest == u64::MAX {
                need.max(0)
            } else if inside_n <= EXACT_SHED && from_no_owner {
                // what they receive comes from outside, so what they shed must leave them for
                // a worker outside, within its limit
                let out = by_limit.get(next).map_or(0, |&x| self.limit[x]);
                let held = few.get_or_insert_with(|| kept_by(prep, &by_limit[..next]));
                let m = held.partition_point(|&w| w <= out);
                if sums.as_ref().is_none_or(|(n, _)| *n != m) {
                    sums = Some((m, subset_sums(&held[..m])));
                }
                let sums = &sums.as_ref().expect("built").1;
                match sums.get(sums.partition_point(|&sum| sum < need as u128)) {
                    Some(&least) => least as i128,
                    None => need,
                }
            } else {
                need.max(i128::from(lightest))
            };
            best = best.max(total_exc - inside_exc + shed.max(inside_exc));
        }
        best.max(0) as u128
    }
}

/// What a worker that keeps `load` must shed to get within `limit`, in whole partitions (at
/// least its lightest movable one, `lightest`): 0 within the limit, and 0 when it has nothing
/// movable (`u64::MAX`).
fn must_shed(load: u64, limit: u64, lightest: u64) -> u64 {
    match load > limit && lightest != u64::MAX {
        true => (load - limit).max(lightest),
        false => 0,
    }
}

/// At most this many partitions kept by the workers a heavy partition fits on are searched
/// for the lightest set they can shed (2^n sums, built a few times per plan at most).
const EXACT_SHED: usize = 10;

/// The weights of the unpinned partitions that `workers` keep (from the previous assignment),
/// lightest first.
fn kept_by(prep: &Prepared<'_>, workers: &[usize]) -> Vec<u64> {
    let mut inside = vec![false; prep.workers.len()];
    for &x in workers {
        inside[x] = true;
    }
    let mut held: Vec<u64> = (0..prep.parts.len())
        .filter(|&r| prep.pin[r].is_none() && prep.prev[r].is_some_and(|x| inside[x as usize]))
        .map(|r| prep.parts[r].weight())
        .collect();
    held.sort_unstable();
    held
}

/// The total weights of every non-empty set of `weights` (at most [`EXACT_SHED`]), in order.
fn subset_sums(weights: &[u64]) -> Vec<u128> {
    let mut sums = vec![0u128];
    for &w in weights {
        for i in 0..sums.len() {
            sums.push(sums[i] + u128::from(w));
        }
    }
    sums.remove(0);
    sums.sort_unstable();
    sums
}

/// The movement floor's parts (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Floor {
    /// The floor: forced weight plus the live floor.
    pub floor: u64,
    /// Forced weight plus the newcomers' shortfall that free partitions cannot cover.
    pub share: u64,
    /// The least weight that must leave live owners (the same whether or not `previous` lists
    /// the partitions without a live owner).
    pub live: u64,
}

/// LPT over the prepared input: pins first, then `by_weight` order; owners and loads.
fn lpt(
    prep: &Prepared<'_>,
    weight: &[u64],
    by_weight: &[u32],
    cap: &[u64],
) -> (Vec<u32>, Vec<u64>) {
    let mut owner = vec![NO_WORKER; weight.len()];
    let mut load = vec![0u64; cap.len()];
    if cap.is_empty() {
        return (owner, load);
    }
    for (rank, pin) in prep.pin.iter().enumerate() {
        if let Some(pin) = *pin {
            owner[rank] = pin;
            load[pin as usize] += weight[rank];
        }
    }
    let mut classes = Classes::new(cap);
    for x in 0..cap.len() as u32 {
        classes.push(x, load[x as usize]);
    }
    for &r in by_weight {
        if owner[r as usize] != NO_WORKER {
            continue;
        }
        let w = weight[r as usize];
        let to = classes.best(|a, b| lower_after(&load, cap, a, b, w), &load);
        owner[r as usize] = to;
        load[to as usize] += w;
        classes.push(to, load[to as usize]);
    }
    (owner, load)
}

/// Whether worker `a` should take weight `w` before worker `b`: lower relative load after
/// taking it, then lower relative load now, then lower index.
pub(crate) fn lower_after(load: &[u64], cap: &[u64], a: u32, b: u32, w: u64) -> bool {
    let (la, lb) = (load[a as usize], load[b as usize]);
    let (ca, cb) = (u128::from(cap[a as usize]), u128::from(cap[b as usize]));
    let after = (u128::from(la + w) * cb).cmp(&(u128::from(lb + w) * ca));
    let now = (u128::from(la) * cb).cmp(&(u128::from(lb) * ca));
    after.then(now).then(a.cmp(&b)).is_lt()
}

/// The mean relative load once giants are set aside (see the module docs).
fn water_level(weight: &[u64], by_weight: &[u32], cap: &[u64], total: u64, slack: f64) -> f64 {
    let mut caps: Vec<u64> = cap.to_vec();
    caps.sort_unstable_by(|a, b| b.cmp(a));
    let mut rest_w = u128::from(total);
    let mut rest_c: u128 = caps.iter().map(|&c| u128::from(c)).sum();
    for (k, &r) in by_weight.iter().enumerate() {
        if k + 1 >= caps.len() {
            break;
        }
        let g = weight[r as usize] as f64;
        // g > (1 + slack) × (rest_w / rest_c) × caps[k]
        if g * rest_c as f64 > (1.0 + slack) * rest_w as f64 * caps[k] as f64 {
            let g = u128::from(weight[r as usize]);
            rest_w -= g;
            rest_c -= u128::from(caps[k]);
        } else {
            break;
        }
    }
    if rest_c == 0 {
        0.0
    } else {
        rest_w as f64 / rest_c as f64
    }
}

fn to_u64(x: f64) -> u64 {
    // `as` saturates: NaN → 0, above u64::MAX → u64::MAX
    x as u64
}

fn sat(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// The least-loaded worker of each capacity class, in lazy min-heaps (an entry is stale once
/// its load no longer matches). Picking the best worker for a partition then costs one look
/// per distinct capacity instead of one per worker.
pub(crate) struct Classes {
    class_of: Vec<usize>,
    heaps: Vec<BinaryHeap<Reverse<(u64, u32)>>>,
}

impl Classes {
    /// One empty heap per distinct capacity in `caps`.
    pub fn new(caps: &[u64]) -> Self {
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

    /// Records worker `x` at `load` (call after every change of its load).
    pub fn push(&mut self, x: u32, load: u64) {
        self.heaps[self.class_of[x as usize]].push(Reverse((load, x)));
    }

    /// The least-loaded worker of each class (stale entries dropped), lower index first on ties.
    pub fn minimums(&mut self, load: &[u64]) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.heaps.len());
        for heap in &mut self.heaps {
            while let Some(&Reverse((l, x))) = heap.peek() {
                if l == load[x as usize] {
                    out.push(x);
                    break;
                }
                heap.pop();
            }
        }
        out
    }

    /// The best worker by `before` among each class's least-loaded worker.
    pub fn best(&mut self, before: impl Fn(u32, u32) -> bool, load: &[u64]) -> u32 {
        let mut best: Option<u32> = None;
        for heap in &mut self.heaps {
            while let Some(&Reverse((l, x))) = heap.peek() {
                if l == load[x as usize] {
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
