//! The per-worker protocol state machine.
//!
//! One [`WorkerMachine`] per process. Its parts live in sibling modules: `identity` (ID claim, lease
//! renewal, fencing, degraded alerts), `election` (the leader lease), `apply` (following
//! committed generations) and `shutdown` are `impl WorkerMachine` blocks. The leader role is its own
//! type, [`leader::Leadership`], which exists only while leading: `leader` (its view of workers,
//! partitions and shares), `planner` (triggers, liveness, the next generation) and `publish`
//! (writing shares, committing and sealing generations) are `impl Leadership` blocks that borrow
//! what they need from the worker through [`leader::Cx`]. `handoff` is the pure
//! revoke-before-grant rule, `state` derives the public [`State`] (in one place, after every
//! step), `outbox` holds the queued actions, events and outstanding requests, and `timers` the
//! timer table.

mod apply;
mod election;
mod handoff;
mod identity;
mod leader;
mod load;
mod outbox;
mod planner;
mod publish;
mod revoking;
mod shutdown;
mod state;
mod timers;
mod triggers;

use crate::codec::{GenRecord, ShareAssembler};
use crate::strategy::{Balanced, Strategy};
use crate::{
    Action, Bucket, Config, Epoch, Error, Event, Generation, Input, Instant, KvOp, KvResult,
    PartitionId, RequestId, Rng, State, WatchId, WorkerId,
};
use leader::Leadership;
use outbox::Outbox;
use std::collections::{BTreeMap, BTreeSet};
use timers::{Timer, Timers};

/// What an outstanding KV request was for; its result is routed by this.
#[derive(Clone, Debug)]
pub(crate) enum Purpose {
    /// Listing leases to pick an ID.
    ClaimList,
    /// Creating or taking over `worker.<id>`.
    ClaimWrite { id: WorkerId, sent: Instant },
    /// Renewing our lease.
    LeaseRenew { sent: Instant },
    /// Re-reading our lease after a doubtful renewal.
    LeaseReread,
    /// Creating (or taking over) the leader lease.
    LeaderAcquire,
    /// Re-reading the leader lease after a doubtful acquire or renewal.
    LeaderReread,
    /// Renewing the leader lease.
    LeaderRenew { sent: Instant, epoch: Epoch },
    /// Writing `ctl.refresh` for the leader.
    CtlPut,
    /// Requests of the leader role (ignored if leadership changed since).
    Leading {
        epoch: Epoch,
        what: leader::LeaderReq,
    },
    /// Shutdown writes.
    Stop,
}

/// One worker's protocol state. See the crate docs for the run-loop contract.
#[derive(Debug)]
pub struct WorkerMachine {
    pub(crate) config: Config,
    pub(crate) strategy: Box<dyn Strategy>,
    state: State,
    pub(crate) rng: Rng,
    pub(crate) out: Outbox,
    pub(crate) timers: Timers,

    // identity
    /// Token of this claim of an ID: starts as `instance_token`, changes whenever the ID is
    /// lost, so shares meant for an earlier claim are never applied by a later one.
    pub(crate) session: u64,
    pub(crate) id: Option<WorkerId>,
    /// The ID this worker held last and lost: claimed again first when free, so an outage
    /// that cost every worker its lease does not shuffle IDs (and with them every share).
    pub(crate) previous_id: Option<WorkerId>,
    pub(crate) claim_attempts: u32,
    /// When the first claim write of this session was sent (a landed claim counts from then).
    pub(crate) claim_sent: Option<Instant>,
    pub(crate) lease_rev: Option<u64>,
    pub(crate) lease_ok_sent: Option<Instant>,
    /// When the newest renewal still in flight was sent.
    pub(crate) renew_in_flight: Option<Instant>,
    pub(crate) renew_again: bool,
    /// The application's last reported load per held partition ([`Input::ReportLoad`]).
    pub(crate) loads: BTreeMap<PartitionId, f32>,
    pub(crate) draining: bool,
    pub(crate) drained_told: bool,
    pub(crate) fenced: bool,
    pub(crate) connected: bool,
    pub(crate) degraded_since: Option<Instant>,
    pub(crate) alert_level: Option<usize>,

    // election
    pub(crate) leader_watch: Option<WatchId>,
    pub(crate) leader_seen: Option<election::LeaderSeen>,
    pub(crate) acquiring: bool,
    pub(crate) leading: Option<Box<Leadership>>,

    // following
    pub(crate) assign_watch: Option<WatchId>,
    pub(crate) gen_seen: Option<GenRecord>,
    /// Our share's chunks, per slot.
    pub(crate) my_share: [ShareAssembler; 2],
    pub(crate) held: BTreeSet<PartitionId>,
    pub(crate) revoking: revoking::Revoking,
    /// The generation being applied (revokes outstanding) and its phase.
    pub(crate) applying: Option<(Generation, crate::codec::Phase)>,
    pub(crate) applied: Option<Generation>,
    /// The phase of the generation applied last.
    pub(crate) applied_phase: crate::codec::Phase,

    // shutdown
    pub(crate) stopping: Option<shutdown::Stopping>,
}

impl WorkerMachine {
    /// A worker with the default [`Balanced`] strategy. It starts claiming an ID at once: drain
    /// `poll_action` right after.
    pub fn new(config: Config, now: Instant) -> Result<Self, Error> {
        Self::with_strategy(config, Box::new(Balanced::default()), now)
    }

    /// A worker with a custom placement strategy (used only while it leads).
    pub fn with_strategy(
        config: Config,
        strategy: Box<dyn Strategy>,
        now: Instant,
    ) -> Result<Self, Error> {
        config.validate()?;
        if config.instance_token == 0 {
            return Err(Error::InvalidConfig {
                field: "instance_token",
                reason: "must be set, unique per process (drivers draw it from OS randomness)"
                    .into(),
            });
        }
        let _ = now; // nothing is timed before the first answer arrives
        let mut w = WorkerMachine {
            rng: Rng::new(config.instance_token ^ 0x7061_7274_6900),
            session: config.instance_token,
            config,
            strategy,
            state: State::Init,
            out: Outbox::default(),
            timers: Timers::default(),
            id: None,
            previous_id: None,
            claim_attempts: 0,
            claim_sent: None,
            lease_rev: None,
            lease_ok_sent: None,
            renew_in_flight: None,
            renew_again: false,
            loads: BTreeMap::new(),
            draining: false,
            drained_told: false,
            fenced: false,
            connected: true,
            degraded_since: None,
            alert_level: None,
            leader_watch: None,
            leader_seen: None,
            acquiring: false,
            leading: None,
            assign_watch: None,
            gen_seen: None,
            my_share: Default::default(),
            held: BTreeSet::new(),
            revoking: revoking::Revoking::default(),
            applying: None,
            applied: None,
            applied_phase: crate::codec::Phase::Stable,
            stopping: None,
        };
        w.start_claim();
        w.update_state();
        Ok(w)
    }

    /// Feeds one input. `Err` only for inputs that make no sense now (anything but a late
    /// result after the worker stopped); protocol outcomes are events.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), Error> {
        if self.is_stopped() {
            return match input {
                Input::KvResult { .. }
                | Input::WatchEntry { .. }
                | Input::Partitions { .. }
                | Input::Unsubscribed(_)
                | Input::Connection(_) => Ok(()),
                _ => Err(Error::WrongState {
                    state: self.state,
                    input: input_name(&input),
                }),
            };
        }
        match input {
            Input::WatchEntry { watch, entry } => self.on_watch_entry(now, watch, entry),
            Input::KvResult { id, result } => {
                if let Some(purpose) = self.out.pending.remove(&id) {
                    self.on_kv_result(now, purpose, result);
                }
            }
            Input::Partitions { id, result } => {
                self.lead(now, |l, cx| l.on_partitions(cx, now, id, result));
            }
            Input::Unsubscribed(p) => self.on_unsubscribed(now, p),
            Input::RefreshPartitions => self.on_refresh(now),
            Input::Drain => self.on_drain(now),
            Input::Stop { final_stop } => self.on_stop(now, final_stop),
            Input::Connection(up) => self.on_connection(now, up),
            Input::ReportLoad(loads) => self.report_load(loads)?,
        }
        self.after_step(now);
        Ok(())
    }

    /// Lets due timers fire. Call when `now >= poll_timeout()`; a spurious call is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_stopped() {
            return;
        }
        for t in self.timers.take_due(now) {
            match t {
                Timer::Claim => self.start_claim(),
                Timer::Heartbeat => self.on_heartbeat(now),
                Timer::Fence => self.on_fence_deadline(now),
                Timer::LeaderFence => self.on_leader_fence(now),
                Timer::LeaderRenew => self.renew_leader(now),
                Timer::LeaderCheck => self.on_leader_check(),
                Timer::Revoke => self.on_revoke_deadline(now),
                Timer::Alert => self.on_alert(now),
                Timer::Planner => {
                    // The planner runs in after_step; a due time was reached.
                    if let Some(l) = self.leading.as_mut() {
                        l.dirty = true;
                    }
                }
                Timer::Source => {
                    self.lead(now, |l, cx| l.list_partitions(cx));
                }
                Timer::Refresh => self.on_refresh(now),
                Timer::Shutdown => self.on_shutdown_deadline(now),
            }
        }
        self.after_step(now);
    }

    /// The next IO to perform. Drain after every `handle_*` call.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.next_action()
    }

    /// The next event for the application. Drain after every `handle_*` call.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.next_event()
    }

    /// When `handle_timeout` wants to be called next (`None`: only inputs can wake it).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_stopped() {
            return None;
        }
        self.timers.next()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The claimed ID, once claimed (and until it is lost or the worker stops).
    pub fn worker_id(&self) -> Option<WorkerId> {
        self.id
    }

    /// Whether this worker currently leads.
    pub fn is_leader(&self) -> bool {
        self.leading.is_some()
    }

    /// The epoch of the current leadership, if this worker leads.
    pub fn epoch(&self) -> Option<Epoch> {
        self.leading.as_ref().map(|l| l.epoch)
    }

    /// The worker ID of the leader as last seen in KV.
    pub fn leader(&self) -> Option<WorkerId> {
        self.leader_seen.as_ref().map(|l| l.worker)
    }

    /// Partitions held right now: subscribed, or being unsubscribed and not yet confirmed.
    pub fn assignment(&self) -> &BTreeSet<PartitionId> {
        &self.held
    }

    /// The last committed generation this worker applied.
    pub fn applied_generation(&self) -> Option<Generation> {
        self.applied
    }

    /// True once a stop has finished: nothing more will happen.
    pub fn is_stopped(&self) -> bool {
        self.stopping.as_ref().is_some_and(|s| s.done)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The strategy used while leading.
    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    // ---- plumbing shared by the parts ----

    /// Queues a KV operation and remembers what it is for.
    pub(crate) fn send_kv(&mut self, bucket: Bucket, op: KvOp, purpose: Purpose) -> RequestId {
        self.out.send_kv(bucket, op, purpose)
    }

    /// Starts a watch and returns its ID.
    pub(crate) fn watch(&mut self, bucket: Bucket, filters: Vec<String>) -> WatchId {
        self.out.watch(bucket, filters)
    }

    /// Queues an action.
    pub(crate) fn act(&mut self, action: Action) {
        self.out.act(action);
    }

    /// Queues an event.
    pub(crate) fn emit(&mut self, event: Event) {
        self.out.emit(event);
    }

    fn on_watch_entry(&mut self, now: Instant, watch: WatchId, entry: crate::Entry) {
        if Some(watch) == self.leader_watch {
            self.on_leader_entry(now, entry);
        } else if Some(watch) == self.assign_watch {
            self.on_assign_entry(now, entry);
        } else {
            self.lead(now, |l, cx| l.on_watch_entry(cx, now, watch, entry));
        }
    }

    fn on_kv_result(&mut self, now: Instant, purpose: Purpose, result: KvResult) {
        match purpose {
            Purpose::ClaimList => self.on_claim_list(now, result),
            Purpose::ClaimWrite { id, sent } => self.on_claim_write(now, id, sent, result),
            Purpose::LeaseRenew { sent } => self.on_renew_result(now, sent, result),
            Purpose::LeaseReread => self.on_lease_reread(now, result),
            Purpose::LeaderAcquire => self.on_acquire_result(now, result),
            Purpose::LeaderReread => self.on_leader_reread(now, result),
            Purpose::LeaderRenew { sent, epoch } => self.on_leader_renew(now, sent, epoch, result),
            Purpose::CtlPut => {
                if let KvResult::TimedOut | KvResult::Failed(_) = result {
                    // An extra refresh is harmless, a lost one is not: ask again.
                    self.warn_kv("ctl.refresh", &result);
                    let retry = now + self.config.heartbeat_interval / 4;
                    self.timers.set(Timer::Refresh, retry);
                }
            }
            Purpose::Leading { epoch, what } => {
                if self.epoch() == Some(epoch) {
                    self.lead(now, |l, cx| l.on_result(cx, now, what, result));
                }
            }
            Purpose::Stop => self.on_stop_result(),
        }
    }

    /// Work that follows every step: the planner, then the state it shows.
    fn after_step(&mut self, now: Instant) {
        if self.stopping.is_none() {
            self.leader_tick(now);
        }
        self.update_state();
    }

    pub(crate) fn warn_kv(&mut self, key: &str, result: &KvResult) {
        self.out.warn_kv(key, result);
    }
}

fn input_name(input: &Input) -> &'static str {
    match input {
        Input::WatchEntry { .. } => "WatchEntry",
        Input::KvResult { .. } => "KvResult",
        Input::Partitions { .. } => "Partitions",
        Input::Unsubscribed(_) => "Unsubscribed",
        Input::RefreshPartitions => "RefreshPartitions",
        Input::Drain => "Drain",
        Input::Stop { .. } => "Stop",
        Input::Connection(_) => "Connection",
        Input::ReportLoad(_) => "ReportLoad",
    }
}
