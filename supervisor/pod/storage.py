"""Local ephemeral storage: what the pod keeps on this machine's disk, against its limits.

How this works
--------------
The kubelet evicts a pod whose local storage outgrows what its manifest
allows, and so does the supervisor: `LocalStorage.eviction` is measured every
`volumes.EMPTY_DIR_CHECK_SECONDS` (as du counts: allocated blocks, hard links
once), and the first limit found exceeded, in the kubelet's order, evicts the
pod (reason Evicted, the kubelet's message, a grace period of 0):

1. an emptyDir on disk past its sizeLimit (`volumes.outgrown`);
2. the pod past its total (`PodSpec.ephemeral_storage_limit_bytes`: the sum
   of its containers' limits, as the kubelet adds them), counting every
   container's usage, its emptyDirs on disk and its configMap volumes;
3. a container past its own ``resources.limits.ephemeral-storage``: only
   main containers are held to their own limit, as the kubelet holds them;
   an init container's or a sidecar's counts in the pod's total.

A container's usage is its writable layer (the current instance's upper
directory, for a container on an image) and its log files (every file of
its log folder). A container on the host's files has no layer of its own:
what it writes goes to the host's files, which no limit covers, and only its
log is counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from podvisor.supervisor.pod.claims import bytes_used
from podvisor.supervisor.pod.volumes import outgrown, quantity

if TYPE_CHECKING:
    from pathlib import Path

    from podvisor.supervisor.manifest.model import Container, Pod
    from podvisor.supervisor.pod.volumes import PodVolumes


@dataclass
class LocalStorage:
    """The pod's local storage and its limits, measured from the supervisor's side."""

    pod: Pod
    volumes: PodVolumes | None
    #: The current instance's upper directory of a container on an image; None otherwise.
    upper_of: Callable[[Container], str | None]
    #: The pod's log folder (a folder per container in it); None when it keeps no files.
    logs: Path | None

    def watched(self) -> bool:
        """Whether there is any limit to measure against."""
        spec = self.pod.spec
        return bool(self.volumes is not None and self.volumes.limits) or (
            spec.ephemeral_storage_limit_bytes is not None
        )

    def eviction(self) -> str | None:
        """The kubelet's message for the first limit exceeded, or None."""
        if self.volumes is not None and (said := outgrown(self.volumes)) is not None:
            return said
        spec = self.pod.spec
        total = spec.ephemeral_storage_limit_bytes
        if total is None:
            return None
        used = {c.name: self.container_usage(c) for c in spec.all_containers}
        local = self.volumes.local if self.volumes is not None else ()
        if sum(used.values()) + sum(map(bytes_used, local)) > total:
            return (
                "Pod ephemeral local storage usage exceeds the total limit of containers "
                f"{quantity(total)}."
            )
        for c in spec.containers:
            limit = c.resources.ephemeral_storage_limit_bytes
            if limit and used[c.name] > limit:
                return (
                    f'Container {c.name} exceeded its local ephemeral storage limit "'
                    f'{quantity(limit)}".'
                )
        return None

    def container_usage(self, c: Container) -> int:
        """*c*'s writable layer (on an image) and its log files, in bytes on disk."""
        used = 0
        upper = self.upper_of(c)
        if upper is not None:
            used += bytes_used(upper)
        if self.logs is not None:
            used += bytes_used(os.fspath(self.logs / c.name))
        return used
