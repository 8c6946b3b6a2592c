//! A fleet as its KV shows it: leases, leader, committed generation, shares and operators'
//! pins, read directly (no worker involved) from NATS or from an offline assignment file,
//! decoded without ever panicking, and checked for inconsistencies.

use crate::common::{nats_error, short_token};
use crate::json_files::FileWorker;
use crate::{CliError, CliResult};
use async_nats::jetstream::kv;
use futures::TryStreamExt;
use parti::kv::{NatsError, NatsOptions};
use parti::parti_core::codec::{
    self, share_key, GenRecord, LeaderValue, LeaseValue, Member, Phase, PinValue, ShareAssembler,
    ShareChunk,
};
use parti::{Epoch, Generation, PartitionId, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long reading a fleet's KV may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// A live lease.
#[derive(Clone, Debug)]
pub struct Lease {
    pub value: LeaseValue,
    /// When the server stored its last write (the last heartbeat), if known.
    pub written: Option<SystemTime>,
}

/// What the KV says about a fleet.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    /// Decodable live worker leases.
    pub leases: BTreeMap<WorkerId, Lease>,
    /// The leader lease, if present and decodable.
    pub leader: Option<LeaderValue>,
    /// The committed generation, if present and decodable.
    pub gen: Option<GenRecord>,
    /// Each member's share of `gen`, or why it cannot be assembled.
    pub shares: BTreeMap<WorkerId, Result<BTreeSet<PartitionId>, String>>,
    /// Operators' pins (`ctl.pin.<partition>`) that could be decoded: partition to worker.
    pub pins: BTreeMap<PartitionId, WorkerId>,
    /// Workers asked to drain through KV (`ctl.drain.<id>`).
    pub drains: BTreeSet<WorkerId>,
    /// When the server stored the `gen` record, if known.
    pub gen_written: Option<SystemTime>,
    /// Values that could not be decoded: `bucket key: reason`.
    pub undecodable: Vec<String>,
    /// Worker leases present but undecodable, with the reason.
    pub bad_leases: BTreeMap<WorkerId, String>,
    /// Why the leader lease is undecodable, if it is.
    pub bad_leader: Option<String>,
    /// Why the `gen` record is undecodable, if it is.
    pub bad_gen: Option<String>,
    /// Buckets that do not exist on the server (read as empty).
    pub missing: Vec<String>,
}

/// One raw live entry of a bucket.
struct Raw {
    key: String,
    value: Vec<u8>,
    /// When the server stored it.
    written: Option<SystemTime>,
}

impl Fleet {
    /// Reads `<prefix>-leases` and `<prefix>-assign` from NATS, without creating anything. A
    /// bucket that does not exist reads as empty and is listed in [`Fleet::missing`].
    pub async fn from_nats(options: &NatsOptions, prefix: &str) -> CliResult<Fleet> {
        FleetReader::connect(options, prefix).await?.read().await
    }

    /// Builds a fleet from raw live entries of both buckets.
    fn from_raw(leases: Vec<Raw>, assign: Vec<Raw>) -> Fleet {
        let mut fleet = Fleet::default();
        for r in leases {
            if r.key == "leader" {
                match codec::decode::<LeaderValue>("leader lease", &r.value) {
                    Ok(v) => fleet.leader = Some(v),
                    Err(e) => {
                        fleet.undecodable.push(format!("leases leader: {e}"));
                        fleet.bad_leader = Some(e.to_string());
                    }
                }
            } else if let Some(id) = codec::parse_lease_key(&r.key) {
                match codec::decode::<LeaseValue>("worker lease", &r.value) {
                    Ok(value) => {
                        let written = r.written;
                        fleet.leases.insert(id, Lease { value, written });
                    }
                    Err(e) => {
                        fleet.undecodable.push(format!("leases {}: {e}", r.key));
                        fleet.bad_leases.insert(id, e.to_string());
                    }
                }
            }
        }
        for r in &assign {
            if r.key == "gen" {
                fleet.gen_written = r.written;
            } else if let Some(id) = r.key.strip_prefix("ctl.drain.") {
                if let Some(id) = codec::parse_lease_key(&format!("worker.{id}")) {
                    fleet.drains.insert(id);
                }
            }
        }
        let assign: BTreeMap<String, Vec<u8>> =
            assign.into_iter().map(|r| (r.key, r.value)).collect();
        if let Some(bytes) = assign.get("gen") {
            match codec::decode::<GenRecord>("generation record", bytes) {
                Ok(g) => fleet.gen = Some(g),
                Err(e) => {
                    fleet.undecodable.push(format!("assign gen: {e}"));
                    fleet.bad_gen = Some(e.to_string());
                }
            }
        }
        for (key, bytes) in assign.range(codec::PIN_PREFIX.to_string()..) {
            let Some(partition) = key.strip_prefix(codec::PIN_PREFIX) else {
                break;
            };
            let pin = PartitionId::parse(partition)
                .and_then(|p| Ok((p, codec::decode::<PinValue>("pin", bytes)?.worker)));
            match pin {
                Ok((p, worker)) => {
                    fleet.pins.insert(p, worker);
                }
                Err(e) => fleet.undecodable.push(format!("assign {key}: {e}")),
            }
        }
        if let Some(gen) = &fleet.gen {
            for (id, member) in &gen.members {
                let share = assemble(*id, member, &assign, &mut fleet.undecodable);
                fleet.shares.insert(*id, share);
            }
        }
        fleet
    }

    /// Reads an offline assignment: a JSON object of worker ID to either a list of partition
    /// IDs or `{"capacity": N, "partitions": [...]}`. Every worker listed is taken as live.
    pub fn from_file(path: &Path) -> CliResult<Fleet> {
        let text = crate::common::read(path, "assignment file")?;
        let workers = crate::json_files::parse_assignment(&text).map_err(|reason| {
            CliError::usage(format!(
                "assignment file {}: {reason} (expected a JSON object of worker ID to a list \
                 of partition IDs or to {{\"capacity\": N, \"partitions\": [...]}})",
                path.display()
            ))
        })?;
        let mut fleet = Fleet::default();
        let mut members = BTreeMap::new();
        for FileWorker {
            id,
            capacity,
            share,
        } in workers
        {
            let value = LeaseValue {
                v: codec::VERSION,
                token: 0,
                capacity,
                applied: Some(Generation(0)),
                departing: false,
                draining: false,
                loads: None,
            };
            fleet.leases.insert(
                id,
                Lease {
                    value,
                    written: None,
                },
            );
            members.insert(
                id,
                Member {
                    token: 0,
                    digest: codec::share_digest(&share),
                    chunks: 1,
                    count: share.len() as u32,
                    slot: 0,
                },
            );
            fleet.shares.insert(id, Ok(share));
        }
        fleet.gen = Some(GenRecord {
            v: codec::VERSION,
            epoch: Epoch(0),
            generation: Generation(0),
            phase: Phase::Stable,
            trigger: None,
            members,
            resting: None,
        });
        Ok(fleet)
    }

    /// The committed owner of every partition whose share could be assembled.
    pub fn owners(&self) -> BTreeMap<PartitionId, WorkerId> {
        let mut out = BTreeMap::new();
        for (id, share) in &self.shares {
            for p in share.iter().flatten() {
                out.entry(p.clone()).or_insert(*id);
            }
        }
        out
    }

    /// Everything inconsistent, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .missing
            .iter()
            .map(|b| format!("bucket {b} does not exist (deleted?): read as empty"))
            .collect();
        out.extend(
            self.undecodable
                .iter()
                .map(|u| format!("undecodable value in {u}")),
        );
        match &self.leader {
            None if self.bad_leader.is_some() => {}
            None => out.push("no leader lease: an election is due".into()),
            Some(l) if !self.leases.contains_key(&l.worker) => out.push(format!(
                "the leader lease names worker {}, which has no live lease",
                l.worker
            )),
            Some(l) if self.leases[&l.worker].value.token != l.token => out.push(format!(
                "the leader lease is held by instance {} but worker {}'s lease by {}",
                short_token(l.token),
                l.worker,
                short_token(self.leases[&l.worker].value.token)
            )),
            Some(_) => {}
        }
        let Some(gen) = &self.gen else {
            if self.bad_gen.is_some() {
                return out;
            }
            out.push(
                "no committed generation yet: the leader waits for its cold-start window or \
                 for expected_workers"
                    .into(),
            );
            return out;
        };
        let g = gen.generation;
        for (id, share) in &self.shares {
            if let Err(e) = share {
                out.push(format!(
                    "worker {id}'s share in {g} cannot be assembled: {e}"
                ));
            }
        }
        for (id, lease) in &self.leases {
            let v = &lease.value;
            match gen.members.get(id) {
                None if !v.departing && !v.draining => out.push(format!(
                    "worker {id} has a live lease but no share in {g} (just joined? the \
                     leader adds it after its scale window)"
                )),
                Some(m) if m.token != v.token => out.push(format!(
                    "worker {id}'s share in {g} is for instance {} but its lease is held by {} \
                     (a restart; the leader hands the share over)",
                    short_token(m.token),
                    short_token(v.token)
                )),
                _ => {}
            }
        }
        for (id, m) in &gen.members {
            if !self.leases.contains_key(id) {
                out.push(format!(
                    "worker {id} has a share in {g} ({} partitions) but no live lease: crashed \
                     or gone; the leader reassigns its partitions",
                    m.count
                ));
            }
        }
        let mut seen: BTreeMap<&PartitionId, WorkerId> = BTreeMap::new();
        let mut doubles = 0;
        for (id, share) in &self.shares {
            for p in share.iter().flatten() {
                if let Some(other) = seen.insert(p, *id) {
                    doubles += 1;
                    if doubles <= 5 {
                        out.push(format!(
                            "partition {p} is in the shares of workers {other} and {id}"
                        ));
                    }
                }
            }
        }
        if doubles > 5 {
            out.push(format!("... {} more partitions in two shares", doubles - 5));
        }
        out
    }
}

/// Only what NATS bucket names allow, so a typo gives a clear message.
pub fn check_prefix(prefix: &str) -> CliResult {
    let ok = !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "--prefix {prefix:?} is not a valid bucket prefix: use A-Z a-z 0-9 - _"
        )))
    }
}

/// Gathers and checks one member's share from its chunk keys.
fn assemble(
    id: WorkerId,
    member: &Member,
    assign: &BTreeMap<String, Vec<u8>>,
    undecodable: &mut Vec<String>,
) -> Result<BTreeSet<PartitionId>, String> {
    let mut asm = ShareAssembler::default();
    let mut missing = Vec::new();
    for k in 0..member.chunks {
        let key = share_key(id, member.slot, k);
        match assign.get(&key) {
            None => missing.push(k),
            Some(bytes) => match codec::decode::<ShareChunk>("share chunk", bytes) {
                Ok(chunk) => asm.insert(chunk),
                Err(e) => {
                    undecodable.push(format!("assign {key}: {e}"));
                    return Err(format!("chunk {k} is undecodable"));
                }
            },
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "chunk(s) {missing:?} of {} missing in slot {}",
            member.chunks, member.slot
        ));
    }
    let Some(share) = asm.assemble() else {
        return Err("its chunks belong to different shares or do not match their digest".into());
    };
    if codec::share_digest(&share) != member.digest {
        return Err(
            "its digest differs from the one committed (a newer share in progress?)".into(),
        );
    }
    if share.len() != member.count as usize {
        return Err(format!(
            "it holds {} partitions, the generation says {}",
            share.len(),
            member.count
        ));
    }
    Ok(share)
}

/// Reads a fleet's KV again and again over one connection (`parti status --watch`).
pub struct FleetReader {
    js: async_nats::jetstream::Context,
    urls: String,
    prefix: String,
}

impl FleetReader {
    /// Connects; the buckets are opened on every [`FleetReader::read`].
    pub async fn connect(options: &NatsOptions, prefix: &str) -> CliResult<FleetReader> {
        check_prefix(prefix)?;
        let urls = options.display_urls();
        let connect = options.connect_jetstream();
        let (_, js) = match tokio::time::timeout(READ_TIMEOUT, connect).await {
            Ok(r) => r.map_err(|e| {
                nats_error(&urls, &e).unwrap_or_else(|| CliError::runtime(format!("{urls}: {e}")))
            })?,
            Err(_) => return Err(slow(&urls, prefix)),
        };
        Ok(FleetReader {
            js,
            urls,
            prefix: prefix.to_string(),
        })
    }

    /// Reads `<prefix>-leases` and `<prefix>-assign`, without creating anything. A bucket that
    /// does not exist reads as empty and is listed in [`Fleet::missing`].
    pub async fn read(&self) -> CliResult<Fleet> {
        match tokio::time::timeout(READ_TIMEOUT, self.read_once()).await {
            Ok(r) => r,
            Err(_) => Err(slow(&self.urls, &self.prefix)),
        }
    }

    async fn read_once(&self) -> CliResult<Fleet> {
        let mut missing = Vec::new();
        let mut read = async |bucket: String| -> CliResult<Vec<Raw>> {
            match read_bucket(&self.js, &self.urls, &bucket).await? {
                Some(raw) => Ok(raw),
                None => {
                    missing.push(bucket);
                    Ok(Vec::new())
                }
            }
        };
        let leases = read(format!("{}-leases", self.prefix)).await?;
        let assign = read(format!("{}-assign", self.prefix)).await?;
        let mut fleet = Fleet::from_raw(leases, assign);
        fleet.missing = missing;
        Ok(fleet)
    }
}

fn slow(urls: &str, prefix: &str) -> CliError {
    CliError::runtime(format!(
        "reading the KV of prefix {prefix:?} from {urls} took over {}s; is the server (and \
         JetStream) healthy?",
        READ_TIMEOUT.as_secs()
    ))
}

/// Binds to an existing bucket, never creating it; `None` if it does not exist.
pub async fn open_bucket(
    js: &async_nats::jetstream::Context,
    urls: &str,
    bucket: &str,
) -> CliResult<Option<kv::Store>> {
    parti::kv::open_existing_bucket(js, bucket)
        .await
        .map_err(|e| match e {
            NatsError::Bucket { reason, .. } => {
                CliError::runtime(format!("cannot open bucket {bucket} at {urls}: {reason}"))
            }
            other => CliError::runtime(format!("{urls}: {other}")),
        })
}

/// Every live key of a bucket with its latest value; `None` if the bucket does not exist.
async fn read_bucket(
    js: &async_nats::jetstream::Context,
    urls: &str,
    bucket: &str,
) -> CliResult<Option<Vec<Raw>>> {
    let Some(store) = open_bucket(js, urls, bucket).await? else {
        return Ok(None);
    };
    let failed =
        |e: &dyn std::fmt::Display| CliError::runtime(format!("reading bucket {bucket}: {e}"));
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(|e| failed(&e))?
        .try_collect()
        .await
        .map_err(|e| failed(&e))?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        // A key may vanish between the listing and the read (an expired lease).
        if let Some(entry) = store.entry(key.as_str()).await.map_err(|e| failed(&e))? {
            if entry.operation == async_nats::jetstream::kv::Operation::Put {
                let nanos = entry.created.unix_timestamp_nanos();
                let written = u64::try_from(nanos)
                    .ok()
                    .map(|n| UNIX_EPOCH + Duration::from_nanos(n));
                out.push(Raw {
                    key,
                    value: entry.value.to_vec(),
                    written,
                });
            }
        }
    }
    Ok(Some(out))
}

/// Phase name in lower case.
pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Stable => "stable",
        Phase::Scaling => "scaling",
        Phase::Rebalancing => "rebalancing",
        Phase::Emergency => "emergency",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parti::parti_core::codec::{encode, encode_share};

    fn raw(key: &str, value: &[u8]) -> Raw {
        Raw {
            key: key.into(),
            value: value.to_vec(),
            written: None,
        }
    }

    fn lease(token: u64) -> Vec<u8> {
        encode(&LeaseValue {
            v: 1,
            token,
            capacity: 1,
            applied: Some(Generation(2)),
            departing: false,
            draining: false,
            loads: None,
        })
    }

    #[test]
    fn foreign_bytes_are_reported_not_fatal() {
        let fleet = Fleet::from_raw(
            vec![raw("worker.1", b"\xff garbage"), raw("leader", b"{}")],
            vec![raw("gen", br#"{"v":9}"#)],
        );
        assert!(fleet.leases.is_empty() && fleet.gen.is_none() && fleet.leader.is_none());
        assert_eq!(fleet.undecodable.len(), 3, "{:?}", fleet.undecodable);
        let w = fleet.warnings();
        assert!(
            w.iter().any(|w| w.contains("unsupported version 9")),
            "{w:?}"
        );
    }

    #[test]
    fn pins_are_read_and_an_undecodable_one_is_reported() {
        let pin = encode(&PinValue {
            v: 1,
            worker: WorkerId(2),
        });
        let fleet = Fleet::from_raw(
            vec![],
            vec![
                raw("ctl.drain.1", b""),
                raw("ctl.pin.orders.eu", &pin),
                raw("ctl.pin.x", b"junk"),
                raw("worker.1.0.0", b"junk"),
            ],
        );
        let eu = PartitionId::parse("orders.eu").unwrap();
        assert_eq!(fleet.pins, [(eu, WorkerId(2))].into());
        assert_eq!(fleet.undecodable.len(), 1, "{:?}", fleet.undecodable);
        assert!(fleet.undecodable[0].starts_with("assign ctl.pin.x: "));
    }

    #[test]
    fn a_missing_chunk_and_an_unplanned_lease_are_flagged() {
        let share: BTreeSet<PartitionId> = (0..3)
            .map(|i| PartitionId::parse(&format!("p{i}")).unwrap())
            .collect();
        let chunks = encode_share(&share, 4096);
        let member = Member {
            token: 7,
            digest: codec::share_digest(&share),
            chunks: 2,
            count: 3,
            slot: 1,
        };
        let gen = GenRecord {
            v: 1,
            epoch: Epoch(4),
            generation: Generation(2),
            phase: Phase::Stable,
            trigger: None,
            members: [(WorkerId(1), member)].into(),
            resting: None,
        };
        let leader = encode(&LeaderValue {
            v: 1,
            worker: WorkerId(1),
            token: 7,
        });
        let fleet = Fleet::from_raw(
            vec![
                raw("worker.1", &lease(7)),
                raw("worker.2", &lease(8)),
                raw("leader", &leader),
            ],
            vec![raw("gen", &encode(&gen)), raw("worker.1.1.0", &chunks[0])],
        );
        let w = fleet.warnings();
        assert!(w.iter().any(|w| w.contains("worker 1's share")), "{w:?}");
        assert!(
            w.iter().any(|w| w.contains("worker 2 has a live lease")),
            "{w:?}"
        );
        assert_eq!(w.len(), 2, "{w:?}");
    }
}
