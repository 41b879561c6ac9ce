"""An unprivileged user floods the pod's NOTIFY_SOCKET.

Any uid a container runs as reaches the socket, through the bind its init
makes in the container's own mounts; on the host the socket sits in a
directory of root's alone. So every datagram a user on the host tries is
refused by the kernel, none reaches the supervisor, and /livez answers
throughout. (A sender that does reach it from outside the pod, root, is
dropped after one readlink: `tests/sidecars/test_notify.py`.)
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.faults.conftest import Record
from tests.faults.pods import NOBODY, Supervisor, free_port, write_pod
from tests.security.conftest import PYTHON

pytestmark = [pytest.mark.faults, pytest.mark.needs_root]

FLOOD_SECONDS = 5
FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[2])
sent = refused = 0
while time.monotonic() < end:
    try:
        s.sendto(b"READY=1\\nSTATUS=flood", sys.argv[1])
        sent += 1
    except PermissionError:
        refused += 1
print(sent, refused)
"""


@pytest.mark.timeout(120)
def test_a_notify_flood_from_another_user(tmp_path: Path, faults: Record) -> None:
    port = free_port()
    pod = write_pod(
        tmp_path,
        "notify-flood",
        """
        apiVersion: v1
        kind: Pod
        metadata:
          name: fault-notify-flood
          annotations: {podvisor.io/network: loopback}
        spec:
          terminationGracePeriodSeconds: 5
          containers:
            - name: main
              command: [sh, -c, "trap 'exit 0' TERM; echo \\"$NOTIFY_SOCKET\\"; while :; do sleep 0.2; done"]
        """,
    )
    with Supervisor(pod, metrics=f"127.0.0.1:{port}") as sup:
        sup.out.wait_for(lambda lines: any(ln.container == "main" for ln in lines), 60, "main")
        socket_path = sup.out.of("main")[0]
        flood = subprocess.Popen(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                "--",
                PYTHON,
                "-c",
                FLOOD,
                socket_path,
                str(FLOOD_SECONDS),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        took: list[float] = []
        while flood.poll() is None:
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=5) as reply:
                assert reply.status == 200
            took.append(time.monotonic() - started)
        sent, refused = map(int, flood.communicate(timeout=30)[0].split())
        assert sup.proc.poll() is None, "the supervisor died"
        sup.signal(15)
        assert sup.wait(timeout=60) == 0
    assert (sent, refused > 0) == (0, True), (sent, refused)
    strangers = [ln for ln in sup.err.of("podvisor") if "NOTIFY_SOCKET: ignored" in ln]
    assert strangers == []
    took.sort()
    p95 = took[int(len(took) * 0.95)]
    faults.runs = refused
    faults.figure("/livez asked", len(took))
    faults.figure("/livez p95/slowest", f"{p95 * 1000:.0f}/{took[-1] * 1000:.0f} ms")
