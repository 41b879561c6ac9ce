"""`podvisor logs`: the rings of the current and previous instance, and following them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest

from tests.control.conftest import REPO, child, control_pod, ctl_argv, ctl_env
from tests.control.test_exec import Reader
from tests.sidecars.support import WAIT

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


def two_containers(name: str, app: str, *, policy: str = "Always") -> str:
    return f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: loopback}}
        spec:
          restartPolicy: {policy}
          terminationGracePeriodSeconds: 5
          initContainers:
            - name: shipper
              restartPolicy: Always
              command: ["sh", "-c", "echo shipping one; echo shipping two; exec sleep 1000"]
          containers:
            - name: app
              command: ["sh", "-c", {json.dumps(app)}]
    """


async def test_logs_of_the_pod_and_of_one_container(run_dir: Path) -> None:
    app = "echo app one; echo app warns >&2; echo app two; exec sleep 1000"
    async with control_pod(two_containers("ctl-logs", app), run_dir) as pod:
        await pod.running("app")
        await pod.log.said("app", "app two")
        await pod.log.said("shipper", "shipping two")

        every = await pod.ctl("logs", "ctl-logs")
        assert every.returncode == 0, every.stderr
        lines = every.stdout.splitlines()
        assert sorted(lines) == sorted(
            [
                "shipper | shipping one",
                "shipper | shipping two",
                "app     | app one",
                "app     | app warns",
                "app     | app two",
            ]
        )
        assert lines.index("shipper | shipping one") < lines.index("shipper | shipping two")

        # In the order the lines came: one stream's lines keep theirs.
        one = await pod.ctl("logs", "ctl-logs", "-c", "shipper", "--tail", "1")
        assert one.stdout == "shipping two\n"
        recent = await pod.ctl("logs", "ctl-logs", "-c", "shipper", "--since", "1h")
        assert recent.stdout == "shipping one\nshipping two\n"
        none = await pod.ctl("logs", "ctl-logs", "-c", "shipper", "--tail", "0")
        assert none.stdout == ""
        # kubectl's form: the container as the second word.
        named = await pod.ctl("logs", "ctl-logs", "shipper", "--tail", "1")
        assert named.stdout == "shipping two\n"
        both = await pod.ctl("logs", "ctl-logs", "shipper", "-c", "app")
        assert both.returncode == 2
        assert "two containers named" in both.stderr

        found = await pod.ctl("logs", "ctl-logs", "-c", "app", "-o", "json")
        records = [json.loads(line) for line in found.stdout.splitlines()]
        assert sorted((r["container"], r["stream"], r["text"]) for r in records) == [
            ("app", "stderr", "app warns"),
            ("app", "stdout", "app one"),
            ("app", "stdout", "app two"),
        ]
        assert all(r["time"].endswith("Z") for r in records)

        bad = await pod.ctl("logs", "ctl-logs", "--since", "yesterday")
        assert bad.returncode == 2
        assert "not a duration" in bad.stderr


async def test_logs_previous_after_a_crash(run_dir: Path, tmp_path: Path) -> None:
    mark = tmp_path / "crashed-once"
    app = (
        f"if [ ! -e {mark} ]; then touch {mark}; echo first instance; "
        "echo about to crash >&2; exit 3; fi; echo second instance; exec sleep 1000"
    )
    async with control_pod(two_containers("ctl-crash", app), run_dir) as pod:
        await pod.until(
            "app runs again",
            lambda: (
                pod.container("app").restart_count == 1 and pod.container("app").pid is not None
            ),
        )
        await pod.log.said("app", "second instance")
        previous = await pod.ctl("logs", "ctl-crash", "-c", "app", "--previous")
        assert previous.returncode == 0, previous.stderr
        # Its stdout and stderr lines, in the order they came (two pipes: either first).
        assert sorted(previous.stdout.splitlines()) == ["about to crash", "first instance"]
        current = await pod.ctl("logs", "ctl-crash", "-c", "app")
        assert current.stdout == "second instance\n"

        [app_status] = [
            c for c in (await pod.json("status", "ctl-crash"))["containers"] if c["name"] == "app"
        ]
        assert app_status["restarts"] == 1
        end = app_status["last_termination"]
        assert (end["reason"], end["exit_code"]) == ("Error", 3)

        never = await pod.ctl("logs", "ctl-crash", "-c", "shipper", "--previous")
        assert never.returncode == 1
        assert "container 'shipper' has not restarted" in never.stderr


async def test_logs_follow_across_a_restart_until_the_pod_stops(
    run_dir: Path, tmp_path: Path
) -> None:
    count = tmp_path / "instances"
    app = f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; echo instance $n; exec sleep 1000"
    async with control_pod(two_containers("ctl-follow", app), run_dir) as pod:
        await pod.running("app")
        argv = ctl_argv("logs", "-f", "ctl-follow", "-c", "app")
        async with child(
            argv, stdin=None, stdout=subprocess.PIPE, env=ctl_env(run_dir), cwd=REPO
        ) as follower:
            output = Reader(follower)
            await output.expect("instance 1\n")
            killed = await pod.ctl("kill", "ctl-follow", "app", "-s", "KILL")
            assert killed.returncode == 0, killed.stderr
            assert killed.stdout == "sent SIGKILL to container app of pod ctl-follow\n"
            await output.expect("instance 2\n")
            assert output.text == "instance 1\ninstance 2\n"
            # The pod's end ends the follower, with success.
            stopped = await pod.ctl("stop", "ctl-follow")
            assert stopped.returncode == 0, stopped.stderr
            with anyio.fail_after(WAIT):
                assert await follower.wait() == 0
