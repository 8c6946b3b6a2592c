//! The cloneable handle to a running worker.

use crate::{Error, EventStream};
use parti_core::{Generation, PartitionId, State, WorkerId};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What the worker's task leaves behind for its handles when it ends, however it ends.
///
/// The runner owns the snapshot sender and the event streams' senders, so a runner that
/// panics drops them: the handles would see a worker that neither stopped nor runs. The task's
/// supervisor (see [`crate::WorkerBuilder::start`]) records the panic here and ends every
/// stream with a final [`crate::DriverWarning::TaskPanicked`].
#[derive(Debug)]
pub(crate) struct TaskEnd {
    /// The panic message, once the task panicked.
    crashed: OnceLock<String>,
    /// A sender of every event stream, for the final event; `None` once the task has ended.
    streams: Mutex<Option<Vec<mpsc::UnboundedSender<crate::Event>>>>,
}

impl TaskEnd {
    pub(crate) fn new(first: Option<mpsc::UnboundedSender<crate::Event>>) -> Self {
        TaskEnd {
            crashed: OnceLock::new(),
            streams: Mutex::new(Some(first.into_iter().collect())),
        }
    }

    /// Keeps a sender of a new stream; false once the task has ended (the stream is then
    /// over at once).
    fn register(&self, tx: &mpsc::UnboundedSender<crate::Event>) -> bool {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        match streams.as_mut() {
            Some(list) => {
                list.retain(|s| !s.is_closed());
                list.push(tx.clone());
                true
            }
            None => false,
        }
    }

    /// The task ended (`crash`: with this panic message): tell every stream, then let them end.
    pub(crate) fn finish(&self, crash: Option<String>) {
        let streams = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let Some(message) = crash else { return };
        tracing::error!(%message, "the worker's task panicked; the worker is stopped");
        let _ = self.crashed.set(message.clone());
        let event = crate::Event::DriverWarning(crate::DriverWarning::TaskPanicked(message));
        for tx in streams {
            let _ = tx.send(event.clone());
        }
    }

    fn crashed(&self) -> Option<&String> {
        self.crashed.get()
    }
}

/// A request from a handle to the runner.
pub(crate) enum Command {
    Refresh(Reply),
    Drain(Reply),
    Stop { final_stop: bool, reply: Reply },
    ReportLoad(Vec<(PartitionId, f64)>, Reply),
    Pin(PartitionId, Option<WorkerId>, Reply),
    Subscribe(mpsc::UnboundedSender<crate::Event>),
}

/// Where the runner answers a command.
pub(crate) type Reply = oneshot::Sender<Result<(), Error>>;

/// What the runner publishes after every step, read by the handle without a round trip.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) worker_id: Option<WorkerId>,
    pub(crate) is_leader: bool,
    pub(crate) leader: Option<WorkerId>,
    pub(crate) state: State,
    pub(crate) assignment: Arc<BTreeSet<PartitionId>>,
    pub(crate) generation: Option<Generation>,
    pub(crate) stopped: bool,
}

impl Snapshot {
    pub(crate) fn of(core: &parti_core::WorkerMachine, previous: &Snapshot) -> Snapshot {
        let assignment = if core.assignment() == previous.assignment.as_ref() {
            previous.assignment.clone()
        } else {
            Arc::new(core.assignment().clone())
        };
        Snapshot {
            worker_id: core.worker_id(),
            is_leader: core.is_leader(),
            leader: core.leader(),
            state: core.state(),
            assignment,
            generation: core.applied_generation(),
            stopped: core.is_stopped(),
        }
    }
}

/// A handle to a running worker, from [`crate::WorkerBuilder::start`]. Cheap to clone.
///
/// The getters read a snapshot the worker publishes after every step (no round trip). The
/// async methods ask the worker's task and wait for its answer. Dropping every handle stops the
/// worker gracefully, as [`Worker::stop`] would.
#[derive(Clone, Debug)]
pub struct Worker {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) snapshot: watch::Receiver<Snapshot>,
    pub(crate) shutdown_timeout: Duration,
    /// The runner task, for [`Worker::abort`].
    pub(crate) task: tokio::task::AbortHandle,
    /// How the task ended, if it did.
    pub(crate) end: Arc<TaskEnd>,
}

impl Worker {
    /// A builder with the default [`parti_core::Config`] and nothing else set: the way to start
    /// a worker (`Worker::builder()...start().await`).
    pub fn builder() -> crate::WorkerBuilder {
        crate::WorkerBuilder::default()
    }

    /// The claimed ID: `Some` once [`crate::WorkerBuilder::start`] has returned; `None` after
    /// the ID was lost (until the worker claims one again) and after a stop.
    pub fn worker_id(&self) -> Option<WorkerId> {
        self.snapshot.borrow().worker_id
    }

    /// Whether this worker leads the fleet right now.
    pub fn is_leader(&self) -> bool {
        self.snapshot.borrow().is_leader
    }

    /// The leader's ID as last seen in KV.
    pub fn leader(&self) -> Option<WorkerId> {
        self.snapshot.borrow().leader
    }

    /// The worker's lifecycle state.
    pub fn state(&self) -> State {
        self.snapshot.borrow().state
    }

    /// The partitions this worker owns: subscribed, or being revoked and not yet confirmed.
    pub fn assignment(&self) -> BTreeSet<PartitionId> {
        self.snapshot.borrow().assignment.as_ref().clone()
    }

    /// The last committed generation this worker applied.
    pub fn generation(&self) -> Option<Generation> {
        self.snapshot.borrow().generation
    }

    /// True once the worker has stopped: nothing more will happen. Also true after its task
    /// panicked (a bug; see [`Error::Crashed`]).
    pub fn is_stopped(&self) -> bool {
        self.snapshot.borrow().stopped || self.end.crashed().is_some()
    }

    /// Subscribes to the worker's events, in order and without loss, from now on.
    ///
    /// Events that happened before this call are not replayed: to see every event from the
    /// start, use [`crate::WorkerBuilder::start_with_events`]. The stream ends when the worker
    /// stops (at once if it already has); if its task panicked, its last event is
    /// [`crate::DriverWarning::TaskPanicked`].
    pub fn events(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        // If the worker is gone, `tx` is dropped with the command and the stream ends at once.
        if self.end.register(&tx) {
            let _ = self.commands.send(Command::Subscribe(tx));
        }
        EventStream { rx }
    }

    /// Asks the leader to re-read the partition source now (a follower forwards the request
    /// through KV). Resolves once the worker accepted the request, not when the assignment
    /// changed: watch [`Worker::events`] for that. (The leader also re-reads the source every
    /// `Config::source_poll_interval` unasked.)
    pub async fn refresh_partitions(&self) -> Result<(), Error> {
        self.ask(Command::Refresh).await
    }

    /// Reports the measured load of partitions this worker holds: messages/s, lag, CPU, any
    /// non-negative number, in one unit across the fleet. Each value replaces the partition's
    /// last one; partitions not named keep theirs.
    ///
    /// Cheap to call often: the loads reach KV with the next lease renewal (once a heartbeat,
    /// in the lease the worker writes anyway, never a write per call). The leader smooths them
    /// (`load_half_life`), balances on them (partitions without a report count at their
    /// weight: report every held partition) and moves at most `max_moves_per_round`
    /// partitions a round once a worker stays above `1 + rebalance_threshold` times the mean
    /// for `min_rebalance_interval` ([`Event::Rebalanced`](crate::Event::Rebalanced)).
    ///
    /// Fails with [`Error::Invalid`] naming the partition, and stores nothing, when a load is
    /// negative, NaN or infinite or a partition is not held by this worker.
    pub async fn report_load(
        &self,
        loads: impl IntoIterator<Item = (PartitionId, f64)>,
    ) -> Result<(), Error> {
        let loads: Vec<(PartitionId, f64)> = loads.into_iter().collect();
        self.ask(|reply| Command::ReportLoad(loads, reply)).await
    }

    /// Pins `partition` to the worker with ID `worker`, for the whole fleet (see
    /// [`crate::pins`]): the leader moves it there, and keeps it there while that worker is
    /// live. Resolves once the pin is stored in KV.
    pub async fn pin(&self, partition: PartitionId, worker: WorkerId) -> Result<(), Error> {
        self.ask(|reply| Command::Pin(partition, Some(worker), reply))
            .await
    }

    /// Removes `partition`'s pin; the partition stays where it is until a plan moves it.
    pub async fn unpin(&self, partition: PartitionId) -> Result<(), Error> {
        self.ask(|reply| Command::Pin(partition, None, reply)).await
    }

    /// Moves this worker's partitions elsewhere; resolves when its share is empty
    /// ([`crate::Event::Drained`]). A later [`Worker::stop`] then deletes the lease.
    /// `Err(Stopped)` if the worker stops first.
    pub async fn drain(&self) -> Result<(), Error> {
        self.ask(Command::Drain).await
    }

    /// Stops gracefully and hands the partitions off now, like Kafka's `close()`: revokes
    /// every partition (awaiting [`crate::RebalanceListener::on_revoked`]), steps down as
    /// leader and deletes the lease, so the leader reassigns the partitions at once.
    ///
    /// Bounded by the config's `shutdown_timeout` inside the worker; this call gives up with
    /// [`Error::Timeout`] one second after that. Stopping a stopped worker is `Ok`. Dropping
    /// every handle stops the same way.
    pub async fn stop(&self) -> Result<(), Error> {
        self.stop_with(true).await
    }

    /// Stops for a restart that follows (a rolling deploy): like [`Worker::stop`], but
    /// the lease is kept and marked `departing`, and the leader parks this worker's share for
    /// the config's `restart_grace` (nobody processes it meanwhile), so a restarted instance
    /// that claims the same ID within the grace resumes the same partitions without a
    /// rebalance. Past the grace they are reassigned.
    pub async fn stop_for_restart(&self) -> Result<(), Error> {
        self.stop_with(false).await
    }

    /// Kills the worker's task at once, as a crash would: no revoke, no step-down, no lease
    /// delete. Its lease stays in KV until it expires (`lease_ttl`), and only then does the
    /// leader reassign its partitions; no listener callback runs. For simulating a crash in
    /// one process (`parti demo`, tests); use [`Worker::stop`] to leave.
    ///
    /// The event streams end and [`Worker::stopped`] resolves once the task is gone;
    /// [`Worker::is_stopped`] keeps reporting the last snapshot.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Waits until the worker has stopped (however that came about).
    pub async fn stopped(&self) {
        let mut rx = self.snapshot.clone();
        // An error means the runner is gone: stopped too.
        let _ = rx.wait_for(|s| s.stopped).await;
    }

    /// Waits until the worker has claimed an ID (see [`crate::WorkerBuilder::start`]); on
    /// timeout, stops it in the background and fails with [`Error::NoId`].
    pub(crate) async fn claimed(&self, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.snapshot.clone();
        let wait = async {
            rx.wait_for(|s| s.worker_id.is_some() || s.stopped)
                .await
                .map(|s| s.worker_id.is_some())
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(true)) => Ok(()),
            // Stopped before claiming, or the runner is gone.
            Ok(_) => Err(Error::Stopped),
            Err(_) => {
                let (reply, _) = oneshot::channel();
                let _ = self.commands.send(Command::Stop {
                    final_stop: true,
                    reply,
                });
                Err(Error::NoId { waited: timeout })
            }
        }
    }

    async fn stop_with(&self, final_stop: bool) -> Result<(), Error> {
        if self.is_stopped() {
            return Ok(());
        }
        let bound = self.shutdown_timeout + Duration::from_secs(1);
        match tokio::time::timeout(bound, self.ask(|reply| Command::Stop { final_stop, reply }))
            .await
        {
            Ok(Err(Error::Stopped)) if self.is_stopped() => Ok(()),
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(bound)),
        }
    }

    /// Sends a command and waits for its answer; a gone runner is `Err(Stopped)`, or
    /// `Err(Crashed)` if its task panicked.
    async fn ask(
        &self,
        command: impl FnOnce(crate::handle::Reply) -> Command,
    ) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let result = match self.commands.send(command(tx)) {
            Ok(()) => rx.await.unwrap_or(Err(Error::Stopped)),
            Err(_) => Err(Error::Stopped),
        };
        match (result, self.end.crashed()) {
            (Err(Error::Stopped), Some(message)) => Err(Error::Crashed(message.clone())),
            (result, _) => result,
        }
    }
}
