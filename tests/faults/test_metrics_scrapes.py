"""1,000 scrapes of /metrics from 50 concurrent clients while containers restart.

Two containers crash a set number of times and then stay up (one exits 1,
one is SIGKILLed by its own shell), restarting under a short back-off, while
50 clients scrape 20 times each. Every scrape must succeed, and each client
must see the restart counters only go up; one scrape in ten is parsed whole
as the Prometheus text format (parsing them all would cost the supervisor's
event loop, which the test shares, more than the scrapes themselves). Once the crashing is over, kube_pod_container_status_restarts_total
must equal the restart count of the pod's status and the number of runs
each container counted itself: no restart missed, none counted twice.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from podvisor.supervisor.metrics.collector import NO_SERIES
from tests.faults.conftest import FdWatch, Record
from tests.faults.pods import InProcessPod, running_pod, samples

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

CLIENTS, SCRAPES = 50, 20
CRASHES = {"exits": 15, "killed": 10}
RESTARTS = "kube_pod_container_status_restarts_total"


async def fetch(port: int, path: str) -> tuple[int, str]:
    """One GET on a connection of its own: (status, body)."""
    with anyio.fail_after(30):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(
                f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
            )
            reply = b""
            while True:
                try:
                    reply += await stream.receive()
                except anyio.EndOfStream:
                    break
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def _crasher(runs: Path, times: int, how: str) -> list[str]:
    script = f"echo x >> {runs}; test $(wc -l < {runs}) -gt {times} && exec sleep 3600; {how}"
    return ["sh", "-c", script]


def _restarts(exposition: str) -> dict[str, float]:
    """The restart counters of the crashing containers, read straight off the text."""
    found = {}
    for labels, value in _SAMPLE.findall(exposition):
        container = _CONTAINER.search(labels)
        if container and container[1] in CRASHES:
            found[container[1]] = float(value)
    assert set(found) == set(CRASHES), exposition[:2000]
    return found


_SAMPLE = re.compile(rf"^{RESTARTS}{{([^}}]*)}} (\S+)$", re.MULTILINE)
_CONTAINER = re.compile(r'(?:^|,)container="([^"]*)"')


async def _client(port: int, seen: list[dict[str, float]], failures: list[str]) -> None:
    last: dict[str, float] = {}
    for n in range(SCRAPES):
        try:
            status, body = await fetch(port, "/metrics")
            assert status == 200, status
            if n % 10 == 0:
                parsed = samples(body, RESTARTS)
                assert len(parsed) == 3, parsed
            now = _restarts(body)
        except Exception as exc:  # every failure is counted, none may happen
            failures.append(repr(exc))
            continue
        if any(now[c] < last.get(c, 0) for c in now):
            failures.append(f"a restart counter went down: {last} then {now}")
        last = now
        seen.append(now)


@pytest.mark.timeout(120)
async def test_1000_scrapes_while_containers_restart(
    tmp_path: Path, faults: Record, fd_watch: FdWatch
) -> None:
    runs = {name: tmp_path / name for name in CRASHES}
    text = f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: fault-scrapes
          annotations:
            podvisor.io/network: loopback
            podvisor.io/backoff-initial: 100ms
            podvisor.io/backoff-max: 500ms
        spec:
          restartPolicy: OnFailure
          terminationGracePeriodSeconds: 5
          containers:
            - {{name: steady, command: ["sleep", "3600"]}}
            - {{name: exits, command: {json.dumps(_crasher(runs["exits"], CRASHES["exits"], "exit 1"))}}}
            - {{name: killed, command: {json.dumps(_crasher(runs["killed"], CRASHES["killed"], "kill -KILL $$"))}}}
    """
    async with running_pod(text, metrics_address="127.0.0.1:0") as pod:
        address = pod.view.metrics_address
        assert address is not None
        port = address[1]
        # A scrape keeps the cgroup files it reads open for the next (cgroupfs.KeptFiles):
        # the descriptors' steady point is after one, once every container has begun.
        await pod.until(lambda: all(_begun(pod, n) for n in ("steady", *CRASHES)), "starts")
        await fetch(port, "/metrics")
        fd_watch.steady(os.getpid())
        seen: list[dict[str, float]] = []
        failures: list[str] = []
        async with anyio.create_task_group() as tg:
            for _ in range(CLIENTS):
                tg.start_soon(_client, port, seen, failures)
        during = sum(1 for s in seen if s and min(s.values()) < min(CRASHES.values()))
        await _settled(pod, runs)
        status, body = await fetch(port, "/metrics")
        _, pod_status = await fetch(port, "/status")
        # The containers' pipes (two each) may be open at one count and not the other.
        fds_grown = fd_watch.grown(os.getpid(), slack=6)
        await pod.stop()
    assert not failures, failures[:5]
    assert len(seen) == CLIENTS * SCRAPES
    assert status == 200
    counted = _restarts(body)
    shown = _restart_counts(json.loads(pod_status))
    ran = {name: len(path.read_text().split()) - 1 for name, path in runs.items()}
    expected = {n: float(c) for n, c in CRASHES.items()}
    found = {"metrics": counted, "status": shown, "runs": {n: float(c) for n, c in ran.items()}}
    assert all(v == expected for v in found.values()), found
    faults.leak("supervisor descriptors", fds_grown)
    faults.runs = len(seen)
    faults.figure("scrapes while restarting", during)


def _begun(pod: InProcessPod, name: str) -> bool:
    """Whether *name* has begun, so a scrape reads its cgroup."""
    return pod.view.state is not None and pod.container(name).step not in NO_SERIES


async def _settled(pod: InProcessPod, runs: dict[str, Path]) -> None:
    """Until each crashing container runs for good: restarted as often as it crashes, and
    its last run has begun (it counted itself: Running comes a moment before that)."""

    def done() -> bool:
        return all(
            pod.container(n).restart_count == c
            and pod.container(n).state.value == "running"
            and len(runs[n].read_text().split()) == c + 1
            for n, c in CRASHES.items()
        )

    await pod.until(done, "the crashing to end")


def _restart_counts(status: dict[str, Any]) -> dict[str, float]:
    return {
        c["name"]: float(c["restartCount"])
        for c in status["containerStatuses"]
        if c["name"] in CRASHES
    }
