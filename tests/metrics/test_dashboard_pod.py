"""Every series the Grafana dashboard queries, in the /metrics of a real pod that probes,
restarts, crash-loops a sidecar and is OOM-killed; and the events that pod records."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from podvisor.supervisor.cgroups import CgroupDriver, Layout
from podvisor.supervisor.control.paths import RUN_DIR_VARIABLE
from tests.faults.pods import Supervisor, free_port, http_get, podvisor_command, write_pod
from tests.metrics.test_examples import dashboard, expressions, series_in

pytestmark = pytest.mark.needs_root

#: The longest the pod may take to have shown every series (a few back-offs of 100 ms+).
WAIT = 60.0
HOG = "x = b'x' * (256 << 20)"


def _pod(directory: Path) -> Path:
    limits = "resources: {limits: {memory: 32Mi, cpu: 500m}}"
    return write_pod(
        directory,
        "dash",
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: dash
          annotations:
            podvisor.io/network: loopback
            podvisor.io/backoff-initial: 100ms
            podvisor.io/backoff-max: 500ms
        spec:
          terminationGracePeriodSeconds: 2
          initContainers:
            - {{name: setup, command: ["true"], {limits}}}
            - {{name: flaky, command: ["false"], restartPolicy: Always, {limits}}}
          containers:
            - name: web
              command: ["sh", "-c", "echo up; exec sleep 1000"]
              {limits}
              readinessProbe: {{exec: {{command: ["true"]}}, periodSeconds: 1}}
              livenessProbe:
                exec: {{command: ["sh", "-c", "echo wedged; exit 1"]}}
                periodSeconds: 1
                failureThreshold: 2
            - {{name: hog, command: ["python3", "-c", "{HOG}"], {limits}}}
        """,
    )


#: What the pod must have recorded: its starts, a liveness kill, back-offs, an OOM kill.
EVENTS = frozenset({"Created", "Started", "Unhealthy", "Killing", "BackOff", "OOMKilling"})


def _events(env: dict[str, str]) -> set[tuple[str, str, str]]:
    listed = subprocess.run(
        [*podvisor_command(), "events", "dash", "-o", "json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {(e["reason"], e["container"], e["message"]) for e in json.loads(listed.stdout)}


def _names(exposition: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(exposition) for s in f.samples}


def _psi() -> bool:
    """Whether the kernel keeps pressure figures per cgroup: only cgroup v2 does (on a
    hybrid host, podvisor reads them from the v2 hierarchy; pure v1 has none)."""
    return Path("/proc/pressure/cpu").exists() and CgroupDriver.detect().layout != Layout.V1


def test_every_dashboard_series_is_in_a_real_pods_metrics(tmp_path: Path) -> None:
    wanted = set().union(*(series_in(e) for e in expressions(dashboard())))
    if not _psi():  # no pressure figures for cgroups: cAdvisor has none either
        wanted = {n for n in wanted if not n.startswith("container_pressure_")}
    port = free_port()
    env = {RUN_DIR_VARIABLE: str(tmp_path / "run")}  # its control socket, apart from others'
    with Supervisor(_pod(tmp_path), env=env, metrics=f"127.0.0.1:{port}") as sup:
        sup.wait_line("web", "up")
        deadline = time.monotonic() + WAIT
        seen: set[str] = set()
        while True:  # the series and the events come as the pod lives: look again
            # A waiting reason is there only while a container waits (half a second
            # at most here): keep what was seen, scrape often, and list the events
            # (a process of its own, seconds on an emulated machine) only once
            # every series was seen.
            seen |= _names(http_get(port, "/metrics"))
            missing = wanted - seen
            late = time.monotonic() > deadline
            if missing and not late:
                time.sleep(0.1)
                continue
            found = _events(env)
            if late or {r for r, _, _ in found} >= EVENTS:
                break
            time.sleep(0.5)
        assert not missing, f"not in the pod's /metrics: {sorted(missing)}"
        sup.close()
    assert {r for r, _, _ in found} >= EVENTS
    assert ("Killing", "web", "Container web failed liveness probe, will be restarted") in found
    assert (
        "Unhealthy",
        "web",
        "Liveness probe failed: command sh -c 'echo wedged; exit 1' exited with 1: wedged",
    ) in found
    assert any(r == "OOMKilling" and c == "hog" for r, c, _ in found)
