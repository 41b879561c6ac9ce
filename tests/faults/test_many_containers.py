"""200 containers in one pod: started, crash-looping, stopped, the supervisor answering throughout.

Each container says "up" and waits for a shared lock the test holds, so
that all 200 run at once at the steady point; when the test lets go, each
crashes a second later, three times in a row (restarted at once, then after
1 s, then after 2 s: CrashLoopBackOff), and then stays up. Meanwhile a
poller runs `podvisor status POD` (the control socket) over and over, half a
second apart: every one must answer, within `ANSWER_WAIT`, and no stretch of
the crash loop longer than `GAP` may go without an answer. The supervisor's CPU time over the
whole run must stay under `CPU_BOUND` of one core, its descriptors must be
back where they were (all 200 up) once all 200 are up again, and every
container must have restarted exactly three times.

The containers share one PID namespace (shareProcessNamespace): a PID
namespace each would add 200 Python inits, which measures the machine, not
the supervisor.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults import procfs
from tests.faults.conftest import FdWatch, Record
from tests.faults.pods import (
    Line,
    Supervisor,
    free_port,
    http_get,
    pod_yaml,
    podvisor_command,
)

pytestmark = pytest.mark.faults

CONTAINERS = 200
CRASHES = 3
ANSWER_WAIT = 10.0
#: The longest stretch of the crash loop allowed without an answer (a `podvisor
#: status` is an interpreter start, about half a second on a quiet machine).
GAP = 5.0
#: The supervisor's CPU time over the run, as a share of one core.
CPU_BOUND = 0.8
POD = "fault-many"


def _manifest(tmp_path: Path, lock: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    containers = []
    for i in range(CONTAINERS):
        count = runs / f"c{i}"
        script = (
            f"echo x >> {count}; echo up; flock -s {lock} true; "
            f"test $(wc -l < {count}) -gt {CRASHES} && exec sleep 3600; sleep 1; exit 1"
        )
        containers.append(f"  - {{name: c{i}, command: {json.dumps(['sh', '-c', script])}}}\n")
    head = pod_yaml(f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {POD}
          annotations:
            podvisor.io/network: loopback
            podvisor.io/backoff-initial: 1s
            podvisor.io/backoff-max: 4s
        spec:
          restartPolicy: Always
          shareProcessNamespace: true
          terminationGracePeriodSeconds: 10
          containers:
        """)
    path = tmp_path / "many.yaml"
    path.write_text(head + "".join(containers))
    return path


@dataclass
class Poller:
    """Runs `podvisor status POD` half a second apart until told to stop."""

    env: dict[str, str]
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    #: When each answer came (monotonic).
    answered: list[float] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    #: Set when the pod is told to stop: from then on its socket goes away with it.
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.done.wait(0.5):
            began = time.monotonic()
            try:
                self.ask()
            except Exception as exc:  # every failure is counted, none may happen
                # The pod ended: no one to ask, or it stopped with the request in hand.
                gone = ("Connection refused", "no pod named", "stopped before answering")
                if not (self.stopping.is_set() and any(g in repr(exc) for g in gone)):
                    self.failures.append(repr(exc))
            self.slowest = max(self.slowest, time.monotonic() - began)

    def ask(self) -> None:
        done = subprocess.run(
            [*podvisor_command(), "status", POD],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=ANSWER_WAIT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert POD in done.stdout, done.stdout
        self.answered.append(time.monotonic())


def _fd_samples(fd_watch: FdWatch, pid: int) -> None:
    """Five looks, 0.1 s apart: the fewest is what stays open (a status request's
    connection is open for a moment only)."""
    pause = threading.Event()  # never set
    for _ in range(5):
        fd_watch.sample(pid)
        pause.wait(0.1)


def _ups(lines: list[Line]) -> int:
    return sum(ln.text == "up" for ln in lines)


@pytest.mark.timeout(240)
def test_200_containers_start_crash_loop_and_stop(
    tmp_path: Path, faults: Record, fd_watch: FdWatch
) -> None:
    lock = tmp_path / "lock"
    path = _manifest(tmp_path, lock)
    port = free_port()
    run_dir = tmp_path / "run"
    env = {**os.environ, "PODVISOR_RUN_DIR": str(run_dir)}
    poller = Poller(env)
    thread = threading.Thread(target=poller.run, daemon=True)
    began = time.monotonic()
    held = lock.open("w")
    fcntl.flock(held, fcntl.LOCK_EX)  # before any container can take it
    with (
        held,
        Supervisor(
            path, metrics=f"127.0.0.1:{port}", env={"PODVISOR_RUN_DIR": str(run_dir)}
        ) as sup,
    ):
        sup.out.wait_for(lambda ls: _ups(ls) >= CONTAINERS, 120, "200 containers up")
        poller.ask()  # opens the cgroup files every later read keeps reading (KeptFiles)
        _fd_samples(fd_watch, sup.pid)
        thread.start()
        fcntl.flock(held, fcntl.LOCK_UN)
        started = time.monotonic()
        total = CONTAINERS * (CRASHES + 1)
        sup.out.wait_for(lambda ls: _ups(ls) >= total, 120, "the crash loops to end")
        looped = time.monotonic()
        _fd_samples(fd_watch, sup.pid)
        status = json.loads(http_get(port, "/status"))
        fds_grown = fd_watch.grown(sup.pid)
        cpu = procfs.cpu_seconds(sup.pid)
        poller.stopping.set()
        sup.signal(signal.SIGTERM)
        code = sup.wait(timeout=120)
        stopped = time.monotonic()
        poller.done.set()
        thread.join(timeout=30)
    # c0, the first main container, is a `sleep` that SIGTERM ends: 128 + 15.
    assert code == 143, sup.err.text()[-3000:]
    restarts = {c["name"]: c["restartCount"] for c in status["containerStatuses"]}
    assert restarts == {f"c{i}": CRASHES for i in range(CONTAINERS)}
    assert not poller.failures, poller.failures[:5]
    # Throughout: no stretch of the crash loop longer than GAP went without an answer.
    marks = [started, *(t for t in poller.answered if started < t < looped), looped]
    longest = max(b - a for a, b in itertools.pairwise(marks))
    assert longest <= GAP, f"{longest:.1f} s without an answer"
    share = cpu / (looped - began)
    assert share <= CPU_BOUND, f"the supervisor used {share:.0%} of a core"
    faults.leak("supervisor descriptors", fds_grown)
    faults.runs = total
    faults.figure("start s", f"{started - began:.1f}")
    faults.figure("crash loop s", f"{looped - started:.1f}")
    faults.figure("stop s", f"{stopped - looped:.1f}")
    faults.figure("supervisor CPU share", f"{share:.0%}")
    faults.figure("podvisor status answers", len(poller.answered))
    faults.figure("slowest answer s", f"{poller.slowest:.2f}")
    faults.figure("longest stretch without one s", f"{longest:.1f}")
