//! The exception hierarchy: one base `PartiError`, one subclass per kind of failure, and the
//! conversions from the Rust errors.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _parti,
    PartiError,
    PyException,
    "Base class of every error parti raises."
);
create_exception!(
    _parti,
    ConfigError,
    PartiError,
    "A configuration value, partition or argument is invalid; the message names it."
);
create_exception!(
    _parti,
    NatsError,
    PartiError,
    "NATS could not be reached, refused the credentials, or a KV bucket could not be set up."
);
create_exception!(
    _parti,
    WorkerStoppedError,
    PartiError,
    "The worker is stopped (or was never started) and cannot take this request."
);
create_exception!(
    _parti,
    StopTimeoutError,
    PartiError,
    "A graceful stop or drain overran its bound (`Config.shutdown_timeout`)."
);
create_exception!(
    _parti,
    SubscriptionError,
    PartiError,
    "The subscription manager could not subscribe or consume."
);
create_exception!(
    _parti,
    SimulationError,
    PartiError,
    "The simulator found a broken guarantee or did not converge in time."
);

/// Registers the exception classes on the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PartiError", py.get_type::<PartiError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("NatsError", py.get_type::<NatsError>())?;
    m.add("WorkerStoppedError", py.get_type::<WorkerStoppedError>())?;
    m.add("StopTimeoutError", py.get_type::<StopTimeoutError>())?;
    m.add("SubscriptionError", py.get_type::<SubscriptionError>())?;
    m.add("SimulationError", py.get_type::<SimulationError>())?;
    Ok(())
}

/// The Python exception for a driver error.
pub(crate) fn driver_err(e: parti::Error) -> PyErr {
    use parti::Error as E;
    match e {
        E::Invalid(e) => core_err(e),
        E::Nats(m) => NatsError::new_err(m),
        E::Stopped => WorkerStoppedError::new_err("worker stopped"),
        E::Timeout(_) => StopTimeoutError::new_err(e.to_string()),
        E::Crashed(_) => WorkerStoppedError::new_err(e.to_string()),
        E::Missing(_) => ConfigError::new_err(e.to_string()),
        E::Subscription(e) => SubscriptionError::new_err(e.to_string()),
        other => PartiError::new_err(other.to_string()),
    }
}

/// The Python exception for a core error (bad config, bad partition, undecodable value).
pub(crate) fn core_err(e: parti::parti_core::Error) -> PyErr {
    use parti::parti_core::Error as E;
    match e {
        E::InvalidConfig { .. } | E::InvalidPartition { .. } | E::UnknownStrategy { .. } => {
            ConfigError::new_err(e.to_string())
        }
        other => PartiError::new_err(other.to_string()),
    }
}

/// A `ConfigError` naming the argument `field`.
pub(crate) fn bad_arg(field: &str, reason: impl std::fmt::Display) -> PyErr {
    ConfigError::new_err(format!("invalid argument: {field}: {reason}"))
}
