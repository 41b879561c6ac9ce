"""`podvisor exec`, probes and hooks run with the container's identity and privileges."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.control.conftest import control_pod
from tests.security.conftest import DEFAULT_CAPS, STATUS, status

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


def _pod(name: str, security: str) -> str:
    return f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: 3
          securityContext: {{supplementalGroups: [4000]}}
          containers:
            - name: app
              command: ["sh", "-c", "echo app started; exec sleep 300"]
              securityContext: {security}
              startupProbe:
                exec: {{command: ["sh", "-c", "grep -q '^CapBnd:.*{DEFAULT_CAPS}' /proc/self/status"]}}
                periodSeconds: 1
    """


async def test_exec_shows_what_the_program_shows(run_dir: Path) -> None:
    security = "{runAsUser: 4242, runAsGroup: 4343, allowPrivilegeEscalation: false}"
    async with control_pod(_pod("sec-exec", security), run_dir) as pod:
        await pod.log.said("app", "app started")
        done = await pod.ctl("exec", "sec-exec", "--", "sh", "-c", STATUS)
        assert done.returncode == 0, done.stderr
        seen = status(done.stdout.splitlines())
        assert (seen["Uid"], seen["Gid"]) == ("4242 4242 4242 4242", "4343 4343 4343 4343")
        assert seen["Groups"] == "4000 4343"
        assert (seen["CapEff"], seen["CapBnd"]) == ("0000000000000000", DEFAULT_CAPS)
        assert (seen["NoNewPrivs"], seen["Seccomp"]) == ("1", "2")
        # The startup probe, an exec of its own, saw the default bounding set too.
        await pod.until("app is started", lambda: pod.container("app").started)


async def test_exec_as_root_holds_the_default_set(run_dir: Path) -> None:
    async with control_pod(_pod("sec-exec-root", "{}"), run_dir) as pod:
        await pod.log.said("app", "app started")
        done = await pod.ctl("exec", "sec-exec-root", "--", "sh", "-c", STATUS)
        seen = status(done.stdout.splitlines())
        assert (seen["Uid"], seen["CapEff"], seen["CapBnd"]) == (
            "0 0 0 0",
            DEFAULT_CAPS,
            DEFAULT_CAPS,
        )
        assert (seen["NoNewPrivs"], seen["Seccomp"]) == ("0", "2")
