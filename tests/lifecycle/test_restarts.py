"""Rules 7, 8, 10 and 15: restart policies, back-off, termination records, the pod's result."""

from __future__ import annotations

import pytest

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.lifecycle.backoff import BackOffPolicy

from .sim import Behaviour, Sim, main, pod

P = lc.RestartPolicy
ALWAYS, ON_FAILURE, NEVER = P.ALWAYS, P.ON_FAILURE, P.NEVER
FAILED = lc.PodPhase.FAILED
CRASH = Behaviour(runs_for=1, exit_code=1)
DAY = 24 * 3600.0


def restart_delays(sim: Sim, name: str = "app") -> list[float]:
    """Seconds from each exit (or start failure) to the next StartContainer."""
    ends = sorted(sim.times(lc.Exited, name) + sim.times(lc.StartFailed, name))
    starts = sim.times(lc.StartContainer, name)[1:]
    return [round(start - end, 6) for end, start in zip(ends, starts, strict=False)]


# --- The crash loop ----------------------------------------------------------------


def test_a_day_of_crash_loop_follows_the_back_off_exactly() -> None:
    sim = Sim(pod(main()), {"app": CRASH})
    sim.run(until=DAY)

    delays = restart_delays(sim)
    expected = [0.0] + [min(10.0 * 2**k, 300.0) for k in range(len(delays) - 1)]
    assert delays[:8] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert delays == expected
    # Each cycle is one second of running plus the delay: count them independently.
    t, starts = 0.0, 1
    for delay in expected:
        t += 1 + delay
        starts += t <= DAY
    assert len(sim.times(lc.StartContainer, "app")) == starts
    assert 280 < starts < 300  # about a day at five minutes a cycle
    app = sim.state.container("app")
    assert app.restart_count == starts - 1
    assert sim.state.phase is lc.PodPhase.RUNNING
    assert not sim.finished


def test_the_waiting_state_says_crash_loop_back_off() -> None:
    sim = Sim(pod(main()), {"app": CRASH})
    sim.run(until=5)  # crashed at 1 and 2; waits 10 s from 2

    app = sim.state.container("app")
    assert (app.step, app.state, app.reason) == (
        lc.Step.BACK_OFF,
        lc.State.WAITING,
        lc.Reason.CRASH_LOOP_BACK_OFF,
    )
    assert app.message == "back-off 10s restarting failed container=app"
    assert app.restart_count == 1
    assert app.last_state == lc.Termination(1, lc.Reason.ERROR, "", None, 1.0, 2.0)
    assert app.exit_code is None  # Waiting has no exit code; lastState has it
    assert not app.ready

    sim.run(until=12.5)
    app = sim.state.container("app")
    assert (app.state, app.restart_count, app.started_at) == (lc.State.RUNNING, 2, 12.0)
    assert app.last_state is not None
    assert app.last_state.finished_at == 2.0


def test_ten_minutes_of_running_resets_the_back_off() -> None:
    fast, long_run = CRASH, Behaviour(runs_for=600, exit_code=1)
    almost = Behaviour(runs_for=599, exit_code=1)
    script = [fast] * 4 + [long_run] + [fast] * 2 + [almost] + [fast] * 3
    sim = Sim(pod(main()), {"app": script})
    sim.run(until=3000)

    assert restart_delays(sim)[:9] == [0, 10, 20, 40, 0, 10, 20, 40, 80]


def test_back_off_comes_from_the_plan() -> None:
    sim = Sim(pod(main(), backoff=BackOffPolicy(initial=1, maximum=4)), {"app": CRASH})
    sim.run(until=30)
    assert restart_delays(sim)[:6] == [0, 1, 2, 4, 4, 4]


# --- Restart policies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "code", "restarts"),
    [
        (ALWAYS, 0, True),
        (ALWAYS, 1, True),
        (ON_FAILURE, 0, False),
        (ON_FAILURE, 1, True),
        (NEVER, 0, False),
        (NEVER, 1, False),
    ],
)
def test_restart_policy(policy: lc.RestartPolicy, code: int, restarts: bool) -> None:
    sim = Sim(pod(main(), restart_policy=policy), {"app": [Behaviour(runs_for=5, exit_code=code)]})
    sim.run(until=5.5)

    assert len(sim.times(lc.StartContainer, "app")) == 1 + restarts
    if not restarts:
        done = sim.state.container("app")
        assert (done.step, done.state, done.exit_code) == (lc.Step.DONE, lc.State.TERMINATED, code)
        phase = lc.PodPhase.SUCCEEDED if code == 0 else lc.PodPhase.FAILED
        assert sim.finished == [lc.PodFinished(code, phase)]


def test_always_restarts_a_completed_container_with_back_off() -> None:
    sim = Sim(pod(main()), {"app": Behaviour(runs_for=1)})
    sim.run(until=100)
    app = sim.state.container("app")
    assert restart_delays(sim)[:4] == [0, 10, 20, 40]
    assert app.last_state is not None
    assert app.last_state.reason is lc.Reason.COMPLETED


# --- Termination records ------------------------------------------------------------------


def test_oom_killed_is_137() -> None:
    oom = Behaviour(runs_for=3, signal=9, oom_killed=True)
    sim = Sim(pod(main(), restart_policy=NEVER), {"app": oom})
    finished = sim.run_until_finished()

    app = sim.state.container("app")
    assert (app.reason, app.exit_code, app.signal) == (lc.Reason.OOM_KILLED, 137, 9)
    assert (app.started_at, app.finished_at) == (0.0, 3.0)
    assert finished == lc.PodFinished(137, lc.PodPhase.FAILED)


@pytest.mark.parametrize("code", [127, 126])
def test_a_program_that_cannot_run(code: int) -> None:
    sim = Sim(pod(main(), restart_policy=NEVER), {"app": Behaviour(cannot_run=code)})
    finished = sim.run_until_finished()

    app = sim.state.container("app")
    assert (app.state, app.reason, app.exit_code) == (
        lc.State.TERMINATED,
        lc.Reason.CONTAINER_CANNOT_RUN,
        code,
    )
    assert app.message == "exec: app: no such file or directory"
    assert app.started_at is None
    assert finished == lc.PodFinished(code, lc.PodPhase.FAILED)
    assert sim.state.phase is lc.PodPhase.FAILED


def test_a_program_that_cannot_run_loops_in_back_off_under_always() -> None:
    sim = Sim(pod(main()), {"app": Behaviour(cannot_run=127)})
    sim.run(until=50)

    app = sim.state.container("app")
    assert restart_delays(sim)[:3] == [0, 10, 20]
    assert app.reason is lc.Reason.CRASH_LOOP_BACK_OFF
    assert app.last_state is not None
    assert app.last_state.reason is lc.Reason.CONTAINER_CANNOT_RUN
    assert sim.state.phase is lc.PodPhase.PENDING  # nothing has run yet


def test_start_error_keeps_the_runners_reason() -> None:
    state, _ = lc.begin(pod(main(), restart_policy=NEVER), 0)
    state, effects = lc.handle(state, lc.StartFailed("app", 128, lc.Reason.START_ERROR, "no"), 1)
    assert state.container("app").reason is lc.Reason.START_ERROR
    assert effects[-1] == lc.PodFinished(128, lc.PodPhase.FAILED)


# --- The pod's result (rule 15) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "status", "phase"),
    [
        (Behaviour(runs_for=1), Behaviour(runs_for=2), 0, lc.PodPhase.SUCCEEDED),
        (Behaviour(runs_for=1, exit_code=3), Behaviour(runs_for=2), 3, lc.PodPhase.FAILED),
        # The first main container decides the status, the phase looks at all.
        (Behaviour(runs_for=1), Behaviour(runs_for=2, exit_code=4), 0, lc.PodPhase.FAILED),
        (Behaviour(runs_for=1, signal=11), Behaviour(runs_for=2), 139, lc.PodPhase.FAILED),
        (Behaviour(runs_for=3, signal=9, oom_killed=True), Behaviour(runs_for=4), 137, FAILED),
        (Behaviour(cannot_run=127), Behaviour(runs_for=2), 127, lc.PodPhase.FAILED),
    ],
)
def test_pod_result_table(
    first: Behaviour, second: Behaviour, status: int, phase: lc.PodPhase
) -> None:
    plan = pod(main("first"), main("second"), restart_policy=NEVER)
    sim = Sim(plan, {"first": first, "second": second})
    assert sim.run_until_finished() == lc.PodFinished(status, phase)
    assert sim.state.exit_status == status
    assert sim.state.phase is phase
    assert not sim.state.ready


def test_the_pod_is_running_once_a_main_container_runs() -> None:
    sim = Sim(pod(main(), restart_policy=NEVER), {"app": Behaviour(runs_for=10)})
    before = sim.state
    sim.run(until=1)
    after = sim.state
    assert (before.phase, before.container("app").reason, before.ready) == (
        lc.PodPhase.PENDING,
        lc.Reason.CONTAINER_CREATING,
        False,
    )
    assert (after.phase, after.container("app").started, after.ready) == (
        lc.PodPhase.RUNNING,
        True,
        True,
    )
