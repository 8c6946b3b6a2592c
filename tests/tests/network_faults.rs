//! Network faults between one worker and its nats-server, through a `FaultProxy`: a
//! blackholed Strict worker fences itself before anyone else is granted its partitions and
//! rejoins with a share after the heal; a blackholed Relaxed worker keeps its cached share and
//! raises alerts; a 150 ms ± 50 ms link neither fences nor flaps; a blackholed leader is
//! replaced and steps down.

mod common;

use common::{ids, partitions, Cluster, DEADLINE};
use parti::testing::{FaultMode, FaultProxy};
use parti::{Config, Event, HandoffMode, PartitionId, StaticSource, Warning};
use std::collections::BTreeSet;
use std::ops::Range;
use std::time::{Duration, Instant};

/// A fleet of two direct workers and a third (the returned index) behind a proxy.
async fn fleet_with_proxied(config: Config, mode: FaultMode) -> (Cluster, FaultProxy, usize) {
    let all = partitions(0..30);
    let mut cluster = Cluster::start_with(config, 2, StaticSource::new(all.clone())).await;
    let proxy = FaultProxy::start(&cluster.urls[0]).await.expect("proxy");
    proxy.set(mode);
    let proxied = cluster.add_worker_via(vec![proxy.url()]).await;
    common::wait_for(DEADLINE, "three workers share the partitions", || {
        cluster.check_settled(&ids(&all)).map_err(|e| {
            let events = cluster.members[proxied].events();
            let recent = &events[events.len().saturating_sub(6)..];
            format!("{e}; the proxied worker's last events: {recent:?}")
        })?;
        if cluster.handle(proxied).assignment().is_empty() {
            return Err("the proxied worker holds nothing".into());
        }
        Ok(())
    })
    .await;
    (cluster, proxy, proxied)
}

/// Whether `members` together hold all `total` partitions.
fn all_held_by(cluster: &Cluster, members: Range<usize>, total: usize) -> Result<(), String> {
    let held: usize = members.map(|i| cluster.handle(i).assignment().len()).sum();
    if held == total {
        Ok(())
    } else {
        Err(format!("the others hold {held} of {total}"))
    }
}

fn warned(cluster: &Cluster, member: usize, what: fn(&Warning) -> bool) -> bool {
    cluster.members[member]
        .events()
        .iter()
        .any(|e| matches!(e, Event::Warning(w) if what(w)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_strict_worker_fences_before_its_partitions_move_and_rejoins_after_the_heal() {
    let all = ids(&partitions(0..30));
    let (cluster, proxy, proxied) =
        fleet_with_proxied(common::config("net-strict", 3), FaultMode::Pass).await;

    let held = cluster.handle(proxied).assignment();
    let seen = cluster.members[proxied].events().len();
    proxy.set(FaultMode::Blackhole);
    common::wait_for(DEADLINE, "the others own everything", || {
        if !cluster.handle(proxied).assignment().is_empty() {
            return Err("the blackholed worker still holds partitions".into());
        }
        all_held_by(&cluster, 0..2, all.len())
    })
    .await;
    assert!(
        warned(&cluster, proxied, |w| matches!(w, Warning::Fenced)),
        "the blackholed worker said it fenced"
    );
    // A fence loses the partitions, it does not hand them off: the event says `lost`, and the
    // listener's `on_lost` was called with exactly what the worker held.
    let reported: BTreeSet<PartitionId> = cluster.members[proxied].events()[seen..]
        .iter()
        .flat_map(|e| match e {
            Event::AssignmentChanged { lost, revoked, .. } => {
                assert!(revoked.is_empty(), "the fenced worker revoked {revoked:?}");
                lost.clone()
            }
            _ => BTreeSet::new(),
        })
        .collect();
    assert_eq!(
        reported, held,
        "the event reports every held partition as lost"
    );
    let told: BTreeSet<PartitionId> = cluster.ledger.lost(proxied).into_iter().collect();
    assert_eq!(told, held, "on_lost was told every held partition");
    // The ledger records a grant to a worker while another still holds the partition: the
    // blackholed worker let go before anyone else got its partitions.
    cluster.ledger.assert_never_two_owners();

    proxy.set(FaultMode::Pass);
    common::wait_for(DEADLINE, "the healed worker has a share again", || {
        cluster.check_settled(&all)?;
        if cluster.handle(proxied).assignment().is_empty() {
            return Err("the healed worker holds nothing".into());
        }
        Ok(())
    })
    .await;
    cluster.ledger.assert_never_two_owners();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_relaxed_worker_keeps_its_share_raises_alerts_and_rejoins() {
    let all = ids(&partitions(0..30));
    let config = Config {
        handoff: HandoffMode::Relaxed,
        ..common::config("net-relaxed", 3)
    };
    let (cluster, proxy, proxied) = fleet_with_proxied(config, FaultMode::Pass).await;
    let cached = cluster.handle(proxied).assignment();

    proxy.set(FaultMode::Blackhole);
    let cut = Instant::now();
    common::wait_for(DEADLINE, "the cut-off worker raises an alert", || {
        let alerts = cluster.members[proxied]
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Alert { .. }))
            .count();
        if alerts == 0 {
            return Err("no alert yet".into());
        }
        Ok(())
    })
    .await;
    // Degraded mode keeps the cached share for longer than a lease lives.
    common::wait_for(DEADLINE, "two lease TTLs pass", || {
        if cluster.handle(proxied).assignment() != cached {
            return Err("the cut-off worker dropped its cached share".into());
        }
        if cut.elapsed() < 2 * cluster.config.lease_ttl {
            return Err("still cut off".into());
        }
        Ok(())
    })
    .await;
    assert!(
        !warned(&cluster, proxied, |w| matches!(w, Warning::Fenced)),
        "a Relaxed worker does not fence"
    );

    proxy.set(FaultMode::Pass);
    common::wait_for(DEADLINE, "the fleet settles with the healed worker", || {
        cluster.check_settled(&all)?;
        if cluster.handle(proxied).assignment().is_empty() {
            return Err("the healed worker holds nothing".into());
        }
        Ok(())
    })
    .await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_150ms_with_50ms_jitter_converges_without_fencing_or_flapping() {
    let all = ids(&partitions(0..30));
    let slow = FaultMode::Delay {
        delay: Duration::from_millis(150),
        jitter: Duration::from_millis(50),
    };
    // Renewals are CAS writes one after another: the fence window (`lease_ttl -
    // safety_margin`) must hold two round trips of up to 400 ms. The 1 s test lease leaves
    // 0.8 s, which no CAS lease can keep on this link; 2 s leaves 1.5 s.
    let config = Config {
        lease_ttl: Duration::from_secs(2),
        safety_margin: Duration::from_millis(500),
        ..common::config("net-slow", 3)
    };
    let (cluster, _proxy, proxied) = fleet_with_proxied(config, slow).await;
    let grants = cluster.ledger.grants();
    let start = Instant::now();
    common::wait_for(DEADLINE, "three lease TTLs pass without a change", || {
        cluster.check_settled(&all)?;
        if cluster.ledger.grants() != grants {
            return Err(format!(
                "a partition moved; the slow worker's events: {:?}",
                cluster.members[proxied].events()
            ));
        }
        if start.elapsed() < 3 * cluster.config.lease_ttl {
            return Err("still watching".into());
        }
        Ok(())
    })
    .await;
    assert!(
        !warned(&cluster, proxied, |w| matches!(w, Warning::Fenced)),
        "the slow worker fenced: {:?}",
        cluster.members[proxied].events()
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_leader_is_replaced_and_steps_down() {
    let all = ids(&partitions(0..30));
    let mut cluster = Cluster::start_with(
        common::config("net-leader", 3),
        0,
        StaticSource::new(partitions(0..30)),
    )
    .await;
    let proxy = FaultProxy::start(&cluster.urls[0]).await.expect("proxy");
    // The first worker leads: it is the proxied one.
    let leader = cluster.add_worker_via(vec![proxy.url()]).await;
    common::wait_until(DEADLINE, "the first worker leads", || {
        cluster.handle(leader).is_leader()
    })
    .await;
    cluster.add_worker().await;
    cluster.add_worker().await;
    common::wait_for(DEADLINE, "three workers settle", || {
        cluster.check_settled(&all)
    })
    .await;

    proxy.set(FaultMode::Blackhole);
    let cut = Instant::now();
    common::wait_for(
        DEADLINE,
        "another worker leads and owns the partitions",
        || {
            if cluster.handle(leader).is_leader() {
                return Err("the blackholed worker still believes it leads".into());
            }
            if !(1..3).any(|i| cluster.handle(i).is_leader()) {
                return Err("no new leader".into());
            }
            all_held_by(&cluster, 1..3, all.len())
        },
    )
    .await;
    eprintln!("blackholed leader replaced in {:?}", cut.elapsed());
    let stepped_down = cluster.members[leader].events().iter().any(|e| {
        matches!(
            e,
            Event::LeadershipChanged {
                is_leader: false,
                ..
            }
        )
    });
    assert!(stepped_down, "the old leader reported stepping down");
    cluster.ledger.assert_never_two_owners();
    proxy.set(FaultMode::Pass);
    cluster.stop_all().await;
}
