"""Running real pods through the real runner, and reading what their containers recorded.

`run_pod` loads a manifest (written here as a dict, dumped as JSON, which is
YAML), runs it with `PodRunner` in a task and yields a `PodRun`: the runner
(its `state` is the core's), the log lines as they come, and the pod's exit
status once it ends. Every wait is bounded.

The containers are small Python programs (`PRELUDE` + a few lines) that
append "NAME EVENT NANOSECONDS" lines to one file; `Timeline` reads it.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest import load
from podvisor.supervisor.pod.runner import PodRunner, RunOptions
from podvisor.supervisor.pod.view import PodView
from tests.sidecars.support import PY, WAIT

# --- The containers' programs ---------------------------------------------------------------

#: argv: NAME LOG. `record(event)` appends "NAME EVENT NS" to LOG; `mark(what)`
#: makes the file LOG.NAME.WHAT (for exec probes to test).
PRELUDE = """
import os, signal, socket, sys, time
NAME, LOG = sys.argv[1], sys.argv[2]
def record(event):
    with open(LOG, "a") as f:
        f.write(f"{NAME} {event} {time.time_ns()}\\n")
def mark(what):
    open(f"{LOG}.{NAME}.{what}", "w").close()
def on_term(signum, frame):
    record("stop")
    sys.exit(0)
"""

#: Records start and end, exits 0.
ONESHOT = PRELUDE + 'record("start")\nrecord("end")\n'

#: Records start, marks "up" and prints "up" (then its SIGTERM handler is in
#: place), runs until SIGTERM, which it records as "stop".
SERVICE = (
    PRELUDE
    + """
signal.signal(signal.SIGTERM, on_term)
record("start")
mark("up")
print("up", flush=True)
while True:
    time.sleep(1000)
"""
)


def program(code: str, name: str, log: Path, *args: str) -> list[str]:
    return [PY, "-c", code, name, str(log), *args]


def marked(log: Path, name: str, what: str = "up") -> Path:
    return Path(f"{log}.{name}.{what}")


def up_probe(log: Path, name: str, **fields: object) -> dict[str, object]:
    """A probe that passes once the container has marked itself up."""
    return {
        "exec": {"command": ["test", "-e", str(marked(log, name))]},
        "periodSeconds": 1,
    } | fields


# --- Manifests ---------------------------------------------------------------------------------


def container(name: str, command: Sequence[str], **fields: object) -> dict[str, object]:
    return {"name": name, "command": list(command), **fields}


def sidecar(name: str, command: Sequence[str], **fields: object) -> dict[str, object]:
    return container(name, command, restartPolicy="Always", **fields)


def manifest(
    name: str,
    containers: Sequence[dict[str, object]],
    *,
    init: Sequence[dict[str, object]] = (),
    restart: str = "Never",
    grace: int = 5,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod on a loopback network of its own (no bridge: nothing shared with the host)."""
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": grace,
        "containers": list(containers),
    }
    if init:
        spec["initContainers"] = list(init)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {"podvisor.io/network": "loopback", **(annotations or {})},
        },
        "spec": spec,
    }


# --- Watching a pod run ------------------------------------------------------------------------


class LogWatcher(io.StringIO):
    """The runner's stdout and stderr: keeps every line, wakes whoever waits for one."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._partial = ""
        self._changed: anyio.Event | None = None

    def write(self, s: str) -> int:
        *whole, self._partial = (self._partial + s).split("\n")
        if whole:
            self.lines += whole
            if self._changed is not None:
                self._changed.set()
        return super().write(s)

    async def line(self, text: str, container: str | None = None) -> str:
        """The first line that contains *text* (written by *container*), waited for."""
        with anyio.fail_after(WAIT):
            while True:
                found = next((line for line in self.lines if _matches(line, text, container)), None)
                if found is not None:
                    return found
                self._changed = anyio.Event()
                await self._changed.wait()


def _matches(line: str, text: str, container: str | None) -> bool:
    """Whether *line* ("NAME | TEXT", the runner's text format) is what is waited for."""
    name, _, said = line.partition(" | ")
    return text in said and (container is None or name.strip() == container)


class Viewed:
    """A test's handle on a running pod, seen through its view.

    `seen` is set by `RunOptions.on_ready`, once the pod's init serves.
    """

    seen: PodView | None

    @property
    def view(self) -> PodView:
        assert self.seen is not None, "the pod's view is not made yet"
        return self.seen

    @property
    def state(self) -> lc.PodState:
        assert self.view.state is not None, "the lifecycle core has not begun"
        return self.view.state


@dataclass
class PodRun(Viewed):
    runner: PodRunner
    log: LogWatcher
    done: anyio.Event = field(default_factory=anyio.Event)
    status: int | None = None
    seen: PodView | None = None

    def container(self, name: str) -> lc.ContainerStatus:
        return self.state.container(name)

    async def until(self, what: str, condition: Callable[[], bool]) -> None:
        """Wait (bounded) until *condition* holds of the pod's state; checked at each change."""
        try:
            with anyio.fail_after(WAIT):
                while self.view.state is None or not condition():
                    await self.view.changed()
        except TimeoutError:
            raise AssertionError(f"timed out waiting until {what}: {self.view.state}") from None

    async def up(self, container: str) -> None:
        """Wait until *container* (running SERVICE) has said "up": its handlers are in place."""
        await self.log.line("up", container)

    def stop(self) -> None:
        """What SIGTERM to podvisor does: an ordered stop."""
        self.runner.post(lc.StopRequested())

    async def finished(self) -> int:
        with anyio.fail_after(WAIT):
            await self.done.wait()
        assert self.status is not None
        return self.status


@asynccontextmanager
async def run_pod(pod: dict[str, Any]) -> AsyncIterator[PodRun]:
    """Run *pod* until the block ends; then stop it (if it still runs) and wait for its end."""
    ready = anyio.Event()
    log = LogWatcher()

    def on_ready(view: PodView) -> None:
        run.seen = view
        ready.set()

    options = RunOptions(stdout=log, stderr=log, metrics_address="off", on_ready=on_ready)
    run = PodRun(PodRunner(load("<test>", json.dumps(pod)), options), log)

    async def go() -> None:
        try:
            run.status = await run.runner.run()
        finally:
            run.done.set()
            ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        with anyio.fail_after(WAIT):
            await ready.wait()
        try:
            yield run
        finally:
            if not run.done.is_set():
                run.stop()
            with anyio.CancelScope(shield=True), anyio.fail_after(WAIT):
                await run.done.wait()


# --- What the containers recorded ---------------------------------------------------------------


class Timeline:
    """The "NAME EVENT NS" lines of a log file: when each event first happened, in order."""

    def __init__(self, log: Path) -> None:
        self.events: list[tuple[str, str, int]] = []
        for line in log.read_text().splitlines():
            name, event, ns = line.split()
            self.events.append((name, event, int(ns)))

    def at(self, name: str, event: str, nth: int = 0) -> int:
        times = [ns for n, e, ns in self.events if (n, e) == (name, event)]
        assert len(times) > nth, f"{name} {event} #{nth} never happened: {self.events}"
        return times[nth]

    def count(self, name: str, event: str) -> int:
        return sum(1 for n, e, _ in self.events if (n, e) == (name, event))

    def assert_order(self, *steps: tuple[str, str]) -> None:
        """Each step happened (first) no earlier than the one before it."""
        timed = [(step, self.at(*step)) for step in steps]
        for (before, t1), (after, t2) in itertools.pairwise(timed):
            assert t1 <= t2, f"{after} came before {before}: {self.events}"
