//! Benchmarks of a parti fleet on a real nats-server: how fast the leader notices a join, how
//! long a graceful leave, a crashed follower and a crashed leader take to heal, and what an idle
//! worker costs (memory, KV writes). Prints one table for two timing profiles.
//!
//! ```text
//! cargo build --release -p parti --features cli --bin parti   # the SIGKILLed worker processes
//! cargo run --release -p parti --example bench
//! ```
//!
//! It starts its own nats-server (`parti::testing::NatsServer`). Crashes are real: the victim
//! is a `parti worker` process (`$PARTI_BIN`, or `parti` next to this example's directory in
//! the target directory) killed with SIGKILL. Every other worker runs in this process, each
//! with its own NATS connection, and every timing is taken from their stamped events (see
//! `bench/lab.rs`). A failed measurement is reported under `failures:`, never a panic.
//!
//! Crash timings depend on where in the heartbeat the kill lands (a lease expires one TTL after
//! its last renewal), so each kill waits a random part of a heartbeat first; the notes under
//! the table say, per run, how long after the last renewal the kill came.
//!
//! The last three lines are the issue-9 figures for the defaults profile:
//! `crash_reassigned_ms defaults median=M max=X`, `leader_kill_reassigned_ms defaults
//! median=M max=X` (milliseconds, over `reps` runs: 10) and `idle_writes_per_min follower=F
//! leader=L`; the line before them gives the sample counts.
//!
//! For investigating: `BENCH_PROFILES=fast` and `BENCH_SCENARIOS=jl,kf,kl` (joins and leaves,
//! kill a follower, kill the leader) run a part; `BENCH_TRACE=1` prints every stamped event,
//! process line and KV write.

#[path = "bench/lab.rs"]
mod lab;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/scenarios.rs"]
mod scenarios;

use parti::testing::NatsServer;
use parti::{Config, Partition};
use report::Results;
use scenarios::Env;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// Partitions of every fleet.
const PARTITIONS: usize = 64;

/// A timing profile: the same timings for in-process workers and `parti worker` processes.
pub struct Profile {
    /// Shown in the table.
    pub name: &'static str,
    /// Short, for bucket prefixes and sample lists.
    pub key: &'static str,
    /// The timings (every worker of the profile uses them).
    pub base: Config,
    /// `parti worker` flags that produce `base`'s timings.
    flags: Vec<(&'static str, u64)>,
    /// Repetitions of each timed scenario.
    pub reps: usize,
    /// How long KV writes are counted.
    pub kv_window: Duration,
}

impl Profile {
    /// The library defaults (heartbeat 2 s, lease TTL 6 s).
    fn defaults() -> Profile {
        Profile {
            name: "defaults",
            key: "defaults",
            base: Config::default(),
            flags: Vec::new(),
            reps: 10,
            kv_window: Duration::from_secs(40),
        }
    }

    /// Heartbeat 500 ms, lease TTL 2 s, safety margin 300 ms: what `parti worker
    /// --heartbeat-ms 500 --ttl-ms 2000 --safety-margin-ms 300` runs with (the CLI also caps the
    /// emergency grace at TTL/4 and the revoke timeout at TTL/2).
    fn fast() -> Profile {
        let mut c = Config {
            heartbeat_interval: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(2),
            ..Config::default()
        };
        c.emergency_grace = c.emergency_grace.min(c.lease_ttl / 4);
        c.revoke_timeout = c.revoke_timeout.min(c.lease_ttl / 2);
        c.safety_margin = Duration::from_millis(300);
        Profile {
            name: "fast",
            key: "fast",
            base: c,
            flags: vec![
                ("--heartbeat-ms", 500),
                ("--ttl-ms", 2000),
                ("--safety-margin-ms", 300),
            ],
            reps: 5,
            kv_window: Duration::from_secs(5),
        }
    }

    /// The configuration of one fleet's workers.
    pub fn config(&self, prefix: String, expected_workers: u32) -> Config {
        Config {
            bucket_prefix: prefix,
            expected_workers: Some(expected_workers),
            ..self.base.clone()
        }
    }

    /// The `parti worker` timing flags.
    pub fn cli_flags(&self) -> Vec<String> {
        self.flags
            .iter()
            .flat_map(|(f, v)| [f.to_string(), v.to_string()])
            .collect()
    }

    /// The table's column title.
    pub fn title(&self) -> String {
        format!(
            "{}: hb {}, TTL {}",
            self.name,
            short(self.base.heartbeat_interval),
            short(self.base.lease_ttl)
        )
    }

    fn describe(&self) -> String {
        let c = &self.base;
        format!(
            "{}: heartbeat {}, lease TTL {}, safety margin {}, emergency grace {}, planned-scale \
             window {}; {} runs per timed scenario; parti worker flags: {}",
            self.name,
            short(c.heartbeat_interval),
            short(c.lease_ttl),
            short(c.safety_margin),
            short(c.emergency_grace),
            short(c.planned_scale_window),
            self.reps,
            if self.flags.is_empty() {
                "(none)".to_string()
            } else {
                self.cli_flags().join(" ")
            }
        )
    }
}

fn short(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else if ms > 1000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{ms} ms")
    }
}

/// The `parti` binary: `$PARTI_BIN`, or `<target>/release/parti` next to this example.
fn parti_bin() -> Result<PathBuf, String> {
    let build = "build it with `cargo build --release -p parti --features cli --bin parti` or set PARTI_BIN";
    if let Some(bin) = std::env::var_os("PARTI_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("PARTI_BIN={} is not a file", bin.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this example: {e}"))?;
    // <target>/<profile>/examples/bench -> <target>/<profile>/parti
    let candidate = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("parti"))
        .ok_or("cannot locate the target directory")?;
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "no parti binary at {} ({build})",
            candidate.display()
        ))
    }
}

/// How long ago a file was modified, for the header.
fn age(path: &std::path::Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or("age unknown".into(), |d| {
            format!("built {}s ago", d.as_secs())
        })
}

fn progress(began: Instant, line: &str) {
    println!("[{:>6.1}s] {line}", began.elapsed().as_secs_f64());
}

async fn run() -> ExitCode {
    println!("$ cargo run --release -p parti --example bench");
    let began = Instant::now();
    let server = match NatsServer::start() {
        Ok(s) => s,
        Err(e) => {
            println!("error: cannot start nats-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let version = NatsServer::binary()
        .ok()
        .and_then(|b| std::process::Command::new(b).arg("--version").output().ok())
        .map_or("version unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        });
    let bin = parti_bin();
    println!("nats-server: {version} at {} (file storage)", server.url());
    match &bin {
        Ok(b) => println!("parti worker binary: {} ({})", b.display(), age(b)),
        Err(e) => println!("parti worker binary: NONE: {e}; scenarios 3-6 will fail"),
    }
    let partitions: Vec<Partition> = (0..PARTITIONS)
        .map(|i| Partition::single(&format!("p{i}")).expect("p<number> is a valid partition"))
        .collect();
    println!(
        "{PARTITIONS} partitions, strict handoff, balanced strategy; every fleet has its own \
         bucket prefix on this one server"
    );
    let env = Env {
        url: server.url(),
        partitions,
        bin,
    };
    // For a partial run while investigating: BENCH_PROFILES=fast BENCH_SCENARIOS=kl.
    let chosen = |var: &str, name: &str| {
        std::env::var(var).map_or(true, |list| list.split(',').any(|x| x.trim() == name))
    };
    let mut done = Vec::new();
    for profile in [Profile::defaults(), Profile::fast()] {
        if !chosen("BENCH_PROFILES", profile.key) {
            continue;
        }
        println!("profile {}", profile.describe());
        let mut results = Results::default();
        let reps = profile.reps;
        progress(
            began,
            &format!(
                "{}: {reps} joins and {reps} leaves on a fleet of {} in-process workers",
                profile.name,
                reps + 1
            ),
        );
        if chosen("BENCH_SCENARIOS", "jl") {
            scenarios::join_leave(&env, &profile, &mut results).await;
        }
        progress(
            began,
            &format!(
                "{}: {reps} x SIGKILL of a follower process among 2 in-process workers \
                 (run 1 also counts KV writes for {}s and reads the process's RSS)",
                profile.name,
                profile.kv_window.as_secs()
            ),
        );
        for rep in (0..reps).filter(|_| chosen("BENCH_SCENARIOS", "kf")) {
            scenarios::kill_follower(&env, &profile, rep, &mut results).await;
        }
        progress(
            began,
            &format!(
                "{}: {reps} x SIGKILL of the leader process among 2 in-process workers \
                 (run 1 also reads its RSS after 5 heartbeats)",
                profile.name
            ),
        );
        for rep in (0..reps).filter(|_| chosen("BENCH_SCENARIOS", "kl")) {
            scenarios::kill_leader(&env, &profile, rep, &mut results).await;
        }
        done.push((profile, results));
    }
    progress(began, "done");
    println!();
    report::print(&done);
    println!();
    println!("total {:.0}s", began.elapsed().as_secs_f64());
    report::print_summary(&done);
    drop(server);
    if done.iter().any(|(_, r)| !r.errors.is_empty()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let code = runtime.block_on(run());
            // Workers left behind by a failed scenario must not delay the exit.
            runtime.shutdown_timeout(Duration::from_millis(200));
            code
        }
        Err(e) => {
            println!("error: cannot start tokio: {e}");
            ExitCode::FAILURE
        }
    }
}
