//! Metrics and logs of real workers: `parti worker --metrics-addr` serves `/metrics` over HTTP,
//! scraped here with a plain HTTP/1.1 GET and parsed with `prometheus-parse`; the counters move
//! on a join, a graceful leave and a crash (SIGKILL). Workers built in one process share one
//! registry, told apart by labels. A token-authenticated worker never logs its token, in
//! either log format, even at `RUST_LOG=trace`; the leader logs each decision with its reason;
//! `parti demo` honours `RUST_LOG` and `--log-format json`.

mod common;

use common::bin::parti_bin;
use common::DEADLINE;
use parti::testing::NatsServer;
use parti::Worker;
use prometheus_parse::{Scrape, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: usize = 24;

/// One `parti worker` process with `--metrics-addr 127.0.0.1:0`; SIGKILLed on drop.
struct MetricsWorker {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    /// `127.0.0.1:PORT` of its `/metrics`, read from its first lines.
    addr: String,
}

impl MetricsWorker {
    async fn spawn(server: &NatsServer, prefix: &str, name: &str, extra: &[&str]) -> Self {
        let stdout = server.store_dir().join(format!("{name}.out"));
        let stderr = server.store_dir().join(format!("{name}.err"));
        let child = Command::new(parti_bin())
            .args(["worker", "--nats", &server.url(), "--prefix", prefix])
            .args(["--partitions", &PARTITIONS.to_string()])
            .args(["--expected-workers", "2", "--heartbeat-ms", "200"])
            .args(["--ttl-ms", "1000", "--window-ms", "300"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "parti=info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn parti worker");
        let mut w = MetricsWorker {
            child: Some(child),
            stdout,
            stderr,
            addr: String::new(),
        };
        let path = w.stdout.clone();
        let (addr, _) = common::wait_for_async(DEADLINE, "the metrics address is logged", || {
            let path = path.clone();
            async move {
                let out = std::fs::read_to_string(&path).unwrap_or_default();
                out.lines()
                    .find_map(|l| l.split("metrics: http://").nth(1))
                    .and_then(|rest| rest.strip_suffix("/metrics"))
                    .map(str::to_string)
                    .ok_or_else(|| "not yet".to_string())
            }
        })
        .await;
        w.addr = addr;
        w
    }

    /// GET /metrics, parsed.
    fn scrape(&self) -> Result<Metrics, String> {
        let body = http_get(&self.addr, "/metrics")?;
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .map_err(|e| format!("unparsable exposition: {e}"))?;
        Ok(Metrics(scrape))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM, then waits for the exit.
    async fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let started = Instant::now();
        while child.try_wait().expect("try_wait").is_none() {
            assert!(started.elapsed() < DEADLINE, "the worker did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("{out}{err}")
    }
}

impl Drop for MetricsWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP/1.1 GET; the body of a 200 answer.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no end of headers")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {head}"));
    }
    Ok(body.to_string())
}

/// A parsed scrape.
struct Metrics(Scrape);

impl Metrics {
    /// The sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                Value::Summary(_) => 0.0,
            })
            .sum()
    }

    fn is_leader(&self) -> bool {
        self.sum("parti_is_leader", &[]) == 1.0
    }

    fn owned(&self) -> f64 {
        self.sum("parti_partitions_owned", &[])
    }

    fn stable(&self) -> bool {
        self.sum("parti_state", &[("state", "stable")]) == 1.0
    }

    fn rebalances(&self) -> f64 {
        self.sum("parti_rebalances_total", &[])
    }

    fn moved(&self, direction: &str) -> f64 {
        self.sum("parti_partitions_moved_total", &[("direction", direction)])
    }
}

/// Scrapes every worker until `check` accepts the scrapes (in `workers` order).
async fn wait_scrapes<T>(
    workers: &[&MetricsWorker],
    what: &str,
    check: impl Fn(&[Metrics]) -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        let scrapes: Result<Vec<Metrics>, String> = workers.iter().map(|w| w.scrape()).collect();
        let reason = match scrapes.and_then(|s| check(&s)) {
            Ok(v) => return v,
            Err(reason) => reason,
        };
        if started.elapsed() > DEADLINE {
            let logs: Vec<String> = workers.iter().map(|w| w.logs()).collect();
            panic!(
                "timed out waiting until {what}: {reason}; logs:\n{}",
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `Ok(leader index)` when every scrape is stable, exactly one leads, and together they own
/// every partition.
fn settled(s: &[Metrics]) -> Result<usize, String> {
    let leaders: Vec<usize> = (0..s.len()).filter(|i| s[*i].is_leader()).collect();
    let owned: f64 = s.iter().map(Metrics::owned).sum();
    if leaders.len() != 1 || owned != PARTITIONS as f64 || !s.iter().all(Metrics::stable) {
        return Err(format!(
            "leaders {leaders:?}, owned {owned}, stable {:?}",
            s.iter().map(Metrics::stable).collect::<Vec<_>>()
        ));
    }
    Ok(leaders[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_move_on_a_join_a_leave_and_a_crash() {
    tokio::task::spawn_blocking(parti_bin)
        .await
        .expect("locating the parti binary");
    let server = NatsServer::start().expect("start nats-server");
    let prefix = "metrics-jlc";
    let a = MetricsWorker::spawn(&server, prefix, "a", &[]).await;
    let b = MetricsWorker::spawn(&server, prefix, "b", &[]).await;
    let leader = wait_scrapes(&[&a, &b], "a and b settle", settled).await;
    // ab[0] leads from here on; ab[1] (`other`) crashes at the end.
    let mut ab = if leader == 0 { [a, b] } else { [b, a] };
    let other = 1;
    let before = wait_scrapes(&[&ab[0], &ab[other]], "a first scrape", |s| {
        Ok((s[0].rebalances(), s[0].moved("out") + s[1].moved("out")))
    })
    .await;
    assert!(before.0 >= 1.0, "the cold start committed a generation");

    // Join: c gains partitions, the others give some up, the leader commits.
    let mut c = MetricsWorker::spawn(&server, prefix, "c", &[]).await;
    let after_join = wait_scrapes(&[&ab[0], &ab[other], &c], "c joined", |s| {
        settled(s)?;
        if s[2].owned() == 0.0 {
            return Err("c owns nothing yet".into());
        }
        Ok((s[0].rebalances(), s[2].moved("in")))
    })
    .await;
    assert!(after_join.0 > before.0, "join: rebalances {after_join:?}");
    let by_reason = |w: &MetricsWorker, reason: &str| {
        w.scrape()
            .expect("scrape")
            .sum("parti_rebalances_total", &[("reason", reason)])
    };
    assert!(by_reason(&ab[0], "join") >= 1.0, "a rebalance for the join");
    assert!(after_join.1 > 0.0, "join: c's partitions_moved in");
    let survivors_in = |s: &[Metrics]| s[0].moved("in") + s[1].moved("in");
    let in_before_leave =
        wait_scrapes(&[&ab[0], &ab[other]], "scrape", |s| Ok(survivors_in(s))).await;

    // Leave (SIGTERM hands off by default): its partitions come back to the others.
    c.terminate().await;
    let after_leave = wait_scrapes(&[&ab[0], &ab[other]], "c left", |s| {
        settled(s)?;
        Ok((s[0].rebalances(), survivors_in(s)))
    })
    .await;
    assert!(after_leave.0 > after_join.0, "leave: rebalances");
    assert!(
        after_leave.1 > in_before_leave,
        "leave: partitions moved in"
    );
    assert!(
        by_reason(&ab[0], "leave") >= 1.0,
        "a rebalance for the leave"
    );

    // Crash (SIGKILL of the follower): the leader sees it, and takes its partitions.
    let crashed_before = wait_scrapes(&[&ab[0]], "scrape", |s| {
        Ok(s[0].sum("parti_warnings_total", &[("kind", "worker_crashed")]))
    })
    .await;
    ab[other].kill();
    let after_crash = wait_scrapes(&[&ab[0]], "the crash is handled", |s| {
        if s[0].owned() != PARTITIONS as f64 || !s[0].stable() {
            return Err(format!("owned {}", s[0].owned()));
        }
        Ok((
            s[0].rebalances(),
            s[0].moved("in"),
            s[0].sum("parti_warnings_total", &[("kind", "worker_crashed")]),
            s[0].sum("parti_rebalances_total", &[("reason", "emergency")]),
        ))
    })
    .await;
    assert!(after_crash.0 > after_leave.0, "crash: rebalances");
    assert!(
        after_crash.2 > crashed_before,
        "crash: worker_crashed warning"
    );
    assert!(after_crash.3 >= 1.0, "crash: an emergency rebalance");
    // The leader logged each decision with its reason and the partitions it moved.
    let logs = ab[0].logs();
    for reason in ["cold_start", "join", "leave", "emergency"] {
        let needle = format!("reason=\"{reason}\"");
        assert!(
            logs.lines()
                .any(|l| l.contains("generation committed") && l.contains(&needle)),
            "no {needle} decision in the leader's log:\n{logs}"
        );
    }
    assert!(logs.contains(" moved="), "{logs}");
    // KV latencies and lease renewals were measured all along.
    let s = ab[0].scrape().expect("scrape");
    assert!(s.sum("parti_lease_renew_seconds", &[]) > 0.0);
    assert!(
        s.sum(
            "parti_kv_operation_seconds",
            &[("bucket", "leases"), ("op", "update"), ("result", "ok")]
        ) > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_metrics_address_is_a_clear_usage_error() {
    let bin = tokio::task::spawn_blocking(parti_bin)
        .await
        .expect("locating the parti binary");
    let out = Command::new(bin)
        .args(["worker", "--nats", "nats://127.0.0.1:1"])
        .args(["--metrics-addr", "localhost"])
        .output()
        .expect("run parti worker");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics-addr \"localhost\": not an IP:PORT address"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_one_process_share_a_registry_told_apart_by_labels() {
    let server = NatsServer::start().expect("start nats-server");
    let prefix = "metrics-shared";
    let mut registry = parti::metrics::Registry::default();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let config = common::config(prefix, 2);
        let (kv, connection) =
            parti::kv::NatsKv::connect(&common::nats_options(&server.url()), &config)
                .await
                .expect("connect");
        let handle = Worker::builder()
            .config(config)
            .nats(kv)
            .connection_events(connection)
            .partitions(common::partitions(0..PARTITIONS))
            .metrics(&mut registry)
            .start()
            .await
            .expect("start");
        handles.push(handle);
    }
    let encode = |r: &parti::metrics::Registry| {
        let mut text = String::new();
        parti::metrics::prometheus_client::encoding::text::encode(&mut text, r).expect("encode");
        text
    };
    common::wait_until(DEADLINE, "both workers own partitions", || {
        handles.iter().all(|h| !h.assignment().is_empty())
    })
    .await;
    let text = encode(&registry);
    let scrape = Metrics(
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse the exposition"),
    );
    for h in &handles {
        let id = h.worker_id().expect("claimed").0.to_string();
        let owned = scrape.sum(
            "parti_partitions_owned",
            &[("prefix", prefix), ("worker_id", &id)],
        );
        assert!(owned > 0.0, "worker {id}: {text}");
    }
    assert_eq!(
        text.matches("# TYPE parti_partitions_owned gauge").count(),
        1,
        "one family for both workers"
    );
    for h in &handles {
        h.stop().await.expect("stop");
    }
    // A stopped worker's gauges go away; its counters stay.
    let text = encode(&registry);
    assert!(
        !text.contains(&format!("parti_partitions_owned{{prefix=\"{prefix}\"")),
        "{text}"
    );
    assert!(text.contains(&format!(
        "parti_partitions_moved_total{{prefix=\"{prefix}\""
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_authenticated_worker_never_logs_its_token() {
    const TOKEN: &str = "s3cr3t-T0KEN-do-not-log";
    tokio::task::spawn_blocking(parti_bin)
        .await
        .expect("locating the parti binary");
    let server = NatsServer::start_with(&["--auth", TOKEN]).expect("start nats-server");
    for format in ["pretty", "json"] {
        let prefix = format!("metrics-token-{format}");
        let dir = server.store_dir().join(format!("token-{format}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let stdout = dir.join("out");
        let stderr = dir.join("err");
        let mut child = Command::new(parti_bin())
            .args(["worker", "--nats", &server.url(), "--token", TOKEN])
            .args(["--prefix", &prefix, "--partitions", "4"])
            .args(["--expected-workers", "1", "--heartbeat-ms", "200"])
            .args(["--ttl-ms", "1000", "--window-ms", "300"])
            .args(["--log-format", format])
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout"))
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("spawn parti worker");
        let read = || {
            let out = std::fs::read_to_string(&stdout).unwrap_or_default();
            let err = std::fs::read_to_string(&stderr).unwrap_or_default();
            (out, err)
        };
        let wait = common::wait_for_async(DEADLINE, "the worker owns its partitions", || {
            let (out, _) = read();
            async move {
                if out.contains("= 4 partitions") {
                    Ok(())
                } else {
                    Err(out)
                }
            }
        });
        wait.await;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        child.wait().expect("reap");
        let (out, err) = read();
        assert!(
            err.contains("state changed") && err.contains("generation committed"),
            "{format}: the logs were on: {err}"
        );
        if format == "json" {
            for line in err.lines() {
                assert!(line.starts_with('{'), "json log line: {line}");
            }
        }
        assert!(!out.contains(TOKEN), "{format}: stdout shows the token");
        assert!(!err.contains(TOKEN), "{format}: stderr shows the token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parti_demo_honours_rust_log_and_writes_json_logs() {
    let bin = tokio::task::spawn_blocking(parti_bin)
        .await
        .expect("locating the parti binary");
    let out = Command::new(bin)
        .args(["demo", "--workers", "2", "--partitions", "8"])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "parti=info")
        .output()
        .expect("run parti demo");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().count() > 10, "info events were logged: {err}");
    for line in err.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "not a JSON log line: {line}"
        );
    }
    assert!(
        err.contains("\"message\":\"generation committed\""),
        "{err}"
    );
    assert!(
        err.contains("\"span\":{"),
        "events carry the worker span: {err}"
    );
    // Without RUST_LOG: warnings only (the demo's crash), never the info events.
    let quiet = Command::new(bin)
        .args(["demo", "--workers", "2", "--partitions", "8"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run parti demo");
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert!(!err.contains("INFO"), "{err}");
}
