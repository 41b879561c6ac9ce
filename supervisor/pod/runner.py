"""The pod runner: the IO shell around the pure lifecycle core.

How this works
--------------
`PodRunner.run` binds the metrics endpoint (a port in use is an error before
anything is made), then makes the pod's resources (`make_resources`: its
cgroups, network and init, undone in reverse on the way out, whatever
happened), and hands them, whole, to a `Supervision`. That starts the
lifecycle core (`lifecycle.begin`) and loops: take one event, hand it to
`lifecycle.handle`, carry out the effects it returns, until the core says
`PodFinished`.

Events come from small tasks that each own one source: each container
process's handle (its exit), the init's notices, the supervisor's signals
(SIGTERM/SIGINT: an ordered stop, a second SIGINT or a SIGQUIT: kill now), timers the core
armed, probes and hooks (run by `podvisor.sidecars`), and the init process
itself (its exit is `InitDied`). They all write to one memory stream; only the
loop reads it, so the core's state has exactly one owner and no locks are
needed.

The control server, the metrics and the sidecars see the pod through its
`PodView`, never through the runner. The runner decides nothing about the
pod's fate: that is the core's job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from podvisor.init import protocol
from podvisor.sidecars.actions import ContainerActions
from podvisor.sidecars.notify import container_env
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.control.server import running_pid, serve_control
from podvisor.supervisor.errors import (
    EXIT_PODVISOR,
    CgroupError,
    InitDiedError,
    PodNameInUseError,
)
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import Container, LoadedPod, Pod
from podvisor.supervisor.metrics import MetricsServer, PodMetrics
from podvisor.supervisor.metrics.connections import raise_open_files_limit
from podvisor.supervisor.pod import logfiles
from podvisor.supervisor.pod.init_client import InitProcessHandle
from podvisor.supervisor.pod.logs import LogSink, pump
from podvisor.supervisor.pod.processes import container_process
from podvisor.supervisor.pod.resources import PodResources, make_resources
from podvisor.supervisor.pod.rootfs import host_message_target, with_image_stop_signals
from podvisor.supervisor.pod.sandbox import WaitingInit
from podvisor.supervisor.pod.signals import IGNORED, NOTED, STOPPING, receiving_signals
from podvisor.supervisor.pod.stdio import ContainerStdio
from podvisor.supervisor.pod.view import PodView

if TYPE_CHECKING:
    from podvisor.supervisor.network.maker import NetworkMaker

# =============================================================================
# Options
# =============================================================================


@frozen
class RunOptions:
    log_format: Literal["text", "json"] = "text"
    #: --metrics-address; None: the annotation, else the default; "off": no endpoint
    metrics_address: str | None = None
    #: where the control socket goes; None: /run/podvisor/pods (see control_protocol)
    control_dir: Path | None = None
    #: where the pod's log folder goes; None: $PODVISOR_LOG_DIR or /var/log/pods (logfiles)
    log_dir: Path | None = None
    stdout: TextIO | None = None
    stderr: TextIO | None = None
    #: Called with the pod's view once its init serves and before its containers start.
    on_ready: Callable[[PodView], None] | None = None
    #: The pod's init, started ahead of its plan (`podvisor run` starts it
    #: before it imports this module); None: one is started when needed.
    init: WaitingInit | None = None
    #: The pod's network, being made by a child `podvisor run` forked and sent
    #: the pod (`NetworkMaker.make`) before it imported this module; None: the
    #: runner makes it.
    network_maker: NetworkMaker | None = None


def run_pod(loaded: LoadedPod, options: RunOptions, backend: str) -> int:
    """Run the pod to its end and return podvisor's exit status."""
    runner = PodRunner(loaded, options)
    return anyio.run(runner.run, backend=backend)


# =============================================================================
# The runner
# =============================================================================


class PodRunner:
    """One pod, from its manifest to its end."""

    def __init__(self, loaded: LoadedPod, options: RunOptions) -> None:
        self.loaded = loaded
        self.options = options
        pod = loaded.pod
        self.sink = LogSink(pod.name, options.log_format, options.stdout, options.stderr)
        self.sink.register([c.name for c in pod.spec.all_containers])
        self.metrics = PodMetrics(pod)
        self._events_in, self._events = anyio.create_memory_object_stream[lc.Event](math.inf)

    @property
    def pod(self) -> Pod:
        return self.loaded.pod

    def post(self, event: lc.Event) -> None:
        """Queue an event for the loop; safe from any task, before the loop runs too."""
        self._events_in.send_nowait(event)

    async def run(self) -> int:
        """Run the pod to its end; podvisor's exit status."""
        for warning in self.loaded.warnings:
            self.sink.system(f"warning: {warning}")
        raise_open_files_limit()
        try:
            async with AsyncExitStack() as stack:
                self._refuse_a_taken_name()
                self._open_log_files()  # after: it replaces the folder of a pod of this name
                server = await MetricsServer.open(
                    self.pod, self.metrics, self.options.metrics_address
                )
                if server is not None:
                    stack.push_async_callback(server.aclose)
                    self._say_where_metrics_are(server)
                resources = await make_resources(
                    self.pod,
                    self.sink,
                    stack,
                    init=self.options.init,
                    network_maker=self.options.network_maker,
                )
                images = resources.roots.images
                self.loaded = dataclasses.replace(
                    self.loaded, pod=with_image_stop_signals(self.pod, images)
                )
                supervision = Supervision(self, self._events, resources, server)
                return await supervision.run()
        except InitDiedError as exc:
            self.sink.system(f"error: {exc}")
            return EXIT_PODVISOR
        finally:
            self._events_in.close()
            self._events.close()
            self.sink.close()

    def _open_log_files(self) -> None:
        """The pod's log folder; without one the pod runs on, its lines in the ring only."""
        pod = self.pod
        root = self.options.log_dir or logfiles.log_root()
        rotation = logfiles.Rotation(pod.settings.log_max_size, pod.settings.log_max_files)
        try:
            self.sink.files = logfiles.PodLogFiles.create(
                root, pod.namespace, pod.name, pod.uid, rotation
            )
        except OSError as exc:
            self.sink.system(
                f"warning: no log files: cannot make a folder in {root} ({exc.strerror}); "
                f"set ${logfiles.ENV_DIR} to a folder you may write"
            )

    def _refuse_a_taken_name(self) -> None:
        """Two pods of one name would share a control socket and a metrics label set."""
        pid = running_pid(self.pod.name, self.options.control_dir)
        if pid is not None:
            raise PodNameInUseError(
                f"a pod named {self.pod.name!r} already runs on this host (supervisor pid "
                f"{pid}); stop it (`podvisor stop {self.pod.name}`) or rename this one "
                "(metadata.name); nothing was started"
            )

    def _say_where_metrics_are(self, server: MetricsServer) -> None:
        host, port = server.address
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        whose = "every pod on this host" if server.shared else "this pod"
        self.sink.system(f"metrics: http://{where}/metrics ({whose})")


@dataclass
class _Instance:
    """One running process of a container."""

    process: InitProcessHandle
    oom_kills_at_start: int
    stdio: ContainerStdio

    @property
    def pid(self) -> int:
        return self.process.pid

    def attach_stdin(self) -> int | None:
        return self.stdio.for_attach()

    def attach_left(self) -> None:
        self.stdio.attach_left()


class Supervision:
    """The lifecycle loop of a pod whose resources are all made."""

    def __init__(
        self,
        runner: PodRunner,
        events: MemoryObjectReceiveStream[lc.Event],
        resources: PodResources,
        server: MetricsServer | None,
    ) -> None:
        self.pod = runner.pod
        self.options = runner.options
        self.sink = runner.sink
        self.metrics = runner.metrics
        self.post = runner.post
        #: What `runner.post` queues; only the loop reads it.
        self._events = events
        self.resources = resources
        self.init = resources.init
        self.cgroups = resources.cgroups
        self.server = server
        self.instances: dict[str, _Instance] = {}
        self.view = PodView(
            self.pod,
            self.sink,
            cgroups=resources.cgroups,
            network=resources.network,
            init=resources.init,
            post=self.post,
            process_for=self._process_for,
            clock_offset=time.time() - anyio.current_time(),
            metrics_address=server.address if server is not None else None,
        )
        self.view.instances = self.instances
        self.actions = ContainerActions(self.view)
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._init_signals_noted: set[int] = set()

    def _process_for(self, c: Container, argv: Sequence[str] | None) -> protocol.Process:
        roots = self.resources.roots
        image = roots.image_of(c)
        rootfs, message = None, None
        if image is not None:
            if argv is None:  # the program: a fresh root from the image
                binds = tuple((src, dst) for dst, src in self.resources.network.etc_files.items())
                fresh = roots.fresh(c)
                rootfs = dataclasses.replace(fresh, binds=binds + fresh.binds)
            else:  # a probe, hook or exec: into the program's root
                instance = self.instances.get(c.name)
                rootfs = protocol.Rootfs(join=instance.pid if instance is not None else -1)
        elif argv is None and roots.directory and host_message_target(self.pod, c):
            message = roots.fresh_message(c)
        return container_process(
            self.pod,
            c,
            pod_ip=self.resources.network.pod_ip,
            cgroup_procs=self.cgroups[c.name].procs_files(),
            extra_env=container_env(self.pod, c),
            argv=argv,
            image=image,
            rootfs=rootfs,
            volumes=self.resources.volumes,
            message=message,
        )

    async def run(self) -> int:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.init.serve)
            tg.start_soon(self._watch_notices)
            tg.start_soon(self._watch_signals)
            tg.start_soon(self._watch_init)
            volumes = self.resources.volumes
            limited = self.pod.spec.ephemeral_storage_limit_bytes is not None
            if limited or (volumes is not None and volumes.limits):
                tg.start_soon(self._watch_local_storage)
            if self.server is not None:
                tg.start_soon(self.server.serve, self.view)
            # NOTIFY_SOCKET is bound before the first container needs it.
            await tg.start(self.actions.serve)
            self.view.control_socket = await tg.start(
                serve_control, self.view, self.options.control_dir
            )
            if self.options.on_ready is not None:
                self.options.on_ready(self.view)
            now = anyio.current_time()
            state, effects = lc.begin(lc.plan_for(self.pod), now)
            self._observe(state, now)
            try:
                result = await self._loop(state, effects)
            finally:
                self.view.container_orphans.close()
            tg.cancel_scope.cancel()
        return result

    def _observe(self, state: lc.PodState, now: float) -> None:
        self.metrics.observe(state, now)
        self.view.set_state(state)

    async def _loop(self, state: lc.PodState, effects: list[lc.Effect]) -> int:
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
            if isinstance(event, lc.ProbeResult):
                self.metrics.record_probe(event.name, event.kind, event.success, event.seconds)
            before = state
            state, effects = lc.handle(state, event, now)
            self._observe(state, now)
            self._record(lc.record(before, event, state, now))
            if state.finished:
                self.sink.system(lc.last_words(state))

    def _record(self, events: list[lc.PodEvent]) -> None:
        """Keep the transition's events; say each, and a repeat at its 2nd, 4th, 8th, ... time."""
        for event in events:
            kept = self.view.journal.add(event)
            if kept.count & (kept.count - 1) == 0:
                who = kept.container or f"pod/{self.pod.name}"
                times = f" (x{kept.count})" if kept.count > 1 else ""
                self.sink.system(f"{kept.type} {kept.reason} {who}: {kept.message}{times}")

    # --- effects -------------------------------------------------------------------

    async def _execute(self, effect: lc.Effect) -> None:
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
                run = partial(self.actions.probe, self.view.container(name), kind)
                self._spawn_scoped(f"probe:{name}:{kind}", run)
            case lc.StopProbe(name, kind):
                self._cancel_scoped(f"probe:{name}:{kind}")
            case lc.RunHook(name, hook):
                run = partial(self.actions.hook, self.view.container(name), hook)
                self._spawn_scoped(f"hook:{name}:{hook}", run)

    def _spawn_scoped(self, key: str, func: Callable[[], object]) -> None:
        """Run *func* in a task that `_cancel_scoped(key)` can cancel."""
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

    async def _start(self, name: str) -> None:
        c = self.view.container(name)
        spec = self.view.process_for(c)
        stdio = ContainerStdio.make(c)
        fds = list(stdio.child)
        extra: tuple[int, ...] = ()
        notification = self.actions.notification_fd(c)
        if notification is not None:  # s6's notification-fd: a pipe as the process's fd N
            extra = (notification[0],)
            fds.append(notification[1])
        pidns = not self.pod.spec.share_process_namespace and self._own_pid_ns()
        orphans_fd = None
        if pidns:  # its own init reaps its orphans, and counts them in a file of ours
            orphans_fd = max((2, *extra)) + 1
            extra = (*extra, orphans_fd)
            fds.append(os.dup(self.view.container_orphans.new_file(name)))
        spec = dataclasses.replace(
            spec, pidns=pidns, extra_fds=extra, orphans_fd=orphans_fd, tty=stdio.tty
        )
        try:
            spawned = await self.init.spawn(spec, fds)
        except BaseException:
            for fd, _ in stdio.outputs:
                os.close(fd)
            stdio.close()
            raise
        finally:
            for fd in fds[3:]:
                os.close(fd)
            stdio.sent()
        self._read_output(name, stdio)
        if isinstance(spawned, InitProcessHandle):
            oom_kills = self.cgroups[name].oom_kills()
            instance = self.instances[name] = _Instance(spawned, oom_kills, stdio)
            self.post(lc.Started(name, spawned.pid))
            self._tg.start_soon(self._await_exit, name, instance)
            return
        stdio.close()
        message = spawned.message
        if spawned.stage in ("volume", "subpath"):  # the message names the volume
            message = message.removeprefix(f"{spawned.stage} failed: ")
        self.sink.system(f"{name}: cannot start: {message}")
        if spawned.stage == "exec":
            # The init's spawning code, for its rule: imported by a failure only.
            from podvisor.init.process import exec_failure_exit_code

            err = OSError(spawned.errno, message)
            self.post(lc.StartFailed(name, exec_failure_exit_code(err), message=message))
        elif spawned.stage == "subpath":  # as the kubelet says it (CreateContainerConfigError)
            from podvisor.supervisor.pod.volumes import subpath_message  # only with volumes

            reason = lc.Reason.CREATE_CONTAINER_CONFIG_ERROR
            self.post(lc.StartFailed(name, 128, reason, subpath_message(message, name)))
        else:  # the program was found, but its process could not be set up (as the kubelet)
            self.post(lc.StartFailed(name, 128, lc.Reason.START_ERROR, message))

    def _read_output(self, name: str, stdio: ContainerStdio) -> None:
        """Pump a new instance's stdout and stderr (or its terminal) into its log."""
        self.sink.new_instance(name)
        for fd, stream in stdio.outputs:
            self._tg.start_soon(partial(pump, terminal=stdio.tty), fd, name, stream, self.sink)

    async def _await_exit(self, name: str, instance: _Instance) -> None:
        """Post the instance's exit once the init reports it."""
        try:
            await instance.process.wait()
        except InitDiedError:
            return  # the init's own death is the event (`_watch_init`)
        finally:
            instance.stdio.close()  # an attach's own copy of stdin stays its own
        if self.instances.get(name) is instance:
            del self.instances[name]
        oom = self.cgroups[name].oom_kills() > instance.oom_kills_at_start
        process = instance.process
        failed = process.code != 0 or process.signal is not None
        message = self._termination_message(self.view.container(name), failed)
        self.post(lc.Exited(name, process.code, process.signal, oom_killed=oom, message=message))

    def _termination_message(self, c: Container, failed: bool) -> str:
        """The file's message; with FallbackToLogsOnError and a failure, else the log's end."""
        message = self.resources.roots.termination_message(c)
        if message or not failed or c.termination_message_policy != "FallbackToLogsOnError":
            return message
        from podvisor.supervisor.pod.rootfs import FALLBACK_BYTES, FALLBACK_LINES

        lines = [line.text for line in self.sink.containers[c.name].current][-FALLBACK_LINES:]
        return "\n".join(lines)[-FALLBACK_BYTES:]

    def _own_pid_ns(self) -> bool:
        return self.init.plan.own_pid_namespace

    async def _signal(self, name: str, signum: int) -> None:
        instance = self.instances.get(name)
        if instance is None:
            return
        with contextlib.suppress(InitDiedError):
            await self.init.signal(instance.pid, signum)

    async def _kill(self, name: str) -> None:
        with contextlib.suppress(CgroupError):
            await self.cgroups[name].kill()

    # --- event sources ---------------------------------------------------------------

    async def _watch_notices(self) -> None:
        """What the init says besides replies and exits."""
        async for notice in self.init.notices:
            match notice:
                case protocol.OrphansReaped(total):
                    self.view.orphans_reaped = total
                case protocol.SignalReceived(signum) if signum not in self._init_signals_noted:
                    # Said once per signal: `kill -HUP 1` inside the pod, or a storm of them.
                    self._init_signals_noted.add(signum)
                    self.sink.system(f"the pod's init received signal {signum}: ignored")
                case protocol.Refused(message):
                    self.sink.system(f"error: the pod's init refused a request: {message}")

    async def _watch_signals(self) -> None:
        """SIGTERM and SIGINT stop the pod (a second SIGINT kills it), SIGQUIT kills it.

        Every other signal whose default action would end or stop the
        supervisor is caught too and only said once (`signals.NOTED`), or
        ignored outright (`signals.IGNORED`): the pod's own processes are
        signalled with `podvisor kill`, never by accident.
        """
        with receiving_signals((*STOPPING, *NOTED), IGNORED) as signals:
            interrupts = 0
            noted: set[int] = set()
            while True:
                signum = await signals.receive()
                if signum not in STOPPING:
                    if signum not in noted:
                        noted.add(signum)
                        self.sink.system(
                            f"received {signum.name}: ignored (SIGTERM or SIGINT stop the pod, "
                            "SIGQUIT kills it; `podvisor kill POD CONTAINER -s SIGNAL` "
                            "signals a container)"
                        )
                    continue
                if signum == signal.SIGINT:
                    interrupts += 1
                quit_ = signum == signal.SIGQUIT
                immediate = interrupts > 1 or quit_
                what = "killing the pod now" if immediate else "stopping the pod"
                self.sink.system(f"received {signum.name}: {what}")
                self.post(
                    lc.StopRequested(
                        immediate=immediate, signal=int(signum), status_from_signal=quit_
                    )
                )

    async def _watch_local_storage(self) -> None:
        """Evict the pod once an emptyDir on disk outgrows its sizeLimit, or the pod or a
        container its ephemeral-storage limit, as the kubelet does (`storage`)."""
        from podvisor.supervisor.pod.storage import LocalStorage
        from podvisor.supervisor.pod.volumes import EMPTY_DIR_CHECK_SECONDS

        logs = self.sink.files.folder if self.sink.files is not None else None
        measured = LocalStorage(
            self.pod, self.resources.volumes, self.resources.roots.upper_of, logs
        )
        while True:
            await anyio.sleep(EMPTY_DIR_CHECK_SECONDS)
            message = await anyio.to_thread.run_sync(measured.eviction)
            if message is not None:
                self.post(lc.Evicted(message))
                return

    async def _watch_init(self) -> None:
        code = await self.init.process.wait()
        self.sink.system(f"error: the pod's init exited unexpectedly (status {code})")
        self.post(lc.InitDied(f"init exited with status {code}"))
