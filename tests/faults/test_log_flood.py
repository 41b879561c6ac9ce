"""A container writing logs at full speed: the others' logs and probes stay on time.

`flood` writes 200-character lines as fast as `yes` can. `ticker` prints a
numbered, timestamped tick every 0.1 s and has an exec readiness probe every
second that appends its own timestamp to a file. The supervisor's stdout goes
through `grep -v '^flood '` before it reaches the test, so the test reads
only the ticks, at the moment the supervisor wrote them.

While the flood runs: no tick is lost from the ticker's log file, every tick
on the supervisor's stdout comes out in order and within `MAX_LAG` of being
written, the probe keeps its period, and the supervisor's memory (VmRSS)
stays within `RSS_BOUND_KIB` of what it was when the flood began. The
supervisor's stdout may drop lines when its reader falls behind (here `grep`,
under the flood, on a loaded machine); then it must say so. The flood must really have flooded: podvisor's own log counter says
how many lines went through.

Budget: 10 s of flood, to keep the suite short; the figures are per second.
"""

from __future__ import annotations

import itertools
import json
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest

from podvisor.supervisor.pod import logfiles
from tests.faults import procfs
from tests.faults.conftest import FdWatch, Record
from tests.faults.pods import Supervisor, free_port, http_get, samples, write_pod

pytestmark = pytest.mark.faults

FLOOD_SECONDS = 10
#: A tick may reach the test this late; generous, as this machine is shared and noisy.
MAX_LAG = 2.0
#: The probe's period is 1 s; consecutive runs may be this far apart at most.
MAX_PROBE_GAP = 2.5
RSS_BOUND_KIB = 32 * 1024

FLOOD = "yes \"$(head -c 200 /dev/zero | tr '\\0' x)\""
TICKER = (
    "i=0; trap 'exit 0' TERM; while :; do i=$((i+1)); echo tick $i $(date +%s.%N); sleep 0.1; done"
)


@pytest.mark.timeout(120)
def test_a_log_flood_delays_nobody(tmp_path: Path, faults: Record, fd_watch: FdWatch) -> None:
    probes = tmp_path / "probes"
    probe = ["sh", "-c", f"date +%s.%N >> {probes}"]
    path = write_pod(
        tmp_path,
        "flood",
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: fault-log-flood
          annotations: {{podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: 5
          containers:
            - name: ticker
              command: {json.dumps(["sh", "-c", TICKER])}
              readinessProbe: {{exec: {{command: {json.dumps(probe)}}}, periodSeconds: 1}}
            - name: flood
              command: {json.dumps(["sh", "-c", FLOOD])}
        """,
    )
    port = free_port()
    rss: list[int] = []
    log_dir = tmp_path / "logs"
    env = {"PODVISOR_LOG_DIR": str(log_dir)}
    with Supervisor(path, metrics=f"127.0.0.1:{port}", drop="flood ", env=env) as sup:
        sup.out.wait_for(lambda ls: any(ln.container == "ticker" for ln in ls), 60, "a tick")
        fd_watch.steady(sup.pid)
        began = time.time()
        rss.append(procfs.rss_kib(sup.pid))
        # Never set: a sample every 0.37 s, out of step with the 1 s probe, so that
        # some samples fall between two probes (whose pipes are open for a moment).
        pause = threading.Event()
        while time.time() - began < FLOOD_SECONDS:
            pause.wait(0.37)
            rss.append(procfs.rss_kib(sup.pid))
            fd_watch.sample(sup.pid)
        ended = time.time()
        fds_grown = fd_watch.grown(sup.pid)
        lines = samples(http_get(port, "/metrics"), "podvisor_container_log_lines_total")
        sup.signal(signal.SIGTERM)
        code = sup.wait(timeout=60)
    assert code == 0, sup.err.text()[-3000:]

    ticks = [
        (int(n), float(at), line.at)
        for line in sup.out.snapshot()
        if line.container == "ticker"
        for _, n, at in [line.text.split()]
    ]
    folder = logfiles.find_pod_folder(log_dir, "fault-log-flood")
    assert folder is not None
    records = [r.text.split() for r in logfiles.read_instance(folder, "ticker", 0)]
    logged = [int(n) for _, n, _ in records]
    assert logged == list(range(1, len(logged) + 1)), "ticks were lost from the log file"
    ticking = [n for _, n, at in records if began <= float(at) <= ended]
    assert len(ticking) >= FLOOD_SECONDS * 3, f"only {len(ticking)} ticks in {FLOOD_SECONDS} s"
    numbers = [n for n, _, _ in ticks]
    assert numbers == sorted(set(numbers)), "ticks came out of order or twice"
    assert set(numbers) <= set(logged)
    if numbers != logged[: len(numbers)]:
        missing = sorted(set(logged[: numbers[-1]]) - set(numbers))
        said = "podvisor's stdout is not taking lines" in sup.err.text()
        assert said, f"ticks {missing[:10]} never reached stdout: {sup.err.text()[-2000:]}"
    during = [(written, read) for _, written, read in ticks if began <= written <= ended]
    lags = [read - written for written, read in during]
    assert lags, "no tick reached the supervisor's stdout during the flood"
    assert max(lags) <= MAX_LAG, f"a tick came {max(lags):.2f} s late"

    runs = [float(t) for t in probes.read_text().split()]
    runs = [t for t in runs if began <= t <= ended]
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert len(runs) >= FLOOD_SECONDS // 2, runs
    assert max(gaps) <= MAX_PROBE_GAP, gaps

    flood = sum(v for k, v in lines.items() if ("container", "flood") in k)
    assert flood > FLOOD_SECONDS * 1000, f"the flood wrote only {flood} lines"
    faults.leak("supervisor descriptors", fds_grown)
    grown = max(rss) - rss[0]
    faults.leak("supervisor memory growth KiB", grown if grown > RSS_BOUND_KIB else 0)
    faults.runs = FLOOD_SECONDS
    faults.figure("flood lines/s", int(flood / (ended - began)))
    faults.figure("ticks on stdout/in the log", f"{len(numbers)}/{len(logged)}")
    faults.figure("tick lag median/max s", f"{statistics.median(lags):.3f}/{max(lags):.3f}")
    faults.figure("probe gap median/max s", f"{statistics.median(gaps):.2f}/{max(gaps):.2f}")
    faults.figure("VmRSS KiB start/max", f"{rss[0]}/{max(rss)}")
