"""Rule 7 for a Job's pod: failed containers restart until backoffLimit, then the pod fails."""

from __future__ import annotations

import pytest

from podvisor.supervisor import lifecycle as lc

from .sim import Behaviour, Sim, init, main, pod

P = lc.RestartPolicy
CRASH = Behaviour(runs_for=1, exit_code=3)


@pytest.mark.parametrize("policy", [P.NEVER, P.ON_FAILURE])
def test_failures_restart_until_the_backoff_limit(policy: lc.RestartPolicy) -> None:
    sim = Sim(pod(main(), restart_policy=policy, backoff_limit=2), {"app": CRASH})
    done = sim.run_until_finished()
    assert len(sim.times(lc.StartContainer, "app")) == 3  # the first run and two retries
    assert (done.exit_status, done.phase) == (3, lc.PodPhase.FAILED)
    assert sim.state.reason is lc.Reason.BACKOFF_LIMIT_EXCEEDED
    assert sim.state.message == "Job has reached backoffLimit 2"


def test_a_backoff_limit_of_zero_runs_once() -> None:
    sim = Sim(pod(main(), restart_policy=P.NEVER, backoff_limit=0), {"app": CRASH})
    assert sim.run_until_finished().exit_status == 3
    assert len(sim.times(lc.StartContainer, "app")) == 1


def test_restarts_count_across_containers_and_a_failed_init_fails_the_pod() -> None:
    behaviours = {"setup": CRASH, "app": Behaviour(runs_for=1, exit_code=0)}
    sim = Sim(pod(init("setup"), main(), restart_policy=P.NEVER, backoff_limit=1), behaviours)
    done = sim.run_until_finished()
    assert len(sim.times(lc.StartContainer, "setup")) == 2
    assert sim.times(lc.StartContainer, "app") == []
    assert (done.exit_status, done.phase) == (3, lc.PodPhase.FAILED)


def test_success_ends_a_job_as_usual() -> None:
    sim = Sim(pod(main(), restart_policy=P.NEVER, backoff_limit=6), {"app": Behaviour(runs_for=1)})
    done = sim.run_until_finished()
    assert (done.exit_status, done.phase) == (0, lc.PodPhase.SUCCEEDED)


def test_without_a_job_never_means_never() -> None:
    sim = Sim(pod(main(), restart_policy=P.NEVER), {"app": CRASH})
    sim.run_until_finished()
    assert len(sim.times(lc.StartContainer, "app")) == 1
