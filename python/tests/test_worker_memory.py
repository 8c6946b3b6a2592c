"""Workers in-process on the in-memory KV: a fleet without NATS, Python strategies in a live
fleet, drain, event order, and measured load (`report_load` refusals, a `Rebalanced` round)."""

from __future__ import annotations

import asyncio
import re
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
    # the worker ID is named: out of range, or not an int (True is not worker 1)
    with pytest.raises(parti.ConfigError, match="worker_id: -1 is out of range"):
        await low.pin(pinned, -1)
    with pytest.raises(parti.ConfigTypeError, match="worker_id: expected an int, got bool"):
        await low.pin(pinned, True)


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
    assert await leaving.drain() is None  # type: ignore[func-returns-value]
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


def reported_load(prefix: str) -> list[float]:
    """The `parti_load` gauges of the workers with bucket prefix `prefix`."""
    found = []
    for line in parti.metrics_text().splitlines():
        if line.startswith("parti_load{") and f'prefix="{prefix}"' in line:
            found.append(float(line.rsplit(" ", 1)[1]))
    return found


async def test_report_load_refuses_a_bad_batch_as_a_whole_naming_the_partition(
    stop_all: list[parti.Worker],
) -> None:
    prefix = "py-load-refusals"
    kv = parti.MemoryKv(lease_ttl=1.0)
    config = fast_config(bucket_prefix=prefix)
    w = await parti.Worker(memory=kv, partitions=["a", "b"], config=config).start()
    stop_all.append(w)
    await wait_until(lambda: w.assignment == frozenset({"a", "b"}))
    # Resolves to None, as the stub says (not to an empty tuple).
    assert await w.report_load({"a": 1.0, "b": 2}) is None  # type: ignore[func-returns-value]
    assert reported_load(prefix) == [3.0]
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"a": 5.0, "b": -1.0}, r'"b".*load -1(\.0)? must be a finite number >= 0'),
        ({"a": 5.0, "b": float("nan")}, r'"b".*finite'),
        ({"a": 5.0, "b": float("inf")}, r'"b".*finite'),
        ({"a": 5.0, "zz": 1.0}, r'"zz".*not held by this worker'),
        ({"a": 5.0, "b": "x"}, r"\"b\".*load 'x' is not a number"),
    ]
    for loads, needle in refusals:
        with pytest.raises(parti.ConfigError, match=needle):
            await w.report_load(loads)
    with pytest.raises(parti.ConfigError, match="loads: expected a mapping"):
        await w.report_load(["a"])  # type: ignore[arg-type]
    # Nothing of the refused batches was kept: `a` still counts 1.0, not 5.0.
    await w.report_load({"b": 4.0})
    assert reported_load(prefix) == [5.0]
    await w.stop()
    with pytest.raises(parti.WorkerStoppedError):
        await w.report_load({"a": 1.0})


async def report_forever(w: parti.Worker, hot: frozenset[str]) -> None:
    """Reports every held partition's load every 50 ms: 10.0 for the `hot` ones, 1.0 else."""
    while True:
        loads = {p: 10.0 if p in hot else 1.0 for p in w.assignment}
        try:
            await w.report_load(loads)
        except parti.ConfigError:
            pass  # a partition moved between reading the assignment and reporting
        await asyncio.sleep(0.05)  # the reporting cadence, not a synchronisation


async def test_a_hot_worker_is_relieved_by_a_round_the_leader_reports_as_rebalanced(
    stop_all: list[parti.Worker],
) -> None:
    partitions = numbered(8)
    kv = parti.MemoryKv(lease_ttl=1.0)
    config = fast_config(
        2, load_half_life=0.5, load_cooldown=1.0, max_moves_per_round=2, bucket_prefix="py-load"
    )
    for _ in range(2):
        w = parti.Worker(memory=kv, partitions=partitions, config=config)
        stop_all.append(await w.start())
    await wait_until(lambda: owned_exactly_once(stop_all, partitions) and all(w.assignment for w in stop_all))
    leader = next(w for w in stop_all if w.is_leader)
    events = leader.events()  # the first call replays everything since start
    hot_worker = stop_all[0]
    hot = hot_worker.assignment
    reporters = [asyncio.ensure_future(report_forever(w, hot)) for w in stop_all]
    try:
        event = await next_event(events, parti.Rebalanced, timeout=15)
    finally:
        for r in reporters:
            r.cancel()
        await asyncio.gather(*reporters, return_exceptions=True)
    assert event.worker == hot_worker.worker_id
    # 4 x 10 against 4 x 1: 40 / 22 = 1.82 x the mean.
    assert event.max_over_mean == pytest.approx(40 / 22, rel=0.01)
    assert 1 <= event.moved <= 2
    assert repr(event) == (
        f"Rebalanced(generation={event.generation}, moved={event.moved}, "
        f"worker={event.worker}, max_over_mean={event.max_over_mean!r})"
    )
