//! `Partition` and `WorkerSlot`, and reading partition lists and durations from Python values.

use crate::args::{int_in, type_name, worker_id};
use crate::errors::{bad_arg, bad_type, core_err};
use crate::state::py_repr;
use parti::parti_core::strategy::WorkerSlot as CoreSlot;
use parti::{Partition as CorePartition, PartitionId, WorkerId};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};
use std::time::Duration;

/// A unit of work: a list of keys (its ID is the keys joined with `.`) and a weight; a single
/// `str` is the ID itself (`"orders.7"` is keys `orders` and `7`, the core's one rule).
#[pyclass(frozen, eq, hash, module = "parti._parti", name = "Partition")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyPartition(pub(crate) CorePartition);

#[pymethods]
impl PyPartition {
    #[new]
    #[pyo3(signature = (keys, weight = None), text_signature = "(keys, weight=100)")]
    fn new(keys: &Bound<'_, PyAny>, weight: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let weight = match weight {
            Some(w) => weight_arg("weight", w)?,
            None => CorePartition::DEFAULT_WEIGHT,
        };
        if let Ok(id) = keys.cast::<PyString>() {
            return CorePartition::parse(&id.to_cow()?, weight)
                .map(PyPartition)
                .map_err(core_err);
        }
        let keys: Vec<String> = keys.extract().map_err(|_| {
            bad_type(
                "keys",
                format!(
                    "expected a str (the ID) or a sequence of str (the keys), got {}",
                    type_name(keys)
                ),
            )
        })?;
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
    #[pyo3(signature = (id, capacity = None), text_signature = "(id, capacity=1)")]
    fn new(id: &Bound<'_, PyAny>, capacity: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let id = worker_id("id", id)?.0;
        let capacity = match capacity {
            Some(c) => capacity_arg("capacity", c)?,
            None => 1,
        };
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

/// A partition weight: an `int` in `1..=18446744073709551615`.
pub(crate) fn weight_arg(field: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    int_in(field, value, 1, i128::from(u64::MAX))
}

/// A worker capacity: an `int` in `1..=4294967295`.
pub(crate) fn capacity_arg(field: &str, value: &Bound<'_, PyAny>) -> PyResult<u32> {
    int_in(field, value, 1, i128::from(u32::MAX))
}

/// Reads a list of partitions: each item a `Partition` or a `str` (its ID, default weight).
/// A single `str` is refused: it would be taken as one partition per character.
pub(crate) fn partitions_from(
    field: &str,
    items: &Bound<'_, PyAny>,
) -> PyResult<Vec<CorePartition>> {
    if items.is_instance_of::<PyString>() {
        return Err(bad_type(
            field,
            "expected an iterable of Partition or str, got a single str (for one partition, \
             pass a list: [\"abc\"])",
        ));
    }
    let mut out = Vec::new();
    let iter = items.try_iter().map_err(|_| {
        bad_type(
            field,
            format!(
                "expected an iterable of Partition or str, got {}",
                type_name(items)
            ),
        )
    })?;
    for item in iter {
        out.push(partition_from(field, &item?)?);
    }
    Ok(out)
}

/// Reads one partition: a `Partition` or a `str` (its ID, keys joined by `.`, default
/// weight).
pub(crate) fn partition_from(field: &str, item: &Bound<'_, PyAny>) -> PyResult<CorePartition> {
    if let Ok(p) = item.cast::<PyPartition>() {
        return Ok(p.get().0.clone());
    }
    if let Ok(s) = item.cast::<PyString>() {
        return CorePartition::parse(&s.to_cow()?, CorePartition::DEFAULT_WEIGHT).map_err(core_err);
    }
    Err(bad_type(
        field,
        format!("expected Partition or str, got {}", type_name(item)),
    ))
}

/// Reads a list of workers: each item a `WorkerSlot` or an `int` ID (capacity 1).
pub(crate) fn workers_from(items: &Bound<'_, PyAny>) -> PyResult<Vec<CoreSlot>> {
    let mut out = Vec::new();
    let iter = items.try_iter().map_err(|_| {
        bad_type(
            "workers",
            format!(
                "expected an iterable of WorkerSlot or int, got {}",
                type_name(items)
            ),
        )
    })?;
    for item in iter {
        let item = item?;
        let slot = if let Ok(s) = item.cast::<PyWorkerSlot>() {
            let s = s.get();
            CoreSlot {
                id: WorkerId(s.id),
                capacity: s.capacity,
            }
        } else if item.is_instance_of::<PyInt>() && !item.is_instance_of::<PyBool>() {
            CoreSlot {
                id: worker_id("workers", &item)?,
                capacity: 1,
            }
        } else {
            return Err(bad_type(
                "workers",
                format!(
                    "expected WorkerSlot or int (a worker ID 0..=4294967295), got {}",
                    type_name(&item)
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
