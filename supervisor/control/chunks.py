"""Control messages longer than one packet: split on the way out, joined on the way in.

A SEQPACKET socket takes a packet whole or not at all, and only one that fits
its send buffer (net.core.wmem_default, about 200 KiB): a larger ``sendmsg``
fails with EMSGSIZE, "Message too long", which is what the status of a pod
of a thousand containers would meet. So a message longer than `PACKET_BYTES`
goes as several packets, each but the last starting with the ASCII record
separator, 0x1E (no JSON message does; RFC 7464 marks JSON texts in a
sequence with it), and the receiver joins them, up to the wire's `MAX_MESSAGE`.
Descriptors ride on the last packet. Standard library only: the client
imports it.
"""

from __future__ import annotations

from typing import Final

from podvisor.init.seqpacket import PacketError

#: The most one packet carries, well within any socket's send buffer.
PACKET_BYTES: Final = 64 * 1024
#: The first byte of a packet that more packets of the same message follow.
MORE: Final = b"\x1e"


def split(data: bytes) -> list[bytes]:
    """*data* as the packets that carry it: one, unless it is longer than `PACKET_BYTES`."""
    if len(data) <= PACKET_BYTES:
        return [data]
    step = PACKET_BYTES - len(MORE)
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    return [MORE + piece for piece in pieces[:-1]] + [pieces[-1]]


class Joiner:
    """Packets in, whole messages out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, packet: bytes) -> bytes | None:
        """The whole message once *packet* ends one, else None; PacketError past the limit."""
        more = packet.startswith(MORE)
        part = packet[len(MORE) :] if more else packet
        self._size += len(part)
        if self._size > self.limit:
            raise PacketError(f"a message of over {self.limit} bytes")
        self._parts.append(part)
        if more:
            return None
        whole = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return whole
