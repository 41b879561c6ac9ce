"""`PacketStream`: a SEQPACKET socket on the event loop, one packet at a time.

The supervisor's two wires (the channel to the pod's init, each connection to
the control socket) read and write through this one type: the socket is put
in non-blocking mode, and a send or receive that would block waits for the
loop to say the socket is ready. The bytes and descriptors are moved by
`podvisor.init.seqpacket`, which the init and the command-line client use
too, blocking.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Sequence

import anyio

from podvisor.init import seqpacket


class PacketStream:
    """One SEQPACKET socket, owned: closing the stream closes the socket."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        #: The largest packet taken; a longer one is a `seqpacket.PacketError`.
        self.limit = limit

    async def send(self, data: bytes, fds: Sequence[int] = ()) -> None:
        """Send one packet (the fds are duplicated into the peer, still ours to close).

        Raises OSError when it cannot: the peer is gone, or the stream was closed.
        """
        while True:
            try:
                seqpacket.send(self.sock, data, fds)
            except BlockingIOError:
                try:
                    await anyio.wait_writable(self.sock)
                except anyio.ClosedResourceError:
                    raise OSError(errno.EBADF, "the stream was closed") from None
            else:
                return

    def send_nowait(self, data: bytes) -> bool:
        """Send if the socket takes the packet now; whether it did (for the way out)."""
        try:
            seqpacket.send(self.sock, data)
        except OSError:
            return False
        return True

    async def receive(self) -> tuple[bytes, list[int]] | None:
        """The next packet and its fds (the caller's to close); None at end-of-file.

        A peer that reset the connection is an end-of-file too, and so is this
        stream's closing while a task reads it: the reader ends as it would
        at the peer's end, whether it was waiting or about to read again.
        """
        while True:
            try:
                return seqpacket.receive(self.sock, self.limit)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(self.sock)
                except anyio.ClosedResourceError:
                    return None
            except ConnectionResetError:
                return None
            except OSError:
                if self.sock.fileno() == -1:  # closed here
                    return None
                raise

    def close(self) -> None:
        if self.sock.fileno() == -1:
            return
        # Wakes a task waiting on the socket before its descriptor number is freed.
        with contextlib.suppress(RuntimeError):  # no event loop: nobody can be waiting
            anyio.notify_closing(self.sock)
        with contextlib.suppress(OSError):
            self.sock.close()
