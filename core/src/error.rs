//! The crate's error type: invalid caller input only. Protocol outcomes are events; broken
//! internal invariants panic.

/// Invalid input from the caller (configuration, partitions, encoded values, wrong-state calls).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field is out of its allowed range.
    #[error("invalid config: {field}: {reason}")]
    InvalidConfig {
        /// The field's name, as in [`crate::Config`].
        field: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A partition is malformed or listed twice.
    #[error("invalid partition {partition:?}: {reason}")]
    InvalidPartition {
        /// The partition's ID as far as it can be formed.
        partition: String,
        /// What is wrong.
        reason: String,
    },
    /// A strategy name that is not one of [`crate::strategy::NAMES`].
    #[error("unknown strategy {name:?}; valid names are {}", crate::strategy::NAMES.join(", "))]
    UnknownStrategy {
        /// The name that was given.
        name: String,
    },
    /// A value read from KV could not be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded (`lease`, `leader`, `gen`, `share`, ...).
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// An input arrived in a state where it makes no sense (e.g. after shutdown).
    #[error("input not accepted in state {state}: {input}")]
    WrongState {
        /// The worker's state.
        state: crate::State,
        /// The input that was refused.
        input: &'static str,
    },
}
