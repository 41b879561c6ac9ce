"""`podvisor exec`: a command in a running container, with the caller's stdio or terminal."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import anyio
import anyio.abc
import pytest

from tests.control.conftest import REPO, child, control_pod, ctl_argv, ctl_env, serving_pod
from tests.sidecars.support import WAIT

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


async def test_exec_runs_in_the_containers_environment_and_cgroup(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-exec"), run_dir) as pod:
        await pod.serving()
        script = "echo $GREETING; hostname; cat /proc/self/cgroup; echo to-stderr >&2; exit 7"
        done = await pod.ctl("exec", "ctl-exec", "--", "sh", "-c", script)
        assert done.returncode == 7, done.stderr
        greeting, hostname, *cgroups = done.stdout.splitlines()
        assert (greeting, hostname) == ("hello-from-app", "ctl-exec")
        memory = next(line.split(":", 2)[2] for line in cgroups if ":memory:" in line)
        assert any(d.endswith(memory) for d in pod.runner.cgroups["app"].dirs), memory
        assert done.stderr == "to-stderr\n"


async def test_exec_passes_stdin_only_with_i(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-stdin"), run_dir) as pod:
        await pod.serving()
        upper = await pod.ctl("exec", "-i", "ctl-stdin", "--", "tr", "a-z", "A-Z", stdin=b"hi\n")
        assert (upper.returncode, upper.stdout) == (0, "HI\n"), upper.stderr
        # Without -i the command reads /dev/null: it ends at once instead of waiting.
        alone = await pod.ctl("exec", "ctl-stdin", "--", "cat", stdin=b"not passed\n")
        assert (alone.returncode, alone.stdout) == (0, ""), alone.stderr


async def test_exec_reports_what_cannot_run(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-cannot"), run_dir) as pod:
        await pod.serving()
        missing = await pod.ctl("exec", "ctl-cannot", "--", "/no/such/program")
        assert missing.returncode == 127
        assert "cannot run /no/such/program in container 'app'" in missing.stderr
        nowhere = await pod.ctl("exec", "ctl-cannot", "-c", "db", "--", "true")
        assert nowhere.returncode == 1
        assert "has no container 'db'; its containers: app" in nowhere.stderr
        empty = await pod.ctl("exec", "ctl-cannot")
        assert empty.returncode == 2


async def test_ctrl_c_reaches_the_command(run_dir: Path) -> None:
    script = "trap 'echo got-int; exit 5' INT; echo ready; while :; do sleep 0.1; done"
    async with control_pod(serving_pod("ctl-int"), run_dir) as pod:
        await pod.serving()
        argv = ctl_argv("exec", "ctl-int", "--", "sh", "-c", script)
        async with child(
            argv, stdin=None, stdout=subprocess.PIPE, env=ctl_env(run_dir), cwd=REPO
        ) as client:
            output = Reader(client)
            await output.expect("ready")
            client.send_signal(signal.SIGINT)
            await output.expect("got-int")
            with anyio.fail_after(WAIT):
                assert await client.wait() == 5


async def test_a_client_that_goes_away_hangs_up_its_command(run_dir: Path) -> None:
    # The command writes to the client's own stdout, a pipe of ours, which it
    # keeps when the client is gone: what it says on SIGHUP still comes here.
    script = "trap 'echo hung-up; exit 0' HUP; echo ready; while :; do sleep 0.1; done"
    async with control_pod(serving_pod("ctl-hup"), run_dir) as pod:
        await pod.serving()
        argv = ctl_argv("exec", "ctl-hup", "--", "sh", "-c", script)
        async with child(
            argv, stdin=None, stdout=subprocess.PIPE, env=ctl_env(run_dir), cwd=REPO
        ) as client:
            output = Reader(client)
            await output.expect("ready")
            client.kill()
            await output.expect("hung-up")


TERMINAL_PROGRAM = textwrap.dedent("""
    import fcntl, os, signal, struct, termios
    # Taken with sigwait, not handlers: a handler may run inside print().
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH, signal.SIGINT})
    print("tty", os.ttyname(0), os.isatty(1), os.isatty(2), os.environ["TERM"], flush=True)
    print("ready", flush=True)
    while signal.sigwait({signal.SIGWINCH, signal.SIGINT}) == signal.SIGWINCH:
        rows, cols = struct.unpack("hh", fcntl.ioctl(1, termios.TIOCGWINSZ, b"0000"))
        print("size", rows, cols, flush=True)
    print("interrupted", flush=True)
    raise SystemExit(3)
""")


async def test_exec_with_a_terminal(run_dir: Path) -> None:
    """The caller's terminal is the command's; its window size and Ctrl-C reach it."""
    async with control_pod(serving_pod("ctl-tty"), run_dir) as pod:
        await pod.serving()
        master, terminal = os.openpty()
        name = os.ttyname(terminal)
        # The client runs as from a shell: the terminal is its controlling one.
        argv = ["setsid", "--ctty"]
        argv += ctl_argv("exec", "-it", "ctl-tty", "--", sys.executable, "-c", TERMINAL_PROGRAM)
        env = {**ctl_env(run_dir), "TERM": "xterm-pv"}
        try:
            async with child(
                argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=REPO
            ) as client:
                os.close(terminal)
                terminal = -1
                screen = Screen(master)
                await screen.expect("ready")
                assert f"tty {name} True True xterm-pv" in screen.text
                # What a terminal emulator does when its window is resized.
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
                await screen.expect("size 33 99")
                os.write(master, b"\x03")  # Ctrl-C
                await screen.expect("interrupted")
                with anyio.fail_after(WAIT):
                    code = await client.wait()
                await screen.drain()
                assert code == 3, screen.text
        finally:
            os.close(master)
            if terminal >= 0:
                os.close(terminal)


# --- Reading what comes back --------------------------------------------------------


class Reader:
    """A child's stdout, read until a text shows up (bounded)."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.text = ""

    async def expect(self, what: str) -> None:
        with anyio.fail_after(WAIT):
            while what not in self.text:
                self.text += (await self.stream.receive()).decode()


class Screen:
    """The other end of a pseudo-terminal: what the programs on it have written."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.text = ""

    async def expect(self, what: str) -> None:
        with anyio.fail_after(WAIT):
            while what not in self.text:
                await anyio.wait_readable(self.fd)
                try:
                    self.text += os.read(self.fd, 4096).decode(errors="replace")
                except BlockingIOError:
                    continue
                except OSError as e:  # EIO: every program on the terminal has closed it
                    raise AssertionError(f"no {what!r} on the terminal: {self.text!r}") from e

    async def drain(self) -> None:
        """Read what is left, once every program on the terminal is gone."""
        with contextlib.suppress(OSError):
            while chunk := os.read(self.fd, 4096):
                self.text += chunk.decode(errors="replace")
