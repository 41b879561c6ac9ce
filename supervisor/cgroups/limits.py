"""A container's limits, and the cgroup files that set them, with Kubernetes' conversions.

Pure: `plan_limits` turns `Limits` into the file writes for the host's
controllers, or says which controllers are missing. The formulas are the
kubelet's (pkg/kubelet/cm/helpers_linux.go) and runc's, so a manifest gets the
same cgroup values here as on a Kubernetes node:

* CPU limit -> CFS quota: ``quota = millicores * period / 1000`` with the
  period at 100 ms and at least 1 ms of quota; ``cpu.max = "quota period"``
  on v2, ``cpu.cfs_period_us`` then ``cpu.cfs_quota_us`` on v1.
* CPU request -> shares: ``max(2, millicores * 1024 / 1000)`` (at most
  262144), ``cpu.shares`` on v1; on v2 the runtime maps shares to
  ``cpu.weight`` as runc (from 1.3.2) and crun (from 1.23) do, on a curve
  through (2, 1), (1024, 100) and (262144, 10000) in log space:
  ``ceil(10 ** ((L * L + 125 * L) / 612 - 7 / 34))`` with ``L = log2(shares)``,
  so that one CPU's shares (1024) get the default weight (100). Every container
  gets them: with no request, the limit's, and with neither, the least there
  is (shares 2, weight 1), so a BestEffort container yields to any that asked.
* memory limit -> ``memory.max`` / ``memory.limit_in_bytes``.
* Swap, as the kubelet's default NoSwap: on v2 ``memory.swap.max = 0`` for
  every container; on v1 ``memory.memsw.limit_in_bytes`` = the memory limit,
  after ``memory.limit_in_bytes`` (the kernel keeps memsw at or above it).
  Either only where the kernel accounts swap (the file exists).
* On v2, ``memory.oom.group = 1`` for every container, as the kubelet asks
  since 1.28: an OOM kill ends all of the container's processes, its init
  too, not one of them. v1 has no such file; there the kernel kills one.
* pids limit -> ``pids.max``; cpuset -> ``cpuset.cpus`` (on v1 the driver has
  already copied ``cpuset.mems`` from the parent when it made the cgroup).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from podvisor.supervisor.errors import CgroupError
from podvisor.supervisor.frozen import frozen

CFS_PERIOD_US = 100_000  # the kubelet's default cpu-cfs-quota-period
MIN_QUOTA_US = 1_000  # the kernel refuses a quota below 1 ms
MIN_SHARES = 2
MAX_SHARES = 262_144
MIN_WEIGHT = 1
MAX_WEIGHT = 10_000
SHARES_PER_CPU = 1024
MILLICORES_PER_CPU = 1000


@frozen
class Limits:
    """What a container may use; None leaves the kernel's default (no limit)."""

    memory_bytes: int | None = None
    cpu_limit_millicores: int | None = None  # 0 or None: no CFS quota, as the kubelet
    #: None: the limit's shares, else the least (2), as the kubelet; unlike a
    #: request, it needs no cpu controller (where there is none, nothing is weighed).
    cpu_request_millicores: int | None = None
    pids_max: int | None = None
    cpuset: str | None = None  # the kernel's list format: "0-1,3"

    def controllers(self) -> dict[str, str]:
        """The controllers these limits need, each with the limit that needs it."""
        needed = {}
        if self.memory_bytes is not None:
            needed["memory"] = "a memory limit"
        if self.cpu_limit_millicores or self.cpu_request_millicores is not None:
            needed["cpu"] = "a CPU limit or request"
        if self.pids_max is not None:
            needed["pids"] = "a pids limit"
        if self.cpuset is not None:
            needed["cpuset"] = "a cpuset"
        return needed


@frozen
class LimitWrite:
    """One cgroup file to write: in the hierarchy holding `controller`, `file` = `value`."""

    controller: str
    file: str
    value: str
    #: Skipped where the kernel has no such file: swap accounting and
    #: memory.oom.group depend on how the kernel was built and booted.
    if_present: bool = False


# --- Kubernetes' conversions ---------------------------------------------------------


def cpu_quota_us(millicores: int, period_us: int = CFS_PERIOD_US) -> int:
    """The CFS quota for a CPU limit (kubelet MilliCPUToQuota)."""
    return max(millicores * period_us // MILLICORES_PER_CPU, MIN_QUOTA_US)


def cpu_shares(millicores: int) -> int:
    """cpu.shares for a CPU request (kubelet MilliCPUToShares)."""
    shares = millicores * SHARES_PER_CPU // MILLICORES_PER_CPU
    return min(max(shares, MIN_SHARES), MAX_SHARES)


def cpu_weight(shares: int) -> int:
    """cpu.weight for cpu.shares, as runc and crun convert them (the module's docstring)."""
    if shares <= MIN_SHARES:
        return MIN_WEIGHT
    if shares >= MAX_SHARES:
        return MAX_WEIGHT
    log2_shares = math.log2(shares)
    return math.ceil(10 ** ((log2_shares * log2_shares + 125 * log2_shares) / 612 - 7 / 34))


def shares_from_weight(weight: int) -> int:
    """The largest cpu.shares `cpu_weight` maps to *weight*: the shares asked for, as
    far as the weight tells (cAdvisor reports shares)."""
    if weight <= MIN_WEIGHT:
        return MIN_SHARES
    if weight >= MAX_WEIGHT:
        return MAX_SHARES
    # The curve solved for L at log10(weight), then moved to the last share of the
    # weight: the weight was rounded up from the curve.
    exponent = math.log10(weight) + 7 / 34
    shares = round(2 ** ((math.sqrt(125 * 125 + 4 * 612 * exponent) - 125) / 2))
    while cpu_weight(shares + 1) <= weight:
        shares += 1
    while cpu_weight(shares) > weight:
        shares -= 1
    return shares


# --- The plan ----------------------------------------------------------------------


def missing_controllers(limits: Limits, versions: Mapping[str, int]) -> list[str]:
    """One line per limit whose controller the host lacks (`versions`: controller -> 1|2)."""
    return [
        f"{why} needs the {controller!r} cgroup controller"
        for controller, why in limits.controllers().items()
        if controller not in versions
    ]


def plan_limits(limits: Limits, versions: Mapping[str, int]) -> list[LimitWrite]:
    """The writes that apply `limits`; CgroupError naming every missing controller."""
    missing = missing_controllers(limits, versions)
    if missing:
        raise CgroupError(
            "this host cannot apply the limits asked for: "
            + "; ".join(missing)
            + ". Enable the controller (on cgroup v2: delegate it to podvisor's cgroup, "
            "e.g. `systemd-run -p Delegate=yes ...`; on v1: mount its hierarchy), "
            "or remove the limit from the manifest"
        )
    writes = _memory_writes(limits, versions.get("memory", 0))
    writes += _cpu_writes(limits, versions.get("cpu", 0))
    if limits.pids_max is not None:
        writes.append(LimitWrite("pids", "pids.max", str(limits.pids_max)))
    if limits.cpuset is not None:
        writes.append(LimitWrite("cpuset", "cpuset.cpus", limits.cpuset))
    return writes


def _memory_writes(limits: Limits, version: int) -> list[LimitWrite]:
    limit = limits.memory_bytes
    if version == 2:
        writes = [] if limit is None else [LimitWrite("memory", "memory.max", str(limit))]
        return [
            *writes,
            LimitWrite("memory", "memory.swap.max", "0", if_present=True),
            LimitWrite("memory", "memory.oom.group", "1", if_present=True),
        ]
    if version == 1 and limit is not None:
        # The limit first: a new cgroup's memsw is unlimited, and the kernel
        # refuses a memsw limit below the memory limit.
        return [
            LimitWrite("memory", "memory.limit_in_bytes", str(limit)),
            LimitWrite("memory", "memory.memsw.limit_in_bytes", str(limit), if_present=True),
        ]
    return []


def _cpu_writes(limits: Limits, version: int) -> list[LimitWrite]:
    writes: list[LimitWrite] = []
    if limits.cpu_limit_millicores:
        quota = cpu_quota_us(limits.cpu_limit_millicores)
        if version == 2:
            writes.append(LimitWrite("cpu", "cpu.max", f"{quota} {CFS_PERIOD_US}"))
        else:
            # The period first: a quota is checked against the period already set.
            writes.append(LimitWrite("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US)))
            writes.append(LimitWrite("cpu", "cpu.cfs_quota_us", str(quota)))
    if version:
        request = limits.cpu_request_millicores
        if request is None:
            request = limits.cpu_limit_millicores or 0
        shares = cpu_shares(request)
        if version == 2:
            writes.append(LimitWrite("cpu", "cpu.weight", str(cpu_weight(shares))))
        else:
            writes.append(LimitWrite("cpu", "cpu.shares", str(shares)))
    return writes
