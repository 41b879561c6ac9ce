"""Whether a lock file's flock is held, which is whether its holder still runs.

podvisor marks what a running supervisor owns (a claim's folder, a root's
owner file, an image's lease, a network's owner record) with an flock(2) on a
file. The kernel drops the lock with the last descriptor of its holder, so a
killed supervisor leaves the file but not the lock: trying the lock without
waiting tells a live owner from a dead one, with no pid that could be reused.

Standard library only: the supervisor imports this before it starts a pod.
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["flock_held"]


def flock_held(path: str | os.PathLike[str], *, missing: bool, flags: int = os.O_RDONLY) -> bool:
    """Whether a live process holds an flock on *path*.

    *missing* is the answer when there is no such file, which each caller reads
    its own way; any other error opening it (*flags* added to the open) is
    raised. The probe's own lock is let go at once.
    """
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        return missing
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
