//! Metrics of the process's workers for Python: every `Worker` records into one process-wide
//! registry (the Rust `parti_*` families, labelled by `prefix` and `worker_id`), read as
//! OpenMetrics text by `metrics_text()`; `parti.metrics.Collector` hands the same metrics to
//! `prometheus_client`.

use parti::metrics::Registry;
use pyo3::prelude::*;
use std::sync::{LazyLock, Mutex};

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // Encoding and registering cannot leave the registry half-changed: a poisoned lock is fine.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `builder`'s worker record into the process-wide registry.
pub(crate) fn record(builder: parti::WorkerBuilder) -> parti::WorkerBuilder {
    builder.metrics(&mut registry())
}

/// The metrics of every worker of this process, in the OpenMetrics text format (ends with
/// `# EOF`).
#[pyfunction]
pub(crate) fn metrics_text(py: Python<'_>) -> PyResult<String> {
    py.detach(|| {
        let mut text = String::new();
        parti::metrics::prometheus_client::encoding::text::encode(&mut text, &registry())
            .map(|()| text)
    })
    .map_err(|e| crate::errors::PartiError::new_err(format!("encoding the metrics failed: {e}")))
}
