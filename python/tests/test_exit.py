"""A program with long-lived workers (subscriptions, a server restart, stop) exits with code 0:
no runtime thread touches Python while the interpreter finalizes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import _server_binary, free_port

PROGRAM = Path(__file__).with_name("exit_program.py")
# The program's exit is a race: run it several times (PARTI_EXIT_RUNS to raise it).
RUNS = int(os.environ.get("PARTI_EXIT_RUNS", "3"))


def run_program(mode: str) -> subprocess.CompletedProcess[str]:
    """Runs exit_program.py once (`mode`: stopped or running) against its own nats-server;
    kills the server afterwards."""
    with tempfile.TemporaryDirectory(prefix="parti-py-exit-") as store:
        try:
            return subprocess.run(
                [sys.executable, str(PROGRAM), _server_binary(), str(free_port()), store, mode],
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            pid_file = Path(store) / "nats-server.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass


@pytest.mark.parametrize("run", range(RUNS))
def test_long_lived_workers_stop_and_the_process_exits_cleanly(run: int) -> None:
    check_clean_exit(run_program("stopped"))


@pytest.mark.parametrize("run", range(RUNS))
def test_a_worker_left_running_with_messages_flowing_does_not_crash_the_exit(run: int) -> None:
    check_clean_exit(run_program("running"))


def check_clean_exit(done: subprocess.CompletedProcess[str]) -> None:
    """The program printed its figures and exited with 0, without a fatal error."""
    described = f"exit code {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 0, described
    assert "Fatal Python error" not in done.stderr, described
    assert "handled=" in done.stdout, described
