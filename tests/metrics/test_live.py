"""End to end: a real pod, scraped live, checked by promtool and by a real Prometheus server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from tests.metrics.client import get
from tests.metrics.conftest import parse, promtool_findings
from tests.metrics.live import cgroup_working_set, live_pod, make_fifo, prometheus, read_line

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

MiB = 2**20


def restarting_pod(workdir: Path) -> str:
    """main fails once, then holds 64 MiB and says so on a FIFO: one restart, a known size."""
    script = f"""
import sys, time
with open({str(workdir / "runs")!r}, "a+") as runs:
    runs.write("x")
    runs.seek(0)
    if runs.read() == "x":
        sys.exit(1)
block = bytearray(64 * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1
with open({str(workdir / "ready")!r}, "w") as fifo:
    fifo.write("ready\\n")
time.sleep(3600)
"""
    return f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: pvm-live, annotations: {{podvisor.io/rootfs: host}}}}
        spec:
          restartPolicy: Always
          terminationGracePeriodSeconds: 5
          containers:
            - name: main
              image: python:3.11-slim
              command: ["python3", "-c", {json.dumps(script)}]
              resources:
                limits: {{memory: 256Mi, cpu: 500m}}
    """


def ready_fifo_and_pod(workdir: Path) -> tuple[int, str]:
    """The FIFO main says "ready" on (open for reading first), and the pod's manifest."""
    return make_fifo(workdir / "ready"), restarting_pod(workdir)


async def test_a_live_scrape_passes_promtool_and_shows_the_pod(
    tmp_path: Path, anyio_backend: str
) -> None:
    fifo, text = ready_fifo_and_pod(tmp_path)
    try:
        async with live_pod(text) as pod:
            assert await read_line(fifo) == "ready"
            main = await pod.container_status("main")
            with anyio.fail_after(30):
                while "running" not in main["state"]:  # the spawn's reply may trail the process
                    await anyio.sleep(0.05)
                    main = await pod.container_status("main")
            reply = await get(pod.port, "/metrics")
            assert reply.status == 200
            assert promtool_findings(reply.text) == ""
            found = parse(reply.text)
            kernel = cgroup_working_set(pod.view, "main")
            readyz = await get(pod.port, "/readyz")
    finally:
        os.close(fifo)
    assert main["restartCount"] == 1
    assert main["lastState"]["terminated"]["exitCode"] == 1
    restarts = found.value("kube_pod_container_status_restarts_total", container="main")
    assert restarts == main["restartCount"]
    working_set = found.value("container_memory_working_set_bytes", container="main")
    assert 64 * MiB <= working_set <= 256 * MiB
    assert abs(working_set - kernel) <= 16 * MiB, (working_set, kernel)
    assert found.value("container_spec_memory_limit_bytes", container="main") == 256 * MiB
    assert found.value("container_spec_cpu_quota", container="main") == 50_000
    assert found.value("container_cpu_usage_seconds_total", container="main") > 0
    assert found.value("container_processes", container="main") >= 1
    assert found.value("kube_pod_status_phase", phase="Running") == 1
    assert found.value("kube_pod_status_ready", condition="true") == 1
    assert readyz.status == 200
    [build] = found.labels_of("podvisor_build_info")
    assert build["backend"] == anyio_backend


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_prometheus_scrapes_a_running_pod(tmp_path: Path) -> None:
    fifo, text = ready_fifo_and_pod(tmp_path)
    try:
        async with live_pod(text) as pod:
            assert await read_line(fifo) == "ready"
            async with prometheus(pod.port, tmp_path) as server:
                memory = await server.query_until(
                    'container_memory_working_set_bytes{container="main"}'
                )
                restarts = await server.query_until("kube_pod_container_status_restarts_total")
                up = await server.query_until('up{job="podvisor"}')
            main = await pod.container_status("main")
            kernel = cgroup_working_set(pod.view, "main")
    finally:
        os.close(fifo)
    [up_sample] = up
    assert up_sample["value"][1] == "1"
    [memory_sample] = memory
    assert memory_sample["metric"]["pod"] == "pvm-live"
    assert memory_sample["metric"]["namespace"] == "default"
    assert abs(float(memory_sample["value"][1]) - kernel) <= 16 * MiB
    [restart_sample] = restarts
    assert restart_sample["metric"]["container"] == "main"
    assert float(restart_sample["value"][1]) == main["restartCount"] == 1


async def test_orphans_are_counted_by_the_container_whose_init_reaped_them() -> None:
    # By default each container's init is PID 1 of its own PID namespace, so
    # the orphans of "leaky" are that init's to reap, and they are counted for it.
    leak = "for i in 1 2 3; do (sleep 0.2 &); done; echo leaked; exec sleep 1000"
    text = f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: pvm-orphans, annotations: {{podvisor.io/network: loopback}}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
            - {{name: leaky, command: ["sh", "-c", {json.dumps(leak)}]}}
            - {{name: quiet, command: ["sleep", "1000"]}}
    """
    async with live_pod(text) as pod:
        orphans = "podvisor_orphans_reaped_total"
        labels = {"namespace": "default", "pod": "pvm-orphans"}
        with anyio.fail_after(60):
            while True:
                found = parse((await get(pod.port, "/metrics")).text)
                if found.value(orphans, container="leaky", **labels) >= 3:
                    break
                await anyio.sleep(0.2)
        assert found.value(orphans, container="leaky", **labels) == 3
        assert found.value(orphans, container="quiet", **labels) == 0
        assert found.value(orphans, container="", **labels) == 0
