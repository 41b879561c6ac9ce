"""Clients that hold the metrics endpoint: idle by the thousand, or slow on purpose.

Any local user may connect to the endpoint. 1,100 idle connections against
a supervisor whose RLIMIT_NOFILE is 1,024 would run it out of descriptors,
and a few dozen slow clients (slowloris: a request head sent a byte at a
time) would hold every slot; in both cases the pod must run on and /readyz,
what a Docker HEALTHCHECK asks, must still answer.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Record
from tests.faults.pods import free_port, podvisor_command, write_pod

pytestmark = pytest.mark.faults

IDLE = 1100
SLOW = 100
NOFILE = 1024
#: A stalled endpoint never answers; a working one at once on an idle machine.
ANSWER = 5.0


def _pod(tmp_path: Path, name: str) -> Path:
    return write_pod(
        tmp_path,
        name,
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: 10
          containers:
            - name: main
              command: {json.dumps(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"])}
        """,
    )


@contextlib.contextmanager
def _supervisor(manifest: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [
            "prlimit",
            f"--nofile={NOFILE}:{NOFILE}",
            "--",
            *podvisor_command(),
            "run",
            "--metrics-address",
            f"127.0.0.1:{port}",
            str(manifest),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _readyz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=ANSWER) as reply:
        return reply.status, time.monotonic() - started


def _wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if _readyz(port)[0] == 200:
                return
        assert time.monotonic() < deadline, "the pod never became ready"
        time.sleep(0.1)


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """Room in this process for the clients' sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("many_descriptors")
def test_1100_idle_connections_with_1024_descriptors(tmp_path: Path, faults: Record) -> None:
    port = free_port()
    with (
        _supervisor(_pod(tmp_path, "fault-idle-conns"), port) as proc,
        contextlib.ExitStack() as held,
    ):
        _wait_ready(port)
        for _ in range(IDLE):
            held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        slowest = 0.0
        for _ in range(10):
            status, took = _readyz(port)
            assert status == 200
            slowest = max(slowest, took)
        assert proc.poll() is None, "the supervisor died"
    assert proc.returncode == 0
    faults.runs = IDLE
    faults.figure("slowest /readyz", f"{slowest:.2f}s")


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("many_descriptors")
def test_100_slowloris_clients_do_not_hold_readyz(tmp_path: Path, faults: Record) -> None:
    port = free_port()
    with (
        _supervisor(_pod(tmp_path, "fault-slowloris"), port) as proc,
        contextlib.ExitStack() as held,
    ):
        _wait_ready(port)
        slow = [
            held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            for _ in range(SLOW)
        ]
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        slowest = 0.0
        for second in range(5):
            for sock in slow:  # a header byte now and then: never a whole head
                with contextlib.suppress(OSError):
                    sock.sendall(b"X" if second else b"X-Slow: ")
            status, took = _readyz(port)
            assert status == 200
            slowest = max(slowest, took)
            time.sleep(0.5)
        assert proc.poll() is None, "the supervisor died"
    assert proc.returncode == 0
    faults.runs = SLOW
    faults.figure("slowest /readyz", f"{slowest:.2f}s")
