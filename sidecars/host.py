"""What the sidecars package needs of the pod runner, and nothing more.

`podvisor.supervisor.pod.runner.PodRunner` fits `PodHost` as it is; the tests
pass a small stand-in with a real init. Every member is read-only here
(properties), so the runner's concrete types (`dict[str, ContainerCgroup]`,
`Sandbox | None`) fit the narrower ones below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from podvisor.init import protocol
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import Container, Pod

if TYPE_CHECKING:
    from podvisor.supervisor.pod.init_client import InitClient


class NetworkView(Protocol):
    @property
    def netns_path(self) -> str | None: ...

    @property
    def pod_ip(self) -> str | None: ...


class CgroupView(Protocol):
    def pids(self) -> list[int]: ...


class Sink(Protocol):
    def system(self, message: str) -> None: ...


class PodHost(Protocol):
    """The pod runner as probes, hooks and NOTIFY_SOCKET see it."""

    @property
    def pod(self) -> Pod: ...

    @property
    def sandbox(self) -> InitClient | None: ...

    @property
    def network(self) -> NetworkView | None: ...

    @property
    def cgroups(self) -> Mapping[str, CgroupView]: ...

    @property
    def sink(self) -> Sink: ...

    def spawn_request(
        self, c: Container, argv: list[str] | tuple[str, ...]
    ) -> protocol.Process: ...

    def post(self, event: lc.Event) -> None: ...
