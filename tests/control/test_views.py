"""`podvisor events`, `describe`, `top`, `ps -w` and `status -w` against a running pod,
through a pipe and in a real terminal (tmux); and why a container is not ready."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from tests.control.conftest import REPO, ControlledPod, child, control_pod, ctl_argv, ctl_env
from tests.faults.pods import http_get
from tests.sidecars.support import WAIT

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

UNREADY = "echo not listening yet >&2; exit 1"


def unready_pod(name: str) -> str:
    """ "web" runs and is never ready (its probe says why); "crash" exits 1 at once, for ever."""
    return f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
            - name: web
              command: ["sh", "-c", "echo up; exec sleep 1000"]
              resources: {{limits: {{memory: 64Mi, cpu: 500m}}}}
              readinessProbe:
                exec: {{command: ["sh", "-c", "{UNREADY}"]}}
                periodSeconds: 1
                timeoutSeconds: 1
            - name: crash
              command: ["sh", "-c", "exit 1"]
    """


async def _events(pod: ControlledPod) -> list[dict[str, object]]:
    found: list[dict[str, object]] = await pod.json("events", pod.name)
    return found


async def _until_events(pod: ControlledPod, *reasons: str) -> list[dict[str, object]]:
    with anyio.fail_after(WAIT):
        while True:
            found = await _events(pod)
            if set(reasons) <= {e["reason"] for e in found}:
                return found
            await pod.view.changed()


async def test_describe_puts_an_end_under_state_and_the_one_before_under_last_state(
    run_dir: Path,
) -> None:
    # As kubectl describe: a finished init container's exit is its State; a
    # container waiting in back-off shows the crash it waits after as Last State.
    text = """
        apiVersion: v1
        kind: Pod
        metadata:
          name: views-ends
          annotations: {podvisor.io/network: loopback}
        spec:
          terminationGracePeriodSeconds: 2
          initContainers:
            - {name: prep, command: ["true"]}
          containers:
            - {name: crash, command: ["sh", "-c", "exit 3"]}
    """
    async with control_pod(text, run_dir) as pod:
        await pod.until(
            "crash waits in back-off", lambda: pod.container("crash").restart_count >= 1
        )
        await _until_events(pod, "BackOff")
        described = await pod.ctl("describe", pod.name)
        assert described.returncode == 0, described.stderr
    blocks = described.stdout.split("\n  crash:\n")
    prep, crash = blocks[0].split("\n  prep:\n")[1], blocks[1]
    assert "    State:          Terminated\n      Reason:       Completed\n" in prep
    assert "      Exit Code:    0\n" in prep
    assert "Last State" not in prep
    assert "    State:          Waiting\n      Reason:       CrashLoopBackOff\n" in crash
    assert "    Last State:     Terminated\n      Reason:       Error\n" in crash
    assert "      Exit Code:    3\n" in crash


async def test_why_a_container_is_not_ready_shows_in_status_events_and_describe(
    run_dir: Path,
) -> None:
    async with control_pod(unready_pod("views-unready"), run_dir) as pod:
        await pod.log.said("web", "up")
        found = await _until_events(pod, "Unhealthy", "BackOff")
        said = "Readiness probe failed: command sh -c 'echo not listening yet >&2; exit 1' "
        said += "exited with 1: not listening yet"
        [unhealthy] = [e for e in found if e["reason"] == "Unhealthy"]
        assert (unhealthy["type"], unhealthy["container"], unhealthy["message"]) == (
            "Warning",
            "web",
            said,
        )
        [back_off] = [e for e in found if e["reason"] == "BackOff"]
        assert back_off["message"] == "Back-off restarting failed container crash"
        assert [e["reason"] for e in found if e["container"] == "crash"][:2] == [
            "Created",
            "Started",
        ]
        assert set(found[0]) == {
            *("pod", "type", "reason", "message", "container", "count", "first", "last"),
        }

        status = await pod.json("status", pod.name)
        web = next(c for c in status["containers"] if c["name"] == "web")
        assert (web["ready"], web["message"]) == (False, said)

        described = await pod.ctl("describe", pod.name)
        assert described.returncode == 0, described.stderr
        text = described.stdout
        for part in (
            "Name:           views-unready",
            (
                "Readiness: exec [sh -c echo not listening yet >&2; exit 1] delay=0s timeout=1s "
                "period=1s #success=1 #failure=3"
            ),
            "      cpu: 500m",
            "      memory: 64Mi",
            "      Reason:       CrashLoopBackOff",
            "  ContainersReady   False",
            "Readiness probe failed: command sh -c",
        ):
            assert part in text, text
        as_json = await pod.json("describe", pod.name)
        assert {c["name"] for c in as_json["details"]} == {"web", "crash"}
        assert as_json["events"]

        # /status carries them too, shaped as Kubernetes' Events.
        assert pod.view.metrics_address is not None
        port = pod.view.metrics_address[1]
        status_json = json.loads(await anyio.to_thread.run_sync(http_get, port, "/status"))
        [event] = [e for e in status_json["events"] if e["reason"] == "Unhealthy"]
        assert event["involvedObject"]["fieldPath"] == "spec.containers{web}"
        assert event["type"] == "Warning"
        # The probe's command is the container's, which /status never shows.
        assert event["message"].startswith("Readiness probe failed: "), event["message"]

        # The run's own output says it too, each repeat counted.
        warnings = [line for line in pod.log.lines if "Warning Unhealthy web:" in line]
        assert warnings[0] == f"podvisor | Warning Unhealthy web: {said}"


async def test_top_no_stream_and_the_watches_through_a_pipe(run_dir: Path) -> None:
    async with control_pod(unready_pod("views-pipe"), run_dir) as pod:
        await pod.log.said("web", "up")
        top = await pod.ctl("top", pod.name, "--no-stream")
        assert top.returncode == 0, top.stderr
        header, *rows = top.stdout.splitlines()
        assert header.split() == [
            *("POD", "CONTAINER", "CPU", "MEM", "USAGE", "/", "LIMIT", "MEM", "%"),
            *("PIDS", "RESTARTS"),
        ]
        web = next(r for r in rows if r.split()[1] == "web")
        assert "/ 64Mi" in web
        assert "\x1b[" not in top.stdout
        [*objects] = json.loads(
            (await pod.ctl("top", pod.name, "--no-stream", "-o", "json")).stdout
        )
        assert {o["name"] for o in objects} == {"web", "crash"}
        assert all(o["pod"] == "views-pipe" for o in objects)

        watches = (
            ["ps", "-w"],
            ["status", pod.name, "-w"],
            ["ps", "-w", "-o", "json"],
            ["events", pod.name, "-f", "-o", "json"],
        )
        for args in watches:
            async with child(
                ctl_argv(*args), stdout=subprocess.PIPE, env=ctl_env(run_dir), cwd=REPO
            ) as watch:
                assert watch.stdout is not None
                seen = b""
                with anyio.fail_after(WAIT):
                    while b"views-pipe" not in seen and b"crash" not in seen:
                        seen += await watch.stdout.receive()
                if "events" in args:  # one object a line, as `events -o json` lists them
                    first = json.loads(seen.splitlines()[0])
                    assert (first["pod"], first["reason"]) == ("views-pipe", "Created")
                elif "json" in args:
                    assert json.loads(seen.splitlines()[0])["name"] == "views-pipe"
                else:
                    assert seen.split()[0] in (b"NAME", b"CONTAINER")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
async def test_top_ps_watch_and_describe_in_a_terminal(run_dir: Path) -> None:
    async with control_pod(unready_pod("views-tty"), run_dir) as pod:
        await pod.log.said("web", "up")
        for args, expect in (
            (["top", "--no-stream"], "MEM USAGE / LIMIT"),
            (["ps", "-w"], "views-tty"),
            (["describe", pod.name], "Conditions:"),
        ):
            screen = await _in_tmux(run_dir, args, expect)
            assert expect in screen


async def _in_tmux(run_dir: Path, args: list[str], expect: str) -> str:
    """Run the command in a detached tmux window; its screen once it shows *expect*."""
    session = f"pv-views-{uuid.uuid4().hex[:8]}"
    env = ctl_env(run_dir)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith("PODVISOR"))
    command = (
        f"cd {shlex.quote(str(REPO))} && env {exports} {shlex.join(ctl_argv(*args))}; sleep 60"
    )
    tmux = ["tmux", "-L", session]
    await anyio.run_process(
        [*tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command], env=env
    )
    try:
        with anyio.fail_after(WAIT):
            while True:
                shown = await anyio.run_process([*tmux, "capture-pane", "-p", "-t", session])
                screen = shown.stdout.decode()
                if expect in screen:
                    return screen
                await anyio.sleep(0.2)  # polling a screen: nothing to wait on
    finally:
        await anyio.run_process([*tmux, "kill-server"], check=False)
