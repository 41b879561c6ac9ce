"""Local ephemeral storage measured against its limits, on real files: which limit the
kubelet's order finds first, and which containers are held to their own."""

from __future__ import annotations

import os
from pathlib import Path

from podvisor.supervisor.manifest import load
from podvisor.supervisor.manifest.model import Container, Pod
from podvisor.supervisor.pod.storage import LocalStorage

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: s}
spec:
  initContainers:
  - {name: side, restartPolicy: Always, command: [sleep, inf],
     resources: {limits: {ephemeral-storage: 1Mi}}}
  - {name: setup, command: ["true"], resources: {limits: {ephemeral-storage: 5Mi}}}
  containers:
  - {name: app, command: [sleep, inf], resources: {limits: {ephemeral-storage: 2Mi}}}
  - {name: free, command: [sleep, inf]}
"""


def storage(pod: Pod, tmp_path: Path) -> LocalStorage:
    def upper_of(c: Container) -> str:
        path = tmp_path / "uppers" / c.name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    return LocalStorage(pod, None, upper_of, tmp_path / "logs")


def fill(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())


def test_the_pods_limit_is_the_kubelets_sum_of_the_limits_given() -> None:
    """Sidecar and main containers together (1Mi + 2Mi), or the init container beside the
    sidecar started before it (1Mi + 5Mi): the larger; a container without one adds nothing."""
    pod = load("pod.yaml", POD).pod
    assert pod.spec.ephemeral_storage_limit_bytes == 6 * 2**20
    free = load("pod.yaml", POD.replace("ephemeral-storage", "memory")).pod
    assert free.spec.ephemeral_storage_limit_bytes is None


def test_a_sidecar_counts_in_the_total_and_a_main_container_against_its_own(
    tmp_path: Path,
) -> None:
    pod = load("pod.yaml", POD).pod
    measured = storage(pod, tmp_path)
    fill(tmp_path / "uppers" / "side" / "big", 5 * 2**19)  # past its own 1Mi, within 6Mi
    fill(tmp_path / "logs" / "free" / "0.log", 2**19)  # logs count; no limit of its own
    assert measured.eviction() is None
    fill(tmp_path / "uppers" / "app" / "big", 2**20 + 8192)  # past its own 2Mi with its log
    fill(tmp_path / "logs" / "app" / "0.log", 2**20)
    assert measured.eviction() == 'Container app exceeded its local ephemeral storage limit "2Mi".'
    fill(tmp_path / "uppers" / "free" / "big", 3 * 2**19)  # 2.5 + 0.5 + 2 + 1.5 MiB: past 6Mi
    assert measured.eviction() == (
        "Pod ephemeral local storage usage exceeds the total limit of containers 6Mi."
    )
