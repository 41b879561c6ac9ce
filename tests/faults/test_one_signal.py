"""Every catchable signal, sent once to the supervisor of a running pod.

A supervisor people trust is not ended or stopped by a stray signal: each
one whose default action would end or stop the process (SIGALRM, SIGXCPU,
SIGTSTP, SIGTTOU, ...) is sent once, the supervisor must stay up and
running (never in state T), no container may restart, and SIGTERM must then
stop the pod in order. SIGQUIT is the exception: it kills the pod at once,
cleans up and exits 131.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.faults import procfs
from tests.faults.conftest import Record
from tests.faults.pods import Supervisor, clean_after_dead_supervisor, term_trap, write_pod

pytestmark = pytest.mark.faults

GRACE = 20
#: Every signal but KILL and STOP whose default action ends or stops a process;
#: SIGPIPE and SIGXFSZ included (Python ignores them), SIGQUIT and the stops by request aside.
ENDING = [
    signal.SIGHUP,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGABRT,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGUSR1,
    signal.SIGSEGV,
    signal.SIGUSR2,
    signal.SIGPIPE,
    signal.SIGALRM,
    signal.SIGSTKFLT,
    signal.SIGXCPU,
    signal.SIGXFSZ,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
    signal.SIGSYS,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGRTMIN,
    signal.SIGRTMAX,
]

NOTED = ["SIGHUP", "SIGABRT", "SIGALRM", "SIGXCPU", "SIGPWR", "SIGTSTP"]


def _pod(tmp_path: Path, log: Path) -> Path:
    return write_pod(
        tmp_path,
        "one-signal",
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: fault-one-signal
          annotations: {{podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: {GRACE}
          containers:
            - {{name: main, command: {json.dumps(term_trap(log, "main"))}}}
        """,
    )


def _state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise AssertionError(f"no State in /proc/{pid}/status")


@pytest.mark.timeout(120)
def test_every_catchable_signal_once_the_pod_runs_on(tmp_path: Path, faults: Record) -> None:
    log = tmp_path / "stopped"
    with Supervisor(_pod(tmp_path, log)) as sup:
        sup.wait_line("main", "up")
        tree = procfs.descendants(sup.pid)
        try:
            for signum in ENDING:
                sup.signal(signum)
            # The signals a handler catches are each said once: their lines show
            # that the supervisor handled them all and kept running.
            sup.err.wait_for(
                lambda lines: all(any(f"received {n}:" in ln.text for ln in lines) for n in NOTED),
                30,
                "the supervisor to note " + ", ".join(NOTED),
            )
            assert sup.proc.poll() is None, f"the supervisor died: {sup.err.text()}"
            states = {_state(sup.pid)}
            sup.signal(signal.SIGTERM)
            code = sup.wait(timeout=60)
        finally:
            died = sup.proc.poll()
            if died is not None and died < 0:
                clean_after_dead_supervisor("fault-one-signal", tree, GRACE)
    assert "T" not in states
    assert code == 0, sup.err.text()
    assert sup.out.of("main") == ["up"], "main restarted"
    faults.runs = len(ENDING)
    faults.figure("signals", len(ENDING))


@pytest.mark.timeout(120)
def test_sigquit_kills_the_pod_at_once_and_exits_131(tmp_path: Path, faults: Record) -> None:
    log = tmp_path / "stopped"
    with Supervisor(_pod(tmp_path, log)) as sup:
        sup.wait_line("main", "up")
        sup.signal(signal.SIGQUIT)
        code = sup.wait(timeout=GRACE)  # at once: well within the grace period
    assert code == 128 + signal.SIGQUIT, sup.err.text()
    assert not log.exists(), "main was asked to stop, not killed"
    faults.runs = 1
