"""A container's terminal (tty: true) and stdin (stdin: true), and `podvisor attach -i/-t`."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
import textwrap
from pathlib import Path

import anyio
import pytest

from tests.control.conftest import REPO, child, control_pod, ctl_argv, ctl_env
from tests.control.test_exec import Screen, caller_terminal
from tests.sidecars.support import WAIT
from tests.supervisor.conftest import podvisor_command

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


def _pod(name: str, *containers: str, policy: str = "Never") -> str:
    listed = "\n".join(f"            - {c}" for c in containers)
    return f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: loopback}}
        spec:
          restartPolicy: {policy}
          terminationGracePeriodSeconds: 1
          containers:
{listed}
    """


async def test_tty_gives_the_container_a_terminal_and_its_output_the_log(run_dir: Path) -> None:
    text = _pod(
        "att-tty",
        '{name: term, tty: true, command: ["sh", "-c", "tty; test -t 1 && echo out-too"]}',
        '{name: plain, command: ["sh", "-c", "tty; echo done"]}',
    )
    async with control_pod(text, run_dir) as pod:
        assert await pod.finished() == 0, pod.log.getvalue()
    lines = (ln.partition(" | ") for ln in pod.log.lines)
    term = [t for name, _, t in lines if name.strip() == "term"]
    assert term[0].startswith("/dev/pts/"), pod.log.getvalue()
    assert term[1] == "out-too"  # stdout is the terminal too, and its lines reach the log
    assert pod.log.count("plain", "not a tty") == 1


async def test_attach_i_writes_into_stdin_and_stdin_once_closes_it(run_dir: Path) -> None:
    script = "echo ready; read line; echo got $line; cat; echo eof"
    text = _pod(
        "att-stdin",
        f'{{name: reader, stdin: true, stdinOnce: true, command: ["sh", "-c", "{script}"]}}',
        '{name: other, command: ["sleep", "1"]}',
    )
    async with control_pod(text, run_dir) as pod:
        await pod.log.said("reader", "ready")
        refused = await pod.ctl("attach", "att-stdin", "-c", "other", "-i", stdin=b"x\n")
        # Nothing attached yet: the program waits on its stdin, open and empty.
        assert pod.log.count("reader", "eof") == 0
        attached = await pod.ctl("attach", "att-stdin", "-c", "reader", "-i", stdin=b"hi\nmore\n")
        # The attach ended with the pod: at the end of its input it left, stdinOnce
        # closed the stdin, cat read end-of-file and the program ended.
        assert await pod.finished() == 0
    assert attached.returncode == 0, attached.stderr
    assert attached.stdout.splitlines() == ["got hi", "more", "eof"]
    assert refused.returncode == 1
    assert "container 'other' has no stdin to attach to" in refused.stderr


async def test_attach_it_types_into_the_containers_terminal(run_dir: Path) -> None:
    script = "printf 'name? '; read line; echo got $line; exec sleep 1000"
    text = _pod(
        "att-term",
        f'{{name: shell, stdin: true, tty: true, command: ["sh", "-c", "{script}"]}}',
        policy="Always",
    )
    async with control_pod(text, run_dir) as pod:
        await pod.log.said_in("shell", "name? ")
        argv = ["setsid", "--ctty", *ctl_argv("attach", "att-term", "-it", "--tail", "1")]
        with caller_terminal(24, 80) as (master, terminal):
            async with child(
                argv, stdin=terminal, stdout=terminal, stderr=terminal, env=ctl_env(run_dir)
            ) as client:
                screen = Screen(master)
                await screen.expect("name? ")  # the last line, a prompt without its newline
                os.write(master, b"podvisor\r")  # Enter, as a terminal sends it in raw mode
                await screen.expect("got podvisor")
                os.write(master, b"\x10\x11")  # Ctrl-P Ctrl-Q: leave, the pod running
                with anyio.fail_after(WAIT):
                    await client.wait()
        await pod.log.said("shell", "got podvisor")
        assert pod.container("shell").restart_count == 0
        assert not pod.done.is_set()


async def test_attach_it_gives_the_container_the_windows_size_as_it_changes(
    run_dir: Path,
) -> None:
    # The shell says its terminal's size each time the kernel tells it of a change.
    script = "trap 'stty size' WINCH; echo ready; while :; do sleep 0.1; done"
    text = _pod(
        "att-size",
        f'{{name: shell, stdin: true, tty: true, command: ["sh", "-c", "{script}"]}}',
        policy="Always",
    )
    async with control_pod(text, run_dir) as pod:
        await pod.log.said("shell", "ready")
        argv = ["setsid", "--ctty", *ctl_argv("attach", "att-size", "-it", "--tail", "1")]
        with caller_terminal(24, 80) as (master, terminal):
            async with child(
                argv, stdin=terminal, stdout=terminal, stderr=terminal, env=ctl_env(run_dir)
            ) as client:
                await pod.log.said("shell", "24 80")  # the size at the attach
                # The window is made larger, as a terminal emulator's is dragged.
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
                await pod.log.said("shell", "30 100")
                os.write(master, b"\x10\x11")  # Ctrl-P Ctrl-Q: leave, the pod running
                with anyio.fail_after(WAIT):
                    await client.wait()


def test_check_says_what_run_gives_the_container() -> None:
    text = _pod("att-check", "{name: t, tty: true, stdin: true, stdinOnce: true, command: [sh]}")
    done = subprocess.run(
        [*podvisor_command(), "check", "-"],
        input=textwrap.dedent(text),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert "    tty: a terminal of its own for stdin, stdout and stderr" in done.stdout
    assert "    stdin: open, written by `podvisor attach -i`, closed when the first" in done.stdout


def test_attach_has_its_options_in_help() -> None:
    done = subprocess.run(
        ctl_argv("attach", "--help"), capture_output=True, text=True, cwd=REPO, check=True
    )
    for option in ("-i, --stdin", "-t, --tty", "-c CONTAINER"):
        assert option in done.stdout
