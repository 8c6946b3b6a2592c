"""Metrics of Python workers: ``parti.metrics_text()`` is valid exposition text, and
``parti.metrics.Collector`` hands the workers' metrics to a ``prometheus_client`` registry,
whose exposition (parsed with ``prometheus_client``'s own parser) shows the counters moving on
a join and a leave."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import parti
import parti.metrics
from conftest import fast_config, numbered, owned_exactly_once, wait_until

PREFIX = "py-metrics"


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of this test's workers, by name and labels."""
    text = generate_latest(registry).decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("prefix") == PREFIX:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` that carry `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_collector_shows_counters_moving_on_a_join_and_a_leave(
    stop_all: list[parti.Worker],
) -> None:
    registry = CollectorRegistry()
    registry.register(parti.metrics.Collector())
    kv = parti.MemoryKv(lease_ttl=1.0)
    partitions = numbered(12)

    def start() -> parti.Worker:
        return parti.Worker(
            memory=kv, partitions=partitions, config=fast_config(2, bucket_prefix=PREFIX)
        )

    for _ in range(2):
        stop_all.append(await start().start())
    await wait_until(lambda: owned_exactly_once(stop_all, partitions), what="two workers settle")
    await wait_until(
        lambda: total(scrape(registry), "parti_partitions_owned") == 12, what="gauges follow"
    )
    before = scrape(registry)
    assert total(before, "parti_rebalances_total") >= 1
    ids = {str(w.worker_id) for w in stop_all}
    assert {ls for (n, ls) in before if n == "parti_is_leader"} == {
        frozenset({("prefix", PREFIX), ("worker_id", i)}) for i in ids
    }

    joiner = await start().start()
    stop_all.append(joiner)
    await wait_until(lambda: len(joiner.assignment) > 0, what="the joiner gets partitions")
    joined = scrape(registry)
    assert total(joined, "parti_rebalances_total") > total(before, "parti_rebalances_total")
    assert total(joined, "parti_partitions_moved_total", worker_id=str(joiner.worker_id), direction="in") > 0

    await joiner.stop()
    stop_all.remove(joiner)
    await wait_until(lambda: owned_exactly_once(stop_all, partitions), what="the leave settles")
    left = scrape(registry)
    assert total(left, "parti_rebalances_total") > total(joined, "parti_rebalances_total")
    assert total(left, "parti_partitions_moved_total", direction="in") > total(
        joined, "parti_partitions_moved_total", direction="in"
    )
    # The leaver's gauges are gone; its counters stay.
    assert total(left, "parti_partitions_owned", worker_id=str(joiner.worker_id)) == 0


async def test_metrics_text_is_openmetrics(stop_all: list[parti.Worker]) -> None:
    w = parti.Worker(
        memory=parti.MemoryKv(lease_ttl=1.0),
        partitions=numbered(3),
        config=fast_config(1, bucket_prefix=PREFIX + "-text"),
    )
    stop_all.append(await w.start())
    await wait_until(lambda: len(w.assignment) == 3, what="the worker owns everything")
    text = parti.metrics_text()
    assert text.endswith("# EOF\n")
    # The collector parses it with prometheus_client's OpenMetrics parser.
    names = {f.name for f in parti.metrics.Collector().collect()}
    assert {"parti_state", "parti_partitions_owned", "parti_kv_operation_seconds"} <= names
