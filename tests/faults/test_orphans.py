"""10,000 orphans in bursts: every one reaped, no zombie left, nothing lost.

A burst: a short-lived parent forks 500 children and exits, so they are
orphans re-parented to the reaper; they all wait on one pipe, and when the
driver closes its end they all exit at once, 500 SIGCHLDs together. Twenty
bursts make 10,000. The driver then waits (bounded) until its reaper has no
child but itself, says so, and the test checks from outside that no zombie
hangs under the reaper and that it counted each orphan exactly once (the
pod's init reports a total, a container's init keeps its own in a file of
the supervisor's, tini mode's -w prints a line each).

Three reapers: the pod's init as PID 1 (shareProcessNamespace), a
container's own init as PID 1 of its PID namespace (the default), and tini
mode as a child subreaper (`podvisor -w -- CMD`, which prints one line per
reaped orphan).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults import procfs
from tests.faults.conftest import FdWatch, Record
from tests.faults.pods import podvisor_command, running_pod

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

BURSTS, BURST_SIZE = 20, 500
ORPHANS = BURSTS * BURST_SIZE

#: argv: bursts, size, then "stdin" (end at end-of-file on stdin) or "term"
#: (end at SIGTERM). Says "orphans N" when its reaper has reaped them all.
DRIVER = r"""
import os, signal, sys, time
bursts, size, until = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
me, reaper = os.getpid(), os.getppid()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
def reaper_children():
    with open(f"/proc/{reaper}/task/{reaper}/children") as f:
        return f.read().split()
for _ in range(bursts):
    r, w = os.pipe()
    parent = os.fork()
    if parent == 0:
        for _ in range(size):
            if os.fork() == 0:
                os.close(w)
                os.read(r, 1)  # end-of-file once the driver closes its end: the burst
                os._exit(0)
        os._exit(0)
    os.waitpid(parent, 0)  # its children are orphans now, the reaper's
    os.close(r)
    os.close(w)
deadline = time.monotonic() + 90
while reaper_children() != [str(me)]:
    if time.monotonic() > deadline:
        sys.exit(f"not reaped within 90 s: {len(reaper_children())} children left")
    time.sleep(0.01)
print(f"orphans {bursts * size}", flush=True)
if until == "stdin":
    sys.stdin.read()
else:
    while True:
        signal.pause()
"""


def _pod(share: bool) -> str:
    return f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: fault-orphans
          annotations: {{podvisor.io/network: loopback}}
        spec:
          shareProcessNamespace: {"true" if share else "false"}
          terminationGracePeriodSeconds: 5
          containers:
            - name: driver
              command: ["{sys.executable}", "-c", {json.dumps(DRIVER)}, "{BURSTS}", "{BURST_SIZE}", "term"]
    """


@pytest.mark.timeout(240)
@pytest.mark.parametrize("share", [True, False], ids=["pod-init-pid-1", "container-init-pid-1"])
async def test_10000_orphans_under_a_pod(share: bool, faults: Record, fd_watch: FdWatch) -> None:
    """Reaped by the pod's init (which counts them) or by the container's own init."""
    async with running_pod(_pod(share)) as pod:
        fd_watch.steady(os.getpid())
        await pod.wait_line("driver", f"orphans {ORPHANS}")
        view = pod.view
        reapers = {view.init.host_pid, *view.cgroups["driver"].pids()}
        faults.leak("zombies under the reapers", procfs.zombies_of(reapers))
        if share:
            # The pod's init reports its running total of adopted orphans it reaped.
            await pod.until(lambda: view.orphans_reaped >= ORPHANS, "orphans counted")
            assert view.orphans_reaped == ORPHANS
        else:  # the container's init counts them in its file, read as a scrape reads it
            counted = view.container_orphans.counts
            await pod.until(lambda: counted().get("driver", 0) >= ORPHANS, "orphans counted")
            assert counted() == {"driver": ORPHANS}
            assert view.orphans_reaped == 0
        assert pod.container("driver").restart_count == 0
        status = await pod.stop()
    assert status == 0, pod.err.text()
    faults.leak("supervisor descriptors", fd_watch.grown(os.getpid()))
    faults.runs = ORPHANS
    faults.figure("reaper", "pod init" if share else "container init")


@pytest.mark.timeout(180)
def test_10000_orphans_under_tini_mode(faults: Record, tmp_path: Path) -> None:
    """`podvisor -w -- CMD` as a subreaper: one "Reaped zombie" line per orphan, no more."""
    argv = [sys.executable, "-c", DRIVER, str(BURSTS), str(BURST_SIZE), "stdin"]
    # stderr to a file: 10,000 lines would fill a pipe nobody reads before the end
    with (
        (tmp_path / "stderr").open("w+") as err,
        subprocess.Popen(
            [*podvisor_command(), "-w", "--", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as init,
    ):
        assert init.stdout is not None
        try:
            line = init.stdout.readline()
            assert line == f"orphans {ORPHANS}\n", line
            faults.leak("zombies under the init", procfs.zombies_of([init.pid]))
            init.communicate(input="", timeout=60)
        finally:
            init.kill()
        err.seek(0)
        said = err.read()
    assert init.returncode == 0, said[-2000:]
    reaped = [ln for ln in said.splitlines() if "Reaped zombie process with pid=" in ln]
    assert len(reaped) == ORPHANS
    faults.runs = ORPHANS
