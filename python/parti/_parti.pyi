"""Type stubs of the compiled module `parti._parti` (checked by mypy stubtest)."""

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Optional, Union, final

__version__: Final[str]
STRATEGIES: Final[tuple[str, ...]]
"""The names of the built-in strategies, from the Rust core's registry; the first is the
workers' default."""

_State = Literal[
    "init",
    "claiming_id",
    "election",
    "waiting_assignment",
    "stable",
    "scaling",
    "rebalancing",
    "emergency",
    "degraded",
    "shutdown",
]
"""A worker state, as `Worker.state` and `StateChanged` name it."""

_Handoff = Literal["strict", "relaxed"]
"""`"strict"` (revoke before grant) or `"relaxed"` (one phase, at-least-once)."""

_StrategyName = Literal["balanced", "consistent-hash", "bounded-load", "round-robin"]
"""The name of a built-in strategy."""

_AlertLevel = Literal["info", "warn", "error", "critical"]
"""How long a worker has been degraded, by the thresholds of `Config.alert_after`."""

# --- errors ---

class PartiError(Exception):
    """Base class of every error parti raises."""

class ConfigError(PartiError, ValueError):
    """A configuration value, partition or argument is invalid (also a ValueError); the
    message names it and what is allowed."""

class ConfigTypeError(ConfigError, TypeError):
    """An argument has the wrong type (a ConfigError and a TypeError); the message names it
    and the types allowed."""

class NatsError(PartiError):
    """NATS could not be reached, refused the credentials, or a bucket could not be set up."""

class WorkerStoppedError(PartiError):
    """The worker is stopped (or was never started) and cannot take this request."""

class StopTimeoutError(PartiError):
    """A graceful stop or drain overran its bound (`Config.shutdown_timeout`)."""

class SubscriptionError(PartiError):
    """The subscription manager could not subscribe or consume."""

class SimulationError(PartiError):
    """The simulator found a broken guarantee or did not converge in time."""

# --- partitions and configuration ---

@final
class Partition:
    """A unit of work: keys (its ID is the keys joined with `.`) and a weight (default 100).

    `keys` is a sequence of keys, or one `str`: the ID itself (`"orders.7"` is keys `orders`
    and `7`, the rule of the Rust core, the CLI and the bindings). Each key is
    `A-Z a-z 0-9 - _ = /`, the ID at most 256 bytes; `weight` is an int
    `1..=18446744073709551615`. A bad value raises `ConfigError` (a `ValueError`), a value of
    the wrong type (a float or bool weight) `ConfigTypeError` (a `TypeError`)."""

    def __new__(cls, keys: Union[str, Sequence[str]], weight: int = 100) -> Partition: ...
    @property
    def id(self) -> str:
        """The partition's ID: its keys joined with `.`."""
    @property
    def keys(self) -> list[str]:
        """The keys the partition was made of."""
    @property
    def weight(self) -> int:
        """The partition's weight (at least 1)."""
    @property
    def subject(self) -> str:
        """The NATS subject token of the partition (its ID)."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class WorkerSlot:
    """A live worker as a strategy sees it: its ID (an int `0..=4294967295`) and capacity (an
    int `1..=4294967295`); a bool is not an int here."""

    def __new__(cls, id: int, capacity: int = 1) -> WorkerSlot: ...
    @property
    def id(self) -> int:
        """The worker's ID."""
    @property
    def capacity(self) -> int:
        """Its capacity (at least 1): loads are weight / capacity."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Config:
    """A worker's configuration; durations in seconds; validated on construction. An argument
    left out (or None) takes the Rust core's default (`Config.defaults()` lists them)."""

    def __new__(
        cls,
        *,
        bucket_prefix: Optional[str] = None,
        replicas: Optional[int] = None,
        id_min: Optional[int] = None,
        id_max: Optional[int] = None,
        preferred_id: Optional[int] = None,
        capacity: Optional[int] = None,
        heartbeat_interval: Optional[float] = None,
        lease_ttl: Optional[float] = None,
        safety_margin: Optional[float] = None,
        emergency_grace: Optional[float] = None,
        cold_start_window: Optional[float] = None,
        expected_workers: Optional[int] = None,
        planned_scale_window: Optional[float] = None,
        max_scale_delay: Optional[float] = None,
        restart_grace: Optional[float] = None,
        min_rebalance_interval: Optional[float] = None,
        rebalance_threshold: Optional[float] = None,
        max_moves_per_round: Optional[int] = None,
        load_half_life: Optional[float] = None,
        load_cooldown: Optional[float] = None,
        source_poll_interval: Optional[float] = None,
        handoff: Optional[_Handoff] = None,
        revoke_timeout: Optional[float] = None,
        shutdown_timeout: Optional[float] = None,
        alert_after: Optional[tuple[float, float, float, float]] = None,
        max_value_bytes: Optional[int] = None,
    ) -> Config: ...
    @staticmethod
    def defaults() -> dict[str, Any]:
        """Core's default configuration as `{argument: value}` (durations in seconds): what
        every argument left out of `Config(...)` takes."""
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]
    @property
    def bucket_prefix(self) -> str:
        """Prefix of the KV bucket names (`<prefix>-leases`, `<prefix>-assign`)."""
    @property
    def replicas(self) -> int:
        """KV replicas (1 standalone, 3 in a cluster)."""
    @property
    def id_min(self) -> int:
        """Lowest worker ID that may be claimed."""
    @property
    def id_max(self) -> int:
        """Highest worker ID that may be claimed."""
    @property
    def preferred_id(self) -> Optional[int]:
        """ID to try first (a restart, a StatefulSet ordinal)."""
    @property
    def capacity(self) -> int:
        """This worker's capacity relative to others (loads are weight / capacity)."""
    @property
    def heartbeat_interval(self) -> float:
        """Seconds between lease renewals."""
    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lives without renewal."""
    @property
    def safety_margin(self) -> float:
        """Seconds before the TTL at which a strict worker fences itself (drops every partition)."""
    @property
    def emergency_grace(self) -> float:
        """Seconds waited after a crash is detected before reassigning."""
    @property
    def cold_start_window(self) -> float:
        """Seconds a leader with no committed assignment waits for workers to join."""
    @property
    def expected_workers(self) -> Optional[int]:
        """Cold start ends as soon as this many workers are live."""
    @property
    def planned_scale_window(self) -> float:
        """Debounce after a join, in seconds; each further change restarts it."""
    @property
    def max_scale_delay(self) -> float:
        """Cap on how long joins may extend the scale window, in seconds."""
    @property
    def restart_grace(self) -> float:
        """Seconds a restarting worker's partitions stay parked for it."""
    @property
    def min_rebalance_interval(self) -> float:
        """Least seconds between two planned rebalances (joins, imbalance)."""
    @property
    def rebalance_threshold(self) -> float:
        """Relative imbalance (heaviest load / mean - 1) above which the leader rebalances."""
    @property
    def max_moves_per_round(self) -> int:
        """Most partitions moved by one imbalance round."""
    @property
    def load_half_life(self) -> float:
        """Half-life of the leader's smoothing of reported partition loads (an exponentially
        weighted moving average), in seconds: a step change in load counts half after it."""
    @property
    def load_cooldown(self) -> float:
        """Seconds a partition moved by a balancing round stays where it is, whatever its load
        does (joins, leaves, crashes and drains still move it)."""
    @property
    def source_poll_interval(self) -> float:
        """Seconds between the leader's own reads of the partition source, so that a change
        reaches the assignment even when no refresh does (0: only on refresh)."""
    @property
    def handoff(self) -> _Handoff:
        """`"strict"` (revoke before grant) or `"relaxed"` (one phase, at-least-once)."""
    @property
    def revoke_timeout(self) -> float:
        """Seconds after which an unconfirmed revoke is dropped anyway."""
    @property
    def shutdown_timeout(self) -> float:
        """Bound on a graceful stop, in seconds."""
    @property
    def alert_after(self) -> tuple[float, float, float, float]:
        """Seconds degraded before an info, warn, error and critical alert."""
    @property
    def max_value_bytes(self) -> int:
        """Largest KV value the leader writes; bigger shares are split into chunks."""

# --- planning ---

_StrategyCallable = Callable[
    [list[WorkerSlot], list[Partition], dict[str, int]], Mapping[str, int]
]
"""A custom strategy: (workers, partitions, previous owner by partition ID) -> owner by ID."""

@final
class PlanResult:
    """A plan: the owner of every partition, with its balance and movement."""

    @property
    def assignment(self) -> dict[str, int]:
        """The owner (worker ID) of every partition ID."""
    @property
    def strategy(self) -> str:
        """The strategy's name (a callable's `__name__`)."""
    @property
    def max_over_mean(self) -> float:
        """Heaviest worker's load over the mean (1.0 is perfect)."""
    @property
    def min_over_mean(self) -> float:
        """Lightest worker's load over the mean."""
    @property
    def moved(self) -> int:
        """Partitions whose owner differs from `previous`."""
    @property
    def moved_weight(self) -> int:
        """Total weight of the moved partitions (effective sizes when `loads` were given)."""
    def by_worker(self) -> dict[int, list[str]]:
        """The partition IDs of each worker, sorted (workers without partitions are absent)."""

@final
class Explanation:
    """Why one partition is where a strategy puts it."""

    @property
    def partition(self) -> str:
        """The partition explained."""
    @property
    def owner(self) -> Optional[int]:
        """Its owner in the plan (None only when there are no workers)."""
    @property
    def previous(self) -> Optional[int]:
        """Its owner in `previous`, live or not."""
    @property
    def reason(self) -> str:
        """One sentence from the strategy."""

def metrics_text() -> str:
    """The metrics of every worker of this process (``parti_*``, labelled by ``prefix`` and
    ``worker_id``) in the OpenMetrics text format, ending with ``# EOF``."""
    ...

def plan(
    workers: Iterable[Union[WorkerSlot, int]],
    partitions: Iterable[Union[Partition, str]],
    *,
    strategy: Union[_StrategyName, _StrategyCallable, None] = None,
    previous: Optional[Mapping[str, int]] = None,
    pins: Optional[Mapping[str, int]] = None,
    slack: Optional[float] = None,
    max_moves: Optional[int] = None,
    loads: Optional[Mapping[str, float]] = None,
) -> PlanResult:
    """Computes the owner of every partition: `plan([1, 2, 3], partitions)`.

    `workers`: at least one, each a `WorkerSlot` or a worker ID (int `0..=4294967295`, not a
    bool); `partitions`: an iterable (not a single str) of `Partition` or str IDs (keys joined
    by `.`); `strategy`: one of `STRATEGIES` (None: the first, `"balanced"`) or a callable;
    `previous`: the previous owner by partition ID, for listed partitions only (an owner not in
    `workers` is how a leave is previewed); `pins`: partition ID -> worker ID, both listed;
    `slack`: tolerated overload over the mean (0.05 = 5 %; None: the planner's default)
    before a sticky partition moves; `max_moves`: a balancing round (as the leader's) that
    changes the owner of at most this many partitions (an int `>= 0`); None plans a change
    (a join, a leave, new partitions), which moves only what the change forces — what
    `previous` already balances stays, however uneven; pass `max_moves` to rebalance it. The
    built-in strategies other than `"balanced"` ignore `slack` and `max_moves`. `loads`:
    measured load by partition ID (any number >= 0), balanced where known, static weight
    elsewhere, on one scale (the measured partitions keep their total weight).

    Bad input raises `ConfigError` (a `ValueError`) naming the argument and what is allowed, or
    `ConfigTypeError` (a `TypeError`) for a value of the wrong type; a bad load names its
    partition."""
def explain(
    partition: str,
    workers: Iterable[Union[WorkerSlot, int]],
    partitions: Iterable[Union[Partition, str]],
    *,
    strategy: Union[_StrategyName, _StrategyCallable, None] = None,
    previous: Optional[Mapping[str, int]] = None,
    pins: Optional[Mapping[str, int]] = None,
    slack: Optional[float] = None,
    max_moves: Optional[int] = None,
    loads: Optional[Mapping[str, float]] = None,
) -> Explanation:
    """Says why the partition with ID `partition` lands where the strategy puts it; the other
    arguments are those of `plan`."""

# --- events ---

@final
class StateChanged:
    """The worker moved from one state to another."""

    @property
    def previous(self) -> _State:
        """The state it left."""
    @property
    def state(self) -> _State:
        """The state it entered."""

@final
class IdClaimed:
    """The worker claimed its ID."""

    @property
    def worker_id(self) -> int:
        """The claimed ID."""

@final
class AssignmentChanged:
    """The worker's partitions changed. Kafka's words: `assigned`, `revoked` and `lost` are
    the changes, `assignment` the whole set."""

    @property
    def generation(self) -> int:
        """The generation now applied."""
    @property
    def assigned(self) -> frozenset[str]:
        """Partitions gained."""
    @property
    def revoked(self) -> frozenset[str]:
        """Partitions handed off (`on_revoked` ran before anyone else got them)."""
    @property
    def lost(self) -> frozenset[str]:
        """Partitions lost without a handoff (a fence, a lost ID): they may already be
        another worker's, so in-flight work must not be committed."""
    @property
    def assignment(self) -> frozenset[str]:
        """Every partition now owned."""

@final
class LeadershipChanged:
    """The worker became or stopped being the leader."""

    @property
    def is_leader(self) -> bool:
        """Whether this worker now leads."""
    @property
    def epoch(self) -> int:
        """The leadership epoch."""

@final
class Alert:
    """The worker has been degraded (NATS unreachable) for a while."""

    @property
    def level(self) -> _AlertLevel:
        """`"info"`, `"warn"`, `"error"` or `"critical"`."""
    @property
    def degraded_for(self) -> float:
        """Seconds degraded so far."""

@final
class Drained:
    """A drain finished: the worker holds no partition."""

@final
class Rebalanced:
    """Leader: a balancing round moved partitions for load ("moved for load: worker 3 was at
    1.31x mean"), at most `Config.max_moves_per_round` of them; see `Worker.report_load`."""

    @property
    def generation(self) -> int:
        """The generation the round published."""
    @property
    def moved(self) -> int:
        """Partitions it moved."""
    @property
    def worker(self) -> int:
        """The most loaded worker when the round was planned."""
    @property
    def max_over_mean(self) -> float:
        """That worker's load over the mean (both relative to capacity)."""

@final
class WorkerWarning:
    """Something went wrong and was handled (retried, skipped); the worker goes on."""

    @property
    def kind(self) -> str:
        """What kind of problem (`"source_failed"`, `"kv_failed"`, `"fenced"`, ...)."""
    @property
    def message(self) -> str:
        """What happened, for a log line."""

_Event = Union[
    StateChanged,
    IdClaimed,
    AssignmentChanged,
    LeadershipChanged,
    Alert,
    Drained,
    Rebalanced,
    WorkerWarning,
]

@final
class EventStream:
    """An ordered, lossless stream of a worker's events: `async for event in stream`. It ends
    when the worker has stopped."""

    def __aiter__(self) -> EventStream:
        """The stream itself."""
    def __anext__(self) -> Awaitable[_Event]:
        """The next event; raises `StopAsyncIteration` once the worker has stopped."""

def _bench_event_stream(n: int, paced: bool = False) -> EventStream:
    """`n` queued synthetic events, for python/bench/bench.py; not public API."""

# --- workers ---

@final
class MemoryKv:
    """An in-memory KV with NATS semantics: workers sharing one run as a fleet in-process.
    It expires leases itself: give it the config's `lease_ttl` (`Worker.start()` raises
    `ConfigError` otherwise)."""

    def __new__(cls, lease_ttl: Optional[float] = None) -> MemoryKv:
        """`lease_ttl` in seconds; None: the default of `Config.lease_ttl`."""

@final
class Message:
    """A NATS message handed to a subscription handler."""

    @property
    def partition(self) -> str:
        """The partition the message belongs to."""
    @property
    def subject(self) -> str:
        """The subject it was published to."""
    @property
    def data(self) -> bytes:
        """Its payload."""
    @property
    def reply(self) -> Optional[str]:
        """The reply subject, if the publisher expects an answer."""
    @property
    def headers(self) -> dict[str, str]:
        """Its headers (the first value of each)."""

_SourceCallable = Callable[[], Union[Iterable[Union[Partition, str]], Awaitable[Iterable[Union[Partition, str]]]]]
"""A partition source: returns (or resolves to) the partitions; called on every refresh."""

_PartitionsCallback = Callable[[frozenset[str]], Union[None, Awaitable[None]]]
"""on_assigned / on_revoked / on_lost: sync or async, called with the partitions gained,
handed off, or lost without a handoff."""

_MessageHandler = Callable[[Message], Awaitable[None]]
"""A subscription handler: an async function called for every message."""

@final
class Worker:
    """A member of the fleet: `async with Worker(...) as w:` starts it and stops it."""

    def __new__(
        cls,
        *,
        nats: Union[str, Sequence[str], None] = None,
        memory: Optional[MemoryKv] = None,
        partitions: Optional[Iterable[Union[Partition, str]]] = None,
        source: Optional[_SourceCallable] = None,
        config: Optional[Config] = None,
        strategy: Union[_StrategyName, _StrategyCallable, None] = None,
        on_assigned: Optional[_PartitionsCallback] = None,
        on_revoked: Optional[_PartitionsCallback] = None,
        on_lost: Optional[_PartitionsCallback] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        nkey_seed: Optional[str] = None,
        creds_file: Union[str, os.PathLike[str], None] = None,
        tls_ca_file: Union[str, os.PathLike[str], None] = None,
    ) -> Worker:
        """Give `nats=` (a URL, comma-separated URLs or a list) or `memory=`, and `partitions=`
        or `source=`; `user`, `password`, `token`, `nkey_seed`, `creds_file` and `tls_ca_file`
        (a CA to trust) are NATS credentials. Nothing runs before `start()`.

        The listener's rule (the same in Rust and Kotlin): `on_revoked` is awaited before the
        partitions are released, and in Strict mode nobody else gets them until it returns or
        raises (the exception goes to the loop's exception handler) or `revoke_timeout`
        passes. `on_lost` is told after a fence or a lost ID, when the partitions may already
        be another worker's: do not commit there; it defaults to `on_revoked`, as in Kafka."""
    def start(self) -> Awaitable[Worker]:
        """Starts the worker (connects, claims an ID, joins the fleet) and returns it once the
        ID is claimed: `worker_id` is then set, `state` is past `"claiming_id"` and
        `assignment` is empty until the leader's first generation (`AssignmentChanged`); no ID
        within 30 s stops the worker and raises `PartiError`. After a failed or cancelled
        connection (`NatsError`, a timeout) `start()` may be called again."""
    def __aenter__(self) -> Awaitable[Worker]:
        """Starts the worker, as `start()`."""
    def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Awaitable[None]:
        """Stops gracefully (as `stop()`), whether the block raised or not; never suppresses."""
    @property
    def worker_id(self) -> Optional[int]:
        """The claimed worker ID (set once `start()` returned; None after a stop)."""
    @property
    def is_leader(self) -> bool:
        """Whether this worker is the leader."""
    @property
    def leader(self) -> Optional[int]:
        """The leader's worker ID, as last seen."""
    @property
    def state(self) -> _State:
        """The worker's state (`"init"` before start, then `"claiming_id"`, `"stable"`, ...)."""
    @property
    def assignment(self) -> frozenset[str]:
        """The partitions this worker owns now."""
    @property
    def generation(self) -> Optional[int]:
        """The generation of the applied assignment (None before the first)."""
    @property
    def is_stopped(self) -> bool:
        """Whether the worker has stopped (or crashed out)."""
    def events(self) -> EventStream:
        """An ordered, lossless stream of events. The first call after `start()` replays the
        events since start (up to 1,024); later calls see events from the moment of the call."""
    def subscribe(
        self, subject_template: str, handler: _MessageHandler, *, stream: Optional[str] = None
    ) -> None:
        """Calls the async `handler(message)` for every message of the owned partitions on the
        subject `subject_template` gives (`"work.{keys}"`, `"{key1}.in.{key0}"`); `stream=`
        consumes a JetStream work-queue stream instead of core NATS. Call once, before `start()`;
        needs `nats=`."""
    def refresh_partitions(self) -> Awaitable[None]:
        """Asks the source for the partition list again; resolves when the worker took it."""
    def pin(self, partition: str, worker_id: int) -> Awaitable[None]:
        """Pins the partition with ID `partition` to the worker `worker_id` for the whole fleet:
        the leader moves it there and keeps it there while that worker is live."""
    def unpin(self, partition: str) -> Awaitable[None]:
        """Removes the partition's pin; it stays where it is until a plan moves it."""
    def report_load(self, loads: Mapping[str, float]) -> Awaitable[None]:
        """Reports the measured load of partitions this worker holds, `{partition ID: load}`
        (messages/s, lag, CPU: any number >= 0, one unit across the fleet). Each value replaces
        that partition's last one; partitions left out keep theirs. Cheap to call often: the
        loads reach KV with the next heartbeat, in the lease (never a write per call). The
        leader smooths them (`Config.load_half_life`) and balances on them; report every held
        partition (one without a report counts at its static weight). Raises `ConfigError`
        naming the partition, and stores nothing, when a load is negative, NaN, infinite or not
        a number, or the partition is not held by this worker."""
    def drain(self) -> Awaitable[None]:
        """Moves this worker's partitions elsewhere; resolves when it holds none."""
    def stop(self, *, restart: bool = False) -> Awaitable[None]:
        """Stops gracefully and hands the partitions off now, like Kafka's `close()` (and so
        does leaving `async with`): revokes every partition (awaiting `on_revoked`), steps down
        and leaves the fleet. `restart=True` is for a restart that follows: the ID and share
        are parked for `restart_grace` (nobody processes them meanwhile) so the restarted
        worker resumes them. During a `start()` it waits for the start, then stops; stopping
        twice does nothing."""

# --- simulation ---

@final
class Simulation:
    """The core's deterministic simulator: workers on a virtual clock over an in-memory KV and a
    simulated network, no NATS. The same seed and calls give the same run. After every step the
    guarantees (exclusive ownership, committed increasing generations, distinct IDs) are
    checked; broken ones land in `violations`.

    Nodes are ints: the index returned by `add_worker`, stable across crashes and restarts. An
    index that names no node, like any other invalid argument, raises `ConfigError` naming it.
    `advance` and `converge` release the GIL and run at most one virtual day per call.
    """

    def __new__(
        cls,
        partitions: Union[int, Iterable[Union[Partition, str]]] = 30,
        *,
        config: Optional[Config] = None,
        seed: int = 0,
    ) -> Simulation:
        """`partitions`: an int (that many partitions `p0000`, `p0001`, ...) or an iterable of
        `Partition` or `str` (no duplicate IDs); `config`: every worker's template (default
        `Config()`; its durations run on the virtual clock)."""
    def add_worker(
        self, *, capacity: Optional[int] = None, preferred_id: Optional[int] = None
    ) -> int:
        """Adds a node and starts a worker on it now; returns the node index."""
    def crash(self, node: int) -> None:
        """Kills the node's process (like SIGKILL): its holdings vanish at once."""
    def restart(self, node: int) -> None:
        """Starts a new process on a crashed or stopped node; no-op on a running node."""
    def stop(self, node: int, *, restart: bool = False) -> None:
        """Graceful stop that hands the partitions off (`restart=True`: a restart follows, the
        share is parked for `restart_grace`); the process exits after the handoff."""
    def drain(self, node: int) -> None:
        """Asks the node's worker to hand its partitions to the others and keep running."""
    def refresh(self, node: int) -> None:
        """Asks the node's worker to re-read the partition source (after `set_partitions`)."""
    def pin(self, partition: str, worker_id: Optional[int]) -> None:
        """An operator pins the partition to the worker `worker_id` (None removes the pin), as
        `parti pin` does; the leader honours it while that worker is live."""
    def isolate(self, node: int) -> None:
        """Cuts the node off the KV; its process keeps running."""
    def heal(self, node: Optional[int] = None) -> None:
        """Reconnects an isolated node; with no node, ends every fault: heals every node, ends
        a KV outage, repairs the source and restarts crashed nodes."""
    def kill_leader(self) -> Optional[int]:
        """Crashes the node that leads; returns its index (None if nobody leads)."""
    def set_partitions(self, partitions: Union[int, Iterable[Union[Partition, str]]]) -> None:
        """Replaces the list the source returns; workers learn it at the leader's next read."""
    def set_source_failing(self, failing: bool) -> None:
        """Makes the partition source fail (True) or work again (False)."""
    def set_kv_outage(self, down: bool) -> None:
        """Starts (True) or ends (False) a KV outage."""
    def advance(self, seconds: float) -> None:
        """Runs the virtual clock forward by `seconds` (at most 86400 per call)."""
    def converge(self, timeout: float = 120.0) -> float:
        """Runs until every partition has exactly one owner, every worker is stable and nothing
        changed for two heartbeat intervals; returns the virtual seconds from the call to the
        last change. Raises `SimulationError` (and records a violation) if `timeout` virtual
        seconds pass first. Does not check `violations`: see `check`."""
    @property
    def now(self) -> float:
        """Virtual seconds since the simulation started."""
    @property
    def seed(self) -> int:
        """The seed of this run."""
    @property
    def leader(self) -> Optional[int]:
        """The index of the running node that leads, if any."""
    @property
    def nodes(self) -> int:
        """Number of nodes ever added."""
    def worker_id(self, node: int) -> Optional[int]:
        """The worker ID of the node's running worker, if it has claimed one."""
    def state(self, node: int) -> _State:
        """The state the node's worker last reported (`"stable"`, `"claiming_id"`, ...)."""
    def status(self, node: int) -> Literal["running", "crashed", "stopped"]:
        """`"running"`, `"crashed"` or `"stopped"`."""
    def assignment(self, node: int) -> frozenset[str]:
        """The IDs of the partitions the node holds (empty unless running)."""
    def assignments(self) -> dict[int, frozenset[str]]:
        """Worker ID -> IDs of the partitions it holds, for running workers with an ID."""
    def owners(self) -> dict[str, list[int]]:
        """Partition ID -> the worker IDs holding it (held partitions only)."""
    @property
    def violations(self) -> list[str]:
        """Every broken guarantee so far, one line each (empty on a clean run)."""
    def is_settled(self) -> bool:
        """Every partition held by exactly one running worker, every running worker stable."""
    def check(self) -> None:
        """Raises `SimulationError` listing every violation (and the last trace lines), if any."""
    def trace(self, last: int = 50) -> str:
        """The last `last` lines of the trace of faults and protocol events."""

# --- end simulation ---
