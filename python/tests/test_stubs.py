"""The shipped type stubs match the compiled module (mypy stubtest), and code written against
them type-checks strictly (these tests themselves)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import parti

HERE = Path(__file__).resolve().parent


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    # Run outside the source tree so `parti` resolves to the installed package.
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=HERE.parent.parent
    )


def test_stubs_and_py_typed_ship_with_the_package() -> None:
    package = Path(parti.__file__).parent
    assert (package / "_parti.pyi").is_file()
    assert (package / "py.typed").is_file()


def test_stubtest_finds_no_difference_between_stubs_and_module() -> None:
    allowlist = HERE.parent / "stubtest-allowlist.txt"
    result = run_mypy("mypy.stubtest", "parti", "--allowlist", str(allowlist))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_test_suite_type_checks_strictly_against_the_stubs() -> None:
    result = run_mypy("mypy", "--strict", "--no-incremental", str(HERE))
    assert result.returncode == 0, result.stdout + result.stderr
