"""`podvisor ps` and `podvisor status` against a running pod."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.control.conftest import control_pod, serving_pod

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


async def test_ps_lists_the_running_pod(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-ps"), run_dir) as pod:
        await pod.serving()
        done = await pod.ctl("ps")
        assert done.returncode == 0, done.stderr
        header, row = done.stdout.splitlines()
        assert header.split() == ["NAME", "STATUS", "READY", "RESTARTS", "AGE", "IP", "METRICS"]
        name, status, ready, restarts, age, ip, metrics = row.split()
        assert (name, status, ready, restarts) == ("ctl-ps", "Running", "1/1", "0")
        assert pod.view.metrics_address is not None
        assert metrics == f"127.0.0.1:{pod.view.metrics_address[1]}"
        assert age.endswith("s")
        assert ip == ((pod.view.network.pod_ip if pod.view.network else None) or "-")
        # Columns line up: every value starts where its header does.
        assert row.index(status) == header.index("STATUS")
        assert row.index(age) == header.index("AGE")
        assert "\x1b[" not in done.stdout  # no colours into a pipe

        [found] = await pod.json("ps")
        assert found["name"] == "ctl-ps"
        assert found["phase"] == "Running"
        assert found["ready"] == 1
        assert found["containers"] == 1
        assert found["supervisor_pid"] == os.getpid()
        assert abs(found["start_time"] - time.time()) < 60


async def test_status_shows_each_container(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-status"), run_dir) as pod:
        app = await pod.serving()
        found = await pod.json("status", "ctl-status")
        [c] = found["containers"]
        assert c["name"] == "app"
        assert c["state"] == "running"
        assert c["ready"] is True
        assert c["restarts"] == 0
        assert c["last_termination"] is None
        assert c["pid"] == app.pid
        assert c["memory_limit_bytes"] == 64 * 1024 * 1024
        assert 0 < c["memory_bytes"] < c["memory_limit_bytes"]
        assert c["cpu_limit_cores"] == pytest.approx(0.5)
        assert c["cpu_cores"] is not None
        assert c["cpu_cores"] >= 0
        assert c["pids"] >= 1
        assert c["paused"] is False

        text = await pod.ctl("status", "ctl-status")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].split() == ["Pod:", "ctl-status"]
        assert "Running" in lines[1]
        assert "ready 1/1" in lines[1]
        table = lines[lines.index("") + 1 :]
        assert table[0].split()[:3] == ["CONTAINER", "KIND", "STATE"]
        assert table[1].split()[:3] == ["app", "main", "Running"]
        assert "/64Mi" in table[1]
        assert "/500m" in table[1]


async def test_status_shows_a_busy_containers_cpu(run_dir: Path) -> None:
    # A container that spins against its 500m limit, beside one that sleeps.
    text = """
        apiVersion: v1
        kind: Pod
        metadata: {name: ctl-cpu, annotations: {podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
            - name: spin
              command: ["sh", "-c", "echo spin started; while :; do :; done"]
              resources: {limits: {cpu: 500m}}
            - name: idle
              command: ["sh", "-c", "echo idle started; exec sleep 600"]
    """
    async with control_pod(text, run_dir) as pod:
        await pod.log.said("spin", "spin started")
        await pod.log.said("idle", "idle started")
        found = await pod.json("status", "ctl-cpu")
        cpu = {c["name"]: c["cpu_cores"] for c in found["containers"]}
        # A shared machine may give the spinner less than its limit, never nothing; a
        # sample of CPU_SAMPLE_SECONDS may hold three of its 50 ms quota slices.
        assert 0.01 < cpu["spin"] <= 1.0, cpu
        assert cpu["idle"] < cpu["spin"], cpu
        shown = await pod.ctl("status", "ctl-cpu")
        [spin] = [line for line in shown.stdout.splitlines() if line.startswith("spin ")]
        used = next(word for word in spin.split() if word.endswith("/500m"))
        assert int(used.removesuffix("m/500m")) > 10, spin


async def test_an_unknown_pod_is_an_error(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-known"), run_dir) as pod:
        done = await pod.ctl("status", "ctl-unknown")
        assert done.returncode == 1
        assert "no pod named 'ctl-unknown'" in done.stderr
