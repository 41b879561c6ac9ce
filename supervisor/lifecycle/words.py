"""The lifecycle's words: Kubernetes' states, phases and reasons, and the core's own steps."""

from __future__ import annotations

from enum import Enum, StrEnum

from podvisor.supervisor.lifecycle import backoff
from podvisor.supervisor.manifest import model

# The manifest model's own enums: "init", "sidecar", "main"; "Always", "OnFailure", "Never".
ContainerKind = model.ContainerKind
RestartPolicy = model.RestartPolicy
BackOffPolicy = backoff.BackOffPolicy


class ProbeKind(StrEnum):
    STARTUP = "startup"
    LIVENESS = "liveness"
    READINESS = "readiness"


class Hook(StrEnum):
    POST_START = "postStart"
    PRE_STOP = "preStop"


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class State(StrEnum):
    """Kubernetes' container state (the key of `state` in a containerStatus)."""

    WAITING = "waiting"
    RUNNING = "running"
    TERMINATED = "terminated"


class Reason(StrEnum):
    # A container, Waiting
    POD_INITIALIZING = "PodInitializing"
    CONTAINER_CREATING = "ContainerCreating"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    # A container, Terminated
    COMPLETED = "Completed"
    ERROR = "Error"
    OOM_KILLED = "OOMKilled"
    CONTAINER_CANNOT_RUN = "ContainerCannotRun"
    START_ERROR = "StartError"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"  # a subPath out of its volume
    # The pod
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    INIT_DIED = "InitDied"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"  # a Job's
    EVICTED = "Evicted"  # an emptyDir past its sizeLimit


class Step(Enum):
    """Where one container is in its life; finer than `State`."""

    PENDING = "pending"  # not yet its turn (rule 3)
    CREATING = "creating"  # StartContainer sent, no process yet
    POST_START = "post-start"  # process up, postStart hook running (rule 4)
    STARTING = "starting"  # running, not yet started (rule 5)
    RUNNING = "running"  # running and started
    PRE_STOP = "pre-stop"  # preStop hook running (rule 9)
    SIGNALLED = "signalled"  # stop signal sent
    KILLED = "killed"  # KillContainer sent
    BACK_OFF = "back-off"  # waiting to restart (rule 8)
    DONE = "done"  # terminated for good


#: Being stopped: its preStop hook, its stop signal or its kill is on the way.
STOPPING = frozenset({Step.PRE_STOP, Step.SIGNALLED, Step.KILLED})
#: A process may exist: the pod cannot finish while a container is in one of these.
LIVE = frozenset({Step.CREATING, Step.POST_START, Step.STARTING, Step.RUNNING}) | STOPPING
#: The process runs and nobody is stopping it.
UP = frozenset({Step.POST_START, Step.STARTING, Step.RUNNING})

STOP_TIMER = "stop"  # the pod's one deadline (rule 12)
#: Kubernetes' minimumGracePeriodInSeconds: the kubelet leaves every container at
#: least this long between its stop signal and SIGKILL (rule 9).
MINIMUM_GRACE_SECONDS = 2.0
DEADLINE_TIMER = "active-deadline"  # activeDeadlineSeconds (rule 11)
