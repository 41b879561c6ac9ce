"""``podvisor exec -o json``: the command's output kept, for one JSON object at its end.

The command writes to two pipes of this client's (instead of the caller's own
stdout and stderr); their read ends are copied into memory from the same
loop that waits for the command's exit, so a command that writes more than a
pipe holds never blocks on a reader that is not reading.
"""

from __future__ import annotations

import os
import select
import selectors
import time
from functools import partial

from podvisor.supervisor.control.wire import ExecExited

#: After the command's exit, how long a process it left behind may hold its pipes.
DRAIN_SECONDS = 1.0


class Captured:
    """The read ends of the command's stdout and stderr, and what came through them."""

    def __init__(self) -> None:
        self.fds: dict[int, bytearray] = {}
        self.write_ends: list[int] = []
        for _ in ("stdout", "stderr"):
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(read_end, False)
            self.fds[read_end] = bytearray()
            self.write_ends.append(write_end)

    def sent(self) -> None:
        """The write ends went to the pod: only the command holds them now."""
        for fd in self.write_ends:
            os.close(fd)
        self.write_ends.clear()

    def close(self) -> None:
        self.sent()
        for fd in self.fds:
            os.close(fd)

    def watch(self, selector: selectors.BaseSelector) -> None:
        for fd in self.fds:
            selector.register(fd, selectors.EVENT_READ, partial(self._ready, fd))

    def _ready(self, fd: int, selector: selectors.BaseSelector, events: int) -> None:
        if not self._read(fd):
            selector.unregister(fd)

    def _read(self, fd: int) -> bool:
        """Copy what *fd* has; False at its end."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        self.fds[fd] += data
        return bool(data)

    def drain(self) -> None:
        """Read on to each pipe's end, or until nothing more comes for a while."""
        open_fds = set(self.fds)
        deadline = time.monotonic() + DRAIN_SECONDS
        while open_fds and (left := deadline - time.monotonic()) > 0:
            for fd in select.select(list(open_fds), [], [], left)[0]:
                if not self._read(fd):
                    open_fds.discard(fd)

    def result(self, argv: list[str], exited: ExecExited) -> dict[str, object]:
        stdout, stderr = (bytes(data).decode(errors="replace") for data in self.fds.values())
        return {
            "command": argv,
            "exit_code": exited.code,
            "signal": exited.signal,
            "stdout": stdout,
            "stderr": stderr,
        }
