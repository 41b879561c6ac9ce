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
caller's terminal, in raw mode, and sets its window size. Its exit reaches
the same tracker as the exec probes' (`podvisor.sidecars.execs.Execs`), which
the runner feeds with every exit of a pid it did not start. Signals the
client relays (Ctrl-C without a terminal) go to the command's process group,
as a terminal would send them; a client that hangs up gets its command
SIGHUPed, then SIGKILLed, as sshd does.

The other modules: `control_protocol` (where sockets live, the messages, the
client's end), `control_socket` (binding, one connection), `control_logs`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import struct
import termios
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import anyio
import anyio.abc

from podvisor.init import protocol
from podvisor.sidecars.execs import Execs
from podvisor.sidecars.host import SandboxView
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.cgroups import CgroupStats
from podvisor.supervisor.control_logs import serve_logs
from podvisor.supervisor.control_protocol import CPU_SAMPLE_SECONDS, Message, close_all
from podvisor.supervisor.control_socket import Connection, ControlSocket
from podvisor.supervisor.errors import CgroupError, ControlError, InitDiedError
from podvisor.supervisor.logs import ContainerLog
from podvisor.supervisor.manifest.model import Container, ContainerKind, Pod

#: Connections served at once; more wait in the backlog.
MAX_CONNECTIONS = 64
#: A client must send its request this soon after it connects.
REQUEST_WAIT = 10.0
#: Seconds for the init to answer a spawn; it answers at once when alive.
SPAWN_WAIT = 30.0
#: Between the SIGHUP and the SIGKILL of a command whose client hung up.
HANGUP_GRACE = 5.0
#: How long pause waits for the kernel to freeze every process.
FREEZE_WAIT = 10.0
DISCONNECTS = (BrokenPipeError, ConnectionResetError, TimeoutError, protocol.ProtocolError)

# =============================================================================
# What the server needs of the runner
# =============================================================================


class NetworkView(Protocol):
    @property
    def pod_ip(self) -> str | None: ...


class CgroupControl(Protocol):
    def read(self) -> CgroupStats: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def frozen(self) -> bool: ...
    async def wait_frozen(self, timeout: float = 10) -> None: ...  # noqa: ASYNC109


class InstanceView(Protocol):
    @property
    def pid(self) -> int: ...


class ExitWaiter(Protocol):
    """One exec'd command's exit, as `Execs` reports it."""

    code: int | None
    signal: int | None

    @property
    def done(self) -> bool: ...

    async def wait(self) -> None: ...


class SinkView(Protocol):
    @property
    def containers(self) -> Mapping[str, ContainerLog]: ...

    def system(self, message: str) -> None: ...


class ControlHost(Protocol):
    """The pod runner as the control socket sees it (`PodRunner` fits it).

    `state` is read with ``getattr``: the runner sets it once the lifecycle
    core has begun, and a request may come earlier.
    """

    @property
    def pod(self) -> Pod: ...

    @property
    def sandbox(self) -> SandboxView | None: ...

    @property
    def network(self) -> NetworkView | None: ...

    @property
    def cgroups(self) -> Mapping[str, CgroupControl]: ...

    @property
    def instances(self) -> Mapping[str, InstanceView]: ...

    @property
    def sink(self) -> SinkView: ...

    def container(self, name: str) -> Container: ...

    def spawn_request(
        self, c: Container, argv: list[str] | tuple[str, ...]
    ) -> protocol.Message: ...

    def post(self, event: lc.Event) -> None: ...

    def wall_time(self, monotonic: float | None) -> float | None: ...

    def restart_container(self, name: str) -> None: ...


def open_terminal(size: object) -> tuple[int, int]:
    """A new pseudo-terminal (master, slave) for `exec -t`, at the caller's window size."""
    master, slave = os.openpty()
    if (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(n, int) and 0 < n < 0x10000 for n in size)
    ):
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        except OSError:
            close_all((master, slave))
            raise
    return master, slave


def _execs_of(host: ControlHost) -> Execs:
    """The tracker of exec'd pids that the runner feeds with their exits.

    It belongs to the runner's `ContainerActions` (not part of `ControlHost`
    yet, see the report of issue 9): one tracker, so no exit is lost between two.
    """
    execs = getattr(getattr(host, "_actions", None), "execs", None)
    if not isinstance(execs, Execs):
        raise ControlError("the pod is starting: it cannot run commands yet; try again")
    return execs


# =============================================================================
# One connection
# =============================================================================


Handler = Callable[[Connection, Message, list[int]], Coroutine[Any, Any, None]]


# =============================================================================
# The server
# =============================================================================


class ControlServer:
    """The requests' handlers; made by the socket's first connection (`serve_control`)."""

    def __init__(self, host: ControlHost, bound: ControlSocket) -> None:
        self.host = host
        self.bound = bound
        self._limiter = anyio.CapacityLimiter(MAX_CONNECTIONS)
        self._handlers: dict[str, Handler] = {
            "ps": self._ps,
            "status": self._status,
            "logs": self._logs,
            "exec": self._exec,
            "restart": self._restart,
            "kill": self._kill,
            "pause": self._pause,
            "resume": self._resume,
            "stop": self._stop,
        }

    async def serve_connection(self, sock: socket.socket) -> None:
        """Answer the one request of the connection on *sock*, and close it."""
        async with self._limiter:
            with sock:
                conn = Connection(sock)
                try:
                    await self._serve_request(conn)
                except anyio.get_cancelled_exc_class():  # the pod has finished: say so
                    error = f"pod {self.host.pod.name!r} stopped before answering"
                    conn.send_nowait({"ok": False, "error": error})
                    raise
                except Exception as exc:  # a failure costs its request, never the pod
                    self._answer_failure(conn, exc)

    def _answer_failure(self, conn: Connection, exc: Exception) -> None:
        leaves = _leaves(exc)
        if all(isinstance(e, DISCONNECTS) for e in leaves):
            return  # the client went away: nobody to answer
        refused = next((e for e in leaves if isinstance(e, ControlError)), None)
        if refused is not None:
            conn.send_nowait({"ok": False, "error": str(refused)})
            return
        self.host.sink.system(f"control socket: a request failed: {exc!r}")
        conn.send_nowait({"ok": False, "error": "internal error (see podvisor's log)"})

    async def _serve_request(self, conn: Connection) -> None:
        with anyio.fail_after(REQUEST_WAIT):
            received = await conn.receive()
        if received is None:
            return
        message, fds = received
        # Checked once the request is in: refused before, a client could fail
        # to send it (EPIPE) and never read why.
        if conn.peer_uid() not in (0, os.geteuid()):
            close_all(fds)
            raise ControlError(
                f"permission denied: the pod {self.host.pod.name!r} belongs to uid "
                f"{os.geteuid()}; use sudo"
            )
        handler = self._handlers.get(str(message.get("op")))
        if handler is None:
            close_all(fds)
            raise ControlError(
                f"unknown request {message.get('op')!r}: the pod's podvisor is another "
                "version than this command's"
            )
        if message.get("op") != "exec":
            close_all(fds)
            fds = []
        await handler(conn, message, fds)

    # --- reading the runner ----------------------------------------------------------

    def _state(self) -> lc.PodState | None:
        state = getattr(self.host, "state", None)
        return state if isinstance(state, lc.PodState) else None

    def _require_state(self) -> lc.PodState:
        state = self._state()
        if state is None:
            raise ControlError("the pod is starting; try again in a moment")
        if state.finished:
            raise ControlError(f"the pod has finished ({state.phase.value})")
        return state

    def _names(self) -> list[str]:
        return [c.name for c in self.host.pod.spec.all_containers]

    def _container_name(self, message: Message, *, default: bool = False) -> str:
        """The request's container: it must exist; with *default*, the first main one."""
        name = message.get("container")
        if name is None and default:
            main = [c for c in self.host.pod.spec.all_containers if c.kind is ContainerKind.MAIN]
            return main[0].name
        if not isinstance(name, str) or name not in self._names():
            raise ControlError(
                f"pod {self.host.pod.name!r} has no container {name!r}; its containers: "
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
            return self.host.cgroups[name].frozen()
        except (CgroupError, OSError):
            return False

    # --- ps and status ---------------------------------------------------------------

    async def _ps(self, conn: Connection, _: Message, __: list[int]) -> None:
        await conn.send({"ok": True, "pod": self._summary()})

    def _summary(self) -> Message:
        host, state = self.host, self._state()
        containers = state.containers if state is not None else ()
        serving = [c for c in containers if c.kind is not ContainerKind.INIT]
        metrics = getattr(getattr(host, "metrics", None), "address", None)
        return {
            "name": host.pod.name,
            "uid": host.pod.uid,
            "phase": state.phase.value if state is not None else lc.PodPhase.PENDING.value,
            "status": _pod_status(state),
            "ready": sum(c.ready for c in serving),
            "containers": len(serving) if state is not None else None,
            "restarts": sum(c.restart_count for c in containers),
            "start_time": host.wall_time(state.start_time) if state is not None else None,
            "pod_ip": host.network.pod_ip if host.network is not None else None,
            "metrics": _address(metrics),
            "supervisor_pid": os.getpid(),
            "owner_uid": os.geteuid(),
        }

    async def _status(self, conn: Connection, _: Message, __: list[int]) -> None:
        names = self._names()
        before, t0 = self._read_stats(names), anyio.current_time()
        await anyio.sleep(CPU_SAMPLE_SECONDS)  # CPU use is a rate: two readings apart
        after, t1 = self._read_stats(names), anyio.current_time()
        state = self._state()
        containers = []
        if state is not None:
            for c in state.containers:
                row = self._container_status(c)
                row.update(_resources(before.get(c.name), after.get(c.name), t1 - t0))
                containers.append(row)
        await conn.send({"ok": True, "pod": self._summary(), "containers": containers})

    def _read_stats(self, names: list[str]) -> dict[str, CgroupStats]:
        found = {}
        for name in names:
            with contextlib.suppress(CgroupError, OSError, KeyError):
                found[name] = self.host.cgroups[name].read()
        return found

    def _container_status(self, c: lc.ContainerStatus) -> Message:
        wall = self.host.wall_time
        last = c.terminated or c.previous  # the latest end, whatever the state now
        return {
            "name": c.name,
            "kind": c.kind.value,
            "state": c.state.value,
            "reason": c.reason.value if c.reason is not None else None,
            "message": c.message,
            "ready": c.ready,
            "started": c.started,
            "restarts": c.restart_count,
            "started_at": wall(c.started_at),
            "pid": c.pid,
            "paused": self._paused(c.name) if c.step in lc.LIVE else False,
            "last_termination": _termination(last, wall),
        }

    # --- logs --------------------------------------------------------------------------

    async def _logs(self, conn: Connection, message: Message, _: list[int]) -> None:
        names = self._names()
        if message.get("container") is not None:
            names = [self._container_name(message)]
        previous = bool(message.get("previous"))
        if previous:
            self._check_previous(names)
        await serve_logs(
            conn,
            self.host.sink.containers,
            names,
            previous=previous,
            since=message.get("since"),
            tail=message.get("tail"),
            follow=bool(message.get("follow")),
        )

    def _check_previous(self, names: list[str]) -> None:
        """Asked for one container, --previous needs a previous instance (as kubectl says)."""
        if len(names) != 1:
            return
        name, state = names[0], self._state()
        restarted = state is not None and state.container(name).restart_count > 0
        if not restarted and not self.host.sink.containers[name].previous:
            raise ControlError(
                f"container {name!r} has not restarted: it has no previous instance "
                "(drop --previous for the current one's lines)"
            )

    # --- exec -------------------------------------------------------------------------

    async def _exec(self, conn: Connection, message: Message, fds: list[int]) -> None:
        master: int | None = None
        try:
            if message.get("tty"):
                close_all(fds)  # the command's stdio is a terminal of its own instead
                fds = []
                master, slave = open_terminal(message.get("size"))
                fds = [slave]
            pid, reply = await self._spawn(message, fds * 3 if master is not None else fds)
            close_all(fds)
            fds = []
            if pid is None:
                await conn.send(reply)
                return
            done = _execs_of(self.host)._exit_of(pid)
            try:
                await conn.send({"ok": True, "pid": pid}, (master,) if master is not None else ())
            except DISCONNECTS:  # the client died as the command started
                await self._hang_up(pid, done)
                return
        finally:
            close_all(fds if master is None else [*fds, master])  # the client has its own master
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._relay, conn, pid, done)
            await done.wait()
            tg.cancel_scope.cancel()
        await conn.send({"ev": "exited", "code": done.code, "signal": done.signal})

    async def _spawn(self, message: Message, fds: list[int]) -> tuple[int | None, Message]:
        """Start the command: (its pid, None), or (None, the error to answer)."""
        if len(fds) != 3:
            raise ControlError("exec needs three file descriptors: stdin, stdout and stderr")
        argv = message.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ControlError("exec needs a command: podvisor exec POD -- COMMAND [ARG...]")
        name = self._container_name(message, default=True)
        self._running(name)
        if self._paused(name):
            raise ControlError(f"container {name!r} is paused: `podvisor resume` it first")
        sandbox = self.host.sandbox
        if sandbox is None:
            raise ControlError("the pod's init is not running")
        _execs_of(self.host)  # fail before the process exists, not after
        request = self.host.spawn_request(self.host.container(name), argv)
        request["tty"] = bool(message.get("tty"))
        extra = message.get("env")
        if isinstance(extra, dict):
            request["env"].update({str(k): str(v) for k, v in extra.items()})
        # Shielded: once the init has the request the process exists, and its
        # pid must be known to be waited for.
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(SPAWN_WAIT):
                reply, more = await sandbox.channel.request(request, fds)
        except (TimeoutError, InitDiedError) as exc:
            why = str(exc) or "no answer"
            raise ControlError(f"the pod's init did not start the command: {why}") from exc
        close_all(more)
        if reply.get("ev") == "spawned":
            return int(reply["pid"]), {}
        from podvisor.init.process import exec_failure_exit_code  # as the runner's: on failure

        err = OSError(int(reply.get("errno") or errno.ENOENT), "")
        return None, {
            "ok": False,
            "error": f"cannot run {argv[0]} in container {name!r}: {reply.get('message')}",
            "exit_code": exec_failure_exit_code(err),
        }

    async def _relay(self, conn: Connection, pid: int, done: ExitWaiter) -> None:
        """Pass the client's signals on to the command; hang it up when the client goes."""
        while True:
            received = await conn.receive()
            if received is None:
                break
            message, fds = received
            close_all(fds)
            if message.get("op") == "signal":
                await self._signal_group(pid, int(message.get("signal", 0)))
        await self._hang_up(pid, done)

    async def _hang_up(self, pid: int, done: ExitWaiter) -> None:
        """What a terminal's hang-up does: SIGHUP, then (after a grace) SIGKILL."""
        await self._signal_group(pid, signal.SIGHUP)
        with anyio.move_on_after(HANGUP_GRACE):
            await done.wait()
        if not done.done:
            await self._signal_group(pid, signal.SIGKILL)

    async def _signal_group(self, pid: int, signum: int) -> None:
        sandbox = self.host.sandbox
        if sandbox is None or not 0 < signum < signal.NSIG:
            return
        request = {"op": "signal", "pid": pid, "signal": signum, "group": True}
        with contextlib.suppress(InitDiedError):
            await sandbox.channel.request(request)

    # --- restart, kill, pause, resume ----------------------------------------------------

    async def _restart(self, conn: Connection, message: Message, _: list[int]) -> None:
        name = self._container_name(message)
        state = self._require_state()
        if state.stopping:
            raise ControlError("the pod is stopping: nothing restarts any more")
        status = state.container(name)
        if status.step not in lc.UP | {lc.Step.BACK_OFF}:
            raise ControlError(f"container {name!r} cannot be restarted now ({_describe(status)})")
        self._thaw(name)  # a frozen process cannot act on its stop signal
        self.host.restart_container(name)
        await conn.send({"ok": True})

    async def _kill(self, conn: Connection, message: Message, _: list[int]) -> None:
        name = self._container_name(message)
        signum = message.get("signal")
        if not isinstance(signum, int) or not 0 < signum < signal.NSIG:
            raise ControlError(f"not a signal number: {signum!r}")
        self._require_state()
        instance = self.host.instances.get(name)
        sandbox = self.host.sandbox
        if instance is None or sandbox is None:
            raise ControlError(f"container {name!r} has no process to signal")
        request = {"op": "signal", "pid": instance.pid, "signal": signum, "group": False}
        try:
            reply, _more = await sandbox.channel.request(request)
        except InitDiedError as exc:
            raise ControlError(str(exc)) from exc
        if reply.get("errno"):
            raise ControlError(f"cannot signal container {name!r}: {os.strerror(reply['errno'])}")
        await conn.send({"ok": True, "paused": self._paused(name)})

    async def _pause(self, conn: Connection, message: Message, _: list[int]) -> None:
        name = self._container_name(message)
        self._running(name)
        cgroup = self.host.cgroups[name]
        try:
            cgroup.freeze()
            await cgroup.wait_frozen(FREEZE_WAIT)
        except CgroupError as exc:
            with contextlib.suppress(CgroupError):
                cgroup.thaw()
            raise ControlError(str(exc)) from exc
        await conn.send({"ok": True, "probes": _probes(self.host.container(name))})

    async def _resume(self, conn: Connection, message: Message, _: list[int]) -> None:
        name = self._container_name(message)
        self._require_state()
        was_paused = self._paused(name)
        try:
            self.host.cgroups[name].thaw()
        except CgroupError as exc:
            raise ControlError(str(exc)) from exc
        await conn.send({"ok": True, "was_paused": was_paused})

    def _thaw(self, name: str) -> None:
        with contextlib.suppress(CgroupError, OSError):
            if self.host.cgroups[name].frozen():
                self.host.cgroups[name].thaw()

    # --- stop -------------------------------------------------------------------------

    async def _stop(self, conn: Connection, message: Message, _: list[int]) -> None:
        self._require_state()
        for name in self._names():
            self._thaw(name)
        immediate = bool(message.get("immediate"))
        what = "killing the pod now" if immediate else "stopping the pod"
        self.host.sink.system(f"`podvisor stop` asked for it: {what}")
        self.host.post(lc.StopRequested(immediate=immediate, signal=int(signal.SIGTERM)))
        await conn.send({"ok": True})
        try:
            await conn.receive()  # until the client hangs up, or the pod's end cancels us
        finally:
            state = self._state()
            if state is not None and state.finished:
                self.bound.close()  # gone before the client hears the pod has stopped
                conn.send_nowait(
                    {"ev": "finished", "phase": state.phase.value, "exit_status": state.exit_status}
                )


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
) -> Message | None:
    if end is None:
        return None
    return {
        "reason": end.reason.value,
        "exit_code": end.exit_code,
        "signal": end.signal,
        "message": end.message,
        "started_at": wall(end.started_at),
        "finished_at": wall(end.finished_at),
    }


def _resources(before: CgroupStats | None, after: CgroupStats | None, elapsed: float) -> Message:
    """CPU (cores used over the sample), memory (working set) and pids, with their limits."""
    if after is None:
        after = CgroupStats()
    cores = None
    used = [s.cpu_usage_seconds for s in (before, after) if s is not None]
    if len(used) == 2 and used[0] is not None and used[1] is not None and elapsed > 0:
        cores = max(0.0, used[1] - used[0]) / elapsed
    limit = None
    if after.cpu_quota_us and after.cpu_period_us and after.cpu_quota_us > 0:
        limit = after.cpu_quota_us / after.cpu_period_us
    return {
        "cpu_cores": cores,
        "cpu_seconds": after.cpu_usage_seconds,
        "cpu_limit_cores": limit,
        "memory_bytes": after.memory_working_set_bytes,
        "memory_limit_bytes": after.memory_limit_bytes,
        "pids": after.pids_current,
        "pids_max": after.pids_max,
    }


def _probes(c: Container) -> list[str]:
    found = [("startup", c.startup_probe), ("liveness", c.liveness_probe)]
    found.append(("readiness", c.readiness_probe))
    return [kind for kind, probe in found if probe is not None]


async def _cancel_on_hangup(conn: Connection, scope: anyio.CancelScope) -> None:
    while await conn.receive() is not None:
        pass
    scope.cancel()
