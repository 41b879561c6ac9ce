"""The pod runner: the IO shell around the pure lifecycle core.

How this works
--------------
`PodRunner.run` makes what the pod needs, in order, and undoes it in reverse
on the way out, whatever happened (an `AsyncExitStack` with shielded exits):
cgroups, the network namespace, the init. Then it starts the lifecycle core
(`lifecycle.begin`) and loops: take one event, hand it to `lifecycle.handle`,
carry out the effects it returns, until the core says `PodFinished`.

Events come from small tasks that each own one source: the init's channel
(spawned, exited), the supervisor's signals (SIGTERM/SIGINT: an ordered stop,
a second SIGINT: kill now), timers the core armed, probes and hooks (run by
`podvisor.sidecars`), and the init process itself (its exit is `InitDied`).
They all write to one memory stream; only the loop reads it, so the core's
state has exactly one owner and no locks are needed.

The runner decides nothing about the pod's fate: that is the core's job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from podvisor.init import protocol
from podvisor.sidecars.actions import ContainerActions
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.cgroups import CgroupDriver, ContainerCgroup, Limits, PodCgroup
from podvisor.supervisor.control_socket import serve_control
from podvisor.supervisor.errors import (
    EXIT_PODVISOR,
    CgroupError,
    ConfigError,
    InitDiedError,
    NamespaceError,
)
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import Container, LoadedPod, Pod
from podvisor.supervisor.metrics import MetricsServer, PodMetrics
from podvisor.supervisor.network import (
    NetworkRequest,
    PodNetwork,
    cleanup_stale,
    create_network,
)
from podvisor.supervisor.pod.init_client import InitClient, InitProcessHandle
from podvisor.supervisor.pod.logs import LogSink, pump
from podvisor.supervisor.pod.processes import container_process
from podvisor.supervisor.pod.sandbox import WaitingInit, plan_namespaces, without_namespaces
from podvisor.supervisor.pod.signals import receiving_signals

if TYPE_CHECKING:
    from podvisor.supervisor.network.maker import NetworkMaker

# =============================================================================
# Options and the plan the core needs
# =============================================================================


@frozen
class RunOptions:
    log_format: Literal["text", "json"] = "text"
    #: --metrics-address; None: the annotation, else the default; "off": no endpoint
    metrics_address: str | None = None
    #: where the control socket goes; None: /run/podvisor/pods (see control_protocol)
    control_dir: Path | None = None
    stdout: TextIO | None = None
    stderr: TextIO | None = None
    #: Called with the runner once the pod's init serves (tests, the control API).
    on_ready: Callable[[PodRunner], None] | None = None
    #: The pod's init, started ahead of its plan (`podvisor run` starts it
    #: before it imports this module); None: one is started when needed.
    init: WaitingInit | None = None
    #: The pod's network, being made by a child `podvisor run` forked and sent
    #: the pod (`NetworkMaker.make`) before it imported this module; None: the
    #: runner makes it.
    network_maker: NetworkMaker | None = None


def container_limits(pod: Pod, c: Container) -> Limits:
    r = c.resources
    return Limits(
        memory_bytes=r.memory_limit_bytes,
        cpu_limit_millicores=r.cpu_limit_millicores,
        cpu_request_millicores=r.cpu_request_millicores,
        pids_max=c.settings.pids_limit
        if c.settings.pids_limit is not None
        else pod.settings.pids_limit,
        cpuset=c.settings.cpuset,
    )


def run_pod(loaded: LoadedPod, options: RunOptions, backend: str) -> int:
    """Run the pod to its end and return podvisor's exit status."""
    runner = PodRunner(loaded, options)
    return anyio.run(runner.run, backend=backend)


# =============================================================================
# The runner
# =============================================================================


@dataclass
class _Instance:
    """One running process of a container."""

    process: InitProcessHandle
    oom_kills_at_start: int

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class PodRunner:
    loaded: LoadedPod
    options: RunOptions
    sink: LogSink = field(init=False)
    state: lc.PodState = field(init=False)
    network: PodNetwork | None = None
    sandbox: InitClient | None = None
    pod_cgroup: PodCgroup | None = None
    cgroups: dict[str, ContainerCgroup] = field(default_factory=dict)
    instances: dict[str, _Instance] = field(default_factory=dict)
    orphans_reaped: int = 0
    #: monotonic (the event loop's clock) to wall clock, for display
    clock_offset: float = 0.0
    _events_in: MemoryObjectSendStream[lc.Event] = field(init=False)
    _events: MemoryObjectReceiveStream[lc.Event] = field(init=False)
    _scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)
    _tg: anyio.abc.TaskGroup | None = None
    _actions: ContainerActions | None = None
    metrics: PodMetrics = field(init=False)
    metrics_server: MetricsServer | None = None
    control_socket: Path | None = None
    _init_signals_noted: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        pod = self.loaded.pod
        self.sink = LogSink(
            pod.name, self.options.log_format, self.options.stdout, self.options.stderr
        )
        self.sink.register([c.name for c in pod.spec.all_containers])
        self._events_in, self._events = anyio.create_memory_object_stream[lc.Event](math.inf)
        self.metrics = PodMetrics(pod)

    @property
    def pod(self) -> Pod:
        return self.loaded.pod

    def container(self, name: str) -> Container:
        return next(c for c in self.pod.spec.all_containers if c.name == name)

    def restart_container(self, name: str) -> None:
        """`podvisor restart`: the core stops the container and starts it again (rule 16)."""
        self.post(lc.RestartRequested(name))

    def post(self, event: lc.Event) -> None:
        """Queue an event for the loop; safe from any task of this runner."""
        self._events_in.send_nowait(event)

    def wall_time(self, monotonic: float | None) -> float | None:
        return None if monotonic is None else monotonic + self.clock_offset

    # --- the whole run -----------------------------------------------------------

    async def run(self) -> int:
        self.clock_offset = time.time() - anyio.current_time()
        for warning in self.loaded.warnings:
            self.sink.system(f"warning: {warning}")
        try:
            async with AsyncExitStack() as stack:
                await self._set_up(stack)
                return await self._supervise()
        except InitDiedError as exc:
            self.sink.system(f"error: {exc}")
            return EXIT_PODVISOR
        finally:
            self._events_in.close()
            self._events.close()

    async def _set_up(self, stack: AsyncExitStack) -> None:
        pod = self.pod
        # The address first: a port already taken is an error before anything is made.
        self.metrics_server = await MetricsServer.open(
            self, self.metrics, self.options.metrics_address
        )
        if self.metrics_server is not None:
            stack.push_async_callback(self.metrics_server.aclose)
        driver = CgroupDriver.detect()
        limits = {c.name: container_limits(pod, c) for c in pod.spec.all_containers}
        for name, limit in limits.items():
            try:
                driver.check(limit)
            except CgroupError as exc:
                raise ConfigError(f"container {name}: {exc}") from exc
        for removed in driver.remove_stale():
            self.sink.system(f"removed a cgroup an earlier run left behind: {removed}")
        for warning in driver.warnings:
            self.sink.system(f"warning: {warning}")
        for removed in await anyio.to_thread.run_sync(cleanup_stale):
            self.sink.system(f"removed a network an earlier run left behind: {removed}")
        self.pod_cgroup = driver.create_pod(pod.name, pod.uid)
        stack.push_async_callback(self._remove_cgroups)
        for c in pod.spec.all_containers:
            self.cgroups[c.name] = cg = self.pod_cgroup.container(c.name)
            cg.apply_limits(limits[c.name])
        init_cgroup = self.pod_cgroup.init()

        network = await self._make_network(stack)

        plan = plan_namespaces(
            host_pid=pod.spec.host_pid,
            host_ipc=pod.spec.host_ipc,
            hostname=pod.hostname,
            netns=network.netns_path,
            binds=tuple((src, dst) for dst, src in network.etc_files.items()),
            cgroup_procs=tuple(init_cgroup.procs_files()),
            grace=float(pod.spec.termination_grace_period_seconds),
        )
        try:
            self.sandbox = await InitClient.start(plan, self.options.init)
        except NamespaceError as exc:
            if "user" not in plan.unshare:
                raise
            plan = without_namespaces(plan, str(exc), own_name_files=pod.spec.own_name_files)
            self.sandbox = await InitClient.start(plan)
        for warning in plan.warnings:
            self.sink.system(f"warning: {warning}")
        stack.push_async_callback(self._stop_init)

    async def _make_network(self, stack: AsyncExitStack) -> PodNetwork:
        maker = self.options.network_maker
        if maker is not None:
            request = maker.request
            network = await maker.network()
        else:
            request = NetworkRequest.for_pod(self.pod)
            network = await create_network(request)
        self.network = network
        stack.push_async_callback(self._close_network)
        for warning in network.warnings:
            self.sink.system(f"warning: {warning}")
        if request.host_ports:
            # Imported by a pod that publishes ports: the others do not keep the proxy.
            from podvisor.supervisor.network import publish_ports

            await stack.enter_async_context(publish_ports(network, request.host_ports))
        return network

    async def _supervise(self) -> int:
        assert self.sandbox is not None
        sandbox = self.sandbox
        self._actions = ContainerActions(self)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(sandbox.serve)
            tg.start_soon(self._watch_notices)
            tg.start_soon(self._watch_signals)
            tg.start_soon(self._watch_init)
            if self.metrics_server is not None:
                tg.start_soon(self.metrics_server.serve)
            # NOTIFY_SOCKET is bound before the first container needs it.
            await tg.start(self._actions.serve)
            self.control_socket = await tg.start(serve_control, self, self.options.control_dir)
            if self.options.on_ready is not None:
                self.options.on_ready(self)
            now = anyio.current_time()
            self.state, effects = lc.begin(lc.plan_for(self.pod), now)
            self.metrics.observe(self.state, now)
            result = await self._loop(effects)
            tg.cancel_scope.cancel()
        return result

    async def _loop(self, effects: list[lc.Effect]) -> int:
        trace = os.environ.get("PODVISOR_TRACE") == "1"
        while True:
            for effect in effects:
                if trace:
                    self.sink.system(f"trace: effect {effect}")
                if isinstance(effect, lc.PodFinished):
                    return effect.exit_status
                await self._execute(effect)
            event = await self._events.receive()
            if trace:
                self.sink.system(f"trace: event {event}")
            now = anyio.current_time()
            self.state, effects = lc.handle(self.state, event, now)
            self.metrics.observe(self.state, now)

    # --- effects -------------------------------------------------------------------

    async def _execute(self, effect: lc.Effect) -> None:
        assert self._tg is not None
        assert self._actions is not None
        match effect:
            case lc.StartContainer(name):
                await self._start(name)
            case lc.SignalContainer(name, signum):
                await self._signal(name, signum)
            case lc.KillContainer(name):
                self._tg.start_soon(self._kill, name)
            case lc.SetTimer(key, at):
                self._spawn_scoped(f"timer:{key}", partial(self._timer, key, at))
            case lc.CancelTimer(key):
                self._cancel_scoped(f"timer:{key}")
            case lc.StartProbe(name, kind):
                run = partial(self._actions.probe, self.container(name), kind)
                self._spawn_scoped(f"probe:{name}:{kind}", run)
            case lc.StopProbe(name, kind):
                self._cancel_scoped(f"probe:{name}:{kind}")
            case lc.RunHook(name, hook):
                run = partial(self._actions.hook, self.container(name), hook)
                self._spawn_scoped(f"hook:{name}:{hook}", run)

    def _spawn_scoped(self, key: str, func: Callable[[], object]) -> None:
        """Run *func* in a task that `_cancel_scoped(key)` can cancel."""
        assert self._tg is not None
        self._cancel_scoped(key)
        scope = self._scopes[key] = anyio.CancelScope()

        async def task() -> None:
            with scope:
                await func()  # type: ignore[misc]
            if self._scopes.get(key) is scope:
                del self._scopes[key]

        self._tg.start_soon(task)

    def _cancel_scoped(self, key: str) -> None:
        scope = self._scopes.pop(key, None)
        if scope is not None:
            scope.cancel()

    async def _timer(self, key: str, at: float) -> None:
        await anyio.sleep_until(at)
        self.post(lc.TimerFired(key))

    # --- starting, signalling, killing ---------------------------------------------

    def spawn_request(
        self, c: Container, argv: list[str] | tuple[str, ...] | None = None
    ) -> protocol.Process:
        """What the init runs for container *c*: its own command, else *argv*."""
        return container_process(
            self.pod,
            c,
            pod_ip=self.network.pod_ip if self.network else None,
            cgroup_procs=self.cgroups[c.name].procs_files(),
            extra_env=self._actions.env_for(c) if self._actions is not None else {},
            argv=argv,
        )

    async def _start(self, name: str) -> None:
        assert self.sandbox is not None
        assert self._actions is not None
        c = self.container(name)
        spec = self.spawn_request(c)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        fds = [null, out_w, err_w]
        extra: tuple[int, ...] = ()
        notification = self._actions.notification_fd(c)
        if notification is not None:  # s6's notification-fd: a pipe as the process's fd N
            extra = (notification[0],)
            fds.append(notification[1])
        pidns = not self.pod.spec.share_process_namespace and self._own_pid_ns()
        spec = dataclasses.replace(spec, pidns=pidns, extra_fds=extra)
        try:
            spawned = await self.sandbox.spawn(spec, fds)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        self._read_output(name, out_r, err_r)
        if isinstance(spawned, InitProcessHandle):
            instance = self.instances[name] = _Instance(spawned, self.cgroups[name].oom_kills())
            self.post(lc.Started(name, spawned.pid))
            assert self._tg is not None
            self._tg.start_soon(self._await_exit, name, instance)
            return
        self.sink.system(f"{name}: cannot start: {spawned.message}")
        if spawned.stage == "exec":
            # The init's spawning code, for its rule: imported by a failure only.
            from podvisor.init.process import exec_failure_exit_code

            err = OSError(spawned.errno, spawned.message)
            self.post(lc.StartFailed(name, exec_failure_exit_code(err), message=spawned.message))
        else:  # the program was found, but its process could not be set up (as the kubelet)
            self.post(lc.StartFailed(name, 128, lc.Reason.START_ERROR, spawned.message))

    def _read_output(self, name: str, out_r: int, err_r: int) -> None:
        """Pump a new instance's stdout and stderr into its log."""
        assert self._tg is not None
        self.sink.containers[name].new_instance()
        self._tg.start_soon(pump, out_r, name, "stdout", self.sink)
        self._tg.start_soon(pump, err_r, name, "stderr", self.sink)

    async def _await_exit(self, name: str, instance: _Instance) -> None:
        """Post the instance's exit once the init reports it."""
        try:
            await instance.process.wait()
        except InitDiedError:
            return  # the init's own death is the event (`_watch_init`)
        if self.instances.get(name) is instance:
            del self.instances[name]
        oom = self.cgroups[name].oom_kills() > instance.oom_kills_at_start
        process = instance.process
        self.post(lc.Exited(name, process.code, process.signal, oom_killed=oom))

    def _own_pid_ns(self) -> bool:
        return self.sandbox is not None and self.sandbox.plan.own_pid_namespace

    async def _signal(self, name: str, signum: int) -> None:
        assert self.sandbox is not None
        instance = self.instances.get(name)
        if instance is None:
            return
        with contextlib.suppress(InitDiedError):
            await self.sandbox.signal(instance.pid, signum)

    async def _kill(self, name: str) -> None:
        with contextlib.suppress(CgroupError):
            await self.cgroups[name].kill()

    # --- event sources ---------------------------------------------------------------

    async def _watch_notices(self) -> None:
        """What the init says besides replies and exits."""
        assert self.sandbox is not None
        async for notice in self.sandbox.notices:
            match notice:
                case protocol.OrphansReaped(total):
                    self.orphans_reaped = total
                case protocol.SignalReceived(signum) if signum not in self._init_signals_noted:
                    # Said once per signal: `kill -HUP 1` inside the pod, or a storm of them.
                    self._init_signals_noted.add(signum)
                    self.sink.system(f"the pod's init received signal {signum}: ignored")
                case protocol.Refused(message):
                    self.sink.system(f"error: the pod's init refused a request: {message}")

    async def _watch_signals(self) -> None:
        """SIGTERM and SIGINT stop the pod (a second SIGINT kills it); others are noted.

        Every other catchable signal would end the supervisor by its default
        action, so they are caught too and only said once each: the pod's own
        processes are signalled with `podvisor kill`, never by accident.
        """
        caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
        with receiving_signals(caught) as signals:
            interrupts = 0
            noted: set[int] = set()
            while True:
                signum = await signals.receive()
                if signum not in (signal.SIGTERM, signal.SIGINT):
                    if signum not in noted:
                        noted.add(signum)
                        self.sink.system(
                            f"received {signum.name}: ignored (SIGTERM or SIGINT stop the pod; "
                            "`podvisor kill POD CONTAINER -s SIGNAL` signals a container)"
                        )
                    continue
                if signum == signal.SIGINT:
                    interrupts += 1
                immediate = interrupts > 1
                what = "killing the pod now" if immediate else "stopping the pod"
                self.sink.system(f"received {signum.name}: {what}")
                self.post(lc.StopRequested(immediate=immediate, signal=int(signum)))

    async def _watch_init(self) -> None:
        assert self.sandbox is not None
        code = await self.sandbox.process.wait()
        self.sink.system(f"error: the pod's init exited unexpectedly (status {code})")
        self.post(lc.InitDied(f"init exited with status {code}"))

    # --- tearing down ----------------------------------------------------------------

    async def _stop_init(self) -> None:
        """Ask init to end what is left, then make sure it is gone."""
        assert self.sandbox is not None
        sandbox = self.sandbox
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(InitDiedError):
                await sandbox.stop_all(grace=0)
            with anyio.move_on_after(10):
                await sandbox.process.wait()
            if sandbox.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    sandbox.process.kill()
                await sandbox.process.wait()
            sandbox.close()
            await sandbox.process.aclose()

    async def _close_network(self) -> None:
        if self.network is not None:
            with anyio.CancelScope(shield=True):
                await self.network.aclose()

    async def _remove_cgroups(self) -> None:
        if self.pod_cgroup is None:
            return
        with anyio.CancelScope(shield=True):
            for cg in self.cgroups.values():
                with contextlib.suppress(CgroupError):
                    await cg.kill()
        self.pod_cgroup.remove()
