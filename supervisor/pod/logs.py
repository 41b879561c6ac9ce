"""Container logs: read from the pipes, written out line by line.

Each container's stdout and stderr reach the supervisor on pipes of their
own. A reader task per pipe splits what arrives into lines and hands each
whole line to the `LogSink`, which writes it to the supervisor's stdout or
stderr in one ``write`` with the container's name in front (or as one JSON
object), so two containers' lines never interleave within a line. A reader
only reads as fast as the sink writes, so a container that floods its pipe
fills its own pipe and slows only itself. A line longer than `MAX_LINE` is
cut there (marked as partial in JSON); what remains at end-of-file is flushed
as a last line.

The sink also keeps the last lines of each container, current instance and
the previous one, for ``podvisor logs`` and ``--previous``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Literal, TextIO

import anyio
import anyio.lowlevel

from podvisor.supervisor.frozen import frozen

MAX_LINE = 64 * 1024
READ_SIZE = 64 * 1024
RING_LINES = 1000

Stream = Literal["stdout", "stderr"]


@frozen
class LogLine:
    time: float
    container: str
    stream: Stream
    text: str
    partial: bool = False


@dataclass
class ContainerLog:
    """The lines a container wrote lately, and how much it wrote in all."""

    current: collections.deque[LogLine] = field(
        default_factory=lambda: collections.deque(maxlen=RING_LINES)
    )
    previous: collections.deque[LogLine] = field(
        default_factory=lambda: collections.deque(maxlen=RING_LINES)
    )
    lines: dict[Stream, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    bytes: dict[Stream, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})

    def new_instance(self) -> None:
        self.previous = self.current
        self.current = collections.deque(maxlen=RING_LINES)


class LogSink:
    """Writes every container's lines to the supervisor's own stdout and stderr."""

    def __init__(
        self,
        pod: str,
        fmt: Literal["text", "json"] = "text",
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.pod = pod
        self.format = fmt
        self._out = {"stdout": stdout or sys.stdout, "stderr": stderr or sys.stderr}
        self.containers: dict[str, ContainerLog] = collections.defaultdict(ContainerLog)
        self.width = 0

    def register(self, names: list[str]) -> None:
        """Align the prefixes: the longest container name sets the width."""
        self.width = max((len(n) for n in names), default=0)

    def emit(self, line: LogLine) -> None:
        log = self.containers[line.container]
        log.current.append(line)
        log.lines[line.stream] += 1
        log.bytes[line.stream] += len(line.text) + 1
        out = self._out[line.stream]
        out.write(self.render(line))
        out.flush()

    def system(self, message: str) -> None:
        """A line from podvisor itself, on stderr."""
        line = LogLine(time.time(), "podvisor", "stderr", message)
        out = self._out["stderr"]
        out.write(self.render(line))
        out.flush()

    def render(self, line: LogLine) -> str:
        if self.format == "json":
            import datetime  # here, not at the top: which text logs do not need

            record: dict[str, object] = {
                "time": datetime.datetime.fromtimestamp(line.time, datetime.UTC).isoformat(),
                "pod": self.pod,
                "container": line.container,
                "stream": line.stream,
                "line": line.text,
            }
            if line.partial:
                record["partial"] = True
            return json.dumps(record, ensure_ascii=False) + "\n"
        return f"{line.container:<{self.width}} | {line.text}\n"


async def pump(fd: int, container: str, stream: Stream, sink: LogSink) -> None:
    """Read *fd* (a pipe's read end, which this closes) until end-of-file."""
    os.set_blocking(fd, False)
    pending = b""
    try:
        while True:
            try:
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            if not chunk:
                break
            pending = _emit_lines(pending + chunk, container, stream, sink)
            # Let the other pipes and the supervisor run between chunks, so a
            # flood on this pipe cannot starve them.
            await anyio.lowlevel.checkpoint()
        if pending:
            sink.emit(LogLine(time.time(), container, stream, _text(pending)))
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _emit_lines(data: bytes, container: str, stream: Stream, sink: LogSink) -> bytes:
    *lines, rest = data.split(b"\n")
    for raw in lines:
        sink.emit(LogLine(time.time(), container, stream, _text(raw.removesuffix(b"\r"))))
    while len(rest) >= MAX_LINE:
        sink.emit(LogLine(time.time(), container, stream, _text(rest[:MAX_LINE]), partial=True))
        rest = rest[MAX_LINE:]
    return rest


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
