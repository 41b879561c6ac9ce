"""The pod's control socket: what answers `podvisor ps/status/logs/exec/restart/...`.

How this works
--------------
`serve_control(runner)` (in `control_socket`) runs as one task of the
runner's task group. It binds the pod's socket (where, and the protocol:
`control_protocol`), reports started, and accepts connections, each served
by a task of its own (`ControlServer.serve_connection`), until the pod
finishes and the runner cancels it; the socket is removed then. This module
is imported by the first connection. A connection carries one request.
Handlers read the runner and act only through what the runner already
offers, so the pod's fate stays with the lifecycle core: `post` for stop and
restart (the core decides what happens), the init's channel for exec and
kill, the container's cgroup for pause and resume. A handler's failure costs
its own connection, never the pod: every error is answered, and a bug is also
logged.

exec
----
The command is spawned by the pod's init like an exec probe (the container's
environment, user, working directory and cgroup, the pod's namespaces), with
the three descriptors the client passed as its stdin, stdout and stderr:
bytes never pass through the supervisor. With ``-t`` the command gets a new
pseudo-terminal instead, as ``docker exec -t`` gives one: its slave is the
command's stdin, stdout, stderr and controlling terminal (so a shell has job
control, and Ctrl-C reaches whatever runs in its foreground), and its master
goes back to the client with the reply; the client copies between it and the
caller's terminal, in raw mode, and sets its window size. The init client
hands back the command's handle, which settles with its exit. Signals the
client relays (Ctrl-C without a terminal) go to the command's process group,
as a terminal would send them; a client that hangs up gets its command
SIGHUPed, then SIGKILLed, as sshd does.

The other modules: `control_protocol` (where sockets live, the messages, the
client's end), `control_socket` (binding, one connection), `control_logs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import signal
import socket
import struct
import termios
from collections.abc import Callable

import anyio
import anyio.abc

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.cgroups import CgroupStats
from podvisor.supervisor.control.client import close_all
from podvisor.supervisor.control.connection import Connection
from podvisor.supervisor.control.describe import conditions, detail, event_records
from podvisor.supervisor.control.logs import serve_logs
from podvisor.supervisor.control.server import ControlSocket
from podvisor.supervisor.control.wire import (
    CPU_SAMPLE_SECONDS,
    AttachStdin,
    ContainerRow,
    Describe,
    DescribeReply,
    Done,
    Error,
    Events,
    EventsReply,
    Exec,
    ExecExited,
    ExecStarted,
    Finished,
    Kill,
    Killed,
    Logs,
    Pause,
    Paused,
    PodSummary,
    Ps,
    PsReply,
    Request,
    Restart,
    Resume,
    Resumed,
    Scrape,
    ScrapeReply,
    Signal,
    Status,
    StatusReply,
    StdinAttached,
    Stop,
    Termination,
)
from podvisor.supervisor.errors import (
    CgroupError,
    ControlError,
    ControlMessageError,
    InitDiedError,
)
from podvisor.supervisor.manifest.model import Container, ContainerKind
from podvisor.supervisor.pod.init_client import InitProcessHandle
from podvisor.supervisor.pod.view import PodView

#: Connections served at once; more wait in the backlog.
MAX_CONNECTIONS = 64
#: A client must send its request this soon after it connects.
REQUEST_WAIT = 10.0
#: Between the SIGHUP and the SIGKILL of a command whose client hung up.
HANGUP_GRACE = 5.0
#: How long pause waits for the kernel to freeze every process.
FREEZE_WAIT = 10.0
DISCONNECTS = (BrokenPipeError, ConnectionResetError, TimeoutError)


def open_terminal(size: tuple[int, int] | None) -> tuple[int, int]:
    """A new pseudo-terminal (master, slave) for `exec -t`, at the caller's window size."""
    master, slave = os.openpty()
    if size is not None and all(0 < n < 0x10000 for n in size):
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        except OSError:
            close_all((master, slave))
            raise
    return master, slave


# =============================================================================
# The server
# =============================================================================


class ControlServer:
    """The requests' handlers; made by the socket's first connection (`serve_control`)."""

    def __init__(self, view: PodView, bound: ControlSocket) -> None:
        self.view = view
        self.bound = bound
        self._limiter = anyio.CapacityLimiter(MAX_CONNECTIONS)

    async def serve_connection(self, sock: socket.socket) -> None:
        """Answer the one request of the connection on *sock*, and close it."""
        async with self._limiter:
            conn = Connection(sock)
            try:
                await self._serve_request(conn)
            except anyio.get_cancelled_exc_class():  # the pod has finished: say so
                conn.send_nowait(Error(f"pod {self.view.pod.name!r} stopped before answering"))
                raise
            except Exception as exc:  # a failure costs its request, never the pod
                self._answer_failure(conn, exc)
            finally:
                conn.close()

    def _answer_failure(self, conn: Connection, exc: Exception) -> None:
        leaves = _leaves(exc)
        if all(isinstance(e, DISCONNECTS) for e in leaves):
            return  # the client went away: nobody to answer
        refused = next((e for e in leaves if isinstance(e, ControlError)), None)
        if refused is not None:
            conn.send_nowait(Error(str(refused)))
            return
        self.view.sink.system(f"control socket: a request failed: {exc!r}")
        conn.send_nowait(Error("internal error (see podvisor's log)"))

    async def _serve_request(self, conn: Connection) -> None:
        # The peer is checked once the request is in: refused before, a client
        # could fail to send it (EPIPE) and never read why. It is checked
        # before a request that cannot be read is answered, too.
        try:
            with anyio.fail_after(REQUEST_WAIT):
                received = await conn.receive()
        except ControlMessageError:
            self._check_peer(conn)
            raise
        if received is None:
            return
        request, fds = received
        if not isinstance(request, Exec):
            close_all(fds)
            fds = []
        try:
            self._check_peer(conn)
        except ControlError:
            close_all(fds)
            raise
        await self._dispatch(conn, request, fds)

    def _check_peer(self, conn: Connection) -> None:
        if conn.peer_uid() not in (0, os.geteuid()):
            raise ControlError(
                f"permission denied: the pod {self.view.pod.name!r} belongs to uid "
                f"{os.geteuid()}; use sudo"
            )

    async def _dispatch(self, conn: Connection, request: Request, fds: list[int]) -> None:
        match request:
            case Ps():
                await conn.send(PsReply(self._summary()))
            case Status():
                await self._status(conn)
            case Logs():
                await self._logs(conn, request)
            case Exec():
                await self._exec(conn, request, fds)
            case AttachStdin():
                close_all(fds)
                await self._attach_stdin(conn, request)
            case Restart():
                await self._restart(conn, request)
            case Kill():
                await self._kill(conn, request)
            case Pause():
                await self._pause(conn, request)
            case Resume():
                await self._resume(conn, request)
            case Stop():
                await self._stop(conn, request)
            case Events() | Describe() | Scrape():
                await self._report(conn, request)
            case _:  # a Signal belongs to a running exec
                raise ControlError(f"a {request.KIND!r} request comes only during an exec")

    # --- reading the pod -------------------------------------------------------------

    def _state(self) -> lc.PodState | None:
        return self.view.state

    def _require_state(self) -> lc.PodState:
        state = self._state()
        if state is None:
            raise ControlError("the pod is starting; try again in a moment")
        if state.finished:
            raise ControlError(f"the pod has finished ({state.phase.value})")
        return state

    def _names(self) -> list[str]:
        return [c.name for c in self.view.pod.spec.all_containers]

    def _container_name(self, name: str | None) -> str:
        """The request's container, which must exist; None: the first main one."""
        if name is None:
            main = [c for c in self.view.pod.spec.all_containers if c.kind is ContainerKind.MAIN]
            return main[0].name
        if name not in self._names():
            raise ControlError(
                f"pod {self.view.pod.name!r} has no container {name!r}; its containers: "
                + ", ".join(self._names())
            )
        return name

    def _running(self, name: str) -> lc.ContainerStatus:
        """The status of *name*, which must be running and not being stopped."""
        status = self._require_state().container(name)
        if status.step not in lc.UP:
            raise ControlError(f"container {name!r} is not running ({_describe(status)})")
        return status

    def _paused(self, name: str) -> bool:
        try:
            return self.view.cgroups[name].frozen()
        except (CgroupError, OSError):
            return False

    # --- ps and status ---------------------------------------------------------------

    def _summary(self) -> PodSummary:
        host, state = self.view, self._state()
        containers = state.containers if state is not None else ()
        serving = [c for c in containers if c.kind is not ContainerKind.INIT]
        metrics = host.metrics_address
        return PodSummary(
            name=host.pod.name,
            uid=host.pod.uid,
            phase=state.phase.value if state is not None else lc.PodPhase.PENDING.value,
            status=_pod_status(state),
            ready=sum(c.ready for c in serving),
            containers=len(serving) if state is not None else None,
            restarts=sum(c.restart_count for c in containers),
            start_time=host.wall_time(state.start_time) if state is not None else None,
            pod_ip=host.network.pod_ip if host.network is not None else None,
            metrics=_address(metrics),
            supervisor_pid=os.getpid(),
            owner_uid=os.geteuid(),
        )

    async def _status(self, conn: Connection) -> None:
        await conn.send(StatusReply(self._summary(), await self._rows()))

    async def _rows(self) -> tuple[ContainerRow, ...]:
        names = self._names()
        before, t0 = self._read_stats(names), anyio.current_time()
        await anyio.sleep(CPU_SAMPLE_SECONDS)  # CPU use is a rate: two readings apart
        after, t1 = self._read_stats(names), anyio.current_time()
        state = self._state()
        rows = []
        if state is not None:
            for c in state.containers:
                usage = _Usage.of(before.get(c.name), after.get(c.name), t1 - t0)
                rows.append(self._container_row(c, usage))
        return tuple(rows)

    def _read_stats(self, names: list[str]) -> dict[str, CgroupStats]:
        found = {}
        for name in names:
            with contextlib.suppress(CgroupError, OSError, KeyError):
                found[name] = self.view.cgroups[name].read()
        return found

    def _container_row(self, c: lc.ContainerStatus, usage: _Usage) -> ContainerRow:
        wall = self.view.wall_time
        last = c.terminated or c.previous  # the latest end, whatever the state now
        return ContainerRow(
            name=c.name,
            kind=c.kind.value,
            state=c.state.value,
            reason=c.reason.value if c.reason is not None else None,
            message=c.message or self._unready_because(c),
            ready=c.ready,
            started=c.started,
            restarts=c.restart_count,
            started_at=wall(c.started_at),
            pid=c.pid,
            paused=self._paused(c.name) if c.step in lc.LIVE else False,
            last_termination=_termination(last, wall),
            cpu_cores=usage.cpu_cores,
            cpu_seconds=usage.stats.cpu_usage_seconds,
            cpu_limit_cores=usage.cpu_limit_cores,
            memory_bytes=usage.stats.memory_working_set_bytes,
            memory_limit_bytes=usage.stats.memory_limit_bytes,
            pids=usage.stats.pids_current,
            pids_max=usage.stats.pids_max,
            last_state=_termination(c.last_state, wall),
        )

    # --- events, describe, the host's scrape -----------------------------------------------

    async def _report(self, conn: Connection, request: Events | Describe | Scrape) -> None:
        match request:
            case Events():
                await conn.send(EventsReply(event_records(self.view)))
            case Describe():
                await self._describe(conn)
            case Scrape():
                await conn.send(self._scrape())

    async def _describe(self, conn: Connection) -> None:
        rows = await self._rows()
        state = self._state()
        message = ""
        if state is not None and state.finished:
            message = lc.last_words(state)
        elif state is not None and state.reason is not None:
            message = f"{state.reason.value}: {state.message}"
        details = tuple(detail(c) for c in self.view.pod.spec.all_containers)
        events = event_records(self.view)
        reply = DescribeReply(self._summary(), message, rows, details, conditions(state), events)
        await conn.send(reply)

    def _scrape(self) -> ScrapeReply:
        exposition = self.view.exposition
        if exposition is None:
            raise ControlError(f"pod {self.view.pod.name!r} serves no metrics")
        pod = self.view.pod
        return ScrapeReply(pod.name, pod.namespace, exposition().decode())

    def _unready_because(self, c: lc.ContainerStatus) -> str:
        """A running container that is not ready: its last failed probe's words."""
        if c.state is not lc.State.RUNNING or c.ready:
            return ""
        for e in reversed(self.view.journal.events):
            if e.container == c.name and e.reason == "Unhealthy":
                return e.message
        return ""

    # --- logs --------------------------------------------------------------------------

    async def _logs(self, conn: Connection, request: Logs) -> None:
        names = self._names()
        if request.container is not None:
            names = [self._container_name(request.container)]
        if request.previous:
            self._check_previous(names)
        await serve_logs(
            conn,
            self.view.sink.containers,
            names,
            previous=request.previous,
            since=request.since,
            tail=request.tail,
            follow=request.follow,
        )

    def _check_previous(self, names: list[str]) -> None:
        """Asked for one container, --previous needs a previous instance (as kubectl says)."""
        if len(names) != 1:
            return
        name, state = names[0], self._state()
        restarted = state is not None and state.container(name).restart_count > 0
        if not restarted and not self.view.sink.containers[name].previous:
            raise ControlError(
                f"container {name!r} has not restarted: it has no previous instance "
                "(drop --previous for the current one's lines)"
            )

    # --- attach -i -----------------------------------------------------------------------

    async def _attach_stdin(self, conn: Connection, request: AttachStdin) -> None:
        """Hand the client a copy of where the container's stdin is written; wait until it
        leaves, which is the attach's end (stdinOnce closes the stdin then)."""
        name = self._container_name(request.container)
        c = self.view.container(name)
        if not c.stdin:
            raise ControlError(
                f"container {name!r} has no stdin to attach to: its manifest sets no "
                "`stdin: true` (attach without -i follows its output)"
            )
        self._running(name)
        instance = self.view.instances.get(name)
        fd = instance.attach_stdin() if instance is not None else None
        if instance is None or fd is None:
            raise ControlError(f"container {name!r} is not running, or its stdin was closed")
        try:
            if c.tty and request.size is not None:
                with contextlib.suppress(OSError):
                    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *request.size, 0, 0))
            await conn.send(StdinAttached(name, c.tty), (fd,))
        finally:
            os.close(fd)  # the client has its own copy
        try:
            while (received := await conn.receive()) is not None:
                close_all(received[1])  # nothing more is asked on this connection
        finally:
            instance.attach_left()

    # --- exec -------------------------------------------------------------------------

    async def _exec(self, conn: Connection, request: Exec, fds: list[int]) -> None:
        master: int | None = None
        try:
            if request.tty:
                close_all(fds)  # the command's stdio is a terminal of its own instead
                fds = []
                master, slave = open_terminal(request.size)
                fds = [slave]
            done = await self._spawn(request, fds * 3 if master is not None else fds)
            close_all(fds)
            fds = []
            if isinstance(done, Error):
                await conn.send(done)
                return
            pid = done.pid
            try:
                await conn.send(ExecStarted(pid), (master,) if master is not None else ())
            except DISCONNECTS:  # the client died as the command started
                await self._hang_up(pid, done)
                return
        finally:
            close_all(fds if master is None else [*fds, master])  # the client has its own master
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._relay, conn, pid, done)
            try:
                await done.wait()
            except InitDiedError as exc:
                raise ControlError(f"the command's pod is gone: {exc}") from exc
            tg.cancel_scope.cancel()
        await conn.send(ExecExited(done.code, done.signal))

    async def _spawn(self, request: Exec, fds: list[int]) -> InitProcessHandle | Error:
        """Start the command: its process, or the error to answer."""
        if len(fds) != 3:
            raise ControlError("exec needs three file descriptors: stdin, stdout and stderr")
        argv = request.argv
        if not argv:
            raise ControlError("exec needs a command: podvisor exec POD -- COMMAND [ARG...]")
        name = self._container_name(request.container)
        self._running(name)
        if self._paused(name):
            raise ControlError(f"container {name!r} is paused: `podvisor resume` it first")
        init = self.view.init
        spec = self.view.process_for(self.view.container(name), argv)
        env = {**spec.env, **request.env}
        spec = dataclasses.replace(spec, env=env, tty=request.tty)
        try:
            spawned = await init.spawn(spec, fds)
        except InitDiedError as exc:
            raise ControlError(f"the pod's init did not start the command: {exc}") from exc
        if isinstance(spawned, InitProcessHandle):
            return spawned
        from podvisor.init.process import exec_failure_exit_code  # as the runner's: on failure

        err = OSError(spawned.errno or errno.ENOENT, "")
        return Error(
            f"cannot run {argv[0]} in container {name!r}: {spawned.message}",
            exec_failure_exit_code(err),
        )

    async def _relay(self, conn: Connection, pid: int, done: InitProcessHandle) -> None:
        """Pass the client's signals on to the command; hang it up when the client goes."""
        while True:
            received = await conn.receive()
            if received is None:
                break
            request, fds = received
            close_all(fds)
            if isinstance(request, Signal):
                await self._signal_group(pid, request.signal)
        await self._hang_up(pid, done)

    async def _hang_up(self, pid: int, done: InitProcessHandle) -> None:
        """What a terminal's hang-up does: SIGHUP, then (after a grace) SIGKILL."""
        await self._signal_group(pid, signal.SIGHUP)
        with anyio.move_on_after(HANGUP_GRACE), contextlib.suppress(InitDiedError):
            await done.wait()
        if not done.done:
            await self._signal_group(pid, signal.SIGKILL)

    async def _signal_group(self, pid: int, signum: int) -> None:
        if not 0 < signum < signal.NSIG:
            return
        with contextlib.suppress(InitDiedError):
            await self.view.init.signal(pid, signum, group=True)

    # --- restart, kill, pause, resume ----------------------------------------------------

    async def _restart(self, conn: Connection, request: Restart) -> None:
        name = self._container_name(request.container)
        state = self._require_state()
        if state.stopping:
            raise ControlError("the pod is stopping: nothing restarts any more")
        status = state.container(name)
        if status.step not in lc.UP | {lc.Step.BACK_OFF}:
            raise ControlError(f"container {name!r} cannot be restarted now ({_describe(status)})")
        self._thaw(name)  # a frozen process cannot act on its stop signal
        self.view.restart(name)
        await conn.send(Done())

    async def _kill(self, conn: Connection, request: Kill) -> None:
        name = self._container_name(request.container)
        signum = request.signal
        if not 0 < signum < signal.NSIG:
            raise ControlError(f"not a signal number: {signum!r}")
        self._require_state()
        instance = self.view.instances.get(name)
        if instance is None:
            raise ControlError(f"container {name!r} has no process to signal")
        try:
            err = await self.view.init.signal(instance.pid, signum)
        except InitDiedError as exc:
            raise ControlError(str(exc)) from exc
        if err:
            raise ControlError(f"cannot signal container {name!r}: {os.strerror(err)}")
        await conn.send(Killed(self._paused(name)))

    async def _pause(self, conn: Connection, request: Pause) -> None:
        name = self._container_name(request.container)
        self._running(name)
        cgroup = self.view.cgroups[name]
        try:
            cgroup.freeze()
            await cgroup.wait_frozen(FREEZE_WAIT)
        except CgroupError as exc:
            with contextlib.suppress(CgroupError):
                cgroup.thaw()
            raise ControlError(str(exc)) from exc
        await conn.send(Paused(_probes(self.view.container(name))))

    async def _resume(self, conn: Connection, request: Resume) -> None:
        name = self._container_name(request.container)
        self._require_state()
        was_paused = self._paused(name)
        try:
            self.view.cgroups[name].thaw()
        except CgroupError as exc:
            raise ControlError(str(exc)) from exc
        await conn.send(Resumed(was_paused))

    def _thaw(self, name: str) -> None:
        with contextlib.suppress(CgroupError, OSError):
            if self.view.cgroups[name].frozen():
                self.view.cgroups[name].thaw()

    # --- stop -------------------------------------------------------------------------

    async def _stop(self, conn: Connection, request: Stop) -> None:
        self._require_state()
        for name in self._names():
            self._thaw(name)
        immediate = request.immediate
        what = "killing the pod now" if immediate else "stopping the pod"
        self.view.sink.system(f"`podvisor stop` asked for it: {what}")
        self.view.post(lc.StopRequested(immediate=immediate, signal=int(signal.SIGTERM)))
        await conn.send(Done())
        try:
            await conn.receive()  # until the client hangs up, or the pod's end cancels us
        finally:
            state = self._state()
            if state is not None and state.finished:
                self.bound.close()  # gone before the client hears the pod has stopped
                conn.send_nowait(Finished(state.phase.value, state.exit_status))


# =============================================================================
# Helpers
# =============================================================================


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in *exc*, out of any task group's ExceptionGroup."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _pod_status(state: lc.PodState | None) -> str:
    """One word for `podvisor ps`, as kubectl's STATUS column derives it."""
    if state is None:
        return lc.PodPhase.PENDING.value
    if state.finished:
        return state.phase.value
    if state.stopping:
        return "Terminating"
    entries = [c for c in state.containers if c.kind is not ContainerKind.MAIN]
    if entries and not state.initialized:
        return f"Init:{state.gate}/{len(entries)}"
    for c in state.containers:
        if c.reason is lc.Reason.CRASH_LOOP_BACK_OFF:
            return c.reason.value
    return state.phase.value


def _describe(status: lc.ContainerStatus) -> str:
    text = status.state.value.capitalize()
    if status.reason is not None:
        text += f": {status.reason.value}"
    return text


def _address(address: object) -> str | None:
    if not isinstance(address, tuple) or len(address) != 2:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _termination(
    end: lc.Termination | None, wall: Callable[[float | None], float | None]
) -> Termination | None:
    if end is None:
        return None
    return Termination(
        reason=end.reason.value,
        exit_code=end.exit_code,
        signal=end.signal,
        message=end.message,
        started_at=wall(end.started_at),
        finished_at=wall(end.finished_at),
    )


@dataclasses.dataclass(frozen=True)
class _Usage:
    """A container's cgroup read twice: CPU (cores used over the sample), memory, pids."""

    #: The second reading (empty when the cgroup could not be read).
    stats: CgroupStats
    cpu_cores: float | None
    cpu_limit_cores: float | None

    @classmethod
    def of(cls, before: CgroupStats | None, after: CgroupStats | None, elapsed: float) -> _Usage:
        if after is None:
            after = CgroupStats()
        cores = None
        used = [s.cpu_usage_seconds for s in (before, after) if s is not None]
        if len(used) == 2 and used[0] is not None and used[1] is not None and elapsed > 0:
            cores = max(0.0, used[1] - used[0]) / elapsed
        limit = None
        if after.cpu_quota_us and after.cpu_period_us and after.cpu_quota_us > 0:
            limit = after.cpu_quota_us / after.cpu_period_us
        return cls(after, cores, limit)


def _probes(c: Container) -> tuple[str, ...]:
    found = [("startup", c.startup_probe), ("liveness", c.liveness_probe)]
    found.append(("readiness", c.readiness_probe))
    return tuple(kind for kind, probe in found if probe is not None)
