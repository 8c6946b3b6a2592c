//! `parti._parti`: the compiled core of the `parti` Python package.
//!
//! Everything here wraps the Rust crates: the driver (`parti`) for workers on NATS or in
//! memory, the core (`parti-core`) for planning and the simulator. One process-wide tokio
//! runtime (`runtime`) runs every worker; async methods return asyncio awaitables and blocking
//! calls release the GIL. No runtime thread enters Python once the interpreter starts exiting
//! (an `atexit` hook closes that gate), so a process never crashes at exit. Python callbacks
//! (listener, source, strategy, message handler) always run on the event loop the worker was
//! started from.
#![warn(missing_docs)]

mod callbacks;
mod config;
mod errors;
mod events;
mod message;
mod metrics;
mod partition;
mod planning;
mod runtime;
mod sim;
mod state;
mod strategy;
mod worker;

use pyo3::prelude::*;

/// The module: classes, functions and exceptions.
#[pymodule]
fn _parti(m: &Bound<'_, PyModule>) -> PyResult<()> {
    runtime::register(m)?;
    errors::register(m)?;
    m.add_class::<partition::PyPartition>()?;
    m.add_class::<partition::PyWorkerSlot>()?;
    m.add_class::<config::PyConfig>()?;
    m.add_class::<planning::PyPlanResult>()?;
    m.add_class::<planning::PyExplanation>()?;
    m.add_function(wrap_pyfunction!(planning::plan, m)?)?;
    m.add_function(wrap_pyfunction!(planning::explain, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::metrics_text, m)?)?;
    events::register(m)?;
    m.add_class::<message::PyMessage>()?;
    m.add_class::<worker::PyMemoryKv>()?;
    m.add_class::<worker::PyWorker>()?;
    sim::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The built-in strategies' names, straight from core's registry.
    m.add(
        "STRATEGIES",
        pyo3::types::PyTuple::new(m.py(), parti::strategy::NAMES)?,
    )?;
    Ok(())
}
