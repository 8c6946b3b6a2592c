"""Figures of the Python package: wheel size, `import parti` time, and the cost of delivering
one event (and one callback) to Python. Prints a table.

Run from the repository root after `./scripts/test-python` (which installs the package):

    .venv/bin/python python/bench/bench.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import parti
from parti import _parti

REPO = Path(__file__).resolve().parents[2]


def wheel_size() -> tuple[str, int]:
    # pip runs the venv's maturin (no build isolation), with the scripts' shared target dir.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "parti-target"))
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "-w", out, str(REPO / "python")],
            check=True,
            env=env,
        )
        wheel = next(Path(out).glob("parti-*.whl"))
        return wheel.name, wheel.stat().st_size


def import_time(runs: int = 15) -> float:
    code = "import time; t = time.perf_counter(); import parti; print(time.perf_counter() - t)"
    samples = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd="/").stdout)
        for _ in range(runs)
    ]
    return statistics.median(samples)


async def event_cost(n: int = 20_000, paced: bool = False) -> float:
    """Per event of `async for`: already queued, or `paced` (the consumer waits for each)."""
    stream = _parti._bench_event_stream(n, paced)
    start = time.perf_counter()
    count = 0
    async for event in stream:
        assert isinstance(event, parti.AssignmentChanged)
        count += 1
    assert count == n
    return (time.perf_counter() - start) / n


async def callback_cost(rounds: int = 200) -> float:
    """One refresh of a 1-partition in-memory worker whose source is a Python callable: the
    round trip tokio -> event loop -> tokio that every callback (source, on_assigned,
    on_revoked, message handler) makes, plus the worker's own processing."""
    config = parti.Config(expected_workers=1, cold_start_window=0.1)
    async with parti.Worker(memory=parti.MemoryKv(), source=lambda: ["a"], config=config) as w:
        start = time.perf_counter()
        for _ in range(rounds):
            await w.refresh_partitions()
        return (time.perf_counter() - start) / rounds


def sync_call_cost(n: int = 200_000) -> float:
    w = parti.Worker(memory=parti.MemoryKv(), partitions=["a"])
    start = time.perf_counter()
    for _ in range(n):
        w.is_leader
    return (time.perf_counter() - start) / n


def main() -> None:
    name, size = wheel_size()
    rows = [
        ("wheel", f"{name}: {size / 1024 / 1024:.2f} MiB"),
        ("import parti (median of 15)", f"{import_time() * 1000:.1f} ms"),
        ("one event via async for, queued", f"{asyncio.run(event_cost()) * 1e6:.1f} µs"),
        ("one event via async for, awaited", f"{asyncio.run(event_cost(5_000, True)) * 1e6:.1f} µs"),
        ("one refresh (Python source round trip)", f"{asyncio.run(callback_cost()) * 1e6:.0f} µs"),
        ("one property read (w.is_leader)", f"{sync_call_cost() * 1e9:.0f} ns"),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
