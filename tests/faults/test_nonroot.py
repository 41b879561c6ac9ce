"""A user's `podvisor run` on a host where root has run pods.

Root's runs leave /run/podvisor/network.lock and the other records, mode
0600 and owned by root. A user's run must not need them: it keeps its own
records in its own runtime folder and runs the pod degraded, as documented,
never crashing on root's files. The interpreter lives in root's home here,
so the user keeps CAP_DAC_READ_SEARCH to reach it, and nothing more.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from podvisor.supervisor.network import records
from tests.faults.conftest import Record
from tests.faults.pods import AS_NOBODY, NOBODY, podvisor_command, write_pod

pytestmark = [pytest.mark.faults, pytest.mark.needs_root]


@pytest.mark.timeout(120)
def test_a_user_runs_a_pod_after_root_did(tmp_path: Path, faults: Record) -> None:
    with records.locked():  # root's lock file, as any root run leaves it
        assert records.NETWORK_LOCK.stat().st_uid == 0
    # A short path: the pod's NOTIFY_SOCKET goes beneath it, within sun_path's 107 bytes.
    home = Path(tempfile.mkdtemp(prefix="pv-user-"))
    os.chown(home, NOBODY, NOBODY)
    pod = write_pod(
        tmp_path,
        "nonroot",
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: fault-nonroot}
        spec:
          restartPolicy: Never
          containers:
            - {name: main, command: [sh, -c, "echo hello from $(id -u)"]}
        """,
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home),
        "PODVISOR_LOG_DIR": str(home / "logs"),
    }
    done = subprocess.run(
        [*AS_NOBODY, *podvisor_command(), "run", "--metrics-address", "off", str(pod)],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    shutil.rmtree(home)
    assert done.returncode == 0, done.stderr
    assert "main | hello from" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert "warning:" in done.stderr  # degraded, and said so
    assert "network.lock" not in done.stderr
    faults.runs = 1
