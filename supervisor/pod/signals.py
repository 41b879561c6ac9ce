"""The signals the supervisor receives, as a queue its event loop waits on, losing none.

Why not `anyio.open_signal_receiver`: on asyncio it rests on the event loop's
wake-up socket, one byte per signal, and a signal whose byte does not fit is
lost to it. Real-time signals queue, so a storm of them (a careless `kill`
loop, a misbehaving agent) fills that socket, and the SIGTERM that follows
never reaches the pod's stop. Here every caught signal runs a Python handler
in the main thread, which the interpreter runs whatever became of the byte:
it appends the signal to `SignalInbox.pending`, the truth, and then writes to
a pipe only to wake the loop, where a full pipe means the loop is awake
already. On asyncio that pipe is also the wake-up fd (a signal that lands on
another thread must still wake the main one); trio keeps its own wake-up fd,
which does the same.

Real-time signals are caught by a handler that does nothing rather than set
to SIG_IGN: an ignored signal stays ignored across exec, and every process the
supervisor starts (the pod's init, and through it every container) would
begin with it ignored.

A few signals are set to SIG_IGN all the same (`IGNORED`), because a Python
handler would do harm there. SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and
SIGSYS are also the kernel's word for a real fault: a handler that returns
re-runs the faulting instruction forever, while an ignored one is reset to
its default by the kernel for a real fault (force_sig_info), so a real fault
still ends the supervisor (and the pod's init cleans up), and the same
signal sent with kill(2) does nothing. SIGTTIN and SIGTTOU are raised again
and again at a background process that touches its terminal while it catches
them; ignored, the read fails and the write goes through. The pod's init is
started before these are set, and it gives its children the dispositions it
inherited, so no container starts with them ignored.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import anyio
import sniffio

REALTIME = range(signal.SIGRTMIN, signal.SIGRTMAX + 1)

#: What asks the supervisor to stop the pod: in order (TERM, INT), or at once (QUIT).
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
#: Every other signal whose default action would end or stop the supervisor and
#: that a handler may catch: each is noted once and otherwise ignored.
NOTED = (
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGABRT,
    signal.SIGXCPU,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
    signal.SIGSTKFLT,
    signal.SIGTSTP,
)
#: Set to SIG_IGN, not caught: see the module's header.
IGNORED = (
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGSYS,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


class SignalInbox:
    """The caught signals, in the order they came; `receive` waits for the next."""

    def __init__(self) -> None:
        self.pending: collections.deque[signal.Signals] = collections.deque()
        self.read_end, self.write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def note(self, signum: int) -> None:
        """From the signal handler: keep it, and wake the loop."""
        self.pending.append(signal.Signals(signum))
        with contextlib.suppress(BlockingIOError):  # full: the loop has a wake-up waiting
            os.write(self.write_end, b"\0")

    async def receive(self) -> signal.Signals:
        while not self.pending:
            await anyio.wait_readable(self.read_end)
            with contextlib.suppress(BlockingIOError):
                os.read(self.read_end, 4096)
        return self.pending.popleft()

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


class _Handlers:
    """The process's one set of handlers, shared by every inbox open in it.

    A process may run several pods at once (tests do): the first inbox
    installs the handlers, each signal goes to every open inbox, and the last
    to close puts back what was there before, whatever order they close in.
    """

    def __init__(self) -> None:
        self.inboxes: list[SignalInbox] = []
        self.saved: dict[int, Any] = {}
        self.saved_wakeup: int | None = None

    def open(self, inbox: SignalInbox, caught: Iterable[int], ignored: Iterable[int]) -> None:
        """Raises ValueError outside the main thread, having changed nothing."""
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("signals are handled in the main thread only")
        installed: dict[int, Any] = {}
        wanted: list[tuple[int, Any]] = [
            *((n, self.dispatch) for n in caught),
            *((n, _noted) for n in REALTIME),
            *((n, signal.SIG_IGN) for n in ignored),
        ]
        try:
            for signum, handler in wanted:
                if signum not in self.saved and signum not in installed:
                    installed[signum] = signal.signal(signum, handler)
            if not self.inboxes and sniffio.current_async_library() == "asyncio":
                wakeup = signal.set_wakeup_fd(inbox.write_end, warn_on_full_buffer=False)
                self.saved_wakeup = wakeup
        except BaseException:
            _restore(installed)
            raise
        self.saved.update(installed)
        self.inboxes.append(inbox)

    def close(self, inbox: SignalInbox) -> None:
        was_waking = bool(self.inboxes) and self.inboxes[0] is inbox
        self.inboxes.remove(inbox)
        if self.inboxes:
            if was_waking and self.saved_wakeup is not None:
                signal.set_wakeup_fd(self.inboxes[0].write_end, warn_on_full_buffer=False)
            return
        _restore(self.saved)  # the handlers first: the wake-up fd is theirs
        self.saved.clear()
        if self.saved_wakeup is not None:
            signal.set_wakeup_fd(self.saved_wakeup)
            self.saved_wakeup = None

    def dispatch(self, signum: int, frame: object) -> None:
        """The handler: the main thread, between two bytecodes, whatever became of the byte."""
        for inbox in self.inboxes:
            inbox.note(signum)


_HANDLERS = _Handlers()


@contextlib.contextmanager
def receiving_signals(caught: Iterable[int], ignored: Iterable[int] = ()) -> Iterator[SignalInbox]:
    """*caught* into a `SignalInbox`, *ignored* and real-time signals kept from killing us.

    Every disposition is put back as it was at the end.

    Outside the main thread signals are not ours to handle: the inbox stays empty.
    """
    inbox = SignalInbox()
    opened = False
    try:
        with contextlib.suppress(ValueError):  # not the main thread
            _HANDLERS.open(inbox, caught, ignored)
            opened = True
        yield inbox
    finally:
        if opened:
            _HANDLERS.close(inbox)
        inbox.close()


def _restore(saved: dict[int, Any]) -> None:
    """Put back handlers as `signal.signal` returned them (None: one set from C, or none)."""
    for signum, handler in saved.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _noted(signum: int, frame: object) -> None:
    """A handler that does nothing: see the module's header."""
