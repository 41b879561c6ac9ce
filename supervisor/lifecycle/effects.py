"""Effects: what the core asks the runner to do."""

from __future__ import annotations

from typing import TypeAlias

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.lifecycle.words import Hook, PodPhase, ProbeKind


@frozen
class StartContainer:
    name: str


@frozen
class RunHook:
    name: str
    hook: Hook


@frozen
class SignalContainer:
    name: str
    signal: int


@frozen
class KillContainer:
    """SIGKILL the container's whole cgroup (also when its process is not up yet)."""

    name: str


@frozen
class StartProbe:
    name: str
    kind: ProbeKind


@frozen
class StopProbe:
    name: str
    kind: ProbeKind


@frozen
class SetTimer:
    """Report TimerFired(key) at monotonic time `at`; an armed key moves."""

    key: str
    at: float


@frozen
class CancelTimer:
    key: str


@frozen
class PodFinished:
    exit_status: int
    phase: PodPhase


Effect: TypeAlias = (
    StartContainer
    | RunHook
    | SignalContainer
    | KillContainer
    | StartProbe
    | StopProbe
    | SetTimer
    | CancelTimer
    | PodFinished
)
