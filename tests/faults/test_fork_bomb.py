"""A fork bomb in one container: held at its pids limit, the other containers unaffected.

The bomb forks in a loop until fork() fails with EAGAIN (bounded: it stops
there), every child holding its slot. Its cgroup's pids.max is 50 (the
`podvisor.io/pids-limit.bomb` annotation), so it must be stopped at 50 tasks,
its container's init included. Meanwhile two other containers keep printing
a numbered tick every 0.1 s, each tick a fork of `sleep`: after the bomb hit
its limit, each must print ten more, in order, none missing.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.faults.conftest import FdWatch, Record
from tests.faults.pods import InProcessPod, running_pod

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

LIMIT = 50

BOMB = r"""
import errno, os, signal, sys
r, w = os.pipe()
forks = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        if e.errno != errno.EAGAIN:
            raise
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # holds its slot until the bomb ends
        os._exit(0)
    forks += 1
print(f"EAGAIN after {forks} forks", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    signal.pause()
"""

TICKER = "i=0; trap 'exit 0' TERM; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"


def _ticks(pod: InProcessPod, name: str) -> list[int]:
    return [int(t.split()[1]) for t in pod.out.of(name) if t.startswith("tick ")]


@pytest.mark.timeout(120)
async def test_fork_bomb_is_contained(faults: Record, fd_watch: FdWatch) -> None:
    bomb = [sys.executable, "-c", BOMB]
    ticker = ["sh", "-c", TICKER]
    text = f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: fault-fork-bomb
          annotations:
            podvisor.io/network: loopback
            podvisor.io/pids-limit.bomb: "{LIMIT}"
        spec:
          terminationGracePeriodSeconds: 5
          containers:
            - {{name: ticker-a, command: {json.dumps(ticker)}}}
            - {{name: bomb, command: {json.dumps(bomb)}}}
            - {{name: ticker-b, command: {json.dumps(ticker)}}}
    """
    async with running_pod(text) as pod:
        await pod.wait_line("ticker-a", "tick 1")
        await pod.wait_line("ticker-b", "tick 1")
        fd_watch.steady(os.getpid())
        await pod.wait_for(
            lambda lines: any(ln.container == "bomb" and "EAGAIN" in ln.text for ln in lines),
            "the bomb to hit EAGAIN",
        )
        stats = pod.view.cgroups["bomb"].read()
        before = {name: len(_ticks(pod, name)) for name in ("ticker-a", "ticker-b")}
        for name, seen in before.items():
            await pod.wait_line(name, f"tick {seen + 10}")
        restarts = {c.name: c.restart_count for c in pod.state.containers}
        status = await pod.stop()
    (said,) = [t for t in pod.out.of("bomb") if t.startswith("EAGAIN")]
    forks = int(said.split()[2])
    assert stats.pids_max == LIMIT
    assert stats.pids_current == LIMIT
    assert forks <= LIMIT - 2  # the container's init and the bomb itself hold two
    for name in ("ticker-a", "ticker-b"):
        ticks = _ticks(pod, name)
        assert ticks == list(range(1, len(ticks) + 1)), f"{name} lost ticks"
    assert restarts == {"ticker-a": 0, "bomb": 0, "ticker-b": 0}
    assert status == 0, pod.err.text()
    faults.leak("supervisor descriptors", fd_watch.grown(os.getpid()))
    faults.runs = forks
    faults.figure("forks before EAGAIN", forks)
