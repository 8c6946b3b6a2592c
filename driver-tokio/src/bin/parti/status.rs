//! `parti status`: a fleet's workers, leader, committed generation, shares, pins and drains,
//! read from its KV without starting a worker, with a warning for anything inconsistent.
//! `--json` prints the same as one JSON document ([`Status`], schema in docs/status-json.md);
//! `--watch` redraws it every second (a fresh screen on a terminal, plain blocks otherwise).

use crate::common::{
    compact_cut, fmt_duration, load_partitions, natural_sort, short_token, timestamp, truncate,
    NatsArgs,
};
use crate::fleet::{phase_name, Fleet, FleetReader};
use crate::{CliError, CliResult};
use parti::{PartitionId, WorkerId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Arguments of `parti status`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("nats", |a| a.required(true)))]
pub struct StatusArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Prefix of the fleet's KV buckets.
    #[arg(long, default_value_t = parti::Config::default().bucket_prefix, value_name = "P")]
    prefix: String,
    /// Also list every worker's partitions, compactly (`p0..p3` is p0, p1, p2, p3; IDs never
    /// hold `..`); in full with --json.
    #[arg(long, short)]
    verbose: bool,
    /// Print one JSON document instead (schema: docs/status-json.md); with --watch, one
    /// document per line.
    #[arg(long)]
    json: bool,
    /// Redraw every --interval-ms until interrupted (Ctrl-C).
    #[arg(long)]
    watch: bool,
    /// Time between two redraws of --watch, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "watch",
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    interval_ms: u64,
    /// The fleet's partitions file (as given to `parti worker`), to show the weight each
    /// worker owns: weights are not stored in KV.
    #[arg(long, value_name = "FILE")]
    partitions_file: Option<PathBuf>,
}

/// The version of the `--json` document; raised when a field changes meaning or goes away
/// (new fields may appear without it).
pub const STATUS_VERSION: u32 = 1;

/// What `parti status --json` prints: the fleet as its KV shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// [`STATUS_VERSION`].
    pub v: u32,
    /// When the KV was read (reader's wall clock, Unix milliseconds).
    pub time_unix_ms: u64,
    /// The servers read from (credentials masked).
    pub nats: String,
    /// The buckets' prefix.
    pub prefix: String,
    /// The fleet in one word: `no-fleet` (no bucket), `cold-start` (no generation committed
    /// yet), or the committed generation's phase (`stable`, `scaling`, `rebalancing`,
    /// `emergency`).
    pub state: String,
    /// The leader lease, if present and decodable.
    pub leader: Option<LeaderDoc>,
    /// The committed generation, if present and decodable.
    pub generation: Option<GenerationDoc>,
    /// Every worker with a lease or a share, by ID.
    pub workers: Vec<WorkerDoc>,
    /// Sums over the workers.
    pub totals: Totals,
    /// Operators' pins, by partition.
    pub pins: Vec<PinDoc>,
    /// Workers being drained (lease flag or `ctl.drain.<id>`).
    pub drains: Vec<u32>,
    /// Buckets that do not exist.
    pub buckets_missing: Vec<String>,
    /// Everything inconsistent, one sentence each (empty when `consistent`).
    pub warnings: Vec<String>,
    /// No warning: every member's share assembles and every live lease has a share.
    pub consistent: bool,
}

/// The leader lease.
#[derive(Clone, Debug, Serialize)]
pub struct LeaderDoc {
    /// The leader's worker ID.
    pub worker: u32,
    /// The leader instance's token (first 8 hex digits).
    pub token: String,
}

/// The committed generation.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationDoc {
    /// The generation number.
    pub generation: u64,
    /// The epoch of the leader that committed it.
    pub epoch: u64,
    /// `stable` once the leader's target is reached, else the handoff under way.
    pub phase: String,
    /// What produced it (`emergency`, `scaling`, `rebalancing`), if recorded.
    pub trigger: Option<String>,
    /// Number of workers with a share.
    pub members: usize,
    /// How long ago it was committed (server time of the write), if known.
    pub age_ms: Option<u64>,
}

/// One worker.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerDoc {
    /// The worker ID.
    pub id: u32,
    /// `live`, `departing` (stopped for a restart), `draining`, `behind` (has not applied the
    /// committed generation), `no-lease` (a member without a live lease: crashed or gone), or
    /// `undecodable-lease`.
    pub state: String,
    /// Whether it holds the leader lease.
    pub leader: bool,
    /// The instance's token (first 8 hex digits), from its lease.
    pub token: Option<String>,
    /// The last committed generation it applied.
    pub applied: Option<u64>,
    /// Its capacity.
    pub capacity: Option<u32>,
    /// The sum of the partition loads it reports (`Worker::report_load`), if it reports any.
    pub load: Option<f64>,
    /// Time since its last lease write (its last heartbeat), if known.
    pub heartbeat_age_ms: Option<u64>,
    /// Partitions in its committed share (`None`: no share, or one that cannot be assembled).
    pub owned: Option<usize>,
    /// Their total weight, with `--partitions-file`.
    pub owned_weight: Option<u64>,
    /// Why its share cannot be assembled, if it cannot.
    pub share_error: Option<String>,
    /// Its partitions, with `--verbose`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<String>>,
}

/// Sums over the workers.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    /// Workers with a decodable live lease.
    pub live_workers: usize,
    /// Their capacities.
    pub capacity: u64,
    /// Partitions in the committed shares.
    pub owned: usize,
    /// Their weight, with `--partitions-file`.
    pub owned_weight: Option<u64>,
    /// The loads the workers report, when any does.
    pub load: Option<f64>,
    /// The most loaded reporting worker's load over the mean, both relative to capacity (1.0
    /// is perfect), when two or more workers report loads.
    pub load_max_over_mean: Option<f64>,
}

/// An operator's pin.
#[derive(Clone, Debug, Serialize)]
pub struct PinDoc {
    /// The pinned partition.
    pub partition: String,
    /// The worker it is pinned to.
    pub worker: u32,
    /// Whether that worker has a live lease (if not, the strategy places the partition).
    pub live: bool,
}

/// Runs `parti status`.
pub async fn run(args: StatusArgs) -> CliResult {
    let options = args.nats.options("parti-cli")?;
    let weights = match &args.partitions_file {
        Some(path) => Some(
            load_partitions(path)?
                .into_iter()
                .map(|p| (p.id().clone(), p.weight()))
                .collect(),
        ),
        None => None,
    };
    let view = View {
        nats: options.display_urls(),
        prefix: args.prefix.clone(),
        verbose: args.verbose,
        weights,
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let reader = FleetReader::connect(&options, &args.prefix).await?;
    if !args.watch {
        let fleet = reader.read().await?;
        let status = view.status(&fleet, SystemTime::now());
        if args.json {
            let text = serde_json::to_string_pretty(&status).expect("a status serializes");
            say!("{text}");
        } else {
            say!("{}", view.text(&status).trim_end());
        }
        return Ok(());
    }
    let tty = std::io::stdout().is_terminal();
    let interval = Duration::from_millis(args.interval_ms);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let frame = match reader.read().await {
            Ok(fleet) => {
                let status = view.status(&fleet, SystemTime::now());
                if args.json {
                    serde_json::to_string(&status).expect("a status serializes")
                } else {
                    view.text(&status)
                }
            }
            // A live view rides out a server restart: say so and try again next time.
            Err(e) if args.json => {
                eprintln!("error: {}", error_text(e));
                continue;
            }
            Err(e) => format!("{} {}\nerror: {}\n", timestamp(), view.nats, error_text(e)),
        };
        if args.json {
            say!("{frame}");
        } else if tty {
            // Home and clear, then the frame: a redraw in place.
            say!("\x1b[H\x1b[2J{}", frame.trim_end());
        } else {
            say!("{}\n", frame.trim_end());
        }
    }
}

fn error_text(e: CliError) -> String {
    match e {
        CliError::Usage(m) | CliError::Runtime(m) => m,
    }
}

/// How to show a fleet.
struct View {
    nats: String,
    prefix: String,
    verbose: bool,
    weights: Option<BTreeMap<PartitionId, u64>>,
    colour: bool,
}

impl View {
    /// The document for `fleet`, read at `now`.
    fn status(&self, fleet: &Fleet, now: SystemTime) -> Status {
        let age = |t: Option<SystemTime>| {
            t.map(|t| now.duration_since(t).unwrap_or_default().as_millis() as u64)
        };
        let committed = fleet.gen.as_ref().map(|g| g.generation);
        let leader_id = fleet.leader.as_ref().map(|l| l.worker);
        let mut ids: Vec<WorkerId> = fleet.leases.keys().copied().collect();
        // Members without a lease still show, so their partitions are accounted for.
        for id in fleet.shares.keys().chain(fleet.bad_leases.keys()) {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids.sort();
        let weight_of = |share: &std::collections::BTreeSet<PartitionId>| {
            self.weights
                .as_ref()
                .map(|w| share.iter().map(|p| w.get(p).copied().unwrap_or(0)).sum())
        };
        let workers: Vec<WorkerDoc> = ids
            .into_iter()
            .map(|id| {
                let lease = fleet.leases.get(&id);
                let v = lease.map(|l| &l.value);
                let state = match v {
                    None if fleet.bad_leases.contains_key(&id) => "undecodable-lease",
                    None => "no-lease",
                    Some(v) if v.departing => "departing",
                    Some(v) if v.draining || fleet.drains.contains(&id) => "draining",
                    Some(v) if v.applied < committed => "behind",
                    Some(_) => "live",
                };
                let share = fleet.shares.get(&id);
                let ok_share = share.and_then(|s| s.as_ref().ok());
                WorkerDoc {
                    id: id.0,
                    state: state.into(),
                    leader: leader_id == Some(id),
                    token: v.map(|v| short_token(v.token)),
                    applied: v.and_then(|v| v.applied).map(|g| g.0),
                    capacity: v.map(|v| v.capacity),
                    load: v.and_then(reported_load),
                    heartbeat_age_ms: age(lease.and_then(|l| l.written)),
                    owned: ok_share.map(|s| s.len()),
                    owned_weight: ok_share.and_then(weight_of),
                    share_error: share.and_then(|s| s.as_ref().err().cloned()),
                    partitions: ok_share.filter(|_| self.verbose).map(|s| {
                        natural_sort(s)
                            .into_iter()
                            .map(|p| p.as_str().to_string())
                            .collect()
                    }),
                }
            })
            .collect();
        let live: Vec<_> = fleet.leases.values().map(|l| &l.value).collect();
        let loads: Vec<(f64, u32)> = live
            .iter()
            .filter_map(|v| Some((reported_load(v)?, v.capacity.max(1))))
            .collect();
        let total_load: f64 = loads.iter().map(|(l, _)| l).sum();
        let total_capacity: f64 = loads.iter().map(|(_, c)| f64::from(*c)).sum();
        let load_max_over_mean = (loads.len() >= 2 && total_load > 0.0).then(|| {
            let max = loads
                .iter()
                .map(|(l, c)| l / f64::from(*c))
                .fold(0.0, f64::max);
            max / (total_load / total_capacity)
        });
        let totals = Totals {
            live_workers: live.len(),
            capacity: live.iter().map(|v| u64::from(v.capacity)).sum(),
            owned: workers.iter().filter_map(|w| w.owned).sum(),
            owned_weight: self
                .weights
                .as_ref()
                .map(|_| workers.iter().filter_map(|w| w.owned_weight).sum()),
            load: (!loads.is_empty()).then_some(total_load),
            load_max_over_mean,
        };
        let mut drains: Vec<u32> = fleet.drains.iter().map(|w| w.0).collect();
        for (id, l) in &fleet.leases {
            if l.value.draining && !drains.contains(&id.0) {
                drains.push(id.0);
            }
        }
        drains.sort_unstable();
        let pins = natural_sort(fleet.pins.keys())
            .into_iter()
            .map(|p| {
                let worker = fleet.pins[p];
                PinDoc {
                    partition: p.as_str().to_string(),
                    worker: worker.0,
                    live: fleet.leases.contains_key(&worker)
                        || fleet.bad_leases.contains_key(&worker),
                }
            })
            .collect();
        let state = if fleet.missing.len() == 2 {
            "no-fleet".to_string()
        } else {
            match &fleet.gen {
                Some(g) => phase_name(g.phase).to_string(),
                None => "cold-start".to_string(),
            }
        };
        let warnings = if fleet.missing.len() == 2 {
            Vec::new()
        } else {
            fleet.warnings()
        };
        Status {
            v: STATUS_VERSION,
            time_unix_ms: now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            nats: self.nats.clone(),
            prefix: self.prefix.clone(),
            state,
            leader: fleet.leader.as_ref().map(|l| LeaderDoc {
                worker: l.worker.0,
                token: short_token(l.token),
            }),
            generation: fleet.gen.as_ref().map(|g| GenerationDoc {
                generation: g.generation.0,
                epoch: g.epoch.0,
                phase: phase_name(g.phase).into(),
                trigger: g.trigger.map(|t| phase_name(t).into()),
                members: g.members.len(),
                age_ms: age(fleet.gen_written),
            }),
            workers,
            totals,
            pins,
            drains,
            buckets_missing: fleet.missing.clone(),
            consistent: warnings.is_empty() && fleet.missing.len() != 2,
            warnings,
        }
    }

    /// `text` in `code` (an SGR colour) when colours are on.
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// The human form of `s`.
    fn text(&self, s: &Status) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "fleet       {} prefix {}", s.nats, s.prefix);
        if s.state == "no-fleet" {
            let _ = writeln!(
                o,
                "no buckets yet: {} do not exist on this server (no worker with --prefix {} has \
                 run here)",
                s.buckets_missing.join(" and "),
                s.prefix
            );
            return o;
        }
        let leader = match &s.leader {
            Some(l) => format!("worker {} (token {})", l.worker, l.token),
            None => "none".into(),
        };
        let _ = writeln!(o, "leader      {leader}");
        let generation = match &s.generation {
            Some(g) => format!(
                "g{}, phase {}{}, epoch e{} (of the leader that committed it), {} member(s){}",
                g.generation,
                self.paint(phase_colour(&g.phase), &g.phase),
                g.trigger
                    .as_ref()
                    .map(|t| format!(" (after {t})"))
                    .unwrap_or_default(),
                g.epoch,
                g.members,
                g.age_ms
                    .map(|a| format!(", committed {} ago", age_text(a)))
                    .unwrap_or_default()
            ),
            None => "none committed".into(),
        };
        let _ = writeln!(o, "generation  {generation}");
        let pins = if s.pins.is_empty() {
            "none".to_string()
        } else {
            let list: Vec<String> = s
                .pins
                .iter()
                .map(|p| {
                    let gone = if p.live { "" } else { " (not live)" };
                    format!("{} -> worker {}{gone}", p.partition, p.worker)
                })
                .collect();
            truncate(&list.join(", "), 2000)
        };
        let _ = writeln!(o, "pins        {pins}");
        let drains = if s.drains.is_empty() {
            "none".to_string()
        } else {
            let list: Vec<String> = s.drains.iter().map(|d| format!("worker {d}")).collect();
            list.join(", ")
        };
        let _ = writeln!(o, "drains      {drains}");
        let t = &s.totals;
        let _ = writeln!(
            o,
            "workers     {} live, {} partitions assigned, capacity {}{}{}",
            t.live_workers,
            t.owned,
            t.capacity,
            t.owned_weight
                .map(|w| format!(", weight {w}"))
                .unwrap_or_default(),
            t.load
                .map(|l| {
                    let spread = t
                        .load_max_over_mean
                        .map(|r| format!(" (max/mean {r:.2})"))
                        .unwrap_or_default();
                    format!(", load {l:.2}{spread}")
                })
                .unwrap_or_default()
        );
        let _ = writeln!(
            o,
            "  {:<4} {:<9} {:<8} {:>4} {:>7} {:>9}  {:<18} {:>8} {:>6}",
            "id", "token", "applied", "cap", "load", "heartbeat", "state", "weight", "owned"
        );
        for w in &s.workers {
            let dash = || "-".to_string();
            let mut state = w.state.clone();
            if w.leader {
                state = format!("{state},leader");
            }
            let colour = match w.state.as_str() {
                "live" if w.leader => "32",
                "live" => "",
                "departing" | "draining" => "33",
                _ => "31",
            };
            let state_cell = format!("{state:<18}");
            let state_cell = if colour.is_empty() {
                state_cell
            } else {
                self.paint(colour, &state_cell)
            };
            let owned = match (&w.owned, &w.share_error) {
                (Some(n), _) => n.to_string(),
                (None, Some(_)) => "broken".into(),
                (None, None) => dash(),
            };
            let _ = writeln!(
                o,
                "  {:<4} {:<9} {:<8} {:>4} {:>7} {:>9}  {} {:>8} {:>6}",
                w.id,
                w.token.clone().unwrap_or_else(dash),
                w.applied.map_or_else(dash, |g| format!("g{g}")),
                w.capacity.map_or_else(dash, |c| c.to_string()),
                w.load.map_or_else(dash, |l| format!("{l:.2}")),
                w.heartbeat_age_ms.map_or_else(dash, age_text),
                state_cell,
                w.owned_weight.map_or_else(dash, |g| g.to_string()),
                owned,
            );
            if let Some(parts) = &w.partitions {
                let ids: Vec<PartitionId> = parts
                    .iter()
                    .filter_map(|p| PartitionId::parse(p).ok())
                    .collect();
                let _ = writeln!(o, "       {}", compact_cut(&ids, 2000));
            }
        }
        if s.consistent {
            let line = "consistent: every member's share assembles, every live lease has a share";
            let _ = writeln!(o, "{}", self.paint("32", line));
        }
        for w in &s.warnings {
            let _ = writeln!(o, "{}", self.paint("33", &format!("warning: {w}")));
        }
        o
    }
}

/// The SGR colour of a generation phase.
fn phase_colour(phase: &str) -> &'static str {
    match phase {
        "stable" => "32",
        "emergency" => "31",
        _ => "33",
    }
}

/// An age in milliseconds, short.
fn age_text(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        fmt_duration(Duration::from_millis(ms / 1000 * 1000))
    }
}

/// The sum of the partition loads a lease reports, if it reports any.
fn reported_load(v: &parti::parti_core::codec::LeaseValue) -> Option<f64> {
    let values = &v.loads.as_ref()?.values;
    values
        .iter()
        .any(Option::is_some)
        .then(|| values.iter().flatten().map(|l| f64::from(*l)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(verbose: bool) -> View {
        View {
            nats: "test".into(),
            prefix: "parti".into(),
            verbose,
            weights: None,
            colour: false,
        }
    }

    fn render(fleet: &Fleet, verbose: bool) -> String {
        let v = view(verbose);
        v.text(&v.status(fleet, SystemTime::now()))
    }

    #[test]
    fn an_empty_fleet_renders_with_warnings() {
        let out = render(&Fleet::default(), true);
        assert!(out.contains("leader      none"), "{out}");
        assert!(out.contains("\npins        none\n"), "{out}");
        assert!(out.contains("\ndrains      none\n"), "{out}");
        assert!(out.contains("warning: no committed generation"), "{out}");
        let mut fleet = Fleet::default();
        fleet
            .bad_leases
            .insert(parti::WorkerId(4), "not a parti value".into());
        fleet.bad_gen = Some("unsupported version 2".into());
        fleet.drains.insert(parti::WorkerId(4));
        for (p, w) in [("p10", 4), ("p2", 7)] {
            let p = parti::PartitionId::parse(p).unwrap();
            fleet.pins.insert(p, parti::WorkerId(w));
        }
        let out = render(&fleet, false);
        assert!(out.contains("undecodable-lease"), "{out}");
        assert!(
            out.contains("pins        p2 -> worker 7 (not live), p10 -> worker 4\n"),
            "{out}"
        );
        assert!(out.contains("drains      worker 4\n"), "{out}");
        let status = view(false).status(&fleet, SystemTime::now());
        assert_eq!(status.state, "cold-start");
        assert!(!status.consistent);
        let json: serde_json::Value = serde_json::to_value(&status).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["workers"][0]["state"], "undecodable-lease");
        assert_eq!(json["pins"][0]["partition"], "p2");
        assert_eq!(json["drains"], serde_json::json!([4]));
    }

    #[test]
    fn a_server_without_buckets_is_no_fleet() {
        let fleet = Fleet {
            missing: vec!["parti-leases".into(), "parti-assign".into()],
            ..Fleet::default()
        };
        let v = view(false);
        let status = v.status(&fleet, SystemTime::now());
        assert_eq!(status.state, "no-fleet");
        assert!(status.warnings.is_empty() && !status.consistent);
        let out = v.text(&status);
        assert!(
            out.contains("no buckets yet: parti-leases and parti-assign"),
            "{out}"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let fleet = Fleet::default();
        let mut v = view(false);
        let status = v.status(&fleet, SystemTime::now());
        assert!(!v.text(&status).contains('\x1b'));
        v.colour = true;
        assert!(v.text(&status).contains("\x1b[33mwarning:"));
    }

    #[test]
    fn reported_loads_show_per_worker_with_the_fleets_max_over_mean() {
        use parti::parti_core::codec::{LeaseValue, LoadReport};
        let lease = |capacity: u32, values: Vec<Option<f32>>| crate::fleet::Lease {
            value: LeaseValue {
                v: 1,
                token: 1,
                capacity,
                applied: None,
                departing: false,
                draining: false,
                loads: Some(LoadReport { share: 1, values }),
            },
            written: None,
        };
        let mut fleet = Fleet::default();
        // Worker 1 reports 30 (one partition without a report), worker 2 (capacity 2) 20,
        // worker 3 nothing: mean 50 / 3 capacity, worker 1 at 30 / (50 / 3) = 1.8x.
        fleet.leases.insert(
            parti::WorkerId(1),
            lease(1, vec![Some(10.0), None, Some(20.0)]),
        );
        fleet
            .leases
            .insert(parti::WorkerId(2), lease(2, vec![Some(20.0)]));
        let mut silent = lease(1, vec![]);
        silent.value.loads = None;
        fleet.leases.insert(parti::WorkerId(3), silent);
        let status = view(false).status(&fleet, SystemTime::now());
        let loads: Vec<Option<f64>> = status.workers.iter().map(|w| w.load).collect();
        assert_eq!(loads, vec![Some(30.0), Some(20.0), None]);
        assert_eq!(status.totals.load, Some(50.0));
        let r = status.totals.load_max_over_mean.unwrap();
        assert!((r - 1.8).abs() < 1e-9, "{r}");
        let out = view(false).text(&status);
        assert!(out.contains("load 50.00 (max/mean 1.80)"), "{out}");
        let json: serde_json::Value = serde_json::to_value(&status).unwrap();
        let r = json["totals"]["load_max_over_mean"].as_f64().unwrap();
        assert!((r - 1.8).abs() < 1e-9, "{r}");
    }
}
