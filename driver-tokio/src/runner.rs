//! The task that owns the core: one `select!` loop feeding it inputs and performing its actions.
//!
//! After every `handle_*` call the runner drains `poll_action` (starting IO), then
//! `poll_event` (fanning events out), then publishes a snapshot for the handles and reads
//! `poll_timeout` (the core's run-loop rule). Nothing in the loop blocks: KV operations, source
//! calls and listener callbacks are futures polled by the loop itself.

use crate::events::DriverWarning;
use crate::handle::{Command, Reply, Snapshot};
use crate::kv::KvStore;
use crate::listener::{panic_message, Subscriptions};
use crate::observe::{KvMeta, Observer};
use crate::watches::{WatchEvent, Watches};
use crate::{Error, Event, PartitionSource};
use futures::future::{BoxFuture, OptionFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use parti_core::{Action, Input, KvResult, Partition, PartitionId, RequestId};
use std::collections::{BTreeSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A KV operation in flight, tagged with the request it answers.
type KvFuture = BoxFuture<'static, (RequestId, KvMeta, KvResult)>;
/// A partition-source call in flight.
type SourceFuture = BoxFuture<'static, (RequestId, Result<Vec<Partition>, String>)>;

/// Everything a runner is made of (see [`crate::WorkerBuilder`]).
pub(crate) struct RunnerParts {
    pub(crate) core: parti_core::WorkerMachine,
    pub(crate) origin: tokio::time::Instant,
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) kv_timeout: Duration,
    pub(crate) source: Arc<dyn PartitionSource>,
    pub(crate) source_timeout: Duration,
    pub(crate) subscriptions: Box<dyn Subscriptions>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) connection: Option<mpsc::UnboundedReceiver<bool>>,
    pub(crate) subscribers: Vec<mpsc::UnboundedSender<Event>>,
    pub(crate) snapshot: watch::Sender<Snapshot>,
    pub(crate) observer: Observer,
}

/// What a batch of subscription changes does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubKind {
    /// `Action::Subscribe`: the listener's `on_assigned`.
    Subscribe,
    /// `Action::Unsubscribe`: `on_revoked`, confirmed to the core.
    Revoke,
    /// `Action::Lose`: `on_lost`, nothing to confirm.
    Lose,
}

impl SubKind {
    /// The listener callback it runs, for warnings.
    fn callback(self) -> &'static str {
        match self {
            SubKind::Subscribe => "on_assigned",
            SubKind::Revoke => "on_revoked",
            SubKind::Lose => "on_lost",
        }
    }
}

/// A batch of subscription changes waiting for its turn.
#[derive(Debug)]
struct SubOp {
    kind: SubKind,
    /// Partitions handed to the callback: changes of the subscribed set (the core may repeat an
    /// `Unsubscribe`, e.g. when it fences during a revoke; the callback sees each change once).
    call: BTreeSet<PartitionId>,
    /// Unsubscribes to confirm to the core once the batch is done.
    confirm: BTreeSet<PartitionId>,
}

/// The batch being processed: the callback's future, bounded by `revoke_timeout`.
struct SubInFlight {
    op: SubOp,
    future: BoxFuture<'static, Option<Result<(), String>>>,
}

/// What woke the loop.
enum Wake {
    Command(Option<Command>),
    Watch(WatchEvent),
    Kv(RequestId, KvMeta, KvResult),
    Source(RequestId, Result<Vec<Partition>, String>),
    SubDone(Option<Result<(), String>>),
    /// A warning of the subscription manager (`None`: it is gone).
    SubWarning(Option<DriverWarning>),
    Connection(Option<bool>),
    Timeout,
}

pub(crate) struct Runner {
    core: parti_core::WorkerMachine,
    origin: tokio::time::Instant,
    kv: Arc<dyn KvStore>,
    kv_timeout: Duration,
    source: Arc<dyn PartitionSource>,
    source_timeout: Duration,
    subscriptions: Box<dyn Subscriptions>,
    sub_queue: VecDeque<SubOp>,
    sub_current: Option<SubInFlight>,
    /// Background warnings of the subscriptions (the subscription manager's errors).
    sub_warnings: Option<mpsc::UnboundedReceiver<DriverWarning>>,
    /// A view derived from the core's actions, never decided here: the partitions the
    /// subscriptions were told to consume (queued changes included), so that a partition the
    /// core asks to release twice (a fence during a revoke) reaches the callbacks once. The
    /// core's held set is the one owner of the assignment (the snapshot and events read it);
    /// `worker_memory::the_listener_view_follows_the_core_across_a_revoke_timeout` checks
    /// that this view and the listener's do not drift from it.
    subscribed: BTreeSet<PartitionId>,
    watches: Watches,
    kv_pending: FuturesUnordered<KvFuture>,
    source_pending: FuturesUnordered<SourceFuture>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// False once every handle is gone (the worker was then asked to stop).
    commands_open: bool,
    connection: Option<mpsc::UnboundedReceiver<bool>>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    snapshot: watch::Sender<Snapshot>,
    drain_waiters: Vec<Reply>,
    stop_waiters: Vec<Reply>,
    drained: bool,
    observer: Observer,
}

impl Runner {
    pub(crate) fn new(mut p: RunnerParts) -> Self {
        let sub_warnings = p.subscriptions.warnings();
        Runner {
            sub_warnings,
            watches: Watches::new(p.kv.clone()),
            core: p.core,
            origin: p.origin,
            kv: p.kv,
            kv_timeout: p.kv_timeout,
            source: p.source,
            source_timeout: p.source_timeout,
            subscriptions: p.subscriptions,
            sub_queue: VecDeque::new(),
            sub_current: None,
            subscribed: BTreeSet::new(),
            kv_pending: FuturesUnordered::new(),
            source_pending: FuturesUnordered::new(),
            commands: p.commands,
            commands_open: true,
            connection: p.connection,
            subscribers: p.subscribers,
            snapshot: p.snapshot,
            drain_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            drained: false,
            observer: p.observer,
        }
    }

    /// The core's clock: time since the runner's origin.
    fn now(&self) -> parti_core::Instant {
        parti_core::Instant::from_origin(self.origin.elapsed())
    }

    /// Runs until the core has stopped.
    pub(crate) async fn run(mut self) {
        let sleep = tokio::time::sleep_until(self.origin);
        tokio::pin!(sleep);
        loop {
            // The core produced actions at construction and after the previous step.
            self.after_step();
            if self.core.is_stopped() {
                break;
            }
            let deadline = self.core.poll_timeout();
            if let Some(d) = deadline {
                sleep.as_mut().reset(self.origin + d.since_origin());
            }
            let wake = tokio::select! {
                c = self.commands.recv(), if self.commands_open => Wake::Command(c),
                w = self.watches.next() => Wake::Watch(w),
                Some((id, meta, r)) = self.kv_pending.next(), if !self.kv_pending.is_empty() => {
                    Wake::Kv(id, meta, r)
                }
                Some((id, r)) = self.source_pending.next(), if !self.source_pending.is_empty() => {
                    Wake::Source(id, r)
                }
                Some(done) = OptionFuture::from(self.sub_current.as_mut().map(|s| &mut s.future)),
                    if self.sub_current.is_some() => Wake::SubDone(done),
                c = recv_opt(&mut self.connection), if self.connection.is_some() => {
                    Wake::Connection(c)
                }
                w = recv_opt(&mut self.sub_warnings), if self.sub_warnings.is_some() => {
                    Wake::SubWarning(w)
                }
                () = &mut sleep, if deadline.is_some() => Wake::Timeout,
            };
            self.on_wake(wake);
        }
        self.finish();
    }

    fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Command(Some(c)) => self.on_command(c),
            Wake::Command(None) => {
                // Every handle is gone: stop gracefully and hand off, as `stop()` does.
                self.commands_open = false;
                self.input(Input::Stop { final_stop: true });
            }
            Wake::Watch(WatchEvent::Entry(watch, entry)) => {
                self.input(Input::WatchEntry { watch, entry })
            }
            Wake::Watch(WatchEvent::Broken {
                bucket,
                reason,
                retry_in,
            }) => {
                self.publish(Event::DriverWarning(DriverWarning::WatchFailed {
                    bucket,
                    reason,
                    retry_in,
                }));
            }
            Wake::Kv(id, meta, result) => {
                self.observer.kv_done(id, meta, &result);
                self.input(Input::KvResult { id, result })
            }
            Wake::Source(id, result) => self.input(Input::Partitions { id, result }),
            Wake::SubDone(done) => self.on_sub_done(done),
            Wake::SubWarning(Some(w)) => self.publish(Event::DriverWarning(w)),
            Wake::SubWarning(None) => self.sub_warnings = None,
            Wake::Connection(Some(up)) => self.input(Input::Connection(up)),
            Wake::Connection(None) => self.connection = None,
            Wake::Timeout => {
                let now = self.now();
                self.core.handle_timeout(now);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Subscribe(tx) => self.subscribers.push(tx),
            Command::Refresh(reply) => {
                let r = self.try_input(Input::RefreshPartitions);
                let _ = reply.send(r);
            }
            Command::Load(load, reply) => {
                let r = self.try_input(Input::Load(load));
                if r.is_ok() {
                    self.observer.load(load);
                }
                let _ = reply.send(r);
            }
            Command::Pin(partition, worker, reply) => {
                let kv = self.kv.clone();
                tokio::spawn(async move {
                    let _ = reply.send(crate::pins::write(&*kv, &partition, worker).await);
                });
            }
            Command::Drain(reply) => {
                if self.drained {
                    let _ = reply.send(Ok(()));
                } else {
                    match self.try_input(Input::Drain) {
                        Ok(()) => self.drain_waiters.push(reply),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
            Command::Stop { final_stop, reply } => match self.try_input(Input::Stop { final_stop })
            {
                Ok(()) => self.stop_waiters.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
        }
    }

    /// Feeds an input from the application; the core's refusal goes back to the caller.
    fn try_input(&mut self, input: Input) -> Result<(), Error> {
        let now = self.now();
        self.core.handle_input(now, input).map_err(|e| match e {
            parti_core::Error::WrongState { .. } => Error::Stopped,
            e => Error::Invalid(e),
        })
    }

    /// Feeds an input produced by the driver itself; a refusal is a bug, reported not fatal.
    fn input(&mut self, input: Input) {
        let now = self.now();
        if let Err(e) = self.core.handle_input(now, input) {
            tracing::error!(error = %e, "core refused a driver input");
            self.publish(Event::DriverWarning(DriverWarning::InputRejected(
                e.to_string(),
            )));
        }
    }

    /// The run-loop rule: drain actions, then events. The snapshot is published before the
    /// events are sent, so whoever receives an event already sees its effect in the getters.
    fn after_step(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.perform(action);
        }
        let mut events = Vec::new();
        while let Some(event) = self.core.poll_event() {
            events.push(event);
        }
        self.start_next_sub();
        let core = &self.core;
        let observer = &mut self.observer;
        self.snapshot.send_if_modified(|s| {
            let next = Snapshot::of(core, s);
            let changed = *s != next;
            *s = next;
            if changed {
                observer.snapshot(s);
            }
            changed
        });
        let state = self.core.state();
        for event in events {
            self.observer.event(&event, state);
            self.on_core_event(event);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Kv { id, bucket, op } => {
                let bound = crate::kv::budget(self.kv_timeout, &op);
                let meta = self.observer.kv_started(id, bucket, &op, self.core.state());
                let fut = self.kv.execute(bucket, op);
                self.kv_pending.push(Box::pin(async move {
                    let result = tokio::time::timeout(bound, fut)
                        .await
                        .unwrap_or(KvResult::TimedOut);
                    (id, meta, result)
                }));
            }
            Action::Watch {
                id,
                bucket,
                filters,
            } => self.watches.add(id, bucket, filters),
            Action::Unwatch(id) => self.watches.remove(id),
            Action::ListPartitions(id) => self.list_partitions(id),
            Action::Subscribe(p) => self.queue_sub(SubKind::Subscribe, p),
            Action::Unsubscribe(p) => self.queue_sub(SubKind::Revoke, p),
            Action::Lose(p) => self.queue_sub(SubKind::Lose, p),
        }
    }

    /// Calls the source, catching its errors, panics and hangs.
    fn list_partitions(&mut self, id: RequestId) {
        let source = self.source.clone();
        let bound = self.source_timeout;
        self.source_pending.push(Box::pin(async move {
            // The call itself runs inside the guarded future, so a panic creating the
            // source's future is caught too.
            let guarded = AssertUnwindSafe(async move { source.list().await }).catch_unwind();
            let result = match tokio::time::timeout(bound, guarded).await {
                Ok(Ok(Ok(list))) => Ok(list),
                Ok(Ok(Err(e))) => Err(e.to_string()),
                Ok(Err(panic)) => Err(format!("source panicked: {}", panic_message(&*panic))),
                Err(_) => Err(format!("source timed out after {bound:?}")),
            };
            (id, result)
        }));
    }

    /// Queues a subscription change, merging it into the last queued batch of the same kind.
    fn queue_sub(&mut self, kind: SubKind, p: PartitionId) {
        let changed = if kind == SubKind::Subscribe {
            self.subscribed.insert(p.clone())
        } else {
            self.subscribed.remove(&p)
        };
        let op = match self.sub_queue.back_mut() {
            Some(op) if op.kind == kind => op,
            _ => {
                self.sub_queue.push_back(SubOp {
                    kind,
                    call: BTreeSet::new(),
                    confirm: BTreeSet::new(),
                });
                self.sub_queue.back_mut().expect("just pushed")
            }
        };
        if kind == SubKind::Revoke {
            op.confirm.insert(p.clone());
        }
        if changed {
            op.call.insert(p);
        }
    }

    /// Starts the next queued batch if none is in flight.
    fn start_next_sub(&mut self) {
        if self.sub_current.is_some() {
            return;
        }
        let Some(op) = self.sub_queue.pop_front() else {
            return;
        };
        let future: BoxFuture<'static, Option<Result<(), String>>> = if op.call.is_empty() {
            // Only repeats: nothing to tell, but confirm in order, after the batches before.
            Box::pin(std::future::ready(Some(Ok(()))))
        } else {
            let inner = match op.kind {
                SubKind::Subscribe => self.subscriptions.on_subscribe(op.call.clone()),
                SubKind::Revoke => self.subscriptions.on_unsubscribe(op.call.clone()),
                SubKind::Lose => self.subscriptions.on_lose(op.call.clone()),
            };
            let bound = self.core.config().revoke_timeout;
            Box::pin(async move { tokio::time::timeout(bound, inner).await.ok() })
        };
        self.sub_current = Some(SubInFlight { op, future });
    }

    /// A batch finished (`None`: timed out): confirm unsubscribes to the core.
    ///
    /// A callback that returned or panicked is done, and its revokes are confirmed (a panic is
    /// reported): waiting longer would change nothing. One that timed out is not: the core
    /// drops those partitions at its revoke deadline, which has passed by then.
    fn on_sub_done(&mut self, done: Option<Result<(), String>>) {
        let Some(SubInFlight { op, .. }) = self.sub_current.take() else {
            return;
        };
        let callback = op.kind.callback();
        if let Some(Err(message)) = &done {
            self.publish(Event::DriverWarning(DriverWarning::ListenerPanicked {
                callback,
                message: message.clone(),
            }));
        }
        match done {
            Some(_) => {
                for p in op.confirm {
                    self.input(Input::Unsubscribed(p));
                }
            }
            None => {
                let after = self.core.config().revoke_timeout;
                self.publish(Event::DriverWarning(DriverWarning::ListenerTimedOut {
                    callback,
                    after,
                }));
            }
        }
    }

    fn on_core_event(&mut self, event: parti_core::Event) {
        if event == parti_core::Event::Drained {
            self.drained = true;
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        self.publish(event.into());
    }

    /// Sends an event to every live subscriber.
    fn publish(&mut self, event: Event) {
        if let Event::DriverWarning(w) = &event {
            self.observer.driver_warning(w);
        }
        tracing::debug!(?event, "worker event");
        self.subscribers.retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// The core has stopped: answer the waiters; dropping the runner ends the event streams.
    fn finish(mut self) {
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
        for w in self.drain_waiters.drain(..) {
            let _ = w.send(Err(Error::Stopped));
        }
        self.snapshot.send_modify(|s| s.stopped = true);
        // Commands that raced with the stop.
        self.commands.close();
        while let Ok(c) = self.commands.try_recv() {
            match c {
                Command::Refresh(r)
                | Command::Drain(r)
                | Command::Load(_, r)
                | Command::Pin(_, _, r) => {
                    let _ = r.send(Err(Error::Stopped));
                }
                Command::Stop { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
                Command::Subscribe(_) => {}
            }
        }
    }
}

/// The next value of an optional receiver (never resolves when there is none).
async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
