//! Helpers shared by the subcommands: NATS connection flags, compact partition lists,
//! durations, timestamps, partition and weight files, strategy selection.

use crate::{CliError, CliResult};
use parti::kv::{NatsError, NatsOptions};
use parti::parti_core::short_id;
use parti::strategy::{self, Strategy};
use parti::{Partition, PartitionId};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How to reach and authenticate to NATS: `--nats` and the credential flags, flattened into
/// every subcommand that talks to a server. The secrets (`--password`, `--token`, the seed in
/// `--nkey-seed-file`) are never printed, nor a password or token written in a URL.
#[derive(Clone, Default, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL; several, comma-separated, for a cluster (tried in random order), e.g.
    /// nats://10.0.0.1:4222,nats://10.0.0.2:4222.
    #[arg(long, value_name = "URL[,URL..]", value_delimiter = ',')]
    pub nats: Vec<String>,
    /// User name to authenticate with (with --password).
    #[arg(long, value_name = "NAME", requires = "nats")]
    pub user: Option<String>,
    /// Password of --user. Other local users may see it in the process list: where that
    /// matters, prefer --nkey-seed-file or --creds.
    #[arg(long, value_name = "PASSWORD", requires = "user")]
    pub password: Option<String>,
    /// Authentication token.
    #[arg(long, value_name = "TOKEN", requires = "nats")]
    pub token: Option<String>,
    /// File holding an NKey seed (SU...) to authenticate with.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nkey_seed_file: Option<PathBuf>,
    /// Credentials file (.creds: a user JWT and its NKey seed).
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub creds: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server's certificate with; the connection must
    /// then use TLS.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub tls_ca: Option<PathBuf>,
}

impl fmt::Debug for NatsArgs {
    /// Secrets are shown as `Some("***")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "***");
        let urls = NatsOptions {
            urls: self.nats.clone(),
            ..NatsOptions::default()
        }
        .display_urls();
        f.debug_struct("NatsArgs")
            .field("nats", &urls)
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("token", &secret(&self.token))
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("creds", &self.creds)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl NatsArgs {
    /// Whether `--nats` was given.
    pub fn given(&self) -> bool {
        !self.nats.is_empty()
    }

    /// Whether any credential or TLS flag was given.
    pub fn any_credentials(&self) -> bool {
        self.user.is_some()
            || self.token.is_some()
            || self.nkey_seed_file.is_some()
            || self.creds.is_some()
            || self.tls_ca.is_some()
    }

    /// The connection options the flags describe; `name` is the connection's name on the
    /// server. Files that cannot be read are usage errors. `--user` without `--password`
    /// sends an empty password (for the server to refuse or accept).
    pub fn options(&self, name: &str) -> CliResult<NatsOptions> {
        let urls: Vec<String> = self
            .nats
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(CliError::usage(
                "--nats needs a server URL, e.g. nats://127.0.0.1:4222",
            ));
        }
        let listed = NatsOptions {
            urls: urls.clone(),
            ..NatsOptions::default()
        };
        // Masking changed something: a URL holds credentials, which the client would not use.
        if listed.display_urls() != urls.join(",") {
            return Err(CliError::usage(format!(
                "--nats {}: credentials in a URL are not used; give --user and --password, or \
                 --token",
                listed.display_urls()
            )));
        }
        let nkey_seed = match &self.nkey_seed_file {
            Some(path) => {
                let seed = std::fs::read_to_string(path)
                    .map_err(|e| {
                        CliError::usage(format!(
                            "cannot read --nkey-seed-file {}: {e}",
                            path.display()
                        ))
                    })?
                    .trim()
                    .to_string();
                if !seed.starts_with('S') {
                    return Err(CliError::usage(format!(
                        "--nkey-seed-file {}: expected an NKey seed (a line starting with \
                         SU...)",
                        path.display()
                    )));
                }
                Some(seed)
            }
            None => None,
        };
        for (flag, file) in [("--creds", &self.creds), ("--tls-ca", &self.tls_ca)] {
            if let Some(path) = file {
                if let Err(e) = std::fs::File::open(path) {
                    return Err(CliError::usage(format!(
                        "cannot read {flag} {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(NatsOptions {
            urls,
            user: self.user.clone(),
            password: self
                .user
                .as_ref()
                .map(|_| self.password.clone().unwrap_or_default()),
            token: self.token.clone(),
            nkey_seed,
            creds_file: self.creds.clone(),
            tls_ca_file: self.tls_ca.clone(),
            name: Some(name.to_string()),
            ..NatsOptions::default()
        })
    }
}

/// One clear message for each way connecting to NATS can fail (`urls` as
/// [`NatsOptions::display_urls`] shows them); `None` for the bucket errors, which each
/// subcommand words itself.
pub fn nats_error(urls: &str, e: &NatsError) -> Option<CliError> {
    Some(match e {
        NatsError::Unauthorized { source, .. } => CliError::runtime(format!(
            "authorization failed at NATS {urls}: {source} (check --user and --password, \
             --token, --nkey-seed-file or --creds)"
        )),
        NatsError::Connect { source, .. } => {
            let hint = if source.kind() == async_nats::ConnectErrorKind::Tls {
                "does the server use TLS with a certificate signed by --tls-ca?"
            } else {
                "is nats-server running there? check --nats"
            };
            CliError::runtime(format!(
                "cannot connect to NATS at {urls}: {source} ({hint})"
            ))
        }
        NatsError::Credentials { path, source } => {
            CliError::usage(format!("cannot read --creds {}: {source}", path.display()))
        }
        NatsError::InvalidOptions(m) => CliError::usage(format!("--nats {urls}: {m}")),
        _ => return None,
    })
}

/// The core's strategy named by a `--strategy` value (clap has already checked it against
/// [`strategy::NAMES`]; any other name is the core's error listing the valid ones).
pub fn strategy_named(name: &str) -> CliResult<Box<dyn Strategy>> {
    strategy::by_name(name).map_err(|e| CliError::usage(format!("--strategy: {e}")))
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

/// A compact list: consecutive numbered IDs become inclusive ranges written with `..`
/// (`p0..p3,p7,p9..p12` is p0, p1, p2, p3, p7, p9, ..., p12), in natural order. IDs never hold
/// `..` (a key cannot be empty) nor `,`, so the list reads one way whatever the IDs hold
/// (`a-1..a-3` is a range of three, `a-1-a-3` one ID). `-` for an empty list.
///
/// Cut at a separator to at most about `max` characters (the first entry always shows); what
/// is left out is counted in partitions: `p0..p9,q1,... (12 more partitions)`.
pub fn compact_cut<'a>(ids: impl IntoIterator<Item = &'a PartitionId>, max: usize) -> String {
    let runs = compact_runs(ids);
    if runs.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for (i, (text, _)) in runs.iter().enumerate() {
        let sep = usize::from(i > 0);
        if i > 0 && out.len() + sep + text.len() > max {
            let left: usize = runs[i..].iter().map(|(_, n)| n).sum();
            out.push_str(&format!(",... ({left} more partitions)"));
            return out;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(text);
    }
    out
}

/// The entries of a compact list with the number of partitions each stands for.
fn compact_runs<'a>(ids: impl IntoIterator<Item = &'a PartitionId>) -> Vec<(String, usize)> {
    let sorted = natural_sort(ids);
    let mut out = Vec::new();
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
            out.push((format!("{}..{}", sorted[i], sorted[j]), j + 1 - i));
        } else {
            out.push((sorted[i].to_string(), 1));
        }
        i = j + 1;
    }
    out
}

/// Cuts a long comma-separated list at a separator, saying how many items were left out.
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

/// Reads `path` as text; a usage error naming `what` (e.g. "weights file") when it cannot.
pub fn read(path: &Path, what: &str) -> CliResult<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {what} {}: {e}", path.display())))?;
    // a byte-order mark (some editors write one) is not part of the text
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
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
        Partition::parse(id, weight).map_err(|e| bad(e.to_string()))
    };
    let trimmed = text.trim_start();
    let list = if trimmed.starts_with('[') {
        let items: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        items
            .iter()
            .map(|v| match v.as_str() {
                Some(id) => make(id, Partition::DEFAULT_WEIGHT),
                None => Err(bad(format!("{} is not a string", short_id(&v.to_string())))),
            })
            .collect::<CliResult<Vec<_>>>()?
    } else if trimmed.starts_with('{') {
        let map: crate::json_files::UniqueMap<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        map.0
            .iter()
            .map(|(id, w)| match w.as_u64() {
                Some(w) => make(id, w),
                None => Err(bad(format!(
                    "weight of {} ({}) is not a whole number",
                    short_id(id),
                    short_id(&w.to_string())
                ))),
            })
            .collect::<CliResult<Vec<_>>>()?
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
                Some(w) => w.parse().map_err(|_| {
                    bad(format!(
                        "line {}: weight {:?} is not a whole number 1..={}",
                        n + 1,
                        short_id(w),
                        u64::MAX
                    ))
                })?,
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

/// Reads a JSON object of partition ID to weight (`--weights`): each ID once, each weight a
/// whole number `1..=u64::MAX`.
pub fn load_weights(path: &Path) -> CliResult<BTreeMap<PartitionId, u64>> {
    let text = read(path, "weights file")?;
    crate::json_files::parse_weights(&text).map_err(|reason| {
        CliError::usage(format!(
            "weights file {}: {reason} (expected a JSON object of partition ID to weight, \
             e.g. {{\"p0\": 200}})",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(list: &[PartitionId]) -> String {
        compact_cut(list, usize::MAX)
    }

    fn ids(list: &[&str]) -> Vec<PartitionId> {
        list.iter()
            .map(|s| PartitionId::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn consecutive_numbers_become_ranges_in_natural_order() {
        let v = ids(&["p10", "p2", "p0", "p1", "p3", "p7", "q.1", "x"]);
        assert_eq!(compact(&v), "p0..p3,p7,p10,q.1,x");
        assert_eq!(compact(&ids(&[])), "-");
        assert_eq!(compact(&ids(&["p007", "p008"])), "p007,p008");
    }

    #[test]
    fn ranges_stay_unambiguous_when_ids_hold_dashes() {
        // Three IDs a-1, a-2, a-3 and the one ID a-1-a-3 read differently.
        assert_eq!(compact(&ids(&["a-1", "a-2", "a-3"])), "a-1..a-3");
        assert_eq!(compact(&ids(&["a-1-a-3"])), "a-1-a-3");
        assert_eq!(compact(&ids(&["x-9", "x-10"])), "x-9..x-10");
    }

    #[test]
    fn a_cut_compact_list_counts_what_it_left_out_in_partitions() {
        let v: Vec<PartitionId> = (0..10)
            .map(|i| PartitionId::parse(&format!("p{i}")).unwrap())
            .chain(ids(&["q", "r", "s"]))
            .collect();
        assert_eq!(compact_cut(&v, 7), "p0..p9,... (3 more partitions)");
        assert_eq!(compact_cut(&v, 8), "p0..p9,q,... (2 more partitions)");
        assert_eq!(compact_cut(&v, 3), "p0..p9,... (3 more partitions)");
        assert_eq!(compact_cut(&v, 100), "p0..p9,q,r,s");
        let w: Vec<PartitionId> = ids(&["a", "b"]).into_iter().chain(v).collect();
        assert_eq!(compact_cut(&w, 5), "a,b,... (13 more partitions)");
        assert_eq!(compact_cut(&ids(&[]), 5), "-");
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
