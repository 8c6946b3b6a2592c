//! Load schedules: what the simulated applications report for their partitions
//! ([`crate::Input::ReportLoad`]), and the checks of balancing rounds.
//!
//! Every partition has a base load drawn from a lognormal distribution; bases drift (a random
//! walk), one partition at a time turns hot for a while, and every report adds noise. The load
//! belongs to the partition, not to the worker: whoever holds it reports the same load.

use super::cluster::Sim;
use super::invariants::ViolationKind;
use super::NodeId;
use crate::codec::{self, GenRecord, ShareAssembler, ShareChunk};
use crate::rng::Rng;
use crate::{Bucket, Generation, Input, Instant, Partition, PartitionId, WorkerId};
use std::collections::BTreeMap;
use std::time::Duration;

/// The shape of a load schedule ([`super::SimConfig::load`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
    /// σ of the lognormal base load of each partition (0: all equal). Default 1.0.
    pub sigma: f64,
    /// At every report, each base is multiplied by `exp(N(0, drift))`. Default 0.02.
    pub drift: f64,
    /// Every report multiplies the load by a uniform factor in `[1 - noise, 1 + noise]`.
    /// Default 0.1.
    pub noise: f64,
    /// Mean time between "a partition turns hot" (it stays hot until the next one does; the
    /// previous one cools down). Default 30 s; zero turns this off.
    pub hot_every: Duration,
    /// The load factor of the hot partition. Default 30.
    pub hot_factor: f64,
    /// Each running worker reports the loads of what it holds this often. Default 1 s.
    pub report_every: Duration,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            sigma: 1.0,
            drift: 0.02,
            noise: 0.1,
            hot_every: Duration::from_secs(30),
            hot_factor: 30.0,
            report_every: Duration::from_secs(1),
        }
    }
}

/// The loads of a run, advanced once per report interval by its own random stream.
#[derive(Debug)]
pub(crate) struct LoadModel {
    spec: LoadSpec,
    rng: Rng,
    base: BTreeMap<PartitionId, f64>,
    hot: Option<PartitionId>,
}

impl LoadModel {
    pub(crate) fn new(spec: LoadSpec, seed: u64) -> Self {
        LoadModel {
            spec,
            rng: Rng::new(seed ^ 0x6C6F_6164_0000_0001),
            base: BTreeMap::new(),
            hot: None,
        }
    }

    /// The report interval.
    pub(crate) fn every(&self) -> Duration {
        self.spec.report_every
    }

    /// Advances one report interval over the `listed` partitions (new ones get a base, removed
    /// ones are forgotten).
    pub(crate) fn advance<'a>(&mut self, listed: impl IntoIterator<Item = &'a PartitionId>) {
        let mut base = BTreeMap::new();
        for p in listed {
            let b = match self.base.remove(p) {
                Some(b) => b * (self.spec.drift * normal(&mut self.rng)).exp(),
                None => (self.spec.sigma * normal(&mut self.rng)).exp(),
            };
            base.insert(p.clone(), b);
        }
        self.base = base;
        let hot_every = self.spec.hot_every.as_secs_f64();
        if hot_every > 0.0
            && !self.base.is_empty()
            && self
                .rng
                .chance(self.spec.report_every.as_secs_f64() / hot_every)
        {
            let i = self.rng.below(self.base.len() as u64) as usize;
            self.hot = self.base.keys().nth(i).cloned();
        }
    }

    /// What an application reports for `p` now (with this report's noise).
    pub(crate) fn load(&mut self, p: &PartitionId) -> f64 {
        let base = self.base.get(p).copied().unwrap_or(1.0);
        let hot = if self.hot.as_ref() == Some(p) {
            self.spec.hot_factor
        } else {
            1.0
        };
        let noise = 1.0 + self.spec.noise * (2.0 * unit(&mut self.rng) - 1.0);
        base * hot * noise
    }
}

/// Uniform in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Standard normal (Box-Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u = 1.0 - unit(rng); // (0, 1]
    let v = unit(rng);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The two invariants of balancing rounds, checked on what KV shows: no round moves more than
/// `max_moves_per_round` partitions, and no partition moves in two rounds less than
/// `load_cooldown` apart (as the fastest clock in the cluster counts it).
#[derive(Debug)]
pub(crate) struct RoundChecker {
    /// `max_moves_per_round` and `load_cooldown` of the workers.
    budget: u32,
    cooldown: Duration,
    /// When each partition last moved in a round.
    moved_at: BTreeMap<PartitionId, Instant>,
    /// The fastest clock rate any node had, in ppm above real time: the leader counts the
    /// cooldown on its own clock, which may reach it that much sooner in real time.
    pub(crate) fastest_ppm: u32,
    /// Rounds checked.
    pub(crate) rounds: u64,
}

impl RoundChecker {
    pub(crate) fn new(budget: u32, cooldown: Duration) -> Self {
        RoundChecker {
            budget,
            cooldown,
            moved_at: BTreeMap::new(),
            fastest_ppm: 0,
            rounds: 0,
        }
    }

    /// Checks the round committed as `generation` at `now`: `before` and `after` are the owners
    /// of the committed generations before and at it (workers in both only). Returns what is
    /// broken, if anything.
    pub(crate) fn on_round(
        &mut self,
        now: Instant,
        generation: Generation,
        before: &BTreeMap<PartitionId, WorkerId>,
        after: &BTreeMap<PartitionId, WorkerId>,
        workers_in_both: impl Fn(WorkerId) -> bool,
    ) -> Vec<(bool, String)> {
        let budget = self.budget;
        // the cooldown as a clock `fastest_ppm` fast measures it, in real time
        let cooldown = self.cooldown * 1_000_000 / (1_000_000 + self.fastest_ppm);
        self.rounds += 1;
        let moved: Vec<&PartitionId> = before
            .iter()
            .filter(|(p, w)| workers_in_both(**w) && after.get(*p) != Some(*w))
            .map(|(p, _)| p)
            .collect();
        let mut out = Vec::new();
        if moved.len() > budget as usize {
            out.push((
                true,
                format!(
                    "round {generation} moved {} partitions, over the budget of {budget}",
                    moved.len()
                ),
            ));
        }
        for p in moved {
            if let Some(t) = self.moved_at.insert(p.clone(), now) {
                if now < t + cooldown {
                    out.push((
                        false,
                        format!(
                            "round {generation} moved {p} again {} ms after the round at {t} (cooldown {} ms of real time)",
                            now.saturating_duration_since(t).as_millis(),
                            cooldown.as_millis()
                        ),
                    ));
                }
            }
        }
        out
    }
}

impl Sim {
    /// Every running worker reports the loads of what it holds; returns when to report next.
    pub(crate) fn report_loads(&mut self) -> Duration {
        let Some(model) = self.load.as_mut() else {
            return Duration::MAX;
        };
        model.advance(self.partitions.iter().map(Partition::id));
        let mut reports = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(w) = node.running() {
                let loads: Vec<(PartitionId, f64)> = w
                    .assignment()
                    .iter()
                    .map(|p| (p.clone(), model.load(p)))
                    .collect();
                if !loads.is_empty() {
                    reports.push((NodeId(i), loads));
                }
            }
        }
        let every = model.every();
        for (n, loads) in reports {
            self.deliver(n, Input::ReportLoad(loads));
        }
        every
    }

    /// Checks the balancing round the leader committed as `generation` against the KV: the
    /// owners of the generation before it and of it (read from the share slots both records
    /// name, which a later publish has not overwritten yet).
    pub(crate) fn check_round(&mut self, generation: Generation) {
        let (Some(before), Some(after)) = (
            generation
                .0
                .checked_sub(1)
                .and_then(|g| self.gens.get(&Generation(g))),
            self.gens.get(&generation),
        ) else {
            return;
        };
        let (Some(owners_before), Some(owners_after)) =
            (self.committed_owners(before), self.committed_owners(after))
        else {
            return;
        };
        let both = |w: WorkerId| {
            before.members.get(&w).map(|m| m.token) == after.members.get(&w).map(|m| m.token)
        };
        let found = self
            .rounds
            .on_round(self.now, generation, &owners_before, &owners_after, both);
        for (over_budget, details) in found {
            let kind = if over_budget {
                ViolationKind::RoundOverBudget
            } else {
                ViolationKind::RoundInCooldown
            };
            self.checker.record(self.now, kind, details);
        }
        self.report_violations();
    }

    /// The owner of every partition in `record`, read from KV; `None` if a share is not there.
    fn committed_owners(&self, record: &GenRecord) -> Option<BTreeMap<PartitionId, WorkerId>> {
        let kv = self.net.kv();
        let mut out = BTreeMap::new();
        for (w, m) in &record.members {
            let mut asm = ShareAssembler::default();
            for k in 0..m.chunks {
                let e = kv.get(Bucket::Assign, &codec::share_key(*w, m.slot, k))?;
                asm.insert(codec::decode::<ShareChunk>("share", &e.value).ok()?);
            }
            let share = asm.assemble()?;
            if codec::share_digest(&share) != m.digest {
                return None;
            }
            out.extend(share.into_iter().map(|p| (p, *w)));
        }
        Some(out)
    }
}

impl Sim {
    /// Sets the base load of `p` in the load schedule (with `drift`, `noise` and `hot_every`
    /// zero, exactly what every report of `p` says from then on). Does nothing without a load
    /// schedule ([`super::SimConfig::load`]).
    pub fn set_base_load(&mut self, p: &PartitionId, load: f64) {
        if let Some(m) = self.load.as_mut() {
            m.base.insert(p.clone(), load);
        }
    }
}
