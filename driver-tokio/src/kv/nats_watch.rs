//! The watch stream of [`NatsKv`](super::NatsKv): one ordered push consumer over all filters,
//! converted to core entries, with markers filtered and the consumer rebuilt on reconnect (see
//! the docs of the `nats` module for why).

use super::nats::KV_OPERATION;
use super::{filters_overlap, MarkerFilter, WatchError, WatchStream};
use async_nats::header::{HeaderMap, NATS_MARKER_REASON};
use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig, OrderedErrorKind};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::{self, kv};
use async_nats::Client;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use parti_core::{filter_matches, Bucket, Entry, Operation};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::sync::watch;

/// Starts a watch of `store` over `filters` (already checked and normalized). `reconnects`
/// changes on every reconnection of `client`.
pub(super) async fn start(
    store: kv::Store,
    client: Client,
    mut reconnects: watch::Receiver<u64>,
    bucket: Bucket,
    filters: Vec<String>,
    after: Option<u64>,
) -> Result<WatchStream, WatchError> {
    let overlap = filters
        .iter()
        .enumerate()
        .any(|(i, a)| filters[i + 1..].iter().any(|b| filters_overlap(a, b)));
    let (server_filters, client_filters) = if overlap {
        (vec![">".to_string()], Some(filters))
    } else {
        (filters, None)
    };
    let subjects: Vec<String> = server_filters
        .iter()
        .map(|f| format!("{}{f}", store.prefix))
        .collect();
    reconnects.borrow_and_update();
    let mut watch = NatsWatch {
        store: store.clone(),
        client,
        bucket,
        subjects,
        client_filters,
        resume: after,
        markers: MarkerFilter::new(after),
        seen: after.unwrap_or(0),
        consumer: ConsumerState::Rebuilding(futures::future::pending().boxed()),
        reconnected: Some(next_reconnect(reconnects)),
        failures: 0,
        done: false,
    };
    let messages = open_consumer(
        store,
        watch.client.clone(),
        watch.subjects.clone(),
        watch.policy(),
        Duration::ZERO,
    )
    .await
    .map_err(WatchError)?;
    watch.consumer = ConsumerState::Active(Box::new(messages));
    Ok(watch.boxed())
}

/// A watch over one ordered push consumer, converted to core entries, rebuilt on reconnect
/// (see the module docs).
struct NatsWatch {
    store: kv::Store,
    client: Client,
    bucket: Bucket,
    /// Server-side filter subjects (`$KV.<bucket>.<filter>`).
    subjects: Vec<String>,
    /// Set when the consumer watches `>` and the filters apply here.
    client_filters: Option<Vec<String>>,
    /// `Some(after)` for a resume, `None` for a new watch.
    resume: Option<u64>,
    /// Drops markers for keys the watcher knows are absent.
    markers: MarkerFilter,
    /// Last revision received (or the resume point): a rebuilt consumer starts after it.
    seen: u64,
    consumer: ConsumerState,
    /// Resolves on the next reconnect, handing the receiver back.
    reconnected: Option<BoxFuture<'static, (watch::Receiver<u64>, bool)>>,
    /// Consecutive failed rebuilds.
    failures: u32,
    done: bool,
}

enum ConsumerState {
    Active(Box<Ordered>),
    Rebuilding(BoxFuture<'static, Result<Ordered, String>>),
}

/// Rebuilds give up (and end the stream with an error) after this many consecutive failures.
const MAX_REBUILD_FAILURES: u32 = 8;

fn next_reconnect(
    mut rx: watch::Receiver<u64>,
) -> BoxFuture<'static, (watch::Receiver<u64>, bool)> {
    async move {
        let open = rx.changed().await.is_ok();
        (rx, open)
    }
    .boxed()
}

/// Creates an ordered push consumer on `subjects` from `policy`.
async fn open_consumer(
    store: kv::Store,
    client: Client,
    mut subjects: Vec<String>,
    policy: DeliverPolicy,
    delay: Duration,
) -> Result<Ordered, String> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (filter_subject, filter_subjects) = if subjects.len() == 1 {
        (subjects.remove(0), Vec::new())
    } else {
        (String::new(), subjects)
    };
    let consumer = store
        .stream
        .create_consumer(OrderedConfig {
            deliver_subject: client.new_inbox(),
            description: Some("parti watch".into()),
            filter_subject,
            filter_subjects,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: policy,
            ..Default::default()
        })
        .await
        .map_err(|err| format!("creating watch consumer: {err}"))?;
    consumer
        .messages()
        .await
        .map_err(|err| format!("starting watch consumer: {err}"))
}

impl NatsWatch {
    /// Where a (re)built consumer starts: right after the last revision received, or, before
    /// anything was received, where the watch was asked to start.
    fn policy(&self) -> DeliverPolicy {
        match self.resume {
            None if self.seen == 0 => DeliverPolicy::LastPerSubject,
            _ => DeliverPolicy::ByStartSequence {
                start_sequence: self.seen.saturating_add(1),
            },
        }
    }

    fn rebuild(&mut self, delay: Duration) {
        self.consumer = ConsumerState::Rebuilding(
            open_consumer(
                self.store.clone(),
                self.client.clone(),
                self.subjects.clone(),
                self.policy(),
                delay,
            )
            .boxed(),
        );
    }

    /// Counts a failed rebuild: schedules another, or gives up with an error.
    fn failed(&mut self, reason: String) -> Option<WatchError> {
        self.failures += 1;
        if self.failures >= MAX_REBUILD_FAILURES {
            self.done = true;
            return Some(WatchError(reason));
        }
        tracing::debug!(%reason, failures = self.failures, "rebuilding the watch consumer");
        let delay = Duration::from_millis(50 << self.failures.min(5)).min(Duration::from_secs(1));
        self.rebuild(delay);
        None
    }

    /// The entry `message` stands for, unless it is filtered out or already received.
    fn entry(&mut self, message: &jetstream::Message) -> Result<Option<Entry>, WatchError> {
        let revision = message
            .info()
            .map_err(|err| WatchError(format!("bad message metadata: {err}")))?
            .stream_sequence;
        let Some(key) = message.subject.as_str().strip_prefix(&self.store.prefix) else {
            return Ok(None);
        };
        if revision <= self.seen {
            return Ok(None);
        }
        self.seen = revision;
        let operation = message_operation(message.headers.as_ref());
        let filtered_out = self
            .client_filters
            .as_ref()
            .is_some_and(|filters| !filters.iter().any(|f| filter_matches(f, key)));
        if filtered_out || !self.markers.admit(key, operation) {
            return Ok(None);
        }
        Ok(Some(Entry {
            bucket: self.bucket,
            key: key.to_owned(),
            revision,
            operation,
            value: message.payload.to_vec(),
        }))
    }
}

impl Stream for NatsWatch {
    type Item = Result<Entry, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(reconnected) = this.reconnected.as_mut() {
                if let Poll::Ready((mut rx, open)) = reconnected.poll_unpin(cx) {
                    this.reconnected = None;
                    if open {
                        rx.borrow_and_update();
                        this.reconnected = Some(next_reconnect(rx));
                        tracing::debug!("reconnected: rebuilding the watch consumer");
                        this.failures = 0;
                        this.rebuild(Duration::ZERO);
                    }
                }
            }
            let messages = match &mut this.consumer {
                ConsumerState::Rebuilding(opening) => match ready!(opening.poll_unpin(cx)) {
                    Ok(messages) => {
                        this.failures = 0;
                        this.consumer = ConsumerState::Active(Box::new(messages));
                        continue;
                    }
                    Err(reason) => match this.failed(reason) {
                        Some(err) => return Poll::Ready(Some(Err(err))),
                        None => continue,
                    },
                },
                ConsumerState::Active(messages) => messages,
            };
            let message = match ready!(messages.poll_next_unpin(cx)) {
                Some(Ok(message)) => message,
                Some(Err(err)) if err.kind() == OrderedErrorKind::MissingHeartbeat => {
                    // The ordered consumer recreates itself from the last revision it delivered.
                    tracing::debug!(%err, "watch consumer missed its heartbeats, recreating");
                    continue;
                }
                Some(Err(err)) => match this.failed(err.to_string()) {
                    Some(err) => return Poll::Ready(Some(Err(err))),
                    None => continue,
                },
                None => match this.failed("watch consumer ended".into()) {
                    Some(err) => return Poll::Ready(Some(Err(err))),
                    None => continue,
                },
            };
            match this.entry(&message) {
                Ok(Some(entry)) => return Poll::Ready(Some(Ok(entry))),
                Ok(None) => {}
                Err(err) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
    }
}

/// The operation a stored message stands for (what async-nats's KV reads from the headers).
fn message_operation(headers: Option<&HeaderMap>) -> Operation {
    let Some(headers) = headers else {
        return Operation::Put;
    };
    if let Some(op) = headers.get(KV_OPERATION) {
        return match op.as_str() {
            "DEL" => Operation::Delete,
            "PURGE" => Operation::Purge,
            _ => Operation::Put,
        };
    }
    match headers.get(NATS_MARKER_REASON).map(|r| r.as_str()) {
        Some("MaxAge" | "Purge") => Operation::Purge,
        Some("Remove") => Operation::Delete,
        _ => Operation::Put,
    }
}
