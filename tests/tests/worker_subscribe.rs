//! `parti worker --subscribe/--jetstream/--record` as real processes on a real nats-server:
//! two core NATS workers split the partitions and record every message exactly once, with
//! their worker ID and the right partition; a JetStream worker records and acknowledges
//! every message of the work queue; bad flags are refused with an error naming the flag.

mod common;

use async_nats::jetstream;
use common::bin::parti_bin;
use common::DEADLINE;
use parti::testing::NatsServer;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: usize = 4;

/// A `parti worker --subscribe` process, killed on drop.
struct Subscriber {
    child: Child,
    record: PathBuf,
    log: PathBuf,
}

impl Subscriber {
    /// Worker `id` of a fleet of `fleet`, with more flags.
    fn spawn(server: &NatsServer, id: u32, fleet: u32, extra: &[&str]) -> Subscriber {
        let dir = server.store_dir();
        let record = dir.join(format!("w{id}.rec"));
        let log = dir.join(format!("w{id}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(parti_bin())
            .args(["worker", "--nats", &server.url(), "--prefix", "sub"])
            .args(["--partitions", &PARTITIONS.to_string()])
            .args(["--id-preferred", &id.to_string()])
            .args([
                "--expected-workers",
                &fleet.to_string(),
                "--window-ms",
                "300",
            ])
            .args(["--heartbeat-ms", "200", "--ttl-ms", "1000"])
            .args(["--subscribe", "work.{keys}", "--record"])
            .arg(&record)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn parti worker");
        Subscriber { child, record, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `handled` line of a record file.
#[derive(Debug, Clone)]
struct Handled {
    worker: String,
    partition: String,
    payload: String,
}

/// The `handled` lines of a record file; panics on a line of another shape.
fn handled(path: &Path) -> Vec<Handled> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            assert!(
                words.len() == 5 && words[0].parse::<u64>().is_ok() && words[2] == "handled",
                "unexpected record line {line:?}"
            );
            Handled {
                worker: words[1].to_string(),
                partition: words[3].to_string(),
                payload: words[4].to_string(),
            }
        })
        .collect()
}

/// How many partitions a worker's log says it holds (its last `assignment` line).
fn held(log: &str) -> Option<usize> {
    let line = log.lines().rev().find(|l| l.contains(" assignment "))?;
    let (_, after) = line.split_once(" = ")?;
    after.split(' ').next()?.parse().ok()
}

/// Polls `check` every 20 ms until it holds; fails the test after [`DEADLINE`].
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_core_nats_workers_record_every_message_once() {
    let server = NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let workers = [
        Subscriber::spawn(&server, 0, 2, &[]),
        Subscriber::spawn(&server, 1, 2, &[]),
    ];
    // Until every partition has a subscriber: probe them until each probe shows up in a
    // record file.
    let probed = || -> BTreeSet<String> {
        workers
            .iter()
            .flat_map(|w| handled(&w.record))
            .filter(|h| h.payload.starts_with("probe"))
            .map(|h| h.partition)
            .collect()
    };
    let deadline = Instant::now() + DEADLINE;
    while probed().len() < PARTITIONS {
        assert!(
            Instant::now() < deadline,
            "not every partition got a subscriber; logs:\n{}\n{}",
            workers[0].log(),
            workers[1].log()
        );
        for p in 0..PARTITIONS {
            client
                .publish(format!("work.p{p}"), "probe".into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And until the split is done: both workers hold partitions, together all of them.
    wait_until("both workers hold partitions", || {
        let counts: Vec<usize> = workers.iter().filter_map(|w| held(&w.log())).collect();
        counts.len() == 2 && counts.iter().all(|n| *n > 0) && counts.iter().sum::<usize>() == 4
    })
    .await;
    let probes = |w: &Subscriber| handled(&w.record).len();
    let before = [probes(&workers[0]), probes(&workers[1])];
    for i in 0..100 {
        let p = i % PARTITIONS;
        client
            .publish(format!("work.p{p}"), format!("m{i}").into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let messages = || -> Vec<Handled> {
        workers
            .iter()
            .flat_map(|w| handled(&w.record))
            .filter(|h| h.payload.starts_with('m'))
            .collect()
    };
    wait_until("all 100 messages are recorded", || messages().len() >= 100).await;
    let mut seen: BTreeMap<String, Handled> = BTreeMap::new();
    for h in messages() {
        let i: usize = h.payload[1..].parse().unwrap();
        assert_eq!(h.partition, format!("p{}", i % PARTITIONS), "{h:?}");
        assert!(
            seen.insert(h.payload.clone(), h).is_none(),
            "recorded twice"
        );
    }
    assert_eq!(seen.len(), 100);
    // Each worker recorded under its own ID, and both handled some.
    for (i, w) in workers.iter().enumerate() {
        let own = handled(&w.record);
        assert!(own.len() > before[i], "worker {i} handled nothing");
        assert!(
            own.iter().all(|h| h.worker == format!("w{i}")),
            "worker {i} records another ID: {:?}",
            own.first()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_worker_records_and_acknowledges_every_message() {
    use jetstream::stream::{Config, RetentionPolicy};
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let mut stream = js
        .create_stream(Config {
            name: "WORK".into(),
            subjects: vec!["work.>".into()],
            retention: RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    // A backlog before the worker starts: a work queue keeps it.
    for i in 0..40 {
        js.publish(format!("work.p{}", i % PARTITIONS), format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let worker = Subscriber::spawn(&server, 0, 1, &["--jetstream", "WORK"]);
    let deadline = Instant::now() + DEADLINE;
    while handled(&worker.record).len() < 40 {
        assert!(
            Instant::now() < deadline,
            "the backlog is not recorded; log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let payloads: BTreeSet<String> = handled(&worker.record)
        .into_iter()
        .map(|h| h.payload)
        .collect();
    assert_eq!(payloads.len(), 40, "each message once");
    let deadline = Instant::now() + DEADLINE;
    while stream.info().await.unwrap().state.messages > 0 {
        assert!(
            Instant::now() < deadline,
            "messages left unacknowledged; log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `parti worker` with `args` (after `--nats`) and returns its output.
fn worker_with(args: &[&str]) -> Output {
    Command::new(parti_bin())
        .args(["worker", "--nats", "nats://127.0.0.1:1"])
        .args(args)
        .output()
        .expect("run parti worker")
}

#[test]
fn bad_subscription_flags_are_refused_naming_the_flag() {
    let cases: [(&[&str], &str); 4] = [
        (&["--record", "/tmp/x.rec"], "--subscribe"),
        (&["--jetstream", "WORK"], "--subscribe"),
        (&["--subscribe", "work.*"], "--subscribe"),
        (
            &["--subscribe", "work.{keys}", "--jetstream", "bad.name"],
            "--jetstream",
        ),
    ];
    for (args, flag) in cases {
        let out = worker_with(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} should name {flag}: {stderr}"
        );
    }
    let out = worker_with(&[
        "--subscribe",
        "work.{keys}",
        "--record",
        "/nonexistent-dir/x.rec",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--record"), "{stderr}");
}
