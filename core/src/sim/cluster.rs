//! The cluster harness: N worker processes on a virtual clock, the [`Network`] between them and
//! the KV, the run loop, observation and the invariant checks after every step.

use super::holdings::Holdings;
use super::invariants::{Checker, IdView, ViolationKind};
use super::kv::MemKv;
use super::load::{LoadModel, LoadSpec, RoundChecker};
use super::net::{Change, Delivery, NetConfig, Network};
use super::node::{Node, NodeStatus};
use super::queue::Queue;
use super::trace::{Trace, TraceKind};
use super::{rand_between, NodeId};
use crate::codec::{self, GenRecord, LeaseValue};
use crate::{
    Action, Bucket, Config, Error, Event, Generation, HandoffMode, Input, Instant, Operation,
    Partition, PartitionId, RequestId, Rng, State, WorkerId, WorkerMachine,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Knobs of the harness (the network's are in [`NetConfig`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Delays, drops and timeouts of the simulated NATS connection.
    pub net: NetConfig,
    /// Delay before the partition source answers `ListPartitions`. Default 0.1–5 ms.
    pub source_delay: (Duration, Duration),
    /// Delay before the driver confirms an `Unsubscribe`. Default 0.1–20 ms.
    pub unsubscribe_delay: (Duration, Duration),
    /// Probability that an unsubscribe is never confirmed (exercises `revoke_timeout`). Default 0.
    pub unsubscribe_stuck_prob: f64,
    /// How long holdings must stay unchanged for [`Sim::converge`] to call the cluster settled.
    /// Default `None`: twice the template's heartbeat interval.
    pub quiet_period: Option<Duration>,
    /// Keep every worker event in [`Sim::events`]. Default true.
    pub keep_events: bool,
    /// Keep every write in the KV's history ([`MemKv::history`]). Default true.
    pub kv_history: bool,
    /// Most trace entries kept (older ones are dropped). Default 100,000.
    pub trace_limit: usize,
    /// Also trace every KV change. Default false.
    pub trace_kv: bool,
    /// Compare every worker's holdings after every step, not only after steps where it emitted
    /// something that may change them. Default false (the cheaper check also catches any
    /// change of the number of holdings).
    pub check_every_step: bool,
    /// Keep a running hash of every trace entry and every KV change, values included
    /// ([`Trace::fingerprint`]): a cheap proof that two runs were identical. Default false.
    pub fingerprint: bool,
    /// Applications report partition loads on this schedule ([`LoadSpec`]); balancing rounds
    /// are then checked against their budget and cooldown. Default none (nothing reported;
    /// rounds are checked all the same).
    pub load: Option<LoadSpec>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            net: NetConfig::default(),
            source_delay: (Duration::from_micros(100), Duration::from_millis(5)),
            unsubscribe_delay: (Duration::from_micros(100), Duration::from_millis(20)),
            unsubscribe_stuck_prob: 0.0,
            quiet_period: None,
            keep_events: true,
            kv_history: true,
            trace_limit: 100_000,
            trace_kv: false,
            check_every_step: false,
            fingerprint: false,
            load: None,
        }
    }
}

/// Counters over a whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Steps processed (events popped, faults applied).
    pub steps: u64,
    /// Partitions whose holder ID changed from one worker ID to another (a partition released
    /// and re-taken by the same ID does not count).
    pub moves: u64,
    /// Episodes in which some live worker was in [`State::Emergency`] (counted once per episode,
    /// however many workers mirror it).
    pub emergencies: u64,
    /// Transitions of any worker into [`State::Emergency`].
    pub emergency_entries: u64,
    /// WorkerMachine processes started (restarts included).
    pub starts: u64,
    /// WorkerMachine processes crashed.
    pub crashes: u64,
    /// Inputs a worker refused with an error.
    pub input_errors: u64,
    /// Balancing rounds committed ([`Event::Rebalanced`]).
    pub rounds: u64,
}

#[derive(Debug)]
enum Ev {
    Timer {
        node: NodeId,
        seq: u64,
    },
    Fault(usize),
    Partitions {
        node: NodeId,
        incarnation: u32,
        id: RequestId,
    },
    Unsubscribed {
        node: NodeId,
        incarnation: u32,
        partition: PartitionId,
    },
    CheckIds,
    /// Every running worker reports its partitions' loads.
    ReportLoads,
}

/// A simulated cluster of [`WorkerMachine`]s over a simulated NATS KV, on a virtual clock.
///
/// Deterministic: the same seed, template and calls give the same run, step for step. Drive it
/// with [`Sim::step`], [`Sim::run_for`], [`Sim::run_until`] or [`Sim::converge`]; inject faults
/// with the verbs ([`Sim::crash`], [`Sim::isolate`], ...) or [`Sim::schedule_fault`]. After
/// every step the guarantees of DESIGN §5 are checked; broken ones land in
/// [`Sim::violations`] and the [`Sim::trace`].
#[derive(Debug)]
pub struct Sim {
    pub(crate) template: Config,
    pub(crate) config: SimConfig,
    seed: u64,
    pub(crate) rng: Rng,
    pub(crate) now: Instant,
    queue: Queue<Ev>,
    pub(crate) net: Network,
    pub(crate) nodes: Vec<Node>,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) source_failing: bool,
    pub(crate) faults: Vec<super::Fault>,
    pub(crate) holdings: Holdings,
    pub(crate) checker: Checker,
    pub(crate) trace: Trace,
    pub(crate) events: Vec<(Instant, NodeId, Event)>,
    pub(crate) stats: Stats,
    tokens: BTreeSet<u64>,
    timer_seq: u64,
    /// Nodes whose holdings may have changed in the current step.
    dirty: Vec<NodeId>,
    pub(crate) ids_dirty: bool,
    /// Last time the holdings, the partition list, a worker's state or the set of running
    /// processes changed (what [`Sim::is_settled`] depends on).
    pub(crate) layout_changed_at: Instant,
    reported_violations: usize,
    actions: Vec<Action>,
    worker_events: Vec<Event>,
    deliveries: Vec<Delivery>,
    pub(crate) changes: Vec<Change>,
    conflicts: Vec<PartitionId>,
    /// The load schedule, if any.
    pub(crate) load: Option<LoadModel>,
    /// Checks of balancing rounds.
    pub(crate) rounds: RoundChecker,
    /// The last committed `gen` records, by generation.
    pub(crate) gens: BTreeMap<Generation, GenRecord>,
}

/// Consecutive timer firings at one instant after which a worker is declared spinning.
const MAX_SPINS: u32 = 10_000;

impl Sim {
    /// A cluster with no nodes yet. `template` is the configuration every worker starts from
    /// (each process gets its own `instance_token`; a restart prefers the ID it had); its
    /// `lease_ttl` is the leases bucket's `max_age`, and its `handoff` mode decides whether
    /// exclusive ownership is checked (Strict only). Errors if `template` is invalid.
    pub fn new(template: Config, config: SimConfig, seed: u64) -> Result<Sim, Error> {
        template.validate()?;
        let mut kv = MemKv::new();
        kv.set_max_age(Bucket::Leases, Some(template.lease_ttl));
        kv.set_keep_history(config.kv_history);
        let net = Network::new(config.net.clone(), kv, seed ^ 0x6E65_7477_6F72_6B00);
        let mut trace = Trace::new(config.trace_limit);
        trace.set_fingerprint(config.fingerprint);
        let load = config.load.clone().map(|spec| LoadModel::new(spec, seed));
        let rounds = RoundChecker::new(template.max_moves_per_round, template.load_cooldown);
        let mut queue = Queue::default();
        if let Some(l) = &load {
            queue.push(Instant::ZERO + l.every(), Ev::ReportLoads);
        }
        Ok(Sim {
            checker: Checker::new(template.handoff == HandoffMode::Strict),
            trace,
            template,
            config,
            seed,
            rng: Rng::new(seed),
            now: Instant::ZERO,
            queue,
            net,
            nodes: Vec::new(),
            partitions: Vec::new(),
            source_failing: false,
            faults: Vec::new(),
            holdings: Holdings::default(),
            events: Vec::new(),
            stats: Stats::default(),
            tokens: BTreeSet::new(),
            timer_seq: 0,
            dirty: Vec::new(),
            ids_dirty: false,
            layout_changed_at: Instant::ZERO,
            reported_violations: 0,
            actions: Vec::new(),
            worker_events: Vec::new(),
            deliveries: Vec::new(),
            changes: Vec::new(),
            conflicts: Vec::new(),
            load,
            rounds,
            gens: BTreeMap::new(),
        })
    }

    /// Adds a node and starts a worker on it now, from the template.
    pub fn add_node(&mut self) -> NodeId {
        self.add_node_with(|_| {})
            .expect("the template was validated")
    }

    /// Adds a node whose configuration is the template changed by `edit` (capacity, a
    /// preferred ID, ...), and starts a worker on it now. Errors if the result is invalid.
    pub fn add_node_with(&mut self, edit: impl FnOnce(&mut Config)) -> Result<NodeId, Error> {
        let mut base = self.template.clone();
        edit(&mut base);
        base.validate()?;
        let n = NodeId(self.nodes.len());
        self.nodes.push(Node::new(base));
        self.spawn(n);
        self.finish_step();
        Ok(n)
    }

    /// Starts a new worker process on node `n` (which must not be running).
    pub(crate) fn spawn(&mut self, n: NodeId) {
        let token = loop {
            let t = self.rng.next_u64();
            if t != 0 && self.tokens.insert(t) {
                break t;
            }
        };
        let now = self.now;
        let node = &mut self.nodes[n.0];
        debug_assert_ne!(node.status, NodeStatus::Running);
        node.incarnation += 1;
        node.token = token;
        let mut config = node.base.clone();
        config.instance_token = token;
        config.preferred_id = node.last_id.or(config.preferred_id);
        let preferred = config.preferred_id;
        let worker =
            WorkerMachine::new(config, node.clock.local(now)).expect("node configs are validated");
        node.worker = Some(worker);
        node.status = NodeStatus::Running;
        node.applied = None;
        node.state = State::Init;
        node.timer = None;
        node.spins = 0;
        node.spin_reported = false;
        node.subscribed.clear();
        node.sessions.clear();
        node.sessions.insert(token);
        let incarnation = node.incarnation;
        self.net.attach(now, n, incarnation);
        self.layout_changed_at = now;
        self.stats.starts += 1;
        self.trace.push(
            now,
            Some(n),
            TraceKind::Started {
                incarnation,
                token,
                preferred,
            },
        );
        self.after_handle(n, true);
    }

    /// Ends the process on node `n` as `status` (Crashed or Stopped): its holdings vanish,
    /// everything on its way to it is discarded.
    pub(crate) fn end_process(&mut self, n: NodeId, status: NodeStatus) {
        let node = &mut self.nodes[n.0];
        if node.status != NodeStatus::Running {
            return;
        }
        if let Some(id) = node.worker.as_ref().and_then(WorkerMachine::worker_id) {
            node.last_id = Some(id);
        }
        node.status = status;
        node.timer = None;
        node.subscribed.clear();
        if status == NodeStatus::Crashed {
            node.worker = None;
            self.stats.crashes += 1;
        }
        self.net.detach(n);
        self.mark_dirty(n);
        self.ids_dirty = true;
        self.layout_changed_at = self.now;
        let what = if status == NodeStatus::Crashed {
            TraceKind::Crashed
        } else {
            TraceKind::Exited
        };
        self.trace.push(self.now, Some(n), what);
    }

    // ----- driving -----

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The time of the next event, if any.
    pub fn next_event_at(&self) -> Option<Instant> {
        match (self.queue.peek_time(), self.net.next_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the next event (advancing the clock to it) and checks the invariants. Returns
    /// false if nothing is left to do.
    pub fn step(&mut self) -> bool {
        let own = self.queue.peek_time();
        let net = self.net.next_at();
        let use_own = match (own, net) {
            (None, None) => return false,
            (Some(a), Some(b)) => a <= b,
            (a, _) => a.is_some(),
        };
        if use_own {
            let (at, ev) = self.queue.pop().expect("peeked");
            self.now = self.now.max(at);
            self.handle_event(ev);
        } else {
            let mut deliveries = std::mem::take(&mut self.deliveries);
            let mut changes = std::mem::take(&mut self.changes);
            let at = self
                .net
                .step(&mut deliveries, &mut changes)
                .expect("peeked");
            self.now = self.now.max(at);
            for c in changes.drain(..) {
                self.on_kv_change(&c);
            }
            for d in deliveries.drain(..) {
                if self
                    .nodes
                    .get(d.node.0)
                    .is_some_and(|n| n.incarnation == d.incarnation)
                {
                    self.deliver(d.node, d.input);
                }
            }
            self.deliveries = deliveries;
            self.changes = changes;
        }
        self.stats.steps += 1;
        self.finish_step();
        true
    }

    /// Runs every event up to and including `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.next_event_at().is_some_and(|at| at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `pred` holds (checked now and after every step) or `bound` passes. Returns the
    /// time it first held, or `None` (the clock then stands at the deadline).
    pub fn run_until_true(
        &mut self,
        bound: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Instant> {
        let deadline = self.now + bound;
        loop {
            if pred(self) {
                return Some(self.now);
            }
            if self.next_event_at().is_none_or(|at| at > deadline) {
                self.now = self.now.max(deadline);
                return None;
            }
            self.step();
        }
    }

    // ----- the run loop -----

    fn handle_event(&mut self, ev: Ev) {
        match ev {
            Ev::Timer { node, seq } => {
                let n = &mut self.nodes[node.0];
                if n.status != NodeStatus::Running || n.timer.map(|t| t.1) != Some(seq) {
                    return;
                }
                n.timer = None;
                let local = n.clock.local(self.now);
                n.worker.as_mut().expect("running").handle_timeout(local);
                self.after_handle(node, false);
                self.check_spin(node);
            }
            Ev::Fault(i) => {
                let fault = self.faults[i].clone();
                self.apply_fault(&fault);
            }
            Ev::Partitions {
                node,
                incarnation,
                id,
            } => {
                if self.is_current(node, incarnation) {
                    let result = if self.source_failing {
                        Err("partition source unavailable".to_owned())
                    } else {
                        Ok(self.partitions.clone())
                    };
                    self.deliver(node, Input::Partitions { id, result });
                }
            }
            Ev::Unsubscribed {
                node,
                incarnation,
                partition,
            } => {
                if self.is_current(node, incarnation) {
                    self.deliver(node, Input::Unsubscribed(partition));
                }
            }
            Ev::CheckIds => self.ids_dirty = true,
            Ev::ReportLoads => {
                let every = self.report_loads();
                self.queue.push(self.now + every, Ev::ReportLoads);
            }
        }
    }

    fn check_spin(&mut self, n: NodeId) {
        let now = self.now;
        let node = &mut self.nodes[n.0];
        match node.timer {
            Some((at, _)) if at <= now => node.spins += 1,
            _ => node.spins = 0,
        }
        let limit = if node.spin_reported { 100 } else { MAX_SPINS };
        if node.spins >= limit {
            if !node.spin_reported {
                node.spin_reported = true;
                let local = node.clock.local(now);
                let asked = node.running().and_then(WorkerMachine::poll_timeout);
                let details = format!(
                    "node {} asked for a timer due at or before now {MAX_SPINS} times in a row (local now {local}, \
                     poll_timeout {asked:?}, state {}); further spins of this process are delayed by 1 ms silently",
                    n.0, node.state
                );
                self.checker.record(now, ViolationKind::TimerSpin, details);
            }
            let seq = self.next_timer_seq();
            let at = now + Duration::from_millis(1);
            self.nodes[n.0].timer = Some((at, seq));
            self.nodes[n.0].spins = 0;
            self.queue.push(at, Ev::Timer { node: n, seq });
        }
    }

    fn is_current(&self, n: NodeId, incarnation: u32) -> bool {
        let node = &self.nodes[n.0];
        node.status == NodeStatus::Running && node.incarnation == incarnation
    }

    /// Feeds `input` to the running worker on `n` and runs the run-loop rule.
    pub(crate) fn deliver(&mut self, n: NodeId, input: Input) {
        let node = &mut self.nodes[n.0];
        if node.status != NodeStatus::Running {
            return;
        }
        let local = node.clock.local(self.now);
        let unsubscribed = matches!(input, Input::Unsubscribed(_));
        let worker = node.worker.as_mut().expect("running");
        if let Err(e) = worker.handle_input(local, input) {
            self.stats.input_errors += 1;
            self.trace
                .push(self.now, Some(n), TraceKind::InputRefused(e.to_string()));
        }
        self.after_handle(n, unsubscribed);
    }

    /// The run-loop rule after a `handle_*`: drain actions, then events, then read the timeout.
    pub(crate) fn after_handle(&mut self, n: NodeId, mut dirty: bool) {
        let mut actions = std::mem::take(&mut self.actions);
        let mut events = std::mem::take(&mut self.worker_events);
        {
            let worker = self.nodes[n.0]
                .worker
                .as_mut()
                .expect("handled by a worker");
            while let Some(a) = worker.poll_action() {
                actions.push(a);
            }
            while let Some(e) = worker.poll_event() {
                events.push(e);
            }
        }
        let incarnation = self.nodes[n.0].incarnation;
        for action in actions.drain(..) {
            match action {
                Action::ListPartitions(id) => {
                    let at = self.now + rand_between(&mut self.rng, self.config.source_delay);
                    self.queue.push(
                        at,
                        Ev::Partitions {
                            node: n,
                            incarnation,
                            id,
                        },
                    );
                }
                Action::Subscribe(p) => {
                    self.nodes[n.0].subscribed.insert(p);
                    dirty = true;
                }
                Action::Lose(p) => {
                    self.nodes[n.0].subscribed.remove(&p);
                    dirty = true;
                }
                Action::Unsubscribe(p) => {
                    self.nodes[n.0].subscribed.remove(&p);
                    dirty = true;
                    if !self.rng.chance(self.config.unsubscribe_stuck_prob) {
                        let at =
                            self.now + rand_between(&mut self.rng, self.config.unsubscribe_delay);
                        self.queue.push(
                            at,
                            Ev::Unsubscribed {
                                node: n,
                                incarnation,
                                partition: p,
                            },
                        );
                    }
                }
                other => {
                    self.net.send(self.now, n, other);
                }
            }
        }
        for e in events.drain(..) {
            dirty |= self.on_worker_event(n, e);
        }
        self.actions = actions;
        self.worker_events = events;
        self.schedule_timer(n);
        let node = &self.nodes[n.0];
        let worker = node.worker.as_ref().expect("handled by a worker");
        let resized = worker.assignment().len() != node.held.len();
        let stopped = worker.is_stopped();
        if dirty || self.config.check_every_step || resized {
            self.mark_dirty(n);
        }
        if stopped {
            self.end_process(n, NodeStatus::Stopped);
        }
    }

    /// Schedules the worker's next timeout, converted from its local clock to real time.
    pub(crate) fn schedule_timer(&mut self, n: NodeId) {
        let now = self.now;
        let node = &self.nodes[n.0];
        let Some(local) = node.running().and_then(WorkerMachine::poll_timeout) else {
            self.nodes[n.0].timer = None;
            return;
        };
        let at = node.clock.real(local, now);
        if node.timer.is_some_and(|(t, _)| t == at) {
            return;
        }
        let seq = self.next_timer_seq();
        self.nodes[n.0].timer = Some((at, seq));
        self.queue.push(at, Ev::Timer { node: n, seq });
    }

    fn next_timer_seq(&mut self) -> u64 {
        self.timer_seq += 1;
        self.timer_seq
    }

    /// Observes one worker event; returns whether holdings may have changed.
    fn on_worker_event(&mut self, n: NodeId, e: Event) -> bool {
        let now = self.now;
        let mut dirty = false;
        match &e {
            Event::StateChanged { from, to } => {
                if *to == State::Emergency && self.nodes[n.0].state != State::Emergency {
                    self.stats.emergency_entries += 1;
                    let others = self.nodes.iter().enumerate().any(|(i, x)| {
                        i != n.0 && x.status == NodeStatus::Running && x.state == State::Emergency
                    });
                    if !others {
                        self.stats.emergencies += 1;
                    }
                }
                self.nodes[n.0].state = *to;
                self.layout_changed_at = now;
                self.ids_dirty = true;
                dirty = true;
                self.trace.push(
                    now,
                    Some(n),
                    TraceKind::State {
                        from: *from,
                        to: *to,
                    },
                );
            }
            Event::IdClaimed(id) => {
                self.nodes[n.0].last_id = Some(*id);
                self.ids_dirty = true;
                self.trace.push(now, Some(n), TraceKind::IdClaimed(*id));
            }
            Event::AssignmentChanged {
                generation,
                assigned: added,
                revoked,
                lost,
                assignment: assigned,
            } => {
                let node = &mut self.nodes[n.0];
                let id = node.worker.as_ref().and_then(WorkerMachine::worker_id);
                let prev = node.applied;
                node.applied = prev.max(Some(*generation));
                self.checker.on_applied(
                    now,
                    n,
                    id,
                    &node.sessions,
                    prev,
                    *generation,
                    added,
                    assigned,
                );
                dirty = true;
                let what = TraceKind::Assignment {
                    generation: *generation,
                    added: added.len(),
                    removed: revoked.len() + lost.len(),
                    assigned: assigned.len(),
                };
                self.trace.push(now, Some(n), what);
            }
            Event::LeadershipChanged { is_leader, epoch } => {
                let what = TraceKind::Leadership {
                    is_leader: *is_leader,
                    epoch: *epoch,
                };
                self.trace.push(now, Some(n), what);
            }
            Event::Drained => self.trace.push(now, Some(n), TraceKind::Drained),
            Event::Warning(w) => {
                dirty = true;
                self.trace.push(now, Some(n), TraceKind::Warning(w.clone()));
            }
            Event::Alert { .. } => {}
            Event::Rebalanced {
                generation, moved, ..
            } => {
                self.trace.push(
                    now,
                    Some(n),
                    TraceKind::Rebalanced {
                        generation: *generation,
                        moved: *moved,
                    },
                );
                self.stats.rounds += 1;
                self.check_round(*generation);
            }
        }
        if self.config.keep_events {
            self.events.push((now, n, e));
        }
        dirty
    }

    pub(crate) fn on_kv_change(&mut self, change: &Change) {
        let e = &change.entry;
        if let (Some((n, incarnation)), Bucket::Leases, Operation::Put) =
            (change.by, e.bucket, e.operation)
        {
            // Learn the session tokens a process claims IDs under (they change when it loses one).
            let node = &mut self.nodes[n.0];
            if node.incarnation == incarnation && e.key.starts_with("worker.") {
                if let Ok(lease) = codec::decode::<LeaseValue>("lease", &e.value) {
                    node.sessions.insert(lease.token);
                }
            }
        }
        if e.bucket == Bucket::Assign && e.key == "gen" && e.operation == Operation::Put {
            if let Ok(rec) = codec::decode::<GenRecord>("gen", &e.value) {
                // Rounds are checked against the generation before theirs: keep a few.
                self.gens.insert(rec.generation, rec);
                while self.gens.len() > 4 {
                    self.gens.pop_first();
                }
            }
        }
        if let Some((generation, epoch, members)) = self.checker.on_change(self.now, e) {
            let what = TraceKind::Commit {
                generation,
                epoch,
                revision: e.revision,
                members,
            };
            self.trace.push(self.now, None, what);
        }
        if self.config.trace_kv {
            let what = TraceKind::Kv {
                bucket: e.bucket,
                key: e.key.clone(),
                revision: e.revision,
                operation: e.operation,
            };
            self.trace.push(self.now, change.by.map(|b| b.0), what);
        }
        if self.trace.fingerprinting() {
            let parts = (
                change.by,
                e.bucket,
                &e.key,
                e.revision,
                e.operation,
                &e.value,
            );
            self.trace.absorb(&parts);
        }
    }

    pub(crate) fn mark_dirty(&mut self, n: NodeId) {
        if !self.dirty.contains(&n) {
            self.dirty.push(n);
        }
    }

    /// Brings holdings up to date and checks the invariants touched by this step.
    pub(crate) fn finish_step(&mut self) {
        let empty = BTreeSet::new();
        let mut conflicts = std::mem::take(&mut self.conflicts);
        for n in std::mem::take(&mut self.dirty) {
            let node = &mut self.nodes[n.0];
            let (new, id) = match node.status {
                NodeStatus::Running => {
                    let w = node.worker.as_ref().expect("running");
                    (w.assignment(), w.worker_id().or(node.last_id))
                }
                _ => (&empty, node.last_id),
            };
            let was_empty = node.held.is_empty();
            if self
                .holdings
                .update(n, id, &mut node.held, new, &mut conflicts)
            {
                self.ids_dirty |= was_empty != node.held.is_empty();
                self.layout_changed_at = self.now;
            }
        }
        self.stats.moves = self.holdings.moves;
        if !conflicts.is_empty() {
            let nodes = &self.nodes;
            let holdings = &self.holdings;
            self.checker.on_conflicts(self.now, &conflicts, |p| {
                let names: Vec<String> = holdings
                    .holders(p)
                    .iter()
                    .map(|h| {
                        let node = &nodes[h.0];
                        let id = node.worker.as_ref().and_then(WorkerMachine::worker_id);
                        format!(
                            "node {} (worker {:?}, {})",
                            h.0,
                            id.map(|i| i.0),
                            node.state
                        )
                    })
                    .collect();
                names.join(" and ")
            });
            conflicts.clear();
        }
        self.conflicts = conflicts;
        if std::mem::take(&mut self.ids_dirty) {
            self.check_ids();
        }
        self.report_violations();
    }

    fn check_ids(&mut self) {
        let views: Vec<IdView> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, node)| {
                let w = node.running()?;
                Some(IdView {
                    node: NodeId(i),
                    id: w.worker_id()?,
                    state: node.state,
                    token: node.token,
                    holds: !node.held.is_empty(),
                    connected: self.net.is_connected(NodeId(i)),
                })
            })
            .collect();
        if views.len() < 2 {
            self.checker
                .check_ids(self.now, &views, |_| None, Duration::MAX);
            return;
        }
        let grace = self.template.lease_ttl
            + self.template.heartbeat_interval
            + self.config.net.client_timeout;
        let kv = self.net.kv();
        let lease = |id: WorkerId| kv.get(Bucket::Leases, &format!("worker.{id}")).cloned();
        if let Some(at) = self.checker.check_ids(self.now, &views, lease, grace) {
            self.queue.push(at, Ev::CheckIds);
        }
    }

    pub(crate) fn report_violations(&mut self) {
        while self.reported_violations < self.checker.violations.len() {
            let v = &self.checker.violations[self.reported_violations];
            self.trace.push(v.at, None, TraceKind::Violation(v.kind));
            self.reported_violations += 1;
        }
    }

    /// Schedules `fault` at `at` (at least now); it is traced when applied.
    pub fn schedule_fault(&mut self, at: Instant, fault: super::Fault) {
        self.faults.push(fault);
        self.queue
            .push(at.max(self.now), Ev::Fault(self.faults.len() - 1));
    }
}
