//! The worker configuration and NATS connection options as foreign code sees them: flat
//! records of plain numbers (milliseconds), converted to [`parti::Config`] and
//! [`parti::kv::NatsOptions`]. A `WorkerConfig` field left unset takes `Config::default()`'s
//! value: no config default is written down here.

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
/// the driver's two timeouts. Every `Config` field is optional and left out (`None`) takes the
/// Rust default: the defaults live in `Config::default()` only, and foreign code sets only what
/// it changes. [`default_worker_config`] spells the defaults out; [`resolve_worker_config`]
/// fills a record's unset fields with them.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct WorkerConfig {
    /// Prefix of the KV bucket names (`<prefix>-leases`, `<prefix>-assign`).
    #[uniffi(default = None)]
    pub bucket_prefix: Option<String>,
    /// KV replicas (1 standalone, 3 in a cluster).
    #[uniffi(default = None)]
    pub replicas: Option<u8>,
    /// Lowest worker ID that may be claimed.
    #[uniffi(default = None)]
    pub id_min: Option<u32>,
    /// Highest worker ID that may be claimed.
    #[uniffi(default = None)]
    pub id_max: Option<u32>,
    /// ID to try first (a restart, a StatefulSet ordinal).
    #[uniffi(default = None)]
    pub preferred_id: Option<u32>,
    /// This worker's capacity relative to the others.
    #[uniffi(default = None)]
    pub capacity: Option<u32>,
    /// How often the lease is renewed.
    #[uniffi(default = None)]
    pub heartbeat_ms: Option<u64>,
    /// How long a lease lives without renewal (whole seconds on NATS; the same for the whole
    /// fleet).
    #[uniffi(default = None)]
    pub lease_ttl_ms: Option<u64>,
    /// Strict mode fences this long before the lease would expire.
    #[uniffi(default = None)]
    pub safety_margin_ms: Option<u64>,
    /// After a crash is detected, wait this long, then reassign.
    #[uniffi(default = None)]
    pub emergency_grace_ms: Option<u64>,
    /// With no committed assignment, the leader waits this long for workers to join.
    #[uniffi(default = None)]
    pub cold_start_window_ms: Option<u64>,
    /// Cold start ends as soon as this many workers are live.
    #[uniffi(default = None)]
    pub expected_workers: Option<u32>,
    /// Debounce after a join (each further change restarts it, up to `max_scale_delay_ms`).
    #[uniffi(default = None)]
    pub planned_scale_window_ms: Option<u64>,
    /// Cap on how long joins may keep extending the scale window.
    #[uniffi(default = None)]
    pub max_scale_delay_ms: Option<u64>,
    /// Partitions of a worker that stopped for a restart stay parked this long.
    #[uniffi(default = None)]
    pub restart_grace_ms: Option<u64>,
    /// Planned rebalances are at least this far apart.
    #[uniffi(default = None)]
    pub min_rebalance_interval_ms: Option<u64>,
    /// Relative imbalance above which the leader rebalances.
    #[uniffi(default = None)]
    pub rebalance_threshold: Option<f64>,
    /// Most partitions moved by one imbalance round.
    #[uniffi(default = None)]
    pub max_moves_per_round: Option<u32>,
    /// Half-life of the leader's smoothing of reported partition loads: a step change in load
    /// counts half after this long.
    #[uniffi(default = None)]
    pub load_half_life_ms: Option<u64>,
    /// A partition moved by a balancing round stays where it is this long, whatever its load
    /// does (joins, leaves, crashes and drains still move it).
    #[uniffi(default = None)]
    pub load_cooldown_ms: Option<u64>,
    /// The leader re-reads the partition source this often unasked, so that a change reaches
    /// the assignment even when no refresh does; 0 turns it off.
    #[uniffi(default = None)]
    pub source_poll_interval_ms: Option<u64>,
    /// How partitions change hands.
    #[uniffi(default = None)]
    pub handoff: Option<HandoffMode>,
    /// A revoke not confirmed within this is dropped anyway.
    #[uniffi(default = None)]
    pub revoke_timeout_ms: Option<u64>,
    /// Bound on a graceful stop.
    #[uniffi(default = None)]
    pub shutdown_timeout_ms: Option<u64>,
    /// Degraded-mode alert thresholds (Info, Warn, Error, Critical): exactly four.
    #[uniffi(default = None)]
    pub alert_after_ms: Option<Vec<u64>>,
    /// Largest KV value the leader writes; bigger shares are split into chunks.
    #[uniffi(default = None)]
    pub max_value_bytes: Option<u64>,
    /// How long one KV operation may take; `None` is the heartbeat interval, at least 1 s.
    #[uniffi(default = None)]
    pub kv_timeout_ms: Option<u64>,
    /// How long one call of the partition source may take before it counts as failed (the
    /// driver's default, [`parti::DEFAULT_SOURCE_TIMEOUT`]; a plain number because
    /// `start_worker` reads it as one).
    #[uniffi(default = 10000)]
    pub source_timeout_ms: u64,
}

impl WorkerConfig {
    /// The Rust `Config`: every unset field is `Config::default()`'s (not validated; its
    /// `instance_token` is the default 0, which the builder replaces with a random one).
    pub fn to_config(&self) -> Result<parti::Config, PartiError> {
        let d = parti::Config::default();
        let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        let alert_after = match &self.alert_after_ms {
            None => d.alert_after,
            Some(v) => {
                let v: [u64; 4] =
                    v.as_slice()
                        .try_into()
                        .map_err(|_| PartiError::InvalidConfig {
                            field: "alert_after".into(),
                            reason: format!("{} values given; exactly 4 are needed", v.len()),
                        })?;
                v.map(Duration::from_millis)
            }
        };
        let max_value_bytes = match self.max_value_bytes {
            None => d.max_value_bytes,
            Some(n) => usize::try_from(n).map_err(|_| PartiError::InvalidConfig {
                field: "max_value_bytes".into(),
                reason: format!("{n} does not fit this platform"),
            })?,
        };
        Ok(parti::Config {
            bucket_prefix: self.bucket_prefix.clone().unwrap_or(d.bucket_prefix),
            replicas: self.replicas.unwrap_or(d.replicas),
            id_min: self.id_min.unwrap_or(d.id_min),
            id_max: self.id_max.unwrap_or(d.id_max),
            preferred_id: self.preferred_id.map(parti::WorkerId).or(d.preferred_id),
            instance_token: d.instance_token,
            capacity: self.capacity.unwrap_or(d.capacity),
            heartbeat_interval: ms(self.heartbeat_ms, d.heartbeat_interval),
            lease_ttl: ms(self.lease_ttl_ms, d.lease_ttl),
            safety_margin: ms(self.safety_margin_ms, d.safety_margin),
            emergency_grace: ms(self.emergency_grace_ms, d.emergency_grace),
            cold_start_window: ms(self.cold_start_window_ms, d.cold_start_window),
            expected_workers: self.expected_workers.or(d.expected_workers),
            planned_scale_window: ms(self.planned_scale_window_ms, d.planned_scale_window),
            max_scale_delay: ms(self.max_scale_delay_ms, d.max_scale_delay),
            restart_grace: ms(self.restart_grace_ms, d.restart_grace),
            min_rebalance_interval: ms(self.min_rebalance_interval_ms, d.min_rebalance_interval),
            rebalance_threshold: self.rebalance_threshold.unwrap_or(d.rebalance_threshold),
            max_moves_per_round: self.max_moves_per_round.unwrap_or(d.max_moves_per_round),
            load_half_life: ms(self.load_half_life_ms, d.load_half_life),
            load_cooldown: ms(self.load_cooldown_ms, d.load_cooldown),
            source_poll_interval: ms(self.source_poll_interval_ms, d.source_poll_interval),
            handoff: self.handoff.map_or(d.handoff, |mode| match mode {
                HandoffMode::Strict => parti::HandoffMode::Strict,
                HandoffMode::Relaxed => parti::HandoffMode::Relaxed,
            }),
            revoke_timeout: ms(self.revoke_timeout_ms, d.revoke_timeout),
            shutdown_timeout: ms(self.shutdown_timeout_ms, d.shutdown_timeout),
            alert_after,
            max_value_bytes,
        })
    }

    /// The record of a Rust `Config`, every field set (`kv_timeout_ms` and
    /// `source_timeout_ms` at the driver's defaults).
    pub fn from_config(c: &parti::Config) -> Self {
        WorkerConfig {
            bucket_prefix: Some(c.bucket_prefix.clone()),
            replicas: Some(c.replicas),
            id_min: Some(c.id_min),
            id_max: Some(c.id_max),
            preferred_id: c.preferred_id.map(|id| id.0),
            capacity: Some(c.capacity),
            heartbeat_ms: Some(duration_ms(c.heartbeat_interval)),
            lease_ttl_ms: Some(duration_ms(c.lease_ttl)),
            safety_margin_ms: Some(duration_ms(c.safety_margin)),
            emergency_grace_ms: Some(duration_ms(c.emergency_grace)),
            cold_start_window_ms: Some(duration_ms(c.cold_start_window)),
            expected_workers: c.expected_workers,
            planned_scale_window_ms: Some(duration_ms(c.planned_scale_window)),
            max_scale_delay_ms: Some(duration_ms(c.max_scale_delay)),
            restart_grace_ms: Some(duration_ms(c.restart_grace)),
            min_rebalance_interval_ms: Some(duration_ms(c.min_rebalance_interval)),
            rebalance_threshold: Some(c.rebalance_threshold),
            max_moves_per_round: Some(c.max_moves_per_round),
            load_half_life_ms: Some(duration_ms(c.load_half_life)),
            load_cooldown_ms: Some(duration_ms(c.load_cooldown)),
            source_poll_interval_ms: Some(duration_ms(c.source_poll_interval)),
            handoff: Some(match c.handoff {
                parti::HandoffMode::Strict => HandoffMode::Strict,
                parti::HandoffMode::Relaxed => HandoffMode::Relaxed,
            }),
            revoke_timeout_ms: Some(duration_ms(c.revoke_timeout)),
            shutdown_timeout_ms: Some(duration_ms(c.shutdown_timeout)),
            alert_after_ms: Some(c.alert_after.map(duration_ms).to_vec()),
            max_value_bytes: Some(c.max_value_bytes as u64),
            kv_timeout_ms: None,
            source_timeout_ms: duration_ms(parti::DEFAULT_SOURCE_TIMEOUT),
        }
    }
}

/// The Rust default configuration with every field spelled out: what each field of a
/// `WorkerConfig` built with no arguments stands for.
#[uniffi::export]
pub fn default_worker_config() -> WorkerConfig {
    WorkerConfig::from_config(&parti::Config::default())
}

/// `config` with every unset field filled with the Rust default (the driver timeouts kept as
/// given): what a worker started with it would use. Fails like [`validate_config`] on a value
/// that cannot be converted (it does not validate the ranges).
#[uniffi::export]
pub fn resolve_worker_config(config: WorkerConfig) -> Result<WorkerConfig, PartiError> {
    Ok(WorkerConfig {
        kv_timeout_ms: config.kv_timeout_ms,
        source_timeout_ms: config.source_timeout_ms,
        ..WorkerConfig::from_config(&config.to_config()?)
    })
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

    /// The record uniffi builds with no arguments: its `#[uniffi(default)]` values.
    fn unset() -> WorkerConfig {
        WorkerConfig {
            bucket_prefix: None,
            replicas: None,
            id_min: None,
            id_max: None,
            preferred_id: None,
            capacity: None,
            heartbeat_ms: None,
            lease_ttl_ms: None,
            safety_margin_ms: None,
            emergency_grace_ms: None,
            cold_start_window_ms: None,
            expected_workers: None,
            planned_scale_window_ms: None,
            max_scale_delay_ms: None,
            restart_grace_ms: None,
            min_rebalance_interval_ms: None,
            rebalance_threshold: None,
            max_moves_per_round: None,
            load_half_life_ms: None,
            load_cooldown_ms: None,
            source_poll_interval_ms: None,
            handoff: None,
            revoke_timeout_ms: None,
            shutdown_timeout_ms: None,
            alert_after_ms: None,
            max_value_bytes: None,
            kv_timeout_ms: None,
            source_timeout_ms: 10_000,
        }
    }

    #[test]
    fn an_unset_record_is_the_rust_default_config_in_every_field() {
        // `Config: PartialEq` compares every field.
        assert_eq!(unset().to_config().unwrap(), parti::Config::default());
        assert_eq!(
            resolve_worker_config(unset()).unwrap(),
            default_worker_config()
        );
        assert_eq!(
            unset().source_timeout_ms,
            default_worker_config().source_timeout_ms,
            "the driver's source timeout"
        );
        validate_config(unset()).unwrap();
    }

    #[test]
    fn every_field_survives_a_round_trip_through_the_rust_config() {
        let d = parti::Config::default();
        assert_eq!(default_worker_config().to_config().unwrap(), d);
        // Every field away from its default, so a field mapped to the wrong one shows.
        let changed = parti::Config {
            bucket_prefix: "other".into(),
            replicas: d.replicas + 2,
            id_min: d.id_min + 1,
            id_max: d.id_max + 1,
            preferred_id: Some(parti::WorkerId(d.id_min + 2)),
            instance_token: d.instance_token,
            capacity: d.capacity + 1,
            heartbeat_interval: d.heartbeat_interval + Duration::from_millis(1),
            lease_ttl: d.lease_ttl + Duration::from_millis(2),
            safety_margin: d.safety_margin + Duration::from_millis(3),
            emergency_grace: d.emergency_grace + Duration::from_millis(4),
            cold_start_window: d.cold_start_window + Duration::from_millis(5),
            expected_workers: Some(7),
            planned_scale_window: d.planned_scale_window + Duration::from_millis(6),
            max_scale_delay: d.max_scale_delay + Duration::from_millis(7),
            restart_grace: d.restart_grace + Duration::from_millis(8),
            min_rebalance_interval: d.min_rebalance_interval + Duration::from_millis(9),
            rebalance_threshold: d.rebalance_threshold + 0.5,
            max_moves_per_round: d.max_moves_per_round + 1,
            load_half_life: d.load_half_life + Duration::from_millis(13),
            load_cooldown: d.load_cooldown + Duration::from_millis(14),
            source_poll_interval: d.source_poll_interval + Duration::from_millis(15),
            handoff: parti::HandoffMode::Relaxed,
            revoke_timeout: d.revoke_timeout + Duration::from_millis(10),
            shutdown_timeout: d.shutdown_timeout + Duration::from_millis(11),
            alert_after: d.alert_after.map(|a| a + Duration::from_millis(12)),
            max_value_bytes: d.max_value_bytes + 1,
        };
        assert_eq!(
            WorkerConfig::from_config(&changed).to_config().unwrap(),
            changed
        );
    }

    #[test]
    fn validation_names_the_field() {
        let bad = WorkerConfig {
            lease_ttl_ms: Some(500),
            ..default_worker_config()
        };
        assert!(matches!(
            validate_config(bad),
            Err(PartiError::InvalidConfig { field, .. }) if field == "lease_ttl"
        ));
        let bad = WorkerConfig {
            load_half_life_ms: Some(0),
            ..default_worker_config()
        };
        assert!(matches!(
            validate_config(bad),
            Err(PartiError::InvalidConfig { field, .. }) if field == "load_half_life"
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
