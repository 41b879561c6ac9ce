"""`podvisor logs` on the server's side: from the log sink's rings to the client.

The sink (`podvisor.supervisor.pod.logs`) keeps each container's last lines, of
its current instance and of the one before, but announces nothing; so a
follower (``logs -f``) looks at the rings every `FOLLOW_POLL_SECONDS`, which
nobody watching a log notices. The sink's running count of lines says how
many are new since the last look; a ring that was swapped meanwhile (the
container restarted) says that the older of them are in `previous` now.

A line goes out as one record, or in pieces of `TEXT_PER_MESSAGE` characters
(all but the last marked partial): a packet must fit the socket's send buffer
(208 KiB by default), and JSON may spell one character with six.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import anyio

from podvisor.supervisor.control.connection import Connection
from podvisor.supervisor.control.wire import LogEnd, LogLines, LogRecord, LogsReply
from podvisor.supervisor.pod.logs import ContainerLog, LogLine

FOLLOW_POLL_SECONDS = 0.1
TEXT_PER_MESSAGE = 16 * 1024


async def serve_logs(
    conn: Connection,
    rings: Mapping[str, ContainerLog],
    names: list[str],
    *,
    previous: bool = False,
    since: float | None = None,
    tail: int | None = None,
    follow: bool = False,
) -> None:
    """Answer a logs request whose containers (*names*) are known to exist."""
    # Read the rings and start following in one step: no line can fall between.
    follower = Follower(rings, names)
    lines = [line for n in names for line in (rings[n].previous if previous else rings[n].current)]
    await conn.send(LogsReply(tuple(names)))
    await send_lines(conn, select(lines, since=since, tail=tail))
    if not follow or previous:
        await conn.send(LogEnd())
        return
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_hangup, conn, tg.cancel_scope)
            while True:
                await anyio.sleep(FOLLOW_POLL_SECONDS)
                await send_lines(conn, follower.new_lines())
    finally:
        # The pod is ending: its last lines, written since the last look, go too
        # (as far as the socket takes them now: nothing may wait on the way out).
        for batch in _batches(follower.new_lines()):
            conn.send_nowait(LogLines(tuple(batch)))


async def _cancel_on_hangup(conn: Connection, scope: anyio.CancelScope) -> None:
    while await conn.receive() is not None:
        pass
    scope.cancel()


def select(lines: list[LogLine], *, since: float | None, tail: int | None) -> list[LogLine]:
    """The lines in time order, from *since* (Unix seconds), the last *tail* of them."""
    found = sorted(lines, key=lambda line: line.time)
    if since is not None:
        found = [line for line in found if line.time >= since]
    if tail is not None and tail >= 0:
        found = found[len(found) - tail :] if tail else []
    return found


async def send_lines(conn: Connection, lines: Sequence[LogLine]) -> None:
    for batch in _batches(lines):
        await conn.send(LogLines(tuple(batch)))


def _batches(lines: Sequence[LogLine]) -> Iterable[list[LogRecord]]:
    """The lines' records, as many to a message as its size allows."""
    batch: list[LogRecord] = []
    size = 0
    for record in itertools.chain.from_iterable(map(records, lines)):
        if batch and size + len(record.text) > TEXT_PER_MESSAGE:
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += len(record.text)
    if batch:
        yield batch


def records(line: LogLine) -> list[LogRecord]:
    """One line as records: a long one in pieces, all but the last partial."""
    text = line.text
    pieces = [text[i : i + TEXT_PER_MESSAGE] for i in range(0, len(text), TEXT_PER_MESSAGE)]
    pieces = pieces or [""]
    last = len(pieces) - 1
    return [
        LogRecord(
            line.time, line.container, line.stream, piece, line.partial if i == last else True
        )
        for i, piece in enumerate(pieces)
    ]


class Follower:
    """Finds the lines written since the last look, across a restart's ring swap."""

    def __init__(self, rings: Mapping[str, ContainerLog], names: list[str]) -> None:
        self._rings = rings
        self._seen = {n: (_count(rings[n]), rings[n].current) for n in names}

    def new_lines(self) -> list[LogLine]:
        found: list[LogLine] = []
        for name, (seen, ring) in self._seen.items():
            log = self._rings[name]
            fresh = _count(log) - seen
            current = _last(log.current, fresh)
            older = _last(log.previous, fresh - len(current)) if log.current is not ring else []
            found += older + current
            self._seen[name] = (_count(log), log.current)
        return sorted(found, key=lambda line: line.time)


def _count(log: ContainerLog) -> int:
    return sum(log.lines.values())


def _last(lines: Sequence[LogLine] | Iterable[LogLine], n: int) -> list[LogLine]:
    every = list(lines)
    return every[max(0, len(every) - n) :] if n > 0 else []
