"""The pod's network, made by a forked child while the supervisor starts.

How this works. On the bridge (and in host mode, which looks up the host's
address), making the pod's network costs a start about 160 ms: pyroute2's
import, its asyncio included, then the netlink and nft work. `podvisor run`
knows what the network must be as soon as the manifest is read, half a
second before its runner is imported and reaches the network. So it forks
(`NetworkMaker.fork`): the child makes the network on the other core while
the parent imports, and the runner then only takes the answer
(`NetworkMaker.network`).

A fork, not a new interpreter: the child has the manifest and this package
already and imports only pyroute2. A process with threads does not fork
(a lock another thread held at the fork would stay held in the child);
`fork` then returns None and the runner makes the network itself, as it
does in loopback mode, which needs no pyroute2. Every record the child
writes names the supervisor as its owner, never the child, which lives for
a moment.

The answer comes back on a pipe, pickled (parent and child are one
program): ("network", PodNetwork) or ("error", what went wrong).

How it ends:

* made: the runner takes the network, and undoes it at the pod's end as it
  undoes one it made;
* not made: the child has undone what it made (as `create_network` does)
  and says why; the runner raises NetworkError with that;
* the child died without an answer: the parent undoes what the pod's
  record names, and raises NetworkError;
* the supervisor ends before the runner takes the answer (an error before
  the pod is made): leaving the `with` block waits for it and undoes the
  network;
* the supervisor dies (SIGKILL): the child is killed with it
  (PR_SET_PDEATHSIG); what it made is recorded under the dead supervisor's
  name and undone by the pod's next start, as after a supervisor killed
  while it made the network itself.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import threading
import time
from typing import Literal, NoReturn

import anyio

from podvisor.init import syscalls
from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.manifest.model import Pod
from podvisor.supervisor.network.model import NetworkRequest
from podvisor.supervisor.network.pod import (
    PodNetwork,
    create_network_sync,
    hand_over,
    undo_recorded,
)
from podvisor.supervisor.network.records import Owner

#: How long the child may take before it is killed (and what it made undone);
#: it takes well under a second.
ANSWER_TIMEOUT = 30.0

Answer = tuple[Literal["network"], PodNetwork] | tuple[Literal["error"], str]


class NetworkMaker:
    """A forked child making the pod's network; the parent's handle on its answer."""

    def __init__(self, request: NetworkRequest, owner: Owner, pid: int, answers: int) -> None:
        self.request = request
        self.owner = owner
        self.pid = pid
        self._answers = answers  # the pipe's read end
        self.taken = False

    @classmethod
    def fork(cls, pod: Pod) -> NetworkMaker | None:
        """Fork a child that makes *pod*'s network; None when the runner should make it."""
        if threading.active_count() > 1:
            return None
        request = NetworkRequest.for_pod(pod)
        owner = Owner.current()  # its lock taken here, held by the supervisor
        parent = os.getpid()
        answers, answer_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(answers)
            os.close(answer_end)
            return None
        if pid == 0:
            os.close(answers)
            _make_and_answer(request, owner, answer_end, parent)
        os.close(answer_end)
        return cls(request, owner, pid, answers)

    # --- the runner ----------------------------------------------------------

    async def network(self) -> PodNetwork:
        """The network made for `request`; NetworkError (and nothing left) when it was not."""
        self.taken = True
        with anyio.CancelScope(shield=True):
            network = await anyio.to_thread.run_sync(self._take)
        return await hand_over(network)

    def _take(self) -> PodNetwork:
        return self._outcome(_read_all(self._answers, time.monotonic() + ANSWER_TIMEOUT))

    def _outcome(self, data: bytes | None) -> PodNetwork:
        """The network the child answered *data*; else raise, once what it left is undone.

        *data*: all the child wrote; None when it did not finish in time.
        """
        answer, status = self._finish(data)
        if answer is None:
            undo_recorded(self.request, self.owner)
            why = (
                f"did not answer within {ANSWER_TIMEOUT:g} s and was killed"
                if data is None
                else f"ended without an answer ({_describe(status)})"
            )
            raise NetworkError(
                f"the process making the network of pod {self.request.pod_name} "
                f"(pid {self.pid}) {why}"
            )
        if answer[0] == "error":
            raise NetworkError(answer[1])
        return answer[1]

    def _finish(self, data: bytes | None) -> tuple[Answer | None, int]:
        """The answer in *data*, and the child's wait status (it is killed if *data* is None)."""
        os.close(self._answers)
        if data is None:
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        return _decode(data or b""), status

    # --- the supervisor's way out ----------------------------------------------

    def close(self) -> None:
        """If the runner did not take the network: wait for the child, then undo what it made."""
        if self.taken:
            return
        self.taken = True
        answer, _ = self._finish(_read_all(self._answers, time.monotonic() + ANSWER_TIMEOUT))
        if answer is None:
            undo_recorded(self.request, self.owner)
        elif answer[0] == "network":
            answer[1].close_blocking()

    def __enter__(self) -> NetworkMaker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the child --------------------------------------------------------------


def _make_and_answer(
    request: NetworkRequest, owner: Owner, answer_end: int, parent: int
) -> NoReturn:
    """In the child: make the network, write the answer, exit. Never returns."""
    status = 1
    try:
        syscalls.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() == parent:  # else the supervisor died before the line above
            # The supervisor decides what becomes of the network; the child
            # finishes its fraction of a second whatever the terminal sends.
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)
            syscalls.set_process_name("podvisor-net")
            # The supervisor and the init need the CPU first: they are the
            # start's critical path, and the child has time to spare (its
            # answer is read a few hundred ms from now). Three busy processes
            # on two cores slowed the supervisor's imports by a fifth.
            os.nice(19)
            answer: Answer
            try:
                answer = ("network", create_network_sync(request, owner))
            except NetworkError as e:
                answer = ("error", str(e))
            except Exception as e:  # a bug: said, rather than an answer missing
                answer = ("error", f"cannot make the network of pod {request.pod_name}: {e!r}")
            with open(answer_end, "wb") as pipe:
                pipe.write(pickle.dumps(answer))
            status = 0
    finally:
        # Never the parent's exit path: no atexit handler (one would remove the
        # supervisor's owner lock), no flush of stdio buffers copied at the fork.
        os._exit(status)


# --- reading the answer -----------------------------------------------------


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Everything until end-of-file, blocking; None if *deadline* passes first."""
    os.set_blocking(fd, False)
    data = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while (left := deadline - time.monotonic()) > 0:
        if not poller.poll(left * 1000):
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return bytes(data)
        data += chunk
    return None


def _decode(data: bytes) -> Answer | None:
    if not data:
        return None
    try:
        # Written by our own child over a pipe only it and we hold.
        answer: Answer = pickle.loads(data)  # noqa: S301
    except (pickle.UnpicklingError, EOFError):
        return None  # cut short: the child died while it wrote
    return answer


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
