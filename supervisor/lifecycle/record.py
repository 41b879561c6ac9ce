"""The pod's events, as the kubelet records them, read off the core's transitions.

How this works
--------------
`record(before, event, after, now)` compares the core's state before and
after one `handle` call, knowing the event that caused it, and returns the
Kubernetes events that transition makes: pure, like the core, so one state
is the only source of truth and the tests are plain calls. `Journal` keeps
them as the kubelet's event recorder does: a repeat (same type, reason,
message and container) is folded into the first with its count and last
time raised; only the newest `Journal.limit` survive. `last_words` says in
one sentence why a finished pod ended.

The events, and when
--------------------
Pulled, Created, Started (Normal)   a container's process is up (Pulled: on
                               its image's root, which is in the store by then)
Failed (Warning)               its program could not be started
Unhealthy (Warning)            a probe failed, with the probe's own words
Killing (Normal)               podvisor stops it: why, and whether it comes back
BackOff (Warning)              it waits in back-off before it starts again
OOMKilling (Warning)           the kernel's OOM killer ended it
FailedPostStartHook, FailedPreStopHook (Warning)
DeadlineExceeded, InitDied, Evicted (Warning)   the pod itself (Evicted: an
                               emptyDir past its sizeLimit, the kubelet's words)

Images are had before the pod starts (an image that cannot be had stops it
then), so each start of a container on its image says Pulled as the kubelet
says it of an image present on the machine.
"""

from __future__ import annotations

import signal as signals
from dataclasses import replace

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.lifecycle.events import (
    Event,
    Exited,
    HookFinished,
    ProbeResult,
    RestartRequested,
    Started,
    StartFailed,
    TimerFired,
)
from podvisor.supervisor.lifecycle.status import ContainerStatus, PodState
from podvisor.supervisor.lifecycle.words import (
    LIVE,
    STOPPING,
    UP,
    ContainerKind,
    Hook,
    ProbeKind,
    Reason,
    Step,
)

NORMAL = "Normal"
WARNING = "Warning"


@frozen
class PodEvent:
    """One Kubernetes event; `first` and `last` are the core's (monotonic) times."""

    type: str
    reason: str
    message: str
    container: str | None = None
    count: int = 1
    first: float = 0.0
    last: float = 0.0

    @property
    def key(self) -> tuple[str, str, str, str | None]:
        """What makes two events the same one, repeated (as the kubelet folds them)."""
        return (self.type, self.reason, self.message, self.container)


def record(before: PodState, event: Event, after: PodState, now: float) -> list[PodEvent]:
    """The events of the transition *before* -> *after* that *event* caused."""
    found: list[PodEvent] = []
    for old, new in zip(before.containers, after.containers, strict=True):
        found += _container(old, new, event, after.plan.spec(new.name).image)
    found += _pod(before, after)
    return [replace(e, first=now, last=now) for e in found]


def _container(
    old: ContainerStatus, new: ContainerStatus, event: Event, image: str
) -> list[PodEvent]:
    name = new.name
    found: list[PodEvent] = []

    def add(kind: str, reason: str, message: str) -> None:
        found.append(PodEvent(kind, reason, message, name))

    if getattr(event, "name", None) == name:
        found += _caused_by(old, new, event)
    if new.pid is not None and new.pid != old.pid and isinstance(event, Started):
        if image:  # pulled before the pod started, if it had to be
            add(NORMAL, "Pulled", f'Container image "{image}" already present on machine')
        add(NORMAL, "Created", f"Created container: {name}")
        add(NORMAL, "Started", f"Started container {name}")
    if old.step in UP and new.step in STOPPING:
        add(NORMAL, "Killing", _killing(new, event))
    elif old.step is Step.SIGNALLED and new.step is Step.KILLED:
        add(NORMAL, "Killing", f"Container {name} did not stop in its grace period: killed")
    if new.step is Step.BACK_OFF and old.step is not Step.BACK_OFF:
        add(WARNING, "BackOff", f"Back-off restarting failed container {name}")
    return found


def _caused_by(old: ContainerStatus, new: ContainerStatus, event: Event) -> list[PodEvent]:
    """What the event itself says about the container (the core took it, not stale)."""
    name = new.name
    match event:
        case StartFailed() if old.step is Step.CREATING and new.step is not Step.CREATING:
            return [PodEvent(WARNING, "Failed", f"Error: {event.message}", name)]
        case ProbeResult() if not event.success and event.kind in old.probing:
            what = event.kind.value.capitalize()
            return [PodEvent(WARNING, "Unhealthy", f"{what} probe failed: {event.message}", name)]
        case Exited() if event.oom_killed and old.step in LIVE:
            pid = f"process {old.pid}" if old.pid else "its process"
            message = f"Memory cgroup out of memory: killed {pid} of container {name}"
            return [PodEvent(WARNING, "OOMKilling", message, name)]
        case HookFinished() if not event.success:
            reason = "FailedPostStartHook" if event.hook is Hook.POST_START else "FailedPreStopHook"
            return [PodEvent(WARNING, reason, f"{event.hook.value} hook failed: {event.message}")]
    return []


def _killing(c: ContainerStatus, event: Event) -> str:
    """Why the kubelet stops a container, in its own words where it has them."""
    name = c.name
    match event:
        case ProbeResult(kind=ProbeKind.LIVENESS):
            return f"Container {name} failed liveness probe, will be restarted"
        case ProbeResult(kind=ProbeKind.STARTUP):
            return f"Container {name} failed startup probe, will be restarted"
        case RestartRequested():
            return f"Container {name} restart requested, will be restarted"
        case HookFinished(hook=Hook.POST_START):
            return f"Container {name} failed its postStart hook, will be restarted"
        case TimerFired(key=key) if key.startswith("watchdog/"):
            return f"Container {name} missed its watchdog, will be restarted"
    return f"Stopping container {name}"


def _pod(before: PodState, after: PodState) -> list[PodEvent]:
    if after.reason is before.reason or after.reason is None:
        return []
    if after.reason is Reason.DEADLINE_EXCEEDED:
        return [PodEvent(WARNING, "DeadlineExceeded", after.message)]
    if after.reason is Reason.INIT_DIED:
        return [PodEvent(WARNING, "InitDied", f"The pod's init died: {after.message}")]
    if after.reason is Reason.EVICTED:
        return [PodEvent(WARNING, "Evicted", after.message)]
    return []


# --- Keeping them ------------------------------------------------------------------


class Journal:
    """The pod's events, oldest first, repeats folded, the newest `limit` kept."""

    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self.events: list[PodEvent] = []

    def add(self, event: PodEvent) -> PodEvent:
        """Keep *event*; the event as kept (a repeat comes back with its count raised)."""
        for i, kept in enumerate(self.events):
            if kept.key == event.key:
                folded = replace(kept, count=kept.count + event.count, last=event.last)
                del self.events[i]
                self.events.append(folded)  # the most recent last, as `kubectl get events`
                return folded
        self.events.append(event)
        del self.events[: -self.limit]
        return event


# --- Last words ----------------------------------------------------------------------


def last_words(state: PodState) -> str:
    """Why a finished pod ended, in a sentence: its cause, then each main container's end."""
    if state.reason is Reason.INIT_DIED:
        cause = f"the pod's init died ({state.message})"
    elif state.reason is Reason.DEADLINE_EXCEEDED:
        cause = f"it ran past activeDeadlineSeconds ({state.plan.active_deadline_seconds:g}s)"
    elif state.reason is Reason.EVICTED:
        cause = f"evicted: {state.message}"
    elif state.failed_init is not None:
        cause = f"init container {state.failed_init} failed"
    elif state.stop_requested:
        cause = f"stopped on request: {_signal_name(state.stop_signal)}"
    else:
        cause = "its main containers ended"
    began = None  # when podvisor began to stop the main containers, if it did
    stopped = state.stop_requested or state.reason is not None or state.failed_init is not None
    if stopped:
        began = state.stop_began
    ends = [_end(c, state, began) for c in state.containers if c.kind is ContainerKind.MAIN]
    if state.failed_init is not None:
        ends.insert(0, _end(state.container(state.failed_init), state, None))
    return f"pod {state.phase.value} (exit {state.exit_status}): {cause}; {'; '.join(ends)}"


def _end(c: ContainerStatus, state: PodState, stop_began: float | None) -> str:
    end = c.terminated
    if end is None:
        return f"{c.name} never started"
    if end.reason is Reason.OOM_KILLED:
        return f"{c.name} was OOMKilled (exit {end.exit_code})"
    return f"{c.name} exited {end.exit_code}{_how(c, state, stop_began)}"


def _how(c: ContainerStatus, state: PodState, stop_began: float | None) -> str:
    end = c.terminated
    assert end is not None
    if stop_began is not None and end.finished_at >= stop_began and end.started_at is not None:
        if end.signal == signals.SIGKILL and (end.killed or state.killing):
            return " (SIGKILL: still running when the grace period ended)"
        return " after " + _signal_name(state.plan.spec(c.name).stop_signal)
    if end.signal is not None:
        return f" ({_signal_name(end.signal)})"
    if end.reason not in (Reason.COMPLETED, Reason.ERROR) and end.message:
        return f" ({end.reason.value}: {end.message})"
    if end.message:
        # The program's own termination message: the pod is gone once these
        # words are said, so they are where a user reads why it ended.
        return f" (its message: {_first_line(end.message)})"
    return ""


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    if not lines:
        return ""
    first = lines[0] if len(lines[0]) <= 200 else lines[0][:200] + "..."
    return first + (" ..." if len(lines) > 1 else "")


def _signal_name(signum: int) -> str:
    try:
        return signals.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
