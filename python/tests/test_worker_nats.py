"""Workers against real nats-server processes: lifecycle, sharing, refresh, leaving, callbacks,
sources, subscriptions and connection errors."""

from __future__ import annotations

import asyncio
import signal

import nats
from nats.js.api import RetentionPolicy, StreamConfig
import pytest

import parti
from conftest import NatsServer, fast_config, free_port, next_event, numbered, owned_exactly_once, wait_until


async def test_lifecycle_start_reports_id_and_assignment_and_exit_stops(nats_url: str) -> None:
    partitions = numbered(10)
    worker = parti.Worker(nats=nats_url, partitions=partitions, config=fast_config())
    assert worker.state == "init"
    assert worker.worker_id is None
    async with worker as w:
        assert w is worker
        events = w.events()
        claimed = await next_event(events, parti.IdClaimed)
        leadership = await next_event(events, parti.LeadershipChanged)
        assert leadership.is_leader and leadership.epoch >= 1
        changed = await next_event(events, parti.AssignmentChanged)
        assert changed.assigned == frozenset(p.id for p in partitions)
        assert changed.revoked == frozenset()
        assert changed.assignment == changed.assigned
        await wait_until(lambda: w.state == "stable", what="state stable")
        assert w.worker_id == claimed.worker_id
        assert w.is_leader
        assert w.leader == w.worker_id
        assert w.assignment == changed.assignment
        assert w.generation is not None and w.generation >= changed.generation
        assert not w.is_stopped
    assert worker.is_stopped
    state: str = worker.state  # as str: mypy keeps worker.state narrowed to "init" from above
    assert state == "shutdown"
    assert worker.assignment == frozenset()


async def test_worker_id_and_state_are_set_when_start_returns_every_time(nats_url: str) -> None:
    """`start()` returns once the ID is claimed (before the fix: None in 7 of 8 starts)."""
    for i in range(8):
        worker = parti.Worker(nats=nats_url, partitions=numbered(4), config=fast_config())
        await worker.start()
        try:
            assert worker.worker_id == 0, f"start {i}"
            assert worker.state not in ("init", "claiming_id"), f"start {i}: {worker.state}"
        finally:
            await worker.stop()


async def test_event_stream_ends_after_stop(nats_url: str) -> None:
    async with parti.Worker(nats=nats_url, partitions=numbered(3), config=fast_config()) as w:
        events = w.events()
        await next_event(events, parti.AssignmentChanged)
    rest = [e async for e in events]  # ends: the worker stopped
    revoked = [e for e in rest if isinstance(e, parti.AssignmentChanged)]
    assert revoked and revoked[-1].assignment == frozenset()  # the stop revoked everything
    assert any(isinstance(e, parti.StateChanged) and e.state == "shutdown" for e in rest)
    assert [e async for e in events] == []  # an ended stream stays ended


async def test_three_workers_share_30_partitions_exactly_once(
    nats_url: str, stop_all: list[parti.Worker]
) -> None:
    partitions = numbered(30)
    for _ in range(3):
        w = parti.Worker(nats=nats_url, partitions=partitions, config=fast_config(3))
        stop_all.append(await w.start())
    await wait_until(
        lambda: owned_exactly_once(stop_all, partitions) and all(w.assignment for w in stop_all),
        what="30 partitions owned exactly once by 3 workers",
    )
    assert sorted(w.worker_id for w in stop_all if w.worker_id is not None) == [0, 1, 2]
    assert sum(w.is_leader for w in stop_all) == 1
    assert all(len(w.assignment) == 10 for w in stop_all)


async def test_refresh_partitions_applies_the_new_source_list(
    nats_url: str, stop_all: list[parti.Worker]
) -> None:
    current = numbered(8)

    async def source() -> list[parti.Partition]:
        await asyncio.sleep(0)  # an async source is awaited on the loop
        return current

    for _ in range(2):
        stop_all.append(await parti.Worker(nats=nats_url, source=source, config=fast_config(2)).start())
    await wait_until(lambda: owned_exactly_once(stop_all, current), what="first list")
    current = numbered(8) + numbered(4, prefix="q")
    await stop_all[0].refresh_partitions()
    await wait_until(lambda: owned_exactly_once(stop_all, current), what="refreshed list")


async def test_leaving_worker_hands_its_partitions_to_the_others(
    nats_url: str, stop_all: list[parti.Worker]
) -> None:
    partitions = numbered(30)
    for _ in range(3):
        w = parti.Worker(nats=nats_url, partitions=partitions, config=fast_config(3))
        stop_all.append(await w.start())
    await wait_until(lambda: owned_exactly_once(stop_all, partitions), what="3-way split")
    leaving = stop_all[1]
    held = leaving.assignment
    assert held
    await leaving.stop()
    assert leaving.is_stopped
    assert leaving.assignment == frozenset()
    rest = [stop_all[0], stop_all[2]]
    await wait_until(lambda: owned_exactly_once(rest, partitions), what="2-way split")
    assert held <= rest[0].assignment | rest[1].assignment


async def test_relaxed_worker_losing_nats_keeps_its_partitions_and_raises_alerts() -> None:
    server = NatsServer()
    config = fast_config(handoff="relaxed", alert_after=(0.0, 0.3, 60.0, 120.0), shutdown_timeout=0.5)
    try:
        async with parti.Worker(nats=server.url, partitions=["a", "b"], config=config) as w:
            events = w.events()
            await wait_until(lambda: len(w.assignment) == 2, what="assignment")
            server.kill()
            first = await next_event(events, parti.Alert)
            second = await next_event(events, parti.Alert)
            assert (first.level, second.level) == ("info", "warn")
            assert second.degraded_for >= 0.3
            assert w.state == "degraded"
            assert w.assignment == frozenset({"a", "b"})  # Relaxed: the cached share is kept
    finally:
        server.kill()


async def test_strict_revoke_finishes_before_the_partition_is_assigned_elsewhere(
    nats_url: str, stop_all: list[parti.Worker]
) -> None:
    partitions = numbered(12)
    timeline: list[tuple[str, str, frozenset[str]]] = []

    def listener(name: str) -> dict[str, object]:
        def on_assigned(parts: frozenset[str]) -> None:  # a sync callback
            timeline.append(("assigned", name, parts))

        async def on_revoked(parts: frozenset[str]) -> None:  # an async one, finishing work
            await asyncio.sleep(0.2)
            timeline.append(("revoked", name, parts))

        return {"on_assigned": on_assigned, "on_revoked": on_revoked}

    first = parti.Worker(
        nats=nats_url, partitions=partitions, config=fast_config(1), **listener("a")  # type: ignore[arg-type]
    )
    stop_all.append(await first.start())
    await wait_until(lambda: len(first.assignment) == 12, what="first worker owns all")
    second = parti.Worker(
        nats=nats_url, partitions=partitions, config=fast_config(1), **listener("b")  # type: ignore[arg-type]
    )
    stop_all.append(await second.start())
    await wait_until(lambda: owned_exactly_once(stop_all, partitions) and bool(second.assignment))
    moved = second.assignment
    # `assignment` is current as soon as the worker applied it; `on_assigned` runs on the
    # event loop right after: wait for it to have told every moved partition
    def told() -> set[str]:
        return {p for what, who, ps in timeline if what == "assigned" and who == "b" for p in ps}

    await wait_until(lambda: moved <= told(), what="b's on_assigned told every partition")
    for p in moved:
        revoked_at = next(
            i for i, (what, who, ps) in enumerate(timeline) if what == "revoked" and who == "a" and p in ps
        )
        assigned_at = next(
            i for i, (what, who, ps) in enumerate(timeline) if what == "assigned" and who == "b" and p in ps
        )
        assert revoked_at < assigned_at, f"{p} was assigned to b before a's on_revoked returned"


async def test_raising_source_is_reported_and_the_worker_keeps_its_partitions(
    nats_url: str,
) -> None:
    calls = 0

    def source() -> list[str]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("inventory service down")
        return ["a", "b", "c"]

    async with parti.Worker(nats=nats_url, source=source, config=fast_config()) as w:
        events = w.events()
        await wait_until(lambda: len(w.assignment) == 3, what="first listing applied")
        await w.refresh_partitions()
        warning = await next_event(events, parti.WorkerWarning)
        while warning.kind != "source_failed":
            warning = await next_event(events, parti.WorkerWarning)
        assert "RuntimeError: inventory service down" in warning.message
        assert w.assignment == frozenset({"a", "b", "c"})
        assert not w.is_stopped


async def test_callback_exception_goes_to_the_loop_exception_handler(nats_url: str) -> None:
    seen: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))

    def on_assigned(parts: frozenset[str]) -> None:
        raise ValueError("bug in the application")

    try:
        async with parti.Worker(
            nats=nats_url, partitions=["x"], config=fast_config(), on_assigned=on_assigned
        ) as w:
            await wait_until(lambda: bool(seen), what="the exception handler to be called")
            assert w.assignment == frozenset({"x"})
    finally:
        loop.set_exception_handler(None)
    assert "on_assigned" in str(seen[0]["message"])
    assert isinstance(seen[0]["exception"], ValueError)


async def test_subscribe_delivers_messages_of_owned_partitions(nats_url: str) -> None:
    received: list[tuple[str, str, bytes]] = []

    async def handle(message: parti.Message) -> None:
        received.append((message.partition, message.subject, message.data))

    worker = parti.Worker(nats=nats_url, partitions=["eu", "us"], config=fast_config())
    worker.subscribe("orders.{keys}", handle)
    async with worker as w:
        await wait_until(lambda: len(w.assignment) == 2, what="both partitions owned")
        client = await nats.connect(nats_url)
        try:
            # The subscriptions start right after the assignment; publish until one lands.
            async def published() -> None:
                while not received:
                    await client.publish("orders.eu", b"order-1")
                    await client.flush()
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(published(), 10)
            await client.publish("orders.us", b"order-2")
            await client.flush()
            await wait_until(lambda: any(r[0] == "us" for r in received), what="us message")
        finally:
            await client.close()
    assert ("eu", "orders.eu", b"order-1") in received
    assert ("us", "orders.us", b"order-2") in received


async def test_jetstream_messages_are_handled_exactly_once_across_a_rebalance(
    nats_url: str, stop_all: list[parti.Worker]
) -> None:
    client = await nats.connect(nats_url)
    js = client.jetstream()
    await js.add_stream(
        StreamConfig(name="WORK", subjects=["work.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    partitions = numbered(4)
    handled: list[tuple[str, bytes]] = []
    by_worker: dict[str, int] = {"first": 0, "second": 0}

    def worker(name: str) -> parti.Worker:
        async def handle(message: parti.Message) -> None:
            handled.append((message.partition, message.data))
            by_worker[name] += 1

        w = parti.Worker(nats=nats_url, partitions=partitions, config=fast_config(1))
        w.subscribe("work.{keys}", handle, stream="WORK")
        return w

    try:
        stop_all.append(await worker("first").start())
        sent = [(f"p.{i % 4}", f"m{i}".encode()) for i in range(200)]
        for partition, data in sent[:100]:
            await js.publish(f"work.{partition}", data)
        second = await worker("second").start()  # joins: partitions move mid-stream
        stop_all.append(second)
        await wait_until(lambda: bool(second.assignment), what="the second worker's share")
        for partition, data in sent[100:]:
            await js.publish(f"work.{partition}", data)
        await wait_until(lambda: len(handled) >= 200, what="200 messages handled")
    finally:
        await client.close()
    assert by_worker["second"] > 0, "the moved partitions' messages reached their new owner"
    assert sorted(handled) == sorted(sent), "a message was lost or handled twice"


async def test_unreachable_server_raises_nats_error_and_start_can_be_retried() -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    worker = parti.Worker(nats=url, partitions=["a"], config=fast_config())
    with pytest.raises(parti.NatsError) as err:
        await worker.start()
    assert isinstance(err.value, parti.PartiError)
    assert url in str(err.value) or "connect" in str(err.value).lower()
    server = NatsServer(port=port)
    try:
        async with worker as w:
            await wait_until(lambda: w.assignment == frozenset({"a"}), what="assignment")
    finally:
        server.kill()


async def test_a_start_cancelled_while_connecting_leaves_the_worker_startable(
    frozen_server: NatsServer,
) -> None:
    # The frozen server accepts the connection but never answers: start() hangs in connect
    # until the caller gives up.
    worker = parti.Worker(nats=frozen_server.url, partitions=["a"], config=fast_config())
    with pytest.raises(asyncio.TimeoutError):  # the builtin TimeoutError from 3.11 on
        await asyncio.wait_for(worker.start(), 0.3)
    assert worker.state == "init"
    frozen_server.proc.send_signal(signal.SIGCONT)
    async with worker as w:
        await wait_until(lambda: w.assignment == frozenset({"a"}), what="assignment")
    assert worker.is_stopped


async def test_stop_during_start_waits_for_the_start_then_stops_the_worker(
    frozen_server: NatsServer,
) -> None:
    worker = parti.Worker(nats=frozen_server.url, partitions=["a"], config=fast_config())
    starting = worker.start()
    with pytest.raises(parti.PartiError, match="already starting"):
        await worker.start()
    stopping = worker.stop()
    frozen_server.proc.send_signal(signal.SIGCONT)
    assert await starting is worker
    await stopping
    assert worker.is_stopped
    assert worker.state == "shutdown"
    with pytest.raises(parti.PartiError, match="already started"):
        await worker.start()


def test_token_auth_wrong_token_is_refused_right_token_connects() -> None:
    server = NatsServer("--auth", "s3cret")

    async def run() -> None:
        wrong = parti.Worker(nats=server.url, partitions=["a"], config=fast_config(), token="nope")
        with pytest.raises(parti.NatsError):
            await wrong.start()
        right = parti.Worker(nats=server.url, partitions=["a"], config=fast_config(), token="s3cret")
        async with right as w:
            await wait_until(lambda: w.assignment == frozenset({"a"}), what="assignment")

    try:
        asyncio.run(run())
    finally:
        server.kill()
