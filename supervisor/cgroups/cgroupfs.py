"""The one seam between the cgroup driver and the cgroup file systems.

Every read, write, mkdir and rmdir of a cgroup file goes through here, so a
test can point the driver at a directory of sample files and stand in for the
kernel by patching `make_dir` and `write` (tests/cgroups/fakekernel.py).

cgroup files are written with one `write(2)` each: the kernel parses each
write as a whole, so a buffered writer that splits a value would corrupt it.
Files are opened without O_CREAT: a missing file means a missing controller,
and that must fail as ENOENT rather than create anything.
"""

from __future__ import annotations

import errno
import fcntl
import os

_CHUNK = 65536
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
#: errno values that mean "this cgroup is gone" (ENODEV: it went while a file was open).
GONE = frozenset({errno.ENOENT, errno.ENODEV})


def read(path: str) -> str | None:
    """The text of a cgroup file, or None when it (or its cgroup) does not exist.

    Plain os.open/os.read: a scrape reads some 15 files per container, and a
    text-mode `open()` costs several times more than the read itself.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
        try:
            data = os.read(fd, _CHUNK)
            if len(data) == _CHUNK:  # only cgroup.procs is ever this long
                data = _read_rest(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in GONE:
            return None
        raise
    return data.decode("ascii")


def _read_rest(fd: int, first: bytes) -> bytes:
    chunks = [first]
    while len(chunks[-1]) == _CHUNK:
        chunks.append(os.read(fd, _CHUNK))
    return b"".join(chunks)


def write(path: str, value: str) -> None:
    """Write `value` to a cgroup file in one write(2); OSError as the kernel says."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def exists(path: str) -> bool:
    """Whether a cgroup file or directory exists (cgroup.kill is new in Linux 5.14)."""
    return os.path.exists(path)


def lock(path: str, *, wait: bool) -> int | None:
    """flock a cgroup directory: the open descriptor, or None when another holds it.

    A live supervisor holds the lock on each of its pod cgroups, so another
    one's `remove_stale` leaves them alone; the kernel drops it when the
    holder dies, however it dies.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_dir(fd: int, path: str) -> bool:
    """Whether the open `fd` is still the directory at `path` (not removed and remade)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def make_dir(path: str) -> None:
    """mkdir: the kernel fills the new cgroup with its interface files."""
    os.mkdir(path)


def remove_dir(path: str) -> None:
    """rmdir: the only way a cgroup is removed (never a recursive file deletion)."""
    os.rmdir(path)


def subdirs(path: str) -> list[str]:
    """The names of the child cgroups of `path` (empty when it does not exist)."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except OSError as e:
        if e.errno in GONE:
            return []
        raise


def walk_up(path: str) -> list[str]:
    """`path` and every cgroup beneath it, deepest first: the order rmdir needs."""
    found = []
    for name in subdirs(path):
        found += walk_up(os.path.join(path, name))
    return [*found, path]
