"""What podvisor's network code leaves on disk, so another process can undo it.

Everything lives under /run/podvisor (a tmpfs: a reboot forgets it together
with the namespaces and links it describes):

    network.lock                    one host-wide lock around every change below
    ipam/<subnet>/<ip>              one allocated pod address (see ipam.py)
    net/bridges/<bridge>.json       a bridge in use: its subnet, whether we made it
    net/ip_forward.before           net.ipv4.ip_forward as it was before our first bridge
    pods/<pod>-<id>/network.json    one pod's network: owner, netns, veth, address
    pods/<pod>-<id>/etc/            the pod's /etc/hosts, /etc/hostname, /etc/resolv.conf

Each record names its owner by pid *and* process start time, so a record
whose supervisor was SIGKILLed is recognised as stale even after the pid has
been reused, and by the PID namespace those are numbers in: a podvisor
running in another PID namespace that shares this /run (a container started
with `unshare --pid`, say) cannot see the owner's pid, and so never judges
its records stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_DIR = Path("/run/podvisor")
IPAM_DIR = RUN_DIR / "ipam"
PODS_DIR = RUN_DIR / "pods"
BRIDGES_DIR = RUN_DIR / "net" / "bridges"
IP_FORWARD_BEFORE = RUN_DIR / "net" / "ip_forward.before"
NETWORK_LOCK = RUN_DIR / "network.lock"


@dataclass(frozen=True)
class Owner:
    """The process that holds a record: a pid, when that process started, in which PID namespace."""

    pid: int
    start: int  # field 22 of /proc/PID/stat: tells a reused pid apart
    pidns: int | None = None  # the inode of /proc/self/ns/pid; None in records of old

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        start = _start_time(pid)
        assert start is not None  # we are alive
        return cls(pid, start, _pid_namespace())

    def alive(self) -> bool:
        """Whether the owner still runs, as far as this process can tell.

        An owner in another PID namespace counts as alive: its pid means
        nothing here, and what cannot be shown dead is not taken from it.
        """
        if self.pidns is not None and self.pidns != _pid_namespace():
            return True
        return _start_time(self.pid) == self.start

    def to_json(self) -> dict[str, int | None]:
        return {"pid": self.pid, "start": self.start, "pidns": self.pidns}

    @classmethod
    def from_json(cls, data: Any) -> Owner:
        pid, start = int(data["pid"]), int(data["start"])  # TypeError, KeyError: not a record
        pidns = data.get("pidns")
        return cls(pid, start, int(pidns) if pidns else None)


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has stopped owning anything
        return None
    return int(fields[19])


@contextlib.contextmanager
def locked(path: Path = NETWORK_LOCK) -> Iterator[None]:
    """Hold an exclusive flock(2) on *path* (made if missing) for the block.

    flock locks belong to the open file description, so two threads of one
    process exclude each other as well as two processes do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_json(path: Path, data: object) -> None:
    """Write *data* to *path* atomically: a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """The JSON in *path*, or None when the file is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def remove_file(path: Path) -> bool:
    """Remove *path*; whether it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_empty_dir(path: Path) -> None:
    """Remove *path* if it is empty; a directory others still use is left alone."""
    with contextlib.suppress(OSError):  # ENOENT, ENOTEMPTY
        path.rmdir()
