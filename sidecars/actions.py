"""The runner's one door into sidecars/: probes, hooks, commands' exits, readiness.

How the runner uses it
----------------------
::

    actions = ContainerActions(runner)
    await task_group.start(actions.serve)   # NOTIFY_SOCKET, notification-fd readers
    env |= actions.env_for(container)       # in every spawn of that container
    extra = actions.notification_fd(c)      # (N, write end) to hand over as fd N, or None
    await actions.probe(container, kind)    # its own task, StartProbe until StopProbe
    await actions.hook(container, hook)     # its own task, on RunHook

Everything here reports to the core through `runner.post` and decides
nothing: thresholds, restarts and readiness are the core's rules.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from podvisor.sidecars import notify
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.errors import CgroupError
from podvisor.supervisor.manifest.model import Container
from podvisor.supervisor.pod.view import PodView

if TYPE_CHECKING:
    from podvisor.sidecars.execs import Execs

_STRANGERS_KEPT = 64  # senders already logged as belonging to no container


class ContainerActions:
    """Probes, hooks, exec commands and readiness notifications of one pod."""

    def __init__(self, view: PodView) -> None:
        self._view = view
        self._execs: Execs | None = None  # made by the first exec (`execs`)
        self.notify_path = notify.socket_path(view.pod)
        self._tg: anyio.abc.TaskGroup | None = None
        self._readers: dict[str, anyio.CancelScope] = {}
        self._strangers: set[int] = set()
        #: The supervisor's PID namespace if the pod has its own, else "" (None: not read yet).
        self._own_pidns: str | None = None

    # --- probes, hooks, exec ------------------------------------------------------

    @property
    def execs(self) -> Execs:
        """What runs commands in containers (probes', hooks').

        Made, and its code imported, by the first command: a pod that runs none
        does not keep it.
        """
        if self._execs is None:
            from podvisor.sidecars.execs import Execs

            self._execs = Execs(self._view)
        return self._execs

    async def probe(self, container: Container, kind: lc.ProbeKind) -> None:
        """Run *container*'s *kind* probe until cancelled, posting every result."""
        # Imported by the first probe or hook: a pod without them does not keep
        # their code (with HTTP's and the port proxy's) as long as it runs.
        from podvisor.sidecars.probes import run_probe

        await run_probe(self._view, self.execs, container, kind)

    async def hook(self, container: Container, hook: lc.Hook) -> None:
        """Run *container*'s *hook* and post HookFinished."""
        from podvisor.sidecars.hooks import run_hook  # as `probe`'s

        await run_hook(self._view, self.execs, container, hook)

    # --- readiness: NOTIFY_SOCKET and notification-fd --------------------------------

    def env_for(self, container: Container) -> dict[str, str]:
        """The variables every process of *container* gets: NOTIFY_SOCKET, WATCHDOG_USEC."""
        return notify.container_env(self._view.pod, container)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve NOTIFY_SOCKET (bound when this reports started) until cancelled, then remove it.

        Also owns the tasks that wait on notification-fd pipes.
        """
        socket = notify.NotifySocket(self.notify_path)
        try:
            socket.bind()
        except OSError as exc:  # a path past sun_path's 107 bytes, an unwritable folder
            self._view.sink.system(
                f"warning: no NOTIFY_SOCKET: cannot bind {self.notify_path}: "
                f"{exc.strerror or exc}; sd_notify readiness and the watchdog will not be "
                "heard (set $XDG_RUNTIME_DIR to a shorter path)"
            )
            task_status.started()
            return
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                async for pid, datagram in socket.receive():
                    self._on_datagram(pid, datagram)
        finally:
            self._tg = None
            socket.close()

    def notification_fd(self, container: Container) -> tuple[int, int] | None:
        """For a container with a notification-fd: (N, the write end of a new pipe).

        The caller hands the write end to the new process as its fd N and closes
        its own copy. A newline on it posts Notified(ready=True). Each call
        replaces the previous instance's pipe, whose late newline is ignored.
        """
        target = container.settings.notification_fd
        if target is None:
            return None
        if self._tg is None:
            raise RuntimeError("ContainerActions.serve must run before containers start")
        old = self._readers.pop(container.name, None)
        if old is not None:
            old.cancel()
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        scope = self._readers[container.name] = anyio.CancelScope()
        self._tg.start_soon(self._await_notification, container.name, read_fd, scope)
        return target, write_fd

    async def _await_notification(self, name: str, fd: int, scope: anyio.CancelScope) -> None:
        with scope:
            if await notify.read_notification(fd):
                self._view.post(lc.Notified(name, ready=True))
        if self._readers.get(name) is scope:
            del self._readers[name]

    def _on_datagram(self, pid: int, datagram: bytes) -> None:
        if self._from_the_host(pid):
            name = None  # one readlink, not a read of every container's cgroup: a flood is cheap
        else:
            notice = notify.parse(datagram)
            if notice.empty:
                return
            name = self.container_of(pid)
            if name is not None:
                self._view.post(notice.event(name))
                return
        if pid not in self._strangers and len(self._strangers) < _STRANGERS_KEPT:
            self._strangers.add(pid)
            self._view.sink.system(
                f"NOTIFY_SOCKET: ignored a message from pid {pid}, which is in no container "
                "of this pod (or exited before it was read)"
            )

    def _from_the_host(self, pid: int) -> bool:
        """Whether *pid* is in the supervisor's own PID namespace while the pod has its own."""
        if self._own_pidns is None:
            own = _pid_namespace("self")
            init = _pid_namespace(str(self._view.init.host_pid))
            self._own_pidns = own if own and init and own != init else ""
        return bool(self._own_pidns) and _pid_namespace(str(pid)) == self._own_pidns

    def container_of(self, pid: int) -> str | None:
        """The container whose cgroup holds *pid* (as this PID namespace numbers it)."""
        for name, cgroup in self._view.cgroups.items():
            try:
                if pid in cgroup.pids():
                    return name
            except (CgroupError, OSError):
                continue  # removed meanwhile: nothing of it can be sending
        return None


def _pid_namespace(pid: str) -> str:
    """The PID namespace of /proc/PID ("pid:[4026531836]"), "" when it cannot be read."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""
