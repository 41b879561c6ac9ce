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
import resource

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


def _descriptor_budget() -> int:
    """How many descriptors `KeptFiles` may hold, all cgroups together.

    A quarter of the soft RLIMIT_NOFILE (256 of the common 1024), so the
    supervisor's pipes, sockets and its own reads never run short because of it.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (soft if soft != resource.RLIM_INFINITY else 1 << 20) // 4


class KeptFiles:
    """Cgroup files kept open between reads, so that a read is one pread(2), not three calls.

    A scrape reads some 15 files per container, and opening and closing one
    costs several times its read. The kernel writes a cgroup file's text
    afresh for each read at offset 0 (seq_file), so a kept descriptor reads
    what a new one would -- except cgroup.procs, whose v1 pid list belongs to
    the open file: read that with `read`. A file of a removed cgroup fails
    with ENODEV; it is then closed and let go (a cgroup made again at that
    path is opened anew). Past the budget (`_descriptor_budget`, shared by
    all), files are opened for each read, as `read` does.
    """

    kept = 0  # descriptors held by every KeptFiles together
    budget: int | None = None  # computed once, at the first open

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def read(self, path: str) -> str | None:
        """The text of a cgroup file, as `read` returns it."""
        fd = self._fds.get(path)
        if fd is None:
            fd = self._open(path)
            if fd is None:
                return read(path)
        try:
            data = os.pread(fd, _CHUNK, 0)
        except OSError as e:
            self._let_go(path)
            if e.errno in GONE:
                return None
            raise
        if len(data) == _CHUNK:  # long: not worth keeping (only cgroup.procs is ever this long)
            self._let_go(path)
            return read(path)
        return data.decode("ascii")

    def close(self) -> None:
        """Close every kept file (the cgroup is being removed, or was)."""
        for path in list(self._fds):
            self._let_go(path)

    def _open(self, path: str) -> int | None:
        if KeptFiles.budget is None:
            KeptFiles.budget = _descriptor_budget()
        if KeptFiles.kept >= KeptFiles.budget:
            return None
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError:
            return None  # `read` says what is wrong: missing, gone, refused
        self._fds[path] = fd
        KeptFiles.kept += 1
        return fd

    def _let_go(self, path: str) -> None:
        os.close(self._fds.pop(path))
        KeptFiles.kept -= 1


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


def parse_flat(text: str | None) -> dict[str, int]:
    """A flat keyed file ("key value" lines: memory.stat, cpu.stat, memory.events)."""
    found = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            found[key] = int(value)
    return found
