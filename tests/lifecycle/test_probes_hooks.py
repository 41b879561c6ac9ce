"""Rules 2, 4, 5, 6 and 9: probes, hooks, NOTIFY_SOCKET, and stale events."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from podvisor.supervisor import lifecycle as lc

from .sim import Behaviour, Sim, main, pod, sidecar

STARTUP, LIVENESS, READINESS = lc.ProbeKind.STARTUP, lc.ProbeKind.LIVENESS, lc.ProbeKind.READINESS
NEVER = lc.RestartPolicy.NEVER


def failing(*spans: tuple[float, float]) -> Callable[[float], bool]:
    """A probe verdict that fails inside the given [from, to) spans of the instance's life."""
    return lambda t: not any(a <= t < b for a, b in spans)


# --- Liveness -------------------------------------------------------------------------


def test_liveness_failures_in_a_row_restart_the_container() -> None:
    plan = pod(main(liveness_probe=lc.ProbePlan(failure_threshold=3)))
    flaky = Behaviour(probes={LIVENESS: failing((5, 7), (10, 1e9))})
    sim = Sim(plan, {"app": [flaky, Behaviour()]})
    sim.run(until=20)

    # 5 and 6 fail, 7 succeeds and resets the count; 10, 11, 12 fail: restart at 12.
    assert sim.times(lc.StartProbe, "app") == [0, 12]
    assert sim.times(lc.StopProbe, "app") == [12]
    assert sim.times(lc.SignalContainer, "app") == [12]
    assert sim.times(lc.StartContainer, "app") == [0, 12]
    app = sim.state.container("app")
    assert app.restart_count == 1
    assert app.last_state is not None
    assert (app.last_state.exit_code, app.last_state.message) == (
        143,
        "Liveness probe failed: probe said so",
    )


def test_liveness_stop_uses_the_probes_grace_period() -> None:
    probe = lc.ProbePlan(failure_threshold=1, termination_grace_seconds=5)
    plan = pod(main(liveness_probe=probe), grace_seconds=30)
    sick = Behaviour(probes={LIVENESS: failing((3, 1e9))}, ignores_stop=True)
    sim = Sim(plan, {"app": [sick, Behaviour()]})
    sim.run(until=20)

    assert sim.times(lc.SignalContainer, "app") == [3]
    assert sim.times(lc.KillContainer, "app") == [8]
    assert sim.state.container("app").restart_count == 1


def test_liveness_stop_without_probe_grace_uses_the_pods() -> None:
    plan = pod(main(liveness_probe=lc.ProbePlan(failure_threshold=1)), grace_seconds=7)
    sick = Behaviour(probes={LIVENESS: failing((3, 1e9))}, ignores_stop=True)
    sim = Sim(plan, {"app": [sick, Behaviour()]})
    sim.run(until=20)
    assert sim.times(lc.KillContainer, "app") == [10]


def test_liveness_failure_under_never_ends_the_pod() -> None:
    plan = pod(main(liveness_probe=lc.ProbePlan(failure_threshold=2)), restart_policy=NEVER)
    sim = Sim(plan, {"app": Behaviour(probes={LIVENESS: failing((0, 1e9))})})
    assert sim.run_until_finished() == lc.PodFinished(143, lc.PodPhase.FAILED)
    assert sim.first(lc.PodFinished) == 2


# --- Startup and readiness --------------------------------------------------------------


def test_startup_probe_holds_back_liveness_and_readiness() -> None:
    plan = pod(
        main(
            startup_probe=lc.ProbePlan(failure_threshold=10),
            liveness_probe=lc.ProbePlan(),
            readiness_probe=lc.ProbePlan(),
        )
    )
    sim = Sim(plan, {"app": Behaviour(probes={STARTUP: failing((0, 3))})})
    sim.run(until=2)
    starting = sim.state.container("app")
    sim.run(until=3.5)
    started = sim.state.container("app")
    sim.run(until=4.5)

    assert (starting.state, starting.started, starting.ready) == (lc.State.RUNNING, False, False)
    assert (started.started, started.ready) == (True, False)  # readiness has not said yet
    assert sim.state.container("app").ready
    probes = [(t, x) for t, x in sim.log if isinstance(x, lc.StartProbe | lc.StopProbe)]
    assert probes == [
        (0, lc.StartProbe("app", STARTUP)),
        (3, lc.StopProbe("app", STARTUP)),
        (3, lc.StartProbe("app", LIVENESS)),
        (3, lc.StartProbe("app", READINESS)),
    ]


def test_readiness_flips_by_its_thresholds() -> None:
    probe = lc.ProbePlan(failure_threshold=2, success_threshold=2)
    sim = Sim(
        pod(main(readiness_probe=probe)), {"app": Behaviour(probes={READINESS: failing((5, 9))})}
    )
    ready: list[tuple[int, bool, bool]] = []
    for t in range(1, 12):
        sim.run(until=t + 0.5)
        ready.append((t, sim.state.container("app").ready, sim.state.ready))

    became_ready = [t for t, r, _ in ready if r]
    assert became_ready == [2, 3, 4, 5, 10, 11]  # two successes to be ready, two failures not
    assert all(r == pod_ready for _, r, pod_ready in ready)


# --- Hooks -----------------------------------------------------------------------------------


def test_post_start_keeps_the_container_waiting_until_it_finishes() -> None:
    sim = Sim(pod(main(has_post_start=True)), {"app": Behaviour(hook_takes=3)})
    sim.run(until=1)
    hooked = sim.state
    sim.run(until=3)

    app = hooked.container("app")
    assert (app.step, app.state, app.reason) == (
        lc.Step.POST_START,
        lc.State.WAITING,
        lc.Reason.CONTAINER_CREATING,
    )
    assert (app.started, app.pid, app.started_at, hooked.phase) == (
        False,
        1001,
        0,
        lc.PodPhase.PENDING,
    )
    assert sim.times(lc.RunHook, "app") == [0]
    assert sim.state.container("app").started
    assert sim.state.phase is lc.PodPhase.RUNNING


def test_a_sidecars_post_start_gates_the_next_entry() -> None:
    plan = pod(sidecar("s", has_post_start=True), main())
    sim = Sim(plan, {"s": Behaviour(hook_takes=3)})
    sim.run(until=10)
    assert sim.times(lc.StartContainer, "app") == [3]


def test_a_failing_post_start_stops_the_container_which_restarts_by_policy() -> None:
    plan = pod(main(has_post_start=True, has_pre_stop=True))
    sim = Sim(plan, {"app": [Behaviour(post_start_ok=False), Behaviour()]})
    sim.run(until=5)

    assert [type(x).__name__ for t, x in sim.log if t == 0][:6] == [
        "StartContainer",
        "Started",
        "RunHook",  # postStart
        "HookFinished",
        "SetTimer",  # the container's own grace period
        "RunHook",  # preStop: the kubelet runs it on any kill
    ]
    app = sim.state.container("app")
    assert app.last_state is not None
    assert app.last_state.message == "postStart hook failed: boom"
    assert (app.restart_count, app.started) == (1, True)


def test_a_failing_post_start_under_never_fails_the_pod() -> None:
    plan = pod(main(has_post_start=True), restart_policy=NEVER)
    sim = Sim(plan, {"app": Behaviour(post_start_ok=False)})
    assert sim.run_until_finished() == lc.PodFinished(143, lc.PodPhase.FAILED)


# --- NOTIFY_SOCKET ------------------------------------------------------------------------------


def test_ready_during_post_start_counts_once_the_hook_is_done() -> None:
    state, _ = lc.begin(pod(main(notify_ready=True, has_post_start=True)), 0)
    state, _ = lc.handle(state, lc.Started("app", 5), 0)
    state, _ = lc.handle(state, lc.Notified("app", ready=True, status="warming up"), 1)
    assert not state.container("app").started
    state, _ = lc.handle(state, lc.HookFinished("app", lc.Hook.POST_START), 2)
    app = state.container("app")
    assert (app.started, app.ready, app.notify_status) == (True, True, "warming up")


def test_a_missed_watchdog_restarts_the_container() -> None:
    sim = Sim(pod(main(watchdog_seconds=5)), {"app": [Behaviour(), Behaviour(runs_for=1000)]})
    sim.run(until=0)
    assert sim.timers == {"watchdog/app": 5}
    sim.run(until=3)
    sim.send(lc.Notified("app", watchdog=True))
    assert sim.timers == {"watchdog/app": 8}
    sim.run(until=9)

    assert sim.times(lc.SignalContainer, "app") == [8]
    app = sim.state.container("app")
    assert app.last_state is not None
    assert app.last_state.message.startswith("watchdog timeout")


def test_stopping_notification_makes_the_container_unready() -> None:
    sim = Sim(pod(main()))
    sim.run(until=1)
    assert sim.state.ready
    sim.send(lc.Notified("app", stopping=True))
    assert not sim.state.ready


# --- Stale events (rule 2) ---------------------------------------------------------------------


def test_events_that_do_not_fit_are_ignored() -> None:
    plan = pod(sidecar("s", notify_ready=True), main(liveness_probe=lc.ProbePlan()))
    state, _ = lc.begin(plan, 0)
    stale: list[lc.Event] = [
        lc.Started("app"),  # not its turn
        lc.Exited("app", 1),
        lc.StartFailed("app"),
        lc.HookFinished("s", lc.Hook.POST_START),  # no hook running
        lc.HookFinished("s", lc.Hook.PRE_STOP),
        lc.ProbeResult("app", LIVENESS, success=False),  # no probe running
        lc.Notified("app", ready=True),
        lc.TimerFired("restart/app"),  # never armed
        lc.TimerFired("stop"),
    ]
    for event in stale:
        assert lc.handle(state, event, 1) == (state, []), event


def test_a_result_from_a_stopped_probe_is_ignored() -> None:
    plan = pod(main(liveness_probe=lc.ProbePlan(failure_threshold=1)))
    state, _ = lc.begin(plan, 0)
    state, _ = lc.handle(state, lc.Started("app"), 0)
    state, effects = lc.handle(state, lc.ProbeResult("app", LIVENESS, success=False), 1)
    assert lc.StopProbe("app", LIVENESS) in effects
    late = lc.ProbeResult("app", LIVENESS, success=False)
    assert lc.handle(state, late, 1.5) == (state, [])


def test_ready_notification_makes_a_running_container_ready_despite_its_probe() -> None:
    plan = pod(main(readiness_probe=lc.ProbePlan(failure_threshold=1)))
    state, _ = lc.begin(plan, 0)
    state, _ = lc.handle(state, lc.Started("app"), 0)
    assert not state.container("app").ready  # the readiness probe has not said yet
    state, _ = lc.handle(state, lc.Notified("app", ready=True), 1)
    assert state.container("app").ready
    state, _ = lc.handle(state, lc.ProbeResult("app", READINESS, success=False), 2)
    assert not state.container("app").ready  # and the probe still has its say


def test_an_unknown_container_is_a_runner_bug() -> None:
    state, _ = lc.begin(pod(main()), 0)
    with pytest.raises(KeyError, match="no container named 'nope'"):
        lc.handle(state, lc.Started("nope"), 0)
