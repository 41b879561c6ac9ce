"""A SIGKILLed supervisor, and no podvisor run after it: the pod's init cleans up.

The supervisor of a pod on a bridge network (a network namespace, a veth, a
bridge, an address record, NAT rules) is SIGKILLed, and nothing else runs.
Within the pod's grace period its init must have ended the pod's processes
and then removed what the supervisor made: its cgroups in every hierarchy,
its network namespace and links, its records under /run/podvisor and its
control socket. `no_leaks` then finds the machine as the test found it.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import leftover_cgroups, leftover_netns
from tests.faults import procfs
from tests.faults.conftest import Record
from tests.faults.pods import Supervisor, run_files, write_pod

pytestmark = [pytest.mark.faults, pytest.mark.needs_root]

GRACE = 3


@pytest.mark.timeout(120)
def test_a_killed_supervisors_pod_is_cleaned_up_by_its_init(tmp_path: Path, faults: Record) -> None:
    name = "fault-orphaned"
    path = write_pod(
        tmp_path,
        name,
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: bridge}}
        spec:
          terminationGracePeriodSeconds: {GRACE}
          containers:
            - name: main
              command: [sh, -c, "trap 'exit 0' TERM; echo up; while :; do sleep 0.2; done"]
        """,
    )
    with Supervisor(path) as sup:
        sup.wait_line("main", "up")
        tree = procfs.descendants(sup.pid)
        assert run_files(name), "the pod made no files to clean up"
        sup.signal(signal.SIGKILL)
        sup.wait()
    # The outer init becomes the clean-up (same pid): gone, the clean-up is done.
    procfs.wait_gone(tree, timeout=GRACE + 20)
    procfs.reap_adopted()
    cgroups = [str(p) for p in leftover_cgroups() if f"podvisor-{name}-" in p.name]
    netns = [n for n in leftover_netns() if name in n]
    files = [p.name for p in run_files(name)]
    faults.runs = 1
    faults.leak("cgroups", cgroups)
    faults.leak("network namespaces", netns)
    faults.leak("/run/podvisor/pods entries", files)
