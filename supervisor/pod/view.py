"""`PodView`: the running pod as its subsystems see it.

The control server, the metrics endpoint, and the probes, hooks and readiness
notices of `podvisor.sidecars` all get the one `PodView` the runner makes
once the pod's resources exist, never the runner itself. They read the pod
through it, and act on it only through its verbs: `post` an event to the
lifecycle core, `restart` a container, ask for the `process_for` a command
in a container (which they then spawn through the init).

The runner keeps `state` (None until the lifecycle core has begun),
`instances` and `orphans_reaped` current; `changed` waits for the core's next
state, which is how tests follow a pod.

The parts are typed by what the subsystems use of them (the protocols
below), so a test builds a view from small stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.pod.orphan_counts import OrphanCounts

if TYPE_CHECKING:
    from podvisor.init import protocol
    from podvisor.supervisor.cgroups import CgroupStats
    from podvisor.supervisor.manifest.model import Container, Pod
    from podvisor.supervisor.pod.init_client import InitProcessHandle
    from podvisor.supervisor.pod.logs import ContainerLog

    #: The process the init runs for a command in a container (None: its own program).
    ProcessFor = Callable[[Container, Sequence[str] | None], protocol.Process]


class CgroupView(Protocol):
    """A container's cgroup: its figures, its processes, the freezer."""

    def read(self) -> CgroupStats: ...
    def pids(self) -> list[int]: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def frozen(self) -> bool: ...
    async def wait_frozen(self, timeout: float = 10) -> None: ...  # noqa: ASYNC109


class NetworkView(Protocol):
    @property
    def netns_path(self) -> str | None: ...

    @property
    def pod_ip(self) -> str | None: ...


class ProcessView(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...


class InitView(Protocol):
    """The pod's init (`InitClient`): where the pod's processes are spawned and signalled."""

    @property
    def host_pid(self) -> int: ...

    @property
    def process(self) -> ProcessView: ...

    async def spawn(
        self, spec: protocol.Process, fds: Sequence[int] = ()
    ) -> InitProcessHandle | protocol.SpawnFailed: ...

    async def signal(self, pid: int, signum: int, *, group: bool = False) -> int: ...


class SinkView(Protocol):
    """The pod's log: each container's lines (`ContainerLog`), and podvisor's own."""

    @property
    def containers(self) -> Mapping[str, ContainerLog]: ...

    @property
    def output_drops(self) -> int: ...

    @property
    def file_drops(self) -> int: ...

    def system(self, message: str) -> None: ...


class InstanceView(Protocol):
    """A container's running process."""

    @property
    def pid(self) -> int: ...

    def attach_stdin(self) -> int | None:
        """A copy of where its stdin is written (stdin: true), for an attach; else None."""

    def attach_left(self) -> None:
        """An attach that had its stdin has gone (stdinOnce then closes it)."""


class PodView:
    """One running pod: what it is, its parts, its state, and what may be asked of it."""

    def __init__(
        self,
        pod: Pod,
        sink: SinkView,
        *,
        cgroups: Mapping[str, CgroupView],
        network: NetworkView | None,
        init: InitView,
        post: Callable[[lc.Event], None],
        process_for: ProcessFor,
        clock_offset: float = 0.0,
        metrics_address: tuple[str, int] | None = None,
    ) -> None:
        self.pod = pod
        self.sink = sink
        self.cgroups = cgroups
        self.network = network
        self.init = init
        #: Where /metrics is served, if anywhere.
        self.metrics_address = metrics_address
        #: Where the control socket is, once it serves (None: the pod has none).
        self.control_socket: Path | None = None
        #: The lifecycle core's state; None until it has begun.
        self.state: lc.PodState | None = None
        #: Each running container's process, by container name.
        self.instances: Mapping[str, InstanceView] = {}
        #: Orphans the pod's init has reaped, as it last counted.
        self.orphans_reaped = 0
        #: Orphans each container's own init has reaped (the default layout).
        self.container_orphans = OrphanCounts()
        #: The pod's events, as the kubelet records them (`lifecycle.record`).
        self.journal = lc.Journal()
        #: The pod's own series in Prometheus' text format, when its endpoint serves.
        self.exposition: Callable[[], bytes] | None = None
        self._post = post
        self._process_for = process_for
        #: Monotonic (the event loop's clock) to wall clock, for display.
        self._clock_offset = clock_offset
        self._changed = anyio.Event()

    # --- reading ------------------------------------------------------------------

    def container(self, name: str) -> Container:
        return next(c for c in self.pod.spec.all_containers if c.name == name)

    def wall_time(self, monotonic: float | None) -> float | None:
        return None if monotonic is None else monotonic + self._clock_offset

    async def changed(self) -> lc.PodState:
        """The core's next state, once it has one."""
        await self._changed.wait()
        assert self.state is not None
        return self.state

    # --- asking -------------------------------------------------------------------

    def post(self, event: lc.Event) -> None:
        """Queue an event for the lifecycle core."""
        self._post(event)

    def restart(self, name: str) -> None:
        """`podvisor restart`: the core stops the container and starts it again."""
        self.post(lc.RestartRequested(name))

    def process_for(self, c: Container, argv: Sequence[str] | None = None) -> protocol.Process:
        """What the init runs for *argv* in container *c* (None: its own program)."""
        return self._process_for(c, argv)

    # --- the runner's -------------------------------------------------------------

    def set_state(self, state: lc.PodState) -> None:
        """The core's new state; wakes whoever waits in `changed`."""
        self.state = state
        self._changed.set()
        self._changed = anyio.Event()
