//! `parti worker`: one real worker process against NATS. It logs every event on one
//! timestamped line and stops gracefully on SIGTERM or SIGINT. With `--subscribe` it consumes
//! its partitions' subjects (core NATS, or a JetStream work queue with `--jetstream`) and
//! can record every handled message (`--record`, see `record.rs`).

use crate::common::{
    compact, fmt_duration, load_partitions, nats_error, numbered_partitions, timestamp, truncate,
    NatsArgs,
};
use crate::logs::LogArgs;
use crate::record::Recorder;
use crate::{CliError, CliResult};
use parti::kv::{NatsError, NatsKv};
use parti::{
    Config, DriverWarning, Event, HandoffMode, SubjectTemplate, SubscriptionError, Worker, WorkerId,
};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `parti worker`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("nats", |a| a.required(true)))]
pub struct WorkerArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Prefix of the fleet's KV buckets.
    #[arg(long, default_value_t = parti::Config::default().bucket_prefix, value_name = "P")]
    prefix: String,
    /// Serve partitions p0 .. p{N-1} (every worker of a fleet must be given the same list).
    #[arg(long, value_name = "N", default_value_t = 64, conflicts_with = "partitions_file",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    partitions: u32,
    /// Serve the partitions in FILE: a JSON array of IDs, a JSON object of ID to weight, or
    /// one 'ID [WEIGHT]' per line.
    #[arg(long, value_name = "FILE")]
    partitions_file: Option<PathBuf>,
    /// Try this worker ID first (e.g. a StatefulSet ordinal).
    #[arg(long, value_name = "N")]
    id_preferred: Option<u32>,
    /// Revoke before grant: never two owners at once (the default).
    #[arg(long, conflicts_with = "relaxed")]
    strict: bool,
    /// One-phase handoff, at-least-once; keeps its partitions while NATS is unreachable.
    #[arg(long)]
    relaxed: bool,
    #[arg(long, value_name = "MS", help = format!(
        "Lease renewal interval in milliseconds (default {})",
        default_ms(|c| c.heartbeat_interval)))]
    heartbeat_ms: Option<u64>,
    #[arg(long, value_name = "MS", help = format!(
        "Lease TTL in milliseconds (default {}; whole seconds on NATS). Every worker of a \
         fleet must use the same",
        default_ms(|c| c.lease_ttl)))]
    ttl_ms: Option<u64>,
    #[arg(long, value_name = "MS", help = format!(
        "Fence this long before the lease would expire (default {}, or a quarter of --ttl-ms \
         when that is smaller)",
        default_ms(|c| c.safety_margin)))]
    safety_margin_ms: Option<u64>,
    #[arg(long, value_name = "MS", help = format!(
        "Cold-start window and scale debounce in milliseconds (defaults {} and {}): how long \
         the leader waits for more workers before the first assignment, and after a join \
         before moving partitions. Nothing else",
        default_ms(|c| c.cold_start_window), default_ms(|c| c.planned_scale_window)))]
    window_ms: Option<u64>,
    #[arg(long, value_name = "MS", help = format!(
        "With --restart: how long a stopped (SIGTERM) worker's partitions stay parked for its \
         restart before they move (default {})",
        default_ms(|c| c.restart_grace)))]
    restart_grace_ms: Option<u64>,
    #[arg(long, value_name = "MS", help = format!(
        "Least time between two load rebalancing rounds (default {})",
        default_ms(|c| c.min_rebalance_interval)))]
    min_rebalance_interval_ms: Option<u64>,
    /// Cold start ends as soon as this many workers are live.
    #[arg(long, value_name = "N")]
    expected_workers: Option<u32>,
    /// Replicas of the fleet's KV buckets: 1 on one server, 3 (or 5) in a cluster. Every
    /// worker of a fleet must use the same.
    #[arg(long, value_name = "N", default_value_t = Config::default().replicas)]
    replicas: u8,
    /// This worker's capacity relative to the others.
    #[arg(long, value_name = "N", default_value_t = Config::default().capacity)]
    capacity: u32,
    /// On SIGTERM / SIGINT, stop for a restart that follows (lease marked departing, share
    /// parked for --restart-grace-ms so the restarted worker resumes it) instead of handing
    /// the partitions off at once (the default, like Kafka's close()).
    #[arg(long)]
    restart: bool,
    /// Consume every owned partition's subject, made from TEMPLATE: `{keys}` is the
    /// partition's keys joined by '.', `{key0}`, `{key1}`.. one key (e.g. 'work.{keys}').
    /// Core NATS unless --jetstream is given.
    #[arg(long, value_name = "TEMPLATE")]
    subscribe: Option<String>,
    /// With --subscribe: consume from this JetStream stream (work-queue retention, created
    /// beforehand) through one durable consumer per worker, acknowledging each message.
    #[arg(long, value_name = "STREAM", requires = "subscribe")]
    jetstream: Option<String>,
    /// With --subscribe: append one line per handled message to FILE
    /// ('<unix µs> w<id> handled <partition> <payload>'), and 'ack-failed' lines.
    #[arg(long, value_name = "FILE", requires = "subscribe")]
    record: Option<PathBuf>,
    /// Serve the worker's metrics on http://ADDR/metrics (OpenMetrics text), e.g.
    /// 127.0.0.1:9464; port 0 picks a free port (the address is logged on stdout).
    #[arg(long, value_name = "IP:PORT")]
    metrics_addr: Option<String>,
    #[command(flatten)]
    log: LogArgs,
}

/// Core's default of one timing, in milliseconds: what `--help` shows for an unset flag.
fn default_ms(field: fn(&Config) -> Duration) -> u128 {
    field(&Config::default()).as_millis()
}

impl WorkerArgs {
    /// The configuration the flags describe (not yet validated): core's defaults where no
    /// flag says otherwise.
    fn config(&self) -> Config {
        let mut c = Config {
            bucket_prefix: self.prefix.clone(),
            preferred_id: self.id_preferred.map(WorkerId),
            capacity: self.capacity,
            replicas: self.replicas,
            expected_workers: self.expected_workers,
            handoff: if self.relaxed {
                HandoffMode::Relaxed
            } else {
                HandoffMode::Strict
            },
            ..Config::default()
        };
        if let Some(ms) = self.heartbeat_ms {
            c.heartbeat_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = self.ttl_ms {
            c.lease_ttl = Duration::from_millis(ms);
            if self.heartbeat_ms.is_none() {
                c.heartbeat_interval = c.heartbeat_interval.min(c.lease_ttl / 3);
            }
            c.safety_margin = c.safety_margin.min(c.lease_ttl / 4);
            c.emergency_grace = c.emergency_grace.min(c.lease_ttl / 4);
            c.revoke_timeout = c.revoke_timeout.min(c.lease_ttl / 2);
        }
        if let Some(ms) = self.safety_margin_ms {
            c.safety_margin = Duration::from_millis(ms);
        }
        if let Some(ms) = self.window_ms {
            let w = Duration::from_millis(ms);
            c.cold_start_window = w;
            c.planned_scale_window = w;
            c.max_scale_delay = c.max_scale_delay.max(w);
        }
        if let Some(ms) = self.restart_grace_ms {
            c.restart_grace = Duration::from_millis(ms);
        }
        if let Some(ms) = self.min_rebalance_interval_ms {
            c.min_rebalance_interval = Duration::from_millis(ms);
        }
        c
    }
}

/// One timestamped line on stdout. A worker keeps running if stdout is gone.
fn log(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{} {line}", timestamp());
}

/// Runs `parti worker` until SIGTERM / SIGINT.
pub async fn run(args: WorkerArgs) -> CliResult {
    crate::logs::init(&args.log)?;
    let config = args.config();
    let options = args.nats.options("parti-worker")?;
    let urls = options.display_urls();
    config.validate().map_err(|e| {
        let flags = match &e {
            parti::parti_core::Error::InvalidConfig { field, .. } => match *field {
                "lease_ttl" | "heartbeat_interval" | "safety_margin" => {
                    "--ttl-ms, --heartbeat-ms, --safety-margin-ms"
                }
                "bucket_prefix" => "--prefix",
                "preferred_id" => "--id-preferred",
                "capacity" => "--capacity",
                "replicas" => "--replicas",
                "expected_workers" => "--expected-workers",
                "restart_grace" => "--restart-grace-ms",
                "min_rebalance_interval" => "--min-rebalance-interval-ms",
                _ => "--window-ms",
            },
            _ => "the flags",
        };
        CliError::usage(format!(
            "invalid worker configuration: {e} (adjust {flags})"
        ))
    })?;
    let partitions = match &args.partitions_file {
        Some(path) => load_partitions(path)?,
        None => numbered_partitions(0, args.partitions as usize),
    };
    let template = match &args.subscribe {
        Some(t) => Some(
            SubjectTemplate::parse(t)
                .map_err(|e| CliError::usage(format!("--subscribe {t:?}: {e}")))?,
        ),
        None => None,
    };
    if let Some(stream) = &args.jetstream {
        let bad = |c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\');
        if stream.is_empty() || stream.chars().any(bad) {
            return Err(CliError::usage(format!(
                "--jetstream {stream:?}: not a stream name (no spaces, '.', '*', '>', '/', '\\')"
            )));
        }
    }
    let recorder = Recorder::open(args.record.as_deref())?;
    // Bound before connecting, so a bad --metrics-addr fails at once.
    let metrics_listener = match &args.metrics_addr {
        Some(addr) => Some(crate::serve_metrics::bind(addr).await?),
        None => None,
    };
    // Install the handlers before anything else, so an early signal is not fatal.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| CliError::runtime(format!("cannot handle SIGTERM: {e}")))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| CliError::runtime(format!("cannot handle SIGINT: {e}")))?;
    log(format_args!(
        "starting: nats {urls}{}, prefix {}, {} partitions, {} handoff",
        auth_summary(&args.nats),
        args.prefix,
        partitions.len(),
        format!("{:?}", config.handoff).to_lowercase(),
    ));
    log(timings(&config));
    let (kv, connection) = NatsKv::connect(&options, &config)
        .await
        .map_err(|e| connect_error(&urls, &args.prefix, e))?;
    let mut builder = Worker::builder()
        .config(config)
        .nats(kv.clone())
        .connection_events(connection)
        .partitions(partitions);
    if let Some(listener) = metrics_listener {
        let mut registry = parti::metrics::Registry::default();
        builder = builder.metrics(&mut registry);
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::runtime(format!("--metrics-addr: {e}")))?;
        crate::serve_metrics::spawn(listener, std::sync::Arc::new(registry));
        log(format_args!("metrics: http://{addr}/metrics"));
    }
    if let Some(template) = template {
        let handler = recorder.handler();
        builder = match &args.jetstream {
            Some(stream) => builder.consume(kv.jetstream().clone(), stream, template, handler),
            None => builder.subscribe(kv.client().clone(), template, handler),
        };
    }
    let (worker, mut events) = builder
        .start_with_events()
        .await
        .map_err(|e| CliError::usage(format!("cannot start the worker: {e}")))?;
    if let Some(id) = worker.worker_id() {
        recorder.set_worker(id);
    }
    let on_event = |e: &Event| {
        match e {
            Event::IdClaimed(id) => recorder.set_worker(*id),
            Event::DriverWarning(DriverWarning::Subscription(SubscriptionError::Ack {
                partition,
                ..
            })) => recorder.ack_failed(partition),
            _ => {}
        }
        log(describe(e));
    };
    let signal = loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(e) => on_event(&e),
                None => return Err(CliError::runtime("the worker stopped on its own")),
            },
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };
    log(format_args!(
        "{signal}: stopping ({})",
        if args.restart {
            "for a restart: the lease is marked departing"
        } else {
            "handing off: the lease is deleted"
        }
    ));
    let stop = async {
        if args.restart {
            worker.stop_for_restart().await
        } else {
            worker.stop().await
        }
    };
    tokio::pin!(stop);
    // Keep logging what the stop does (revokes, step-down) until it is done.
    let result = loop {
        tokio::select! {
            r = &mut stop => break r,
            Some(e) = events.recv() => on_event(&e),
        }
    };
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), events.recv()).await {
        on_event(&e);
    }
    match result {
        Ok(()) => {
            log("stopped");
            Ok(())
        }
        Err(e) => Err(CliError::runtime(format!("the graceful stop failed: {e}"))),
    }
}

/// The effective timings, one line: what the flags and their defaults add up to.
fn timings(c: &Config) -> String {
    let d = |d: Duration| fmt_duration(d);
    format!(
        "timings: heartbeat {}, lease ttl {}, safety margin {}, emergency grace {}, cold start \
         window {}, scale window {} (max {}), restart grace {}, min rebalance interval {}, \
         revoke timeout {}, shutdown timeout {}",
        d(c.heartbeat_interval),
        d(c.lease_ttl),
        d(c.safety_margin),
        d(c.emergency_grace),
        d(c.cold_start_window),
        d(c.planned_scale_window),
        d(c.max_scale_delay),
        d(c.restart_grace),
        d(c.min_rebalance_interval),
        d(c.revoke_timeout),
        d(c.shutdown_timeout),
    )
}

/// How the worker authenticates, for its first line: the kind of credentials, never a secret.
fn auth_summary(nats: &NatsArgs) -> String {
    let mut parts = Vec::new();
    if let Some(user) = &nats.user {
        parts.push(format!("user {user}"));
    }
    if nats.token.is_some() {
        parts.push("token".into());
    }
    if nats.nkey_seed_file.is_some() {
        parts.push("nkey".into());
    }
    if nats.creds.is_some() {
        parts.push("creds".into());
    }
    if nats.tls_ca.is_some() {
        parts.push("tls".into());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// One clear message for each way connecting can fail.
fn connect_error(url: &str, prefix: &str, e: NatsError) -> CliError {
    if let Some(e) = nats_error(url, &e) {
        return e;
    }
    match e {
        e @ NatsError::BucketMismatch { .. } => CliError::usage(format!(
            "{e}: give every worker of the fleet the same --ttl-ms and --replicas, or use another \
             --prefix than {prefix}"
        )),
        e => CliError::runtime(format!("cannot set up the KV at {url}: {e}")),
    }
}

/// One line per event.
pub fn describe(e: &Event) -> String {
    match e {
        Event::StateChanged { from, to } => format!("state {from} -> {to}"),
        Event::IdClaimed(id) => format!("claimed worker id {id}"),
        Event::AssignmentChanged {
            generation,
            assigned,
            revoked,
            lost,
            assignment,
        } => format!(
            "assignment {generation}: +{} -{}{} = {} partitions [{}]",
            assigned.len(),
            revoked.len(),
            if lost.is_empty() {
                String::new()
            } else {
                format!(" lost {}", lost.len())
            },
            assignment.len(),
            truncate(&compact(assignment), 300)
        ),
        Event::LeadershipChanged { is_leader, epoch } => {
            if *is_leader {
                format!("leader: yes (epoch {epoch})")
            } else {
                format!("leader: no longer (epoch {epoch})")
            }
        }
        Event::Alert {
            level,
            degraded_for,
        } => format!(
            "alert {level:?}: degraded for {}",
            fmt_duration(*degraded_for)
        ),
        Event::Drained => "drained: no partitions left".into(),
        Event::Warning(w) => format!("warning: {w}"),
        Event::DriverWarning(w) => format!("warning: {w}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    fn config(flags: &[&str]) -> Config {
        let args = ["parti", "--nats", "nats://127.0.0.1:4222"];
        let cli = Cli::try_parse_from(args.iter().chain(flags)).unwrap();
        cli.worker.config()
    }

    #[test]
    fn no_flags_give_cores_default_config() {
        assert_eq!(config(&[]), Config::default());
    }

    #[test]
    fn help_shows_cores_default_of_every_timing_flag() {
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        let d = Config::default();
        for (flag, default) in [
            ("--heartbeat-ms", d.heartbeat_interval),
            ("--ttl-ms", d.lease_ttl),
            ("--safety-margin-ms", d.safety_margin),
            ("--window-ms", d.cold_start_window),
            ("--window-ms", d.planned_scale_window),
            ("--restart-grace-ms", d.restart_grace),
            ("--min-rebalance-interval-ms", d.min_rebalance_interval),
        ] {
            let start = help.find(flag).expect(flag);
            let end = help[start + 2..]
                .find("\n  -")
                .map_or(help.len(), |i| start + 2 + i);
            let text = &help[start..end];
            assert!(
                text.contains(&default.as_millis().to_string()),
                "{flag}: {default:?} in {text}"
            );
        }
        for (flag, default) in [
            ("--prefix", d.bucket_prefix.clone()),
            ("--replicas", d.replicas.to_string()),
            ("--capacity", d.capacity.to_string()),
        ] {
            let start = help.find(flag).expect(flag);
            let end = help[start + 2..]
                .find("\n  -")
                .map_or(help.len(), |i| start + 2 + i);
            assert!(
                help[start..end].contains(&format!("[default: {default}]")),
                "{flag} in {help}"
            );
        }
    }

    #[test]
    fn window_ms_sets_only_the_windows_and_each_timing_has_its_flag() {
        let defaults = Config::default();
        let c = config(&["--window-ms", "500"]);
        assert_eq!(c.cold_start_window, Duration::from_millis(500));
        assert_eq!(c.planned_scale_window, Duration::from_millis(500));
        // A SIGTERMed worker's share stays parked for the default grace.
        assert_eq!(c.restart_grace, defaults.restart_grace);
        assert_eq!(c.min_rebalance_interval, defaults.min_rebalance_interval);
        let c = config(&[
            "--window-ms",
            "500",
            "--restart-grace-ms",
            "7000",
            "--min-rebalance-interval-ms",
            "2500",
        ]);
        assert_eq!(c.restart_grace, Duration::from_millis(7000));
        assert_eq!(c.min_rebalance_interval, Duration::from_millis(2500));
        c.validate().unwrap();
    }

    #[test]
    fn the_timings_line_names_every_effective_timing() {
        let line = timings(&config(&["--ttl-ms", "3000", "--restart-grace-ms", "1500"]));
        for part in [
            "heartbeat 1s",
            "lease ttl 3s",
            "safety margin 750ms",
            "cold start window 30s",
            "scale window 10s (max 30s)",
            "restart grace 1.5s",
            "min rebalance interval 10s",
        ] {
            assert!(line.contains(part), "{part:?} in {line}");
        }
    }
}
