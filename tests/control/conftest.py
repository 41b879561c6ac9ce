"""Real pods with a control socket, and the `podvisor` commands run against them.

`control_pod` runs a manifest with the real runner (init, namespaces,
cgroups, a loopback network) in the test's event loop and serves its control
socket in the runner's own task group, where the runner will start it (see
issue 9's report), in a run directory of the test's own
(``$PODVISOR_RUN_DIR``), so that the test never meets another pod's socket.
`ControlledPod.ctl` runs a command as a user does: ``python -m
podvisor.supervisor.ctl ARGS`` in a child process, while the loop serves it.

Every async test runs on trio and on asyncio.
"""

from __future__ import annotations

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
import pytest

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor import manifest
from podvisor.supervisor.control import serve_control
from podvisor.supervisor.control_protocol import RUN_DIR_VARIABLE
from podvisor.supervisor.runner import PodRunner, RunOptions
from tests.sidecars.pods import LogWatcher, WatchedRunner
from tests.sidecars.support import WAIT

REPO = Path(__file__).resolve().parents[2]
#: `lifecycle.RestartRequested`, once the lead has applied the patch of issue 9's report.
RESTART_REQUESTED: Callable[[str], lc.Event] | None = vars(lc).get("RestartRequested")


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
    return [sys.executable, "-m", "podvisor.supervisor.ctl", *args]


class ControlledRunner(WatchedRunner):
    def restart_container(self, name: str) -> None:
        # What PodRunner.restart_container will do (issue 9's report).
        if RESTART_REQUESTED is None:
            raise NotImplementedError("lifecycle.RestartRequested is not there yet")
        self.post(RESTART_REQUESTED(name))


@dataclass
class ControlledPod:
    runner: ControlledRunner
    log: LogWatcher
    run_dir: Path
    socket: Path | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    status: int | None = None

    @property
    def name(self) -> str:
        return self.runner.pod.name

    def container(self, name: str) -> lc.ContainerStatus:
        return self.runner.state.container(name)

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
                while not condition():
                    await self.runner.changed()
        except TimeoutError:
            raise AssertionError(f"timed out waiting until {what}: {self.runner.state}") from None

    async def running(self, name: str) -> lc.ContainerStatus:
        await self.until(f"{name} runs", lambda: self.container(name).step is lc.Step.RUNNING)
        return self.container(name)

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
    log = LogWatcher()
    listening = anyio.Event()
    pod: ControlledPod

    def on_ready(runner: PodRunner) -> None:
        async def serve() -> None:
            async with anyio.create_task_group() as tg:
                pod.socket = await tg.start(serve_control, runner, run_dir / "pods")
                listening.set()

        assert runner._tg is not None
        runner._tg.start_soon(serve)

    options = RunOptions(stdout=log, stderr=log, on_ready=on_ready)
    pod = ControlledPod(ControlledRunner(loaded, options), log, run_dir)

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
