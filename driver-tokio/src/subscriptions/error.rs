//! What can go wrong in the subscription manager: [`SubscriptionError`], and [`JoinedError`]
//! for every error of a manager's life at once.

use parti_core::PartitionId;
use std::fmt;
use std::time::Duration;

/// An error of the subscription manager.
///
/// Returned directly for invalid input and misuse (`Closed`, `Cancelled`, `EmptyKeys`,
/// `InvalidPartition`, `DuplicatePartition`, `InvalidTemplate`, `MissingKey`,
/// `SubjectConflict`). The others happen in the background (a subscribe that is retried, a
/// handler that panicked, a consumer that could not be created): each is reported as it
/// happens (to [`super::SubscriptionManagerBuilder::on_error`], or as
/// [`crate::DriverWarning::Subscription`] in a worker) and all of them are returned together
/// by [`super::SubscriptionManager::close`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The manager was closed before the call.
    #[error("subscription manager is closed")]
    Closed,
    /// The call was cancelled (its cancel future resolved, or the manager was closed while it
    /// waited). Changes it had already handed to the manager still complete in the background.
    #[error("operation cancelled")]
    Cancelled,
    /// A partition was given as an empty key list.
    #[error("partition key list is empty")]
    EmptyKeys,
    /// A partition's keys are malformed (an empty key, a character NATS subjects do not allow).
    #[error(transparent)]
    InvalidPartition(parti_core::Error),
    /// The same partition was given twice in one update.
    #[error("partition {partition} given twice")]
    DuplicatePartition {
        /// The repeated partition.
        partition: PartitionId,
    },
    /// A subject template was refused; the reason names the problem.
    #[error("subject template {template:?}: {reason}")]
    InvalidTemplate {
        /// The template as written.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A JetStream stream or consumer name NATS would refuse.
    #[error(
        "invalid {what} name {name:?}: it must be non-empty, without whitespace, `.`, `*`, \
         `>`, `/` or `\\`"
    )]
    InvalidName {
        /// `stream` or `consumer`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// The template names a key (`{keyN}`) the partition does not have.
    #[error("partition {partition} has {keys} key(s); the subject template needs key{index}")]
    MissingKey {
        /// The partition.
        partition: PartitionId,
        /// The key index the template uses.
        index: usize,
        /// How many keys the partition has.
        keys: usize,
    },
    /// Two partitions map to the same subject (e.g. `work.{key0}` for `a.b` and `a.c`).
    #[error("partitions {first} and {second} map to the same subject {subject}")]
    SubjectConflict {
        /// The shared subject.
        subject: String,
        /// The partition that had it first.
        first: PartitionId,
        /// The partition refused.
        second: PartitionId,
    },
    /// A core NATS subscribe failed; it is retried with backoff.
    #[error(
        "subscribing to {subject} for partition {partition} failed (attempt {attempt}): {reason}"
    )]
    Subscribe {
        /// The partition.
        partition: PartitionId,
        /// Its subject.
        subject: String,
        /// Failed attempts so far.
        attempt: u32,
        /// The client's error.
        reason: String,
    },
    /// A core NATS subscription ended without being asked to (the client was closed); it is
    /// subscribed again with backoff.
    #[error("subscription to {subject} for partition {partition} ended unexpectedly")]
    SubscriptionLost {
        /// The partition.
        partition: PartitionId,
        /// Its subject.
        subject: String,
    },
    /// A core NATS unsubscribe failed (the client is gone, so no message arrives anyway).
    #[error("unsubscribing from {subject} for partition {partition} failed: {reason}")]
    Unsubscribe {
        /// The partition.
        partition: PartitionId,
        /// Its subject.
        subject: String,
        /// The client's error.
        reason: String,
    },
    /// The message handler panicked (the message is dropped, or terminated in JetStream mode;
    /// the partition keeps being consumed).
    #[error("message handler for partition {partition} panicked: {message}")]
    HandlerPanicked {
        /// The partition of the message.
        partition: PartitionId,
        /// The panic message.
        message: String,
    },
    /// A handler of a partition being stopped did not return within the drain timeout; it
    /// was cancelled.
    #[error("handler of partition {partition} did not return within {after:?}; cancelled")]
    DrainTimedOut {
        /// The partition.
        partition: PartitionId,
        /// The drain timeout.
        after: Duration,
    },
    /// A JetStream request about the consumer failed (`create`, `delete`, `pull`); creation
    /// is retried with backoff.
    #[error(
        "consumer {consumer} on stream {stream}: {action} failed (attempt {attempt}): {reason}"
    )]
    Consumer {
        /// The stream.
        stream: String,
        /// The durable consumer's name.
        consumer: String,
        /// What was attempted.
        action: &'static str,
        /// Failed attempts so far.
        attempt: u32,
        /// The server's or client's error.
        reason: String,
    },
    /// A JetStream message could not be acknowledged (it will be redelivered: handled twice).
    #[error("acknowledging a message of partition {partition} failed: {reason}")]
    Ack {
        /// The partition of the message.
        partition: PartitionId,
        /// The client's error.
        reason: String,
    },
}

impl SubscriptionError {
    /// A stable snake_case name of the error's kind (`"subscribe"`, `"ack"`, ...), for metrics
    /// labels and for matching in other languages.
    pub fn kind(&self) -> &'static str {
        match self {
            SubscriptionError::Closed => "closed",
            SubscriptionError::Cancelled => "cancelled",
            SubscriptionError::EmptyKeys => "empty_keys",
            SubscriptionError::InvalidPartition(_) => "invalid_partition",
            SubscriptionError::DuplicatePartition { .. } => "duplicate_partition",
            SubscriptionError::InvalidTemplate { .. } => "invalid_template",
            SubscriptionError::InvalidName { .. } => "invalid_name",
            SubscriptionError::MissingKey { .. } => "missing_key",
            SubscriptionError::SubjectConflict { .. } => "subject_conflict",
            SubscriptionError::Subscribe { .. } => "subscribe",
            SubscriptionError::SubscriptionLost { .. } => "subscription_lost",
            SubscriptionError::Unsubscribe { .. } => "unsubscribe",
            SubscriptionError::HandlerPanicked { .. } => "handler_panicked",
            SubscriptionError::DrainTimedOut { .. } => "drain_timed_out",
            SubscriptionError::Consumer { .. } => "consumer",
            SubscriptionError::Ack { .. } => "ack",
        }
    }
}

/// Several [`SubscriptionError`]s at once, in the order they happened, like Go's
/// `errors.Join`: [`super::SubscriptionManager::close`] returns every error the manager hit,
/// not just the first.
///
/// At most [`JoinedError::CAPACITY`] errors are kept (a subscribe retried for hours must not
/// grow memory without bound); the rest are counted in [`JoinedError::omitted`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinedError {
    errors: Vec<SubscriptionError>,
    omitted: usize,
}

impl JoinedError {
    /// How many errors are kept; later ones are only counted.
    pub const CAPACITY: usize = 1000;

    /// The kept errors, oldest first.
    pub fn errors(&self) -> &[SubscriptionError] {
        &self.errors
    }

    /// How many errors were dropped past [`JoinedError::CAPACITY`].
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// Every error, kept or omitted.
    pub fn len(&self) -> usize {
        self.errors.len() + self.omitted
    }

    /// True when there is no error at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kept errors.
    pub fn into_errors(self) -> Vec<SubscriptionError> {
        self.errors
    }

    pub(crate) fn push(&mut self, error: SubscriptionError) {
        if self.errors.len() < Self::CAPACITY {
            self.errors.push(error);
        } else {
            self.omitted += 1;
        }
    }
}

impl fmt::Display for JoinedError {
    /// `2 subscription errors: <first>; <second>` (and `; ... N more` past the capacity).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.len();
        write!(f, "{n} subscription error{}", if n == 1 { "" } else { "s" })?;
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{e}")?;
        }
        if self.omitted > 0 {
            write!(f, "; ... {} more", self.omitted)?;
        }
        Ok(())
    }
}

impl std::error::Error for JoinedError {}

impl FromIterator<SubscriptionError> for JoinedError {
    fn from_iter<I: IntoIterator<Item = SubscriptionError>>(iter: I) -> Self {
        let mut joined = JoinedError::default();
        for e in iter {
            joined.push(e);
        }
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_errors_show_every_error() {
        let joined: JoinedError = [SubscriptionError::Closed, SubscriptionError::EmptyKeys]
            .into_iter()
            .collect();
        assert_eq!(
            joined.to_string(),
            "2 subscription errors: subscription manager is closed; partition key list is empty"
        );
    }

    #[test]
    fn joined_errors_count_past_their_capacity() {
        let joined: JoinedError = (0..JoinedError::CAPACITY + 3)
            .map(|_| SubscriptionError::Cancelled)
            .collect();
        assert_eq!(joined.errors().len(), JoinedError::CAPACITY);
        assert_eq!(joined.omitted(), 3);
        assert_eq!(joined.len(), JoinedError::CAPACITY + 3);
        assert!(joined.to_string().ends_with("; ... 3 more"));
    }
}
