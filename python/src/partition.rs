//! `Partition` and `WorkerSlot`, and reading partition lists and durations from Python values.

use crate::errors::{bad_arg, core_err};
use crate::state::py_repr;
use parti::parti_core::strategy::WorkerSlot as CoreSlot;
use parti::{Partition as CorePartition, PartitionId, WorkerId};
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::time::Duration;

/// A unit of work: a list of keys (its ID is the keys joined with `.`) and a weight.
#[pyclass(frozen, eq, hash, module = "parti._parti", name = "Partition")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyPartition(pub(crate) CorePartition);

#[pymethods]
impl PyPartition {
    #[new]
    #[pyo3(signature = (keys, weight = 100))]
    fn new(keys: &Bound<'_, PyAny>, weight: u64) -> PyResult<Self> {
        let keys: Vec<String> = if let Ok(key) = keys.cast::<PyString>() {
            vec![key.to_cow()?.into_owned()]
        } else {
            keys.extract()
                .map_err(|_| bad_arg("keys", "expected a str or a sequence of str"))?
        };
        CorePartition::new(&keys, weight)
            .map(PyPartition)
            .map_err(core_err)
    }

    /// The partition's ID: its keys joined with `.`.
    #[getter]
    fn id(&self) -> &str {
        self.0.id().as_str()
    }

    /// The keys the partition was made of.
    #[getter]
    fn keys(&self) -> Vec<String> {
        self.0.keys().map(str::to_owned).collect()
    }

    /// The partition's weight (at least 1).
    #[getter]
    fn weight(&self) -> u64 {
        self.0.weight()
    }

    /// The NATS subject token of the partition (its ID).
    #[getter]
    fn subject(&self) -> &str {
        self.0.subject()
    }

    fn __repr__(&self) -> String {
        let keys: Vec<String> = self.0.keys().map(py_repr).collect();
        format!(
            "Partition([{}], weight={})",
            keys.join(", "),
            self.0.weight()
        )
    }
}

/// A live worker as a strategy sees it: its ID and capacity.
#[pyclass(frozen, eq, hash, module = "parti._parti", name = "WorkerSlot")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyWorkerSlot {
    /// The worker's ID.
    #[pyo3(get)]
    pub(crate) id: u32,
    /// Its capacity (at least 1): loads are weight / capacity.
    #[pyo3(get)]
    pub(crate) capacity: u32,
}

#[pymethods]
impl PyWorkerSlot {
    #[new]
    #[pyo3(signature = (id, capacity = 1))]
    fn new(id: u32, capacity: u32) -> PyResult<Self> {
        if capacity == 0 {
            return Err(bad_arg("capacity", "must be at least 1"));
        }
        Ok(PyWorkerSlot { id, capacity })
    }

    fn __repr__(&self) -> String {
        format!("WorkerSlot({}, capacity={})", self.id, self.capacity)
    }
}

impl From<&CoreSlot> for PyWorkerSlot {
    fn from(s: &CoreSlot) -> Self {
        PyWorkerSlot {
            id: s.id.0,
            capacity: s.capacity,
        }
    }
}

/// Reads a list of partitions: each item a `Partition` or a `str` (one key, default weight).
pub(crate) fn partitions_from(
    field: &str,
    items: &Bound<'_, PyAny>,
) -> PyResult<Vec<CorePartition>> {
    let mut out = Vec::new();
    let iter = items
        .try_iter()
        .map_err(|_| bad_arg(field, "expected an iterable of Partition or str"))?;
    for item in iter {
        out.push(partition_from(field, &item?)?);
    }
    Ok(out)
}

/// Reads one partition: a `Partition` or a `str` (one key, default weight).
pub(crate) fn partition_from(field: &str, item: &Bound<'_, PyAny>) -> PyResult<CorePartition> {
    if let Ok(p) = item.cast::<PyPartition>() {
        return Ok(p.get().0.clone());
    }
    if let Ok(s) = item.cast::<PyString>() {
        return CorePartition::single(&s.to_cow()?).map_err(core_err);
    }
    Err(bad_arg(
        field,
        format!("expected Partition or str, got {}", item.get_type().name()?),
    ))
}

/// Reads a list of workers: each item a `WorkerSlot` or an `int` ID (capacity 1).
pub(crate) fn workers_from(items: &Bound<'_, PyAny>) -> PyResult<Vec<CoreSlot>> {
    let mut out = Vec::new();
    let iter = items
        .try_iter()
        .map_err(|_| bad_arg("workers", "expected an iterable of WorkerSlot or int"))?;
    for item in iter {
        let item = item?;
        let slot = if let Ok(s) = item.cast::<PyWorkerSlot>() {
            let s = s.get();
            CoreSlot {
                id: WorkerId(s.id),
                capacity: s.capacity,
            }
        } else if let Ok(id) = item.extract::<u32>() {
            CoreSlot {
                id: WorkerId(id),
                capacity: 1,
            }
        } else {
            return Err(bad_arg(
                "workers",
                format!(
                    "expected WorkerSlot or int (0..=4294967295), got {}",
                    item.get_type().name()?
                ),
            ));
        };
        out.push(slot);
    }
    Ok(out)
}

/// Parses a partition ID given as `str`.
pub(crate) fn partition_id(field: &str, id: &str) -> PyResult<PartitionId> {
    PartitionId::parse(id).map_err(|e| bad_arg(field, e))
}

/// A duration from seconds (`int` or `float`): refuses negative, NaN and infinite values.
pub(crate) fn seconds(field: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| bad_arg(field, format!("{secs} is not a valid number of seconds")))
}
