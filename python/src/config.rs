//! `Config`: the worker configuration, validated when it is built.

use crate::args::{int_arg, number, text, type_name};
use crate::errors::{bad_arg, bad_type, core_err};
use crate::partition::seconds;
use crate::state::py_repr;
use parti::{Config as CoreConfig, HandoffMode, WorkerId};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::time::Duration;

/// A worker's configuration. Every argument is keyword-only, durations are seconds, and the
/// whole is validated on construction: a bad value raises `ConfigError` naming the field. An
/// argument left out takes core's default (`Config.defaults()`). Equal when every field is.
#[pyclass(frozen, eq, module = "parti._parti", name = "Config")]
#[derive(Clone, PartialEq)]
pub(crate) struct PyConfig(pub(crate) CoreConfig);

/// An `int` argument converted to the field's type: a `ConfigTypeError` naming the field for
/// anything else (a `bool` too), a `ConfigError` when it does not fit.
fn int<T: TryFrom<i128>>(field: &str, v: &Bound<'_, PyAny>) -> PyResult<T> {
    let n: i128 = int_arg(field, v)?;
    T::try_from(n).map_err(|_| bad_arg(field, format!("{n} is out of range")))
}

fn secs_of(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Sets `slot` to `value` converted by `convert` when the argument was given; a missing
/// argument keeps core's default already in `slot`.
fn given<A, T>(
    slot: &mut T,
    value: Option<A>,
    convert: impl FnOnce(A) -> PyResult<T>,
) -> PyResult<()> {
    if let Some(v) = value {
        *slot = convert(v)?;
    }
    Ok(())
}

/// The Python name of a handoff mode.
fn handoff_name(mode: HandoffMode) -> &'static str {
    match mode {
        HandoffMode::Strict => "strict",
        HandoffMode::Relaxed => "relaxed",
    }
}

#[pymethods]
impl PyConfig {
    /// Every argument left out (or `None`) takes core's default: `Config::defaults()` lists
    /// them, and no default is written down anywhere else.
    #[new]
    #[pyo3(signature = (
        *,
        bucket_prefix = None,
        replicas = None,
        id_min = None,
        id_max = None,
        preferred_id = None,
        capacity = None,
        heartbeat_interval = None,
        lease_ttl = None,
        safety_margin = None,
        emergency_grace = None,
        cold_start_window = None,
        expected_workers = None,
        planned_scale_window = None,
        max_scale_delay = None,
        restart_grace = None,
        min_rebalance_interval = None,
        rebalance_threshold = None,
        max_moves_per_round = None,
        load_half_life = None,
        load_cooldown = None,
        source_poll_interval = None,
        handoff = None,
        revoke_timeout = None,
        shutdown_timeout = None,
        alert_after = None,
        max_value_bytes = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        bucket_prefix: Option<Bound<'_, PyAny>>,
        replicas: Option<Bound<'_, PyAny>>,
        id_min: Option<Bound<'_, PyAny>>,
        id_max: Option<Bound<'_, PyAny>>,
        preferred_id: Option<Bound<'_, PyAny>>,
        capacity: Option<Bound<'_, PyAny>>,
        heartbeat_interval: Option<Bound<'_, PyAny>>,
        lease_ttl: Option<Bound<'_, PyAny>>,
        safety_margin: Option<Bound<'_, PyAny>>,
        emergency_grace: Option<Bound<'_, PyAny>>,
        cold_start_window: Option<Bound<'_, PyAny>>,
        expected_workers: Option<Bound<'_, PyAny>>,
        planned_scale_window: Option<Bound<'_, PyAny>>,
        max_scale_delay: Option<Bound<'_, PyAny>>,
        restart_grace: Option<Bound<'_, PyAny>>,
        min_rebalance_interval: Option<Bound<'_, PyAny>>,
        rebalance_threshold: Option<Bound<'_, PyAny>>,
        max_moves_per_round: Option<Bound<'_, PyAny>>,
        load_half_life: Option<Bound<'_, PyAny>>,
        load_cooldown: Option<Bound<'_, PyAny>>,
        source_poll_interval: Option<Bound<'_, PyAny>>,
        handoff: Option<Bound<'_, PyAny>>,
        revoke_timeout: Option<Bound<'_, PyAny>>,
        shutdown_timeout: Option<Bound<'_, PyAny>>,
        alert_after: Option<Bound<'_, PyAny>>,
        max_value_bytes: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut c = CoreConfig::default();
        let secs =
            |field: &'static str| move |v: Bound<'_, PyAny>| seconds(field, number(field, &v)?);
        given(&mut c.bucket_prefix, bucket_prefix, |v| {
            text("bucket_prefix", &v)
        })?;
        given(&mut c.replicas, replicas, |v| int("replicas", &v))?;
        given(&mut c.id_min, id_min, |v| int("id_min", &v))?;
        given(&mut c.id_max, id_max, |v| int("id_max", &v))?;
        given(&mut c.preferred_id, preferred_id, |v| {
            int("preferred_id", &v).map(|id| Some(WorkerId(id)))
        })?;
        given(&mut c.capacity, capacity, |v| int("capacity", &v))?;
        given(
            &mut c.heartbeat_interval,
            heartbeat_interval,
            secs("heartbeat_interval"),
        )?;
        given(&mut c.lease_ttl, lease_ttl, secs("lease_ttl"))?;
        given(&mut c.safety_margin, safety_margin, secs("safety_margin"))?;
        given(
            &mut c.emergency_grace,
            emergency_grace,
            secs("emergency_grace"),
        )?;
        given(
            &mut c.cold_start_window,
            cold_start_window,
            secs("cold_start_window"),
        )?;
        given(&mut c.expected_workers, expected_workers, |v| {
            int("expected_workers", &v).map(Some)
        })?;
        given(
            &mut c.planned_scale_window,
            planned_scale_window,
            secs("planned_scale_window"),
        )?;
        given(
            &mut c.max_scale_delay,
            max_scale_delay,
            secs("max_scale_delay"),
        )?;
        given(&mut c.restart_grace, restart_grace, secs("restart_grace"))?;
        given(
            &mut c.min_rebalance_interval,
            min_rebalance_interval,
            secs("min_rebalance_interval"),
        )?;
        given(&mut c.rebalance_threshold, rebalance_threshold, |v| {
            number("rebalance_threshold", &v)
        })?;
        given(&mut c.max_moves_per_round, max_moves_per_round, |v| {
            int("max_moves_per_round", &v)
        })?;
        given(
            &mut c.load_half_life,
            load_half_life,
            secs("load_half_life"),
        )?;
        given(&mut c.load_cooldown, load_cooldown, secs("load_cooldown"))?;
        given(
            &mut c.source_poll_interval,
            source_poll_interval,
            secs("source_poll_interval"),
        )?;
        given(&mut c.handoff, handoff, |v| {
            match text("handoff", &v)?.to_ascii_lowercase().as_str() {
                "strict" => Ok(HandoffMode::Strict),
                "relaxed" => Ok(HandoffMode::Relaxed),
                other => Err(bad_arg(
                    "handoff",
                    format!("{other:?} is not a mode; use \"strict\" or \"relaxed\""),
                )),
            }
        })?;
        given(
            &mut c.revoke_timeout,
            revoke_timeout,
            secs("revoke_timeout"),
        )?;
        given(
            &mut c.shutdown_timeout,
            shutdown_timeout,
            secs("shutdown_timeout"),
        )?;
        given(&mut c.alert_after, alert_after, |v| {
            let field = "alert_after";
            let items: Vec<Bound<'_, PyAny>> = match v.try_iter() {
                Ok(it) if !v.is_instance_of::<PyString>() => it.collect::<PyResult<_>>()?,
                _ => {
                    let got = type_name(&v);
                    return Err(bad_type(field, format!("expected 4 numbers, got {got}")));
                }
            };
            let [info, warn, error, critical] = <[_; 4]>::try_from(items).map_err(|items| {
                let n = items.len();
                bad_arg(
                    field,
                    format!("expected 4 thresholds (info, warn, error, critical), got {n}"),
                )
            })?;
            let s = secs(field);
            Ok([s(info)?, s(warn)?, s(error)?, s(critical)?])
        })?;
        given(&mut c.max_value_bytes, max_value_bytes, |v| {
            int("max_value_bytes", &v)
        })?;
        c.validate().map_err(core_err)?;
        Ok(PyConfig(c))
    }

    /// Core's default configuration as `{argument: value}`: what every argument left out of
    /// `Config(...)` takes, in the units of the properties (seconds). The one place the
    /// Python package learns its defaults from.
    #[staticmethod]
    fn defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        PyConfig(CoreConfig::default()).fields(py)
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
    /// Half-life of the leader's smoothing of reported partition loads, in seconds.
    #[getter]
    fn load_half_life(&self) -> f64 {
        secs_of(self.0.load_half_life)
    }
    /// Seconds a partition moved by a balancing round stays where it is.
    #[getter]
    fn load_cooldown(&self) -> f64 {
        secs_of(self.0.load_cooldown)
    }
    /// Seconds between the leader's own reads of the partition source (0: only on refresh).
    #[getter]
    fn source_poll_interval(&self) -> f64 {
        secs_of(self.0.source_poll_interval)
    }
    /// `"strict"` (revoke before grant) or `"relaxed"` (one phase, at-least-once).
    #[getter]
    fn handoff(&self) -> &'static str {
        handoff_name(self.0.handoff)
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

impl PyConfig {
    /// Every field Python sees, as `{name: value}` in the properties' units. The destructuring
    /// names every field of core's `Config`: a field added there fails to compile here until
    /// Python exposes it (or says why not, as for `instance_token`).
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let CoreConfig {
            bucket_prefix,
            replicas,
            id_min,
            id_max,
            preferred_id,
            // Drivers fill it from the OS; not a setting.
            instance_token: _,
            capacity,
            heartbeat_interval,
            lease_ttl,
            safety_margin,
            emergency_grace,
            cold_start_window,
            expected_workers,
            planned_scale_window,
            max_scale_delay,
            restart_grace,
            min_rebalance_interval,
            rebalance_threshold,
            max_moves_per_round,
            load_half_life,
            load_cooldown,
            source_poll_interval,
            handoff,
            revoke_timeout,
            shutdown_timeout,
            alert_after,
            max_value_bytes,
        } = &self.0;
        let d = PyDict::new(py);
        d.set_item("bucket_prefix", bucket_prefix)?;
        d.set_item("replicas", replicas)?;
        d.set_item("id_min", id_min)?;
        d.set_item("id_max", id_max)?;
        d.set_item("preferred_id", preferred_id.map(|w| w.0))?;
        d.set_item("capacity", capacity)?;
        d.set_item("heartbeat_interval", secs_of(*heartbeat_interval))?;
        d.set_item("lease_ttl", secs_of(*lease_ttl))?;
        d.set_item("safety_margin", secs_of(*safety_margin))?;
        d.set_item("emergency_grace", secs_of(*emergency_grace))?;
        d.set_item("cold_start_window", secs_of(*cold_start_window))?;
        d.set_item("expected_workers", expected_workers)?;
        d.set_item("planned_scale_window", secs_of(*planned_scale_window))?;
        d.set_item("max_scale_delay", secs_of(*max_scale_delay))?;
        d.set_item("restart_grace", secs_of(*restart_grace))?;
        d.set_item("min_rebalance_interval", secs_of(*min_rebalance_interval))?;
        d.set_item("rebalance_threshold", rebalance_threshold)?;
        d.set_item("max_moves_per_round", max_moves_per_round)?;
        d.set_item("load_half_life", secs_of(*load_half_life))?;
        d.set_item("load_cooldown", secs_of(*load_cooldown))?;
        d.set_item("source_poll_interval", secs_of(*source_poll_interval))?;
        d.set_item("handoff", handoff_name(*handoff))?;
        d.set_item("revoke_timeout", secs_of(*revoke_timeout))?;
        d.set_item("shutdown_timeout", secs_of(*shutdown_timeout))?;
        let a = alert_after.map(secs_of);
        d.set_item("alert_after", (a[0], a[1], a[2], a[3]))?;
        d.set_item("max_value_bytes", max_value_bytes)?;
        Ok(d)
    }
}
