//! Prometheus metrics of workers (the `metrics` feature, on by default).
//!
//! [`crate::WorkerBuilder::metrics`] registers parti's metric families into the application's
//! own [`Registry`] (the one it already serves). Every worker of the process records into one
//! set of families, so several workers sharing a registry are told apart by their labels
//! (`prefix` = the bucket prefix, `worker_id` = the claimed ID, empty before the claim) and the
//! exposition never repeats a family. A registry that already holds parti's families is left as
//! it is. The metrics and their labels are listed in the README ("Metrics").
//!
//! Recording is cheap: label sets hold `Arc<str>` clones and `&'static str`s, so a KV operation
//! costs a hash lookup and an atomic add, with no allocation once its series exists.

use crate::handle::Snapshot;
use crate::observe::bucket_name;
use crate::DriverWarning;
use parti_core::{AlertLevel, Bucket, KvResult, State, Warning, WorkerId};
/// The `prometheus-client` crate parti records with (to encode a registry, or to register
/// metrics of your own with the same version).
pub use prometheus_client;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
pub use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// `prefix` and `worker_id`: the labels of every parti metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    prefix: Arc<str>,
    worker_id: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    prefix: Arc<str>,
    worker_id: Arc<str>,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KvLabels {
    prefix: Arc<str>,
    worker_id: Arc<str>,
    bucket: &'static str,
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    prefix: Arc<str>,
    worker_id: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MovedLabels {
    prefix: Arc<str>,
    worker_id: Arc<str>,
    direction: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    prefix: Arc<str>,
    worker_id: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    prefix: Arc<str>,
    worker_id: Arc<str>,
    bucket: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latencies of single KV round trips: ≈70 µs on loopback, up to the KV timeout.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ])
}

/// Handoffs: windows, revoke timeouts and lease TTLs, from milliseconds to minutes.
fn handoff_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ])
}

/// Every parti metric family; one set per process (see the module docs).
#[derive(Debug)]
pub(crate) struct Families {
    state: Family<StateLabels, Gauge>,
    is_leader: Family<WorkerLabels, Gauge>,
    generation: Family<WorkerLabels, Gauge>,
    partitions_owned: Family<WorkerLabels, Gauge>,
    load: Family<WorkerLabels, Gauge<f64, AtomicU64>>,
    degraded_level: Family<WorkerLabels, Gauge>,
    lease_renew: HistogramFamily<WorkerLabels>,
    kv_op: HistogramFamily<KvLabels>,
    handoff: HistogramFamily<WorkerLabels>,
    rebalances: Family<ReasonLabels, Counter>,
    moved: Family<MovedLabels, Counter>,
    fences: Family<WorkerLabels, Counter>,
    watch_restarts: Family<BucketLabels, Counter>,
    subscription_errors: Family<KindLabels, Counter>,
    source_errors: Family<KindLabels, Counter>,
    warnings: Family<KindLabels, Counter>,
}

impl Families {
    fn new() -> Self {
        Families {
            state: Family::default(),
            is_leader: Family::default(),
            generation: Family::default(),
            partitions_owned: Family::default(),
            load: Family::default(),
            degraded_level: Family::default(),
            lease_renew: Family::new_with_constructor(latency_histogram),
            kv_op: Family::new_with_constructor(latency_histogram),
            handoff: Family::new_with_constructor(handoff_histogram),
            rebalances: Family::default(),
            moved: Family::default(),
            fences: Family::default(),
            watch_restarts: Family::default(),
            subscription_errors: Family::default(),
            source_errors: Family::default(),
            warnings: Family::default(),
        }
    }

    /// Registers clones of the families (they share their series) into `r`.
    fn register_into(&self, r: &mut Registry) {
        r.register(
            "parti_build",
            "parti's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        r.register(
            "parti_state",
            "1 for the worker's current state, 0 for the others",
            self.state.clone(),
        );
        r.register(
            "parti_is_leader",
            "1 while the worker leads the fleet",
            self.is_leader.clone(),
        );
        r.register(
            "parti_generation_applied",
            "The last assignment generation the worker applied",
            self.generation.clone(),
        );
        r.register(
            "parti_partitions_owned",
            "Partitions the worker owns",
            self.partitions_owned.clone(),
        );
        r.register(
            "parti_load",
            "The load the application last reported for the worker (Worker::set_load)",
            self.load.clone(),
        );
        r.register(
            "parti_degraded_level",
            "Degraded-mode alert level: 0 none, 1 info, 2 warn, 3 error, 4 critical",
            self.degraded_level.clone(),
        );
        r.register(
            "parti_lease_renew_seconds",
            "Latency of the worker's lease renewals (CAS updates), any outcome",
            self.lease_renew.clone(),
        );
        r.register(
            "parti_kv_operation_seconds",
            "Latency of KV operations by bucket, operation and result",
            self.kv_op.clone(),
        );
        r.register(
            "parti_handoff_seconds",
            "Leader: from the commit of a revoking generation to the commit of the granting one",
            self.handoff.clone(),
        );
        r.register(
            "parti_rebalances",
            "Leader: generations committed, by reason",
            self.rebalances.clone(),
        );
        r.register(
            "parti_partitions_moved",
            "Partitions gained (direction=in) or given up (direction=out) by the worker, by reason",
            self.moved.clone(),
        );
        r.register(
            "parti_fences",
            "Times the worker fenced itself (lease not renewed in time: every partition dropped)",
            self.fences.clone(),
        );
        r.register(
            "parti_watch_restarts",
            "KV watches that failed and were rebuilt, by bucket",
            self.watch_restarts.clone(),
        );
        r.register(
            "parti_subscription_errors",
            "Errors of the subscription manager and the rebalance listener, by kind",
            self.subscription_errors.clone(),
        );
        r.register(
            "parti_source_errors",
            "Failed or rejected calls of the partition source, by kind",
            self.source_errors.clone(),
        );
        r.register(
            "parti_warnings",
            "Every warning of the worker and its driver, by kind",
            self.warnings.clone(),
        );
    }
}

/// The family of `parti_build`: how a registry is recognised as holding parti's families.
const MARKER: &str = "# TYPE parti_build info";

/// Registers the process's families into `registry` (once per registry) and returns them.
pub(crate) fn register(registry: &mut Registry) -> Arc<Families> {
    static FAMILIES: OnceLock<Arc<Families>> = OnceLock::new();
    let families = FAMILIES.get_or_init(|| Arc::new(Families::new())).clone();
    // The registry has no lookup: its exposition tells whether parti's families are in it
    // (registering them twice would repeat every family, which scrapers reject).
    let mut text = String::new();
    let present = prometheus_client::encoding::text::encode_registry(&mut text, registry).is_ok()
        && text.lines().any(|l| l == MARKER);
    if !present {
        families.register_into(registry);
    }
    families
}

/// The `result` label.
fn result_name(r: &KvResult) -> &'static str {
    match r {
        KvResult::Written { .. } | KvResult::Value(_) | KvResult::Entries(_) => "ok",
        KvResult::AlreadyExists => "already_exists",
        KvResult::WrongRevision => "wrong_revision",
        KvResult::TimedOut => "timed_out",
        KvResult::Failed(_) => "failed",
    }
}

/// One worker's view of the families: its labels, and the gauges it has set.
#[derive(Debug)]
pub(crate) struct Recorder {
    f: Arc<Families>,
    prefix: Arc<str>,
    worker: Arc<str>,
    id: Option<WorkerId>,
    /// Whether this worker's gauges exist (removed when its ID goes, and at the end).
    gauges: bool,
    load: Option<f64>,
    degraded: i64,
}

impl Recorder {
    pub(crate) fn new(f: Arc<Families>, prefix: &str) -> Self {
        Recorder {
            f,
            prefix: prefix.into(),
            worker: "".into(),
            id: None,
            gauges: false,
            load: None,
            degraded: 0,
        }
    }

    fn labels(&self) -> WorkerLabels {
        WorkerLabels {
            prefix: self.prefix.clone(),
            worker_id: self.worker.clone(),
        }
    }

    fn kind(&self, kind: &'static str) -> KindLabels {
        KindLabels {
            prefix: self.prefix.clone(),
            worker_id: self.worker.clone(),
            kind,
        }
    }

    /// The worker's gauges follow its snapshot; they exist only while it holds an ID, so two
    /// workers that have not claimed one yet never share a gauge.
    pub(crate) fn snapshot(&mut self, s: &Snapshot) {
        let id = if s.stopped { None } else { s.worker_id };
        if id != self.id {
            self.remove_gauges();
            self.id = id;
            self.worker = id.map_or_else(|| "".into(), |id| id.0.to_string().into());
        }
        if self.id.is_none() {
            return;
        }
        self.gauges = true;
        let l = self.labels();
        for st in State::ALL {
            let labels = StateLabels {
                prefix: l.prefix.clone(),
                worker_id: l.worker_id.clone(),
                state: st.name(),
            };
            self.f
                .state
                .get_or_create(&labels)
                .set(i64::from(st == s.state));
        }
        if s.state != State::Degraded {
            self.degraded = 0;
        }
        self.f
            .is_leader
            .get_or_create(&l)
            .set(i64::from(s.is_leader));
        let generation = s.generation.map_or(0, |g| g.0);
        self.f
            .generation
            .get_or_create(&l)
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.f
            .partitions_owned
            .get_or_create(&l)
            .set(i64::try_from(s.assignment.len()).unwrap_or(i64::MAX));
        self.f.degraded_level.get_or_create(&l).set(self.degraded);
        if let Some(load) = self.load {
            self.f.load.get_or_create(&l).set(load);
        }
    }

    fn remove_gauges(&mut self) {
        if !self.gauges {
            return;
        }
        self.gauges = false;
        let l = self.labels();
        for st in State::ALL {
            self.f.state.remove(&StateLabels {
                prefix: l.prefix.clone(),
                worker_id: l.worker_id.clone(),
                state: st.name(),
            });
        }
        self.f.is_leader.remove(&l);
        self.f.generation.remove(&l);
        self.f.partitions_owned.remove(&l);
        self.f.degraded_level.remove(&l);
        self.f.load.remove(&l);
    }

    /// The application reported a load.
    pub(crate) fn load(&mut self, load: f64) {
        self.load = Some(load);
        if self.gauges {
            self.f.load.get_or_create(&self.labels()).set(load);
        }
    }

    /// A KV operation finished (`renew`: it was this worker's lease renewal).
    pub(crate) fn kv(
        &self,
        bucket: Bucket,
        op: &'static str,
        renew: bool,
        result: &KvResult,
        took: Duration,
    ) {
        let secs = took.as_secs_f64();
        let labels = KvLabels {
            prefix: self.prefix.clone(),
            worker_id: self.worker.clone(),
            bucket: bucket_name(bucket),
            op,
            result: result_name(result),
        };
        self.f.kv_op.get_or_create(&labels).observe(secs);
        if renew {
            self.f
                .lease_renew
                .get_or_create(&self.labels())
                .observe(secs);
        }
    }

    /// A core event; `state` is the worker's state after the step that emitted it.
    pub(crate) fn event(&mut self, e: &parti_core::Event, state: State) {
        use parti_core::Event as E;
        match e {
            E::AssignmentChanged {
                generation,
                assigned,
                revoked,
                lost,
                ..
            } => {
                // The fleet's first generation places partitions; it moves none.
                let reason = if generation.0 == 1 {
                    "cold_start"
                } else {
                    state.name()
                };
                // A loss (a fence) moves partitions out too; `parti_fences_total` tells it apart.
                let out = revoked.len() + lost.len();
                for (direction, n) in [("in", assigned.len()), ("out", out)] {
                    if n > 0 {
                        self.f
                            .moved
                            .get_or_create(&MovedLabels {
                                prefix: self.prefix.clone(),
                                worker_id: self.worker.clone(),
                                direction,
                                reason,
                            })
                            .inc_by(n as u64);
                    }
                }
            }
            E::Alert { level, .. } => {
                self.degraded = match level {
                    AlertLevel::Info => 1,
                    AlertLevel::Warn => 2,
                    AlertLevel::Error => 3,
                    AlertLevel::Critical => 4,
                };
                if self.gauges {
                    self.f
                        .degraded_level
                        .get_or_create(&self.labels())
                        .set(self.degraded);
                }
            }
            E::Warning(w) => {
                match w {
                    Warning::Fenced => {
                        self.f.fences.get_or_create(&self.labels()).inc();
                    }
                    Warning::SourceFailed(_) | Warning::InvalidPartitions(_) => {
                        self.f
                            .source_errors
                            .get_or_create(&self.kind(w.kind()))
                            .inc();
                    }
                    _ => {}
                }
                self.f.warnings.get_or_create(&self.kind(w.kind())).inc();
            }
            _ => {}
        }
    }

    /// A warning of the driver.
    pub(crate) fn driver_warning(&self, w: &DriverWarning) {
        match w {
            DriverWarning::WatchFailed { bucket, .. } => {
                self.f
                    .watch_restarts
                    .get_or_create(&BucketLabels {
                        prefix: self.prefix.clone(),
                        worker_id: self.worker.clone(),
                        bucket: bucket_name(*bucket),
                    })
                    .inc();
            }
            DriverWarning::Subscription(e) => {
                self.f
                    .subscription_errors
                    .get_or_create(&self.kind(e.kind()))
                    .inc();
            }
            DriverWarning::ListenerPanicked { .. } | DriverWarning::ListenerTimedOut { .. } => {
                self.f
                    .subscription_errors
                    .get_or_create(&self.kind(w.kind()))
                    .inc();
            }
            _ => {}
        }
        self.f.warnings.get_or_create(&self.kind(w.kind())).inc();
    }

    /// Leader: a generation it published was committed.
    pub(crate) fn committed(&self, reason: &'static str, handoff: Option<Duration>) {
        self.f
            .rebalances
            .get_or_create(&ReasonLabels {
                prefix: self.prefix.clone(),
                worker_id: self.worker.clone(),
                reason,
            })
            .inc();
        if let Some(d) = handoff {
            self.f
                .handoff
                .get_or_create(&self.labels())
                .observe(d.as_secs_f64());
        }
    }
}

impl Drop for Recorder {
    /// A stopped worker leaves its counters behind, not its gauges.
    fn drop(&mut self) {
        self.remove_gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn registering_twice_into_one_registry_keeps_one_family_each() {
        let mut r = Registry::default();
        let a = register(&mut r);
        let b = register(&mut r);
        assert!(Arc::ptr_eq(&a, &b));
        Recorder::new(a, "twice-test").load(1.5);
        let rec = Recorder::new(b, "twice-test");
        rec.driver_warning(&DriverWarning::InputRejected("x".into()));
        let text = exposition(&r);
        assert_eq!(text.lines().filter(|l| *l == MARKER).count(), 1, "{text}");
        assert_eq!(
            text.matches("# TYPE parti_warnings counter").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn gauges_exist_only_while_the_worker_holds_an_id() {
        let mut r = Registry::default();
        let mut rec = Recorder::new(register(&mut r), "gauge-test");
        let mut s = Snapshot {
            worker_id: None,
            is_leader: false,
            leader: None,
            state: State::ClaimingId,
            assignment: Arc::default(),
            generation: None,
            stopped: false,
        };
        rec.snapshot(&s);
        assert!(!exposition(&r).contains("prefix=\"gauge-test\""));
        s.worker_id = Some(WorkerId(7));
        s.state = State::Stable;
        rec.snapshot(&s);
        let text = exposition(&r);
        assert!(
            text.contains("parti_state{prefix=\"gauge-test\",worker_id=\"7\",state=\"stable\"} 1"),
            "{text}"
        );
        drop(rec);
        assert!(!exposition(&r).contains("worker_id=\"7\",state"));
    }
}
