"""Running real pods from the tests: in-process on both backends, or as `podvisor run`."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podvisor.supervisor import manifest
from podvisor.supervisor.pod.runner import PodRunner, RunOptions


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class PodResult:
    status: int
    stdout: str
    stderr: str

    def lines(self, container: str) -> list[str]:
        prefix = f"{container} | "
        found = []
        for line in self.stdout.splitlines():
            name, sep, text = line.partition(" | ")
            if sep and name.strip() == container:
                found.append(text)
        return found or [
            ln[len(prefix) :] for ln in self.stdout.splitlines() if ln.startswith(prefix)
        ]


def pod_yaml(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n"


async def run_pod(text: str, **options: object) -> PodResult:
    loaded = manifest.load("pod.yaml", pod_yaml(text))
    out, err = io.StringIO(), io.StringIO()
    options.setdefault("metrics_address", "off")  # tests run side by side: no port 9464
    runner = PodRunner(loaded, RunOptions(stdout=out, stderr=err, **options))  # type: ignore[arg-type]
    status = await runner.run()
    return PodResult(status, out.getvalue(), err.getvalue())


def podvisor_command() -> list[str]:
    script = Path(sys.executable).with_name("podvisor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "podvisor.init.entry"]


@contextlib.contextmanager
def podvisor_run(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`podvisor run PATH` as a child; killed (if still running) and reaped on the way out."""
    if not any(a.startswith("--metrics-address") for a in args):
        args = ("--metrics-address", "off", *args)  # tests run side by side: no port 9464
    with subprocess.Popen(
        [*podvisor_command(), "run", *args, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    ) as proc:
        try:
            yield proc
        finally:
            proc.kill()
            proc.communicate()
