"""What a container's cgroup says about it: CPU, memory, pids, IO, pressure, limits.

How this works: a `StatsReader`, made once per container cgroup, works out
which file each figure comes from (a v1 controller's own hierarchy, or the v2
one), so one reader serves all three layouts; the parsers below are pure and
are tested against captured samples of each format. Every field is Optional:
a layout may lack it, and a cgroup may vanish between two reads (a container
that just exited), which is not an error: what was read is returned with
`gone` set.

A scrape reads every live container, so a read opens as few files as it can
(each open of a cgroup file costs some 10 us, most of a read's time):

* The files read at every scrape are kept open between reads
  (`cgroupfs.KeptFiles`): a read is then one pread(2). They are closed when
  the cgroup is found gone, or removed (`close`).

* The limits (memory, CPU quota, period and shares, pids.max, cpuset.cpus)
  change only when podvisor writes them, so they are read once, and read
  again after `ContainerCgroup.apply_limits` (the kernel's value, which may
  be rounded: memory limits to whole pages). Nothing else may write them.
* cgroup.procs is read last: every cgroup has one, so finding it missing
  means the cgroup went before or during the read. No other check is made.
* A file found missing while the cgroup was there (memory.peak before Linux
  5.19, pressure files with PSI off) is not looked for again.
* The unified hierarchy's cpu.stat is read only where v1 cpuacct (or cpu)
  is missing, and user/system time come from cpuacct.stat, in clock ticks,
  as runc and cAdvisor read them (on current kernels cpuacct.usage_user and
  usage_sys count the same ticks, in nanoseconds: one file instead of two).

Units follow cAdvisor's series (seconds, bytes, counts). Where the two
versions name a figure differently, the mapping is cAdvisor's and runc's:

=====================  ==============================  ==========================
figure                 v1                              v2
=====================  ==============================  ==========================
cpu usage              cpuacct.usage, ns               cpu.stat usage_usec
cpu user/system        cpuacct.stat, ticks             cpu.stat *_usec
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

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from podvisor.supervisor.cgroups import cgroupfs
from podvisor.supervisor.cgroups.cgroupfs import parse_flat
from podvisor.supervisor.cgroups.limits import shares_from_weight
from podvisor.supervisor.frozen import frozen

NS_PER_SECOND = 1e9
US_PER_SECOND = 1e6
#: v1 reports "no limit" as the largest page-aligned counter value; anything
#: this large is no limit (2**62 bytes: 4 EiB).
V1_UNLIMITED = 1 << 62


@frozen
class Pressure:
    """One line of a PSI file: the share of time tasks stalled, and the total stall."""

    avg10: float
    avg60: float
    avg300: float
    total_seconds: float


@frozen
class ResourcePressure:
    """A {cpu,memory,io}.pressure file: `some` task stalled, or `full`y (all of them)."""

    some: Pressure | None
    full: Pressure | None


@frozen
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


def flat_values(text: str | None, *keys: str) -> dict[str, int]:
    """`keys` of a flat keyed file, as `parse_flat` reads them, without parsing the rest.

    memory.stat has some 40 lines and a scrape wants four or five of them.
    """
    found: dict[str, int] = {}
    if not text:
        return found
    text = "\n" + text
    for key in keys:
        start = text.find(f"\n{key} ")
        if start < 0:
            continue
        start += len(key) + 2
        end = text.find("\n", start)
        value = text[start:] if end < 0 else text[start:end]
        if value.strip().lstrip("-").isdigit():
            found[key] = int(value)
    return found


def parse_int(text: str | None) -> int | None:
    """A single-value file; "max" (v2) and v1's huge "no limit" value read as None."""
    if text is None:
        return None
    try:
        value = int(text)  # the usual case: one number and a newline
    except ValueError:
        if text.strip() in ("", "max"):
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


def working_set(usage: int | None, inactive_file: int | None) -> int | None:
    """cAdvisor's working set: usage minus inactive file pages, never below zero."""
    if usage is None:
        return None
    return max(usage - (inactive_file or 0), 0)


# --- Reading ----------------------------------------------------------------------

#: cpuacct.stat counts in clock ticks (USER_HZ).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The limits, as `CgroupStats` fields: read once, then again only after podvisor writes them.
LIMIT_FIELDS = (
    "memory_limit_bytes",
    "cpu_quota_us",
    "cpu_period_us",
    "cpu_shares",
    "cpu_weight",
    "pids_max",
    "cpuset_cpus",
)
_V1_MEMORY_KEYS = ("inactive_file", "rss", "cache", "swap", "mapped_file")


def _at(directory: str | None, name: str) -> str | None:
    return None if directory is None else os.path.join(directory, name)


class StatsReader:
    """Reads one container's cgroup; see the module's header for what it reads and when.

    `v1` maps each v1 controller to the container's directory in its hierarchy;
    `v2` is its directory in the v2 hierarchy (if any), with `v2_controllers`
    enabled there.
    """

    def __init__(
        self, v1: Mapping[str, str], v2: str | None, v2_controllers: frozenset[str]
    ) -> None:
        def v1_or_v2(controller: str) -> str | None:
            return v1.get(controller) or (v2 if controller in v2_controllers else None)

        cpuacct, cpu, pids = v1.get("cpuacct"), v1.get("cpu"), v1_or_v2("pids")
        self._usage_from_v2 = cpuacct is None and v2 is not None
        self._throttling_from_v2 = cpu is None and v2 is not None and "cpu" in v2_controllers
        self._cpuacct = _at(cpuacct, "cpuacct.usage"), _at(cpuacct, "cpuacct.stat")
        self._cpu_v1 = cpu
        self._cpu_v2 = v2 if self._throttling_from_v2 else None
        uses_v2_cpu_stat = self._usage_from_v2 or self._throttling_from_v2
        self._v2_cpu_stat = _at(v2, "cpu.stat") if uses_v2_cpu_stat else None
        self._memory_v1 = v1.get("memory")
        self._memory_v2 = v2 if self._memory_v1 is None and "memory" in v2_controllers else None
        self._pids_current, self._pids_max = _at(pids, "pids.current"), _at(pids, "pids.max")
        self._blkio = v1.get("blkio")
        self._io_stat = _at(v2, "io.stat") if "io" in v2_controllers else None
        self._pressure = [(r, f"{v2}/{r}.pressure") for r in ("cpu", "memory", "io") if v2]
        self._cpuset = _at(v1_or_v2("cpuset"), "cpuset.cpus")
        self._procs = _at(v2 or next(iter(v1.values()), None), "cgroup.procs")
        self._limits: tuple[object, ...] | None = None  # LIMIT_FIELDS' values
        self._absent: set[str] = set()  # files this cgroup does not have
        self._missing: list[str] = []  # files found absent during this read
        #: Each pressure file's last text and what it said: an idle container's does not change.
        self._pressure_seen: dict[str, tuple[str, ResourcePressure]] = {}
        self._files = cgroupfs.KeptFiles()

    def forget_limits(self) -> None:
        """The limit files are about to change: read them again at the next `read`."""
        self._limits = None

    def close(self) -> None:
        """Close the files kept open for the next read (the cgroup is being removed)."""
        self._files.close()

    def read(self) -> CgroupStats:
        """Its statistics now; `gone` is set when the cgroup vanished during the read."""
        stats = CgroupStats()
        self._missing = []
        self._read_cpu(stats)
        if self._memory_v1 is not None:
            self._read_memory_v1(stats, self._memory_v1)
        elif self._memory_v2 is not None:
            self._read_memory_v2(stats, self._memory_v2)
        if self._pids_current is not None:
            stats.pids_current = parse_int(self._text(self._pids_current))
        self._read_io(stats)
        for resource, path in self._pressure:
            pressure = self._read_pressure(path)
            if pressure is not None:
                stats.pressure[resource] = pressure
        limits = self._limits
        if limits is None:
            self._read_limits(stats)
            limits = tuple(getattr(stats, name) for name in LIMIT_FIELDS)
        # Last: every cgroup has cgroup.procs, so its absence now means the cgroup
        # went before or during this read (and then the rest is partial).
        stats.gone = self._read_procs(stats)
        if stats.gone:
            self._files.close()
        else:
            self._limits = limits
            self._absent.update(self._missing)
        for name, value in zip(LIMIT_FIELDS, limits, strict=True):
            setattr(stats, name, value)
        return stats

    def _text(self, path: str, *, once: bool = False) -> str | None:
        """A file's text; None when absent, unreadable or gone (a metric never fails a scrape).

        Kept open for the next read, unless read *once* (a limit).
        """
        if path in self._absent:
            return None
        try:
            text = cgroupfs.read(path) if once else self._files.read(path)
        except OSError as e:
            # EOPNOTSUPP: a pressure file when PSI is off at boot, for good.
            if e.errno == errno.EOPNOTSUPP:
                self._missing.append(path)
            return None
        if text is None:
            self._missing.append(path)
        return text

    def _read_procs(self, stats: CgroupStats) -> bool:
        """Count the processes; True when the cgroup is gone."""
        if self._procs is None:
            return False
        try:
            procs = cgroupfs.read(self._procs)
        except OSError:
            return False  # unreadable, yet there: no count
        if procs is None:
            return True
        stats.processes = len(procs.split())
        return False

    def _read_pressure(self, path: str) -> ResourcePressure | None:
        text = self._text(path)
        seen = self._pressure_seen.get(path)
        if seen is not None and seen[0] == text:
            return seen[1]  # frozen: safe to share between reads
        pressure = parse_pressure(text)
        if text is not None and pressure is not None:
            self._pressure_seen[path] = (text, pressure)
        return pressure

    # --- CPU ------------------------------------------------------------------------

    def _read_cpu(self, stats: CgroupStats) -> None:
        usage, ticks = self._cpuacct
        if usage is not None and ticks is not None:
            stats.cpu_usage_seconds = _seconds(parse_int(self._text(usage)), NS_PER_SECOND)
            # One file for both, as runc and cAdvisor read them (see the header).
            split = parse_flat(self._text(ticks))
            stats.cpu_user_seconds = _seconds(split.get("user"), CLOCK_TICKS)
            stats.cpu_system_seconds = _seconds(split.get("system"), CLOCK_TICKS)
        if self._cpu_v1 is not None:
            throttling = parse_flat(self._text(f"{self._cpu_v1}/cpu.stat"))
            stats.cpu_periods = throttling.get("nr_periods")
            stats.cpu_throttled_periods = throttling.get("nr_throttled")
            stats.cpu_throttled_seconds = _seconds(throttling.get("throttled_time"), NS_PER_SECOND)
        if self._v2_cpu_stat is not None:
            self._read_cpu_v2(stats, parse_flat(self._text(self._v2_cpu_stat)))

    def _read_cpu_v2(self, stats: CgroupStats, cpu_stat: dict[str, int]) -> None:
        if self._usage_from_v2 and "usage_usec" in cpu_stat:
            stats.cpu_usage_seconds = cpu_stat["usage_usec"] / US_PER_SECOND
            stats.cpu_user_seconds = _seconds(cpu_stat.get("user_usec"), US_PER_SECOND)
            stats.cpu_system_seconds = _seconds(cpu_stat.get("system_usec"), US_PER_SECOND)
        if self._throttling_from_v2 and "nr_periods" in cpu_stat:
            stats.cpu_periods = cpu_stat["nr_periods"]
            stats.cpu_throttled_periods = cpu_stat.get("nr_throttled")
            stats.cpu_throttled_seconds = _seconds(cpu_stat.get("throttled_usec"), US_PER_SECOND)

    # --- Memory ---------------------------------------------------------------------

    def _read_memory_v1(self, stats: CgroupStats, memory: str) -> None:
        usage = parse_int(self._text(f"{memory}/memory.usage_in_bytes"))
        text = self._text(f"{memory}/memory.stat")
        # total_* counts the sub-tree, as cAdvisor reads it; older kernels lack it.
        stat = flat_values(text, *(f"total_{key}" for key in _V1_MEMORY_KEYS))
        if not stat:
            stat = {f"total_{k}": v for k, v in flat_values(text, *_V1_MEMORY_KEYS).items()}
        stats.memory_usage_bytes = usage
        stats.memory_working_set_bytes = working_set(usage, stat.get("total_inactive_file"))
        stats.memory_rss_bytes = stat.get("total_rss")
        stats.memory_cache_bytes = stat.get("total_cache")
        stats.memory_swap_bytes = stat.get("total_swap")
        stats.memory_mapped_file_bytes = stat.get("total_mapped_file")
        stats.memory_max_usage_bytes = parse_int(self._text(f"{memory}/memory.max_usage_in_bytes"))
        stats.memory_failcnt = parse_int(self._text(f"{memory}/memory.failcnt"))
        stats.oom_kills = parse_flat(self._text(f"{memory}/memory.oom_control")).get("oom_kill")

    def _read_memory_v2(self, stats: CgroupStats, v2: str) -> None:
        usage = parse_int(self._text(f"{v2}/memory.current"))
        stat = flat_values(
            self._text(f"{v2}/memory.stat"), "inactive_file", "anon", "file", "file_mapped"
        )
        events = parse_flat(self._text(f"{v2}/memory.events"))
        stats.memory_usage_bytes = usage
        stats.memory_working_set_bytes = working_set(usage, stat.get("inactive_file"))
        stats.memory_rss_bytes = stat.get("anon")
        stats.memory_cache_bytes = stat.get("file")
        stats.memory_mapped_file_bytes = stat.get("file_mapped")
        stats.memory_swap_bytes = parse_int(self._text(f"{v2}/memory.swap.current"))
        stats.memory_max_usage_bytes = parse_int(self._text(f"{v2}/memory.peak"))
        # v2 has no failcnt; runc and cAdvisor count hits of memory.max instead.
        stats.memory_failcnt = events.get("max")
        stats.oom_kills = events.get("oom_kill")

    # --- IO -------------------------------------------------------------------------

    def _read_io(self, stats: CgroupStats) -> None:
        if self._blkio is not None:
            blkio = self._blkio
            # The _recursive files count the sub-tree; older kernels only have the others.
            service_bytes = self._text(f"{blkio}/blkio.throttle.io_service_bytes_recursive")
            serviced = self._text(f"{blkio}/blkio.throttle.io_serviced_recursive")
            if service_bytes is None:
                service_bytes = self._text(f"{blkio}/blkio.throttle.io_service_bytes")
                serviced = self._text(f"{blkio}/blkio.throttle.io_serviced")
            if service_bytes is None:
                return
            devices = parse_blkio(service_bytes, serviced)
        elif self._io_stat is not None:
            io_stat = self._text(self._io_stat)
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

    # --- Limits ---------------------------------------------------------------------

    def _read_limits(self, stats: CgroupStats) -> None:
        if self._memory_v1 is not None:
            memory_limit = self._text(f"{self._memory_v1}/memory.limit_in_bytes", once=True)
            stats.memory_limit_bytes = parse_int(memory_limit)
        elif self._memory_v2 is not None:
            stats.memory_limit_bytes = parse_int(
                self._text(f"{self._memory_v2}/memory.max", once=True)
            )
        if self._cpu_v1 is not None:
            cpu = self._cpu_v1
            stats.cpu_quota_us = parse_int(self._text(f"{cpu}/cpu.cfs_quota_us", once=True))
            stats.cpu_period_us = parse_int(self._text(f"{cpu}/cpu.cfs_period_us", once=True))
            stats.cpu_shares = parse_int(self._text(f"{cpu}/cpu.shares", once=True))
        elif self._cpu_v2 is not None:
            self._read_cpu_limits_v2(stats, self._cpu_v2)
        if self._pids_max is not None:
            stats.pids_max = parse_int(self._text(self._pids_max, once=True))
        if self._cpuset is not None:
            stats.cpuset_cpus = (self._text(self._cpuset, once=True) or "").strip() or None

    def _read_cpu_limits_v2(self, stats: CgroupStats, v2: str) -> None:
        cpu_max = (self._text(f"{v2}/cpu.max", once=True) or "").split()
        if len(cpu_max) == 2:
            stats.cpu_quota_us = parse_int(cpu_max[0])
            stats.cpu_period_us = int(cpu_max[1])
        stats.cpu_weight = parse_int(self._text(f"{v2}/cpu.weight", once=True))
        if stats.cpu_weight is not None:
            stats.cpu_shares = shares_from_weight(stats.cpu_weight)


def _seconds(value: int | None, per_second: float) -> float | None:
    return None if value is None else value / per_second
