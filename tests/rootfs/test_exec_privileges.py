"""`podvisor exec` into a container on its image: the container's privileges, not its init's.

An exec enters the container from the pod's init (setns into the container's
namespaces), never through the container's own init, which has given up all
but CAP_KILL once its program ran: the exec holds the container's set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.control.conftest import control_pod
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import DEFAULT_CAPS, STATUS, status

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

CONFIG = {"Cmd": ["/bin/sh", "-c", "echo app started; exec sleep 300"], "Env": ["PATH=/bin"]}


async def test_exec_on_an_image_holds_the_containers_set(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/exec-caps:1", CONFIG)
    text = f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: img-exec-caps
          annotations: {{podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: 3
          containers:
            - name: app
              image: {image}
              imagePullPolicy: Never
    """
    async with control_pod(text, run_dir) as pod:
        await pod.log.said("app", "app started")
        init = STATUS.replace("/proc/self/status", "/proc/1/status")
        script = f"{init}; echo -- own --; {STATUS}"
        done = await pod.ctl("exec", "img-exec-caps", "--", "sh", "-c", script)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        at = lines.index("-- own --")
        seen_init, seen = status(lines[:at]), status(lines[at + 1 :])
        assert (seen["Uid"], seen["CapEff"], seen["CapBnd"]) == (
            "0 0 0 0",
            DEFAULT_CAPS,
            DEFAULT_CAPS,
        )
        assert seen["NoNewPrivs"] == "0"
        assert (seen_init["CapEff"], seen_init["NoNewPrivs"]) == (f"{1 << 5:016x}", "1")
