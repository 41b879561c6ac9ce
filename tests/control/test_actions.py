"""`podvisor kill`, `pause` / `resume`, `restart` and `stop` against a running pod."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import anyio
import pytest

from podvisor.init import seqpacket
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.control.client import Client
from podvisor.supervisor.control.wire import (
    MAX_MESSAGE,
    Done,
    Error,
    Status,
    StatusReply,
    decode_reply,
)
from podvisor.supervisor.errors import ControlError
from tests.control.conftest import control_pod, serving_pod
from tests.sidecars.support import WAIT

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


async def test_kill_sends_the_signal_and_the_policy_restarts(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-kill"), run_dir) as pod:
        first = await pod.serving()
        done = await pod.ctl("kill", "ctl-kill", "app", "-s", "term")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "sent SIGTERM to container app of pod ctl-kill\n"
        await pod.log.said("app", "app stopping")
        again = await pod.serving(instances=2)
        assert again.restart_count == 1
        assert again.pid != first.pid or again.started_at != first.started_at
        [app] = (await pod.json("status", "ctl-kill"))["containers"]
        end = app["last_termination"]
        assert (end["reason"], end["exit_code"]) == ("Completed", 0)

        nope = await pod.ctl("kill", "ctl-kill", "app", "-s", "NOPE")
        assert nope.returncode == 2
        assert "not a signal: 'NOPE'" in nope.stderr
        nobody = await pod.ctl("kill", "ctl-kill", "db")
        assert nobody.returncode == 1
        assert "has no container 'db'" in nobody.stderr


async def test_pause_freezes_the_container_until_resume(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-pause"), run_dir) as pod:
        await pod.serving()
        cgroup = pod.view.cgroups["app"]
        paused = await pod.ctl("pause", "ctl-pause", "app")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout == "paused container app of pod ctl-pause\n"
        assert cgroup.frozen()
        [app] = (await pod.json("status", "ctl-pause"))["containers"]
        assert app["paused"] is True
        text = await pod.ctl("status", "ctl-pause")
        assert text.stdout.splitlines()[-1].split()[:3] == ["app", "main", "Paused"]
        refused = await pod.ctl("exec", "ctl-pause", "--", "true")
        assert refused.returncode == 1
        assert "container 'app' is paused: `podvisor resume` it first" in refused.stderr

        resumed = await pod.ctl("resume", "ctl-pause", "app", "-o", "json")
        assert json.loads(resumed.stdout) == {"ok": True, "was_paused": True}
        assert not cgroup.frozen()
        works = await pod.ctl("exec", "ctl-pause", "--", "true")
        assert works.returncode == 0, works.stderr


async def test_a_container_that_does_not_run_cannot_be_paused(
    run_dir: Path, tmp_path: Path
) -> None:
    # "app" crashes at once and then waits in CrashLoopBackOff.
    extra = """initContainers:
            - name: gate
              restartPolicy: Always
              command: ["sh", "-c", "exec sleep 1000"]"""
    text = serving_pod("ctl-nopause", extra=extra).replace(
        "trap 'echo app stopping; exit 0' TERM; echo app started; while :; do sleep 0.1; done",
        f"echo x >> {tmp_path}/runs; exit 1",
    )
    async with control_pod(text, run_dir) as pod:
        await pod.until(
            "app waits in back-off",
            lambda: pod.container("app").reason is lc.Reason.CRASH_LOOP_BACK_OFF,
        )
        refused = await pod.ctl("pause", "ctl-nopause", "app")
        assert refused.returncode == 1
        assert "container 'app' is not running (Waiting: CrashLoopBackOff)" in refused.stderr
        ps = await pod.ctl("ps")
        assert ps.stdout.splitlines()[1].split()[1] == "CrashLoopBackOff"


async def test_stop_waits_for_the_end_and_removes_the_socket(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-stop"), run_dir) as pod:
        await pod.serving()
        assert pod.socket is not None
        assert pod.socket.exists()
        stopped = await pod.ctl("stop", "ctl-stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == "pod ctl-stop stopped: Succeeded (exit status 0)\n"
        assert not pod.socket.exists()
        assert await pod.finished() == 0
        gone = await pod.ctl("status", "ctl-stop")
        assert gone.returncode == 1
        assert "no pod named 'ctl-stop' runs on this host" in gone.stderr


async def test_a_pod_that_ends_by_itself_removes_its_socket(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-ends", policy="Never"), run_dir) as pod:
        await pod.serving()
        pod.runner.post(lc.StopRequested())  # what SIGTERM to `podvisor run` does
        assert await pod.finished() == 0
        assert pod.socket is not None
        assert not pod.socket.exists()
        assert list((run_dir / "pods").iterdir()) == []


async def test_stop_now_kills_at_once(run_dir: Path) -> None:
    # The container ignores SIGTERM: only the kill ends it.
    text = serving_pod("ctl-now").replace("trap 'echo app stopping; exit 0' TERM", "trap '' TERM")
    async with control_pod(text, run_dir) as pod:
        await pod.serving()
        stopped = await pod.ctl("stop", "ctl-now", "--now", "-o", "json")
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout) == {
            "ev": "finished",
            "phase": "Failed",
            "exit_status": 137,
        }
        assert await pod.finished() == 137


async def test_restart_even_with_restart_policy_never(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-restart", policy="Never"), run_dir) as pod:
        first = await pod.serving()
        done = await pod.ctl("restart", "ctl-restart", "app")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "restarting container app of pod ctl-restart\n"
        again = await pod.serving(instances=2)
        assert again.restart_count == 1
        assert again.started_at != first.started_at
        [app] = (await pod.json("status", "ctl-restart"))["containers"]
        end = app["last_termination"]
        assert (end["exit_code"], end["message"]) == (0, "restart requested")
        not_now = await pod.ctl("restart", "ctl-restart", "nobody")
        assert not_now.returncode == 1


async def test_a_request_in_hand_when_the_pod_stops_is_answered(run_dir: Path) -> None:
    """Not a connection closed without a word: the client is told the pod stopped."""
    async with control_pod(serving_pod("ctl-late"), run_dir) as pod:
        await pod.serving()
        assert pod.socket is not None
        with Client("ctl-late", pod.socket, timeout=None) as client:
            client.send(Status())  # takes CPU_SAMPLE_SECONDS to answer
            pod.runner.post(lc.StopRequested())
            await pod.finished()
            with pytest.raises(ControlError, match="pod 'ctl-late' stopped before answering"):
                await anyio.to_thread.run_sync(client.reply, StatusReply)


async def test_a_request_the_pod_cannot_read_is_answered_naming_it(run_dir: Path) -> None:
    """Not a KeyError, nor a connection closed without a word: and the pod serves on."""
    async with control_pod(serving_pod("ctl-odd"), run_dir) as pod:
        await pod.serving()
        assert pod.socket is not None
        path = str(pod.socket)

        def answer(data: bytes) -> Done | Error:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
                sock.settimeout(WAIT)
                sock.connect(path)
                seqpacket.send(sock, data)
                packet = seqpacket.receive(sock, MAX_MESSAGE)
            assert packet is not None
            return decode_reply(packet[0], Done)

        unknown = await anyio.to_thread.run_sync(answer, b'{"op": "frobnicate"}')
        assert unknown == Error(
            "unknown request 'frobnicate': the pod's podvisor is another version than "
            "this command's"
        )
        wrong = b'{"op": "kill", "container": "app", "signal": "TERM"}'
        said = await anyio.to_thread.run_sync(answer, wrong)
        assert said == Error("kill: 'signal' must be a whole number, not 'TERM'")
        assert await anyio.to_thread.run_sync(answer, b"\x00garbage") == Error(
            "not a JSON message: b'\\x00garbage'"
        )
        assert (await pod.ctl("status", "ctl-odd")).returncode == 0
