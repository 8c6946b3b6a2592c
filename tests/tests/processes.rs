//! Real `parti worker` processes on one nats-server, killed with SIGKILL: a dead worker's
//! partitions are reassigned within lease TTL + 1 s, and a dead leader is replaced within lease
//! TTL + 1 s with nothing moved but its own partitions. The fleet is observed by reading its
//! KV (what `parti status` shows), decoded with `parti_core::codec`.
//!
//! The `parti` binary is `$PARTI_BIN`, or built with `cargo build -p parti --bin parti
//! --features cli,testing` on the first use and taken from the target directory of this test binary.

mod common;

use common::bin::parti_bin;
use common::DEADLINE;
use parti::kv::{KvStore, NatsKv};
use parti::testing::NatsServer;
use parti::{Config, PartitionId, WorkerId};
use parti_core::codec::{
    self, GenRecord, LeaderValue, LeaseValue, Phase, ShareAssembler, ShareChunk,
};
use parti_core::{Bucket, Entry, KvOp, KvResult};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workers' lease TTL (`--ttl-ms`): the bound of both scenarios is this + 1 s.
const LEASE_TTL: Duration = Duration::from_secs(1);
const PARTITIONS: usize = 60;

/// One `parti worker` process, killed (SIGKILL) on drop. Its output goes to a log file.
struct WorkerProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl WorkerProcess {
    fn spawn(server: &NatsServer, prefix: &str, id: u32) -> WorkerProcess {
        let log = server.store_dir().join(format!("worker-{id}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(parti_bin())
            .args(["worker", "--nats", &server.url(), "--prefix", prefix])
            .args(["--partitions", &PARTITIONS.to_string()])
            .args(["--id-preferred", &id.to_string()])
            .args(["--expected-workers", "3"])
            .args(["--heartbeat-ms", "200"])
            .args(["--ttl-ms", &LEASE_TTL.as_millis().to_string()])
            .args(["--window-ms", "300"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn parti worker");
        WorkerProcess {
            child: Some(child),
            log,
        }
    }

    /// SIGKILL: no revoke, no step-down, the lease simply stops being renewed.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the fleet's KV holds.
#[derive(Debug)]
struct KvView {
    leases: BTreeMap<WorkerId, LeaseValue>,
    leader: Option<LeaderValue>,
    gen: Option<GenRecord>,
    /// The committed share of each member of `gen`.
    shares: BTreeMap<WorkerId, BTreeSet<PartitionId>>,
}

async fn entries(kv: &NatsKv, bucket: Bucket, prefix: &str) -> Result<Vec<Entry>, String> {
    let op = KvOp::List {
        prefix: prefix.into(),
    };
    match kv.execute(bucket, op).await {
        KvResult::Entries(entries) => Ok(entries),
        other => Err(format!("list {prefix}: {other:?}")),
    }
}

async fn value(kv: &NatsKv, bucket: Bucket, key: &str) -> Result<Option<Vec<u8>>, String> {
    match kv.execute(bucket, KvOp::Get { key: key.into() }).await {
        KvResult::Value(entry) => Ok(entry.map(|e| e.value)),
        other => Err(format!("get {key}: {other:?}")),
    }
}

impl KvView {
    async fn read(kv: &NatsKv) -> Result<KvView, String> {
        let mut leases = BTreeMap::new();
        for e in entries(kv, Bucket::Leases, "worker.").await? {
            if let Some(id) = codec::parse_lease_key(&e.key) {
                let lease = codec::decode("lease", &e.value).map_err(|e| e.to_string())?;
                leases.insert(id, lease);
            }
        }
        let leader = match value(kv, Bucket::Leases, "leader").await? {
            Some(v) => Some(codec::decode("leader", &v).map_err(|e| e.to_string())?),
            None => None,
        };
        let gen: Option<GenRecord> = match value(kv, Bucket::Assign, "gen").await? {
            Some(v) => Some(codec::decode("gen", &v).map_err(|e| e.to_string())?),
            None => None,
        };
        let mut chunks: BTreeMap<(WorkerId, u8), ShareAssembler> = BTreeMap::new();
        for e in entries(kv, Bucket::Assign, "worker.").await? {
            if let Some((id, slot, _)) = codec::parse_share_key(&e.key) {
                let chunk: ShareChunk =
                    codec::decode("share", &e.value).map_err(|e| e.to_string())?;
                chunks.entry((id, slot)).or_default().insert(chunk);
            }
        }
        let mut shares = BTreeMap::new();
        for (id, m) in gen.iter().flat_map(|g| &g.members) {
            let share = chunks
                .get(&(*id, m.slot))
                .and_then(ShareAssembler::assemble)
                .filter(|s| codec::share_digest(s) == m.digest)
                .ok_or_else(|| format!("the committed share of worker {id} is incomplete"))?;
            shares.insert(*id, share);
        }
        Ok(KvView {
            leases,
            leader,
            gen,
            shares,
        })
    }

    /// `Ok` if a stable generation is committed for exactly the live `workers`, every one of
    /// them applied it, and their shares hold every partition exactly once.
    fn settled(&self, workers: &BTreeSet<WorkerId>) -> Result<(), String> {
        let gen = self.gen.as_ref().ok_or("no generation committed")?;
        if gen.phase != Phase::Stable {
            return Err(format!("generation {} is {:?}", gen.generation, gen.phase));
        }
        let members: BTreeSet<WorkerId> = gen.members.keys().copied().collect();
        let live: BTreeSet<WorkerId> = self.leases.keys().copied().collect();
        if &members != workers || &live != workers {
            return Err(format!(
                "members {members:?}, leases {live:?}, wanted {workers:?}"
            ));
        }
        if let Some((id, _)) = self
            .leases
            .iter()
            .find(|(_, l)| l.applied != Some(gen.generation))
        {
            return Err(format!("worker {id} has not applied {}", gen.generation));
        }
        let mut seen = BTreeSet::new();
        for share in self.shares.values() {
            for p in share {
                if !seen.insert(p.clone()) {
                    return Err(format!("{p} is in two shares"));
                }
            }
        }
        match seen.len() {
            PARTITIONS => Ok(()),
            n => Err(format!("{n} of {PARTITIONS} partitions assigned")),
        }
    }

    fn leader_id(&self) -> Option<WorkerId> {
        self.leader.as_ref().map(|l| l.worker)
    }
}

/// Three `parti worker` processes with IDs 0, 1 and 2, a KV observer, and their nats-server
/// (dropped in that order).
struct Fleet {
    workers: Vec<WorkerProcess>,
    kv: NatsKv,
    _server: NatsServer,
}

impl Fleet {
    async fn start(prefix: &str) -> Fleet {
        // The first call may build the binary: not on the runtime's threads.
        tokio::task::spawn_blocking(parti_bin)
            .await
            .expect("locating the parti binary");
        let server = NatsServer::start().expect("start nats-server");
        let workers = (0..3)
            .map(|id| WorkerProcess::spawn(&server, prefix, id))
            .collect();
        let config = Config {
            bucket_prefix: prefix.into(),
            lease_ttl: LEASE_TTL,
            ..Config::default()
        };
        let (kv, _) = NatsKv::connect(&common::nats_options(&server.url()), &config)
            .await
            .expect("observer connects");
        Fleet {
            workers,
            kv,
            _server: server,
        }
    }

    /// Waits until the KV shows the fleet of `workers` settled; returns the view. On timeout,
    /// panics with the last reason and the tail of every worker's log.
    async fn wait_settled(&self, workers: &[u32], what: &str) -> KvView {
        let wanted: BTreeSet<WorkerId> = workers.iter().map(|id| WorkerId(*id)).collect();
        let started = Instant::now();
        loop {
            // Every KV operation is bounded by the client's request timeout.
            let reason = match KvView::read(&self.kv).await {
                Ok(view) => match view.settled(&wanted) {
                    Ok(()) => {
                        eprintln!("{what}: after {:?}", started.elapsed());
                        return view;
                    }
                    Err(reason) => reason,
                },
                Err(reason) => reason,
            };
            if started.elapsed() > DEADLINE {
                panic!(
                    "timed out waiting until {what}: {reason}; logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, w) in self.workers.iter().enumerate() {
            out.push_str(&format!("--- worker {i}\n{}\n", w.log_tail()));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_worker_process_reassigns_its_partitions_within_lease_ttl_plus_1s() {
    let mut fleet = Fleet::start("proc-worker-kill").await;
    let before = fleet
        .wait_settled(&[0, 1, 2], "three processes settled")
        .await;
    let leader = before.leader_id().expect("a leader");
    let victim = (0..3).find(|id| WorkerId(*id) != leader).unwrap();
    let survivors: Vec<u32> = (0..3).filter(|id| *id != victim).collect();

    fleet.workers[victim as usize].kill();
    let killed_at = Instant::now();
    let after = fleet
        .wait_settled(&survivors, "the survivors own everything")
        .await;
    let took = killed_at.elapsed();
    eprintln!("partitions of the killed worker reassigned and applied after {took:?}");
    assert!(
        took <= LEASE_TTL + Duration::from_secs(1),
        "reassigned after {took:?}; logs:\n{}",
        fleet.logs()
    );

    // Only the dead worker's partitions moved, and the leader stayed.
    for id in &survivors {
        let id = WorkerId(*id);
        assert!(
            before.shares[&id].is_subset(&after.shares[&id]),
            "{id} lost partitions"
        );
    }
    let moved: BTreeSet<PartitionId> = survivors
        .iter()
        .flat_map(|id| &after.shares[&WorkerId(*id)] - &before.shares[&WorkerId(*id)])
        .collect();
    assert_eq!(moved, before.shares[&WorkerId(victim)]);
    assert_eq!(after.leader_id(), Some(leader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_process_moves_only_its_partitions_and_a_new_leader_takes_over_within_lease_ttl_plus_1s(
) {
    let mut fleet = Fleet::start("proc-leader-kill").await;
    let before = fleet
        .wait_settled(&[0, 1, 2], "three processes settled")
        .await;
    let leader = before.leader_id().expect("a leader");
    let survivors: Vec<u32> = (0..3).filter(|id| WorkerId(*id) != leader).collect();

    fleet.workers[leader.0 as usize].kill();
    let killed_at = Instant::now();
    let kv = &fleet.kv;
    let (new_leader, _) = common::wait_for_async(DEADLINE, "another worker leads", || async move {
        let view = KvView::read(kv).await?;
        match view.leader_id() {
            Some(id) if id != leader => Ok(id),
            other => Err(format!("leader {other:?}")),
        }
    })
    .await;
    let took = killed_at.elapsed();
    eprintln!("new leader {new_leader} after {took:?}");
    assert!(
        took <= LEASE_TTL + Duration::from_secs(1),
        "new leader after {took:?}; logs:\n{}",
        fleet.logs()
    );
    assert!(survivors.contains(&new_leader.0));

    let after = fleet
        .wait_settled(&survivors, "the survivors own everything")
        .await;
    for id in &survivors {
        let id = WorkerId(*id);
        assert!(
            before.shares[&id].is_subset(&after.shares[&id]),
            "{id} lost partitions"
        );
    }
    let moved: BTreeSet<PartitionId> = survivors
        .iter()
        .flat_map(|id| &after.shares[&WorkerId(*id)] - &before.shares[&WorkerId(*id)])
        .collect();
    assert_eq!(
        moved, before.shares[&leader],
        "only the dead leader's partitions moved"
    );
}
