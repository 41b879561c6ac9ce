"""The pod's lifecycle, pure: Kubernetes' rules as a state machine with no IO.

`machine` holds the rules and the transitions (`begin`, `handle`); the
other modules hold its vocabulary: `words` (states, phases, reasons),
`plan` (what the core knows of the manifest), `status` (the pod's state),
`events` (what the runner reports) and `effects` (what the core asks for).
Everyone else imports the package: ``from podvisor.supervisor import
lifecycle as lc``.
"""

from __future__ import annotations

from podvisor.supervisor.lifecycle.effects import (
    CancelTimer,
    Effect,
    KillContainer,
    PodFinished,
    RunHook,
    SetTimer,
    SignalContainer,
    StartContainer,
    StartProbe,
    StopProbe,
)
from podvisor.supervisor.lifecycle.events import (
    Event,
    Evicted,
    Exited,
    HookFinished,
    InitDied,
    Notified,
    ProbeResult,
    RestartRequested,
    Started,
    StartFailed,
    StopRequested,
    TimerFired,
)
from podvisor.supervisor.lifecycle.machine import begin, handle
from podvisor.supervisor.lifecycle.plan import (
    ContainerSpec,
    PodPlan,
    ProbePlan,
    plan_for,
)
from podvisor.supervisor.lifecycle.record import Journal, PodEvent, last_words, record
from podvisor.supervisor.lifecycle.status import (
    ContainerStatus,
    PodState,
    Termination,
)
from podvisor.supervisor.lifecycle.words import (
    DEADLINE_TIMER,
    LIVE,
    MINIMUM_GRACE_SECONDS,
    STOP_TIMER,
    STOPPING,
    UP,
    BackOffPolicy,
    ContainerKind,
    Hook,
    PodPhase,
    ProbeKind,
    Reason,
    RestartPolicy,
    State,
    Step,
)

__all__ = [
    "DEADLINE_TIMER",
    "LIVE",
    "MINIMUM_GRACE_SECONDS",
    "STOPPING",
    "STOP_TIMER",
    "UP",
    "BackOffPolicy",
    "CancelTimer",
    "ContainerKind",
    "ContainerSpec",
    "ContainerStatus",
    "Effect",
    "Event",
    "Evicted",
    "Exited",
    "Hook",
    "HookFinished",
    "InitDied",
    "Journal",
    "KillContainer",
    "Notified",
    "PodEvent",
    "PodFinished",
    "PodPhase",
    "PodPlan",
    "PodState",
    "ProbeKind",
    "ProbePlan",
    "ProbeResult",
    "Reason",
    "RestartPolicy",
    "RestartRequested",
    "RunHook",
    "SetTimer",
    "SignalContainer",
    "StartContainer",
    "StartFailed",
    "StartProbe",
    "Started",
    "State",
    "Step",
    "StopProbe",
    "StopRequested",
    "Termination",
    "TimerFired",
    "begin",
    "handle",
    "last_words",
    "plan_for",
    "record",
]
