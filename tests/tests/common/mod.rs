//! Shared helpers of the integration tests: a fleet of parti workers on one real nats-server
//! (each worker with its own connection, as separate processes would have), an ownership ledger
//! fed by the workers' rebalance listeners, and deadline-bound waits.
#![allow(dead_code)]

pub mod bin;

use futures::future::BoxFuture;
use futures::StreamExt;
use parti::kv::{NatsKv, NatsOptions};
use parti::testing::{NatsCluster, NatsServer};
use parti::{
    Config, Event, Partition, PartitionId, PartitionSource, RebalanceListener, State, Worker,
    WorkerId,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a scenario step may take before the test fails. Generous: the suite runs many
/// fleets in parallel on two cores.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often [`wait_for`] re-checks its condition.
const POLL: Duration = Duration::from_millis(20);

/// Fast protocol timings (a fleet settles in well under a second) and a bucket prefix of its
/// own. Cold start ends when `expected_workers` have joined.
pub fn config(prefix: &str, expected_workers: u32) -> Config {
    Config {
        bucket_prefix: prefix.into(),
        expected_workers: Some(expected_workers),
        heartbeat_interval: Duration::from_millis(200),
        // NATS TTLs are whole seconds.
        lease_ttl: Duration::from_secs(1),
        safety_margin: Duration::from_millis(200),
        emergency_grace: Duration::from_millis(200),
        cold_start_window: Duration::from_millis(300),
        planned_scale_window: Duration::from_millis(300),
        max_scale_delay: Duration::from_secs(1),
        restart_grace: Duration::from_millis(300),
        min_rebalance_interval: Duration::from_millis(300),
        revoke_timeout: Duration::from_millis(500),
        shutdown_timeout: Duration::from_secs(3),
        ..Config::default()
    }
}

/// Client options for a test server: short timeouts, so a dead server is noticed quickly.
pub fn nats_options(url: &str) -> NatsOptions {
    NatsOptions {
        request_timeout: Duration::from_secs(1),
        ping_interval: Duration::from_millis(500),
        reconnect_max_delay: Duration::from_millis(200),
        name: Some("parti-integration-tests".into()),
        ..NatsOptions::new(url)
    }
}

/// Partitions `p<i>` for `i` in `range`, with the default weight.
pub fn partitions(range: std::ops::Range<usize>) -> Vec<Partition> {
    range
        .map(|i| Partition::single(&format!("p{i}")).expect("valid partition"))
        .collect()
}

/// The IDs of a partition list.
pub fn ids(partitions: &[Partition]) -> BTreeSet<PartitionId> {
    partitions.iter().map(|p| p.id().clone()).collect()
}

/// Waits until `check` returns `Ok`, re-checking every 20 ms; panics after `deadline` with
/// `what` and the last reason `check` gave.
pub async fn wait_for(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<(), String>,
) -> Duration {
    let start = Instant::now();
    loop {
        let reason = match check() {
            Ok(()) => return start.elapsed(),
            Err(reason) => reason,
        };
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}: {reason}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`wait_for`], with an async check (e.g. one that reads KV); returns what the check
/// returned and how long the wait took.
pub async fn wait_for_async<T, F, Fut>(
    deadline: Duration,
    what: &str,
    mut check: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let reason = match check().await {
            Ok(value) => return (value, start.elapsed()),
            Err(reason) => reason,
        };
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}: {reason}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `cond` holds (see [`wait_for`]); returns how long that took.
pub async fn wait_until(
    deadline: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Duration {
    wait_for(deadline, what, || {
        if cond() {
            Ok(())
        } else {
            Err("condition false".into())
        }
    })
    .await
}

/// Who owns what, as the applications see it: kept by every worker's [`RebalanceListener`].
///
/// `on_revoked` completes before a worker confirms a revoke, and in Strict mode nobody else is
/// granted the partition before that, so the ledger sees a partition granted while another
/// worker still holds it only if the no-two-owners guarantee is broken: that is recorded as a
/// violation.
#[derive(Clone, Default)]
pub struct Ledger {
    inner: Arc<Mutex<LedgerState>>,
}

#[derive(Default)]
struct LedgerState {
    owners: BTreeMap<PartitionId, usize>,
    /// Every grant of each partition, in order: the member index it went to.
    grants: BTreeMap<PartitionId, Vec<usize>>,
    /// Partitions each member was told it lost (`on_lost`), in order.
    lost: BTreeMap<usize, Vec<PartitionId>>,
    violations: Vec<String>,
}

impl Ledger {
    /// The listener of fleet member `member`.
    pub fn listener(&self, member: usize) -> LedgerListener {
        LedgerListener {
            ledger: self.clone(),
            member,
        }
    }

    /// The current owner (member index) of every held partition.
    pub fn owners(&self) -> BTreeMap<PartitionId, usize> {
        self.inner.lock().unwrap().owners.clone()
    }

    /// Every grant of each partition, in order.
    pub fn grants(&self) -> BTreeMap<PartitionId, Vec<usize>> {
        self.inner.lock().unwrap().grants.clone()
    }

    /// Partitions member `member` was told it lost (`on_lost`), in order.
    pub fn lost(&self, member: usize) -> Vec<PartitionId> {
        let s = self.inner.lock().unwrap();
        s.lost.get(&member).cloned().unwrap_or_default()
    }

    /// Partitions granted to two members at once, described.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Panics if any partition was ever granted while another member held it.
    pub fn assert_never_two_owners(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "two owners at once: {v:#?}");
    }
}

/// One member's [`RebalanceListener`] writing into the [`Ledger`].
pub struct LedgerListener {
    ledger: Ledger,
    member: usize,
}

impl RebalanceListener for LedgerListener {
    fn on_assigned<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        let mut s = self.ledger.inner.lock().unwrap();
        for p in partitions {
            if let Some(other) = s.owners.insert(p.clone(), self.member) {
                if other != self.member {
                    let v = format!(
                        "{p} granted to member {} while {other} held it",
                        self.member
                    );
                    s.violations.push(v);
                }
            }
            s.grants.entry(p.clone()).or_default().push(self.member);
        }
        Box::pin(async {})
    }

    fn on_revoked<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        let mut s = self.ledger.inner.lock().unwrap();
        for p in partitions {
            if s.owners.get(p) == Some(&self.member) {
                s.owners.remove(p);
            }
        }
        Box::pin(async {})
    }

    fn on_lost<'a>(&'a self, partitions: &'a BTreeSet<PartitionId>) -> BoxFuture<'a, ()> {
        {
            let mut s = self.ledger.inner.lock().unwrap();
            let lost = s.lost.entry(self.member).or_default();
            lost.extend(partitions.iter().cloned());
        }
        self.on_revoked(partitions)
    }
}

/// One worker of a [`Cluster`] and everything it reported.
pub struct Member {
    /// The worker's handle.
    pub handle: Worker,
    /// Every event since the worker started, in order.
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl Member {
    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The `AssignmentChanged` events so far that gained or handed off something (as
    /// (assigned, revoked)).
    pub fn assignment_changes(&self) -> Vec<(BTreeSet<PartitionId>, BTreeSet<PartitionId>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::AssignmentChanged {
                    assigned, revoked, ..
                } if !(assigned.is_empty() && revoked.is_empty()) => Some((assigned, revoked)),
                _ => None,
            })
            .collect()
    }
}

/// A fleet of workers on NATS of its own (one server, or a routed cluster of servers),
/// sharing one partition source.
pub struct Cluster {
    /// The single server, for fleets started with [`Cluster::start`] or
    /// [`Cluster::start_with`] (kill and restart it for fault tests; see [`Cluster::server`]).
    pub single: Option<NatsServer>,
    /// The routed servers, for fleets started with [`Cluster::start_on_cluster`].
    pub nats_cluster: Option<NatsCluster>,
    /// The URLs every worker is given.
    pub urls: Vec<String>,
    /// The configuration every member starts from (each gets `preferred_id` = its index).
    pub config: Config,
    /// The partition source every member is given.
    pub source: Arc<dyn PartitionSource>,
    /// Ownership as the members' listeners saw it.
    pub ledger: Ledger,
    /// Every member ever started, by index (a restarted member replaces its slot).
    pub members: Vec<Member>,
}

impl Cluster {
    /// A server and `n` workers with [`config`]`(prefix, n)`.
    pub async fn start(prefix: &str, n: usize, source: impl PartitionSource) -> Cluster {
        let config = config(prefix, n as u32);
        Cluster::start_with(config, n, source).await
    }

    /// A server and `n` workers with `config`.
    pub async fn start_with(config: Config, n: usize, source: impl PartitionSource) -> Cluster {
        let server = NatsServer::start().expect("start nats-server");
        let urls = vec![server.url()];
        Cluster::start_fleet(Some(server), None, urls, config, n, source).await
    }

    /// `n` workers with `config` on a routed cluster of nats-servers, each worker given every
    /// node's URL.
    pub async fn start_on_cluster(
        nats: NatsCluster,
        config: Config,
        n: usize,
        source: impl PartitionSource,
    ) -> Cluster {
        let urls = nats.urls();
        Cluster::start_fleet(None, Some(nats), urls, config, n, source).await
    }

    async fn start_fleet(
        single: Option<NatsServer>,
        nats_cluster: Option<NatsCluster>,
        urls: Vec<String>,
        config: Config,
        n: usize,
        source: impl PartitionSource,
    ) -> Cluster {
        let mut cluster = Cluster {
            single,
            nats_cluster,
            urls,
            config,
            source: Arc::new(source),
            ledger: Ledger::default(),
            members: Vec::new(),
        };
        // Start them together, as a deployment would.
        let starts: Vec<_> = (0..n).map(|i| cluster.start_worker(i)).collect();
        for member in futures::future::join_all(starts).await {
            cluster.members.push(member);
        }
        cluster
    }

    /// The single server of a one-server fleet.
    pub fn server(&mut self) -> &mut NatsServer {
        self.single
            .as_mut()
            .expect("a fleet on a single nats-server")
    }

    /// The routed servers of a fleet started with [`Cluster::start_on_cluster`].
    pub fn nats(&mut self) -> &mut NatsCluster {
        self.nats_cluster
            .as_mut()
            .expect("a fleet on a NATS cluster")
    }

    /// Adds a worker (the next index); returns its index.
    pub async fn add_worker(&mut self) -> usize {
        let urls = self.urls.clone();
        self.add_worker_via(urls).await
    }

    /// Adds a worker (the next index) that connects to `urls` instead of the fleet's (e.g. a
    /// [`parti::testing::FaultProxy`] in front of the server); returns its index.
    pub async fn add_worker_via(&mut self, urls: Vec<String>) -> usize {
        let index = self.members.len();
        let member = self.start_worker_on(index, urls).await;
        self.members.push(member);
        index
    }

    /// Starts a new instance in slot `index` (its predecessor must have stopped): same
    /// preferred ID, so it resumes the predecessor's share.
    pub async fn restart_worker(&mut self, index: usize) {
        assert!(
            self.members[index].handle.is_stopped(),
            "member {index} is still running"
        );
        self.members[index] = self.start_worker(index).await;
    }

    /// Starts a worker for slot `index`, with a NATS connection of its own.
    fn start_worker(&self, index: usize) -> BoxFuture<'static, Member> {
        self.start_worker_on(index, self.urls.clone())
    }

    /// Starts a worker for slot `index` connected to `urls`.
    fn start_worker_on(&self, index: usize, urls: Vec<String>) -> BoxFuture<'static, Member> {
        let config = Config {
            preferred_id: Some(WorkerId(index as u32)),
            ..self.config.clone()
        };
        let mut options = nats_options(&urls[0]);
        options.urls = urls;
        let source = self.source.clone();
        let listener = self.ledger.listener(index);
        Box::pin(async move {
            let (kv, connection) = NatsKv::connect(&options, &config)
                .await
                .expect("connect to nats");
            let (handle, mut stream) = Worker::builder()
                .config(config)
                .nats(kv)
                .connection_events(connection)
                .source(source)
                .rebalance_listener(listener)
                .start_with_events()
                .await
                .expect("worker starts");
            let events: Arc<Mutex<Vec<Event>>> = Arc::default();
            let log = events.clone();
            tokio::spawn(async move {
                while let Some(event) = stream.next().await {
                    log.lock().unwrap().push(event);
                }
            });
            Member { handle, events }
        })
    }

    /// The members that have not stopped.
    pub fn running(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| !m.handle.is_stopped())
    }

    /// The handle of member `index`.
    pub fn handle(&self, index: usize) -> &Worker {
        &self.members[index].handle
    }

    /// Every held partition and the running members that hold it (by their handles).
    pub fn ownership(&self) -> BTreeMap<PartitionId, Vec<usize>> {
        let mut owners: BTreeMap<PartitionId, Vec<usize>> = BTreeMap::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.handle.is_stopped() {
                continue;
            }
            for p in m.handle.assignment() {
                owners.entry(p).or_default().push(i);
            }
        }
        owners
    }

    /// `Ok` if every partition of `expected` is held by exactly one running member and nothing
    /// else is held; else what is wrong.
    pub fn check_owned_once(&self, expected: &BTreeSet<PartitionId>) -> Result<(), String> {
        let owners = self.ownership();
        let mut problems = String::new();
        let missing = expected.iter().filter(|p| !owners.contains_key(*p)).count();
        if missing > 0 {
            let _ = write!(problems, "{missing} unowned; ");
        }
        let extra: Vec<_> = owners.keys().filter(|p| !expected.contains(*p)).collect();
        if let Some(first) = extra.first() {
            let _ = write!(
                problems,
                "{} owned but not listed ({first}...); ",
                extra.len()
            );
        }
        let shared: Vec<_> = owners.iter().filter(|(_, o)| o.len() > 1).collect();
        if let Some(first) = shared.first() {
            let _ = write!(
                problems,
                "{} with several owners ({first:?}); ",
                shared.len()
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{problems}shares: {:?}", self.share_sizes()))
        }
    }

    /// `Ok` if [`Cluster::check_owned_once`] holds, every running member is `Stable`, exactly
    /// one leads, and the listeners agree with the handles; else what is wrong.
    pub fn check_settled(&self, expected: &BTreeSet<PartitionId>) -> Result<(), String> {
        self.check_owned_once(expected)?;
        let mut problems = String::new();
        let unstable: Vec<(usize, State)> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.handle.is_stopped() && m.handle.state() != State::Stable)
            .map(|(i, m)| (i, m.handle.state()))
            .collect();
        if !unstable.is_empty() {
            let _ = write!(problems, "not stable: {unstable:?}; ");
        }
        let leaders = self.leaders();
        if leaders.len() != 1 {
            let _ = write!(problems, "leaders: {leaders:?}; ");
        }
        let by_handles: BTreeMap<PartitionId, usize> = self
            .ownership()
            .into_iter()
            .map(|(p, o)| (p, o[0]))
            .collect();
        if by_handles != self.ledger.owners() {
            let _ = write!(problems, "listeners disagree with the handles; ");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{problems}shares: {:?}", self.share_sizes()))
        }
    }

    /// Waits until [`Cluster::check_settled`] holds; returns how long that took. Also checks
    /// that no partition ever had two owners.
    pub async fn wait_settled(&self, expected: &BTreeSet<PartitionId>) -> Duration {
        let what = format!("{} partitions are owned exactly once", expected.len());
        let took = wait_for(DEADLINE, &what, || self.check_settled(expected)).await;
        self.ledger.assert_never_two_owners();
        took
    }

    /// Each running member's worker ID, state and number of partitions.
    pub fn share_sizes(&self) -> Vec<(usize, Option<WorkerId>, State, usize)> {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.handle.is_stopped())
            .map(|(i, m)| {
                let h = &m.handle;
                (i, h.worker_id(), h.state(), h.assignment().len())
            })
            .collect()
    }

    /// The indexes of the running members that lead.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| {
                let h = &self.members[*i].handle;
                !h.is_stopped() && h.is_leader()
            })
            .collect()
    }

    /// The index of the one running member that leads; panics if there is not exactly one.
    pub fn leader(&self) -> usize {
        let leaders = self.leaders();
        assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
        leaders[0]
    }

    /// Stops every running member gracefully.
    pub async fn stop_all(&self) {
        let stops = self.running().map(|m| m.handle.stop());
        for result in futures::future::join_all(stops).await {
            result.expect("graceful stop");
        }
    }
}
