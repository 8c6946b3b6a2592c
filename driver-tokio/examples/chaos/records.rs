//! The workers' record files (see `parti worker --record`), read as they grow, and the figures
//! of a run computed from them and the publisher's log: double-handled and unhandled
//! messages, redeliveries, and how long each kill took to heal.

use crate::publisher::Sent;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// One handled message, as a worker recorded it.
#[derive(Clone, Copy, Debug)]
pub struct Handle {
    /// The message's sequence number.
    pub seq: u64,
    /// The partition's index (`p<i>`).
    pub partition: u32,
    /// The incarnation (a worker process) that handled it.
    pub inc: usize,
    /// When (unix µs).
    pub at_us: u64,
}

/// A worker's report that acknowledging a message of a partition failed.
#[derive(Clone, Copy, Debug)]
pub struct AckFailure {
    /// The incarnation.
    pub inc: usize,
    /// The partition's index.
    pub partition: u32,
    /// When (unix µs).
    pub at_us: u64,
}

/// A record file read so far.
struct Tail {
    path: PathBuf,
    offset: u64,
    inc: usize,
}

/// Every record file of the run, read incrementally.
pub struct Records {
    tails: Vec<Tail>,
    /// `(slot, n)` of every incarnation, by its index.
    pub incarnations: Vec<(usize, usize)>,
    /// Every handled message, in the order read.
    pub handles: Vec<Handle>,
    /// Every failed acknowledgement.
    pub ack_failures: Vec<AckFailure>,
    /// Lines that did not parse.
    pub malformed: usize,
    /// Per partition: the latest send time among its handled messages (unix µs).
    latest_handled_sent: Vec<u64>,
}

impl Records {
    /// No file yet; `partitions` partitions.
    pub fn new(partitions: u32) -> Self {
        Records {
            tails: Vec::new(),
            incarnations: Vec::new(),
            handles: Vec::new(),
            ack_failures: Vec::new(),
            malformed: 0,
            latest_handled_sent: vec![0; partitions as usize],
        }
    }

    /// Follows the record file of incarnation `n` of `slot`; returns the incarnation's index.
    pub fn add(&mut self, path: PathBuf, slot: usize, n: usize) -> usize {
        let inc = self.incarnations.len();
        self.incarnations.push((slot, n));
        self.tails.push(Tail {
            path,
            offset: 0,
            inc,
        });
        inc
    }

    /// `w<slot>#<n>`: an incarnation's name.
    pub fn name(&self, inc: usize) -> String {
        let (slot, n) = self.incarnations[inc];
        format!("w{slot}#{n}")
    }

    /// Reads what the files gained since the last poll (complete lines only).
    pub fn poll(&mut self, sent: &[Sent]) {
        for i in 0..self.tails.len() {
            let (path, offset, inc) = {
                let t = &self.tails[i];
                (t.path.clone(), t.offset, t.inc)
            };
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            if file.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_err() {
                continue;
            }
            let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            self.tails[i].offset = offset + end as u64 + 1;
            let text = String::from_utf8_lossy(&bytes[..end]);
            for line in text.lines() {
                self.parse(line, inc, sent);
            }
        }
    }

    fn parse(&mut self, line: &str, inc: usize, sent: &[Sent]) {
        let words: Vec<&str> = line.split(' ').collect();
        let partition = |w: &str| w.strip_prefix('p').and_then(|n| n.parse::<u32>().ok());
        let at = words.first().and_then(|w| w.parse::<u64>().ok());
        match (
            at,
            words.get(2).copied(),
            words.get(3).map(|w| partition(w)),
        ) {
            (Some(at_us), Some("handled"), Some(Some(p))) if words.len() == 5 => {
                let Ok(seq) = words[4].parse::<u64>() else {
                    self.malformed += 1;
                    return;
                };
                self.handles.push(Handle {
                    seq,
                    partition: p,
                    inc,
                    at_us,
                });
                if let (Some(s), Some(latest)) = (
                    sent.get(seq as usize),
                    self.latest_handled_sent.get_mut(p as usize),
                ) {
                    *latest = (*latest).max(s.at_us);
                }
            }
            (Some(at_us), Some("ack-failed"), Some(Some(p))) => {
                self.ack_failures.push(AckFailure {
                    inc,
                    partition: p,
                    at_us,
                })
            }
            _ => self.malformed += 1,
        }
    }

    /// The partitions none of whose messages sent at or after `since_us` was handled yet.
    pub fn missing_since(&self, since_us: u64) -> Vec<u32> {
        (0..self.latest_handled_sent.len() as u32)
            .filter(|p| self.latest_handled_sent[*p as usize] < since_us)
            .collect()
    }
}

/// What ended a worker or a server, for the heal times.
#[derive(Clone, Debug)]
pub struct Disruption {
    /// e.g. `SIGKILL w2#0`, `SIGKILL n1 (leader of WORK)`.
    pub what: String,
    /// When (unix µs).
    pub at_us: u64,
    /// The incarnation killed; `None` for a server.
    pub worker: Option<usize>,
}

/// The figures of a run.
#[derive(Debug, Default)]
pub struct Figures {
    /// Published messages sent at or after the start of the measured window.
    pub messages: usize,
    /// Of those, handled by two incarnations (see the runner's header for the definition).
    pub double_handled: usize,
    /// Of those, handled by nobody.
    pub unhandled: usize,
    /// Handles beyond the first of a message (redeliveries and double handling).
    pub extra_handles: usize,
    /// Handles not counted for double handling because their acknowledgement may never have
    /// happened (JetStream only).
    pub excused: usize,
    /// Handled messages the publisher never sent (must be 0).
    pub unknown: usize,
    /// Messages the publisher gave up on (JetStream) or could not send.
    pub not_published: usize,
    /// The longest heal (ms) and what it followed.
    pub max_reassign_ms: u64,
    /// Each disruption's heal time in ms (`None`: not healed by the end).
    pub heals: Vec<(Disruption, Option<u64>)>,
    /// A few double-handled messages, described.
    pub double_examples: Vec<String>,
    /// Unhandled messages per partition (only those with any).
    pub unhandled_by_partition: BTreeMap<u32, usize>,
}

/// Computes the figures. Messages sent before `window_us` (the warm-up) are left out.
/// `sigkilled` lists the incarnations killed with SIGKILL; `jetstream` selects the definition
/// of double handling.
pub fn figures(
    sent: &[Sent],
    records: &Records,
    disruptions: &[Disruption],
    sigkilled: &BTreeSet<usize>,
    window_us: u64,
    jetstream: bool,
) -> Figures {
    let mut f = Figures::default();
    let in_scope = |seq: u64| {
        sent.get(seq as usize)
            .is_some_and(|s| s.published && s.at_us >= window_us)
    };
    f.not_published = sent
        .iter()
        .filter(|s| s.at_us >= window_us && !s.published)
        .count();
    // JetStream: handles whose acknowledgement may not have happened.
    let mut excused: BTreeSet<usize> = BTreeSet::new();
    if jetstream {
        let mut by_inc_part: HashMap<(usize, u32), Vec<usize>> = HashMap::new();
        for (i, h) in records.handles.iter().enumerate() {
            by_inc_part.entry((h.inc, h.partition)).or_default().push(i);
        }
        for list in by_inc_part.values_mut() {
            list.sort_by_key(|i| records.handles[*i].at_us);
        }
        // A SIGKILLed worker's last message of each partition: killed before or during its ack.
        for ((inc, _), list) in &by_inc_part {
            if sigkilled.contains(inc) {
                excused.extend(list.last());
            }
        }
        // A failed ack: the partition's last handle at or before the report.
        for a in &records.ack_failures {
            if let Some(list) = by_inc_part.get(&(a.inc, a.partition)) {
                let before = list.partition_point(|i| records.handles[*i].at_us <= a.at_us);
                if before > 0 {
                    excused.insert(list[before - 1]);
                }
            }
        }
        f.excused = excused.len();
    }
    // Handles grouped by message.
    let mut order: Vec<usize> = (0..records.handles.len()).collect();
    order.sort_by_key(|i| (records.handles[*i].seq, records.handles[*i].at_us));
    let mut handled: BTreeSet<u64> = BTreeSet::new();
    let mut i = 0;
    while i < order.len() {
        let seq = records.handles[order[i]].seq;
        let mut j = i;
        while j < order.len() && records.handles[order[j]].seq == seq {
            j += 1;
        }
        let group = &order[i..j];
        i = j;
        if sent.get(seq as usize).is_none() {
            f.unknown += 1;
            continue;
        }
        handled.insert(seq);
        if !in_scope(seq) {
            continue;
        }
        f.extra_handles += group.len() - 1;
        let owners: BTreeSet<usize> = group
            .iter()
            .filter(|h| !excused.contains(*h))
            .map(|h| records.handles[*h].inc)
            .collect();
        if owners.len() >= 2 {
            f.double_handled += 1;
            if f.double_examples.len() < 5 {
                let first = records.handles[group[0]].at_us;
                let who: Vec<String> = group
                    .iter()
                    .map(|h| {
                        let h = &records.handles[*h];
                        format!(
                            "{} at +{:.3}s",
                            records.name(h.inc),
                            (h.at_us.saturating_sub(first)) as f64 / 1e6
                        )
                    })
                    .collect();
                f.double_examples.push(format!(
                    "seq {seq} of p{}: {}",
                    records.handles[group[0]].partition,
                    who.join(", ")
                ));
            }
        }
    }
    for (seq, s) in sent.iter().enumerate() {
        if in_scope(seq as u64) {
            f.messages += 1;
            if !handled.contains(&(seq as u64)) {
                f.unhandled += 1;
                *f.unhandled_by_partition.entry(s.partition).or_default() += 1;
            }
        }
    }
    heal_times(sent, records, disruptions, window_us, &mut f);
    f
}

/// For each disruption at `t`: the time until every partition handled a message sent at or
/// after `t` (its first subscriber, or consumer, after the disruption).
fn heal_times(
    sent: &[Sent],
    records: &Records,
    disruptions: &[Disruption],
    window_us: u64,
    f: &mut Figures,
) {
    let partitions = records.latest_handled_sent.len();
    // Per partition, in send order: (sent at, earliest handle).
    let mut first_handle: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); partitions];
    for h in &records.handles {
        if sent.get(h.seq as usize).is_none() {
            continue;
        }
        if let Some(map) = first_handle.get_mut(h.partition as usize) {
            let e = map.entry(h.seq).or_insert(h.at_us);
            *e = (*e).min(h.at_us);
        }
    }
    // Per partition, every handle as (when, by whom), in time order: who held it at a kill.
    let mut holders: Vec<Vec<(u64, usize)>> = vec![Vec::new(); partitions];
    for h in &records.handles {
        if let Some(v) = holders.get_mut(h.partition as usize) {
            v.push((h.at_us, h.inc));
        }
    }
    for v in holders.iter_mut() {
        v.sort_unstable();
    }
    // Suffix minimum of the handle time, by sequence number.
    let suffix: Vec<Vec<(u64, u64)>> = first_handle
        .iter()
        .map(|map| {
            let mut v: Vec<(u64, u64)> = map
                .iter()
                .map(|(seq, at)| (sent[*seq as usize].at_us, *at))
                .collect();
            let mut min = u64::MAX;
            for e in v.iter_mut().rev() {
                min = min.min(e.1);
                e.1 = min;
            }
            v
        })
        .collect();
    let last_sent = sent.last().map_or(0, |s| s.at_us);
    for d in disruptions.iter().filter(|d| d.at_us >= window_us) {
        let mut worst = Some(0u64);
        for (p, v) in suffix.iter().enumerate() {
            if let Some(inc) = d.worker {
                let before = holders[p].partition_point(|(at, _)| *at <= d.at_us);
                if before == 0 || holders[p][before - 1].1 != inc {
                    continue;
                }
            }
            let k = v.partition_point(|(sent_at, _)| *sent_at < d.at_us);
            match v.get(k) {
                Some((_, at)) => {
                    let ms = at.saturating_sub(d.at_us) / 1000;
                    worst = worst.map(|w| w.max(ms));
                }
                None => worst = None,
            }
        }
        // Not healed by the end: at least until the last message sent.
        let ms = worst.unwrap_or(last_sent.saturating_sub(d.at_us) / 1000);
        f.max_reassign_ms = f.max_reassign_ms.max(ms);
        f.heals.push((d.clone(), worst));
    }
}
