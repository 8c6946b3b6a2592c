//! `Simulation`: the core's deterministic simulator — workers on a virtual clock over an
//! in-memory KV, no network — so Python users can unit-test their setup without NATS.
//!
//! Every argument is validated before it reaches the core (whose verbs index nodes directly):
//! no Python input can panic. Runs of the virtual clock release the GIL.

use crate::args::{int_arg, type_name};
use crate::config::PyConfig;
use crate::errors::{bad_arg, bad_type, core_err, SimulationError};
use crate::partition::{partition_id, partitions_from, seconds};
use crate::state::state_name;
use parti::parti_core::partition::validate_partitions;
use parti::parti_core::sim::{numbered_partitions, NodeId, NodeStatus, Sim, SimConfig};
use parti::{Config, Partition, WorkerId};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFrozenSet, PyString};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Most partitions the `int` form of a partition list may ask for.
const MAX_NUMBERED: u32 = 1_000_000;
/// Longest stretch of virtual time one `advance` or `converge` call may run (one day): it bounds
/// the wall time of a call that cannot be interrupted, and keeps the clock far from overflow.
const MAX_RUN: Duration = Duration::from_secs(86_400);
/// Trace lines appended to a `SimulationError`.
const ERROR_TRACE_LINES: usize = 30;

/// A simulated cluster of workers on a virtual clock, over an in-memory KV with NATS semantics
/// and a simulated network with seeded delays. Deterministic: the same seed and calls give the
/// same run. After every step the guarantees (exclusive ownership, committed increasing
/// generations, distinct IDs) are checked; broken ones land in `violations`.
#[pyclass(module = "parti._parti", name = "Simulation")]
pub(crate) struct PySimulation {
    sim: Sim,
}

/// The Python name of a node's process status.
fn status_name(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Running => "running",
        NodeStatus::Crashed => "crashed",
        NodeStatus::Stopped => "stopped",
    }
}

/// A partition list: an `int` (that many partitions `p0000`, `p0001`, ...) or an iterable of
/// `Partition` or `str`; duplicate IDs are refused.
fn partition_list(field: &str, value: &Bound<'_, PyAny>) -> PyResult<Vec<Partition>> {
    if value.is_instance_of::<PyString>() {
        return Err(bad_type(
            field,
            "expected an int or an iterable of Partition or str, got a single str",
        ));
    }
    if value.is_instance_of::<PyBool>() {
        return Err(bad_type(field, "expected an int or an iterable, got bool"));
    }
    let list = if let Ok(count) = value.extract::<i128>() {
        let count = u32::try_from(count)
            .ok()
            .filter(|c| *c <= MAX_NUMBERED)
            .ok_or_else(|| bad_arg(field, format!("{count} must be within 0..={MAX_NUMBERED}")))?;
        numbered_partitions(count)
    } else {
        partitions_from(field, value)?
    };
    validate_partitions(&list).map_err(|e| bad_arg(field, e))?;
    Ok(list)
}

/// A span of virtual time to run: valid seconds, at most [`MAX_RUN`].
fn run_span(field: &str, secs: f64) -> PyResult<Duration> {
    let d = seconds(field, secs)?;
    if d > MAX_RUN {
        return Err(bad_arg(
            field,
            format!(
                "{secs} s is more than one call may run ({} s); call repeatedly",
                MAX_RUN.as_secs()
            ),
        ));
    }
    Ok(d)
}

impl PySimulation {
    /// The node an index names, or a `ConfigError` naming `node`.
    fn node(&self, node: &Bound<'_, PyAny>) -> PyResult<NodeId> {
        let i: i128 = int_arg("node", node)?;
        let count = self.sim.node_count();
        usize::try_from(i)
            .ok()
            .filter(|i| *i < count)
            .map(NodeId)
            .ok_or_else(|| match count {
                0 => bad_arg("node", format!("{i}: no worker was added yet")),
                _ => bad_arg(
                    "node",
                    format!("{i} is not a node index (0..={})", count - 1),
                ),
            })
    }

    /// The seed and the last trace lines, appended to error messages.
    fn context(&self) -> String {
        format!(
            "seed {}; last trace lines:\n{}",
            self.sim.seed(),
            self.sim.trace().tail(ERROR_TRACE_LINES)
        )
    }
}

#[pymethods]
impl PySimulation {
    /// A cluster with no workers yet: `partitions` is an int (that many partitions `p0000`,
    /// `p0001`, ...) or an iterable of `Partition` or `str`; `config` is every worker's template.
    #[new]
    #[pyo3(
        signature = (partitions = None, *, config = None, seed = None),
        text_signature = "(partitions=30, *, config=None, seed=0)"
    )]
    fn new(
        partitions: Option<&Bound<'_, PyAny>>,
        config: Option<&Bound<'_, PyAny>>,
        seed: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let list = match partitions {
            Some(p) => partition_list("partitions", p)?,
            None => numbered_partitions(30),
        };
        let seed: u64 = match seed {
            Some(s) => int_arg("seed", s)?,
            None => 0,
        };
        let template: Config = match config {
            Some(c) if !c.is_none() => match c.cast::<PyConfig>() {
                Ok(c) => c.get().0.clone(),
                Err(_) => {
                    let ty = type_name(c);
                    return Err(bad_arg("config", format!("expected a Config, got {ty}")));
                }
            },
            _ => Config::default(),
        };
        // Neither the event log nor the KV history is exposed: keeping them would only grow
        // memory without bound over long runs (the trace is bounded).
        let harness = SimConfig {
            keep_events: false,
            kv_history: false,
            ..SimConfig::default()
        };
        let mut sim = Sim::new(template, harness, seed).map_err(core_err)?;
        sim.set_partitions(list);
        Ok(PySimulation { sim })
    }

    /// Adds a node and starts a worker on it now (the template, with `capacity` and
    /// `preferred_id` if given); returns the node index.
    #[pyo3(signature = (*, capacity = None, preferred_id = None))]
    fn add_worker(
        &mut self,
        capacity: Option<&Bound<'_, PyAny>>,
        preferred_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let capacity: Option<u32> = capacity.map(|c| int_arg("capacity", c)).transpose()?;
        let preferred: Option<u32> = preferred_id
            .map(|p| int_arg("preferred_id", p))
            .transpose()?;
        let node = self
            .sim
            .add_node_with(|c| {
                if let Some(capacity) = capacity {
                    c.capacity = capacity;
                }
                if let Some(id) = preferred {
                    c.preferred_id = Some(WorkerId(id));
                }
            })
            .map_err(core_err)?;
        Ok(node.0)
    }

    /// Kills the node's process (like SIGKILL): its holdings vanish at once. No-op unless running.
    fn crash(&mut self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = self.node(node)?;
        self.sim.crash(n);
        Ok(())
    }

    /// Starts a new process on a crashed or stopped node (one still stopping is killed first);
    /// no-op on a running node.
    fn restart(&mut self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = self.node(node)?;
        self.sim.restart(n);
        Ok(())
    }

    /// Asks the node's worker to stop gracefully and hand its partitions off, like
    /// `Worker.stop()` (`restart=True`: a restart follows, the share is parked for
    /// `restart_grace`); the process exits once the handoff is done. No-op unless running.
    #[pyo3(signature = (node, *, restart = false))]
    fn stop(&mut self, node: &Bound<'_, PyAny>, restart: bool) -> PyResult<()> {
        let n = self.node(node)?;
        self.sim.stop(n, !restart);
        Ok(())
    }

    /// Asks the node's worker to drain: hand its partitions to the others and keep running.
    fn drain(&mut self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = self.node(node)?;
        self.sim.drain(n);
        Ok(())
    }

    /// Asks the node's worker to re-read the partition source (after `set_partitions`).
    fn refresh(&mut self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = self.node(node)?;
        self.sim.refresh(n);
        Ok(())
    }

    /// An operator pins the partition with ID `partition` to the worker with ID `worker_id`
    /// (`None` removes the pin), as `parti pin` does: the leader moves it there and keeps it
    /// there while that worker is live.
    #[pyo3(signature = (partition, worker_id))]
    fn pin(&mut self, partition: &str, worker_id: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let partition = partition_id("partition", partition)?;
        let worker = worker_id
            .map(|w| int_arg::<u32>("worker_id", w).map(WorkerId))
            .transpose()?;
        self.sim.pin(&partition, worker);
        Ok(())
    }

    /// Cuts the node off the KV (its process keeps running and soon learns it is disconnected).
    fn isolate(&mut self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = self.node(node)?;
        self.sim.isolate(n);
        Ok(())
    }

    /// Reconnects an isolated node; with no node, ends every fault: heals every node, ends a KV
    /// outage, repairs the source and restarts crashed nodes (adding one if none runs).
    #[pyo3(signature = (node = None))]
    fn heal(&mut self, node: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        match node {
            Some(node) => {
                let n = self.node(node)?;
                if self.sim.network().is_isolated(n) {
                    self.sim.heal(n);
                }
            }
            None => self.sim.heal_all(),
        }
        Ok(())
    }

    /// Crashes the node that currently leads; returns its index (None if nobody leads).
    fn kill_leader(&mut self) -> Option<usize> {
        self.sim.kill_leader().map(|n| n.0)
    }

    /// Replaces the partition list the source returns; workers learn it when the leader next
    /// reads the source (call `refresh` on a node to make that now).
    fn set_partitions(&mut self, partitions: &Bound<'_, PyAny>) -> PyResult<()> {
        let list = partition_list("partitions", partitions)?;
        self.sim.set_partitions(list);
        Ok(())
    }

    /// Makes the partition source fail (True) or work again (False).
    fn set_source_failing(&mut self, failing: bool) {
        self.sim.set_source_failing(failing);
    }

    /// Starts (True) or ends (False) a KV outage: every request times out, watches pause.
    fn set_kv_outage(&mut self, down: bool) {
        self.sim.set_kv_outage(down);
    }

    /// Runs the virtual clock forward by `seconds` (at most one day per call).
    fn advance(&mut self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        let d = run_span("seconds", seconds)?;
        let sim = &mut self.sim;
        py.detach(|| sim.run_for(d));
        Ok(())
    }

    /// Runs until every partition is held by exactly one worker, every worker is stable and
    /// nothing changed for two heartbeat intervals; returns the virtual seconds from the call to
    /// the last change (0.0 if already settled). Raises SimulationError if `timeout` virtual
    /// seconds pass first (also recorded in `violations`). Does not check `violations`: see `check`.
    #[pyo3(signature = (timeout = 120.0))]
    fn converge(&mut self, py: Python<'_>, timeout: f64) -> PyResult<f64> {
        let bound = run_span("timeout", timeout)?;
        let sim = &mut self.sim;
        match py.detach(|| sim.converge(bound)) {
            Ok(d) => Ok(d.as_secs_f64()),
            Err(v) => Err(SimulationError::new_err(format!(
                "did not converge within {timeout} s: {v}\n{}",
                self.context()
            ))),
        }
    }

    /// Virtual seconds since the simulation started.
    #[getter]
    fn now(&self) -> f64 {
        self.sim.now().since_origin().as_secs_f64()
    }

    /// The seed of this run.
    #[getter]
    fn seed(&self) -> u64 {
        self.sim.seed()
    }

    /// The index of the running node that leads, if any.
    #[getter]
    fn leader(&self) -> Option<usize> {
        self.sim.leader().map(|n| n.0)
    }

    /// Number of nodes ever added (indexes are 0..nodes-1, stable across crashes and restarts).
    #[getter]
    fn nodes(&self) -> usize {
        self.sim.node_count()
    }

    /// The worker ID of the node's running worker, if it has claimed one.
    fn worker_id(&self, node: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
        let n = self.node(node)?;
        Ok(self.sim.worker_id(n).map(|id| id.0))
    }

    /// The state the node's worker last reported (`"stable"`, `"claiming_id"`, ...).
    fn state(&self, node: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let n = self.node(node)?;
        Ok(state_name(self.sim.state(n)))
    }

    /// What the node's process is doing: `"running"`, `"crashed"` or `"stopped"`.
    fn status(&self, node: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let n = self.node(node)?;
        Ok(status_name(self.sim.status(n)))
    }

    /// The IDs of the partitions the node holds (empty unless running).
    fn assignment<'py>(
        &self,
        py: Python<'py>,
        node: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyFrozenSet>> {
        let n = self.node(node)?;
        PyFrozenSet::new(py, self.sim.holdings(n).iter().map(|p| p.as_str()))
    }

    /// Worker ID -> IDs of the partitions it holds, for every running worker with an ID.
    fn assignments<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u32, Bound<'py, PyFrozenSet>>> {
        let mut held: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
        for n in self.sim.running_nodes() {
            if let Some(id) = self.sim.worker_id(n) {
                held.entry(id.0)
                    .or_default()
                    .extend(self.sim.holdings(n).iter().map(|p| p.as_str()));
            }
        }
        held.into_iter()
            .map(|(id, set)| Ok((id, PyFrozenSet::new(py, set)?)))
            .collect()
    }

    /// Partition ID -> the worker IDs holding it (held partitions only; one each when settled).
    fn owners(&self) -> BTreeMap<String, Vec<u32>> {
        self.sim
            .owners()
            .into_iter()
            .map(|(p, ids)| {
                (
                    p.as_str().to_owned(),
                    ids.into_iter().map(|w| w.0).collect(),
                )
            })
            .collect()
    }

    /// Every broken guarantee so far, one human-readable line each (empty on a clean run).
    #[getter]
    fn violations(&self) -> Vec<String> {
        self.sim
            .violations()
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    /// Whether the cluster looks settled now: every partition held by exactly one running
    /// worker, nothing else held, every running worker stable.
    fn is_settled(&self) -> bool {
        self.sim.is_settled()
    }

    /// Raises SimulationError listing every violation so far (and the last trace lines), if any.
    fn check(&self) -> PyResult<()> {
        let violations = self.sim.violations();
        if violations.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
        Err(SimulationError::new_err(format!(
            "{} violation(s):\n{}\n{}",
            violations.len(),
            lines.join("\n"),
            self.context()
        )))
    }

    /// The last `last` lines of the trace of faults and protocol events.
    #[pyo3(signature = (last = None), text_signature = "($self, last=50)")]
    fn trace(&self, last: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
        let last: usize = match last {
            Some(l) => int_arg("last", l)?,
            None => 50,
        };
        Ok(self.sim.trace().tail(last))
    }

    fn __repr__(&self) -> String {
        format!(
            "Simulation(seed={}, nodes={}, now={:.3})",
            self.sim.seed(),
            self.sim.node_count(),
            self.now()
        )
    }
}

/// Registers the simulator's classes.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySimulation>()
}
