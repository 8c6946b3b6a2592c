//! The bench's laboratory: one fleet (one bucket prefix) of in-process workers and `parti worker`
//! processes, every event of which arrives on one channel stamped with the moment it was
//! received, plus raw KV watchers that see every write to the fleet's buckets.
//!
//! Timed conditions are computed from the stamped events alone (a worker's assignment is the
//! `assignment` of its last `AssignmentChanged`), so the instant a condition became true is the stamp
//! of the event that made it true, not the moment the bench happened to look. Untimed waits
//! ("settled") read the workers' snapshots too, on a short tick.

use futures::StreamExt;
use parti::kv::{NatsKv, NatsOptions};
use parti::{Config, Event, Partition, PartitionId, State, Worker, WorkerId};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often untimed waits re-read the snapshots.
const TICK: Duration = Duration::from_millis(10);

/// Who sent a stamped message.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// In-process worker `i` of [`World::workers`].
    Worker(usize),
    /// Process `i` of [`World::procs`].
    Proc(usize),
    /// A raw KV watcher.
    Kv,
}

/// What arrived.
#[derive(Debug)]
pub enum What {
    /// An event of an in-process worker.
    Event(Event),
    /// An in-process worker's event stream ended.
    Ended,
    /// A stdout line of a process (timestamp removed).
    Line(String),
    /// A stderr line of a process.
    ErrLine(String),
    /// A process closed its stdout (exited or was killed).
    Exited,
    /// A KV write seen by a raw watcher.
    Kv(KvSeen),
}

/// A message with the moment it was received.
#[derive(Debug)]
pub struct Stamped {
    pub at: Instant,
    pub from: Source,
    pub what: What,
}

fn stamp(from: Source, what: What) -> Stamped {
    Stamped {
        at: Instant::now(),
        from,
        what,
    }
}

/// One entry a raw watcher delivered.
#[derive(Clone, Debug)]
pub struct KvSeen {
    pub bucket: String,
    pub key: String,
    pub op: async_nats::jetstream::kv::Operation,
    /// When the server stored it (its stream timestamp), Unix nanoseconds.
    pub stored_ns: i128,
    pub at: Instant,
    pub wall: SystemTime,
}

/// What the bench knows about one worker, from its events (or, for a process, its lines).
#[derive(Clone, Debug)]
pub struct View {
    pub id: Option<WorkerId>,
    pub state: State,
    pub leader: bool,
    pub assignment: BTreeSet<PartitionId>,
    /// Partition count (the only thing a process line gives reliably).
    pub count: usize,
    pub claimed_at: Option<Instant>,
    /// Last transition to each state of interest.
    pub scaling_at: Option<Instant>,
    pub emergency_at: Option<Instant>,
    pub ended: bool,
}

impl Default for View {
    fn default() -> Self {
        View {
            id: None,
            state: State::Init,
            leader: false,
            assignment: BTreeSet::new(),
            count: 0,
            claimed_at: None,
            scaling_at: None,
            emergency_at: None,
            ended: false,
        }
    }
}

/// An in-process worker.
pub struct InProc {
    pub handle: Worker,
    /// False once the bench stopped it (it no longer counts as an owner).
    pub live: bool,
    pub view: View,
}

/// A `parti worker` process.
pub struct Proc {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub live: bool,
    pub view: View,
    /// Its last lines (for failure reports).
    pub tail: Vec<String>,
}

/// Everything the bench knows about one fleet.
pub struct World {
    pub all: BTreeSet<PartitionId>,
    pub workers: Vec<InProc>,
    pub procs: Vec<Proc>,
    /// Raw watcher entries since the last [`World::kv`] clear.
    pub kv: Vec<KvSeen>,
    /// `BENCH_TRACE=1`: print every message, stamped from `origin`.
    trace: bool,
    origin: Instant,
}

impl World {
    fn apply(&mut self, s: Stamped) {
        if self.trace {
            println!(
                "    trace {:>9.3}s {:?} {:?}",
                (s.at - self.origin).as_secs_f64(),
                s.from,
                s.what
            );
        }
        match (s.from, s.what) {
            (Source::Worker(i), What::Event(e)) => apply_event(&mut self.workers[i].view, &e, s.at),
            (Source::Worker(i), What::Ended) => self.workers[i].view.ended = true,
            (Source::Proc(i), What::Line(line)) => {
                let p = &mut self.procs[i];
                apply_line(&mut p.view, &line, s.at);
                keep_tail(&mut p.tail, line);
            }
            (Source::Proc(i), What::ErrLine(line)) => {
                keep_tail(&mut self.procs[i].tail, format!("stderr: {line}"))
            }
            (Source::Proc(i), What::Exited) => self.procs[i].view.ended = true,
            (_, What::Kv(seen)) => self.kv.push(seen),
            _ => {}
        }
    }

    /// The live in-process workers own every partition exactly once (from their events).
    pub fn inproc_exactly_once(&self) -> bool {
        let live: Vec<&View> = self
            .workers
            .iter()
            .filter(|w| w.live)
            .map(|w| &w.view)
            .collect();
        let total: usize = live.iter().map(|v| v.assignment.len()).sum();
        total == self.all.len() && live.iter().all(|v| v.assignment.is_subset(&self.all)) && {
            let union: BTreeSet<&PartitionId> = live.iter().flat_map(|v| &v.assignment).collect();
            union.len() == self.all.len()
        }
    }

    /// Every live worker is Stable with a share, in-process ones on the same generation, one
    /// leader, and every partition owned exactly once (processes counted by their lines).
    pub fn settled(&self) -> bool {
        let live_in: Vec<&InProc> = self.workers.iter().filter(|w| w.live).collect();
        let live_procs: Vec<&Proc> = self.procs.iter().filter(|p| p.live).collect();
        let stable_in = live_in
            .iter()
            .all(|w| w.handle.state() == State::Stable && w.handle.worker_id().is_some());
        let stable_procs = live_procs
            .iter()
            .all(|p| p.view.state == State::Stable && !p.view.ended);
        let generations: BTreeSet<_> = live_in.iter().map(|w| w.handle.generation()).collect();
        let leaders = live_in.iter().filter(|w| w.handle.is_leader()).count()
            + live_procs.iter().filter(|p| p.view.leader).count();
        let shares: Vec<BTreeSet<PartitionId>> =
            live_in.iter().map(|w| w.handle.assignment()).collect();
        let in_total: usize = shares.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<&PartitionId> = shares.iter().flatten().collect();
        let proc_total: usize = live_procs.iter().map(|p| p.view.count).sum();
        stable_in
            && stable_procs
            && generations.len() <= 1
            && leaders == 1
            && union.len() == in_total
            && union.iter().all(|p| self.all.contains(*p))
            && in_total + proc_total == self.all.len()
    }

    /// The in-process leader, if any (from the snapshots).
    pub fn inproc_leader(&self) -> Option<usize> {
        self.workers
            .iter()
            .position(|w| w.live && w.handle.is_leader())
    }

    /// One line per worker, for failure reports.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            parts.push(format!(
                "w{i}{}: id {:?} {} {}{} parts (events: {} {} parts)",
                if w.live { "" } else { " (gone)" },
                w.handle.worker_id().map(|id| id.0),
                w.handle.state(),
                if w.handle.is_leader() { "leader, " } else { "" },
                w.handle.assignment().len(),
                w.view.state,
                w.view.assignment.len()
            ));
        }
        for (i, p) in self.procs.iter().enumerate() {
            parts.push(format!(
                "proc{i} pid {}{}: id {:?} {} {}{} parts; last lines: {}",
                p.pid,
                if p.live { "" } else { " (gone)" },
                p.view.id.map(|id| id.0),
                p.view.state,
                if p.view.leader { "leader, " } else { "" },
                p.view.count,
                p.tail
                    .iter()
                    .rev()
                    .take(3)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        parts.join("; ")
    }
}

fn keep_tail(tail: &mut Vec<String>, line: String) {
    if tail.len() >= 20 {
        tail.remove(0);
    }
    tail.push(line);
}

fn apply_event(v: &mut View, e: &Event, at: Instant) {
    match e {
        Event::IdClaimed(id) => {
            v.id = Some(*id);
            v.claimed_at = Some(at);
        }
        Event::StateChanged { to, .. } => set_state(v, *to, at),
        Event::LeadershipChanged { is_leader, .. } => v.leader = *is_leader,
        Event::AssignmentChanged { assignment, .. } => {
            v.assignment = assignment.clone();
            v.count = assignment.len();
        }
        _ => {}
    }
}

fn set_state(v: &mut View, to: State, at: Instant) {
    v.state = to;
    match to {
        State::Scaling => v.scaling_at = Some(at),
        State::Emergency => v.emergency_at = Some(at),
        _ => {}
    }
}

/// Parses a `parti worker` line (see `describe` in the CLI's worker.rs).
fn apply_line(v: &mut View, line: &str, at: Instant) {
    if let Some(id) = line.strip_prefix("claimed worker id ") {
        if let Ok(n) = id.trim().parse() {
            v.id = Some(WorkerId(n));
            v.claimed_at = Some(at);
        }
    } else if let Some(rest) = line.strip_prefix("state ") {
        if let Some(state) = rest.split(" -> ").nth(1).and_then(parse_state) {
            set_state(v, state, at);
        }
    } else if line.starts_with("leader: yes") {
        v.leader = true;
    } else if line.starts_with("leader: no") {
        v.leader = false;
    } else if line.starts_with("assignment ") {
        // "assignment g3: +21 -0 = 21 partitions [...]"
        if let Some(n) = line
            .split(" = ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
        {
            v.count = n;
        }
    }
}

fn parse_state(s: &str) -> Option<State> {
    Some(match s.trim() {
        "Init" => State::Init,
        "ClaimingId" => State::ClaimingId,
        "Election" => State::Election,
        "WaitingAssignment" => State::WaitingAssignment,
        "Stable" => State::Stable,
        "Scaling" => State::Scaling,
        "Rebalancing" => State::Rebalancing,
        "Emergency" => State::Emergency,
        "Degraded" => State::Degraded,
        "Shutdown" => State::Shutdown,
        _ => return None,
    })
}

/// One fleet: its configuration (bucket prefix included), its workers, its stamped messages.
pub struct Lab {
    pub url: String,
    pub config: Config,
    pub partitions: Vec<Partition>,
    /// `parti worker` flags for the profile's timings.
    pub cli_flags: Vec<String>,
    pub world: World,
    tx: mpsc::UnboundedSender<Stamped>,
    rx: mpsc::UnboundedReceiver<Stamped>,
    tasks: Vec<JoinHandle<()>>,
}

impl Lab {
    /// A fleet with no worker yet. `config` carries the prefix and `expected_workers`.
    pub fn new(
        url: &str,
        config: Config,
        partitions: Vec<Partition>,
        cli_flags: Vec<String>,
    ) -> Lab {
        let (tx, rx) = mpsc::unbounded_channel();
        let all = partitions.iter().map(|p| p.id().clone()).collect();
        Lab {
            url: url.to_string(),
            config,
            partitions,
            cli_flags,
            world: World {
                all,
                workers: Vec::new(),
                procs: Vec::new(),
                kv: Vec::new(),
                trace: std::env::var_os("BENCH_TRACE").is_some(),
                origin: Instant::now(),
            },
            tx,
            rx,
            tasks: Vec::new(),
        }
    }

    /// Connects a worker's own NATS connection (creating the buckets if needed).
    pub async fn connect(&self) -> Result<NatsKv, String> {
        let options = NatsOptions {
            name: Some("parti-bench".into()),
            ..NatsOptions::new(self.url.clone())
        };
        let (kv, _connection) = NatsKv::connect(&options, &self.config)
            .await
            .map_err(|e| format!("connecting a worker: {e}"))?;
        Ok(kv)
    }

    /// Starts an in-process worker on `kv`; returns its index and the instant just before
    /// `start_with_events` was called.
    pub async fn start_worker(&mut self, kv: NatsKv) -> Result<(usize, Instant), String> {
        let index = self.world.workers.len();
        let started = Instant::now();
        let (handle, mut events) = Worker::builder()
            .config(self.config.clone())
            .nats(kv)
            .partitions(self.partitions.clone())
            .start_with_events()
            .await
            .map_err(|e| format!("starting worker {index}: {e}"))?;
        let tx = self.tx.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if tx
                    .send(stamp(Source::Worker(index), What::Event(e)))
                    .is_err()
                {
                    return;
                }
            }
            let _ = tx.send(stamp(Source::Worker(index), What::Ended));
        }));
        self.world.workers.push(InProc {
            handle,
            live: true,
            view: View::default(),
        });
        Ok((index, started))
    }

    /// Connects and starts `n` in-process workers.
    pub async fn start_workers(&mut self, n: usize) -> Result<(), String> {
        for _ in 0..n {
            let kv = self.connect().await?;
            self.start_worker(kv).await?;
        }
        Ok(())
    }

    /// Spawns `parti worker` for this fleet; returns its index.
    pub fn spawn_proc(&mut self, bin: &Path) -> Result<usize, String> {
        let index = self.world.procs.len();
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("worker")
            .args(["--nats", &self.url, "--prefix", &self.config.bucket_prefix])
            .args(["--partitions", &self.partitions.len().to_string()])
            .args(&self.cli_flags);
        if let Some(n) = self.config.expected_workers {
            cmd.args(["--expected-workers", &n.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("spawned process has no pid")?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let tx = self.tx.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // "<timestamp> <message>"
                let message = line.split_once(' ').map_or(line.as_str(), |(_, m)| m);
                if tx
                    .send(stamp(Source::Proc(index), What::Line(message.to_string())))
                    .is_err()
                {
                    return;
                }
            }
            let _ = tx.send(stamp(Source::Proc(index), What::Exited));
        }));
        let tx = self.tx.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(stamp(Source::Proc(index), What::ErrLine(line)));
            }
        }));
        self.world.procs.push(Proc {
            child,
            pid,
            live: true,
            view: View::default(),
            tail: Vec::new(),
        });
        Ok(index)
    }

    /// SIGKILLs process `i`; returns the instant just before the signal was sent.
    pub fn kill_proc(&mut self, i: usize) -> Result<Instant, String> {
        if self.world.trace {
            println!(
                "    trace {:>9.3}s SIGKILL proc{i}",
                self.world.origin.elapsed().as_secs_f64()
            );
        }
        let p = &mut self.world.procs[i];
        p.live = false;
        let at = Instant::now();
        p.child
            .start_kill()
            .map_err(|e| format!("kill -9 {}: {e}", p.pid))?;
        Ok(at)
    }

    /// Watches every new write to both buckets with a raw async-nats KV watcher of its own
    /// connection; entries land in [`World::kv`]. Returns once both watches are established.
    pub async fn watch_kv(&mut self) -> Result<(), String> {
        let client = async_nats::connect(self.url.as_str())
            .await
            .map_err(|e| format!("raw watcher connect: {e}"))?;
        let js = async_nats::jetstream::new(client);
        for bucket in [self.config.leases_bucket(), self.config.assign_bucket()] {
            let store = js
                .get_key_value(&bucket)
                .await
                .map_err(|e| format!("raw watcher: opening {bucket}: {e}"))?;
            let mut watch = store
                .watch_all()
                .await
                .map_err(|e| format!("raw watcher: watching {bucket}: {e}"))?;
            let tx = self.tx.clone();
            self.tasks.push(tokio::spawn(async move {
                while let Some(Ok(entry)) = watch.next().await {
                    let at = Instant::now();
                    let wall = SystemTime::now();
                    let seen = KvSeen {
                        bucket: bucket.clone(),
                        key: entry.key,
                        op: entry.operation,
                        stored_ns: entry.created.unix_timestamp_nanos(),
                        at,
                        wall,
                    };
                    if tx
                        .send(Stamped {
                            at,
                            from: Source::Kv,
                            what: What::Kv(seen),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }));
        }
        Ok(())
    }

    /// Applies every message already received.
    pub fn pump(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            self.world.apply(s);
        }
    }

    /// Applies messages for `d` (a measurement window, not a synchronisation).
    pub async fn pump_for(&mut self, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        while let Ok(Some(s)) = tokio::time::timeout_at(end, self.rx.recv()).await {
            self.world.apply(s);
        }
    }

    /// Waits until `cond` holds, applying messages as they arrive and re-checking on a short
    /// tick. Returns the stamp of the message after which it held (or the check's instant if
    /// it held on a tick or at once).
    pub async fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        mut cond: impl FnMut(&World) -> bool,
    ) -> Result<Instant, String> {
        self.pump();
        if cond(&self.world) {
            return Ok(Instant::now());
        }
        let deadline = Instant::now() + limit;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{what}: not within {:.1}s [{}]",
                    limit.as_secs_f64(),
                    self.world.summary()
                ));
            }
            match tokio::time::timeout((deadline - now).min(TICK), self.rx.recv()).await {
                Ok(Some(s)) => {
                    let at = s.at;
                    self.world.apply(s);
                    if cond(&self.world) {
                        return Ok(at);
                    }
                }
                Ok(None) => return Err(format!("{what}: message channel closed")),
                Err(_) => {
                    if cond(&self.world) {
                        return Ok(Instant::now());
                    }
                }
            }
        }
    }

    /// Waits until the fleet has settled (see [`World::settled`]).
    pub async fn settle(&mut self, what: &str, limit: Duration) -> Result<(), String> {
        self.wait(what, limit, World::settled).await.map(|_| ())
    }

    /// Stops every live in-process worker for good (in parallel, bounded), kills every live
    /// process, and ends the lab's tasks.
    pub async fn teardown(mut self) {
        let stops = self
            .world
            .workers
            .iter()
            .filter(|w| w.live)
            .map(|w| {
                let h = w.handle.clone();
                async move {
                    if tokio::time::timeout(Duration::from_secs(5), h.stop())
                        .await
                        .is_err()
                    {
                        h.abort();
                    }
                }
            })
            .collect::<Vec<_>>();
        futures::future::join_all(stops).await;
        for p in &mut self.world.procs {
            let _ = p.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), p.child.wait()).await;
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The Unix time of `t` in nanoseconds.
pub fn unix_ns(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// A process's memory, from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Mem {
    pub rss: u64,
    pub peak: u64,
    pub anon: u64,
    pub file: u64,
}

/// Reads [`Mem`] of a running process.
pub fn memory(pid: u32) -> Result<Mem, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or(format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Mem {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}

/// The last write (put) to `key` of the leases bucket received before `before`.
pub fn last_lease_put<'a>(
    w: &'a World,
    bucket: &str,
    key: &str,
    before: Instant,
) -> Option<&'a KvSeen> {
    w.kv.iter().rev().find(|e| {
        e.bucket == bucket
            && e.key == key
            && e.op == async_nats::jetstream::kv::Operation::Put
            && e.at < before
    })
}

/// The first removal of `key` (a delete by a worker, or the server's purge marker when it
/// expired) received after `after`.
pub fn removal_after<'a>(
    w: &'a World,
    bucket: &str,
    key: &str,
    after: Instant,
) -> Option<&'a KvSeen> {
    w.kv.iter().find(|e| {
        e.bucket == bucket
            && e.key == key
            && e.op != async_nats::jetstream::kv::Operation::Put
            && e.at > after
    })
}

/// A number in `[0, 1)` from the std hasher's random keys (no rand crate needed).
pub fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(unix_ns(SystemTime::now()) as u128);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
