"""Who may use a pod's control socket, and sockets that outlive their pod."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from podvisor.supervisor.control.client import Client
from podvisor.supervisor.control.paths import RUN_DIR_VARIABLE
from podvisor.supervisor.control.server import bind_control_socket
from podvisor.supervisor.control.wire import Status, StatusReply
from podvisor.supervisor.errors import ControlError
from tests.control.conftest import REPO, control_pod, serving_pod
from tests.sidecars.support import WAIT

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

NOBODY = 65534
#: The client as uid 65534. The test's interpreter lives under /root, which
#: that user may not enter; Debian's python3 runs the client, which needs the
#: standard library only.
AS_NOBODY = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
SYSTEM_PYTHON = "/usr/bin/python3"


async def as_nobody(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*AS_NOBODY, SYSTEM_PYTHON, "-m", "podvisor.supervisor.cli.commands", *args]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), RUN_DIR_VARIABLE: str(run_dir)}
    with anyio.fail_after(WAIT):  # never a hang
        done = await anyio.run_process(argv, check=False, env=env, cwd="/")
    return subprocess.CompletedProcess(
        argv, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture(autouse=True)
def _needs_setpriv_and_python() -> None:
    if not (Path("/usr/bin/setpriv").exists() and Path(SYSTEM_PYTHON).exists()):
        pytest.skip("needs setpriv and /usr/bin/python3 to run the client as another user")


async def test_the_socket_is_the_owners_alone(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-mode"), run_dir) as pod:
        assert pod.socket is not None
        st = pod.socket.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()


async def test_another_user_is_refused_with_a_clear_error(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-mine"), run_dir) as pod:
        await pod.serving()
        refused = await as_nobody(run_dir, "status", "ctl-mine")
        assert refused.returncode == 1
        assert refused.stderr == (
            "podvisor: permission denied: the pod 'ctl-mine' belongs to uid 0; use sudo\n"
        )
        listed = await as_nobody(run_dir, "ps")
        assert listed.returncode == 0
        _, row, note = listed.stdout.splitlines()
        assert row.split()[:2] == ["ctl-mine", "Unknown"]
        assert note == "ctl-mine: permission denied: the pod 'ctl-mine' belongs to uid 0; use sudo"


async def test_the_server_checks_who_connects_too(run_dir: Path) -> None:
    # Should the socket's mode ever let another user in, the server still refuses.
    async with control_pod(serving_pod("ctl-peer"), run_dir) as pod:
        await pod.serving()
        assert pod.socket is not None
        pod.socket.chmod(0o666)
        refused = await as_nobody(run_dir, "status", "ctl-peer")
        assert refused.returncode == 1
        assert refused.stderr == (
            "podvisor: permission denied: the pod 'ctl-peer' belongs to uid 0; use sudo\n"
        )
        mine = await pod.ctl("status", "ctl-peer")
        assert mine.returncode == 0, mine.stderr


async def test_a_socket_left_by_a_dead_supervisor(run_dir: Path) -> None:
    pods = run_dir / "pods"
    pods.mkdir()
    left = pods / "ctl-dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as dead:
        dead.bind(str(left))  # and never listens, as after a SIGKILL: refused
    async with control_pod(serving_pod("ctl-other"), run_dir) as pod:
        gone = await pod.ctl("status", "ctl-dead")
        assert gone.returncode == 1
        assert "pod 'ctl-dead' is gone: its supervisor died and left" in gone.stderr
        # `ps --all` lists it once as gone and removes it; `ps` lists live pods only.
        listed = (await pod.ctl("ps", "--all")).stdout.splitlines()
        assert listed[1].split()[:2] == ["ctl-dead", "Gone"]
        assert listed[2].split()[0] == "ctl-other"
        assert listed[3] == "ctl-dead: its supervisor died; record removed"
        assert not left.exists()
        assert [row.split()[0] for row in (await pod.ctl("ps")).stdout.splitlines()] == [
            "NAME",
            "ctl-other",
        ]
    # The next pod of that name replaces it.
    async with control_pod(serving_pod("ctl-dead"), run_dir) as pod:
        await pod.serving()
        found = await pod.ctl("status", "ctl-dead")
        assert found.returncode == 0, found.stderr


async def test_a_second_pod_of_a_name_gets_no_socket(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-twin"), run_dir) as pod:
        assert pod.socket is not None
        second = bind_control_socket("ctl-twin", run_dir / "pods")
        assert isinstance(second, str)
        assert "another pod named 'ctl-twin' serves" in second
        assert pod.socket.exists()  # the first one's is untouched
        assert (await pod.ctl("status", "ctl-twin")).returncode == 0


def test_a_server_that_does_not_answer_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "ctl-stuck.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as stuck:
        stuck.bind(str(path))
        stuck.listen(1)  # accepts into the backlog, never answers
        client = Client("ctl-stuck", path, timeout=0.2)
        with client, pytest.raises(ControlError, match="pod 'ctl-stuck' does not answer"):
            client.request(Status(), StatusReply)


def _close_listener(listener: socket.socket) -> None:
    listener.close()  # a connection still in its backlog is reset


def _close_connection_unread(listener: socket.socket) -> None:
    listener.accept()[0].close()


@pytest.mark.parametrize(
    "stop", [_close_listener, _close_connection_unread], ids=["in-the-backlog", "unread"]
)
def test_a_server_that_stops_with_the_request_unanswered_says_so(
    tmp_path: Path, stop: Callable[[socket.socket], None]
) -> None:
    # A pod stopping closes its listener and its connections, a request perhaps unread.
    path = tmp_path / "ctl-ending.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(str(path))
        listener.listen(1)
        with Client("ctl-ending", path, timeout=5) as client:
            client.send(Status())
            stop(listener)
            with pytest.raises(ControlError, match="pod 'ctl-ending' stopped before answering"):
                client.reply(StatusReply)
