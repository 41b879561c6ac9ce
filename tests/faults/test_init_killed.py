"""The pod's init SIGKILLed: the supervisor says so, tears the pod down and exits 125.

Both processes of the init are tried: PID 1 of the pod (its death ends the
PID namespace, so the kernel kills every container) and the supervisor's
child `podvisor-init`, which only waits for it (its death leaves PID 1
running without a parent that waits: the supervisor must still end it).
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from tests.faults import procfs
from tests.faults.conftest import Record
from tests.faults.pods import Supervisor, write_pod

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("which", ["pid-1-of-the-pod", "podvisor-init"])
def test_init_sigkilled(which: str, tmp_path: Path, faults: Record) -> None:
    marker = f"pvf-init-{uuid.uuid4().hex[:8]}"
    env = f'env: [{{name: FAULT_MARK, value: "{marker}"}}]'
    path = write_pod(
        tmp_path,
        "init-killed",
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: fault-init-killed}}
        spec:
          terminationGracePeriodSeconds: 5
          initContainers:
            - {{name: side, restartPolicy: Always, {env}, command: ["sh", "-c", "echo up; exec sleep 600"]}}
          containers:
            - {{name: main, {env}, command: ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.2; done"]}}
        """,
    )
    with Supervisor(path) as sup:
        sup.wait_line("side", "up")
        sup.wait_line("main", "up")
        outer, inner = sup.init_pids()
        tree = procfs.descendants(sup.pid)
        os.kill(inner if which == "pid-1-of-the-pod" else outer, signal.SIGKILL)
        code = sup.wait(timeout=60)
    said = sup.err.text()
    assert code == 125, said
    assert "error: the pod's init exited" in said, said
    faults.leak("survivors", procfs.wait_gone(tree, timeout=10))
    faults.leak("processes of the pod anywhere", procfs.marked(marker))
    procfs.reap_adopted()
    faults.runs = 1
