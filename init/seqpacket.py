"""One packet on a ``SOCK_SEQPACKET`` socket, with file descriptors alongside.

Both of podvisor's wires are SEQPACKET sockets: the channel between the
supervisor and the pod's init (`podvisor.init.protocol`) and a pod's control
socket (`podvisor.supervisor.control.wire`). SEQPACKET keeps message
boundaries, so one ``sendmsg`` is one message and no length prefix is
needed; descriptors (stdio pipes, a terminal's master) ride as
``SCM_RIGHTS``. This module moves bytes and descriptors; what the bytes say
is each wire's own business.

The functions do what the socket does: they block on a blocking socket and
raise BlockingIOError on a non-blocking one (`podvisor.supervisor.packets`
waits for the event loop then). Standard library only: the init and the
command-line client import it.
"""

from __future__ import annotations

import array
import os
import socket

TYPE_CHECKING = False  # not typing's: the init avoids importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence

#: The most file descriptors one packet carries.
MAX_FDS = 8
_FD_SIZE = array.array("i").itemsize


class PacketError(Exception):
    """Raised when a packet or its descriptors did not fit and were cut short."""


def socketpair() -> tuple[socket.socket, socket.socket]:
    """A connected pair, both ends close-on-exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    """Send *data* as one packet with *fds* attached."""
    ancillary = []
    if fds:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds)))
    sock.sendmsg([data], ancillary)


def receive(sock: socket.socket, limit: int) -> tuple[bytes, list[int]] | None:
    """One packet of at most *limit* bytes and its fds; None at end-of-file.

    The fds are new descriptors, close-on-exec, owned by the caller. A packet
    or descriptors cut short raise PacketError, with every fd closed.
    """
    data, ancillary, flags, _ = sock.recvmsg(
        limit, socket.CMSG_SPACE(MAX_FDS * _FD_SIZE), socket.MSG_CMSG_CLOEXEC
    )
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % _FD_SIZE)])
    received = list(fds)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or not data:
        for fd in received:
            os.close(fd)
        if data:
            raise PacketError(f"a packet or its descriptors were cut short (over {limit} bytes)")
        return None
    return data, received
