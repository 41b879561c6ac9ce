"""cAdvisor's `container_*` series, from the cgroup statistics read at scrape time.

Names, types, units and help texts are cAdvisor's (metrics/prometheus.go), as
the kubelet serves them on /metrics/cadvisor, so dashboards and alerts written
for Kubernetes read podvisor unchanged. Labels: `container`, `image`,
`namespace`, `pod`, plus cAdvisor's own where they apply (`cpu="total"`,
`device`, `interface`). cAdvisor's runtime labels `id` and `name` are left
out: they name a runtime's container instance, and here a container keeps one
cgroup across its restarts, so its counters carry on as one series.

Where podvisor differs from cAdvisor, and why:

* `container_memory_failcnt` is typed `unknown`, not `counter`: a counter's
  name must end in `_total` (OpenMetrics would rename it, and promtool flags
  it), and the name is what dashboards use.
* `container_spec_memory_limit_bytes` and `container_threads_max` are 0 when
  unlimited, as in cAdvisor; the CFS series (`container_cpu_cfs_*`) and
  `container_spec_cpu_quota` appear only for a container with a CPU limit.
* The network series are the pod's (its network namespace), labelled with
  `pod`, `namespace` and `interface` and no container, as the kubelet reports
  them for the pod's sandbox.
* A figure the host does not offer (no pressure files, no blkio) is left out,
  never reported as 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import Metric

from podvisor.supervisor.cgroups import CgroupStats
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.metrics.families import Family, Kind, non_empty
from podvisor.supervisor.metrics.netdev import InterfaceCounters
from podvisor.supervisor.pod.rootfs import LayerUsage

LABELS = ("container", "image", "namespace", "pod")


@frozen
class ContainerSample:
    """One container's cgroup as read for this scrape."""

    labels: tuple[str, str, str, str]  # values of LABELS
    stats: CgroupStats
    start_time: float | None  # wall clock of the current instance's start
    layer: LayerUsage | None = None  # its writable layer, on an image; None in host mode


Getter = Callable[[CgroupStats], float | None]


@frozen
class Series:
    name: str
    documentation: str
    kind: Kind
    value: Getter


def _limited(value: int | None, available: object) -> float | None:
    """cAdvisor's "0 means no limit", where the figure's controller exists at all."""
    if available is None:
        return None
    return float(value or 0)


def _when_cpu_limited(value: float | None, stats: CgroupStats) -> float | None:
    return value if stats.cpu_quota_us is not None else None


# --- One value per container --------------------------------------------------------

SERIES: tuple[Series, ...] = (
    Series(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        "counter",
        lambda s: s.cpu_user_seconds,
    ),
    Series(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        "counter",
        lambda s: s.cpu_system_seconds,
    ),
    Series(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        "counter",
        lambda s: _when_cpu_limited(s.cpu_periods, s),
    ),
    Series(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        "counter",
        lambda s: _when_cpu_limited(s.cpu_throttled_periods, s),
    ),
    Series(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        "counter",
        lambda s: _when_cpu_limited(s.cpu_throttled_seconds, s),
    ),
    Series(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        "gauge",
        lambda s: s.memory_cache_bytes,
    ),
    Series("container_memory_rss", "Size of RSS in bytes.", "gauge", lambda s: s.memory_rss_bytes),
    Series(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        "gauge",
        lambda s: s.memory_mapped_file_bytes,
    ),
    Series(
        "container_memory_swap",
        "Container swap usage in bytes.",
        "gauge",
        lambda s: s.memory_swap_bytes,
    ),
    Series(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
        "unknown",
        lambda s: s.memory_failcnt,
    ),
    Series(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        "gauge",
        lambda s: s.memory_usage_bytes,
    ),
    Series(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        "gauge",
        lambda s: s.memory_max_usage_bytes,
    ),
    Series(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        "gauge",
        lambda s: s.memory_working_set_bytes,
    ),
    Series(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        "counter",
        lambda s: s.oom_kills,
    ),
    Series(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        "gauge",
        lambda s: _limited(s.memory_limit_bytes, s.memory_usage_bytes),
    ),
    Series(
        "container_spec_cpu_period",
        "CPU period of the container.",
        "gauge",
        lambda s: s.cpu_period_us,
    ),
    Series(
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        "gauge",
        lambda s: s.cpu_quota_us,
    ),
    Series(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        "gauge",
        lambda s: s.cpu_shares,
    ),
    Series(
        "container_processes",
        "Number of processes running inside the container.",
        "gauge",
        lambda s: s.processes,
    ),
    Series(
        "container_threads",
        "Number of threads running inside the container",
        "gauge",
        lambda s: s.pids_current,
    ),
    Series(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
        "gauge",
        lambda s: _limited(s.pids_max, s.pids_current),
    ),
)

_PRESSURE_WORDS = {"cpu": "CPU", "memory": "memory", "io": "IO"}


def _pressure_series() -> Iterator[Series]:
    """container_pressure_{cpu,memory,io}_{stalled,waiting}_seconds_total: PSI full / some."""
    for resource, word in _PRESSURE_WORDS.items():

        def full(s: CgroupStats, r: str = resource) -> float | None:
            p = s.pressure.get(r)
            return p.full.total_seconds if p is not None and p.full is not None else None

        def some(s: CgroupStats, r: str = resource) -> float | None:
            p = s.pressure.get(r)
            return p.some.total_seconds if p is not None and p.some is not None else None

        yield Series(
            f"container_pressure_{resource}_stalled_seconds_total",
            "Total time duration no tasks in the container could make progress due to "
            f"{word} congestion.",
            "counter",
            full,
        )
        yield Series(
            f"container_pressure_{resource}_waiting_seconds_total",
            f"Total time duration tasks in the container have waited due to {word} congestion.",
            "counter",
            some,
        )


PRESSURE_SERIES = tuple(_pressure_series())

# --- Per block device -----------------------------------------------------------------

DEVICE_SERIES = (
    ("container_fs_reads_bytes_total", "Cumulative count of bytes read", "read_bytes"),
    ("container_fs_writes_bytes_total", "Cumulative count of bytes written", "write_bytes"),
    ("container_fs_reads_total", "Cumulative count of reads completed", "read_ops"),
    ("container_fs_writes_total", "Cumulative count of writes completed", "write_ops"),
)


@functools.lru_cache(maxsize=256)
def device_name(major: int, minor: int) -> str:
    """/dev/<name> of a block device, as cAdvisor labels it; "major:minor" when unknown."""
    try:
        with open(f"/sys/dev/block/{major}:{minor}/uevent", encoding="ascii") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "DEVNAME" and value:
                    return f"/dev/{value}"
    except OSError:
        pass
    return f"{major}:{minor}"


# --- Per network interface --------------------------------------------------------------

NETWORK_LABELS = ("interface", "namespace", "pod")
NETWORK_SERIES: tuple[tuple[str, str, Callable[[InterfaceCounters], int]], ...] = (
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        lambda i: i.rx_bytes,
    ),
    (
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        lambda i: i.rx_packets,
    ),
    (
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        lambda i: i.rx_dropped,
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        lambda i: i.rx_errors,
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        lambda i: i.tx_bytes,
    ),
    (
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        lambda i: i.tx_packets,
    ),
    (
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        lambda i: i.tx_dropped,
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        lambda i: i.tx_errors,
    ),
)

# --- Building the families ---------------------------------------------------------------


def container_families(samples: Sequence[ContainerSample], now: float) -> Iterator[Metric]:
    """Every per-container series for *samples*; *now* is the wall clock of this scrape."""
    yield from non_empty(_table(SERIES + PRESSURE_SERIES, samples))
    yield from non_empty([_cpu_usage(samples)])
    yield from non_empty(_devices(samples))
    yield from non_empty(_layers(samples))
    yield from non_empty(_times(samples, now))


def _table(table: Sequence[Series], samples: Sequence[ContainerSample]) -> Iterator[Family]:
    for series in table:
        family = Family(series.name, series.documentation, series.kind, LABELS)
        for sample in samples:
            value = series.value(sample.stats)
            if value is not None:
                family.add(sample.labels, value)
        yield family


def _cpu_usage(samples: Sequence[ContainerSample]) -> Family:
    # cAdvisor labels the whole-container figure cpu="total" when per-CPU
    # usage is off, as the kubelet runs it.
    family = Family(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        "counter",
        (*LABELS, "cpu"),
    )
    for sample in samples:
        if sample.stats.cpu_usage_seconds is not None:
            family.add((*sample.labels, "total"), sample.stats.cpu_usage_seconds)
    return family


def _devices(samples: Sequence[ContainerSample]) -> Iterator[Family]:
    for name, documentation, field in DEVICE_SERIES:
        family = Family(name, documentation, "counter", (*LABELS, "device"))
        for sample in samples:
            for device in sample.stats.io_devices:
                value = getattr(device, field)
                family.add((*sample.labels, device_name(device.major, device.minor)), value)
        yield family


#: A container's writable layer (its overlay's upper directory), as cAdvisor reports a
#: container's root file system: its usage, and the file system it is on.
LAYER_SERIES: tuple[tuple[str, str, Callable[[LayerUsage], int]], ...] = (
    (
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        lambda u: u.bytes_used,
    ),
    (
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
        lambda u: u.bytes_total,
    ),
    (
        "container_fs_inodes_total",
        "Number of Inodes",
        lambda u: u.inodes_total,
    ),
    (
        "container_fs_inodes_free",
        "Number of available Inodes",
        lambda u: u.inodes_free,
    ),
)


def _layers(samples: Sequence[ContainerSample]) -> Iterator[Family]:
    for name, documentation, value in LAYER_SERIES:
        family = Family(name, documentation, "gauge", (*LABELS, "device"))
        for sample in samples:
            if sample.layer is not None:
                family.add((*sample.labels, sample.layer.device), value(sample.layer))
        yield family


def _times(samples: Sequence[ContainerSample], now: float) -> Iterator[Family]:
    started = Family(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        "gauge",
        LABELS,
    )
    seen = Family(
        "container_last_seen", "Last time a container was seen by the exporter", "gauge", LABELS
    )
    for sample in samples:
        if sample.start_time is not None:
            started.add(sample.labels, sample.start_time)
        seen.add(sample.labels, now)
    yield started
    yield seen


def network_families(
    interfaces: Sequence[InterfaceCounters], namespace: str, pod: str
) -> Iterator[Metric]:
    """The pod's network counters, one series per interface."""
    for name, documentation, value in NETWORK_SERIES:
        family = Family(name, documentation, "counter", NETWORK_LABELS)
        for interface in interfaces:
            family.add((interface.name, namespace, pod), value(interface))
        yield from non_empty([family])
