//! # parti: partition ownership for a fleet of workers, on tokio
//!
//! A fleet of workers shares a set of partitions (subjects, shards, tenants...) through NATS
//! JetStream Key-Value: each worker claims a stable ID and keeps a lease alive, one is elected
//! leader, the leader decides who owns which partition, and every worker applies its share and
//! tells the application. The protocol lives in [`parti_core`] (sans-IO); this crate runs it on
//! tokio against NATS ([`kv::NatsKv`]) or in memory ([`kv::MemoryKv`]).
//!
//! ## Running a worker
//!
//! [`Worker::builder`] takes a [`Config`], a KV store, the application's
//! [`PartitionSource`] and optionally a [`RebalanceListener`]; `start()` spawns one task that
//! owns the core and returns a cloneable [`Worker`]:
//!
//! ```no_run
//! use futures::StreamExt;
//! use parti::kv::MemoryKv;
//! use parti::{Config, Event, Partition, Worker};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), parti::Error> {
//! let partitions = (0..30)
//!     .map(|i| Partition::single(&format!("p{i}")))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let worker = Worker::builder()
//!     .config(Config::default())
//!     .memory(MemoryKv::new(Duration::from_secs(6)))
//!     .partitions(partitions)
//!     .start()
//!     .await?;
//! let mut events = worker.events();
//! while let Some(event) = events.next().await {
//!     if let Event::AssignmentChanged { assigned, revoked, .. } = event {
//!         println!("gained {assigned:?}, lost {revoked:?}");
//!     }
//! #   break;
//! }
//! worker.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Consuming the partitions' messages
//!
//! [`WorkerBuilder::subscribe`] (core NATS) and [`WorkerBuilder::consume`] (JetStream) plug
//! in the [`subscriptions`] manager: a [`SubjectTemplate`] maps each owned partition to a
//! subject, one [`MessageHandler`] receives its messages, and a revoke is confirmed only after
//! the partition's subscription is gone and its handler calls returned. The manager also works
//! on its own ([`SubscriptionManager`]).
//!
//! ## What the handle offers
//!
//! Cheap getters read a snapshot published after every step ([`Worker::state`],
//! [`Worker::assignment`], [`Worker::is_leader`], ...). [`Worker::events`]
//! is an ordered, lossless stream of [`Event`]s from the moment it is called.
//! [`Worker::refresh_partitions`], [`Worker::drain`] and [`Worker::stop`]
//! ask the worker's task and wait for its answer. [`Worker::pin`] pins a partition to a
//! worker for the whole fleet (operators without a worker use [`pins`] or `parti pin`).
//!
//! ## Metrics and logs
//!
//! [`WorkerBuilder::metrics`] records the worker's `parti_*` metrics into the application's
//! `prometheus-client` registry ([`metrics`], the `metrics` feature). The worker's task runs in
//! a `tracing` span `worker` (`prefix`, `instance`, `worker_id`) and logs every state change,
//! assignment, leadership change, committed generation (the leader's decision, with its reason)
//! and warning; install any `tracing` subscriber to see them.
//!
//! ## Cargo features
//!
//! - `metrics` (default): [`WorkerBuilder::metrics`] and the [`metrics`] module.
//! - `testing`: the `testing` module, throwaway `nats-server` processes, clusters and a
//!   fault-injecting TCP proxy for tests.
//! - `cli`: the `parti` binary (`cargo install --path driver-tokio --features cli`); it alone
//!   brings clap, hyper and tracing-subscriber, which the library never needs.
//!
//! ## Failures
//!
//! [`Error`] is returned for a bad configuration, a missing builder part, a request to a
//! stopped worker and a stop that overran its bound. Everything else (KV operations failing or
//! timing out, watches breaking, the source erroring or panicking, a listener panicking) is
//! handled inside the worker (retried, rebuilt with backoff, or dropped after a timeout) and
//! reported as an [`Event::Warning`] or [`Event::DriverWarning`]: it never stops the worker.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod error;
mod events;
mod handle;
pub mod kv;
mod listener;
#[cfg(feature = "metrics")]
pub mod metrics;
mod observe;
pub mod pins;
mod runner;
mod source;
pub mod subscriptions;
#[cfg(feature = "testing")]
pub mod testing;
mod watches;

pub use builder::{WorkerBuilder, DEFAULT_SOURCE_TIMEOUT};
pub use error::Error;
pub use events::{DriverWarning, Event, EventStream};
pub use handle::Worker;
pub use listener::{listener_failed, RebalanceListener};
pub use source::{PartitionSource, SourceError, StaticSource};
pub use subscriptions::{
    JoinedError, MessageHandler, SubjectTemplate, SubscriptionError, SubscriptionManager,
};

pub use parti_core;
pub use parti_core::strategy;
pub use parti_core::{
    AlertLevel, Config, Epoch, Generation, HandoffMode, Partition, PartitionId, State, Warning,
    WorkerId,
};
