"""Accepting the endpoint's connections so that no client can knock it over.

How this works
--------------
Anyone on the host may connect to the endpoint, and a health check must
still get its answer when others hold connections open, speak slowly, or
use up the supervisor's descriptors. So:

- At most `open_limit()` connections are open at once (a share of
  RLIMIT_NOFILE). A new one makes way by closing the one open longest: a
  flood of idle clients only ever closes its own oldest connections, and a
  new client (a HEALTHCHECK's curl) is always let in.
- Running out of descriptors (EMFILE, ENFILE) or kernel memory while
  accepting never ends the accept loop: the oldest connection is closed, the
  loop pauses briefly and goes on. It is said once.
- What a connection may hold is bounded elsewhere: the time to begin a
  request and to send its head (`http.IDLE_SECONDS`, `HEAD_SECONDS`), to
  take its answer (`SEND_SECONDS`), and a slot of the scrape limiter only
  while its scrape is answered, never while it idles; /livez and /readyz
  need no slot at all (`endpoint.Endpoint`).
"""

from __future__ import annotations

import collections
import errno
import resource
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

#: Errors of accept(2) that say "not now", never "never".
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Errors of accept(2) about the one connection it took: the next one may be fine.
PASSING = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR, errno.EAGAIN})
#: How long the loop waits after running out, for closed connections to free their descriptors.
PAUSE_SECONDS = 0.05
#: A response must be taken by the client within this, or its connection is closed.
SEND_SECONDS = 10.0


def open_limit() -> int:
    """Connections to keep open at most: a quarter of the descriptors we may open."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, min(4096, soft // 4))


def raise_open_files_limit() -> tuple[int, int]:
    """Raise our soft RLIMIT_NOFILE to the hard limit, as systemd's services do; (old, new)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            return soft, soft
    return soft, hard


class ConnectionTable:
    """The open connections, oldest first, each with the scope that can close it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: collections.OrderedDict[object, anyio.CancelScope] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def close_oldest(self) -> bool:
        if not self._open:
            return False
        _, scope = self._open.popitem(last=False)
        scope.cancel()
        return True

    async def run(
        self,
        stream: anyio.abc.SocketStream,
        handle: Callable[[anyio.abc.SocketStream], Awaitable[None]],
    ) -> None:
        """Serve *stream* with *handle*, making way first if the table is full."""
        while len(self._open) >= self.limit and self.close_oldest():
            pass
        key = object()
        with anyio.CancelScope() as scope:
            self._open[key] = scope
            try:
                await handle(stream)
            finally:
                self._open.pop(key, None)
        if scope.cancelled_caught:
            await stream.aclose()


async def accept_forever(
    listener: anyio.abc.Listener[anyio.abc.SocketStream],
    handle: Callable[[anyio.abc.SocketStream], Awaitable[None]],
    say: Callable[[str], None],
) -> None:
    """Accept on every socket of *listener* and serve each connection in a task, until cancelled."""
    table = ConnectionTable(open_limit())
    sockets = getattr(listener, "listeners", [listener])
    said = False

    def exhausted(exc: BaseException) -> bool:
        nonlocal said
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if not isinstance(cause, OSError) or cause.errno not in EXHAUSTED | PASSING:
            return False
        if cause.errno in PASSING:
            return True
        table.close_oldest()
        if not said:
            said = True
            say(
                f"metrics endpoint: cannot accept a connection ({cause.strerror}): closing "
                f"the oldest of {len(table)} open ones and going on; raise LimitNOFILE if "
                "this is not a flood"
            )
        return True

    async def accept_on(sock: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    stream = await sock.accept()  # type: ignore[attr-defined]
                except (OSError, anyio.BrokenResourceError) as exc:
                    if not exhausted(exc):
                        raise
                    await anyio.sleep(PAUSE_SECONDS)
                    continue
                tg.start_soon(table.run, stream, handle)

    async with anyio.create_task_group() as tg:
        for sock in sockets:
            tg.start_soon(accept_on, sock)
