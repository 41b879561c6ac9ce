"""Rules 11 to 15: how a pod stops, the one deadline, kills, and what it exits with."""

from __future__ import annotations

from podvisor.supervisor import lifecycle as lc

from .sim import Behaviour, Sim, main, pod, sidecar

FAILED, SUCCEEDED = lc.PodPhase.FAILED, lc.PodPhase.SUCCEEDED
ON_FAILURE = lc.RestartPolicy.ON_FAILURE
BUNDLE = pod(sidecar("s1"), sidecar("s2"), main("m1"), main("m2"), grace_seconds=30)


def stop_at(sim: Sim, t: float, **kw: bool | int) -> list[lc.Effect]:
    sim.run(until=t)
    return sim.send(lc.StopRequested(**kw))  # type: ignore[arg-type]


def test_mains_stop_together_then_sidecars_one_by_one_last_first() -> None:
    sim = Sim(
        BUNDLE,
        {
            "m1": Behaviour(stop_takes=2),
            "m2": Behaviour(stop_takes=4),
            "s1": Behaviour(stop_takes=1),
            "s2": Behaviour(stop_takes=3),
        },
    )
    stop_at(sim, 10)
    finished = sim.run_until_finished()

    signalled = [(t, x.name) for t, x in sim.log if isinstance(x, lc.SignalContainer)]
    assert signalled == [(10, "m1"), (10, "m2"), (14, "s2"), (17, "s1")]
    assert sim.first(lc.PodFinished) == 18
    assert finished == lc.PodFinished(143, FAILED)  # m1 died of SIGTERM: 128 + 15
    assert sim.state.container("m1").signal == 15


def test_sidecars_run_their_pre_stop_hooks_at_once_and_get_their_signal_at_their_turn() -> None:
    plan = pod(
        sidecar("s1", has_pre_stop=True),
        sidecar("s2", has_pre_stop=True),
        main("m1"),
        grace_seconds=30,
    )
    behaviours = {
        "m1": Behaviour(stop_takes=3),
        "s1": Behaviour(hook_takes=1),
        "s2": Behaviour(hook_takes=5, stop_takes=1),
    }
    sim = Sim(plan, behaviours)
    stop_at(sim, 10)
    sim.run_until_finished()
    assert sim.times(lc.RunHook, "s1") == sim.times(lc.RunHook, "s2") == [10]
    assert sim.times(lc.SignalContainer, "m1") == [10]
    assert sim.times(lc.SignalContainer, "s2") == [15]  # its turn at 13, its hook ends at 15
    assert sim.times(lc.SignalContainer, "s1") == [16]  # its hook ended at 11: its turn
    assert sim.first(lc.PodFinished) == 16


def test_sidecar_exit_codes_during_the_stop_do_not_count() -> None:
    graceful = Behaviour(stop_exit_code=0)
    sim = Sim(BUNDLE, {"m1": graceful, "m2": graceful})
    stop_at(sim, 10)
    assert sim.run_until_finished() == lc.PodFinished(0, SUCCEEDED)
    assert sim.state.container("s1").exit_code == 143


def test_nothing_restarts_during_the_stop() -> None:
    sim = Sim(BUNDLE, {"m1": Behaviour(stop_takes=5), "s1": Behaviour(runs_for=12)})
    stop_at(sim, 10)  # s1 crashes at 12, while m1 is still stopping
    sim.run_until_finished()
    assert sim.times(lc.StartContainer, "s1") == [0]
    assert sim.times(lc.SignalContainer, "s1") == []  # it was gone already


def test_pre_stop_runs_first_and_its_time_counts_against_the_grace_period() -> None:
    plan = pod(main("app", has_pre_stop=True), grace_seconds=30)
    sim = Sim(plan, {"app": Behaviour(hook_takes=20, ignores_stop=True)})
    stop_at(sim, 5)
    finished = sim.run_until_finished()

    assert sim.times(lc.RunHook, "app") == [5]
    assert sim.times(lc.SignalContainer, "app") == [25]
    assert sim.times(lc.KillContainer, "app") == [35]
    assert finished == lc.PodFinished(137, FAILED)


def test_a_pre_stop_that_overruns_the_grace_period_is_cut_short_and_the_signal_follows() -> None:
    plan = pod(main("app", has_pre_stop=True), grace_seconds=30)
    sim = Sim(plan, {"app": Behaviour(hook_takes=100, ignores_stop=True)})
    stop_at(sim, 5)
    sim.run_until_finished()
    assert sim.times(lc.SignalContainer, "app") == [35]  # the program still gets SIGTERM
    assert sim.times(lc.KillContainer, "app") == [37]  # and the kubelet's 2 s after it
    assert sim.first(lc.PodFinished) == 37


# --- The kubelet's 2 s between the stop signal and SIGKILL ------------------------------


def test_grace_zero_still_sends_the_stop_signal_and_waits_two_seconds() -> None:
    plan = pod(main("app"), grace_seconds=0)
    sim = Sim(plan, {"app": Behaviour(stop_exit_code=0, stop_takes=1.5)})
    stop_at(sim, 5)
    finished = sim.run_until_finished()

    assert sim.times(lc.SignalContainer, "app") == [5]
    assert sim.times(lc.KillContainer, "app") == []
    assert finished == lc.PodFinished(0, SUCCEEDED)  # its TERM trap ran


def test_grace_zero_kills_two_seconds_after_the_stop_signal() -> None:
    plan = pod(sidecar("s"), main("app"), grace_seconds=0)
    sim = Sim(plan, {"app": Behaviour(ignores_stop=True), "s": Behaviour(ignores_stop=True)})
    stop_at(sim, 5)
    sim.run_until_finished()

    # Past the deadline nobody waits for a turn: the sidecar gets its signal too.
    assert sim.times(lc.SignalContainer, "app") == sim.times(lc.SignalContainer, "s") == [5]
    assert sim.times(lc.KillContainer, "app") == sim.times(lc.KillContainer, "s") == [7]
    assert sim.first(lc.PodFinished) == 7


def test_grace_zero_leaves_no_time_for_a_pre_stop_hook() -> None:
    plan = pod(main("app", has_pre_stop=True), grace_seconds=0)
    sim = Sim(plan, {"app": Behaviour(hook_takes=1)})
    stop_at(sim, 5)
    sim.run_until_finished()
    assert sim.times(lc.RunHook, "app") == []
    assert sim.times(lc.SignalContainer, "app") == [5]


def test_a_pre_stop_that_ends_late_still_leaves_two_seconds() -> None:
    plan = pod(main("app", has_pre_stop=True), grace_seconds=30)
    sim = Sim(plan, {"app": Behaviour(hook_takes=29.5, ignores_stop=True)})
    stop_at(sim, 5)
    sim.run_until_finished()
    assert sim.times(lc.SignalContainer, "app") == [34.5]
    assert sim.times(lc.KillContainer, "app") == [36.5]  # not at the deadline, 35


def test_a_liveness_kill_whose_pre_stop_overruns_the_probes_grace_still_signals() -> None:
    from .test_probes_hooks import LIVENESS, failing

    probe = lc.ProbePlan(failure_threshold=1, termination_grace_seconds=2)
    plan = pod(main(liveness_probe=probe, has_pre_stop=True), grace_seconds=30)
    sick = Behaviour(probes={LIVENESS: failing((3, 1e9))}, hook_takes=10, ignores_stop=True)
    sim = Sim(plan, {"app": [sick, Behaviour()]})
    sim.run(until=20)

    assert sim.times(lc.RunHook, "app") == [3]
    assert sim.times(lc.SignalContainer, "app") == [5]
    assert sim.times(lc.KillContainer, "app") == [7]


def test_a_container_killed_at_the_end_of_its_grace_says_so() -> None:
    sim = Sim(pod(main("app"), grace_seconds=0), {"app": Behaviour(ignores_stop=True)})
    stop_at(sim, 5)
    sim.run_until_finished()
    assert "app exited 137 (SIGKILL: still running when the grace period ended)" in (
        lc.last_words(sim.state)
    )


def test_a_container_already_stopping_on_its_own_is_held_to_the_pods_deadline() -> None:
    from .test_probes_hooks import LIVENESS, failing

    probe = lc.ProbePlan(failure_threshold=1, termination_grace_seconds=60)
    plan = pod(main(liveness_probe=probe), grace_seconds=10)
    sick = Behaviour(probes={LIVENESS: failing((3, 1e9))}, ignores_stop=True)
    sim = Sim(plan, {"app": sick})
    stop_at(sim, 4)  # its own grace period ends at 63, the pod's at 14
    sim.run_until_finished()
    assert sim.times(lc.SignalContainer, "app") == [3]
    assert sim.times(lc.KillContainer, "app") == [14]


def test_one_deadline_covers_mains_and_sidecars() -> None:
    sim = Sim(BUNDLE, {"m1": Behaviour(stop_takes=20), "s2": Behaviour(ignores_stop=True)})
    stop_at(sim, 10)
    finished = sim.run_until_finished()

    assert sim.times(lc.SignalContainer, "s2") == [30]  # when the mains were gone
    assert sim.times(lc.KillContainer, "s2") == [40]  # the pod's deadline, not 30 + 30
    # s2 first: s1's turn never came, so it gets its signal at the deadline
    assert sim.times(lc.SignalContainer, "s1") == [40]
    assert sim.times(lc.KillContainer, "s1") == []  # it died of it
    assert sim.first(lc.PodFinished) == 40
    assert sim.state.stop_deadline == 40
    assert finished.exit_status == 143


def test_a_second_stop_kills_at_once() -> None:
    sim = Sim(BUNDLE, {"m1": Behaviour(ignores_stop=True)})
    stop_at(sim, 10)
    sim.run(until=12)
    effects = sim.send(lc.StopRequested(immediate=True, signal=2))
    sim.run(until=12)

    assert lc.KillContainer("m1") in effects
    assert sim.first(lc.PodFinished) == 12
    assert sim.finished == [lc.PodFinished(137, FAILED)]


def test_an_immediate_stop_kills_everything_at_once() -> None:
    sim = Sim(BUNDLE)
    effects = stop_at(sim, 10, immediate=True)
    assert {x.name for x in effects if isinstance(x, lc.KillContainer)} == {"s1", "s2", "m1", "m2"}
    assert not any(isinstance(x, lc.SignalContainer | lc.RunHook) for x in effects)
    assert sim.run_until_finished() == lc.PodFinished(137, FAILED)


def test_a_stop_cancels_a_pending_back_off() -> None:
    sim = Sim(pod(main()), {"app": Behaviour(runs_for=1, exit_code=7)})
    effects = stop_at(sim, 5)  # crashed at 1 and 2; back-off until 12

    assert lc.CancelTimer("restart/app") in effects
    assert effects[-1] == lc.PodFinished(7, FAILED)
    app = sim.state.container("app")
    assert (app.step, app.state, app.exit_code, app.started_at) == (
        lc.Step.DONE,
        lc.State.TERMINATED,
        7,
        1.0,
    )
    sim.run(until=100)
    assert len(sim.times(lc.StartContainer, "app")) == 2


def test_a_job_like_pod_ends_and_stops_its_sidecars_last_first() -> None:
    plan = pod(
        sidecar("proxy"),
        sidecar("logs", has_pre_stop=True),
        main("job"),
        restart_policy=ON_FAILURE,
    )
    sim = Sim(plan, {"job": Behaviour(runs_for=5), "logs": Behaviour(hook_takes=2)})
    finished = sim.run_until_finished()

    assert sim.times(lc.RunHook, "logs") == [5]
    assert sim.times(lc.SignalContainer, "logs") == [7]
    assert sim.times(lc.SignalContainer, "proxy") == [7]
    assert sim.of(lc.SignalContainer) == [
        lc.SignalContainer("logs", 15),
        lc.SignalContainer("proxy", 15),
    ]
    assert finished == lc.PodFinished(0, SUCCEEDED)
    assert sim.state.container("proxy").exit_code == 143


def test_active_deadline_fails_the_pod_with_124() -> None:
    plan = pod(main(), active_deadline_seconds=60)
    sim = Sim(plan, {"app": Behaviour(stop_exit_code=0)})
    finished = sim.run_until_finished()

    assert sim.times(lc.SignalContainer, "app") == [60]
    assert finished == lc.PodFinished(124, FAILED)
    assert sim.state.reason is lc.Reason.DEADLINE_EXCEEDED
    assert "longer than the specified deadline" in sim.state.message


def test_a_pod_that_ends_first_cancels_its_active_deadline() -> None:
    plan = pod(main(), active_deadline_seconds=60, restart_policy=ON_FAILURE)
    sim = Sim(plan, {"app": Behaviour(runs_for=5)})
    assert sim.run_until_finished() == lc.PodFinished(0, SUCCEEDED)
    assert sim.timers == {}


def test_init_died_kills_everything_and_fails_with_125() -> None:
    sim = Sim(BUNDLE)
    sim.run(until=10)
    effects = sim.send(lc.InitDied("init exited with status 1"))

    kills = [x for x in effects if isinstance(x, lc.KillContainer)]
    assert {k.name for k in kills} == {"s1", "s2", "m1", "m2"}
    assert effects[-1] == lc.PodFinished(125, FAILED)
    assert sim.state.reason is lc.Reason.INIT_DIED
    m1 = sim.state.container("m1")
    assert (m1.state, m1.exit_code, m1.signal) == (lc.State.TERMINATED, 137, 9)
    assert "init died" in m1.message
    assert sim.timers == {}


def test_a_finished_pod_ignores_everything() -> None:
    sim = Sim(pod(main()))
    stop_at(sim, 1, immediate=True)
    sim.run_until_finished()
    state = sim.state
    for event in (lc.Started("app"), lc.StopRequested(), lc.InitDied(), lc.TimerFired("stop")):
        assert lc.handle(state, event, 99) == (state, [])


def test_a_stop_before_any_main_container_ran_exits_with_the_signal() -> None:
    plan = pod(sidecar("s", notify_ready=True), main())
    sim = Sim(plan)  # s never says READY=1: main never starts
    stop_at(sim, 5, signal=2)
    assert sim.run_until_finished() == lc.PodFinished(130, FAILED)
    assert sim.times(lc.StartContainer, "app") == []


def test_a_container_that_starts_during_the_stop_is_stopped() -> None:
    state, effects = lc.begin(pod(main(stop_signal=3)), 0)
    assert effects == [lc.StartContainer("app")]
    state, effects = lc.handle(state, lc.StopRequested(), 1)
    assert effects == [lc.SetTimer("stop", 31)]  # no process to signal yet
    state, effects = lc.handle(state, lc.Started("app", pid=7), 2)
    assert effects == [lc.SignalContainer("app", 3), lc.SetTimer("kill/app", 31)]
    state, effects = lc.handle(state, lc.Exited("app", None, 3), 3)
    assert effects == [
        lc.CancelTimer("kill/app"),
        lc.CancelTimer("stop"),
        lc.PodFinished(131, FAILED),
    ]


def test_a_kill_sent_before_the_process_existed_is_sent_again() -> None:
    state, _ = lc.begin(pod(main()), 0)
    state, effects = lc.handle(state, lc.StopRequested(immediate=True), 1)
    assert effects == [lc.SetTimer("stop", 31), lc.KillContainer("app")]
    state, effects = lc.handle(state, lc.Started("app", pid=7), 2)
    assert effects == [lc.KillContainer("app")]
    state, effects = lc.handle(state, lc.Exited("app", None, 9), 3)
    assert effects[-1] == lc.PodFinished(137, FAILED)


def test_a_stop_that_asks_for_its_signal_as_the_status_gets_it() -> None:
    sim = Sim(BUNDLE)
    sim.run(until=5)
    effects = sim.send(lc.StopRequested(immediate=True, signal=3, status_from_signal=True))
    assert {x.name for x in effects if isinstance(x, lc.KillContainer)} == {"s1", "s2", "m1", "m2"}
    assert sim.run_until_finished() == lc.PodFinished(131, FAILED)


def test_an_eviction_stops_every_container_with_no_grace_and_fails_the_pod() -> None:
    # The kubelet evicts with a grace period of 0: no preStop hook, every stop
    # signal at once, SIGKILL two seconds later for whoever is still there.
    plan = pod(
        sidecar("s1"), sidecar("s2"), main("m1", has_pre_stop=True), main("m2"), grace_seconds=30
    )
    sim = Sim(plan, {"m1": Behaviour(ignores_stop=True), "s2": Behaviour(stop_takes=1)})
    sim.run(until=10)
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi".'
    effects = sim.send(lc.Evicted(message))
    signalled = sorted(x.name for x in effects if isinstance(x, lc.SignalContainer))
    assert signalled == ["m1", "m2", "s1", "s2"]  # no turns: the deadline is now
    finished = sim.run_until_finished()
    assert sim.times(lc.RunHook, "m1") == []
    assert sim.times(lc.KillContainer, "m1") == [12]
    assert sim.first(lc.PodFinished) == 12
    assert finished == lc.PodFinished(137, FAILED)  # m1, the first main container: SIGKILL
    assert (sim.state.reason, sim.state.message) == (lc.Reason.EVICTED, message)
    words = lc.last_words(sim.state)
    assert words.startswith(f"pod Failed (exit 137): evicted: {message}; m1 exited 137 (SIGKILL")
    assert "m2 exited 143 after SIGTERM" in words


def test_an_eviction_during_a_stop_cuts_its_grace_period_short() -> None:
    plan = pod(main("m1", has_pre_stop=True), main("m2"), grace_seconds=30)
    sim = Sim(plan, {"m1": Behaviour(hook_takes=20), "m2": Behaviour(ignores_stop=True)})
    stop_at(sim, 5)  # m1 runs its hook, m2 has its SIGTERM and ignores it
    sim.run(until=8)
    sim.send(lc.Evicted("evicted"))
    sim.run_until_finished()
    assert sim.times(lc.SignalContainer, "m1") == [8]  # the hook cut short at the new deadline
    assert sim.times(lc.KillContainer, "m2") == [8]  # its 2 s since SIGTERM are long over
    assert sim.state.reason is lc.Reason.EVICTED
