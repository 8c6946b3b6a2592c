//! Helpers shared by the subcommands: compact partition lists, durations, timestamps,
//! partition and weight files, strategy selection.

use crate::{CliError, CliResult};
use parti::strategy::{Balanced, BoundedLoad, ConsistentHash, RoundRobin, Strategy};
use parti::{Partition, PartitionId};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The placement strategy to preview with (`--strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StrategyArg {
    /// Sticky and weight-aware (the default of every worker).
    #[default]
    Balanced,
    /// Consistent hashing (xxh3 ring).
    ConsistentHash,
    /// Consistent hashing with bounded loads.
    BoundedLoad,
    /// Round robin over the sorted workers.
    RoundRobin,
}

impl StrategyArg {
    /// The strategy itself.
    pub fn build(self) -> Box<dyn Strategy> {
        match self {
            StrategyArg::Balanced => Box::new(Balanced::default()),
            StrategyArg::ConsistentHash => Box::new(ConsistentHash::default()),
            StrategyArg::BoundedLoad => Box::new(BoundedLoad::default()),
            StrategyArg::RoundRobin => Box::new(RoundRobin),
        }
    }
}

/// `p0`, `p1`, ... `p{n-1}`, each with the default weight.
pub fn numbered_partitions(from: usize, to: usize) -> Vec<Partition> {
    (from..to)
        .map(|i| Partition::single(&format!("p{i}")).expect("p<number> is a valid partition"))
        .collect()
}

/// Splits an ID into its text before a trailing number, and that number.
fn split_number(id: &str) -> (&str, Option<u64>) {
    let digits = id.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (head, tail) = id.split_at(id.len() - digits);
    // "p007" stays text: leading zeros do not make a range.
    match tail.parse::<u64>() {
        Ok(n) if !(tail.len() > 1 && tail.starts_with('0')) => (head, Some(n)),
        _ => (id, None),
    }
}

/// The IDs in natural order (`p2` before `p10`).
pub fn natural_sort<'a>(ids: impl IntoIterator<Item = &'a PartitionId>) -> Vec<&'a PartitionId> {
    let mut v: Vec<&PartitionId> = ids.into_iter().collect();
    v.sort_by(|a, b| {
        let (ha, na) = split_number(a.as_str());
        let (hb, nb) = split_number(b.as_str());
        ha.cmp(hb).then(na.cmp(&nb)).then(a.cmp(b))
    });
    v
}

/// A compact list: consecutive numbered IDs become ranges (`p0-p3,p7,p9-p12`), in natural
/// order.
pub fn compact<'a>(ids: impl IntoIterator<Item = &'a PartitionId>) -> String {
    let sorted = natural_sort(ids);
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let (head, n) = split_number(sorted[i].as_str());
        let mut j = i;
        if let Some(n) = n {
            while j + 1 < sorted.len() {
                match split_number(sorted[j + 1].as_str()) {
                    (h, Some(m)) if h == head && m == n + (j + 1 - i) as u64 => j += 1,
                    _ => break,
                }
            }
        }
        if j > i {
            out.push(format!("{}-{}", sorted[i], sorted[j]));
        } else {
            out.push(sorted[i].to_string());
        }
        i = j + 1;
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(",")
    }
}

/// Cuts a long compact list at a separator, saying how much was left out.
pub fn truncate(list: &str, max: usize) -> String {
    if list.len() <= max {
        return list.to_string();
    }
    let cut = list[..max].rfind(',').unwrap_or(max);
    let left = list[cut..].matches(',').count();
    format!("{},... ({left} more)", &list[..cut])
}

/// A short human duration: `200ms`, `1s`, `1.5s`, `2m30s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            let s = format!("{:.2}", ms as f64 / 1000.0);
            format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
        }
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The first 8 hex digits of an instance token.
pub fn short_token(token: u64) -> String {
    format!("{token:016x}")[..8].to_string()
}

/// The wall clock as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn read(path: &Path, what: &str) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// Reads a partition list: JSON (an array of IDs, or an object of ID to weight), or text with
/// one `ID [WEIGHT]` per line (`#` starts a comment).
pub fn load_partitions(path: &Path) -> CliResult<Vec<Partition>> {
    let text = read(path, "partitions file")?;
    let bad = |reason: String| {
        CliError::usage(format!(
            "partitions file {}: {reason} (expected a JSON array of IDs, a JSON object of \
             ID to weight, or one 'ID [WEIGHT]' per line)",
            path.display()
        ))
    };
    let make = |id: &str, weight: u64| -> CliResult<Partition> {
        let keys: Vec<&str> = id.split('.').collect();
        Partition::new(&keys, weight).map_err(|e| bad(e.to_string()))
    };
    let trimmed = text.trim_start();
    let list = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        match value {
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| match v.as_str() {
                    Some(id) => make(id, Partition::DEFAULT_WEIGHT),
                    None => Err(bad(format!("{v} is not a string"))),
                })
                .collect::<CliResult<Vec<_>>>()?,
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(id, w)| match w.as_u64() {
                    Some(w) => make(id, w),
                    None => Err(bad(format!("weight of {id} ({w}) is not a whole number"))),
                })
                .collect::<CliResult<Vec<_>>>()?,
            _ => return Err(bad("neither an array nor an object".into())),
        }
    } else {
        let mut list = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let id = words.next().expect("non-empty line");
            let weight = match words.next() {
                None => Partition::DEFAULT_WEIGHT,
                Some(w) => w
                    .parse()
                    .map_err(|_| bad(format!("line {}: weight {w:?} is not a number", n + 1)))?,
            };
            if words.next().is_some() {
                return Err(bad(format!("line {}: more than 'ID WEIGHT'", n + 1)));
            }
            list.push(make(id, weight)?);
        }
        list
    };
    if list.is_empty() {
        return Err(bad("no partitions".into()));
    }
    parti::parti_core::partition::validate_partitions(&list).map_err(|e| bad(e.to_string()))?;
    Ok(list)
}

/// Reads a JSON object of partition ID to weight (`--weights`).
pub fn load_weights(path: &Path) -> CliResult<BTreeMap<PartitionId, u64>> {
    let text = read(path, "weights file")?;
    let bad = |reason: String| {
        CliError::usage(format!(
            "weights file {}: {reason} (expected a JSON object of partition ID to weight, \
             e.g. {{\"p0\": 200}})",
            path.display()
        ))
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = value
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let mut out = BTreeMap::new();
    for (id, w) in map {
        let pid = PartitionId::parse(id).map_err(|e| bad(e.to_string()))?;
        match w.as_u64() {
            Some(w) if w > 0 => {
                out.insert(pid, w);
            }
            _ => {
                return Err(bad(format!(
                    "weight of {id} ({w}) must be a whole number >= 1"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<PartitionId> {
        list.iter()
            .map(|s| PartitionId::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn consecutive_numbers_become_ranges_in_natural_order() {
        let v = ids(&["p10", "p2", "p0", "p1", "p3", "p7", "q.1", "x"]);
        assert_eq!(compact(&v), "p0-p3,p7,p10,q.1,x");
        assert_eq!(compact(&ids(&[])), "-");
        assert_eq!(compact(&ids(&["p007", "p008"])), "p007,p008");
    }

    #[test]
    fn long_lists_are_cut_at_a_separator() {
        assert_eq!(truncate("a,b,c,d", 4), "a,b,... (2 more)");
        assert_eq!(truncate("a,b", 10), "a,b");
    }

    #[test]
    fn durations_and_dates_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(6)), "6s");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
