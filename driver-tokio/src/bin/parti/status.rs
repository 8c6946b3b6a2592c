//! `parti status`: a fleet's workers, leader, committed generation, shares and pins, read from
//! its KV without starting a worker, with a warning for anything inconsistent.

use crate::common::{compact, natural_sort, short_token, truncate, NatsArgs};
use crate::fleet::{phase_name, Fleet};
use crate::CliResult;
use std::fmt::Write;

/// Arguments of `parti status`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("nats", |a| a.required(true)))]
pub struct StatusArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Prefix of the fleet's KV buckets.
    #[arg(long, default_value = "parti", value_name = "P")]
    prefix: String,
    /// Also list every worker's partitions (compactly).
    #[arg(long, short)]
    verbose: bool,
}

/// Runs `parti status`.
pub async fn run(args: StatusArgs) -> CliResult {
    let options = args.nats.options("parti-cli")?;
    let fleet = Fleet::from_nats(&options, &args.prefix).await?;
    let source = format!("{} prefix {}", options.display_urls(), args.prefix);
    let report = if fleet.missing.len() == 2 {
        // A server no worker of this prefix has used: nothing is wrong, there is no fleet yet.
        format!(
            "fleet       {source}\nno buckets yet: {} and {} do not exist on this server (no \
             worker with --prefix {} has run here)",
            fleet.missing[0], fleet.missing[1], args.prefix
        )
    } else {
        render(&fleet, &source, args.verbose)
    };
    say!("{}", report.trim_end());
    Ok(())
}

/// The status report.
fn render(fleet: &Fleet, source: &str, verbose: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "fleet       {source}");
    match &fleet.leader {
        Some(l) => {
            let _ = writeln!(
                o,
                "leader      worker {} (token {})",
                l.worker,
                short_token(l.token)
            );
        }
        None => match &fleet.bad_leader {
            Some(e) => {
                let _ = writeln!(o, "leader      undecodable ({e})");
            }
            None => {
                let _ = writeln!(o, "leader      none");
            }
        },
    }
    match &fleet.gen {
        Some(g) => {
            let _ = writeln!(
                o,
                "generation  {}, phase {}{}, epoch {} (of the leader that committed it), {} \
                 member(s)",
                g.generation,
                phase_name(g.phase),
                g.trigger
                    .map(|t| format!(" (after {})", phase_name(t)))
                    .unwrap_or_default(),
                g.epoch,
                g.members.len()
            );
        }
        None => match &fleet.bad_gen {
            Some(e) => {
                let _ = writeln!(o, "generation  undecodable ({e})");
            }
            None => {
                let _ = writeln!(o, "generation  none committed");
            }
        },
    }
    let _ = writeln!(o, "pins        {}", pins(fleet));
    let owned: usize = fleet.shares.values().flatten().map(|s| s.len()).sum();
    let _ = writeln!(
        o,
        "workers     {} live, {} partitions assigned",
        fleet.leases.len(),
        owned
    );
    let committed = fleet.gen.as_ref().map(|g| g.generation);
    let mut ids: Vec<_> = fleet.leases.keys().copied().collect();
    // Members without a lease still show, so their partitions are accounted for.
    for id in fleet.shares.keys().chain(fleet.bad_leases.keys()) {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    ids.sort();
    let _ = writeln!(
        o,
        "  {:<4} {:<9} {:<8} {:>4} {:>7}  {:<22} {:>10}",
        "id", "token", "applied", "cap", "load", "flags", "partitions"
    );
    for id in ids {
        let lease = fleet.leases.get(&id).map(|l| &l.value);
        let mut flags = Vec::new();
        if fleet.leader.as_ref().is_some_and(|l| l.worker == id) {
            flags.push("leader");
        }
        let (token, applied, cap, load) = match lease {
            Some(v) => {
                if v.departing {
                    flags.push("departing");
                }
                if v.draining {
                    flags.push("draining");
                }
                if !v.departing && v.applied.is_some() && v.applied < committed {
                    flags.push("behind");
                }
                (
                    short_token(v.token),
                    v.applied.map_or("-".into(), |g| g.to_string()),
                    v.capacity.to_string(),
                    v.load.map_or("-".into(), |l| format!("{l:.2}")),
                )
            }
            None if fleet.bad_leases.contains_key(&id) => {
                flags.push("undecodable-lease");
                ("?".into(), "?".into(), "?".into(), "?".into())
            }
            None => {
                flags.push("no-lease");
                ("-".into(), "-".into(), "-".into(), "-".into())
            }
        };
        let share = fleet.shares.get(&id);
        let count = match share {
            Some(Ok(s)) => s.len().to_string(),
            Some(Err(_)) => "broken".into(),
            None => "-".into(),
        };
        let flags = if flags.is_empty() {
            "-".to_string()
        } else {
            flags.join(",")
        };
        let _ = writeln!(
            o,
            "  {:<4} {:<9} {:<8} {:>4} {:>7}  {:<22} {:>10}",
            id.to_string(),
            token,
            applied,
            cap,
            load,
            flags,
            count
        );
        if verbose {
            if let Some(Ok(s)) = share {
                let _ = writeln!(o, "       {}", truncate(&compact(s), 2000));
            }
        }
    }
    let warnings = fleet.warnings();
    if warnings.is_empty() {
        let _ = writeln!(
            o,
            "consistent: every member's share assembles, every live lease has a share"
        );
    }
    for w in warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

/// The operators' pins, `p -> worker N` each, or `none`. A worker without a lease is flagged
/// `(not live)`: meanwhile the leader places its pinned partitions by its strategy.
fn pins(fleet: &Fleet) -> String {
    if fleet.pins.is_empty() {
        return "none".into();
    }
    let list: Vec<String> = natural_sort(fleet.pins.keys())
        .into_iter()
        .map(|p| {
            let worker = fleet.pins[p];
            let leased =
                fleet.leases.contains_key(&worker) || fleet.bad_leases.contains_key(&worker);
            let gone = if leased { "" } else { " (not live)" };
            format!("{p} -> worker {worker}{gone}")
        })
        .collect();
    truncate(&list.join(", "), 2000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_fleet_renders_with_warnings() {
        let out = render(&Fleet::default(), "test", true);
        assert!(out.contains("leader      none"), "{out}");
        assert!(out.contains("\npins        none\n"), "{out}");
        assert!(out.contains("warning: no committed generation"), "{out}");
        let mut fleet = Fleet::default();
        fleet
            .bad_leases
            .insert(parti::WorkerId(4), "not a parti value".into());
        fleet.bad_gen = Some("unsupported version 2".into());
        for (p, w) in [("p10", 4), ("p2", 7)] {
            let p = parti::PartitionId::parse(p).unwrap();
            fleet.pins.insert(p, parti::WorkerId(w));
        }
        let out = render(&fleet, "test", false);
        assert!(out.contains("undecodable-lease"), "{out}");
        assert!(
            out.contains("pins        p2 -> worker 7 (not live), p10 -> worker 4\n"),
            "{out}"
        );
        assert!(
            out.contains("generation  undecodable (unsupported version 2)"),
            "{out}"
        );
    }
}
