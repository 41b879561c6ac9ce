"""How long a scrape of a podvisor pod takes, and what it costs the supervisor.

Usage::

    .venv/bin/python bench/metrics.py [--quick] [--json] [--sizes 10,100,200] [--scrapes N]

For each size (10, 100 and 200 containers) a supervisor runs in a child
process (this file with ``--child N``): a real pod of N `sleep` containers,
each in its own cgroups, serving its metrics endpoint (the runner's own, as
``podvisor run --metrics-address 127.0.0.1:0`` would) on a port the kernel
picks. The pods run at the same time; once each is ready, this process
scrapes their /metrics in turns, round after round (so that the machine's
noise hits every size alike: the growth target compares them), each over
one keep-alive connection, as Prometheus does (its Accept and
Accept-Encoding headers: OpenMetrics, gzip), until `Plan.scrapes` of each or
the end of `Plan.scrape_s`. It reports, per size:

* the scrape time as a client sees it (median and p99), which is what
  Prometheus records as scrape_duration_seconds;
* the supervisor's extra CPU per scrape: its threads' CPU time (schedstat,
  ns resolution) across each scrape, less what it spends idle over as long
  (measured over `IDLE_S` before the scrapes).

Targets: median at most 50 ms at 100 containers, and growth no
worse than linear in the number of containers: the log-log slope of the
median between consecutive sizes (1 is linear) at most 1 + `LINEAR_SLACK`,
the slack being for a noisy machine. No peer does this work: the peer
columns stay empty. With --json it prints the report of bench/common.py and
nothing else on stdout; progress goes to stderr. Needs root (cgroups and
namespaces).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import itertools
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# `bench` is a folder, not an installed package: reach it from the repository's root.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.common import PODVISOR, Figure, Report, Stat
from podvisor.supervisor.cli.main import BACKENDS, DEFAULT_BACKEND

SIZES = (10, 100, 200)
TARGET_MEDIAN_MS = 50.0
TARGET_SIZE = 100
LINEAR_SLACK = 0.1
MIN_SCRAPES = 20
WARM_SCRAPES = 3
IDLE_S = 2.0
#: Kept free of scraping at the end of the run, to stop the last pod.
STOP_RESERVE_S = 15.0


@dataclass(frozen=True)
class Plan:
    scrapes: int  # per size, at most
    scrape_s: float  # the scraping, at most (at least MIN_SCRAPES of each size are made)
    total_s: float  # the whole run: scraping ends in time to stop the pods within it


FULL = Plan(scrapes=1000, scrape_s=150.0, total_s=180.0)
QUICK = Plan(scrapes=400, scrape_s=40.0, total_s=100.0)


class BenchError(Exception):
    """Raised when a supervisor does not start, serve or stop as the benchmark needs."""


def _progress(message: str) -> None:
    common.progress("metrics", message)


# --- The child: one supervisor with its pod -----------------------------------------------


def manifest(name: str, containers: int) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": f"c{i:03d}",
                    "command": ["sleep", "3600"],
                    "resources": {"limits": {"memory": "64Mi", "cpu": "100m"}},
                }
                for i in range(containers)
            ],
        },
    }
    return json.dumps(pod)


def child(name: str, containers: int, backend: str) -> int:
    """Run the pod, serving metrics on a free port; print "port N" once serving; stop on SIGTERM."""
    import anyio

    from podvisor.supervisor import manifest as manifests
    from podvisor.supervisor.pod.runner import PodRunner, RunOptions
    from podvisor.supervisor.pod.view import PodView

    loaded = manifests.load("bench.json", manifest(name, containers))

    def ready(view: PodView) -> None:
        assert view.metrics_address is not None
        os.write(1, f"port {view.metrics_address[1]}\n".encode())

    options = RunOptions(
        metrics_address="127.0.0.1:0", stdout=sys.stderr, stderr=sys.stderr, on_ready=ready
    )
    return int(anyio.run(PodRunner(loaded, options).run, backend=backend))


# --- The parent: the pods, scraped in turns ----------------------------------------------------


@dataclass
class Result:
    containers: int
    series: int = 0  # samples in one scrape's text
    gzip_bytes: int = 0  # one scrape's body, as sent
    times_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    exited_threads: int = 0


#: What Prometheus 2.x sends with every scrape: OpenMetrics preferred, gzip accepted.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    """One request, as Prometheus makes it; the body as sent (gzipped for /metrics)."""
    connection.request("GET", path, headers=PROMETHEUS_HEADERS)
    response = connection.getresponse()
    return response.status, response.read()


def pod_name(containers: int) -> str:
    return f"pvbench-{os.getpid()}-{containers}"


@dataclass
class Pod:
    """A child supervisor running one pod, and our connection to its endpoint."""

    process: subprocess.Popen[bytes]
    stderr: IO[bytes]
    result: Result
    connection: http.client.HTTPConnection | None = None
    idle_cpu: float = 0.0  # CPU seconds per second when nobody scrapes it
    failed: str | None = None

    @property
    def name(self) -> str:
        return pod_name(self.result.containers)

    @classmethod
    def start(cls, containers: int, backend: str, tmp: Path) -> Pod:
        stderr = (tmp / f"{pod_name(containers)}.stderr").open("w+b")
        argv = [sys.executable, __file__, "--child", str(containers)]
        process = subprocess.Popen(
            [*argv, "--name", pod_name(containers), "--backend", backend],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        return cls(process, stderr, Result(containers))

    def connect(self, seconds: float) -> None:
        """Wait until it serves and its pod is ready; warm it with a few scrapes."""
        deadline = time.monotonic() + seconds
        self.connection = http.client.HTTPConnection("127.0.0.1", self._port(deadline), timeout=60)
        while get(self.connection, "/readyz")[0] != 200:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} was not ready after {seconds:.0f} s")
            time.sleep(0.2)  # polling, as a probe does: no event to wait on from outside
        for _ in range(WARM_SCRAPES):
            get(self.connection, "/metrics")  # imports, caches

    def _port(self, deadline: float) -> int:
        stdout = self.process.stdout
        assert stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                raise BenchError(f"{self.name}: not serving in time")
            chunk = os.read(stdout.fileno(), 1)
            if not chunk:
                raise BenchError(f"{self.name} exited with {self.process.wait()}: {self.tail()}")
            line += chunk
        return int(line.split()[1])

    def scrape(self) -> None:
        """One scrape: its time as the client sees it, the supervisor's CPU across it."""
        assert self.connection is not None
        pid, result = self.process.pid, self.result
        before, began = common.thread_counters(pid), time.perf_counter()
        sent = time.perf_counter()
        status, body = get(self.connection, "/metrics")
        took = time.perf_counter() - sent
        after, ended = common.thread_counters(pid), time.perf_counter()
        if status != 200:
            raise BenchError(f"{self.name}: /metrics answered {status}")
        if not result.series:
            text = gzip.decompress(body)
            result.series = sum(1 for x in text.splitlines() if x and not x.startswith(b"#"))
            result.gzip_bytes = len(body)
        _, cpu, exited = common.thread_deltas(before, after)
        result.times_ms.append(took * 1e3)
        result.cpu_ms.append((cpu - self.idle_cpu * (ended - began)) * 1e3)
        result.exited_threads += exited

    def tail(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return " / ".join(lines[-3:]) or "(nothing on stderr)"


def stop(pods: list[Pod]) -> list[str]:
    """SIGTERM to every supervisor at once (each stops its pod), SIGKILL after 60 s; leaks."""
    for pod in pods:
        pod.process.send_signal(signal.SIGTERM)
    problems = []
    for pod in pods:
        try:
            pod.process.wait(60)
        except subprocess.TimeoutExpired:
            problems.append(f"{pod.name} did not stop in 60 s: killed")
            pod.process.kill()
            pod.process.wait()
        if pod.connection is not None:
            pod.connection.close()
        assert pod.process.stdout is not None
        pod.process.stdout.close()
        pod.stderr.close()
    return problems + leaks([pod.name for pod in pods])


def leaks(names: list[str]) -> list[str]:
    """What outlived the stopped supervisors: processes (they came back to us), pod state."""
    found = []
    for pid in common.children(os.getpid()):
        found.append(f"process {pid} ({' '.join(common.cmdline(pid))[:80]}) outlived its pod")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return found + [
        f"{name}: left {item}" for name in names for item in common.leftover_pod_state(name)
    ]


# --- The run ------------------------------------------------------------------------------------


def run(sizes: list[int], plan: Plan, backend: str) -> tuple[list[Result], list[str]]:
    """Every pod at once, scraped in turns, so that the machine's noise hits each size alike."""
    began = time.monotonic()
    problems: list[str] = []
    pods: list[Pod] = []
    with tempfile.TemporaryDirectory(prefix="pvbench-") as tmpdir:
        try:
            _progress(f"pods of {', '.join(map(str, sizes))} containers: starting")
            for size in sizes:
                pods.append(Pod.start(size, backend, Path(tmpdir)))  # noqa: PERF401 (stop them all)
            live = connected(pods, began + plan.total_s / 2, problems)
            measure_idle(live)
            end = min(time.monotonic() + plan.scrape_s, began + plan.total_s - STOP_RESERVE_S)
            _progress(f"scraping in turns for up to {end - time.monotonic():.0f} s")
            scrape_rounds(live, plan.scrapes, end, problems)
        finally:
            _progress(f"stopping the pods ({time.monotonic() - began:.0f} s in)")
            problems += stop(pods)
            _progress(f"stopped ({time.monotonic() - began:.0f} s in)")
    return [p.result for p in pods if p.result.times_ms], problems


def connected(pods: list[Pod], deadline: float, problems: list[str]) -> list[Pod]:
    """The pods serving and ready by *deadline*; a problem line for each other."""
    live = []
    for pod in pods:
        try:
            pod.connect(max(deadline - time.monotonic(), 5.0))
        except (BenchError, OSError, http.client.HTTPException) as exc:
            problems.append(f"pod of {pod.result.containers} containers: {exc}")
        else:
            live.append(pod)
    return live


def measure_idle(pods: list[Pod]) -> None:
    """Each supervisor's CPU per second with nobody scraping, over one window for all."""
    before = {pod.name: common.thread_counters(pod.process.pid) for pod in pods}
    began = time.perf_counter()
    time.sleep(IDLE_S)  # the measuring window, not a wait for an event
    window = time.perf_counter() - began
    for pod in pods:
        _, cpu, _ = common.thread_deltas(before[pod.name], common.thread_counters(pod.process.pid))
        pod.idle_cpu = cpu / window


def scrape_rounds(pods: list[Pod], most: int, end: float, problems: list[str]) -> None:
    """Round after round, one scrape of each pod, until *most* each or *end* (after MIN_SCRAPES)."""
    while True:
        active = [p for p in pods if p.failed is None and len(p.result.times_ms) < most]
        if not active:
            return
        if time.monotonic() > end and all(len(p.result.times_ms) >= MIN_SCRAPES for p in active):
            return
        for pod in active:
            try:
                pod.scrape()
            except (BenchError, OSError, http.client.HTTPException) as exc:
                pod.failed = str(exc)
                problems.append(
                    f"pod of {pod.result.containers} containers: {exc}; no more scrapes"
                )


# --- The report ---------------------------------------------------------------------------------


def _p99(samples: list[float]) -> Stat:
    """The p99 of the scrapes, shown as the figure's value (the table shows "median")."""
    value = common.p99(samples)
    return Stat(median=value, spread=None, n=len(samples), p99=value)


def slopes(results: list[Result]) -> list[tuple[int, int, float]]:
    """(size, next size, log-log slope of the median between them): 1 is linear."""
    ordered = sorted(results, key=lambda r: r.containers)
    found = []
    for low, high in itertools.pairwise(ordered):
        low_ms, high_ms = common.median(low.times_ms), common.median(high.times_ms)
        if low_ms > 0 and high_ms > 0 and high.containers > low.containers:
            slope = math.log(high_ms / low_ms) / math.log(high.containers / low.containers)
            found.append((low.containers, high.containers, slope))
    return found


def figures(results: list[Result]) -> list[Figure]:
    figs = []
    for r in results:
        median = common.summarize(r.times_ms)
        at_target = r.containers == TARGET_SIZE
        figs.append(
            common.figure(
                f"scrape time, median: pod of {r.containers} containers",
                "ms",
                {PODVISOR: median},
                target=f"<= {TARGET_MEDIAN_MS:g} ms" if at_target else None,
                met=median["median"] <= TARGET_MEDIAN_MS if at_target else None,
            )
        )
    figs += [
        common.figure(
            f"scrape time, p99: pod of {r.containers} containers",
            "ms",
            {PODVISOR: _p99(r.times_ms)},
        )
        for r in results
    ]
    figs += [
        common.figure(
            f"supervisor CPU per scrape, less idle: pod of {r.containers} containers",
            "ms",
            {PODVISOR: common.summarize(r.cpu_ms)},
        )
        for r in results
    ]
    found = slopes(results)
    if found:
        steepest = max(slope for _, _, slope in found)
        figs.append(
            common.figure(
                "scrape time growth: steepest log-log slope of the median between sizes",
                "",
                {PODVISOR: common.one(steepest)},
                target=f"<= {1 + LINEAR_SLACK:g} (1 = linear; {LINEAR_SLACK:g} for noise)",
                met=steepest <= 1 + LINEAR_SLACK,
            )
        )
    return figs


def notes(results: list[Result], plan: Plan) -> list[str]:
    lines = [
        (
            "metrics: the pods run at once (`sleep` containers with memory and CPU limits) and "
            f"are scraped in turns, up to {plan.scrapes} scrapes each within "
            f"{plan.scrape_s:.0f} s (at least {MIN_SCRAPES}), over a keep-alive connection with "
            "Prometheus' headers (OpenMetrics, gzip). No peer serves metrics: their columns "
            "are empty."
        )
    ]
    for r in results:
        per = common.median(r.times_ms) / r.containers
        lines.append(
            f"metrics: pod of {r.containers} containers: {len(r.times_ms)} scrapes, "
            f"{r.series} samples per scrape, {r.gzip_bytes} bytes gzipped, "
            f"{common.format_number(per)} ms of median scrape time per container"
            + (
                f"; {r.exited_threads} thread(s) exited (their CPU uncounted)"
                if r.exited_threads
                else ""
            )
        )
    found = slopes(results)
    if found:
        pairs = ", ".join(f"{a} → {b}: {s:.2f}" for a, b, s in found)
        lines.append(f"metrics: log-log slopes of the median scrape time: {pairs}.")
    return lines


def report(
    results: list[Result], problems: list[str], plan: Plan, *, quick: bool, machine: dict[str, str]
) -> Report:
    return Report(
        benchmark="metrics",
        quick=quick,
        machine=machine,
        figures=figures(results),
        notes=notes(results, plan),
        problems=problems,
    )


def markdown(rep: Report) -> str:
    lines = [common.figures_table(rep["figures"], ()), ""]
    lines += [f"Machine: {common.describe(rep['machine'])}.", ""]
    lines += [f"- {note}" for note in rep["notes"]]
    lines += ["", "± is half the interquartile range of the scrapes."]
    lines += [f"PROBLEM: {p}" for p in rep["problems"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer scrapes, in less time")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--scrapes", type=int, help="scrapes per size, at most")
    parser.add_argument("--sizes", help="comma-separated pod sizes (default 10,100,200)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.name, args.child, args.backend)
    plan = QUICK if args.quick else FULL
    if args.scrapes:
        plan = Plan(args.scrapes, plan.scrape_s, plan.total_s)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    machine = common.machine()  # before the pods: theirs would add to the load average
    if os.geteuid() != 0:
        problems = ["bench/metrics.py needs root (cgroups and namespaces)"]
        rep = report([], problems, plan, quick=args.quick, machine=machine)
        print(json.dumps(rep, indent=2, ensure_ascii=False) if args.json else markdown(rep))
        return 2
    from podvisor.init import syscalls

    # A container process that outlives its supervisor comes back to us: a leak, reported.
    syscalls.set_child_subreaper()
    try:
        with common.terminated_as_interrupt():
            results, problems = run(sizes, plan, args.backend)
    except KeyboardInterrupt:
        _progress("interrupted; the running pod was stopped")
        return 130
    rep = report(results, problems, plan, quick=args.quick, machine=machine)
    print(json.dumps(rep, indent=2, ensure_ascii=False) if args.json else markdown(rep))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
