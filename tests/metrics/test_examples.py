"""examples/: the Grafana dashboard imports and only queries series podvisor exports;
the Prometheus configuration is valid."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import ContainerKind, Resources
from podvisor.supervisor.metrics import PodMetrics
from tests.metrics.conftest import (
    Driver,
    FakeCgroup,
    FakeNetwork,
    FakeSandbox,
    FakeView,
    container,
    full_stats,
    make_pod,
    scrape,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DASHBOARD = EXAMPLES / "grafana-dashboard.json"

# --- What podvisor exports ------------------------------------------------------------


def exported_series() -> set[str]:
    """Every sample name of a scrape of a pod that has everything: limits, restarts,
    back-offs (of a main container and a sidecar), a completed init container,
    probes, a network."""
    resources = Resources(100, 200, 2**20, 2**21)
    pod = make_pod(
        container("setup", ContainerKind.INIT, resources=resources),
        container("side", ContainerKind.SIDECAR, resources=resources),
        container("main", resources=resources),
        container("worker", resources=resources),
    )
    driver = Driver(pod)
    driver.start_all()
    driver.feed(lc.Exited("setup", 0))
    driver.start_all()
    driver.restart("main")
    driver.restart("worker")
    driver.feed(lc.Exited("worker", 1))  # in back-off: waiting, with a reason
    driver.restart("side")
    driver.feed(lc.Exited("side", 1))  # an init container waiting too
    cgroups = {c.name: FakeCgroup(full_stats()) for c in pod.spec.all_containers}
    view = FakeView(pod, driver.state, cgroups, FakeNetwork(), FakeSandbox(os.getpid()))
    metrics = PodMetrics(pod)
    metrics.record_probe("main", "readiness", False, 0.1)
    metrics.observe(driver.state, driver.now)
    return scrape(view, metrics).names()


# --- Reading PromQL ----------------------------------------------------------------------

#: Words of PromQL that are not series: keywords, modifiers, aggregation clauses.
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "inf", "nan", "atan2"}
)


def series_in(expr: str) -> set[str]:
    """The metric names an expression selects (PromQL, with Grafana's variables)."""
    expr = re.sub(r"label_values\((.*),\s*\w+\)", r"\1", expr)  # Grafana: label_values(q, label)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables
    names = set()
    for word in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        called = expr[word.end() :].lstrip().startswith("(")  # a function or aggregation
        if not called and word.group() not in KEYWORDS:
            names.add(word.group())
    return names


def test_series_in_reads_promql() -> None:
    expr = (
        'sum by (container) (rate(container_cpu_usage_seconds_total{pod="$pod", container!=""}'
        "[$__rate_interval])) / on (container) group_left kube_pod_status_ready > bool 0"
    )
    assert series_in(expr) == {"container_cpu_usage_seconds_total", "kube_pod_status_ready"}
    assert series_in('label_values(kube_pod_status_phase{namespace="$namespace"}, pod)') == {
        "kube_pod_status_phase"
    }


# --- The dashboard ---------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(board: dict[str, Any]) -> Iterator[str]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            yield query["query"] if isinstance(query, dict) else query


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["id"] is None  # import assigns one
    assert board["uid"]
    assert board["title"]
    assert board["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert {"type", "title", "gridPos"} <= set(panel)
        for target in panel.get("targets", []):
            assert target["refId"]
            assert target["expr"]
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "pod"} <= names


def test_dashboard_shows_cpu_memory_restarts_oom_kills_readiness_throttling() -> None:
    used = set().union(*(series_in(e) for e in expressions(dashboard())))
    assert {
        "container_cpu_usage_seconds_total",  # CPU
        "container_memory_working_set_bytes",  # working set ...
        "container_spec_memory_limit_bytes",  # ... against its limit
        "kube_pod_container_status_restarts_total",  # restarts
        "container_oom_events_total",  # OOM kills
        "kube_pod_container_status_ready",  # readiness
        "container_cpu_cfs_throttled_periods_total",  # throttling
    } <= used


@pytest.mark.parametrize("expr", list(expressions(dashboard())))
def test_every_dashboard_query_uses_only_series_podvisor_exports(expr: str) -> None:
    unknown = series_in(expr) - exported_series()
    assert series_in(expr)
    assert not unknown, f"{expr}: {sorted(unknown)} not exported"


# --- The Prometheus configuration ------------------------------------------------------------


def test_prometheus_example_passes_promtool() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(EXAMPLES / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
