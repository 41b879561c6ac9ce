"""1,000 mixed signals at the supervisor, or at the pod's init, while the pod runs.

The signals are the ones a process gets by accident or from a careless
operator: SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH and real-time signals, sent in
a seeded random order. Afterwards the pod must still run as before (no
container restarted, the supervisor's descriptors did not grow), and the
final SIGTERM must still stop it in order: main first, then the sidecars in
reverse, as the timestamps their TERM traps wrote show.

"At init" means both processes of the pod's init: the supervisor's child
`podvisor-init` (which only waits for the inner one) and PID 1 of the pod.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest

from tests.faults import procfs
from tests.faults.conftest import FdWatch, Record
from tests.faults.pods import (
    Supervisor,
    clean_after_dead_supervisor,
    stop_order,
    term_trap,
    write_pod,
)

pytestmark = pytest.mark.faults

SIGNALS = 1000
GRACE = 20
MIXED = [
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGHUP,
    signal.SIGWINCH,
    signal.SIGRTMIN,
    signal.SIGRTMIN + 1,
    signal.SIGRTMIN + 5,
    signal.SIGRTMAX - 1,
    signal.SIGRTMAX,
]


def _pod(tmp_path: Path, log: Path) -> Path:
    def container(name: str) -> str:
        return f"name: {name}, command: {json.dumps(term_trap(log, name))}"

    return write_pod(
        tmp_path,
        "signals",
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: fault-signals
          annotations: {{podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: {GRACE}
          initContainers:
            - {{{container("first")}, restartPolicy: Always}}
            - {{{container("second")}, restartPolicy: Always}}
          containers:
            - {{{container("main")}}}
        """,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize(
    "target",
    [
        "init",
        "supervisor",
    ],
)
def test_1000_mixed_signals_then_term_stops_in_order(
    target: str, backend: str, tmp_path: Path, faults: Record, fd_watch: FdWatch
) -> None:
    log = tmp_path / "stopped"
    rng = random.Random(f"signals-{target}")
    with Supervisor(_pod(tmp_path, log), "--backend", backend) as sup:
        for name in ("first", "second", "main"):
            sup.wait_line(name, "up")
        outer, inner = sup.init_pids()
        tree = procfs.descendants(sup.pid)
        targets = [sup.pid] if target == "supervisor" else [outer, inner]
        fd_watch.steady(sup.pid)
        try:
            for _ in range(SIGNALS):
                for pid in targets:
                    os.kill(pid, rng.choice(MIXED))
            assert sup.proc.poll() is None, f"the supervisor died: {sup.err.text()}"
            fds_grown = fd_watch.grown(sup.pid)
            sup.signal(signal.SIGTERM)
            code = sup.wait(timeout=60)
        finally:
            died = sup.proc.poll()
            if died is not None and died < 0:  # killed by a signal: leave nothing behind anyway
                clean_after_dead_supervisor("fault-signals", tree, GRACE)
    assert code == 0, sup.err.text()
    assert stop_order(log) == ["main", "second", "first"]
    for name in ("first", "second", "main"):
        assert sup.out.of(name) == ["up"], f"{name} restarted"
    faults.leak("supervisor descriptors", fds_grown)
    faults.runs = SIGNALS * len(targets)
    faults.figure("backend", backend)
