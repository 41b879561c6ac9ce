"""cgroups for podvisor's pods and containers, on cgroup v1, v2 and hybrid hosts.

Start with `CgroupDriver.detect()`; the modules' headers say how each part works:
layout (finding the hierarchies), driver (where cgroups go, stale ones),
tree (kill and freeze), limits (Kubernetes' conversions), stats (reading).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podvisor.supervisor.cgroups.driver import (
    INIT_CONTAINER,
    CgroupDriver,
    ContainerCgroup,
    PodCgroup,
    pod_dir_name,
)
from podvisor.supervisor.cgroups.layout import Layout
from podvisor.supervisor.cgroups.limits import Limits
from podvisor.supervisor.lazy import lazy_names

if TYPE_CHECKING:
    from podvisor.supervisor.cgroups.stats import (
        CgroupStats,
        DeviceIo,
        Pressure,
        ResourcePressure,
    )

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

#: Imported when first asked for (`podvisor.supervisor.lazy`), as
#: `ContainerCgroup.read` imports them: a pod nobody scrapes or asks about
#: does not keep the statistics' code.
_STATS = dict.fromkeys(("CgroupStats", "DeviceIo", "Pressure", "ResourcePressure"), "stats")

if not TYPE_CHECKING:
    __getattr__ = lazy_names(__name__, _STATS, globals())
