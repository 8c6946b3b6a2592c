//! Helpers shared by the tests that run the `parti` binary.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A nats-server for a test; fails the test with a clear message when no nats-server binary
/// exists here, as every other NATS test does (a test that skips silently proves nothing).
pub fn server() -> parti::testing::NatsServer {
    use parti::testing::NatsServer;
    if let Err(e) = NatsServer::binary() {
        panic!("this test needs nats-server (./scripts/setup installs it; or set NATS_SERVER_BIN): {e}");
    }
    NatsServer::start().expect("start nats-server")
}

/// Spawns `command` with stdout piped; its stdout lines arrive on the returned channel (read
/// by a thread of its own, so a test can wait on them with a deadline).
pub fn spawn_with_lines(mut command: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn parti");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// The `parti` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_parti");

/// Runs `parti args...` to completion; fails the test if it runs past `deadline`.
pub fn run(args: &[&str], deadline: Duration) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn parti");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(output) => output.expect("wait for parti"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("parti {args:?} did not finish within {deadline:?}");
        }
    }
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends signal `name` (`TERM`, `KILL`, ...) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}
