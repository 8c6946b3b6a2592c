//! Seeded random fault schedules, and the runner that plays one and checks the outcome.

use super::cluster::{Sim, SimConfig};
use super::faults::{numbered_partitions, Fault};
use super::invariants::Violation;
use super::net::NetConfig;
use super::NodeId;
use crate::{Config, HandoffMode, Instant, Rng};
use std::fmt;
use std::time::Duration;

/// Faults with the virtual time at which each is applied, in time order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// `(time, fault)` pairs, sorted by time.
    pub faults: Vec<(Instant, Fault)>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, fault) in &self.faults {
            writeln!(f, "{:>10.3}s {fault}", at.since_origin().as_secs_f64())?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Model {
    Up,
    Down,
    Gone,
}

/// A seeded random schedule over `duration` for a cluster that starts with `workers` nodes:
/// crashes and restarts, isolations and heals, KV outage windows, leader kills, clock skews
/// within ±1000 ppm, joins, graceful stops (with and without restart), drains, partition list
/// changes with refreshes, and source failures. Same arguments, same schedule.
///
/// Faults start after one second; repairs that would fall after `duration` are left out (the
/// runner heals everything at `duration`).
pub fn random_schedule(seed: u64, workers: u32, duration: Duration) -> Schedule {
    let mut rng = Rng::new(seed ^ 0x5C4E_D01E_0000_0001);
    let end = Instant::from_origin(duration);
    let last = Instant::from_origin(duration.saturating_sub(Duration::from_millis(1)));
    let mut out: Vec<(Instant, Fault)> = Vec::new();
    let mut nodes: Vec<Model> = vec![Model::Up; workers as usize];
    // A node is left alone until its pending repair has happened.
    let mut busy_until: Vec<Instant> = vec![Instant::ZERO; workers as usize];
    let mut outage_until = Instant::ZERO;
    let mut failing_until = Instant::ZERO;
    let mut t = Instant::from_millis(1000 + rng.below(2000));
    let secs =
        |rng: &mut Rng, lo: u64, hi: u64| Duration::from_millis(rng.range(lo * 1000, hi * 1000));
    while t < end {
        let idle: Vec<usize> = (0..nodes.len())
            .filter(|&i| busy_until[i] <= t && nodes[i] != Model::Gone)
            .collect();
        let up: Vec<usize> = idle
            .iter()
            .copied()
            .filter(|&i| nodes[i] == Model::Up)
            .collect();
        let pick = |rng: &mut Rng, from: &[usize]| from[rng.below(from.len() as u64) as usize];
        let mut push = |at: Instant, f: Fault| {
            if at < end {
                out.push((at, f));
            }
        };
        match rng.below(20) {
            0..=2 if up.len() > 1 => {
                let n = pick(&mut rng, &up);
                push(t, Fault::Crash(NodeId(n)));
                nodes[n] = Model::Down;
                if rng.chance(0.8) {
                    let back = t + secs(&mut rng, 1, 20);
                    push(back, Fault::Restart(NodeId(n)));
                    busy_until[n] = back;
                    nodes[n] = Model::Up;
                } else {
                    busy_until[n] = end;
                }
            }
            3..=4 => {
                push(t, Fault::KillLeader);
                push(t + secs(&mut rng, 1, 20), Fault::RestartCrashed);
            }
            5..=7 if !up.is_empty() => {
                let n = pick(&mut rng, &up);
                let back = t + Duration::from_millis(rng.range(200, 20_000));
                push(t, Fault::Isolate(NodeId(n)));
                push(back, Fault::Heal(NodeId(n)));
                busy_until[n] = back;
            }
            8 if outage_until <= t => {
                outage_until = t + Duration::from_millis(rng.range(500, 15_000));
                push(t, Fault::KvOutage(true));
                push(outage_until, Fault::KvOutage(false));
            }
            9..=10 if !nodes.is_empty() => {
                let n = rng.below(nodes.len() as u64) as usize;
                let ppm = rng.range(0, 2000) as i32 - 1000;
                push(
                    t,
                    Fault::ClockSkew {
                        node: NodeId(n),
                        ppm,
                    },
                );
            }
            11 if nodes.len() < 2 * workers as usize => {
                push(t, Fault::Join);
                nodes.push(Model::Up);
                busy_until.push(t + Duration::from_secs(1));
            }
            12..=14 if up.len() > 1 => {
                let n = pick(&mut rng, &up);
                let final_stop = rng.chance(0.3);
                push(
                    t,
                    Fault::Stop {
                        node: NodeId(n),
                        final_stop,
                    },
                );
                if !final_stop || rng.chance(0.3) {
                    let back = t + Duration::from_millis(rng.range(500, 12_000));
                    push(back, Fault::Restart(NodeId(n)));
                    busy_until[n] = back + Duration::from_secs(1);
                } else {
                    nodes[n] = Model::Gone;
                }
            }
            15 if up.len() > 1 => {
                let n = pick(&mut rng, &up);
                let stop = t + secs(&mut rng, 2, 15);
                push(t, Fault::Drain(NodeId(n)));
                push(
                    stop,
                    Fault::Stop {
                        node: NodeId(n),
                        final_stop: true,
                    },
                );
                if rng.chance(0.5) {
                    let back = stop + secs(&mut rng, 1, 10);
                    push(back, Fault::Restart(NodeId(n)));
                    busy_until[n] = back + Duration::from_secs(1);
                } else {
                    nodes[n] = Model::Gone;
                }
            }
            16..=17 if !idle.is_empty() => {
                let delta = rng.range(1, 10) as i32 * if rng.chance(0.5) { 1 } else { -1 };
                push(t, Fault::ResizePartitions(delta));
                let n = pick(&mut rng, &idle);
                let refresh = (t + Duration::from_millis(rng.below(1000))).min(last);
                push(refresh.max(t), Fault::Refresh(NodeId(n)));
            }
            18 if failing_until <= t => {
                failing_until = t + secs(&mut rng, 1, 10);
                push(t, Fault::SourceFailing(true));
                push(failing_until, Fault::SourceFailing(false));
            }
            19 => {
                // WorkerMachine IDs run from 0 up; some pins name an ID nobody holds.
                let worker = rng
                    .chance(0.7)
                    .then(|| rng.below(u64::from(workers) * 2 + 1) as u32);
                let index = rng.below(1000) as u32;
                push(t, Fault::Pin { index, worker });
            }
            _ => {}
        }
        t += Duration::from_millis(rng.range(500, 6000));
    }
    out.sort_by_key(|(at, _)| *at);
    Schedule { faults: out }
}

/// Everything a run needs besides its schedule.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Seed of the schedule and of the simulation.
    pub seed: u64,
    /// Nodes started at time zero.
    pub workers: u32,
    /// Partitions at start (`p0000`, ...).
    pub partitions: u32,
    /// How long faults are injected; then everything heals and convergence is measured.
    pub duration: Duration,
    /// The worker configuration template.
    pub config: Config,
    /// The harness configuration.
    pub sim: SimConfig,
    /// Bound on convergence after the heal (default [`settle_bound`]).
    pub converge_bound: Duration,
    /// Trace lines to include in a failure report.
    pub trace_tail: usize,
    /// Report the run (schedule, violations, trace tail) in [`Outcome::report`] also when it
    /// passes. Default false.
    pub report_always: bool,
}

impl RunSpec {
    /// A run with parti's default configuration (except `expected_workers = workers`, so the
    /// cold start ends when they have joined), lossy networking (0.2 % of requests lost) and
    /// the cheap settings of the random runner (no event log, no KV history).
    pub fn new(seed: u64, workers: u32, partitions: u32, duration: Duration) -> Self {
        let config = Config {
            expected_workers: Some(workers.max(1)),
            // a refresh lost with the worker that took it is made good by the next poll
            source_poll_interval: Duration::from_secs(30),
            // Joins may double the fleet: leave every node an ID (the default range is 0..=99).
            id_max: Config::default().id_max.max(2 * workers),
            ..Config::default()
        };
        let sim = SimConfig {
            net: NetConfig {
                drop_prob: 0.002,
                buffered_land_prob: 0.8,
                ..NetConfig::default()
            },
            unsubscribe_stuck_prob: 0.001,
            keep_events: false,
            kv_history: false,
            trace_limit: 20_000,
            ..SimConfig::default()
        };
        let converge_bound = settle_bound(&config, &sim.net);
        RunSpec {
            seed,
            workers,
            partitions,
            duration,
            config,
            sim,
            converge_bound,
            trace_tail: 200,
            report_always: false,
        }
    }

    /// The same run in Relaxed handoff mode (exclusive ownership is then not checked).
    pub fn relaxed(mut self) -> Self {
        self.config.handoff = HandoffMode::Relaxed;
        self
    }
}

/// The stated bound on convergence after the last fault heals, for `config`: every window that
/// may legitimately delay the final assignment, back to back (cold start, restart grace, the
/// longest scale delay, rebalance interval, emergency grace, revoke timeout, the source poll
/// that makes good a lost refresh), plus three lease TTLs and two client timeouts for leases
/// and in-doubt writes to resolve.
pub fn settle_bound(config: &Config, net: &NetConfig) -> Duration {
    config.cold_start_window
        + config.restart_grace
        + config.max_scale_delay
        + config.min_rebalance_interval
        + config.emergency_grace
        + config.revoke_timeout
        + 3 * config.lease_ttl
        + 2 * net.client_timeout
        + config.source_poll_interval
}

/// What one run found.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The run's seed.
    pub seed: u64,
    /// Every broken guarantee (non-convergence included).
    pub violations: Vec<Violation>,
    /// Milliseconds from the heal until the final layout was reached, if it was.
    pub converge_ms: Option<u64>,
    /// Partitions moved between worker IDs over the whole run.
    pub moves: u64,
    /// Emergency episodes over the whole run.
    pub emergencies: u64,
    /// Balancing rounds committed (each checked against its budget and cooldown).
    pub rounds: u64,
    /// Virtual time at the end of the run, in milliseconds.
    pub sim_ms: u64,
    /// Steps processed.
    pub steps: u64,
    /// The trace's fingerprint ([`crate::sim::Trace::fingerprint`]) when
    /// [`SimConfig::fingerprint`] was on: equal fingerprints mean identical runs.
    pub fingerprint: Option<u64>,
    /// When something was violated (or [`RunSpec::report_always`]): the seed, the schedule, the
    /// violations and the trace tail, enough to replay the run with the same seed.
    pub report: Option<String>,
}

impl Outcome {
    /// Whether every guarantee held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Plays `schedule` on a fresh cluster described by `spec`: starts `spec.workers` nodes over
/// `spec.partitions` partitions, applies the faults, heals everything at `spec.duration`, and
/// waits (up to `spec.converge_bound`) for the cluster to settle.
pub fn run_schedule(spec: &RunSpec, schedule: &Schedule) -> Outcome {
    let mut sim = Sim::new(spec.config.clone(), spec.sim.clone(), spec.seed)
        .expect("valid run configuration");
    sim.set_partitions(numbered_partitions(spec.partitions));
    for _ in 0..spec.workers {
        sim.add_node();
    }
    for (at, fault) in &schedule.faults {
        sim.schedule_fault(*at, fault.clone());
    }
    let end = Instant::from_origin(spec.duration);
    sim.run_until(end);
    sim.apply_fault(&Fault::HealAll);
    let converge_ms = sim
        .converge(spec.converge_bound)
        .ok()
        .map(|d| d.as_millis() as u64);
    let violations = sim.violations().to_vec();
    let report = (spec.report_always || !violations.is_empty())
        .then(|| failure_report(spec, schedule, &sim));
    Outcome {
        seed: spec.seed,
        converge_ms,
        moves: sim.stats().moves,
        emergencies: sim.stats().emergencies,
        rounds: sim.stats().rounds,
        sim_ms: sim.now().since_origin().as_millis() as u64,
        steps: sim.stats().steps,
        fingerprint: sim.trace().fingerprint(),
        violations,
        report,
    }
}

/// Generates the schedule of `spec.seed` and plays it.
pub fn run_seed(spec: &RunSpec) -> Outcome {
    run_schedule(
        spec,
        &random_schedule(spec.seed, spec.workers, spec.duration),
    )
}

fn failure_report(spec: &RunSpec, schedule: &Schedule, sim: &Sim) -> String {
    let mut out = format!(
        "seed={} workers={} partitions={} duration={}s mode={:?}\nschedule:\n{schedule}violations:\n",
        spec.seed,
        spec.workers,
        spec.partitions,
        spec.duration.as_secs_f64(),
        spec.config.handoff
    );
    for v in sim.violations() {
        out.push_str(&format!("  {v}\n"));
    }
    out.push_str(&format!("trace (last {} lines):\n", spec.trace_tail));
    out.push_str(&sim.trace().tail(spec.trace_tail));
    out
}
