//! Config validation names the bad field and its allowed range; partitions are validated with
//! errors that name the partition.

use parti_core::{Config, Error, Partition, WorkerId, MAX_DURATION};
use std::time::Duration;

fn field_of(c: Config) -> &'static str {
    match c.validate() {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected an InvalidConfig error, got {other:?}"),
    }
}

#[test]
fn defaults_are_valid_and_match_the_go_library() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(c.lease_ttl, Duration::from_secs(6));
    assert_eq!(c.cold_start_window, Duration::from_secs(30));
    assert_eq!(c.planned_scale_window, Duration::from_secs(10));
    assert_eq!(c.emergency_grace, Duration::from_millis(250));
    assert_eq!(c.min_rebalance_interval, Duration::from_secs(10));
    // The Go library's 0.15 let results up to 1.15x the mean stand; ours is the 1.05x bound a
    // placement is held to (issue 12), so that rounds finish what a capped change left.
    assert_eq!(c.rebalance_threshold, 0.05);
    assert_eq!((c.id_min, c.id_max), (0, 99));
}

#[test]
fn each_bad_field_is_named() {
    let d = Config::default;
    assert_eq!(
        field_of(Config {
            lease_ttl: Duration::from_secs(2),
            ..d()
        }),
        "lease_ttl"
    );
    assert_eq!(
        field_of(Config {
            heartbeat_interval: Duration::ZERO,
            ..d()
        }),
        "heartbeat_interval"
    );
    assert_eq!(
        field_of(Config {
            id_min: 10,
            id_max: 5,
            ..d()
        }),
        "id_min"
    );
    assert_eq!(
        field_of(Config {
            preferred_id: Some(WorkerId(100)),
            ..d()
        }),
        "preferred_id"
    );
    assert_eq!(
        field_of(Config {
            bucket_prefix: "a.b".into(),
            ..d()
        }),
        "bucket_prefix"
    );
    assert_eq!(
        field_of(Config {
            bucket_prefix: String::new(),
            ..d()
        }),
        "bucket_prefix"
    );
    assert_eq!(
        field_of(Config {
            source_poll_interval: Duration::from_millis(500),
            ..d()
        }),
        "source_poll_interval"
    );
    // zero turns the poll off
    Config {
        source_poll_interval: Duration::ZERO,
        ..d()
    }
    .validate()
    .unwrap();
    assert_eq!(field_of(Config { replicas: 0, ..d() }), "replicas");
    assert_eq!(field_of(Config { capacity: 0, ..d() }), "capacity");
    assert_eq!(
        field_of(Config {
            expected_workers: Some(0),
            ..d()
        }),
        "expected_workers"
    );
    assert_eq!(
        field_of(Config {
            rebalance_threshold: -0.1,
            ..d()
        }),
        "rebalance_threshold"
    );
    assert_eq!(
        field_of(Config {
            rebalance_threshold: f64::NAN,
            ..d()
        }),
        "rebalance_threshold"
    );
    assert_eq!(
        field_of(Config {
            max_moves_per_round: 0,
            ..d()
        }),
        "max_moves_per_round"
    );
    assert_eq!(
        field_of(Config {
            revoke_timeout: Duration::ZERO,
            ..d()
        }),
        "revoke_timeout"
    );
    assert_eq!(
        field_of(Config {
            shutdown_timeout: Duration::ZERO,
            ..d()
        }),
        "shutdown_timeout"
    );
    assert_eq!(
        field_of(Config {
            planned_scale_window: Duration::from_secs(60),
            ..d()
        }),
        "planned_scale_window"
    );
    assert_eq!(
        field_of(Config {
            max_value_bytes: 2 << 20,
            ..d()
        }),
        "max_value_bytes"
    );
    let mut alerts = d();
    alerts.alert_after[1] = Duration::from_secs(500);
    assert_eq!(field_of(alerts), "alert_after");
}

#[test]
fn messages_say_the_allowed_range() {
    let err = Config {
        lease_ttl: Duration::from_secs(2),
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: lease_ttl: 2000 ms must be above heartbeat_interval + safety_margin (3000 ms)"
    );
}

#[test]
fn worker_new_refuses_a_missing_instance_token() {
    let err =
        parti_core::WorkerMachine::new(Config::default(), parti_core::Instant::ZERO).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "instance_token",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn worker_new_refuses_an_invalid_config() {
    let bad = Config {
        replicas: 9,
        ..Config::default()
    };
    assert!(matches!(
        parti_core::WorkerMachine::new(bad, parti_core::Instant::ZERO),
        Err(Error::InvalidConfig {
            field: "replicas",
            ..
        })
    ));
}

#[test]
fn partitions_are_validated_by_name() {
    let msg = |r: Result<Partition, Error>| r.unwrap_err().to_string();
    assert_eq!(
        msg(Partition::new::<&str>(&[], 1)),
        "invalid partition \"\": key list is empty"
    );
    assert!(msg(Partition::new(&["orders", ""], 1)).contains("key 1 is empty"));
    assert!(msg(Partition::new(&["orders", "a b"], 1)).contains("holds ' '"));
    assert!(msg(Partition::new(&["orders", "a.b"], 1)).contains("holds '.'"));
    assert!(msg(Partition::new(&["orders", "*"], 1)).contains("holds '*'"));
    assert!(msg(Partition::new(&["orders", "0"], 0))
        .contains("\"orders.0\": weight 0 is out of range; allowed 1..="));
    let p = Partition::new(&["orders", "7"], 5).unwrap();
    assert_eq!(p.subject(), "orders.7");
    assert_eq!(p.keys().collect::<Vec<_>>(), ["orders", "7"]);
    let dup = parti_core::partition::validate_partitions(&[p.clone(), p]).unwrap_err();
    assert_eq!(
        dup.to_string(),
        "invalid partition \"orders.7\": listed twice"
    );
}

/// Durations beyond [`MAX_DURATION`] are refused naming the field, before any arithmetic on
/// them (a heartbeat and a safety margin of 10^19 s each overflowed their sum: a panic).
#[test]
fn durations_above_the_bound_are_refused_naming_the_field() {
    let huge = Duration::from_secs(10_000_000_000_000_000_000);
    let err = Config {
        heartbeat_interval: huge,
        safety_margin: huge,
        lease_ttl: huge,
        ..Config::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: heartbeat_interval: 10000000000000000000 s must be at most 31622400 s \
         (366 days)"
    );
    let one_more = MAX_DURATION + Duration::from_secs(1);
    let d = Config::default;
    assert_eq!(
        field_of(Config {
            restart_grace: one_more,
            ..d()
        }),
        "restart_grace"
    );
    assert_eq!(
        field_of(Config {
            alert_after: [Duration::ZERO, Duration::ZERO, Duration::ZERO, one_more],
            ..d()
        }),
        "alert_after"
    );
    Config {
        source_poll_interval: MAX_DURATION,
        load_cooldown: MAX_DURATION,
        ..d()
    }
    .validate()
    .unwrap();
}
