"""Prometheus metrics of this process's parti workers.

Every ``parti.Worker`` records its metrics (``parti_state``, ``parti_rebalances_total``, ...: the
list is in the README, "Metrics") into one registry of the process, labelled by ``prefix`` and
``worker_id``. ``prometheus_client`` users register a :class:`Collector` once; the metrics then
appear in their own exposition (``start_http_server``, ``generate_latest``, ...)::

    import prometheus_client
    import parti.metrics

    prometheus_client.REGISTRY.register(parti.metrics.Collector())
    prometheus_client.start_http_server(9464)

Without ``prometheus_client`` (this module needs it: ``pip install prometheus-client``),
``parti.metrics_text()`` returns the OpenMetrics text to serve as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector as _Collector

from ._parti import metrics_text

__all__ = ["Collector", "metrics_text"]


class Collector(_Collector):
    """A ``prometheus_client`` collector of every parti worker of the process: register one
    (per registry); each scrape reads the workers' current metrics."""

    def collect(self) -> Iterable[Metric]:
        """The current metric families, parsed from :func:`parti.metrics_text`."""
        return list(text_string_to_metric_families(metrics_text()))
