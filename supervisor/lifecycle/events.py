"""Events: what the runner reports to the core."""

from __future__ import annotations

from dataclasses import field
from typing import TypeAlias

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.lifecycle.words import Hook, ProbeKind, Reason


@frozen
class Started:
    name: str
    pid: int = 0


@frozen
class StartFailed:
    name: str
    exit_code: int = 127  # 127: no such program; 126: not executable
    reason: Reason = Reason.CONTAINER_CANNOT_RUN
    message: str = ""


@frozen
class Exited:
    name: str
    exit_code: int | None = 0
    signal: int | None = None
    oom_killed: bool = False
    message: str = ""  # its termination message (terminationMessagePath, or the log's end)


@frozen
class HookFinished:
    name: str
    hook: Hook
    success: bool = True
    message: str = ""


@frozen
class ProbeResult:
    name: str
    kind: ProbeKind
    success: bool
    message: str = ""
    #: How long the attempt took, for the metrics; no part of what the result says.
    seconds: float = field(default=0.0, compare=False)


@frozen
class Notified:
    """One NOTIFY_SOCKET datagram from the container (systemd's sd_notify)."""

    name: str
    ready: bool = False
    watchdog: bool = False
    stopping: bool = False
    status: str | None = None


@frozen
class TimerFired:
    key: str


@frozen
class StopRequested:
    immediate: bool = False
    signal: int = 15  # what the supervisor received; the result if nothing ran
    #: The pod ends with 128 + signal whatever its containers did (SIGQUIT: rule 15).
    status_from_signal: bool = False


@frozen
class Evicted:
    """The pod outgrew what it asked for (an emptyDir past its sizeLimit): the kubelet's words."""

    message: str


@frozen
class InitDied:
    message: str = ""


@frozen
class RestartRequested:
    """`podvisor restart POD NAME` (rule 16)."""

    name: str


Event: TypeAlias = (
    Started
    | StartFailed
    | Exited
    | HookFinished
    | ProbeResult
    | Notified
    | TimerFired
    | StopRequested
    | InitDied
    | Evicted
    | RestartRequested
)
