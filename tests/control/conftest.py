"""Real pods with a control socket, and the `podvisor` commands run against them.

`control_pod` runs a manifest with the real runner (init, namespaces,
cgroups, a loopback network) in the test's event loop and serves its control
socket in the runner's own task group, where the runner starts it, in a run
directory of the test's own (``$PODVISOR_RUN_DIR``), so that the test never
meets another pod's socket.
`ControlledPod.ctl` runs a command as a user does: ``python -m
podvisor.supervisor.cli.commands ARGS`` in a child process, while the loop serves it.

Every async test runs on trio and on asyncio.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor import manifest
from podvisor.supervisor.control.paths import RUN_DIR_VARIABLE
from podvisor.supervisor.pod.runner import PodRunner, RunOptions
from podvisor.supervisor.pod.view import PodView
from tests.sidecars.pods import Viewed
from tests.sidecars.support import WAIT

REPO = Path(__file__).resolve().parents[2]
#: `lifecycle.RestartRequested`, the event `podvisor restart` posts.


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A run directory any user may enter (/tmp's pytest directories are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="pv-ctl-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ctl_env(run_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "XDG_RUNTIME_DIR")}
    return {**env, RUN_DIR_VARIABLE: str(run_dir), "PYTHONUNBUFFERED": "1"}


def ctl_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "podvisor.supervisor.cli.commands", *args]


@asynccontextmanager
async def child(argv: list[str], **options: Any) -> AsyncIterator[anyio.abc.Process]:
    """A child process, killed and reaped on the way out if it still runs.

    (Leaving anyio's own ``async with`` waits for it to end, which a failed
    test would do for ever.)
    """
    process = await anyio.open_process(argv, **options)
    try:
        yield process
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.aclose()


class Output(io.StringIO):
    """The runner's stdout and stderr: keeps every line, wakes whoever waits for one."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._partial = ""
        self._changed = anyio.Event()

    def write(self, s: str) -> int:
        *whole, self._partial = (self._partial + s).split("\n")
        if whole:
            self.lines += whole
            self._changed.set()
            self._changed = anyio.Event()
        return super().write(s)

    def count(self, container: str, text: str) -> int:
        """How many lines *container* wrote that read *text* (the runner writes "NAME | TEXT")."""
        found = (line.partition(" | ") for line in self.lines)
        return sum(1 for name, _, said in found if name.strip() == container and said == text)

    async def said_in(self, container: str, part: str) -> None:
        """Wait (bounded) until a line of *container* holds *part*."""
        with anyio.fail_after(WAIT):
            while not any(
                name.strip() == container and part in said
                for name, _, said in (line.partition(" | ") for line in self.lines)
            ):
                await self._changed.wait()

    async def said(self, container: str, text: str, times: int = 1) -> None:
        """Wait (bounded) until *container* has written the line *text* *times* times."""
        with anyio.fail_after(WAIT):
            while self.count(container, text) < times:
                await self._changed.wait()


@dataclass
class ControlledPod(Viewed):
    runner: PodRunner
    log: Output
    run_dir: Path
    socket: Path | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    status: int | None = None
    seen: PodView | None = None

    @property
    def name(self) -> str:
        return self.runner.pod.name

    def container(self, name: str) -> lc.ContainerStatus:
        return self.state.container(name)

    async def ctl(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """``podvisor ARGS`` as a child process: its status, stdout and stderr."""
        with anyio.fail_after(WAIT):
            done = await anyio.run_process(
                ctl_argv(*args), input=stdin, check=False, env=ctl_env(self.run_dir), cwd=REPO
            )
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
        )

    async def json(self, *args: str) -> Any:
        done = await self.ctl(*args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    async def until(self, what: str, condition: Callable[[], bool]) -> None:
        """Wait (bounded) until *condition* holds; checked whenever the core's state changes."""
        try:
            with anyio.fail_after(WAIT):
                while self.view.state is None or not condition():
                    await self.view.changed()
        except TimeoutError:
            raise AssertionError(f"timed out waiting until {what}: {self.view.state}") from None

    async def running(self, name: str) -> lc.ContainerStatus:
        await self.until(f"{name} runs", lambda: self.container(name).step is lc.Step.RUNNING)
        return self.container(name)

    async def serving(self, instances: int = 1) -> lc.ContainerStatus:
        """Wait until "app" of `serving_pod` has said "app started" (its trap is set) *instances* times."""
        await self.log.said("app", "app started", instances)
        return await self.running("app")

    async def finished(self) -> int:
        with anyio.fail_after(WAIT):
            await self.done.wait()
        assert self.status is not None
        return self.status


def pod_manifest(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def serving_pod(name: str, *, policy: str = "Always", extra: str = "") -> str:
    """One container, "app", that says "app started" and runs until SIGTERM."""
    return f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: loopback}}
        spec:
          restartPolicy: {policy}
          terminationGracePeriodSeconds: 5
          containers:
            - name: app
              command: ["sh", "-c", "trap 'echo app stopping; exit 0' TERM; echo app started; while :; do sleep 0.1; done"]
              env: [{{name: GREETING, value: hello-from-app}}]
              resources: {{limits: {{memory: 64Mi, cpu: 500m}}}}
          {extra}
    """


@asynccontextmanager
async def control_pod(text: str, run_dir: Path) -> AsyncIterator[ControlledPod]:
    """Run the pod in *text* with its control socket until the block ends, then stop it."""
    loaded = manifest.load("pod.yaml", pod_manifest(text))
    log = Output()
    listening = anyio.Event()
    pod: ControlledPod

    def on_ready(view: PodView) -> None:
        pod.seen = view
        pod.socket = view.control_socket
        listening.set()

    # Metrics on a port the kernel picks: tests run side by side, and `ps` shows it.
    options = RunOptions(
        stdout=log,
        stderr=log,
        on_ready=on_ready,
        metrics_address="127.0.0.1:0",
        control_dir=run_dir / "pods",
    )
    pod = ControlledPod(PodRunner(loaded, options), log, run_dir)

    async def run() -> None:
        try:
            pod.status = await pod.runner.run()
        finally:
            pod.done.set()
            listening.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(WAIT):
            await listening.wait()
        assert pod.socket is not None, f"the pod has no control socket: {log.getvalue()}"
        try:
            yield pod
        finally:
            if not pod.done.is_set():
                pod.runner.post(lc.StopRequested())
            with anyio.CancelScope(shield=True), anyio.fail_after(WAIT):
                await pod.done.wait()
