"""`parti.plan` and `parti.explain`: pure planning with built-in and Python strategies."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import parti

PARTS = [parti.Partition(["p", str(i)]) for i in range(30)]


@pytest.mark.parametrize("strategy", parti.STRATEGIES)
def test_every_builtin_strategy_places_each_partition_once(strategy: Any) -> None:
    result = parti.plan([1, 2, 3], PARTS, strategy=strategy)
    assert result.strategy == strategy
    assert sorted(result.assignment) == sorted(p.id for p in PARTS)
    assert set(result.assignment.values()) == {1, 2, 3}
    by_worker = result.by_worker()
    assert sorted(x for ps in by_worker.values() for x in ps) == sorted(p.id for p in PARTS)


def test_strategies_are_cores_names_and_the_first_is_the_default() -> None:
    assert parti.STRATEGIES[0] == "balanced"
    assert len(set(parti.STRATEGIES)) == len(parti.STRATEGIES) == 4
    assert parti.plan([1, 2], PARTS).strategy == parti.STRATEGIES[0]


def test_an_unknown_strategy_is_one_config_error_listing_every_name() -> None:
    with pytest.raises(parti.ConfigError, match="unknown strategy") as err:
        parti.plan([1], PARTS, strategy="fastest")  # type: ignore[arg-type]
    for name in parti.STRATEGIES:
        assert name in str(err.value)
    # Python spellings with `_` or capitals name the same strategy.
    assert parti.plan([1], PARTS, strategy="Round_Robin").strategy == "round-robin"  # type: ignore[arg-type]


def test_the_stub_literal_lists_exactly_cores_strategy_names() -> None:
    stub = Path(parti.__file__).parent / "_parti.pyi"
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "_StrategyName":
            assert isinstance(node.value, ast.Subscript)
            literal = ast.literal_eval(node.value.slice)
            assert literal == parti.STRATEGIES
            return
    pytest.fail("_StrategyName is not in the stub")


def test_balanced_on_equal_weights_is_even() -> None:
    result = parti.plan([1, 2, 3], PARTS)
    assert [len(v) for v in result.by_worker().values()] == [10, 10, 10]
    assert result.max_over_mean == pytest.approx(1.0)
    assert result.moved == 0


def test_capacity_gives_a_bigger_worker_more() -> None:
    result = parti.plan([parti.WorkerSlot(1, capacity=2), parti.WorkerSlot(2)], PARTS)
    assert len(result.by_worker()[1]) == 20


def test_join_moves_only_what_the_newcomer_takes() -> None:
    before = parti.plan([1, 2, 3], PARTS).assignment
    after = parti.plan([1, 2, 3, 4], PARTS, previous=before)
    taken = [p for p, w in after.assignment.items() if w == 4]
    assert after.moved == len(taken)
    assert all(after.assignment[p] == before[p] for p in after.assignment if p not in taken)


def test_explain_names_owner_previous_and_reason() -> None:
    before = parti.plan([1, 2], PARTS).assignment
    e = parti.explain("p.7", [1, 2, 3], PARTS, previous=before)
    assert e.partition == "p.7"
    assert e.previous == before["p.7"]
    assert e.owner == parti.plan([1, 2, 3], PARTS, previous=before).assignment["p.7"]
    assert e.reason and str(e.owner) in e.reason
    assert repr(e).startswith("Explanation(partition='p.7', owner=")


def test_explain_of_an_unknown_partition_raises_config_error() -> None:
    with pytest.raises(parti.ConfigError, match="nope"):
        parti.explain("nope", [1], PARTS)


@pytest.mark.parametrize("strategy", ["balanced", "consistent-hash", "round-robin", None])
def test_pins_hold_for_every_strategy_when_their_worker_is_live(strategy: Any) -> None:
    def first(
        workers: list[parti.WorkerSlot], partitions: list[parti.Partition], previous: dict[str, int]
    ) -> Mapping[str, int]:
        return {p.id: workers[0].id for p in partitions}

    chosen = strategy if strategy is not None else first
    pins = {"p.0": 3, "p.1": 2}
    result = parti.plan([1, 2, 3], PARTS, strategy=chosen, pins=pins)
    assert result.assignment["p.0"] == 3
    assert result.assignment["p.1"] == 2
    assert parti.explain("p.0", [1, 2, 3], PARTS, strategy=chosen, pins=pins).owner == 3
    # A pin to a worker that is not listed would do nothing: it is refused.
    with pytest.raises(parti.ConfigError, match="pinned to worker 9, which is not in workers"):
        parti.plan([1, 2, 3], PARTS, strategy=chosen, pins={"p.2": 9})


def test_python_strategy_decides_the_plan() -> None:
    def lowest_id(
        workers: list[parti.WorkerSlot], partitions: list[parti.Partition], previous: dict[str, int]
    ) -> Mapping[str, int]:
        first = min(w.id for w in workers)
        return {p.id: first for p in partitions}

    result = parti.plan([5, 3, 9], PARTS, strategy=lowest_id)
    assert set(result.assignment.values()) == {3}
    assert result.strategy == "lowest_id"


def test_python_strategy_sees_previous_owners() -> None:
    seen: list[dict[str, int]] = []

    def sticky(
        workers: list[parti.WorkerSlot], partitions: list[parti.Partition], previous: dict[str, int]
    ) -> Mapping[str, int]:
        seen.append(previous)
        return {p.id: previous.get(p.id, workers[0].id) for p in partitions}

    parti.plan([1, 2], ["a", "b"], strategy=sticky, previous={"a": 2})
    assert seen == [{"a": 2}]


def test_python_strategy_errors_are_raised() -> None:
    def broken(
        workers: list[parti.WorkerSlot], partitions: list[parti.Partition], previous: dict[str, int]
    ) -> Mapping[str, int]:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        parti.plan([1], PARTS, strategy=broken)


@pytest.mark.parametrize(
    ("result", "needle"),
    [({"p.0": 1}, "without an owner"), ({p.id: 99 for p in PARTS}, "not a live worker"), ([], "mapping")],
)
def test_python_strategy_returning_an_unusable_plan_raises_config_error(
    result: object, needle: str
) -> None:
    with pytest.raises(parti.ConfigError, match=needle):
        parti.plan([1, 2], PARTS, strategy=lambda w, p, prev: result)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"workers": [1, 1]}, "listed twice|twice"),
        ({"workers": ["one"]}, "workers"),
        ({"partitions": ["a", "a"]}, "a"),
        ({"slack": -1.0}, "slack"),
        ({"strategy": "fastest"}, "strategy"),
        ({"strategy": 3}, "strategy"),
        ({"previous": {"bad key!": 1}}, "previous"),
    ],
)
def test_bad_plan_arguments_raise_config_error(kwargs: dict[str, object], needle: str) -> None:
    args: dict[str, object] = {"workers": [1, 2], "partitions": PARTS}
    args.update(kwargs)
    with pytest.raises(parti.ConfigError, match=needle):
        parti.plan(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"slack": "x"}, "slack: expected a number, got str"),
        ({"slack": True}, "slack: expected a number, got bool"),
        ({"strategy": 3}, "strategy: expected a strategy name or a callable, got int"),
        ({"loads": ["p.0"]}, "loads: expected a mapping"),
        ({"loads": {"p.0": "hot"}}, "loads: partition \"p.0\": load 'hot' is not a number"),
        ({"loads": {"p.0": True}}, "loads: partition \"p.0\": load True is not a number"),
        ({"loads": {"p.0": None}}, "loads: partition \"p.0\": load None is not a number"),
    ],
)
def test_plan_arguments_of_the_wrong_type_raise_config_type_error_naming_them(
    kwargs: dict[str, object], needle: str
) -> None:
    args: dict[str, object] = {"workers": [1, 2], "partitions": PARTS}
    args.update(kwargs)
    with pytest.raises(parti.ConfigTypeError, match=needle) as err:
        parti.plan(**args)  # type: ignore[arg-type]
    assert isinstance(err.value, TypeError) and isinstance(err.value, parti.ConfigError)


def test_out_of_range_numbers_and_bool_owners_are_config_errors_not_raw_python_ones() -> None:
    with pytest.raises(parti.ConfigError, match="slack: is too large"):
        parti.plan([1, 2], PARTS, slack=10**400)
    with pytest.raises(parti.ConfigTypeError, match="partition: expected a str, got NoneType"):
        parti.explain(None, [1, 2], PARTS)  # type: ignore[arg-type]
    # a strategy that returns True for worker 1
    with pytest.raises(parti.ConfigError, match="must return a mapping"):
        parti.plan([1], PARTS, strategy=lambda w, p, prev: {q.id: True for q in p})


def test_no_workers_is_an_error_naming_workers() -> None:
    with pytest.raises(parti.ConfigError, match="workers: empty"):
        parti.plan([], PARTS)


@pytest.mark.parametrize("name", ["it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\tnew\nline"])
def test_reprs_quote_strings_as_python_does(name: str) -> None:
    def strategy(
        workers: list[parti.WorkerSlot], partitions: list[parti.Partition], previous: dict[str, int]
    ) -> Mapping[str, int]:
        return {p.id: workers[0].id for p in partitions}

    strategy.__name__ = name
    result = parti.plan([1], ["a"], strategy=strategy)
    assert repr(result).startswith(f"PlanResult(strategy={name!r}, ")


def test_loads_move_partitions_off_a_hot_worker_and_explain_says_so() -> None:
    # Worker 1 holds p.0..p.14, worker 2 p.15..p.29; worker 1's partitions carry 3x the load.
    previous = {p.id: 1 if i < 15 else 2 for i, p in enumerate(PARTS)}
    loads = {p.id: 3.0 if i < 15 else 1.0 for i, p in enumerate(PARTS)}
    by_weight = parti.plan([1, 2], PARTS, previous=previous, max_moves=100)
    assert by_weight.moved == 0
    # A balancing round, as the leader plans one: with a budget (without one a plan moves only
    # what a change forces).
    result = parti.plan([1, 2], PARTS, previous=previous, loads=loads, max_moves=100)
    assert result.max_over_mean < 1.1
    moved = [p for p, w in result.assignment.items() if w != previous[p]]
    assert moved and all(previous[p] == 1 for p in moved)
    e = parti.explain(moved[0], [1, 2], PARTS, previous=previous, loads=loads, max_moves=100)
    assert e.reason.startswith("moved for load: worker 1 was at 1.50x mean"), e.reason


@pytest.mark.parametrize(
    ("loads", "needle"),
    [
        ({"p.3": -1.0}, r'"p\.3".*finite number >= 0'),
        ({"p.4": float("nan")}, r'"p\.4".*finite'),
        ({"p.5": float("inf")}, r'"p\.5".*finite'),
        ({"p.6": "high"}, r"\"p\.6\".*load 'high' is not a number"),
        ({"p.7": True}, r'"p\.7".*load True is not a number'),
        ({"q.1": 1.0}, r'"q\.1".*not in the partition list'),
    ],
)
def test_a_bad_load_in_a_plan_raises_config_error_naming_the_partition(
    loads: dict[str, Any], needle: str
) -> None:
    with pytest.raises(parti.ConfigError, match=needle):
        parti.plan([1, 2], PARTS, loads=loads)
    with pytest.raises(parti.ConfigError, match=needle):
        parti.explain("p.0", [1, 2], PARTS, loads=loads)


def test_loads_must_be_a_mapping_of_partition_ids() -> None:
    with pytest.raises(parti.ConfigError, match="loads: expected a mapping"):
        parti.plan([1, 2], PARTS, loads=[1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(parti.ConfigError, match="loads: keys are partition IDs"):
        parti.plan([1, 2], PARTS, loads={3: 1.0})  # type: ignore[dict-item]
    with pytest.raises(parti.ConfigError, match="loads"):
        parti.plan([1, 2], PARTS, loads={"a..b": 1.0})
