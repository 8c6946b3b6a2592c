//! `Worker`: one member of the fleet, on NATS or an in-memory KV, driven from asyncio.

use crate::callbacks::{LoopBridge, PyListener, PySource};
use crate::config::PyConfig;
use crate::errors::{bad_arg, core_err, driver_err, PartiError, WorkerStoppedError};
use crate::events::{frozenset, EventStream};
use crate::message::message_handler;
use crate::partition::{partition_id, partitions_from, seconds};
use crate::state::{py_repr, state_name};
use crate::strategy::strategy_from;
use futures::StreamExt;
use parti::kv::{MemoryKv, NatsKv, NatsOptions};
use parti::parti_core::partition::validate_partitions;
use parti::parti_core::strategy::Strategy;
use parti::{Config, Event, Partition, SubjectTemplate, Worker};
use pyo3::prelude::*;
use pyo3::types::{PyFrozenSet, PyString};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use tokio::sync::{mpsc, oneshot, Notify};

/// Events kept for the first `events()` call, at most (the oldest are dropped past it).
const FIRST_EVENTS_CAP: usize = 1024;

/// An in-memory KV with NATS semantics: workers sharing one run as a fleet in-process.
/// It expires leases itself: give it the config's `lease_ttl` (`Worker.start()` raises
/// `ConfigError` otherwise).
#[pyclass(frozen, module = "parti._parti", name = "MemoryKv")]
pub(crate) struct PyMemoryKv(MemoryKv);

#[pymethods]
impl PyMemoryKv {
    #[new]
    /// `lease_ttl` left out is core's default (`Config.defaults()["lease_ttl"]`).
    #[pyo3(signature = (lease_ttl = None))]
    fn new(lease_ttl: Option<f64>) -> PyResult<Self> {
        let ttl = match lease_ttl {
            Some(secs) => seconds("lease_ttl", secs)?,
            None => Config::default().lease_ttl,
        };
        Ok(PyMemoryKv(MemoryKv::new(ttl)))
    }

    fn __repr__(&self) -> String {
        format!("MemoryKv(lease_ttl={})", self.0.lease_ttl().as_secs_f64())
    }
}

/// Where the worker keeps its leases and assignments.
enum Backend {
    Nats(Box<NatsOptions>),
    Memory(MemoryKv),
}

/// The backend once `start()` connected it.
enum Store {
    Nats(NatsKv, parti::kv::ConnectionEvents),
    Memory(MemoryKv),
}

/// Everything `start()` needs, gathered by the constructor.
struct Pending {
    backend: Backend,
    config: Config,
    partitions: Option<Vec<Partition>>,
    source: Option<Py<PyAny>>,
    strategy: Box<dyn Strategy>,
    on_assigned: Option<Py<PyAny>>,
    on_revoked: Option<Py<PyAny>>,
    on_lost: Option<Py<PyAny>>,
    subscription: Option<Subscription>,
}

/// What `subscribe()` asked for.
struct Subscription {
    template: SubjectTemplate,
    handler: Py<PyAny>,
    /// A JetStream work-queue stream to consume from; None for core NATS.
    stream: Option<String>,
}

/// Where a worker is in its life: `start()` moves it from `Idle` through `Starting` to
/// `Started`; a start that fails or is cancelled while connecting returns it to `Idle`.
enum Lifecycle {
    /// Constructed, or back from a start that did not get through: `start()` may run.
    Idle(Box<Pending>),
    /// `start()` call number `attempt` is connecting; the arguments stay here until it
    /// connected, so a cancelled start can give them back at once.
    Starting {
        attempt: u64,
        pending: Option<Box<Pending>>,
    },
    /// Running, or stopped after running: the handle says which.
    Started,
    /// Stopped before it ever ran, or its start failed after connecting: it never runs.
    Closed,
}

/// A member of the fleet: `async with Worker(...) as w:` starts it and stops it.
#[pyclass(frozen, module = "parti._parti", name = "Worker")]
pub(crate) struct PyWorker {
    life: Mutex<Lifecycle>,
    /// Woken whenever a start attempt ends (started, failed or cancelled).
    start_ended: Notify,
    /// Numbers the `start()` calls, so a cancelled one that still runs cannot take a later
    /// call's arguments.
    attempts: AtomicU64,
    handle: OnceLock<Worker>,
    /// Hands the events seen since start to the first `events()` call.
    first_events: Mutex<Option<oneshot::Sender<mpsc::UnboundedSender<Event>>>>,
}

#[pymethods]
impl PyWorker {
    #[new]
    #[pyo3(signature = (
        *,
        nats = None,
        memory = None,
        partitions = None,
        source = None,
        config = None,
        strategy = None,
        on_assigned = None,
        on_revoked = None,
        on_lost = None,
        user = None,
        password = None,
        token = None,
        nkey_seed = None,
        creds_file = None,
        tls_ca_file = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        nats: Option<&Bound<'_, PyAny>>,
        memory: Option<&Bound<'_, PyMemoryKv>>,
        partitions: Option<&Bound<'_, PyAny>>,
        source: Option<&Bound<'_, PyAny>>,
        config: Option<&Bound<'_, PyConfig>>,
        strategy: Option<&Bound<'_, PyAny>>,
        on_assigned: Option<&Bound<'_, PyAny>>,
        on_revoked: Option<&Bound<'_, PyAny>>,
        on_lost: Option<&Bound<'_, PyAny>>,
        user: Option<String>,
        password: Option<String>,
        token: Option<String>,
        nkey_seed: Option<String>,
        creds_file: Option<PathBuf>,
        tls_ca_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let config = config.map(|c| c.get().0.clone()).unwrap_or_default();
        let backend = match (nats, memory) {
            (Some(_), Some(_)) => return Err(bad_arg("nats", "give nats= or memory=, not both")),
            (None, None) => {
                return Err(bad_arg(
                    "nats",
                    "give nats=\"nats://host:4222\" (or a list of URLs), or memory=MemoryKv()",
                ))
            }
            // A lease TTL other than config.lease_ttl: the driver refuses it on start
            // (ConfigError naming lease_ttl and both durations).
            (None, Some(kv)) => Backend::Memory(kv.get().0.clone()),
            (Some(urls), None) => {
                let urls: Vec<String> = if let Ok(s) = urls.cast::<PyString>() {
                    s.to_cow()?
                        .split(',')
                        .map(|u| u.trim().to_owned())
                        .collect()
                } else {
                    urls.extract()
                        .map_err(|_| bad_arg("nats", "expected a URL or a list of URLs"))?
                };
                if urls.is_empty() || urls.iter().any(String::is_empty) {
                    return Err(bad_arg("nats", "a server URL is empty"));
                }
                Backend::Nats(Box::new(NatsOptions {
                    urls,
                    user,
                    password,
                    token,
                    nkey_seed,
                    creds_file,
                    tls_ca_file,
                    ..NatsOptions::default()
                }))
            }
        };
        let (partitions, source) = match (partitions, source) {
            (Some(_), Some(_)) => {
                return Err(bad_arg(
                    "partitions",
                    "give partitions= or source=, not both",
                ))
            }
            (None, None) => {
                return Err(bad_arg(
                    "partitions",
                    "give partitions=[...] or source=callable returning them",
                ))
            }
            (Some(list), None) => {
                let list = partitions_from("partitions", list)?;
                validate_partitions(&list).map_err(|e| bad_arg("partitions", e))?;
                (Some(list), None)
            }
            (None, Some(f)) if f.is_callable() => (None, Some(f.clone().unbind())),
            (None, Some(_)) => return Err(bad_arg("source", "expected a callable")),
        };
        let callbacks = [
            ("on_assigned", on_assigned),
            ("on_revoked", on_revoked),
            ("on_lost", on_lost),
        ];
        for (name, cb) in callbacks {
            if cb.is_some_and(|cb| !cb.is_callable()) {
                return Err(bad_arg(name, "expected a callable"));
            }
        }
        // Left out: the workers' default, the first of core's `strategy::NAMES`.
        let strategy = match strategy {
            Some(s) => strategy_from(s, true)?.strategy,
            None => parti::strategy::by_name(parti::strategy::NAMES[0]).map_err(core_err)?,
        };
        Ok(PyWorker {
            life: Mutex::new(Lifecycle::Idle(Box::new(Pending {
                backend,
                config,
                partitions,
                source,
                strategy,
                on_assigned: on_assigned.map(|c| c.clone().unbind()),
                on_revoked: on_revoked.map(|c| c.clone().unbind()),
                on_lost: on_lost.map(|c| c.clone().unbind()),
                subscription: None,
            }))),
            start_ended: Notify::new(),
            attempts: AtomicU64::new(0),
            handle: OnceLock::new(),
            first_events: Mutex::new(None),
        })
    }

    /// Consumes the owned partitions' messages: `handler(message)` (async) is called for every
    /// message on the subject `subject_template` gives a partition (`"work.{keys}"`: all keys
    /// joined by `.`; `"{key1}.in.{key0}"`: keys by position). With core NATS (the default)
    /// a handoff is at-most-once; with `stream=` (a JetStream work-queue stream) messages are
    /// acknowledged when the handler returns and wait for the partition's next owner.
    /// A revoke is confirmed only after the partition's subscription stopped and its handler
    /// calls returned. Call once, before `start()`; needs `nats=`.
    #[pyo3(signature = (subject_template, handler, *, stream = None))]
    fn subscribe(
        &self,
        subject_template: &str,
        handler: &Bound<'_, PyAny>,
        stream: Option<String>,
    ) -> PyResult<()> {
        let mut life = lock(&self.life);
        let Lifecycle::Idle(p) = &mut *life else {
            return Err(PartiError::new_err(
                "subscribe() must be called before start()",
            ));
        };
        if matches!(p.backend, Backend::Memory(_)) {
            return Err(bad_arg(
                "subscribe",
                "needs a NATS worker (nats=...), not memory=",
            ));
        }
        if p.subscription.is_some() {
            return Err(bad_arg(
                "subscribe",
                "called twice: a worker consumes one subject template (or one stream)",
            ));
        }
        if !handler.is_callable() {
            return Err(bad_arg("handler", "expected an async function"));
        }
        let template =
            SubjectTemplate::parse(subject_template).map_err(|e| bad_arg("subject_template", e))?;
        p.subscription = Some(Subscription {
            template,
            handler: handler.clone().unbind(),
            stream,
        });
        Ok(())
    }

    /// Starts the worker (connects, claims an ID, joins the fleet) and returns it once the ID
    /// is claimed: then `worker_id` is set, `state` is past `"claiming_id"` and `assignment`
    /// is empty until the leader's first generation (an `AssignmentChanged` event). A failed
    /// or cancelled connection (`NatsError`, or e.g. `asyncio.wait_for` timing out) leaves the
    /// worker startable: call `start()` again.
    fn start<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let worker = slf.get();
        let bridge = LoopBridge::current(py)?;
        // What connecting needs; the rest waits in `Starting` until the connection is up.
        let (attempt, backend, config) = {
            let mut life = lock(&worker.life);
            let pending = match std::mem::replace(&mut *life, Lifecycle::Closed) {
                Lifecycle::Idle(pending) => pending,
                other => {
                    let why = match other {
                        Lifecycle::Starting { .. } => "the worker is already starting",
                        Lifecycle::Started => "the worker was already started",
                        _ => "the worker was stopped or failed to start; create a new Worker",
                    };
                    *life = other;
                    return Err(PartiError::new_err(why));
                }
            };
            let backend = match &pending.backend {
                Backend::Memory(kv) => Backend::Memory(kv.clone()),
                Backend::Nats(options) => Backend::Nats(options.clone()),
            };
            let config = pending.config.clone();
            let attempt = worker.attempts.fetch_add(1, Ordering::Relaxed);
            *life = Lifecycle::Starting {
                attempt,
                pending: Some(pending),
            };
            (attempt, backend, config)
        };
        let this: Py<PyWorker> = slf.clone().unbind();
        let future = crate::runtime::future_into_py(py, async move {
            let worker = this.get();
            // Connect first: if NATS cannot be reached, the worker stays startable.
            let store = match backend {
                Backend::Memory(kv) => Store::Memory(kv),
                Backend::Nats(options) => match NatsKv::connect(&options, &config).await {
                    Ok((kv, connection)) => Store::Nats(kv, connection),
                    Err(e) => {
                        worker.give_back(attempt);
                        return Err(driver_err(parti::Error::Nats(e.to_string())));
                    }
                },
            };
            // From here on the worker starts (and waits for its ID), or fails for good: a
            // cancel now stops it and closes this object (`give_back`).
            let pending = {
                let mut life = lock(&worker.life);
                match &mut *life {
                    Lifecycle::Starting {
                        attempt: a,
                        pending,
                    } if *a == attempt => pending.take(),
                    _ => None,
                }
            };
            let Some(pending) = pending else {
                // Cancelled while connecting: the arguments went back to `Idle` already.
                return Err(PartiError::new_err("start() was cancelled"));
            };
            let Pending {
                backend: _,
                config,
                partitions,
                source,
                strategy,
                on_assigned,
                on_revoked,
                on_lost,
                subscription,
            } = *pending;
            let mut builder = crate::metrics::record(parti::Worker::builder())
                .config(config)
                .strategy(strategy)
                .rebalance_listener(PyListener {
                    bridge: bridge.clone(),
                    on_assigned,
                    on_revoked,
                    on_lost,
                });
            builder = match (partitions, source) {
                (Some(list), _) => builder.partitions(list),
                (None, Some(callable)) => builder.source(PySource {
                    bridge: bridge.clone(),
                    callable,
                }),
                (None, None) => builder,
            };
            builder = match store {
                Store::Nats(kv, connection) => {
                    if let Some(sub) = subscription {
                        let handler = message_handler(bridge.clone(), sub.handler);
                        builder = match sub.stream {
                            None => builder.subscribe(kv.client().clone(), sub.template, handler),
                            Some(stream) => builder.consume(
                                kv.jetstream().clone(),
                                stream,
                                sub.template,
                                handler,
                            ),
                        };
                    }
                    builder.nats(kv).connection_events(connection)
                }
                Store::Memory(kv) => builder.memory(kv),
            };
            let started = builder.start_with_events().await;
            let result = match started {
                Ok((handle, events)) => {
                    let _ = worker.handle.set(handle);
                    *lock(&worker.first_events) = Some(keep_first_events(events));
                    *lock(&worker.life) = Lifecycle::Started;
                    Ok(())
                }
                Err(e) => {
                    *lock(&worker.life) = Lifecycle::Closed;
                    Err(driver_err(e))
                }
            };
            worker.start_ended.notify_waiters();
            result.map(|()| this)
        })
        .and_then(|future| {
            let done = StartDone(slf.clone().unbind(), attempt);
            future.call_method1("add_done_callback", (done,))?;
            Ok(future)
        });
        if future.is_err() {
            worker.give_back(attempt);
        }
        future
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::start(slf)
    }

    /// Stops gracefully (as `stop()`), whether the block raised or not; never suppresses.
    #[pyo3(signature = (exc_type, exc, tb))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        exc_type: Option<&Bound<'py, PyAny>>,
        exc: Option<&Bound<'py, PyAny>>,
        tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (exc_type, exc, tb);
        Self::stop(slf, false)
    }

    /// The claimed worker ID (set once `start()` returned; None after a stop).
    #[getter]
    fn worker_id(&self) -> Option<u32> {
        self.handle.get().and_then(|h| h.worker_id()).map(|w| w.0)
    }

    /// Whether this worker is the leader.
    #[getter]
    fn is_leader(&self) -> bool {
        self.handle.get().is_some_and(|h| h.is_leader())
    }

    /// The leader's worker ID, as last seen.
    #[getter]
    fn leader(&self) -> Option<u32> {
        self.handle.get().and_then(|h| h.leader()).map(|w| w.0)
    }

    /// The worker's state (`"init"` before start, then `"claiming_id"`, `"stable"`, ...).
    #[getter]
    fn state(&self) -> &'static str {
        self.handle.get().map_or("init", |h| state_name(h.state()))
    }

    /// The partitions this worker owns now.
    #[getter]
    fn assignment<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        let set = self
            .handle
            .get()
            .map(|h| h.assignment())
            .unwrap_or_default();
        frozenset(py, &set)
    }

    /// The generation of the applied assignment (None before the first).
    #[getter]
    fn generation(&self) -> Option<u64> {
        self.handle.get().and_then(|h| h.generation()).map(|g| g.0)
    }

    /// Whether the worker has stopped (or crashed out).
    #[getter]
    fn is_stopped(&self) -> bool {
        self.handle.get().is_some_and(|h| h.is_stopped())
    }

    /// An ordered, lossless stream of events. The first call after `start()` replays the
    /// events since start (up to 1,024); later calls see events from the moment of the call.
    fn events(&self) -> PyResult<EventStream> {
        let handle = self.started()?;
        if let Some(first) = lock(&self.first_events).take() {
            let (tx, rx) = mpsc::unbounded_channel();
            if first.send(tx).is_ok() {
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|e| (e, rx))
                });
                return Ok(EventStream::new(stream.boxed()));
            }
        }
        Ok(EventStream::new(handle.events().boxed()))
    }

    /// Asks the source for the partition list again; resolves when the worker took it.
    fn refresh_partitions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.started()?.clone();
        crate::runtime::unit_future_into_py(py, async move {
            handle.refresh_partitions().await.map_err(driver_err)
        })
    }

    /// Pins the partition with ID `partition` to the worker with ID `worker_id`, for the whole
    /// fleet: the leader moves it there and keeps it there while that worker is live.
    /// Resolves once the pin is stored.
    fn pin<'py>(
        &self,
        py: Python<'py>,
        partition: &str,
        worker_id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let worker_id = crate::args::worker_id("worker_id", worker_id)?;
        let handle = self.started()?.clone();
        let partition = partition_id("partition", partition)?;
        crate::runtime::unit_future_into_py(py, async move {
            handle.pin(partition, worker_id).await.map_err(driver_err)
        })
    }

    /// Removes the pin of the partition with ID `partition`; the partition stays where it is.
    fn unpin<'py>(&self, py: Python<'py>, partition: &str) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.started()?.clone();
        let partition = partition_id("partition", partition)?;
        crate::runtime::unit_future_into_py(py, async move {
            handle.unpin(partition).await.map_err(driver_err)
        })
    }

    /// Reports the measured load of partitions this worker holds, `{partition ID: load}`
    /// (messages/s, lag, CPU: any number >= 0, one unit across the fleet). Each value replaces
    /// that partition's last one; partitions left out keep theirs. The loads reach KV with
    /// the next heartbeat (in the lease, never a write per call) and the leader balances on
    /// them. Refused as a whole with `ConfigError` naming the partition when a load is
    /// negative, NaN, infinite or not a number, or the partition is not held.
    fn report_load<'py>(
        &self,
        py: Python<'py>,
        loads: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.started()?.clone();
        let loads = crate::args::loads_arg(loads)?;
        crate::runtime::unit_future_into_py(py, async move {
            handle.report_load(loads).await.map_err(driver_err)
        })
    }

    /// Moves this worker's partitions elsewhere; resolves when it holds none.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.started()?.clone();
        crate::runtime::unit_future_into_py(
            py,
            async move { handle.drain().await.map_err(driver_err) },
        )
    }

    /// Stops gracefully and hands the partitions off now (Kafka's `close()`): revokes every
    /// partition (awaiting `on_revoked`), steps down and deletes the lease, so the leader
    /// reassigns at once. `restart=True` is for a restart that follows: the lease is kept as
    /// "departing" and the share parked for `restart_grace`, so a restart that claims the same
    /// ID resumes it. Stopping a stopped (or never started) worker does nothing; during a
    /// `start()`, `stop()` waits for it and then stops the worker.
    #[pyo3(signature = (*, restart = false))]
    fn stop<'py>(slf: &Bound<'py, Self>, restart: bool) -> PyResult<Bound<'py, PyAny>> {
        let this: Py<PyWorker> = slf.clone().unbind();
        crate::runtime::unit_future_into_py(slf.py(), async move {
            let worker = this.get();
            // A start in progress finishes (or fails) first; then its worker is stopped.
            let handle = loop {
                let ended = worker.start_ended.notified();
                {
                    let mut life = lock(&worker.life);
                    match &*life {
                        Lifecycle::Starting { .. } => {}
                        Lifecycle::Started => break worker.handle.get().cloned(),
                        // Never started: nothing will ever start it now.
                        Lifecycle::Idle(_) | Lifecycle::Closed => {
                            *life = Lifecycle::Closed;
                            break None;
                        }
                    }
                }
                ended.await;
            };
            let Some(handle) = handle else { return Ok(()) };
            let result = if restart {
                handle.stop_for_restart().await
            } else {
                handle.stop().await
            };
            match result {
                Ok(()) | Err(parti::Error::Stopped) => Ok(()),
                Err(e) => Err(driver_err(e)),
            }
        })
    }

    fn __repr__(&self) -> String {
        match self.handle.get() {
            None => "Worker(not started)".to_owned(),
            Some(h) => format!(
                "Worker(worker_id={}, state={}, leader={}, partitions={})",
                h.worker_id().map_or("None".to_owned(), |w| w.0.to_string()),
                py_repr(state_name(h.state())),
                if h.is_leader() { "True" } else { "False" },
                h.assignment().len()
            ),
        }
    }
}

impl PyWorker {
    /// Ends start attempt `attempt` if it did not connect (failed or cancelled): the worker is startable
    /// again with the same arguments.
    fn give_back(&self, attempt: u64) {
        {
            let mut life = lock(&self.life);
            if let Lifecycle::Starting {
                attempt: a,
                pending,
            } = &mut *life
            {
                if *a == attempt {
                    *life = match pending.take() {
                        Some(pending) => Lifecycle::Idle(pending),
                        // Cancelled after the worker was launched (while it claimed its ID):
                        // the dropped handle stops it; this object cannot start again.
                        None => Lifecycle::Closed,
                    };
                }
            }
        }
        self.start_ended.notify_waiters();
    }

    fn started(&self) -> PyResult<&Worker> {
        self.handle.get().ok_or_else(|| {
            WorkerStoppedError::new_err("the worker is not started: await worker.start() first")
        })
    }
}

/// asyncio's done callback of a `start()` future: a start cancelled while connecting gives
/// the worker its arguments back before the caller resumes, so `start()` works again at once.
#[pyclass(frozen)]
struct StartDone(Py<PyWorker>, u64);

#[pymethods]
impl StartDone {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.0.get().give_back(self.1);
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the events since start (the newest [`FIRST_EVENTS_CAP`]) until the first `events()`
/// call takes them, then forwards the rest of the stream to it. Ends when the worker object
/// goes away without anybody asking.
fn keep_first_events(
    mut events: parti::EventStream,
) -> oneshot::Sender<mpsc::UnboundedSender<Event>> {
    let (take_tx, mut take_rx) = oneshot::channel::<mpsc::UnboundedSender<Event>>();
    crate::runtime::handle().spawn(async move {
        let mut backlog = VecDeque::new();
        let target = loop {
            tokio::select! {
                target = &mut take_rx => break target,
                event = events.recv() => match event {
                    Some(e) => {
                        if backlog.len() == FIRST_EVENTS_CAP {
                            backlog.pop_front();
                        }
                        backlog.push_back(e);
                    }
                    None => break take_rx.await,
                },
            }
        };
        let Ok(tx) = target else { return };
        for e in backlog {
            let _ = tx.send(e);
        }
        while let Some(e) = events.recv().await {
            if tx.send(e).is_err() {
                return;
            }
        }
    });
    take_tx
}
