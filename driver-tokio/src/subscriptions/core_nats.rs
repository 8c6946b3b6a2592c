//! Core NATS mode: one subscription, and one task, per owned partition.
//!
//! A partition's task subscribes (retrying with backoff), flushes so the `SUB` is on the wire,
//! reports itself live, then handles its messages one at a time. Asked to stop, it finishes
//! the call in flight, unsubscribes, handles the messages already received, and ends: the
//! revoke is released when the task has ended. A *lost* partition (the worker fenced itself
//! or lost its ID) may already be another worker's: its task drops the messages already
//! received instead (a worker paused past its lease would handle them after the new owner). A partition gained again while its previous
//! task still drains waits for that task first, so one manager never runs two handler calls
//! of a partition at once.

use super::{stopped, Applied, Shared, SubscriptionError};
use async_nats::{Client, Subscriber};
use futures::future::{BoxFuture, Shared as SharedFuture};
use futures::{FutureExt, StreamExt};
use parti_core::PartitionId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;

/// Resolves when something finished; cloneable.
type Done = SharedFuture<BoxFuture<'static, ()>>;

pub(crate) struct CoreEngine {
    client: Client,
    shared: Arc<Shared>,
    parts: Mutex<Parts>,
}

#[derive(Default)]
struct Parts {
    running: HashMap<PartitionId, Part>,
    /// Tasks told to stop and perhaps still draining.
    retiring: HashMap<PartitionId, (Done, AbortHandle)>,
}

/// A partition's task.
struct Part {
    stop: watch::Sender<bool>,
    /// Set before `stop` when the partition was lost: drop what was received, do not drain.
    lost: Arc<AtomicBool>,
    done: Done,
    abort: AbortHandle,
    live: Done,
}

impl CoreEngine {
    pub(crate) fn new(client: Client, shared: Arc<Shared>) -> Self {
        CoreEngine {
            client,
            shared,
            parts: Mutex::default(),
        }
    }

    fn parts(&self) -> MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops `revoked` (dropping what they received but did not handle if `lost`), starts
    /// `gained`. `live` waits for every running partition.
    pub(crate) fn apply(
        &self,
        gained: Vec<(PartitionId, String)>,
        revoked: Vec<PartitionId>,
        lost: bool,
    ) -> Applied {
        let mut parts = self.parts();
        parts.retiring.retain(|_, (done, _)| done.peek().is_none());
        let mut stopping = Vec::new();
        for p in revoked {
            if let Some(part) = parts.running.remove(&p) {
                part.lost.store(lost, Ordering::SeqCst);
                part.stop.send_replace(true);
                parts
                    .retiring
                    .insert(p.clone(), (part.done.clone(), part.abort.clone()));
                stopping.push((p, part.done.boxed(), part.abort));
            }
        }
        for (p, subject) in gained {
            if parts.running.contains_key(&p) {
                continue;
            }
            let previous = parts.retiring.remove(&p).map(|(done, _)| done);
            let (stop_tx, stop_rx) = watch::channel(false);
            let (live_tx, live_rx) = oneshot::channel();
            let lost = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(run_part(
                PartTask {
                    client: self.client.clone(),
                    shared: self.shared.clone(),
                    partition: p.clone(),
                    subject,
                    lost: lost.clone(),
                },
                previous,
                stop_rx,
                live_tx,
            ));
            let abort = task.abort_handle();
            parts.running.insert(
                p,
                Part {
                    stop: stop_tx,
                    lost,
                    done: task.map(|_| ()).boxed().shared(),
                    abort,
                    live: live_rx.map(|_| ()).boxed().shared(),
                },
            );
        }
        let lives: Vec<Done> = parts.running.values().map(|p| p.live.clone()).collect();
        let shared = self.shared.clone();
        Applied {
            released: Box::pin(async move { shared.drain(stopping).await }),
            live: Box::pin(futures::future::join_all(lives).map(|_| ())),
        }
    }

    /// Stops every partition and waits for the tasks (bounded by the drain timeout).
    pub(crate) fn close(&self) -> BoxFuture<'static, ()> {
        let mut parts = self.parts();
        let mut stopping = Vec::new();
        for (p, part) in parts.running.drain() {
            part.stop.send_replace(true);
            stopping.push((p, part.done.boxed(), part.abort));
        }
        // Tasks still draining from earlier revokes: wait for them too.
        for (p, (done, abort)) in parts.retiring.drain() {
            stopping.push((p, done.boxed(), abort));
        }
        let shared = self.shared.clone();
        Box::pin(async move { shared.drain(stopping).await })
    }
}

impl Drop for CoreEngine {
    /// The last manager clone is gone without `close()`: cancel everything, as a crash would.
    fn drop(&mut self) {
        let parts = self.parts();
        for part in parts.running.values() {
            part.abort.abort();
        }
        for (_, abort) in parts.retiring.values() {
            abort.abort();
        }
    }
}

/// The life of one partition's subscription.
async fn run_part(
    part: PartTask,
    previous: Option<Done>,
    mut stop: watch::Receiver<bool>,
    live: oneshot::Sender<()>,
) {
    if let Some(previous) = previous {
        tokio::select! {
            () = previous => {}
            () = stopped(&mut stop) => return,
        }
    }
    let mut live = Some(live);
    let mut attempt = 0;
    loop {
        let Some(mut sub) = part.subscribe(&mut stop, &mut attempt).await else {
            return;
        };
        // Flushed, the SUB precedes anything this client publishes next; for other
        // connections it is on its way.
        tokio::select! {
            _ = part.client.flush() => {}
            () = stopped(&mut stop) => return part.release(sub).await,
        }
        if let Some(live) = live.take() {
            let _ = live.send(());
        }
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return part.release(sub).await,
                message = sub.next() => match message {
                    Some(message) => {
                        part.shared.handle(&part.partition, message).await;
                    }
                    None => break,
                },
            }
        }
        // The client closed the subscription (it was drained or closed): subscribe again.
        part.shared.report(SubscriptionError::SubscriptionLost {
            partition: part.partition.clone(),
            subject: part.subject.clone(),
        });
        attempt += 1;
        tokio::select! {
            () = tokio::time::sleep(part.shared.backoff(attempt)) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// What a partition's task works with.
struct PartTask {
    client: Client,
    shared: Arc<Shared>,
    partition: PartitionId,
    subject: String,
    /// Read on stop: the partition was lost (see [`Part::lost`]).
    lost: Arc<AtomicBool>,
}

impl PartTask {
    /// Subscribes, retrying with backoff; `None` if told to stop first.
    async fn subscribe(
        &self,
        stop: &mut watch::Receiver<bool>,
        attempt: &mut u32,
    ) -> Option<Subscriber> {
        loop {
            if *stop.borrow() {
                return None;
            }
            match self.client.subscribe(self.subject.clone()).await {
                Ok(sub) => {
                    *attempt = 0;
                    return Some(sub);
                }
                Err(e) => {
                    *attempt += 1;
                    self.shared.report(SubscriptionError::Subscribe {
                        partition: self.partition.clone(),
                        subject: self.subject.clone(),
                        attempt: *attempt,
                        reason: e.to_string(),
                    });
                    tokio::select! {
                        () = tokio::time::sleep(self.shared.backoff(*attempt)) => {}
                        () = stopped(stop) => return None,
                    }
                }
            }
        }
    }

    /// Unsubscribes, then handles the messages already received (the drain), unless the
    /// partition was lost: then they are dropped.
    async fn release(&self, mut sub: Subscriber) {
        if let Err(e) = sub.unsubscribe().await {
            self.shared.report(SubscriptionError::Unsubscribe {
                partition: self.partition.clone(),
                subject: self.subject.clone(),
                reason: e.to_string(),
            });
        }
        if self.lost.load(Ordering::SeqCst) {
            return;
        }
        while let Some(message) = sub.next().await {
            self.shared.handle(&self.partition, message).await;
        }
    }
}
