"""The terminal of `podvisor exec -it` in a container on its image.

Why
---
The supervisor makes an exec's terminal in the host's devpts, and a container
on its image has a devpts of its own, where that terminal has no name: `tty`
says "not a tty", and what looks its terminal up by name (tmux, screen, su,
script) fails. So, as runtimes do, the command gets a terminal made in the
container's devpts, and the process that waits for it (`podinit._entered`)
copies bytes between the two.

How
---
The command's process, once in the container's mounts, opens the pair
(`take`), hands the master over a socket to the waiting process, and makes
the other end its controlling terminal and stdio, in a session of its own.
The waiting process (`relay`) puts the supervisor's terminal, its own stdio
and controlling terminal, in raw mode, so that the container's terminal
alone echoes, edits lines and turns Ctrl-C into SIGINT; it copies keys one
way and output the other, copies the window's size at the start and on
each SIGWINCH, passes other signals on to the command, and hangs the
container's terminal up (closing the master: the kernel sends the command's
session SIGHUP) when its own is hung up. It returns the command's status
once the command has ended and its last output is copied.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import socket
import termios
import tty

from podvisor.init import process, seqpacket, syscalls

_CHUNK = 64 * 1024


def handover() -> tuple[socket.socket, socket.socket]:
    """The socket pair a command's terminal master crosses: (the waiter's end, the command's)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def take(sock: socket.socket) -> None:
    """In the command's process, in the container's mounts: a new terminal of its devpts
    becomes the session's controlling terminal and stdio; its master goes over *sock*."""
    master, slave = os.openpty()
    try:
        seqpacket.send(sock, b"terminal", [master])
    finally:
        os.close(master)
        sock.close()
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def die_with(relay: int) -> None:
    """In the command's process, right before its exec: SIGKILL once *relay*, its parent,
    has ended.

    In a session of its own, the command is out of the reach of the SIGKILL a
    hang-up ends with (`podvisor exec`'s client gone, the command deaf to
    SIGHUP), which goes to the relay's process group: it dies with the relay.
    """
    syscalls.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != relay:
        raise OSError(errno.ESRCH, "the terminal's relay has already ended")


def receive(sock: socket.socket) -> int | None:
    """The master `take` sent; None when the command ended before it opened one."""
    try:
        packet = seqpacket.receive(sock, 64)
    except (OSError, seqpacket.PacketError):
        return None
    finally:
        sock.close()
    if packet is None:
        return None
    _, fds = packet
    for extra in fds[1:]:
        os.close(extra)
    return fds[0] if fds else None


def relay(child: int, waited: frozenset[int], master: int) -> int:
    """Copy between this process's terminal (fds 0 and 1) and *master* until *child*
    ends; its exit status. *waited*: the signals this process has blocked."""
    tty.setraw(0, termios.TCSANOW)
    _copy_size(master)
    signals = syscalls.signalfd(waited)
    poller = select.poll()
    for fd in (signals, 0, master):
        poller.register(fd, select.POLLIN)
    copies = {0: master, master: 1}  # where what is read from each goes
    while True:
        for fd, _ in poller.poll():
            if fd == signals:
                status = _on_signals(signals, child, poller, copies, master)
                if status is not None:
                    return status
            elif fd in copies and not _copy(fd, copies[fd]):
                if fd == 0:  # the supervisor's terminal was hung up: so is the command's
                    _hang_up(poller, copies, master)
                else:  # nobody holds the command's terminal any more
                    poller.unregister(fd)
                    del copies[fd]


def _on_signals(
    signals: int, child: int, poller: select.poll, copies: dict[int, int], master: int
) -> int | None:
    """Act on the signals queued; the command's status once it has ended."""
    for signum in syscalls.read_signalfd(signals):
        if signum == signal.SIGCHLD:
            pid, raw_status = os.waitpid(child, os.WNOHANG)
            if pid:
                if master in copies:
                    _drain(master)
                return process.exit_status(raw_status)
        elif signum == signal.SIGWINCH:
            if master in copies:
                _copy_size(master)
        elif signum == signal.SIGHUP:
            _hang_up(poller, copies, master)
        else:
            try:  # noqa: SIM105 (contextlib is an import the init avoids)
                os.kill(child, signum)
            except ProcessLookupError:
                pass  # it has just ended
    return None


def _copy(source: int, target: int) -> bool:
    """Copy what *source* has to *target*; False once *source* has nothing more."""
    try:
        data = os.read(source, _CHUNK)
    except OSError as exc:
        if exc.errno == errno.EIO:  # a terminal whose other end has gone
            return False
        raise
    if not data:
        return False
    _write_all(target, data)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError as exc:
            if exc.errno == errno.EIO:  # nobody reads that terminal any more
                return
            raise


def _drain(master: int) -> None:
    """The command's last output: what its terminal holds once it has ended."""
    os.set_blocking(master, False)
    while True:
        try:
            if not _copy(master, 1):
                return
        except BlockingIOError:
            return


def _hang_up(poller: select.poll, copies: dict[int, int], master: int) -> None:
    if master in copies:
        poller.unregister(master)
        del copies[master]
        os.close(master)  # the kernel hangs the command's terminal up
    if 0 in copies:
        poller.unregister(0)
        del copies[0]


def _copy_size(master: int) -> None:
    size = fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8))
    fcntl.ioctl(master, termios.TIOCSWINSZ, size)
