//! parti on a routed 3-node NATS cluster with R3 buckets: a cold start owns every partition
//! once; SIGKILL of the node leading the leases stream and then of the node leading the assign
//! stream, while a worker joins, never gives a partition two owners, costs no worker its ID and
//! never applies an older generation (workers may fence while a stream has no leader);
//! killing a node the workers are connected to moves nothing; a rolling restart (SIGTERM, then
//! start) of every server moves nothing and causes no emergency; a lease rewritten by another
//! client (so the worker's CAS renewal gets error 10071) is re-read, not lost.

mod common;

use common::{ids, partitions, Cluster};
use parti::testing::NatsCluster;
use parti::{Config, Event, PartitionId, StaticSource, Warning, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Timings for a cluster. When a stream's leader dies, its Raft group elects a new one only
/// after an election timeout (4–9 s in nats-server), and no write to that bucket lands
/// meanwhile: the lease must outlive that, or every worker fences (Strict) and its ID expires.
/// Hence a 15 s TTL (fencing after 12 s without a renewal) instead of the 6 s default.
fn cluster_config(prefix: &str, expected_workers: u32) -> Config {
    Config {
        replicas: 3,
        heartbeat_interval: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(15),
        safety_margin: Duration::from_secs(3),
        emergency_grace: Duration::from_millis(500),
        revoke_timeout: Duration::from_secs(2),
        // Creating R3 buckets takes a while: the cold start waits for every expected worker.
        cold_start_window: Duration::from_secs(10),
        ..common::config(prefix, expected_workers)
    }
}

/// How long a step on the cluster may take: failovers take seconds, and three servers share
/// two cores with the workers.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(90);

async fn fleet(prefix: &str, workers: usize, all: &[parti::Partition]) -> Cluster {
    let nats = NatsCluster::start(3)
        .await
        .expect("start a 3-node NATS cluster");
    let config = cluster_config(prefix, workers as u32);
    let cluster =
        Cluster::start_on_cluster(nats, config, workers, StaticSource::new(all.to_vec())).await;
    common::wait_for(CLUSTER_DEADLINE, "the fleet settles", || {
        cluster.check_settled(&ids(all))
    })
    .await;
    cluster
}

/// Every problem a fault must not cause: two owners, a crash report, a lost ID, a fence, a
/// generation older than one applied before.
fn faults_seen(cluster: &Cluster) -> Vec<String> {
    let mut found = cluster.ledger.violations();
    for (i, m) in cluster.members.iter().enumerate() {
        let mut last_generation = None;
        for event in m.events() {
            match event {
                Event::Warning(
                    w @ (Warning::WorkerCrashed(_) | Warning::IdLost(_) | Warning::Fenced),
                ) => found.push(format!("member {i}: {w:?}")),
                Event::AssignmentChanged { generation, .. } => {
                    if last_generation.is_some_and(|g| g > generation) {
                        found.push(format!(
                            "member {i}: generation {generation:?} after {last_generation:?}"
                        ));
                    }
                    last_generation = Some(generation);
                }
                _ => {}
            }
        }
    }
    found
}

/// The worker ID each member holds now.
fn worker_ids(cluster: &Cluster) -> Vec<Option<WorkerId>> {
    cluster
        .members
        .iter()
        .map(|m| m.handle.worker_id())
        .collect()
}

/// How many grants each partition has had.
fn grant_counts(cluster: &Cluster) -> BTreeMap<PartitionId, usize> {
    cluster
        .ledger
        .grants()
        .into_iter()
        .map(|(p, g)| (p, g.len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_workers_cold_start_on_r3_buckets_and_own_every_partition_exactly_once() {
    let all = partitions(0..50);
    let cluster = fleet("r3-cold", 5, &all).await;
    let distinct: BTreeSet<_> = worker_ids(&cluster).into_iter().flatten().collect();
    assert_eq!(distinct.len(), 5, "five distinct IDs");
    assert!(
        cluster.ledger.grants().values().all(|g| g.len() == 1),
        "one grant per partition"
    );
    assert_eq!(faults_seen(&cluster), Vec::<String>::new());
    cluster.stop_all().await;
}

/// The node leading `stream`, once one does.
async fn leader_of(cluster: &Cluster, stream: &str) -> usize {
    let nats = cluster
        .nats_cluster
        .as_ref()
        .expect("a fleet on a NATS cluster");
    let (leader, _) =
        common::wait_for_async(CLUSTER_DEADLINE, "the stream has a leader", || async {
            nats.stream_leader(stream)
                .await
                .ok_or_else(|| format!("no node leads {stream}"))
        })
        .await;
    leader
}

/// Waits until every replica of `stream` is current (a restarted node caught up).
async fn caught_up(cluster: &Cluster, stream: &str) {
    let nats = cluster
        .nats_cluster
        .as_ref()
        .expect("a fleet on a NATS cluster");
    common::wait_for_async(CLUSTER_DEADLINE, "every replica is current", || async {
        if nats.stream_replicas_current(stream).await {
            Ok(())
        } else {
            Err(format!("a replica of {stream} lags"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leaders_of_the_lease_and_assign_streams_never_gives_a_partition_two_owners() {
    let all = partitions(0..40);
    let mut cluster = fleet("r3-leaders", 3, &all).await;
    let ids_before = worker_ids(&cluster);

    // The leases stream's leader dies while a worker joins.
    let leases = leader_of(&cluster, "KV_r3-leaders-leases").await;
    cluster.nats().kill(leases);
    let newcomer = cluster.add_worker().await;
    common::wait_for(CLUSTER_DEADLINE, "the newcomer gets a share", || {
        cluster.check_settled(&ids(&all))?;
        if cluster.handle(newcomer).assignment().is_empty() {
            return Err("the newcomer holds nothing".into());
        }
        Ok(())
    })
    .await;
    cluster.nats().restart(leases).expect("restart the node");

    // Then the assign stream's leader dies, and the fleet rebalances back to three.
    let assign = leader_of(&cluster, "KV_r3-leaders-assign").await;
    cluster.nats().kill(assign);
    cluster
        .handle(newcomer)
        .stop()
        .await
        .expect("the newcomer leaves");
    common::wait_for(CLUSTER_DEADLINE, "the three settle again", || {
        cluster.check_settled(&ids(&all))
    })
    .await;
    cluster.nats().restart(assign).expect("restart the node");

    // While a stream has no leader nobody can renew: Strict workers may fence themselves and
    // the leader may count them as crashed. What must never happen is below.
    let unsafe_faults: Vec<String> = faults_seen(&cluster)
        .into_iter()
        .filter(|f| !f.ends_with("Fenced") && !f.contains("WorkerCrashed"))
        .collect();
    assert_eq!(unsafe_faults, Vec::<String>::new());
    assert_eq!(
        worker_ids(&cluster)[..3],
        ids_before[..],
        "no worker lost its ID"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_workers_are_connected_to_moves_no_partition() {
    let all = partitions(0..30);
    let mut cluster = fleet("r3-node-kill", 3, &all).await;
    let grants = grant_counts(&cluster);

    // Every worker was given every URL; whichever are on node 0 reconnect to another.
    cluster.nats().kill(0);
    // Writes go on through the survivors: wait for a round of renewals to be certain the
    // fleet is past the reconnect, then check nothing moved.
    let start = std::time::Instant::now();
    common::wait_for(
        CLUSTER_DEADLINE,
        "a lease TTL passes without a move",
        || {
            cluster.check_settled(&ids(&all))?;
            if grant_counts(&cluster) != grants {
                return Err("a partition moved".into());
            }
            if start.elapsed() < cluster.config.lease_ttl {
                return Err("still watching".into());
            }
            Ok(())
        },
    )
    .await;
    assert_eq!(grant_counts(&cluster), grants, "no partition moved");
    assert_eq!(faults_seen(&cluster), Vec::<String>::new());
    cluster.nats().restart(0).expect("restart node 0");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_server_moves_nothing_and_causes_no_emergency() {
    let all = partitions(0..30);
    let mut cluster = fleet("r3-rolling", 3, &all).await;
    let grants = grant_counts(&cluster);

    for node in 0..3 {
        cluster
            .nats()
            .restart_graceful(node)
            .expect("restart the node");
        // The next server goes down only once this one caught up on both buckets.
        caught_up(&cluster, "KV_r3-rolling-leases").await;
        caught_up(&cluster, "KV_r3-rolling-assign").await;
        common::wait_for(CLUSTER_DEADLINE, "the fleet is settled", || {
            cluster.check_settled(&ids(&all))
        })
        .await;
    }
    assert_eq!(faults_seen(&cluster), Vec::<String>::new());
    assert_eq!(grant_counts(&cluster), grants, "no partition moved");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_rewritten_behind_a_workers_back_costs_a_reread_not_the_id() {
    let all = partitions(0..20);
    let cluster = fleet("r3-10071", 2, &all).await;
    let grants = grant_counts(&cluster);
    let ids_before = worker_ids(&cluster);
    let id = ids_before[0].expect("member 0 has an ID");
    let key = format!("worker.{id}");

    // Another client rewrites member 0's lease with the same bytes: its revision moves, so the
    // worker's next CAS renewal gets "wrong last sequence" (10071) from the R3 stream.
    let client = async_nats::connect(cluster.nats_cluster.as_ref().unwrap().url(0))
        .await
        .expect("connect");
    let kv = async_nats::jetstream::new(client)
        .get_key_value("r3-10071-leases")
        .await
        .expect("the leases bucket");
    for round in 0..3 {
        let entry = kv
            .entry(&key)
            .await
            .expect("read the lease")
            .expect("the lease exists");
        let ours = kv
            .put(&key, entry.value.clone())
            .await
            .expect("rewrite the lease");
        // The worker renews again after re-reading: a revision past ours, with its bytes.
        common::wait_for_async(CLUSTER_DEADLINE, "the worker renews past our write", || {
            let kv = kv.clone();
            let key = key.clone();
            async move {
                match kv.entry(&key).await {
                    Ok(Some(e)) if e.revision > ours => Ok(()),
                    other => Err(format!("round {round}: lease at {other:?}, ours {ours}")),
                }
            }
        })
        .await;
    }
    assert_eq!(faults_seen(&cluster), Vec::<String>::new());
    assert_eq!(worker_ids(&cluster), ids_before, "no worker lost its ID");
    assert_eq!(grant_counts(&cluster), grants, "no partition moved");
    cluster.check_settled(&ids(&all)).expect("still settled");
    cluster.stop_all().await;
}
