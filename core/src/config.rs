//! WorkerMachine configuration, its defaults and its validation.

use crate::{Error, WorkerId};
use std::time::Duration;

/// How partitions change hands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HandoffMode {
    /// Revoke before grant: never two owners at once. A worker that cannot renew its lease
    /// fences itself (drops every partition). The default.
    #[default]
    Strict,
    /// One-phase publish, at-least-once: owners may overlap briefly during a move. When NATS is
    /// unreachable a worker keeps its cached assignment and raises alerts (degraded mode).
    Relaxed,
}

/// Everything a worker needs to know. Build with `Config::default()` and change fields, then
/// [`Config::validate`] (which [`crate::WorkerMachine::new`] calls too).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Prefix of the KV bucket names (`<prefix>-leases`, `<prefix>-assign`). Default `parti`.
    pub bucket_prefix: String,
    /// KV replicas (1 standalone, 3 in a cluster). Default 1.
    pub replicas: u8,
    /// Lowest worker ID that may be claimed. Default 0.
    pub id_min: u32,
    /// Highest worker ID that may be claimed. Default 99.
    pub id_max: u32,
    /// ID to try first (a restart, a StatefulSet ordinal). Default none.
    pub preferred_id: Option<WorkerId>,
    /// Unique per process; tells a restarted instance from its predecessor and seeds the
    /// little randomness the core uses. Drivers fill it from the OS; [`crate::WorkerMachine::new`]
    /// refuses 0 (the default).
    pub instance_token: u64,
    /// This worker's capacity relative to others (loads are weight / capacity). Default 1.
    pub capacity: u32,
    /// How often leases are renewed. Default 2 s.
    pub heartbeat_interval: Duration,
    /// How long a lease lives without renewal; also the leases bucket's `max_age`. Default 6 s.
    pub lease_ttl: Duration,
    /// A worker that has not renewed for `lease_ttl - safety_margin` (counted from when the
    /// renewal was sent) drops every partition in Strict mode. Default 1 s.
    ///
    /// Renewals are CAS writes, one at a time, so `lease_ttl - safety_margin` must hold two
    /// round trips to the KV with room to spare: a 400 ms round trip needs more than 0.8 s.
    pub safety_margin: Duration,
    /// Extra wait between declaring a worker crashed and granting its partitions. Default
    /// 250 ms.
    ///
    /// The leader times every lease on its own monotonic clock from the last update of it that
    /// it saw, and declares the worker crashed `lease_ttl` after that update (not when the
    /// server's expiry marker arrives); its partitions are granted `emergency_grace` later, once
    /// a CAS delete of the lease (or its absence) proves no later renewal landed. Strict safety
    /// does not rest on the grace: the dead worker dropped everything `lease_ttl -
    /// safety_margin` after *sending* its last successful renewal (its own clock), which is
    /// `safety_margin` before the leader's deadline, since the leader can only have seen that
    /// renewal after it was sent. What the grace buys is margin on top of `safety_margin`:
    /// against clock *rate* differences between the two machines (the pair tolerates a rate
    /// difference of about `(safety_margin + emergency_grace) / lease_ttl`, ≈ 20 % with the
    /// defaults) and a driver that wakes the dead worker's fence timer late. It costs the same
    /// time in reassignment latency: with the defaults a SIGKILLed worker's partitions are
    /// reassigned at most `lease_ttl + emergency_grace` (+ a few ms of KV round trips) after the
    /// kill, i.e. within `lease_ttl + 0.5 s`.
    pub emergency_grace: Duration,
    /// With no committed assignment, the leader waits this long for workers to join (or for
    /// `expected_workers`). Default 30 s.
    pub cold_start_window: Duration,
    /// Cold start ends as soon as this many workers are live. Default none.
    pub expected_workers: Option<u32>,
    /// Debounce after a join: each further change restarts it, up to `max_scale_delay`.
    /// Default 10 s.
    pub planned_scale_window: Duration,
    /// Cap on how long joins may keep extending the scale window. Default 30 s.
    pub max_scale_delay: Duration,
    /// Partitions of a worker that stopped for a restart stay parked this long; if the same ID
    /// comes back they stay, otherwise they move. Default 30 s.
    pub restart_grace: Duration,
    /// Planned rebalances (joins, imbalance) are at least this far apart; emergencies, drains
    /// and refreshes bypass it. Default 10 s.
    pub min_rebalance_interval: Duration,
    /// The leader runs balancing rounds while the most loaded worker (measured load or weight,
    /// relative to capacity) stays above `1 + rebalance_threshold` times the mean, or times the
    /// heaviest partition where that is more (no placement does better than holding it alone).
    /// Default 0.05: the bound a placement after a join or leave is held to, so that rounds
    /// finish what a capped change left. Measurement noise does not trip it: loads are smoothed
    /// (`load_half_life`) and must stay above it for `min_rebalance_interval`.
    pub rebalance_threshold: f64,
    /// Most partitions moved by one imbalance round. Default 100.
    pub max_moves_per_round: u32,
    /// Half-life of the leader's smoothing of reported partition loads (an exponentially
    /// weighted moving average over time): a step change in load counts half after this long.
    /// Default 30 s.
    pub load_half_life: Duration,
    /// A partition moved by a balancing round stays where it is for this long, whatever its
    /// load does (hysteresis: a hot partition is not bounced around). Joins, leaves, crashes
    /// and drains still move it. Default 60 s.
    pub load_cooldown: Duration,
    /// The leader re-reads the partition source this often unasked, so that a change reaches
    /// the assignment even when no refresh does (a refresh asked of a worker that dies before
    /// passing it on is lost; a source may change without anyone calling refresh). Zero turns
    /// it off; else at least `heartbeat_interval`. Default 5 min (Kafka clients re-read
    /// metadata as often, `metadata.max.age.ms`).
    pub source_poll_interval: Duration,
    /// Revoke before grant (Strict) or one phase (Relaxed). Default Strict.
    pub handoff: HandoffMode,
    /// A revoke not confirmed by the driver within this is dropped anyway (and said so).
    /// Default 5 s.
    pub revoke_timeout: Duration,
    /// Bound on a graceful stop. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Degraded for this long raises an Info, Warn, Error, Critical alert. Default
    /// 0 s, 30 s, 2 min, 5 min.
    pub alert_after: [Duration; 4],
    /// Largest KV value the leader writes; bigger shares are split into chunks. Default
    /// 1,000,000 bytes (NATS allows 1 MiB including headers).
    pub max_value_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bucket_prefix: "parti".into(),
            replicas: 1,
            id_min: 0,
            id_max: 99,
            preferred_id: None,
            instance_token: 0,
            capacity: 1,
            heartbeat_interval: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(6),
            safety_margin: Duration::from_secs(1),
            emergency_grace: Duration::from_millis(250),
            cold_start_window: Duration::from_secs(30),
            expected_workers: None,
            planned_scale_window: Duration::from_secs(10),
            max_scale_delay: Duration::from_secs(30),
            restart_grace: Duration::from_secs(30),
            min_rebalance_interval: Duration::from_secs(10),
            rebalance_threshold: 0.05,
            max_moves_per_round: 100,
            load_half_life: Duration::from_secs(30),
            load_cooldown: Duration::from_secs(60),
            source_poll_interval: Duration::from_secs(300),
            handoff: HandoffMode::Strict,
            revoke_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            alert_after: [
                Duration::ZERO,
                Duration::from_secs(30),
                Duration::from_secs(120),
                Duration::from_secs(300),
            ],
            max_value_bytes: 1_000_000,
        }
    }
}

/// The longest any duration setting may be: longer ones overflow the clock arithmetic, and a
/// lease protocol has no use for them.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

impl Config {
    /// Name of the leases bucket.
    pub fn leases_bucket(&self) -> String {
        format!("{}-leases", self.bucket_prefix)
    }

    /// Name of the assignment bucket.
    pub fn assign_bucket(&self) -> String {
        format!("{}-assign", self.bucket_prefix)
    }

    /// Every duration setting with its field name.
    fn durations(&self) -> [(&'static str, Duration); 18] {
        let [info, warn, error, critical] = self.alert_after;
        [
            ("heartbeat_interval", self.heartbeat_interval),
            ("lease_ttl", self.lease_ttl),
            ("safety_margin", self.safety_margin),
            ("emergency_grace", self.emergency_grace),
            ("cold_start_window", self.cold_start_window),
            ("planned_scale_window", self.planned_scale_window),
            ("max_scale_delay", self.max_scale_delay),
            ("restart_grace", self.restart_grace),
            ("min_rebalance_interval", self.min_rebalance_interval),
            ("load_half_life", self.load_half_life),
            ("load_cooldown", self.load_cooldown),
            ("source_poll_interval", self.source_poll_interval),
            ("revoke_timeout", self.revoke_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("alert_after", info),
            ("alert_after", warn),
            ("alert_after", error),
            ("alert_after", critical),
        ]
    }

    /// Checks every field; the error names the first bad field and its allowed range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, reason: String| Err(Error::InvalidConfig { field, reason });
        let p = &self.bucket_prefix;
        if p.is_empty() || p.len() > 48 {
            return bad(
                "bucket_prefix",
                format!("{p:?} must be 1 to 48 characters long"),
            );
        }
        if let Some(c) = p
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return bad(
                "bucket_prefix",
                format!("{p:?} holds {c:?}; allowed are A-Z a-z 0-9 - _"),
            );
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(
                "replicas",
                format!("{} must be within 1..=5", self.replicas),
            );
        }
        if self.id_min > self.id_max {
            return bad(
                "id_min",
                format!("{} must not be above id_max ({})", self.id_min, self.id_max),
            );
        }
        if let Some(WorkerId(id)) = self.preferred_id {
            if !(self.id_min..=self.id_max).contains(&id) {
                return bad(
                    "preferred_id",
                    format!(
                        "{id} must be within id_min..=id_max ({}..={})",
                        self.id_min, self.id_max
                    ),
                );
            }
        }
        if self.capacity == 0 {
            return bad("capacity", "must be at least 1".into());
        }
        let ms = |d: Duration| d.as_millis();
        // before any arithmetic on them: the sums below would overflow
        for (field, d) in self.durations() {
            if d > MAX_DURATION {
                return bad(
                    field,
                    format!(
                        "{} s must be at most {} s (366 days)",
                        d.as_secs(),
                        MAX_DURATION.as_secs()
                    ),
                );
            }
        }
        if self.heartbeat_interval < Duration::from_millis(10) {
            return bad(
                "heartbeat_interval",
                format!("{} ms must be at least 10 ms", ms(self.heartbeat_interval)),
            );
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return bad(
                "lease_ttl",
                format!(
                    "{} ms must be at least 1 s (NATS TTLs are whole seconds)",
                    ms(self.lease_ttl)
                ),
            );
        }
        let poll = self.source_poll_interval;
        if !poll.is_zero() && poll < self.heartbeat_interval {
            return bad(
                "source_poll_interval",
                format!(
                    "{} ms must be 0 (off) or at least heartbeat_interval ({} ms)",
                    ms(poll),
                    ms(self.heartbeat_interval)
                ),
            );
        }
        if self.lease_ttl <= self.heartbeat_interval + self.safety_margin {
            return bad(
                "lease_ttl",
                format!(
                    "{} ms must be above heartbeat_interval + safety_margin ({} ms)",
                    ms(self.lease_ttl),
                    ms(self.heartbeat_interval + self.safety_margin)
                ),
            );
        }
        if self.planned_scale_window > self.max_scale_delay {
            return bad(
                "planned_scale_window",
                format!(
                    "{} ms must not be above max_scale_delay ({} ms)",
                    ms(self.planned_scale_window),
                    ms(self.max_scale_delay)
                ),
            );
        }
        if self.expected_workers == Some(0) {
            return bad("expected_workers", "must be at least 1 when set".into());
        }
        if !(self.rebalance_threshold.is_finite()
            && (0.0..=10.0).contains(&self.rebalance_threshold))
        {
            return bad(
                "rebalance_threshold",
                format!("{} must be within 0.0..=10.0", self.rebalance_threshold),
            );
        }
        if self.max_moves_per_round == 0 {
            return bad("max_moves_per_round", "must be at least 1".into());
        }
        if self.load_half_life.is_zero() {
            return bad("load_half_life", "must be above zero".into());
        }
        if self.revoke_timeout.is_zero() {
            return bad("revoke_timeout", "must be above zero".into());
        }
        if self.shutdown_timeout.is_zero() {
            return bad("shutdown_timeout", "must be above zero".into());
        }
        if self.alert_after.windows(2).any(|w| w[0] > w[1]) {
            return bad(
                "alert_after",
                "thresholds must not decrease (Info <= Warn <= Error <= Critical)".into(),
            );
        }
        if !(4096..=1_048_000).contains(&self.max_value_bytes) {
            return bad(
                "max_value_bytes",
                format!("{} must be within 4096..=1048000", self.max_value_bytes),
            );
        }
        Ok(())
    }
}
