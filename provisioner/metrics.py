"""Prometheus metrics (``prometheus-client``), served at ``/metrics`` by ``provisioner serve``.

Counters any part of the product may bump::

    from provisioner import metrics
    metrics.count("provisioner_workflow_firings_total", workflow="welcome", outcome="sent")
    metrics.workflow_firings.labels(outcome="sent").inc()

With several worker processes ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh directory before the workers start: each process writes its samples
there and a scrape, whichever worker answers it, adds them up (gauges: the sum
over live processes). With one process the default registry is used.

Some figures are counted in the database at scrape time instead (they must
survive restarts and agree across processes): transfers by status and rollout
targets by state (:func:`database_collector`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "count", "render", "workflow_firings"]

disable_created_metrics()  # type: ignore[no-untyped-call]  # no "_created" twin of every series

#: latency buckets (seconds): a lookup takes a few ms, an import or approve seconds
_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

http_requests = Counter(
    "provisioner_http_requests_total",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)
http_latency = Histogram(
    "provisioner_http_request_duration_seconds",
    "HTTP request latency by route template and method",
    ["route", "method"],
    buckets=_BUCKETS,
)
errors = Counter("provisioner_errors_total", "error responses by error code", ["code"])
pool_in_use = Gauge(
    "provisioner_db_pool_in_use",
    "database connections checked out of the pools",
    multiprocess_mode="livesum",
)
pool_waiting = Gauge(
    "provisioner_db_pool_waiting",
    "requests waiting for a database connection",
    multiprocess_mode="livesum",
)
pool_capacity = Gauge(
    "provisioner_db_pool_capacity",
    "database connections the pools may open (pool size + overflow)",
    multiprocess_mode="livesum",
)
import_rows = Counter("provisioner_import_rows_total", "CSV rows imported, by kind", ["kind"])
workflow_firings = Counter(
    "provisioner_workflow_firings_total", "workflow firings by outcome", ["outcome"]
)

_lock = threading.Lock()
_counters: dict[str, Counter] = {
    "provisioner_workflow_firings_total": workflow_firings,
    "provisioner_import_rows_total": import_rows,
    "provisioner_errors_total": errors,
}


def count(name: str, amount: float = 1, **labels: str) -> None:
    """Add ``amount`` to the counter ``name`` (made on first use with these label names).

    The name should end in ``_total``; later calls must use the same label names.
    """
    counter = _counters.get(name)
    if counter is None:
        with _lock:
            counter = _counters.get(name)
            if counter is None:
                counter = Counter(name, name.replace("_", " "), sorted(labels))
                _counters[name] = counter
    (counter.labels(**labels) if labels else counter).inc(amount)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_exited(pid: int) -> None:
    """Drop a finished worker's live gauges (its counters stay in the sums)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def database_collector(rows: Callable[[], dict[str, dict[str, int]]]) -> Collector:
    """Gauges counted in the database at scrape time: ``rows()`` returns
    ``{"transfers": {status: n}, "rollout_targets": {state: n}}``."""

    class _Database(Collector):
        def collect(self) -> Iterator[GaugeMetricFamily]:
            data = rows()
            transfers = GaugeMetricFamily(
                "provisioner_transfers",
                "transfers by status (received, then pending, applied, rejected, rolled_back)",
                labels=["status"],
            )
            for status, n in sorted(data.get("transfers", {}).items()):
                transfers.add_metric([status], n)
            yield transfers
            targets = GaugeMetricFamily(
                "provisioner_rollout_targets", "rollout targets by status", labels=["status"]
            )
            for state, n in sorted(data.get("rollout_targets", {}).items()):
                targets.add_metric([state], n)
            yield targets

    return _Database()


def render(extra: Collector | None = None) -> bytes:
    """The exposition text: this process's (or every worker's) metrics, plus ``extra``."""
    if multiprocess_dir():
        registry: Any = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    out = generate_latest(registry)
    if extra is not None:
        own = CollectorRegistry()
        own.register(extra)
        out += generate_latest(own)
    return out
