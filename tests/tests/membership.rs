//! Fleet membership on real NATS: a cold start, a join and a graceful leave keep every partition
//! owned exactly once and move only what must move; stopping the leader moves nothing and its
//! restart resumes its share; a nats-server killed and restarted mid-run loses no partition.

mod common;

use common::{ids, partitions, Cluster, DEADLINE};
use parti::{Event, PartitionId, State, StaticSource, Warning, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The partitions each running member holds.
fn shares(cluster: &Cluster) -> BTreeMap<usize, BTreeSet<PartitionId>> {
    cluster
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.handle.is_stopped())
        .map(|(i, m)| (i, m.handle.assignment()))
        .collect()
}

/// The partitions granted more often than in `before` (moved or re-granted since then).
fn granted_since(
    cluster: &Cluster,
    before: &BTreeMap<PartitionId, Vec<usize>>,
) -> BTreeSet<PartitionId> {
    cluster
        .ledger
        .grants()
        .into_iter()
        .filter(|(p, g)| before.get(p).map_or(0, Vec::len) < g.len())
        .map(|(p, _)| p)
        .collect()
}

/// Crash reports seen by any member.
fn crashes(cluster: &Cluster) -> Vec<WorkerId> {
    cluster
        .members
        .iter()
        .flat_map(|m| m.events())
        .filter_map(|e| match e {
            Event::Warning(Warning::WorkerCrashed(id)) => Some(id),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_of_five_workers_owns_every_partition_exactly_once() {
    let all = partitions(0..100);
    let cluster = Cluster::start("members-cold", 5, StaticSource::new(all.clone())).await;
    cluster.wait_settled(&ids(&all)).await;

    cluster.leader();
    let worker_ids: BTreeSet<Option<WorkerId>> =
        cluster.running().map(|m| m.handle.worker_id()).collect();
    assert_eq!(worker_ids.len(), 5, "distinct worker IDs: {worker_ids:?}");
    assert!(!worker_ids.contains(&None));
    for (i, share) in shares(&cluster) {
        assert_eq!(share.len(), 20, "member {i} holds a fifth");
    }
    // Each partition was granted once: the cold start placed everything in one generation.
    assert!(cluster.ledger.grants().values().all(|g| g.len() == 1));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_then_a_graceful_leave_move_only_the_minimum_and_keep_each_partition_owned_once() {
    let all = partitions(0..60);
    let mut cluster = Cluster::start("members-join-leave", 3, StaticSource::new(all.clone())).await;
    cluster.wait_settled(&ids(&all)).await;

    // A fourth worker joins: it gets a quarter, taken from the others, and nothing else moves.
    let before = cluster.ledger.grants();
    let newcomer = cluster.add_worker().await;
    common::wait_for(DEADLINE, "the newcomer holds a quarter", || {
        cluster.check_settled(&ids(&all))?;
        match cluster.handle(newcomer).assignment().len() {
            15 => Ok(()),
            n => Err(format!("the newcomer holds {n}")),
        }
    })
    .await;
    let moved = granted_since(&cluster, &before);
    assert_eq!(
        moved,
        cluster.handle(newcomer).assignment(),
        "only the newcomer's quarter moved"
    );
    assert!(shares(&cluster).values().all(|s| s.len() == 15));

    // A worker leaves for good: exactly its partitions move, and spread over the three others.
    let before = cluster.ledger.grants();
    let leaver = (cluster.leader() + 1) % 4;
    let its_share = cluster.handle(leaver).assignment();
    cluster.handle(leaver).stop().await.expect("stop");
    assert!(cluster.handle(leaver).is_stopped());
    cluster.wait_settled(&ids(&all)).await;
    assert_eq!(granted_since(&cluster, &before), its_share);
    assert!(shares(&cluster).values().all(|s| s.len() == 20));
    assert!(crashes(&cluster).is_empty(), "a graceful leave is no crash");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_leader_moves_nothing_and_its_restart_with_the_same_id_resumes_its_share() {
    let all = partitions(0..60);
    // The stopped leader's share stays parked long enough for its restart.
    let config = parti::Config {
        restart_grace: Duration::from_secs(10),
        ..common::config("members-leader-stop", 3)
    };
    let mut cluster = Cluster::start_with(config, 3, StaticSource::new(all.clone())).await;
    cluster.wait_settled(&ids(&all)).await;
    let before = shares(&cluster);
    let grants_before = cluster.ledger.grants();

    let old_leader = cluster.leader();
    let old_id = cluster.handle(old_leader).worker_id();
    cluster
        .handle(old_leader)
        .stop_for_restart()
        .await
        .expect("stop");
    assert!(cluster.handle(old_leader).is_stopped());
    common::wait_until(DEADLINE, "another worker leads", || {
        cluster.leaders().len() == 1
    })
    .await;
    let new_leader = cluster.leader();
    assert_ne!(new_leader, old_leader);

    // The restart claims the same ID and gets the same share back.
    cluster.restart_worker(old_leader).await;
    common::wait_for(DEADLINE, "the restarted worker holds its old share", || {
        cluster.check_settled(&ids(&all))?;
        if cluster.handle(old_leader).worker_id() != old_id {
            return Err("another ID".into());
        }
        match shares(&cluster) == before {
            true => Ok(()),
            false => Err(format!("shares differ: {:?}", cluster.share_sizes())),
        }
    })
    .await;
    cluster.ledger.assert_never_two_owners();

    // Nothing moved: the survivors were never told of a change, and every partition was only
    // ever granted to the member it started on.
    for (i, m) in cluster.members.iter().enumerate() {
        if i != old_leader {
            let changes = m.assignment_changes();
            assert_eq!(changes.len(), 1, "member {i} changed: {changes:?}");
        }
    }
    let moved: Vec<_> = cluster
        .ledger
        .grants()
        .into_iter()
        .filter(|(p, g)| g.iter().any(|m| Some(m) != grants_before[p].first()))
        .collect();
    assert!(moved.is_empty(), "moved: {moved:?}");
    assert!(crashes(&cluster).is_empty(), "a stop is no crash");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_and_restarted_mid_run_loses_no_partition() {
    let all = partitions(0..60);
    let mut cluster =
        Cluster::start("members-nats-restart", 3, StaticSource::new(all.clone())).await;
    cluster.wait_settled(&ids(&all)).await;

    // Strict mode: without NATS nobody can renew, so everyone fences itself (drops everything)
    // within lease_ttl - safety_margin.
    cluster.server().kill();
    // The handle's assignment is updated before the event stream is read, so the wait covers
    // both: every worker dropped its partitions and said it fenced.
    let fenced = common::wait_for(DEADLINE, "every worker fenced itself", || {
        for (i, m) in cluster.members.iter().enumerate() {
            if m.handle.is_stopped() {
                continue;
            }
            let held = m.handle.assignment().len();
            if held > 0 {
                return Err(format!("member {i} still holds {held} partitions"));
            }
            if !m.events().contains(&Event::Warning(Warning::Fenced)) {
                return Err(format!(
                    "member {i} dropped its partitions without a Fenced warning"
                ));
            }
        }
        match cluster.ledger.owners().len() {
            0 => Ok(()),
            n => Err(format!("the listeners still own {n} partitions")),
        }
    })
    .await;
    assert!(fenced < Duration::from_secs(3), "fencing took {fenced:?}");

    // Back: every worker resumes, and a leader is elected again (within a lease TTL, once the
    // old leader lease has expired).
    cluster.server().restart().expect("restart nats-server");
    cluster.wait_settled(&ids(&all)).await;
    assert_eq!(cluster.running().count(), 3, "nobody gave up");
    assert!(cluster.running().all(|m| m.handle.state() == State::Stable));
    cluster.stop_all().await;
}
