"""Rule 16 of the lifecycle core (`podvisor restart`), as plain calls with synthetic time."""

from __future__ import annotations

from podvisor.supervisor import lifecycle as lc


def restart(name: str) -> lc.Event:
    return lc.RestartRequested(name)


def running(policy: lc.RestartPolicy) -> lc.PodState:
    plan = lc.PodPlan(
        containers=(lc.ContainerSpec("app"), lc.ContainerSpec("other")),
        restart_policy=policy,
        grace_seconds=30.0,
    )
    state, effects = lc.begin(plan, 0.0)
    assert effects == [lc.StartContainer("app"), lc.StartContainer("other")]
    state, _ = lc.handle(state, lc.Started("app", 42), 1.0)
    state, _ = lc.handle(state, lc.Started("other", 43), 1.0)
    return state


def test_a_running_container_is_stopped_then_started_whatever_the_policy() -> None:
    state = running(lc.RestartPolicy.NEVER)
    state, effects = lc.handle(state, restart("app"), 5.0)
    assert effects == [lc.SignalContainer("app", 15), lc.SetTimer("kill/app", 35.0)]
    assert state.container("app").ready is False
    state, effects = lc.handle(state, lc.Exited("app", None, 15), 6.0)
    assert effects == [lc.CancelTimer("kill/app"), lc.StartContainer("app")]
    app = state.container("app")
    assert app.restart_count == 1
    assert app.previous is not None
    assert (app.previous.exit_code, app.previous.message) == (143, "restart requested")
    state, _ = lc.handle(state, lc.Started("app", 44), 7.0)
    assert state.container("app").step is lc.Step.RUNNING
    assert state.phase is lc.PodPhase.RUNNING
    assert state.container("other").restart_count == 0


def test_a_container_that_ignores_its_stop_signal_is_killed_after_the_grace() -> None:
    state = running(lc.RestartPolicy.ALWAYS)
    state, _ = lc.handle(state, restart("app"), 5.0)
    state, effects = lc.handle(state, lc.TimerFired("kill/app"), 35.0)
    assert effects == [lc.KillContainer("app")]
    state, effects = lc.handle(state, lc.Exited("app", None, 9), 35.5)
    assert effects == [lc.StartContainer("app")]  # no back-off: it did not crash


def test_a_container_in_back_off_starts_at_once() -> None:
    state = running(lc.RestartPolicy.ALWAYS)
    state, effects = lc.handle(state, lc.Exited("app", 1), 2.0)
    assert effects == [lc.StartContainer("app")]  # the first restart waits 0 s
    state, _ = lc.handle(state, lc.Started("app", 44), 2.0)
    state, effects = lc.handle(state, lc.Exited("app", 1), 3.0)
    assert effects == [lc.SetTimer("restart/app", 13.0)]
    assert state.container("app").reason is lc.Reason.CRASH_LOOP_BACK_OFF
    state, effects = lc.handle(state, restart("app"), 4.0)
    assert effects == [lc.CancelTimer("restart/app"), lc.StartContainer("app")]
    assert state.container("app").restarts_in_a_row == 0


def test_nothing_restarts_while_the_pod_stops() -> None:
    state = running(lc.RestartPolicy.ALWAYS)
    state, _ = lc.handle(state, lc.StopRequested(), 5.0)
    state, effects = lc.handle(state, restart("app"), 5.5)
    assert effects == []
    state, effects = lc.handle(state, lc.Exited("app", 0), 6.0)
    assert lc.StartContainer("app") not in effects
