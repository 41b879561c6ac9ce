"""The commands' help, usage errors and the empty host, without a pod."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from podvisor.supervisor.cli.commands import COMMANDS
from tests.control.conftest import REPO, ctl_argv, ctl_env
from tests.supervisor.conftest import podvisor_command


def ctl(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ctl_argv(*args),
        check=False,
        capture_output=True,
        text=True,
        env=ctl_env(run_dir),
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, run_dir: Path) -> None:
    done = ctl(run_dir, command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: podvisor {command} ")
    assert "-o {text,json}, --output {text,json}" in done.stdout


def test_version_as_json() -> None:
    def version(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [*podvisor_command(), "version", *args]
        return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)

    text, as_json = version(), version("-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert text.stdout == f"podvisor {json.loads(as_json.stdout)['version']}\n"


def test_usage_errors_exit_2(run_dir: Path) -> None:
    assert ctl(run_dir, "status").returncode == 2  # no POD
    assert ctl(run_dir, "kill", "web").returncode == 2  # no CONTAINER
    assert ctl(run_dir, "ps", "-o", "yaml").returncode == 2


def test_ps_on_a_host_without_pods(run_dir: Path) -> None:
    empty = ctl(run_dir, "ps")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "no pods run on this host\n")
    as_json = ctl(run_dir, "ps", "-o", "json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == []


@pytest.mark.parametrize(
    "args",
    [("status", "web"), ("logs", "web"), ("exec", "web", "--", "true"), ("stop", "web")],
)
def test_a_pod_that_is_not_there(args: tuple[str, ...], run_dir: Path) -> None:
    done = ctl(run_dir, *args)
    assert done.returncode == 1
    assert (
        done.stderr == "podvisor: no pod named 'web' runs on this host (`podvisor ps` lists them)\n"
    )
