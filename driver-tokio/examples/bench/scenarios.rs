//! The measured scenarios. Each builds its own fleet (its own bucket prefix) on the shared
//! server, measures, records samples or failures, and tears the fleet down.

use crate::lab::{last_lease_put, memory, random_fraction, removal_after, unix_ns, Lab, World};
use crate::report::{Metric, Results};
use crate::Profile;
use parti::{Partition, WorkerId};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What every scenario needs.
pub struct Env {
    pub url: String,
    pub partitions: Vec<Partition>,
    /// The `parti` binary, or why there is none.
    pub bin: Result<PathBuf, String>,
}

/// A bucket prefix no other fleet of this run uses.
fn prefix(profile: &Profile, what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench-{}-{what}-{}",
        profile.key,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn lab(env: &Env, profile: &Profile, what: &str, workers: u32) -> Lab {
    let config = profile.config(prefix(profile, what), workers);
    Lab::new(
        &env.url,
        config,
        env.partitions.clone(),
        profile.cli_flags(),
    )
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `b - a` in seconds, negative if `b` came first.
fn delta(a: Instant, b: Instant) -> f64 {
    if b >= a {
        secs(b - a)
    } else {
        -secs(a - b)
    }
}

/// A bound for waits that involve lease expiry.
fn expiry_bound(profile: &Profile) -> Duration {
    profile.base.lease_ttl * 3 + profile.base.emergency_grace + Duration::from_secs(10)
}

const SETTLE: Duration = Duration::from_secs(30);

/// 1 and 2: joins (each undone by a final stop before the planned-scale window ends) and
/// graceful leaves of workers holding partitions, on one in-process fleet of `reps + 1`.
pub async fn join_leave(env: &Env, profile: &Profile, results: &mut Results) {
    let workers = profile.reps as u32 + 1;
    let mut lab = lab(env, profile, "jl", workers);
    if let Err(e) = join_leave_in(&mut lab, profile, results).await {
        results.fail(
            &[
                Metric::JoinStored,
                Metric::JoinSeen,
                Metric::JoinClaimed,
                Metric::JoinStart,
            ],
            &format!("join/leave setup: {e}"),
        );
    }
    lab.teardown().await;
}

async fn join_leave_in(
    lab: &mut Lab,
    profile: &Profile,
    results: &mut Results,
) -> Result<(), String> {
    let n = profile.reps + 1;
    let first = lab.connect().await?; // creates the buckets
    lab.watch_kv().await?;
    lab.start_worker(first).await?;
    lab.start_workers(n - 1).await?;
    lab.settle("cold start of the join/leave fleet", SETTLE)
        .await?;
    for rep in 0..profile.reps {
        if let Err(e) = one_join(lab, profile, results).await {
            results.fail(
                &[
                    Metric::JoinStored,
                    Metric::JoinSeen,
                    Metric::JoinClaimed,
                    Metric::JoinStart,
                ],
                &format!("join run {}: {e}", rep + 1),
            );
        }
    }
    for rep in 0..profile.reps {
        if let Err(e) = one_leave(lab, results).await {
            results.fail(
                &[Metric::Leave, Metric::LeaveReturned],
                &format!("leave run {}: {e}", rep + 1),
            );
        }
    }
    Ok(())
}

/// Starts a newcomer, times the leader's reaction, then stops the newcomer for good.
async fn one_join(lab: &mut Lab, profile: &Profile, results: &mut Results) -> Result<(), String> {
    lab.settle("fleet settled before a join", SETTLE).await?;
    let leader = lab.world.inproc_leader().ok_or("no in-process leader")?;
    let kv = lab.connect().await?; // connection and bucket open are not part of the join
    lab.pump();
    lab.world.kv.clear();
    let (newcomer, started) = lab.start_worker(kv).await?;
    let leases = lab.config.leases_bucket();
    let lease_of = |w: &World| {
        let id = w.workers[newcomer].view.id?;
        let key = format!("worker.{}", id.0);
        w.kv.iter()
            .find(|e| {
                e.bucket == leases
                    && e.key == key
                    && e.op == async_nats::jetstream::kv::Operation::Put
            })
            .cloned()
    };
    let noticed = |w: &World| {
        w.workers[leader]
            .view
            .scaling_at
            .is_some_and(|t| t > started)
    };
    let waited = lab
        .wait(
            "leader noticing the join",
            profile.base.lease_ttl + Duration::from_secs(10),
            |w| noticed(w) && lease_of(w).is_some(),
        )
        .await;
    let result = waited.and_then(|_| {
        let w = &lab.world;
        let scaling = w.workers[leader]
            .view
            .scaling_at
            .ok_or("no Scaling stamp")?;
        let claimed = w.workers[newcomer]
            .view
            .claimed_at
            .ok_or("newcomer never claimed an ID")?;
        let lease = lease_of(w).ok_or("lease write not seen")?;
        // Stored (server clock) -> seen by the raw watcher (wall clock) -> leader Scaling.
        let watcher_lag = (unix_ns(lease.wall) - lease.stored_ns) as f64 / 1e9;
        results.add(Metric::JoinStored, watcher_lag + delta(lease.at, scaling));
        results.add(Metric::JoinSeen, delta(lease.at, scaling));
        results.add(Metric::JoinClaimed, delta(claimed, scaling));
        results.add(Metric::JoinStart, delta(started, scaling));
        Ok(())
    });
    // Undo the join before the planned-scale window commits it.
    let handle = lab.world.workers[newcomer].handle.clone();
    lab.world.workers[newcomer].live = false;
    let stop = tokio::time::timeout(Duration::from_secs(15), handle.stop()).await;
    match stop {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("stopping the newcomer: {e}")),
        Err(_) => {
            handle.abort();
            return Err("stopping the newcomer took over 15s".into());
        }
    }
    result
}

/// Stops a follower that holds partitions for good; times until the others own everything.
async fn one_leave(lab: &mut Lab, results: &mut Results) -> Result<(), String> {
    lab.settle("fleet settled before a leave", SETTLE).await?;
    let victim = lab
        .world
        .workers
        .iter()
        .position(|w| w.live && !w.handle.is_leader() && !w.handle.assignment().is_empty())
        .ok_or("no follower holding partitions left")?;
    lab.pump();
    lab.world.workers[victim].live = false;
    let handle = lab.world.workers[victim].handle.clone();
    let t0 = Instant::now();
    let stop = tokio::spawn(async move {
        let r = handle.stop().await;
        (r, Instant::now())
    });
    let reassigned = lab
        .wait(
            "partitions reassigned after a graceful leave",
            SETTLE,
            World::inproc_exactly_once,
        )
        .await;
    let (stopped, returned) = stop.await.map_err(|e| format!("stop task: {e}"))?;
    stopped.map_err(|e| format!("stop: {e}"))?;
    let reassigned = reassigned?;
    results.add(Metric::Leave, delta(t0, reassigned));
    results.add(Metric::LeaveReturned, delta(t0, returned));
    Ok(())
}

/// 3 (and 5, 6 on the first run): a `parti worker` follower among two in-process workers is
/// SIGKILLed; timed until the in-process workers own every partition exactly once.
pub async fn kill_follower(env: &Env, profile: &Profile, rep: usize, results: &mut Results) {
    let bin = match &env.bin {
        Ok(bin) => bin.clone(),
        Err(e) => {
            let mut metrics = vec![Metric::KillFollower, Metric::KillFollowerDetected];
            if rep == 0 {
                metrics.extend([Metric::RssFollower, Metric::KvLeader, Metric::KvFollower]);
            }
            results.fail(&metrics, e);
            return;
        }
    };
    let mut lab = lab(env, profile, "kf", 3);
    let r = kill_follower_in(&mut lab, &bin, profile, rep, results).await;
    if let Err(e) = r {
        results.fail(
            &[Metric::KillFollower, Metric::KillFollowerDetected],
            &format!("SIGKILL follower run {}: {e}", rep + 1),
        );
    }
    lab.teardown().await;
}

async fn kill_follower_in(
    lab: &mut Lab,
    bin: &std::path::Path,
    profile: &Profile,
    rep: usize,
    results: &mut Results,
) -> Result<(), String> {
    lab.start_workers(2).await?;
    lab.watch_kv().await?; // the buckets exist now
    lab.wait("an in-process leader", SETTLE, |w| {
        w.inproc_leader().is_some()
    })
    .await?;
    let victim = lab.spawn_proc(bin)?;
    lab.settle("3 workers (one a process) settled", SETTLE)
        .await?;
    let leader = lab.world.inproc_leader().ok_or("no in-process leader")?;
    if rep == 0 {
        if let Err(e) = kv_writes(lab, profile, results).await {
            results.fail(
                &[Metric::KvLeader, Metric::KvFollower],
                &format!("KV writes: {e}"),
            );
        }
        let idle = profile.kv_window + profile.base.heartbeat_interval;
        record_memory(lab, victim, "follower", idle, profile, results);
    }
    let killed = kill_at_random_phase(lab, victim, profile).await?;
    let reassigned = lab
        .wait(
            "in-process workers own everything after SIGKILL",
            expiry_bound(profile),
            World::inproc_exactly_once,
        )
        .await?;
    results.add(Metric::KillFollower, delta(killed, reassigned));
    let detected = lab.world.workers[leader]
        .view
        .emergency_at
        .filter(|t| *t > killed);
    match detected {
        Some(t) => results.add(Metric::KillFollowerDetected, delta(killed, t)),
        None => results.fail(
            &[Metric::KillFollowerDetected],
            "the leader never showed Emergency",
        ),
    }
    let id = lab.world.procs[victim]
        .view
        .id
        .ok_or("the victim never claimed an ID")?;
    let key = format!("worker.{}", id.0);
    let timeline = expiry_timeline(lab, profile, &key, killed);
    if let Some(expiry) = timeline.expiry {
        results.add(Metric::KillFollowerFromExpiry, delta(expiry, reassigned));
    }
    results.note(format!(
        "{} SIGKILL follower run {}: {}; leader Emergency {}; all owned once {}",
        profile.name,
        rep + 1,
        timeline.text,
        detected.map_or("never".into(), |t| plus(killed, t)),
        plus(killed, reassigned)
    ));
    Ok(())
}

/// "+1.234 s" after the kill.
fn plus(killed: Instant, t: Instant) -> String {
    format!("{:+.3} s", delta(killed, t))
}

/// When a lease was last renewed before the kill, when it expired, and when the server's
/// expiry marker arrived.
struct Timeline {
    expiry: Option<Instant>,
    text: String,
}

fn expiry_timeline(lab: &Lab, profile: &Profile, key: &str, killed: Instant) -> Timeline {
    let leases = lab.config.leases_bucket();
    let Some(put) = last_lease_put(&lab.world, &leases, key, killed) else {
        return Timeline {
            expiry: None,
            text: format!("no renewal of {key} seen before the kill"),
        };
    };
    let expiry = put.at + profile.base.lease_ttl;
    let removed = removal_after(&lab.world, &leases, key, killed).map_or("not seen".into(), |p| {
        format!("{:?} {}", p.op, plus(killed, p.at))
    });
    Timeline {
        expiry: Some(expiry),
        text: format!(
            "killed {:.0} ms after the last renewal of {key}, lease expiry {}, removal {removed}",
            secs(killed - put.at) * 1e3,
            plus(killed, expiry)
        ),
    }
}

/// Waits a random part of a heartbeat (so the kill does not always land just after a
/// renewal), then SIGKILLs process `victim`.
async fn kill_at_random_phase(
    lab: &mut Lab,
    victim: usize,
    profile: &Profile,
) -> Result<Instant, String> {
    let phase = profile.base.heartbeat_interval.mul_f64(random_fraction());
    lab.pump_for(phase).await;
    if !lab.world.settled() {
        return Err(format!(
            "the fleet was no longer settled before the kill [{}]",
            lab.world.summary()
        ));
    }
    lab.kill_proc(victim)
}

fn record_memory(
    lab: &Lab,
    proc: usize,
    role: &str,
    idle: Duration,
    profile: &Profile,
    results: &mut Results,
) {
    let metric = if role == "leader" {
        Metric::RssLeader
    } else {
        Metric::RssFollower
    };
    match memory(lab.world.procs[proc].pid) {
        Ok(m) => {
            results.add(metric, m.rss as f64 * 1024.0);
            results.note(format!(
                "{}: {role} process VmRSS {} KiB (anon {}, file {}; peak {}), {} partitions held, \
                 {:.1}s after settling",
                profile.name,
                m.rss,
                m.anon,
                m.file,
                m.peak,
                lab.world.procs[proc].view.count,
                secs(idle)
            ));
        }
        Err(e) => results.fail(&[metric], &e),
    }
}

/// 6: counts the writes to both buckets for `kv_window` on the settled fleet of 3 (the raw
/// watchers are already running).
async fn kv_writes(lab: &mut Lab, profile: &Profile, results: &mut Results) -> Result<(), String> {
    // Let the writes that follow a commit (applied generations in the leases) go by.
    lab.pump_for(profile.base.heartbeat_interval).await;
    lab.world.kv.clear();
    let window = profile.kv_window;
    lab.pump_for(window).await;
    if !lab.world.settled() {
        return Err(format!(
            "the fleet did not stay settled during the window [{}]",
            lab.world.summary()
        ));
    }
    let leader = lab
        .world
        .inproc_leader()
        .and_then(|i| lab.world.workers[i].handle.worker_id())
        .ok_or("no leader")?;
    let mut ids: Vec<WorkerId> = lab
        .world
        .workers
        .iter()
        .filter_map(|w| w.handle.worker_id())
        .collect();
    ids.extend(lab.world.procs.iter().filter_map(|p| p.view.id));
    // writer -> key -> receipt instants
    let mut writes: BTreeMap<WorkerId, BTreeMap<String, Vec<Instant>>> = BTreeMap::new();
    let mut unattributed: BTreeMap<String, u32> = BTreeMap::new();
    let leases = lab.config.leases_bucket();
    for e in &lab.world.kv {
        if e.op == async_nats::jetstream::kv::Operation::Purge {
            continue; // written by the server (TTL / max age)
        }
        let key = format!(
            "{}/{}",
            if e.bucket == leases {
                "leases"
            } else {
                "assign"
            },
            e.key
        );
        let writer = if e.bucket == leases {
            if e.key == "leader" {
                Some(leader)
            } else {
                e.key
                    .strip_prefix("worker.")
                    .and_then(|n| n.parse().ok())
                    .map(WorkerId)
            }
        } else if e.key.starts_with("ctl.") {
            None
        } else {
            Some(leader)
        };
        match writer {
            Some(w) => writes
                .entry(w)
                .or_default()
                .entry(key)
                .or_default()
                .push(e.at),
            None => *unattributed.entry(key).or_default() += 1,
        }
    }
    for id in ids {
        let keys = writes.remove(&id).unwrap_or_default();
        let count: usize = keys.values().map(Vec::len).sum();
        // Per key: (n - 1) writes over the span from the first to the last, when periodic;
        // a key written once counts once over the window.
        let rate: f64 = keys
            .values()
            .map(|at| match (at.first(), at.last()) {
                (Some(first), Some(last)) if at.len() >= 2 && last > first => {
                    (at.len() - 1) as f64 * 60.0 / secs(*last - *first)
                }
                _ => at.len() as f64 * 60.0 / secs(window),
            })
            .sum();
        let role = if id == leader { "leader" } else { "follower" };
        results.add(
            if id == leader {
                Metric::KvLeader
            } else {
                Metric::KvFollower
            },
            rate,
        );
        let parts: Vec<String> = keys
            .iter()
            .map(|(k, at)| {
                let gaps: Vec<f64> = at.windows(2).map(|p| secs(p[1] - p[0])).collect();
                let mean = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
                format!("{k} x{} every {:.3} s", at.len(), mean)
            })
            .collect();
        results.note(format!(
            "{}: worker {} ({role}) wrote {count} times in {:.1}s = {:.1}/min: {}",
            profile.name,
            id.0,
            secs(window),
            rate,
            if parts.is_empty() {
                "nothing".into()
            } else {
                parts.join(", ")
            }
        ));
    }
    for (id, keys) in writes {
        results.note(format!(
            "{}: writes by unknown worker {}: {:?}",
            profile.name,
            id.0,
            keys.keys()
        ));
    }
    if !unattributed.is_empty() {
        results.note(format!(
            "{}: unattributed writes: {unattributed:?}",
            profile.name
        ));
    }
    Ok(())
}

/// 4 (and 5 for a leader, on the first run): the leader, a `parti worker` process, is
/// SIGKILLed; timed until an in-process worker leads, and until it owns everything.
pub async fn kill_leader(env: &Env, profile: &Profile, rep: usize, results: &mut Results) {
    let bin = match &env.bin {
        Ok(bin) => bin.clone(),
        Err(e) => {
            let mut metrics = vec![Metric::KillLeader, Metric::KillLeaderReassigned];
            if rep == 0 {
                metrics.push(Metric::RssLeader);
            }
            results.fail(&metrics, e);
            return;
        }
    };
    let mut lab = lab(env, profile, "kl", 3);
    if let Err(e) = kill_leader_in(&mut lab, &bin, profile, rep, results).await {
        results.fail(
            &[Metric::KillLeader, Metric::KillLeaderReassigned],
            &format!("SIGKILL leader run {}: {e}", rep + 1),
        );
    }
    lab.teardown().await;
}

async fn kill_leader_in(
    lab: &mut Lab,
    bin: &std::path::Path,
    profile: &Profile,
    rep: usize,
    results: &mut Results,
) -> Result<(), String> {
    // Create the buckets first, so the raw watcher sees every write of the process.
    let first = lab.connect().await?;
    lab.watch_kv().await?;
    let victim = lab.spawn_proc(bin)?;
    lab.wait("the process leading", SETTLE, |w| {
        w.procs[victim].view.leader
    })
    .await?;
    lab.start_worker(first).await?;
    lab.start_workers(1).await?;
    lab.settle("3 workers (the leader a process) settled", SETTLE)
        .await?;
    if rep == 0 {
        let idle = profile.base.heartbeat_interval * 5;
        lab.pump_for(idle).await;
        record_memory(lab, victim, "leader", idle, profile, results);
    }
    let killed = kill_at_random_phase(lab, victim, profile).await?;
    let bound = expiry_bound(profile);
    let led = lab
        .wait("an in-process worker leading after SIGKILL", bound, |w| {
            w.workers.iter().any(|x| x.live && x.view.leader)
        })
        .await?;
    results.add(Metric::KillLeader, delta(killed, led));
    let leader_lease = expiry_timeline(lab, profile, "leader", killed);
    if let Some(expiry) = leader_lease.expiry {
        results.add(Metric::KillLeaderFromExpiry, delta(expiry, led));
    }
    let reassigned = lab
        .wait(
            "in-process workers own everything after the leader's SIGKILL",
            bound,
            World::inproc_exactly_once,
        )
        .await;
    match &reassigned {
        Ok(t) => results.add(Metric::KillLeaderReassigned, delta(killed, *t)),
        Err(e) => results.fail(&[Metric::KillLeaderReassigned], e),
    }
    let emergency = lab
        .world
        .workers
        .iter()
        .filter_map(|w| w.view.emergency_at)
        .find(|t| *t > killed);
    let worker_lease = match lab.world.procs[victim].view.id {
        Some(id) => expiry_timeline(lab, profile, &format!("worker.{}", id.0), killed).text,
        None => "the victim never claimed an ID".into(),
    };
    results.note(format!(
        "{} SIGKILL leader run {}: {}; {}; new leader {}; its Emergency {}; all owned once {}",
        profile.name,
        rep + 1,
        leader_lease.text,
        worker_lease,
        plus(killed, led),
        emergency.map_or("never".into(), |t| plus(killed, t)),
        reassigned.map_or("never".into(), |t| plus(killed, t)),
    ));
    Ok(())
}
