"""Type stubs of the compiled module `parti._parti` (checked by mypy stubtest)."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Optional, Union, final

__version__: Final[str]

# --- errors ---

class PartiError(Exception):
    """Base class of every error parti raises."""

class ConfigError(PartiError):
    """A configuration value, partition or argument is invalid; the message names it."""

class NatsError(PartiError):
    """NATS could not be reached, refused the credentials, or a bucket could not be set up."""

class SourceError(PartiError):
    """The partition source failed."""

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
    """A unit of work: keys (its ID is the keys joined with `.`) and a weight (default 100)."""

    def __new__(cls, keys: Union[str, Sequence[str]], weight: int = 100) -> Partition: ...
    @property
    def id(self) -> str: ...
    @property
    def keys(self) -> list[str]: ...
    @property
    def weight(self) -> int: ...
    @property
    def subject(self) -> str: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class WorkerSlot:
    """A live worker as a strategy sees it: its ID and capacity."""

    def __new__(cls, id: int, capacity: int = 1) -> WorkerSlot: ...
    @property
    def id(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Config:
    """A worker's configuration; durations in seconds; validated on construction."""

    def __new__(
        cls,
        *,
        bucket_prefix: str = "parti",
        replicas: int = 1,
        id_min: int = 0,
        id_max: int = 99,
        preferred_id: Optional[int] = None,
        capacity: int = 1,
        heartbeat_interval: float = 2.0,
        lease_ttl: float = 6.0,
        safety_margin: float = 1.0,
        emergency_grace: float = 1.5,
        cold_start_window: float = 30.0,
        expected_workers: Optional[int] = None,
        planned_scale_window: float = 10.0,
        max_scale_delay: float = 30.0,
        restart_grace: float = 30.0,
        min_rebalance_interval: float = 10.0,
        rebalance_threshold: float = 0.15,
        max_moves_per_round: int = 100,
        handoff: str = "strict",
        revoke_timeout: float = 5.0,
        shutdown_timeout: float = 10.0,
        alert_after: tuple[float, float, float, float] = (0.0, 30.0, 120.0, 300.0),
        max_value_bytes: int = 1000000,
    ) -> Config: ...
    @property
    def bucket_prefix(self) -> str: ...
    @property
    def replicas(self) -> int: ...
    @property
    def id_min(self) -> int: ...
    @property
    def id_max(self) -> int: ...
    @property
    def preferred_id(self) -> Optional[int]: ...
    @property
    def capacity(self) -> int: ...
    @property
    def heartbeat_interval(self) -> float: ...
    @property
    def lease_ttl(self) -> float: ...
    @property
    def safety_margin(self) -> float: ...
    @property
    def emergency_grace(self) -> float: ...
    @property
    def cold_start_window(self) -> float: ...
    @property
    def expected_workers(self) -> Optional[int]: ...
    @property
    def planned_scale_window(self) -> float: ...
    @property
    def max_scale_delay(self) -> float: ...
    @property
    def restart_grace(self) -> float: ...
    @property
    def min_rebalance_interval(self) -> float: ...
    @property
    def rebalance_threshold(self) -> float: ...
    @property
    def max_moves_per_round(self) -> int: ...
    @property
    def handoff(self) -> str: ...
    @property
    def revoke_timeout(self) -> float: ...
    @property
    def shutdown_timeout(self) -> float: ...
    @property
    def alert_after(self) -> tuple[float, float, float, float]: ...
    @property
    def max_value_bytes(self) -> int: ...

# --- planning ---

_StrategyCallable = Callable[
    [list[WorkerSlot], list[Partition], dict[str, int]], Mapping[str, int]
]
"""A custom strategy: (workers, partitions, previous owner by partition ID) -> owner by ID."""

@final
class PlanResult:
    """A plan: the owner of every partition, with its balance and movement."""

    @property
    def assignment(self) -> dict[str, int]: ...
    @property
    def strategy(self) -> str: ...
    @property
    def max_over_mean(self) -> float: ...
    @property
    def min_over_mean(self) -> float: ...
    @property
    def moved(self) -> int: ...
    @property
    def moved_weight(self) -> int: ...
    def by_worker(self) -> dict[int, list[str]]: ...

@final
class Explanation:
    """Why one partition is where a strategy puts it."""

    @property
    def partition(self) -> str: ...
    @property
    def owner(self) -> Optional[int]: ...
    @property
    def previous(self) -> Optional[int]: ...
    @property
    def reason(self) -> str: ...

def plan(
    workers: Iterable[Union[WorkerSlot, int]],
    partitions: Iterable[Union[Partition, str]],
    *,
    strategy: Union[str, _StrategyCallable, None] = None,
    previous: Optional[Mapping[str, int]] = None,
    slack: float = 0.05,
    max_moves: Optional[int] = None,
) -> PlanResult: ...
def explain(
    partition: str,
    workers: Iterable[Union[WorkerSlot, int]],
    partitions: Iterable[Union[Partition, str]],
    *,
    strategy: Union[str, _StrategyCallable, None] = None,
    previous: Optional[Mapping[str, int]] = None,
    slack: float = 0.05,
    max_moves: Optional[int] = None,
) -> Explanation: ...

# --- events ---

@final
class StateChanged:
    """The worker moved from one state to another."""

    @property
    def previous(self) -> str: ...
    @property
    def state(self) -> str: ...

@final
class IdClaimed:
    """The worker claimed its ID."""

    @property
    def worker_id(self) -> int: ...

@final
class AssignmentChanged:
    """The worker's partitions changed (Kafka's assigned / revoked)."""

    @property
    def generation(self) -> int: ...
    @property
    def assigned(self) -> frozenset[str]: ...
    @property
    def revoked(self) -> frozenset[str]: ...
    @property
    def all(self) -> frozenset[str]: ...

@final
class LeadershipChanged:
    """The worker became or stopped being the leader."""

    @property
    def is_leader(self) -> bool: ...
    @property
    def epoch(self) -> int: ...

@final
class Alert:
    """The worker has been degraded (NATS unreachable) for a while."""

    @property
    def level(self) -> str: ...
    @property
    def degraded_for(self) -> float: ...

@final
class Drained:
    """A drain finished: the worker holds no partition."""

@final
class WorkerWarning:
    """Something went wrong and was handled (retried, skipped); the worker goes on."""

    @property
    def kind(self) -> str: ...
    @property
    def message(self) -> str: ...

_Event = Union[
    StateChanged, IdClaimed, AssignmentChanged, LeadershipChanged, Alert, Drained, WorkerWarning
]

@final
class EventStream:
    """An ordered, lossless stream of a worker's events: `async for event in stream`."""

    def __aiter__(self) -> EventStream: ...
    def __anext__(self) -> Awaitable[_Event]: ...

def _bench_event_stream(n: int, paced: bool = False) -> EventStream:
    """`n` queued synthetic events, for python/bench/bench.py; not public API."""

# --- workers ---

@final
class MemoryKv:
    """An in-memory KV with NATS semantics: workers sharing one run as a fleet in-process."""

    def __new__(cls, lease_ttl: float = 6.0) -> MemoryKv: ...

@final
class Message:
    """A NATS message handed to a subscription handler."""

    @property
    def partition(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def reply(self) -> Optional[str]: ...
    @property
    def headers(self) -> dict[str, str]: ...

_SourceCallable = Callable[[], Union[Iterable[Union[Partition, str]], Awaitable[Iterable[Union[Partition, str]]]]]
"""A partition source: returns (or resolves to) the partitions; called on every refresh."""

_PartitionsCallback = Callable[[frozenset[str]], Union[None, Awaitable[None]]]
"""on_assigned / on_revoked: sync or async, called with the partitions gained or lost."""

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
        strategy: Union[str, _StrategyCallable, None] = None,
        on_assigned: Optional[_PartitionsCallback] = None,
        on_revoked: Optional[_PartitionsCallback] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        nkey_seed: Optional[str] = None,
        creds_file: Optional[str] = None,
        tls_ca_file: Optional[str] = None,
    ) -> Worker: ...
    def start(self) -> Awaitable[Worker]: ...
    def __aenter__(self) -> Awaitable[Worker]: ...
    def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Awaitable[None]: ...
    @property
    def worker_id(self) -> Optional[int]: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def leader(self) -> Optional[int]: ...
    @property
    def state(self) -> str: ...
    @property
    def assignment(self) -> frozenset[str]: ...
    @property
    def generation(self) -> Optional[int]: ...
    @property
    def is_stopped(self) -> bool: ...
    def events(self) -> EventStream: ...
    def subscribe(
        self, subject_template: str, handler: _MessageHandler, *, stream: Optional[str] = None
    ) -> None: ...
    def refresh_partitions(self) -> Awaitable[None]: ...
    def drain(self) -> Awaitable[None]: ...
    def stop(self, final: bool = False) -> Awaitable[None]: ...

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
    def stop(self, node: int, *, final: bool = False) -> None:
        """Graceful stop (`final=True`: no restart follows); the process exits after handoff."""
    def drain(self, node: int) -> None:
        """Asks the node's worker to hand its partitions to the others and keep running."""
    def refresh(self, node: int) -> None:
        """Asks the node's worker to re-read the partition source (after `set_partitions`)."""
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
    def seed(self) -> int: ...
    @property
    def leader(self) -> Optional[int]:
        """The index of the running node that leads, if any."""
    @property
    def nodes(self) -> int:
        """Number of nodes ever added."""
    def worker_id(self, node: int) -> Optional[int]:
        """The worker ID of the node's running worker, if it has claimed one."""
    def state(self, node: int) -> str:
        """The state the node's worker last reported (`"stable"`, `"claiming_id"`, ...)."""
    def status(self, node: int) -> str:
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
