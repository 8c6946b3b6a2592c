//! Reading arguments from Python values with errors that name the argument and what is
//! allowed: integers in a range (never a raw `OverflowError`, never `True` as `1`), worker
//! IDs, mappings of partition ID to worker ID, and of partition ID to load.
//!
//! A value of the wrong type raises `ConfigTypeError` (a `TypeError`), a value out of range
//! `ConfigError` (a `ValueError`); both say `invalid argument: <name>: ...`.

use crate::errors::{bad_arg, bad_type, core_err};
use crate::partition::partition_id;
use parti::parti_core::short_id;
use parti::{PartitionId, WorkerId};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyMapping, PyString};
use std::collections::BTreeMap;

/// An integer type arguments are read into, with its range.
pub(crate) trait IntArg: TryFrom<i128> {
    /// The smallest value.
    const LO: i128;
    /// The largest value.
    const HI: i128;
}

macro_rules! int_arg_for {
    ($($t:ty),*) => {$(
        impl IntArg for $t {
            const LO: i128 = <$t>::MIN as i128;
            const HI: i128 = <$t>::MAX as i128;
        }
    )*};
}
int_arg_for!(u32, u64, usize, i128);

/// The name of a value's type, for error messages.
pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// An `int` argument anywhere in `T`'s range.
pub(crate) fn int_arg<T: IntArg>(field: &str, value: &Bound<'_, PyAny>) -> PyResult<T> {
    int_in(field, value, T::LO, T::HI)
}

/// An `int` argument within `lo..=hi` (which must fit `T`): a `bool`, `float` or anything
/// else is a `ConfigTypeError`, a value outside the range a `ConfigError` saying the range.
pub(crate) fn int_in<T: IntArg>(
    field: &str,
    value: &Bound<'_, PyAny>,
    lo: i128,
    hi: i128,
) -> PyResult<T> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(bad_type(
            field,
            format!("expected an int, got {}", type_name(value)),
        ));
    }
    let out_of_range = || {
        let shown = value.str().map(|s| s.to_string()).unwrap_or_default();
        bad_arg(
            field,
            format!("{} is out of range; allowed {lo}..={hi}", short_id(&shown)),
        )
    };
    let v: i128 = value.extract().map_err(|_| out_of_range())?;
    if !(lo..=hi).contains(&v) {
        return Err(out_of_range());
    }
    T::try_from(v).map_err(|_| out_of_range())
}

/// A number (`int` or `float`, not `bool`), or a `ConfigTypeError` naming the field.
pub(crate) fn number(field: &str, v: &Bound<'_, PyAny>) -> PyResult<f64> {
    if v.is_instance_of::<PyBool>()
        || !(v.is_instance_of::<PyFloat>() || v.is_instance_of::<PyInt>())
    {
        return Err(bad_type(
            field,
            format!("expected a number, got {}", type_name(v)),
        ));
    }
    v.extract()
        .map_err(|_| bad_arg(field, "is too large for a float"))
}

/// A `str`, or a `ConfigTypeError` naming the field.
pub(crate) fn text(field: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    match v.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned()),
        Err(_) => Err(bad_type(
            field,
            format!("expected a str, got {}", type_name(v)),
        )),
    }
}

/// A worker ID: an `int` in `0..=4294967295`.
pub(crate) fn worker_id(field: &str, value: &Bound<'_, PyAny>) -> PyResult<WorkerId> {
    int_arg::<u32>(field, value).map(WorkerId)
}

/// A mapping of partition ID (`str`, the core's ID rule) to worker ID (`int`), for
/// `previous` and `pins`; `None` is empty. Errors name the argument and the entry.
pub(crate) fn owners_arg(
    field: &str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<BTreeMap<PartitionId, WorkerId>> {
    let mut out = BTreeMap::new();
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(out);
    };
    let map = value.cast::<PyMapping>().map_err(|_| {
        bad_type(
            field,
            format!(
                "expected a mapping of partition ID (str) to worker ID (int), got {}",
                type_name(value)
            ),
        )
    })?;
    for item in map.items()?.iter() {
        let (key, worker): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        let key = key.cast::<PyString>().map_err(|_| {
            bad_type(
                field,
                format!("keys are partition IDs (str), got {}", type_name(&key)),
            )
        })?;
        let key = key.to_cow()?;
        let id = partition_id(field, &key)?;
        let entry = format!("{field}[{:?}]", id.short());
        out.insert(id, worker_id(&entry, &worker)?);
    }
    Ok(out)
}

/// `{partition ID: load}` from a mapping, in its order: a `ConfigError` naming the argument for
/// something that is not a mapping of `str`, naming the partition for a load that is not a
/// number (`bool` included). The ranges are the core's to check.
pub(crate) fn loads_arg(loads: &Bound<'_, PyAny>) -> PyResult<Vec<(PartitionId, f64)>> {
    let items = loads
        .call_method0("items")
        .and_then(|items| items.try_iter())
        .map_err(|_| bad_type("loads", "expected a mapping of partition ID to load"))?;
    let mut out = Vec::new();
    for item in items {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        let Ok(key) = key.cast::<PyString>() else {
            return Err(bad_type(
                "loads",
                format!(
                    "keys are partition IDs (str), got {}",
                    key.get_type().name()?
                ),
            ));
        };
        let id = partition_id("loads", &key.to_cow()?)?;
        let number = value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>();
        let load = match value.extract::<f64>() {
            Ok(l) if number && !value.is_instance_of::<PyBool>() => l,
            _ if !number || value.is_instance_of::<PyBool>() => {
                return Err(bad_type(
                    "loads",
                    format!(
                        "partition {:?}: load {} is not a number",
                        id.short(),
                        value.repr()?
                    ),
                ))
            }
            _ => {
                return Err(core_err(parti::parti_core::Error::InvalidPartition {
                    partition: id.short().into_owned(),
                    reason: format!("load {} is out of range", short_id(&value.str()?.to_cow()?)),
                }))
            }
        };
        out.push((id, load));
    }
    Ok(out)
}
