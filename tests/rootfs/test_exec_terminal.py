"""`podvisor exec -it` in a container on its image: a terminal of the container's own."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

from tests.cgroups.helpers import wait_until
from tests.control.test_exec import Screen, exec_it, interrupt_a_sleep_then_exit
from tests.faults.pods import Supervisor
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import manifest
from tests.sidecars.support import WAIT

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the client and the pod are processes: the test's loop matters not


@asynccontextmanager
async def exec_shell(
    run_dir: Path, load_image: LoadImage, name: str, rows: int, cols: int
) -> AsyncIterator[tuple[int, anyio.abc.Process]]:
    """A pod on an image, and `podvisor exec -it POD -- sh -i` from a terminal of the
    caller's: (that terminal's master, the client); the pod is stopped as the block ends."""
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    path = run_dir / f"{name}.yaml"
    path.write_text(
        manifest(
            f"""
            containers:
              - name: main
                image: {image}
                imagePullPolicy: Never
                command: [sh, -c, "echo up; exec sleep 600"]
            """,
            name,
        )
    )
    with Supervisor(path, env={"PODVISOR_RUN_DIR": str(run_dir)}) as pod:
        pod.wait_line("main", "up")
        async with exec_it(
            run_dir, name, ["sh", "-i"], rows=rows, cols=cols, term="xterm"
        ) as shell:
            yield shell
        pod.signal(signal.SIGTERM)
        pod.wait(timeout=30)


async def test_exec_it_gets_a_terminal_of_the_containers_devpts(
    run_dir: Path, load_image: LoadImage
) -> None:
    """Its name is the container's (tty, and whatever looks a terminal up by name, work),
    and the window's size, its changes, line editing and Ctrl-C all reach the command."""
    async with exec_shell(run_dir, load_image, "img-exec-tty", 30, 100) as (master, client):
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
        await interrupt_a_sleep_then_exit(master, screen, client)


async def test_a_client_that_goes_away_hangs_up_the_containers_terminal(
    run_dir: Path, load_image: LoadImage
) -> None:
    """As a terminal's hang-up: the command's whole session ends, its foreground job too."""
    async with exec_shell(run_dir, load_image, "img-exec-hup", 24, 80) as (master, client):
        os.write(master, b"sleep 612\r")
        await Screen(master).wait_for_process("sleep 612")
        client.kill()
        wait_until(lambda: not _running("sleep 612"), WAIT, "the foreground job's hang-up")


def _running(command: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if cmdline.decode(errors="replace") == command:
            return True
    return False


async def test_a_command_deaf_to_the_hang_up_is_killed_after_the_grace(
    run_dir: Path, load_image: LoadImage
) -> None:
    """The SIGKILL that follows the SIGHUP reaches the command in its own session."""
    async with exec_shell(run_dir, load_image, "img-exec-deaf", 24, 80) as (master, client):
        os.write(master, b"trap '' HUP; exec sleep 613\r")  # sleep keeps SIGHUP ignored
        await Screen(master).wait_for_process("sleep 613")
        client.kill()
        wait_until(lambda: not _running("sleep 613"), WAIT, "the deaf command's end")
