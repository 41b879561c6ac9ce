"""`InitClient`: the one object that talks to the pod's init.

How this works
--------------
`InitClient.start` gives an init its `Plan` (one started ahead, a
`WaitingInit`, or a new one) and reads the channel until the init says it
serves. From then on one task, `serve`, reads every event the init sends, in
the order it sent them:

- a reply (`Spawned`, `SpawnFailed`, `Signalled`) goes to the request that
  waits for it, matched by ``id``;
- `Spawned` also makes the process's `InitProcessHandle` there and then,
  before the reader goes on to the next event, so the process's `Exited`,
  however soon it follows, always finds its handle: an exit can never come
  "before" its spawn;
- `Exited` settles its handle, which its owner awaits (the runner for a
  container's program, the exec tracker for a probe's command);
- anything else (`SignalReceived`, `OrphansReaped`, `Refused`) goes to
  `notices`, which the runner reads.

When the init goes away (end-of-file), waiting requests fail with
`InitDiedError`, and so does every handle not yet settled.

A spawn is shielded and time-limited here, once for every caller: once the
init has the request, the process exists, and its handle must reach the
caller (who kills it if it was itself cancelled meanwhile).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from podvisor.init import protocol, seqpacket
from podvisor.supervisor.errors import InitDiedError, NamespaceError
from podvisor.supervisor.packets import PacketStream
from podvisor.supervisor.pod.sandbox import InitProcess, SandboxPlan, WaitingInit

#: Seconds for the init to answer a spawn; it answers at once when alive.
SPAWN_WAIT = 30.0
#: Seconds for a new init to say it serves.
READY_WAIT = 30.0

Notice = protocol.SignalReceived | protocol.OrphansReaped | protocol.Refused
Reply = protocol.Spawned | protocol.SpawnFailed | protocol.Signalled


class InitProcessHandle:
    """A process the pod's init spawned: its pid, and its exit once reported."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None
        self.signal: int | None = None
        self._lost = False
        self._done = anyio.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> None:
        """Until the init reports the exit; InitDiedError if the init went first."""
        await self._done.wait()
        if self._lost:
            raise InitDiedError("the pod's init exited before the process did")

    def _settle(self, code: int | None, signum: int | None) -> None:
        self.code, self.signal = code, signum
        self._done.set()

    def _lose(self) -> None:
        self._lost = True
        self._done.set()


@dataclass
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: Reply | None = None
    handle: InitProcessHandle | None = None


class InitClient:
    """The pod's init: its process, its plan, and the channel to it."""

    def __init__(self, process: InitProcess, stream: PacketStream, plan: SandboxPlan) -> None:
        self.process = process
        self.plan = plan
        #: The init proper (PID 1 of the pod), as this machine's /proc numbers it.
        self.host_pid = 0
        self._stream = stream
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._processes: dict[int, InitProcessHandle] = {}
        #: The init closed the channel: nothing can be sent any more.
        self._gone = False
        #: Nobody reads the channel any more: a reply would never be seen.
        self._unread = False
        send, receive = anyio.create_memory_object_stream[Notice](math.inf)
        self._notices_in: MemoryObjectSendStream[Notice] = send
        self.notices: MemoryObjectReceiveStream[Notice] = receive

    # --- starting ------------------------------------------------------------------

    @classmethod
    async def start(cls, plan: SandboxPlan, waiting: WaitingInit | None = None) -> InitClient:
        """Give an init its plan and wait until it serves; NamespaceError if it cannot.

        *waiting*: an init started ahead and not yet given a plan; without
        one (or once it has had its plan), a new one is started.
        """
        if waiting is None or waiting.taken:
            waiting = WaitingInit()
        stream = PacketStream(waiting.take_channel(), protocol.MAX_MESSAGE)
        client = cls(waiting.process, stream, plan)
        try:
            # An init that is already gone is reported by _await_ready, with its status.
            with contextlib.suppress(OSError):
                await stream.send(protocol.encode(plan.message()))
            with anyio.fail_after(READY_WAIT):
                await client._await_ready()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                client.process.kill()
            with anyio.CancelScope(shield=True):
                await client.process.wait()
            client.close()
            client.process.close()
            raise
        return client

    async def _await_ready(self) -> None:
        """Read the channel until the init serves (no reader task runs yet).

        With a new PID namespace, also until the outer init has said which pid
        the inner one has here (`InitStarted`): both processes write to the
        channel, and the inner one's `Ready` may come first.
        """
        ready = False
        while not (ready and (self.host_pid or not self.plan.own_pid_namespace)):
            event = await self._receive()
            match event:
                case None:
                    code = await self.process.wait()
                    raise InitDiedError(
                        f"the pod's init exited with status {code} before it was ready"
                    )
                case protocol.InitStarted(host_pid):
                    self.host_pid = host_pid
                case protocol.InitFailed(message):
                    raise NamespaceError(f"the pod's init could not set up: {message}")
                case protocol.Ready():
                    ready = True
                case _:
                    await self._dispatch(event)
        self.host_pid = self.host_pid or self.process.pid

    def namespace_pid(self) -> int:
        """A pid whose /proc/PID/ns/* are the pod's namespaces."""
        return self.host_pid or self.process.pid

    # --- requests ------------------------------------------------------------------

    async def spawn(
        self, spec: protocol.Process, fds: Sequence[int] = ()
    ) -> InitProcessHandle | protocol.SpawnFailed:
        """Start *spec* with *fds* as its 0, 1, 2 (and its extra fds): its handle, or why not.

        The fds stay the caller's to close. InitDiedError when the init is
        gone or does not answer in time.
        """
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(SPAWN_WAIT):
                pending = await self._request(protocol.Spawn(0, spec), fds)
        except TimeoutError as exc:
            raise InitDiedError(f"the pod's init did not answer in {SPAWN_WAIT:g} s") from exc
        if pending.handle is not None:
            return pending.handle
        assert isinstance(pending.reply, protocol.SpawnFailed)
        return pending.reply

    async def signal(self, pid: int, signum: int, *, group: bool = False) -> int:
        """Send *signum* to a process the init spawned (and its group): 0, or the errno."""
        pending = await self._request(protocol.Signal(0, pid, signum, group))
        assert isinstance(pending.reply, protocol.Signalled)
        return pending.reply.errno

    async def stop_all(self, grace: float) -> None:
        """Ask the init to end every process of the pod and exit (no reply)."""
        await self._send(protocol.StopAll(grace))

    async def _request(
        self, message: protocol.Spawn | protocol.Signal, fds: Sequence[int] = ()
    ) -> _Pending:
        if self._unread:
            raise InitDiedError("the pod's init is not being listened to any more")
        rid = next(self._ids)
        pending = self._pending[rid] = _Pending()
        try:
            if isinstance(message, protocol.Spawn):
                await self._send(protocol.Spawn(rid, message.process), fds)
            else:
                await self._send(protocol.Signal(rid, message.pid, message.signal, message.group))
            await pending.done.wait()
        finally:
            self._pending.pop(rid, None)
        if pending.reply is None:
            raise InitDiedError("the pod's init exited before it answered")
        return pending

    async def _send(self, message: protocol.Request, fds: Sequence[int] = ()) -> None:
        if self._gone:
            raise InitDiedError("the pod's init is gone; the pod is being torn down")
        try:
            await self._stream.send(protocol.encode(message), fds)
        except OSError as exc:
            raise InitDiedError(f"the channel to the pod's init broke: {exc}") from exc

    # --- events --------------------------------------------------------------------

    async def serve(self) -> None:
        """Read the init's events until it closes the channel; run this in a task of its own."""
        try:
            while (event := await self._receive()) is not None:
                await self._dispatch(event)
            self._gone = True  # end-of-file; a cancelled reader leaves the channel open
        finally:
            self._unread = True
            for pending in self._pending.values():
                pending.done.set()
            for handle in self._processes.values():
                handle._lose()
            self._processes.clear()
            self._notices_in.close()

    async def _receive(self) -> protocol.Event | None:
        """The next event; None at end-of-file, or when the init sent what it cannot mean."""
        try:
            packet = await self._stream.receive()
        except seqpacket.PacketError:
            return None
        if packet is None:
            return None
        data, fds = packet
        for fd in fds:  # the init sends none: nothing of the pod's may reach us that way
            os.close(fd)
        try:
            return protocol.decode_event(data)
        except protocol.ProtocolError as exc:
            await self._notices_in.send(protocol.Refused(f"from the pod's init: {exc}"))
            return await self._receive()

    async def _dispatch(self, event: protocol.Event) -> None:
        match event:
            case protocol.Spawned() | protocol.SpawnFailed() | protocol.Signalled():
                self._answer(event.id, event)
            case protocol.Exited(_, pid, code, signum):
                handle = self._processes.pop(pid, None)
                if handle is not None:
                    handle._settle(code, signum)
            case protocol.SignalReceived() | protocol.OrphansReaped() | protocol.Refused():
                await self._notices_in.send(event)
            case protocol.InitStarted() | protocol.InitFailed() | protocol.Ready():
                pass  # start-up's, read by _await_ready

    def _answer(self, rid: int, reply: Reply) -> None:
        if isinstance(reply, protocol.Spawned):
            # Made here, before the next event is read: the exit finds it.
            handle = self._processes[reply.pid] = InitProcessHandle(reply.pid)
        else:
            handle = None
        pending = self._pending.get(rid)
        if pending is not None:
            pending.reply, pending.handle = reply, handle
            pending.done.set()

    def close(self) -> None:
        self._gone = True
        self._notices_in.close()
        self.notices.close()
        self._stream.close()
