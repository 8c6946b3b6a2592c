//! `plan` and `explain`: the planner as pure functions, with no network.

use crate::args::{int_in, owners_arg};
use crate::errors::{bad_arg, core_err};
use crate::partition::{partition_id, partitions_from, workers_from};
use crate::state::py_repr;
use crate::strategy::{strategy_from, Resolved};
use parti::parti_core::strategy::{Plan, PlanInput};
use parti::parti_core::{explain as core_explain, plan as core_plan, summarize, validate_input};
use parti::PartitionId;
use pyo3::prelude::*;
use std::collections::BTreeMap;

/// A plan: the owner of every partition, with its balance and movement against `previous`.
#[pyclass(frozen, module = "parti._parti", name = "PlanResult")]
pub(crate) struct PyPlanResult {
    plan: Plan,
    /// The strategy's name.
    #[pyo3(get)]
    strategy: String,
    /// Heaviest worker's load over the mean (1.0 is perfect).
    #[pyo3(get)]
    max_over_mean: f64,
    /// Lightest worker's load over the mean.
    #[pyo3(get)]
    min_over_mean: f64,
    /// Partitions whose owner differs from `previous`.
    #[pyo3(get)]
    moved: usize,
    /// Total weight of the moved partitions.
    #[pyo3(get)]
    moved_weight: u64,
}

#[pymethods]
impl PyPlanResult {
    /// The owner (worker ID) of every partition ID.
    #[getter]
    fn assignment(&self) -> BTreeMap<String, u32> {
        self.plan
            .assignment
            .iter()
            .map(|(p, w)| (p.to_string(), w.0))
            .collect()
    }

    /// The partition IDs of each worker, sorted (workers without partitions are absent).
    fn by_worker(&self) -> BTreeMap<u32, Vec<String>> {
        self.plan
            .by_worker()
            .into_iter()
            .map(|(w, ps)| (w.0, ps.iter().map(ToString::to_string).collect()))
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "PlanResult(strategy={}, partitions={}, max_over_mean={:.3}, moved={})",
            py_repr(&self.strategy),
            self.plan.assignment.len(),
            self.max_over_mean,
            self.moved
        )
    }
}

/// Why one partition is where a strategy puts it.
#[pyclass(frozen, module = "parti._parti", name = "Explanation")]
pub(crate) struct PyExplanation {
    /// The partition explained.
    #[pyo3(get)]
    partition: String,
    /// Its owner in the plan (None only when there are no workers).
    #[pyo3(get)]
    owner: Option<u32>,
    /// Its owner in `previous`, live or not.
    #[pyo3(get)]
    previous: Option<u32>,
    /// One sentence from the strategy.
    #[pyo3(get)]
    reason: String,
}

#[pymethods]
impl PyExplanation {
    fn __repr__(&self) -> String {
        let opt = |w: Option<u32>| w.map_or_else(|| "None".to_owned(), |w| w.to_string());
        format!(
            "Explanation(partition={}, owner={}, previous={}, reason={})",
            py_repr(&self.partition),
            opt(self.owner),
            opt(self.previous),
            py_repr(&self.reason)
        )
    }
}

/// Builds the planner's input from the Python arguments and checks it as the core checks a
/// hand-built input (`validate_input`): at least one worker, `previous` and `pins` naming
/// listed partitions, pins to listed workers.
#[allow(clippy::too_many_arguments)]
fn input_from(
    workers: &Bound<'_, PyAny>,
    partitions: &Bound<'_, PyAny>,
    previous: Option<&Bound<'_, PyAny>>,
    pins: Option<&Bound<'_, PyAny>>,
    slack: Option<&Bound<'_, PyAny>>,
    max_moves: Option<&Bound<'_, PyAny>>,
    loads: Option<&Bound<'_, PyAny>>,
) -> PyResult<PlanInput> {
    let mut input = PlanInput::new(
        workers_from(workers)?,
        partitions_from("partitions", partitions)?,
    );
    input.previous = owners_arg("previous", previous)?;
    input.pins = owners_arg("pins", pins)?;
    // Left out, the slack is the planner's default (`PlanInput::new`).
    if let Some(slack) = slack.filter(|s| !s.is_none()) {
        let slack = crate::args::number("slack", slack)?;
        if !(slack.is_finite() && slack >= 0.0) {
            return Err(bad_arg(
                "slack",
                format!("{slack} must be a finite number >= 0"),
            ));
        }
        input.slack = slack;
    }
    input.max_moves = match max_moves.filter(|m| !m.is_none()) {
        Some(m) => Some(int_in("max_moves", m, 0, usize::MAX as i128)?),
        None => None,
    };
    if let Some(loads) = loads {
        // Ranges and unlisted partitions: the planner's validation names the partition.
        input.loads = crate::args::loads_arg(loads)?.into_iter().collect();
    }
    validate_input(&input).map_err(core_err)?;
    Ok(input)
}

/// Runs the planner, raising a Python strategy's error if it had one.
fn run<T>(
    py: Python<'_>,
    resolved: &Resolved,
    f: impl FnOnce(&dyn parti::parti_core::strategy::Strategy) -> Result<T, parti::parti_core::Error>
        + Send,
) -> PyResult<T>
where
    T: Send,
{
    let strategy = resolved.strategy.as_ref();
    let out = if resolved.python.is_some() {
        f(strategy)
    } else {
        // A built-in strategy runs without the GIL: big plans do not stall other threads.
        py.detach(move || f(strategy))
    };
    if let Some(e) = resolved.python.as_ref().and_then(|p| p.take_error()) {
        return Err(e);
    }
    out.map_err(core_err)
}

/// Computes the owner of every partition: `plan([1, 2, 3], partitions)`. With `loads`
/// (`{partition ID: measured load}`), balances measured load where known and static weight
/// elsewhere, on one scale (the core's `load::effective_partitions`).
#[pyfunction]
#[pyo3(signature = (workers, partitions, *, strategy = None, previous = None, pins = None, slack = None, max_moves = None, loads = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    py: Python<'_>,
    workers: &Bound<'_, PyAny>,
    partitions: &Bound<'_, PyAny>,
    strategy: Option<&Bound<'_, PyAny>>,
    previous: Option<&Bound<'_, PyAny>>,
    pins: Option<&Bound<'_, PyAny>>,
    slack: Option<&Bound<'_, PyAny>>,
    max_moves: Option<&Bound<'_, PyAny>>,
    loads: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyPlanResult> {
    let input = input_from(workers, partitions, previous, pins, slack, max_moves, loads)?;
    let resolved = resolve(py, strategy)?;
    let plan = run(py, &resolved, |s| core_plan(s, &input))?;
    let summary = summarize(&input, &plan);
    Ok(PyPlanResult {
        strategy: resolved.strategy.name().to_owned(),
        max_over_mean: summary.max_over_mean,
        min_over_mean: summary.min_over_mean,
        moved: summary.moved,
        moved_weight: summary.moved_weight,
        plan,
    })
}

/// Says why `partition` lands where the strategy puts it.
#[pyfunction]
#[pyo3(signature = (partition, workers, partitions, *, strategy = None, previous = None, pins = None, slack = None, max_moves = None, loads = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn explain(
    py: Python<'_>,
    partition: &Bound<'_, PyAny>,
    workers: &Bound<'_, PyAny>,
    partitions: &Bound<'_, PyAny>,
    strategy: Option<&Bound<'_, PyAny>>,
    previous: Option<&Bound<'_, PyAny>>,
    pins: Option<&Bound<'_, PyAny>>,
    slack: Option<&Bound<'_, PyAny>>,
    max_moves: Option<&Bound<'_, PyAny>>,
    loads: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyExplanation> {
    let target: PartitionId =
        partition_id("partition", &crate::args::text("partition", partition)?)?;
    let input = input_from(workers, partitions, previous, pins, slack, max_moves, loads)?;
    let resolved = resolve(py, strategy)?;
    let e = run(py, &resolved, |s| core_explain(s, &input, &target))?;
    Ok(PyExplanation {
        partition: e.partition.to_string(),
        owner: e.owner.map(|w| w.0),
        previous: e.previous.map(|w| w.0),
        reason: e.reason,
    })
}

/// `strategy=None` is the workers' default, the first of core's `strategy::NAMES`.
fn resolve(py: Python<'_>, strategy: Option<&Bound<'_, PyAny>>) -> PyResult<Resolved> {
    let default = || pyo3::types::PyString::new(py, parti::strategy::NAMES[0]);
    strategy_from(strategy.unwrap_or(default().as_any()), false)
}
