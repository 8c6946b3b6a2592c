//! # parti-core: the sans-IO protocol of parti
//!
//! parti lets a fleet of workers share a set of partitions through NATS JetStream Key-Value:
//! workers claim stable IDs, keep leases alive and elect a leader; the leader decides who owns
//! which partition and commits that as a *generation*; every worker applies its share and tells
//! the application. This crate is the protocol itself, with no IO, no clock and no async
//! runtime: events go in, actions come out. `parti` (driver-tokio) runs it against NATS.
//!
//! ## The run loop
//!
//! One [`WorkerMachine`] per process. Feed it with [`WorkerMachine::handle_input`] (KV watch entries, results
//! of earlier actions, the partition list, application requests) and [`WorkerMachine::handle_timeout`].
//! **After every `handle_*` call, drain [`WorkerMachine::poll_action`] and [`WorkerMachine::poll_event`], then
//! read [`WorkerMachine::poll_timeout`]** and call `handle_timeout` when that instant is reached (a
//! spurious call is a no-op).
//!
//! ```no_run
//! use parti_core::{Action, Config, Input, Instant, WorkerMachine};
//!
//! # fn perform(_: Action) -> Option<Input> { None }
//! # fn wait_for_input_until(_: Option<Instant>) -> (Instant, Option<Input>) { (Instant::ZERO, None) }
//! let config = Config { instance_token: 0x5eed, ..Config::default() }; // unique per process
//! let mut worker = WorkerMachine::new(config, Instant::ZERO)?;
//! loop {
//!     while let Some(action) = worker.poll_action() {
//!         // KV operations, watches, partition listing, subscribe / unsubscribe. Results come
//!         // back later as inputs (here, synchronously for brevity).
//!         if let Some(input) = perform(action) {
//!             worker.handle_input(Instant::ZERO, input)?;
//!         }
//!     }
//!     while let Some(event) = worker.poll_event() {
//!         println!("{event:?}");
//!     }
//!     if worker.is_stopped() {
//!         break;
//!     }
//!     let (now, input) = wait_for_input_until(worker.poll_timeout());
//!     match input {
//!         Some(input) => worker.handle_input(now, input)?,
//!         None => worker.handle_timeout(now),
//!     }
//! }
//! # Ok::<(), parti_core::Error>(())
//! ```
//!
//! ## Outcomes are inputs
//!
//! The core never assumes a write landed: every [`Action::Kv`] carries a [`RequestId`] and its
//! outcome returns as [`Input::KvResult`]. A timed-out write has an *unknown* outcome (async-nats
//! may still apply it), so every write that matters is a CAS and the core re-reads on doubt.
//!
//! ## Determinism
//!
//! Time enters only as `now` ([`Instant`], a duration since an origin the caller picks). The
//! same inputs give the same outputs on every platform: ordered maps wherever order reaches an
//! output, and the little randomness there is comes from [`Config::instance_token`]. The
//! [`sim`] module drives the same code on a virtual clock with faults, and checks the
//! guarantees after every step.
//!
//! ## Errors and panics
//!
//! [`Error`] is returned only for invalid caller input: a bad [`Config`] (the error names the
//! field), malformed partitions, undecodable KV values, an input in the wrong state. Protocol
//! outcomes (an ID lost, leadership lost, a source failing) are [`Event`]s. Foreign bytes in KV
//! never panic. A broken internal invariant is a bug and panics.
//!
//! ## Also here
//!
//! - [`strategy`]: placement strategies ([`strategy::Balanced`] by default) and the
//!   [`strategy::Strategy`] trait; [`plan()`] and [`explain()`] preview and explain placements.
//! - [`codec`]: the versioned values stored in KV.
//! - [`sim`]: the in-memory KV with NATS semantics and the deterministic cluster simulator.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
mod config;
mod error;
mod ids;
mod io;
mod kv;
pub mod load;
pub mod partition;
pub mod plan;
mod rng;
pub mod sim;
pub mod strategy;
mod time;
mod worker;

pub use config::{Config, HandoffMode, MAX_DURATION};
pub use error::Error;
pub use ids::{short_id, Epoch, Generation, PartitionId, RequestId, WatchId, WorkerId};
pub use io::{Action, AlertLevel, Event, Input, State, Warning};
pub use kv::{filter_matches, Bucket, Entry, KvOp, KvResult, Operation};
pub use partition::Partition;
pub use plan::{explain, plan, summarize, validate_input, Explanation, PlanSummary};
pub use rng::Rng;
pub use strategy::{Plan, PlanInput, Strategy, WorkerSlot};
pub use time::Instant;
pub use worker::WorkerMachine;
