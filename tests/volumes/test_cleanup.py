"""Nothing of a pod's volumes outlives it: not after its end, not after its supervisor's SIGKILL.

The emptyDirs (one on disk, one in memory) live in the pod's directory of
the store, and their mounts in the pod's and its containers' mount
namespaces. After the pod, and after its supervisor is SIGKILLed (its init
then ends the pod and cleans up in its place), the store holds no pod's
directory (`image_store` checks), and the host's mount table is as it was
(the leak fixture checks).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from podvisor.supervisor.images import ImageStore
from tests.faults import procfs
from tests.faults.pods import Supervisor, write_pod
from tests.security.conftest import run_pod, sh

GRACE = 3


def _pod_directories(store: ImageStore) -> list[str]:
    containers = Path(store.root) / "containers"
    return sorted(p.name for p in containers.iterdir()) if containers.exists() else []


def _volumes(tmp_path: Path) -> tuple[str, str]:
    disk, memory = tmp_path / "disk", tmp_path / "memory"
    disk.mkdir()
    memory.mkdir()
    mounts = f"[{{name: disk, mountPath: {disk}}}, {{name: memory, mountPath: {memory}}}]"
    volumes = "[{name: disk, emptyDir: {}}, {name: memory, emptyDir: {medium: Memory}}]"
    return mounts, volumes


def test_after_the_pod_its_empty_dirs_are_gone(
    run_dir: Path, tmp_path: Path, image_store: ImageStore
) -> None:
    mounts, volumes = _volumes(tmp_path)
    ran = run_pod(
        run_dir,
        "vol-gone",
        f"""
        containers:
          - name: main
            command: {sh(f"echo x > {tmp_path}/disk/f; echo y > {tmp_path}/memory/f; echo done")}
            volumeMounts: {mounts}
        volumes: {volumes}
        """,
    )
    assert ran.of("main") == ["done"], ran.stderr
    assert _pod_directories(image_store) == []
    assert not (tmp_path / "disk" / "f").exists()


@pytest.mark.timeout(120)
def test_after_a_killed_supervisor_its_init_removes_the_empty_dirs(
    tmp_path: Path, image_store: ImageStore
) -> None:
    mounts, volumes = _volumes(tmp_path)
    script = f"echo x > {tmp_path}/disk/f; echo y > {tmp_path}/memory/f; echo up; sleep 60"
    path = write_pod(
        tmp_path,
        "vol-killed",
        f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: vol-killed
          annotations: {{podvisor.io/network: loopback}}
        spec:
          terminationGracePeriodSeconds: {GRACE}
          containers:
            - name: main
              command: {sh(script)}
              volumeMounts: {mounts}
          volumes: {volumes}
        """,
    )
    with Supervisor(path) as sup:
        sup.wait_line("main", "up")
        assert len(_pod_directories(image_store)) == 1  # the pod's, with its emptyDirs
        tree = procfs.descendants(sup.pid)
        sup.signal(signal.SIGKILL)
        sup.wait()
    procfs.wait_gone(tree, timeout=GRACE + 20)
    procfs.reap_adopted()
    assert _pod_directories(image_store) == []
