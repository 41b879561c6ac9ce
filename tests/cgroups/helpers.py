"""Helpers for the cgroup tests: processes in cgroups, bounded waits, reaping."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from podvisor.supervisor.cgroups import CgroupDriver, ContainerCgroup, Layout
from podvisor.supervisor.cgroups.layout import parse_mountinfo


def real_driver(*, hide_cgroup2: bool = False) -> CgroupDriver:
    """The driver for this machine's layout, whichever it is (hybrid, v2 only, v1 only).

    `hide_cgroup2` hides the cgroup2 mount from the driver, which makes a hybrid
    host a legacy v1 one for it (the v1 freezer, populated from cgroup.procs);
    the test is skipped where no v1 controller is mounted.
    """
    mountinfo = Path("/proc/self/mountinfo").read_text()
    if hide_cgroup2:
        if not v1_controllers():
            pytest.skip("no cgroup v1 hierarchy on this kernel (cgroup v2 only)")
        mountinfo = "".join(
            line for line in mountinfo.splitlines(keepends=True) if " - cgroup2 " not in line
        )
    driver = CgroupDriver.detect(mountinfo=mountinfo)
    if os.geteuid() != 0 or driver.read_only:
        pytest.skip("needs root and a writable cgroup file system")
    return driver


def v1_controllers() -> set[str]:
    """The controllers of the v1 hierarchies mounted here (named ones left out)."""
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    found = {o for m in mounts if m.fstype == "cgroup" for o in m.super_options}
    return {o for o in found if o in KNOWN_V1_CONTROLLERS}


def has_cgroup2() -> bool:
    return any(
        m.fstype == "cgroup2" for m in parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    )


def expected_layout() -> Layout:
    """What the mounts show, read without the driver: the layout it must find."""
    v1, v2 = bool(v1_controllers()), has_cgroup2()
    if v1 and v2:
        return Layout.HYBRID
    return Layout.V1 if v1 else Layout.V2 if v2 else Layout.NONE


KNOWN_V1_CONTROLLERS = frozenset(
    [
        "cpuset",
        "cpu",
        "cpuacct",
        "blkio",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    ]
)


def hierarchy_names(dirs: list[str]) -> dict[str, str]:
    """Each cgroup directory's hierarchy, named as the driver names it: "unified" for
    cgroup2, else its v1 controllers ("cpu,cpuacct" where they are mounted together)."""
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    names = {}
    for directory in dirs:
        mount = max(
            (m for m in mounts if (directory + "/").startswith(m.mountpoint.rstrip("/") + "/")),
            key=lambda m: len(m.mountpoint),
        )
        controllers = sorted(mount.super_options & KNOWN_V1_CONTROLLERS)
        names[directory] = "unified" if mount.fstype == "cgroup2" else ",".join(controllers)
    return names


def controller_dirs(dirs: list[str]) -> dict[str, Path]:
    """Where each controller's files are, among a cgroup's `dirs`: its v1 hierarchy's
    directory, else the cgroup2 one; "unified" is the cgroup2 directory itself."""
    found: dict[str, Path] = {}
    for directory, name in hierarchy_names(dirs).items():
        if name == "unified":
            found["unified"] = Path(directory)
            controllers = (Path(directory) / "cgroup.controllers").read_text().split()
            for controller in controllers:
                found.setdefault(controller, Path(directory))
        else:
            found.update(dict.fromkeys(name.split(","), Path(directory)))
    return found


class Processes:
    """Processes a test starts inside cgroups; any still running at the end are killed."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, cgroup: ContainerCgroup, code: str, *args: str) -> subprocess.Popen[str]:
        """`python -c code args` with the cgroup joined before exec, pipes on stdin/stdout."""
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            preexec_fn=cgroup.join,  # noqa: PLW1509 (no threads: join, then exec)
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def end(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def read_line(proc: subprocess.Popen[str], timeout: float = 10) -> str:
    """The next line the child prints; fails the test if none comes in `timeout` s."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from process {proc.pid} within {timeout} s"
    return proc.stdout.readline().strip()


def wait_until(predicate: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    """Poll `predicate` (a kernel state with no notification we can wait on), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.01)


def reap(pid: int, timeout: float = 10) -> int:
    """Wait for a process that became our child (we are a subreaper); its wait status."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        assert time.monotonic() < deadline, f"process {pid} did not end in {timeout} s"
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
