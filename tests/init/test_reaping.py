"""Reaping and exit statuses: no zombie survives, the child's status comes back."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.init.support import INIT, PODVISOR, run_init

PY = sys.executable

#: A child that leaves 200 orphans: each is forked by a short-lived parent
#: that the child itself waits for, so by then the orphan belongs to the
#: init. The child then waits (bounded) until the init has reaped all of
#: them, i.e. until its only child left is this one.
LEAVES_200_ORPHANS = r"""
import os, sys, time
me, init = os.getpid(), os.getppid()
for _ in range(200):
    parent = os.fork()
    if parent == 0:
        if os.fork() == 0:
            os._exit(0)  # the orphan
        os._exit(0)
    os.waitpid(parent, 0)
def init_children():
    with open(f"/proc/{init}/task/{init}/children") as f:
        return f.read().split()
deadline = time.monotonic() + 60
while init_children() != [str(me)]:
    if time.monotonic() > deadline:
        sys.exit(f"not reaped: {init_children()}")
    time.sleep(0.005)
print("all reaped", flush=True)
"""


@pytest.mark.parametrize("mode", [[], ["--pid-ns"]], ids=["subreaper", "pid-1-in-pid-ns"])
def test_200_orphans_are_all_reaped(mode: list[str]) -> None:
    result = run_init([*mode, "-w", "--", PY, "-c", LEAVES_200_ORPHANS])
    assert (result.returncode, result.stdout) == (0, "all reaped\n"), result.stderr
    reaped = [
        line for line in result.stderr.splitlines() if "Reaped zombie process with pid=" in line
    ]
    assert len(reaped) == 200


def test_not_pid_1_it_says_it_became_a_subreaper_at_verbose() -> None:
    quiet = run_init(["--", "true"])
    verbose = run_init(["-v", "--", "true"])
    assert (quiet.returncode, quiet.stderr) == (0, "")
    assert verbose.returncode == 0
    assert "child subreaper" in verbose.stderr


@pytest.mark.parametrize("code", [0, 1, 2, 3, 42, 125, 126, 127, 128, 129, 143, 254, 255])
def test_exit_code_is_passed_through(code: int) -> None:
    assert run_init(["--", "sh", "-c", f"exit {code}"]).returncode == code


def test_every_exit_code_0_to_255_is_passed_through() -> None:
    # Started in batches so that 256 interpreters do not take minutes.
    got: dict[int, int] = {}
    for start in range(0, 256, 32):
        procs = {
            code: subprocess.Popen(
                [*INIT, "--", "sh", "-c", f"exit {code}"], stdin=subprocess.DEVNULL
            )
            for code in range(start, start + 32)
        }
        got.update({code: proc.wait(timeout=120) for code, proc in procs.items()})
    assert got == {code: code for code in range(256)}


@pytest.mark.parametrize(
    "signum",
    [
        signal.SIGHUP,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGABRT,
        signal.SIGKILL,
        signal.SIGUSR1,
        signal.SIGSEGV,
        signal.SIGPIPE,  # proves the child gets SIGPIPE at its default, not ignored
        signal.SIGTERM,
        signal.SIGRTMIN,
        signal.SIGRTMAX,
    ],
    ids=lambda s: signal.Signals(s).name,
)
def test_death_by_signal_n_exits_128_plus_n(signum: int) -> None:
    result = run_init(["--", "sh", "-c", f"ulimit -c 0; kill -{int(signum)} $$"])
    assert result.returncode == 128 + signum, result.stderr


def test_podvisor_kill_term_self_exits_143() -> None:
    result = run_init(["--", "sh", "-c", "kill -TERM $$"], prefix=[str(PODVISOR)])
    assert (result.returncode, result.stderr) == (143, "")


@pytest.mark.parametrize(
    ("args", "command", "expected"),
    [
        (["-e", "3"], "exit 3", 0),
        (["-e3", "-e", "4"], "exit 4", 0),
        (["-e", "3"], "exit 4", 4),
        (["-e", "143"], "kill -TERM $$", 0),
        (["-e", "0"], "exit 0", 0),
    ],
)
def test_e_remaps_exit_codes_to_0(args: list[str], command: str, expected: int) -> None:
    assert run_init([*args, "--", "sh", "-c", command]).returncode == expected
