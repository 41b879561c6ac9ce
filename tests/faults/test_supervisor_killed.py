"""The supervisor SIGKILLed at random points of start-up, running and stopping, 50 times.

Each time, the pod's init must notice (end-of-file on its channel), stop
every process of the pod within its grace period and exit, so that nothing
of the pod runs anywhere; the cgroups, network namespace and veth the dead
supervisor could not remove are removed by the next start of the same pod,
which must succeed. The pod uses the default network (a bridge and a veth)
so that the network's leftovers are in play too.

Where to kill is drawn from a seeded generator: during start-up (a random
moment before the containers are up), while running (a random moment after),
or while stopping (a random moment after SIGTERM, while the containers' TERM
traps take half a second). The supervisor must still be running at that
moment: a start that failed because of an earlier run's leftovers would have
ended it already.

The kills take turns between the two backends, asyncio (the default) and
trio. One pod, killed 50 times in a row. Two pods killed side by side (two lanes
in threads) once hit a race, reported: a start removes the stale cgroups of
*other* dead supervisors, and when one of them is still emptying (its init
in its last moments) the rmdir fails with EBUSY and the start fails with it.
"""

from __future__ import annotations

import random
import signal
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import leftover_cgroups
from tests.faults import procfs
from tests.faults.conftest import Record
from tests.faults.pods import Supervisor, remove_run_files, run_files, write_pod

pytestmark = pytest.mark.faults

LANES, KILLS = 1, 50
PHASES = ("start-up", "running", "stopping")
BACKENDS = ("asyncio", "trio")
GRACE = 3


def _pod(tmp_path: Path, name: str, marker: str) -> Path:
    env = f'env: [{{name: FAULT_MARK, value: "{marker}"}}]'
    script = "trap 'sleep 0.5; exit 0' TERM; echo up; while :; do sleep 0.2; done"
    return write_pod(
        tmp_path,
        name,
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: {GRACE}
          initContainers:
            - {{name: side, restartPolicy: Always, {env}, command: ["sh", "-c", "{script}"]}}
          containers:
            - {{name: main, {env}, command: ["sh", "-c", "{script}"]}}
        """,
    )


@dataclass
class Lane:
    name: str
    path: Path
    marker: str
    rng: random.Random
    kills: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    problems: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)


def _kill_once(lane: Lane, phase: str, backend: str) -> None:
    rest = threading.Event()  # never set: waits are the random injection points
    with Supervisor(lane.path, "--backend", backend) as sup:
        if phase == "start-up":
            rest.wait(lane.rng.uniform(0, 1.0))
        else:
            sup.wait_line("side", "up")
            sup.wait_line("main", "up")
            if phase == "stopping":
                sup.signal(signal.SIGTERM)
            rest.wait(lane.rng.uniform(0, 0.4))
        tree = procfs.descendants(sup.pid)
        if sup.proc.poll() is not None:
            lane.problems.append(
                f"{phase} ({backend}): it ended by itself ({sup.proc.returncode}) {sup.err.text()}"
            )
        sup.signal(signal.SIGKILL)
        sup.wait()
    # The init is ours now (we are a subreaper): it must end within its grace.
    alive = procfs.wait_gone(tree, timeout=GRACE + 10)
    lane.survivors += [f"{phase} ({backend}): {pid} {procfs.comm_of(pid)}" for pid in alive]
    lane.survivors += [f"{phase} ({backend}): {pid} (marked)" for pid in procfs.marked(lane.marker)]
    procfs.reap_adopted()
    lane.kills[phase] += 1


def _run_lane(lane: Lane) -> None:
    for i in range(KILLS):
        _kill_once(lane, lane.rng.choice(PHASES), BACKENDS[i % len(BACKENDS)])
    # The next start succeeds, and a clean stop leaves nothing: cgroups,
    # namespace and veth of the killed runs included (the fixture checks).
    with Supervisor(lane.path) as sup:
        sup.wait_line("side", "up")
        sup.wait_line("main", "up")
        sup.signal(signal.SIGTERM)
        code = sup.wait(timeout=60)
    if code != 0:
        lane.problems.append(f"the last start: exit {code}: {sup.err.text()}")


@pytest.mark.timeout(420)
def test_supervisor_sigkilled_50_times(tmp_path: Path, faults: Record) -> None:
    run = uuid.uuid4().hex[:8]
    lanes = [
        Lane(
            f"fault-killed-{i}",
            _pod(tmp_path, f"fault-killed-{i}", f"pvf-killed-{run}-{i}"),
            f"pvf-killed-{run}-{i}",
            random.Random(f"killed-{i}"),
        )
        for i in range(LANES)
    ]
    for lane in lanes:
        _run_lane(lane)
    kills = {p: sum(lane.kills[p] for lane in lanes) for p in PHASES}
    faults.runs = sum(kills.values())
    faults.figure("kills", " ".join(f"{p}:{n}" for p, n in kills.items()))
    faults.leak("survivors", [s for lane in lanes for s in lane.survivors])
    problems = [p for lane in lanes for p in lane.problems]
    assert not problems, "\n".join(problems)
    assert faults.runs == LANES * KILLS
    assert all(kills.values()), kills
    faults.leak("cgroups of the pods", _own_cgroups("fault-killed-"))
    left = [name for lane in lanes for name in remove_run_files(lane.name)]
    faults.figure("/run/podvisor/pods entries left, removed", len(left))


def test_a_killed_supervisor_leaves_no_run_files(tmp_path: Path, faults: Record) -> None:
    name = "fault-run-files"
    path = _pod(tmp_path, name, f"pvf-run-files-{uuid.uuid4().hex[:8]}")
    try:
        with Supervisor(path) as sup:
            sup.wait_line("main", "up")
            tree = procfs.descendants(sup.pid)
            sup.signal(signal.SIGKILL)
            sup.wait()
        procfs.wait_gone(tree, timeout=GRACE + 10)
        procfs.reap_adopted()
        with Supervisor(path) as sup:  # the next start cleans up after the dead one
            sup.wait_line("main", "up")
            sup.signal(signal.SIGTERM)
            assert sup.wait(timeout=60) == 0, sup.err.text()
        faults.runs = 1
        faults.leak("/run/podvisor/pods entries", [p.name for p in run_files(name)])
    finally:
        remove_run_files(name)


def _own_cgroups(prefix: str) -> list[str]:
    return [str(p) for p in leftover_cgroups() if p.name.startswith(f"podvisor-{prefix}")]
