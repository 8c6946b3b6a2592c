//! [`FaultProxy`]: a TCP proxy on loopback between a client and a server whose behaviour can
//! be switched while connections are open — the network faults `tc netem` would give, without
//! root (this kernel has no netem, see TOOLING.md).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What the proxy does with the bytes of every connection, now and later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// Bytes pass both ways at once.
    #[default]
    Pass,
    /// Every chunk is delivered `delay` plus a random `0..=jitter` later, in order.
    Delay {
        /// The fixed part of the delay.
        delay: Duration,
        /// The largest random extra delay of a chunk.
        jitter: Duration,
    },
    /// Connections stay open but every byte is dropped, both ways: the silent partition that
    /// only the client's pings detect. New connections are accepted and blackholed too.
    Blackhole,
    /// Every open connection is reset (RST) and new ones are reset as soon as accepted.
    Reset,
}

/// A TCP proxy from a loopback port to `upstream`, with a switchable [`FaultMode`]. Its tasks
/// (and every connection) end on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<FaultMode>,
    tasks: JoinSet<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1` (a port the OS picks) and forwards every connection to
    /// `upstream` (`host:port`, or a `nats://host:port` URL), starting in [`FaultMode::Pass`].
    pub async fn start(upstream: &str) -> io::Result<Self> {
        let upstream = upstream
            .trim_start_matches("nats://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, watching) = watch::channel(FaultMode::Pass);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, upstream, watching));
        Ok(FaultProxy { addr, mode, tasks })
    }

    /// `nats://127.0.0.1:<port>`: the URL a client connects to instead of the server's.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches every connection (open and future) to `mode`.
    pub fn set(&self, mode: FaultMode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        *self.mode.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, mode: watch::Receiver<FaultMode>) {
    // Connections live in this set, so dropping the accept loop ends them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let upstream = upstream.clone();
                let mode = mode.clone();
                connections.spawn(async move {
                    let _ = proxy_connection(client, &upstream, mode).await;
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn proxy_connection(
    client: TcpStream,
    upstream: &str,
    mode: watch::Receiver<FaultMode>,
) -> io::Result<()> {
    if *mode.borrow() == FaultMode::Reset {
        return reset(client);
    }
    let server = TcpStream::connect(upstream).await?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, mode.clone());
    let down = pump(server_read, client_write, mode);
    let (up, down) = tokio::join!(up, down);
    // A reset in either direction resets both sockets.
    if let (Some(a), Some(b)) = (up, down) {
        let (Ok(client), Ok(server)) = (a.0.reunite(b.1), b.0.reunite(a.1)) else {
            return Ok(());
        };
        reset(client)?;
        reset(server)?;
    }
    Ok(())
}

/// Closes `stream` with an RST instead of a FIN.
fn reset(stream: TcpStream) -> io::Result<()> {
    stream.set_zero_linger()?;
    drop(stream);
    Ok(())
}

/// Copies `from` to `to` under the current mode until either side closes (returns `None`) or
/// the mode becomes [`FaultMode::Reset`] (returns both halves, for the caller to reset).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<FaultMode>,
) -> Option<(OwnedReadHalf, OwnedWriteHalf)> {
    let mut buf = vec![0u8; 64 * 1024];
    // Delayed chunks, in order, with the instant each is due.
    let mut delayed: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    loop {
        let current = *mode.borrow_and_update();
        if current == FaultMode::Reset {
            return Some((from, to));
        }
        let due = delayed.front().map(|(at, _)| *at);
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        let _ = to.shutdown().await;
                        return None;
                    }
                    Ok(n) => n,
                };
                // The mode as of now, not as of when the read began.
                let now_mode = *mode.borrow_and_update();
                match now_mode {
                    FaultMode::Pass if delayed.is_empty() => {
                        if to.write_all(&buf[..n]).await.is_err() {
                            return None;
                        }
                    }
                    FaultMode::Pass => delayed.push_back((Instant::now(), buf[..n].to_vec())),
                    FaultMode::Delay { delay, jitter } => {
                        let at = Instant::now() + delay + random_up_to(jitter);
                        // Never before the chunk ahead: a TCP stream keeps its order.
                        let at = delayed.back().map_or(at, |(last, _)| at.max(*last));
                        delayed.push_back((at, buf[..n].to_vec()));
                    }
                    FaultMode::Blackhole => {}
                    FaultMode::Reset => return Some((from, to)),
                }
            }
            () = sleep_until(due) => {
                if let Some((_, chunk)) = delayed.pop_front() {
                    let blackholed = *mode.borrow() == FaultMode::Blackhole;
                    if blackholed {
                        continue;
                    }
                    if to.write_all(&chunk).await.is_err() {
                        return None;
                    }
                }
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A pseudo-random duration in `0..=max` (jitter needs no more than a counter-seeded mix).
fn random_up_to(max: Duration) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(x % nanos.saturating_add(1))
}
