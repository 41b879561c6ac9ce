"""Readiness the daemons already speak: systemd's NOTIFY_SOCKET and s6's notification-fd.

How this works
--------------
NOTIFY_SOCKET (sd_notify(3)): the pod has one datagram socket,
/run/podvisor/pods/<pod>-<id>/notify.sock, named to every container in its
NOTIFY_SOCKET variable. A daemon sends newline-separated assignments
(``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``) to it. The
socket has SO_PASSCRED, so the kernel attaches the sender's pid to every
datagram, as this PID namespace numbers it; the caller attributes the
message to the container whose cgroup holds that pid, never to what the
message says, so one container cannot speak for another (a sender needs
CAP_SYS_ADMIN to forge its pid, as with systemd). A datagram whose sender
has already exited cannot be attributed and is dropped, as systemd drops it
for a unit without NotifyAccess=all: send from the daemon itself, or keep
the sender alive until podvisor has read the message.

The socket itself is writable by any uid, so that a container with a
runAsUser can send, but its directory is the supervisor's user's alone: a
user on the host cannot reach it. A container reaches it all the same,
because its init binds the socket into the container's own mount namespace
(through the read-only cover over podvisor's state, or into its image's
root) before it drops root. The credentials, not the file mode, then decide
which container a message is from.

notification-fd (s6): the container's program gets the write end of a pipe
as fd N and writes a newline to it once it is ready. `read_notification`
waits for that newline on the read end.
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import Container, Pod
from podvisor.supervisor.network.model import NetworkRequest
from podvisor.supervisor.network.records import PODS_DIR

SOCKET_NAME = "notify.sock"
MAX_DATAGRAM = 4096  # systemd's limit for one notification (PIPE_BUF)
MAX_FDS = 253  # SCM_MAX_FD: a sender may attach fds (FDSTORE=1); they are closed unread
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_SUN_PATH_MAX = 107  # sizeof(sun_path) - 1 for the terminating NUL


# --- The messages --------------------------------------------------------------------


@frozen
class Notice:
    """The assignments of one datagram that podvisor acts on; the rest are ignored."""

    ready: bool = False
    watchdog: bool = False
    stopping: bool = False
    status: str | None = None

    @property
    def empty(self) -> bool:
        return self == Notice()

    def event(self, container: str) -> lc.Notified:
        return lc.Notified(container, self.ready, self.watchdog, self.stopping, self.status)


def parse(datagram: bytes) -> Notice:
    """sd_notify's format: ``KEY=VALUE`` lines; a later assignment of a key wins."""
    ready = watchdog = stopping = False
    status: str | None = None
    for line in datagram.decode("utf-8", errors="replace").split("\n"):
        key, eq, value = line.partition("=")
        if not eq:
            continue
        if key == "READY":
            ready = value == "1"
        elif key == "WATCHDOG":
            watchdog = value == "1"
        elif key == "STOPPING":
            stopping = value == "1"
        elif key == "STATUS":
            status = value
    return Notice(ready, watchdog, stopping, status)


def container_env(pod: Pod, container: Container) -> dict[str, str]:
    """The variables every process of *container* gets: NOTIFY_SOCKET, WATCHDOG_USEC."""
    env = {"NOTIFY_SOCKET": str(socket_path(pod))}
    if container.settings.watchdog_usec:
        # No WATCHDOG_PID: the main process's pid differs in its own PID
        # namespace, and sd_watchdog_enabled() accepts any pid without it.
        env["WATCHDOG_USEC"] = str(container.settings.watchdog_usec)
    return env


def socket_path(pod: Pod) -> Path:
    """Where the pod's NOTIFY_SOCKET lives: its directory under /run/podvisor/pods.

    A unix socket's path holds at most 107 bytes; a pod with a very long name
    gets a directory named by a hash instead.
    """
    instance = NetworkRequest(pod.name, pod.uid, pod.name).instance
    path = PODS_DIR / instance / SOCKET_NAME
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    import hashlib  # here: its OpenSSL set-up would stay in the supervisor for good

    digest = hashlib.sha256(instance.encode()).hexdigest()[:16]
    return PODS_DIR / f"pv-{digest}" / SOCKET_NAME


# --- The socket -------------------------------------------------------------------------


class NotifySocket:
    """The pod's NOTIFY_SOCKET: bound by `bind`, read by `receive`, removed by `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None

    def bind(self) -> None:
        """Make the socket (and its directory when missing); a stale socket file is replaced."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        # Whoever made the pod's directory first, containers reach the socket
        # through a bind (see the module's header), and nobody else reaches it.
        os.chmod(directory, 0o700)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.setblocking(False)
            self.path.unlink(missing_ok=True)  # left by a supervisor that was SIGKILLed
            sock.bind(str(self.path))
            os.chmod(self.path, 0o666)  # noqa: S103 -- any container's uid may send
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    async def receive(self) -> AsyncIterator[tuple[int, bytes]]:
        """Every datagram as (the sender's pid, its bytes), until cancelled."""
        sock = self._sock
        assert sock is not None, "bind() first"
        while True:
            try:
                received = _receive_one(sock)
            except BlockingIOError:
                await anyio.wait_readable(sock)
                continue
            if received is not None:
                yield received

    def close(self) -> None:
        """Close and remove the socket, and its directory when nothing else is in it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):  # ENOTEMPTY: the network's records are still there
            self.path.parent.rmdir()


def _receive_one(sock: socket.socket) -> tuple[int, bytes] | None:
    """One datagram: (pid, bytes); None for one that is truncated or has no credentials."""
    fds = array.array("i")
    space = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(MAX_FDS * fds.itemsize)
    data, ancillary, flags, _ = sock.recvmsg(MAX_DATAGRAM, space, socket.MSG_CMSG_CLOEXEC)
    pid = 0
    for level, kind, payload in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
            pid = _UCRED.unpack(payload[: _UCRED.size])[0]
        elif kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    for fd in fds:
        os.close(fd)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or pid <= 0:
        return None  # pid 0: the sender is outside our PID namespace
    return pid, data


# --- s6's notification-fd ------------------------------------------------------------------


async def read_notification(fd: int) -> bool:
    """Wait for a newline on *fd* (a pipe's read end, closed here); False at end-of-file."""
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            if not chunk:
                return False
            if b"\n" in chunk:
                return True
    finally:
        os.close(fd)
