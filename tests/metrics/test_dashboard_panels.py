"""Every panel of the Grafana dashboard shows data for the examples' pods.

Each example pod runs for real, a real Prometheus scrapes it every second, and
each panel's queries are asked of that Prometheus as Grafana would ask them
(its variables filled in): a panel none of whose queries answers would show
"No data". The series' names alone (test_dashboard_pod) do not tell: a sum
over two series is empty when one of them is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.metrics.live import Prometheus, live_pod, prometheus
from tests.metrics.test_examples import dashboard, panels

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Grafana's $__rate_interval for a 1 s scrape: enough for rate() to see two samples.
RATE_INTERVAL = "10s"
#: How long Prometheus may take to have what a panel asks for (scrapes every second).
WAIT = 60.0

#: A pod as most are written: one container with limits and a readiness probe
#: that never fails, and no init containers.
PLAIN = """
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers:
    - name: app
      command: ["sh", "-c", "echo app up; exec sleep 1000"]
      resources: {limits: {cpu: 200m, memory: 64Mi}}
      readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"""


@pytest.fixture
def host_tmp() -> Iterator[None]:
    """web.yaml's programs come from the host, and write under its /tmp: removed after."""
    yield
    shutil.rmtree("/tmp/podvisor-web", ignore_errors=True)


def _queries(panel: dict[str, Any], namespace: str, pod: str) -> list[str]:
    filled = {"$namespace": namespace, "$pod": pod, "$__rate_interval": RATE_INTERVAL}
    found = []
    for target in panel.get("targets", []):
        expr = target["expr"]
        for variable, value in filled.items():
            expr = expr.replace(variable, value)
        found.append(expr)
    return found


async def _empty_panels(server: Prometheus, namespace: str, pod: str) -> list[str]:
    """The titles of the panels none of whose queries answers, once every panel had time."""
    queried = [p for p in panels(dashboard()) if p.get("targets")]
    empty = []
    with anyio.move_on_after(WAIT):
        for panel in queried:
            while True:
                results = [await server.query(q) for q in _queries(panel, namespace, pod)]
                if any(results):
                    break
                await anyio.sleep(1)
        return []
    for panel in queried:
        answers = [await server.query(q) for q in _queries(panel, namespace, pod)]
        if not any(answers):
            empty.append(panel["title"])
    return empty


@pytest.mark.usefixtures("host_tmp")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("example", ["web.yaml", "plain"])
async def test_every_panel_shows_data_for_an_example_pod(example: str, tmp_path: Path) -> None:
    text = PLAIN if example == "plain" else (EXAMPLES / example).read_text()
    async with live_pod(text) as pod:
        with anyio.fail_after(WAIT):
            while pod.view.state is None or not pod.view.state.ready:
                await pod.view.changed()
        async with prometheus(pod.port, tmp_path) as server:
            await server.query_until("up")
            empty = await _empty_panels(server, "default", pod.runner.pod.name)
    assert not empty, f"panels without data for {example}: {empty}"
