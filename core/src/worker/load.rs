//! Measured load: what a worker reports for the partitions it holds, and the leader's smoothed
//! view of it.
//!
//! A worker keeps the last value reported per held partition and sends them with its next
//! lease renewal ([`LoadReport`], aligned to the held partitions): no write of its own. The
//! leader smooths every partition's reports with an exponentially weighted moving average over
//! time (`load_half_life`) and plans on the result ([`crate::plan::effective_partitions`] says
//! how loads and static weights share one scale). Partitions a balancing round moved rest for
//! `load_cooldown`.

use super::WorkerMachine;
use crate::codec::{share_digest, LoadReport};
use crate::{Error, Instant, Partition, PartitionId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

impl WorkerMachine {
    /// Merges `loads` into the last report (refused as a whole if a value or partition is bad).
    pub(crate) fn report_load(&mut self, loads: Vec<(PartitionId, f64)>) -> Result<(), Error> {
        for (p, load) in &loads {
            crate::load::check(p, *load)?;
            let bad = |reason: String| Error::InvalidPartition {
                partition: p.short().into_owned(),
                reason,
            };
            if *load > f64::from(f32::MAX) {
                return Err(bad(format!("load {load} must be at most {:e}", f32::MAX)));
            }
            if !self.held.contains(p) {
                return Err(bad(
                    "not held by this worker: report loads of partitions it holds".into(),
                ));
            }
        }
        self.loads.retain(|p, _| self.held.contains(p));
        self.loads
            .extend(loads.into_iter().map(|(p, l)| (p, l as f32)));
        Ok(())
    }

    /// The sum of the last reported loads of the partitions held now.
    pub fn reported_load(&self) -> f64 {
        self.held
            .iter()
            .filter_map(|p| self.loads.get(p))
            .map(|l| f64::from(*l))
            .sum()
    }

    /// The report the next lease renewal carries: the held partitions' last reported loads.
    pub(crate) fn load_report(&self) -> Option<LoadReport> {
        if self.loads.is_empty() {
            return None;
        }
        let values: Vec<Option<f32>> = self
            .held
            .iter()
            .map(|p| self.loads.get(p).copied())
            .collect();
        values.iter().any(Option::is_some).then(|| LoadReport {
            share: share_digest(&self.held),
            values,
        })
    }
}

/// A partition's smoothed load and when its last report arrived (on the leader's clock).
#[derive(Clone, Copy, Debug)]
struct Smoothed {
    value: f64,
    at: Instant,
}

/// The leader's view of measured load.
#[derive(Debug, Default)]
pub(crate) struct LoadView {
    smoothed: BTreeMap<PartitionId, Smoothed>,
    /// Partitions a balancing round moved, and until when they stay put.
    resting: BTreeMap<PartitionId, Instant>,
    /// A report arrived since the balance was last measured.
    pub(crate) changed: bool,
}

impl LoadView {
    /// Takes `report` from the worker whose committed share is `share`; ignored (false) when
    /// the report belongs to another share (a handoff is under way: the next one will do).
    pub(crate) fn take(
        &mut self,
        share: &BTreeSet<PartitionId>,
        digest: u64,
        report: &LoadReport,
        now: Instant,
        half_life: Duration,
    ) -> bool {
        if report.share != digest || report.values.len() != share.len() {
            return false;
        }
        for (p, v) in share.iter().zip(&report.values) {
            let Some(v) = v else { continue };
            let x = f64::from(*v);
            match self.smoothed.get_mut(p) {
                Some(s) => {
                    let dt = now.saturating_duration_since(s.at).as_secs_f64();
                    let alpha = 1.0 - (-dt / half_life.as_secs_f64()).exp2();
                    s.value += alpha * (x - s.value);
                    s.at = now;
                }
                None => {
                    self.smoothed
                        .insert(p.clone(), Smoothed { value: x, at: now });
                }
            }
        }
        self.changed = true;
        true
    }

    /// The smoothed loads of the listed partitions (`listed` sorted by ID); forgets the rest.
    pub(crate) fn of(&mut self, listed: &[Partition]) -> BTreeMap<PartitionId, f64> {
        let is_listed = |p: &PartitionId| listed.binary_search_by(|x| x.id().cmp(p)).is_ok();
        self.smoothed.retain(|p, _| is_listed(p));
        self.smoothed
            .iter()
            .map(|(p, s)| (p.clone(), s.value))
            .collect()
    }

    /// Whether any load was reported (and not forgotten).
    pub(crate) fn is_empty(&self) -> bool {
        self.smoothed.is_empty()
    }

    /// Marks `moved` as moved by a balancing round: they rest until `until`.
    pub(crate) fn rest(&mut self, moved: impl IntoIterator<Item = PartitionId>, until: Instant) {
        self.resting.extend(moved.into_iter().map(|p| (p, until)));
    }

    /// The partitions resting at `now` (and forgets those whose rest is over).
    pub(crate) fn resting(&mut self, now: Instant) -> impl Iterator<Item = &PartitionId> {
        self.resting.retain(|_, until| *until > now);
        self.resting.keys()
    }

    /// What a generation's record carries ([`crate::codec::GenRecord::resting`]): how long
    /// (ms, rounded up) each partition still rests after `now`, with `moved` (the round being
    /// published) resting `cooldown`. Counted from before the commit, so at least as long.
    fn rests_after(
        &mut self,
        now: Instant,
        moved: &[PartitionId],
        cooldown: Duration,
    ) -> BTreeMap<PartitionId, u64> {
        let ms = |d: Duration| u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        self.resting.retain(|_, until| *until > now);
        let mut out: BTreeMap<PartitionId, u64> = self
            .resting
            .iter()
            .map(|(p, until)| (p.clone(), ms(until.saturating_duration_since(now))))
            .collect();
        out.extend(moved.iter().map(|p| (p.clone(), ms(cooldown))));
        out
    }

    /// [`LoadView::rests_after`] for a record of at most `max_bytes`: `None` when the rests
    /// would take more than a quarter of it (a successor then waits a whole `load_cooldown`,
    /// as without them; the commit record must stay one value).
    pub(crate) fn rests_for_record(
        &mut self,
        now: Instant,
        moved: &[PartitionId],
        cooldown: Duration,
        max_bytes: usize,
    ) -> Option<BTreeMap<PartitionId, u64>> {
        let rests = self.rests_after(now, moved, cooldown);
        // an entry: the quoted ID, a colon, up to 20 digits and a comma
        let bytes: usize = rests.keys().map(|p| p.as_str().len() + 24).sum();
        (bytes <= max_bytes / 4).then_some(rests)
    }

    /// Takes over the rests of an earlier leader's record, counted from `now` (when this
    /// leader saw it committed, no earlier than the commit); a longer rest already known stays.
    pub(crate) fn take_rests(&mut self, rests: &BTreeMap<PartitionId, u64>, now: Instant) {
        for (p, ms) in rests {
            let until = now + Duration::from_millis(*ms);
            let at = self.resting.entry(p.clone()).or_insert(until);
            *at = (*at).max(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rests_go_into_the_record_only_while_they_fit_a_quarter_of_it() {
        let at = |ms: u64| Instant::from_origin(Duration::from_millis(ms));
        let mut view = LoadView::default();
        let id = |i: usize| PartitionId::parse(&format!("orders.{i:05}")).unwrap();
        view.rest([id(0)], at(10_000));
        let moved: Vec<PartitionId> = (1..4).map(id).collect();
        let rests = view
            .rests_for_record(at(4_000), &moved, Duration::from_secs(60), 4096)
            .unwrap();
        assert_eq!(rests[&id(0)], 6_000);
        assert_eq!(rests[&id(1)], 60_000);
        assert_eq!(rests.len(), 4);
        // the first rest is over by then, and nothing moves
        let later = view.rests_for_record(at(10_000), &[], Duration::ZERO, 4096);
        assert_eq!(later, Some(BTreeMap::new()));
        // 40 more IDs of 12 bytes (36 bytes each) pass a quarter of 4096 bytes
        let many: Vec<PartitionId> = (0..40).map(id).collect();
        assert_eq!(
            view.rests_for_record(at(10_000), &many, Duration::from_secs(60), 4096),
            None
        );
        // a successor takes them over from when it saw the record, keeping a longer one
        let mut next = LoadView::default();
        next.rest([id(1)], at(90_000));
        next.take_rests(&rests, at(5_000));
        let resting: Vec<&PartitionId> = next.resting(at(64_999)).collect();
        assert_eq!(resting, [&id(1), &id(2), &id(3)]);
        assert_eq!(next.resting(at(65_000)).count(), 1);
    }
}
