"""A container instance's stdin, stdout and stderr, as its manifest asks for them.

* By default its stdin is /dev/null and its stdout and stderr are two pipes
  whose read ends are pumped into its log.
* ``stdin: true``: its stdin is a pipe whose write end the supervisor holds
  for as long as the instance runs, so the program reads nothing (and waits)
  until `podvisor attach -i` writes to it, as the kubelet keeps it. With
  ``stdinOnce: true`` the supervisor lets go of it when the first attach
  leaves: the program then reads end-of-file.
* ``tty: true``: a pseudo-terminal whose slave is the program's 0, 1 and 2
  (and its controlling terminal); the supervisor holds the master, pumps its
  output into the log as stdout (as a terminal merges the two streams, and
  the kubelet with it) and, with ``stdin: true``, lets an attach write to it.

An attach gets a duplicate of the write end (or of the master) over the
control socket and writes the keyboard into it itself; what the program
prints reaches the attach through the log, as every other line does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from podvisor.supervisor.manifest.model import Container
from podvisor.supervisor.pod.logs import Stream


@dataclass
class ContainerStdio:
    """One instance's descriptors: those for the child, and the supervisor's ends."""

    #: The child's 0, 1 and 2 (ours until they are sent, then closed).
    child: list[int]
    #: Read ends to pump into the log: (fd, stream).
    outputs: list[tuple[int, Stream]]
    #: Where an attach writes (the stdin pipe's write end, or a dup of the master).
    stdin: int | None
    tty: bool
    once: bool

    @classmethod
    def make(cls, c: Container) -> ContainerStdio:
        if c.tty:
            master, slave = os.openpty()
            os.set_inheritable(master, False)
            stdin = os.dup(master) if c.stdin else None
            return cls([slave, slave, slave], [(master, "stdout")], stdin, True, c.stdin_once)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        if c.stdin:
            read_end, stdin = os.pipe2(os.O_CLOEXEC)
        else:
            read_end, stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
        outputs: list[tuple[int, Stream]] = [(out_r, "stdout"), (err_r, "stderr")]
        return cls([read_end, out_w, err_w], outputs, stdin, False, c.stdin_once)

    def sent(self) -> None:
        """The child has its descriptors: close ours of them."""
        for fd in set(self.child):
            os.close(fd)
        self.child = []

    def for_attach(self) -> int | None:
        """A descriptor an attach may write the keyboard to; None without stdin."""
        return None if self.stdin is None else os.dup(self.stdin)

    def attach_left(self) -> None:
        """An attach has gone: with stdinOnce, the program's stdin ends here."""
        if self.once:
            self.close_stdin()

    def close_stdin(self) -> None:
        if self.stdin is not None:
            os.close(self.stdin)
            self.stdin = None

    def close(self) -> None:
        """Everything but the outputs, which their pumps close at their end."""
        self.sent()
        self.close_stdin()
