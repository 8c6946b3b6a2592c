"""A user's program that must exit cleanly: run as a child process by test_exit.py.

Usage: python exit_program.py NATS_SERVER_BIN PORT STORE_DIR stopped|running

It starts its own nats-server on PORT, runs three workers that consume a subject per partition
(sync and async callbacks, a pending `events()` iterator) while a nats-py publisher sends to
every partition, SIGKILLs and restarts the server, waits until messages flow again, stops the
workers and returns from `asyncio.run` with the publisher and an `events()` iterator still running. Runtime threads that entered Python while the
interpreter finalized used to crash such programs after `stop()` had returned (SIGSEGV,
SIGABRT). With `running`, one worker is left running and a publisher thread keeps sending
through the interpreter's exit, so message callbacks are due while it finalizes (a program
whose main raised before it stopped its workers). Exit code 0 means the program ran, checked and exited cleanly; 1 a failed check.
The server writes its PID to STORE_DIR/nats-server.pid for the parent to kill.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import nats

import parti

PARTITIONS = [parti.Partition(["work", str(i)]) for i in range(12)]
DEADLINE = 30.0


def start_server(binary: str, port: int, store: str) -> subprocess.Popen[bytes]:
    """nats-server with JetStream on `port`; returns once it accepts connections."""
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store,
         "-P", f"{store}/nats-server.pid"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("nats-server did not start within 10 s") from None
            time.sleep(0.01)  # polling the port inside a deadline


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Waits for `predicate()` within DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)  # yield to the workers; the deadline bounds the wait


def publish_forever(url: str) -> None:
    """Publishes to every partition until the process ends (run on a daemon thread)."""

    async def run() -> None:
        client = await nats.connect(url)
        while True:
            for p in PARTITIONS:
                await client.publish(f"work.{p.id}", b"x")
            await asyncio.sleep(0.001)

    asyncio.run(run())


async def main(binary: str, port: int, store: str, mode: str) -> None:
    server = start_server(binary, port, store)
    url = f"nats://127.0.0.1:{port}"
    handled: list[str] = []
    changes: list[int] = []

    def on_assigned(partitions: frozenset[str]) -> None:
        changes.append(len(partitions))

    async def on_revoked(partitions: frozenset[str]) -> None:
        await asyncio.sleep(0)
        changes.append(-len(partitions))

    async def handle(message: parti.Message) -> None:
        handled.append(message.partition)

    config = parti.Config(
        expected_workers=3,
        heartbeat_interval=0.2,
        lease_ttl=2.0,
        safety_margin=0.4,
        emergency_grace=0.2,
        cold_start_window=0.5,
        planned_scale_window=0.3,
        restart_grace=0.3,
        revoke_timeout=0.5,
        shutdown_timeout=3.0,
    )
    workers = [
        parti.Worker(
            nats=url,
            partitions=PARTITIONS,
            config=config,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
        )
        for _ in range(3)
    ]
    for w in workers:
        w.subscribe("work.{keys}", handle)
        await w.start()
    events = workers[0].events()

    async def drain_events() -> None:
        async for _ in events:
            pass

    watcher = asyncio.create_task(drain_events())
    client = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)

    async def publish() -> None:
        seq = 0
        while True:
            seq += 1
            for p in PARTITIONS:
                try:
                    await client.publish(f"work.{p.id}", str(seq).encode())
                except Exception:  # reconnecting: the next round tries again
                    pass
            await asyncio.sleep(0.01)

    publisher = asyncio.create_task(publish())

    def owned_once() -> bool:
        owned = sorted(p for w in workers for p in w.assignment)
        return owned == sorted(p.id for p in PARTITIONS)

    await wait_until(owned_once, "every partition owned once")
    await wait_until(lambda: len(set(handled)) == len(PARTITIONS), "messages on every partition")

    server.kill()
    server.wait()
    server = start_server(binary, port, store)
    before = len(handled)
    await wait_until(lambda: len(handled) > before + 100, "messages after the server restart")
    await wait_until(owned_once, "every partition owned once after the restart")

    if mode == "running":
        threading.Thread(target=publish_forever, args=(url,), daemon=True).start()
        running = len(handled)
        await wait_until(lambda: len(handled) > running + 100, "messages from the thread")
        stopping = workers[:2]
    else:
        stopping = workers
    await asyncio.gather(*(w.stop() for w in stopping))
    assert all(w.is_stopped for w in stopping), "a worker did not stop"
    assert changes, "no rebalance callback ran"
    print(f"handled={len(handled)} callbacks={len(changes)}", flush=True)
    # Left as a program often leaves them: the publisher and the event iterator still
    # running (asyncio.run cancels them), the server up (the parent kills it).
    del watcher, publisher


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    except AssertionError as e:
        print(f"check failed: {e}", file=sys.stderr)
        sys.exit(1)
    # Returning from here runs the interpreter's exit: the part that used to crash.
