"""A function run in a forked child, its result sent back to the parent.

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

What crosses the pipe (`pack`, `unpack`) is marshal data, not pickle's:
pickle's C half, with the tables it imports, would stay loaded in the
supervisor for the pod's life, where marshal is the interpreter's own (it
reads every .pyc). marshal takes None, booleans, numbers, strings, bytes,
lists, dicts, sets and tuples; the children's results are also made of the
models' dataclasses and enums, which `pack` spells out as tuples that name
their class. So every tuple in packed data is one of those spellings, a
tuple of the value's own included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import importlib
import io
import marshal
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, NoReturn, TypeVar, cast

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
            self._value, out, err = unpack(data)
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
                data = pack((value, out.getvalue(), err.getvalue()))
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


# --- What crosses the pipe ----------------------------------------------------

# How `pack` spells a value marshal does not take: a tuple whose first item says which.
_TUPLE = "tuple"  # ("tuple", item, ...)
_ENUM = "enum"  # ("enum", "module:Class", value)
_DATACLASS = "dataclass"  # ("dataclass", "module:Class", {attribute: value})
#: What marshal takes as it is.
_SCALARS = frozenset({type(None), bool, int, float, str, bytes})


def pack(value: object) -> bytes:
    """*value* as marshal data; TypeError for what neither marshal nor `pack` can spell."""
    return marshal.dumps(_plain(value))


def unpack(data: bytes) -> Any:
    """The value `pack` made *data* of; ValueError (or EOFError) if *data* was cut short."""
    # Only a forked child's data comes here, over a pipe only it and its parent hold.
    return _made(marshal.loads(data))  # noqa: S302


def _plain(value: object) -> Any:
    plain: Any
    if isinstance(value, enum.Enum):  # first: a StrEnum is a str, an IntEnum an int
        plain = (_ENUM, _name(type(value)), _plain(value.value))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Its attributes, as pickle takes them: fields and all.
        plain = (_DATACLASS, _name(type(value)), _plain(vars(value)))
    # The rest by their exact types: a subclass (a NamedTuple, a str of
    # its own) would come back as its base, or not at all from marshal.
    elif type(value) is tuple:
        plain = (_TUPLE, *map(_plain, value))
    elif type(value) is dict:
        plain = {_plain(k): _plain(v) for k, v in value.items()}
    elif isinstance(value, (list, set, frozenset)) and type(value) in (list, set, frozenset):
        plain = type(value)(map(_plain, value))
    elif type(value) in _SCALARS:
        plain = value
    else:
        raise TypeError(f"a {type(value).__qualname__} cannot cross a forked child's pipe")
    return plain


def _made(plain: Any) -> Any:
    if isinstance(plain, tuple):
        return _spelled(*plain)
    if isinstance(plain, dict):
        return {_made(k): _made(v) for k, v in plain.items()}
    if isinstance(plain, (list, set, frozenset)):
        return type(plain)(map(_made, plain))
    return plain


def _spelled(kind: str, *rest: Any) -> Any:
    """The value `_plain` spelled as the tuple (*kind*, *rest*)."""
    if kind == _TUPLE:
        return tuple(map(_made, rest))
    cls = _class(rest[0])
    if kind == _ENUM and issubclass(cls, enum.Enum):
        return cls(_made(rest[1]))
    if kind == _DATACLASS and dataclasses.is_dataclass(cls):
        made = cls.__new__(cls)
        made.__dict__.update(_made(rest[1]))
        return made
    raise ValueError(f"packed data with a {kind} of {rest[0]}")


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: str) -> type:
    module, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module) or importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return cast("type", found)


def describe_status(status: int) -> str:
    """A wait status in words: 'exit status 1', 'killed by SIGKILL'."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
