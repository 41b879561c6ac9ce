"""Many pods on one host: the default metrics address shared, names unique, dead pods cleaned up.

Each pod is `podvisor run` as a child, in a run directory of the test's own
(``$PODVISOR_RUN_DIR``) and with the host's endpoint moved to a free port
(``$PODVISOR_METRICS_ADDRESS``), so the tests never meet the machine's pods.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from podvisor.supervisor.control.paths import RUN_DIR_VARIABLE
from tests.control.conftest import REPO, ctl_env
from tests.faults import procfs
from tests.faults.pods import (
    Supervisor,
    clean_after_dead_supervisor,
    free_port,
    http_get,
    podvisor_command,
    write_pod,
)

pytestmark = pytest.mark.needs_root

GRACE = 3


def _pod(directory: Path, name: str) -> Path:
    script = "trap 'exit 0' TERM; echo up; while :; do sleep 0.2; done"
    return write_pod(
        directory,
        name,
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, annotations: {{podvisor.io/network: loopback}}}}
        spec:
          terminationGracePeriodSeconds: {GRACE}
          containers:
            - {{name: web, command: ["sh", "-c", "{script}"]}}
        """,
    )


def _env(run_dir: Path, port: int) -> dict[str, str]:
    return {RUN_DIR_VARIABLE: str(run_dir), "PODVISOR_METRICS_ADDRESS": f"127.0.0.1:{port}"}


def _podvisor(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podvisor_command(), *args],
        env=ctl_env(run_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _pods_in(exposition: str) -> set[str]:
    return {
        sample.labels["pod"]
        for family in text_string_to_metric_families(exposition)
        if family.name == "container_cpu_usage_seconds"
        for sample in family.samples
    }


def test_two_pods_with_the_default_share_one_endpoint_that_shows_both(
    tmp_path: Path, run_dir: Path
) -> None:
    port = free_port()
    env = _env(run_dir, port)
    with (
        Supervisor(_pod(tmp_path, "host-a"), env=env, metrics=None) as a,
        Supervisor(_pod(tmp_path, "host-b"), env=env, metrics=None) as b,
    ):
        a.wait_line("web", "up")
        b.wait_line("web", "up")
        # The kernel hands each connection to either pod: each answers for both.
        for _ in range(6):
            assert _pods_in(http_get(port, "/metrics")) == {"host-a", "host-b"}
        where = f"podvisor | metrics: http://127.0.0.1:{port}/metrics (every pod on this host)"
        assert where in a.err.text().splitlines()
        listed = json.loads(_podvisor(run_dir, "ps", "-o", "json").stdout)
        assert {(p["name"], p["metrics"]) for p in listed} == {
            ("host-a", f"127.0.0.1:{port}"),
            ("host-b", f"127.0.0.1:{port}"),
        }

        again = _podvisor(run_dir, "run", str(_pod(tmp_path, "host-a")))
        assert again.returncode == 2
        assert f"a pod named 'host-a' already runs on this host (supervisor pid {a.pid})" in (
            again.stderr
        )
        a.signal(signal.SIGTERM)
        b.signal(signal.SIGTERM)
        assert (a.wait(), b.wait()) == (0, 0)
    last = a.err.text().splitlines()[-1]
    assert last == (
        "podvisor | pod Succeeded (exit 0): stopped on request: SIGTERM; web exited 0 after SIGTERM"
    )


def test_a_sigkilled_pods_record_leaves_ps(tmp_path: Path, run_dir: Path) -> None:
    env = _env(run_dir, free_port())
    with Supervisor(_pod(tmp_path, "host-dead"), env=env, metrics="off") as sup:
        sup.wait_line("web", "up")
        assert [p["name"] for p in json.loads(_podvisor(run_dir, "ps", "-o", "json").stdout)] == [
            "host-dead"
        ]
        tree = procfs.descendants(sup.pid)
        sup.signal(signal.SIGKILL)
        sup.wait()
    try:
        # The pod's outer init removes the socket once the pod has ended; until
        # then `ps` finds it refusing and removes it (test_access has `--all`).
        live = _podvisor(run_dir, "ps", "-o", "json")
        assert (live.returncode, json.loads(live.stdout)) == (0, [])
        assert not (run_dir / "pods" / "host-dead.sock").exists()
    finally:
        clean_after_dead_supervisor("host-dead", tree, GRACE)


def test_run_detached_returns_once_started_and_attach_follows(
    tmp_path: Path, run_dir: Path
) -> None:
    manifest = _pod(tmp_path, "host-detached")
    started = _podvisor(run_dir, "run", "-d", "--metrics-address", "off", str(manifest))
    assert (started.returncode, started.stdout) == (0, "host-detached\n"), started.stderr
    try:
        [listed] = json.loads(_podvisor(run_dir, "ps", "-o", "json").stdout)
        assert (listed["name"], listed["status"]) == ("host-detached", "Running")
        again = _podvisor(run_dir, "run", "-d", str(manifest))
        assert again.returncode == 2
        assert f"supervisor pid {listed['supervisor_pid']}" in again.stderr

        with subprocess.Popen(
            [*podvisor_command(), "attach", "host-detached", "--tail", "10", "-o", "json"],
            env=ctl_env(run_dir),
            stdout=subprocess.PIPE,
            text=True,
        ) as as_json:
            assert as_json.stdout is not None
            line = json.loads(as_json.stdout.readline())
            assert (line["container"], line["text"]) == ("web", "up")
            as_json.send_signal(signal.SIGINT)  # leaves the pod running
            assert as_json.wait(timeout=60) == 128 + signal.SIGINT
        with subprocess.Popen(
            [*podvisor_command(), "attach", "host-detached", "--tail", "10"],
            env=ctl_env(run_dir),
            stdout=subprocess.PIPE,
            text=True,
        ) as attach:
            assert attach.stdout is not None
            assert attach.stdout.readline() == "web | up\n"  # bounded: the pod's stop ends it
            assert _podvisor(run_dir, "stop", "host-detached").returncode == 0
            assert attach.wait(timeout=60) == 0
    finally:
        _podvisor(run_dir, "stop", "--now", "host-detached")  # if a check above failed
