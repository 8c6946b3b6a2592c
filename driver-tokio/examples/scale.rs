//! Fleet scale on one real nats-server: W workers in this process, each with its own NATS
//! connection, share P partitions. Prints a table and, last, one summary line.
//!
//! ```text
//! cargo run --release -p parti --example scale -- --workers 100 --partitions 10000
//! options: --workers W (100)  --partitions P (10000)  --idle-s S (20); --help
//! ```
//!
//! Phases, each timed from this process's clock:
//! - **cold start**: all W workers are started at once (`expected_workers = W`, so the cold
//!   start ends when the last one joined); `cold_stable_ms` runs from the first start until every
//!   worker is Stable on one generation and the partitions are owned exactly once.
//! - **idle**: KV writes to both buckets counted by a raw watcher for S seconds; the bound is one
//!   lease renewal per worker per heartbeat (plus the leader's own lease).
//! - **join**: one more worker starts; until settled again with a share for it.
//! - **crash**: a follower's task is aborted (no leave: its lease must expire); until settled
//!   without it. Expect about `lease_ttl + emergency_grace`.
//! - **plan / publish**: the core's `plan` on the crash's input (W−1 workers, the previous
//!   assignment), and, from the server's timestamps, the leader's first share write of the
//!   crash generation to its `gen` write.
//! - **resources**: the server's RSS, this process's RSS, and the CPU both used while idle.
//! - **the W² term**: the generation record lists every member and every worker reads it, so
//!   one generation costs W × its size fleet-wide; the table prints both.
//!
//! Settled-ness is polled every 100 ms (the timings have that resolution); each check is
//! linear in W + P.

use clap::Parser;
use futures::StreamExt;
use parti::kv::{NatsKv, NatsOptions};
use parti::strategy::{Balanced, PlanInput, WorkerSlot};
use parti::testing::NatsServer;
use parti::{Config, Partition, PartitionId, State, StaticSource, Worker};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The fleet to measure.
#[derive(Debug, Parser)]
#[command(
    name = "scale",
    about = "W parti workers on one nats-server: a table of costs"
)]
struct Args {
    /// Workers, each with its own NATS connection (a crash needs a follower: at least 2).
    #[arg(long, value_name = "W", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(2..=100_000))]
    workers: u32,
    /// Partitions p0 .. p{P-1}.
    #[arg(long, value_name = "P", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// Seconds of the idle window (KV writes and CPU are counted over it).
    #[arg(long = "idle-s", value_name = "S", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_s: u64,
}

/// A live worker of the fleet.
struct Member {
    handle: Worker,
    live: bool,
}

/// Whether every live member is Stable on one generation, one leads, and the live members own
/// every partition exactly once; `with` must hold a share.
fn settled(members: &[Member], total: usize, with: Option<usize>) -> bool {
    let live: Vec<&Member> = members.iter().filter(|m| m.live).collect();
    if !live.iter().all(|m| m.handle.state() == State::Stable) {
        return false;
    }
    let generations: BTreeSet<_> = live.iter().map(|m| m.handle.generation()).collect();
    let leaders = live.iter().filter(|m| m.handle.is_leader()).count();
    if generations.len() != 1 || leaders != 1 {
        return false;
    }
    if with.is_some_and(|i| members[i].handle.assignment().is_empty()) {
        return false;
    }
    let mut union = BTreeSet::new();
    let mut count = 0;
    for m in &live {
        let share = m.handle.assignment();
        count += share.len();
        union.extend(share);
    }
    count == total && union.len() == total
}

/// Polls `settled` every 100 ms until it holds; the time it took, or an error after `limit`.
async fn until_settled(
    members: &[Member],
    total: usize,
    with: Option<usize>,
    since: Instant,
    limit: Duration,
    what: &str,
) -> Result<Duration, String> {
    loop {
        if settled(members, total, with) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            let states: BTreeMap<String, usize> =
                members
                    .iter()
                    .filter(|m| m.live)
                    .fold(BTreeMap::new(), |mut acc, m| {
                        *acc.entry(m.handle.state().to_string()).or_default() += 1;
                        acc
                    });
            let odd: Vec<String> = members
                .iter()
                .filter(|m| m.live && m.handle.state() != State::Stable)
                .take(5)
                .map(|m| {
                    let h = &m.handle;
                    format!(
                        "id {:?} {} gen {:?} holds {}",
                        h.worker_id().map(|i| i.0),
                        h.state(),
                        h.generation(),
                        h.assignment().len()
                    )
                })
                .collect();
            let leaders: Vec<String> = members
                .iter()
                .filter(|m| m.live && m.handle.is_leader())
                .map(|m| format!("{:?} gen {:?}", m.handle.worker_id(), m.handle.generation()))
                .collect();
            return Err(format!(
                "{what}: not settled within {limit:?} (states {states:?}; leaders {leaders:?}; \
                 some unsettled: {odd:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects a worker's own NATS connection and starts it.
async fn start_member(url: &str, config: &Config, source: &StaticSource) -> Result<Member, String> {
    let options = NatsOptions {
        name: Some("parti-scale".into()),
        ..NatsOptions::new(url.to_string())
    };
    let (kv, _connection) = NatsKv::connect(&options, config)
        .await
        .map_err(|e| format!("connecting a worker: {e}"))?;
    let handle = Worker::builder()
        .config(config.clone())
        .nats(kv)
        .source(source.clone())
        .start()
        .await
        .map_err(|e| format!("starting a worker: {e}"))?;
    Ok(Member { handle, live: true })
}

/// One write seen by the raw watcher: whether in the assign bucket, key, server timestamp (Unix
/// ns), value size in bytes.
type Seen = (bool, String, i128, usize);

/// Watches every new write to both buckets; entries are appended to the returned log.
async fn watch_writes(url: &str, config: &Config) -> Result<Arc<Mutex<Vec<Seen>>>, String> {
    let client = async_nats::connect(url)
        .await
        .map_err(|e| format!("watcher connect: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let log = Arc::new(Mutex::new(Vec::new()));
    for (assign, bucket) in [
        (false, config.leases_bucket()),
        (true, config.assign_bucket()),
    ] {
        let store = js
            .get_key_value(&bucket)
            .await
            .map_err(|e| format!("watcher: opening {bucket}: {e}"))?;
        let mut watch = store
            .watch_all()
            .await
            .map_err(|e| format!("watcher: watching {bucket}: {e}"))?;
        let log = log.clone();
        tokio::spawn(async move {
            while let Some(Ok(entry)) = watch.next().await {
                let at = entry.created.unix_timestamp_nanos();
                let size = entry.value.len();
                log.lock().unwrap().push((assign, entry.key, at, size));
            }
        });
    }
    Ok(log)
}

/// User + system CPU time of process `pid` (`self` for this one), from `/proc/<pid>/stat`.
fn cpu_time(pid: &str) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => Ok(Duration::from_millis((u + s) * 10)), // USER_HZ = 100
        _ => Err(format!("no CPU times in /proc/{pid}/stat")),
    }
}

/// Resident memory of process `pid` in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: &str) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .ok_or(format!("no VmRSS in /proc/{pid}/status"))
}

fn unix_ns_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[tokio::main]
async fn main() -> ExitCode {
    // The workers' own logs (watch rebuilds, KV failures) with RUST_LOG, e.g. RUST_LOG=warn.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(a: &Args) -> Result<(), String> {
    let server = NatsServer::start().map_err(|e| format!("starting nats-server: {e}"))?;
    let server_pid = server.pid().ok_or("nats-server has no pid")?.to_string();
    let url = server.url();
    let config = Config {
        bucket_prefix: "scale".into(),
        expected_workers: Some(a.workers),
        id_max: (a.workers + 10).max(99),
        ..Config::default()
    };
    config.validate().map_err(|e| e.to_string())?;
    let partitions: Vec<Partition> = (0..a.partitions as usize)
        .map(|i| Partition::new(&[format!("p{i}")], Partition::DEFAULT_WEIGHT))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let source = StaticSource::new(partitions.clone());
    let total = a.partitions as usize;
    let limit = config.cold_start_window + config.lease_ttl * 10;
    println!(
        "scale workers={} partitions={} heartbeat={:?} lease_ttl={:?} cold_start_window={:?} \
         planned_scale_window={:?}",
        a.workers,
        a.partitions,
        config.heartbeat_interval,
        config.lease_ttl,
        config.cold_start_window,
        config.planned_scale_window
    );

    // Cold start: every worker at once.
    let first = Instant::now();
    let starts = (0..a.workers as usize).map(|_| start_member(&url, &config, &source));
    let mut members: Vec<Member> = futures::future::join_all(starts)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let all_started = first.elapsed();
    let cold = until_settled(&members, total, None, first, limit, "cold start").await?;

    // Idle: writes per second, and CPU.
    let log = watch_writes(&url, &config).await?;
    let (cpu0, server_cpu0) = (cpu_time("self")?, cpu_time(&server_pid)?);
    let idle_from = unix_ns_now();
    tokio::time::sleep(Duration::from_secs(a.idle_s)).await; // the measurement window, not a synchronisation
    let idle_to = unix_ns_now();
    let (cpu1, server_cpu1) = (cpu_time("self")?, cpu_time(&server_pid)?);
    let idle_writes = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, at, _)| (idle_from..idle_to).contains(at))
        .count();
    let idle_s = a.idle_s as f64;
    let writes_per_s = idle_writes as f64 / idle_s;
    let bound_per_s = f64::from(a.workers + 1) / config.heartbeat_interval.as_secs_f64();
    let cpu_pct = (cpu1 - cpu0).as_secs_f64() / idle_s * 100.0;
    let server_cpu_pct = (server_cpu1 - server_cpu0).as_secs_f64() / idle_s * 100.0;

    // Join.
    let joined_at = Instant::now();
    members.push(start_member(&url, &config, &source).await?);
    let newcomer = members.len() - 1;
    let join = until_settled(&members, total, Some(newcomer), joined_at, limit, "join").await?;

    // Crash of a follower, and the plan the leader makes for it.
    let victim = members
        .iter()
        .position(|m| m.live && !m.handle.is_leader())
        .ok_or("no follower to crash")?;
    let before: BTreeMap<PartitionId, parti::WorkerId> = members
        .iter()
        .filter_map(|m| Some((m.handle.worker_id()?, m.handle.assignment())))
        .flat_map(|(w, share)| share.into_iter().map(move |p| (p, w)))
        .collect();
    let victim_id = members[victim].handle.worker_id();
    let crash_from = unix_ns_now();
    let crashed_at = Instant::now();
    members[victim].handle.abort();
    members[victim].live = false;
    let crash = until_settled(&members, total, None, crashed_at, limit, "crash").await?;

    let ids: BTreeSet<parti::WorkerId> = members
        .iter()
        .filter(|m| m.live)
        .filter_map(|m| m.handle.worker_id())
        .filter(|id| Some(*id) != victim_id)
        .collect();
    let slots: Vec<WorkerSlot> = ids
        .into_iter()
        .map(|id| WorkerSlot { id, capacity: 1 })
        .collect();
    let input = PlanInput {
        previous: before,
        ..PlanInput::new(slots, partitions)
    };
    let plan_from = Instant::now();
    parti::parti_core::plan::plan(&Balanced::default(), &input).map_err(|e| e.to_string())?;
    let plan_ms = plan_from.elapsed().as_secs_f64() * 1e3;
    // The crash generation's writes: the first share chunk after the crash, then `gen`.
    let publish_ms = {
        let log = log.lock().unwrap();
        let after: Vec<&Seen> = log
            .iter()
            .filter(|(assign, _, at, _)| *assign && *at >= crash_from)
            .collect();
        let first_share = after.iter().find(|(_, k, _, _)| k.starts_with("worker."));
        let gen = after.iter().find(|(_, k, _, _)| k == "gen");
        match (first_share, gen) {
            (Some(s), Some(g)) if g.2 >= s.2 => Some((g.2 - s.2) as f64 / 1e6),
            _ => None,
        }
    };

    // Every worker reads every generation record, which lists every member: the one cost per
    // generation that grows as W² across the fleet.
    let gen_bytes = log
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(assign, k, _, _)| *assign && k == "gen")
        .map_or(0, |(_, _, _, size)| *size);
    let server_rss = rss_mib(&server_pid)?;
    let own_rss = rss_mib("self")?;
    println!("{:<34} {:>12}", "phase / figure", "value");
    let row = |name: &str, value: String| println!("{name:<34} {value:>12}");
    row(
        "start all workers (ms)",
        format!("{}", all_started.as_millis()),
    );
    row("cold start to stable (ms)", format!("{}", cold.as_millis()));
    row("join to settled (ms)", format!("{}", join.as_millis()));
    row("crash to settled (ms)", format!("{}", crash.as_millis()));
    row("idle KV writes/s", format!("{writes_per_s:.1}"));
    row("  bound: (W+1)/heartbeat", format!("{bound_per_s:.1}"));
    row("plan, core call (ms)", format!("{plan_ms:.1}"));
    row(
        "publish, first share → gen (ms)",
        publish_ms.map_or("n/a".into(), |ms| format!("{ms:.1}")),
    );
    row("generation record (bytes)", format!("{gen_bytes}"));
    row(
        "  read by all workers (MiB)",
        format!(
            "{:.1}",
            (gen_bytes * a.workers as usize) as f64 / (1 << 20) as f64
        ),
    );
    row("server RSS (MiB)", format!("{server_rss:.0}"));
    row("this process RSS (MiB)", format!("{own_rss:.0}"));
    row("this process CPU idle (%)", format!("{cpu_pct:.1}"));
    row("server CPU idle (%)", format!("{server_cpu_pct:.1}"));
    println!(
        "scale workers={} partitions={} cold_stable_ms={} join_ms={} crash_ms={} idle_writes_per_s={writes_per_s:.1} \
         plan_ms={plan_ms:.1} publish_ms={} server_rss_mib={server_rss:.0} cpu_idle_pct={cpu_pct:.1}",
        a.workers,
        a.partitions,
        cold.as_millis(),
        join.as_millis(),
        crash.as_millis(),
        publish_ms.map_or("n/a".into(), |ms| format!("{ms:.1}")),
    );

    let stops = members.iter().filter(|m| m.live).map(|m| {
        let h = m.handle.clone();
        async move {
            if tokio::time::timeout(Duration::from_secs(5), h.stop())
                .await
                .is_err()
            {
                h.abort();
            }
        }
    });
    futures::future::join_all(stops).await;
    Ok(())
}
