//! The exception hierarchy: one base `PartiError`, one subclass per kind of failure, and the
//! conversions from the Rust errors.
//!
//! Bad input follows Python's convention too: `ConfigError` is also a `ValueError`, and
//! `ConfigTypeError` (a `ConfigError` for a value of the wrong type) also a `TypeError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(
    _parti,
    PartiError,
    PyException,
    "Base class of every error parti raises."
);

/// Declares an exception class with several bases (`create_exception!` takes one), made once
/// by calling `type(name, bases, namespace)` as a `class` statement would.
macro_rules! exception_with_bases {
    ($name:ident, [$($base:ty),+], $doc:literal) => {
        #[doc = $doc]
        pub(crate) struct $name;

        impl $name {
            /// The exception with `message`, made lazily (no GIL needed here).
            pub(crate) fn new_err(message: impl Into<String>) -> PyErr {
                PyErr::new::<$name, String>(message.into())
            }
        }

        // SAFETY: `type_object_raw` returns a type object that the static below keeps alive
        // for the whole process, as PyO3's own `create_exception!` does.
        unsafe impl pyo3::type_object::PyTypeInfo for $name {
            fn type_object_raw(py: Python<'_>) -> *mut pyo3::ffi::PyTypeObject {
                static TYPE_OBJECT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
                TYPE_OBJECT
                    .get_or_init(py, || {
                        let bases = PyTuple::new(py, [$(py.get_type::<$base>()),+])
                            .expect("a tuple of types");
                        let namespace = PyDict::new(py);
                        namespace.set_item("__module__", "parti._parti").expect("a str key");
                        namespace.set_item("__doc__", $doc).expect("a str key");
                        py.get_type::<PyType>()
                            .call1((stringify!($name), bases, namespace))
                            .and_then(|t| Ok(t.cast_into::<PyType>()?))
                            .expect("an exception class with these bases")
                            .unbind()
                    })
                    .as_ptr()
                    .cast()
            }
        }
    };
}

exception_with_bases!(
    ConfigError,
    [PartiError, PyValueError],
    "A configuration value, partition or argument is invalid (also a ValueError); the \
     message names it and what is allowed."
);
exception_with_bases!(
    ConfigTypeError,
    [ConfigError, PyTypeError],
    "An argument has the wrong type (a ConfigError and a TypeError); the message names it and \
     the types allowed."
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
    m.add("ConfigTypeError", py.get_type::<ConfigTypeError>())?;
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

/// A `ConfigTypeError` naming the argument `field` (a value of the wrong type).
pub(crate) fn bad_type(field: &str, reason: impl std::fmt::Display) -> PyErr {
    ConfigTypeError::new_err(format!("invalid argument: {field}: {reason}"))
}
