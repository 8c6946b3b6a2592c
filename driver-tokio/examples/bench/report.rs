//! What was measured, and the table that shows it.

use crate::Profile;
use std::collections::BTreeMap;

/// One figure of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    JoinStored,
    JoinSeen,
    JoinClaimed,
    JoinStart,
    Leave,
    LeaveReturned,
    KillFollower,
    KillFollowerDetected,
    KillFollowerFromExpiry,
    KillLeader,
    KillLeaderFromExpiry,
    KillLeaderReassigned,
    RssFollower,
    RssLeader,
    KvLeader,
    KvFollower,
}

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Bytes,
    PerMinute,
}

impl Metric {
    const ALL: [Metric; 16] = [
        Metric::JoinStored,
        Metric::JoinSeen,
        Metric::JoinClaimed,
        Metric::JoinStart,
        Metric::Leave,
        Metric::LeaveReturned,
        Metric::KillFollower,
        Metric::KillFollowerDetected,
        Metric::KillFollowerFromExpiry,
        Metric::KillLeader,
        Metric::KillLeaderFromExpiry,
        Metric::KillLeaderReassigned,
        Metric::RssFollower,
        Metric::RssLeader,
        Metric::KvLeader,
        Metric::KvFollower,
    ];

    /// Row label; the number is the brief's item, blank for a supporting row.
    fn label(self) -> (&'static str, &'static str) {
        match self {
            Metric::JoinStored => ("1", "join: lease stored -> leader Scaling"),
            Metric::JoinSeen => ("", "  lease seen (watcher) -> leader Scaling"),
            Metric::JoinClaimed => ("", "  newcomer IdClaimed -> leader Scaling"),
            Metric::JoinStart => ("", "  newcomer start() -> leader Scaling"),
            Metric::Leave => ("2", "leave: stop() -> all owned once"),
            Metric::LeaveReturned => ("", "  stop() returned"),
            Metric::KillFollower => ("3", "SIGKILL follower -> all owned once"),
            Metric::KillFollowerDetected => ("", "  SIGKILL -> leader Emergency"),
            Metric::KillFollowerFromExpiry => ("", "  its lease expiry -> all owned once"),
            Metric::KillLeader => ("4", "SIGKILL leader -> new leader"),
            Metric::KillLeaderFromExpiry => ("", "  leader lease expiry -> new leader"),
            Metric::KillLeaderReassigned => ("", "  SIGKILL leader -> all owned once"),
            Metric::RssFollower => ("5", "RSS idle follower process (64 parts)"),
            Metric::RssLeader => ("", "RSS idle leader process (64 parts)"),
            Metric::KvLeader => ("6", "KV writes/min, idle leader"),
            Metric::KvFollower => ("", "KV writes/min, idle follower"),
        }
    }

    fn unit(self) -> Unit {
        match self {
            Metric::RssFollower | Metric::RssLeader => Unit::Bytes,
            Metric::KvLeader | Metric::KvFollower => Unit::PerMinute,
            _ => Unit::Seconds,
        }
    }

    /// The goal (an upper bound in the metric's unit, if any), its rule, and its value for
    /// this profile when it depends on the profile.
    fn goal(self, p: &Profile) -> Goal {
        let hb = p.base.heartbeat_interval.as_secs_f64();
        let ttl = p.base.lease_ttl.as_secs_f64();
        let secs = |v: f64| fmt_value(Unit::Seconds, v);
        let (limit, rule, value) = match self {
            Metric::JoinStored | Metric::JoinSeen => (Some(0.005), "<= 5 ms", None),
            Metric::KillFollower => (Some(ttl + 0.5), "<= TTL+0.5s", Some(secs(ttl + 0.5))),
            // VmRSS counts KiB: the goal is read as 10 MiB (10.49 decimal MB).
            Metric::RssFollower | Metric::RssLeader => (Some(10.0 * MIB), "<= 10 MiB", None),
            Metric::KillFollowerFromExpiry => (
                None,
                "ref emergency grace",
                Some(secs(p.base.emergency_grace.as_secs_f64())),
            ),
            Metric::KvFollower => (None, "ref 1/heartbeat", Some(format!("{:.0}", 60.0 / hb))),
            Metric::KvLeader => (
                Some(90.0 / hb),
                "<= 1.5/heartbeat",
                Some(format!("{:.0}", 90.0 / hb)),
            ),
            Metric::KillFollowerDetected | Metric::KillLeader => (
                None,
                "ref TTL-hb..TTL",
                Some(format!("{}-{}", secs(ttl - hb), secs(ttl))),
            ),
            _ => (None, "", None),
        };
        Goal { limit, rule, value }
    }
}

struct Goal {
    limit: Option<f64>,
    rule: &'static str,
    value: Option<String>,
}

/// The goal column: the rule, and its value per profile when it depends on the profile.
fn goal_text(m: Metric, profiles: &[(Profile, Results)]) -> String {
    let goals: Vec<Goal> = profiles.iter().map(|(p, _)| m.goal(p)).collect();
    let Some(first) = goals.first() else {
        return String::new();
    };
    let values: Vec<String> = goals.iter().filter_map(|g| g.value.clone()).collect();
    if values.is_empty() {
        first.rule.to_string()
    } else {
        format!("{} ({})", first.rule, values.join(" / "))
    }
}

/// Samples and failures of one profile.
#[derive(Default)]
pub struct Results {
    samples: BTreeMap<Metric, Vec<f64>>,
    failures: BTreeMap<Metric, usize>,
    /// Failure messages, in order, without repeats.
    pub errors: Vec<String>,
    /// Supporting details (RSS peaks, write breakdowns).
    pub notes: Vec<String>,
}

impl Results {
    pub fn add(&mut self, m: Metric, v: f64) {
        self.samples.entry(m).or_default().push(v);
    }

    pub fn fail(&mut self, metrics: &[Metric], why: &str) {
        for m in metrics {
            *self.failures.entry(*m).or_default() += 1;
        }
        if !self.errors.iter().any(|e| e == why) {
            self.errors.push(why.to_string());
        }
    }

    pub fn note(&mut self, n: String) {
        self.notes.push(n);
    }

    /// The samples of `m`, in run order.
    pub fn samples(&self, m: Metric) -> &[f64] {
        self.samples.get(&m).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The summary lines for the targets, one per figure, for the `defaults` profile:
/// `crash_reassigned_ms defaults median=M max=X` (SIGKILL of a follower -> all owned once),
/// `leader_kill_reassigned_ms defaults median=M max=X` (SIGKILL of the leader -> all owned
/// once), `idle_writes_per_min follower=F leader=L` (medians over the idle followers and runs).
/// A figure without samples prints `none`.
pub fn print_summary(profiles: &[(Profile, Results)]) {
    let Some((p, r)) = profiles.iter().find(|(p, _)| p.key == "defaults") else {
        println!("summary: the defaults profile did not run");
        return;
    };
    let ms = |m: Metric| {
        let v = r.samples(m);
        if v.is_empty() {
            "median=none max=none".to_string()
        } else {
            format!("median={:.0} max={:.0}", median(v) * 1e3, max(v) * 1e3)
        }
    };
    let rate = |m: Metric| {
        let v = r.samples(m);
        if v.is_empty() {
            "none".to_string()
        } else {
            format!("{:.1}", median(v))
        }
    };
    println!(
        "summary samples: crash={} leader_kill={} idle_followers={} idle_leaders={}",
        r.samples(Metric::KillFollower).len(),
        r.samples(Metric::KillLeaderReassigned).len(),
        r.samples(Metric::KvFollower).len(),
        r.samples(Metric::KvLeader).len()
    );
    println!("crash_reassigned_ms {} {}", p.key, ms(Metric::KillFollower));
    println!(
        "leader_kill_reassigned_ms {} {}",
        p.key,
        ms(Metric::KillLeaderReassigned)
    );
    println!(
        "idle_writes_per_min follower={} leader={}",
        rate(Metric::KvFollower),
        rate(Metric::KvLeader)
    );
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Seconds => {
            let a = v.abs();
            if a < 0.001 {
                format!("{:.0} us", v * 1e6)
            } else if a < 0.1 {
                format!("{:.2} ms", v * 1e3)
            } else if a < 1.0 {
                format!("{:.0} ms", v * 1e3)
            } else {
                format!("{v:.3} s")
            }
        }
        Unit::Bytes => format!("{:.2} MiB", v / MIB),
        Unit::PerMinute => format!("{v:.1}/min"),
    }
}

/// One profile's cell: median, max, runs, verdict.
fn cell(m: Metric, p: &Profile, r: &Results) -> String {
    let samples = r.samples.get(&m).map(Vec::as_slice).unwrap_or(&[]);
    let failed = r.failures.get(&m).copied().unwrap_or(0);
    if samples.is_empty() {
        let text = if failed > 0 {
            format!(
                "FAILED ({failed} run{})",
                if failed == 1 { "" } else { "s" }
            )
        } else {
            "not measured".into()
        };
        return format!("{text:<CELL_W$}");
    }
    let unit = m.unit();
    let verdict = match m.goal(p).limit {
        Some(limit) if max(samples) <= limit => "ok",
        Some(limit) if median(samples) <= limit => "max!",
        Some(_) => "MISS",
        None => "",
    };
    let n = if failed > 0 {
        format!("{}/{}", samples.len(), samples.len() + failed)
    } else {
        samples.len().to_string()
    };
    format!(
        "{:>9} {:>9} {:>3} {:<4}",
        fmt_value(unit, median(samples)),
        fmt_value(unit, max(samples)),
        n,
        verdict
    )
}

const CELL_W: usize = 28;
const MIB: f64 = 1024.0 * 1024.0;
const LABEL_W: usize = 40;

/// Prints the table, then samples, notes and failures.
pub fn print(profiles: &[(Profile, Results)]) {
    let mut header = format!("{:<2} {:<LABEL_W$}", "#", "measure");
    let mut sub = format!("{:<2} {:<LABEL_W$}", "", "");
    for (p, _) in profiles {
        header.push_str(&format!(" | {:<CELL_W$}", p.title()));
        sub.push_str(&format!(
            " | {:>9} {:>9} {:>3} {:<4}",
            "median", "max", "n", ""
        ));
    }
    header.push_str(" | goal");
    sub.push_str(" |");
    println!("{header}");
    println!("{sub}");
    println!("{}", "-".repeat(header.len() + 24));
    for m in Metric::ALL {
        let (n, label) = m.label();
        let mut line = format!("{n:<2} {label:<LABEL_W$}");
        for (p, r) in profiles {
            line.push_str(&format!(" | {}", cell(m, p, r)));
        }
        line.push_str(&format!(" | {}", goal_text(m, profiles)));
        println!("{}", line.trim_end());
    }
    println!();
    println!("samples (in run order):");
    for m in Metric::ALL {
        for (p, r) in profiles {
            if let Some(v) = r.samples.get(&m) {
                let list: Vec<String> = v.iter().map(|x| fmt_value(m.unit(), *x)).collect();
                println!(
                    "  {:<LABEL_W$} {:<9} {}",
                    m.label().1.trim(),
                    p.key,
                    list.join(", ")
                );
            }
        }
    }
    let notes: Vec<&String> = profiles.iter().flat_map(|(_, r)| &r.notes).collect();
    if !notes.is_empty() {
        println!();
        println!("notes:");
        for n in notes {
            println!("  {n}");
        }
    }
    let errors: Vec<(&str, &String)> = profiles
        .iter()
        .flat_map(|(p, r)| r.errors.iter().map(move |e| (p.name, e)))
        .collect();
    println!();
    if errors.is_empty() {
        println!("failures: none");
    } else {
        println!("failures:");
        for (p, e) in errors {
            println!("  {p}: {e}");
        }
    }
}
