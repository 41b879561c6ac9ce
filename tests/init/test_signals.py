"""Signals: every catchable one reaches the child (or its group), none stops the init."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podvisor.init import tini
from podvisor.init.process import FORWARDED
from tests.init.support import INIT, REPORTER, running, wait_pid

PY = sys.executable


def test_every_forwarded_signal_reaches_the_child_only() -> None:
    with running(["--", PY, "-c", REPORTER, "fork"]) as init:
        init.expect("ready child", "ready grandchild")
        for signum in sorted(FORWARDED):
            init.kill(signum)
            assert init.line() == f"child {signum}"
        code, rest, err = init.finish()
    # Without -g the grandchild, in the same process group, heard nothing.
    assert (code, rest, err) == (0, "", "")


@pytest.mark.parametrize(
    ("flag", "env"),
    [(["-g"], {}), ([], {"TINI_KILL_PROCESS_GROUP": "1"})],
    ids=["-g", "TINI_KILL_PROCESS_GROUP"],
)
def test_group_mode_signals_the_whole_process_group(flag: list[str], env: dict[str, str]) -> None:
    with running([*flag, "--", PY, "-c", REPORTER, "fork"], env={**os.environ, **env}) as init:
        init.expect("ready child", "ready grandchild")
        for signum in sorted(FORWARDED):
            init.kill(signum)
            init.expect(f"child {signum}", f"grandchild {signum}")
        assert init.finish() == (0, "", "")


def test_real_time_signals_are_queued_not_merged() -> None:
    # Each instance of a real-time signal is queued: 50 sent, 50 received.
    child = """
import signal, sys
rt = signal.SIGRTMIN + 3
signal.pthread_sigmask(signal.SIG_BLOCK, {rt})
print("ready", flush=True)
for n in range(50):
    if signal.sigtimedwait({rt}, 30) is None:
        sys.exit(f"only {n} arrived")
print("all 50", flush=True)
"""
    with running(["--", PY, "-c", child]) as init:
        assert init.line() == "ready"
        for _ in range(50):
            init.kill(signal.SIGRTMIN + 3)
        assert init.line() == "all 50"
        assert init.finish() == (0, "", "")


def test_rewrite_changes_or_drops_a_signal() -> None:
    args = ["--rewrite", "TERM:USR1", "-r", "1:0", "--rewrite=SIGRTMIN+1:SIGRTMIN+2"]
    with running([*args, "--", PY, "-c", REPORTER]) as init:
        assert init.line() == "ready child"
        init.kill(signal.SIGTERM)
        assert init.line() == f"child {signal.SIGUSR1}"
        init.kill(signal.SIGHUP)  # dropped
        init.kill(signal.SIGUSR2)
        assert init.line() == f"child {signal.SIGUSR2}"
        init.kill(signal.SIGRTMIN + 1)
        assert init.line() == f"child {signal.SIGRTMIN + 2}"
        assert init.finish() == (0, "", "")


def test_a_signal_storm_neither_crashes_the_init_nor_loses_the_last_term() -> None:
    child = """
import signal
signal.signal(signal.SIGUSR1, lambda *_: None)
print("ready", flush=True)
while True:
    signal.pause()
"""
    with running(["--", PY, "-c", child]) as init:
        assert init.line() == "ready"
        for _ in range(1000):
            init.kill(signal.SIGUSR1)
        init.kill(signal.SIGTERM)
        assert init.finish() == (128 + signal.SIGTERM, "", "")


@pytest.mark.parametrize("sender", ["kill", "sigqueue"])
@pytest.mark.parametrize(
    "signum",
    [signal.SIGABRT, signal.SIGSYS, signal.SIGTRAP, signal.SIGSEGV],
    ids=lambda signum: signal.Signals(signum).name,
)
def test_a_fault_signal_another_process_sends_is_forwarded(signum: int, sender: str) -> None:
    # Sent by a process, a fault signal is an ordinary one: the child gets it,
    # the init lives on (it used to die of it, exit 128+N, orphaning its child).
    with running(["--", PY, "-c", REPORTER]) as init:
        assert init.line() == "ready child"
        if sender == "kill":
            init.kill(signum)
        else:
            _sigqueue(init.pid, signum)
        assert init.line() == f"child {signum}"
        assert init.proc.poll() is None
        assert init.finish() == (0, "", "")


def _sigqueue(pid: int, signum: int) -> None:
    """sigqueue(3): si_code SI_QUEUE, where kill(2) gives SI_USER."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.sigqueue(pid, signum, ctypes.c_void_p(0)) != 0:
        raise OSError(ctypes.get_errno(), "sigqueue")


@pytest.mark.parametrize(
    ("signum", "code", "forwarded"),
    [
        (signal.SIGABRT, 0, True),  # SI_USER: kill(2)
        (signal.SIGSYS, -1, True),  # SI_QUEUE: sigqueue(3)
        (signal.SIGTRAP, -6, True),  # SI_TKILL: tgkill(2)
        (signal.SIGBUS, 5, False),  # BUS_MCEERR_AO: the kernel, of the init's own memory
        (signal.SIGHUP, 1, True),  # not a fault signal: whatever raised it
    ],
)
def test_a_fault_signal_is_forwarded_unless_the_kernel_raised_it(
    signum: int, code: int, forwarded: bool
) -> None:
    info = signal.struct_siginfo((signum, code, 0, 0, 0, 0, 0))
    assert tini.is_sent(info) is forwarded


def test_job_control_signals_never_stop_the_init() -> None:
    # SIGTSTP/SIGTTIN/SIGTTOU are passed on; the init itself keeps running.
    with running(["--", PY, "-c", REPORTER]) as init:
        assert init.line() == "ready child"
        for signum in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
            init.kill(signum)
            assert init.line() == f"child {signum}"
        state = Path(f"/proc/{init.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in ("S", "R")
        assert init.finish() == (0, "", "")


_RT_SIGTIMEDWAIT = {"x86_64": 128, "aarch64": 137}


@pytest.mark.skipif(platform.machine() not in _RT_SIGTIMEDWAIT, reason="syscall numbers")
def test_an_idle_init_waits_for_signals_without_a_timeout() -> None:
    # tini wakes up once a second; podvisor sleeps in rt_sigtimedwait(set,
    # info, NULL): /proc/PID/syscall shows the call and its NULL timeout.
    with running(["--", PY, "-c", REPORTER]) as init:
        assert init.line() == "ready child"
        deadline = time.monotonic() + 20
        fields: list[str] = []
        while time.monotonic() < deadline:
            fields = Path(f"/proc/{init.pid}/syscall").read_text().split()
            if fields[0] == str(_RT_SIGTIMEDWAIT[platform.machine()]):
                break
        assert fields[0] == str(_RT_SIGTIMEDWAIT[platform.machine()]), fields
        assert int(fields[3], 16) == 0  # the timeout argument: NULL
        assert init.finish() == (0, "", "")


def test_parent_death_signal_reaches_the_child() -> None:
    # A launcher starts the init with -p SIGTERM and leaves. The init, now
    # adopted by pytest (a subreaper), gets TERM, passes it on, and exits 143.
    launcher = f"""
import subprocess, sys
init = subprocess.Popen([*{list(INIT)!r}, "-p", "SIGTERM", "--", sys.executable, "-c",
                         "import signal; print('ready', flush=True); signal.pause()"],
                        stdin=subprocess.DEVNULL)
print(init.pid, flush=True)
sys.stdin.read()
"""
    with running(["-c", launcher], prefix=[PY]) as parent:
        init_pid = int(parent.line())
        try:
            assert parent.line() == "ready"
            assert parent.finish()[0] == 0
            status = wait_pid(init_pid)
        finally:
            _end_if_running(init_pid)
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGTERM


def _end_if_running(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(ChildProcessError):
        wait_pid(pid, timeout=10)


@pytest.mark.parametrize("where", ["foreground", "background"])
def test_the_child_gets_the_terminal_when_the_init_has_it(where: str) -> None:
    # The launcher makes a session with a pty as its terminal and runs the
    # init in its foreground process group, or in a background one (as a
    # shell does with `podvisor -- CMD &`): then the init leaves it alone.
    master, slave = os.openpty()
    launcher = f"""
import os, sys
os.setsid()
fd = os.open({os.ttyname(slave)!r}, os.O_RDWR)  # the session's controlling terminal
for n in range(3):
    os.dup2(fd, n)
init = [*{list(INIT)!r}, "--", sys.executable, "-c",
        "import os; print('foreground' if os.tcgetpgrp(0) == os.getpid() else 'background')"]
if {where!r} == "foreground":
    os.execv(sys.executable, init)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.execv(sys.executable, init)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""
    proc = subprocess.Popen([PY, "-c", launcher], stdin=subprocess.DEVNULL)
    try:
        line = _read_terminal_line(master)
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(master)
        os.close(slave)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert line == where


def _read_terminal_line(master: int, timeout: float = 30.0) -> str:
    """The first line written to the terminal (our end stays open, so no EIO)."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([master], [], [], left)[0]:
            raise AssertionError(f"no line on the terminal; got {data!r}")
        data += os.read(master, 4096)
    return data.split(b"\n", 1)[0].decode(errors="replace").strip()
