"""`parti.Simulation` pins the core simulator's guarantees as Python sees them: every partition
owned exactly once after convergence, across crashes and isolation, deterministically per seed,
with bad arguments refused as `ConfigError` and failures raised as `SimulationError`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import parti


def cluster(workers: int = 3, partitions: int = 30, seed: int = 0) -> parti.Simulation:
    """A simulation with `workers` workers that expects them all (cold start ends at once)."""
    sim = parti.Simulation(
        partitions, config=parti.Config(expected_workers=workers), seed=seed
    )
    for _ in range(workers):
        sim.add_worker()
    return sim


def assert_owned_once(sim: parti.Simulation, count: int) -> None:
    owners = sim.owners()
    assert len(owners) == count
    assert all(len(ids) == 1 for ids in owners.values()), owners


def test_three_workers_converge_and_own_thirty_partitions_exactly_once() -> None:
    sim = cluster()
    took = sim.converge()
    assert 0.0 <= took <= sim.now
    assert_owned_once(sim, 30)
    assert set(sim.owners()) == {f"p{i:04}" for i in range(30)}
    assignments = sim.assignments()
    assert set(assignments) == {sim.worker_id(n) for n in range(3)}
    assert sorted(len(held) for held in assignments.values()) == [10, 10, 10]
    assert all(sim.state(n) == "stable" for n in range(3))
    assert all(sim.status(n) == "running" for n in range(3))
    assert sim.leader in (0, 1, 2)
    assert sim.is_settled()
    assert sim.violations == []
    sim.check()


def test_a_crashed_worker_loses_its_partitions_to_the_survivors() -> None:
    sim = cluster()
    sim.converge()
    victim_id = sim.worker_id(1)
    held = sim.assignment(1)
    assert held

    sim.crash(1)
    assert sim.status(1) == "crashed"
    assert sim.assignment(1) == frozenset()
    assert sim.worker_id(1) is None
    sim.converge()

    assert_owned_once(sim, 30)
    assert victim_id not in sim.assignments()
    survivors = {sim.worker_id(0), sim.worker_id(2)}
    assert all(sim.owners()[p][0] in survivors for p in held)
    assert sim.violations == []


def test_an_isolated_worker_is_healed_and_the_cluster_converges_cleanly() -> None:
    sim = cluster()
    sim.converge()
    sim.isolate(0)
    sim.advance(20.0)
    assert sim.state(0) != "stable"
    assert not sim.is_settled()

    sim.heal(0)
    sim.converge()
    assert_owned_once(sim, 30)
    assert sim.state(0) == "stable"
    sim.check()


def test_heal_without_a_node_restarts_crashed_workers_and_ends_outages() -> None:
    sim = cluster()
    sim.converge()
    sim.crash(2)
    sim.isolate(0)
    sim.set_kv_outage(True)
    sim.advance(5.0)
    sim.heal()
    assert sim.status(2) == "running"
    sim.converge()
    assert_owned_once(sim, 30)
    sim.check()


def test_an_operator_pin_moves_a_partition_and_holds_it() -> None:
    sim = cluster()
    sim.converge()
    owners = sim.owners()
    partition = "p0007"
    holder = owners[partition][0]
    target = next(sim.worker_id(n) for n in range(3) if sim.worker_id(n) != holder)
    assert target is not None
    sim.pin(partition, target)
    sim.converge()
    assert sim.owners()[partition] == [target]
    assert_owned_once(sim, 30)
    sim.pin(partition, None)
    sim.converge()
    assert sim.owners()[partition] == [target], "sticky once unpinned"
    with pytest.raises(parti.ConfigError, match="partition"):
        sim.pin("a..b", target)


def test_the_same_seed_gives_the_same_run() -> None:
    def run(seed: int) -> tuple[dict[int, frozenset[str]], str, float]:
        sim = cluster(seed=seed)
        sim.converge()
        leader = sim.kill_leader()
        assert leader is not None
        sim.advance(1.0)
        sim.restart(leader)
        sim.converge()
        return sim.assignments(), sim.trace(last=1000), sim.now

    first = run(7)
    assert run(7) == first
    assert run(8)[1] != first[1]


def test_set_partitions_and_refresh_reach_the_workers() -> None:
    sim = cluster()
    sim.converge()
    sim.set_partitions(["a", parti.Partition(["b", "c"], weight=300)])
    sim.refresh(0)
    sim.converge()
    assert sorted(sim.owners()) == ["a", "b.c"]
    assert_owned_once(sim, 2)
    sim.check()


def test_converge_raises_simulation_error_when_the_kv_stays_down() -> None:
    sim = cluster()
    sim.converge()
    sim.set_kv_outage(True)
    sim.advance(10.0)  # the workers notice and give up their partitions
    assert not sim.is_settled()

    with pytest.raises(parti.SimulationError, match="did not converge"):
        sim.converge(timeout=30.0)
    assert len(sim.violations) == 1
    assert "NotConverged" in sim.violations[0]
    with pytest.raises(parti.SimulationError, match="1 violation"):
        sim.check()


def test_converge_raises_simulation_error_with_no_workers() -> None:
    sim = parti.Simulation(5)
    with pytest.raises(parti.SimulationError, match="5 unowned"):
        sim.converge(timeout=10.0)
    assert sim.now == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: parti.Simulation(-1), "partitions"),
        (lambda: parti.Simulation("p1"), "partitions"),
        (lambda: parti.Simulation(["a", "a"]), "partitions"),
        (lambda: parti.Simulation([1, 2]), "partitions"),  # type: ignore[list-item]
        (lambda: parti.Simulation(seed=-1), "seed"),
        (lambda: parti.Simulation(config="strict"), "config"),  # type: ignore[arg-type]
        (lambda: parti.Simulation().add_worker(capacity=0), "capacity"),
        (lambda: parti.Simulation().add_worker(preferred_id=100), "preferred_id"),
        (lambda: parti.Simulation().set_partitions(True), "partitions"),
        (lambda: parti.Simulation().advance(-1.0), "seconds"),
        (lambda: parti.Simulation().advance(float("nan")), "seconds"),
        (lambda: parti.Simulation().converge(timeout=1e9), "timeout"),
        (lambda: parti.Simulation().trace(last=-1), "last"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_field(
    make: Callable[[], object], field: str
) -> None:
    with pytest.raises(parti.ConfigError, match=field):
        make()


@pytest.mark.parametrize("node", [3, -1, 2**70, 2**200, "0", 1.0])
def test_a_bad_node_index_raises_config_error_naming_node(node: object) -> None:
    sim = cluster()
    for verb in (sim.crash, sim.restart, sim.stop, sim.drain, sim.isolate, sim.heal):
        with pytest.raises(parti.ConfigError, match="node"):
            verb(node)  # type: ignore[arg-type]
    for query in (sim.state, sim.status, sim.worker_id, sim.assignment):
        with pytest.raises(parti.ConfigError, match="node"):
            query(node)  # type: ignore[arg-type]
    assert sim.violations == []


def test_a_graceful_stop_hands_off_and_exits() -> None:
    sim = cluster()
    sim.converge()
    sim.stop(1)
    sim.converge()
    assert sim.status(1) == "stopped"
    assert_owned_once(sim, 30)
    assert len(sim.assignments()) == 2
    sim.check()


def test_repr_shows_seed_nodes_and_virtual_time() -> None:
    sim = parti.Simulation(seed=5)
    sim.add_worker()
    sim.advance(1.5)
    assert repr(sim) == "Simulation(seed=5, nodes=1, now=1.500)"
    assert sim.seed == 5
    assert sim.nodes == 1
    assert sim.now == pytest.approx(1.5)
