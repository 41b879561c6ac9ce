"""Kubernetes events, read off the core's transitions (`lc.record`), and the pod's last words."""

from __future__ import annotations

from podvisor.supervisor import lifecycle as lc

from .sim import Behaviour, Sim, main, pod

LIVENESS, READINESS = lc.ProbeKind.LIVENESS, lc.ProbeKind.READINESS


def timeline(sim: Sim) -> list[tuple[str, str, int]]:
    """(reason, container, count) of each event kept, oldest first."""
    return [(e.reason, e.container or "-", e.count) for e in sim.journal.events]


def test_a_crash_loop_records_created_started_and_folded_back_offs() -> None:
    sim = Sim(pod(main()), {"app": Behaviour(runs_for=1, exit_code=1)})
    sim.run(until=100)

    # Starts at 0, 1, 12, 33, 74; each crashes a second later; the first restart is at
    # once, the next four wait in back-off: one event, counted four times.
    assert timeline(sim) == [("Created", "app", 5), ("Started", "app", 5), ("BackOff", "app", 4)]
    back_off = sim.journal.events[-1]
    assert (back_off.type, back_off.message) == (
        "Warning",
        "Back-off restarting failed container app",
    )
    assert (back_off.first, back_off.last) == (2, 75)


def test_a_failing_readiness_probe_says_the_probes_own_words() -> None:
    failing = Behaviour(probes={READINESS: lambda t: t < 3})
    sim = Sim(pod(main(readiness_probe=lc.ProbePlan())), {"app": failing})
    sim.run(until=6)

    unhealthy = [e for e in sim.journal.events if e.reason == "Unhealthy"]
    assert len(unhealthy) == 1
    assert unhealthy[0].type == "Warning"
    assert unhealthy[0].message == "Readiness probe failed: probe said so"
    assert unhealthy[0].count == 4  # at 3, 4, 5 and 6
    assert not sim.state.container("app").ready


def test_a_liveness_kill_is_unhealthy_then_killing_then_a_new_start() -> None:
    plan = pod(main(liveness_probe=lc.ProbePlan(failure_threshold=2)))
    sick = Behaviour(probes={LIVENESS: lambda t: t < 2})
    sim = Sim(plan, {"app": [sick, Behaviour()]})
    sim.run(until=5)

    assert timeline(sim) == [
        ("Unhealthy", "app", 2),
        ("Killing", "app", 1),
        ("Created", "app", 2),
        ("Started", "app", 2),
    ]
    killing = next(e for e in sim.journal.events if e.reason == "Killing")
    assert killing.message == "Container app failed liveness probe, will be restarted"


def test_an_oom_kill_is_an_oom_killing_warning_and_the_last_words_say_so() -> None:
    sim = Sim(
        pod(main(), restart_policy=lc.RestartPolicy.NEVER),
        {"app": Behaviour(runs_for=2, signal=9, oom_killed=True)},
    )
    sim.run_until_finished()

    oom = next(e for e in sim.journal.events if e.reason == "OOMKilling")
    assert oom.type == "Warning"
    assert oom.message == "Memory cgroup out of memory: killed process 1001 of container app"
    assert lc.last_words(sim.state) == (
        "pod Failed (exit 137): its main containers ended; app was OOMKilled (exit 137)"
    )


def test_the_last_words_give_a_programs_termination_message() -> None:
    told = Behaviour(runs_for=1, exit_code=1, message="input is missing\nsee /data\n")
    sim = Sim(pod(main(), restart_policy=lc.RestartPolicy.NEVER), {"app": told})
    sim.run_until_finished()

    assert sim.state.container("app").terminated is not None
    assert lc.last_words(sim.state) == (
        "pod Failed (exit 1): its main containers ended; "
        "app exited 1 (its message: input is missing ...)"
    )


def test_a_user_restart_is_killing_with_its_reason_then_a_new_start() -> None:
    sim = Sim(pod(main()))
    sim.run(until=1)
    sim.send(lc.RestartRequested("app"))
    sim.run(until=2)

    assert timeline(sim) == [("Killing", "app", 1), ("Created", "app", 2), ("Started", "app", 2)]
    assert sim.journal.events[0].message == "Container app restart requested, will be restarted"


def test_a_program_that_cannot_run_is_failed_with_its_error() -> None:
    sim = Sim(
        pod(main(), restart_policy=lc.RestartPolicy.NEVER), {"app": Behaviour(cannot_run=127)}
    )
    sim.run_until_finished()

    assert [(e.type, e.reason, e.message) for e in sim.journal.events] == [
        ("Warning", "Failed", "Error: exec: app: no such file or directory")
    ]
    assert lc.last_words(sim.state) == (
        "pod Failed (exit 127): its main containers ended; "
        "app exited 127 (ContainerCannotRun: exec: app: no such file or directory)"
    )


def test_a_stop_on_request_says_so_in_the_last_words() -> None:
    sim = Sim(pod(main("web")))
    sim.run(until=1)
    sim.send(lc.StopRequested(signal=15))
    sim.run_until_finished()

    assert ("Killing", "web", 1) in timeline(sim)
    assert lc.last_words(sim.state) == (
        "pod Failed (exit 143): stopped on request: SIGTERM; web exited 143 after SIGTERM"
    )


def test_the_journal_keeps_the_newest_and_folds_repeats_to_the_end() -> None:
    journal = lc.Journal(limit=2)
    for reason in ("A", "B", "A", "C"):
        journal.add(lc.PodEvent("Normal", reason, "m", "c", first=1, last=1))
    assert [(e.reason, e.count) for e in journal.events] == [("A", 2), ("C", 1)]


def test_a_container_on_its_image_says_pulled_before_created() -> None:
    sim = Sim(pod(main(image="docker.io/library/busybox:1.36")))
    sim.run(until=1)

    assert [(e.reason, e.message) for e in sim.journal.events][:2] == [
        ("Pulled", 'Container image "docker.io/library/busybox:1.36" already present on machine'),
        ("Created", "Created container: app"),
    ]
