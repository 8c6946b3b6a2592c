//! What the in-process fleet tests share: short timings and numbered partitions.
#![allow(dead_code)]

use parti::{Config, Partition, PartitionId};
use std::collections::BTreeSet;
use std::time::Duration;

/// Short timings: a fleet settles within a second or two. Tests adjust the revoke and
/// shutdown bounds (and `expected_workers`) to their scenario.
pub fn fast_config() -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(100),
        lease_ttl: Duration::from_secs(1),
        safety_margin: Duration::from_millis(200),
        emergency_grace: Duration::from_millis(200),
        cold_start_window: Duration::from_millis(200),
        planned_scale_window: Duration::from_millis(200),
        max_scale_delay: Duration::from_millis(600),
        restart_grace: Duration::from_millis(200),
        min_rebalance_interval: Duration::from_millis(200),
        ..Config::default()
    }
}

/// Partitions `p0` .. `p{n-1}`.
pub fn partitions(n: usize) -> Vec<Partition> {
    (0..n)
        .map(|i| Partition::single(&format!("p{i}")).unwrap())
        .collect()
}

/// The IDs of [`partitions`]`(n)`.
pub fn partition_ids(n: usize) -> BTreeSet<PartitionId> {
    partitions(n).iter().map(|p| p.id().clone()).collect()
}
