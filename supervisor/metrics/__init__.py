"""Prometheus metrics and health endpoints of a running pod.

`MetricsServer` / `serve_metrics` (server.py) serve /metrics, /livez, /readyz and /status,
the routes (endpoint.py) imported by the first connection;
`PodCollector` (collector.py) builds cAdvisor's, kube-state-metrics' and
podvisor's own series at scrape time; `PodMetrics` (recorder.py) keeps what
must be recorded as it happens (probe attempts, start-up times).

Importing this package does not import prometheus_client, nor collector.py:
the endpoint imports them at the first scrape (scrape.py says why), and
status.py at the first /status.
"""

from __future__ import annotations

from podvisor.supervisor.metrics.recorder import PodMetrics
from podvisor.supervisor.metrics.server import (
    DEFAULT_ADDRESS,
    MetricsServer,
    metrics_address,
    parse_address,
    serve_metrics,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "MetricsServer",
    "PodMetrics",
    "metrics_address",
    "parse_address",
    "serve_metrics",
]
