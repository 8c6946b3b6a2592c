//! [`PartiError`]: the one error of the bindings, with the meanings of [`parti::Error`].

use parti::kv::NatsError;

/// What can go wrong, as [`parti::Error`] (and the core's [`parti::parti_core::Error`]) say it.
///
/// Protocol outcomes (an ID lost, leadership lost, a source failing while the worker runs) are
/// not errors: they arrive as [`crate::WorkerEvent`]s.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum PartiError {
    /// A configuration field is out of its allowed range (also a bad plan input: `workers`,
    /// `partitions`, `slack`).
    #[error("invalid config: {field}: {reason}")]
    InvalidConfig {
        /// The field's name, as in the Rust `Config` (`lease_ttl`, `bucket_prefix`, ...).
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A partition is malformed, listed twice, or unknown.
    #[error("invalid partition {partition:?}: {reason}")]
    InvalidPartition {
        /// The partition's ID as far as it can be formed.
        partition: String,
        /// What is wrong.
        reason: String,
    },
    /// An argument the bindings cannot use (bad NATS options, a value out of range for Rust).
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// NATS could not be reached, refused the credentials, or a bucket could not be created
    /// or bound.
    #[error("nats: {reason}")]
    Nats {
        /// What went wrong.
        reason: String,
    },
    /// The worker has stopped (or stopped before the request finished).
    #[error("worker stopped")]
    Stopped,
    /// The request did not finish within its bound.
    #[error("timed out after {after_ms} ms")]
    Timeout {
        /// The bound, in milliseconds.
        after_ms: u64,
    },
    /// The partition source failed (also: what a foreign source threw that was not a
    /// `PartiError`).
    #[error("partition source: {reason}")]
    Source {
        /// What the source reported.
        reason: String,
    },
    /// Anything else the Rust side reported (a decode or state error of the core).
    #[error("{reason}")]
    Internal {
        /// What the Rust side said.
        reason: String,
    },
}

impl From<parti::parti_core::Error> for PartiError {
    fn from(e: parti::parti_core::Error) -> Self {
        use parti::parti_core::Error as E;
        match e {
            E::InvalidConfig { field, reason } => PartiError::InvalidConfig {
                field: field.to_string(),
                reason,
            },
            E::InvalidPartition { partition, reason } => {
                PartiError::InvalidPartition { partition, reason }
            }
            e @ E::UnknownStrategy { .. } => PartiError::InvalidArgument {
                reason: e.to_string(),
            },
            other => PartiError::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<parti::Error> for PartiError {
    fn from(e: parti::Error) -> Self {
        match e {
            parti::Error::Invalid(e) => e.into(),
            parti::Error::Nats(reason) => PartiError::Nats { reason },
            parti::Error::Stopped => PartiError::Stopped,
            parti::Error::Timeout(after) => PartiError::Timeout {
                after_ms: duration_ms(after),
            },
            parti::Error::NoId { waited } => PartiError::Timeout {
                after_ms: duration_ms(waited),
            },
            parti::Error::Crashed(reason) => PartiError::Internal {
                reason: format!("worker task crashed: {reason}"),
            },
            parti::Error::Missing(part) => PartiError::InvalidArgument {
                reason: format!("missing {part}"),
            },
            other => PartiError::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<NatsError> for PartiError {
    fn from(e: NatsError) -> Self {
        match e {
            NatsError::InvalidOptions(reason) => PartiError::InvalidArgument { reason },
            other => PartiError::Nats {
                reason: other.to_string(),
            },
        }
    }
}

/// A foreign partition source threw something other than a `PartiError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for PartiError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        PartiError::Source { reason: e.reason }
    }
}

/// Milliseconds, saturating.
pub(crate) fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn driver_errors_keep_their_meaning() {
        let bad = parti::Config {
            lease_ttl: Duration::from_millis(100),
            ..parti::Config::default()
        };
        let e: PartiError = parti::Error::from(bad.validate().unwrap_err()).into();
        assert!(
            matches!(&e, PartiError::InvalidConfig { field, .. } if field == "lease_ttl"),
            "{e:?}"
        );
        assert_eq!(PartiError::from(parti::Error::Stopped), PartiError::Stopped);
        assert_eq!(
            PartiError::from(parti::Error::Timeout(Duration::from_secs(3))),
            PartiError::Timeout { after_ms: 3000 }
        );
        assert_eq!(
            PartiError::from(parti::Error::Nats("down".into())),
            PartiError::Nats {
                reason: "down".into()
            }
        );
    }
}
