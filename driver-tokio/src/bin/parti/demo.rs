//! `parti demo`: a fleet in one process, on the in-memory KV (or a NATS server), taken
//! through a join, a graceful leave, a crash and a partition refresh.
//!
//! After each scripted event the demo waits until the fleet has *settled* — every live worker
//! has claimed an ID, is `Stable`, has applied the same generation, and together they own every
//! partition exactly once — and prints how long that took and which partitions changed owner.
//! Settling is detected from the workers themselves: every event of every worker wakes the check,
//! which reads the workers' published snapshots (state, generation, assignment); a short tick
//! re-checks too, because a worker whose share did not change applies a new generation without
//! an event.

use crate::common::{
    compact, fmt_duration, nats_error, numbered_partitions, short_token, truncate, NatsArgs,
};
use crate::worker::describe;
use crate::{CliError, CliResult};
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use parti::kv::{MemoryKv, NatsKv, NatsOptions};
use parti::{Config, Event, Generation, PartitionId, State, StaticSource, Worker, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// Arguments of `parti demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Workers to start with (at least 2: one leaves and one crashes, after one joins).
    #[arg(long, default_value_t = 5, value_name = "W",
          value_parser = clap::value_parser!(u32).range(2..=50))]
    workers: u32,
    /// Partitions to start with (the refresh adds a quarter more).
    #[arg(long, default_value_t = 64, value_name = "P",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    partitions: u32,
    /// With --nats: run against NATS (one connection per worker) instead of in memory.
    #[command(flatten)]
    nats: NatsArgs,
    /// With --nats: keep the demo's buckets afterwards (they are deleted by default).
    #[arg(long, requires = "nats")]
    keep_buckets: bool,
    /// Use the library's default timings (slower: a join waits 10 s, a crash about 7.5 s)
    /// instead of the demo's short ones.
    #[arg(long)]
    defaults: bool,
    /// Also print every worker event as it happens.
    #[arg(long, short)]
    verbose: bool,
    #[command(flatten)]
    log: crate::logs::LogArgs,
}

/// The demo's short timings: everything settles within about a second.
fn demo_config(workers: u32) -> Config {
    Config {
        expected_workers: Some(workers),
        heartbeat_interval: Duration::from_millis(200),
        lease_ttl: Duration::from_secs(1),
        safety_margin: Duration::from_millis(200),
        emergency_grace: Duration::from_millis(200),
        cold_start_window: Duration::from_millis(300),
        planned_scale_window: Duration::from_millis(300),
        max_scale_delay: Duration::from_secs(1),
        restart_grace: Duration::from_millis(300),
        min_rebalance_interval: Duration::from_millis(300),
        revoke_timeout: Duration::from_millis(500),
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// One worker of the demo fleet.
struct Member {
    handle: Worker,
    /// False once it left or crashed.
    live: bool,
    /// The last ID it was seen with (kept after it stopped).
    last_id: Option<WorkerId>,
}

/// How the workers reach their KV.
enum Backend {
    Memory(MemoryKv),
    Nats { options: Box<NatsOptions> },
}

struct Demo {
    config: Config,
    backend: Backend,
    source: StaticSource,
    expected: BTreeSet<PartitionId>,
    members: Vec<Member>,
    /// Every worker's events, tagged with its index; `None` when its stream ended.
    events: SelectAll<BoxStream<'static, (usize, Option<Event>)>>,
    origin: Instant,
    verbose: bool,
    /// How long one settle may take before the demo gives up.
    settle_bound: Duration,
}

/// A settled fleet: who owns what.
struct Settled {
    owners: BTreeMap<PartitionId, WorkerId>,
    generation: Generation,
    took: Duration,
}

/// Runs `parti demo`.
pub async fn run(args: DemoArgs) -> CliResult {
    crate::logs::init(&args.log)?;
    let mut config = if args.defaults {
        Config {
            expected_workers: Some(args.workers),
            ..Config::default()
        }
    } else {
        demo_config(args.workers)
    };
    let backend = if args.nats.given() {
        let options = args.nats.options("parti-demo")?;
        config.bucket_prefix = format!("demo-{}", &short_token(random())[..6]);
        Backend::Nats {
            options: Box::new(options),
        }
    } else {
        Backend::Memory(MemoryKv::new(config.lease_ttl))
    };
    let c = &config;
    let settle_bound = Duration::from_secs(20)
        + 2 * (c.lease_ttl
            + c.emergency_grace
            + c.cold_start_window
            + c.max_scale_delay
            + c.min_rebalance_interval
            + c.restart_grace);
    let where_ = match &backend {
        Backend::Memory(_) => "in-memory KV".to_string(),
        Backend::Nats { options } => format!(
            "NATS {} (buckets {}-leases, {}-assign; one connection per worker)",
            options.display_urls(),
            c.bucket_prefix,
            c.bucket_prefix
        ),
    };
    say!(
        "parti demo: {} workers, {} partitions, {where_}, {} handoff, balanced strategy",
        args.workers,
        args.partitions,
        format!("{:?}", c.handoff).to_lowercase()
    );
    say!(
        "timings: heartbeat {}, lease_ttl {}, safety_margin {}, emergency_grace {}, \
         expected_workers {}",
        fmt_duration(c.heartbeat_interval),
        fmt_duration(c.lease_ttl),
        fmt_duration(c.safety_margin),
        fmt_duration(c.emergency_grace),
        args.workers
    );
    say!(
        "         cold_start_window {}, planned_scale_window {}, min_rebalance_interval {}, \
         restart_grace {}",
        fmt_duration(c.cold_start_window),
        fmt_duration(c.planned_scale_window),
        fmt_duration(c.min_rebalance_interval),
        fmt_duration(c.restart_grace)
    );
    say!(
        "         {}",
        if args.defaults {
            "(the library's defaults)"
        } else {
            "(short demo timings; --defaults uses the library's)"
        }
    );
    let partitions = numbered_partitions(0, args.partitions as usize);
    let mut demo = Demo {
        expected: partitions.iter().map(|p| p.id().clone()).collect(),
        source: StaticSource::new(partitions),
        config,
        backend,
        members: Vec::new(),
        events: SelectAll::new(),
        origin: Instant::now(),
        verbose: args.verbose,
        settle_bound,
    };
    let result = demo.script(args.workers, args.partitions).await;
    demo.shutdown(args.keep_buckets).await;
    result
}

impl Demo {
    /// The scripted events, each followed by a settle.
    async fn script(&mut self, workers: u32, partitions: u32) -> CliResult {
        let started = Instant::now();
        for _ in 0..workers {
            self.spawn().await?;
        }
        let mut state = self.settle(started, "start", None).await?;
        say!("");
        say!(
            "{:<8} {:<30} settled in {:>7}  {}",
            "start",
            format!("{workers} workers start"),
            secs(state.took),
            state.generation
        );
        self.print_table();
        let mut total_moved = 0;
        let mut events = 0;

        // A join.
        let t = Instant::now();
        let index = self.spawn().await?;
        let next = self.settle(t, "join", Some(state.generation)).await?;
        let id = self.id_of(index);
        total_moved += self.report("join", &format!("worker {id} joins"), &state, &next);
        state = next;
        events += 1;

        // A graceful leave: the lowest non-leader stops for good (its lease is deleted).
        let index = self.pick(false)?;
        let id = self.id_of(index);
        let t = Instant::now();
        self.members[index].live = false;
        let handle = self.members[index].handle.clone();
        let stop = tokio::spawn(async move { handle.stop().await });
        let next = self.settle(t, "leave", Some(state.generation)).await?;
        match stop.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => say!("note: worker {id}'s stop reported: {e}"),
            Err(e) => say!("note: worker {id}'s stop task failed: {e}"),
        }
        total_moved += self.report(
            "leave",
            &format!("worker {id} leaves (graceful)"),
            &state,
            &next,
        );
        state = next;
        events += 1;

        // A crash: the highest non-leader's task is killed; its lease expires on its own.
        let index = self.pick(true)?;
        let id = self.id_of(index);
        let t = Instant::now();
        self.members[index].live = false;
        self.members[index].handle.abort();
        let next = self.settle(t, "crash", Some(state.generation)).await?;
        total_moved += self.report(
            "crash",
            &format!("worker {id} crashes (killed)"),
            &state,
            &next,
        );
        state = next;
        events += 1;

        // A refresh: the partition list grows by a quarter.
        let grown = partitions + (partitions / 4).max(1);
        let list = numbered_partitions(0, grown as usize);
        self.expected = list.iter().map(|p| p.id().clone()).collect();
        let t = Instant::now();
        self.source.update(list);
        let asker = self
            .live()
            .find(|(_, m)| m.handle.is_leader())
            .or_else(|| self.live().next())
            .map(|(_, m)| m.handle.clone())
            .expect("live workers remain");
        asker
            .refresh_partitions()
            .await
            .map_err(|e| CliError::runtime(format!("refresh_partitions failed: {e}")))?;
        let next = self.settle(t, "refresh", Some(state.generation)).await?;
        total_moved += self.report(
            "refresh",
            &format!("partitions {partitions} -> {grown}"),
            &state,
            &next,
        );
        state = next;
        events += 1;

        say!("");
        say!("final ownership");
        self.print_table();
        say!(
            "summary: {events} events, {total_moved} partitions moved in all; {} partitions on {} \
             worker{}, every partition owned exactly once ({}); {} in all",
            state.owners.len(),
            self.live().count(),
            if self.live().count() == 1 { "" } else { "s" },
            state.generation,
            secs(self.origin.elapsed())
        );
        Ok(())
    }

    /// Starts one more worker; its events wake the settle check.
    async fn spawn(&mut self) -> CliResult<usize> {
        let index = self.members.len();
        let builder = Worker::builder()
            .config(self.config.clone())
            .source(self.source.clone());
        let builder = match &self.backend {
            Backend::Memory(kv) => builder.memory(kv.clone()),
            Backend::Nats { options } => {
                let options = NatsOptions {
                    name: Some(format!("parti-demo-{index}")),
                    ..NatsOptions::clone(options)
                };
                let (kv, connection) =
                    NatsKv::connect(&options, &self.config).await.map_err(|e| {
                        let urls = options.display_urls();
                        nats_error(&urls, &e).unwrap_or_else(|| {
                            CliError::runtime(format!(
                                "cannot set up the demo's buckets at {urls}: {e} (is JetStream \
                                 enabled there? nats-server -js)"
                            ))
                        })
                    })?;
                builder.nats(kv).connection_events(connection)
            }
        };
        let (handle, events) = builder
            .start_with_events()
            .await
            .map_err(|e| CliError::runtime(format!("cannot start a worker: {e}")))?;
        self.events.push(
            events
                .map(move |e| (index, Some(e)))
                .chain(futures::stream::once(async move { (index, None) }))
                .boxed(),
        );
        self.members.push(Member {
            handle,
            live: true,
            last_id: None,
        });
        Ok(index)
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Member)> {
        self.members.iter().enumerate().filter(|(_, m)| m.live)
    }

    fn id_of(&self, index: usize) -> String {
        self.members[index]
            .handle
            .worker_id()
            .map_or("?".into(), |w| w.to_string())
    }

    /// A live non-leader: the lowest ID, or the highest.
    fn pick(&self, highest: bool) -> CliResult<usize> {
        let mut candidates: Vec<(WorkerId, usize)> = self
            .live()
            .filter(|(_, m)| !m.handle.is_leader())
            .filter_map(|(i, m)| m.handle.worker_id().map(|id| (id, i)))
            .collect();
        candidates.sort();
        let pick = if highest {
            candidates.last()
        } else {
            candidates.first()
        };
        pick.map(|(_, i)| *i)
            .ok_or_else(|| CliError::runtime("no live follower left to take out"))
    }

    /// The fleet's ownership if it has settled.
    fn check(
        &self,
        after: Option<Generation>,
    ) -> Option<(BTreeMap<PartitionId, WorkerId>, Generation)> {
        let mut owners = BTreeMap::new();
        let mut generation = None;
        for (_, m) in self.live() {
            let h = &m.handle;
            let id = h.worker_id()?;
            if h.state() != State::Stable || h.is_stopped() {
                return None;
            }
            let g = h.generation()?;
            if generation.is_some_and(|x| x != g) {
                return None;
            }
            generation = Some(g);
            for p in h.assignment() {
                if owners.insert(p, id).is_some() {
                    return None; // owned twice
                }
            }
        }
        let generation = generation?;
        if after.is_some_and(|a| generation <= a) {
            return None; // nothing new committed yet
        }
        let exact = owners.len() == self.expected.len() && owners.keys().eq(self.expected.iter());
        exact.then_some((owners, generation))
    }

    /// Waits until the fleet has settled (see the module docs).
    ///
    /// `after` is the generation the fleet had settled on before the event: settling needs a
    /// newer one (a newcomer that applied the old generation with an empty share is not yet
    /// part of the fleet).
    async fn settle(
        &mut self,
        started: Instant,
        what: &str,
        after: Option<Generation>,
    ) -> CliResult<Settled> {
        let deadline = started + self.settle_bound;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.drain_events();
            if let Some((owners, generation)) = self.check(after) {
                let took = started.elapsed();
                // Show the events of the step that settled it before the result.
                self.drain_events();
                return Ok(Settled {
                    owners,
                    generation,
                    took,
                });
            }
            tokio::select! {
                Some((index, event)) = self.events.next() => self.show(index, event),
                _ = tick.tick() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(CliError::runtime(format!(
                        "the fleet did not settle after the {what} within {}: {}",
                        secs(self.settle_bound),
                        self.why_unsettled()
                    )));
                }
            }
        }
    }

    /// Shows the events already delivered, without waiting.
    fn drain_events(&mut self) {
        while let Some(Some((index, event))) = self.events.next().now_or_never() {
            self.show(index, event);
        }
    }

    /// Prints a worker's event with `--verbose`.
    fn show(&mut self, index: usize, event: Option<Event>) {
        let member = &mut self.members[index];
        if let Some(id) = member.handle.worker_id() {
            member.last_id = Some(id);
        }
        if let (true, Some(e)) = (self.verbose, event) {
            let who = member
                .last_id
                .map_or(format!("#{index} (no id yet)"), |w| w.to_string());
            say!(
                "  {:>8}  worker {who}: {}",
                secs(self.origin.elapsed()),
                describe(&e)
            );
        }
    }

    /// What keeps the fleet from settling, for the error message.
    fn why_unsettled(&self) -> String {
        let mut parts = Vec::new();
        let mut owned = 0;
        for (i, m) in self.live() {
            let h = &m.handle;
            owned += h.assignment().len();
            parts.push(format!(
                "#{i} id {} {} {} {} partitions",
                h.worker_id().map_or("-".into(), |w| w.to_string()),
                h.state(),
                h.generation().map_or("-".into(), |g| g.to_string()),
                h.assignment().len()
            ));
        }
        format!(
            "{}; {owned} owned of {} expected",
            parts.join(", "),
            self.expected.len()
        )
    }

    /// Prints one event's outcome; returns the number of partitions that changed owner.
    fn report(&self, name: &str, what: &str, before: &Settled, after: &Settled) -> usize {
        let mut flows: BTreeMap<(WorkerId, WorkerId), usize> = BTreeMap::new();
        let mut new = 0;
        for (p, to) in &after.owners {
            match before.owners.get(p) {
                Some(from) if from != to => *flows.entry((*from, *to)).or_default() += 1,
                Some(_) => {}
                None => new += 1,
            }
        }
        let moved: usize = flows.values().sum();
        let flow_text: Vec<String> = flows
            .iter()
            .map(|((from, to), n)| format!("{from}->{to} {n}"))
            .collect();
        say!(
            "{name:<8} {what:<30} settled in {:>7}  {}  moved {moved}{}{}",
            secs(after.took),
            after.generation,
            if new > 0 {
                format!(", {new} new")
            } else {
                String::new()
            },
            if flow_text.is_empty() {
                String::new()
            } else {
                format!(" ({})", truncate(&flow_text.join(", "), 120))
            }
        );
        let counts: Vec<String> = self
            .by_worker(&after.owners)
            .iter()
            .map(|(w, ps)| format!("{w}:{}", ps.len()))
            .collect();
        say!("{:<8} counts {}", "", counts.join(" "));
        moved
    }

    fn by_worker(
        &self,
        owners: &BTreeMap<PartitionId, WorkerId>,
    ) -> BTreeMap<WorkerId, BTreeSet<PartitionId>> {
        let mut out: BTreeMap<WorkerId, BTreeSet<PartitionId>> = BTreeMap::new();
        for (_, m) in self.live() {
            if let Some(id) = m.handle.worker_id() {
                out.entry(id).or_default();
            }
        }
        for (p, w) in owners {
            out.entry(*w).or_default().insert(p.clone());
        }
        out
    }

    /// Worker → count and compact list, `*` marking the leader.
    fn print_table(&self) {
        say!("  {:<8} {:>5}  partitions", "worker", "count");
        let mut rows: Vec<(WorkerId, bool, BTreeSet<PartitionId>)> = self
            .live()
            .filter_map(|(_, m)| {
                let h = &m.handle;
                h.worker_id().map(|id| (id, h.is_leader(), h.assignment()))
            })
            .collect();
        rows.sort_by_key(|r| r.0);
        for (id, leader, parts) in rows {
            let label = if leader {
                format!("{id} *")
            } else {
                id.to_string()
            };
            say!(
                "  {:<8} {:>5}  {}",
                label,
                parts.len(),
                truncate(&compact(&parts), 100)
            );
        }
        say!("  (* leader)");
    }

    /// Stops every live worker for good, then removes the demo's NATS buckets.
    async fn shutdown(&mut self, keep_buckets: bool) {
        let stops: Vec<_> = self
            .live()
            .map(|(_, m)| {
                let h = m.handle.clone();
                async move { h.stop().await }
            })
            .collect();
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                say!("note: a worker's stop reported: {e}");
            }
        }
        for m in &mut self.members {
            m.live = false;
        }
        if let Backend::Nats { options } = &self.backend {
            let prefix = &self.config.bucket_prefix;
            if keep_buckets {
                say!(
                    "buckets {prefix}-leases and {prefix}-assign kept on {}",
                    options.display_urls()
                );
                return;
            }
            if let Ok((_, js)) = options.connect_jetstream().await {
                for b in [self.config.leases_bucket(), self.config.assign_bucket()] {
                    if let Err(e) = js.delete_key_value(&b).await {
                        say!("note: could not delete bucket {b}: {e}");
                    }
                }
            }
        }
    }
}

/// Milliseconds under a second, else seconds with two decimals.
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// A random number for the demo's bucket prefix.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
