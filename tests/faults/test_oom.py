"""A container over its memory limit 20 times in a row: OOMKilled each time, back-off obeyed.

The container asks for 512 MiB under a 64 MiB limit, so the kernel's OOM
killer ends it each time. The supervisor runs with PODVISOR_TRACE=1 and JSON
logs, so each event it handles comes with the time it handled it: every exit
must say oom_killed, and each restart must wait at least the back-off the
annotations ask for (100 ms doubling up to 500 ms; the first restart in a row
is immediate). At the end the pod's /status says OOMKilled with the restart
count, and the supervisor's own memory (VmRSS) is flat from the 5th kill to
the 20th: it may grow once (one more worker thread and its malloc arena,
where a slow machine has more of them run at once; a module imported at its
first use), but a leak grows with the kills, in both halves of that stretch.
"""

from __future__ import annotations

import datetime
import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from podvisor.supervisor.lifecycle.backoff import BackOffPolicy
from tests.faults import procfs
from tests.faults.conftest import FdWatch, Record
from tests.faults.pods import Line, Supervisor, free_port, http_get, write_pod

pytestmark = pytest.mark.faults

KILLS = 20
BACKOFF = BackOffPolicy(initial=0.1, maximum=0.5)
#: VmRSS may move by this much between the 5th and the 20th kill (allocator noise).
RSS_SLACK_KIB = 4 * 1024
#: Where VmRSS is read: from the 5th kill, halfway, at the last.
RSS_AT = (5, 12, KILLS)

HOG = "x = b'x' * (512 << 20)"


def _events(lines: list[Line], kind: str) -> list[tuple[float, str]]:
    """(supervisor's time, event) of each traced event of *kind* for the container hog."""
    found = []
    for line in lines:
        if not line.text.startswith("{"):
            continue
        record = json.loads(line.text)
        said = str(record.get("line", ""))
        if said.startswith(f"trace: event {kind}(name='hog'"):
            at = datetime.datetime.fromisoformat(record["time"]).timestamp()
            found.append((at, said))
    return found


def _status(port: int) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(http_get(port, "/status"))
    return found


@pytest.mark.timeout(180)
def test_over_the_memory_limit_20_times(tmp_path: Path, faults: Record, fd_watch: FdWatch) -> None:
    path = write_pod(
        tmp_path,
        "oom",
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: fault-oom
          annotations:
            podvisor.io/network: loopback
            podvisor.io/backoff-initial: 100ms
            podvisor.io/backoff-max: 500ms
        spec:
          restartPolicy: Always
          terminationGracePeriodSeconds: 5
          containers:
            - name: hog
              command: ["python3", "-c", "{HOG}"]
              resources: {{limits: {{memory: 64Mi}}}}
        """,
    )
    port = free_port()
    exits_seen = 0
    rss: dict[int, int] = {}

    def exits(n: int) -> None:
        sup.err.wait_for(lambda lines: len(_events(lines, "Exited")) >= n, 60, f"{n} exits")

    with Supervisor(
        path,
        "--log-format",
        "json",
        metrics=f"127.0.0.1:{port}",
        env={"PODVISOR_TRACE": "1"},
    ) as sup:
        for exits_seen in range(1, KILLS + 1):
            exits(exits_seen)
            if exits_seen in RSS_AT:
                rss[exits_seen] = procfs.rss_kib(sup.pid)
            if exits_seen >= 5:
                fd_watch.sample(sup.pid)
        fds_grown = fd_watch.grown(sup.pid)
        status = _status(port)
        sup.signal(signal.SIGTERM)
        code = sup.wait(timeout=60)
    assert code in (137, 143), sup.err.text()[-3000:]
    faults.leak("supervisor descriptors", fds_grown)

    ended = _events(sup.err.snapshot(), "Exited")
    started = _events(sup.err.snapshot(), "Started")
    # The pod's stop may find the hog starting again (seconds on an emulated
    # machine) and end it with SIGTERM: the exits counted before it are the OOM kills.
    assert all("oom_killed=True" in said for _, said in ended[:KILLS]), [s for _, s in ended]
    gaps = []
    for k, (exited_at, _) in enumerate(ended[: len(started) - 1]):
        next_start = started[k + 1][0]
        gaps.append(next_start - exited_at)
        assert next_start - exited_at >= BACKOFF.delay(k) - 0.01, (k, gaps)
    hog = status["containerStatuses"][0]
    assert hog["lastState"]["terminated"]["reason"] == "OOMKilled", hog
    assert hog["restartCount"] >= KILLS - 1, hog
    first, middle, last = (rss[k] for k in RSS_AT)
    # What grew in both halves, over the whole stretch: a leak's pace, not a one-off.
    grown = 2 * min(middle - first, last - middle)
    faults.figure("VmRSS KiB at kill 5 / 12 / 20", f"{first}/{middle}/{last}")
    faults.figure("longest restart wait s", f"{max(gaps):.2f}")
    faults.leak("supervisor memory growth KiB", grown if grown > RSS_SLACK_KIB else 0)
    faults.runs = len(ended)
    assert re.search(r"oom_killed=True", ended[KILLS - 1][1])
