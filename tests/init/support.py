"""Running the init as a real process and talking to it, with bounded waits."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

#: ``podvisor-init``, run the way the console script does.
INIT: tuple[str, ...] = (sys.executable, "-m", "podvisor.init")
#: The ``podvisor`` console script of this environment.
PODVISOR = Path(sys.executable).with_name("podvisor")
#: The ``podvisor-init`` console script of this environment.
PODVISOR_INIT = Path(sys.executable).with_name("podvisor-init")

#: A child that reports every signal it receives as "ROLE SIGNUM" and ends at
#: end-of-file on stdin. With "fork" it first starts a grandchild (in the same
#: process group) that does the same as "grandchild". Each says "ready ROLE"
#: once its handlers are in place. It waits in select() on stdin and a
#: wake-up fd, never in a bare read(): a signal that lands just before a
#: blocking read would leave its Python handler pending until the next one.
REPORTER = r"""
import os, select, signal, sys
from podvisor.init.process import FORWARDED
role = "child"
if sys.argv[1:] == ["fork"] and os.fork() == 0:
    role = "grandchild"
def report(signum, frame):
    os.write(1, f"{role} {signum}\n".encode())
for signum in FORWARDED:
    signal.signal(signum, report)
wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.set_wakeup_fd(wake_write)
os.write(1, f"ready {role}\n".encode())
while True:
    ready = select.select([0, wake_read], [], [])[0]
    if wake_read in ready:
        os.read(wake_read, 4096)
    if 0 in ready and not os.read(0, 4096):
        break
if role == "child" and sys.argv[1:] == ["fork"]:
    os.wait()
"""


class Init:
    """A running init whose stdout is read line by line, each read bounded."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        prefix: Sequence[str] = INIT,
        env: Mapping[str, str] | None = None,
        stdin: int | None = subprocess.PIPE,
    ) -> None:
        self.proc = subprocess.Popen(
            [*prefix, *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.pid = self.proc.pid
        self._pending = b""

    def line(self, timeout: float = 20.0) -> str:
        """The next line the child printed, without its newline."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no line within {timeout}s (got {self._pending!r})")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"end of output before a line (got {self._pending!r})")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode()

    def expect(self, *lines: str) -> None:
        """The next lines are exactly *lines*, in any order."""
        got = sorted(self.line() for _ in lines)
        assert got == sorted(lines)

    def kill(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Close stdin, wait for the init; return (exit status, rest of stdout, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        rest = (self._pending + out).decode(errors="replace")
        self._pending = b""
        return self.proc.returncode, rest, err.decode(errors="replace")

    def stop(self) -> None:
        """Make sure nothing is left running: TERM (forwarded), then KILL."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.kill(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@contextlib.contextmanager
def running(
    args: Sequence[str],
    *,
    prefix: Sequence[str] = INIT,
    env: Mapping[str, str] | None = None,
    stdin: int | None = subprocess.PIPE,
) -> Iterator[Init]:
    """An `Init` that is stopped on the way out, whatever the test did."""
    init = Init(args, prefix=prefix, env=env, stdin=stdin)
    try:
        yield init
    finally:
        init.stop()


def run_init(
    args: Sequence[str],
    *,
    prefix: Sequence[str] = INIT,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run the init to the end with no input."""
    return subprocess.run(
        [*prefix, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def wait_pid(pid: int, timeout: float = 30.0) -> int:
    """Wait for a child of ours (possibly adopted) to end; return its raw wait status."""
    pidfd = os.pidfd_open(pid)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise AssertionError(f"process {pid} still running after {timeout}s")
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return status


def signal_mask_bits(status_text: str, field: str) -> set[int]:
    """The signals set in a /proc/PID/status mask field such as SigBlk."""
    for line in status_text.splitlines():
        if line.startswith(f"{field}:"):
            bits = int(line.split()[1], 16)
            return {n for n in range(1, 65) if bits >> (n - 1) & 1}
    raise AssertionError(f"no {field} in {status_text!r}")
