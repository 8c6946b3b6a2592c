//! The partition source, implemented in the foreign language.

use crate::error::PartiError;
use crate::plan::Partition;
use futures::future::BoxFuture;
use parti::SourceError;
use std::sync::Arc;

/// The application's partition list (a database table, a config file, a service...).
///
/// Only the leader calls it: when it starts leading, on `refresh_partitions` and every
/// `source_poll_interval_ms`; give every worker of a fleet an equivalent source. `list` runs
/// on a thread of the library's blocking pool, so it may block. An error (or exception) never
/// stops the worker: it is reported as a warning event and retried with backoff; so is a call
/// that overruns the config's `source_timeout_ms`.
#[uniffi::export(foreign)]
pub trait PartitionSource: Send + Sync {
    /// The current partitions. Duplicate IDs make the whole list rejected.
    fn list(&self) -> Result<Vec<Partition>, PartiError>;
}

/// A foreign [`PartitionSource`] as the driver's `parti::PartitionSource`.
pub(crate) struct ForeignSource(pub(crate) Arc<dyn PartitionSource>);

impl parti::PartitionSource for ForeignSource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<parti::Partition>, SourceError>> {
        let source = self.0.clone();
        Box::pin(async move {
            let listed = tokio::task::spawn_blocking(move || source.list())
                .await
                .map_err(|e| SourceError::new(format!("the source panicked: {e}")))?;
            let partitions = listed.map_err(|e| match e {
                PartiError::Source { reason } => SourceError(reason),
                other => SourceError::new(other),
            })?;
            partitions
                .iter()
                .map(|p| p.to_partition().map_err(SourceError::new))
                .collect()
        })
    }
}
