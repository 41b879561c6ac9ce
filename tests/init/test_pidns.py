"""``--pid-ns``: the command sees the init as PID 1 and only its own processes."""

from __future__ import annotations

import signal
import sys

import pytest

from tests.init.support import REPORTER, run_init, running

pytestmark = pytest.mark.needs_root

PY = sys.executable


def test_ps_inside_sees_only_the_namespace() -> None:
    result = run_init(["--pid-ns", "--", "ps", "-e", "-o", "pid=,comm="])
    assert result.returncode == 0, result.stderr
    assert [line.split() for line in result.stdout.splitlines()] == [
        ["1", "podvisor-init"],
        ["2", "ps"],
    ]


def test_the_command_runs_as_pid_2_under_init_as_pid_1() -> None:
    result = run_init(["--pid-ns", "--", PY, "-c", "import os; print(os.getpid(), os.getppid())"])
    assert (result.returncode, result.stdout) == (0, "2 1\n")


def test_what_is_left_in_the_namespace_ends_with_the_init() -> None:
    # The background sleep keeps stdout open: reading it to the end proves
    # the kernel killed it when the init (PID 1 of the namespace) exited.
    result = run_init(["--pid-ns", "--", "sh", "-c", "sleep 1000 & exit 7"], timeout=30)
    assert (result.returncode, result.stderr) == (7, "")


def test_signals_reach_the_command_through_both_inits() -> None:
    args = ["--pid-ns", "--rewrite", "USR2:HUP", "--", PY, "-c", REPORTER]
    with running(args) as init:
        assert init.line() == "ready child"
        for signum in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGRTMIN + 5):
            init.kill(signum)
            assert init.line() == f"child {signum}"
        init.kill(signal.SIGUSR2)
        assert init.line() == f"child {signal.SIGHUP}"
        assert init.finish() == (0, "", "")


def test_death_by_signal_and_missing_programs_come_back_out() -> None:
    assert run_init(["--pid-ns", "--", "sh", "-c", "kill -TERM $$"]).returncode == 143
    missing = run_init(["--pid-ns", "--", "/nonexistent/pv-program"])
    assert missing.returncode == 127
    assert "/nonexistent/pv-program" in missing.stderr
