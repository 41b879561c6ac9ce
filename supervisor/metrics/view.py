"""What the metrics and health endpoints read of the pod runner, and nothing more.

`podvisor.supervisor.pod.runner.PodRunner` fits `PodView` as it is; the tests
pass small stand-ins. Every member is read-only here (properties), so the
runner's concrete types fit the narrower ones below. Nothing in this package
writes to the runner: a scrape only reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import Pod
from podvisor.supervisor.pod.logs import Stream

if TYPE_CHECKING:
    from podvisor.supervisor.cgroups import CgroupStats


class CgroupReader(Protocol):
    def read(self) -> CgroupStats: ...


class NetworkView(Protocol):
    @property
    def netns_path(self) -> str | None: ...

    @property
    def pod_ip(self) -> str | None: ...


class ProcessView(Protocol):
    @property
    def returncode(self) -> int | None: ...


class SandboxView(Protocol):
    @property
    def host_pid(self) -> int: ...

    @property
    def process(self) -> ProcessView: ...


class LogCounts(Protocol):
    """How much one container wrote, per stream, over all its instances."""

    @property
    def lines(self) -> Mapping[Stream, int]: ...

    @property
    def bytes(self) -> Mapping[Stream, int]: ...


class SinkView(Protocol):
    @property
    def containers(self) -> Mapping[str, LogCounts]: ...

    def system(self, message: str) -> None: ...


class PodView(Protocol):
    """The pod runner as a scrape sees it.

    `state` (a `lifecycle.PodState`) is read with ``getattr``: the runner sets
    it only once the lifecycle core has begun, and a scrape may come earlier.
    """

    @property
    def pod(self) -> Pod: ...

    @property
    def cgroups(self) -> Mapping[str, CgroupReader]: ...

    @property
    def network(self) -> NetworkView | None: ...

    @property
    def sandbox(self) -> SandboxView | None: ...

    @property
    def orphans_reaped(self) -> int: ...

    @property
    def sink(self) -> SinkView: ...

    def wall_time(self, monotonic: float | None) -> float | None: ...


def current_state(view: PodView) -> lc.PodState | None:
    """The core's state, or None before the runner has begun it."""
    state = getattr(view, "state", None)
    return state if isinstance(state, lc.PodState) else None
