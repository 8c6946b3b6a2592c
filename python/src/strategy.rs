//! Strategies from Python: a built-in one by name, or a Python callable.

use crate::errors::bad_arg;
use crate::partition::{PyPartition, PyWorkerSlot};
use parti::parti_core::strategy::{self, Balanced, Plan, PlanInput, Strategy};
use parti::WorkerId;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A strategy read from `strategy=`, and the Python one behind it if it is a callable.
pub(crate) struct Resolved {
    /// What the planner or the worker runs.
    pub(crate) strategy: Box<dyn Strategy>,
    /// The Python strategy, to read its last error.
    pub(crate) python: Option<Arc<PyStrategy>>,
}

/// Reads `strategy=`: a built-in name or a callable
/// `(workers, partitions, previous) -> {partition_id: worker_id}`. With `report`, a failing
/// callable's error is written as an unraisable exception at once (a running worker has no
/// caller to raise it to); otherwise it is kept for [`PyStrategy::take_error`].
pub(crate) fn strategy_from(obj: &Bound<'_, PyAny>, report: bool) -> PyResult<Resolved> {
    let builtin = |strategy: Box<dyn Strategy>| Resolved {
        strategy,
        python: None,
    };
    if let Ok(name) = obj.cast::<PyString>() {
        // Python spells names with `_` as readily as with `-`, in any case.
        let name = name.to_cow()?.replace('_', "-").to_ascii_lowercase();
        return strategy::by_name(&name)
            .map(builtin)
            .map_err(|e| bad_arg("strategy", format!("{e}; or pass a callable")));
    }
    if obj.is_callable() {
        let python = Arc::new(PyStrategy::new(obj.clone().unbind(), report)?);
        return Ok(Resolved {
            strategy: Box::new(Shared(python.clone())),
            python: Some(python),
        });
    }
    Err(crate::errors::bad_type(
        "strategy",
        format!(
            "expected a strategy name or a callable, got {}",
            obj.get_type().name()?
        ),
    ))
}

/// A strategy written in Python. It must be pure and deterministic: every worker that becomes
/// leader calls it. It is called from a worker thread (holding the GIL), not from the event
/// loop. When it raises or returns an unusable plan, the error is kept (see
/// [`PyStrategy::take_error`]; a worker reports it as an unraisable exception) and the
/// balanced strategy places the partitions instead, so the fleet keeps working.
pub(crate) struct PyStrategy {
    callable: Py<PyAny>,
    name: String,
    report: bool,
    error: Mutex<Option<PyErr>>,
}

impl std::fmt::Debug for PyStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyStrategy")
            .field("name", &self.name)
            .finish()
    }
}

impl PyStrategy {
    fn new(callable: Py<PyAny>, report: bool) -> PyResult<Self> {
        let name = Python::attach(|py| -> PyResult<String> {
            let c = callable.bind(py);
            Ok(match c.getattr("__name__") {
                Ok(n) => n.extract::<String>().unwrap_or_else(|_| "python".into()),
                Err(_) => "python".into(),
            })
        })?;
        Ok(PyStrategy {
            callable,
            name,
            report,
            error: Mutex::new(None),
        })
    }

    /// The error of the last call, if it raised or returned an unusable plan.
    pub(crate) fn take_error(&self) -> Option<PyErr> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn call(&self, py: Python<'_>, input: &PlanInput) -> PyResult<Plan> {
        let workers: Vec<PyWorkerSlot> = input.workers.iter().map(PyWorkerSlot::from).collect();
        let partitions: Vec<PyPartition> =
            input.partitions.iter().cloned().map(PyPartition).collect();
        let previous = PyDict::new(py);
        for (p, w) in &input.previous {
            previous.set_item(p.as_str(), w.0)?;
        }
        let result = self
            .callable
            .bind(py)
            .call1((workers, partitions, previous))?;
        let shape = || {
            bad_arg(
                "strategy",
                format!(
                    "{} must return a mapping of partition ID (str) to worker ID (int)",
                    self.name
                ),
            )
        };
        let pairs: BTreeMap<String, Bound<'_, PyAny>> = result.extract().map_err(|_| shape())?;
        let mut raw: BTreeMap<String, u32> = BTreeMap::new();
        for (p, w) in pairs {
            // `True` is not worker 1
            if w.is_instance_of::<pyo3::types::PyBool>() {
                return Err(shape());
            }
            raw.insert(p, w.extract().map_err(|_| shape())?);
        }
        let mut assignment = BTreeMap::new();
        for p in &input.partitions {
            let Some(&w) = raw.get(p.id().as_str()) else {
                return Err(bad_arg(
                    "strategy",
                    format!(
                        "{} left partition {} without an owner",
                        self.name,
                        p.id().short()
                    ),
                ));
            };
            if !input.workers.iter().any(|s| s.id.0 == w) {
                return Err(bad_arg(
                    "strategy",
                    format!(
                        "{} put partition {} on {w}, which is not a live worker",
                        self.name,
                        p.id().short()
                    ),
                ));
            }
            assignment.insert(p.id().clone(), WorkerId(w));
        }
        if let Some(extra) = raw.keys().find(|k| {
            !input
                .partitions
                .iter()
                .any(|p| p.id().as_str() == k.as_str())
        }) {
            return Err(bad_arg(
                "strategy",
                format!(
                    "{} placed {extra:?}, which is not in the partition list",
                    self.name
                ),
            ));
        }
        Ok(Plan { assignment })
    }
}

/// A shared [`PyStrategy`] as the boxed [`Strategy`] the planner takes.
#[derive(Debug)]
struct Shared(Arc<PyStrategy>);

impl Strategy for Shared {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn assign(&self, input: &PlanInput) -> Plan {
        if input.workers.is_empty() {
            return Plan::default();
        }
        // A leader planning while the interpreter exits falls back to the default strategy.
        crate::runtime::attach(|py| match self.0.call(py, input) {
            Ok(plan) => plan,
            Err(e) => {
                if self.0.report {
                    let callable = self.0.callable.bind(py);
                    e.write_unraisable(py, Some(callable));
                } else {
                    *self.0.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
                Balanced::default().assign(input)
            }
        })
        .unwrap_or_else(|| Balanced::default().assign(input))
    }
}
