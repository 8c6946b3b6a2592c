//! What the runner tells operators: a `tracing` event for every state change, assignment,
//! leadership change, alert, warning and committed generation (the leader's rebalance decision,
//! with its reason and duration), and the same facts as metrics when the application asked for
//! them ([`crate::WorkerBuilder::metrics`]).
//!
//! The runner's loop runs inside the worker's span (`worker`, with `prefix`, `instance` and,
//! once claimed, `worker_id`), so every event here and below carries them. Nothing secret is
//! ever in a field: no URL, credential or KV value is logged.
// Without the `metrics` feature the recorder's inputs go unused.
#![cfg_attr(not(feature = "metrics"), allow(unused_variables, dead_code))]

use crate::handle::Snapshot;
#[cfg(feature = "metrics")]
use crate::metrics::Recorder;
use crate::DriverWarning;
use parti_core::codec::{GenRecord, Phase, ShareAssembler, ShareChunk};
use parti_core::{AlertLevel, Bucket, KvOp, KvResult, PartitionId, RequestId, State, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;

/// Runs `$body` with the recorder when metrics are on and wanted.
macro_rules! record {
    ($self:ident, $m:ident => $body:expr) => {
        #[cfg(feature = "metrics")]
        if let Some($m) = $self.metrics.as_mut() {
            $body;
        }
    };
}

/// What the runner remembers about a KV operation until its result arrives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KvMeta {
    bucket: Bucket,
    op: &'static str,
    /// This worker's lease renewal (a CAS update of `worker.<id>` in the leases bucket).
    renew: bool,
    started: Instant,
}

/// A leader's rebalance decision, as logged when its generation landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Why (see `Observer::reason`).
    pub(crate) reason: &'static str,
    /// Partitions granted to a new owner, when every share involved is known.
    pub(crate) moved: Option<u64>,
    /// Revoke → grant, for the generation that completes a handoff.
    pub(crate) handoff: Option<std::time::Duration>,
}

/// The leader's commit of `gen` in flight.
#[derive(Debug)]
struct PendingCommit {
    id: RequestId,
    record: GenRecord,
    reason: &'static str,
}

/// The runner's logs and metrics (see the module docs).
#[derive(Debug)]
pub(crate) struct Observer {
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    metrics: Option<Recorder>,
    id: Option<WorkerId>,
    commit: Option<PendingCommit>,
    /// The last generation this worker committed as leader.
    last: Option<GenRecord>,
    /// When the current multi-step handoff's first (revoking) generation was committed, and
    /// why it began.
    handoff_since: Option<(Instant, &'static str)>,
    /// Leader: the share chunks written since the last commit, by worker and slot.
    written: BTreeMap<(WorkerId, u8), ShareAssembler>,
    /// Leader: the shares of the last generation it committed, where known (a share it adopted
    /// and never rewrote is not).
    shares: BTreeMap<WorkerId, BTreeSet<PartitionId>>,
}

impl Observer {
    /// `span` is the worker's span (it gets `worker_id` once claimed).
    pub(crate) fn new(
        span: tracing::Span,
        #[cfg(feature = "metrics")] metrics: Option<Recorder>,
    ) -> Self {
        Observer {
            span,
            #[cfg(feature = "metrics")]
            metrics,
            id: None,
            commit: None,
            last: None,
            handoff_since: None,
            written: BTreeMap::new(),
            shares: BTreeMap::new(),
        }
    }

    /// A KV operation is being started; `state` is the worker's state when it was asked for.
    pub(crate) fn kv_started(
        &mut self,
        id: RequestId,
        bucket: Bucket,
        op: &KvOp,
        state: State,
    ) -> KvMeta {
        let renew = bucket == Bucket::Leases
            && matches!(op, KvOp::Update { key, .. } if key.starts_with("worker."));
        if bucket == Bucket::Assign {
            if let KvOp::Create { key, value }
            | KvOp::Update { key, value, .. }
            | KvOp::Put { key, value } = op
            {
                if let Some((worker, slot, _)) = parti_core::codec::parse_share_key(key) {
                    // The leader publishes a changed share (once per rebalance): remember it,
                    // to log the partitions the generation moves (only when that is logged:
                    // decoding a large share costs about what encoding it did).
                    if tracing::enabled!(tracing::Level::INFO) {
                        if let Ok(chunk) = parti_core::codec::decode::<ShareChunk>("share", value) {
                            self.written
                                .entry((worker, slot))
                                .or_default()
                                .insert(chunk);
                        }
                    }
                } else if key == "gen" && !matches!(op, KvOp::Put { .. }) {
                    // Rare (one per generation): decode what is being committed.
                    self.commit = parti_core::codec::decode::<GenRecord>("gen", value)
                        .ok()
                        .map(|record| PendingCommit {
                            id,
                            reason: self.reason(&record, state),
                            record,
                        });
                }
            }
        }
        KvMeta {
            bucket,
            op: op_name(op),
            renew,
            started: Instant::now(),
        }
    }

    /// A KV operation finished; the leader's decision if it was a landed commit of `gen`.
    pub(crate) fn kv_done(
        &mut self,
        id: RequestId,
        meta: KvMeta,
        result: &KvResult,
    ) -> Option<Decision> {
        let took = meta.started.elapsed();
        record!(self, m => m.kv(meta.bucket, meta.op, meta.renew, result, took));
        if self.commit.as_ref().is_some_and(|c| c.id == id) {
            let commit = self.commit.take().expect("checked");
            if matches!(result, KvResult::Written { .. }) {
                return Some(self.committed(commit));
            }
        }
        None
    }

    /// Leader: its generation landed. The decision is logged; a handoff that began with a
    /// revoking generation ends with the first generation that reaches the target.
    fn committed(&mut self, c: PendingCommit) -> Decision {
        let now = Instant::now();
        let handoff = match c.record.phase {
            Phase::Stable => self.handoff_since.take().map(|(since, _)| now - since),
            _ => {
                self.handoff_since.get_or_insert((now, c.reason));
                None
            }
        };
        let partitions: u64 = c.record.members.values().map(|m| u64::from(m.count)).sum();
        let moved = self.count_moved(&c.record);
        let changed_shares = c
            .record
            .members
            .iter()
            .filter(|(w, m)| {
                self.last
                    .as_ref()
                    .and_then(|l| l.members.get(w))
                    .is_none_or(|old| old.digest != m.digest)
            })
            .count();
        tracing::info!(
            generation = c.record.generation.0,
            epoch = c.record.epoch.0,
            reason = c.reason,
            phase = ?c.record.phase,
            workers = c.record.members.len(),
            partitions,
            changed_shares,
            moved,
            handoff_ms = handoff.map(|d| d.as_millis() as u64),
            "generation committed"
        );
        record!(self, m => m.committed(c.reason, handoff));
        self.last = Some(c.record);
        Decision {
            reason: c.reason,
            moved,
            handoff,
        }
    }

    /// Why the leader commits `record`: `cold_start` (the first generation), the reason of the
    /// handoff it continues, `emergency` (a crash), `join` / `leave` (members added / gone),
    /// `partitions_changed` (the source's list), else `rebalancing` (drain, pin, imbalance, a
    /// restarted worker's return).
    fn reason(&self, record: &GenRecord, state: State) -> &'static str {
        if record.generation.0 <= 1 {
            return "cold_start";
        }
        if let Some((_, reason)) = self.handoff_since {
            return reason;
        }
        if state == State::Emergency || record.phase == Phase::Emergency {
            return "emergency";
        }
        if let Some(last) = &self.last {
            if record.members.keys().any(|w| !last.members.contains_key(w)) {
                return "join";
            }
            if last.members.keys().any(|w| !record.members.contains_key(w)) {
                return "leave";
            }
            let count = |r: &GenRecord| r.members.values().map(|m| u64::from(m.count)).sum::<u64>();
            if count(record) != count(last) {
                return "partitions_changed";
            }
        } else if state == State::Scaling {
            return "scaling";
        }
        "rebalancing"
    }

    /// Partitions granted by `record` to a worker that did not hold them in the leader's
    /// previous generation (`None` when a share is unknown, e.g. right after an adoption).
    /// Keeps the new shares for the next commit.
    fn count_moved(&mut self, record: &GenRecord) -> Option<u64> {
        let previous_known = self.last.is_some() || record.generation.0 <= 1;
        let mut moved = Some(0u64);
        let mut next = BTreeMap::new();
        for (id, m) in &record.members {
            let old = self.shares.remove(id);
            let last = self.last.as_ref().and_then(|l| l.members.get(id));
            if last.is_some_and(|o| o.digest == m.digest) {
                // The same share: nothing gained (kept when known).
                if let Some(old) = old {
                    next.insert(*id, old);
                }
                continue;
            }
            let new = self.written.get(&(*id, m.slot)).and_then(|a| {
                a.assemble()
                    .filter(|s| parti_core::codec::share_digest(s) == m.digest)
            });
            // A worker that was no member of a known previous generation held nothing.
            let old = old.or_else(|| (previous_known && last.is_none()).then(BTreeSet::new));
            match (new, old) {
                (Some(new), Some(old)) => {
                    if let Some(n) = moved.as_mut() {
                        *n += new.difference(&old).count() as u64;
                    }
                    next.insert(*id, new);
                }
                (Some(new), None) => {
                    moved = None;
                    next.insert(*id, new);
                }
                (None, _) => moved = None,
            }
        }
        self.written.clear();
        self.shares = next;
        if previous_known {
            moved
        } else {
            None
        }
    }

    /// The snapshot changed.
    pub(crate) fn snapshot(&mut self, s: &Snapshot) {
        if s.worker_id != self.id {
            self.id = s.worker_id;
            if let Some(id) = s.worker_id {
                self.span.record("worker_id", id.0);
            }
        }
        record!(self, m => m.snapshot(s));
    }

    /// The application reported loads: `total` is what the worker's held partitions carry.
    pub(crate) fn load(&mut self, total: f64) {
        record!(self, m => m.load(total));
    }

    /// A core event, logged; `state` is the worker's state after the step.
    pub(crate) fn event(&mut self, e: &parti_core::Event, state: State) {
        use parti_core::Event as E;
        match e {
            E::StateChanged { from, to } => {
                tracing::info!(from = %from, to = %to, "state changed")
            }
            E::IdClaimed(id) => tracing::info!(worker_id = id.0, "worker id claimed"),
            E::AssignmentChanged {
                generation,
                assigned,
                revoked,
                lost,
                assignment,
            } => tracing::info!(
                generation = generation.0,
                assigned = assigned.len(),
                revoked = revoked.len(),
                lost = lost.len(),
                owned = assignment.len(),
                "assignment changed"
            ),
            E::LeadershipChanged { is_leader, epoch } => {
                if !is_leader {
                    self.handoff_since = None;
                    self.last = None;
                    self.commit = None;
                    self.written.clear();
                    self.shares.clear();
                }
                tracing::info!(is_leader, epoch = epoch.0, "leadership changed")
            }
            E::Alert {
                level,
                degraded_for,
            } => {
                let ms = degraded_for.as_millis() as u64;
                match level {
                    AlertLevel::Info => tracing::info!(?level, degraded_ms = ms, "degraded"),
                    AlertLevel::Warn => tracing::warn!(?level, degraded_ms = ms, "degraded"),
                    AlertLevel::Error | AlertLevel::Critical => {
                        tracing::error!(?level, degraded_ms = ms, "degraded")
                    }
                }
            }
            E::Drained => tracing::info!("drained"),
            E::Rebalanced {
                generation,
                moved,
                worker,
                max_over_mean,
            } => tracing::info!(
                generation = generation.0,
                moved,
                worker = worker.0,
                max_over_mean,
                "moved for load: worker {worker} was at {max_over_mean:.2}x mean"
            ),
            E::Warning(w) => tracing::warn!(kind = w.kind(), "{w}"),
        }
        record!(self, m => m.event(e, state));
    }

    /// A warning of the driver, logged.
    pub(crate) fn driver_warning(&mut self, w: &DriverWarning) {
        tracing::warn!(kind = w.kind(), "{w}");
        record!(self, m => m.driver_warning(w));
    }
}

/// The `bucket` label.
pub(crate) fn bucket_name(b: Bucket) -> &'static str {
    match b {
        Bucket::Leases => "leases",
        Bucket::Assign => "assign",
    }
}

/// The `op` label.
pub(crate) fn op_name(op: &KvOp) -> &'static str {
    match op {
        KvOp::Create { .. } => "create",
        KvOp::Update { .. } => "update",
        KvOp::Put { .. } => "put",
        KvOp::Delete { .. } => "delete",
        KvOp::Get { .. } => "get",
        KvOp::List { .. } => "list",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parti_core::codec::{self, Member};
    use parti_core::{Epoch, Generation};

    fn set(ids: &[&str]) -> BTreeSet<PartitionId> {
        ids.iter().map(|i| PartitionId::parse(i).unwrap()).collect()
    }

    /// A leader that writes the changed shares, then commits `gen`.
    struct Leader {
        obs: Observer,
        next_id: u64,
        last: BTreeMap<WorkerId, Member>,
    }

    impl Leader {
        fn new() -> Self {
            Leader {
                obs: Observer::new(
                    tracing::Span::none(),
                    #[cfg(feature = "metrics")]
                    None,
                ),
                next_id: 0,
                last: BTreeMap::new(),
            }
        }

        fn op(&mut self, bucket: Bucket, op: KvOp, state: State) -> Option<Decision> {
            self.next_id += 1;
            let id = RequestId(self.next_id);
            let meta = self.obs.kv_started(id, bucket, &op, state);
            self.obs.kv_done(
                id,
                meta,
                &KvResult::Written {
                    revision: self.next_id,
                },
            )
        }

        fn commit(
            &mut self,
            generation: u64,
            phase: Phase,
            shares: &[(u32, &[&str])],
            state: State,
        ) -> Decision {
            let mut members = BTreeMap::new();
            for (w, share) in shares {
                let w = WorkerId(*w);
                let share = set(share);
                let digest = codec::share_digest(&share);
                let member = match self.last.get(&w) {
                    Some(m) if m.digest == digest => m.clone(),
                    old => {
                        let slot = old.map_or(0, |m| 1 - m.slot);
                        let chunks = codec::encode_share(&share, 1 << 20);
                        for (k, value) in chunks.iter().enumerate() {
                            let key = codec::share_key(w, slot, k as u32);
                            self.op(
                                Bucket::Assign,
                                KvOp::Put {
                                    key,
                                    value: value.clone(),
                                },
                                state,
                            );
                        }
                        Member {
                            token: 1,
                            digest,
                            chunks: chunks.len() as u32,
                            count: share.len() as u32,
                            slot,
                        }
                    }
                };
                members.insert(w, member);
            }
            self.last = members.clone();
            let record = GenRecord {
                v: codec::VERSION,
                epoch: Epoch(1),
                generation: Generation(generation),
                phase,
                trigger: None,
                members,
                resting: None,
            };
            let value = codec::encode(&record);
            let key = "gen".to_string();
            let op = if generation == 1 {
                KvOp::Create { key, value }
            } else {
                KvOp::Update {
                    key,
                    value,
                    revision: 1,
                }
            };
            self.op(Bucket::Assign, op, state).expect("a decision")
        }
    }

    /// The moved count is kept only while info events are logged.
    fn logging() -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    #[test]
    fn decisions_say_why_and_count_the_partitions_granted_to_a_new_owner() {
        let _logging = logging();
        let mut l = Leader::new();
        let d = l.commit(
            1,
            Phase::Stable,
            &[(0, &["a", "b"]), (1, &["c", "d"])],
            State::Scaling,
        );
        assert_eq!(
            (d.reason, d.moved, d.handoff),
            ("cold_start", Some(4), None)
        );
        // A join in two steps (Strict): revoke, then grant; both steps are the join.
        let d = l.commit(
            2,
            Phase::Scaling,
            &[(0, &["a"]), (1, &["c"]), (2, &[])],
            State::Scaling,
        );
        assert_eq!((d.reason, d.moved), ("join", Some(0)));
        let d = l.commit(
            3,
            Phase::Stable,
            &[(0, &["a"]), (1, &["c"]), (2, &["b", "d"])],
            State::Scaling,
        );
        assert_eq!((d.reason, d.moved), ("join", Some(2)));
        assert!(d.handoff.is_some(), "the grant ends the handoff");
        let d = l.commit(
            4,
            Phase::Stable,
            &[(0, &["a", "b"]), (1, &["c", "d"])],
            State::Stable,
        );
        assert_eq!((d.reason, d.moved, d.handoff), ("leave", Some(2), None));
        let d = l.commit(
            5,
            Phase::Stable,
            &[(0, &["a", "b", "e"]), (1, &["c", "d"])],
            State::Stable,
        );
        assert_eq!((d.reason, d.moved), ("partitions_changed", Some(1)));
        let d = l.commit(
            6,
            Phase::Stable,
            &[(0, &["a", "b", "c", "d", "e"])],
            State::Emergency,
        );
        assert_eq!((d.reason, d.moved), ("emergency", Some(2)));
    }

    #[test]
    fn a_new_leader_does_not_guess_what_moved_before_it_knows_the_shares() {
        let _logging = logging();
        let mut l = Leader::new();
        l.commit(
            1,
            Phase::Stable,
            &[(0, &["a", "b"]), (1, &["c", "d"])],
            State::Scaling,
        );
        l.obs.event(
            &parti_core::Event::LeadershipChanged {
                is_leader: false,
                epoch: Epoch(1),
            },
            State::Stable,
        );
        // Leading again: the previous generation is unknown to this observer.
        let d = l.commit(
            2,
            Phase::Stable,
            &[(0, &["a", "b", "c"]), (1, &["d"])],
            State::Rebalancing,
        );
        assert_eq!((d.reason, d.moved), ("rebalancing", None));
        // Now both shares are known.
        let d = l.commit(
            3,
            Phase::Stable,
            &[(0, &["a", "b"]), (1, &["c", "d"])],
            State::Rebalancing,
        );
        assert_eq!((d.reason, d.moved), ("rebalancing", Some(1)));
    }

    #[test]
    fn without_info_logs_the_moves_are_not_tracked() {
        let mut l = Leader::new();
        let d = l.commit(1, Phase::Stable, &[(0, &["a", "b"])], State::Scaling);
        assert_eq!((d.reason, d.moved), ("cold_start", None));
    }
}
