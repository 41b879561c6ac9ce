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


def real_driver(kind: str) -> CgroupDriver:
    """The driver for this machine; "v1" hides the cgroup2 mount, as on a legacy host."""
    mountinfo = Path("/proc/self/mountinfo").read_text()
    if kind == "v1":
        mountinfo = "".join(
            line for line in mountinfo.splitlines(keepends=True) if " - cgroup2 " not in line
        )
    driver = CgroupDriver.detect(mountinfo=mountinfo)
    if os.geteuid() != 0 or driver.read_only:
        pytest.skip("needs root and a writable cgroup file system")
    assert driver.layout == (Layout.V1 if kind == "v1" else Layout.HYBRID), driver.layout
    return driver


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
