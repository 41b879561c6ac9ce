"""Pods for the fault scenarios: `podvisor run` as a child, or the runner in-process.

`Supervisor` runs `podvisor run MANIFEST` with its output read by two threads
into timestamped lines, so a test waits for a container's ready line with a
bounded wait and never fills a pipe. `running_pod` runs a `PodRunner` in the
test's own event loop, for scenarios that read the runner's state (restart
counts, cgroups, the metrics endpoint).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor import manifest
from podvisor.supervisor.runner import PodRunner, RunOptions
from tests.faults import procfs


def podvisor_command() -> list[str]:
    script = Path(sys.executable).with_name("podvisor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "podvisor.init.entry"]


def pod_yaml(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n"


def write_pod(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(pod_yaml(body))
    return path


def split_line(line: str) -> tuple[str, str]:
    """("container", "text") from podvisor's `name | text`; ("", line) for anything else."""
    name, sep, text = line.partition(" | ")
    return (name.strip(), text) if sep else ("", line)


# =============================================================================
# Timestamped lines, shared by both ways of running a pod
# =============================================================================


@dataclass(frozen=True)
class Line:
    at: float  # time.time() when the test received it
    container: str
    text: str


class Lines:
    """Lines as they arrive, from a reader thread or the runner's own writes."""

    def __init__(self, drop: Callable[[str, str], bool] | None = None) -> None:
        self._lines: list[Line] = []
        self._changed = threading.Condition()
        self._drop = drop
        self.dropped = 0

    def add(self, raw: str) -> None:
        container, text = split_line(raw)
        if self._drop is not None and self._drop(container, text):
            self.dropped += 1
            return
        with self._changed:
            self._lines.append(Line(time.time(), container, text))
            self._changed.notify_all()

    def snapshot(self) -> list[Line]:
        with self._changed:
            return list(self._lines)

    def of(self, container: str) -> list[str]:
        return [line.text for line in self.snapshot() if line.container == container]

    def text(self) -> str:
        return "\n".join(
            f"{ln.container} | {ln.text}" if ln.container else ln.text for ln in self.snapshot()
        )

    def wait_for(self, found: Callable[[list[Line]], bool], timeout: float, what: str) -> None:
        """Block (bounded) until *found* holds for the lines so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not found(self._lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(f"{ln.container} | {ln.text}" for ln in self._lines[-20:])
                    raise AssertionError(f"timed out waiting for {what}; last lines:\n{tail}")
                self._changed.wait(left)

    def wait_line(self, container: str, text: str, timeout: float = 60, count: int = 1) -> None:
        def found(lines: list[Line]) -> bool:
            return sum(ln.container == container and ln.text == text for ln in lines) >= count

        self.wait_for(found, timeout, f"{container} to say {text!r} {count} time(s)")


# =============================================================================
# `podvisor run` as a child
# =============================================================================


class Supervisor:
    """`podvisor run MANIFEST` as our child, its output read line by line by threads.

    *drop* filters stdout in a `grep -v` between the supervisor and us (lines
    starting with it never reach Python), for a container that floods.
    """

    def __init__(
        self,
        path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        drop: str | None = None,
    ) -> None:
        self.out = Lines()
        self.err = Lines()
        self.proc = subprocess.Popen(
            [*podvisor_command(), "run", *args, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.filter: subprocess.Popen[bytes] | None = None
        stdout: IO[bytes] = self.proc.stdout
        if drop is not None:
            self.filter = subprocess.Popen(
                ["grep", "-a", "--line-buffered", "-v", "-e", f"^{drop}"],
                stdin=self.proc.stdout,
                stdout=subprocess.PIPE,
            )
            self.proc.stdout.close()
            assert self.filter.stdout is not None
            stdout = self.filter.stdout
        self._threads = [
            threading.Thread(target=_pump, args=(stdout, self.out), daemon=True),
            threading.Thread(target=_pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def wait_line(self, container: str, text: str, timeout: float = 60, count: int = 1) -> None:
        try:
            self.out.wait_line(container, text, timeout, count)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstderr:\n{self.err.text()}") from None

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the supervisor to exit and for its output to be read to the end."""
        code = self.proc.wait(timeout=timeout)
        if self.filter is not None:
            self.filter.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=timeout)
        return code

    def init_pids(self) -> tuple[int, int]:
        """(outer, inner): the supervisor's `podvisor-init` child, and its child, PID 1 of the pod."""
        outer = [p for p in procfs.children_of(self.pid) if procfs.comm_of(p) == "podvisor-init"]
        assert len(outer) == 1, f"the supervisor's children: {procfs.children_of(self.pid)}"
        inner = procfs.children_of(outer[0])
        assert len(inner) == 1, f"the outer init's children: {inner}"
        return outer[0], inner[0]

    def close(self) -> None:
        """Kill (if still running) and reap; used on the way out, whatever happened."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.wait(timeout=30)
        if self.filter is not None and self.filter.poll() is None:
            self.filter.kill()
            self.filter.wait()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _pump(stream: IO[bytes], into: Lines) -> None:
    with stream:
        for raw in stream:
            into.add(raw.decode("utf-8", errors="replace").rstrip("\n"))


@contextlib.contextmanager
def supervisor(path: Path, *args: str, **kwargs: Any) -> Iterator[Supervisor]:
    with Supervisor(path, *args, **kwargs) as sup:
        yield sup


# =============================================================================
# The runner in-process
# =============================================================================


class Output(io.TextIOBase):
    """The runner's stdout or stderr: each whole line goes to `lines`, with its time."""

    def __init__(self, lines: Lines) -> None:
        super().__init__()
        self.lines = lines
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        *whole, self._pending = (self._pending + s).split("\n")
        for line in whole:
            self.lines.add(line)
        return len(s)


@dataclass
class InProcessPod:
    runner: PodRunner
    out: Lines
    err: Lines
    finished: anyio.Event
    result: list[int] = field(default_factory=list)

    @property
    def state(self) -> lc.PodState:
        return self.runner.state

    def container(self, name: str) -> lc.ContainerStatus:
        return next(c for c in self.runner.state.containers if c.name == name)

    async def wait_line(self, container: str, text: str, timeout: float = 60) -> None:
        await anyio.to_thread.run_sync(self.out.wait_line, container, text, timeout)

    async def until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait (bounded) for *check* on the runner's state, re-checked after each event."""
        with anyio.fail_after(timeout):
            while not check():
                await anyio.sleep(0.02)  # the runner's loop is ours: yield to it
        assert check(), what

    async def stop(self, timeout: float = 60) -> int:
        if not self.finished.is_set():
            self.runner.post(lc.StopRequested())
        with anyio.fail_after(timeout):
            await self.finished.wait()
        return self.result[0]


@asynccontextmanager
async def running_pod(
    text: str, *, drop: Callable[[str, str], bool] | None = None
) -> AsyncIterator[InProcessPod]:
    """Run the pod in *text* until the block ends, then stop it in order (bounded)."""
    loaded = manifest.load("pod.yaml", pod_yaml(text))
    out, err = Lines(drop), Lines()
    ready = anyio.Event()
    runner = PodRunner(
        loaded, RunOptions(stdout=Output(out), stderr=Output(err), on_ready=lambda _: ready.set())
    )
    pod = InProcessPod(runner, out, err, anyio.Event())

    async def run() -> None:
        try:
            pod.result.append(await runner.run())
        finally:
            pod.finished.set()
            ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(60):
            await ready.wait()
        try:
            yield pod
        finally:
            with anyio.CancelScope(shield=True):
                await pod.stop()


def stop_order(path: Path) -> list[str]:
    """The names written by TERM traps (`NAME SECONDS` lines), in the order of their times."""
    entries = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [name for name, _ in sorted(entries, key=lambda e: float(e[1]))]


def term_trap(log: Path, name: str) -> Sequence[str]:
    """A container command: says "up" once its TERM trap is set, then waits; the trap
    appends `NAME SECONDS` to *log* and exits 0."""
    script = (
        f"trap 'echo {name} $(date +%s.%N) >> {log}; exit 0' TERM; "
        "echo up; while :; do sleep 0.2; done"
    )
    return ["sh", "-c", script]
