"""A function run in a forked child, its result pickled back to the parent.

For work whose code the supervisor need not keep: a supervisor lives as long
as its pod, and what it imports stays in its memory all that time. `podvisor
run` reads its command line and its manifest this way (`cli`): argparse,
PyYAML and the manifest's checks, about 2.5 MB, live in a child for the tens
of milliseconds of the read, and the supervisor gets the `LoadedPod`, which
needs only the model's classes.

`ForkedCall.start` forks and returns at once: the parent does its own work
while the child runs, then takes the result (`result`). What the function
prints comes back with it, and the parent prints it: a caller sees the
output as if the function had run in its own process (a test's captured
sys.stderr included), and in the same place among its own.

A process with threads runs the function itself: a lock another thread held
at the fork would stay held in the child.
"""

from __future__ import annotations

import _pickle  # pickle's C half: pickle.py around it would stay for the pod's life
import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Generic, NoReturn, TypeVar, cast

from podvisor.supervisor.errors import ForkedCallError

T = TypeVar("T")


class ForkedCall(Generic[T]):
    """A function running in a forked child; `result` waits for what it returns.

    Use it as a context manager: leaving the block before `result` (an
    exception, Ctrl-C) kills the child and reaps it.
    """

    def __init__(self, what: str, pid: int = 0, results: int = -1) -> None:
        self.what = what  # the work, in ForkedCallError's message ("the manifest's reader")
        self.pid = pid  # 0: no child, the function ran here (`start`)
        self._results = results  # the result pipe's read end; -1 once closed
        self._status: int | None = None if pid else 0  # the child's wait status, once reaped
        self._value: T | None = None
        self._failure: ForkedCallError | None = None

    @classmethod
    def start(cls, function: Callable[[], T], what: str) -> ForkedCall[T]:
        """Fork a child that runs *function*; in a process with threads, run it here.

        Run here, the function's exceptions are raised as they are.
        """
        parent = os.getpid()
        forked = fork_with_pipes(1)
        if forked is None:
            return cls._ran_here(function, what)
        pid, (results, result_end), mask = forked
        if pid == 0:
            os.close(results)
            _child(function, result_end, parent, mask)
        os.close(result_end)
        return cls(what, pid, results)

    @classmethod
    def _ran_here(cls, function: Callable[[], T], what: str) -> ForkedCall[T]:
        done: ForkedCall[T] = cls(what)
        done._value = function()
        return done

    def result(self) -> T:
        """What the function returned; ForkedCallError if the child ended without it.

        What the function printed is printed here first: its stdout, then its stderr.
        """
        if self._failure is not None:
            raise self._failure
        if self._status is None:
            data = _read_all(self._results)
            status = self._reap()
            if status != 0 or not data:
                why = describe_status(status)
                self._failure = ForkedCallError(
                    f"{self.what} (pid {self.pid}) ended without a result ({why})"
                )
                raise self._failure
            # Written by our own child over a pipe only it and we hold.
            self._value, out, err = _pickle.loads(data)
            sys.stdout.write(out)
            sys.stderr.write(err)
        return cast("T", self._value)

    def close(self) -> None:
        """Kill and reap the child if its result was not taken."""
        if self._status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> int:
        if self._results != -1:
            os.close(self._results)
            self._results = -1
        _, self._status = os.waitpid(self.pid, 0)
        return self._status

    def __enter__(self) -> ForkedCall[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: Blocked while a child is forked (`fork_with_pipes`): what a terminal or a
#: `kill` sends. A Ctrl-C that reached the child before it was ready would
#: unwind through the parent's frames, which the fork copied.
FORK_BLOCKED = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def fork_with_pipes(pipes: int) -> tuple[int, list[int], Iterable[int]] | None:
    """Make *pipes* pipes, then fork with `FORK_BLOCKED` blocked across the fork.

    Returns the pid (0 in the child); the pipes' ends, each pipe's read end
    then its write end; and the signal mask from before, which the parent has
    back already and the child restores once it is ready. None, with nothing
    left open, when this process has threads (a lock another thread held at
    the fork would stay held in the child), or a pipe or the fork failed.
    stdout and stderr are flushed first: a child's flush must not write the
    parent's output again.
    """
    if threading.active_count() > 1:
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
    fds: list[int] = []
    try:
        for _ in range(pipes):
            fds += os.pipe()
        pid = os.fork()
    except OSError:
        for fd in fds:
            os.close(fd)
        return None
    finally:
        if os.getpid() == parent:  # the child restores it when ready
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid, fds, mask


def _child(
    function: Callable[[], object], result_end: int, parent: int, mask: Iterable[int]
) -> NoReturn:
    """In the child: run *function*, send what it returned and printed, exit.

    *mask*: the signal mask to restore, once a Ctrl-C can no longer unwind
    through the frames the fork copied.
    """
    status = 1
    try:
        out, err = io.StringIO(), io.StringIO()
        try:
            from podvisor.init import syscalls  # ctypes: the child's, not the supervisor's

            # A supervisor SIGKILLed while the child reads a manifest from a
            # terminal, say, would otherwise leave the child reading.
            syscalls.set_parent_death_signal(signal.SIGKILL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if os.getppid() == parent:  # else it died before the prctl
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    value = function()
                data = _pickle.dumps((value, out.getvalue(), err.getvalue()))
                with open(result_end, "wb") as pipe:
                    pipe.write(data)
                status = 0
        except KeyboardInterrupt:
            status = 128 + signal.SIGINT  # the parent has it too, and says so
            _say(out, err)
        except BaseException:
            import traceback  # a bug: said, after what the function printed

            _say(out, err)
            traceback.print_exc()
    finally:
        # Never the parent's way out: no atexit handler, no `finally` of the
        # frames the fork copied. What the child printed is flushed here.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def _say(out: io.StringIO, err: io.StringIO) -> None:
    """What the function printed before it failed: not kept from whoever reads it."""
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())


def _read_all(fd: int) -> bytes:
    data = bytearray()
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    return bytes(data)


def describe_status(status: int) -> str:
    """A wait status in words: 'exit status 1', 'killed by SIGKILL'."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
