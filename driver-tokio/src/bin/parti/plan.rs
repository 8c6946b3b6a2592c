//! `parti plan` and `parti explain`: dry-runs against a fleet's committed assignment.
//!
//! The [`PlanInput`] is rebuilt from what the KV holds, as the leader builds it: the committed
//! shares give the previous owners and the partition list (the union of the shares, weight 100
//! each unless `--weights`), the live leases give the workers and their capacities (departing
//! and draining workers are left out, as the leader leaves them out), and the pins bucket gives
//! the pins. The change (`--add`, `--remove`) is applied to the worker list, and
//! [`parti::parti_core::plan`] / [`parti::parti_core::explain`] (the leader's own call) say
//! what the strategy would do. Nothing is written. `--json` prints the same as one document
//! ([`crate::plan_json`], schema in docs/plan-json.md).
//!
//! The rebuilt input passes [`parti_core::validate_input`]: pins that name a partition outside
//! the assignment or a worker that is not live after the change are left out, with a note.

use crate::common::{compact_cut, natural_sort, strategy_named, NatsArgs};
use crate::fleet::Fleet;
use crate::plan_json::{self, BalanceDoc, BalancePair, ChangeDoc, ExplainDoc, PlanDoc, WorkerDoc};
use crate::{CliError, CliResult};
use parti::parti_core::{self, short_id, summarize, PlanInput, WorkerSlot};
use parti::{Partition, PartitionId, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::PathBuf;

/// Where the committed assignment comes from: a NATS server (`--nats`, with its credential
/// flags) or a file.
#[derive(Debug, clap::Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("source").args(["nats", "file"]).required(true).multiple(false)))]
pub struct SourceArgs {
    /// With --nats: read the fleet's committed assignment and live leases from NATS.
    #[command(flatten)]
    nats: NatsArgs,
    /// Offline: a JSON object of worker ID (0..=4294967295) to its partitions: a list of
    /// partition IDs, or {"capacity": N (1..=4294967295, default 1), "partitions": [...]}.
    /// Every worker in it counts as live. A key given twice, any other key in a worker's
    /// object, or a partition listed twice (under one worker or two) is an error.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

/// What both commands share.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Prefix of the fleet's KV buckets (with --nats).
    #[arg(long, default_value_t = parti::Config::default().bucket_prefix, value_name = "P")]
    prefix: String,
    /// JSON object of partition ID to weight (a whole number 1..=18446744073709551615, each
    /// ID once); partitions not in it weigh 100.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// The placement strategy to preview (the core's registry; the first is the workers'
    /// default).
    #[arg(long, value_name = "NAME", default_value = parti::strategy::NAMES[0],
          value_parser = clap::builder::PossibleValuesParser::new(parti::strategy::NAMES))]
    strategy: String,
    /// Capacity of the workers added by --add.
    #[arg(long, default_value_t = parti::Config::default().capacity, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
}

/// The change to preview (one of them is required).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ChangeArgs {
    /// Add N new workers (IDs: the lowest free ones).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    add: Option<u32>,
    /// Remove these live workers (comma-separated IDs).
    #[arg(long, value_name = "ID[,ID..]", value_delimiter = ',')]
    remove: Option<Vec<u32>>,
}

/// An optional change (for explain).
#[derive(Debug, clap::Args)]
#[group(required = false, multiple = false)]
pub struct OptionalChangeArgs {
    /// Explain the placement after adding N new workers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    add: Option<u32>,
    /// Explain the placement after removing these live workers.
    #[arg(long, value_name = "ID[,ID..]", value_delimiter = ',')]
    remove: Option<Vec<u32>>,
}

/// Arguments of `parti plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    change: ChangeArgs,
    /// Also list the partitions each worker gains and loses, compactly: `p0..p3` is p0, p1,
    /// p2, p3 (IDs never hold `..`, so `a-1..a-3` is a range and `a-1-a-3` one ID); a list
    /// over 400 characters ends with `... (N more partitions)`; --json lists them all.
    #[arg(long, short)]
    verbose: bool,
    /// Print one JSON document instead (schema: docs/plan-json.md): "v" (1), "command"
    /// ("plan"), "source", "strategy", "change" {"kind", "workers"}, "partitions",
    /// "total_weight", "weighted", "workers" [{"id", "status", "capacity", "before",
    /// "after", "gained", "lost"}], "moved", "moved_weight", "even_split_moves", "balance"
    /// {"before", "after": {"max_over_mean", "min_over_mean"}}, "notes".
    #[arg(long)]
    json: bool,
}

/// Arguments of `parti explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The partition to explain (its ID, keys joined by '.').
    #[arg(value_name = "PARTITION")]
    partition: String,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    change: OptionalChangeArgs,
    /// Print one JSON document instead (schema: docs/plan-json.md): "v" (1), "command"
    /// ("explain"), "partition", "source", "strategy", "change" {"kind", "workers"}, "now"
    /// and "planned" (worker IDs or null), "reason", "notes".
    #[arg(long)]
    json: bool,
}

/// A worker-set change.
#[derive(Debug, Clone, Default)]
enum Change {
    #[default]
    None,
    Add(u32),
    Remove(Vec<WorkerId>),
}

/// The committed picture and the changed one.
struct Scenario {
    source: String,
    strategy: Box<dyn parti_core::Strategy>,
    /// Committed members and their shares, as the "before" plan.
    before_input: PlanInput,
    before: parti_core::Plan,
    /// Live workers after the change, partitions and previous owners.
    after_input: PlanInput,
    added: Vec<WorkerId>,
    removed: Vec<WorkerId>,
    notes: Vec<String>,
    weighted: bool,
}

async fn load(common: &CommonArgs) -> CliResult<(Fleet, String)> {
    match (common.source.nats.given(), &common.source.file) {
        (true, _) => {
            let options = common.source.nats.options("parti-cli")?;
            let urls = options.display_urls();
            let fleet = Fleet::from_nats(&options, &common.prefix).await?;
            if let Some(bucket) = fleet.missing.first() {
                return Err(CliError::runtime(format!(
                    "bucket {bucket} does not exist at {urls} (has a worker with --prefix {} \
                     run on this server?)",
                    common.prefix
                )));
            }
            Ok((fleet, format!("{urls} prefix {}", common.prefix)))
        }
        (false, Some(_)) if common.source.nats.any_credentials() => Err(CliError::usage(
            "--user, --password, --token, --nkey-seed-file, --creds and --tls-ca go with \
             --nats, not --file",
        )),
        (false, Some(path)) => Ok((Fleet::from_file(path)?, format!("file {}", path.display()))),
        (false, None) => Err(CliError::usage("give --nats URL or --file FILE")),
    }
}

fn scenario(
    fleet: &Fleet,
    source: String,
    common: &CommonArgs,
    change: Change,
) -> CliResult<Scenario> {
    let Some(gen) = &fleet.gen else {
        return Err(CliError::runtime(format!(
            "{source} has no committed assignment yet to plan against (run 'parti status' to see why)"
        )));
    };
    let mut notes = Vec::new();
    for (id, share) in &fleet.shares {
        if let Err(e) = share {
            notes.push(format!(
                "worker {id}'s share cannot be read ({e}); its partitions are left out"
            ));
        }
    }
    let weights = match &common.weights {
        Some(path) => crate::common::load_weights(path)?,
        None => BTreeMap::new(),
    };
    let previous = fleet.owners();
    let partitions: Vec<Partition> = previous
        .keys()
        .map(|id| {
            let w = weights
                .get(id)
                .copied()
                .unwrap_or(Partition::DEFAULT_WEIGHT);
            let keys: Vec<&str> = id.keys().collect();
            Partition::new(&keys, w).map_err(|e| CliError::runtime(e.to_string()))
        })
        .collect::<CliResult<_>>()?;
    if let (Some(path), Err(e)) = (
        &common.weights,
        parti_core::partition::validate_partitions(&partitions),
    ) {
        return Err(CliError::usage(format!(
            "weights file {}: {e}",
            path.display()
        )));
    }
    let unknown = weights
        .keys()
        .filter(|p| !previous.contains_key(*p))
        .count();
    if unknown > 0 {
        notes.push(format!(
            "{unknown} partitions of the weights file are not in the assignment; ignored"
        ));
    }
    let capacity = |id: &WorkerId| fleet.leases.get(id).map_or(1, |l| l.value.capacity.max(1));
    let before_workers: Vec<WorkerSlot> = gen
        .members
        .keys()
        .map(|id| WorkerSlot {
            id: *id,
            capacity: capacity(id),
        })
        .collect();
    // As the leader: departing workers, and workers draining (by their lease or by an
    // operator's drain request), are not planned onto.
    let left_out = |id: &WorkerId, l: &crate::fleet::Lease| {
        l.value.departing || l.value.draining || fleet.drains.contains(id)
    };
    let mut live: Vec<WorkerSlot> = fleet
        .leases
        .iter()
        .filter(|(id, l)| !left_out(id, l))
        .map(|(id, l)| WorkerSlot {
            id: *id,
            capacity: l.value.capacity.max(1),
        })
        .collect();
    let left_out: Vec<String> = fleet
        .leases
        .iter()
        .filter(|(id, l)| left_out(id, l))
        .map(|(id, _)| id.to_string())
        .collect();
    if !left_out.is_empty() {
        notes.push(format!(
            "departing or draining workers are not planned onto: {}",
            left_out.join(",")
        ));
    }
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    match change {
        Change::None => {}
        Change::Add(n) => {
            let taken: BTreeSet<WorkerId> = fleet
                .leases
                .keys()
                .chain(gen.members.keys())
                .copied()
                .collect();
            let mut next = 0u32;
            while added.len() < n as usize {
                if !taken.contains(&WorkerId(next)) {
                    added.push(WorkerId(next));
                    live.push(WorkerSlot {
                        id: WorkerId(next),
                        capacity: common.capacity,
                    });
                }
                next += 1;
            }
        }
        Change::Remove(ids) => {
            for id in ids {
                if removed.contains(&id) {
                    return Err(CliError::usage(format!(
                        "--remove {id}: worker {id} is given twice"
                    )));
                }
                let Some(i) = live.iter().position(|w| w.id == id) else {
                    let ids: Vec<String> = live.iter().map(|w| w.id.to_string()).collect();
                    return Err(CliError::usage(format!(
                        "--remove {id}: worker {id} is not a live worker; live workers: {}",
                        if ids.is_empty() {
                            "none".into()
                        } else {
                            ids.join(",")
                        }
                    )));
                };
                live.remove(i);
                removed.push(id);
            }
        }
    }
    live.sort_by_key(|w| w.id);
    if live.is_empty() {
        return Err(CliError::usage(
            "no live worker would be left to own the partitions: remove fewer workers",
        ));
    }
    let before = parti_core::Plan {
        assignment: previous.clone(),
    };
    // The leader's input: the committed owners as previous, and the operators' pins.
    let mut before_input = PlanInput::new(before_workers, partitions.clone());
    before_input.previous = previous.clone();
    before_input.pins = fleet.pins.clone();
    let mut after_input = PlanInput::new(live, partitions);
    after_input.previous = previous;
    after_input.pins = pins_that_hold(&fleet.pins, &after_input, &mut notes);
    Ok(Scenario {
        source: format!("{source}, committed {}", gen.generation),
        strategy: strategy_named(&common.strategy)?,
        before_input,
        before,
        after_input,
        added,
        removed,
        notes,
        weighted: !weights.is_empty(),
    })
}

/// The pins that can hold on `input`: a pin of a partition outside the assignment, or to a
/// worker that is not live after the change, is left out with a note (the leader ignores
/// such a pin; [`parti_core::validate_input`] refuses it).
fn pins_that_hold(
    pins: &BTreeMap<PartitionId, WorkerId>,
    input: &PlanInput,
    notes: &mut Vec<String>,
) -> BTreeMap<PartitionId, WorkerId> {
    let listed: BTreeSet<&PartitionId> = input.partitions.iter().map(|p| p.id()).collect();
    let live: BTreeSet<WorkerId> = input.workers.iter().map(|w| w.id).collect();
    let mut out = BTreeMap::new();
    for (p, w) in pins {
        if !listed.contains(p) {
            notes.push(format!(
                "the pin of {} to worker {w} is left out: the partition is not in the \
                 assignment",
                p.short()
            ));
        } else if !live.contains(w) {
            notes.push(format!(
                "the pin of {} to worker {w} does not hold: worker {w} is not live after the \
                 change",
                p.short()
            ));
        } else {
            out.insert(p.clone(), *w);
        }
    }
    out
}

fn describe(s: &Scenario) -> String {
    let ids = |v: &[WorkerId]| {
        v.iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if !s.added.is_empty() {
        format!("add {} worker(s) (new id {})", s.added.len(), ids(&s.added))
    } else if !s.removed.is_empty() {
        format!("remove worker(s) {}", ids(&s.removed))
    } else {
        "no change".into()
    }
}

fn run_strategy(s: &Scenario) -> CliResult<parti_core::Plan> {
    parti_core::validate_input(&s.after_input)
        .and_then(|()| parti_core::plan(s.strategy.as_ref(), &s.after_input))
        .map_err(|e| CliError::runtime(format!("cannot plan: {e}")))
}

fn change_doc(s: &Scenario) -> ChangeDoc {
    let ids = |v: &[WorkerId]| v.iter().map(|w| w.0).collect();
    if !s.added.is_empty() {
        ChangeDoc {
            kind: "add",
            workers: ids(&s.added),
        }
    } else if !s.removed.is_empty() {
        ChangeDoc {
            kind: "remove",
            workers: ids(&s.removed),
        }
    } else {
        ChangeDoc {
            kind: "none",
            workers: Vec::new(),
        }
    }
}

/// Runs `parti plan`.
pub async fn run_plan(args: PlanArgs) -> CliResult {
    let change = match (args.change.add, args.change.remove) {
        (Some(n), _) => Change::Add(n),
        (None, Some(ids)) => Change::Remove(ids.into_iter().map(WorkerId).collect()),
        (None, None) => return Err(CliError::usage("give --add N or --remove ID[,ID..]")),
    };
    let (fleet, source) = load(&args.common).await?;
    let s = scenario(&fleet, source, &args.common, change)?;
    let after = run_strategy(&s)?;
    if args.json {
        say!("{}", plan_json::to_text(&plan_doc(&s, &after)));
    } else {
        say!("{}", render_plan(&s, &after, args.verbose).trim_end());
    }
    Ok(())
}

/// One worker's line of the plan: before and after, and what it gains and loses.
struct Row {
    id: WorkerId,
    status: &'static str,
    capacity: u32,
    before: usize,
    after: usize,
    gained: Vec<PartitionId>,
    lost: Vec<PartitionId>,
}

/// Every worker of the committed assignment or the plan, by ID.
fn rows(s: &Scenario, after: &parti_core::Plan) -> Vec<Row> {
    let before_by = s.before.by_worker();
    let after_by = after.by_worker();
    let capacity: BTreeMap<WorkerId, u32> = s
        .before_input
        .workers
        .iter()
        .chain(&s.after_input.workers)
        .map(|w| (w.id, w.capacity))
        .collect();
    let empty = BTreeSet::new();
    capacity
        .iter()
        .map(|(&id, &capacity)| {
            let b = before_by.get(&id).unwrap_or(&empty);
            let a = after_by.get(&id).unwrap_or(&empty);
            let status = if s.added.contains(&id) {
                "new"
            } else if s.removed.contains(&id) {
                "removed"
            } else if !s.after_input.workers.iter().any(|w| w.id == id) {
                "gone"
            } else {
                "live"
            };
            let sorted = |set: std::collections::btree_set::Difference<'_, PartitionId>| {
                natural_sort(set).into_iter().cloned().collect()
            };
            Row {
                id,
                status,
                capacity,
                before: b.len(),
                after: a.len(),
                gained: sorted(a.difference(b)),
                lost: sorted(b.difference(a)),
            }
        })
        .collect()
}

fn plan_doc(s: &Scenario, after: &parti_core::Plan) -> PlanDoc {
    let sum_after = summarize(&s.after_input, after);
    let sum_before = summarize(&s.before_input, &s.before);
    let names = |v: Vec<PartitionId>| v.iter().map(ToString::to_string).collect();
    PlanDoc {
        v: plan_json::VERSION,
        command: "plan",
        source: s.source.clone(),
        strategy: s.strategy.name().to_string(),
        change: change_doc(s),
        partitions: s.after_input.partitions.len(),
        total_weight: s.after_input.partitions.iter().map(|p| p.weight()).sum(),
        weighted: s.weighted,
        workers: rows(s, after)
            .into_iter()
            .map(|r| WorkerDoc {
                id: r.id.0,
                status: r.status,
                capacity: r.capacity,
                before: r.before,
                after: r.after,
                gained: names(r.gained),
                lost: names(r.lost),
            })
            .collect(),
        moved: sum_after.moved,
        moved_weight: sum_after.moved_weight,
        even_split_moves: least_moves(s),
        balance: BalancePair {
            before: BalanceDoc {
                max_over_mean: sum_before.max_over_mean,
                min_over_mean: sum_before.min_over_mean,
            },
            after: BalanceDoc {
                max_over_mean: sum_after.max_over_mean,
                min_over_mean: sum_after.min_over_mean,
            },
        },
        notes: s.notes.clone(),
    }
}

fn render_plan(s: &Scenario, after: &parti_core::Plan, verbose: bool) -> String {
    let mut o = String::new();
    let total = s.after_input.partitions.len();
    let total_weight: u64 = s.after_input.partitions.iter().map(|p| p.weight()).sum();
    let _ = writeln!(
        o,
        "plan        {}; {} live worker(s) after it; {} partitions{}; strategy {}",
        describe(s),
        s.after_input.workers.len(),
        total,
        if s.weighted {
            " (weighted)"
        } else {
            ", weight 100 each"
        },
        s.strategy.name()
    );
    let _ = writeln!(o, "source      {}", s.source);
    for n in &s.notes {
        let _ = writeln!(o, "note        {n}");
    }
    let _ = writeln!(
        o,
        "  {:<12} {:>7} {:>7} {:>6} {:>6}",
        "worker", "before", "after", "gain", "loss"
    );
    for r in rows(s, after) {
        let label = match r.status {
            "live" => r.id.to_string(),
            status => format!("{} ({status})", r.id),
        };
        let _ = writeln!(
            o,
            "  {:<12} {:>7} {:>7} {:>6} {:>6}",
            label,
            r.before,
            r.after,
            r.gained.len(),
            r.lost.len()
        );
        if verbose && !(r.gained.is_empty() && r.lost.is_empty()) {
            let _ = writeln!(
                o,
                "               +[{}] -[{}]",
                compact_cut(&r.gained, 400),
                compact_cut(&r.lost, 400)
            );
        }
    }
    let sum_after = summarize(&s.after_input, after);
    let sum_before = summarize(&s.before_input, &s.before);
    let floor = least_moves(s);
    let pct = |w: u64| {
        if total_weight == 0 {
            0.0
        } else {
            100.0 * w as f64 / total_weight as f64
        }
    };
    let _ = writeln!(
        o,
        "moved       {} of {} partitions (weight {}, {:.1}% of the total); an even split \
         would move about {}",
        sum_after.moved,
        total,
        sum_after.moved_weight,
        pct(sum_after.moved_weight),
        floor
    );
    let _ = writeln!(
        o,
        "balance     max/mean {:.2} -> {:.2}, min/mean {:.2} -> {:.2}",
        sum_before.max_over_mean,
        sum_after.max_over_mean,
        sum_before.min_over_mean,
        sum_after.min_over_mean
    );
    o
}

/// About the fewest partitions any balanced placement must move for the change: the newcomers'
/// fair share (by count), or everything the removed or vanished workers held.
fn least_moves(s: &Scenario) -> usize {
    let total = s.after_input.partitions.len();
    let cap: u64 = s
        .after_input
        .workers
        .iter()
        .map(|w| u64::from(w.capacity))
        .sum();
    let new_cap: u64 = s
        .after_input
        .workers
        .iter()
        .filter(|w| s.added.contains(&w.id))
        .map(|w| u64::from(w.capacity))
        .sum();
    let live: BTreeSet<WorkerId> = s.after_input.workers.iter().map(|w| w.id).collect();
    let orphaned = s
        .before
        .assignment
        .values()
        .filter(|w| !live.contains(w))
        .count();
    let fair_new = (total as u64 * new_cap).checked_div(cap).unwrap_or(0) as usize;
    orphaned + fair_new
}

/// Runs `parti explain`.
pub async fn run_explain(args: ExplainArgs) -> CliResult {
    let partition = PartitionId::parse(&args.partition).map_err(|e| {
        CliError::usage(format!(
            "{:?} is not a partition ID: {e}",
            short_id(&args.partition)
        ))
    })?;
    let change = match (args.change.add, args.change.remove) {
        (Some(n), _) => Change::Add(n),
        (None, Some(ids)) => Change::Remove(ids.into_iter().map(WorkerId).collect()),
        (None, None) => Change::None,
    };
    let (fleet, source) = load(&args.common).await?;
    let s = scenario(&fleet, source, &args.common, change)?;
    if !s.after_input.previous.contains_key(&partition) {
        let known = natural_sort(s.after_input.previous.keys());
        let sample: Vec<String> = known.iter().take(5).map(|p| p.short().into()).collect();
        return Err(CliError::usage(format!(
            "partition {} is not in the committed assignment ({} partitions{}{})",
            partition.short(),
            known.len(),
            if sample.is_empty() { "" } else { ", e.g. " },
            sample.join(", ")
        )));
    }
    let e = parti_core::validate_input(&s.after_input)
        .and_then(|()| parti_core::explain(s.strategy.as_ref(), &s.after_input, &partition))
        .map_err(|e| CliError::runtime(format!("cannot explain: {e}")))?;
    if args.json {
        let doc = ExplainDoc {
            v: plan_json::VERSION,
            command: "explain",
            partition: e.partition.to_string(),
            source: s.source.clone(),
            strategy: s.strategy.name().to_string(),
            change: change_doc(&s),
            now: e.previous.map(|w| w.0),
            planned: e.owner.map(|w| w.0),
            reason: e.reason,
            notes: s.notes.clone(),
        };
        say!("{}", plan_json::to_text(&doc));
        return Ok(());
    }
    let who = |w: Option<WorkerId>| w.map_or("nobody".to_string(), |w| format!("worker {w}"));
    say!("partition   {}", e.partition);
    say!("source      {}", s.source);
    say!("now         {}", who(e.previous));
    say!(
        "planned     {} (strategy {}, {})",
        who(e.owner),
        s.strategy.name(),
        describe(&s)
    );
    say!("reason      {}", e.reason);
    for n in &s.notes {
        say!("note        {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(file: PathBuf) -> CommonArgs {
        CommonArgs {
            source: SourceArgs {
                nats: NatsArgs::default(),
                file: Some(file),
            },
            prefix: "parti".into(),
            weights: None,
            strategy: parti::strategy::NAMES[0].into(),
            capacity: 1,
        }
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse_strategy(flags: &[&str]) -> Result<String, clap::Error> {
        use clap::Parser;
        let args = ["parti", "--file", "a.json"];
        Cli::try_parse_from(args.iter().chain(flags)).map(|cli| cli.common.strategy)
    }

    #[test]
    fn strategy_accepts_exactly_cores_names_and_defaults_to_the_first() {
        for name in parti::strategy::NAMES {
            let given = parse_strategy(&["--strategy", name]).unwrap();
            assert_eq!(strategy_named(&given).unwrap().name(), name);
        }
        assert_eq!(
            parse_strategy(&[]).unwrap(),
            parti::strategy::NAMES[0],
            "the default"
        );
        let e = parse_strategy(&["--strategy", "fastest"])
            .unwrap_err()
            .to_string();
        for name in parti::strategy::NAMES {
            assert!(e.contains(name), "{name} in {e}");
        }
    }

    #[test]
    fn adding_a_worker_to_two_moves_about_a_third() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let a: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
        let b: Vec<String> = (30..60).map(|i| format!("p{i}")).collect();
        std::fs::write(&path, serde_json::json!({"0": a, "1": b}).to_string()).unwrap();
        let c = common(path.clone());
        let fleet = Fleet::from_file(&path).unwrap();
        let s = scenario(&fleet, "test".into(), &c, Change::Add(1)).unwrap();
        assert_eq!(s.added, vec![WorkerId(2)]);
        let after = run_strategy(&s).unwrap();
        let sum = summarize(&s.after_input, &after);
        // The newcomer may stay within the 5 % slack under an even third.
        assert!((19..=21).contains(&sum.moved), "{sum:?}");
        assert_eq!(least_moves(&s), 20);
        let out = render_plan(&s, &after, true);
        assert!(
            out.contains(&format!("moved       {} of 60", sum.moved)),
            "{out}"
        );
        let err = scenario(&fleet, "t".into(), &c, Change::Remove(vec![WorkerId(7)]));
        assert!(matches!(err, Err(CliError::Usage(m)) if m.contains("live workers: 0,1")));
    }
}
