"""Configuration, partitions and worker arguments: defaults, and clear errors naming the field."""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any

import pytest

import parti


def test_config_takes_cores_default_for_every_field() -> None:
    defaults = parti.Config.defaults()
    properties = {n for n, v in vars(parti.Config).items() if inspect.isgetsetdescriptor(v)}
    # Every field: the defaults name each property (and each is an argument: see below).
    assert set(defaults) == properties
    # An abi3 module carries no class signature before Python 3.10.
    signature = parti.Config.__text_signature__
    if signature is not None:
        assert set(re.findall(r"(\w+)=", signature)) == properties
    c = parti.Config()
    for name, value in defaults.items():
        assert getattr(c, name) == value, name
    # Given explicitly, core's defaults build the same configuration.
    assert parti.Config(**defaults) == c
    assert parti.Config(lease_ttl=defaults["lease_ttl"] + 1) != c
    # MemoryKv() has core's lease TTL too: start() refuses a MemoryKv whose TTL differs.
    async def start(config: parti.Config) -> None:
        w = await parti.Worker(memory=parti.MemoryKv(), partitions=["a"], config=config).start()
        await w.stop()

    asyncio.run(start(c))
    with pytest.raises(parti.ConfigError, match="lease_ttl"):
        asyncio.run(start(parti.Config(lease_ttl=defaults["lease_ttl"] + 1)))


def test_none_is_the_same_as_leaving_an_argument_out() -> None:
    nones: dict[str, Any] = {name: None for name in parti.Config.defaults()}
    assert parti.Config(**nones) == parti.Config()


def test_values_round_trip_through_the_properties() -> None:
    c = parti.Config(bucket_prefix="orders", heartbeat_interval=0.5, lease_ttl=2.0,
                     handoff="relaxed", expected_workers=3, preferred_id=7,
                     load_half_life=1.5, load_cooldown=0.0, source_poll_interval=0.0)
    assert (c.bucket_prefix, c.heartbeat_interval, c.lease_ttl) == ("orders", 0.5, 2.0)
    assert (c.load_half_life, c.load_cooldown, c.source_poll_interval) == (1.5, 0.0, 0.0)
    assert (c.handoff, c.expected_workers, c.preferred_id) == ("relaxed", 3, 7)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bucket_prefix": "has space"}, "bucket_prefix"),
        ({"bucket_prefix": ""}, "bucket_prefix"),
        ({"replicas": 0}, "replicas"),
        ({"replicas": 300}, "replicas"),
        ({"id_min": 10, "id_max": 5}, "id_min"),
        ({"preferred_id": 500}, "preferred_id"),
        ({"capacity": 0}, "capacity"),
        ({"heartbeat_interval": -1.0}, "heartbeat_interval"),
        ({"heartbeat_interval": float("nan")}, "heartbeat_interval"),
        ({"lease_ttl": 0.5}, "lease_ttl"),
        ({"lease_ttl": 2.0, "heartbeat_interval": 1.5}, "lease_ttl"),
        ({"expected_workers": 0}, "expected_workers"),
        ({"rebalance_threshold": -0.1}, "rebalance_threshold"),
        ({"load_half_life": 0.0}, "load_half_life"),
        ({"load_half_life": -1.0}, "load_half_life"),
        ({"load_cooldown": float("inf")}, "load_cooldown"),
        ({"source_poll_interval": 0.5}, "source_poll_interval"),
        ({"source_poll_interval": -1.0}, "source_poll_interval"),
        ({"handoff": "eventual"}, "handoff"),
        ({"alert_after": (5.0, 1.0, 2.0, 3.0)}, "alert_after"),
        ({"max_value_bytes": 10}, "max_value_bytes"),
        ({"replicas": 2**64}, "replicas"),
        ({"capacity": 10**400}, "capacity"),
        ({"alert_after": (1.0, 2.0, 3.0)}, "alert_after"),
        # beyond 366 days (their sum overflowed: a Rust panic, not a ConfigError)
        ({"heartbeat_interval": 1e19, "safety_margin": 1e19, "lease_ttl": 1.8e19},
         "heartbeat_interval"),
        ({"restart_grace": 366 * 86400 + 1.0}, "restart_grace"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(parti.ConfigError, match=field) as err:
        parti.Config(**kwargs)
    assert isinstance(err.value, parti.PartiError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lease_ttl": "6s"}, "lease_ttl"),
        ({"capacity": 1.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"replicas": True}, "replicas"),
        ({"bucket_prefix": 1}, "bucket_prefix"),
        ({"handoff": 1}, "handoff"),
        ({"rebalance_threshold": True}, "rebalance_threshold"),
        ({"alert_after": 5.0}, "alert_after"),
        ({"alert_after": (1.0, 2.0, "3", 4.0)}, "alert_after"),
    ],
)
def test_wrong_type_raises_config_type_error_naming_the_argument(
    kwargs: dict[str, Any], field: str
) -> None:
    # The message names the argument (not a note), and the class is both a ConfigError and a
    # TypeError: `except parti.ConfigError` catches it.
    with pytest.raises(parti.ConfigTypeError, match=f"^invalid argument: {field}: expected ") as err:
        parti.Config(**kwargs)
    assert isinstance(err.value, TypeError) and isinstance(err.value, parti.ConfigError)


def test_partition_id_joins_keys_and_weight_defaults_to_100() -> None:
    p = parti.Partition(["orders", "eu"])
    assert (p.id, p.keys, p.weight, p.subject) == ("orders.eu", ["orders", "eu"], 100, "orders.eu")
    assert parti.Partition("solo").keys == ["solo"]
    assert parti.Partition(["a"], weight=3) == parti.Partition("a", weight=3)
    assert len({parti.Partition("a"), parti.Partition("a"), parti.Partition("b")}) == 2
    assert repr(p) == "Partition(['orders', 'eu'], weight=100)"


@pytest.mark.parametrize(
    ("keys", "weight", "needle"),
    [([], 1, "empty"), (["a.b"], 1, "key 0"), (["ok", ""], 1, "key 1"), (["a"], 0, "weight")],
)
def test_invalid_partition_raises_config_error(keys: list[str], weight: int, needle: str) -> None:
    with pytest.raises(parti.ConfigError, match=needle):
        parti.Partition(keys, weight=weight)


def test_worker_needs_a_backend_and_partitions() -> None:
    with pytest.raises(parti.ConfigError, match="nats"):
        parti.Worker(partitions=["a"])
    with pytest.raises(parti.ConfigError, match="partitions"):
        parti.Worker(memory=parti.MemoryKv())
    with pytest.raises(parti.ConfigError, match="not both"):
        parti.Worker(memory=parti.MemoryKv(), partitions=["a"], source=lambda: ["a"])
    with pytest.raises(parti.ConfigError, match="not both"):
        parti.Worker(nats="nats://127.0.0.1:4222", memory=parti.MemoryKv(), partitions=["a"])


def test_worker_refuses_a_partition_list_no_plan_could_place() -> None:
    # A total weight over 64 bits (the worker started and waited for an assignment forever).
    with pytest.raises(parti.ConfigError, match="partitions: .*total weight overflows"):
        parti.Worker(memory=parti.MemoryKv(), partitions=[parti.Partition("a", 2**64 - 1), "b"])
    with pytest.raises(parti.ConfigError, match="partitions: .*listed twice"):
        parti.Worker(memory=parti.MemoryKv(), partitions=["a", "b", "a"])


async def test_a_memory_kv_whose_lease_ttl_differs_from_the_config_fails_to_start() -> None:
    # The driver's check (WorkerBuilder::start): the error names the field and both durations.
    w = parti.Worker(memory=parti.MemoryKv(lease_ttl=2.0), partitions=["a"])
    with pytest.raises(parti.ConfigError, match=r"lease_ttl: .*after 2s.* lease_ttl is 6s"):
        await w.start()


def test_worker_rejects_bad_arguments_with_the_field_named() -> None:
    kv = parti.MemoryKv()
    with pytest.raises(parti.ConfigError, match="strategy"):
        parti.Worker(memory=kv, partitions=["a"], strategy="fastest")  # type: ignore[arg-type]
    with pytest.raises(parti.ConfigError, match="on_revoked"):
        parti.Worker(memory=kv, partitions=["a"], on_revoked=42)  # type: ignore[arg-type]
    with pytest.raises(parti.ConfigError, match="source"):
        parti.Worker(memory=kv, source=["a"])  # type: ignore[arg-type]
    with pytest.raises(parti.ConfigError, match="partitions"):
        parti.Worker(memory=kv, partitions=[1, 2])  # type: ignore[list-item]
    with pytest.raises(parti.ConfigError, match="subscribe"):
        parti.Worker(memory=kv, partitions=["a"]).subscribe("work.{keys}", print)  # type: ignore[arg-type]
    w = parti.Worker(nats="nats://127.0.0.1:4222", partitions=["a"])
    with pytest.raises(parti.ConfigError, match="subject_template"):
        w.subscribe("work.*", print)  # type: ignore[arg-type]

    async def handler(message: parti.Message) -> None:
        pass

    w.subscribe("work.{keys}", handler)
    with pytest.raises(parti.ConfigError, match="subscribe: called twice"):
        w.subscribe("other.{keys}", handler)


def test_requests_to_a_worker_that_was_never_started_raise_worker_stopped() -> None:
    w = parti.Worker(memory=parti.MemoryKv(), partitions=["a"])
    with pytest.raises(parti.WorkerStoppedError, match="not started"):
        w.events()
    with pytest.raises(parti.WorkerStoppedError):
        w.drain()
    assert (w.state, w.worker_id, w.is_leader, w.assignment) == ("init", None, False, frozenset())


def test_start_outside_an_event_loop_raises_runtime_error() -> None:
    w = parti.Worker(memory=parti.MemoryKv(), partitions=["a"])
    with pytest.raises(RuntimeError):
        w.start()
