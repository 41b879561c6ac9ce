"""The status: what `podvisor status`, the metrics and the core's rules read of the pod."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.lifecycle.plan import PodPlan
from podvisor.supervisor.lifecycle.words import (
    ContainerKind,
    PodPhase,
    ProbeKind,
    Reason,
    State,
    Step,
)


@frozen
class Termination:
    """Kubernetes' `terminated` state of one container instance."""

    exit_code: int
    reason: Reason
    message: str = ""
    signal: int | None = None
    started_at: float | None = None
    finished_at: float = 0.0
    killed: bool = False  # podvisor sent SIGKILL: its grace period ended, or the pod was killed


@frozen
class ContainerStatus:
    name: str
    kind: ContainerKind
    step: Step = Step.PENDING
    state: State = State.WAITING
    reason: Reason | None = Reason.POD_INITIALIZING
    message: str = ""
    terminated: Termination | None = None  # the latest instance's end, until a new one starts
    previous: Termination | None = None  # the end of the instance before that
    restart_count: int = 0
    started_at: float | None = None  # of the instance Running or Terminated now
    ready: bool = False
    started: bool = False
    pid: int | None = None
    notify_status: str = ""  # the last STATUS= on NOTIFY_SOCKET
    notified_ready: bool = False  # READY=1 came (perhaps while postStart ran)
    restarts_in_a_row: int = 0  # for the back-off (rule 8)
    restart_requested: bool = False  # start again once it has exited (rule 16)
    grace_ends: float | None = None  # while it stops: when its grace period ends (rule 9)
    signalled_at: float | None = None  # while it stops: when its stop signal went (rule 9)
    #: A sidecar whose preStop hook the pod's stop started: its signal waits for its turn (rule 12).
    waits_turn: bool = False
    pre_stop_ended: bool = False  # ... and that hook has ended
    probing: frozenset[ProbeKind] = frozenset()
    streaks: Mapping[ProbeKind, int] = field(default_factory=dict)  # >0 successes, <0 failures

    @property
    def last_state(self) -> Termination | None:
        """Kubernetes' lastState: the termination before the current state."""
        if self.state is State.WAITING and self.terminated is not None:
            return self.terminated  # waiting in back-off: the crash it waits after
        return self.previous

    @property
    def ended(self) -> Termination | None:
        """Kubernetes' `state.terminated`: set while the state is Terminated."""
        return self.terminated if self.state is State.TERMINATED else None

    @property
    def exit_code(self) -> int | None:
        return None if self.ended is None else self.ended.exit_code

    @property
    def signal(self) -> int | None:
        return None if self.ended is None else self.ended.signal

    @property
    def finished_at(self) -> float | None:
        return None if self.ended is None else self.ended.finished_at


@frozen
class PodState:
    plan: PodPlan
    containers: tuple[ContainerStatus, ...]
    start_time: float
    phase: PodPhase = PodPhase.PENDING
    reason: Reason | None = None
    message: str = ""
    initialized: bool = False  # the Initialized condition (rule 3)
    gate: int = 0  # how many init entries have let the next one start
    stopping: bool = False
    killing: bool = False
    grace_over: bool = False  # the pod's deadline passed: whoever waits for its turn stops now
    stop_signal: int = 15
    stop_requested: bool = False  # StopRequested came (not the pod's own end)
    status_from_signal: bool = False
    stop_began: float | None = None
    stop_deadline: float | None = None
    failed_init: str | None = None
    timers: frozenset[str] = frozenset()  # armed by SetTimer, not yet fired or cancelled
    exit_status: int | None = None

    @property
    def finished(self) -> bool:
        return self.exit_status is not None

    @property
    def containers_ready(self) -> bool:
        serving = [c for c in self.containers if c.kind is not ContainerKind.INIT]
        return not self.finished and all(c.ready for c in serving)

    @property
    def ready(self) -> bool:
        return self.containers_ready  # no readiness gates

    def container(self, name: str) -> ContainerStatus:
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(f"the pod has no container named {name!r}")
