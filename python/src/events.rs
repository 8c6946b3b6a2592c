//! Worker events as Python classes, and `EventStream` for `async for`.

use crate::state::{py_repr, state_name};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use parti::{AlertLevel, Event, PartitionId};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyFrozenSet;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The worker moved from one state to another.
#[pyclass(frozen, module = "parti._parti", name = "StateChanged")]
pub(crate) struct StateChanged {
    /// The state it left.
    #[pyo3(get)]
    previous: &'static str,
    /// The state it entered.
    #[pyo3(get)]
    state: &'static str,
}

/// The worker claimed its ID.
#[pyclass(frozen, module = "parti._parti", name = "IdClaimed")]
pub(crate) struct IdClaimed {
    /// The claimed ID.
    #[pyo3(get)]
    worker_id: u32,
}

/// The worker's partitions changed (Kafka's words: `assigned`, `revoked`, `lost` are the
/// changes, `assignment` the whole set).
#[pyclass(frozen, module = "parti._parti", name = "AssignmentChanged")]
pub(crate) struct AssignmentChanged {
    /// The generation now applied.
    #[pyo3(get)]
    generation: u64,
    /// Partitions gained.
    #[pyo3(get)]
    assigned: Py<PyFrozenSet>,
    /// Partitions handed off.
    #[pyo3(get)]
    revoked: Py<PyFrozenSet>,
    /// Partitions lost without a handoff (a fence, a lost ID): maybe another worker's already.
    #[pyo3(get)]
    lost: Py<PyFrozenSet>,
    /// Every partition now owned.
    #[pyo3(get)]
    assignment: Py<PyFrozenSet>,
}

/// The worker became or stopped being the leader.
#[pyclass(frozen, module = "parti._parti", name = "LeadershipChanged")]
pub(crate) struct LeadershipChanged {
    /// Whether this worker now leads.
    #[pyo3(get)]
    is_leader: bool,
    /// The leadership epoch.
    #[pyo3(get)]
    epoch: u64,
}

/// The worker has been degraded (NATS unreachable) for a while.
#[pyclass(frozen, module = "parti._parti", name = "Alert")]
pub(crate) struct Alert {
    /// `"info"`, `"warn"`, `"error"` or `"critical"`.
    #[pyo3(get)]
    level: &'static str,
    /// Seconds degraded so far.
    #[pyo3(get)]
    degraded_for: f64,
}

/// A drain finished: the worker holds no partition.
#[pyclass(frozen, module = "parti._parti", name = "Drained")]
pub(crate) struct Drained;

/// Leader: a balancing round moved partitions for load ("moved for load: worker 3 was at
/// 1.31x mean"), at most `Config.max_moves_per_round` of them; see `Worker.report_load`.
#[pyclass(frozen, module = "parti._parti", name = "Rebalanced")]
pub(crate) struct Rebalanced {
    /// The generation the round published.
    #[pyo3(get)]
    generation: u64,
    /// Partitions it moved.
    #[pyo3(get)]
    moved: u32,
    /// The most loaded worker when the round was planned.
    #[pyo3(get)]
    worker: u32,
    /// That worker's load over the mean (both relative to capacity).
    #[pyo3(get)]
    max_over_mean: f64,
}

/// Something went wrong and was handled (retried, skipped); the worker goes on.
#[pyclass(frozen, module = "parti._parti", name = "WorkerWarning")]
pub(crate) struct WorkerWarning {
    /// What kind of problem (`"source_failed"`, `"kv_failed"`, `"fenced"`, ...).
    #[pyo3(get)]
    kind: &'static str,
    /// What happened, for a log line.
    #[pyo3(get)]
    message: String,
}

#[pymethods]
impl StateChanged {
    fn __repr__(&self) -> String {
        format!(
            "StateChanged(previous={}, state={})",
            py_repr(self.previous),
            py_repr(self.state)
        )
    }
}

#[pymethods]
impl IdClaimed {
    fn __repr__(&self) -> String {
        format!("IdClaimed(worker_id={})", self.worker_id)
    }
}

#[pymethods]
impl AssignmentChanged {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "AssignmentChanged(generation={}, assigned={}, revoked={}, lost={}, assignment={})",
            self.generation,
            sorted(self.assigned.bind(py))?,
            sorted(self.revoked.bind(py))?,
            sorted(self.lost.bind(py))?,
            sorted(self.assignment.bind(py))?,
        ))
    }
}

fn sorted(set: &Bound<'_, PyFrozenSet>) -> PyResult<String> {
    let mut items: Vec<String> = set.iter().map(|i| i.extract()).collect::<PyResult<_>>()?;
    items.sort();
    let items: Vec<String> = items.iter().map(|i| py_repr(i)).collect();
    Ok(format!("[{}]", items.join(", ")))
}

#[pymethods]
impl LeadershipChanged {
    fn __repr__(&self) -> String {
        let b = if self.is_leader { "True" } else { "False" };
        format!("LeadershipChanged(is_leader={b}, epoch={})", self.epoch)
    }
}

#[pymethods]
impl Alert {
    fn __repr__(&self) -> String {
        format!(
            "Alert(level={}, degraded_for={})",
            py_repr(self.level),
            self.degraded_for
        )
    }
}

#[pymethods]
impl Drained {
    fn __repr__(&self) -> &'static str {
        "Drained()"
    }
}

#[pymethods]
impl Rebalanced {
    fn __repr__(&self) -> String {
        format!(
            "Rebalanced(generation={}, moved={}, worker={}, max_over_mean={:?})",
            self.generation, self.moved, self.worker, self.max_over_mean
        )
    }
}

#[pymethods]
impl WorkerWarning {
    fn __repr__(&self) -> String {
        format!(
            "WorkerWarning(kind={}, message={})",
            py_repr(self.kind),
            py_repr(&self.message)
        )
    }
}

/// A frozenset of partition IDs.
pub(crate) fn frozenset<'py>(
    py: Python<'py>,
    set: &BTreeSet<PartitionId>,
) -> PyResult<Bound<'py, PyFrozenSet>> {
    PyFrozenSet::new(py, set.iter().map(PartitionId::as_str))
}

fn level_name(level: AlertLevel) -> &'static str {
    match level {
        AlertLevel::Info => "info",
        AlertLevel::Warn => "warn",
        AlertLevel::Error => "error",
        AlertLevel::Critical => "critical",
    }
}

/// The Python object of an event.
pub(crate) fn event_to_py(py: Python<'_>, event: Event) -> PyResult<Py<PyAny>> {
    let obj = match event {
        Event::StateChanged { from, to } => Py::new(
            py,
            StateChanged {
                previous: state_name(from),
                state: state_name(to),
            },
        )?
        .into_any(),
        Event::IdClaimed(id) => Py::new(py, IdClaimed { worker_id: id.0 })?.into_any(),
        Event::AssignmentChanged {
            generation,
            assigned,
            revoked,
            lost,
            assignment,
        } => Py::new(
            py,
            AssignmentChanged {
                generation: generation.0,
                assigned: frozenset(py, &assigned)?.unbind(),
                revoked: frozenset(py, &revoked)?.unbind(),
                lost: frozenset(py, &lost)?.unbind(),
                assignment: frozenset(py, &assignment)?.unbind(),
            },
        )?
        .into_any(),
        Event::LeadershipChanged { is_leader, epoch } => Py::new(
            py,
            LeadershipChanged {
                is_leader,
                epoch: epoch.0,
            },
        )?
        .into_any(),
        Event::Alert {
            level,
            degraded_for,
        } => Py::new(
            py,
            Alert {
                level: level_name(level),
                degraded_for: degraded_for.as_secs_f64(),
            },
        )?
        .into_any(),
        Event::Drained => Py::new(py, Drained)?.into_any(),
        Event::Rebalanced {
            generation,
            moved,
            worker,
            max_over_mean,
        } => Py::new(
            py,
            Rebalanced {
                generation: generation.0,
                moved,
                worker: worker.0,
                max_over_mean,
            },
        )?
        .into_any(),
        Event::Warning(w) => warning(py, (w.kind(), w.to_string()))?,
        Event::DriverWarning(w) => warning(py, (w.kind(), w.to_string()))?,
        other => warning(py, ("other", format!("{other:?}")))?,
    };
    Ok(obj)
}

fn warning(py: Python<'_>, (kind, message): (&'static str, String)) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, WorkerWarning { kind, message })?.into_any())
}

/// An ordered, lossless stream of a worker's events: `async for event in stream`. It ends
/// when the worker has stopped.
#[pyclass(frozen, module = "parti._parti", name = "EventStream")]
pub(crate) struct EventStream {
    stream: Arc<tokio::sync::Mutex<BoxStream<'static, Event>>>,
}

impl EventStream {
    /// A Python stream over a Rust one.
    pub(crate) fn new(stream: BoxStream<'static, Event>) -> Self {
        EventStream {
            // Fused: after its end it keeps answering "ended", however often it is asked.
            stream: Arc::new(tokio::sync::Mutex::new(stream.fuse().boxed())),
        }
    }
}

#[pymethods]
impl EventStream {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // Fast path: an event already queued is handed over in a finished asyncio future,
        // without a round trip through tokio (a burst of events costs a few µs each).
        if let Ok(mut stream) = self.stream.try_lock() {
            if let Some(Some(event)) = stream.next().now_or_never() {
                let future =
                    pyo3_async_runtimes::get_running_loop(py)?.call_method0("create_future")?;
                future.call_method1("set_result", (event_to_py(py, event)?,))?;
                return Ok(future);
            }
        }
        let stream = self.stream.clone();
        crate::runtime::future_into_py(py, async move {
            let next = stream.lock().await.next().await;
            match next {
                Some(event) => crate::runtime::attach(|py| event_to_py(py, event))
                    .unwrap_or_else(|| Err(crate::runtime::exiting())),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }
}

/// Registers the event classes.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StateChanged>()?;
    m.add_class::<IdClaimed>()?;
    m.add_class::<AssignmentChanged>()?;
    m.add_class::<LeadershipChanged>()?;
    m.add_class::<Alert>()?;
    m.add_class::<Drained>()?;
    m.add_class::<Rebalanced>()?;
    m.add_class::<WorkerWarning>()?;
    m.add_class::<EventStream>()?;
    m.add_function(wrap_pyfunction!(_bench_event_stream, m)?)?;
    Ok(())
}

/// A stream of `n` synthetic `AssignmentChanged` events (one partition each), for the
/// benchmark of what delivering one event to Python costs: all queued up front, or `paced`
/// (each one becomes ready only after the consumer started waiting for it). Not public API.
#[pyfunction]
#[pyo3(signature = (n, paced = false))]
pub(crate) fn _bench_event_stream(n: u64, paced: bool) -> EventStream {
    let event = |i: u64| {
        let one: BTreeSet<PartitionId> = PartitionId::parse(&format!("p{i}")).into_iter().collect();
        Event::AssignmentChanged {
            generation: parti::Generation(i + 1),
            assigned: one.clone(),
            revoked: BTreeSet::new(),
            lost: BTreeSet::new(),
            assignment: one,
        }
    };
    if paced {
        let stream = futures::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            tokio::task::yield_now().await;
            Some((event(i), i + 1))
        });
        EventStream::new(stream.boxed())
    } else {
        EventStream::new(futures::stream::iter((0..n).map(event)).boxed())
    }
}
