//! The default strategy: sticky, weight- and capacity-aware, close to the movement floor.
//! (How it works and why: see [`Balanced`]; the bounds it keeps: [`super::bounds`].)

use super::bounds::{lower_after, Classes, Limits};
use super::{
    dead_pin_note, effective_slack, Plan, PlanInput, Prepared, RelLoad, Strategy, NO_WORKER,
};
use crate::{PartitionId, WorkerId};
use std::cmp::Reverse;
use std::collections::BTreeSet;

mod local;

/// Sticky, weight- and capacity-aware placement; the default strategy.
///
/// Results change with the workers' capacities, the partitions' weights, the previous
/// assignment, pins, `slack` and `max_moves` (pins win over the budget); never with the order
/// of the input lists. Loads are relative to capacity; the *ceiling*, *line*, *level* and
/// *floor* are defined in [`super::bounds`] (the ceiling is at most the larger of
/// `(1 + slack) × mean`, the heaviest partition on the largest worker, and what LPT —
/// heaviest first onto the least relatively loaded worker — achieves).
///
/// Passes:
/// 1. **Pins**: a partition pinned to a live worker goes there, whatever it costs.
/// 2. **Sticky**: every other partition stays on its previous owner if that worker is live.
/// 3. **Placement**: the rest (new partitions, those of departed workers) go heaviest first
///    to the worker below its line with the smallest shortfall that still takes the partition
///    whole, else to the worker whose relative load after taking it is lowest among those
///    that stay within the ceiling with it (among all if none does; ties: lower load now,
///    then lower ID). With no previous assignment this *is* LPT.
/// 4. **Shedding**: each worker above the ceiling, most loaded first, hands partitions to the
///    least-loaded worker that stays within the ceiling with them: the lightest partition that
///    covers its excess when that costs at most 1/8 more than the excess or when the lighter
///    ones cannot add up to it, else the heaviest below the excess (so a worker that held everything gives its heavy partitions away
///    first, the way LPT would place them); when no single partition can go, it swaps one of
///    its partitions for a lighter one of a least-loaded worker (the lightest such pair); when
///    no swap helps either, it *pushes* the partition covering its excess (or the heaviest
///    below it) to the worker that can make room for it by moving off the least weight of
///    light partitions (else to the least-loaded worker), if that worker ends below the
///    donor's old load; that worker then sheds in turn.
/// 5. **Lifting**: a worker below `(1 − 2·slack) × level`, or that kept less than that in
///    pass 2 (a newcomer starts at zero), is lifted to its line: one of the
///    eight most loaded workers (or the one with the most to spare) gives it the lightest
///    partition that covers its shortfall within its gap to the level, else the heaviest
///    below the shortfall, leaving the donor at or above its own level — else at or above its
///    line — and both strictly between their old loads; failing that, from a donor that then
///    dips below its line (and is not lifted in turn, so nothing cascades). A worker no donor
///    can help is left as it is. Under a weight cap (below), a gift weighs at most 1.1 × the
///    shortfall it fills, so that one worker does not spend what the others need.
///
/// Pass 4 also tries, in this order after single moves and swaps: a *trade* (one partition
/// of the overloaded worker for several lighter ones of a least-loaded worker), and a
/// *make-room* move (the worker that needs the fewest of its own partitions moved elsewhere
/// to take one of the overloaded worker's gives them away, one monotone move at a time, then
/// takes it) — so rounds with any budget keep lowering the maximum while a move can.
///
/// Without a move budget (`max_moves` is `None`: a membership or partition change):
/// - nothing moves unless the change forces it: a partition without a live previous owner
///   (new, or its owner is gone), a pin that takes one off its owner, a worker that carries
///   nothing and that a donor could feed (a newcomer), or removed partitions that leave a
///   worker above its ceiling or below its trigger. So planning again from a plan's own
///   result moves nothing (a new leader taking over a handoff does that).
/// - the full passes are kept when they take at most 1.1 × the *live floor* off live owners
///   and end balanced; else LPT repacked (workers relabelled to keep the most weight in
///   place) when that does; else the passes stop before they take more than 1.1 × the live
///   floor off live owners (newcomers are still fed, with up to 1.1 × their line each) and
///   the leader's budgeted imbalance rounds finish the job. The live floor is the floor minus
///   the forced weight; it does not depend on whether `previous` lists the partitions of a
///   departed worker, so a leader that plans a leave in two steps lands where a preview does.
///
/// With a budget (a round), passes 4 and 5 run until `max_moves` partitions have left a live
/// owner. When they end above the ceiling, a *local repack* is tried instead: the workers
/// above the ceiling and a few of the least loaded place their partitions too heavy for any
/// worker's room again among themselves (heaviest first, each staying on its owner while it
/// fits), then passes 4 and 5 (see `balanced/local.rs`); it is kept when it ends within the
/// ceiling. Failing both, when budget is left: while the most loaded worker is above its limit,
/// the single move or swap off it, with any less loaded worker, that leaves the two the lowest
/// maximum (below its load); then, still above the ceiling, the rest goes to moving partitions
/// to their owner in LPT repacked (off the most loaded workers first), with chains of moves
/// that make room, so that no worker ends above the larger of its load and its limit, or else
/// above the maximum before: a round does not raise the maximum, unless no move toward LPT
/// keeps it (a local optimum; see `Stage`). Partitions of departed workers never count, so
/// `Some(0)` moves exactly the departed share.
///
/// Every move of passes 4 and 5 leaves both workers strictly between their old relative
/// loads, compared exactly in integers, so the passes end (and are capped at `2P + W` moves
/// besides); weights up to `u64::MAX` are exact.
///
/// Cost: O(P log P + P·C·log W) for LPT and the first three passes (C distinct capacities),
/// plus O(log P + log W) per move of passes 4 and 5 (P·log P once to index partitions by
/// worker when they run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Balanced {}

/// How much more than the floor a change without a budget may move before Balanced settles
/// for the share and leaves the rest to the leader's rounds.
const FLOOR_FACTOR: f64 = 1.1;

/// How many of the most loaded workers pass 5 asks for a partition.
const DONORS: usize = 8;

/// How many times one plan may scan every worker for the cheapest room (see
/// `Solver::cheapest_room`); past that, pushes go to the least-loaded worker.
const ROOM_SCANS: usize = 256;

/// How many moves deep [`Solver::toward`] looks for room on a worker.
const CHAIN_DEPTH: usize = 4;
/// How many moves [`Solver::cut`] and [`Solver::toward`] may each weigh in one plan (the cut
/// weighs every worker, the chains branch).
const TOWARD_WORK: usize = 200_000;

/// How far [`Solver::toward`] lets a worker's load rise, tried in this order until the moves
/// lower the maximum or the excess over the limits. Moves that lower neither only make room for
/// later rounds: they are kept when the budget lets chains form, else taken back (one light
/// partition a round would crawl).
#[derive(Clone, Copy)]
enum Stage {
    /// To the larger of its load and its limit.
    OwnLoad,
    /// To the maximum (relative to capacity) as it was.
    Maximum,
    /// Without a bound, only when the stages before made no move that is kept: a local optimum
    /// where no move toward LPT keeps the maximum (the maximum may rise for this round; the
    /// next rounds reach LPT's plan, within the ceiling). Without it a round could stall.
    Unbounded,
}

/// The state of one [`Solver::toward`]: where each partition goes, how much each worker may
/// end with, the moves still to make off each worker (heaviest first), which were made or are
/// being tried, and the moves of the chain being tried (to undo it).
struct Toward<'t> {
    target: &'t Solver<'t>,
    allowed: Vec<u64>,
    out: Vec<Vec<u32>>,
    done: Vec<bool>,
    made: Vec<(u32, u32, Cause)>,
    work: usize,
}

impl Strategy for Balanced {
    fn name(&self) -> &str {
        "balanced"
    }

    fn assign(&self, input: &PlanInput) -> Plan {
        let prep = Prepared::new(input);
        let lim = Limits::new(&prep, input);
        let solver = Solver::best(&prep, &lim, input);
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
        let lim = Limits::new(&prep, input);
        let s = Solver::best(&prep, &lim, input);
        let note = dead_pin_note(input, &prep, rank);
        let gone = input.previous.get(partition).copied();
        format!("{note}{}", s.describe(rank, gone, effective_slack(input)))
    }
}

/// Whether the change moves a partition whatever the plan: one without a live previous
/// owner (new, or its owner is gone), or a pin that takes one off its owner.
fn orphans_or_pins(prep: &Prepared<'_>) -> bool {
    (0..prep.parts.len())
        .any(|r| prep.prev[r].is_none() || prep.pin[r].is_some_and(|p| prep.prev[r] != Some(p)))
}

/// Why a partition is where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Pinned,
    Kept,
    New,
    Gone,
    Shed,
    Lifted,
    Repacked,
    RepackedLocally,
}

/// The line a donor must stay at or above when lifting a worker below its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    Level,
    Line,
    Nothing,
}

struct Solver<'p> {
    prep: &'p Prepared<'p>,
    lim: &'p Limits,
    weight: Vec<u64>,
    cap: Vec<u64>,
    load: Vec<u64>,
    owner: Vec<u32>,
    /// Movable (unpinned) partitions per worker as (weight, rank); built on first need.
    items: Option<Vec<BTreeSet<(u64, u32)>>>,
    pinned: Vec<bool>,
    /// Load of each worker after passes 1 and 2 (pins and what it kept).
    kept: Vec<u64>,
    /// Scans for the cheapest room so far (bounded by [`ROOM_SCANS`]).
    room_scans: std::cell::Cell<usize>,
    /// Partitions with a live previous owner that are not on it.
    moved: usize,
    budget: usize,
    /// The lightest partition's weight (`u64::MAX` without partitions).
    lightest: u64,
    /// Weight of unpinned partitions that left a live previous owner (what the live floor
    /// bounds).
    moved_w: u128,
    /// Most weight passes 4 and 5 may take off live owners (`moved_w`); they skip a move past
    /// it.
    weight_cap: u128,
    cause: Vec<Cause>,
}

impl<'p> Solver<'p> {
    /// The plan for `input` (see [`Balanced`]): without a move budget, nothing moves unless the
    /// change forces it, and then the full plan when it moves at most [`FLOOR_FACTOR`] × the
    /// floor and is balanced, else LPT repacked when that is, else the full passes stopped at
    /// [`FLOOR_FACTOR`] × the floor. With a budget: a round.
    fn best(prep: &'p Prepared<'p>, lim: &'p Limits, input: &PlanInput) -> Self {
        if prep.workers.is_empty() {
            return Solver::run(prep, lim, input, u128::MAX);
        }
        let Some(budget) = input.max_moves else {
            let mut sticky = Solver::sticky(prep, lim, input);
            // partitions were removed: rebalance what is left when it needs it
            let listed = prep.previous_listed.iter().filter(|&&l| l).count();
            let shrunk = input.previous.len() > listed && {
                let low = (0..sticky.load.len()).any(|x| sticky.load[x] < lim.trigger[x]);
                low || sticky.over_limit()
            };
            if !orphans_or_pins(prep)
                && !shrunk
                && !sticky.feedable()
                && !sticky.sheddable_to_empty()
            {
                // nothing to place, no partition removed, no newcomer to feed: planning again
                // from a plan moves nothing
                return sticky;
            }
            // what may leave live owners: FLOOR_FACTOR × the live floor (the same whether or
            // not `previous` lists the partitions of departed workers, so a leader that plans
            // a leave in two steps lands where a preview does)
            let cap = (FLOOR_FACTOR * lim.floor(prep).live as f64) as u128;
            let full = sticky.finish(u128::MAX);
            if full.live_w() <= cap && !full.over_limit() {
                return full;
            }
            let repacked = Solver::repacked(prep, lim, input);
            if repacked.live_w() <= cap && !repacked.over_limit() {
                return repacked;
            }
            return Solver::run(prep, lim, input, cap);
        };
        let mut full = Solver::run(prep, lim, input, u128::MAX);
        if full.over_limit() {
            // a local repack of what stays, then the passes
            let mut local = Solver::sticky(prep, lim, input);
            if local.repack_locally() {
                let local = local.finish(u128::MAX);
                if !local.over_limit() {
                    full = local;
                }
            }
        }
        if full.over_limit() {
            let repacked = Solver::repacked(prep, lim, input);
            if repacked.moved <= budget && repacked.heaviest() < full.heaviest() {
                return repacked;
            }
            // the passes are stuck: cut the maximum with any worker, then spend the rest of
            // the budget on the way to LPT
            full.cut();
            debug_assert_eq!(full.moved, full.count_moved(), "move accounting drifted");
            debug_assert_eq!(full.moved_w, full.live_w(), "weight accounting drifted");
            if full.moved < budget && full.over_limit() && !repacked.over_limit() {
                full.toward(&repacked);
            }
        }
        full
    }

    /// Moves partitions to their owner in `target` (LPT repacked) until the budget is spent,
    /// off the most loaded workers first, heaviest first, in [`Stage`]s: first so that no worker
    /// ends above the larger of its load before and its limit (a move into a worker without
    /// room for it comes with moves off that worker, a chain of at most [`CHAIN_DEPTH`] more,
    /// or waits), then so that none ends above the maximum before. So a round does not raise
    /// the maximum on its way to LPT, unless no move toward it keeps the maximum at all.
    fn toward(&mut self, target: &Solver<'_>) {
        self.toward_stages(target);
        debug_assert_eq!(self.moved, self.count_moved(), "move accounting drifted");
        debug_assert_eq!(self.moved_w, self.live_w(), "weight accounting drifted");
    }

    /// [`Solver::toward`]'s stages.
    fn toward_stages(&mut self, target: &Solver<'_>) {
        let (top, excess) = (self.heaviest(), self.excess());
        let roomy = self.budget > 2 * (CHAIN_DEPTH + 1);
        let mut kept = false;
        for stage in [Stage::OwnLoad, Stage::Maximum, Stage::Unbounded] {
            let allowed = match stage {
                Stage::OwnLoad => (0..self.load.len())
                    .map(|x| self.load[x].max(self.lim.limit[x]))
                    .collect(),
                Stage::Maximum => (0..self.load.len())
                    .map(|x| {
                        let at_top =
                            u128::from(top.load) * u128::from(self.cap[x]) / u128::from(top.cap);
                        self.lim.limit[x].max(u64::try_from(at_top).unwrap_or(u64::MAX))
                    })
                    .collect(),
                Stage::Unbounded if kept => return,
                Stage::Unbounded => vec![u64::MAX; self.load.len()],
            };
            let Some(made) = self.toward_within(target, allowed) else {
                continue;
            };
            if self.heaviest() < top || self.excess() < excess || matches!(stage, Stage::Unbounded)
            {
                return;
            }
            if roomy {
                kept = true;
            } else {
                for (r, from, cause) in made.into_iter().rev() {
                    self.relocate(r, from, cause);
                    self.cause[r as usize] = cause;
                }
            }
        }
    }

    /// While the most loaded worker is above its limit and the budget allows, the single move
    /// or swap off it, with any less loaded worker, that leaves the two the lowest maximum, if
    /// that is below the worker's load: the cut of the maximum the passes missed (they offer
    /// only the least-loaded workers a partition, and only within the ceiling).
    fn cut(&mut self) {
        self.items();
        let nw = self.load.len();
        let mut work = 0usize;
        // a / b < c / d, exactly
        let lt = |a: u64, b: u64, c: u64, d: u64| {
            u128::from(a) * u128::from(d) < u128::from(c) * u128::from(b)
        };
        while self.moved < self.budget && work < TOWARD_WORK {
            let m = self.heaviest().idx as usize;
            if self.load[m] <= self.lim.limit[m] {
                return;
            }
            let swaps = self.budget - self.moved >= 2;
            let (lm, cm) = (self.load[m], self.cap[m]);
            // the best so far: (the higher of the two loads after, its capacity, p, x, q)
            let mut best: Option<(u64, u64, u32, u32, Option<u32>)> = None;
            let mut consider = |hi: (u64, u64), p: u32, x: usize, q: Option<u32>| {
                if lt(hi.0, hi.1, lm, cm) && best.is_none_or(|b| lt(hi.0, hi.1, b.0, b.1)) {
                    best = Some((hi.0, hi.1, p, x as u32, q));
                }
            };
            let higher = |a: (u64, u64), b: (u64, u64)| if lt(a.0, a.1, b.0, b.1) { b } else { a };
            let items = self.items.as_ref().expect("built");
            for x in (0..nw).filter(|&x| x != m && lt(self.load[x], self.cap[x], lm, cm)) {
                let (lx, cx) = (self.load[x], self.cap[x]);
                for &(wp, p) in &items[m] {
                    work += 1;
                    consider(higher((lm - wp, cm), (lx + wp, cx)), p, x, None);
                    if swaps {
                        // the two heaviest of x's lighter partitions
                        for &(wq, q) in items[x].range(..(wp, 0)).rev().take(2) {
                            work += 1;
                            let after = higher((lm - wp + wq, cm), (lx - wq + wp, cx));
                            consider(after, p, x, Some(q));
                        }
                    }
                }
            }
            let Some((_, _, p, x, q)) = best else { return };
            self.relocate(p, x, Cause::Shed);
            if let Some(q) = q {
                self.relocate(q, m as u32, Cause::Shed);
            }
        }
    }

    /// The load above their limits, summed over the workers.
    fn excess(&self) -> u128 {
        (0..self.load.len())
            .map(|x| u128::from(self.load[x].saturating_sub(self.lim.limit[x])))
            .sum()
    }

    /// [`Solver::toward`] with at most `allowed` on each worker; the moves made (partition,
    /// where it was, why), or `None` when none was.
    fn toward_within(
        &mut self,
        target: &Solver<'_>,
        allowed: Vec<u64>,
    ) -> Option<Vec<(u32, u32, Cause)>> {
        self.items();
        let nw = self.load.len();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); nw];
        for r in 0..self.owner.len() {
            if !self.pinned[r] && self.owner[r] != target.owner[r] {
                out[self.owner[r] as usize].push(r as u32);
            }
        }
        for list in &mut out {
            list.sort_by_key(|&r| (Reverse(self.weight[r as usize]), r));
        }
        let mut t = Toward {
            target,
            allowed,
            out,
            done: vec![false; self.owner.len()],
            made: Vec::new(),
            work: 0,
        };
        let mut log = Vec::new();
        loop {
            let mut donors: Vec<u32> = (0..nw as u32)
                .filter(|&x| t.out[x as usize].iter().any(|&r| !t.done[r as usize]))
                .collect();
            donors.sort_by_key(|&x| Reverse(self.key(x)));
            let mut progress = false;
            for x in donors {
                for i in 0..t.out[x as usize].len() {
                    let r = t.out[x as usize][i];
                    if !t.done[r as usize] && self.chain(&mut t, r, CHAIN_DEPTH) {
                        log.append(&mut t.made);
                        progress = true;
                    }
                }
            }
            if !progress || t.work > TOWARD_WORK {
                return (!log.is_empty()).then_some(log);
            }
        }
    }

    /// Moves `r` to its owner in `t.target` with, when that worker has no room for it, moves
    /// off that worker (chains up to `depth` deep); undoes them all when no chain makes room.
    fn chain(&mut self, t: &mut Toward<'_>, r: u32, depth: usize) -> bool {
        let to = t.target.owner[r as usize];
        let back = self.prep.prev[r as usize] == Some(to);
        t.work += 1;
        if (self.moved >= self.budget && !back) || t.work > TOWARD_WORK {
            return false;
        }
        let mark = t.made.len();
        t.made
            .push((r, self.owner[r as usize], self.cause[r as usize]));
        t.done[r as usize] = true;
        self.relocate(r, to, Cause::Repacked);
        let room = t.allowed[to as usize];
        let fits = |s: &Self| s.load[to as usize] <= room;
        if fits(self) {
            return true;
        }
        if depth > 0 {
            for i in 0..t.out[to as usize].len() {
                let q = t.out[to as usize][i];
                if !t.done[q as usize] && self.chain(t, q, depth - 1) && fits(self) {
                    return true;
                }
            }
        }
        while t.made.len() > mark {
            let (q, from, cause) = t.made.pop().expect("made");
            self.relocate(q, from, cause);
            self.cause[q as usize] = cause;
            t.done[q as usize] = false;
        }
        false
    }

    /// A solver with nothing placed yet.
    fn empty(prep: &'p Prepared<'p>, lim: &'p Limits, input: &PlanInput) -> Self {
        let nw = prep.workers.len();
        let np = prep.parts.len();
        Solver {
            prep,
            lim,
            weight: prep.parts.iter().map(|p| p.weight()).collect(),
            cap: (0..nw as u32).map(|w| prep.capacity(w)).collect(),
            load: vec![0; nw],
            owner: vec![NO_WORKER; np],
            items: None,
            pinned: vec![false; np],
            kept: vec![0; nw],
            room_scans: std::cell::Cell::new(0),
            moved: 0,
            budget: input.max_moves.unwrap_or(usize::MAX),
            moved_w: 0,
            weight_cap: u128::MAX,
            lightest: prep
                .parts
                .iter()
                .map(|p| p.weight())
                .min()
                .unwrap_or(u64::MAX),
            cause: vec![Cause::New; np],
        }
    }

    /// LPT's plan with its workers relabelled (among workers of equal capacity) so that as much
    /// weight as possible stays on its previous owner: greedily, the (LPT worker, previous
    /// owner) pairs sharing the most weight first. For when moves and swaps get stuck above
    /// the ceiling.
    fn repacked(prep: &'p Prepared<'p>, lim: &'p Limits, input: &PlanInput) -> Self {
        let mut s = Solver::empty(prep, lim, input);
        let nw = s.load.len();
        let mut map = vec![NO_WORKER; nw];
        let mut used = vec![false; nw];
        let mut overlap: std::collections::BTreeMap<(u32, u32), u128> = Default::default();
        for rank in 0..s.owner.len() {
            let bin = lim.lpt_owner[rank];
            if let Some(pin) = prep.pin[rank] {
                (map[pin as usize], used[pin as usize]) = (pin, true);
            } else if let Some(prev) = prep.prev[rank] {
                if s.cap[bin as usize] == s.cap[prev as usize] {
                    *overlap.entry((bin, prev)).or_default() += u128::from(s.weight[rank]);
                }
            }
        }
        let mut pairs: Vec<((u32, u32), u128)> = overlap.into_iter().collect();
        pairs.sort_by_key(|&(k, o)| (Reverse(o), k));
        for ((bin, x), _) in pairs {
            if map[bin as usize] == NO_WORKER && !used[x as usize] {
                (map[bin as usize], used[x as usize]) = (x, true);
            }
        }
        // the rest in index order, capacity by capacity
        let mut free: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
        for x in (0..nw).rev().filter(|&x| !used[x]) {
            free.entry(s.cap[x]).or_default().push(x as u32);
        }
        for (bin, to) in map.iter_mut().enumerate() {
            if *to == NO_WORKER {
                *to = free
                    .get_mut(&s.cap[bin])
                    .and_then(|xs| xs.pop())
                    .expect("as many workers as bins of each capacity");
            }
        }
        for rank in 0..s.owner.len() {
            let to = map[lim.lpt_owner[rank] as usize];
            s.owner[rank] = to;
            s.load[to as usize] += s.weight[rank];
            let prev = prep.prev[rank];
            s.pinned[rank] = prep.pin[rank].is_some();
            s.cause[rank] = if s.pinned[rank] {
                Cause::Pinned
            } else if prev == Some(to) {
                Cause::Kept
            } else if prev.is_some() {
                Cause::Repacked
            } else if prep.previous_listed[rank] {
                Cause::Gone
            } else {
                Cause::New
            };
            if prev.is_some_and(|p| p != to) {
                s.moved += 1;
            }
            if !s.pinned[rank] && prev.is_some_and(|p| p != to) {
                s.moved_w += u128::from(s.weight[rank]);
            }
        }
        s
    }

    /// Whether some worker is above its limit.
    fn over_limit(&self) -> bool {
        (0..self.load.len()).any(|x| self.load[x] > self.lim.limit[x])
    }

    /// The most loaded worker, relative to capacity.
    fn heaviest(&self) -> RelLoad {
        (0..self.load.len() as u32)
            .map(|x| self.key(x))
            .max()
            .expect("some worker")
    }

    /// Passes 1 to 3 only: pins, what stays, and the placement of the rest.
    fn sticky(prep: &'p Prepared<'p>, lim: &'p Limits, input: &PlanInput) -> Self {
        let mut s = Solver::empty(prep, lim, input);
        if !s.load.is_empty() {
            let orphans = s.pin_and_keep();
            s.place(orphans);
        }
        s
    }

    /// Passes 1 to 5, passes 4 and 5 taking at most `weight_cap` off live owners (`moved_w`).
    fn run(prep: &'p Prepared<'p>, lim: &'p Limits, input: &PlanInput, weight_cap: u128) -> Self {
        Solver::sticky(prep, lim, input).finish(weight_cap)
    }

    /// Passes 4 and 5 after [`Solver::sticky`], taking at most `weight_cap` off live owners.
    fn finish(mut self, weight_cap: u128) -> Self {
        let s = &mut self;
        if s.load.is_empty() {
            return self;
        }
        s.weight_cap = weight_cap;
        if weight_cap != u128::MAX {
            // newcomers first: their shortfall is part of the floor, more shedding may not be
            s.lift();
        }
        s.shed();
        s.lift();
        debug_assert_eq!(s.moved, s.count_moved(), "move accounting drifted");
        debug_assert_eq!(s.moved_w, s.live_w(), "weight accounting drifted");
        self
    }

    /// How much `moved_w` grows when partition `p` moves to `to`.
    fn weight_delta(&self, p: u32, to: u32) -> i128 {
        let r = p as usize;
        let prev = self.prep.prev[r];
        let w = i128::from(self.weight[r]);
        if prev == Some(to) {
            -w
        } else if prev == Some(self.owner[r]) {
            w
        } else {
            0
        }
    }

    /// Whether the moves (applied in order) stay within the weight cap.
    fn within_cap(&self, moves: &[(u32, u32)]) -> bool {
        if self.weight_cap == u128::MAX {
            return true;
        }
        let delta: i128 = moves.iter().map(|&(p, to)| self.weight_delta(p, to)).sum();
        i128::try_from(self.moved_w)
            .unwrap_or(i128::MAX)
            .saturating_add(delta)
            <= i128::try_from(self.weight_cap).unwrap_or(i128::MAX)
    }

    /// Passes 1 and 2; returns the partitions still to place, heaviest first.
    fn pin_and_keep(&mut self) -> Vec<u32> {
        let prep = self.prep;
        let mut orphans = Vec::new();
        for rank in 0..prep.parts.len() {
            let w = self.weight[rank];
            if let Some(pin) = prep.pin[rank] {
                self.pinned[rank] = true;
                self.owner[rank] = pin;
                self.load[pin as usize] += w;
                self.cause[rank] = Cause::Pinned;
                if prep.prev[rank].is_some_and(|p| p != pin) {
                    self.moved += 1;
                }
            } else if let Some(prev) = prep.prev[rank] {
                self.owner[rank] = prev;
                self.load[prev as usize] += w;
                self.cause[rank] = Cause::Kept;
            } else {
                self.cause[rank] = if prep.previous_listed[rank] {
                    Cause::Gone
                } else {
                    Cause::New
                };
                orphans.push(rank as u32);
            }
        }
        orphans.sort_unstable_by_key(|&r| (Reverse(self.weight[r as usize]), r));
        self.kept = self.load.clone();
        orphans
    }

    /// Pass 3: heaviest first onto the worker with the lowest relative load after taking it.
    fn place(&mut self, orphans: Vec<u32>) {
        if orphans.len() + self.pinned.iter().filter(|&&p| p).count() == self.owner.len() {
            // nothing kept: the placement is LPT's, already computed for the bounds
            for r in orphans {
                let to = self.lim.lpt_owner[r as usize];
                self.owner[r as usize] = to;
                self.load[to as usize] += self.weight[r as usize];
            }
            return;
        }
        let mut classes = Classes::new(&self.cap);
        for x in 0..self.load.len() as u32 {
            classes.push(x, self.load[x as usize]);
        }
        // shortfalls under the line, as (shortfall, worker)
        let line = &self.lim.line;
        let mut short: BTreeSet<(u64, u32)> = (0..self.load.len() as u32)
            .filter(|&x| self.load[x as usize] < line[x as usize])
            .map(|x| (line[x as usize] - self.load[x as usize], x))
            .collect();
        for r in orphans {
            let w = self.weight[r as usize];
            let (load, cap) = (&self.load, &self.cap);
            let limit = &self.lim.limit;
            let to = match short.range((w, 0)..).next() {
                Some(&(_, x)) => x,
                None => {
                    // the least-loaded worker of each capacity has the most room of its class
                    let mins = classes.minimums(load);
                    let best = |xs: &mut dyn Iterator<Item = u32>| {
                        xs.reduce(|b, x| {
                            if lower_after(load, cap, x, b, w) {
                                x
                            } else {
                                b
                            }
                        })
                    };
                    let fits = |x: &u32| load[*x as usize] + w <= limit[*x as usize];
                    best(&mut mins.iter().copied().filter(fits))
                        .or_else(|| best(&mut mins.iter().copied()))
                        .expect("some worker")
                }
            };
            let ti = to as usize;
            if self.load[ti] < line[ti] {
                short.remove(&(line[ti] - self.load[ti], to));
            }
            self.owner[r as usize] = to;
            self.load[ti] += w;
            if self.load[ti] < line[ti] {
                short.insert((line[ti] - self.load[ti], to));
            }
            classes.push(to, self.load[ti]);
        }
    }

    /// Pass 4: workers above the ceiling hand partitions to the least loaded with room.
    fn shed(&mut self) {
        let nw = self.load.len() as u32;
        let over_limit = |s: &Self, x: u32| s.load[x as usize] > s.lim.limit[x as usize];
        // workers above the ceiling, most loaded first; one that nothing helps is dropped
        let mut over: BTreeSet<RelLoad> = (0..nw)
            .filter(|&x| over_limit(self, x))
            .map(|x| self.key(x))
            .collect();
        if over.is_empty() {
            return;
        }
        self.items();
        let mut classes = Classes::new(&self.cap);
        for x in 0..nw {
            classes.push(x, self.load[x as usize]);
        }
        let mut order: BTreeSet<RelLoad> = (0..nw).map(|x| self.key(x)).collect();
        let mut steps = self.step_cap();
        while let Some(a) = over.last().map(|k| k.idx) {
            if self.moved >= self.budget || steps == 0 {
                return;
            }
            steps -= 1;
            let moves = self.shed_step(a, &mut classes, &order);
            if moves.is_empty() || !self.within_cap(&moves) {
                over.remove(&self.key(a));
                continue;
            }
            for (p, to) in moves {
                let from = self.owner[p as usize];
                for x in [from, to] {
                    order.remove(&self.key(x));
                    over.remove(&self.key(x));
                }
                self.relocate(p, to, Cause::Shed);
                for x in [from, to] {
                    order.insert(self.key(x));
                    classes.push(x, self.load[x as usize]);
                    if over_limit(self, x) {
                        over.insert(self.key(x));
                    }
                }
            }
        }
    }

    /// The moves that lower worker `a` (above its limit): one partition to the least-loaded
    /// worker with room; else a swap; else a *push* — the partition that covers the excess
    /// (or the heaviest below it) to the least-loaded worker, which ends below `a`'s load
    /// now but above its own limit, and sheds lighter partitions in turn. Empty if none helps.
    fn shed_step(
        &self,
        a: u32,
        classes: &mut Classes,
        order: &BTreeSet<RelLoad>,
    ) -> Vec<(u32, u32)> {
        let ai = a as usize;
        let e = self.load[ai] - self.lim.limit[ai];
        let mins = classes.minimums(&self.load);
        let room = |b: u32| self.lim.limit[b as usize].saturating_sub(self.load[b as usize]);
        let most = mins.iter().filter(|&&b| b != a).map(|&b| room(b)).max();
        let most = most.unwrap_or(0);
        let items = &self.items.as_ref().expect("built")[ai];
        let covers = items.range((e, 0)..).next().filter(|&&(w, _)| w <= most);
        let below = items
            .range(..=(e.saturating_sub(1).min(most), u32::MAX))
            .next_back();
        // lighter partitions that cannot add up to the excess would move in vain before the
        // covering one (looking at 64 of them at most)
        let lighter_cover = || {
            let mut sum = 0u64;
            let lighter = items.range(..=(e.min(most), u32::MAX)).rev().take(64);
            lighter.map(|&(w, _)| w).any(|w| {
                sum = sum.saturating_add(w);
                sum >= e
            }) || items
                .range(..=(e.min(most), u32::MAX))
                .nth_back(64)
                .is_some()
        };
        let pick = match (covers, below) {
            (Some(&c), _) if c.0 - e <= e / 8 => Some(c),
            (Some(&c), Some(_)) if !lighter_cover() => Some(c),
            (_, Some(&b)) => Some(b),
            (c, None) => c.copied(),
        };
        let (load, cap) = (&self.load, &self.cap);
        let best_of = |w: u64, ok: &dyn Fn(u32) -> bool| {
            mins.iter()
                .copied()
                .filter(|&b| b != a && ok(b))
                .reduce(|b, x| {
                    if lower_after(load, cap, x, b, w) {
                        x
                    } else {
                        b
                    }
                })
        };
        if let Some((pw, p)) = pick {
            let to = best_of(pw, &|b| room(b) >= pw).expect("a worker with room exists");
            return vec![(p, to)];
        }
        if let Some((p, b, q)) = self.swap(a, e, order) {
            return vec![(p, b), (q, a)];
        }
        if let Some(moves) = self.trade(a, e, order) {
            return moves;
        }
        if let Some(m) = self.make_room(a, e, &mins) {
            return vec![m];
        }
        // push: the receiver must end strictly below `a`'s load now
        let push = [
            items.range((e, 0)..).next(),
            items.range(..(e, 0)).next_back(),
        ];
        for &(pw, p) in push.into_iter().flatten() {
            let below_a = |b: u32| {
                let bi = b as usize;
                u128::from(self.load[bi] + pw) * u128::from(self.cap[ai])
                    < u128::from(self.load[ai]) * u128::from(self.cap[bi])
            };
            if self.room_scans.get() < ROOM_SCANS {
                self.room_scans.set(self.room_scans.get() + 1);
                if let Some(to) = self.cheapest_room(a, pw, most, &below_a) {
                    return vec![(p, to)];
                }
            }
            if let Some(to) = best_of(pw, &below_a) {
                return vec![(p, to)];
            }
        }
        Vec::new()
    }

    /// One move towards placing a partition `p` of the overloaded worker `a` (excess `e`): the
    /// lightest that covers the excess, else its heaviest. The worker `b` that needs the fewest
    /// of its own lighter partitions moved elsewhere to take `p` within its limit (each at most
    /// the most room any worker has, heaviest first) gets `p` once it has the room; until then
    /// the move is `b`'s heaviest such partition to the least-loaded worker with room for it,
    /// which ends below `b`. Every move lowers a load and leaves the receiver below it, so rounds
    /// with any budget keep going (the same `b` stays the cheapest as it empties). Scans every
    /// worker: at most [`ROOM_SCANS`] times per plan.
    fn make_room(&self, a: u32, e: u64, mins: &[u32]) -> Option<(u32, u32)> {
        if self.room_scans.get() >= ROOM_SCANS {
            return None;
        }
        self.room_scans.set(self.room_scans.get() + 1);
        let items = self.items.as_ref().expect("built");
        let ai = a as usize;
        let &(pw, p) = items[ai].range((e, 0)..).next().or(items[ai].last())?;
        let room = |x: u32| self.lim.limit[x as usize].saturating_sub(self.load[x as usize]);
        let most = mins.iter().filter(|&&x| x != a).map(|&x| room(x)).max()?;
        // `x` at load `l` ends strictly below `a` now
        let below_a = |x: usize, l: u64| {
            u128::from(l) * u128::from(self.cap[ai])
                < u128::from(self.load[ai]) * u128::from(self.cap[x])
        };
        let mut best: Option<(usize, u32)> = None;
        for b in (0..self.load.len() as u32).filter(|&b| b != a) {
            let bi = b as usize;
            let need = (self.load[bi] + pw).saturating_sub(self.lim.limit[bi]);
            if need == 0 {
                if below_a(bi, self.load[bi] + pw) {
                    return Some((p, b));
                }
                continue;
            }
            let mut freed = 0u64;
            let mut count = 0usize;
            for &(qw, _) in items[bi]
                .range(..(pw.min(most.saturating_add(1)), 0))
                .rev()
                .take(256)
            {
                if best.is_some_and(|(c, _)| count + 1 >= c) {
                    break;
                }
                freed += qw;
                count += 1;
                if freed >= need {
                    break;
                }
            }
            if freed >= need
                && below_a(bi, self.load[bi] + pw - need)
                && best.is_none_or(|(c, _)| count < c)
            {
                best = Some((count, b));
            }
        }
        let (_, b) = best?;
        let bi = b as usize;
        // the first move: b's heaviest qualifying partition to the least loaded with room
        let &(qw, q) = items[bi]
            .range(..(pw.min(most.saturating_add(1)), 0))
            .next_back()?;
        let (load, cap) = (&self.load, &self.cap);
        let to = mins
            .iter()
            .copied()
            .filter(|&c| {
                let ci = c as usize;
                c != a
                    && c != b
                    && room(c) >= qw
                    && u128::from(load[ci] + qw) * u128::from(cap[bi])
                        < u128::from(load[bi]) * u128::from(cap[ci])
            })
            .reduce(|x, c| {
                if lower_after(load, cap, c, x, qw) {
                    c
                } else {
                    x
                }
            })?;
        Some((q, to))
    }

    /// The worker that can take weight `w` by moving off the least weight of strictly lighter
    /// partitions, lightest first (those heavier than `most`, the most room any worker has,
    /// count twice: they will have to make room in turn); ties by relative load. Only workers
    /// for which `ok` holds. O(W + partitions summed).
    fn cheapest_room(&self, a: u32, w: u64, most: u64, ok: &dyn Fn(u32) -> bool) -> Option<u32> {
        let items = self.items.as_ref().expect("built");
        let mut best: Option<(u128, RelLoad)> = None;
        for x in (0..self.load.len() as u32).filter(|&x| x != a && ok(x)) {
            let xi = x as usize;
            let need = (self.load[xi] + w).saturating_sub(self.lim.limit[xi]);
            if best.is_some_and(|(c, _)| u128::from(need) > c) {
                continue;
            }
            let (mut sum, mut cost) = (0u64, 0u128);
            for &(iw, _) in items[xi].range(..(w, 0)) {
                if sum >= need {
                    break;
                }
                sum += iw;
                cost += u128::from(iw) * if iw > most { 2 } else { 1 };
            }
            if sum >= need {
                let key = (cost, self.key(x));
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        best.map(|(_, k)| k.idx)
    }

    /// A swap that lowers the overloaded worker `a` (excess `e`): partition `p` of `a` for a
    /// lighter partition `q` of one of the least loaded workers `b`, with `b` staying within
    /// its limit; the lightest such pair that removes the whole excess (or, when no worker has
    /// room for it, at least half the room of `b`). Looks at [`DONORS`] workers and the 64
    /// lightest partitions of each, so a step costs O(DONORS · 64 · log P).
    fn swap(&self, a: u32, e: u64, order: &BTreeSet<RelLoad>) -> Option<(u32, u32, u32)> {
        let items = self.items.as_ref().expect("built");
        let mut best: Option<(u128, u32, u32, u32)> = None;
        for b in order.iter().map(|k| k.idx).filter(|&b| b != a).take(DONORS) {
            let bi = b as usize;
            let room = self.lim.limit[bi].saturating_sub(self.load[bi]);
            if room == 0 || (self.moved + 2 > self.budget) {
                continue;
            }
            let lo_delta = if e <= room { e } else { room.div_ceil(2) };
            for &(qw, q) in items[bi].iter().take(64) {
                let (Some(lo), Some(hi)) = (qw.checked_add(lo_delta), qw.checked_add(room)) else {
                    break;
                };
                if best.is_some_and(|(c, ..)| 2 * u128::from(qw) + u128::from(lo_delta) >= c) {
                    break;
                }
                if let Some(&(pw, p)) = items[a as usize].range((lo, 0)..=(hi, u32::MAX)).next() {
                    let cost = u128::from(pw) + u128::from(qw);
                    if best.is_none_or(|(c, ..)| cost < c) {
                        best = Some((cost, p, b, q));
                    }
                }
            }
            // and from the other side: `a`'s heaviest partitions for one of `b`'s
            for &(pw, p) in items[a as usize].iter().rev().take(64) {
                let (lo, hi) = (pw.saturating_sub(room), pw.saturating_sub(lo_delta));
                if let Some(&(qw, q)) = items[bi].range((lo, 0)..=(hi, u32::MAX)).next_back() {
                    let cost = u128::from(pw) + u128::from(qw);
                    if qw < pw && best.is_none_or(|(c, ..)| cost < c) {
                        best = Some((cost, p, b, q));
                    }
                }
            }
        }
        best.map(|(_, p, b, q)| (p, b, q))
    }

    /// A many-for-one trade that lowers the overloaded worker `a` (excess `e`): one partition
    /// `p` of `a` to one of the least loaded workers `b`, and lighter partitions of `b` back to
    /// `a` (heaviest that still fit first), weighing together at least what `b` must give back
    /// to stay within its limit and at most `w(p) − e` (so that `a` ends within its limit) —
    /// or, when nothing hits that window, less than `w(p)`, so that `a` still drops. Fewest
    /// partitions first, then the least weight moved. Looks at [`DONORS`] workers, the 16
    /// heaviest partitions of `a` and 256 partitions of each `b`, and returns at most 64 back.
    fn trade(&self, a: u32, e: u64, order: &BTreeSet<RelLoad>) -> Option<Vec<(u32, u32)>> {
        let items = self.items.as_ref().expect("built");
        let left = self.budget.saturating_sub(self.moved).min(65);
        if left < 2 {
            return None;
        }
        let ai = a as usize;
        // (falls short of the limit, partitions moved, weight moved), p, b, partitions back
        type Trade = ((bool, usize, u128), u32, u32, Vec<u32>);
        let mut best: Option<Trade> = None;
        for b in order.iter().map(|k| k.idx).filter(|&b| b != a).take(DONORS) {
            let bi = b as usize;
            for &(pw, p) in items[ai].iter().rev().take(16) {
                let lo = (self.load[bi] + pw).saturating_sub(self.lim.limit[bi]);
                let fix = pw.saturating_sub(e);
                let (hi, short) = if fix >= lo {
                    (fix, false)
                } else {
                    (pw - 1, true)
                };
                if lo == 0 || hi < lo {
                    continue;
                }
                let (mut sum, mut back) = (0u64, Vec::new());
                for &(qw, q) in items[bi].range(..=(hi, u32::MAX)).rev().take(256) {
                    if sum >= lo || back.len() + 1 >= left {
                        break;
                    }
                    if qw <= hi - sum {
                        sum += qw;
                        back.push(q);
                    }
                }
                if sum < lo {
                    continue;
                }
                // `b` must end strictly below `a`'s relative load now (the max goes down)
                let nb = u128::from(self.load[bi] + pw - sum);
                if nb * u128::from(self.cap[ai])
                    >= u128::from(self.load[ai]) * u128::from(self.cap[bi])
                {
                    continue;
                }
                let key = (short, back.len() + 1, u128::from(pw) + u128::from(sum));
                if best.as_ref().is_none_or(|(k, ..)| key < *k) {
                    best = Some((key, p, b, back));
                }
            }
        }
        let (_, p, b, back) = best?;
        let mut moves = vec![(p, b)];
        moves.extend(back.into_iter().map(|q| (q, a)));
        Some(moves)
    }

    /// Pass 5: lift workers below their line with partitions from the most loaded ones.
    fn lift(&mut self) {
        let nw = self.load.len() as u32;
        // a worker is lifted to its line once it is (or what it kept was) below its trigger
        let mut lifting: Vec<bool> = (0..nw as usize)
            .map(|x| {
                let low = self.load[x].min(self.kept[x]) < self.lim.trigger[x];
                low && self.load[x] < self.lim.line[x]
            })
            .collect();
        if !lifting.contains(&true) {
            return;
        }
        self.items();
        let mut settled = vec![false; nw as usize];
        let mut order: BTreeSet<RelLoad> = (0..nw).map(|x| self.key(x)).collect();
        let mut spare: BTreeSet<(i128, u32)> = (0..nw).filter_map(|x| self.spare(x)).collect();
        let mut needy: BTreeSet<RelLoad> = (0..nw)
            .filter(|&x| lifting[x as usize])
            .map(|x| self.key(x))
            .collect();
        let mut steps = self.step_cap();
        let mut stuck: Vec<u32> = Vec::new();
        while self.moved < self.budget && steps > 0 {
            steps -= 1;
            let Some(r) = needy.pop_first().map(|k| k.idx) else {
                return;
            };
            // a worker no donor can help waits until some other move changes the picture
            let Some((d, p, keep)) = self.donation(r, &order, &spare) else {
                stuck.push(r);
                continue;
            };
            if keep == Keep::Nothing {
                // a donor that dips below its line for this is not lifted in turn (no cascade)
                settled[d as usize] = true;
            }
            for x in [d, r] {
                order.remove(&self.key(x));
                needy.remove(&self.key(x));
                if let Some(k) = self.spare(x) {
                    spare.remove(&k);
                }
            }
            self.relocate(p, r, Cause::Lifted);
            for x in [d, r] {
                let xi = x as usize;
                order.insert(self.key(x));
                spare.extend(self.spare(x));
                lifting[xi] = !settled[xi]
                    && (self.load[xi] < self.lim.trigger[xi]
                        || (lifting[xi] && self.load[xi] < self.lim.line[xi]));
                if lifting[xi] {
                    needy.insert(self.key(x));
                }
            }
            for x in stuck.drain(..).filter(|&x| x != d && x != r) {
                if lifting[x as usize] {
                    needy.insert(self.key(x));
                }
            }
        }
    }

    /// The donor, partition and donor line of pass 5 for the lifted worker `r`: the most
    /// loaded donors first (in `order`), then the one with the most to spare above its line
    /// after giving its lightest partition (`spare`; the most loaded may hold only heavy ones),
    /// each keeping its level, else its line, else nothing.
    fn donation(
        &self,
        r: u32,
        order: &BTreeSet<RelLoad>,
        spare: &BTreeSet<(i128, u32)>,
    ) -> Option<(u32, u32, Keep)> {
        let roomiest = spare.last().map(|&(_, x)| x);
        for keep in [Keep::Level, Keep::Line, Keep::Nothing] {
            let top = order.iter().rev().take(DONORS + 1).map(|k| k.idx);
            for d in top.chain(roomiest).filter(|&d| d != r) {
                if let Some(p) = self.gift(d, r, keep) {
                    return Some((d, p, keep));
                }
            }
        }
        None
    }

    /// Worker `x`'s load above its line after giving its lightest movable partition, with `x`
    /// (None if it has none): the key of pass 5's second donor index.
    fn spare(&self, x: u32) -> Option<(i128, u32)> {
        let xi = x as usize;
        let &(w, _) = self.items.as_ref().expect("built")[xi].first()?;
        let s = i128::from(self.load[xi]) - i128::from(self.lim.line[xi]) - i128::from(w);
        Some((s, x))
    }

    /// What donor `d` can hand to the lifted worker `r` (see pass 5 in [`Balanced`]).
    fn gift(&self, d: u32, r: u32, keep: Keep) -> Option<u32> {
        let (di, ri) = (d as usize, r as usize);
        let lim = self.lim;
        let mut hi = self.fair_limit(d, r)?;
        hi = hi.min(lim.limit[ri].saturating_sub(self.load[ri]));
        let line = match keep {
            Keep::Level => Some(lim.target[di]),
            Keep::Line => Some(lim.line[di]),
            Keep::Nothing => None,
        };
        if let Some(line) = line {
            hi = hi.min(self.load[di].checked_sub(line)?);
        }
        if hi == 0 {
            return None;
        }
        let need = lim.line[ri].saturating_sub(self.load[ri]).max(1);
        let gap = lim.target[ri]
            .saturating_sub(self.load[ri])
            .max(need)
            .min(hi);
        // the lightest partition that covers the shortfall within the gap to the level; else
        // the heaviest below the shortfall; else (nothing that light) the lightest within reach
        let items = &self.items.as_ref().expect("built")[di];
        let covers = items.range((need, 0)..).next().filter(|&&(w, _)| w <= gap);
        let below = items
            .range(..(need.min(hi.saturating_add(1)), 0))
            .next_back();
        let lightest = items.first().filter(|&&(w, _)| w <= hi);
        let pick = covers.or(below).or(lightest).map(|&(_, p)| p)?;
        let costs = self.prep.prev[pick as usize] == Some(d);
        // a worker that carries nothing may be fed past the cap with up to FLOOR_FACTOR × what
        // the floor counts for it (its line, at least the lightest partition), a bound that
        // does not depend on the plan so far (else planning again from the result would feed it);
        // under a cap, no gift weighs more than FLOOR_FACTOR × the shortfall it fills (a giant
        // handed to fill a small one spends the cap that the other lifted workers need)
        let owed = need.max(self.lightest);
        let modest = (self.weight[pick as usize] as f64) <= FLOOR_FACTOR * owed as f64;
        let fits = if self.load[ri] == 0 {
            modest
        } else {
            self.within_cap(&[(pick, r)]) && (modest || self.weight_cap == u128::MAX)
        };
        (fits && (!costs || self.moved < self.budget)).then_some(pick)
    }

    /// The heaviest weight `d` may hand to `r` so that afterwards both sit strictly between
    /// their current relative loads; None if `d` is not more loaded than `r`.
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

    /// Moves partition `p` to worker `to`, recording why when it leaves its previous owner.
    fn relocate(&mut self, p: u32, to: u32, why: Cause) {
        let r = p as usize;
        let delta = self.weight_delta(p, to);
        self.moved_w = self
            .moved_w
            .checked_add_signed(delta)
            .expect("moved weight stays >= 0");
        let from = self.owner[r];
        self.load[from as usize] -= self.weight[r];
        self.load[to as usize] += self.weight[r];
        self.owner[r] = to;
        let prev = self.prep.prev[r];
        if prev == Some(from) {
            self.moved += 1;
        }
        if prev == Some(to) {
            self.moved -= 1;
        }
        if self.cause[r] == Cause::Kept || prev.is_some() {
            self.cause[r] = if prev == Some(to) { Cause::Kept } else { why };
        }
        let items = self.items.as_mut().expect("built");
        items[from as usize].remove(&(self.weight[r], p));
        items[to as usize].insert((self.weight[r], p));
    }

    /// A bound on the moves of passes 4 and 5 (they end anyway; this makes it obvious).
    fn step_cap(&self) -> usize {
        2 * self.owner.len() + self.load.len() + 16
    }

    /// Whether some worker carries nothing though its trigger is above zero and a donor could
    /// give it a partition (pass 5's rule): a newcomer to feed.
    fn feedable(&mut self) -> bool {
        let nw = self.load.len() as u32;
        let empty: Vec<u32> = (0..nw)
            .filter(|&x| self.load[x as usize] == 0 && self.lim.trigger[x as usize] > 0)
            .collect();
        if empty.is_empty() {
            return false;
        }
        self.items();
        let order: BTreeSet<RelLoad> = (0..nw).map(|x| self.key(x)).collect();
        let spare: BTreeSet<(i128, u32)> = (0..nw).filter_map(|x| self.spare(x)).collect();
        empty
            .into_iter()
            .any(|r| self.donation(r, &order, &spare).is_some())
    }

    /// Whether a worker above its limit could give a partition to a worker that carries
    /// nothing, within that worker's limit (a newcomer where giant partitions leave no level).
    fn sheddable_to_empty(&mut self) -> bool {
        let nw = self.load.len();
        let Some(room) = (0..nw)
            .filter(|&x| self.load[x] == 0)
            .map(|x| self.lim.limit[x])
            .max()
        else {
            return false;
        };
        self.items();
        let items = self.items.as_ref().expect("built");
        (0..nw).any(|a| {
            self.load[a] > self.lim.limit[a] && items[a].first().is_some_and(|&(w, _)| w <= room)
        })
    }

    /// Weight of unpinned partitions that left their live previous owner (counted afresh).
    fn live_w(&self) -> u128 {
        (0..self.owner.len())
            .filter(|&r| !self.pinned[r] && self.prep.prev[r].is_some_and(|p| p != self.owner[r]))
            .map(|r| u128::from(self.weight[r]))
            .sum()
    }

    fn key(&self, w: u32) -> RelLoad {
        RelLoad {
            load: self.load[w as usize],
            cap: self.cap[w as usize],
            idx: w,
            ver: 0,
        }
    }

    /// Movable partitions per worker, built from the current owners on first use.
    fn items(&mut self) {
        if self.items.is_none() {
            // per worker, then one sorted bulk build each (much cheaper than single inserts)
            let mut lists: Vec<Vec<(u64, u32)>> = vec![Vec::new(); self.load.len()];
            for (rank, &o) in self.owner.iter().enumerate() {
                if !self.pinned[rank] {
                    lists[o as usize].push((self.weight[rank], rank as u32));
                }
            }
            self.items = Some(
                lists
                    .into_iter()
                    .map(|mut l| {
                        l.sort_unstable();
                        l.into_iter().collect()
                    })
                    .collect(),
            );
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
        let total = prep.total_weight() as f64;
        let of_mean = |w: u32| {
            let fair = total * self.cap[w as usize] as f64 / prep.total_capacity().max(1) as f64;
            if fair > 0.0 {
                self.load[w as usize] as f64 / fair
            } else {
                0.0
            }
        };
        let from = prep.prev[rank].map_or(String::new(), |p| prep.worker_id(p).to_string());
        match self.cause[rank] {
            Cause::Pinned => format!("pinned to worker {to_id}"),
            Cause::Kept => format!(
                "kept on its previous owner {to_id} (load {:.2} of target)",
                of_mean(to)
            ),
            Cause::New => format!("new partition placed on least-loaded worker {to_id}"),
            Cause::Gone => {
                match recorded {
                    Some(gone) => {
                        format!("its previous owner {gone} is gone; placed on least-loaded worker {to_id}")
                    }
                    None => format!("new partition placed on least-loaded worker {to_id}"),
                }
            }
            Cause::Shed => format!(
                "moved from {from} (over quota) to worker {to_id}, the least loaded with room \
                 for weight {} under the balance ceiling",
                self.weight[rank]
            ),
            Cause::Repacked => format!(
                "moved from {from} to worker {to_id}: no single move or swap could balance the \
                 plan, so it was repacked heaviest first (LPT), keeping what it could in place"
            ),
            Cause::RepackedLocally => format!(
                "moved from {from} to worker {to_id}: no single move or swap could balance the \
                 plan, so the most and the least loaded workers placed their heaviest \
                 partitions again among themselves, heaviest first, keeping what they could \
                 in place"
            ),
            Cause::Lifted => format!(
                "moved from {from} (most loaded) to worker {to_id}, which was below {:.2} of \
                 its level",
                (1.0 - slack).max(0.0)
            ),
        }
    }
}
