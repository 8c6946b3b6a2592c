//! The simulated NATS connection of every node: KV requests and replies, watches, delays, drops,
//! isolation and KV outages, on top of a [`MemKv`].
//!
//! [`Network`] is sans-IO like the rest of the core: it owns its own timed queue; the caller
//! asks [`Network::next_at`] for the time of its next event and calls [`Network::step`] to
//! process it, which yields the [`Delivery`]s (inputs for node processes) and the KV changes
//! that event caused. [`crate::sim::Sim`] interleaves it with its own events.
//!
//! The model:
//! - a KV request reaches the KV after a seeded delay and its reply takes another; the client
//!   always gets exactly one answer: the reply, or [`KvResult::TimedOut`] after
//!   [`NetConfig::client_timeout`];
//! - with [`NetConfig::drop_prob`] a request is lost; with [`NetConfig::late_land_prob`] a lost
//!   write still lands later, after its client may have timed out (its reply is never seen);
//! - a request sent (or in flight) while its node cannot reach the KV (isolated, or KV outage)
//!   is buffered by the client and sent when the connection returns, landing with
//!   [`NetConfig::buffered_land_prob`], as async-nats does; a reply that finds its node cut off
//!   is lost;
//! - a watch takes its snapshot when its request reaches the KV, then queues every matching
//!   change; each watch delivers in order (a delivery is never earlier than the previous one of
//!   the same watch); deliveries to a cut-off node are held and resume after the heal;
//! - a node is told `Input::Connection(false)` a seeded moment after it is cut off (as a
//!   driver's ping notices), and `Connection(true)` when it is back;
//! - writes of a crashed process that are already in flight still land.

use super::kv::MemKv;
use super::queue::Queue;
use super::{rand_between, NodeId};
use crate::{Action, Bucket, Entry, Input, Instant, KvOp, KvResult, RequestId, Rng, WatchId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Delays and failure rates of the simulated network. All ranges are inclusive `(min, max)`,
/// drawn uniformly from the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// One-way delay of a KV request, and again of its reply. Default 0.1–2 ms.
    pub kv_delay: (Duration, Duration),
    /// Delay from a KV change to its delivery on a watch. Default 0.1–2 ms.
    pub watch_delay: (Duration, Duration),
    /// How long a client waits for a KV reply before it gets `TimedOut`. Default 5 s.
    pub client_timeout: Duration,
    /// Probability that a KV request is lost on the way. Default 0.
    pub drop_prob: f64,
    /// Probability that a lost write lands anyway, at a seeded moment within two client
    /// timeouts. Default 0.5.
    pub late_land_prob: f64,
    /// Probability that a write buffered while the node was cut off lands after the heal.
    /// Default 1 (what async-nats does when its buffer holds it).
    pub buffered_land_prob: f64,
    /// How long after a cut a node is told `Connection(false)`. Default 0–500 ms.
    pub notice_delay: (Duration, Duration),
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            kv_delay: (Duration::from_micros(100), Duration::from_millis(2)),
            watch_delay: (Duration::from_micros(100), Duration::from_millis(2)),
            client_timeout: Duration::from_secs(5),
            drop_prob: 0.0,
            late_land_prob: 0.5,
            buffered_land_prob: 1.0,
            notice_delay: (Duration::ZERO, Duration::from_millis(500)),
        }
    }
}

/// An input for one process: node `node`, incarnation `incarnation`.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The node.
    pub node: NodeId,
    /// The process on that node the input is for (deliveries to older ones are discarded).
    pub incarnation: u32,
    /// The input.
    pub input: Input,
}

/// A change the KV made, and who wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The entry written (a Put, or a Delete or Purge marker), as watchers receive it.
    pub entry: Entry,
    /// The process whose request wrote it (node, incarnation); `None` for expiry markers and
    /// operators' writes.
    pub by: Option<(NodeId, u32)>,
}

/// Counters of what the network did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// KV requests sent by clients.
    pub requests: u64,
    /// KV operations applied to the KV (late and buffered ones included).
    pub applied: u64,
    /// Requests lost by [`NetConfig::drop_prob`].
    pub dropped: u64,
    /// Writes that landed after being lost or buffered.
    pub landed_late: u64,
    /// `TimedOut` answers given to clients.
    pub timeouts: u64,
    /// Watch entries delivered.
    pub watch_deliveries: u64,
}

/// The simulated connections of every node to one [`MemKv`]. See the module docs.
#[derive(Debug)]
pub struct Network {
    config: NetConfig,
    rng: Rng,
    kv: MemKv,
    queue: Queue<NetEv>,
    links: Vec<Link>,
    watches: BTreeMap<(NodeId, WatchId), Watch>,
    pending: BTreeSet<(NodeId, u32, RequestId)>,
    kv_up: bool,
    expiry_at: Option<Instant>,
    stats: NetStats,
}

#[derive(Debug)]
struct Link {
    /// The live process on the node, if any.
    process: Option<u32>,
    /// False while isolated.
    up: bool,
    /// The connection state the process was last told.
    reported: bool,
    /// Requests waiting for the connection to return, in send order.
    outbox: Vec<Outgoing>,
}

#[derive(Debug)]
enum Outgoing {
    Kv {
        incarnation: u32,
        id: RequestId,
        bucket: Bucket,
        op: KvOp,
    },
    Watch {
        incarnation: u32,
        id: WatchId,
    },
}

#[derive(Debug)]
struct Watch {
    incarnation: u32,
    bucket: Bucket,
    filters: Vec<String>,
    started: bool,
    queue: VecDeque<(Instant, Entry)>,
    armed: bool,
    last_due: Instant,
}

#[derive(Debug)]
enum NetEv {
    /// A request reaches the KV; `reply` is false for writes whose client is no longer waiting.
    Arrive {
        node: NodeId,
        incarnation: u32,
        id: RequestId,
        bucket: Bucket,
        op: KvOp,
        reply: bool,
    },
    Reply {
        node: NodeId,
        incarnation: u32,
        id: RequestId,
        result: KvResult,
    },
    Timeout {
        node: NodeId,
        incarnation: u32,
        id: RequestId,
    },
    WatchStart {
        node: NodeId,
        incarnation: u32,
        id: WatchId,
    },
    WatchDue {
        node: NodeId,
        id: WatchId,
    },
    Notice {
        node: NodeId,
        incarnation: u32,
    },
    Expiry,
}

impl Network {
    /// A network over `kv`, with its own random stream from `seed`.
    pub fn new(config: NetConfig, kv: MemKv, seed: u64) -> Self {
        let mut net = Network {
            config,
            rng: Rng::new(seed),
            kv,
            queue: Queue::default(),
            links: Vec::new(),
            watches: BTreeMap::new(),
            pending: BTreeSet::new(),
            kv_up: true,
            expiry_at: None,
            stats: NetStats::default(),
        };
        net.schedule_expiry();
        net
    }

    /// The KV.
    pub fn kv(&self) -> &MemKv {
        &self.kv
    }

    /// The KV, to preload or inspect it (changes made here are not fanned out to watches).
    pub fn kv_mut(&mut self) -> &mut MemKv {
        &mut self.kv
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// What the network did so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// The time of the next network event.
    pub fn next_at(&self) -> Option<Instant> {
        self.queue.peek_time()
    }

    /// Number of queued network events.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether `node` can reach the KV (not isolated, no outage).
    pub fn is_connected(&self, node: NodeId) -> bool {
        self.kv_up && self.links.get(node.0).is_none_or(|l| l.up)
    }

    /// Whether `node` is isolated.
    pub fn is_isolated(&self, node: NodeId) -> bool {
        self.links.get(node.0).is_some_and(|l| !l.up)
    }

    /// Whether the KV is reachable at all (no outage).
    pub fn kv_up(&self) -> bool {
        self.kv_up
    }

    /// Number of requests sent and not yet answered.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// A new process `incarnation` starts on `node` (anything left by an older one is dropped).
    /// It believes it is connected; if it is not, it is told so shortly.
    pub fn attach(&mut self, now: Instant, node: NodeId, incarnation: u32) {
        self.detach(node);
        let link = self.link(node);
        link.process = Some(incarnation);
        link.reported = true;
        let at = now + rand_between(&mut self.rng, self.config.kv_delay);
        self.queue.push(at, NetEv::Notice { node, incarnation });
    }

    /// The process on `node` is gone (crash or exit): its watches, buffered requests and
    /// pending answers vanish. Requests already in flight still reach the KV.
    pub fn detach(&mut self, node: NodeId) {
        let link = self.link(node);
        link.process = None;
        link.outbox.clear();
        let watches: Vec<_> = self
            .watches
            .range((node, WatchId(0))..)
            .take_while(|(k, _)| k.0 == node)
            .map(|(k, _)| *k)
            .collect();
        for k in watches {
            self.watches.remove(&k);
        }
        let pending: Vec<_> = self
            .pending
            .range((node, 0, RequestId(0))..)
            .take_while(|k| k.0 == node)
            .copied()
            .collect();
        for k in pending {
            self.pending.remove(&k);
        }
    }

    /// Performs a network action of the process on `node`: [`Action::Kv`], [`Action::Watch`] or
    /// [`Action::Unwatch`]. Returns any other action unchanged, for the caller to handle.
    pub fn send(&mut self, now: Instant, node: NodeId, action: Action) -> Option<Action> {
        let Some(incarnation) = self.links.get(node.0).and_then(|l| l.process) else {
            return match action {
                Action::Kv { .. } | Action::Watch { .. } | Action::Unwatch(_) => None,
                other => Some(other),
            };
        };
        match action {
            Action::Kv { id, bucket, op } => self.send_kv(now, node, incarnation, id, bucket, op),
            Action::Watch {
                id,
                bucket,
                filters,
            } => {
                let watch = Watch {
                    incarnation,
                    bucket,
                    filters,
                    started: false,
                    queue: VecDeque::new(),
                    armed: false,
                    last_due: now,
                };
                self.watches.insert((node, id), watch);
                if self.is_connected(node) {
                    let at = now + rand_between(&mut self.rng, self.config.kv_delay);
                    self.queue.push(
                        at,
                        NetEv::WatchStart {
                            node,
                            incarnation,
                            id,
                        },
                    );
                } else {
                    self.link(node)
                        .outbox
                        .push(Outgoing::Watch { incarnation, id });
                }
            }
            Action::Unwatch(id) => {
                self.watches.remove(&(node, id));
            }
            other => return Some(other),
        }
        None
    }

    fn send_kv(
        &mut self,
        now: Instant,
        node: NodeId,
        incarnation: u32,
        id: RequestId,
        bucket: Bucket,
        op: KvOp,
    ) {
        self.stats.requests += 1;
        self.pending.insert((node, incarnation, id));
        self.queue.push_in_order(
            now + self.config.client_timeout,
            NetEv::Timeout {
                node,
                incarnation,
                id,
            },
        );
        if !self.is_connected(node) {
            self.link(node).outbox.push(Outgoing::Kv {
                incarnation,
                id,
                bucket,
                op,
            });
        } else if self.rng.chance(self.config.drop_prob) {
            self.stats.dropped += 1;
            if is_write(&op) && self.rng.chance(self.config.late_land_prob) {
                let late = rand_between(
                    &mut self.rng,
                    (Duration::ZERO, 2 * self.config.client_timeout),
                );
                self.queue.push(
                    now + late,
                    NetEv::Arrive {
                        node,
                        incarnation,
                        id,
                        bucket,
                        op,
                        reply: false,
                    },
                );
            }
        } else {
            let at = now + rand_between(&mut self.rng, self.config.kv_delay);
            self.queue.push(
                at,
                NetEv::Arrive {
                    node,
                    incarnation,
                    id,
                    bucket,
                    op,
                    reply: true,
                },
            );
        }
    }

    /// Cuts `node` off the KV (its process stays up).
    pub fn isolate(&mut self, now: Instant, node: NodeId) {
        let was = self.is_connected(node);
        self.link(node).up = false;
        if was {
            self.on_disconnect(now, node);
        }
    }

    /// Reconnects `node`: buffered requests are sent, held watch deliveries resume.
    pub fn heal(&mut self, now: Instant, node: NodeId) {
        self.link(node).up = true;
        if self.is_connected(node) {
            self.on_reconnect(now, node);
        }
    }

    /// Starts (`false`) or ends (`true`) a KV outage: nobody reaches the KV meanwhile.
    pub fn set_kv_up(&mut self, now: Instant, up: bool) {
        if self.kv_up == up {
            return;
        }
        let nodes: Vec<NodeId> = (0..self.links.len())
            .map(NodeId)
            .filter(|n| self.links[n.0].up)
            .collect();
        self.kv_up = up;
        for node in nodes {
            if up {
                self.on_reconnect(now, node);
            } else {
                self.on_disconnect(now, node);
            }
        }
    }

    fn on_disconnect(&mut self, now: Instant, node: NodeId) {
        if let Some(incarnation) = self.links[node.0].process {
            let at = now + rand_between(&mut self.rng, self.config.notice_delay);
            self.queue.push(at, NetEv::Notice { node, incarnation });
        }
    }

    fn on_reconnect(&mut self, now: Instant, node: NodeId) {
        let Some(process) = self.links[node.0].process else {
            return;
        };
        let at = now + rand_between(&mut self.rng, self.config.kv_delay);
        self.queue.push(
            at,
            NetEv::Notice {
                node,
                incarnation: process,
            },
        );
        let mut at = now;
        for out in std::mem::take(&mut self.links[node.0].outbox) {
            at = at.max(now + rand_between(&mut self.rng, self.config.kv_delay));
            match out {
                Outgoing::Kv {
                    incarnation,
                    id,
                    bucket,
                    op,
                } => {
                    if !is_write(&op) || self.rng.chance(self.config.buffered_land_prob) {
                        self.queue.push(
                            at,
                            NetEv::Arrive {
                                node,
                                incarnation,
                                id,
                                bucket,
                                op,
                                reply: true,
                            },
                        );
                    }
                }
                Outgoing::Watch { incarnation, id } => {
                    self.queue.push(
                        at,
                        NetEv::WatchStart {
                            node,
                            incarnation,
                            id,
                        },
                    );
                }
            }
        }
        let ids: Vec<WatchId> = self
            .watches
            .range((node, WatchId(0))..)
            .take_while(|(k, _)| k.0 == node)
            .filter(|(_, w)| !w.armed && !w.queue.is_empty())
            .map(|(k, _)| k.1)
            .collect();
        for id in ids {
            let delay = rand_between(&mut self.rng, self.config.watch_delay);
            let w = self.watches.get_mut(&(node, id)).expect("listed above");
            w.armed = true;
            self.queue.push(now + delay, NetEv::WatchDue { node, id });
        }
    }

    /// Processes the next network event: appends the inputs it produced to `out` and the KV
    /// changes it made (writes, delete and purge markers) to `changes`. Returns the event's time,
    /// or `None` if nothing is queued.
    pub fn step(&mut self, out: &mut Vec<Delivery>, changes: &mut Vec<Change>) -> Option<Instant> {
        let (now, ev) = self.queue.pop()?;
        match ev {
            NetEv::Arrive {
                node,
                incarnation,
                id,
                bucket,
                op,
                reply,
            } => {
                if self.is_connected(node) {
                    let result = self.apply(now, Some((node, incarnation)), bucket, &op, changes);
                    if !reply {
                        self.stats.landed_late += 1;
                    } else {
                        let at = now + rand_between(&mut self.rng, self.config.kv_delay);
                        self.queue.push(
                            at,
                            NetEv::Reply {
                                node,
                                incarnation,
                                id,
                                result,
                            },
                        );
                    }
                } else if self.links[node.0].process == Some(incarnation) && reply {
                    // Cut off in flight: the client still holds it and resends after the heal.
                    self.link(node).outbox.push(Outgoing::Kv {
                        incarnation,
                        id,
                        bucket,
                        op,
                    });
                }
            }
            NetEv::Reply {
                node,
                incarnation,
                id,
                result,
            } => {
                if self.is_connected(node) && self.pending.remove(&(node, incarnation, id)) {
                    out.push(Delivery {
                        node,
                        incarnation,
                        input: Input::KvResult { id, result },
                    });
                }
            }
            NetEv::Timeout {
                node,
                incarnation,
                id,
            } => {
                if self.pending.remove(&(node, incarnation, id)) {
                    self.stats.timeouts += 1;
                    out.push(Delivery {
                        node,
                        incarnation,
                        input: Input::KvResult {
                            id,
                            result: KvResult::TimedOut,
                        },
                    });
                }
            }
            NetEv::WatchStart {
                node,
                incarnation,
                id,
            } => self.start_watch(now, node, incarnation, id),
            NetEv::WatchDue { node, id } => self.deliver_due(now, node, id, out),
            NetEv::Notice { node, incarnation } => {
                let connected = self.is_connected(node);
                let link = self.link(node);
                if link.process == Some(incarnation) && link.reported != connected {
                    link.reported = connected;
                    out.push(Delivery {
                        node,
                        incarnation,
                        input: Input::Connection(connected),
                    });
                }
            }
            NetEv::Expiry => {
                self.expiry_at = None;
                let purged = self.kv.expire(now);
                for e in purged {
                    self.fan_out(now, &e);
                    changes.push(Change { entry: e, by: None });
                }
                self.schedule_expiry();
            }
        }
        Some(now)
    }

    /// An operator's write (from outside the fleet, as `parti pin` makes): applied at once and
    /// fanned out to the watches; what it changed is appended to `changes`.
    pub fn operator_write(
        &mut self,
        now: Instant,
        bucket: Bucket,
        op: &KvOp,
        changes: &mut Vec<Change>,
    ) -> KvResult {
        self.apply(now, None, bucket, op, changes)
    }

    /// Applies `op` to the KV at `now`, after expiring what is due, and fans the changes out.
    fn apply(
        &mut self,
        now: Instant,
        by: Option<(NodeId, u32)>,
        bucket: Bucket,
        op: &KvOp,
        changes: &mut Vec<Change>,
    ) -> KvResult {
        self.stats.applied += 1;
        for e in self.kv.expire(now) {
            self.fan_out(now, &e);
            changes.push(Change { entry: e, by: None });
        }
        let (result, change) = self.kv.apply(now, bucket, op);
        if let Some(e) = change {
            self.fan_out(now, &e);
            changes.push(Change { entry: e, by });
        }
        self.schedule_expiry();
        result
    }

    fn schedule_expiry(&mut self) {
        if let Some(at) = self.kv.next_expiry() {
            if self.expiry_at.is_none_or(|t| at < t) {
                self.expiry_at = Some(at);
                self.queue.push(at, NetEv::Expiry);
            }
        }
    }

    fn start_watch(&mut self, now: Instant, node: NodeId, incarnation: u32, id: WatchId) {
        let connected = self.is_connected(node);
        let Some(w) = self.watches.get_mut(&(node, id)) else {
            return;
        };
        if w.incarnation != incarnation || w.started {
            return;
        }
        if !connected {
            self.links[node.0]
                .outbox
                .push(Outgoing::Watch { incarnation, id });
            return;
        }
        w.started = true;
        let due = (now + rand_between(&mut self.rng, self.config.watch_delay)).max(w.last_due);
        w.last_due = due;
        for e in self.kv.snapshot(w.bucket, &w.filters) {
            w.queue.push_back((due, e));
        }
        if !w.queue.is_empty() && !w.armed {
            w.armed = true;
            self.queue.push(due, NetEv::WatchDue { node, id });
        }
    }

    fn deliver_due(&mut self, now: Instant, node: NodeId, id: WatchId, out: &mut Vec<Delivery>) {
        let connected = self.is_connected(node);
        let Some(w) = self.watches.get_mut(&(node, id)) else {
            return;
        };
        w.armed = false;
        if !connected {
            return; // held; re-armed when the node reconnects
        }
        while w.queue.front().is_some_and(|(due, _)| *due <= now) {
            let (_, entry) = w.queue.pop_front().expect("checked");
            self.stats.watch_deliveries += 1;
            out.push(Delivery {
                node,
                incarnation: w.incarnation,
                input: Input::WatchEntry { watch: id, entry },
            });
        }
        if let Some((due, _)) = w.queue.front() {
            w.armed = true;
            self.queue.push(*due, NetEv::WatchDue { node, id });
        }
    }

    fn fan_out(&mut self, now: Instant, entry: &Entry) {
        for (&(node, id), w) in self.watches.iter_mut() {
            if !w.started
                || w.bucket != entry.bucket
                || !w
                    .filters
                    .iter()
                    .any(|f| crate::filter_matches(f, &entry.key))
            {
                continue;
            }
            let due = (now + rand_between(&mut self.rng, self.config.watch_delay)).max(w.last_due);
            w.last_due = due;
            w.queue.push_back((due, entry.clone()));
            let connected = self.kv_up && self.links.get(node.0).is_none_or(|l| l.up);
            if !w.armed && connected {
                w.armed = true;
                self.queue.push(due, NetEv::WatchDue { node, id });
            }
        }
    }

    fn link(&mut self, node: NodeId) -> &mut Link {
        if self.links.len() <= node.0 {
            self.links.resize_with(node.0 + 1, || Link {
                process: None,
                up: true,
                reported: true,
                outbox: Vec::new(),
            });
        }
        &mut self.links[node.0]
    }
}

fn is_write(op: &KvOp) -> bool {
    !matches!(op, KvOp::Get { .. } | KvOp::List { .. })
}
