"""The supervisor's own stdout and stderr: written to, never waited on, never fatal.

How this works
--------------
Whoever reads the supervisor's output may stop reading it (a pipe to a
stuck program, a terminal on hold), close it (`podvisor run pod.yaml | head
-3`), or fill the disk it goes to. None of that may stop the pod. So the
event loop never writes to these descriptors itself: `StreamWriter.write`
appends the text to a bounded buffer and returns, and one thread per stream
does the blocking writes. When the buffer is full (nobody reads), a line is
dropped and counted; when a write fails (EPIPE, ENOSPC, EIO), the stream is
given up and what follows is dropped and counted too. Either is said once,
on the other stream and in the sink's own record, by the loop, never by the
thread. The container's lines still reach its log files and the ring that
`podvisor logs` reads.

Why a thread and not O_NONBLOCK: the descriptor's open file description is
often shared (a terminal with the shell that started us, a pipe with its
other writers), and O_NONBLOCK on it would make their writes fail with
EAGAIN too. The thread waits on a condition while idle: no wake-ups.

A stream without a descriptor (a test's StringIO) is written to at once.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import threading
from typing import TextIO

#: Bytes a stream may hold unwritten before lines are dropped.
BUFFER_BYTES = 1024 * 1024


class StreamWriter:
    """One of the supervisor's output streams, written without blocking the caller."""

    def __init__(self, stream: TextIO, name: str, limit: int = BUFFER_BYTES) -> None:
        self.stream = stream
        self.name = name
        self.limit = limit
        self.fd = _fileno(stream)
        #: Lines not written: the buffer was full, or the stream had failed.
        self.dropped = 0
        #: Why the stream was given up (an OSError's text), once it was.
        self.failure: str | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._ready = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def write(self, text: str) -> bool:
        """Queue *text* (or write it, without a descriptor); False if it was dropped."""
        if self.failure is not None:
            self.dropped += 1
            return False
        if self.fd is None:
            return self._write_now(text)
        data = text.encode("utf-8", errors="replace")
        with self._ready:
            if self._queued + len(data) > self.limit:
                self.dropped += 1
                return False
            self._chunks.append(data)
            self._queued += len(data)
            self._ready.notify()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"podvisor {self.name}", daemon=True
            )
            self._thread.start()
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued, waiting at most *timeout* seconds for a slow reader."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _write_now(self, text: str) -> bool:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self.failure = str(exc) or type(exc).__name__
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        assert self.fd is not None
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()  # what Python buffered before us goes first
        while True:
            with self._ready:
                while not self._chunks and not self._closing:
                    self._ready.wait()
                if not self._chunks:
                    return
                data = b"".join(self._chunks)
                self._chunks.clear()
            try:
                _write_all(self.fd, data)
            except OSError as exc:
                self.failure = os.strerror(exc.errno) if exc.errno else str(exc)
                with self._ready:
                    self.dropped += 1 + len(self._chunks)
                    self._chunks.clear()
                    self._queued = 0
                return
            with self._ready:
                self._queued -= len(data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # someone else set O_NONBLOCK on it: wait for room
            import select

            select.select([], [fd], [])
            continue
        except InterruptedError:
            continue
        if written == 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view = view[written:]


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None
