"""When the supervisor is killed: the pod's outer init hands over to its clean-up.

How this works
--------------
A SIGKILLed supervisor undoes nothing: the pod's init ends the pod's
processes (its channel's end-of-file), but the cgroups, the network
namespace, its records and the control socket would stay until some later
`podvisor run` found them stale. The outer init (the supervisor's child,
which only waits for the pod's PID 1) outlives both, so it finishes the job:
before it joins the pod's cgroups and network and unshares the rest, it
notes where it came from (`Origin`: the supervisor's pid, its own cgroups,
its mount, network and PID namespaces, kept open). When PID 1 has ended and the
supervisor is gone (our parent is another process now), it execs the
supervisor's clean-up in its own place (`podvisor.supervisor.pod.orphaned`),
handing it those namespaces. A supervisor that lives does its own clean-up,
and the outer init just exits, as before.

Standard library only, as the rest of the init.
"""

from __future__ import annotations

import os
import sys

#: The module that cleans up, run with the init's interpreter.
HELPER = "podvisor.supervisor.pod.orphaned"


class Origin:
    """Where the outer init started: noted before it joins the pod."""

    def __init__(self) -> None:
        self.parent = os.getppid()
        try:
            with open("/proc/self/cgroup") as f:
                self.cgroups = f.read()
        except OSError:
            self.cgroups = ""
        self.namespaces: list[int] = []
        for kind in ("mnt", "net", "pid"):
            try:
                self.namespaces.append(os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                self.namespaces.append(-1)

    def hand_over(self) -> None:
        """After the pod's PID 1 ended: clean up in our place if the supervisor died."""
        if os.getppid() == self.parent or -1 in self.namespaces:
            self.close()
            return
        for fd in self.namespaces:
            os.set_inheritable(fd, True)
        argv = [sys.executable, "-m", HELPER, *map(str, self.namespaces), self.cgroups]
        try:
            os.execv(sys.executable, argv)  # noqa: S606 -- our own interpreter, no shell
        except OSError:
            self.close()

    def close(self) -> None:
        for fd in self.namespaces:
            if fd >= 0:
                os.close(fd)
        self.namespaces = []
