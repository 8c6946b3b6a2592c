//! The processes of a chaos run: the NATS servers (one, or a cluster), and one slot per worker,
//! each slot a `parti worker` process behind its own fault proxies (one per server). Every
//! process is killed when its owner is dropped (also on a panic or Ctrl-C in the runner).

use parti::testing::{FaultMode, FaultProxy, NatsCluster, NatsServer};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The NATS side: one server, or a routed cluster.
pub enum Servers {
    /// A single server (R1 buckets and stream).
    One(NatsServer),
    /// A cluster (buckets and stream replicated on every node).
    Cluster(NatsCluster),
}

impl Servers {
    /// Starts one server (`size` 1) or a cluster of `size` nodes, and waits until it serves.
    pub async fn start(size: usize) -> io::Result<Self> {
        if size == 1 {
            let server = tokio::task::spawn_blocking(NatsServer::start)
                .await
                .map_err(io::Error::other)??;
            Ok(Servers::One(server))
        } else {
            Ok(Servers::Cluster(NatsCluster::start(size).await?))
        }
    }

    /// How many servers.
    pub fn len(&self) -> usize {
        match self {
            Servers::One(_) => 1,
            Servers::Cluster(c) => c.len(),
        }
    }

    /// Every server's client URL, in node order.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Servers::One(s) => vec![s.url()],
            Servers::Cluster(c) => c.urls(),
        }
    }

    /// Node `i` itself.
    fn node(&mut self, i: usize) -> &mut NatsServer {
        match self {
            Servers::One(s) => s,
            Servers::Cluster(c) => c.node(i),
        }
    }

    /// Whether node `i` runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.node(i).is_running()
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        tokio::task::block_in_place(|| self.node(i).kill());
    }

    /// Starts node `i` again (same port and store) and waits until it listens.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        tokio::task::block_in_place(|| self.node(i).restart())
    }

    /// The node leading `stream`: always 0 for one server; `None` without a leader.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        match self {
            Servers::One(_) => Some(0),
            Servers::Cluster(c) => c.stream_leader(stream).await,
        }
    }

    /// Whether every replica of every stream in `streams` is current (always for one server
    /// that runs).
    pub async fn replicas_current(&self, streams: &[String]) -> bool {
        match self {
            Servers::One(_) => true,
            Servers::Cluster(c) => {
                for s in streams {
                    if !c.stream_replicas_current(s).await {
                        return false;
                    }
                }
                true
            }
        }
    }
}

/// What every worker process is started with.
pub struct WorkerSpec {
    /// The `parti` binary.
    pub bin: PathBuf,
    /// Where logs and record files go.
    pub dir: PathBuf,
    /// Flags shared by every worker (everything but `--nats`, `--id-preferred`, `--record`).
    pub flags: Vec<String>,
}

/// One worker slot: its proxies (kept across restarts) and its current process.
pub struct Slot {
    /// The slot's number (also the worker's preferred ID).
    pub index: usize,
    proxies: Vec<FaultProxy>,
    process: Option<Child>,
    /// How many processes this slot has started.
    pub incarnations: usize,
    /// When the blackhole on this slot's proxies ends, if one is on.
    pub blackholed_until: Option<Instant>,
    /// When to start the process again after a kill or a stop, if it is down.
    pub restart_at: Option<Instant>,
}

impl Slot {
    /// A slot with one proxy per server URL; no process yet.
    pub async fn new(index: usize, urls: &[String]) -> io::Result<Self> {
        let mut proxies = Vec::new();
        for url in urls {
            proxies.push(FaultProxy::start(url).await?);
        }
        Ok(Slot {
            index,
            proxies,
            process: None,
            incarnations: 0,
            blackholed_until: None,
            restart_at: None,
        })
    }

    /// The record file of incarnation `n` of this slot.
    pub fn record_path(dir: &Path, slot: usize, n: usize) -> PathBuf {
        dir.join(format!("w{slot}-{n}.rec"))
    }

    /// Starts a new `parti worker` process (killed with SIGKILL if the slot is dropped).
    pub fn start(&mut self, spec: &WorkerSpec) -> io::Result<()> {
        let n = self.incarnations;
        let log = std::fs::File::create(spec.dir.join(format!("w{}-{n}.log", self.index)))?;
        let urls: Vec<String> = self.proxies.iter().map(FaultProxy::url).collect();
        let child = Command::new(&spec.bin)
            .arg("worker")
            .args(["--nats", &urls.join(",")])
            .args(["--id-preferred", &self.index.to_string()])
            .arg("--record")
            .arg(Self::record_path(&spec.dir, self.index, n))
            .args(&spec.flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.process = Some(child);
        self.incarnations += 1;
        self.restart_at = None;
        Ok(())
    }

    /// Whether the slot's process runs (started, not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the process and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERMs the process (a graceful stop) and waits for it to exit; SIGKILL after
    /// `deadline`. Returns whether it exited by itself, and how long that took.
    pub async fn terminate(&mut self, deadline: Duration) -> (bool, Duration) {
        let began = Instant::now();
        let Some(mut child) = self.process.take() else {
            return (true, Duration::ZERO);
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(deadline, child.wait()).await {
            Ok(_) => (true, began.elapsed()),
            Err(_) => {
                let _ = child.kill().await;
                (false, began.elapsed())
            }
        }
    }

    /// Switches every proxy of the slot to `mode`.
    pub fn set_network(&self, mode: FaultMode) {
        for p in &self.proxies {
            p.set(mode);
        }
    }
}
