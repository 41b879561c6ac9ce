"""Named network namespaces, and doing things inside one.

How this works: the network namespace belongs to a *thread*, not to the
process (unshare(2) and setns(2) with CLONE_NEWNET change the calling thread
only), and a socket keeps the namespace it was made in for its whole life,
whichever thread uses it later. So everything that must happen inside a
pod's namespace -- making it, configuring it over netlink, opening a socket
into it -- runs in a short-lived thread that joins the namespace, does its
work and ends. Such a thread never has to find its way back to the host's
namespace, so no pooled worker thread can be left in a pod's namespace by a
failed setns back (where it would silently make every later socket of
unrelated code inside the pod).

A namespace is named as `ip netns add` names it: the thread's
/proc/self/task/TID/ns/net is bind-mounted on /run/netns/NAME, and
/run/netns is a shared mount, so `ip netns` lists it and the kernel keeps it
alive with no process in it until it is unmounted.

Blocking: every function here blocks (thread joins, mounts). Call them from
a worker thread (`anyio.to_thread.run_sync`), never on the event loop.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# `podvisor.init.syscalls` (ctypes) is imported where a mount or setns
# is made: a supervisor that only removes its pod's namespace at the pod's end
# does not keep it while the pod runs.

NETNS_DIR = Path("/run/netns")

#: From <sys/mount.h>; not (yet) in the syscall seam's constants.
MS_SHARED = 1 << 20


def ensure_netns_dir(directory: Path = NETNS_DIR) -> None:
    """Make *directory* a shared mount point, as iproute2 does before its first `netns add`.

    Shared, so that unmounting a namespace here also unmounts the copies that
    mount namespaces made in between (such as a pod's) hold: otherwise those
    copies would keep the namespace alive. Done once per boot: the bind
    mount stays, as iproute2's does.
    """
    from podvisor.init import syscalls

    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        syscalls.mount("none", str(directory), None, MS_SHARED | syscalls.MS_REC)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        syscalls.mount(str(directory), str(directory), None, syscalls.MS_BIND | syscalls.MS_REC)
        syscalls.mount("none", str(directory), None, MS_SHARED | syscalls.MS_REC)


def create_netns(name: str, directory: Path = NETNS_DIR) -> str:
    """Make a new, empty network namespace named *name*; its path.

    FileExistsError when the name is taken. On any failure nothing is left.
    """
    ensure_netns_dir(directory)
    path = directory / name
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    try:
        in_new_thread(lambda: _unshare_and_pin(str(path)))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return str(path)


def _unshare_and_pin(path: str) -> None:
    from podvisor.init import syscalls

    syscalls.unshare(syscalls.CLONE_NEWNET)
    own = f"/proc/self/task/{threading.get_native_id()}/ns/net"
    syscalls.mount(own, path, None, syscalls.MS_BIND)


def remove_netns(path: str) -> bool:
    """Unmount and remove the namespace at *path*; whether it was there.

    The namespace itself goes when its last user (a process in it, an open
    descriptor, a socket) goes.
    """
    from podvisor.init import syscalls

    try:
        syscalls.umount(path, syscalls.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted: a half-made one
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def run_in_netns(path: str | None, work: Callable[[], T]) -> T:
    """Run *work* in the network namespace at *path* (the caller's own when None).

    It runs in a new thread that joins the namespace and ends afterwards.
    """
    if path is None:
        return work()

    def enter_and_work() -> T:
        from podvisor.init import syscalls

        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(fd, syscalls.CLONE_NEWNET)
        finally:
            os.close(fd)
        return work()

    return in_new_thread(enter_and_work)


def socket_in_netns(
    path: str | None, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A new socket that lives in the network namespace at *path*."""
    return run_in_netns(path, lambda: socket.socket(family, kind | socket.SOCK_CLOEXEC))


def open_netns(path: str) -> int:
    """An O_RDONLY descriptor of the namespace at *path* (for netlink's IFLA_NET_NS_FD)."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def in_new_thread(work: Callable[[], T]) -> T:
    """Run *work* in a thread of its own and return (or raise) what it did.

    Also what lets synchronous callers use pyroute2 from a thread that runs an
    asyncio loop: pyroute2's synchronous API runs a loop of its own, which
    asyncio refuses in a thread whose loop is running.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as e:  # handed over to the caller's thread below
            failure.append(e)

    thread = threading.Thread(target=run, name="podvisor-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
