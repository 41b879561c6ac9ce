"""mountPropagation: HostToContainer sees what the host mounts beneath a volume later,
Bidirectional (privileged) shows the host what the container mounts there.

The host's side is a shared bind mount the test makes of a directory of its
own (the machine's mounts here are private, as on many hosts; a systemd host's
are shared), and removes afterwards: the leak fixture finds the mount table as
it was. Each container says `up` once its mounts are made; the test then mounts
on the host, or waits for the container's mount to show.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from podvisor.init import syscalls
from tests.faults.pods import Supervisor
from tests.security.conftest import manifest, sh

pytestmark = pytest.mark.needs_root


def mounted(path: Path) -> bool:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == str(path) for line in lines)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A directory of the host's that is a shared mount, as / is on a systemd host."""
    path = tmp_path / "shared"
    path.mkdir()
    syscalls.mount(str(path), str(path), None, syscalls.MS_BIND)
    try:
        syscalls.mount("none", str(path), None, syscalls.MS_SHARED)
        yield path
    finally:
        for inner in (path / "from-host", path / "from-container"):
            while mounted(inner):
                syscalls.umount(str(inner), syscalls.MNT_DETACH)
        syscalls.umount(str(path), syscalls.MNT_DETACH)


def test_host_to_container_sees_the_hosts_later_mounts_and_bidirectional_shows_its_own(
    tmp_path: Path, shared: Path
) -> None:
    (shared / "from-host").mkdir()
    (shared / "from-container").mkdir()
    watch = (
        "echo up; until [ -e /vol/from-host/made-on-host ]; do sleep 0.1; done; echo seen; sleep 60"
    )
    show = (
        "mount -t tmpfs -o size=64k none /vol/from-container && "
        "echo x > /vol/from-container/made-in-container && echo up; "
        "trap 'umount /vol/from-container; exit 0' TERM; sleep 60 & wait"
    )
    volume = json.dumps([{"name": "vol", "hostPath": {"path": str(shared), "type": "Directory"}}])
    body = f"""
        containers:
          - name: watcher
            command: {sh(watch.replace("/vol", str(tmp_path / "w")))}
            volumeMounts: [{{name: vol, mountPath: {tmp_path / "w"}, mountPropagation: HostToContainer}}]
          - name: private
            command: {sh(watch.replace("/vol", str(tmp_path / "p")))}
            volumeMounts: [{{name: vol, mountPath: {tmp_path / "p"}}}]
          - name: shower
            securityContext: {{privileged: true}}
            command: {sh(show.replace("/vol", str(tmp_path / "s")))}
            volumeMounts: [{{name: vol, mountPath: {tmp_path / "s"}, mountPropagation: Bidirectional}}]
        volumes: {volume}
        """
    for d in ("w", "p", "s"):
        (tmp_path / d).mkdir()
    path = tmp_path / "vol-propagation.yaml"
    path.write_text(manifest(body, "vol-propagation"))
    with Supervisor(path) as sup:
        for name in ("watcher", "private", "shower"):
            sup.wait_line(name, "up")
        # The container's mount shows on the host.
        assert (shared / "from-container" / "made-in-container").read_text() == "x\n"
        syscalls.mount("none", str(shared / "from-host"), "tmpfs", 0, "size=64k")
        (shared / "from-host" / "made-on-host").write_text("y")
        sup.wait_line("watcher", "seen")
        with contextlib.suppress(AssertionError):
            sup.wait_line("private", "seen", timeout=1)
        sup.signal(signal.SIGTERM)
        sup.wait(timeout=60)
    assert sup.out.of("private") == ["up"]  # None: the host's later mounts stay unseen
    assert not mounted(shared / "from-container")  # its unmount showed on the host too
