"""``podvisor attach POD [-c CONTAINER] [-i] [-t]``: a running pod's output, and a
container's stdin.

Without ``-i`` it follows the output, as `podvisor logs -f` does, until the
pod ends; Ctrl-C leaves the pod running. With ``-i`` (a container with
``stdin: true``) the pod hands over a copy of where the container's stdin is
written, its terminal's master with ``tty: true``, and a thread copies this
side's stdin into it while the output goes on as before, as ``kubectl attach
-i`` does: what the program prints reaches the attach through its log.

With ``-t`` on a terminal the keys go unchanged (raw mode, so that Ctrl-C
reaches the program's terminal, whose line discipline makes it a signal), the
window's size is the container's terminal's, and follows it as it changes
(SIGWINCH), and Ctrl-P Ctrl-Q leaves, as
docker's detach keys do. At the end of this side's stdin (a pipe, or Ctrl-D
read as data), the copy is closed: a container with ``stdinOnce: true`` then
reads end-of-file.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import socket
import struct
import termios
import threading
import tty
from collections.abc import Callable, Iterator

from podvisor.supervisor.control.client import Client, close_all
from podvisor.supervisor.control.wire import AttachStdin, Error, StdinAttached
from podvisor.supervisor.errors import ControlError

#: Ctrl-P Ctrl-Q: leave an attach with a terminal, the pod running.
DETACH = b"\x10\x11"


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--container", help="this container alone (default: every one)")
    parser.add_argument(
        "-i",
        "--stdin",
        action="store_true",
        help="pass this side's input to the container's stdin (it needs stdin: true; "
        "default container: the first main one)",
    )
    parser.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help="with -i, the keys as they are typed, for a container with tty: true "
        "(Ctrl-P Ctrl-Q leaves)",
    )


def attach(args: argparse.Namespace) -> int:
    from podvisor.supervisor.cli import commands

    with contextlib.ExitStack() as stack:
        container, start_copying = args.container, None
        if args.stdin:
            container, start_copying = _attach_stdin(args, stack)
        follow = argparse.Namespace(
            pod=args.pod,
            named=None,
            container=container,
            follow=True,
            previous=False,
            tail=args.tail,
            since=None,
            timestamps=False,
            output=args.output,  # json: one object a line, as `logs -o json` writes them
            prefixed=container is None,
            # The output is followed first, as kubectl attaches it before stdin.
            on_following=start_copying,
        )
        return commands.logs(follow)


def _attach_stdin(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> tuple[str, Callable[[], None]]:
    """Get the container's stdin: the container's name, and what starts copying into it."""
    from podvisor.supervisor.cli.commands import _window_size

    keys = args.tty and os.isatty(0)
    client = stack.enter_context(Client.open(args.pod))
    client.send(AttachStdin(args.container, _window_size(0) if keys else None))
    reply, fds = client.answer(StdinAttached)
    if isinstance(reply, Error) or len(fds) != 1:
        close_all(fds)
        raise ControlError(reply.error if isinstance(reply, Error) else "the pod sent no stdin")
    client.sock.settimeout(None)
    [stdin] = fds
    if keys:
        stack.enter_context(_raw_keys(0))
        stack.enter_context(_window_follows(stdin))
    copier = threading.Thread(target=_copy, args=(stdin, client, keys), daemon=True)
    return reply.container, copier.start


def _copy(stdin: int, client: Client, keys: bool) -> None:
    """This side's input into the container's stdin, until its end (or the detach keys)."""
    try:
        while data := os.read(0, 4096):
            cut = data.find(DETACH) if keys else -1
            _write_all(stdin, data if cut < 0 else data[:cut])
            if cut >= 0:
                os.kill(os.getpid(), signal.SIGINT)  # the output's loop ends as at Ctrl-C
                return
    except OSError:
        pass  # the container's stdin is gone (it ended): the output says the rest
    finally:
        os.close(stdin)
        # The attach has left the container's stdin: stdinOnce closes it there.
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def _window_follows(master: int) -> Iterator[None]:
    """The container's terminal takes this window's size at each change (SIGWINCH).

    The size goes on a copy of the master: the copying thread closes its own
    at the end of the input, and a size must never land on whatever file
    later takes that number.
    """
    from podvisor.supervisor.cli.commands import _window_size

    own = os.dup(master)

    def resize(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(own, termios.TIOCSWINSZ, struct.pack("HHHH", *_window_size(0), 0, 0))

    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(own)


@contextlib.contextmanager
def _raw_keys(fd: int) -> Iterator[None]:
    """Keys unchanged to the container, output still with its line endings; put back after."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        mode = termios.tcgetattr(fd)
        mode[1] |= termios.OPOST | termios.ONLCR
        termios.tcsetattr(fd, termios.TCSANOW, mode)
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
