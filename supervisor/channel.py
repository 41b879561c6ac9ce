"""The supervisor's end of the channel to the pod's init (see init/protocol.py).

One task owns the receiving side (`InitChannel.serve`): replies are matched to
their request by ``id`` and handed to the caller waiting in `request`; every
other event (``exited``, ``signal_received``, ``orphans_reaped``...) goes to
the stream the pod runner reads. When init goes away, pending requests fail
with `InitDiedError` and the event stream ends.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from podvisor.init import protocol
from podvisor.supervisor.errors import InitDiedError


@dataclass
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: protocol.Message | None = None
    fds: list[int] = field(default_factory=list)


class InitChannel:
    """Requests to init, and the stream of events it sends back."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._closed = False
        self._reader_gone = False
        send, receive = anyio.create_memory_object_stream[protocol.Message](1000)
        self._events_in: MemoryObjectSendStream[protocol.Message] = send
        self.events: MemoryObjectReceiveStream[protocol.Message] = receive

    # --- sending -------------------------------------------------------------------

    async def send(self, message: protocol.Message, fds: Sequence[int] = ()) -> None:
        if self._closed:
            raise InitDiedError("the pod's init is gone; the pod is being torn down")
        while True:
            try:
                protocol.send(self._sock, message, tuple(fds))
            except BlockingIOError:
                await anyio.wait_writable(self._sock)
            except OSError as exc:
                raise InitDiedError(f"the channel to the pod's init broke: {exc}") from exc
            else:
                return

    async def request(
        self, message: protocol.Message, fds: Sequence[int] = ()
    ) -> tuple[protocol.Message, list[int]]:
        """Send a request and wait for its reply (and the fds that came with it)."""
        if self._reader_gone:
            # Nobody reads the replies any more: waiting would never end.
            raise InitDiedError("the pod's init is not being listened to any more")
        rid = next(self._ids)
        pending = self._pending[rid] = _Pending()
        try:
            await self.send({**message, "id": rid}, fds)
            await pending.done.wait()
        finally:
            self._pending.pop(rid, None)
        if pending.reply is None:
            raise InitDiedError("the pod's init exited before it answered")
        return pending.reply, pending.fds

    # --- receiving -----------------------------------------------------------------

    async def serve(self) -> None:
        """Read events until init closes its end; run this in its own task."""
        try:
            while True:
                received = await self._receive()
                if received is None:
                    self._closed = True  # only end-of-file closes: a cancelled reader does not
                    return
                message, fds = received
                rid = message.get("id")
                pending = self._pending.get(rid) if isinstance(rid, int) else None
                if pending is not None and message.get("ev") != "exited":
                    pending.reply, pending.fds = message, fds
                    pending.done.set()
                    continue
                for fd in fds:
                    os.close(fd)
                await self._events_in.send(message)
        finally:
            self._reader_gone = True
            for pending in self._pending.values():
                pending.done.set()
            self._events_in.close()

    async def _receive(self) -> tuple[protocol.Message, list[int]] | None:
        while True:
            try:
                return protocol.receive(self._sock)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
            except (ConnectionResetError, protocol.ProtocolError):
                return None

    def close(self) -> None:
        self._closed = True
        self._events_in.close()
        self.events.close()
        with contextlib.suppress(OSError):
            self._sock.close()
