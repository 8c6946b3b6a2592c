//! Local repacking for the rounds of [`super::Balanced`]: when the passes leave a worker above
//! its limit, place the heavy partitions again among a few workers instead of all of them.
//!
//! The workers above their limit and the `m` least loaded (relative to capacity) form a group.
//! Its *lumps* — partitions heavier than the most room any worker has, which no single move
//! can place — are placed again on the group alone, heaviest first: each stays on its owner
//! while the owner has room for it (on top of its lighter and pinned partitions), else goes to
//! the worker of the group whose relative load after taking it is lowest. The lighter
//! partitions are left to passes 4 and 5, which place them one at a time. No worker outside
//! the group changes. Tried for `m` = 1, 2, 4, … up to [`MAX_GROUP`]; the cheapest wins: lump
//! weight moved plus the weight the group must still shed to reach its limits.

use super::{lower_after, Cause, Solver};
use std::cmp::Reverse;

/// The most least-loaded workers a local repack pulls in.
const MAX_GROUP: usize = 64;

impl Solver<'_> {
    /// Moves the lumps of the cheapest local repack (see the [module docs](self)); returns
    /// whether it found one.
    pub(super) fn repack_locally(&mut self) -> bool {
        let nw = self.load.len();
        let over: Vec<u32> = (0..nw as u32)
            .filter(|&x| self.load[x as usize] > self.lim.limit[x as usize])
            .collect();
        if over.is_empty() {
            return false;
        }
        self.items();
        let mut rest: Vec<u32> = (0..nw as u32)
            .filter(|&x| self.load[x as usize] <= self.lim.limit[x as usize])
            .collect();
        rest.sort_unstable_by_key(|&x| self.key(x));
        let most = rest
            .iter()
            .map(|&x| self.lim.limit[x as usize] - self.load[x as usize])
            .max()
            .unwrap_or(0);
        let mut best: Option<(u128, Vec<(u32, u32)>)> = None;
        let last = MAX_GROUP.min(rest.len());
        let mut m = 1;
        while m <= last {
            let mut group = over.clone();
            group.extend(&rest[..m]);
            if let Some((cost, moves)) = self.repack_group(&group, most) {
                if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                    best = Some((cost, moves));
                }
            }
            m = if m == last { m + 1 } else { (2 * m).min(last) };
        }
        let Some((_, moves)) = best else {
            return false;
        };
        for (p, to) in moves {
            self.relocate(p, to, Cause::RepackedLocally);
        }
        true
    }

    /// The lumps (partitions heavier than `most`) of `group` placed again on the group alone
    /// (see the [module docs](self)): the moves and their cost (lump weight moved plus the
    /// weight each worker must still shed to reach its limit), if the group's total fits its
    /// limits and the moves fit the budget and the weight cap.
    fn repack_group(&self, group: &[u32], most: u64) -> Option<(u128, Vec<(u32, u32)>)> {
        let items = self.items.as_ref().expect("built");
        let n = group.len();
        let total: u128 = group
            .iter()
            .map(|&x| u128::from(self.load[x as usize]))
            .sum();
        let room: u128 = group
            .iter()
            .map(|&x| u128::from(self.lim.limit[x as usize]))
            .sum();
        if total > room {
            return None;
        }
        let mut lumps: Vec<(u64, u32, usize)> = Vec::new();
        let mut load: Vec<u64> = Vec::with_capacity(n);
        for (i, &x) in group.iter().enumerate() {
            let mut kept = self.load[x as usize];
            for &(w, r) in items[x as usize].range((most.saturating_add(1), 0)..) {
                lumps.push((w, r, i));
                kept -= w;
            }
            load.push(kept);
        }
        lumps.sort_unstable_by_key(|&(w, r, _)| (Reverse(w), r));
        let cap: Vec<u64> = group.iter().map(|&x| self.cap[x as usize]).collect();
        // heaviest first: stay when the owner still has room for it, else the worker of the
        // group whose relative load after taking it is lowest
        let (mut moves, mut cost) = (Vec::new(), 0u128);
        for &(w, r, was) in &lumps {
            let to = if load[was] + w <= self.lim.limit[group[was] as usize] {
                was
            } else {
                (0..n)
                    .reduce(|b, x| {
                        if lower_after(&load, &cap, x as u32, b as u32, w) {
                            x
                        } else {
                            b
                        }
                    })
                    .expect("a group")
            };
            load[to] += w;
            if to != was {
                cost += u128::from(w);
                moves.push((r, group[to]));
            }
        }
        let shed: u128 = (0..n)
            .map(|i| u128::from(load[i].saturating_sub(self.lim.limit[group[i] as usize])))
            .sum();
        (self.moved + moves.len() <= self.budget && self.within_cap(&moves))
            .then_some((cost + shed, moves))
    }
}
