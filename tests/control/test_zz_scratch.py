from __future__ import annotations
from pathlib import Path
import pytest
from tests.control.conftest import control_pod, serving_pod
pytestmark = [pytest.mark.anyio]

@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_show(run_dir: Path) -> None:
    extra = """initContainers:
            - name: logship
              restartPolicy: Always
              command: ["sh", "-c", "echo shipping; exec sleep 1000"]"""
    async with control_pod(serving_pod("ctl-show", extra=extra), run_dir) as pod:
        await pod.running("app")
        for args in (["ps"], ["status", "ctl-show"], ["logs", "ctl-show"], ["logs", "ctl-show", "--timestamps", "-c", "app"], ["kill", "ctl-show", "app", "-s", "TERM"]):
            d = await pod.ctl(*args)
            print("$ podvisor", *args, "->", d.returncode); print(d.stdout, d.stderr)
        await pod.until("restarted", lambda: pod.container("app").restart_count == 1 and pod.container("app").step.value == "running")
        for args in (["status", "ctl-show"], ["logs", "ctl-show", "-c", "app", "--previous"], ["pause", "ctl-show", "app"], ["status", "ctl-show"], ["exec", "ctl-show", "--", "true"], ["resume", "ctl-show", "app"], ["exec", "ctl-show", "--", "sh", "-c", "echo $GREETING; hostname; exit 3"], ["stop", "ctl-show"], ["ps"]):
            d = await pod.ctl(*args)
            print("$ podvisor", *args, "->", d.returncode); print(d.stdout, d.stderr)
