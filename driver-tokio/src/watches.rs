//! The runner's KV watches, keyed by the core's `WatchId`: each is rebuilt with exponential
//! backoff after an error or an end, and resumes after the last revision it delivered.

use crate::kv::{KvStore, WatchError, WatchStream};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use parti_core::{Bucket, Entry, WatchId};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// First backoff after a watch breaks.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Backoff cap; a watch that stayed up this long starts again from [`MIN_BACKOFF`].
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What [`Watches::poll_next`] yields.
#[derive(Debug)]
pub(crate) enum WatchEvent {
    /// An entry to feed to the core.
    Entry(WatchId, Entry),
    /// A watch broke; it is rebuilt after `retry_in`.
    Broken {
        bucket: Bucket,
        reason: String,
        retry_in: Duration,
    },
}

enum Phase {
    Connecting(BoxFuture<'static, Result<WatchStream, WatchError>>),
    Open(WatchStream),
    Waiting(Pin<Box<Sleep>>),
}

struct Watch {
    bucket: Bucket,
    filters: Vec<String>,
    /// Highest revision delivered so far: the resume point.
    last: Option<u64>,
    backoff: Duration,
    opened_at: Option<Instant>,
    phase: Phase,
}

/// Every live watch of one runner.
pub(crate) struct Watches {
    kv: Arc<dyn KvStore>,
    map: BTreeMap<WatchId, Watch>,
    /// Where the next poll starts, so one busy watch cannot starve the others.
    cursor: usize,
}

impl Watches {
    pub(crate) fn new(kv: Arc<dyn KvStore>) -> Self {
        Watches {
            kv,
            map: BTreeMap::new(),
            cursor: 0,
        }
    }

    /// Starts a watch (`Action::Watch`).
    pub(crate) fn add(&mut self, id: WatchId, bucket: Bucket, filters: Vec<String>) {
        let phase = Phase::Connecting(self.kv.watch(bucket, filters.clone(), None));
        self.map.insert(
            id,
            Watch {
                bucket,
                filters,
                last: None,
                backoff: MIN_BACKOFF,
                opened_at: None,
                phase,
            },
        );
    }

    /// Drops a watch (`Action::Unwatch`); entries it had not yet yielded are discarded.
    pub(crate) fn remove(&mut self, id: WatchId) {
        self.map.remove(&id);
    }

    /// The next entry or breakage of any watch; `Pending` when there is none (also when empty).
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<WatchEvent> {
        let n = self.map.len();
        if n == 0 {
            return Poll::Pending;
        }
        let start = self.cursor % n;
        let ids: Vec<WatchId> = self.map.keys().copied().collect();
        for k in 0..n {
            let id = ids[(start + k) % n];
            let w = self.map.get_mut(&id).expect("listed above");
            if let Poll::Ready(ev) = w.poll(&self.kv, id, cx) {
                self.cursor = (start + k + 1) % n;
                return Poll::Ready(ev);
            }
        }
        Poll::Pending
    }

    /// A future for [`Watches::poll_next`], for `select!`.
    pub(crate) fn next(&mut self) -> impl Future<Output = WatchEvent> + '_ {
        futures::future::poll_fn(move |cx| self.poll_next(cx))
    }
}

impl Watch {
    fn poll(
        &mut self,
        kv: &Arc<dyn KvStore>,
        id: WatchId,
        cx: &mut Context<'_>,
    ) -> Poll<WatchEvent> {
        loop {
            match &mut self.phase {
                Phase::Connecting(fut) => match fut.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(stream)) => {
                        self.opened_at = Some(Instant::now());
                        self.phase = Phase::Open(stream);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(self.broken(e.0)),
                },
                Phase::Open(stream) => match stream.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(entry))) => {
                        self.last =
                            Some(self.last.map_or(entry.revision, |l| l.max(entry.revision)));
                        return Poll::Ready(WatchEvent::Entry(id, entry));
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(self.broken(e.0)),
                    Poll::Ready(None) => return Poll::Ready(self.broken("watch ended".into())),
                },
                Phase::Waiting(sleep) => match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => {
                        let fut = kv.watch(self.bucket, self.filters.clone(), self.last);
                        self.phase = Phase::Connecting(fut);
                    }
                },
            }
        }
    }

    /// Schedules a rebuild and says so.
    fn broken(&mut self, reason: String) -> WatchEvent {
        if self
            .opened_at
            .take()
            .is_some_and(|t| t.elapsed() >= MAX_BACKOFF)
        {
            self.backoff = MIN_BACKOFF;
        }
        let retry_in = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.phase = Phase::Waiting(Box::pin(tokio::time::sleep(retry_in)));
        WatchEvent::Broken {
            bucket: self.bucket,
            reason,
            retry_in,
        }
    }
}
