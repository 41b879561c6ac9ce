"""One client's connection to the pod's control socket, as the server sees it.

Apart from `server`, which binds and accepts: the messages and their
encoding (`wire`) come with the first connection, with the handlers that
use them, so a pod that nobody asks about does not keep them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Sequence

from podvisor.init import seqpacket
from podvisor.supervisor.control import chunks
from podvisor.supervisor.control.client import close_all
from podvisor.supervisor.control.wire import MAX_MESSAGE, Message, Request, decode_request, encode
from podvisor.supervisor.errors import ControlMessageError
from podvisor.supervisor.packets import PacketStream


class Connection:
    """A client's connection: its messages, typed, over a packet stream that owns the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.stream = PacketStream(sock, MAX_MESSAGE)

    async def receive(self) -> tuple[Request, list[int]] | None:
        """The client's next request and its fds (the caller's); None when it hung up.

        A message that is no request is a ControlMessageError naming it.
        """
        joiner = chunks.Joiner(MAX_MESSAGE)
        while True:
            try:
                packet = await self.stream.receive()
                if packet is None:
                    return None
                data, fds = packet
                whole = joiner.feed(data)
            except seqpacket.PacketError as exc:
                raise ControlMessageError(str(exc)) from exc
            if whole is not None:
                data = whole
                break
            close_all(fds)  # descriptors ride on a message's last packet only
        try:
            return decode_request(data), fds
        except ControlMessageError:
            close_all(fds)
            raise

    async def send(self, message: Message, fds: Sequence[int] = ()) -> None:
        *first, last = chunks.split(encode(message))
        for packet in first:
            await self.stream.send(packet)
        await self.stream.send(last, fds)

    def send_nowait(self, message: Message) -> None:
        """Send if the socket takes it now (on the way out, when nothing may wait)."""
        with contextlib.suppress(ControlMessageError):
            packets = chunks.split(encode(message))
            if len(packets) == 1:  # a message cut short would be worse than none
                self.stream.send_nowait(packets[0])

    def peer_uid(self) -> int:
        creds = self.stream.sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
        _, uid, _ = struct.unpack("3i", creds)
        return int(uid)

    def close(self) -> None:
        self.stream.close()
