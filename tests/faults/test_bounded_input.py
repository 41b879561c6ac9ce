"""Input sized to hurt: a YAML alias bomb, an oversized manifest, a pod of 1,000 containers.

A manifest of a few hundred bytes whose aliases stand for a billion nodes
must be refused at once, with the line of the anchor to blame; so must a
manifest too large for Kubernetes to store. A pod of 1,000 containers must
still answer `podvisor status`, whose reply no longer fits one packet.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from podvisor.supervisor import manifest
from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest.bounds import MAX_MANIFEST_BYTES
from tests.faults.conftest import Record
from tests.faults.pods import Supervisor, pod_yaml, podvisor_command

pytestmark = pytest.mark.faults

CONTAINERS = 1000


def _alias_bomb(containers: int) -> str:
    """Nine levels of ten aliases each, the last used by every container's args."""
    levels = ["  l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    levels += [f"  l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, 9)]
    rows = [f"    - {{name: c{i}, command: [sh], args: *l8}}" for i in range(containers)]
    head = ["apiVersion: v1", "kind: Pod", "metadata: {name: bomb}", "x-laughs:"]
    return "\n".join([*head, *levels, "spec:", "  containers:", *rows]) + "\n"


@pytest.mark.parametrize("containers", [1, CONTAINERS])
def test_an_alias_bomb_is_refused_at_once_with_its_line(
    containers: int, tmp_path: Path, faults: Record
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(containers))
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        manifest.load(path)
    took = time.monotonic() - started
    problems = refused.value.problems
    assert len(problems) == 1
    assert "YAML aliases expand this document" in problems[0].message
    assert problems[0].line > 0
    assert took < 1.0
    faults.runs = 1
    faults.figure("bytes", path.stat().st_size)
    faults.figure("refused in", f"{took * 1000:.0f} ms")


def test_an_oversized_manifest_is_refused(tmp_path: Path, faults: Record) -> None:
    path = tmp_path / "large.yaml"
    filler = "# " + "x" * 1000 + "\n"
    with path.open("w") as f:
        f.write("apiVersion: v1\nkind: Pod\nmetadata: {name: large}\n")
        f.write(filler * (MAX_MANIFEST_BYTES // len(filler) + 1))
        f.write("spec: {containers: [{name: c, command: [sh]}]}\n")
    done = subprocess.run(
        [*podvisor_command(), "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "the manifest is over 4 MiB" in done.stderr
    faults.runs = 1


@pytest.mark.timeout(300)
def test_status_of_a_1000_container_pod(tmp_path: Path, faults: Record) -> None:
    rows = "\n".join(
        f"    - {{name: waiting-{i:04d}, command: ['true']}}" for i in range(CONTAINERS - 1)
    )
    path = tmp_path / "many.yaml"
    path.write_text(
        pod_yaml(
            """
            apiVersion: v1
            kind: Pod
            metadata:
              name: fault-thousand
              annotations: {podvisor.io/network: loopback}
            spec:
              restartPolicy: Never
              terminationGracePeriodSeconds: 10
              initContainers:
                - {name: gate, command: [sh, -c, "trap 'exit 0' TERM; echo up; while :; do sleep 0.2; done"]}
              containers:
            """
        )
        + rows
        + "\n"
    )
    with Supervisor(path) as sup:
        sup.wait_line("gate", "up", timeout=240)  # the others wait for it: never started
        done = subprocess.run(
            [*podvisor_command(), "status", "fault-thousand", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        sup.signal(15)
        sup.wait(timeout=120)
    assert len(status["containers"]) == CONTAINERS
    faults.runs = 1
    faults.figure("reply bytes", len(done.stdout))
