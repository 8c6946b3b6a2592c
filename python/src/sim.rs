//! `Simulation`: the core's deterministic simulator (placeholder).
use pyo3::prelude::*;

/// Registers the simulator's classes.
pub(crate) fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
