//! `parti status --json` and `--watch` against real `parti worker` processes on a real
//! nats-server: the document's fields (version, leader, generation, workers, owned counts that
//! sum to the partition count, heartbeat ages, drains); `--watch` redrawing (plain blocks on a
//! pipe, one JSON document per line with `--json`, in place and in colour on a terminal); and
//! `parti worker --window-ms` leaving a SIGTERMed `--restart` worker's share parked for the
//! restart grace.

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod cli_support;
use cli_support::{run, server, signal, spawn_with_lines, text, BIN};

const DEADLINE: Duration = Duration::from_secs(20);
const PARTITIONS: u64 = 12;

/// A `parti` process whose stdout lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let mut command = Command::new(BIN);
        command.args(args).stderr(Stdio::null());
        let (child, lines) = spawn_with_lines(command);
        Proc { child, lines }
    }

    /// Worker `id` of a fleet of two on `url`, with more flags.
    fn worker(url: &str, id: u32, extra: &[&str]) -> Proc {
        let id = id.to_string();
        let partitions = PARTITIONS.to_string();
        let mut args = vec![
            "worker",
            "--nats",
            url,
            "--partitions",
            &partitions,
            "--id-preferred",
            &id,
            "--expected-workers",
            "2",
            "--heartbeat-ms",
            "200",
            // A fence window (TTL - safety margin) of 2.25 s: a worker starved of CPU for a
            // moment (the tests run under load too) is not taken for a crash.
            "--ttl-ms",
            "3000",
            "--window-ms",
            "300",
        ];
        args.extend(extra);
        Proc::start(&args)
    }

    /// The next stdout line, within what is left of `until`.
    fn line(&self, until: Instant) -> String {
        let left = until.saturating_duration_since(Instant::now());
        self.lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no stdout line in time: {e}"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `parti status --json` once, parsed.
fn status(url: &str) -> Value {
    let out = run(&["status", "--json", "--nats", url], DEADLINE);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// Polls `parti status --json` until `done` holds; fails past [`DEADLINE`].
fn status_until(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = status(url);
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < DEADLINE, "never {what}:\n{s:#}");
        std::thread::sleep(Duration::from_millis(100)); // a poll interval
    }
}

/// Every partition owned, by two live workers that applied the committed generation, with
/// nothing inconsistent.
fn settled(s: &Value) -> bool {
    s["consistent"] == true
        && s["totals"]["live_workers"] == 2
        && s["totals"]["owned"] == PARTITIONS
        && s["state"] == "stable"
        && s["workers"]
            .as_array()
            .is_some_and(|w| w.iter().all(|w| w["state"] == "live"))
}

#[test]
fn status_json_describes_a_running_fleet() {
    let server = server();
    let url = server.url();
    let _a = Proc::worker(&url, 0, &["--capacity", "2"]);
    let _b = Proc::worker(&url, 1, &[]);
    let s = status_until(&url, "settled", settled);
    assert_eq!(s["v"], 1);
    assert_eq!(s["prefix"], "parti");
    assert_eq!(s["nats"], url.as_str());
    assert!(s["time_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    let leader = s["leader"]["worker"].as_u64().expect("a leader");
    let generation = &s["generation"];
    assert!(generation["generation"].as_u64().unwrap() >= 1, "{s:#}");
    assert!(generation["epoch"].as_u64().unwrap() >= 1, "{s:#}");
    assert_eq!(generation["phase"], "stable");
    assert!(generation["trigger"].is_string(), "{s:#}");
    assert_eq!(generation["members"], 2);
    let workers = s["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{s:#}");
    let mut owned = 0;
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w["id"], i as u64);
        assert_eq!(w["state"], "live");
        assert_eq!(w["leader"], i as u64 == leader);
        assert_eq!(w["token"].as_str().unwrap().len(), 8);
        assert_eq!(w["applied"], generation["generation"]);
        // Renewed every 200 ms (the bound leaves room for a slow read on a busy machine).
        assert!(w["heartbeat_age_ms"].as_u64().unwrap() < 3000, "{w}");
        assert!(w["owned_weight"].is_null() && w.get("partitions").is_none());
        owned += w["owned"].as_u64().unwrap();
    }
    assert_eq!(owned, PARTITIONS);
    // Capacity 2 against 1: worker 0 carries twice the share.
    assert_eq!(workers[0]["capacity"], 2);
    assert_eq!(workers[0]["owned"], 8);
    assert_eq!(s["totals"]["capacity"], 3);
    assert_eq!(s["pins"], serde_json::json!([]));
    assert_eq!(s["drains"], serde_json::json!([]));
    assert_eq!(s["warnings"], serde_json::json!([]));

    // --verbose lists every partition; a partitions file gives weights.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("partitions.txt");
    let lines: Vec<String> = (0..PARTITIONS).map(|i| format!("p{i} 10")).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let args = ["status", "--json", "--verbose", "--nats", &url];
    let out = run(
        &[&args[..], &["--partitions-file", file.to_str().unwrap()]].concat(),
        DEADLINE,
    );
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let w0 = &s["workers"][0];
    assert_eq!(w0["partitions"].as_array().unwrap().len(), 8, "{s:#}");
    assert_eq!(w0["owned_weight"], 80);
    assert_eq!(s["totals"]["owned_weight"], 120);
}

#[test]
fn status_watch_redraws_until_killed() {
    let server = server();
    let url = server.url();
    let _a = Proc::worker(&url, 0, &[]);
    let _b = Proc::worker(&url, 1, &[]);
    status_until(&url, "settled", settled);

    // On a pipe: plain blocks, each starting with its `fleet` line; no escape codes.
    let watch = Proc::start(&["status", "--watch", "--interval-ms", "200", "--nats", &url]);
    let until = Instant::now() + DEADLINE;
    let (mut blocks, mut current, mut complete) = (0, Vec::new(), Vec::new());
    while blocks < 3 {
        let line = watch.line(until);
        assert!(!line.contains('\x1b'), "{line:?}");
        if line.starts_with("fleet ") {
            blocks += 1;
            complete = std::mem::take(&mut current);
        }
        current.push(line);
    }
    // The second block, whole (the third has begun).
    let block = complete.join("\n");
    assert!(
        block.contains("workers     2 live, 12 partitions assigned"),
        "{block}"
    );
    drop(watch);

    // With --json: one document per line, a new one each interval.
    let watch = Proc::start(&[
        "status",
        "--watch",
        "--json",
        "--interval-ms",
        "200",
        "--nats",
        &url,
    ]);
    let until = Instant::now() + DEADLINE;
    let times: Vec<u64> = (0..2)
        .map(|_| {
            let line = watch.line(until);
            let s: Value = serde_json::from_str(&line).expect("one JSON document per line");
            assert_eq!(s["totals"]["owned"], PARTITIONS, "{s:#}");
            s["time_unix_ms"].as_u64().unwrap()
        })
        .collect();
    assert!(times[1] >= times[0] + 150, "{times:?}");
}

#[test]
fn status_watch_on_a_terminal_redraws_in_place_with_colour() {
    let server = server();
    let url = server.url();
    let _a = Proc::worker(&url, 0, &[]);
    let _b = Proc::worker(&url, 1, &[]);
    status_until(&url, "settled", settled);
    // util-linux `script` gives the command a terminal and copies what it prints.
    let command = format!("{BIN} status --watch --interval-ms 200 --nats {url}");
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn script");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let until = Instant::now() + DEADLINE;
    let mut seen = String::new();
    let clear = "\x1b[H\x1b[2J";
    while seen.matches(clear).count() < 3 {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Err(e) => panic!("{e}: two redraws expected, got:\n{seen:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // Each redraw clears the screen and paints the consistent line green.
    let frame = seen.split(clear).nth(1).unwrap();
    assert!(frame.contains("fleet       "), "{frame:?}");
    assert!(frame.contains("\x1b[32mconsistent:"), "{frame:?}");
}

#[test]
fn a_sigtermed_restart_worker_stays_parked_despite_a_short_window() {
    let server = server();
    let url = server.url();
    let a = Proc::worker(&url, 0, &[]);
    // --restart: SIGTERM parks the share for the restart grace (the default hands it off).
    let b = Proc::worker(&url, 1, &["--restart"]);
    let until = Instant::now() + DEADLINE;
    let timings = loop {
        let line = a.line(until);
        if line.contains(" timings: ") {
            break line;
        }
    };
    assert!(
        timings.contains("cold start window 300ms, scale window 300ms")
            && timings.contains("restart grace 30s"),
        "{timings}"
    );
    status_until(&url, "settled", settled);
    signal(b.child.id(), "TERM");
    // Departing, then (its lease no longer renewed) a member without a lease.
    status_until(&url, "worker 1 stopped", |s| {
        s["workers"][1]["state"] != "live"
    });
    // --window-ms 300 is no restart grace: for well over 300 ms worker 1's share stays
    // parked (with it), not granted to worker 0.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let s = status(&url);
        assert_eq!(s["workers"][0]["owned"], PARTITIONS / 2, "{s:#}");
        std::thread::sleep(Duration::from_millis(100)); // a poll interval
    }
    drop(a);
}
