"""The pod's network, made by a forked child while the supervisor starts.

How this works. On the bridge (and in host mode, which looks up the host's
address), making the pod's network costs a start about 160 ms: pyroute2's
import, its asyncio included, then the netlink and nft work. So `podvisor
run` forks a child first of all (`NetworkMaker.fork`), before the manifest
is read (by another child: `forked`, `cli`). The child imports pyroute2 on
the other core meanwhile, then waits for its request: the parent sends the
pod's `NetworkRequest` (`NetworkMaker.make`), or kills the child if the pod
needs no maker (`NetworkMaker.dismiss`: a loopback pod, or a manifest with
an error). The child makes the network while the parent imports its runner,
and the runner then only takes the answer (`NetworkMaker.network`).

A fork, not a new interpreter: the child shares what the parent imported
before the fork (podvisor's entry point, this module) and imports the rest
of the network code and pyroute2 itself. A process with threads does not
fork (a lock another thread held at the fork would stay held in the child);
`fork` then returns None and the runner makes the network itself, as it
does in loopback mode, which needs no pyroute2. Every record the child writes names the supervisor
as its owner, never the child, which lives for a moment.

Request and answer travel on pipes, packed (`forked.pack`: marshal data, as
parent and child are one program): the request is (NetworkRequest, Owner), the answer ("network",
PodNetwork) or ("error", what went wrong).

How it ends:

* no request (dismissed): the child is killed; it has made nothing;
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

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal, NoReturn

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.forked import describe_status, fork_with_pipes, pack, unpack

# The rest of the network package is imported where it is used: the fork comes
# first of all, and the child imports it on its own core (`_serve`).
if TYPE_CHECKING:
    from podvisor.supervisor.manifest.model import Pod
    from podvisor.supervisor.network.model import NetworkRequest
    from podvisor.supervisor.network.pod import PodNetwork
    from podvisor.supervisor.network.records import Owner

    Answer = tuple[Literal["network"], PodNetwork] | tuple[Literal["error"], str]

#: How long the child may take before it is killed (and what it made undone);
#: it takes well under a second.
ANSWER_TIMEOUT = 30.0


class NetworkMaker:
    """A forked child that makes the pod's network; the parent's handle on it."""

    def __init__(self, pid: int, requests: int, answers: int) -> None:
        self.pid = pid
        self._requests = requests  # the request pipe's write end; -1 once sent
        self._answers = answers  # the answer pipe's read end
        self._sent: tuple[NetworkRequest, Owner] | None = None
        self.taken = False  # the answer was read (or the child dismissed)

    @classmethod
    def fork(cls) -> NetworkMaker | None:
        """Fork a child that prepares, then waits for `make`; None if this process cannot."""
        parent = os.getpid()
        forked = fork_with_pipes(2)
        if forked is None:
            return None
        pid, (requests, request_end, answers, answer_end), mask = forked
        if pid == 0:
            os.close(request_end)
            os.close(answers)
            _serve(requests, answer_end, parent, mask)
        os.close(requests)
        os.close(answer_end)
        return cls(pid, request_end, answers)

    def make(self, pod: Pod) -> None:
        """Have the child make *pod*'s network; the runner takes it with `network`."""
        from podvisor.supervisor.network.model import NetworkRequest
        from podvisor.supervisor.network.records import Owner

        request = NetworkRequest.for_pod(pod)
        owner = Owner.current()  # its lock taken here, held by the supervisor
        data = pack((request, owner))
        try:
            # A child that died already reads nothing: `network` says it ended.
            with contextlib.suppress(BrokenPipeError):
                _write_all(self._requests, data)
        finally:
            # Closed whatever happened: the child reads end-of-file, and
            # answers, or ends, rather than wait for the rest.
            os.close(self._requests)
            self._requests = -1
            self._sent = (request, owner)

    def dismiss(self) -> None:
        """No network for the child to make: it goes, having made nothing."""
        if self._sent is not None:
            raise RuntimeError("dismiss: the child was sent a request; close() undoes its work")
        if self.taken:
            return  # dismissed already
        self.taken = True
        os.close(self._requests)
        self._finish(None)  # killed: it has only imported, there is nothing to undo

    @property
    def request(self) -> NetworkRequest:
        """What `make` asked the child for."""
        return self._sent_request()[0]

    def _sent_request(self) -> tuple[NetworkRequest, Owner]:
        if self._sent is None:
            raise RuntimeError("the network maker has no request: call make() first")
        return self._sent

    # --- the runner ----------------------------------------------------------

    async def network(self) -> PodNetwork:
        """The network made for `request`; NetworkError (and nothing left) when it was not."""
        import anyio

        from podvisor.supervisor.network.pod import hand_over

        self._sent_request()  # else the child would wait for one, and we for it
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
        from podvisor.supervisor.network.pod import undo_recorded

        answer, status = self._finish(data)
        if answer is None:
            undo_recorded(*self._sent_request())
            why = (
                f"did not answer within {ANSWER_TIMEOUT:g} s and was killed"
                if data is None
                else f"ended without an answer ({describe_status(status)})"
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
        """If the runner did not take the network: wait for the child, then undo what it made.

        A child that was never sent a request is dismissed.
        """
        if self.taken:
            return
        if self._sent is None:
            self.dismiss()
            return
        from podvisor.supervisor.network.pod import undo_recorded

        self.taken = True
        answer, _ = self._finish(_read_all(self._answers, time.monotonic() + ANSWER_TIMEOUT))
        if answer is None:
            undo_recorded(*self._sent)
        elif answer[0] == "network":
            answer[1].close_blocking()

    def __enter__(self) -> NetworkMaker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the child --------------------------------------------------------------


#: What the child ignores: the supervisor decides what becomes of the network,
#: and the child finishes its fraction of a second whatever the terminal sends.
_CHILD_IGNORES = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def _serve(requests: int, answer_end: int, parent: int, mask: Iterable[int]) -> NoReturn:
    """In the child: prepare, read the request, make the network, answer, exit.

    *mask*: the signal mask to restore once `_CHILD_IGNORES` are ignored.
    """
    status = 1
    try:
        from podvisor.init import syscalls  # ctypes: the child's, not the supervisor's

        syscalls.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() == parent:  # else the supervisor died before the line above
            for signum in _CHILD_IGNORES:
                signal.signal(signum, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            syscalls.set_process_name("podvisor-net")
            # The supervisor and the init need the CPU first: they are the
            # start's critical path, and the child has time to spare (its
            # answer is read a few hundred ms from now). Three busy processes
            # on two cores slowed the supervisor's imports by a fifth.
            os.nice(19)
            # This package and pyroute2, while the manifest is read.
            # If pyroute2 fails, it fails again below, where that is answered.
            from podvisor.supervisor.network import create, links

            with contextlib.suppress(Exception):
                links.preload()
            with open(requests, "rb") as pipe:
                sent = pipe.read()
            if sent:  # else dismissed, or the parent ended
                # Written by our own parent over a pipe only it and we hold.
                request, owner = unpack(sent)
                with open(answer_end, "wb") as pipe:
                    pipe.write(pack(_answer(create.create_network_sync, request, owner)))
            status = 0
    finally:
        # Never the parent's exit path: no atexit handler (one would remove the
        # supervisor's owner lock), no flush of stdio buffers copied at the fork.
        os._exit(status)


def _answer(
    create: Callable[[NetworkRequest, Owner], PodNetwork], request: NetworkRequest, owner: Owner
) -> Answer:
    try:
        return ("network", create(request, owner))
    except NetworkError as e:
        return ("error", str(e))
    except Exception as e:  # a bug: said, rather than an answer missing
        return ("error", f"cannot make the network of pod {request.pod_name}: {e!r}")


# --- the pipes -------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
        answer: Answer = unpack(data)
    except (ValueError, EOFError):
        return None  # cut short: the child died while it wrote
    return answer
