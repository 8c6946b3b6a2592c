"""Bad input to `plan`, `explain`, `Partition` and `WorkerSlot` raises `ConfigError` (a
`ValueError`) or `ConfigTypeError` (a `TypeError`) naming the argument and what is allowed,
never a raw `OverflowError`; long IDs are cut in messages; a partition given as a str is its
ID, keys joined by `.` (the core's rule, as in the CLI)."""

from __future__ import annotations

import re
from typing import Any, Callable

import pytest

import parti

PARTS = ["a", "b", "c", "d"]
U64 = 2**64 - 1
U32 = 2**32 - 1


def raises(kind: type[Exception], needle: str, call: Callable[[], object]) -> str:
    """Runs `call`, which must raise `kind` (never OverflowError) with `needle` in the
    message; returns the message."""
    with pytest.raises(kind) as err:
        call()
    assert not isinstance(err.value, OverflowError), repr(err.value)
    assert isinstance(err.value, parti.ConfigError), repr(err.value)
    message = str(err.value)
    assert needle in message, message
    return message


def test_config_errors_follow_pythons_convention() -> None:
    assert issubclass(parti.ConfigError, ValueError)
    assert issubclass(parti.ConfigError, parti.PartiError)
    assert issubclass(parti.ConfigTypeError, TypeError)
    assert issubclass(parti.ConfigTypeError, parti.ConfigError)
    assert parti.ConfigError.__module__ == "parti._parti"


@pytest.mark.parametrize("weight", [0, -1, -(2**70), 2**64, 2**200])
def test_a_weight_out_of_range_names_the_range(weight: int) -> None:
    message = raises(ValueError, "weight: ", lambda: parti.Partition("a", weight=weight))
    assert f"is out of range; allowed 1..={U64}" in message, message
    assert len(message) < 200, message


@pytest.mark.parametrize(
    ("weight", "kind"), [(1.5, "float"), (float("nan"), "float"), (True, "bool"), ("9", "str")]
)
def test_a_weight_of_the_wrong_type_is_a_type_error(weight: Any, kind: str) -> None:
    needle = f"weight: expected an int, got {kind}"
    raises(TypeError, needle, lambda: parti.Partition("a", weight=weight))


@pytest.mark.parametrize("capacity", [0, -1, 2**32])
def test_a_capacity_out_of_range_names_the_range(capacity: int) -> None:
    raises(
        ValueError,
        f"capacity: {capacity} is out of range; allowed 1..={U32}",
        lambda: parti.WorkerSlot(1, capacity=capacity),
    )
    raises(TypeError, "capacity: expected an int, got bool", lambda: parti.WorkerSlot(1, capacity=True))


@pytest.mark.parametrize("worker", [True, False, 1.0, "1", None])
def test_a_worker_id_must_be_an_int_and_not_a_bool(worker: Any) -> None:
    raises(TypeError, "workers: expected WorkerSlot or int", lambda: parti.plan([worker], PARTS))
    if worker is not None:
        raises(TypeError, "id: expected an int", lambda: parti.WorkerSlot(worker))


@pytest.mark.parametrize("worker", [-1, 2**32, 2**100])
def test_a_worker_id_out_of_range_names_the_range(worker: int) -> None:
    raises(ValueError, f"allowed 0..={U32}", lambda: parti.plan([worker], PARTS))
    raises(ValueError, f"id: {worker} is out of range", lambda: parti.WorkerSlot(worker))


def test_max_moves_must_be_a_non_negative_int_or_none() -> None:
    def call(max_moves: Any) -> Callable[[], object]:
        return lambda: parti.plan([1], PARTS, max_moves=max_moves)

    raises(ValueError, "max_moves: -1 is out of range; allowed 0..=", call(-1))
    raises(TypeError, "max_moves: expected an int, got float", call(2.5))
    raises(TypeError, "max_moves: expected an int, got bool", call(True))
    assert parti.plan([1], PARTS, max_moves=0).moved == 0
    assert parti.plan([1], PARTS, max_moves=None).moved == 0


@pytest.mark.parametrize("field", ["previous", "pins"])
def test_previous_and_pins_take_a_mapping_of_id_to_worker_id(field: str) -> None:
    def call(value: object) -> Callable[[], object]:
        return lambda: parti.plan([1, 2], PARTS, **{field: value})  # type: ignore[arg-type]

    raises(TypeError, f'{field}["a"]: expected an int, got str', call({"a": "x"}))
    raises(TypeError, f'{field}["a"]: expected an int, got bool', call({"a": True}))
    raises(ValueError, f'{field}["a"]: -1 is out of range; allowed 0..={U32}', call({"a": -1}))
    raises(TypeError, f"{field}: keys are partition IDs (str), got int", call({1: 2}))
    raises(TypeError, f"{field}: expected a mapping", call([("a", 1)]))
    raises(ValueError, f"{field}: partition zz is not in partitions", call({"zz": 1}))
    raises(ValueError, f"{field}: invalid partition", call({"a..b": 1}))


def test_a_pin_to_an_unlisted_worker_is_refused_but_a_gone_previous_owner_is_a_leave() -> None:
    raises(
        ValueError,
        "pins: partition a is pinned to worker 9, which is not in workers",
        lambda: parti.plan([1, 2], PARTS, pins={"a": 9}),
    )
    # Worker 3 left: its partitions' previous owner is not listed, which previews the leave.
    before = parti.plan([1, 2, 3], PARTS).assignment
    after = parti.plan([1, 2], PARTS, previous=before)
    assert set(after.assignment.values()) <= {1, 2}
    assert after.moved == sum(1 for w in before.values() if w == 3)


def test_an_empty_worker_list_is_an_error_not_an_empty_plan() -> None:
    raises(ValueError, "workers: empty; at least one worker", lambda: parti.plan([], PARTS))
    raises(ValueError, "workers: empty", lambda: parti.explain("a", [], PARTS))


@pytest.mark.parametrize("partitions", ["abc", "a"])
def test_a_bare_string_is_not_a_partition_list(partitions: str) -> None:
    needle = "partitions: expected an iterable of Partition or str, got a single str"
    raises(TypeError, needle, lambda: parti.plan([1], partitions))
    with pytest.raises(TypeError, match="got a single str"):
        parti.Worker(memory=parti.MemoryKv(), partitions=partitions)


def test_a_partition_list_of_the_wrong_type_is_a_type_error() -> None:
    needle = "partitions: expected an iterable of Partition or str, got int"
    raises(TypeError, needle, lambda: parti.plan([1], 5))  # type: ignore[arg-type]
    needle = "partitions: expected Partition or str, got bytes"
    raises(TypeError, needle, lambda: parti.plan([1], [b"a"]))  # type: ignore[list-item]


def test_a_str_partition_is_its_id_keys_joined_by_dots() -> None:
    assert parti.plan([1], ["x.y"]).assignment == {"x.y": 1}
    assert parti.Partition("x.y").keys == ["x", "y"]
    assert parti.Partition("x.y", weight=5) == parti.Partition(["x", "y"], weight=5)
    for bad in ["x..y", ".x", "x.", "a b", ""]:
        raises(ValueError, "invalid partition", lambda: parti.plan([1], [bad]))
        raises(ValueError, "invalid partition", lambda: parti.Partition(bad))
    # A key cannot hold a dot: keys given as a list are keys.
    raises(ValueError, "holds '.'", lambda: parti.Partition(["x.y"]))


def test_a_huge_id_is_cut_in_messages() -> None:
    huge = "a" * 100_000
    for call in [
        lambda: parti.plan([1], [huge]),
        lambda: parti.plan([1], [huge + "*"]),
        lambda: parti.Partition(huge),
        lambda: parti.explain(huge, [1], PARTS),
        lambda: parti.plan([1], PARTS, previous={huge: 1}),
        lambda: parti.plan([1], [huge[:200] + ".x"] * 2),
    ]:
        message = raises(ValueError, "…", call)
        assert len(message) < 300, f"{len(message)} characters: {message[:300]}"
        assert re.search(r"a{40}…", message), message


def test_explain_checks_its_input_as_plan_does() -> None:
    raises(ValueError, "max_moves", lambda: parti.explain("a", [1], PARTS, max_moves=-1))
    raises(TypeError, "workers", lambda: parti.explain("a", [True], PARTS))
    raises(ValueError, "pins", lambda: parti.explain("a", [1], PARTS, pins={"a": 2}))
