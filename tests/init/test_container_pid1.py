"""PID 1 inside a pod: what a signal sent to it from inside (`kill -HUP 1`) does.

In a container's own PID namespace (the default), PID 1 is the container's
init: it passes the signal on to the container's program, as tini passes
signals to its child. With shareProcessNamespace, PID 1 is the pod's init,
which notes the signal once and ignores it.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from tests.faults import procfs
from tests.faults.pods import Supervisor, write_pod

pytestmark = pytest.mark.needs_root

#: The program signals PID 1 itself, so the test needs no way into the container:
#: HUP (handled: said with its sender, PID 1), then USR2 (not handled: it ends
#: the program, as under tini). Each is blocked and awaited, so none is lost.
PROGRAM = r"""
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
print("up", flush=True)
os.kill(1, signal.SIGHUP)
info = signal.sigwaitinfo({signal.SIGHUP})
print(f"HUP from {info.si_pid}", flush=True)
os.kill(1, signal.SIGUSR2)
signal.pause()
print("USR2 did not come", flush=True)
"""

SHARED = r"""
import os, signal, time
print("up", flush=True)
os.kill(1, signal.SIGUSR2)
time.sleep(1)
print("still here", flush=True)
"""


IDLE = r"""
import signal
print("up", flush=True)
signal.pause()
"""


def _pod(tmp_path: Path, program: str, *, share: bool, containers: int = 1) -> Path:
    command = json.dumps([sys.executable, "-c", program])
    listed = "\n".join(
        f"            - {{name: c{n}, command: {command}}}" for n in range(1, containers)
    )
    return write_pod(
        tmp_path,
        "pid1",
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: pid1-signals
          annotations: {{podvisor.io/network: loopback, podvisor.io/rootfs: host}}
        spec:
          restartPolicy: Never
          shareProcessNamespace: {str(share).lower()}
          containers:
            - {{name: main, command: {command}}}
{listed}
        """,
    )


@pytest.mark.timeout(60)
def test_a_signal_to_a_containers_pid_1_reaches_its_program(tmp_path: Path) -> None:
    with Supervisor(_pod(tmp_path, PROGRAM, share=False)) as sup:
        code = sup.wait(timeout=45)
    assert sup.out.of("main") == ["up", "HUP from 1"], sup.err.text()
    assert code == 128 + signal.SIGUSR2, sup.err.text()


@pytest.mark.timeout(60)
def test_a_signal_to_the_pods_init_as_pid_1_is_noted_and_ignored(tmp_path: Path) -> None:
    with Supervisor(_pod(tmp_path, SHARED, share=True)) as sup:
        code = sup.wait(timeout=45)
    assert sup.out.of("main") == ["up", "still here"], sup.err.text()
    assert code == 0, sup.err.text()
    said = sup.out.text() + sup.err.text()
    assert f"the pod's init received signal {int(signal.SIGUSR2)}: ignored" in said


def _nspid(pid: int) -> list[int]:
    """The process's pid in each PID namespace it is in, outermost first (NSpid)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(n) for n in line.split()[1:]]
    raise AssertionError(f"no NSpid for {pid}")


@pytest.mark.timeout(60)
def test_each_containers_pid_1_is_its_init_a_child_of_the_pods(tmp_path: Path) -> None:
    # One process per PID namespace: the pod's init forks each container's
    # init straight into its namespace, and that init's child is the program.
    with Supervisor(_pod(tmp_path, IDLE, share=False, containers=3)) as sup:
        for name in ("main", "c1", "c2"):
            sup.wait_line(name, "up")
        _, pod_init = sup.init_pids()
        container_inits = procfs.children_of(pod_init)
        assert len(container_inits) == 3
        for init in container_inits:
            assert procfs.comm_of(init) == "podvisor-init"
            assert _nspid(init)[-1] == 1  # PID 1 of its own namespace
            assert len(_nspid(init)) == len(_nspid(pod_init)) + 1  # one level below the pod's
            (program,) = procfs.children_of(init)
            assert _nspid(program)[-1] == 2
