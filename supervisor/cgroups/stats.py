"""What a container's cgroup says about it: CPU, memory, pids, IO, pressure, limits.

How this works: `read_stats` reads each figure from the hierarchy that has it
(a v1 controller's own hierarchy, or the v2 one), so one function serves all
three layouts; the parsers below are pure and are tested against captured
samples of each format. Every field is Optional: a layout may lack it, and a
cgroup may vanish between two reads (a container that just exited), which is
not an error: what was read is returned with `gone` set.

Units follow cAdvisor's series (seconds, bytes, counts). Where the two
versions name a figure differently, the mapping is cAdvisor's and runc's:

=====================  ==============================  ==========================
figure                 v1                              v2
=====================  ==============================  ==========================
cpu usage/user/system  cpuacct.usage(_user,_sys), ns   cpu.stat *_usec
throttling             cpu.stat (throttled_time ns)    cpu.stat (throttled_usec)
memory usage           memory.usage_in_bytes           memory.current
rss / cache / swap     memory.stat total_rss/cache/    memory.stat anon / file,
                       swap                            memory.swap.current
working set            usage - total_inactive_file     usage - inactive_file
max usage / failcnt    memory.max_usage_in_bytes /     memory.peak /
                       memory.failcnt                  memory.events "max"
oom kills              memory.oom_control oom_kill     memory.events oom_kill
io                     blkio.throttle.io_service*      io.stat
pressure               (none)                          {cpu,memory,io}.pressure
=====================  ==============================  ==========================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from podvisor.supervisor.cgroups import cgroupfs

NS_PER_SECOND = 1e9
US_PER_SECOND = 1e6
#: v1 reports "no limit" as the largest page-aligned counter value; anything
#: this large is no limit (2**62 bytes: 4 EiB).
V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class Pressure:
    """One line of a PSI file: the share of time tasks stalled, and the total stall."""

    avg10: float
    avg60: float
    avg300: float
    total_seconds: float


@dataclass(frozen=True)
class ResourcePressure:
    """A {cpu,memory,io}.pressure file: `some` task stalled, or `full`y (all of them)."""

    some: Pressure | None
    full: Pressure | None


@dataclass(frozen=True)
class DeviceIo:
    """IO of the cgroup on one block device (cAdvisor labels it major:minor)."""

    major: int
    minor: int
    read_bytes: int = 0
    write_bytes: int = 0
    read_ops: int = 0
    write_ops: int = 0


@dataclass
class CgroupStats:
    """Everything the metrics need about one container's cgroup; None: not available."""

    gone: bool = False  # the cgroup vanished during the read: the rest is partial
    # CPU, cumulative
    cpu_usage_seconds: float | None = None
    cpu_user_seconds: float | None = None
    cpu_system_seconds: float | None = None
    cpu_periods: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_seconds: float | None = None
    # memory, now
    memory_usage_bytes: int | None = None
    memory_working_set_bytes: int | None = None
    memory_rss_bytes: int | None = None
    memory_cache_bytes: int | None = None
    memory_swap_bytes: int | None = None
    memory_mapped_file_bytes: int | None = None
    memory_max_usage_bytes: int | None = None
    memory_failcnt: int | None = None
    oom_kills: int | None = None
    # processes
    processes: int | None = None  # cgroup.procs lines (container_processes)
    pids_current: int | None = None  # tasks, threads included (container_threads)
    pids_max: int | None = None  # None when unlimited (container_threads_max)
    # IO, cumulative
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    io_read_ops: int | None = None
    io_write_ops: int | None = None
    io_devices: tuple[DeviceIo, ...] = ()
    # pressure, keyed "cpu", "memory", "io", where the files exist
    pressure: dict[str, ResourcePressure] = field(default_factory=dict)
    # limits as set (None: no limit)
    memory_limit_bytes: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    cpu_shares: int | None = None  # v2: derived from cpu.weight, as cAdvisor does
    cpu_weight: int | None = None  # v2 only
    cpuset_cpus: str | None = None


# --- Parsers (pure) ----------------------------------------------------------------


def parse_flat(text: str | None) -> dict[str, int]:
    """A flat keyed file ("key value" lines: memory.stat, cpu.stat, memory.events)."""
    found = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            found[key] = int(value)
    return found


def parse_int(text: str | None) -> int | None:
    """A single-value file; "max" (v2) and v1's huge "no limit" value read as None."""
    if text is None or text.strip() in ("", "max"):
        return None
    value = int(text.split()[0])
    return None if value >= V1_UNLIMITED or value < 0 else value


def parse_pressure(text: str | None) -> ResourcePressure | None:
    """A PSI file: 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0' and a 'full' line."""
    if text is None:
        return None
    lines: dict[str, Pressure] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        kind, *pairs = line.split()
        values = dict(pair.split("=", 1) for pair in pairs)
        lines[kind] = Pressure(
            avg10=float(values["avg10"]),
            avg60=float(values["avg60"]),
            avg300=float(values["avg300"]),
            total_seconds=int(values["total"]) / US_PER_SECOND,
        )
    return ResourcePressure(some=lines.get("some"), full=lines.get("full"))


def parse_io_stat(text: str | None) -> tuple[DeviceIo, ...]:
    """v2 io.stat: '8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0' per device."""
    devices = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        device, *pairs = line.split()
        values = {k: int(v) for k, v in (pair.split("=", 1) for pair in pairs)}
        major, minor = (int(n) for n in device.split(":"))
        devices.append(
            DeviceIo(
                major,
                minor,
                read_bytes=values.get("rbytes", 0),
                write_bytes=values.get("wbytes", 0),
                read_ops=values.get("rios", 0),
                write_ops=values.get("wios", 0),
            )
        )
    return tuple(devices)


def _blkio_table(text: str | None) -> dict[tuple[int, int], dict[str, int]]:
    """v1 blkio.*io_service*: '8:0 Read 4096' lines, and a 'Total N' line (skipped)."""
    table: dict[tuple[int, int], dict[str, int]] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        major, minor = (int(n) for n in parts[0].split(":"))
        table.setdefault((major, minor), {})[parts[1]] = int(parts[2])
    return table


def parse_blkio(service_bytes: str | None, serviced: str | None) -> tuple[DeviceIo, ...]:
    """v1 blkio byte and operation counts, joined per device."""
    bytes_, ops = _blkio_table(service_bytes), _blkio_table(serviced)
    return tuple(
        DeviceIo(
            major,
            minor,
            read_bytes=bytes_.get((major, minor), {}).get("Read", 0),
            write_bytes=bytes_.get((major, minor), {}).get("Write", 0),
            read_ops=ops.get((major, minor), {}).get("Read", 0),
            write_ops=ops.get((major, minor), {}).get("Write", 0),
        )
        for major, minor in sorted(bytes_.keys() | ops.keys())
    )


def shares_from_weight(weight: int) -> int:
    """The inverse of the kubelet's shares -> weight mapping (cAdvisor reports shares)."""
    return 2 + ((weight - 1) * 262_142) // 9999


def working_set(usage: int | None, inactive_file: int | None) -> int | None:
    """cAdvisor's working set: usage minus inactive file pages, never below zero."""
    if usage is None:
        return None
    return max(usage - (inactive_file or 0), 0)


# --- Reading ----------------------------------------------------------------------


def _read(directory: str, name: str) -> str | None:
    # A metric never fails a scrape: a file the kernel will not give (EOPNOTSUPP
    # from a pressure file when PSI is off at boot, say) reads as absent.
    try:
        return cgroupfs.read(os.path.join(directory, name))
    except OSError:
        return None


def _seconds(value: int | None, per_second: float) -> float | None:
    return None if value is None else value / per_second


def read_stats(
    v1: Mapping[str, str], v2: str | None, v2_controllers: frozenset[str]
) -> CgroupStats:
    """Read a container's cgroup: `v1` maps each v1 controller to its directory,
    `v2` is its directory in the v2 hierarchy (if any) with `v2_controllers` enabled."""
    stats = CgroupStats()
    _read_cpu(stats, v1, v2)
    if "memory" in v1:
        _read_memory_v1(stats, v1["memory"])
    elif v2 and "memory" in v2_controllers:
        _read_memory_v2(stats, v2)
    pids_dir = v1.get("pids") or (v2 if "pids" in v2_controllers else None)
    if pids_dir:
        stats.pids_current = parse_int(_read(pids_dir, "pids.current"))
        stats.pids_max = parse_int(_read(pids_dir, "pids.max"))
    procs_dir = v2 or next(iter(v1.values()), None)
    if procs_dir:
        procs = _read(procs_dir, "cgroup.procs")
        stats.processes = None if procs is None else len(procs.split())
    _read_io(stats, v1, v2, v2_controllers)
    if v2:
        _read_pressure(stats, v2)
    cpuset_dir = v1.get("cpuset") or (v2 if "cpuset" in v2_controllers else None)
    if cpuset_dir:
        stats.cpuset_cpus = (_read(cpuset_dir, "cpuset.cpus") or "").strip() or None
    # We remove a cgroup in every hierarchy at once: one directory tells.
    stats.gone = procs_dir is not None and not os.path.isdir(procs_dir)
    return stats


def _read_cpu(stats: CgroupStats, v1: Mapping[str, str], v2: str | None) -> None:
    needs_v2 = v2 is not None and not ("cpuacct" in v1 and "cpu" in v1)
    v2_stat = parse_flat(_read(v2, "cpu.stat")) if v2 and needs_v2 else {}
    if "cpuacct" in v1:
        _read_cpuacct(stats, v1["cpuacct"])
    elif "usage_usec" in v2_stat:
        stats.cpu_usage_seconds = v2_stat["usage_usec"] / US_PER_SECOND
        stats.cpu_user_seconds = _seconds(v2_stat.get("user_usec"), US_PER_SECOND)
        stats.cpu_system_seconds = _seconds(v2_stat.get("system_usec"), US_PER_SECOND)
    if "cpu" in v1:
        cpu = v1["cpu"]
        throttling = parse_flat(_read(cpu, "cpu.stat"))
        stats.cpu_periods = throttling.get("nr_periods")
        stats.cpu_throttled_periods = throttling.get("nr_throttled")
        stats.cpu_throttled_seconds = _seconds(throttling.get("throttled_time"), NS_PER_SECOND)
        stats.cpu_quota_us = parse_int(_read(cpu, "cpu.cfs_quota_us"))
        stats.cpu_period_us = parse_int(_read(cpu, "cpu.cfs_period_us"))
        stats.cpu_shares = parse_int(_read(cpu, "cpu.shares"))
    elif v2 and "nr_periods" in v2_stat:
        stats.cpu_periods = v2_stat["nr_periods"]
        stats.cpu_throttled_periods = v2_stat.get("nr_throttled")
        stats.cpu_throttled_seconds = _seconds(v2_stat.get("throttled_usec"), US_PER_SECOND)
        _read_cpu_limits_v2(stats, v2)


def _read_cpuacct(stats: CgroupStats, cpuacct: str) -> None:
    usage = parse_int(_read(cpuacct, "cpuacct.usage"))
    stats.cpu_usage_seconds = _seconds(usage, NS_PER_SECOND)
    user = parse_int(_read(cpuacct, "cpuacct.usage_user"))
    system = parse_int(_read(cpuacct, "cpuacct.usage_sys"))
    if user is not None and system is not None:
        stats.cpu_user_seconds = user / NS_PER_SECOND
        stats.cpu_system_seconds = system / NS_PER_SECOND
        return
    # Older kernels: only cpuacct.stat, in clock ticks (USER_HZ).
    ticks = parse_flat(_read(cpuacct, "cpuacct.stat"))
    hertz = os.sysconf("SC_CLK_TCK")
    stats.cpu_user_seconds = _seconds(ticks.get("user"), hertz)
    stats.cpu_system_seconds = _seconds(ticks.get("system"), hertz)


def _read_cpu_limits_v2(stats: CgroupStats, v2: str) -> None:
    cpu_max = (_read(v2, "cpu.max") or "").split()
    if len(cpu_max) == 2:
        stats.cpu_quota_us = parse_int(cpu_max[0])
        stats.cpu_period_us = int(cpu_max[1])
    stats.cpu_weight = parse_int(_read(v2, "cpu.weight"))
    if stats.cpu_weight is not None:
        stats.cpu_shares = shares_from_weight(stats.cpu_weight)


def _read_memory_v1(stats: CgroupStats, memory: str) -> None:
    usage = parse_int(_read(memory, "memory.usage_in_bytes"))
    stat = parse_flat(_read(memory, "memory.stat"))

    def total(key: str) -> int | None:  # total_* counts the sub-tree, as cAdvisor reads it
        return stat.get(f"total_{key}", stat.get(key))

    stats.memory_usage_bytes = usage
    stats.memory_working_set_bytes = working_set(usage, total("inactive_file"))
    stats.memory_rss_bytes = total("rss")
    stats.memory_cache_bytes = total("cache")
    stats.memory_swap_bytes = total("swap")
    stats.memory_mapped_file_bytes = total("mapped_file")
    stats.memory_max_usage_bytes = parse_int(_read(memory, "memory.max_usage_in_bytes"))
    stats.memory_failcnt = parse_int(_read(memory, "memory.failcnt"))
    stats.memory_limit_bytes = parse_int(_read(memory, "memory.limit_in_bytes"))
    stats.oom_kills = parse_flat(_read(memory, "memory.oom_control")).get("oom_kill")


def _read_memory_v2(stats: CgroupStats, v2: str) -> None:
    usage = parse_int(_read(v2, "memory.current"))
    stat = parse_flat(_read(v2, "memory.stat"))
    events = parse_flat(_read(v2, "memory.events"))
    stats.memory_usage_bytes = usage
    stats.memory_working_set_bytes = working_set(usage, stat.get("inactive_file"))
    stats.memory_rss_bytes = stat.get("anon")
    stats.memory_cache_bytes = stat.get("file")
    stats.memory_mapped_file_bytes = stat.get("file_mapped")
    stats.memory_swap_bytes = parse_int(_read(v2, "memory.swap.current"))
    stats.memory_max_usage_bytes = parse_int(_read(v2, "memory.peak"))
    # v2 has no failcnt; runc and cAdvisor count hits of memory.max instead.
    stats.memory_failcnt = events.get("max")
    stats.memory_limit_bytes = parse_int(_read(v2, "memory.max"))
    stats.oom_kills = events.get("oom_kill")


def _read_io(
    stats: CgroupStats, v1: Mapping[str, str], v2: str | None, v2_controllers: frozenset[str]
) -> None:
    if "blkio" in v1:
        blkio = v1["blkio"]
        # The _recursive files count the sub-tree; older kernels only have the others.
        service_bytes = _read(blkio, "blkio.throttle.io_service_bytes_recursive")
        serviced = _read(blkio, "blkio.throttle.io_serviced_recursive")
        if service_bytes is None:
            service_bytes = _read(blkio, "blkio.throttle.io_service_bytes")
            serviced = _read(blkio, "blkio.throttle.io_serviced")
        if service_bytes is None:
            return
        devices = parse_blkio(service_bytes, serviced)
    elif v2 and "io" in v2_controllers:
        io_stat = _read(v2, "io.stat")
        if io_stat is None:
            return
        devices = parse_io_stat(io_stat)
    else:
        return
    stats.io_devices = devices
    stats.io_read_bytes = sum(d.read_bytes for d in devices)
    stats.io_write_bytes = sum(d.write_bytes for d in devices)
    stats.io_read_ops = sum(d.read_ops for d in devices)
    stats.io_write_ops = sum(d.write_ops for d in devices)


def _read_pressure(stats: CgroupStats, v2: str) -> None:
    for resource in ("cpu", "memory", "io"):
        pressure = parse_pressure(_read(v2, f"{resource}.pressure"))
        if pressure is not None:
            stats.pressure[resource] = pressure
