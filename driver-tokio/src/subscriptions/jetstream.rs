//! JetStream mode: one durable pull consumer per manager over a work-queue stream, recreated
//! whenever the owned set changes (see the [module docs](super) for why recreated and why a
//! work queue).
//!
//! One actor task owns the consumer. Every change of the owned set bumps a version and marks
//! the actor dirty; the actor then reconciles:
//! 1. **pause**: drop the pull stream and stop the per-partition workers; each finishes (and
//!    acknowledges) the message it is handling, messages queued behind it are dropped
//!    unacknowledged (the work queue keeps them for the next consumer);
//! 2. **delete** the consumer (and any left by an earlier incarnation under the name about to
//!    be used: creating over it would edit it in place); revokes are released here;
//! 3. **create** a new one with the owned subjects as `filter_subjects` and deliver-all, and
//!    start a worker per partition; gains are live here.
//!
//! A failed step is reported and retried with backoff; a new change restarts at once.

use super::{stopped, Applied, Shared, SubscriptionError};
use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::Context;
use async_nats::jetstream::message::{AckKind, Message};
use async_nats::jetstream::stream::{ConsumerErrorKind, RetentionPolicy};
use async_nats::jetstream::ErrorCode;
use futures::future::BoxFuture;
use futures::StreamExt;
use parti_core::{PartitionId, WorkerId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// Where the consumer's name comes from.
pub(crate) enum ConsumerName {
    /// Given by the application (standalone).
    Fixed(String),
    /// `<prefix>-w<id>` for the worker's current ID (worker mode).
    Worker {
        prefix: String,
        id: Box<dyn Fn() -> Option<WorkerId> + Send + Sync>,
    },
}

impl ConsumerName {
    fn current(&self) -> Option<String> {
        match self {
            ConsumerName::Fixed(name) => Some(name.clone()),
            ConsumerName::Worker { prefix, id } => id().map(|id| format!("{prefix}-w{id}")),
        }
    }
}

/// Settings of the durable consumer.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerOptions {
    pub(crate) ack_wait: Duration,
    pub(crate) max_ack_pending: i64,
    pub(crate) inactive_threshold: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            inactive_threshold: Duration::from_secs(10),
        }
    }
}

/// The handle to the actor.
pub(crate) struct JsEngine {
    commands: mpsc::UnboundedSender<Command>,
    progress: watch::Receiver<Progress>,
    version: AtomicU64,
    actor: AbortHandle,
}

enum Command {
    Set {
        desired: BTreeMap<PartitionId, String>,
        version: u64,
    },
    Close(oneshot::Sender<()>),
}

/// How far the actor got: versions whose revokes are released / whose set is live.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    released: u64,
    live: u64,
    closed: bool,
}

impl JsEngine {
    pub(crate) fn start(
        context: Context,
        stream: String,
        name: ConsumerName,
        options: ConsumerOptions,
        shared: Arc<Shared>,
    ) -> Self {
        // Unbounded: one command per assignment change of the worker, each awaited in turn.
        let (commands, rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let actor = Actor {
            context,
            stream,
            name,
            options,
            shared,
            commands: rx,
            progress: progress_tx,
            desired: BTreeMap::new(),
            version: 0,
            dirty: false,
            existing: None,
            running: None,
            attempt: 0,
            retry_at: None,
            close: None,
        };
        let actor = tokio::spawn(actor.run()).abort_handle();
        JsEngine {
            commands,
            progress,
            version: AtomicU64::new(0),
            actor,
        }
    }

    /// Sends the new set if it `changed`; the futures wait for the actor to reach it.
    pub(crate) fn apply(&self, desired: &BTreeMap<PartitionId, String>, changed: bool) -> Applied {
        let version = if changed {
            let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = self.commands.send(Command::Set {
                desired: desired.clone(),
                version,
            });
            version
        } else {
            self.version.load(Ordering::SeqCst)
        };
        let mut released = self.progress.clone();
        let mut live = self.progress.clone();
        Applied {
            released: Box::pin(async move {
                let _ = released
                    .wait_for(|p| p.released >= version || p.closed)
                    .await;
            }),
            live: Box::pin(async move {
                let _ = live.wait_for(|p| p.live >= version || p.closed).await;
            }),
        }
    }

    /// Stops consuming, deletes the consumer, ends the actor.
    pub(crate) fn close(&self) -> BoxFuture<'static, ()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Close(tx));
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Drop for JsEngine {
    /// Without `close()`: stop at once (the consumer stays until its inactive threshold).
    fn drop(&mut self) {
        self.actor.abort();
    }
}

/// The consumer being pulled, and a worker per partition.
struct Running {
    messages: pull::Stream,
    by_subject: HashMap<String, PartitionId>,
    workers: HashMap<PartitionId, Worker>,
}

/// The task handling one partition's messages, in order.
struct Worker {
    queue: mpsc::UnboundedSender<Message>,
    stop: watch::Sender<bool>,
    task: AbortOnDrop,
}

/// A task aborted when its handle is dropped (the actor being aborted takes its workers along).
struct AbortOnDrop(JoinHandle<()>);

impl Future for AbortOnDrop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Actor {
    context: Context,
    stream: String,
    name: ConsumerName,
    options: ConsumerOptions,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    progress: watch::Sender<Progress>,
    desired: BTreeMap<PartitionId, String>,
    /// The latest version received.
    version: u64,
    /// The server-side consumer does not match `desired` (or broke): reconcile.
    dirty: bool,
    /// A consumer of ours that may exist on the server.
    existing: Option<String>,
    running: Option<Running>,
    /// Failed attempts in a row.
    attempt: u32,
    retry_at: Option<Instant>,
    close: Option<oneshot::Sender<()>>,
}

impl Actor {
    async fn run(mut self) {
        loop {
            if let Some(done) = self.close.take() {
                self.shutdown().await;
                let _ = done.send(());
                return;
            }
            if self.dirty && self.retry_at.is_none() {
                self.reconcile().await;
                continue;
            }
            let retry_at = self.retry_at;
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    // The engine is gone (and aborts this task).
                    None => return,
                },
                item = next_message(&mut self.running) => self.on_message(item),
                () = sleep_until(retry_at) => self.retry_at = None,
            }
        }
    }

    /// Takes `command` and every command already queued behind it (one reconcile for all).
    fn on_command(&mut self, command: Command) {
        let mut next = Some(command);
        while let Some(command) = next {
            match command {
                Command::Set { desired, version } => {
                    self.desired = desired;
                    self.version = version;
                    self.dirty = true;
                    self.retry_at = None;
                }
                Command::Close(done) => self.close = Some(done),
            }
            next = self.commands.try_recv().ok();
        }
    }

    fn on_message(&mut self, item: Option<Result<Message, pull::MessagesError>>) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        match item {
            Some(Ok(message)) => {
                // A subject we do not own cannot match our filters; leave it unacknowledged.
                let worker = running
                    .by_subject
                    .get(message.subject.as_str())
                    .and_then(|p| running.workers.get(p));
                if let Some(worker) = worker {
                    let _ = worker.queue.send(message);
                }
            }
            Some(Err(e)) => {
                // No responders: nobody serves the consumer's pulls, i.e. it is gone (on a
                // cluster, one created during a leader change can vanish right after its
                // creation succeeded) or has no leader yet; pulling on would wait for ever.
                let ended = matches!(
                    e.kind(),
                    MessagesErrorKind::ConsumerDeleted
                        | MessagesErrorKind::PushBasedConsumer
                        | MessagesErrorKind::RequestLimitExceeded
                        | MessagesErrorKind::NoResponders
                );
                let consumer = self.existing.clone().unwrap_or_default();
                self.report("pull", consumer, e.to_string());
                if ended {
                    self.dirty = true;
                    self.retry_at = None;
                }
            }
            None => {
                let consumer = self.existing.clone().unwrap_or_default();
                self.report("pull", consumer, "the message stream ended".into());
                self.dirty = true;
                self.retry_at = None;
            }
        }
    }

    fn report(&self, action: &'static str, consumer: String, reason: String) {
        self.shared.report(SubscriptionError::Consumer {
            stream: self.stream.clone(),
            consumer,
            action,
            attempt: self.attempt,
            reason,
        });
    }

    /// Pause, delete, create (see the module docs).
    async fn reconcile(&mut self) {
        let version = self.version;
        if let Some(running) = self.running.take() {
            self.pause(running).await;
        }
        let name = self.name.current();
        let mut stale: Vec<String> = self.existing.iter().cloned().collect();
        stale.extend(
            name.iter()
                .filter(|n| self.existing.as_ref() != Some(*n))
                .cloned(),
        );
        for consumer in stale {
            if let Err(reason) = self.delete(&consumer).await {
                self.progress
                    .send_modify(|p| p.released = p.released.max(version));
                return self.fail("delete", consumer, reason);
            }
            if self.existing.as_ref() == Some(&consumer) {
                self.existing = None;
            }
        }
        // No handler of a revoked partition runs, and our consumer no longer filters it.
        self.progress
            .send_modify(|p| p.released = p.released.max(version));
        if self.desired.is_empty() {
            return self.settled(version);
        }
        let Some(name) = name else {
            return self.fail("create", String::new(), "the worker has no ID".into());
        };
        // Whatever happens next, a consumer by this name may exist: delete it before the
        // next creation.
        self.existing = Some(name.clone());
        match self.create(&name).await {
            Ok(running) => {
                self.running = Some(running);
                self.settled(version);
            }
            Err(reason) => self.fail("create", name, reason),
        }
    }

    fn settled(&mut self, version: u64) {
        self.dirty = false;
        self.attempt = 0;
        self.retry_at = None;
        self.progress.send_modify(|p| p.live = p.live.max(version));
    }

    fn fail(&mut self, action: &'static str, consumer: String, reason: String) {
        self.attempt += 1;
        self.report(action, consumer, reason);
        self.retry_at = Some(Instant::now() + self.shared.backoff(self.attempt));
    }

    /// Stops pulling and waits for the handlers in flight (bounded by the drain timeout).
    async fn pause(&mut self, running: Running) {
        drop(running.messages);
        let mut tasks: Vec<(PartitionId, BoxFuture<'static, ()>, AbortHandle)> = Vec::new();
        for (p, worker) in running.workers {
            worker.stop.send_replace(true);
            let abort = worker.task.0.abort_handle();
            tasks.push((p, Box::pin(worker.task), abort));
        }
        self.shared.drain(tasks).await;
    }

    /// Deletes `consumer`; one that does not exist (or whose stream does not) is fine.
    async fn delete(&self, consumer: &str) -> Result<(), String> {
        match self
            .context
            .delete_consumer_from_stream(consumer, &self.stream)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                ConsumerErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND
                        || js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(())
                }
                _ => Err(e.to_string()),
            },
        }
    }

    /// Creates the consumer for `desired`, starts pulling and the workers.
    async fn create(&self, name: &str) -> Result<Running, String> {
        let stream = self
            .context
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let retention = stream.cached_info().config.retention;
        if retention != RetentionPolicy::WorkQueue {
            return Err(format!(
                "the stream has {retention:?} retention; the subscription manager needs \
                 WorkQueue (a message stays until acknowledged, one consumer per subject)"
            ));
        }
        let config = pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subjects: self.desired.values().cloned().collect(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            max_ack_pending: self.options.max_ack_pending,
            inactive_threshold: self.options.inactive_threshold,
            ..Default::default()
        };
        let consumer = match stream.create_consumer(config.clone()).await {
            Ok(consumer) => consumer,
            Err(e) if not_unique(&e) && self.delete_stale(&stream, name).await? => stream
                .create_consumer(config)
                .await
                .map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        let messages = consumer.messages().await.map_err(|e| e.to_string())?;
        let mut by_subject = HashMap::new();
        let mut workers = HashMap::new();
        for (p, subject) in &self.desired {
            by_subject.insert(subject.clone(), p.clone());
            // Bounded by the server: the consumer's max_ack_pending caps the messages
            // delivered and not yet acknowledged, so no queue holds more than that.
            let (queue, queue_rx) = mpsc::unbounded_channel();
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(run_worker(
                self.shared.clone(),
                p.clone(),
                queue_rx,
                stop_rx,
            ));
            workers.insert(
                p.clone(),
                Worker {
                    queue,
                    stop,
                    task: AbortOnDrop(task),
                },
            );
        }
        Ok(Running {
            messages,
            by_subject,
            workers,
        })
    }

    /// Worker mode, when the work queue refused our filters because another consumer filters
    /// one of our subjects: deletes every other worker's consumer (`<prefix>-w<N>`) that
    /// filters a subject we now own, and says whether it deleted any.
    ///
    /// Such a consumer is stale: the core granted us the partition, so its previous owner
    /// released it (its consumer was recreated without it) or lost its lease (it crashed, or
    /// it fenced and stopped handling). The server's inactive threshold does not remove a
    /// crashed worker's consumer while messages it pulled are unacknowledged (until their
    /// ack wait expires, over a minute by default), and meanwhile the partitions would have
    /// no consumer at all. Its unacknowledged messages stay in the work queue for ours.
    async fn delete_stale(
        &self,
        stream: &async_nats::jetstream::stream::Stream,
        ours: &str,
    ) -> Result<bool, String> {
        let ConsumerName::Worker { prefix, .. } = &self.name else {
            return Ok(false);
        };
        let subjects: HashSet<&String> = self.desired.values().collect();
        let mut stale = Vec::new();
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| format!("cannot list the consumers: {e}"))?;
            let config = &info.config;
            let filters = config
                .filter_subjects
                .iter()
                .chain(std::iter::once(&config.filter_subject));
            let overlaps = filters.into_iter().any(|f| subjects.contains(f));
            if info.name != ours && is_worker_consumer(prefix, &info.name) && overlaps {
                stale.push(info.name.clone());
            }
        }
        for consumer in &stale {
            self.delete(consumer).await?;
            tracing::warn!(
                stream = %self.stream,
                consumer = %consumer,
                "deleted a stale consumer filtering partitions this worker was granted"
            );
        }
        Ok(!stale.is_empty())
    }

    /// On close: stop, delete the consumer, tell every waiter.
    async fn shutdown(&mut self) {
        if let Some(running) = self.running.take() {
            self.pause(running).await;
        }
        if let Some(consumer) = self.existing.take() {
            if let Err(reason) = self.delete(&consumer).await {
                self.report("delete", consumer, reason);
            }
        }
        self.progress.send_modify(|p| p.closed = true);
    }
}

/// Whether the work queue refused a consumer because another one filters the same subject.
fn not_unique(e: &async_nats::jetstream::stream::ConsumerError) -> bool {
    matches!(e.kind(), ConsumerErrorKind::JetStream(js)
        if js.error_code() == ErrorCode::CONSUMER_WQ_CONSUMER_NOT_UNIQUE)
}

/// Whether `name` is a worker's consumer, `<prefix>-w<id>`.
fn is_worker_consumer(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("-w"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The next item of the pull stream (never resolves without one).
async fn next_message(
    running: &mut Option<Running>,
) -> Option<Result<Message, pull::MessagesError>> {
    match running {
        Some(running) => running.messages.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at` (for ever without one).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How many times a message's ack is tried before it is left to redelivery.
const ACK_ATTEMPTS: u32 = 5;

/// Handles one partition's messages in order; acknowledges each after its handler returned.
async fn run_worker(
    shared: Arc<Shared>,
    partition: PartitionId,
    mut queue: mpsc::UnboundedReceiver<Message>,
    mut stop: watch::Receiver<bool>,
) {
    let mut handled = RecentlyHandled::default();
    loop {
        let message = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            message = queue.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        // A redelivery of a message handled already (its ack wait expired while the handler
        // ran, or its ack was lost): acknowledge it again. A redelivery of one this worker
        // never saw (lost on the way, e.g. across a reconnect) is handled, after later ones.
        if sequence != 0 && handled.contains(sequence) {
            let _ = message.ack().await;
            continue;
        }
        let ok = shared.handle(&partition, message.message.clone()).await;
        // A panicking handler's message is terminated: redelivering it would panic again.
        let kind = if ok { AckKind::Ack } else { AckKind::Term };
        // A failed ack is retried a few times (e.g. across a stream leader election): on a
        // cluster, an unacknowledged message holds the consumer's ack floor back, and the
        // messages acknowledged after it stay in the work queue until the floor passes them;
        // deleted at a handoff, the consumer would leave them all to the next owner, handled
        // a second time.
        let mut attempt = 0;
        while let Err(e) = message.double_ack_with(kind).await {
            attempt += 1;
            shared.report(SubscriptionError::Ack {
                partition: partition.clone(),
                reason: e.to_string(),
            });
            if attempt >= ACK_ATTEMPTS {
                break;
            }
            tokio::time::sleep(shared.backoff(attempt)).await;
        }
        handled.insert(sequence);
    }
}

/// The stream sequences a partition's worker handled lately (the last [`RecentlyHandled::CAP`]):
/// a redelivery comes within an ack wait, so older ones need not be remembered (forgetting one
/// only means handling it twice, never losing it).
#[derive(Default)]
struct RecentlyHandled {
    order: std::collections::VecDeque<u64>,
    set: HashSet<u64>,
}

impl RecentlyHandled {
    const CAP: usize = 65_536;

    fn contains(&self, sequence: u64) -> bool {
        self.set.contains(&sequence)
    }

    fn insert(&mut self, sequence: u64) {
        if sequence == 0 || !self.set.insert(sequence) {
            return;
        }
        self.order.push_back(sequence);
        if self.order.len() > Self::CAP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecentlyHandled;

    /// The bug the chaos runner found: messages lost on the way to a worker were redelivered
    /// after later ones had been handled, and acknowledged unhandled as "already handled"
    /// because their sequence was below the last one handled.
    #[test]
    fn a_redelivery_below_the_last_handled_sequence_is_handled_unless_seen() {
        let mut h = RecentlyHandled::default();
        for seq in [10, 11, 14, 15] {
            h.insert(seq);
        }
        assert!(
            h.contains(11),
            "a redelivery of a handled message is skipped"
        );
        assert!(!h.contains(12), "a message never handled is handled, late");
        assert!(!h.contains(13));
    }

    #[test]
    fn only_the_latest_sequences_are_remembered() {
        let mut h = RecentlyHandled::default();
        for seq in 1..=(RecentlyHandled::CAP as u64 + 10) {
            h.insert(seq);
        }
        assert!(!h.contains(5), "forgotten: handled twice at worst");
        assert!(h.contains(RecentlyHandled::CAP as u64 + 10));
        assert_eq!(h.order.len(), RecentlyHandled::CAP);
    }
}
