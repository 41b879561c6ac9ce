"""Real pods and a real Prometheus for the end-to-end tests.

`live_pod` runs a manifest with the real runner (init, namespaces, cgroups)
and serves its endpoint with `serve_metrics` on a port the kernel picks;
`prometheus` runs Debian's Prometheus server on loopback against it. Both
stop what they started on the way out, whatever happened.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import textwrap
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor import manifest
from podvisor.supervisor.metrics import serve_metrics
from podvisor.supervisor.pod.runner import PodRunner, RunOptions
from podvisor.supervisor.pod.view import PodView
from tests.metrics.client import get

PROMETHEUS = "/usr/bin/prometheus"


@dataclass
class LivePod:
    runner: PodRunner
    view: PodView
    port: int
    output: io.StringIO
    errors: io.StringIO

    async def status(self) -> dict[str, Any]:
        reply = await get(self.port, "/status")
        assert reply.status == 200, reply.text
        found: dict[str, Any] = json.loads(reply.text)
        return found

    async def container_status(self, name: str) -> dict[str, Any]:
        status = await self.status()
        every = status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
        found: dict[str, Any] = next(c for c in every if c["name"] == name)
        return found


def _run_options(**options: Any) -> RunOptions:
    # The runner's own endpoint stays off: the test serves the pod's view on
    # a port the kernel picks, so tests never compete for the default port.
    return RunOptions(metrics_address="off", **options)


@asynccontextmanager
async def live_pod(text: str) -> AsyncIterator[LivePod]:
    """Run the pod in *text* until the block ends, then stop it (SIGTERM, as a user would)."""
    loaded = manifest.load("pod.yaml", textwrap.dedent(text).strip() + "\n")
    out, err = io.StringIO(), io.StringIO()
    ready = anyio.Event()
    views: list[PodView] = []

    def on_ready(view: PodView) -> None:
        views.append(view)
        ready.set()

    runner = PodRunner(loaded, _run_options(stdout=out, stderr=err, on_ready=on_ready))
    metrics = runner.metrics
    finished = anyio.Event()

    async def run() -> None:
        try:
            await runner.run()
        finally:
            finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(60):
            await ready.wait()
        [view] = views
        address = await tg.start(serve_metrics, view, metrics, "127.0.0.1:0")
        assert address is not None
        try:
            yield LivePod(runner, view, address[1], out, err)
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(60):
                if not finished.is_set():
                    runner.post(lc.StopRequested())
                    await finished.wait()
            tg.cancel_scope.cancel()


def free_port() -> int:
    """A port nobody listens on now (the kernel's next ephemeral one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Prometheus:
    port: int

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (HTTP API /api/v1/query)."""
        reply = await get(self.port, "/api/v1/query?query=" + urllib.parse.quote(promql))
        assert reply.status == 200, reply.text
        body = json.loads(reply.text)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def ready(self, seconds: float = 90) -> None:
        """Until /-/ready answers 200: Prometheus opens its port first, then answers 503
        while its storage starts, which takes seconds on a slow or emulated machine."""
        with anyio.fail_after(seconds):
            while True:
                with contextlib.suppress(OSError):
                    if (await get(self.port, "/-/ready")).status == 200:
                        return
                await anyio.sleep(0.2)

    async def query_until(self, promql: str, seconds: float = 90) -> list[dict[str, Any]]:
        """Query until the answer is not empty: Prometheus scrapes every second."""
        with anyio.fail_after(seconds):
            while True:
                # Prometheus opens its port a moment after it starts: until then, again.
                with contextlib.suppress(OSError):
                    found = await self.query(promql)
                    if found:
                        return found
                await anyio.sleep(0.2)


@asynccontextmanager
async def prometheus(target_port: int, workdir: Path) -> AsyncIterator[Prometheus]:
    """Prometheus scraping 127.0.0.1:*target_port* every second, its data in *workdir*."""
    config = workdir / "prometheus.yml"
    config.write_text(
        textwrap.dedent(f"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: podvisor
                static_configs:
                  - targets: ["127.0.0.1:{target_port}"]
        """)
    )
    port = free_port()
    process = await anyio.open_process(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server = Prometheus(port)
        await server.ready()
        yield server
    finally:
        await _stop(process)


async def _stop(process: anyio.abc.Process) -> None:
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
        with anyio.move_on_after(20):
            await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()


def cgroup_working_set(view: PodView, name: str) -> int:
    """The kernel's working set of container *name* now: usage minus inactive file pages."""
    stats = view.cgroups[name].read()
    assert stats.memory_working_set_bytes is not None
    return stats.memory_working_set_bytes


def make_fifo(path: Path) -> int:
    """A FIFO at *path*, opened for reading without blocking: a container writes to it."""
    os.mkfifo(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


async def read_line(fd: int, seconds: float = 60) -> str:
    """The first line written to the FIFO *fd*."""
    data = b""
    with anyio.fail_after(seconds):
        while b"\n" not in data:
            await anyio.wait_readable(fd)
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            data += chunk
    return data.decode().split("\n", 1)[0]
