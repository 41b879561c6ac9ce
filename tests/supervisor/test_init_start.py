"""The pod's init starts ahead of its plan, waits for it on the channel, and leaves cleanly."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import podvisor.supervisor.cli.main as cli
from podvisor.init import protocol, seqpacket
from podvisor.supervisor.packets import PacketStream
from podvisor.supervisor.pod import sandbox
from podvisor.supervisor.pod.init_client import InitClient
from podvisor.supervisor.pod.sandbox import InitProcess, WaitingInit, plan_namespaces
from tests.supervisor.conftest import pod_yaml

WAIT = 30


def _status(waiting: WaitingInit) -> int | None:
    return waiting.process.returncode


def _ended(waiting: WaitingInit) -> int:
    waiting.process.wait_blocking(timeout=WAIT)
    code = waiting.process.returncode
    assert code is not None
    return code


def test_an_init_sent_no_plan_exits_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    with WaitingInit() as waiting:
        assert _status(waiting) is None  # it waits for its plan
    assert _status(waiting) == 0
    assert capfd.readouterr().err == ""


PLAN: dict[str, object] = {
    "op": "plan",
    "unshare": [],
    "netns": None,
    "hostname": None,
    "binds": [],
    "cgroup_procs": [],
    "grace": 1,
    "sysctls": [],
    "tmpfs": [],
    "files": [],
    "overlays": [],
    "propagated": [],
}


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (protocol.Spawn(1, protocol.Process(("true",))), "expected the plan first, got 'spawn'"),
        ({**PLAN, "unshare": ["net"]}, "unshare takes user,pid,mnt,uts,ipc, got net"),
        (
            {**PLAN, "binds": [["/only-a-source"]]},
            "plan: 'binds' must be a list of [string, string]",
        ),
        ({**PLAN, "grace": "soon"}, "plan: 'grace' must be a number, not 'soon'"),
        ({**PLAN, "cgroup_procs": None}, "plan: 'cgroup_procs' must be a list of strings"),
        ({"op": "launch"}, "not a request the init knows"),
    ],
)
def test_a_malformed_plan_ends_the_init_with_status_2(
    message: protocol.Request | dict[str, object], says: str, capfd: pytest.CaptureFixture[str]
) -> None:
    waiting = WaitingInit()
    with waiting.take_channel() as channel:
        if isinstance(message, dict):
            seqpacket.send(channel, json.dumps(message).encode())
        else:
            protocol.send(channel, message)
        assert _ended(waiting) == 2
    err = capfd.readouterr().err
    assert err.startswith("podvisor-init: no usable plan from the supervisor: ")
    assert says in err


def test_the_channel_is_the_only_argument() -> None:
    found = subprocess.run(
        [sys.executable, "-m", "podvisor.init", "--channel", "3", "--unshare", "pid"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert found.returncode == 2
    assert "expected --channel FD" in found.stderr
    assert "usage: podvisor-init --channel FD" in found.stderr


@pytest.mark.anyio
async def test_an_init_started_ahead_serves_the_plan_it_is_sent() -> None:
    plan = plan_namespaces(
        host_pid=False,
        host_ipc=False,
        hostname="ahead",
        netns=None,
        binds=(),
        cgroup_procs=(),
        grace=5.0,
    )
    with WaitingInit() as waiting:
        box = await InitClient.start(plan, waiting)
        assert waiting.taken
        assert box.process is waiting.process
        try:
            # The plan took: the init proper is PID 1 of a new PID namespace.
            own = os.readlink("/proc/self/ns/pid")
            assert os.readlink(f"/proc/{box.host_pid}/ns/pid") != own
            assert os.readlink(f"/proc/{box.process.pid}/ns/pid") == own
        finally:
            box.close()  # end-of-file: the init stops the (empty) pod as on SIGTERM
            with anyio.fail_after(WAIT):
                assert await box.process.wait() == 143
            await box.process.aclose()
        # Given its plan, it is not sent off again on the way out.
    assert _status(waiting) == 143


@pytest.mark.anyio
async def test_without_a_pidfd_a_thread_waits_for_the_init(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open is not implemented (before Linux 5.3)")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    waiting = WaitingInit()
    waiting.take_channel().close()  # no plan: it exits
    with anyio.fail_after(WAIT):
        assert await waiting.process.wait() == 0
    assert waiting.process.returncode == 0


@pytest.mark.anyio
async def test_the_inner_inits_ready_may_come_before_the_outer_one_names_its_pid() -> None:
    # Both init processes write to the channel: the inner one (PID 1 of the new
    # PID namespace) may say "ready" before the outer one says which pid it has
    # here. The supervisor must wait for both, or it takes the outer init's pid
    # for the pod's PID namespace (seen once in a full run under load).
    plan = plan_namespaces(
        host_pid=False,
        host_ipc=False,
        hostname="order",
        netns=None,
        binds=(),
        cgroup_procs=(),
        grace=5.0,
    )
    assert "pid" in plan.unshare
    ours, theirs = protocol.socketpair()
    process = InitProcess(subprocess.Popen(["true"]))  # noqa: ASYNC220 (as WaitingInit does)
    box = InitClient(process, PacketStream(ours, protocol.MAX_MESSAGE), plan)
    try:
        with theirs:
            protocol.send(theirs, protocol.Ready(1))
            protocol.send(theirs, protocol.InitStarted(4242))
            with anyio.fail_after(WAIT):
                await box._await_ready()
        assert box.host_pid == 4242
    finally:
        box.close()
        await process.wait()
        await process.aclose()


def test_a_run_that_fails_before_the_pod_is_made_leaves_no_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[WaitingInit] = []

    class Recorded(WaitingInit):
        def __init__(self) -> None:
            super().__init__()
            started.append(self)

    monkeypatch.setattr(sandbox, "WaitingInit", Recorded)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        pod_yaml("""
            apiVersion: v1
            kind: Pod
            metadata: {name: taken-port}
            spec:
              containers: [{name: main, command: ["true"]}]
        """)
    )
    with socket.socket() as holder:  # the metrics port is taken: an error before anything is made
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        status = cli.main(["run", "--metrics-address", f"127.0.0.1:{port}", str(manifest)])
    assert status == 125
    assert "another program listens there" in capsys.readouterr().err
    [init] = started
    assert _status(init) == 0  # sent off and reaped, not left waiting


def test_an_init_whose_supervisor_is_killed_before_the_plan_exits() -> None:
    # A supervisor SIGKILLed while it still imports: the waiting init reads
    # end-of-file and exits (this session is a subreaper, so it comes back here).
    code = (
        "import os, signal\n"
        "from podvisor.supervisor.pod.sandbox import WaitingInit\n"
        "init = WaitingInit()\n"
        "print(init.process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    supervisor = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert supervisor.returncode == -9
    pid = int(supervisor.stdout)
    deadline = time.monotonic() + WAIT
    while (found := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        assert time.monotonic() < deadline, f"the init {pid} still waits for a plan"
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(found[1]) == 0


@pytest.mark.anyio
async def test_several_tasks_may_wait_for_the_init_at_once() -> None:
    waiting = WaitingInit()
    codes: list[int] = []

    async def wait() -> None:
        codes.append(await waiting.process.wait())

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(wait)
            await anyio.sleep(0.1)  # all three wait before it ends
            waiting.take_channel().close()
    assert codes == [0, 0, 0]
    await waiting.process.aclose()
