"""prometheus_client waits for the first scrape: the supervisor's start goes without it.

Each check runs in a fresh interpreter, as `podvisor run` starts: this
process has long imported the library (the tests compare against it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.metrics.conftest import parse, promtool_findings

ROOT = Path(__file__).resolve().parents[2]

IMPORT_THE_RUNNER = """
import sys
import podvisor.supervisor.pod.runner
print(sorted(m for m in sys.modules if m.split(".")[0] == "prometheus_client"))
"""

IMPORT_WHAT_STARTS_A_POD = """
import sys
import podvisor.supervisor.cli.main, podvisor.supervisor.pod.runner, podvisor.supervisor.metrics.server
print(sorted(m for m in ("http", "datetime", "secrets", "hashlib", "random") if m in sys.modules))
"""

#: A real pod, run by the runner serving its own endpoint on a port the kernel
#: picks: every route but /metrics, then /metrics, noting when the library came in.
SERVE_A_POD = """
import io, json, sys
from pathlib import Path
import anyio
from podvisor.supervisor import lifecycle as lc, manifest
from podvisor.supervisor.pod.runner import PodRunner, RunOptions
from tests.metrics.client import get

async def main() -> None:
    ready, seen = anyio.Event(), {}
    log = io.StringIO()
    options = RunOptions(
        metrics_address="127.0.0.1:0",
        control_dir=Path(sys.argv[2]),
        stdout=log,
        stderr=log,
        on_ready=lambda _: ready.set(),
    )
    runner = PodRunner(manifest.load("pod.yaml", sys.argv[1]), options)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await ready.wait()
            port = runner.metrics.address[1]
            for path in ("/livez", "/readyz", "/status", "/"):
                seen[path] = (await get(port, path)).status
            seen["imported before /metrics"] = "prometheus_client" in sys.modules
            reply = await get(port, "/metrics")
            seen["imported after /metrics"] = "prometheus_client" in sys.modules
            seen["/metrics"], seen["body"] = reply.status, reply.text
            runner.post(lc.StopRequested())
    seen["log"] = log.getvalue()
    print(json.dumps(seen))

anyio.run(main)
"""

POD = """
apiVersion: v1
kind: Pod
metadata: {name: pvm-lazy, annotations: {podvisor.io/rootfs: host}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  containers:
    - name: main
      image: busybox
      command: ["sleep", "3600"]
"""


def run_python(snippet: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(snippet), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_the_runner_leaves_prometheus_client_out() -> None:
    assert run_python(IMPORT_THE_RUNNER) == "[]\n"


def test_what_only_some_pods_use_stays_out_of_the_start() -> None:
    # The endpoint has its own few statuses (http's enum of them all is
    # 0.26 MB); datetime and secrets name the files of some volumes only.
    assert run_python(IMPORT_WHAT_STARTS_A_POD) == "[]\n"


@pytest.mark.needs_root
def test_a_real_pod_answers_health_without_the_library_and_its_first_scrape_works(
    tmp_path: Path,
) -> None:
    seen = json.loads(run_python(SERVE_A_POD, POD, str(tmp_path / "pods")))
    assert seen["imported before /metrics"] is False, seen["log"]
    assert (seen["/livez"], seen["/status"], seen["/"]) == (200, 200, 200)
    assert seen["/readyz"] in (200, 503)  # answered: ready or not, as the pod is by then
    assert seen["/metrics"] == 200, seen["log"]
    assert seen["imported after /metrics"] is True
    assert promtool_findings(seen["body"]) == ""
    found = parse(seen["body"])
    assert sum(found.find("kube_pod_status_phase")) == 1  # one phase is current
    assert found.value("kube_pod_container_status_restarts_total", container="main") == 0
    [build] = found.labels_of("podvisor_build_info")
    assert build["backend"] == "asyncio"
    assert found.find("podvisor_process_cpu_seconds_total")
