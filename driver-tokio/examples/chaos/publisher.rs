//! The publisher of a chaos run: every round (every `--interval-ms`) it sends the next unique
//! sequence number to every partition's subject, `work.p<i>`, and logs when it sent each.
//!
//! Core NATS: a plain publish (lost if nobody is subscribed, or if the connection is down
//! long enough). JetStream: a publish to the work-queue stream with the sequence number as
//! `Nats-Msg-Id` (so a retry cannot store it twice), retried until the stream acknowledges it
//! or 30 s have passed; only acknowledged messages count as published.

use async_nats::HeaderMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a JetStream publish is retried before the message is given up.
const JS_PUBLISH_DEADLINE: Duration = Duration::from_secs(30);

/// One message the publisher sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Its partition's index (`p<i>`).
    pub partition: u32,
    /// When it was first sent (unix µs).
    pub at_us: u64,
    /// Published: sent (core NATS), or acknowledged by the stream (JetStream).
    pub published: bool,
}

/// The messages sent so far, indexed by sequence number; shared with the runner.
pub type SentLog = Arc<Mutex<Vec<Sent>>>;

/// A running publisher.
pub struct Publisher {
    log: SentLog,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Connects to `urls` and starts sending `partitions` messages per round.
    pub async fn start(
        urls: &[String],
        jetstream: bool,
        partitions: u32,
        interval: Duration,
    ) -> Result<Self, String> {
        let client = async_nats::ConnectOptions::new()
            .name("chaos-publisher")
            .retry_on_initial_connect()
            .connect(urls.to_vec())
            .await
            .map_err(|e| format!("the publisher cannot connect: {e}"))?;
        let log: SentLog = Arc::default();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(
            client,
            jetstream,
            partitions,
            interval,
            log.clone(),
            stopped,
        ));
        Ok(Publisher { log, stop, task })
    }

    /// The log, to look sequence numbers up while the run goes on.
    pub fn log(&self) -> SentLog {
        self.log.clone()
    }

    /// Stops after the round in flight (its JetStream retries included) and returns the log.
    pub async fn stop(mut self) -> Vec<Sent> {
        self.stop.send_replace(true);
        let _ = (&mut self.task).await;
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.clone()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Unix time in µs.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn run(
    client: async_nats::Client,
    jetstream: bool,
    partitions: u32,
    interval: Duration,
    log: SentLog,
    mut stop: watch::Receiver<bool>,
) {
    let js = async_nats::jetstream::new(client.clone());
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Reserve the round's sequence numbers.
        let first = {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            let first = log.len();
            let at_us = now_us();
            for partition in 0..partitions {
                log.push(Sent {
                    partition,
                    at_us,
                    published: false,
                });
            }
            first
        };
        let sends = (0..partitions).map(|p| {
            let seq = first + p as usize;
            let subject = format!("work.p{p}");
            let client = client.clone();
            let js = js.clone();
            async move {
                let payload = bytes::Bytes::from(seq.to_string());
                let ok = if jetstream {
                    publish_js(&js, subject, seq, payload).await
                } else {
                    client.publish(subject, payload).await.is_ok()
                };
                (seq, ok)
            }
        });
        let results = futures::future::join_all(sends).await;
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        for (seq, ok) in results {
            log[seq].published = ok;
        }
    }
}

/// Publishes to the stream until it acknowledges (deduplicated by `Nats-Msg-Id`), or gives up.
async fn publish_js(
    js: &async_nats::jetstream::Context,
    subject: String,
    seq: usize,
    payload: bytes::Bytes,
) -> bool {
    let deadline = tokio::time::Instant::now() + JS_PUBLISH_DEADLINE;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", seq.to_string().as_str());
    let mut backoff = Duration::from_millis(50);
    loop {
        let sent = js
            .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
            .await;
        if let Ok(ack) = sent {
            if ack.await.is_ok() {
                return true;
            }
        }
        if tokio::time::Instant::now() + backoff > deadline {
            return false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
