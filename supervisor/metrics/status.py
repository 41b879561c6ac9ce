"""The pod's status as Kubernetes shows it (`kubectl get pod -o json` | .status).

Field names and shapes are the Pod API's: `phase`, `conditions`, `podIP`,
`podIPs`, `startTime`, `qosClass`, `initContainerStatuses` and
`containerStatuses` with `state` / `lastState` ({"waiting": {...}},
{"running": {...}} or {"terminated": {...}}), `ready`, `started` and
`restartCount`; times are RFC 3339 in UTC, to the second, as the API server
writes them.

Secrets. Nothing here comes from a container's environment or arguments,
except through the free-text `message` fields: a failed exec probe's message
quotes its command and output, which may echo a variable. Every message is
therefore passed through `Redactor`, which blanks each environment value
and each argument the manifest holds (and the words of multi-word ones).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import (
    Container,
    ContainerKind,
    ExecAction,
    HTTPGetAction,
    Pod,
)
from podvisor.supervisor.metrics.recorder import CONDITIONS, Transition

REDACTED = "[redacted]"
#: Words of a multi-word argument (a shell script) shorter than this are left:
#: blanking "-c" or "1" everywhere would garble every message.
MIN_WORD = 4
#: What separates the words of a shell script: an echoed word comes out without them.
_SHELL_WORDS = re.compile(r"[\s;|&<>()'\"`$]+")

WallTime = Callable[[float | None], float | None]
Json = dict[str, Any]

# --- Redaction ---------------------------------------------------------------------


def _arguments(c: Container) -> Iterator[str]:
    """Everything after the program name, of the container and its probes and hooks."""
    yield from c.command[1:]
    yield from c.args
    handlers = [c.liveness_probe, c.readiness_probe, c.startup_probe]
    probes = [p.handler for p in handlers if p is not None]
    hooks = [h for h in (c.lifecycle.post_start, c.lifecycle.pre_stop) if h is not None]
    for handler in [*probes, *hooks]:
        if isinstance(handler, ExecAction):
            yield from handler.command[1:]
        elif isinstance(handler, HTTPGetAction):
            yield from (value for _, value in handler.headers)


def secrets_of(pod: Pod) -> set[str]:
    """The strings no output may show: env values and arguments, as written and as quoted."""
    found: set[str] = set()
    for c in pod.spec.all_containers:
        values = [e.value for e in c.env if e.value]
        for value in [*values, *_arguments(c)]:
            found.add(value)
            found.add(shlex.quote(value))  # how an exec's message quotes its command
            found.update(w for w in _SHELL_WORDS.split(value) if len(w) >= MIN_WORD)
    found.discard("")
    return found


class Redactor:
    """Blanks every secret of a pod in a text; one regular expression, longest first."""

    def __init__(self, secrets: Iterable[str]) -> None:
        ordered = sorted(set(secrets), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)


# --- The status ----------------------------------------------------------------------


def rfc3339(wall: float | None) -> str | None:
    if wall is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(wall)))


def pod_status(
    pod: Pod,
    state: lc.PodState | None,
    *,
    pod_ip: str | None,
    wall_time: WallTime,
    conditions: dict[str, Transition],
    redact: Callable[[str], str],
) -> Json:
    """The pod's `status`; *state* None means the core has not begun yet."""
    status: Json = {"phase": state.phase.value if state else lc.PodPhase.PENDING.value}
    if state is not None and state.reason is not None:
        status["reason"] = state.reason.value
        status["message"] = redact(state.message)
    status["conditions"] = _conditions(state, wall_time, conditions)
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if state is not None:
        status["startTime"] = rfc3339(wall_time(state.start_time))
    statuses = {c.name: c for c in state.containers} if state is not None else {}
    for key, main in (("initContainerStatuses", False), ("containerStatuses", True)):
        chosen = [c for c in pod.spec.all_containers if (c.kind is ContainerKind.MAIN) == main]
        if chosen:
            status[key] = [_container(c, statuses.get(c.name), wall_time, redact) for c in chosen]
    status["qosClass"] = qos_class(pod)
    return status


def pod_events(
    pod: Pod, events: Iterable[lc.PodEvent], wall_time: WallTime, redact: Callable[[str], str]
) -> list[Json]:
    """The pod's events, shaped as Kubernetes' Events (core/v1), oldest first."""
    found: list[Json] = []
    for e in events:
        involved: Json = {"kind": "Pod", "namespace": pod.namespace, "name": pod.name}
        if e.container is not None:
            involved["fieldPath"] = f"spec.containers{{{e.container}}}"
        found.append(
            {
                "type": e.type,
                "reason": e.reason,
                "message": redact(e.message),
                "count": e.count,
                "firstTimestamp": rfc3339(wall_time(e.first)),
                "lastTimestamp": rfc3339(wall_time(e.last)),
                "involvedObject": involved,
            }
        )
    return found


def _conditions(
    state: lc.PodState | None, wall_time: WallTime, seen: dict[str, Transition]
) -> list[Json]:
    start = wall_time(state.start_time) if state is not None else None
    found: list[Json] = []
    values = (
        (state.initialized, state.ready, state.containers_ready)
        if state is not None
        else (False, False, False)
    )
    for name, value in zip(CONDITIONS, values, strict=True):
        condition: Json = {"type": name, "status": "True" if value else "False"}
        transition = seen.get(name)
        since = wall_time(transition.at) if transition and transition.status == value else start
        condition["lastTransitionTime"] = rfc3339(since)
        if not value and state is not None:
            condition.update(_why_not(name, state))
        found.append(condition)
    found.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(start)})
    return found


def _why_not(condition: str, state: lc.PodState) -> Json:
    """Kubernetes' reason and message for a condition that is False."""
    if state.finished:
        return {"reason": "PodCompleted"}
    if condition == "Initialized":
        unfinished = [c.name for c in state.containers if not _initialized(c)]
        return {
            "reason": "ContainersNotInitialized",
            "message": f"containers with incomplete status: [{' '.join(unfinished)}]",
        }
    unready = [c.name for c in state.containers if c.kind is not ContainerKind.INIT and not c.ready]
    return {
        "reason": "ContainersNotReady",
        "message": f"containers with unready status: [{' '.join(unready)}]",
    }


def _initialized(c: lc.ContainerStatus) -> bool:
    """Whether *c* no longer holds the pod's initialization back (rule 3 of the core)."""
    if c.kind is ContainerKind.INIT:
        return c.state is lc.State.TERMINATED and c.exit_code == 0
    return c.kind is ContainerKind.MAIN or c.started


def _container(
    c: Container,
    status: lc.ContainerStatus | None,
    wall_time: WallTime,
    redact: Callable[[str], str],
) -> Json:
    status = status or lc.ContainerStatus(c.name, c.kind)
    last = status.last_state
    return {
        "name": c.name,
        "state": _state(status, wall_time, redact),
        "lastState": {"terminated": _terminated(last, wall_time, redact)} if last else {},
        "ready": status.ready,
        "restartCount": status.restart_count,
        "image": c.image or "",
        "imageID": "",
        "started": status.started,
    }


def _state(status: lc.ContainerStatus, wall_time: WallTime, redact: Callable[[str], str]) -> Json:
    if status.state is lc.State.RUNNING:
        return {"running": {"startedAt": rfc3339(wall_time(status.started_at))}}
    if status.state is lc.State.TERMINATED and status.ended is not None:
        return {"terminated": _terminated(status.ended, wall_time, redact)}
    waiting: Json = {}
    if status.reason is not None:
        waiting["reason"] = status.reason.value
    if status.message:
        waiting["message"] = redact(status.message)
    return {"waiting": waiting}


def _terminated(end: lc.Termination, wall_time: WallTime, redact: Callable[[str], str]) -> Json:
    found: Json = {"exitCode": end.exit_code, "reason": end.reason.value}
    if end.signal is not None:
        found["signal"] = end.signal
    if end.message:
        found["message"] = redact(end.message)
    found["startedAt"] = rfc3339(wall_time(end.started_at))
    found["finishedAt"] = rfc3339(wall_time(end.finished_at))
    return found


def qos_class(pod: Pod) -> str:
    """Kubernetes' QoS class: Guaranteed, Burstable or BestEffort, from requests and limits."""
    resources = [c.resources for c in pod.spec.all_containers]
    figures = [
        (
            r.cpu_request_millicores,
            r.cpu_limit_millicores,
            r.memory_request_bytes,
            r.memory_limit_bytes,
        )
        for r in resources
    ]
    if all(f == (None, None, None, None) for f in figures):
        return "BestEffort"
    guaranteed = all(
        cpu_lim is not None and mem_lim is not None and cpu_req == cpu_lim and mem_req == mem_lim
        for cpu_req, cpu_lim, mem_req, mem_lim in figures
    )
    return "Guaranteed" if guaranteed else "Burstable"
