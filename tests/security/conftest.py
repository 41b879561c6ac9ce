"""Pods run as a user runs them, and what their processes show of themselves.

`run_pod` runs ``podvisor run`` on a manifest as a child process, in a run
directory of the test's own, and returns each container's lines; `status`
reads the /proc/self/status lines a container printed. Programs come from
this machine (``sh``, ``python3``), as in every podvisor pod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.pods import podvisor_command

#: The /proc/self/status lines a container prints for the tests.
STATUS = r'grep -E "^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs|Seccomp):" /proc/self/status'
#: What containerd and Docker give a container that asks for nothing.
DEFAULT_CAPS = "00000000a80425fb"


def sh(script: str) -> str:
    """``[sh, -c, SCRIPT]`` as a manifest's command (JSON is YAML, quotes and all)."""
    return json.dumps(["sh", "-c", script])


@dataclass
class Ran:
    status: int
    lines: dict[str, list[str]]
    stderr: str

    def of(self, container: str) -> list[str]:
        return self.lines.get(container, [])


def web_pod(spec: str = "", container: str = "", annotations: str = "") -> str:
    """A Pod "web" whose one container "web" sleeps, read but never run: *spec*, *container*
    and *annotations* are YAML lines added to its spec, its container and its annotations."""
    meta = f"  annotations:\n{textwrap.indent(annotations, '    ')}\n" if annotations else ""
    return (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n"
        + meta
        + "spec:\n"
        + textwrap.indent(textwrap.dedent(spec), "  ")
        + "  containers:\n  - name: web\n    command: [sleep, infinity]\n"
        + textwrap.indent(textwrap.dedent(container), "    ")
    )


def manifest(body: str, name: str, annotations: dict[str, str] | None = None) -> str:
    given = json.dumps({"podvisor.io/network": "loopback", **(annotations or {})})
    head = f"""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {given}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 3
    """
    return textwrap.dedent(head) + textwrap.indent(textwrap.dedent(body).strip(), "  ") + "\n"


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A run directory of the test's own that any user may enter."""
    path = Path(tempfile.mkdtemp(prefix="pv-sec-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_pod(
    run_dir: Path,
    name: str,
    body: str,
    *,
    timeout: float = 60,
    annotations: dict[str, str] | None = None,
    objects: str = "",
) -> Ran:
    """`podvisor run` of the pod *body*; *objects*: YAML documents that follow it in the file."""
    path = run_dir / f"{name}.yaml"
    path.write_text(manifest(body, name, annotations) + objects)
    env = {**os.environ, "PODVISOR_RUN_DIR": str(run_dir)}
    done = subprocess.run(
        [*podvisor_command(), "run", "--metrics-address", "off", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    lines: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        container, bar, said = line.partition(" | ")
        if bar:
            lines.setdefault(container.strip(), []).append(said)
    return Ran(done.returncode, lines, done.stderr)


def status(lines: list[str]) -> dict[str, str]:
    """The /proc/PID/status fields among *lines*, by name (values with single spaces)."""
    found = {}
    for line in lines:
        key, colon, value = line.partition(":")
        if (colon and key in ("Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp")) or (
            colon and key.startswith("Cap")
        ):
            found[key] = " ".join(value.split())
    return found


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every uid may read, on a file system that honours setuid bits."""
    path = Path(tempfile.mkdtemp(prefix="pv-sec-bin-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


#: A Python any uid may run (the test's own may sit under /root, which is 0700).
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
