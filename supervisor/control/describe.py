"""What `podvisor events` and `podvisor describe` are told: the pod's events and its spec in words.

The events are the runner's `Journal` (`lifecycle.record` makes them from the
core's transitions); times go out as Unix seconds. A container's spec is put
in kubectl describe's words here, on the server, so the client needs no
manifest model.
"""

from __future__ import annotations

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.control.wire import Condition, ContainerDetail, EventRecord
from podvisor.supervisor.manifest.model import (
    Container,
    ExecAction,
    HTTPGetAction,
    Probe,
    TCPSocketAction,
)
from podvisor.supervisor.pod.view import PodView


def event_records(view: PodView) -> tuple[EventRecord, ...]:
    def wall(t: float) -> float:
        found = view.wall_time(t)
        assert found is not None
        return found

    return tuple(
        EventRecord(e.type, e.reason, e.message, e.container, e.count, wall(e.first), wall(e.last))
        for e in view.journal.events
    )


def conditions(state: lc.PodState | None) -> tuple[Condition, ...]:
    """The pod's conditions, in the order kubectl describe lists them."""

    def word(value: bool) -> str:
        return "True" if value else "False"

    if state is None:
        return (Condition("PodScheduled", "True"),)
    return (
        Condition("PodScheduled", "True"),
        Condition("Initialized", word(state.initialized)),
        Condition("Ready", word(state.ready)),
        Condition("ContainersReady", word(state.containers_ready)),
    )


def detail(c: Container) -> ContainerDetail:
    r = c.resources
    limits = _quantities(r.cpu_limit_millicores, r.memory_limit_bytes)
    requests = _quantities(r.cpu_request_millicores, r.memory_request_bytes)
    probes = tuple(
        f"{kind}: {_probe(p)}"
        for kind, p in (
            ("Liveness", c.liveness_probe),
            ("Readiness", c.readiness_probe),
            ("Startup", c.startup_probe),
        )
        if p is not None
    )
    mounts = tuple(
        f"{m.mount_path} from {m.name} ({'ro' if m.read_only else 'rw'}"
        + (f", path {m.sub_path!r}" if m.sub_path else "")
        + ")"
        for m in c.volume_mounts
    )
    return ContainerDetail(c.name, c.image or "", c.argv, limits, requests, probes, mounts)


def _quantities(millicores: int | None, memory: int | None) -> tuple[str, ...]:
    found = []
    if millicores is not None:
        found.append(f"cpu: {millicores}m")
    if memory is not None:
        mib, rest = divmod(memory, 1 << 20)
        found.append(f"memory: {mib}Mi" if rest == 0 else f"memory: {memory}")
    return tuple(found)


def _probe(p: Probe) -> str:
    """As kubectl describe writes a probe: its action, then its timings."""
    match p.handler:
        case ExecAction(command):
            action = "exec [" + " ".join(command) + "]"
        case HTTPGetAction(path=path, port=port, host=host, scheme=scheme):
            action = f"http-get {scheme.lower()}://{host or ''}:{port}{path}"
        case TCPSocketAction(port=port, host=host):
            action = f"tcp-socket {host or ''}:{port}"
        case _:
            action = type(p.handler).__name__
    return (
        f"{action} delay={p.initial_delay_seconds}s timeout={p.timeout_seconds}s "
        f"period={p.period_seconds}s #success={p.success_threshold} "
        f"#failure={p.failure_threshold}"
    )
