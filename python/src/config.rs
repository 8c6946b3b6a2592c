//! `Config`: the worker configuration, validated when it is built.

use crate::errors::{bad_arg, core_err};
use crate::partition::seconds;
use crate::state::py_repr;
use parti::{Config as CoreConfig, HandoffMode, WorkerId};
use pyo3::prelude::*;
use std::time::Duration;

/// A worker's configuration. Every argument is keyword-only, durations are seconds, and the
/// whole is validated on construction: a bad value raises `ConfigError` naming the field.
#[pyclass(frozen, module = "parti._parti", name = "Config")]
#[derive(Clone)]
pub(crate) struct PyConfig(pub(crate) CoreConfig);

/// An integer argument converted to the field's type, or a `ConfigError` naming the field.
fn int<T: TryFrom<i64>>(field: &str, v: i64) -> PyResult<T> {
    T::try_from(v).map_err(|_| bad_arg(field, format!("{v} is out of range")))
}

fn secs_of(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (
        *,
        bucket_prefix = "parti".to_owned(),
        replicas = 1,
        id_min = 0,
        id_max = 99,
        preferred_id = None,
        capacity = 1,
        heartbeat_interval = 2.0,
        lease_ttl = 6.0,
        safety_margin = 1.0,
        emergency_grace = 0.25,
        cold_start_window = 30.0,
        expected_workers = None,
        planned_scale_window = 10.0,
        max_scale_delay = 30.0,
        restart_grace = 30.0,
        min_rebalance_interval = 10.0,
        rebalance_threshold = 0.15,
        max_moves_per_round = 100,
        handoff = "strict".to_owned(),
        revoke_timeout = 5.0,
        shutdown_timeout = 10.0,
        alert_after = (0.0, 30.0, 120.0, 300.0),
        max_value_bytes = 1_000_000,
    ))]
    #[pyo3(
        text_signature = "(*, bucket_prefix='parti', replicas=1, id_min=0, id_max=99, \
        preferred_id=None, capacity=1, heartbeat_interval=2.0, lease_ttl=6.0, \
        safety_margin=1.0, emergency_grace=0.25, cold_start_window=30.0, expected_workers=None, \
        planned_scale_window=10.0, max_scale_delay=30.0, restart_grace=30.0, \
        min_rebalance_interval=10.0, rebalance_threshold=0.15, max_moves_per_round=100, \
        handoff='strict', revoke_timeout=5.0, shutdown_timeout=10.0, \
        alert_after=(0.0, 30.0, 120.0, 300.0), max_value_bytes=1000000)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        bucket_prefix: String,
        replicas: i64,
        id_min: i64,
        id_max: i64,
        preferred_id: Option<i64>,
        capacity: i64,
        heartbeat_interval: f64,
        lease_ttl: f64,
        safety_margin: f64,
        emergency_grace: f64,
        cold_start_window: f64,
        expected_workers: Option<i64>,
        planned_scale_window: f64,
        max_scale_delay: f64,
        restart_grace: f64,
        min_rebalance_interval: f64,
        rebalance_threshold: f64,
        max_moves_per_round: i64,
        handoff: String,
        revoke_timeout: f64,
        shutdown_timeout: f64,
        alert_after: (f64, f64, f64, f64),
        max_value_bytes: i64,
    ) -> PyResult<Self> {
        let handoff = match handoff.to_ascii_lowercase().as_str() {
            "strict" => HandoffMode::Strict,
            "relaxed" => HandoffMode::Relaxed,
            other => {
                return Err(bad_arg(
                    "handoff",
                    format!("{other:?} is not a mode; use \"strict\" or \"relaxed\""),
                ))
            }
        };
        let config = CoreConfig {
            bucket_prefix,
            replicas: int("replicas", replicas)?,
            id_min: int("id_min", id_min)?,
            id_max: int("id_max", id_max)?,
            preferred_id: preferred_id
                .map(|id| int("preferred_id", id).map(WorkerId))
                .transpose()?,
            instance_token: 0,
            capacity: int("capacity", capacity)?,
            heartbeat_interval: seconds("heartbeat_interval", heartbeat_interval)?,
            lease_ttl: seconds("lease_ttl", lease_ttl)?,
            safety_margin: seconds("safety_margin", safety_margin)?,
            emergency_grace: seconds("emergency_grace", emergency_grace)?,
            cold_start_window: seconds("cold_start_window", cold_start_window)?,
            expected_workers: expected_workers
                .map(|n| int("expected_workers", n))
                .transpose()?,
            planned_scale_window: seconds("planned_scale_window", planned_scale_window)?,
            max_scale_delay: seconds("max_scale_delay", max_scale_delay)?,
            restart_grace: seconds("restart_grace", restart_grace)?,
            min_rebalance_interval: seconds("min_rebalance_interval", min_rebalance_interval)?,
            rebalance_threshold,
            max_moves_per_round: int("max_moves_per_round", max_moves_per_round)?,
            handoff,
            revoke_timeout: seconds("revoke_timeout", revoke_timeout)?,
            shutdown_timeout: seconds("shutdown_timeout", shutdown_timeout)?,
            alert_after: [
                seconds("alert_after", alert_after.0)?,
                seconds("alert_after", alert_after.1)?,
                seconds("alert_after", alert_after.2)?,
                seconds("alert_after", alert_after.3)?,
            ],
            max_value_bytes: int("max_value_bytes", max_value_bytes)?,
        };
        config.validate().map_err(core_err)?;
        Ok(PyConfig(config))
    }

    /// Prefix of the KV bucket names (`<prefix>-leases`, `<prefix>-assign`).
    #[getter]
    fn bucket_prefix(&self) -> &str {
        &self.0.bucket_prefix
    }
    /// KV replicas.
    #[getter]
    fn replicas(&self) -> u8 {
        self.0.replicas
    }
    /// Lowest worker ID that may be claimed.
    #[getter]
    fn id_min(&self) -> u32 {
        self.0.id_min
    }
    /// Highest worker ID that may be claimed.
    #[getter]
    fn id_max(&self) -> u32 {
        self.0.id_max
    }
    /// ID to try first.
    #[getter]
    fn preferred_id(&self) -> Option<u32> {
        self.0.preferred_id.map(|w| w.0)
    }
    /// This worker's capacity relative to others.
    #[getter]
    fn capacity(&self) -> u32 {
        self.0.capacity
    }
    /// Seconds between lease renewals.
    #[getter]
    fn heartbeat_interval(&self) -> f64 {
        secs_of(self.0.heartbeat_interval)
    }
    /// Seconds a lease lives without renewal.
    #[getter]
    fn lease_ttl(&self) -> f64 {
        secs_of(self.0.lease_ttl)
    }
    /// Seconds before the TTL at which a Strict worker fences itself.
    #[getter]
    fn safety_margin(&self) -> f64 {
        secs_of(self.0.safety_margin)
    }
    /// Seconds waited after a crash is detected before reassigning.
    #[getter]
    fn emergency_grace(&self) -> f64 {
        secs_of(self.0.emergency_grace)
    }
    /// Seconds a leader with no committed assignment waits for workers to join.
    #[getter]
    fn cold_start_window(&self) -> f64 {
        secs_of(self.0.cold_start_window)
    }
    /// Cold start ends as soon as this many workers are live.
    #[getter]
    fn expected_workers(&self) -> Option<u32> {
        self.0.expected_workers
    }
    /// Debounce after a join, in seconds.
    #[getter]
    fn planned_scale_window(&self) -> f64 {
        secs_of(self.0.planned_scale_window)
    }
    /// Cap on how long joins may extend the scale window, in seconds.
    #[getter]
    fn max_scale_delay(&self) -> f64 {
        secs_of(self.0.max_scale_delay)
    }
    /// Seconds a restarting worker's partitions stay parked.
    #[getter]
    fn restart_grace(&self) -> f64 {
        secs_of(self.0.restart_grace)
    }
    /// Least seconds between two planned rebalances.
    #[getter]
    fn min_rebalance_interval(&self) -> f64 {
        secs_of(self.0.min_rebalance_interval)
    }
    /// Relative imbalance above which the leader rebalances.
    #[getter]
    fn rebalance_threshold(&self) -> f64 {
        self.0.rebalance_threshold
    }
    /// Most partitions moved by one imbalance round.
    #[getter]
    fn max_moves_per_round(&self) -> u32 {
        self.0.max_moves_per_round
    }
    /// `"strict"` (revoke before grant) or `"relaxed"` (one phase, at-least-once).
    #[getter]
    fn handoff(&self) -> &'static str {
        match self.0.handoff {
            HandoffMode::Strict => "strict",
            HandoffMode::Relaxed => "relaxed",
        }
    }
    /// Seconds after which an unconfirmed revoke is dropped anyway.
    #[getter]
    fn revoke_timeout(&self) -> f64 {
        secs_of(self.0.revoke_timeout)
    }
    /// Bound on a graceful stop, in seconds.
    #[getter]
    fn shutdown_timeout(&self) -> f64 {
        secs_of(self.0.shutdown_timeout)
    }
    /// Seconds degraded before an Info, Warn, Error and Critical alert.
    #[getter]
    fn alert_after(&self) -> (f64, f64, f64, f64) {
        let a = self.0.alert_after.map(secs_of);
        (a[0], a[1], a[2], a[3])
    }
    /// Largest KV value the leader writes.
    #[getter]
    fn max_value_bytes(&self) -> usize {
        self.0.max_value_bytes
    }

    fn __repr__(&self) -> String {
        let c = &self.0;
        format!(
            "Config(bucket_prefix={}, handoff={}, heartbeat_interval={}, lease_ttl={}, \
             cold_start_window={}, expected_workers={})",
            py_repr(&c.bucket_prefix),
            py_repr(self.handoff()),
            secs_of(c.heartbeat_interval),
            secs_of(c.lease_ttl),
            secs_of(c.cold_start_window),
            c.expected_workers
                .map_or_else(|| "None".to_owned(), |n| n.to_string()),
        )
    }
}
