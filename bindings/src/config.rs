//! The worker configuration and NATS connection options as foreign code sees them: flat
//! records of plain numbers (milliseconds) with the Rust defaults, converted to
//! [`parti::Config`] and [`parti::kv::NatsOptions`].

use crate::error::{duration_ms, PartiError};
use std::path::PathBuf;
use std::time::Duration;

/// How partitions change hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum HandoffMode {
    /// Revoke before grant: never two owners at once (the default).
    Strict,
    /// One-phase handoff, at-least-once; keeps its partitions while NATS is unreachable.
    Relaxed,
}

/// A worker's configuration: the fields of the Rust `Config` (durations in milliseconds) plus
/// the driver's two timeouts. Every field has the Rust default, so foreign code sets only what
/// it changes; [`default_worker_config`] returns the same values.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct WorkerConfig {
    /// Prefix of the KV bucket names (`<prefix>-leases`, `<prefix>-assign`).
    #[uniffi(default = "parti")]
    pub bucket_prefix: String,
    /// KV replicas (1 standalone, 3 in a cluster).
    #[uniffi(default = 1)]
    pub replicas: u8,
    /// Lowest worker ID that may be claimed.
    #[uniffi(default = 0)]
    pub id_min: u32,
    /// Highest worker ID that may be claimed.
    #[uniffi(default = 99)]
    pub id_max: u32,
    /// ID to try first (a restart, a StatefulSet ordinal).
    #[uniffi(default = None)]
    pub preferred_id: Option<u32>,
    /// This worker's capacity relative to the others.
    #[uniffi(default = 1)]
    pub capacity: u32,
    /// How often the lease is renewed.
    #[uniffi(default = 2000)]
    pub heartbeat_ms: u64,
    /// How long a lease lives without renewal (whole seconds on NATS; the same for the whole
    /// fleet).
    #[uniffi(default = 6000)]
    pub lease_ttl_ms: u64,
    /// Strict mode fences this long before the lease would expire.
    #[uniffi(default = 1000)]
    pub safety_margin_ms: u64,
    /// After a crash is detected, wait this long, then reassign.
    #[uniffi(default = 250)]
    pub emergency_grace_ms: u64,
    /// With no committed assignment, the leader waits this long for workers to join.
    #[uniffi(default = 30000)]
    pub cold_start_window_ms: u64,
    /// Cold start ends as soon as this many workers are live.
    #[uniffi(default = None)]
    pub expected_workers: Option<u32>,
    /// Debounce after a join (each further change restarts it, up to `max_scale_delay_ms`).
    #[uniffi(default = 10000)]
    pub planned_scale_window_ms: u64,
    /// Cap on how long joins may keep extending the scale window.
    #[uniffi(default = 30000)]
    pub max_scale_delay_ms: u64,
    /// Partitions of a worker that stopped for a restart stay parked this long.
    #[uniffi(default = 30000)]
    pub restart_grace_ms: u64,
    /// Planned rebalances are at least this far apart.
    #[uniffi(default = 10000)]
    pub min_rebalance_interval_ms: u64,
    /// Relative imbalance above which the leader rebalances.
    #[uniffi(default = 0.15)]
    pub rebalance_threshold: f64,
    /// Most partitions moved by one imbalance round.
    #[uniffi(default = 100)]
    pub max_moves_per_round: u32,
    /// How partitions change hands; `None` is Strict.
    #[uniffi(default = None)]
    pub handoff: Option<HandoffMode>,
    /// A revoke not confirmed within this is dropped anyway.
    #[uniffi(default = 5000)]
    pub revoke_timeout_ms: u64,
    /// Bound on a graceful stop.
    #[uniffi(default = 10000)]
    pub shutdown_timeout_ms: u64,
    /// Degraded-mode alert thresholds (Info, Warn, Error, Critical); `None` is
    /// 0 s, 30 s, 2 min, 5 min.
    #[uniffi(default = None)]
    pub alert_after_ms: Option<Vec<u64>>,
    /// Largest KV value the leader writes; bigger shares are split into chunks.
    #[uniffi(default = 1000000)]
    pub max_value_bytes: u64,
    /// How long one KV operation may take; `None` is the heartbeat interval, at least 1 s.
    #[uniffi(default = None)]
    pub kv_timeout_ms: Option<u64>,
    /// How long one call of the partition source may take before it counts as failed.
    #[uniffi(default = 10000)]
    pub source_timeout_ms: u64,
}

impl WorkerConfig {
    /// The Rust `Config` (not validated; its `instance_token` is 0, which the builder replaces
    /// with a random one).
    pub fn to_config(&self) -> Result<parti::Config, PartiError> {
        let ms = Duration::from_millis;
        let alert_after = match &self.alert_after_ms {
            None => parti::Config::default().alert_after,
            Some(v) => {
                let v: [u64; 4] =
                    v.as_slice()
                        .try_into()
                        .map_err(|_| PartiError::InvalidConfig {
                            field: "alert_after".into(),
                            reason: format!("{} values given; exactly 4 are needed", v.len()),
                        })?;
                v.map(ms)
            }
        };
        let max_value_bytes =
            usize::try_from(self.max_value_bytes).map_err(|_| PartiError::InvalidConfig {
                field: "max_value_bytes".into(),
                reason: format!("{} does not fit this platform", self.max_value_bytes),
            })?;
        Ok(parti::Config {
            bucket_prefix: self.bucket_prefix.clone(),
            replicas: self.replicas,
            id_min: self.id_min,
            id_max: self.id_max,
            preferred_id: self.preferred_id.map(parti::WorkerId),
            instance_token: 0,
            capacity: self.capacity,
            heartbeat_interval: ms(self.heartbeat_ms),
            lease_ttl: ms(self.lease_ttl_ms),
            safety_margin: ms(self.safety_margin_ms),
            emergency_grace: ms(self.emergency_grace_ms),
            cold_start_window: ms(self.cold_start_window_ms),
            expected_workers: self.expected_workers,
            planned_scale_window: ms(self.planned_scale_window_ms),
            max_scale_delay: ms(self.max_scale_delay_ms),
            restart_grace: ms(self.restart_grace_ms),
            min_rebalance_interval: ms(self.min_rebalance_interval_ms),
            rebalance_threshold: self.rebalance_threshold,
            max_moves_per_round: self.max_moves_per_round,
            handoff: match self.handoff {
                None | Some(HandoffMode::Strict) => parti::HandoffMode::Strict,
                Some(HandoffMode::Relaxed) => parti::HandoffMode::Relaxed,
            },
            revoke_timeout: ms(self.revoke_timeout_ms),
            shutdown_timeout: ms(self.shutdown_timeout_ms),
            alert_after,
            max_value_bytes,
        })
    }

    /// The record for a Rust `Config` (driver timeouts at their defaults).
    pub fn from_config(c: &parti::Config) -> Self {
        WorkerConfig {
            bucket_prefix: c.bucket_prefix.clone(),
            replicas: c.replicas,
            id_min: c.id_min,
            id_max: c.id_max,
            preferred_id: c.preferred_id.map(|id| id.0),
            capacity: c.capacity,
            heartbeat_ms: duration_ms(c.heartbeat_interval),
            lease_ttl_ms: duration_ms(c.lease_ttl),
            safety_margin_ms: duration_ms(c.safety_margin),
            emergency_grace_ms: duration_ms(c.emergency_grace),
            cold_start_window_ms: duration_ms(c.cold_start_window),
            expected_workers: c.expected_workers,
            planned_scale_window_ms: duration_ms(c.planned_scale_window),
            max_scale_delay_ms: duration_ms(c.max_scale_delay),
            restart_grace_ms: duration_ms(c.restart_grace),
            min_rebalance_interval_ms: duration_ms(c.min_rebalance_interval),
            rebalance_threshold: c.rebalance_threshold,
            max_moves_per_round: c.max_moves_per_round,
            handoff: None,
            revoke_timeout_ms: duration_ms(c.revoke_timeout),
            shutdown_timeout_ms: duration_ms(c.shutdown_timeout),
            alert_after_ms: None,
            max_value_bytes: c.max_value_bytes as u64,
            kv_timeout_ms: None,
            source_timeout_ms: 10_000,
        }
    }
}

/// The default configuration (the same values as a `WorkerConfig` built with no arguments).
#[uniffi::export]
pub fn default_worker_config() -> WorkerConfig {
    WorkerConfig::from_config(&parti::Config::default())
}

/// Checks every field as the worker will; the error names the first bad field
/// ([`PartiError::InvalidConfig`]).
#[uniffi::export]
pub fn validate_config(config: WorkerConfig) -> Result<(), PartiError> {
    config.to_config()?.validate()?;
    Ok(())
}

/// How to reach and authenticate to NATS (the Rust `NatsOptions`, durations in milliseconds).
#[derive(Clone, PartialEq, uniffi::Record)]
pub struct NatsOptions {
    /// Server URLs (`nats://host:port`, `tls://host:port`); more than one for a cluster.
    /// Credentials go in the fields below, not in a URL.
    pub urls: Vec<String>,
    /// User name (with `password`).
    #[uniffi(default = None)]
    pub user: Option<String>,
    /// Password (with `user`).
    #[uniffi(default = None)]
    pub password: Option<String>,
    /// Authentication token.
    #[uniffi(default = None)]
    pub token: Option<String>,
    /// NKey seed (`SU...`).
    #[uniffi(default = None)]
    pub nkey_seed: Option<String>,
    /// Path of a `.creds` file (JWT and NKey seed).
    #[uniffi(default = None)]
    pub creds_file: Option<String>,
    /// CA certificate (PEM) to verify the server with; when set, TLS is required.
    #[uniffi(default = None)]
    pub tls_ca_file: Option<String>,
    /// How often the client pings the server (a silent partition shows after about three).
    #[uniffi(default = 2000)]
    pub ping_interval_ms: u64,
    /// Budget of every KV operation and JetStream request.
    #[uniffi(default = 2000)]
    pub request_timeout_ms: u64,
    /// Longest wait between two reconnect attempts.
    #[uniffi(default = 1000)]
    pub reconnect_max_delay_ms: u64,
    /// Connection name shown by the server's monitoring.
    #[uniffi(default = Some("parti"))]
    pub name: Option<String>,
}

impl std::fmt::Debug for NatsOptions {
    /// Delegates to the Rust options' `Debug`, which hides every secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_options().fmt(f)
    }
}

impl NatsOptions {
    /// The Rust options.
    pub fn to_options(&self) -> parti::kv::NatsOptions {
        let ms = Duration::from_millis;
        parti::kv::NatsOptions {
            urls: self.urls.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            nkey_seed: self.nkey_seed.clone(),
            creds_file: self.creds_file.as_ref().map(PathBuf::from),
            tls_ca_file: self.tls_ca_file.as_ref().map(PathBuf::from),
            ping_interval: ms(self.ping_interval_ms),
            request_timeout: ms(self.request_timeout_ms),
            reconnect_max_delay: ms(self.reconnect_max_delay_ms),
            name: self.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_record_round_trips_to_the_default_config() {
        let record = default_worker_config();
        assert_eq!(record.to_config().unwrap(), parti::Config::default());
        assert_eq!(record.bucket_prefix, "parti");
        assert_eq!(record.heartbeat_ms, 2000);
        assert_eq!(record.lease_ttl_ms, 6000);
        assert_eq!(record.max_value_bytes, 1_000_000);
        validate_config(record).unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let bad = WorkerConfig {
            lease_ttl_ms: 500,
            ..default_worker_config()
        };
        assert!(matches!(
            validate_config(bad),
            Err(PartiError::InvalidConfig { field, .. }) if field == "lease_ttl"
        ));
        let bad = WorkerConfig {
            alert_after_ms: Some(vec![1, 2]),
            ..default_worker_config()
        };
        assert!(matches!(
            validate_config(bad),
            Err(PartiError::InvalidConfig { field, .. }) if field == "alert_after"
        ));
    }

    #[test]
    fn nats_options_keep_every_field_and_hide_secrets() {
        let o = NatsOptions {
            urls: vec!["nats://a:1".into(), "nats://b:2".into()],
            user: Some("u".into()),
            password: Some("secret-pw".into()),
            token: None,
            nkey_seed: None,
            creds_file: Some("/x.creds".into()),
            tls_ca_file: None,
            ping_interval_ms: 500,
            request_timeout_ms: 1000,
            reconnect_max_delay_ms: 200,
            name: Some("n".into()),
        };
        let r = o.to_options();
        assert_eq!(r.urls.len(), 2);
        assert_eq!(r.ping_interval, Duration::from_millis(500));
        assert_eq!(r.creds_file, Some(PathBuf::from("/x.creds")));
        assert!(!format!("{o:?}").contains("secret-pw"));
    }
}
