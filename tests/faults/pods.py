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
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio
from prometheus_client.parser import text_string_to_metric_families

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor import manifest
from podvisor.supervisor.cgroups import CgroupDriver
from podvisor.supervisor.network import cleanup_stale
from podvisor.supervisor.pod.runner import PodRunner, RunOptions
from podvisor.supervisor.pod.view import PodView
from tests.faults import procfs
from tests.sidecars.pods import Viewed


def podvisor_command() -> list[str]:
    script = Path(sys.executable).with_name("podvisor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "podvisor.init.entry"]


def pod_yaml(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n"


#: The unprivileged user the tests act as.
NOBODY = 65534
#: A command's prefix that runs it as NOBODY, able to read this checkout and its
#: interpreter wherever they are (CAP_DAC_READ_SEARCH) and nothing more.
AS_NOBODY = [
    "setpriv",
    f"--reuid={NOBODY}",
    f"--regid={NOBODY}",
    "--clear-groups",
    "--inh-caps=+dac_read_search",
    "--ambient-caps=+dac_read_search",
    "--",
]


def write_pod(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(pod_yaml(body))
    return path


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's next ephemeral one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 30) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
        body: bytes = reply.read()
        return body.decode()


def samples(exposition: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The values of metric *name* in a Prometheus text exposition, by label set."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name:
                found[frozenset(sample.labels.items())] = float(sample.value)
    return found


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

    def __init__(self) -> None:
        self._lines: list[Line] = []
        self._changed = threading.Condition()
        self.closed = False
        #: Called (in the adding thread) after each line is added.
        self.listeners: list[Callable[[], None]] = []

    def add(self, raw: str) -> None:
        container, text = split_line(raw)
        with self._changed:
            self._lines.append(Line(time.time(), container, text))
            self._changed.notify_all()
        for listener in self.listeners:
            listener()

    def close(self) -> None:
        """No more lines will come (end-of-file): waiting for one is pointless."""
        with self._changed:
            self.closed = True
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
                if left <= 0 or self.closed:
                    why = "the output ended" if self.closed else "timed out"
                    tail = "\n".join(f"{ln.container} | {ln.text}" for ln in self._lines[-20:])
                    raise AssertionError(f"{why} waiting for {what}; last lines:\n{tail}")
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

    The metrics endpoint is off unless *metrics* names an address (None: the
    manifest's annotation): tests must not compete for the default port.
    *drop* filters stdout in a `grep -v` between the supervisor and us (lines
    starting with it never reach Python), for a container that floods.
    """

    def __init__(
        self,
        path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        drop: str | None = None,
        metrics: str | None = "off",
    ) -> None:
        self.out = Lines()
        self.err = Lines()
        metrics_flag = ["--metrics-address", metrics] if metrics is not None else []
        self.proc = subprocess.Popen(
            [*podvisor_command(), "run", *metrics_flag, *args, str(path)],
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
        """Stop (SIGTERM, then SIGKILL) if still running, and reap; used on the way out,
        whatever happened, so a failed test still lets podvisor clean up after itself."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(timeout=30)
                break
        if self.filter is not None and self.filter.poll() is None:
            self.filter.kill()
            self.filter.wait()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _pump(stream: IO[bytes], into: Lines) -> None:
    try:
        with stream:
            for raw in stream:
                into.add(raw.decode("utf-8", errors="replace").rstrip("\n"))
    finally:
        into.close()


#: Where podvisor keeps each running pod's files (network record, /etc files,
#: NOTIFY_SOCKET) and its control socket.
RUN_PODS = Path("/run/podvisor/pods")


def run_files(pod: str) -> list[Path]:
    """What /run/podvisor/pods holds for pods named *pod*: `POD-UID/` and `POD.sock`."""
    if not RUN_PODS.is_dir():
        return []
    return sorted(
        p for p in RUN_PODS.iterdir() if p.name.startswith(f"{pod}-") or p.name == f"{pod}.sock"
    )


def remove_run_files(pod: str) -> list[str]:
    """Remove what a SIGKILLed supervisor of *pod* left in /run/podvisor/pods (what was there).

    The next start of a pod of that name removes them
    (`test_a_killed_supervisor_leaves_no_run_files`); a test whose last run was
    killed removes them here, so that the machine stays as the tests found it.
    """
    found = run_files(pod)
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return [p.name for p in found]


def clean_after_dead_supervisor(pod: str, tree: Sequence[int], grace: float) -> None:
    """What the next start of a pod does after its supervisor died, done now.

    Waits for the processes of *tree* (the dead supervisor's, which its init
    ends within its grace period), reaps the init (ours, as a subreaper),
    removes the cgroups and network namespace the supervisor could not, and
    the files it left under /run/podvisor/pods.
    """
    procfs.wait_gone(tree, timeout=grace + 10)
    procfs.reap_adopted()
    CgroupDriver.detect().remove_stale()
    cleanup_stale()
    remove_run_files(pod)


# =============================================================================
# The runner in-process
# =============================================================================


class Output(io.StringIO):
    """The runner's stdout or stderr: each whole line goes to `lines`, with its time
    (and nothing is kept here: a flood must not cost the test its memory)."""

    def __init__(self, lines: Lines) -> None:
        super().__init__()
        self.lines = lines
        self._pending = ""

    def write(self, s: str) -> int:
        *whole, self._pending = (self._pending + s).split("\n")
        for line in whole:
            self.lines.add(line)
        return len(s)


#: The longest an in-process pod's helpers wait for anything (the tests' own timeouts
#: are shorter where it matters).
WAIT = 180


@dataclass
class InProcessPod(Viewed):
    """A `PodRunner` running in the test's event loop, and what it wrote."""

    runner: PodRunner
    out: Lines
    err: Lines
    finished: anyio.Event
    seen: PodView | None = None
    result: list[int] = field(default_factory=list)
    _written: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        # The runner writes its lines from the event loop's thread: safe to set an Event.
        self.out.listeners.append(self._on_line)
        self.err.listeners.append(self._on_line)

    def _on_line(self) -> None:
        self._written.set()
        self._written = anyio.Event()

    def container(self, name: str) -> lc.ContainerStatus:
        return next(c for c in self.state.containers if c.name == name)

    async def wait_for(self, found: Callable[[list[Line]], bool], what: str) -> None:
        """Wait (bounded) until *found* holds for the stdout lines so far."""
        with anyio.fail_after(WAIT):
            while not found(self.out.snapshot()):
                await self._written.wait()
        assert found(self.out.snapshot()), what

    async def wait_line(self, container: str, text: str) -> None:
        def said(lines: list[Line]) -> bool:
            return any(ln.container == container and ln.text == text for ln in lines)

        await self.wait_for(said, f"{container} to say {text!r}")

    async def until(self, check: Callable[[], bool], what: str) -> None:
        """Wait (bounded) for *check* on the pod's state or counters.

        Counters (orphans reaped, lines written) change without a new state,
        so this looks again every 20 ms: a bounded wait for a condition, not
        a sleep to let something happen.
        """
        with anyio.fail_after(WAIT):
            while not check():  # noqa: ASYNC110 (nothing to wait on: see above)
                await anyio.sleep(0.02)
        assert check(), what

    async def stop(self) -> int:
        """Stop the pod as SIGTERM would (an ordered stop) and return podvisor's exit status."""
        await self.finish()
        assert self.result, "the runner raised (the exception follows)"
        return self.result[0]

    async def finish(self) -> None:
        if not self.finished.is_set():
            self.runner.post(lc.StopRequested())
        with anyio.fail_after(WAIT):
            await self.finished.wait()


@asynccontextmanager
async def running_pod(
    text: str,
    *,
    metrics_address: str = "off",
) -> AsyncIterator[InProcessPod]:
    """Run the pod in *text* until the block ends, then stop it in order (bounded).

    The metrics endpoint is off unless asked for: pods side by side (and other
    tests on this machine) must not compete for the default port.
    """
    loaded = manifest.load("pod.yaml", pod_yaml(text))
    out, err = Lines(), Lines()
    ready = anyio.Event()

    def on_ready(view: PodView) -> None:
        pod.seen = view
        ready.set()

    options = RunOptions(
        stdout=Output(out),
        stderr=Output(err),
        on_ready=on_ready,
        metrics_address=metrics_address,
    )
    runner = PodRunner(loaded, options)
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
                await pod.finish()


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
