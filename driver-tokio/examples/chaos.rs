//! A chaos run anyone can start: real `nats-server` processes (one, or a cluster), a fleet of
//! real `parti worker` processes consuming one subject per partition, a publisher, and a
//! seeded schedule of faults; then the figures, and one verdict line.
//!
//! ```text
//! cargo run --release -p parti --example chaos -- [--cluster 3] [--workers 5] [--seconds 120]
//!     [--seed N] [--relaxed] [--jetstream] [--partitions 12] [--interval-ms 5] [--dir DIR]
//! ```
//!
//! It builds the `parti` binary (`cargo build -p parti --features cli,testing --bin parti
//! --example chaos`, same profile) unless `$PARTI_BIN` names one, and needs nats-server ≥ 2.11 (`parti::testing`
//! finds it: `$NATS_SERVER_BIN`, the repository's `.venv`, or `PATH`).
//!
//! ## What runs
//!
//! - **Servers**: one `nats-server -js` (`--cluster 1`, the default), or a routed cluster of 3
//!   (buckets and stream replicated on every node). Cluster runs give the workers a 15 s lease
//!   with a 3 s safety margin (`--ttl-ms 15000 --safety-margin-ms 3000`): a stream-leader kill
//!   costs a 4–9 s Raft election, which the 6 s default lease does not ride out.
//! - **Workers**: `--workers` slots, each a `parti worker --subscribe 'work.{keys}' --record
//!   FILE` process (`--jetstream`: consuming the work-queue stream `WORK`) over `--partitions`
//!   partitions `p0..`, connected through its own fault proxies (`parti::testing::FaultProxy`,
//!   one per server). Each process of a slot (an *incarnation*) records to its own file.
//! - **Publisher**: every `--interval-ms`, the next unique sequence number to every partition's
//!   subject `work.p<i>` (JetStream: acknowledged publishes, retried, deduplicated by
//!   `Nats-Msg-Id`).
//! - **Chaos**, for `--seconds` after the warm-up (until every partition handled a message),
//!   an action every third of a lease to a lease (2–6 s on one server, 5–15 s on a cluster),
//!   drawn from `--seed`: SIGKILL a worker (restarted 0.5–6 s later), SIGTERM a worker (a
//!   graceful stop for a restart; started again 0–4 s later), SIGKILL a server and restart it
//!   (one at a time, not within 5 s of the last restart; in a cluster, half the time the
//!   leader of a stream, and only once every replica is current again), or blackhole a
//!   worker's network for 1 s to lease TTL + 2 s. At most two workers are down at once. The
//!   schedule is seeded; the real timings around it are not, so one seed gives the same
//!   faults, not the same interleavings.
//! - Then everything is healed, the runner waits (with a deadline) until every partition
//!   handles fresh messages again, stops the publisher, waits until every message that can
//!   still be handled is (JetStream: the stream is empty), and stops the workers with SIGTERM.
//!
//! Every process it started is killed when the runner ends, also on a panic or Ctrl-C (drop
//! guards: the test kit's servers, `kill_on_drop` workers). A SIGKILL of the runner itself
//! leaves them behind.
//!
//! ## The figures
//!
//! `kills` counts the workers stopped by SIGKILL or SIGTERM, `server_kills` the servers
//! SIGKILLed. Messages sent during the warm-up are left out. Of the rest:
//!
//! - `messages`: published (core NATS: sent; JetStream: acknowledged by the stream).
//! - `double_handled`: messages handled by two incarnations, the Strict guarantee's violation
//!   ("never two owners at once").
//!   - **Core NATS**: a message is delivered only to the subscriptions that exist when the
//!     server routes it, so two incarnations that both handled it were both subscribed to the
//!     partition at that moment: both held it at once. (A killed worker handles nothing more;
//!     a blackholed one receives nothing; a revoked one only drains what it received before
//!     it unsubscribed, which is before its successor could subscribe.) Every such message
//!     counts.
//!   - **JetStream** (work queue): the message was *acknowledged* by two incarnations. A
//!     worker records a message before its handler returns and the manager acknowledges it,
//!     so a recorded handle whose ack may not have happened does not count: the last message
//!     of each partition handled by a SIGKILLed incarnation, and the last message of a
//!     partition before the worker reported that an ack of that partition failed (`ack-failed`
//!     in its record). Their redelivery is the at-least-once contract, shown as `excused`.
//! - `unhandled`: handled by nobody. In core NATS, a message published while nobody is
//!   subscribed (between a revoke and the next grant, while a server restarts) is lost by
//!   design; with `--jetstream` it must be 0.
//! - `max_reassign_ms`: for each kill (of a worker, SIGKILL or SIGTERM, or of a server), the
//!   time until every partition it interrupted handled a message sent after it, i.e. had a
//!   subscriber (a consumer) again; the longest of them. A worker kill interrupts the
//!   partitions whose last message before the kill that worker handled; a server kill, every
//!   partition. (Counting every partition for a worker kill would also count the next kills'
//!   partitions, a few seconds later.)
//!
//! The last line is exactly `chaos seconds=S workers=N servers=K kills=A server_kills=B
//! messages=M double_handled=D unhandled=U max_reassign_ms=R`. The exit status is 1 when the
//! mode's guarantee was broken (Strict: `double_handled` > 0; `--jetstream`: `unhandled` > 0),
//! 2 on a setup failure or bad flags. The run directory (logs, record files) is kept then, or
//! with `--dir`.

#[path = "chaos/fleet.rs"]
mod fleet;
#[path = "chaos/publisher.rs"]
mod publisher;
#[path = "chaos/records.rs"]
mod records;
#[path = "chaos/setup.rs"]
mod setup;

use clap::Parser;
use fleet::{Servers, Slot, WorkerSpec};
use parti::testing::FaultMode;
use publisher::{now_us, Publisher};
use records::{Disruption, Records};
use setup::{create_stream, describe_consumers, parti_bin, stream_messages, STREAM};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

/// The bucket prefix of the fleet.
const PREFIX: &str = "chaos";

/// The runner's flags.
#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "A seeded chaos run of a parti fleet on real processes"
)]
struct Args {
    /// Servers: 1 (one nats-server) or a cluster of 3 or 5.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_cluster)]
    cluster: usize,
    /// Worker processes.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=32))]
    workers: u32,
    /// How long the chaos lasts (warm-up and settling come on top).
    #[arg(long, value_name = "S", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(5..=86_400))]
    seconds: u64,
    /// Seed of the fault schedule (default: from the clock; printed).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Run the workers in Relaxed mode (double handling is then allowed).
    #[arg(long)]
    relaxed: bool,
    /// Consume a JetStream work-queue stream instead of core NATS subjects.
    #[arg(long)]
    jetstream: bool,
    /// Partitions p0 .. p{N-1}.
    #[arg(long, value_name = "N", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    partitions: u32,
    /// Milliseconds between two rounds of the publisher (one message per partition a round).
    #[arg(long, value_name = "MS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    interval_ms: u64,
    /// Keep logs and record files in DIR (default: a temporary directory, removed unless the
    /// run fails).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// `--cluster`: 1, 3 or 5 servers.
fn parse_cluster(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (1 | 3 | 5)) => Ok(n),
        Ok(n) => Err(format!(
            "{n} servers: use 1 (one server) or 3 or 5 (a cluster that survives a node kill)"
        )),
        Err(_) => Err(format!("{s:?} is not a number of servers (1, 3 or 5)")),
    }
}

/// A seeded splitmix64: the fault schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start tokio: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        tokio::select! {
            result = run(args) => match result {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: every process started is being killed");
                ExitCode::from(130)
            }
        }
    })
}

/// The run directory, removed on drop unless kept.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The lease the workers run with.
fn lease_ttl(args: &Args) -> Duration {
    if args.cluster > 1 {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(6)
    }
}

/// One line of progress, with the time since the start.
fn say(began: Instant, line: impl std::fmt::Display) {
    println!("[{:>7.2}s] {line}", began.elapsed().as_secs_f64());
}

/// Waits until `done` holds (polled every 50 ms, records read each time) or `deadline` passes;
/// returns whether it held.
async fn wait_for(
    deadline: Instant,
    records: &mut Records,
    sent: &publisher::SentLog,
    mut done: impl FnMut(&Records) -> bool,
) -> bool {
    loop {
        {
            let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
            records.poll(&sent);
        }
        if done(records) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole run; `Ok(false)` when the mode's guarantee was broken.
async fn run(args: Args) -> Result<bool, String> {
    let began = Instant::now();
    let seed = args.seed.unwrap_or_else(|| now_us() % 1_000_000);
    let mut rng = Rng(seed);
    let ttl = lease_ttl(&args);
    let dir = RunDir {
        path: match &args.dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!("parti-chaos-{}", std::process::id())),
        },
        keep: args.dir.is_some(),
    };
    std::fs::create_dir_all(&dir.path)
        .map_err(|e| format!("cannot create --dir {}: {e}", dir.path.display()))?;
    let mut dir = dir;
    let bin = parti_bin()?;
    let mode = format!(
        "{}{}",
        if args.relaxed { "relaxed" } else { "strict" },
        if args.jetstream {
            ", jetstream"
        } else {
            ", core nats"
        }
    );
    say(
        began,
        format_args!(
            "seed {seed}; {} server(s), {} workers, {} partitions, {mode}, lease {}s; dir {}",
            args.cluster,
            args.workers,
            args.partitions,
            ttl.as_secs(),
            dir.path.display()
        ),
    );
    let mut servers = Servers::start(args.cluster)
        .await
        .map_err(|e| format!("cannot start nats-server: {e}"))?;
    let urls = servers.urls();
    if args.jetstream {
        create_stream(&urls, servers.len()).await?;
    }
    let mut flags: Vec<String> = [
        "--prefix",
        PREFIX,
        "--subscribe",
        "work.{keys}",
        "--window-ms",
        "3000",
        "--restart-grace-ms",
        "3000",
        "--min-rebalance-interval-ms",
        "3000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    flags.extend([
        "--partitions".into(),
        args.partitions.to_string(),
        "--expected-workers".into(),
        args.workers.to_string(),
    ]);
    if args.cluster > 1 {
        flags.extend(["--ttl-ms", "15000", "--safety-margin-ms", "3000"].map(String::from));
        flags.extend(["--replicas".into(), args.cluster.to_string()]);
    }
    if args.jetstream {
        flags.extend(["--jetstream".into(), STREAM.into()]);
    }
    if args.relaxed {
        flags.push("--relaxed".into());
    }
    let spec = WorkerSpec {
        bin,
        dir: dir.path.clone(),
        flags,
    };
    let mut records = Records::new(args.partitions);
    let mut slots = Vec::new();
    for i in 0..args.workers as usize {
        let mut slot = Slot::new(i, &urls)
            .await
            .map_err(|e| format!("cannot start a fault proxy: {e}"))?;
        slot.start(&spec)
            .map_err(|e| format!("cannot start {}: {e}", spec.bin.display()))?;
        records.add(Slot::record_path(&spec.dir, i, 0), i, 0);
        slots.push(slot);
    }
    let publisher = Publisher::start(
        &urls,
        args.jetstream,
        args.partitions,
        Duration::from_millis(args.interval_ms),
    )
    .await?;
    let sent = publisher.log();
    // Warm-up: until every partition handled a message.
    let warm = wait_for(
        Instant::now() + Duration::from_secs(60),
        &mut records,
        &sent,
        |r| r.missing_since(1).is_empty(),
    )
    .await;
    if !warm {
        dir.keep = true;
        return Err(format!(
            "warm-up: partitions {:?} handled nothing within 60 s (logs in {})",
            records.missing_since(1),
            dir.path.display()
        ));
    }
    let window_us = now_us();
    say(
        began,
        "warm-up done: every partition is handled; chaos starts",
    );

    // The chaos.
    let mut disruptions: Vec<Disruption> = Vec::new();
    let mut sigkilled: BTreeSet<usize> = BTreeSet::new();
    // Incarnation index of each slot's current process.
    let mut current: Vec<usize> = (0..slots.len()).collect();
    let (mut kills, mut server_kills, mut blackholes) = (0usize, 0usize, 0usize);
    let mut server_down: Option<(usize, Instant)> = None;
    // No server kill sooner than this after a server restart (the fleet reconnects first).
    let mut server_calm_from = Instant::now();
    let chaos_end = Instant::now() + Duration::from_secs(args.seconds);
    // An action every third of a lease to a lease: the fleet heals from some faults before
    // the next ones.
    let (gap_min, gap_max) = (ttl.as_millis() as u64 / 3, ttl.as_millis() as u64);
    let mut next_action = Instant::now() + rng.ms(gap_min, gap_max);
    let mut kv_streams = vec![format!("KV_{PREFIX}-leases"), format!("KV_{PREFIX}-assign")];
    if args.jetstream {
        kv_streams.push(STREAM.into());
    }
    loop {
        let now = Instant::now();
        // Due restarts and heals.
        for slot in slots.iter_mut() {
            if slot.restart_at.is_some_and(|at| at <= now) {
                let n = slot.incarnations;
                slot.start(&spec)
                    .map_err(|e| format!("cannot restart worker {}: {e}", slot.index))?;
                current[slot.index] =
                    records.add(Slot::record_path(&spec.dir, slot.index, n), slot.index, n);
                say(began, format_args!("start w{}#{n}", slot.index));
            }
            if slot.blackholed_until.is_some_and(|at| at <= now) {
                slot.set_network(FaultMode::Pass);
                slot.blackholed_until = None;
                say(began, format_args!("heal w{}'s network", slot.index));
            }
        }
        if let Some((node, at)) = server_down {
            if at <= now {
                servers
                    .restart(node)
                    .map_err(|e| format!("cannot restart server n{node}: {e}"))?;
                server_down = None;
                server_calm_from = Instant::now() + Duration::from_secs(5);
                say(began, format_args!("restart server n{node}"));
            }
        }
        if now >= chaos_end {
            break;
        }
        if now >= next_action {
            next_action = now + rng.ms(gap_min, gap_max);
            let running: Vec<usize> = slots
                .iter_mut()
                .filter_map(|s| s.is_running().then_some(s.index))
                .collect();
            let min_running = (args.workers as usize).saturating_sub(2).max(1);
            let roll = rng.below(100);
            let pick = rng.below(64);
            if roll < 30 && running.len() > min_running {
                let slot = &mut slots[running[pick % running.len()]];
                let inc = current[slot.index];
                slot.kill().await;
                slot.restart_at = Some(Instant::now() + rng.ms(500, 6000));
                sigkilled.insert(inc);
                kills += 1;
                let what = format!("SIGKILL {}", records.name(inc));
                say(began, &what);
                disruptions.push(Disruption {
                    what,
                    at_us: now_us(),
                    worker: Some(inc),
                });
            } else if roll < 50 && running.len() > min_running {
                let slot = &mut slots[running[pick % running.len()]];
                let inc = current[slot.index];
                let at_us = now_us();
                let (clean, took) = slot.terminate(Duration::from_secs(20)).await;
                slot.restart_at = Some(Instant::now() + rng.ms(0, 4000));
                kills += 1;
                let what = format!("SIGTERM {}", records.name(inc));
                say(
                    began,
                    format_args!(
                        "{what}: {} after {} ms",
                        if clean {
                            "exited"
                        } else {
                            "did not exit, SIGKILLed"
                        },
                        took.as_millis()
                    ),
                );
                if !clean {
                    sigkilled.insert(inc);
                }
                disruptions.push(Disruption {
                    what,
                    at_us,
                    worker: Some(inc),
                });
            } else if roll < 75 {
                let healthy = server_down.is_none()
                    && now >= server_calm_from
                    && (0..servers.len()).all(|i| servers.is_running(i))
                    && tokio::time::timeout(
                        Duration::from_secs(3),
                        servers.replicas_current(&kv_streams),
                    )
                    .await
                    .unwrap_or(false);
                let leader_of = kv_streams[pick % kv_streams.len()].clone();
                let want_leader = servers.len() > 1 && rng.chance(50);
                if healthy {
                    let (node, why) = match want_leader {
                        true => match servers.stream_leader(&leader_of).await {
                            Some(n) => (n, format!(" (leader of {leader_of})")),
                            None => (pick % servers.len(), String::new()),
                        },
                        false => (pick % servers.len(), String::new()),
                    };
                    let down_for = if servers.len() > 1 {
                        rng.ms(1000, 6000)
                    } else {
                        rng.ms(500, 4000)
                    };
                    servers.kill(node);
                    server_down = Some((node, Instant::now() + down_for));
                    server_kills += 1;
                    let what = format!("SIGKILL server n{node}{why}");
                    say(
                        began,
                        format_args!("{what}, down for {} ms", down_for.as_millis()),
                    );
                    disruptions.push(Disruption {
                        what,
                        at_us: now_us(),
                        worker: None,
                    });
                } else {
                    say(
                        began,
                        "server kill skipped: a server is down or catching up",
                    );
                }
            } else if let Some(&index) = {
                let open: Vec<&usize> = running
                    .iter()
                    .filter(|i| slots[**i].blackholed_until.is_none())
                    .collect();
                open.get(pick % open.len().max(1)).copied()
            } {
                let long = rng.ms(1000, ttl.as_millis() as u64 + 2000);
                let slot = &mut slots[index];
                slot.set_network(FaultMode::Blackhole);
                slot.blackholed_until = Some(Instant::now() + long);
                blackholes += 1;
                say(
                    began,
                    format_args!("blackhole w{index}'s network for {} ms", long.as_millis()),
                );
            }
        }
        // Keep the records read as they grow.
        {
            let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
            records.poll(&sent);
        }
        let mut wake = next_action.min(chaos_end);
        for s in &slots {
            wake = wake.min(s.restart_at.unwrap_or(wake));
            wake = wake.min(s.blackholed_until.unwrap_or(wake));
        }
        if let Some((_, at)) = server_down {
            wake = wake.min(at);
        }
        // The schedule's spacing (not a synchronisation): sleep until the next due step.
        tokio::time::sleep_until(wake.min(Instant::now() + Duration::from_millis(250))).await;
    }

    // Heal everything, then wait until every partition handles fresh messages.
    for slot in slots.iter_mut() {
        slot.set_network(FaultMode::Pass);
        slot.blackholed_until = None;
        if !slot.is_running() {
            let n = slot.incarnations;
            slot.start(&spec)
                .map_err(|e| format!("cannot restart worker {}: {e}", slot.index))?;
            current[slot.index] =
                records.add(Slot::record_path(&spec.dir, slot.index, n), slot.index, n);
        }
    }
    if let Some((node, _)) = server_down.take() {
        servers
            .restart(node)
            .map_err(|e| format!("cannot restart server n{node}: {e}"))?;
    }
    say(began, "chaos over: everything healed and running; settling");
    let settle_from = now_us();
    let settle_deadline = Instant::now() + ttl * 3 + Duration::from_secs(30);
    let settled = wait_for(settle_deadline, &mut records, &sent, |r| {
        r.missing_since(settle_from).is_empty()
    })
    .await;
    if !settled {
        say(
            began,
            format_args!(
                "NOT SETTLED: partitions {:?} handle nothing new",
                records.missing_since(settle_from)
            ),
        );
        if args.jetstream {
            for line in describe_consumers(&urls).await {
                say(began, format_args!("  consumer {line}"));
            }
        }
    }
    let sent_log = publisher.stop().await;
    let published_total = sent_log.len();
    // Drain: what can still be handled.
    if args.jetstream {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = stream_messages(&urls).await;
            if left == Some(0) || Instant::now() >= deadline {
                if left != Some(0) {
                    say(
                        began,
                        format_args!("drain: {left:?} messages left in {STREAM}"),
                    );
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let last_round: Vec<u64> = {
        let p = args.partitions as usize;
        (published_total.saturating_sub(p)..published_total)
            .map(|s| s as u64)
            .collect()
    };
    let _ = wait_for(
        Instant::now() + Duration::from_secs(5),
        &mut records,
        &sent,
        |r| {
            let seen: BTreeSet<u64> = r.handles.iter().rev().take(10_000).map(|h| h.seq).collect();
            last_round.iter().all(|s| seen.contains(s))
        },
    )
    .await;
    // Stop the workers gracefully, all at once.
    let stops = slots
        .iter_mut()
        .map(|s| s.terminate(Duration::from_secs(20)));
    let stopped = futures::future::join_all(stops).await;
    let unclean = stopped.iter().filter(|(clean, _)| !clean).count();
    records.poll(&sent_log);

    // The figures.
    let f = records::figures(
        &sent_log,
        &records,
        &disruptions,
        &sigkilled,
        window_us,
        args.jetstream,
    );
    let ok = if args.jetstream {
        f.unhandled == 0 && (args.relaxed || f.double_handled == 0)
    } else {
        args.relaxed || f.double_handled == 0
    };
    println!();
    println!("figures ({mode}, seed {seed}):");
    println!(
        "  faults: {kills} worker kills ({} SIGKILL), {server_kills} server kills, {blackholes} blackholes",
        sigkilled.len()
    );
    println!(
        "  processes: {} worker incarnations; {unclean} did not stop within 20 s of the final SIGTERM",
        records.incarnations.len()
    );
    println!(
        "  messages: {} sent in all, {} in the measured window, {} of them not published",
        published_total,
        f.messages + f.not_published,
        f.not_published
    );
    println!(
        "  handled: {} handles recorded, {} beyond the first of a message, {} excused (ack may not have happened), {} of unknown messages, {} malformed lines",
        records.handles.len(),
        f.extra_handles,
        f.excused,
        f.unknown,
        records.malformed
    );
    println!("  ack failures reported: {}", records.ack_failures.len());
    println!(
        "  double handled: {}{}",
        f.double_handled,
        if f.double_examples.is_empty() {
            String::new()
        } else {
            format!(", e.g. {}", f.double_examples.join("; "))
        }
    );
    println!(
        "  unhandled: {} (by partition: {:?})",
        f.unhandled, f.unhandled_by_partition
    );
    println!(
        "  settled after the chaos: {}",
        if settled { "yes" } else { "NO" }
    );
    println!(
        "  heal time after each kill (until every partition it interrupted handles messages \
         sent after it):"
    );
    for (d, ms) in &f.heals {
        let ms = ms.map_or("not healed".to_string(), |m| format!("{m} ms"));
        let at = (d.at_us.saturating_sub(window_us)) as f64 / 1e6;
        let kind = if d.worker.is_some() {
            "worker"
        } else {
            "server"
        };
        println!("    +{at:>7.2}s {kind}: {}: {ms}", d.what);
    }
    if !ok {
        dir.keep = true;
        println!(
            "  GUARANTEE BROKEN: logs and records kept in {}",
            dir.path.display()
        );
    }
    println!(
        "chaos seconds={} workers={} servers={} kills={kills} server_kills={server_kills} messages={} double_handled={} unhandled={} max_reassign_ms={}",
        args.seconds,
        args.workers,
        servers.len(),
        f.messages,
        f.double_handled,
        f.unhandled,
        f.max_reassign_ms
    );
    drop(slots);
    drop(servers);
    Ok(ok)
}
