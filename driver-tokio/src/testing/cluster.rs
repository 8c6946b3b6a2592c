//! [`NatsCluster`]: three (or more) `nats-server` processes routed into one JetStream cluster
//! on loopback, for tests of R3 buckets and of servers that die.

use super::{free_port, NatsServer};
use std::io;
use std::time::{Duration, Instant};

/// The cluster's name (`--cluster_name`).
const CLUSTER_NAME: &str = "parti-test";

/// How long [`NatsCluster::start`] waits for a JetStream meta leader and a replicated stream.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// How many times a start is tried when a picked route port was taken in between.
const START_ATTEMPTS: usize = 3;

/// A routed cluster of `nats-server -js` processes, node `i` named `n<i>`, each with its own
/// random client port, route port and store directory. Every node is killed and its directory
/// removed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other and returns once JetStream has a meta leader
    /// and a stream with `size` replicas can be created (and was deleted again).
    pub async fn start(size: usize) -> io::Result<Self> {
        if size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cluster needs at least one node",
            ));
        }
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(size).await {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("cluster did not start")))
    }

    async fn try_start(size: usize) -> io::Result<Self> {
        let routes = (0..size)
            .map(|_| free_port())
            .collect::<io::Result<Vec<u16>>>()?;
        let mut nodes = Vec::with_capacity(size);
        for (i, route) in routes.iter().enumerate() {
            let others = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",");
            let name = format!("n{i}");
            let listen = format!("nats://127.0.0.1:{route}");
            let mut args = vec![
                "-n",
                &name,
                "--cluster_name",
                CLUSTER_NAME,
                "-cluster",
                &listen,
            ];
            if !others.is_empty() {
                args.extend(["-routes", others.as_str()]);
            }
            nodes.push(NatsServer::start_with(&args)?);
        }
        let cluster = NatsCluster { nodes };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Waits until a stream replicated on every node can be created through node 0.
    async fn wait_ready(&self) -> io::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        let client = loop {
            match async_nats::connect(self.nodes[0].url()).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => {
                    return Err(io::Error::other(format!("cannot connect to n0: {e}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let js = async_nats::jetstream::new(client);
        let config = async_nats::jetstream::stream::Config {
            name: "PARTI_CLUSTER_READY".into(),
            subjects: vec!["parti.cluster.ready".into()],
            num_replicas: self.nodes.len(),
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        };
        loop {
            match js.create_stream(config.clone()).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no replicated stream within {READY_DEADLINE:?}: {e}"),
                    ))
                }
                // No meta leader yet, or not every peer known: try again.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        js.delete_stream(&config.name)
            .await
            .map_err(|e| io::Error::other(format!("cannot delete the probe stream: {e}")))?;
        Ok(())
    }

    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never: [`NatsCluster::start`] refuses 0).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The client URL of every node, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Node `i` itself (its port, store directory, whether it runs).
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// Kills node `i` with SIGKILL. No-op if it is not running.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again (killing it first if it runs) with the same ports and store
    /// directory; returns once it listens for clients (it then catches up with the others).
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.nodes[i].restart()
    }

    /// Whether `stream` has a leader and every one of its replicas is current (a restarted
    /// node has caught up), as the first node that answers reports it.
    pub async fn stream_replicas_current(&self, stream: &str) -> bool {
        for node in &self.nodes {
            let Some(info) = stream_info(&node.url(), stream).await else {
                continue;
            };
            let Some(cluster) = info.cluster else {
                return false;
            };
            let peers = self.nodes.len().saturating_sub(1);
            return cluster.leader.is_some()
                && cluster.replicas.len() == peers
                && cluster.replicas.iter().all(|r| r.current);
        }
        false
    }

    /// Stops node `i` gracefully (SIGTERM) and starts it again with the same ports and store
    /// directory: one step of an operator's rolling restart.
    pub fn restart_graceful(&mut self, i: usize) -> io::Result<()> {
        self.nodes[i].restart_graceful()
    }

    /// The index of the node leading `stream` (from the stream info's cluster leader), asked
    /// through any node that answers; `None` when no node names a leader (e.g. no quorum).
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        for node in &self.nodes {
            let Some(info) = stream_info(&node.url(), stream).await else {
                continue;
            };
            let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
            if let Some(index) = leader.and_then(|name| name.strip_prefix('n')?.parse().ok()) {
                return Some(index);
            }
        }
        None
    }
}

/// The info of `stream` asked through the server at `url`; `None` if it does not answer (a
/// killed node refuses the connection at once).
async fn stream_info(url: &str, stream: &str) -> Option<async_nats::jetstream::stream::Info> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .ok()?;
    let js = async_nats::jetstream::new(client);
    let mut found = js.get_stream(stream).await.ok()?;
    found.info().await.ok().cloned()
}
