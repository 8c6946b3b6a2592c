//! What the subscription tests share: partition IDs, a NATS connection, a log of handler calls
//! and worker events with waits on it, and publishing with a server round trip.
#![allow(dead_code)]

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use parti::testing::NatsServer;
use parti::{Event, EventStream, MessageHandler, PartitionId, SubjectTemplate};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long anything expected may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn id(s: &str) -> PartitionId {
    PartitionId::parse(s).unwrap()
}

pub fn ids(names: &[&str]) -> BTreeSet<PartitionId> {
    names.iter().map(|s| id(s)).collect()
}

pub fn template() -> SubjectTemplate {
    SubjectTemplate::parse("work.{keys}").unwrap()
}

pub async fn connect(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.expect("connect")
}

/// One handler call: which worker, which partition, the payload, and whether it is the start
/// or the end of the call.
#[derive(Clone, Debug)]
pub struct Call {
    pub worker: usize,
    pub partition: PartitionId,
    pub payload: String,
    pub start: bool,
}

/// Every handler call (start and end) in the order they happened, every worker event, and a
/// signal on each.
#[derive(Clone)]
pub struct Log {
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub events: Arc<Mutex<Vec<(usize, Event)>>>,
    pub tick: Arc<watch::Sender<u64>>,
}

impl Log {
    pub fn new() -> Self {
        Log {
            calls: Arc::default(),
            events: Arc::default(),
            tick: Arc::new(watch::channel(0).0),
        }
    }

    pub fn push(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        self.tick.send_modify(|t| *t += 1);
    }

    /// A handler for `worker` that logs the start and end of every call, `work` apart.
    pub fn handler(&self, worker: usize, work: Duration) -> MessageHandler {
        let log = self.clone();
        MessageHandler::new(move |partition, message| {
            let log = log.clone();
            async move {
                let payload = String::from_utf8_lossy(&message.payload).into_owned();
                let mut call = Call {
                    worker,
                    partition,
                    payload,
                    start: true,
                };
                log.push(call.clone());
                if !work.is_zero() {
                    // Simulated work: widens the window in which two owners would overlap.
                    tokio::time::sleep(work).await;
                }
                call.start = false;
                log.push(call);
            }
        })
    }

    /// Finished calls: (worker, partition, payload).
    pub fn handled(&self) -> Vec<(usize, PartitionId, String)> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| !c.start)
            .map(|c| (c.worker, c.partition.clone(), c.payload.clone()))
            .collect()
    }

    pub fn payloads(&self) -> Vec<String> {
        self.handled().into_iter().map(|(_, _, p)| p).collect()
    }

    /// Forwards a worker's events into the log.
    pub fn follow(&self, worker: usize, mut events: EventStream) {
        let log = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                log.events.lock().unwrap().push((worker, event));
                log.tick.send_modify(|t| *t += 1);
            }
        });
    }

    /// Waits, change by change, until `cond` holds; fails the test after [`DEADLINE`].
    pub async fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let mut rx = self.tick.subscribe();
        let waited = tokio::time::timeout(DEADLINE, async {
            loop {
                if cond() {
                    return;
                }
                rx.changed().await.expect("log alive");
            }
        })
        .await;
        if waited.is_err() {
            panic!("timed out waiting until {what}");
        }
    }

    /// Checks that no partition's handler calls of two workers overlap.
    pub fn assert_no_concurrent_owners(&self) {
        let calls = self.calls.lock().unwrap();
        let mut inside: HashMap<PartitionId, BTreeMap<usize, usize>> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            let workers = inside.entry(call.partition.clone()).or_default();
            if call.start {
                if let Some((other, _)) =
                    workers.iter().find(|(w, n)| **w != call.worker && **n > 0)
                {
                    panic!(
                        "partition {}: worker {} started a call (log entry {i}) while worker \
                         {other} was still handling one",
                        call.partition, call.worker
                    );
                }
                *workers.entry(call.worker).or_default() += 1;
            } else {
                *workers.get_mut(&call.worker).expect("started") -= 1;
            }
        }
    }
}

/// Waits for a message on a plain subscription: everything `client` published before it has
/// been processed by the server and delivered.
pub async fn barrier(client: &async_nats::Client) {
    let subject = client.new_inbox();
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.publish(subject, "barrier".into()).await.unwrap();
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("barrier message")
        .expect("subscription open");
}

pub async fn publish(client: &async_nats::Client, subject: &str, payload: &str) {
    client
        .publish(subject.to_owned(), payload.to_owned().into())
        .await
        .unwrap();
}

pub async fn work_queue(js: &jetstream::Context, name: &str) -> stream::Stream {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec!["work.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("create stream")
}

pub async fn js_publish(js: &jetstream::Context, subject: &str, payload: String) {
    js.publish(subject.to_owned(), payload.into())
        .await
        .unwrap()
        .await
        .expect("stored");
}

pub async fn consumer_names(stream: &stream::Stream) -> Vec<String> {
    stream
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|n| n.unwrap())
        .collect()
}
