"""What podvisor's network code leaves on disk, so another process can undo it.

Everything lives under /run/podvisor for root (a tmpfs: a reboot forgets it
together with the namespaces and links it describes), and for anyone else
under $XDG_RUNTIME_DIR/podvisor (else ~/.local/state/podvisor/run): a user
may not write root's files, and must not be kept from running a pod by them
(`run_dir`).

    network.lock                    one host-wide lock around every change below
    ipam/<subnet>/<ip>              one allocated pod address (see ipam.py)
    net/bridges/<bridge>.json       a bridge in use: its subnet, whether we made it
    net/ip_forward.before           net.ipv4.ip_forward as it was before our first bridge
    pods/<pod>-<id>/network.json    one pod's network: owner, netns, veth, address
    pods/<pod>-<id>/etc/            the pod's /etc/hosts, /etc/hostname, /etc/resolv.conf

Each record names its owner by pid *and* process start time, so a record
whose supervisor was SIGKILLed is recognised as stale even after the pid has
been reused, and by the PID namespace those are numbers in. A podvisor in
another PID namespace that shares this /run (a pod inside a pod, a container
started with `unshare --pid`) cannot judge that pid: there every owner also
holds a shared flock(2) on owners/<pidns>-<pid>-<start>.lock for as long as it
lives, which the kernel drops when it dies, however it dies. An owner is alive
for another namespace while its lock is held.

    owners/<pidns>-<pid>-<start>.lock   held (shared) by a live owner
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from podvisor.supervisor.flocks import flock_held
from podvisor.supervisor.frozen import frozen


def run_dir() -> Path:
    """Where this user's records go: root's /run/podvisor, or the user's own runtime folder."""
    if os.geteuid() == 0:
        return Path("/run/podvisor")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "podvisor"
    return Path(os.path.expanduser("~/.local/state/podvisor/run"))


RUN_DIR = run_dir()
IPAM_DIR = RUN_DIR / "ipam"
PODS_DIR = RUN_DIR / "pods"
BRIDGES_DIR = RUN_DIR / "net" / "bridges"
IP_FORWARD_BEFORE = RUN_DIR / "net" / "ip_forward.before"
NETWORK_LOCK = RUN_DIR / "network.lock"
OWNERS_DIR = RUN_DIR / "owners"


@frozen
class Owner:
    """The process that holds a record: a pid, when that process started, in which PID namespace."""

    pid: int
    start: int  # field 22 of /proc/PID/stat: tells a reused pid apart
    pidns: int | None = None  # the inode of /proc/self/ns/pid; None in records of old

    @classmethod
    def current(cls) -> Owner:
        """This process, its owner lock held from now until it exits."""
        pid = os.getpid()
        start = _start_time(pid)
        assert start is not None  # we are alive
        owner = cls(pid, start, _pid_namespace())
        _hold(owner)
        return owner

    def alive(self) -> bool:
        """Whether the owner still runs: by its pid in our PID namespace, else by its lock.

        An owner of another namespace whose lock file cannot be read counts
        as alive: what cannot be shown dead is not taken from it.
        """
        if self.pidns is not None and self.pidns != _pid_namespace():
            return _lock_held(self.lock_path)
        return _start_time(self.pid) == self.start

    @property
    def lock_path(self) -> Path:
        return OWNERS_DIR / f"{self.pidns}-{self.pid}-{self.start}.lock"

    def to_json(self) -> dict[str, int | None]:
        return {"pid": self.pid, "start": self.start, "pidns": self.pidns}

    @classmethod
    def from_json(cls, data: Any) -> Owner:
        pid, start = int(data["pid"]), int(data["start"])  # TypeError, KeyError: not a record
        pidns = data.get("pidns")
        return cls(pid, start, int(pidns) if pidns else None)


#: This process's owner lock: (its pid, the open lock file), held until exit.
_held: tuple[int, int] | None = None


def _hold(owner: Owner) -> None:
    """Take *owner*'s lock, once per process (a forked child takes its own)."""
    global _held
    if _held is not None and _held[0] == owner.pid:
        return
    try:
        OWNERS_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(owner.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return  # unwritable /run: nothing is recorded there either
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held = (owner.pid, fd)
    atexit.register(_release, owner.lock_path, fd)


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        os.close(fd)


def _lock_held(path: Path) -> bool:
    """Whether a live process holds the lock at *path*; a dead owner's file is removed."""
    try:
        held = flock_held(path, missing=False, flags=os.O_RDWR)
    except OSError:
        return True  # what cannot be shown dead is not taken from it
    if not held:
        path.unlink(missing_ok=True)
    return held


def remove_dead_owner_locks() -> int:
    """Remove the lock files of owners that died without removing theirs; how many."""
    if not OWNERS_DIR.is_dir():
        return 0
    return sum(not _lock_held(path) for path in OWNERS_DIR.glob("*.lock"))


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
def locked(path: Path | None = None) -> Iterator[None]:
    """Hold an exclusive flock(2) on *path* (`NETWORK_LOCK`, made if missing) for the block.

    flock locks belong to the open file description, so two threads of one
    process exclude each other as well as two processes do.
    """
    path = path or NETWORK_LOCK
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


def remove_tree(path: Path) -> None:
    """Remove the directory *path* and all in it, as far as it goes; symlinks are not followed.

    Not shutil.rmtree: shutil imports bz2 and lzma, 0.75 MB that the
    supervisor would hold for the pod's whole life to remove a few files.
    """
    try:
        entries = list(os.scandir(path))
    except OSError:  # ENOENT, ENOTDIR, EACCES: nothing (more) to do here
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            remove_tree(Path(entry.path))
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    with contextlib.suppress(OSError):
        path.rmdir()


def remove_empty_dir(path: Path) -> None:
    """Remove *path* if it is empty; a directory others still use is left alone."""
    with contextlib.suppress(OSError):  # ENOENT, ENOTEMPTY
        path.rmdir()
