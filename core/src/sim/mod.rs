//! The deterministic cluster simulator: the protocol with no network.
//!
//! [`Sim`] runs N [`crate::WorkerMachine`]s on a virtual clock against [`MemKv`], an in-memory KV with
//! NATS semantics, through a simulated [`Network`] with seeded delays, drops and writes that
//! time out yet land later. Faults — crash, restart, graceful stop, drain, isolation, KV outage,
//! leader kill, clock-rate skew, partition changes — are verbs on [`Sim`] or a [`Schedule`] of
//! [`Fault`]s. After every step the guarantees of DESIGN §5 are checked (see
//! [`invariants`](crate::sim::ViolationKind)); a failing seed prints a replayable report.
//!
//! ```no_run
//! use parti_core::sim::{numbered_partitions, Sim, SimConfig};
//! use parti_core::Config;
//! use std::time::Duration;
//!
//! let template = Config { expected_workers: Some(3), ..Config::default() };
//! let mut sim = Sim::new(template, SimConfig::default(), 42).unwrap();
//! sim.set_partitions(numbered_partitions(100));
//! let nodes: Vec<_> = (0..3).map(|_| sim.add_node()).collect();
//! sim.converge(Duration::from_secs(60)).unwrap();
//! let leader = sim.kill_leader().unwrap();
//! sim.run_for(Duration::from_secs(1));
//! sim.restart(leader);
//! sim.converge(Duration::from_secs(120)).unwrap();
//! assert!(sim.violations().is_empty(), "{}", sim.trace().tail(50));
//! # let _ = nodes;
//! ```
//!
//! Random runs: [`random_schedule`] + [`run_schedule`] (or [`run_seed`]); the `sim` example runs
//! many seeds in parallel.
#![warn(missing_docs)]

mod cluster;
mod converge;
mod faults;
mod holdings;
mod invariants;
mod kv;
mod load;
mod net;
mod node;
mod observe;
mod queue;
mod schedule;
mod trace;

pub use cluster::{Sim, SimConfig, Stats};
pub use faults::{numbered_partitions, Fault};
pub use invariants::{Violation, ViolationKind};
pub use kv::MemKv;
pub use load::LoadSpec;
pub use net::{Change, Delivery, NetConfig, NetStats, Network};
pub use node::{NodeClock, NodeStatus};
pub use schedule::{
    random_schedule, run_schedule, run_seed, settle_bound, Outcome, RunSpec, Schedule,
};
pub use trace::{Trace, TraceEntry, TraceKind};

use crate::Rng;
use std::fmt;
use std::time::Duration;

/// A simulated machine, by index in the order nodes were added. Stable across restarts (each
/// process on it is a new incarnation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A duration drawn uniformly from the inclusive range `(lo, hi)` (nanosecond resolution).
pub(crate) fn rand_between(rng: &mut Rng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = (hi - lo).as_nanos().min(u64::MAX as u128 - 1) as u64;
    lo + Duration::from_nanos(rng.below(span + 1))
}
