"""cgroups for podvisor's pods and containers, on cgroup v1, v2 and hybrid hosts.

Start with `CgroupDriver.detect()`; the modules' headers say how each part works:
layout (finding the hierarchies), driver (where cgroups go, stale ones),
tree (kill and freeze), limits (Kubernetes' conversions), stats (reading).
"""

from __future__ import annotations

import importlib
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

#: Imported when first asked for, as `ContainerCgroup.read` imports it: a
#: supervisor whose pod nobody scrapes or asks about does not keep it.
_STATS = frozenset({"CgroupStats", "DeviceIo", "Pressure", "ResourcePressure"})

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in _STATS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.stats"), name)
        globals()[name] = value
        return value
