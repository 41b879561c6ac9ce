"""The client's end of a pod's control socket: blocking, with timeouts.

Standard library only: `podvisor status` and the other commands import it,
never anyio.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, TypeVar

from podvisor.init import seqpacket
from podvisor.supervisor.control import chunks
from podvisor.supervisor.control.paths import find_pod
from podvisor.supervisor.control.wire import (
    MAX_MESSAGE,
    Error,
    Message,
    Reply,
    Request,
    decode_reply,
    decode_streamed,
    encode,
)
from podvisor.supervisor.errors import ControlError, ControlMessageError

#: A client gives up on an answer after this long: never a hang.
ANSWER_TIMEOUT: Final = 10.0
#: exec's first answer comes once the init has started the command, which the
#: server waits for up to 30 s (a loaded machine forks slowly).
EXEC_ANSWER_TIMEOUT: Final = 45.0

R = TypeVar("R", bound=Reply)

# =============================================================================
# The client's end
# =============================================================================


class Client:
    """One connection to a pod's control socket (blocking, with timeouts)."""

    def __init__(self, pod: str, path: Path, timeout: float | None = ANSWER_TIMEOUT) -> None:
        self.pod = pod
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        # connect(2) on a unix socket blocks while the server's backlog is full.
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise self._connect_error(exc) from exc
        # Before any request (and any descriptor) goes out: the server must be ours or root's.
        peer = peer_uid(self.sock)
        if peer not in (0, os.geteuid()):
            self.sock.close()
            raise ControlError(
                f"refusing pod {pod!r}: its socket {path} is served by uid {peer}, neither you "
                f"(uid {os.geteuid()}) nor root; podvisor talks only to pods its own user or "
                "root started"
            )

    @classmethod
    def open(cls, pod: str, timeout: float | None = ANSWER_TIMEOUT) -> Client:
        return cls(pod, find_pod(pod), timeout)

    def _connect_error(self, exc: OSError) -> ControlError:
        if isinstance(exc, PermissionError):
            return ControlError(self._denied())
        if exc.errno == errno.ECONNREFUSED:
            return ControlError(
                f"pod {self.pod!r} is gone: its supervisor died and left {self.path} behind "
                "(the next pod of that name replaces it)"
            )
        if isinstance(exc, TimeoutError):
            return ControlError(self._silent())
        if isinstance(exc, FileNotFoundError):
            return ControlError(f"pod {self.pod!r} has stopped")
        return ControlError(f"cannot reach pod {self.pod!r} at {self.path}: {exc.strerror or exc}")

    def _denied(self) -> str:
        try:
            owner = self.path.stat().st_uid
        except OSError:
            return f"permission denied: cannot reach the control socket {self.path}; use sudo"
        return f"permission denied: the pod {self.pod!r} belongs to uid {owner}; use sudo"

    def _silent(self) -> str:
        return (
            f"pod {self.pod!r} does not answer: its supervisor may be stopped or overloaded "
            f"(socket {self.path})"
        )

    def send(self, request: Request, fds: Sequence[int] = ()) -> None:
        try:
            *first, last = chunks.split(encode(request))
            for packet in first:
                seqpacket.send(self.sock, packet)
            seqpacket.send(self.sock, last, fds)
        except TimeoutError as exc:
            raise ControlError(self._silent()) from exc
        except OSError as exc:
            raise self._lost(exc) from exc

    def answer(self, kind: type[R]) -> tuple[R | Error, list[int]]:
        """The answer to the request, and the fds with it (the caller's to close)."""
        packet = self._receive()
        if packet is None:
            raise ControlError(f"pod {self.pod!r} closed the connection without an answer")
        data, fds = packet
        try:
            return decode_reply(data, kind), fds
        except ControlMessageError as exc:
            close_all(fds)
            raise self._unreadable(exc) from exc

    def reply(self, kind: type[R]) -> R:
        """The answer to the request, a *kind*; ControlError for an Error."""
        answer, fds = self.answer(kind)
        close_all(fds)
        if isinstance(answer, Error):
            raise ControlError(answer.error or f"pod {self.pod!r} refused")
        return answer

    def request(self, request: Request, kind: type[R], fds: Sequence[int] = ()) -> R:
        """Send *request* and return its answer, a *kind*."""
        self.send(request, fds)
        return self.reply(kind)

    def receive(self) -> Message | None:
        """The next message after the reply; None when the server closed. Fds are closed."""
        packet = self._receive()
        if packet is None:
            return None
        data, fds = packet
        close_all(fds)
        try:
            return decode_streamed(data)
        except ControlMessageError as exc:
            raise self._unreadable(exc) from exc

    def _receive(self) -> tuple[bytes, list[int]] | None:
        joiner = chunks.Joiner(MAX_MESSAGE)
        try:
            while (packet := seqpacket.receive(self.sock, MAX_MESSAGE)) is not None:
                data, fds = packet
                whole = joiner.feed(data)
                if whole is not None:
                    return whole, fds
                close_all(fds)  # descriptors ride on a message's last packet only
        except TimeoutError as exc:
            raise ControlError(self._silent()) from exc
        except (OSError, seqpacket.PacketError) as exc:
            raise self._lost(exc) from exc
        return None

    def _lost(self, exc: OSError | seqpacket.PacketError) -> ControlError:
        # A unix socket is reset when its server closes it with the request
        # unread, or closes its listener with the connection still waiting to be
        # accepted: both are a pod stopping (or its supervisor dying) mid-request.
        if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return ControlError(
                f"pod {self.pod!r} stopped before answering (its supervisor closed the connection)"
            )
        return ControlError(f"lost the connection to pod {self.pod!r}: {exc}")

    def _unreadable(self, exc: ControlMessageError) -> ControlMessageError:
        return ControlMessageError(
            f"pod {self.pod!r} sent what this podvisor cannot read ({exc}): is the pod's "
            "podvisor another version than this command's?"
        )

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def close_all(fds: Iterable[int]) -> None:
    """Close each of *fds*, whichever are still open."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def ask(pod: str, request: Request, kind: type[R]) -> R:
    """Send one request to *pod* and return its answer, a *kind*."""
    with Client.open(pod) as client:
        return client.request(request, kind)
