"""One cgroup in every hierarchy, with all beneath it: its processes, freeze, kill, rmdir.

How killing works. Where the v2 hierarchy offers ``cgroup.kill`` (Linux 5.14,
also in the hybrid layout's unified hierarchy) one write kills every process
in the sub-tree, and the kernel also kills whatever they fork meanwhile.
Elsewhere a process could fork between our reading ``cgroup.procs`` and our
SIGKILL, so the fallback freezes the cgroup first (v2 ``cgroup.freeze``, or the
v1 freezer), SIGKILLs every pid it lists, thaws so the frozen ones can die,
and looks again until nothing is left. Without any freezer it still loops.

Waiting for processes to leave is a poll of ``cgroup.events`` (or
``cgroup.procs``) every 10 ms. The kernel does announce changes to
``cgroup.events``, but as POLLPRI on the open file, which anyio cannot wait
for (kernfs files always look readable, so `wait_readable` would spin) and
which inotify could only deliver through a raw descriptor per cgroup. A
SIGKILLed process leaves within a scheduler tick or two, so the poll costs
nothing and stays backend-neutral. The steps are one generator, driven by
`anyio.sleep` in `kill` and by `time.sleep` in the synchronous `remove`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Generator
from contextlib import closing

import anyio

from podvisor.supervisor.cgroups import cgroupfs
from podvisor.supervisor.errors import CgroupError
from podvisor.supervisor.frozen import frozen

#: Use cgroup.kill where the file exists; tests patch this off to exercise the
#: freeze / SIGKILL / thaw fallback on a kernel that has cgroup.kill.
HAVE_CGROUP_KILL = True

POLL_SECONDS = 0.01
#: How long the fallback waits for a freeze before it signals anyway (a task in
#: uninterruptible sleep may not freeze, but SIGKILL still reaches it later).
FREEZE_WAIT_POLLS = 100


@frozen
class Place:
    """One hierarchy as the driver uses it."""

    version: int  # 1 or 2
    #: v1: the controllers bound to the hierarchy; v2: those enabled for our pods.
    controllers: frozenset[str]
    base: str  # our own cgroup's directory in it
    name: str  # for messages: "memory", "cpu,cpuacct", "unified"


class CgroupTree:
    """The cgroup at one relative path in every hierarchy, and everything beneath it."""

    def __init__(self, label: str, dirs: list[tuple[Place, str]]) -> None:
        self._label = label  # "container main of pod web", for messages
        self._dirs = dirs
        self._v2 = next((d for p, d in dirs if p.version == 2), None)
        self._v2_controllers = next((p.controllers for p, _ in dirs if p.version == 2), frozenset())
        self._v1 = {c: d for p, d in dirs if p.version == 1 for c in p.controllers}

    @property
    def dirs(self) -> list[str]:
        """Its directory in each hierarchy."""
        return [d for _, d in self._dirs]

    # --- Processes ----------------------------------------------------------------

    def _procs_dir(self) -> str | None:
        """The hierarchy to count processes in: v2 when present, else any v1 one."""
        return self._v2 or next(iter(self._v1.values()), None)

    def pids(self) -> list[int]:
        """Every process in it and beneath it, as our PID namespace numbers them."""
        top = self._procs_dir()
        if top is None:
            return []
        found: list[int] = []
        for directory in cgroupfs.walk_up(top):
            text = cgroupfs.read(os.path.join(directory, "cgroup.procs"))
            found += [int(pid) for pid in (text or "").split()]
        return found

    def populated(self) -> bool:
        """Whether any process is in it or beneath it."""
        if self._v2 is not None:
            events = cgroupfs.read(os.path.join(self._v2, "cgroup.events"))
            return events is not None and "populated 1" in events
        return bool(self.pids())

    # --- Freezing -----------------------------------------------------------------

    def _freezer(self) -> tuple[str, str, str] | None:
        """(file, frozen value, thawed value) of the freezer to use, if any."""
        if self._v2 and cgroupfs.exists(os.path.join(self._v2, "cgroup.freeze")):
            return os.path.join(self._v2, "cgroup.freeze"), "1", "0"
        if "freezer" in self._v1:
            return os.path.join(self._v1["freezer"], "freezer.state"), "FROZEN", "THAWED"
        return None

    def freeze(self) -> None:
        """Ask the kernel to freeze every process in it; `frozen()` says when it has."""
        freezer = self._freezer()
        if freezer is None:
            raise CgroupError(
                f"{self._label} cannot be frozen: this host has neither cgroup v2's "
                f"cgroup.freeze nor the v1 freezer controller (mount the freezer hierarchy)"
            )
        self._write(freezer[0], freezer[1])

    def thaw(self) -> None:
        """Let its processes run again."""
        freezer = self._freezer()
        if freezer is not None:
            self._write(freezer[0], freezer[2])

    def frozen(self) -> bool:
        """Whether every process in it is frozen now (not merely asked to be)."""
        if self._v2 and cgroupfs.exists(os.path.join(self._v2, "cgroup.freeze")):
            events = cgroupfs.read(os.path.join(self._v2, "cgroup.events")) or ""
            return "frozen 1" in events
        if "freezer" in self._v1:
            state = cgroupfs.read(os.path.join(self._v1["freezer"], "freezer.state"))
            return (state or "").strip() == "FROZEN"  # FREEZING while some still run
        return False

    async def wait_frozen(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Wait until `frozen()`; CgroupError after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            while not self.frozen():  # noqa: ASYNC110 (a poll: see the header)
                await anyio.sleep(POLL_SECONDS)
            return
        raise CgroupError(f"{self._label} did not freeze within {timeout} s")

    # --- Killing ------------------------------------------------------------------

    # The runner passes its grace bound; a CgroupError names the survivors.
    async def kill(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        """SIGKILL every process in it and wait until none is left (at most `timeout` s)."""
        with anyio.move_on_after(timeout), closing(self._kill_steps()) as steps:
            for _ in steps:
                await anyio.sleep(POLL_SECONDS)
            return
        raise self._survivors(timeout)

    def kill_blocking(self, timeout: float = 10) -> None:
        """`kill` for synchronous code: blocks, briefly when the runner killed first."""
        deadline = time.monotonic() + timeout
        with closing(self._kill_steps()) as steps:
            for _ in steps:
                if time.monotonic() > deadline:
                    raise self._survivors(timeout)
                time.sleep(POLL_SECONDS)

    def _kill_steps(self) -> Generator[None, None, None]:
        """Kill everything in the tree; each yield means "wait a moment, then go on"."""
        kill_file = os.path.join(self._v2, "cgroup.kill") if self._v2 else None
        if HAVE_CGROUP_KILL and kill_file and cgroupfs.exists(kill_file):
            self._write(kill_file, "1")
            while self.populated():
                yield
            return
        while self.populated():
            yield from self._freeze_and_kill()
            yield

    def _freeze_and_kill(self) -> Generator[None, None, None]:
        freezer = self._freezer()
        if freezer is not None:
            self._write(freezer[0], freezer[1])
        try:
            for _ in range(FREEZE_WAIT_POLLS):
                if freezer is None or self.frozen():
                    break
                yield
            for pid in self.pids():
                _sigkill(pid)
        finally:
            # Thaw even when cancelled: v1 frozen tasks die only once thawed.
            if freezer is not None:
                self._write(freezer[0], freezer[2])

    def _survivors(self, timeout: float) -> CgroupError:
        return CgroupError(
            f"processes {self.pids()} of {self._label} were still there {timeout} s after "
            f"SIGKILL (stuck in the kernel, in uninterruptible sleep?); see /proc/PID/stack"
        )

    # --- Removing -----------------------------------------------------------------

    def remove_dirs(self) -> None:
        """rmdir it and its children in every hierarchy; it must be empty of processes."""
        for _, top in self._dirs:
            for directory in cgroupfs.walk_up(top):
                try:
                    cgroupfs.remove_dir(directory)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise CgroupError(
                        f"cannot remove cgroup {directory} of {self._label}: {e.strerror}"
                    ) from e

    def _write(self, path: str, value: str) -> None:
        try:
            cgroupfs.write(path, value)
        except OSError as e:
            raise CgroupError(f"cannot write {value!r} to {path}: {e.strerror}") from e


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError as e:  # a process of another user namespace, say
        raise CgroupError(f"cannot SIGKILL process {pid}: {e.strerror}") from e
