"""Workers in-process on the in-memory KV: a fleet without NATS, Python strategies in a live
fleet, drain, and event order."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import pytest

import parti
from conftest import fast_config, next_event, numbered, owned_exactly_once, wait_until


async def start_pair(
    stop_all: list[parti.Worker], partitions: list[parti.Partition], strategy: Any = None
) -> None:
    """Starts two workers sharing one in-memory KV (added to `stop_all`, stopped after the test)."""
    kv = parti.MemoryKv(lease_ttl=1.0)
    for _ in range(2):
        w = parti.Worker(memory=kv, partitions=partitions, config=fast_config(2), strategy=strategy)
        stop_all.append(await w.start())


async def test_memory_fleet_shares_partitions_exactly_once(stop_all: list[parti.Worker]) -> None:
    partitions = numbered(20)
    await start_pair(stop_all, partitions)
    await wait_until(lambda: owned_exactly_once(stop_all, partitions) and all(w.assignment for w in stop_all))
    assert sorted(len(w.assignment) for w in stop_all) == [10, 10]


def all_on_highest(
    workers: list[parti.WorkerSlot], partitions: list[parti.Partition], previous: dict[str, int]
) -> Mapping[str, int]:
    """A custom strategy: every partition on the worker with the highest ID."""
    top = max(w.id for w in workers)
    return {p.id: top for p in partitions}


async def test_python_strategy_places_partitions_in_a_live_fleet(stop_all: list[parti.Worker]) -> None:
    calls: list[int] = []

    def recorded(
        workers: list[parti.WorkerSlot], partitions: list[parti.Partition], previous: dict[str, int]
    ) -> Mapping[str, int]:
        calls.append(len(workers))
        return all_on_highest(workers, partitions, previous)

    partitions = numbered(6)
    await start_pair(stop_all, partitions, strategy=recorded)
    await wait_until(lambda: owned_exactly_once(stop_all, partitions))
    top = max(w.worker_id for w in stop_all if w.worker_id is not None)
    owner = next(w for w in stop_all if w.worker_id == top)
    await wait_until(lambda: len(owner.assignment) == 6, what="all on the highest ID")
    assert 2 in calls


async def test_a_pin_holds_even_against_a_python_strategy_and_unpin_releases_it(
    stop_all: list[parti.Worker],
) -> None:
    partitions = numbered(6)
    await start_pair(stop_all, partitions, strategy=all_on_highest)
    await wait_until(lambda: any(len(w.assignment) == 6 for w in stop_all), what="all on the highest ID")
    high = next(w for w in stop_all if len(w.assignment) == 6)
    low = next(w for w in stop_all if w is not high)
    assert low.worker_id is not None
    pinned = partitions[0].id

    await high.pin(pinned, low.worker_id)
    await wait_until(
        lambda: low.assignment == frozenset({pinned}) and owned_exactly_once(stop_all, partitions),
        what="the pinned partition on the low worker",
    )
    await low.unpin(pinned)
    await wait_until(lambda: len(high.assignment) == 6, what="the strategy places it again")
    with pytest.raises(parti.ConfigError, match="partition"):
        await low.pin("a..b", 1)


async def test_failing_python_strategy_is_reported_and_balanced_takes_over(
    monkeypatch: pytest.MonkeyPatch, stop_all: list[parti.Worker]
) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def broken(
        workers: list[parti.WorkerSlot], partitions: list[parti.Partition], previous: dict[str, int]
    ) -> Mapping[str, int]:
        raise ZeroDivisionError("strategy bug")

    kv = parti.MemoryKv(lease_ttl=1.0)
    partitions = numbered(4)
    w = parti.Worker(memory=kv, partitions=partitions, config=fast_config(), strategy=broken)
    stop_all.append(await w.start())
    await wait_until(lambda: owned_exactly_once(stop_all, partitions), what="balanced fallback")
    assert any(isinstance(r.exc_value, ZeroDivisionError) for r in reported)


async def test_drain_hands_everything_over_and_emits_drained(stop_all: list[parti.Worker]) -> None:
    partitions = numbered(10)
    await start_pair(stop_all, partitions)
    await wait_until(lambda: owned_exactly_once(stop_all, partitions) and all(w.assignment for w in stop_all))
    leaving, staying = stop_all
    events = leaving.events()
    await leaving.drain()
    assert leaving.assignment == frozenset()
    await next_event(events, parti.Drained, timeout=5)
    await wait_until(lambda: len(staying.assignment) == 10, what="the other worker owns all")


async def test_first_events_call_replays_the_start(stop_all: list[parti.Worker]) -> None:
    kv = parti.MemoryKv(lease_ttl=1.0)
    w = await parti.Worker(memory=kv, partitions=["a", "b"], config=fast_config()).start()
    stop_all.append(w)
    await wait_until(lambda: w.assignment == frozenset({"a", "b"}))
    # Called only now, the first stream still sees everything since start, in order.
    replay = w.events()
    claimed = await next_event(replay, parti.IdClaimed, timeout=5)
    assert claimed.worker_id == w.worker_id
    changed = await next_event(replay, parti.AssignmentChanged, timeout=5)
    assert changed.assigned == frozenset({"a", "b"})
    assert repr(changed) == (
        f"AssignmentChanged(generation={changed.generation}, assigned=['a', 'b'], "
        "revoked=[], lost=[], assignment=['a', 'b'])"
    )


async def test_stop_twice_and_stop_before_start_are_no_ops() -> None:
    kv = parti.MemoryKv(lease_ttl=1.0)
    never = parti.Worker(memory=kv, partitions=["a"], config=fast_config())
    await never.stop()
    with pytest.raises(parti.PartiError, match="was stopped"):
        await never.start()
    w = await parti.Worker(memory=kv, partitions=["a"], config=fast_config()).start()
    await w.stop()
    await w.stop()
    assert w.is_stopped
    with pytest.raises(parti.WorkerStoppedError):
        await w.refresh_partitions()
