"""kube-state-metrics' `kube_pod_*` series, from the lifecycle core's status.

Names, types, help texts and labels (`namespace`, `pod`, `uid`, `container`,
and `reason`, `phase`, `condition`, `resource`/`unit` where KSM has them) are
kube-state-metrics' v2 ones. As in KSM, init containers (sidecars among them:
they are init containers with restartPolicy Always) are reported under
`kube_pod_init_container_*` and main containers under `kube_pod_container_*`;
a `*_reason` series exists only for the current reason, with the value 1.
Every container of the manifest has its series for the life of the pod, as
KSM keeps a container's status for as long as the pod object exists.

Every series here follows from the manifest and the core's state alone, so
the families are made as kept ones (`families.KeptMetric`): the collector
yields the same ones until the state changes, and the encoder writes them
once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import Metric

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import Container, ContainerKind, Pod
from podvisor.supervisor.metrics.families import Family, non_empty

CONTAINER_LABELS = ("container", "namespace", "pod", "uid")
POD_LABELS = ("namespace", "pod", "uid")
#: KSM's phase series: one per phase, 1 for the current one.
PHASES = ("Pending", "Succeeded", "Failed", "Unknown", "Running")

Flag = Callable[[lc.ContainerStatus], bool]

_FLAGS: tuple[tuple[str, str, Flag], ...] = (
    (
        "status_running",
        "Describes whether the container is currently in running state.",
        lambda c: c.state is lc.State.RUNNING,
    ),
    (
        "status_waiting",
        "Describes whether the container is currently in waiting state.",
        lambda c: c.state is lc.State.WAITING,
    ),
    (
        "status_terminated",
        "Describes whether the container is currently in terminated state.",
        lambda c: c.state is lc.State.TERMINATED,
    ),
    (
        "status_ready",
        "Describes whether the containers readiness check succeeded.",
        lambda c: c.ready,
    ),
)


def _prefix(kind: ContainerKind) -> str:
    return "kube_pod_container_" if kind is ContainerKind.MAIN else "kube_pod_init_container_"


def pod_families(pod: Pod, state: lc.PodState | None, start_time: float | None) -> Iterator[Metric]:
    """Every kube_pod_* series; *state* None means the core has not begun (Pending)."""
    labels = (pod.namespace, pod.name, pod.uid)
    phase = Family(
        "kube_pod_status_phase",
        "The pods current phase.",
        "gauge",
        (*POD_LABELS, "phase"),
        kept=True,
    )
    current = state.phase.value if state is not None else lc.PodPhase.PENDING.value
    for name in PHASES:
        phase.add((*labels, name), 1.0 if name == current else 0.0)
    ready = Family(
        "kube_pod_status_ready",
        "Describes whether the pod is ready to serve requests.",
        "gauge",
        (*POD_LABELS, "condition"),
        kept=True,
    )
    is_ready = state is not None and state.ready
    for condition, value in (("true", is_ready), ("false", not is_ready), ("unknown", False)):
        ready.add((*labels, condition), float(value))
    started = Family(
        "kube_pod_start_time",
        "Start time in unix timestamp for a pod.",
        "gauge",
        POD_LABELS,
        kept=True,
    )
    if start_time is not None:
        started.add(labels, start_time)
    yield from non_empty([phase, ready, started])


def container_families(pod: Pod, state: lc.PodState | None) -> Iterator[Metric]:
    """kube_pod_container_* and kube_pod_init_container_*, for every container."""
    statuses = {c.name: c for c in state.containers} if state is not None else {}
    for kind in (ContainerKind.INIT, ContainerKind.MAIN):
        wanted = [c for c in pod.spec.all_containers if _prefix(c.kind) == _prefix(kind)]
        pairs = [(c, statuses.get(c.name) or lc.ContainerStatus(c.name, c.kind)) for c in wanted]
        yield from non_empty(_status_families(_prefix(kind), pod, pairs))
        yield from non_empty(_resource_families(_prefix(kind), pod, wanted))


def _status_families(
    prefix: str, pod: Pod, pairs: Sequence[tuple[Container, lc.ContainerStatus]]
) -> Iterator[Family]:
    restarts = Family(
        prefix + "status_restarts_total",
        "The number of container restarts per container.",
        "counter",
        CONTAINER_LABELS,
        kept=True,
    )
    flags = [
        (Family(prefix + n, doc, "gauge", CONTAINER_LABELS, kept=True), f) for n, doc, f in _FLAGS
    ]
    reasons = _reason_families(prefix)
    exit_code = Family(
        prefix + "status_last_terminated_exitcode",
        "Describes the exit code for the last container in terminated state.",
        "gauge",
        CONTAINER_LABELS,
        kept=True,
    )
    for container, status in pairs:
        labels = (container.name, pod.namespace, pod.name, pod.uid)
        restarts.add(labels, status.restart_count)
        for family, flag in flags:
            family.add(labels, float(flag(status)))
        for family, reason_of in reasons:
            reason = reason_of(status)
            if reason is not None:
                family.add((*labels, reason), 1.0)
        last = status.last_state
        if last is not None:
            exit_code.add(labels, last.exit_code)
    yield restarts
    yield from (family for family, _ in flags)
    yield from (family for family, _ in reasons)
    if prefix == _prefix(ContainerKind.MAIN):
        yield exit_code  # KSM has no init-container counterpart


def _reason_families(
    prefix: str,
) -> list[tuple[Family, Callable[[lc.ContainerStatus], str | None]]]:
    def waiting(c: lc.ContainerStatus) -> str | None:
        return c.reason.value if c.state is lc.State.WAITING and c.reason is not None else None

    def terminated(c: lc.ContainerStatus) -> str | None:
        return c.ended.reason.value if c.ended is not None else None

    def last(c: lc.ContainerStatus) -> str | None:
        return c.last_state.reason.value if c.last_state is not None else None

    labels = (*CONTAINER_LABELS, "reason")
    return [
        (
            Family(
                prefix + "status_waiting_reason",
                "Describes the reason the container is currently in waiting state.",
                "gauge",
                labels,
                kept=True,
            ),
            waiting,
        ),
        (
            Family(
                prefix + "status_terminated_reason",
                "Describes the reason the container is currently in terminated state.",
                "gauge",
                labels,
                kept=True,
            ),
            terminated,
        ),
        (
            Family(
                prefix + "status_last_terminated_reason",
                "Describes the last reason the container was in terminated state.",
                "gauge",
                labels,
                kept=True,
            ),
            last,
        ),
    ]


def _resource_families(prefix: str, pod: Pod, containers: Sequence[Container]) -> Iterator[Family]:
    labels = (*CONTAINER_LABELS, "resource", "unit")
    limits = Family(
        prefix + "resource_limits",
        "The number of requested limit resource by a container.",
        "gauge",
        labels,
        kept=True,
    )
    requests = Family(
        prefix + "resource_requests",
        "The number of requested request resource by a container.",
        "gauge",
        labels,
        kept=True,
    )
    for c in containers:
        base = (c.name, pod.namespace, pod.name, pod.uid)
        r = c.resources
        _add_resource(limits, base, r.cpu_limit_millicores, r.memory_limit_bytes)
        if r.ephemeral_storage_limit_bytes is not None:  # as KSM names it: ephemeral_storage
            storage = float(r.ephemeral_storage_limit_bytes)
            limits.add((*base, "ephemeral_storage", "byte"), storage)
        _add_resource(requests, base, r.cpu_request_millicores, r.memory_request_bytes)
    yield limits
    yield requests


def _add_resource(
    family: Family, base: tuple[str, ...], millicores: int | None, memory: int | None
) -> None:
    # KSM: CPU in cores (unit "core"), memory in bytes (unit "byte").
    if millicores is not None:
        family.add((*base, "cpu", "core"), millicores / 1000)
    if memory is not None:
        family.add((*base, "memory", "byte"), float(memory))
