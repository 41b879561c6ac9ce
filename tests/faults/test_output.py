"""The supervisor's own stdout misbehaves: closed, on a full disk, or never read.

`podvisor run pod.yaml | head -3` closes the pipe after three lines; a
stdout on a full tmpfs fails every write with ENOSPC; a pipe nobody reads
fills and stays full. In each case the pod must run on, /livez and
`podvisor status` must answer within a second throughout, and every line the
container wrote must be in its log file. The log folder itself on a full
tmpfs must not stop the container either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from podvisor.supervisor.control.client import Client
from podvisor.supervisor.control.wire import Status, StatusReply
from podvisor.supervisor.pod import logfiles
from tests.faults.conftest import Record
from tests.faults.pods import free_port, podvisor_command, write_pod

pytestmark = pytest.mark.faults

#: How long the stdout stays unread, and how often the pod is asked meanwhile.
UNREAD_SECONDS = 15
LINES = 20_000
#: The bound on each answer the pod gives while its stdout misbehaves: a stalled
#: supervisor never answers, a working one within a second on an idle machine;
#: the slowest answer is recorded as a figure.
ANSWER = 5.0


def _pod(tmp_path: Path, name: str, port: int, script: str, extra: str = "") -> Path:
    return write_pod(
        tmp_path,
        name,
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          annotations: {{podvisor.io/network: loopback, podvisor.io/metrics-address: "127.0.0.1:{port}"{extra}}}
        spec:
          terminationGracePeriodSeconds: 10
          containers:
            - name: main
              command: [sh, -c, {script!r}]
        """,
    )


#: Numbered lines, then "done", then wait for TERM.
FLOOD = (
    "trap 'exit 0' TERM; i=0; while [ $i -lt {n} ]; do echo line $i; i=$((i+1)); done; "
    "echo done; while :; do sleep 0.2; done"
)
#: The same in bursts of 1,000 lines with a pause between: a steady logger, not a flood.
BURSTS = (
    "trap 'exit 0' TERM; i=0; while [ $i -lt {n} ]; do echo line $i; i=$((i+1)); "
    "[ $((i % 1000)) -eq 0 ] && sleep 0.1; done; echo done; while :; do sleep 0.2; done"
)


@contextlib.contextmanager
def _supervisor(
    manifest: Path, stdout: IO[bytes] | int, log_dir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [*podvisor_command(), "run", str(manifest)],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, "PODVISOR_LOG_DIR": str(log_dir)},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()


def _livez(port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=ANSWER) as reply:
        assert reply.status == 200


def _status(pod: str) -> StatusReply:
    with Client.open(pod, timeout=ANSWER) as client:
        return client.request(Status(), StatusReply)


def _answers_within_bound(pod: str, port: int, seconds: float) -> tuple[int, float]:
    """Ask /livez and status again and again for *seconds*: how often, and the slowest."""
    asked, slowest = 0, 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        _livez(port)
        reply = _status(pod)
        assert reply.containers[0].restarts == 0
        slowest = max(slowest, time.monotonic() - started)
        asked += 1
    return asked, slowest


def _wait_for_file_line(log_dir: Path, pod: str, text: str, timeout: float = 60) -> list[str]:
    """The texts of main's instance 0 once one of them is *text* (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        folder = logfiles.find_pod_folder(log_dir, pod)
        texts = [r.text for r in logfiles.read_instance(folder, "main", 0)] if folder else []
        if text in texts:
            return texts
        assert time.monotonic() < deadline, f"{text!r} not in the log file: {texts[-5:]}"
        time.sleep(0.1)


def _wait_ready(pod: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            _status(pod)
            return
        assert time.monotonic() < deadline, f"pod {pod} never answered"
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_run_piped_to_head_runs_on(tmp_path: Path, faults: Record) -> None:
    name, port = "fault-head", free_port()
    script = FLOOD.format(n=LINES)
    with _supervisor(
        _pod(tmp_path, name, port, script), subprocess.PIPE, tmp_path / "logs"
    ) as proc:
        assert proc.stdout is not None
        first = [proc.stdout.readline() for _ in range(3)]
        proc.stdout.close()  # as `head -3` exits
        assert all(line.startswith(b"main | line") for line in first)
        texts = _wait_for_file_line(tmp_path / "logs", name, "done")
        asked, slowest = _answers_within_bound(name, port, 3)
        assert proc.poll() is None, "the supervisor died"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
    assert texts == [f"line {i}" for i in range(LINES)] + ["done"]
    assert "BrokenPipeError" not in err
    faults.runs = asked
    faults.figure("slowest answer", f"{slowest:.2f}s")
    faults.figure("lines", LINES)


@pytest.mark.timeout(120)
@pytest.mark.needs_root
def test_stdout_on_a_full_file_system_runs_on(tmp_path: Path, faults: Record) -> None:
    name, port = "fault-full-stdout", free_port()
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "podvisor-full", str(full)], check=True
    )
    try:
        filler = os.open(full / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while True:
                os.write(filler, b"\0" * 4096)
        os.close(filler)
        with (
            (full / "stdout").open("wb") as stdout,
            _supervisor(
                _pod(tmp_path, name, port, FLOOD.format(n=LINES)), stdout, tmp_path / "logs"
            ) as proc,
        ):
            texts = _wait_for_file_line(tmp_path / "logs", name, "done")
            asked, slowest = _answers_within_bound(name, port, 3)
            assert proc.poll() is None, "the supervisor died"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    finally:
        subprocess.run(["umount", "-l", str(full)], check=True)
    assert texts == [f"line {i}" for i in range(LINES)] + ["done"]
    faults.runs = asked
    faults.figure("slowest answer", f"{slowest:.2f}s")


@pytest.mark.timeout(120)
def test_stdout_nobody_reads_does_not_stall_the_supervisor(tmp_path: Path, faults: Record) -> None:
    name, port = "fault-unread", free_port()
    with _supervisor(
        _pod(tmp_path, name, port, BURSTS.format(n=LINES * 5)), subprocess.PIPE, tmp_path / "logs"
    ) as proc:
        _wait_ready(name)
        asked, slowest = _answers_within_bound(name, port, UNREAD_SECONDS)
        texts = _wait_for_file_line(tmp_path / "logs", name, "done")
        assert proc.poll() is None, "the supervisor died"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        proc.stdout.read()  # let it write what it held, and end
        assert proc.wait(timeout=30) == 0
    assert texts == [f"line {i}" for i in range(LINES * 5)] + ["done"]
    faults.runs = asked
    faults.figure("slowest answer", f"{slowest:.2f}s")
    faults.figure("unread seconds", UNREAD_SECONDS)


@pytest.mark.timeout(120)
@pytest.mark.needs_root
def test_log_folder_on_a_full_file_system_keeps_the_pod_running(
    tmp_path: Path, faults: Record
) -> None:
    name, port = "fault-full-logs", free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "podvisor-logs", str(logs)], check=True
    )
    try:
        with _supervisor(
            _pod(tmp_path, name, port, FLOOD.format(n=LINES)), subprocess.PIPE, logs
        ) as proc:
            assert proc.stdout is not None
            seen = 0
            for raw in proc.stdout:
                seen += 1
                if raw == b"main | done\n":
                    break
            asked, slowest = _answers_within_bound(name, port, 2)
            assert proc.poll() is None, "the supervisor died"
            proc.send_signal(signal.SIGTERM)
            proc.stdout.read()
            assert proc.wait(timeout=30) == 0
            assert proc.stderr is not None
            err = proc.stderr.read().decode()
    finally:
        subprocess.run(["umount", "-l", str(logs)], check=True)
    assert seen == LINES + 1, "the container's output stopped"
    assert err.count("cannot write the log files") == 1, err
    faults.runs = asked
    faults.figure("slowest answer", f"{slowest:.2f}s")
