"""`podvisor exec`: a command in a running container, with the caller's stdio or terminal."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import textwrap
from collections.abc import AsyncIterator, Iterator
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
        # A cgroup namespace rooted at the container's cgroup: every hierarchy shows "/".
        assert cgroups, done.stdout
        assert all(line.endswith(":/") for line in cgroups), cgroups
        assert done.stderr == "to-stderr\n"


async def test_exec_passes_stdin_only_with_i(run_dir: Path) -> None:
    async with control_pod(serving_pod("ctl-stdin"), run_dir) as pod:
        await pod.serving()
        upper = await pod.ctl("exec", "-i", "ctl-stdin", "--", "tr", "a-z", "A-Z", stdin=b"hi\n")
        assert (upper.returncode, upper.stdout) == (0, "HI\n"), upper.stderr
        # Without -i the command reads /dev/null: it ends at once instead of waiting.
        alone = await pod.ctl("exec", "ctl-stdin", "--", "cat", stdin=b"not passed\n")
        assert (alone.returncode, alone.stdout) == (0, ""), alone.stderr


async def test_exec_as_json_keeps_the_output_for_one_object(run_dir: Path) -> None:
    # More than a pipe holds, so a client that read only at the end would hang.
    script = "head -c 200000 /dev/zero | tr '\\0' x; echo; echo oops >&2; kill -TERM $$"
    async with control_pod(serving_pod("ctl-json"), run_dir) as pod:
        await pod.serving()
        done = await pod.ctl("exec", "ctl-json", "-o", "json", "--", "sh", "-c", script)
        assert done.returncode == 128 + signal.SIGTERM, done.stderr
        found = json.loads(done.stdout)
        assert found == {
            "command": ["sh", "-c", script],
            "exit_code": None,
            "signal": signal.SIGTERM,
            "stdout": "x" * 200000 + "\n",
            "stderr": "oops\n",
        }
        both = await pod.ctl("exec", "-t", "-o", "json", "ctl-json", "--", "true")
        assert both.returncode == 2
        assert "choose one" in both.stderr


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
    # Fails (ENOTTY) unless the terminal on fd 0 is this session's controlling one.
    [session] = struct.unpack("i", fcntl.ioctl(0, 0x5429, b"0000"))  # TIOCGSID
    same = session == os.getsid(0)
    foreground = os.tcgetpgrp(0) == os.getpgrp()
    rows, cols = struct.unpack("hh", fcntl.ioctl(1, termios.TIOCGWINSZ, b"0000"))
    print("tty", same, foreground, os.isatty(1), os.isatty(2), os.environ["TERM"], flush=True)
    print("start size", rows, cols, flush=True)
    while signal.sigwait({signal.SIGWINCH, signal.SIGINT}) == signal.SIGWINCH:
        rows, cols = struct.unpack("hh", fcntl.ioctl(1, termios.TIOCGWINSZ, b"0000"))
        print("size", rows, cols, flush=True)
    print("interrupted", flush=True)
    raise SystemExit(3)
""")


@contextlib.contextmanager
def caller_terminal(rows: int, cols: int) -> Iterator[tuple[int, int]]:
    """A pseudo-terminal for the client, as a terminal emulator gives a shell: (master, slave)."""
    master, terminal = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        yield master, terminal
    finally:
        os.close(master)
        os.close(terminal)


@contextlib.asynccontextmanager
async def exec_it(
    run_dir: Path, pod: str, command: list[str], *, rows: int = 24, cols: int = 80, term: str = ""
) -> AsyncIterator[tuple[int, anyio.abc.Process]]:
    """`podvisor exec -it POD -- COMMAND` as from a shell, a terminal of the caller's its
    controlling one: (the terminal's master, the client)."""
    argv = ["setsid", "--ctty", *ctl_argv("exec", "-it", pod, "--", *command)]
    env = ctl_env(run_dir) | ({"TERM": term} if term else {})
    with caller_terminal(rows, cols) as (master, terminal):
        async with child(
            argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=REPO
        ) as client:
            yield master, client


async def interrupt_a_sleep_then_exit(
    master: int, screen: Screen, client: anyio.abc.Process
) -> None:
    """In an interactive shell: Ctrl-C stops its foreground `sleep` (status 130) and not the
    shell, whose `exit 7` then ends the client with 7."""
    os.write(master, b"sleep 611\r")
    await screen.wait_for_process("sleep 611")
    os.write(master, b"\x03")  # SIGINT to the shell's foreground job, not to the shell
    os.write(master, b"echo after-sleep-$?\r")
    await screen.expect("after-sleep-130")
    os.write(master, b"exit 7\r")
    with anyio.fail_after(WAIT):
        code = await client.wait()
    assert code == 7, screen.text


async def test_exec_with_a_terminal(run_dir: Path) -> None:
    """-it: a terminal of the command's own, the caller's size; resizes and Ctrl-C reach it."""
    async with control_pod(serving_pod("ctl-tty"), run_dir) as pod:
        await pod.serving()
        # The client runs as from a shell: the terminal is its controlling one.
        argv = ["setsid", "--ctty"]
        argv += ctl_argv("exec", "-it", "ctl-tty", "--", sys.executable, "-c", TERMINAL_PROGRAM)
        env = {**ctl_env(run_dir), "TERM": "xterm-pv"}
        with caller_terminal(40, 120) as (master, terminal):
            settings = termios.tcgetattr(terminal)
            async with child(
                argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=REPO
            ) as client:
                screen = Screen(master)
                await screen.expect("start size 40 120")
                assert "tty True True True True xterm-pv" in screen.text
                # The caller's terminal is raw while the command has it.
                assert not termios.tcgetattr(terminal)[3] & termios.ICANON
                # What a terminal emulator does when its window is resized.
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
                await screen.expect("size 33 99")
                os.write(master, b"\x03")  # Ctrl-C, a byte in raw mode, a signal on the pty
                await screen.expect("interrupted")
                with anyio.fail_after(WAIT):
                    code = await client.wait()
                assert code == 3, screen.text
            assert termios.tcgetattr(terminal) == settings  # put back as it was


async def test_a_paste_the_command_never_reads_holds_up_nothing(run_dir: Path) -> None:
    """Keys the pty cannot take wait in the client: the output and the exit still come."""
    async with control_pod(serving_pod("ctl-paste"), run_dir) as pod:
        await pod.serving()
        script = "sleep 1; echo done-$((40+2)); exit 4"
        async with exec_it(run_dir, "ctl-paste", ["sh", "-c", script]) as (master, client):
            screen = Screen(master)
            pasted = 0
            with anyio.move_on_after(0.5):  # as much as the terminals take: far over 4 KiB
                while pasted < 256 * 1024:
                    try:
                        pasted += os.write(master, b"x" * 4096)
                    except BlockingIOError:
                        await anyio.sleep(0.01)
            assert pasted > 8192
            await screen.expect("done-42")
            with anyio.fail_after(WAIT):
                code = await client.wait()
            assert code == 4, screen.text


async def test_a_shell_through_exec_it_has_job_control(run_dir: Path) -> None:
    """Ctrl-C stops the program the shell runs, not the shell: a terminal's foreground."""
    async with control_pod(serving_pod("ctl-sh"), run_dir) as pod:
        await pod.serving()
        async with exec_it(run_dir, "ctl-sh", ["sh", "-i"]) as (master, client):
            screen = Screen(master)
            os.write(master, b"echo shell-$((6*7))\r")
            await screen.expect("shell-42")
            await interrupt_a_sleep_then_exit(master, screen, client)


# --- Reading what comes back --------------------------------------------------------


class Reader:
    """A child's stdout, read until a text shows up (bounded)."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.text = ""

    async def expect(self, what: str) -> None:
        with anyio.move_on_after(WAIT):
            await self._read_until(what)
        if what not in self.text:
            raise AssertionError(f"no {what!r} on the terminal within {WAIT}s: {self.text!r}")

    async def _read_until(self, what: str) -> None:
        if True:
            while what not in self.text:
                self.text += (await self.stream.receive()).decode()


class Screen:
    """The other end of a pseudo-terminal: what the programs on it have written."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.text = ""

    async def expect(self, what: str) -> None:
        with anyio.move_on_after(WAIT):
            await self._read_until(what)
        if what not in self.text:
            raise AssertionError(f"no {what!r} on the terminal within {WAIT}s: {self.text!r}")

    async def _read_until(self, what: str) -> None:
        while what not in self.text:
            await anyio.wait_readable(self.fd)
            try:
                self.text += os.read(self.fd, 4096).decode(errors="replace")
            except BlockingIOError:
                continue
            except OSError as e:  # EIO: every program on the terminal has closed it
                raise AssertionError(f"no {what!r} on the terminal: {self.text!r}") from e

    async def wait_for_process(self, command: str) -> None:
        """Wait (bounded) until a process runs *command* (typed into a shell on the terminal)."""
        with anyio.fail_after(WAIT):
            while True:
                if any(_cmdline(pid) == command for pid in os.listdir("/proc") if pid.isdigit()):
                    return
                await anyio.sleep(0.05)

    async def drain(self) -> None:
        """Read what is left, once every program on the terminal is gone."""
        with contextlib.suppress(OSError):
            while chunk := os.read(self.fd, 4096):
                self.text += chunk.decode(errors="replace")


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
