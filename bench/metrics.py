"""How long a scrape of a podvisor pod takes, and what it costs the supervisor.

    .venv/bin/python bench/metrics.py            # pods of 10, 100 and 200 containers
    .venv/bin/python bench/metrics.py --quick    # 10 and 100 containers, fewer scrapes

For each size, a supervisor runs in a child process (this file with
``--child N``): a real pod of N `sleep` containers, each in its own cgroups,
with its metrics endpoint on a port the kernel picks. Once every container
is ready, this process scrapes /metrics over one keep-alive connection, as
Prometheus does (its Accept and Accept-Encoding headers: OpenMetrics, gzip),
and reports:

* the scrape time as a client sees it (median and p99), which is what
  Prometheus records as scrape_duration_seconds;
* the supervisor's extra CPU per scrape: its CPU time (utime + stime from
  /proc) during the scrapes, less what it spends idle over as long, divided
  by the number of scrapes.

Target (issue 7): median at most 50 ms at 100 containers, and growth no
worse than linear in the number of containers (the "ms/container" column
should not rise with the size). Needs root (cgroups and namespaces).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TARGET_MEDIAN_MS = 50.0
TARGET_SIZE = 100


# --- The child: one supervisor with its pod -----------------------------------------------


def manifest(containers: int) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pvbench-{containers}"},
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


def child(containers: int, backend: str) -> int:
    """Run the pod and serve its metrics; print "port N" once serving; stop on SIGTERM."""
    import anyio

    from podvisor.supervisor import manifest as manifests
    from podvisor.supervisor.metrics import PodMetrics, serve_metrics
    from podvisor.supervisor.runner import PodRunner, RunOptions

    loaded = manifests.load("bench.json", manifest(containers))

    async def main() -> int:
        ready = anyio.Event()
        options = {"stdout": sys.stderr, "stderr": sys.stderr, "on_ready": lambda _: ready.set()}
        if "metrics_address" in RunOptions.__dataclass_fields__:
            options["metrics_address"] = "off"  # we serve our own, on a port the kernel picks
        runner = PodRunner(loaded, RunOptions(**options))  # type: ignore[arg-type]
        metrics = getattr(runner, "metrics", None) or PodMetrics(loaded.pod)
        status = 0
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                nonlocal status
                status = await runner.run()
                tg.cancel_scope.cancel()

            tg.start_soon(run)
            await ready.wait()
            address = await tg.start(serve_metrics, runner, metrics, "127.0.0.1:0")
            assert address is not None
            os.write(1, f"port {address[1]}\n".encode())
        return status

    return int(anyio.run(main, backend=backend))


# --- The parent: scraping and measuring ----------------------------------------------------


@dataclass
class Result:
    containers: int
    samples: int
    size: int  # gzipped, as sent
    median_ms: float
    p99_ms: float
    cpu_ms: float


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(process: subprocess.Popen[bytes], seconds: float) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
            raise TimeoutError("the supervisor did not start serving in time")
        chunk = os.read(process.stdout.fileno(), 1)
        if not chunk:
            raise RuntimeError(f"the supervisor exited with {process.wait()}")
        line += chunk
    return int(line.split()[1])


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


def wait_ready(connection: http.client.HTTPConnection, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while get(connection, "/readyz")[0] != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("the pod did not become ready in time")
        time.sleep(0.2)


def measure(containers: int, scrapes: int, backend: str) -> Result:
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(containers), "--backend", backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = wait_port(process, 120)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        wait_ready(connection, 120 + containers)
        get(connection, "/metrics")  # warm: imports, caches
        return _scrape(process.pid, connection, containers, scrapes)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def _scrape(
    pid: int, connection: http.client.HTTPConnection, containers: int, scrapes: int
) -> Result:
    idle_start, idle_cpu = time.monotonic(), cpu_seconds(pid)
    time.sleep(2.0)
    idle_rate = (cpu_seconds(pid) - idle_cpu) / (time.monotonic() - idle_start)
    times, body = [], b""
    start, cpu_start = time.monotonic(), cpu_seconds(pid)
    for _ in range(scrapes):
        began = time.perf_counter()
        status, body = get(connection, "/metrics")
        times.append((time.perf_counter() - began) * 1000)
        assert status == 200
    wall, cpu = time.monotonic() - start, cpu_seconds(pid) - cpu_start
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    text = gzip.decompress(body)
    samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return Result(
        containers,
        samples,
        len(body),
        statistics.median(times),
        p99,
        max(cpu - idle_rate * wall, 0.0) / scrapes * 1000,
    )


def table(results: list[Result]) -> str:
    header = (
        f"{'containers':>10}  {'samples':>8}  {'gzip bytes':>10}  {'median ms':>9}  {'p99 ms':>8}  "
        f"{'ms/container':>12}  {'CPU ms/scrape':>13}"
    )
    rows = [
        f"{r.containers:>10}  {r.samples:>8}  {r.size:>10}  {r.median_ms:>9.1f}  "
        f"{r.p99_ms:>8.1f}  {r.median_ms / r.containers:>12.3f}  {r.cpu_ms:>13.1f}"
        for r in results
    ]
    return "\n".join([header, "-" * len(header), *rows])


def verdict(results: list[Result]) -> str:
    at_target = next((r for r in results if r.containers == TARGET_SIZE), None)
    if at_target is None:
        return ""
    ok = at_target.median_ms <= TARGET_MEDIAN_MS
    return (
        f"target: median <= {TARGET_MEDIAN_MS:g} ms at {TARGET_SIZE} containers: "
        f"{at_target.median_ms:.1f} ms, {'met' if ok else 'NOT met'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 and 100 containers, 10 scrapes")
    parser.add_argument("--scrapes", type=int, help="scrapes per size (default 50; quick 10)")
    parser.add_argument("--sizes", help="comma-separated pod sizes (default 10,100,200)")
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.backend)
    if os.geteuid() != 0:
        print("bench/metrics.py needs root (cgroups and namespaces)", file=sys.stderr)
        return 2
    default_sizes = "10,100" if args.quick else "10,100,200"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    scrapes = args.scrapes or (10 if args.quick else 50)
    results = []
    for size in sizes:
        print(f"pod of {size} containers: starting, then {scrapes} scrapes ...", file=sys.stderr)
        results.append(measure(size, scrapes, args.backend))
    print(f"podvisor metrics scrape ({args.backend}, {scrapes} scrapes per size)")
    print(table(results))
    print(verdict(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
