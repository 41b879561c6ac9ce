"""Container log files, as the kubelet keeps them: CRI lines, rotated by size and count.

Each test runs `podvisor run` to the pod's end with $PODVISOR_LOG_DIR in its
own temporary folder, then reads the files or asks `podvisor logs`, which
reads them once the pod has ended.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from podvisor.supervisor.pod import logfiles
from tests.faults.pods import podvisor_command, write_pod

pytestmark = pytest.mark.needs_root


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODVISOR_LOG_DIR": str(tmp_path / "logs")}
    return subprocess.run(
        [*podvisor_command(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _manifest(tmp_path: Path, name: str, annotations: str, script: str, policy: str) -> Path:
    return write_pod(
        tmp_path,
        name,
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: loopback, podvisor.io/metrics-address: "off"{annotations}}}
        spec:
          restartPolicy: {policy}
          containers:
            - name: main
              command: [sh, -c, {script!r}]
        """,
    )


def test_log_files_rotate_at_the_size_asked_for(tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done"
    extra = ', podvisor.io/container-log-max-size: 2Ki, podvisor.io/container-log-max-files: "3"'
    pod = _manifest(tmp_path, "log-rotation", extra, script, "Never")
    done = _run(tmp_path, "run", str(pod))
    assert done.returncode == 0, done.stderr
    folder = logfiles.find_pod_folder(tmp_path / "logs", "log-rotation")
    assert folder is not None
    files = sorted(p.name for p in (folder / "main").iterdir())
    assert files == ["0.log", "0.log.1", "0.log.2"]
    for name in files:
        size = (folder / "main" / name).stat().st_size
        assert 0 < size <= 2048, f"{name}: {size} bytes"
    texts = [r.text for r in logfiles.read_instance(folder, "main", 0)]
    assert texts == [f"line {i}" for i in range(500 - len(texts), 500)]
    first = (folder / "main" / "0.log").read_text().splitlines()[0].split(" ", 3)
    assert first[1:3] == ["stdout", "F"]
    assert logfiles.parse_cri_time(first[0]) > 0


def test_logs_after_the_pod_ended_prints_the_last_instance(tmp_path: Path) -> None:
    marker = tmp_path / "ran-once"
    script = f"if [ -e {marker} ]; then echo second; exit 0; fi; touch {marker}; echo first; exit 3"
    pod = _manifest(tmp_path, "log-ended", "", script, "OnFailure")
    done = _run(tmp_path, "run", str(pod))
    assert done.returncode == 0, done.stderr
    last = _run(tmp_path, "logs", "log-ended")
    assert (last.returncode, last.stdout) == (0, "second\n"), last.stderr
    previous = _run(tmp_path, "logs", "log-ended", "main", "--previous")
    assert (previous.returncode, previous.stdout) == (0, "first\n"), previous.stderr
    missing = _run(tmp_path, "logs", "no-such-pod")
    assert missing.returncode != 0
