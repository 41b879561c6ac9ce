"""cgroups for podvisor's pods and containers, on cgroup v1, v2 and hybrid hosts.

Start with `CgroupDriver.detect()`; the modules' headers say how each part works:
layout (finding the hierarchies), driver (where cgroups go, stale ones),
tree (kill and freeze), limits (Kubernetes' conversions), stats (reading).
"""

from __future__ import annotations

from podvisor.supervisor.cgroups.driver import (
    INIT_CONTAINER,
    CgroupDriver,
    ContainerCgroup,
    PodCgroup,
    pod_dir_name,
)
from podvisor.supervisor.cgroups.layout import Layout
from podvisor.supervisor.cgroups.limits import Limits
from podvisor.supervisor.cgroups.stats import CgroupStats, DeviceIo, Pressure, ResourcePressure

__all__ = [
    "INIT_CONTAINER",
    "CgroupDriver",
    "CgroupStats",
    "ContainerCgroup",
    "DeviceIo",
    "Layout",
    "Limits",
    "PodCgroup",
    "Pressure",
    "ResourcePressure",
    "pod_dir_name",
]
