"""Rule 3 (and 5): init containers, native sidecars and main containers start in order."""

from __future__ import annotations

import pytest

from podvisor.supervisor import lifecycle as lc

from .sim import Behaviour, Sim, init, main, pod, sidecar

NEVER = lc.RestartPolicy.NEVER
STARTUP = lc.ProbeKind.STARTUP


def starts(sim: Sim) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for t, x in sim.log:
        if isinstance(x, lc.StartContainer):
            out.setdefault(x.name, []).append(t)
    return out


def test_init_containers_run_one_at_a_time_then_mains_together() -> None:
    plan = pod(init("a"), init("b"), main("m1"), main("m2"), restart_policy=NEVER)
    behaviours = {
        "a": Behaviour(runs_for=2),
        "b": Behaviour(runs_for=3),
        "m1": Behaviour(runs_for=5),
        "m2": Behaviour(runs_for=5),
    }
    sim = Sim(plan, behaviours)
    sim.run(until=4)
    during = sim.state
    finished = sim.run_until_finished()

    assert starts(sim) == {"a": [0], "b": [2], "m1": [5], "m2": [5]}
    assert (during.phase, during.initialized) == (lc.PodPhase.PENDING, False)
    assert during.container("m1").reason is lc.Reason.POD_INITIALIZING
    assert during.container("a").reason is lc.Reason.COMPLETED
    assert sim.state.initialized
    assert finished == lc.PodFinished(0, lc.PodPhase.SUCCEEDED)


# --- Main containers: one by one, as the kubelet's pod sync starts them ------------------


def test_a_post_start_hook_holds_back_the_next_main_container() -> None:
    plan = pod(main("a", has_post_start=True), main("b"), main("c"))
    sim = Sim(plan, {"a": Behaviour(hook_takes=3)})
    sim.run(until=2)
    waiting = sim.state.container("b")
    sim.run(until=10)

    assert starts(sim) == {"a": [0], "b": [3], "c": [3]}
    assert (waiting.state, waiting.reason) == (lc.State.WAITING, lc.Reason.POD_INITIALIZING)


def test_each_post_start_hook_holds_back_the_ones_after_it() -> None:
    plan = pod(main("a", has_post_start=True), main("b", has_post_start=True), main("c"))
    sim = Sim(plan, {"a": Behaviour(hook_takes=3), "b": Behaviour(hook_takes=4)})
    sim.run(until=10)
    assert starts(sim) == {"a": [0], "b": [3], "c": [7]}


def test_main_containers_without_post_start_start_together() -> None:
    sim = Sim(pod(main("a"), main("b", has_post_start=True), main("c")))
    sim.run(until=0)
    assert sim.of(lc.StartContainer)[:2] == [lc.StartContainer("a"), lc.StartContainer("b")]
    assert starts(sim) == {"a": [0], "b": [0], "c": [0]}  # b's hook took no time


def test_a_failed_post_start_lets_the_next_one_go_and_restarts_by_policy() -> None:
    plan = pod(main("a", has_post_start=True), main("b"))
    sim = Sim(plan, {"a": [Behaviour(hook_takes=2, post_start_ok=False), Behaviour()]})
    sim.run(until=10)

    assert starts(sim) == {"a": [0, 2], "b": [2]}
    assert sim.state.container("a").restart_count == 1


def test_a_container_that_cannot_start_lets_the_next_one_go() -> None:
    plan = pod(main("a", has_post_start=True), main("b"), restart_policy=NEVER)
    sim = Sim(plan, {"a": Behaviour(cannot_run=127)})
    sim.run(until=10)
    assert starts(sim) == {"a": [0], "b": [0]}
    assert sim.times(lc.RunHook, "a") == []


def test_a_restart_during_post_start_holds_nobody_back() -> None:
    plan = pod(main("a", has_post_start=True), main("b"))
    # The first instance dies while its hook runs; the next one's hook never ends.
    sim = Sim(plan, {"a": [Behaviour(runs_for=1, hook_takes=5), Behaviour(hook_takes=1e6)]})
    sim.run(until=10)
    assert starts(sim) == {"a": [0, 1], "b": [1]}


def test_main_containers_held_back_when_the_pod_stops_never_start() -> None:
    plan = pod(main("a", has_post_start=True), main("b"))
    sim = Sim(plan, {"a": Behaviour(hook_takes=100, stop_exit_code=0)})
    sim.run(until=5)
    sim.send(lc.StopRequested())
    finished = sim.run_until_finished()

    assert "b" not in starts(sim)
    assert sim.state.container("b").state is lc.State.WAITING
    assert finished == lc.PodFinished(0, lc.PodPhase.FAILED)  # a's code; b never ran


# --- Init entries ----------------------------------------------------------------------


def test_sidecars_interleave_and_gate_on_started() -> None:
    plan = pod(
        init("a"),
        sidecar("s1"),
        init("b"),
        sidecar("s2", startup_probe=lc.ProbePlan(failure_threshold=10)),
        main("m"),
    )
    up_after_3s = Behaviour(probes={STARTUP: lambda t: t >= 3})
    behaviours = {"a": Behaviour(runs_for=1), "b": Behaviour(runs_for=1), "s2": up_after_3s}
    sim = Sim(plan, behaviours)
    sim.run(until=100)

    # s1 counts as started as soon as it runs; s2 when its startup probe passes.
    assert starts(sim) == {"a": [0], "s1": [1], "b": [1], "s2": [2], "m": [5]}
    assert (5.0, lc.StopProbe("s2", STARTUP)) in sim.log
    assert sim.state.initialized
    assert sim.state.container("s2").started


def test_a_sidecar_whose_startup_probe_fails_is_restarted_and_holds_main_back() -> None:
    plan = pod(sidecar("s", startup_probe=lc.ProbePlan(failure_threshold=3)), main("m"))
    sim = Sim(plan, {"s": Behaviour(probes={STARTUP: lambda _t: False})})
    sim.run(until=60)

    assert "m" not in starts(sim)
    assert starts(sim)["s"][:3] == [0, 3, 16]  # 3 failures at 1 s; then back-off 0, 10
    assert sim.times(lc.SignalContainer, "s")[:2] == [3, 6]
    s = sim.state.container("s")
    assert s.last_state is not None
    assert s.last_state.message == "Startup probe failed: probe said so"
    assert s.last_state.exit_code == 143


def test_a_sidecar_waiting_for_ready_notification_gates_main() -> None:
    plan = pod(sidecar("s", notify_ready=True), main("m"))
    sim = Sim(plan, {"s": Behaviour(ready_after=4)})
    sim.run(until=3.9)
    waiting = sim.state.container("s")
    sim.run(until=10)

    assert (waiting.state, waiting.started, waiting.ready) == (lc.State.RUNNING, False, False)
    assert starts(sim) == {"s": [0], "m": [4]}
    assert sim.state.container("s").ready


def test_a_failing_init_container_is_retried_with_back_off() -> None:
    plan = pod(init("a"), main("m"), restart_policy=lc.RestartPolicy.ON_FAILURE)
    fail = Behaviour(runs_for=1, exit_code=1)
    sim = Sim(plan, {"a": [fail, fail, Behaviour(runs_for=1)]})
    sim.run(until=5)
    during = sim.state
    sim.run(until=100)

    assert starts(sim) == {"a": [0, 1, 12], "m": [13]}
    assert during.container("a").reason is lc.Reason.CRASH_LOOP_BACK_OFF
    assert during.phase is lc.PodPhase.PENDING
    assert sim.state.container("a").restart_count == 2


def test_a_completed_init_container_is_not_restarted_under_always() -> None:
    sim = Sim(pod(init("a"), main("m")), {"a": Behaviour(runs_for=1)})
    sim.run(until=1000)
    assert starts(sim) == {"a": [0], "m": [1]}


def test_an_init_container_failing_under_never_fails_the_pod() -> None:
    plan = pod(sidecar("s"), init("a"), init("b"), main("m"), restart_policy=NEVER)
    sim = Sim(plan, {"a": Behaviour(runs_for=2, exit_code=3)})
    finished = sim.run_until_finished()

    assert finished == lc.PodFinished(3, lc.PodPhase.FAILED)
    assert starts(sim) == {"s": [0], "a": [0]}
    assert sim.times(lc.SignalContainer, "s") == [2]  # the running sidecar is stopped
    assert sim.state.container("b").reason is lc.Reason.POD_INITIALIZING
    assert not sim.state.initialized


def test_a_crashing_sidecar_restarts_while_main_runs_even_under_never() -> None:
    plan = pod(sidecar("s"), main("m"), restart_policy=NEVER)
    crash = Behaviour(runs_for=10, exit_code=2)
    sim = Sim(plan, {"s": crash, "m": Behaviour(runs_for=1000)})
    sim.run(until=100)

    assert starts(sim)["m"] == [0]  # the gate is not applied again
    assert starts(sim)["s"][:4] == [0, 10, 30, 60]  # immediate, then 10 s, 20 s
    assert sim.state.container("m").state is lc.State.RUNNING


def test_containers_ready_counts_sidecars_not_init_containers() -> None:
    plan = pod(
        init("a"),
        sidecar("s", readiness_probe=lc.ProbePlan()),
        main("m"),
    )
    flaky = Behaviour(probes={lc.ProbeKind.READINESS: lambda t: t < 5})
    sim = Sim(plan, {"a": Behaviour(runs_for=1), "s": flaky})
    sim.run(until=3)
    ready = sim.state
    sim.run(until=20)

    assert (ready.initialized, ready.containers_ready, ready.ready) == (True, True, True)
    assert not sim.state.container("s").ready
    assert sim.state.container("m").ready
    assert (sim.state.containers_ready, sim.state.ready) == (False, False)


@pytest.mark.parametrize(
    "containers",
    [
        (main("m"), init("a")),  # an init entry after a main container
        (init("a"),),  # no main container
        (main("m"), main("m")),  # a name twice
    ],
)
def test_a_plan_out_of_order_is_refused(containers: tuple[lc.ContainerSpec, ...]) -> None:
    with pytest.raises(ValueError, match="init entries first"):
        lc.PodPlan(containers)
