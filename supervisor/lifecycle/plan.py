"""The plan: what the lifecycle core knows of the manifest, and how it is read from it."""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.lifecycle.words import (
    BackOffPolicy,
    ContainerKind,
    ProbeKind,
    RestartPolicy,
)

if TYPE_CHECKING:
    from podvisor.supervisor.manifest.model import Container, Pod, Probe


@frozen
class ProbePlan:
    """What the core needs of a probe; the runner runs it and reports each result."""

    failure_threshold: int = 3
    success_threshold: int = 1
    termination_grace_seconds: float | None = None


@frozen
class ContainerSpec:
    name: str
    kind: ContainerKind = ContainerKind.MAIN
    startup_probe: ProbePlan | None = None
    liveness_probe: ProbePlan | None = None
    readiness_probe: ProbePlan | None = None
    has_post_start: bool = False
    has_pre_stop: bool = False
    stop_signal: int = 15
    notify_ready: bool = False  # counts as started only after READY=1
    watchdog_seconds: float | None = None  # WATCHDOG_USEC, in seconds
    image: str = ""  # the image its root comes from; "" on the host's files

    def probe(self, kind: ProbeKind) -> ProbePlan | None:
        return {
            ProbeKind.STARTUP: self.startup_probe,
            ProbeKind.LIVENESS: self.liveness_probe,
            ProbeKind.READINESS: self.readiness_probe,
        }[kind]


@frozen
class PodPlan:
    """The pod: containers in manifest order (init entries, then main containers)."""

    containers: tuple[ContainerSpec, ...]
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    grace_seconds: float = 30.0
    active_deadline_seconds: float | None = None
    backoff: BackOffPolicy = field(default_factory=BackOffPolicy)
    backoff_limit: int | None = None  # a Job's: restarts of failed containers in all

    def __post_init__(self) -> None:
        names = [c.name for c in self.containers]
        kinds = [c.kind is ContainerKind.MAIN for c in self.containers]
        if len(set(names)) != len(names) or not kinds or kinds != sorted(kinds) or not kinds[-1]:
            raise ValueError(f"need unique names, init entries first, a main container: {names}")

    def spec(self, name: str) -> ContainerSpec:
        return next(c for c in self.containers if c.name == name)


def plan_for(pod: Pod) -> PodPlan:
    """What the pure core needs to know of the manifest."""
    from podvisor.supervisor.manifest.rootfs import on_image

    def probe(p: Probe | None) -> ProbePlan | None:
        if p is None:
            return None
        grace = p.termination_grace_period_seconds
        return ProbePlan(
            p.failure_threshold, p.success_threshold, float(grace) if grace is not None else None
        )

    def spec(c: Container) -> ContainerSpec:
        watchdog = c.settings.watchdog_usec
        return ContainerSpec(
            name=c.name,
            kind=ContainerKind(c.kind.value),
            startup_probe=probe(c.startup_probe),
            liveness_probe=probe(c.liveness_probe),
            readiness_probe=probe(c.readiness_probe),
            has_post_start=c.lifecycle.post_start is not None,
            has_pre_stop=c.lifecycle.pre_stop is not None,
            stop_signal=int(c.settings.stop_signal),
            # s6's notification-fd is the program's own word that it is up.
            notify_ready=c.settings.notification_fd is not None,
            watchdog_seconds=watchdog / 1e6 if watchdog else None,
            image=(c.image or "") if on_image(pod, c) else "",
        )

    s = pod.settings
    deadline = pod.spec.active_deadline_seconds
    return PodPlan(
        containers=tuple(spec(c) for c in pod.spec.all_containers),
        restart_policy=RestartPolicy(pod.spec.restart_policy.value),
        grace_seconds=float(pod.spec.termination_grace_period_seconds),
        active_deadline_seconds=float(deadline) if deadline is not None else None,
        backoff=BackOffPolicy(
            s.backoff_initial_seconds, s.backoff_max_seconds, s.backoff_reset_seconds
        ),
        backoff_limit=pod.spec.backoff_limit,
    )
