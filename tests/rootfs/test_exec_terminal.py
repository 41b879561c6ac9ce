"""`podvisor exec -it` in a container on its image: a terminal of the container's own."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
from pathlib import Path

import anyio
import pytest

from tests.cgroups.helpers import wait_until
from tests.control.conftest import REPO, child, ctl_argv, ctl_env
from tests.control.test_exec import Screen, caller_terminal
from tests.faults.pods import Supervisor
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import manifest
from tests.sidecars.support import WAIT

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the client and the pod are processes: the test's loop matters not


async def test_exec_it_gets_a_terminal_of_the_containers_devpts(
    run_dir: Path, load_image: LoadImage
) -> None:
    """Its name is the container's (tty, and whatever looks a terminal up by name, work),
    and the window's size, its changes, line editing and Ctrl-C all reach the command."""
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    body = manifest(
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, "echo up; exec sleep 600"]
        """,
        "img-exec-tty",
    )
    path = run_dir / "img-exec-tty.yaml"
    path.write_text(body)
    with Supervisor(path, env={"PODVISOR_RUN_DIR": str(run_dir)}) as pod:
        pod.wait_line("main", "up")
        argv = ["setsid", "--ctty", *ctl_argv("exec", "-it", "img-exec-tty", "--", "sh", "-i")]
        with caller_terminal(30, 100) as (master, terminal):
            async with child(
                argv,
                stdin=terminal,
                stdout=terminal,
                stderr=terminal,
                env={**ctl_env(run_dir), "TERM": "xterm"},
                cwd=REPO,
            ) as client:
                screen = Screen(master)
                os.write(master, b"tty; stty size; ls /dev/pts\r")
                # The container's devpts, which holds the command's terminal and no other.
                await screen.expect("/dev/pts/0\r\n30 100\r\n0")
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
                await anyio.sleep(0.5)  # the resize travels through two terminals
                os.write(master, b"stty size\r")
                await screen.expect("40 120")
                # Keys are edited by the container's terminal: a backspace takes the x back.
                os.write(master, b"echo edit-x\x7fed\r")
                await screen.expect("edit-ed")
                os.write(master, b"sleep 611\r")
                await screen.wait_for_process("sleep 611")
                os.write(master, b"\x03")  # SIGINT to the command's foreground, not the shell
                os.write(master, b"echo after-sleep-$?\r")
                await screen.expect("after-sleep-130")
                os.write(master, b"exit 7\r")
                with anyio.fail_after(WAIT):
                    code = await client.wait()
                assert code == 7, screen.text
        pod.signal(signal.SIGTERM)
        pod.wait(timeout=30)


async def test_a_client_that_goes_away_hangs_up_the_containers_terminal(
    run_dir: Path, load_image: LoadImage
) -> None:
    """As a terminal's hang-up: the command's whole session ends, its foreground job too."""
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    body = manifest(
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, "echo up; exec sleep 600"]
        """,
        "img-exec-hup",
    )
    path = run_dir / "img-exec-hup.yaml"
    path.write_text(body)
    with Supervisor(path, env={"PODVISOR_RUN_DIR": str(run_dir)}) as pod:
        pod.wait_line("main", "up")
        argv = ["setsid", "--ctty", *ctl_argv("exec", "-it", "img-exec-hup", "--", "sh", "-i")]
        with caller_terminal(24, 80) as (master, terminal):
            async with child(
                argv, stdin=terminal, stdout=terminal, stderr=terminal, env=ctl_env(run_dir)
            ) as client:
                screen = Screen(master)
                os.write(master, b"sleep 612\r")
                await screen.wait_for_process("sleep 612")
                client.kill()
        wait_until(lambda: not _running("sleep 612"), WAIT, "the foreground job's hang-up")
        pod.signal(signal.SIGTERM)
        pod.wait(timeout=30)


def _running(command: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if cmdline.decode(errors="replace") == command:
            return True
    return False
