//! Where the partitions come from: the application's list.
//!
//! Only the leader asks its source, when it starts leading, on
//! [`crate::Worker::refresh_partitions`] and every `Config::source_poll_interval`; every
//! worker of a fleet should therefore be given an equivalent source. A source that fails (or
//! panics, or hangs past the builder's `source_timeout`) never stops a worker: the failure is
//! reported as a [`crate::Warning::SourceFailed`] event and the core retries with backoff.

use futures::future::BoxFuture;
use parti_core::Partition;
use std::sync::{Arc, RwLock};

/// Why a [`PartitionSource`] could not list its partitions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl SourceError {
    /// An error with this description.
    pub fn new(reason: impl std::fmt::Display) -> Self {
        SourceError(reason.to_string())
    }
}

impl From<String> for SourceError {
    fn from(reason: String) -> Self {
        SourceError(reason)
    }
}

impl From<&str> for SourceError {
    fn from(reason: &str) -> Self {
        SourceError(reason.to_owned())
    }
}

impl From<parti_core::Error> for SourceError {
    fn from(e: parti_core::Error) -> Self {
        SourceError(e.to_string())
    }
}

/// The application's partition list (a database table, a config file, a service...).
///
/// Object safe: the worker holds it as `Arc<dyn PartitionSource>`. Implement `list` with
/// `Box::pin(async move { ... })`.
pub trait PartitionSource: Send + Sync + 'static {
    /// The current partitions. Called by the leader only; may be called again at any time.
    /// Duplicate IDs make the whole list rejected (reported as a warning).
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>>;
}

impl<S: PartitionSource + ?Sized> PartitionSource for Arc<S> {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
        (**self).list()
    }
}

/// A fixed list that the application may replace at any time.
///
/// Clones share the list: keep a clone, give another to the builder, and
/// [`StaticSource::update`] it from any thread; then call
/// [`crate::Worker::refresh_partitions`] so the leader re-reads it at once. Reads are a
/// lock held for one `Arc` clone, so readers never see a half-written list.
#[derive(Clone, Debug, Default)]
pub struct StaticSource {
    list: Arc<RwLock<Arc<Vec<Partition>>>>,
}

impl StaticSource {
    /// A source that lists `partitions`.
    pub fn new(partitions: Vec<Partition>) -> Self {
        StaticSource {
            list: Arc::new(RwLock::new(Arc::new(partitions))),
        }
    }

    /// Replaces the list (for every clone of this source).
    pub fn update(&self, partitions: Vec<Partition>) {
        let new = Arc::new(partitions);
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = new;
    }

    /// The current list: a cheap snapshot that later updates do not change.
    pub fn partitions(&self) -> Arc<Vec<Partition>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl PartitionSource for StaticSource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Partition>, SourceError>> {
        let list = self.partitions();
        Box::pin(async move { Ok(list.as_ref().clone()) })
    }
}

impl From<Vec<Partition>> for StaticSource {
    fn from(partitions: Vec<Partition>) -> Self {
        StaticSource::new(partitions)
    }
}
