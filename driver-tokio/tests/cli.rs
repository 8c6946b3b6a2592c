//! The `parti` binary: `demo` settles after every scripted event (in memory and on NATS),
//! `worker` processes form a fleet that `status` and `plan` read and `pin` steers, a worker
//! stops cleanly on SIGTERM, and bad arguments or an unreachable server give one clear
//! `error:` line and the right exit code.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

mod cli_support;
use cli_support::{run, server, signal, spawn_with_lines, text, BIN};
use std::time::{Duration, Instant};

/// A `parti worker` process whose stdout lines arrive on a channel.
struct WorkerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl WorkerProcess {
    fn start(args: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command.arg("worker").args(args).stderr(Stdio::piped());
        let (child, lines) = spawn_with_lines(command);
        WorkerProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `needle`; fails the test past `deadline`.
    fn wait_for(&mut self, needle: &str, deadline: Duration) -> String {
        let until = Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let mut stderr = String::new();
                    if let Ok(Some(_)) = self.child.try_wait() {
                        if let Some(mut e) = self.child.stderr.take() {
                            let _ = e.read_to_string(&mut stderr);
                        }
                    }
                    panic!(
                        "no line with {needle:?} within {deadline:?}; stdout so far:\n{}\nstderr: {stderr}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for the process to exit; fails the test past `deadline`.
    fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let pid = self.child.id();
        let until = Instant::now() + deadline;
        // Drain stdout until it closes (the process exited), then reap it.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    signal(pid, "KILL");
                    panic!(
                        "worker {pid} did not exit within {deadline:?}; stdout:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
        self.child.wait().expect("reap worker")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL: a crash, as integration tests do
        let _ = self.child.wait();
    }
}

/// The lines of a demo's output that report an event, by the event's name.
fn event_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{out}"))
}

fn check_demo_output(out: &str) {
    for name in ["start", "join", "leave", "crash", "refresh"] {
        let line = event_line(out, name);
        assert!(line.contains("settled in"), "{line}");
        if name != "start" {
            assert!(line.contains("moved"), "{line}");
        }
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("summary:") && l.contains("every partition owned exactly once")),
        "no summary line in:\n{out}"
    );
}

#[test]
fn demo_in_memory_settles_after_every_scripted_event() {
    let out = run(
        &["demo", "--workers", "3", "--partitions", "12"],
        Duration::from_secs(60),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    check_demo_output(&stdout);
    assert!(stdout.contains("in-memory KV"), "{stdout}");
    // 12 partitions, then a quarter more.
    assert!(
        event_line(&stdout, "refresh").contains("12 -> 15"),
        "{stdout}"
    );
    assert!(stdout.contains("15 partitions on 2 workers"), "{stdout}");
}

#[test]
fn demo_against_a_nats_server_settles_after_every_scripted_event() {
    let server = server();
    let url = server.url();
    let out = run(
        &[
            "demo",
            "--workers",
            "3",
            "--partitions",
            "12",
            "--nats",
            &url,
        ],
        Duration::from_secs(90),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    check_demo_output(&stdout);
    assert!(stdout.contains(&format!("NATS {url}")), "{stdout}");
}

/// Starts two workers on `url` sharing p0..p11; returns once each holds its 6 partitions.
fn two_workers(url: &str) -> (WorkerProcess, WorkerProcess) {
    let args = format!(
        "--nats {url} --partitions 12 --expected-workers 2 --heartbeat-ms 200 --ttl-ms 1000"
    );
    let args: Vec<&str> = args.split(' ').collect();
    let (mut a, mut b) = (WorkerProcess::start(&args), WorkerProcess::start(&args));
    // With expected_workers 2 the first generation has both workers, 6 partitions each.
    a.wait_for("= 6 partitions", Duration::from_secs(20));
    b.wait_for("= 6 partitions", Duration::from_secs(20));
    (a, b)
}

#[test]
fn two_workers_show_in_status_and_plan_and_stop_on_sigterm() {
    let server = server();
    let url = server.url();
    let (mut a, _b) = two_workers(&url);

    let out = run(&["status", "--nats", &url], Duration::from_secs(20));
    let status = text(&out.stdout);
    assert!(out.status.success(), "{status}\n{}", text(&out.stderr));
    assert!(status.contains("leader      worker "), "{status}");
    assert!(status.contains("generation  g"), "{status}");
    assert!(
        status.contains("workers     2 live, 12 partitions assigned"),
        "{status}"
    );
    let rows: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("  0 ") || l.starts_with("  1 "))
        .collect();
    assert_eq!(rows.len(), 2, "{status}");
    assert!(
        rows.iter().all(|r| r.trim_end().ends_with(" 6")),
        "{status}"
    );
    assert!(status.contains("consistent"), "{status}");

    let out = run(
        &["plan", "--nats", &url, "--add", "1"],
        Duration::from_secs(20),
    );
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{plan}\n{}", text(&out.stderr));
    let moved: usize = plan
        .lines()
        .find_map(|l| l.strip_prefix("moved"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no moved count in:\n{plan}"));
    // A third worker should take about a third of 12 partitions.
    assert!((3..=6).contains(&moved), "moved {moved}:\n{plan}");

    let out = run(&["explain", "--nats", &url, "p3"], Duration::from_secs(20));
    let explain = text(&out.stdout);
    assert!(out.status.success(), "{explain}\n{}", text(&out.stderr));
    assert!(explain.contains("reason"), "{explain}");

    signal(a.child.id(), "TERM");
    let status = a.wait_exit(Duration::from_secs(5));
    assert!(
        status.success(),
        "exit {status:?}; stdout:\n{}",
        a.seen.join("\n")
    );
    assert!(
        a.seen
            .iter()
            .any(|l| l.contains("SIGTERM: stopping (handing off")),
        "{:?}",
        a.seen
    );
    assert!(
        a.seen.last().is_some_and(|l| l.ends_with(" stopped")),
        "{:?}",
        a.seen
    );
    // `_b` is killed with SIGKILL on drop.
}

/// Worker `id`'s partitions in `parti status --verbose` output, ranges expanded (`p0-p2`).
fn share_of(status: &str, id: u32) -> Vec<String> {
    let mut lines = status.lines();
    lines.find(|l| l.starts_with(&format!("  {id} ")));
    let list = lines
        .next()
        .filter(|l| l.starts_with("       "))
        .unwrap_or("");
    let n = |s: &str| s[1..].parse::<u32>().expect("pN");
    let items = list.trim().split(',').filter(|i| i.starts_with('p'));
    items
        .flat_map(|i| match i.split_once('-') {
            Some((a, b)) => (n(a)..=n(b)).map(|k| format!("p{k}")).collect(),
            None => vec![i.to_string()],
        })
        .collect()
}

/// Polls `parti status --verbose` until `done` holds for its output; fails past 20 s.
fn status_until(url: &str, done: impl Fn(&str) -> bool) -> String {
    let (wait, start) = (Duration::from_secs(20), Instant::now());
    loop {
        let out = run(&["status", "--verbose", "--nats", url], wait);
        let status = text(&out.stdout);
        assert!(out.status.success(), "{status}\n{}", text(&out.stderr));
        if done(&status) {
            return status;
        }
        assert!(start.elapsed() < wait, "status never got there:\n{status}");
        std::thread::sleep(Duration::from_millis(100)); // a poll interval
    }
}

#[test]
fn a_pinned_partition_moves_to_its_worker_and_unpin_clears_the_pin() {
    let server = server();
    let (url, wait) = (server.url(), Duration::from_secs(20));
    let _workers = two_workers(&url);
    let status = status_until(&url, |s| share_of(s, 0).len() == 6);
    assert!(status.contains("\npins        none\n"), "{status}");
    let p = share_of(&status, 0)[0].clone();

    let out = run(&["pin", "--nats", &url, &p, "1"], wait);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("pinned {p} to worker 1\n"));
    let status = status_until(&url, |s| share_of(s, 1).contains(&p));
    assert!(!share_of(&status, 0).contains(&p), "{status}");
    let line = format!("\npins        {p} -> worker 1\n");
    assert!(
        status.contains(&line) && status.contains("consistent"),
        "{status}"
    );

    let out = run(&["unpin", "--nats", &url, &p], wait);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("unpinned {p}\n"));
    let status = status_until(&url, |s| s.contains("\npins        none\n"));
    assert!(
        status.contains("workers     2 live, 12 partitions"),
        "{status}"
    );

    // A prefix no worker has used is no fleet, and pinning there creates nothing.
    let out = run(&["pin", "--nats", &url, "--prefix", "none", &p, "1"], wait);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: no fleet with prefix none exists on "),
        "{stderr}"
    );
    assert!(
        stderr.contains("buckets none-leases and none-assign do not"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let out = run(&["status", "--nats", &url, "--prefix", "none"], wait);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("no buckets yet"), "{stdout}");
}

#[test]
fn plan_from_an_assignment_file_counts_the_moves_of_a_removal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("assignment.json");
    std::fs::write(
        &file,
        r#"{"0": ["a", "b", "c"], "1": ["d", "e", "f"], "2": {"capacity": 1, "partitions": ["g", "h", "i"]}}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = run(
        &["plan", "--file", file, "--remove", "2"],
        Duration::from_secs(20),
    );
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{plan}\n{}", text(&out.stderr));
    assert!(plan.contains("moved       3 of 9 partitions"), "{plan}");
    let out = run(
        &["explain", "--file", file, "g", "--remove", "2"],
        Duration::from_secs(20),
    );
    let explain = text(&out.stdout);
    assert!(out.status.success(), "{explain}\n{}", text(&out.stderr));
    assert!(explain.contains("now         worker 2"), "{explain}");
}

/// Runs parti expecting a usage error: exit 2 and one `error:` line naming `needle`.
fn usage_error(args: &[&str], needle: &str) {
    let out = run(args, Duration::from_secs(20));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

#[test]
fn bad_arguments_exit_2_with_one_helpful_error_line() {
    usage_error(&["demo", "--workers", "1"], "--workers");
    usage_error(&["demo", "--bogus"], "parti demo --help");
    usage_error(&["plan", "--nats", "nats://127.0.0.1:1"], "--add");
    usage_error(
        &[
            "plan", "--file", "x.json", "--nats", "nats://x", "--add", "1",
        ],
        "cannot be used with",
    );
    usage_error(&["worker"], "--nats");
    usage_error(
        &["worker", "--nats", "nats://127.0.0.1:1", "--ttl-ms", "500"],
        "--ttl-ms",
    );
    usage_error(
        &["plan", "--file", "/nonexistent/a.json", "--add", "1"],
        "/nonexistent/a.json",
    );
    usage_error(&["frobnicate"], "frobnicate");
    usage_error(
        &["pin", "--nats", "nats://127.0.0.1:1", "a..b", "1"],
        "\"a..b\" is not a partition ID",
    );
    usage_error(
        &["unpin", "--nats", "nats://127.0.0.1:1", "a..b"],
        "\"a..b\"",
    );
    usage_error(&["pin", "p1", "1"], "--nats");
}

#[test]
fn an_unreachable_server_is_a_runtime_error_naming_the_url() {
    for args in [
        &["worker", "--nats", "nats://127.0.0.1:1"][..],
        &["status", "--nats", "nats://127.0.0.1:1"][..],
    ] {
        let out = run(args, Duration::from_secs(30));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: cannot connect to NATS at nats://127.0.0.1:1"),
            "{stderr}"
        );
    }
}
