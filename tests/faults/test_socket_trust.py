"""A user's fake control socket, where root's podvisor might look for pods.

A user may bind a socket named like a pod in their own runtime folder, or
serve one root's podvisor would find, and wait for root's command line to
hand it descriptors (`podvisor exec -i` passes its stdin and stdout). Root's
podvisor must never list such a socket, never ask it anything, and never
send it a descriptor: the fake server records every packet it gets.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Record
from tests.faults.pods import AS_NOBODY, NOBODY, podvisor_command

pytestmark = [pytest.mark.faults, pytest.mark.needs_root]

#: The fake server: listens on fd N (argv[1] "fd:N", bound by the test) or binds
#: the path argv[1]; writes "ready", then one line per packet with its descriptors.
FAKE = """
import array, os, socket, sys
log = open(sys.argv[2], "a", buffering=1)
if sys.argv[1].startswith("fd:"):
    srv = socket.socket(fileno=int(sys.argv[1][3:]))
else:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(sys.argv[1])
    os.chmod(sys.argv[1], 0o777)
srv.listen(8)
log.write("ready\\n")
while True:
    conn, _ = srv.accept()
    data, anc, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(64))
    fds = array.array("i")
    for level, kind, payload in anc:
        fds.frombytes(payload)
    log.write(f"packet {len(data)} bytes, {len(fds)} fds\\n")
    conn.sendmsg([b'{"ok": true, "pods": []}'])
    conn.close()
"""


def _fake_server(where: str, log: Path, fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    log.touch()
    os.chown(log, NOBODY, NOBODY)
    proc = subprocess.Popen([*AS_NOBODY, sys.executable, "-c", FAKE, where, str(log)], pass_fds=fds)
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text():
        assert proc.poll() is None, "the fake server did not start"
        assert time.monotonic() < deadline, "the fake server never got ready"
        time.sleep(0.05)
    return proc


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podvisor_command(), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def user_runtime() -> Iterator[Path]:
    """/run/user/65534/podvisor/pods, as a user's own podvisor would make it."""
    base = Path(f"/run/user/{NOBODY}")
    made = not base.exists()
    pods = base / "podvisor" / "pods"
    pods.mkdir(parents=True, exist_ok=True)
    for d in (base, base / "podvisor", pods):
        os.chown(d, NOBODY, NOBODY)
    yield pods
    shutil.rmtree(base if made else base / "podvisor", ignore_errors=True)


@pytest.mark.timeout(120)
def test_a_fake_socket_in_a_users_runtime_folder_is_never_used(
    user_runtime: Path, tmp_path: Path, faults: Record
) -> None:
    log = tmp_path / "fake.log"
    fake = _fake_server(str(user_runtime / "fault-evil.sock"), log)
    try:
        listed = _ctl("ps", "-o", "json")
        asked = _ctl("exec", "-i", "fault-evil", "--", "true")
    finally:
        fake.kill()
        fake.wait()
    assert "fault-evil" not in listed.stdout
    assert asked.returncode != 0
    assert "no pod named 'fault-evil'" in asked.stderr
    assert "packet" not in log.read_text()
    faults.runs = 2


@pytest.mark.timeout(120)
def test_a_socket_served_by_another_user_never_gets_descriptors(
    tmp_path: Path, faults: Record
) -> None:
    run = tmp_path / "run"
    (run / "pods").mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.bind(str(run / "pods" / "fault-borrowed.sock"))  # root's file, in root's folder
    log = tmp_path / "fake.log"
    fake = _fake_server(f"fd:{sock.fileno()}", log, (sock.fileno(),))
    sock.close()
    try:
        env = {**os.environ, "PODVISOR_RUN_DIR": str(run)}
        asked = subprocess.run(
            [*podvisor_command(), "exec", "-i", "fault-borrowed", "--", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
    finally:
        fake.kill()
        fake.wait()
    assert asked.returncode != 0
    assert "is served by uid 65534" in asked.stderr, asked.stderr
    # It was connected to (SO_PEERCRED needs a connection), then hung up on unasked.
    assert set(log.read_text().splitlines()) <= {"ready", "packet 0 bytes, 0 fds"}
    faults.runs = 1
