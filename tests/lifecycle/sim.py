"""A fake runner on a synthetic clock, to drive the lifecycle core through whole scenarios.

It does what the real runner does, with no processes: it carries out each
effect (start, hook, signal, kill, probe, timer) and turns it into the event
the OS would report, at the time a scripted `Behaviour` says. Every event and
effect is logged with its time, so a test reads like a timeline.

Each process instance reports at most one exit, as init guarantees: events
scheduled for an instance that has already exited are dropped.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podvisor.supervisor import lifecycle as lc


@dataclass(frozen=True)
class Behaviour:
    """How one instance of a fake container behaves."""

    runs_for: float | None = None  # exits on its own after this long; None: until stopped
    exit_code: int = 0  # ... with this code
    signal: int | None = None  # ... or killed by this signal
    oom_killed: bool = False
    message: str = ""  # its termination message
    cannot_run: int | None = None  # 127 or 126: the program cannot start
    stop_exit_code: int | None = None  # exits with this on its stop signal; None: dies of it
    stop_takes: float = 0.0  # from stop signal to exit
    ignores_stop: bool = False  # only a kill ends it
    hook_takes: float = 0.0
    post_start_ok: bool = True
    ready_after: float | None = None  # sends READY=1 this long after it started
    # Probe verdicts by kind, as a function of the time since the instance started.
    probes: Mapping[lc.ProbeKind, Callable[[float], bool]] = field(default_factory=dict)
    probe_period: float = 1.0


def _healthy(_since_start: float) -> bool:
    return True


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    event: lc.Event = field(compare=False)
    instance: int | None = field(compare=False)  # None: not tied to a process instance


class Sim:
    def __init__(
        self,
        plan: lc.PodPlan,
        behaviours: Mapping[str, Behaviour | Sequence[Behaviour]] | None = None,
        start: float = 0.0,
    ) -> None:
        self.plan = plan
        self.behaviours = behaviours or {}
        self.now = start
        self.log: list[tuple[float, lc.Event | lc.Effect]] = []
        self.timers: dict[str, float] = {}
        self.instances: dict[str, int] = {}  # how many times each was started
        self.alive: dict[str, int] = {}  # name -> the instance whose process exists
        self.probing: set[tuple[str, lc.ProbeKind]] = set()
        self.finished: list[lc.PodFinished] = []
        #: The Kubernetes events of every transition, folded as the kubelet folds them.
        self.journal = lc.Journal()
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self.state, effects = lc.begin(plan, start)
        self._apply(effects)

    # --- driving ---------------------------------------------------------------

    def send(self, event: lc.Event) -> list[lc.Effect]:
        """Hand one event to the core now, as the runner would."""
        self.log.append((self.now, event))
        before = self.state
        self.state, effects = lc.handle(self.state, event, self.now)
        for recorded in lc.record(before, event, self.state, self.now):
            self.journal.add(recorded)
        self._apply(effects)
        return effects

    def run(self, until: float = float("inf"), max_steps: int = 100_000) -> None:
        """Deliver due events and timers in time order up to `until` (or until quiet)."""
        for _ in range(max_steps):
            at = self._next_time()
            if at is None or at > until:
                break
            self.now = at
            event = self._take()
            self.send(event)
            if isinstance(event, lc.ProbeResult) and (event.name, event.kind) in self.probing:
                self._probe(event.name, event.kind, self.alive[event.name])
        else:
            raise AssertionError("the simulation did not settle")
        if until != float("inf"):
            self.now = max(self.now, until)

    def run_until_finished(self, limit: float = 1e7) -> lc.PodFinished:
        self.run(until=limit)
        assert self.finished, f"pod did not finish; {self.state}"
        return self.finished[0]

    def _next_time(self) -> float | None:
        while self._due and not self._current(self._due[0]):
            heapq.heappop(self._due)
        times = [self._due[0].at] if self._due else []
        return min(times + list(self.timers.values()), default=None)

    def _take(self) -> lc.Event:
        """The next event; process events go before timers due at the same time."""
        if self._due and self._due[0].at == self.now:
            event = heapq.heappop(self._due).event
            if isinstance(event, lc.Exited):
                del self.alive[event.name]
            return event
        key = min(self.timers, key=lambda k: self.timers[k])
        del self.timers[key]
        return lc.TimerFired(key)

    def _current(self, due: _Due) -> bool:
        ev = due.event
        if due.instance is None:
            return True
        name = getattr(ev, "name", "")
        if self.alive.get(name) != due.instance:
            return False
        return not isinstance(ev, lc.ProbeResult) or (name, ev.kind) in self.probing

    def _at(self, delay: float, event: lc.Event, instance: int | None) -> None:
        heapq.heappush(self._due, _Due(self.now + delay, next(self._seq), event, instance))

    # --- carrying out effects --------------------------------------------------

    def behaviour(self, name: str, instance: int | None = None) -> Behaviour:
        b = self.behaviours.get(name, Behaviour())
        if isinstance(b, Behaviour):
            return b
        n = self.instances.get(name, 1) if instance is None else instance
        return b[min(n, len(b)) - 1]

    def _apply(self, effects: list[lc.Effect]) -> None:
        for effect in effects:
            self.log.append((self.now, effect))
            self._apply_one(effect)

    def _apply_one(self, effect: lc.Effect) -> None:
        match effect:
            case lc.StartContainer(name):
                self._start(name)
            case lc.RunHook(name, hook):
                b, inst = self.behaviour(name), self.alive.get(name)
                ok = b.post_start_ok or hook is lc.Hook.PRE_STOP
                self._at(b.hook_takes, lc.HookFinished(name, hook, ok, "" if ok else "boom"), inst)
            case lc.SignalContainer(name, signal):
                b, inst = self.behaviour(name), self.alive.get(name)
                if inst is not None and not b.ignores_stop:
                    sig = signal if b.stop_exit_code is None else None
                    self._at(b.stop_takes, lc.Exited(name, b.stop_exit_code, sig), inst)
            case lc.KillContainer(name):
                if name in self.alive:
                    self._at(0.0, lc.Exited(name, None, 9), self.alive[name])
            case lc.StartProbe(name, kind):
                assert (name, kind) not in self.probing
                self.probing.add((name, kind))
                self._probe(name, kind, self.alive[name])
            case lc.StopProbe(name, kind):
                self.probing.remove((name, kind))
            case lc.SetTimer(key, at):
                assert at >= self.now
                self.timers[key] = at
            case lc.CancelTimer(key):
                del self.timers[key]  # the core cancels only what it armed
            case lc.PodFinished():
                self.finished.append(effect)

    def _start(self, name: str) -> None:
        assert name not in self.alive, f"{name} started twice"
        n = self.instances[name] = self.instances.get(name, 0) + 1
        b = self.behaviour(name, n)
        if b.cannot_run is not None:
            message = f"exec: {name}: no such file or directory"
            self._at(0.0, lc.StartFailed(name, b.cannot_run, message=message), None)
            return
        self.alive[name] = n
        self._at(0.0, lc.Started(name, pid=1000 + n), n)
        if b.runs_for is not None:
            self._at(b.runs_for, lc.Exited(name, b.exit_code, b.signal, b.oom_killed, b.message), n)
        if b.ready_after is not None:
            self._at(b.ready_after, lc.Notified(name, ready=True), n)

    def _probe(self, name: str, kind: lc.ProbeKind, instance: int) -> None:
        """Report one result a period from now; the next is scheduled when it is delivered."""
        b = self.behaviour(name, instance)
        started = self.state.container(name).started_at
        started = self.now if started is None else started
        verdict = b.probes.get(kind, _healthy)(self.now + b.probe_period - started)
        self._at(b.probe_period, lc.ProbeResult(name, kind, verdict, "probe said so"), instance)

    # --- reading the timeline ----------------------------------------------------

    def times(self, kind: type[object], name: str | None = None) -> list[float]:
        """When each logged event or effect of this type (for this container) happened."""
        return [t for t, x in self.log if isinstance(x, kind) and getattr(x, "name", name) == name]

    def first(self, kind: type[object], name: str | None = None) -> float:
        found = self.times(kind, name)
        assert found, f"no {kind.__name__} for {name}"
        return found[0]

    def of(self, kind: type[object]) -> list[object]:
        return [x for _, x in self.log if isinstance(x, kind)]


# --- building plans -------------------------------------------------------------


def main(name: str = "app", **kw: Any) -> lc.ContainerSpec:
    return lc.ContainerSpec(name, lc.ContainerKind.MAIN, **kw)


def init(name: str, **kw: Any) -> lc.ContainerSpec:
    return lc.ContainerSpec(name, lc.ContainerKind.INIT, **kw)


def sidecar(name: str, **kw: Any) -> lc.ContainerSpec:
    return lc.ContainerSpec(name, lc.ContainerKind.SIDECAR, **kw)


def pod(*containers: lc.ContainerSpec, **kw: Any) -> lc.PodPlan:
    return lc.PodPlan(containers, **kw)
