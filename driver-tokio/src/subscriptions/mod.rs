//! The subscription manager: turns "this worker owns these partitions" into NATS consumption
//! (DESIGN §7).
//!
//! A [`SubjectTemplate`] maps a partition to a subject (`work.{keys}`); the application gives
//! one async [`MessageHandler`], called with the partition and the message. Two modes:
//!
//! - **Core NATS** ([`SubscriptionManager::core_nats`], [`crate::WorkerBuilder::subscribe`]):
//!   one subscription per owned partition. A revoked partition is unsubscribed, the messages
//!   already received for it are handled (drained), and its in-flight handler call returns
//!   before the revoke completes. A partition *lost* (the worker fenced itself or lost its ID)
//!   may already be another worker's: its in-flight call returns, and the messages received
//!   but not handled are dropped. Core NATS is at-most-once: a message published while nobody
//!   is subscribed (between a revoke and the next grant) is lost.
//! - **JetStream** ([`SubscriptionManager::builder`]`.jetstream(..)`,
//!   [`crate::WorkerBuilder::consume`]): one durable pull consumer per worker whose
//!   `filter_subjects` are the subjects of every owned partition. The stream must use
//!   **work-queue retention**: a message stays in the stream until it is acknowledged, and no
//!   two consumers may filter the same subject, so a partition's backlog waits for its next
//!   owner and two owners can never pull it at once. Whenever the owned set changes, the
//!   consumer is stopped (in-flight handlers return and are acknowledged, messages pulled but
//!   not started are left unacknowledged), **deleted and recreated** with the new filters and
//!   deliver-all. It is never filter-edited in place: an edited consumer keeps its position,
//!   so it would skip a gained partition's messages that lie behind it; a new one starts from
//!   the oldest message still in the stream, which in a work queue is exactly the oldest one
//!   nobody handled. Each message is handled once per partition, in stream order (a message
//!   lost on its way to the worker, e.g. across a reconnect, is redelivered by the server
//!   after its ack wait and handled then, after later ones), and
//!   acknowledged (with a confirmed ack) after its handler returns; a panicking handler's
//!   message is terminated (not redelivered).
//!
//! Handlers of one partition run one at a time, in order; different partitions run
//! concurrently. A handler panic is caught, reported, and never stops the partition.
//!
//! ## Standalone and in a worker
//!
//! Standalone (the seed's helper): [`SubscriptionManager::update`] takes the full set of
//! owned partitions, diffs it against the previous one, stops the revoked partitions, starts
//! the gained ones, and returns once the revoked ones are released and the gained ones are
//! live. [`SubscriptionManager::close`] stops everything and returns **every** error the
//! manager hit, joined ([`JoinedError`]).
//!
//! In a worker ([`crate::WorkerBuilder::subscribe`] / [`crate::WorkerBuilder::consume`]) the
//! runner feeds the manager the core's `Subscribe` / `Unsubscribe` actions. A revoke is
//! confirmed to the core only once the revoked partitions' subscriptions are gone and their
//! handler calls have returned, so in Strict mode no two workers handle a partition's
//! messages at once. A gain does not hold the runner up: subscribing (and retrying) goes on in
//! the background. Errors become [`crate::DriverWarning::Subscription`] events. The JetStream
//! consumer is named `<bucket_prefix>-w<worker id>` and is deleted when the worker's share
//! becomes empty, i.e. on stop.
//!
//! ```no_run
//! use parti::kv::NatsKv;
//! use parti::{MessageHandler, Partition, SubjectTemplate, SubscriptionManager, Worker};
//!
//! # type Error = Box<dyn std::error::Error>;
//! # async fn run(kv: NatsKv, partitions: Vec<Partition>) -> Result<(), Error> {
//! let handler = MessageHandler::new(|partition, message| async move {
//!     println!("{partition}: {:?}", message.payload);
//! });
//! let template = SubjectTemplate::parse("work.{keys}")?;
//!
//! // Standalone: subscribes work.eu.orders and work.us.orders, then drains and
//! // unsubscribes work.eu.orders.
//! let client = kv.client().clone();
//! let manager = SubscriptionManager::core_nats(client, template.clone(), handler.clone());
//! manager.update([["eu", "orders"], ["us", "orders"]]).await?;
//! manager.update([["us", "orders"]]).await?;
//! manager.close().await?;
//!
//! // In a worker, over the JetStream stream `WORK` (work-queue retention).
//! let worker = Worker::builder()
//!     .nats(kv.clone())
//!     .partitions(partitions)
//!     .consume(kv.jetstream().clone(), "WORK", template, handler)
//!     .start()
//!     .await?;
//! worker.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Failures
//!
//! Transient failures (a subscribe, creating the consumer: e.g. the stream does not exist yet,
//! or the previous owner's consumer still filters the subject) are retried with exponential
//! backoff (50 ms doubling up to 2 s by default) until they succeed or the partition is
//! revoked. Every failure is reported when it happens and kept for `close()`. In a worker, a
//! consumer of another worker (`<prefix>-w<N>`) that still filters a partition this worker was
//! granted is stale (its owner crashed, or fenced and stopped): when the work queue refuses
//! our consumer because of it, it is deleted and ours created at once. (The server's inactive
//! threshold alone would keep a crashed worker's consumer while messages it pulled are
//! unacknowledged, i.e. for about two ack waits.) A handler that
//! does not return within the drain timeout of a revoke is cancelled (and reported).

mod core_nats;
mod error;
mod jetstream;
mod template;
mod worker;

pub use error::{JoinedError, SubscriptionError};
pub use template::SubjectTemplate;
pub(crate) use worker::{plug, SubscriptionSpec};

use crate::events::DriverWarning;
use crate::listener::panic_message;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use parti_core::{Partition, PartitionId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

/// The application's message handler: called with the partition a message belongs to and the
/// message. Cheap to clone.
///
/// Calls for one partition are sequential (the next message waits for the previous call);
/// calls for different partitions run concurrently. In JetStream mode the message is
/// acknowledged when the call returns. A panic is caught and reported as
/// [`SubscriptionError::HandlerPanicked`].
#[derive(Clone)]
pub struct MessageHandler(
    Arc<dyn Fn(PartitionId, async_nats::Message) -> BoxFuture<'static, ()> + Send + Sync>,
);

impl MessageHandler {
    /// A handler from an async closure: `MessageHandler::new(|partition, message| async move
    /// { ... })`.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(PartitionId, async_nats::Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        MessageHandler(Arc::new(move |p, m| Box::pin(handler(p, m))))
    }
}

impl From<Arc<dyn Fn(PartitionId, async_nats::Message) -> BoxFuture<'static, ()> + Send + Sync>>
    for MessageHandler
{
    fn from(
        f: Arc<dyn Fn(PartitionId, async_nats::Message) -> BoxFuture<'static, ()> + Send + Sync>,
    ) -> Self {
        MessageHandler(f)
    }
}

impl fmt::Debug for MessageHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageHandler")
    }
}

/// Anything that names a partition, for [`SubscriptionManager::update`]: a [`PartitionId`], a
/// [`Partition`], or a key list (`["eu", "orders"]`, `vec!["a"]`), validated on the way in.
pub trait PartitionRef {
    /// The partition's ID; an empty key list is [`SubscriptionError::EmptyKeys`], a bad key
    /// [`SubscriptionError::InvalidPartition`].
    fn partition_id(&self) -> Result<PartitionId, SubscriptionError>;
}

impl PartitionRef for PartitionId {
    fn partition_id(&self) -> Result<PartitionId, SubscriptionError> {
        Ok(self.clone())
    }
}

impl PartitionRef for Partition {
    fn partition_id(&self) -> Result<PartitionId, SubscriptionError> {
        Ok(self.id().clone())
    }
}

impl<T: PartitionRef + ?Sized> PartitionRef for &T {
    fn partition_id(&self) -> Result<PartitionId, SubscriptionError> {
        (**self).partition_id()
    }
}

impl<S: AsRef<str>> PartitionRef for [S] {
    fn partition_id(&self) -> Result<PartitionId, SubscriptionError> {
        partition_of_keys(self)
    }
}

impl<S: AsRef<str>> PartitionRef for Vec<S> {
    fn partition_id(&self) -> Result<PartitionId, SubscriptionError> {
        partition_of_keys(self)
    }
}

impl<S: AsRef<str>, const N: usize> PartitionRef for [S; N] {
    fn partition_id(&self) -> Result<PartitionId, SubscriptionError> {
        partition_of_keys(self)
    }
}

/// The ID of the partition made of `keys`, validated.
pub(crate) fn partition_of_keys<K: AsRef<str>>(
    keys: &[K],
) -> Result<PartitionId, SubscriptionError> {
    if keys.is_empty() {
        return Err(SubscriptionError::EmptyKeys);
    }
    Partition::new(keys, Partition::DEFAULT_WEIGHT)
        .map(|p| p.id().clone())
        .map_err(SubscriptionError::InvalidPartition)
}

/// Subscribes a set of partitions to NATS and calls one handler for their messages (see the
/// [module docs](self)). Cheap to clone; every clone drives the same subscriptions. Dropping
/// the last clone without [`SubscriptionManager::close`] cancels everything at once (no drain,
/// no consumer deletion), as a crash would.
#[derive(Clone)]
pub struct SubscriptionManager {
    inner: Arc<Inner>,
}

impl SubscriptionManager {
    /// Options first: backoff, drain timeout, an error callback, JetStream consumer settings.
    pub fn builder(
        template: SubjectTemplate,
        handler: MessageHandler,
    ) -> SubscriptionManagerBuilder {
        SubscriptionManagerBuilder {
            template,
            handler,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(30),
            on_error: None,
            warnings: None,
            consumer: jetstream::ConsumerOptions::default(),
        }
    }

    /// A core NATS manager with default options (one subscription per partition).
    pub fn core_nats(
        client: async_nats::Client,
        template: SubjectTemplate,
        handler: MessageHandler,
    ) -> Self {
        Self::builder(template, handler).core_nats(client)
    }

    /// The template partitions are mapped with.
    pub fn template(&self) -> &SubjectTemplate {
        &self.inner.template
    }

    /// The partitions asked for by the last update (live, or still being subscribed).
    pub fn partitions(&self) -> BTreeSet<PartitionId> {
        self.inner.state().desired.keys().cloned().collect()
    }

    /// True once [`SubscriptionManager::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.state().closed
    }

    /// Makes `assigned` the set of consumed partitions: stops the ones not in it, starts the
    /// new ones, and returns once the stopped ones are released (unsubscribed, their handlers
    /// returned) and the new ones are live (subscribed; in JetStream mode, the consumer is
    /// recreated). Transient failures are retried until they succeed, so this waits for them
    /// (bound it with [`SubscriptionManager::update_until`]).
    ///
    /// Errors, with nothing changed: [`SubscriptionError::Closed`] after `close()`;
    /// `EmptyKeys`, `InvalidPartition`, `DuplicatePartition`, `MissingKey` (the template
    /// needs a key the partition lacks) and `SubjectConflict` for bad input.
    pub async fn update<I>(&self, assigned: I) -> Result<(), SubscriptionError>
    where
        I: IntoIterator,
        I::Item: PartitionRef,
    {
        self.update_until(assigned, std::future::pending()).await
    }

    /// [`SubscriptionManager::update`], giving up with [`SubscriptionError::Cancelled`] when
    /// `cancel` resolves first (a deadline, a shutdown signal, a cancellation token's
    /// `cancelled()`), or when the manager is closed meanwhile. If `cancel` has already
    /// resolved, nothing changes. Otherwise the changes already handed over still complete in
    /// the background; the next update starts from the set asked for here.
    pub async fn update_until<I, C>(&self, assigned: I, cancel: C) -> Result<(), SubscriptionError>
    where
        I: IntoIterator,
        I::Item: PartitionRef,
        C: Future<Output = ()>,
    {
        let mut cancel = std::pin::pin!(cancel);
        if self.is_closed() {
            return Err(SubscriptionError::Closed);
        }
        if cancel.as_mut().now_or_never().is_some() {
            return Err(SubscriptionError::Cancelled);
        }
        let wanted = self.inner.validate(assigned)?;
        let mut closed = self.inner.closed.subscribe();
        let applied = self.inner.apply_set(wanted)?;
        tokio::select! {
            () = applied.wait() => Ok(()),
            () = cancel => Err(SubscriptionError::Cancelled),
            _ = closed.wait_for(|c| *c) => Err(SubscriptionError::Cancelled),
        }
    }

    /// Stops every partition (draining as a revoke does), deletes the JetStream consumer, and
    /// returns every error the manager hit since it was created, joined; `Ok` if there was
    /// none. Updates waiting meanwhile fail with [`SubscriptionError::Cancelled`], later ones
    /// with [`SubscriptionError::Closed`]. Closing again returns `Ok`.
    pub async fn close(&self) -> Result<(), JoinedError> {
        {
            let mut state = self.inner.state();
            if state.closed {
                return Ok(());
            }
            state.closed = true;
            state.desired.clear();
        }
        self.inner.closed.send_replace(true);
        self.inner.engine.close().await;
        let errors = self.inner.shared.take_errors();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl fmt::Debug for SubscriptionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state();
        f.debug_struct("SubscriptionManager")
            .field("template", &self.inner.template)
            .field("partitions", &state.desired.len())
            .field("closed", &state.closed)
            .finish_non_exhaustive()
    }
}

/// Options of a [`SubscriptionManager`], from [`SubscriptionManager::builder`]; finish with
/// [`SubscriptionManagerBuilder::core_nats`] or [`SubscriptionManagerBuilder::jetstream`]
/// (inside a tokio runtime).
#[must_use = "a builder does nothing until core_nats() or jetstream() is called"]
pub struct SubscriptionManagerBuilder {
    template: SubjectTemplate,
    handler: MessageHandler,
    retry_initial: Duration,
    retry_max: Duration,
    drain_timeout: Duration,
    on_error: Option<ErrorCallback>,
    warnings: Option<mpsc::UnboundedSender<DriverWarning>>,
    consumer: jetstream::ConsumerOptions,
}

/// Told about every background error as it happens.
type ErrorCallback = Arc<dyn Fn(&SubscriptionError) + Send + Sync>;

impl SubscriptionManagerBuilder {
    /// Backoff between retries of a failed subscribe or consumer creation: `initial`, doubling
    /// up to `max`. Default 50 ms up to 2 s.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial.max(Duration::from_millis(1));
        self.retry_max = max.max(self.retry_initial);
        self
    }

    /// How long a revoke (or `close()`) waits for a partition's in-flight handler call before
    /// cancelling it. Default 30 s. In a worker it is 90% of the config's `revoke_timeout`.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Called with every background error as it happens (from the manager's tasks: keep it
    /// quick). They are also kept for [`SubscriptionManager::close`].
    pub fn on_error(
        mut self,
        callback: impl Fn(&SubscriptionError) + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(callback));
        self
    }

    /// JetStream: how long the server waits for an acknowledgement before redelivering.
    /// Default 30 s; keep it above the slowest handler call.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.consumer.ack_wait = ack_wait;
        self
    }

    /// JetStream: most messages delivered and not yet acknowledged. Default 1000.
    pub fn max_ack_pending(mut self, max: i64) -> Self {
        self.consumer.max_ack_pending = max;
        self
    }

    /// JetStream: the server deletes the consumer after this long without a pull from it and
    /// with no message unacknowledged, so a crashed manager's consumer goes away (a work
    /// queue refuses two consumers on one subject; in a worker, the next owner of its
    /// partitions deletes it at once). Default 10 s.
    pub fn inactive_threshold(mut self, threshold: Duration) -> Self {
        self.consumer.inactive_threshold = threshold;
        self
    }

    /// Errors are also sent to a worker's runner as driver warnings.
    pub(crate) fn warnings(mut self, tx: mpsc::UnboundedSender<DriverWarning>) -> Self {
        self.warnings = Some(tx);
        self
    }

    /// A core NATS manager: one subscription per partition on `client`.
    pub fn core_nats(self, client: async_nats::Client) -> SubscriptionManager {
        let (template, shared) = self.split();
        let engine = Engine::Core(Box::new(core_nats::CoreEngine::new(client, shared.clone())));
        SubscriptionManager::from_parts(template, shared, engine)
    }

    /// A JetStream manager: one durable pull consumer named `consumer` on `stream` (which must
    /// use work-queue retention). Fails on a name NATS would refuse; the stream itself is
    /// looked up when the consumer is first created (a missing stream is retried).
    pub fn jetstream(
        self,
        context: async_nats::jetstream::Context,
        stream: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Result<SubscriptionManager, SubscriptionError> {
        let stream = valid_name("stream", stream.into())?;
        let consumer = valid_name("consumer", consumer.into())?;
        Ok(self.jetstream_named(context, stream, jetstream::ConsumerName::Fixed(consumer)))
    }

    pub(crate) fn jetstream_named(
        self,
        context: async_nats::jetstream::Context,
        stream: String,
        name: jetstream::ConsumerName,
    ) -> SubscriptionManager {
        let options = self.consumer.clone();
        let (template, shared) = self.split();
        let engine = Engine::Js(jetstream::JsEngine::start(
            context,
            stream,
            name,
            options,
            shared.clone(),
        ));
        SubscriptionManager::from_parts(template, shared, engine)
    }

    fn split(self) -> (SubjectTemplate, Arc<Shared>) {
        let shared = Arc::new(Shared {
            handler: self.handler,
            errors: Mutex::default(),
            on_error: self.on_error,
            warnings: self.warnings,
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            drain_timeout: self.drain_timeout,
        });
        (self.template, shared)
    }
}

impl fmt::Debug for SubscriptionManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionManagerBuilder")
            .field("template", &self.template)
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .field("drain_timeout", &self.drain_timeout)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// A stream or consumer name as NATS accepts it.
fn valid_name(what: &'static str, name: String) -> Result<String, SubscriptionError> {
    let bad = |c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\');
    if name.is_empty() || name.chars().any(bad) {
        Err(SubscriptionError::InvalidName { what, name })
    } else {
        Ok(name)
    }
}

impl SubscriptionManager {
    fn from_parts(template: SubjectTemplate, shared: Arc<Shared>, engine: Engine) -> Self {
        SubscriptionManager {
            inner: Arc::new(Inner {
                template,
                engine,
                shared,
                state: Mutex::default(),
                closed: watch::channel(false).0,
            }),
        }
    }

    /// Worker mode: starts `gained` and stops `revoked` (deltas, as the core emits them).
    /// A partition whose subject cannot be made is reported and skipped. `lost`: the revoked
    /// partitions were lost (the worker fenced itself or lost its ID), so they may already be
    /// another worker's: the messages received for them but not handled yet are dropped, not
    /// drained.
    pub(crate) fn apply_delta(
        &self,
        gained: &BTreeSet<PartitionId>,
        revoked: &BTreeSet<PartitionId>,
        lost: bool,
    ) -> Applied {
        let inner = &self.inner;
        let mut state = inner.state();
        if state.closed {
            return Applied::ready();
        }
        let mut revoked_now = Vec::new();
        for p in revoked {
            if state.desired.remove(p).is_some() {
                revoked_now.push(p.clone());
            }
        }
        let mut gained_now = Vec::new();
        for p in gained {
            if state.desired.contains_key(p) {
                continue;
            }
            let subject = match inner.template.subject(p) {
                Ok(s) => s,
                Err(e) => {
                    inner.shared.report(e);
                    continue;
                }
            };
            if let Some((first, _)) = state.desired.iter().find(|(_, s)| **s == subject) {
                inner.shared.report(SubscriptionError::SubjectConflict {
                    subject,
                    first: first.clone(),
                    second: p.clone(),
                });
                continue;
            }
            state.desired.insert(p.clone(), subject.clone());
            gained_now.push((p.clone(), subject));
        }
        inner
            .engine
            .apply(&state.desired, gained_now, revoked_now, lost)
    }
}

/// What all clones of a manager share.
struct Inner {
    template: SubjectTemplate,
    engine: Engine,
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// Turns true on close: updates waiting meanwhile are cancelled.
    closed: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Partition → subject, as last asked for.
    desired: BTreeMap<PartitionId, String>,
    closed: bool,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a full set: valid partitions, no duplicate, a distinct subject for each.
    fn validate<I>(&self, assigned: I) -> Result<BTreeMap<PartitionId, String>, SubscriptionError>
    where
        I: IntoIterator,
        I::Item: PartitionRef,
    {
        let mut wanted = BTreeMap::new();
        let mut subjects: HashMap<String, PartitionId> = HashMap::new();
        for item in assigned {
            let p = item.partition_id()?;
            if wanted.contains_key(&p) {
                return Err(SubscriptionError::DuplicatePartition { partition: p });
            }
            let subject = self.template.subject(&p)?;
            if let Some(first) = subjects.insert(subject.clone(), p.clone()) {
                return Err(SubscriptionError::SubjectConflict {
                    subject,
                    first,
                    second: p,
                });
            }
            wanted.insert(p, subject);
        }
        Ok(wanted)
    }

    /// Standalone mode: makes `wanted` the desired set.
    fn apply_set(
        &self,
        wanted: BTreeMap<PartitionId, String>,
    ) -> Result<Applied, SubscriptionError> {
        let mut state = self.state();
        if state.closed {
            return Err(SubscriptionError::Closed);
        }
        let revoked: Vec<PartitionId> = state
            .desired
            .keys()
            .filter(|p| !wanted.contains_key(*p))
            .cloned()
            .collect();
        let gained: Vec<(PartitionId, String)> = wanted
            .iter()
            .filter(|(p, _)| !state.desired.contains_key(*p))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        state.desired = wanted;
        Ok(self.engine.apply(&state.desired, gained, revoked, false))
    }
}

/// The two ways of consuming.
enum Engine {
    Core(Box<core_nats::CoreEngine>),
    Js(jetstream::JsEngine),
}

impl Engine {
    /// Hands a change over; called under the state lock, so changes arrive in order.
    fn apply(
        &self,
        desired: &BTreeMap<PartitionId, String>,
        gained: Vec<(PartitionId, String)>,
        revoked: Vec<PartitionId>,
        lost: bool,
    ) -> Applied {
        match self {
            Engine::Core(e) => e.apply(gained, revoked, lost),
            Engine::Js(e) => e.apply(desired, !gained.is_empty() || !revoked.is_empty()),
        }
    }

    /// Stops everything (draining) and cleans up server-side state.
    fn close(&self) -> BoxFuture<'static, ()> {
        match self {
            Engine::Core(e) => e.close(),
            Engine::Js(e) => e.close(),
        }
    }
}

/// The progress of one change: `released` resolves once the revoked partitions are no longer
/// consumed and their handlers returned; `live` once the gained ones are consumed.
pub(crate) struct Applied {
    pub(crate) released: BoxFuture<'static, ()>,
    pub(crate) live: BoxFuture<'static, ()>,
}

impl Applied {
    fn ready() -> Self {
        Applied {
            released: Box::pin(std::future::ready(())),
            live: Box::pin(std::future::ready(())),
        }
    }

    /// Both halves.
    async fn wait(self) {
        futures::join!(self.released, self.live);
    }
}

/// What the engines and their tasks share: the handler, the error log, the timings.
pub(crate) struct Shared {
    handler: MessageHandler,
    errors: Mutex<JoinedError>,
    on_error: Option<ErrorCallback>,
    warnings: Option<mpsc::UnboundedSender<DriverWarning>>,
    retry_initial: Duration,
    retry_max: Duration,
    drain_timeout: Duration,
}

impl Shared {
    /// Reports a background error: log, callback, worker warning, and kept for `close()`.
    pub(crate) fn report(&self, error: SubscriptionError) {
        tracing::warn!(%error, "subscription manager");
        if let Some(cb) = &self.on_error {
            cb(&error);
        }
        if let Some(tx) = &self.warnings {
            let _ = tx.send(DriverWarning::Subscription(error.clone()));
        }
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(error);
    }

    /// Every error kept so far; the log starts empty again.
    fn take_errors(&self) -> JoinedError {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The wait before retry number `attempt` (1-based): doubling from the initial delay.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.retry_initial
            .saturating_mul(factor)
            .min(self.retry_max)
    }

    /// Calls the handler, catching a panic (also one while making the future). `false` if
    /// it panicked.
    pub(crate) async fn handle(
        &self,
        partition: &PartitionId,
        message: async_nats::Message,
    ) -> bool {
        let handler = self.handler.0.clone();
        let p = partition.clone();
        let call = AssertUnwindSafe(async move { handler(p, message).await }).catch_unwind();
        match call.await {
            Ok(()) => true,
            Err(panic) => {
                self.report(SubscriptionError::HandlerPanicked {
                    partition: partition.clone(),
                    message: panic_message(panic.as_ref()),
                });
                false
            }
        }
    }

    /// Waits for stopping partition tasks, at most the drain timeout; stragglers are aborted
    /// (their handler call is cancelled) and reported.
    pub(crate) async fn drain(
        &self,
        tasks: Vec<(PartitionId, BoxFuture<'static, ()>, AbortHandle)>,
    ) {
        let mut waiting: HashMap<PartitionId, AbortHandle> = HashMap::new();
        let mut pending = FuturesUnordered::new();
        for (p, done, abort) in tasks {
            waiting.insert(p.clone(), abort);
            pending.push(done.map(move |()| p));
        }
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = pending.next() => match next {
                    Some(p) => {
                        waiting.remove(&p);
                    }
                    None => return,
                },
                () = &mut deadline => break,
            }
        }
        for (partition, abort) in waiting {
            abort.abort();
            self.report(SubscriptionError::DrainTimedOut {
                partition,
                after: self.drain_timeout,
            });
        }
        while pending.next().await.is_some() {}
    }
}

/// Resolves once `stop` turns true or its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
