"""The rebalance listener's rule, the same in Rust and Kotlin: a raising `on_revoked` is
confirmed at once (a `listener_failed` warning, no revoke timeout); a fence calls `on_lost`,
never `on_revoked`, and `on_lost` defaults to `on_revoked` as in Kafka; `stop()` and leaving
`async with` hand the partitions off at once, `stop(restart=True)` parks them."""

import asyncio
import signal
from typing import Any

import parti

from conftest import NatsServer, fast_config, wait_until

PARTITIONS = frozenset({"a", "b", "c"})


async def collect(stream: parti.EventStream, into: list[Any]) -> None:
    async for event in stream:
        into.append(event)


def warning_kinds(events: list[Any]) -> list[str]:
    return [e.kind for e in events if isinstance(e, parti.WorkerWarning)]


async def test_a_raising_on_revoked_is_reported_and_confirmed_at_once() -> None:
    revoked: list[frozenset[str]] = []

    def on_revoked(partitions: frozenset[str]) -> None:
        revoked.append(partitions)
        raise RuntimeError("revoke failed on purpose")

    # A revoke timeout far above the stop's bound: a stop that waited for it would time out.
    config = fast_config(revoke_timeout=60.0, shutdown_timeout=3.0)
    loop = asyncio.get_running_loop()
    handled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: handled.append(context))
    events: list[Any] = []
    w = parti.Worker(
        memory=parti.MemoryKv(lease_ttl=config.lease_ttl),
        partitions=sorted(PARTITIONS),
        config=config,
        on_revoked=on_revoked,
    )
    await w.start()
    collector = asyncio.ensure_future(collect(w.events(), events))
    await wait_until(lambda: w.assignment == PARTITIONS, what="assignment")
    await w.stop()
    await asyncio.wait_for(collector, 5)  # the stream ends with the worker
    assert revoked == [PARTITIONS]
    kinds = warning_kinds(events)
    assert "listener_failed" in kinds, kinds
    assert "revoke_timed_out" not in kinds, kinds
    # asyncio's convention too: the exception reached the loop's exception handler.
    assert any(isinstance(c.get("exception"), RuntimeError) for c in handled), handled


async def fenced_worker_calls(server: NatsServer, **callbacks: Any) -> list[Any]:
    """Starts a worker with `callbacks` on `server`, freezes the server until the worker has
    fenced itself, then lets it recover; returns the worker's events until then."""
    events: list[Any] = []
    w = parti.Worker(
        nats=server.url, partitions=sorted(PARTITIONS), config=fast_config(), **callbacks
    )
    await w.start()
    collector = asyncio.ensure_future(collect(w.events(), events))
    try:
        await wait_until(lambda: w.assignment == PARTITIONS, what="assignment")
        server.proc.send_signal(signal.SIGSTOP)
        try:
            await wait_until(lambda: "fenced" in warning_kinds(events), what="a fence")
        finally:
            server.proc.send_signal(signal.SIGCONT)
        await wait_until(lambda: w.assignment == PARTITIONS, what="the assignment back")
    finally:
        await w.stop()
        await asyncio.wait_for(collector, 5)
    return events


async def test_a_fence_calls_on_lost_not_on_revoked() -> None:
    calls: list[tuple[str, frozenset[str]]] = []
    server = NatsServer()
    try:
        events = await fenced_worker_calls(
            server,
            on_revoked=lambda p: calls.append(("revoked", p)),
            on_lost=lambda p: calls.append(("lost", p)),
        )
    finally:
        server.kill()
    fence = warning_kinds(events).index("fenced")
    lost = [e for e in events if isinstance(e, parti.AssignmentChanged) and e.lost]
    assert lost and lost[0].lost == PARTITIONS and lost[0].revoked == frozenset()
    # Before the final stop (which revokes), the fence lost everything and revoked nothing.
    assert calls[0] == ("lost", PARTITIONS), calls
    assert ("revoked", PARTITIONS) == calls[-1], "the final stop revokes"
    assert fence >= 0


async def test_on_lost_defaults_to_on_revoked_like_kafka() -> None:
    revoked: list[frozenset[str]] = []
    server = NatsServer()
    try:
        await fenced_worker_calls(server, on_revoked=revoked.append)
    finally:
        server.kill()
    # The fence (no on_lost given) and the final stop both reached on_revoked.
    assert revoked[0] == PARTITIONS and len(revoked) == 2, revoked


async def test_leaving_async_with_hands_off_at_once() -> None:
    # A restart grace of an hour: handing off must not wait for it.
    cfg = fast_config(expected_workers=2, restart_grace=3600.0)
    kv = parti.MemoryKv(lease_ttl=cfg.lease_ttl)
    b = await parti.Worker(memory=kv, partitions=sorted(PARTITIONS), config=cfg).start()
    async with parti.Worker(memory=kv, partitions=sorted(PARTITIONS), config=cfg) as a:
        await wait_until(
            lambda: a.assignment | b.assignment == PARTITIONS and bool(a.assignment),
            what="the pair shares the partitions",
        )
    # Leaving `async with` stopped `a` like stop(): a handoff, not a parked share.
    await wait_until(lambda: b.assignment == PARTITIONS, timeout=10, what="b owns everything")
    await b.stop()


def test_stop_hands_off_and_stop_restart_parks_in_the_simulator() -> None:
    # The same core calls as Worker.stop(): on a virtual clock, "not within the grace" is exact.
    for restart in (False, True):
        sim = parti.Simulation(30, config=fast_config(expected_workers=2, restart_grace=3600.0))
        a, b = sim.add_worker(), sim.add_worker()
        sim.converge()
        parked, kept = sim.assignment(a), sim.assignment(b)
        sim.stop(a, restart=restart)
        sim.advance(60.0)
        if restart:
            assert sim.assignment(b) == kept, "the share stays parked for the restart"
        else:
            assert sim.assignment(b) == kept | parked, "stop() hands everything off"
        assert sim.violations == []
