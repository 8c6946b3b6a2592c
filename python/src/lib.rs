//! The compiled core of the `parti` Python package (`parti._parti`).
use pyo3::prelude::*;

#[pymodule]
fn _parti(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
