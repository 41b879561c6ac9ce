"""How many orphans each container's own init has reaped: read, not told.

By default a container's init is PID 1 of the container's PID namespace, so
the orphans its program leaves are that init's to reap, and the pod's init
never sees them. Each instance's init is handed a memfd of the supervisor's
(`protocol.Process.orphans_fd`) and keeps its running total there
(`init.tini.OrphanCount`: 8 bytes, little-endian, at offset 0); a scrape
reads every file. When a container starts again, its last instance's file
is read once more and its count carried over, so a container's count covers
all its restarts, as a counter must.
"""

from __future__ import annotations

import os

COUNT_BYTES = 8


class OrphanCounts:
    """One file per container (its current instance's), and what earlier ones counted."""

    def __init__(self) -> None:
        self._files: dict[str, int] = {}
        self._carried: dict[str, int] = {}

    def new_file(self, container: str) -> int:
        """A fresh file for *container*'s next instance: its descriptor, which stays ours."""
        self._retire(container)
        fd = os.memfd_create(f"podvisor-orphans-{container}", os.MFD_CLOEXEC)
        self._files[container] = fd
        return fd

    def counts(self) -> dict[str, int]:
        """Each container's orphans reaped, over all its instances."""
        found = dict(self._carried)
        for name, fd in self._files.items():
            found[name] = found.get(name, 0) + _read(fd)
        return found

    def close(self) -> None:
        for name in list(self._files):
            self._retire(name)

    def _retire(self, container: str) -> None:
        fd = self._files.pop(container, None)
        if fd is not None:
            self._carried[container] = self._carried.get(container, 0) + _read(fd)
            os.close(fd)


def _read(fd: int) -> int:
    try:
        data = os.pread(fd, COUNT_BYTES, 0)
    except OSError:
        return 0
    return int.from_bytes(data, "little") if len(data) == COUNT_BYTES else 0
