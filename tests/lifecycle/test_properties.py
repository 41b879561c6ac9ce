"""Properties over random pods and random event sequences (rules 1, 2, 12, 13, 15).

Whatever the runner reports, in whatever order, the core never makes an
illegal move (`_Tx.move` raises on one), its status stays coherent, its timer
bookkeeping matches the effects it emitted, and a stop always ends in one
PodFinished no later than the pod's deadline and the kubelet's 2 s after it,
even when every container ignores its stop signal and every preStop hook
hangs; and then no container is killed sooner than 2 s after its stop signal.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podvisor.supervisor import lifecycle as lc

S = lc.Step
NAMES = ("a", "b", "c", "m", "n")


@st.composite
def specs(draw: st.DrawFn, name: str, kind: lc.ContainerKind) -> lc.ContainerSpec:
    probe = st.none() | st.builds(lc.ProbePlan, st.integers(1, 3), st.integers(1, 2))
    return lc.ContainerSpec(
        name,
        kind,
        startup_probe=draw(probe),
        liveness_probe=draw(probe),
        readiness_probe=draw(probe),
        has_post_start=draw(st.booleans()),
        has_pre_stop=draw(st.booleans()),
        notify_ready=draw(st.booleans()),
        watchdog_seconds=draw(st.none() | st.just(5.0)),
    )


@st.composite
def plans(draw: st.DrawFn) -> lc.PodPlan:
    entries = draw(st.lists(st.sampled_from([lc.ContainerKind.INIT, lc.ContainerKind.SIDECAR])))
    entries = entries[:3]
    mains = [lc.ContainerKind.MAIN] * draw(st.integers(1, 2))
    names = NAMES[: len(entries)] + NAMES[3 : 3 + len(mains)]
    return lc.PodPlan(
        tuple(draw(specs(n, k)) for n, k in zip(names, entries + mains, strict=True)),
        restart_policy=draw(st.sampled_from(list(lc.RestartPolicy))),
        grace_seconds=draw(st.sampled_from([0.0, 5.0, 30.0])),
        active_deadline_seconds=draw(st.none() | st.just(200.0)),
    )


def fitting_events(c: lc.ContainerStatus) -> list[lc.Event]:
    """Events a real runner could report for this container now."""
    n, post, pre = c.name, lc.Hook.POST_START, lc.Hook.PRE_STOP
    probes = [lc.ProbeResult(n, k, ok) for k in lc.ProbeKind for ok in (True, False)]
    notes = [
        lc.Notified(n, ready=True),
        lc.Notified(n, watchdog=True),
        lc.Notified(n, stopping=True),
    ]
    ends = [lc.Exited(n, 0), lc.Exited(n, 1), lc.Exited(n, None, 11)]
    by_step: dict[lc.Step, list[lc.Event]] = {
        S.CREATING: [lc.Started(n, 5), lc.StartFailed(n, 127), lc.StartFailed(n, 126)],
        S.POST_START: [lc.HookFinished(n, post), lc.HookFinished(n, post, False), *ends],
        S.STARTING: [*probes, *notes, *ends],
        S.RUNNING: [*probes, *notes, *ends],
        S.PRE_STOP: [lc.HookFinished(n, pre), lc.Exited(n, None, 15)],
        S.SIGNALLED: [lc.Exited(n, None, 15), lc.Exited(n, 0)],
        S.KILLED: [lc.Exited(n, None, 9), lc.Exited(n, None, 9, oom_killed=True)],
    }
    return by_step.get(c.step, [lc.Exited(n, 1), lc.Started(n)])  # else: stale


def next_event(data: st.DataObject, state: lc.PodState) -> lc.Event:
    """Mostly fitting events, some timers, a little junk and the odd stop.

    Choices are drawn as plain integers: building strategies at every step
    would make hypothesis, not the core, the slow part.
    """
    fitting = [e for c in state.containers for e in fitting_events(c)]
    timers = [lc.TimerFired(k) for k in sorted(state.timers)]
    name = state.containers[0].name
    junk: list[lc.Event] = [lc.TimerFired(f"kill/{name}"), lc.InitDied("gone")]
    stops: list[lc.Event] = [lc.StopRequested(), lc.StopRequested(True, 2)]
    pools = [fitting] * 7 + [timers or fitting] * 2 + [junk, stops]
    pool = pools[data.draw(CHOICE, label="pool") % len(pools)]
    return pool[data.draw(CHOICE, label="event") % len(pool)]


CHOICE = st.integers(0, 1000)
DT = st.sampled_from([0.0, 0.5, 3.0, 40.0])


def check(before: lc.PodState, after: lc.PodState, effects: list[lc.Effect]) -> None:
    """The status stays coherent across one step."""
    for old, c in zip(before.containers, after.containers, strict=True):
        assert c.restart_count >= old.restart_count
        assert not c.ready or c.step is S.RUNNING
        assert not (lc.ProbeKind.STARTUP in c.probing and c.step is not S.STARTING)
        assert not c.probing or c.step in (S.STARTING, S.RUNNING)
        if c.step is S.BACK_OFF:
            assert (c.state, c.reason) == (lc.State.WAITING, lc.Reason.CRASH_LOOP_BACK_OFF)
            assert f"restart/{c.name}" in after.timers
        if c.step is S.DONE:
            assert c.state is lc.State.TERMINATED
            assert c.exit_code is not None
        if c.step in (S.STARTING, S.RUNNING):
            assert c.state is lc.State.RUNNING
        if c.kind is lc.ContainerKind.MAIN and c.step is not S.PENDING:
            assert after.initialized
    finished = [e for e in effects if isinstance(e, lc.PodFinished)]
    assert len(finished) == (after.finished and not before.finished)
    if after.finished:
        assert not any(c.step in lc.LIVE for c in after.containers)
        assert after.phase in (lc.PodPhase.SUCCEEDED, lc.PodPhase.FAILED)
        assert not after.timers
    if before.stopping:
        assert not any(isinstance(e, lc.StartContainer | lc.StartProbe) for e in effects)


class Timers:
    """The runner's side of the timer bookkeeping, kept from the effects alone."""

    def __init__(self) -> None:
        self.armed: dict[str, float] = {}
        self.signalled: dict[str, float] = {}  # when each instance got its stop signal

    def apply(self, event: lc.Event | None, effects: list[lc.Effect], now: float = 0.0) -> None:
        if isinstance(event, lc.TimerFired):
            self.armed.pop(event.key, None)
        for e in effects:
            if isinstance(e, lc.SetTimer):
                self.armed[e.key] = e.at
            elif isinstance(e, lc.CancelTimer):
                del self.armed[e.key]
            elif isinstance(e, lc.SignalContainer):
                self.signalled.setdefault(e.name, now)
            elif isinstance(e, lc.StartContainer):
                self.signalled.pop(e.name, None)


def step(
    state: lc.PodState, event: lc.Event, now: float, timers: Timers
) -> tuple[lc.PodState, list[lc.Effect]]:
    new, effects = lc.handle(state, event, now)
    timers.apply(event, effects, now)
    check(state, new, effects)
    assert set(timers.armed) == set(new.timers)
    return new, effects


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans(), st.data())
def test_random_events_never_break_the_core_and_a_stop_always_finishes(
    plan: lc.PodPlan, data: st.DataObject
) -> None:
    now, timers = 0.0, Timers()
    state, effects = lc.begin(plan, now)
    timers.apply(None, effects)
    for _ in range(data.draw(st.integers(0, 80), label="steps")):
        now += data.draw(DT, label="dt")
        state, _ = step(state, next_event(data, state), now, timers)

    if state.finished:
        return
    stopped_at = now
    state, _ = step(state, lc.StopRequested(), now, timers)
    # The last stop signal goes at the deadline at the latest, and SIGKILL follows
    # it by the kubelet's minimum.
    assert drain(state, now, timers) <= stopped_at + plan.grace_seconds + lc.MINIMUM_GRACE_SECONDS


def drain(state: lc.PodState, now: float, timers: Timers) -> float:
    """The worst runner: TERM is ignored, hooks hang, probes stay silent; only kills work."""
    for _ in range(1000):
        if state.finished:
            return now
        creating = [c.name for c in state.containers if c.step is S.CREATING]
        killed = [c.name for c in state.containers if c.step is S.KILLED]
        event: lc.Event
        if creating:
            event = lc.Started(creating[0], 9)
        elif killed:
            event = lc.Exited(killed[0], None, 9)
        else:
            assert timers.armed, f"stuck: nothing will ever happen to {state}"
            key = min(timers.armed, key=lambda k: timers.armed[k])
            now = max(now, timers.armed[key])
            event = lc.TimerFired(key)
        state, effects = step(state, event, now, timers)
        for kill in (e for e in effects if isinstance(e, lc.KillContainer)):
            if not state.killing:  # not podvisor's own force (rule 13): rule 9's minimum
                signalled = timers.signalled.get(kill.name)
                assert signalled is not None, f"{kill.name} killed with no stop signal first"
                assert now - signalled >= lc.MINIMUM_GRACE_SECONDS
    raise AssertionError("the stop did not finish")
