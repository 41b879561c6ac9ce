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
the previous one, for ``podvisor logs -f`` and ``--previous``, and writes every
line to the container instance's log file (`logfiles`). Its own output goes
through `StreamWriter`s (`output`), which never block the loop: a reader that
stops reading, a closed pipe or a full disk costs lines on that stream
(counted, and said once), never the pod.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Literal, TextIO

import anyio
import anyio.lowlevel

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.pod.logfiles import PodLogFiles
from podvisor.supervisor.pod.output import StreamWriter

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
    #: The current instance's number (its restart count, as its log file is named).
    instance: int = -1

    def new_instance(self) -> None:
        self.previous = self.current
        self.current = collections.deque(maxlen=RING_LINES)
        self.instance += 1


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
        self._out = {
            "stdout": StreamWriter(stdout or sys.stdout, "stdout"),
            "stderr": StreamWriter(stderr or sys.stderr, "stderr"),
        }
        self.containers: dict[str, ContainerLog] = collections.defaultdict(ContainerLog)
        self.width = 0
        #: The pod's log folder; None: no files (not made, or not writable).
        self.files: PodLogFiles | None = None
        #: Lines that did not reach a log file (a full disk, an I/O error).
        self.file_drops = 0
        self._said: set[str] = set()

    @property
    def output_drops(self) -> int:
        """Lines that did not reach the supervisor's stdout or stderr."""
        return sum(w.dropped for w in self._out.values())

    def new_instance(self, container: str) -> None:
        """A new instance of *container* starts: a fresh ring, a fresh log file."""
        log = self.containers[container]
        log.new_instance()
        if self.files is not None:
            try:
                self.files.new_instance(container, log.instance)
            except OSError as exc:
                self._file_failed(exc)

    def close(self) -> None:
        """Close the log files and write out what is queued (briefly: a reader may be gone)."""
        if self.files is not None:
            self.files.close()
        for writer in self._out.values():
            writer.close()

    def register(self, names: list[str]) -> None:
        """Align the prefixes: the longest container name sets the width."""
        self.width = max((len(n) for n in names), default=0)

    def emit(self, line: LogLine, flush: bool = True) -> None:
        """Keep, write to the log file and print *line*; `flush_files` later if not *flush*."""
        log = self.containers[line.container]
        log.current.append(line)
        log.lines[line.stream] += 1
        log.bytes[line.stream] += len(line.text) + 1
        if self.files is not None:
            try:
                self.files.write(line.container, line.time, line.stream, line.text, line.partial)
                if flush:
                    self.files.flush(line.container)
            except OSError as exc:
                self._file_failed(exc)
        self._write(line.stream, self.render(line))

    def flush_files(self, container: str) -> None:
        """Write what `emit(..., flush=False)` kept for *container*'s log file."""
        if self.files is not None:
            try:
                self.files.flush(container)
            except OSError as exc:
                self._file_failed(exc)

    def system(self, message: str) -> None:
        """A line from podvisor itself, on stderr."""
        line = LogLine(time.time(), "podvisor", "stderr", message)
        self._write("stderr", self.render(line))

    def _write(self, stream: Stream, text: str) -> None:
        writer = self._out[stream]
        if writer.write(text) or stream in self._said:
            return
        self._said.add(stream)
        why = writer.failure or "nobody reads it fast enough"
        other: Stream = "stderr" if stream == "stdout" else "stdout"
        message = (
            f"podvisor's {stream} is not taking lines ({why}): dropping them from here on, "
            "counted in podvisor_log_lines_dropped_total; every line is still in the log "
            "files and `podvisor logs`"
        )
        self._out[other].write(self.render(LogLine(time.time(), "podvisor", "stderr", message)))

    def _file_failed(self, exc: OSError) -> None:
        self.file_drops += 1
        if "files" not in self._said:
            self._said.add("files")
            self.system(
                f"warning: cannot write the log files ({exc.strerror or exc}): dropping "
                "their lines, counted in podvisor_log_lines_dropped_total; the pod runs on "
                "and `podvisor logs` has the last lines"
            )

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


async def pump(
    fd: int, container: str, stream: Stream, sink: LogSink, *, terminal: bool = False
) -> None:
    """Read *fd* (a pipe's read end, which this closes) until end-of-file.

    *terminal*: *fd* is a pseudo-terminal's master, which says EIO once no
    process holds its slave; what is left of a line goes at once, as a
    partial line, so that a prompt or an echoed key shows before its newline.
    """
    os.set_blocking(fd, False)
    pending = b""
    try:
        while True:
            try:
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            except OSError as exc:
                if terminal and exc.errno == errno.EIO:
                    break
                raise
            if not chunk:
                break
            pending = _emit_lines(pending + chunk, container, stream, sink)
            if terminal and pending:
                piece = LogLine(time.time(), container, stream, _text(pending), partial=True)
                sink.emit(piece, flush=False)
                pending = b""
            sink.flush_files(container)
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
        text = _text(raw.removesuffix(b"\r"))
        sink.emit(LogLine(time.time(), container, stream, text), flush=False)
    while len(rest) >= MAX_LINE:
        piece = LogLine(time.time(), container, stream, _text(rest[:MAX_LINE]), partial=True)
        sink.emit(piece, flush=False)
        rest = rest[MAX_LINE:]
    return rest


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
