"""podvisor's own figures: what happened over time, kept between scrapes.

Everything else a scrape reports is read at scrape time (cgroup files, the
core's status). What cannot be read back later is recorded here as it
happens, by the code that sees it, in the supervisor's event loop:

* `record_probe` -- by the probe runner (sidecars/probes.py), once per attempt;
* `observe` -- by the runner, after each lifecycle transition: it measures
  how long each container instance took to count as started and as ready,
  and when the pod's conditions last changed (for /status).

Plain dicts and counts, no locks and no threads: only the event loop writes
and reads them. Histograms are kept here rather than in prometheus_client's
`Histogram` so nothing lands in the library's global registry and no
`_created` series appear.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import Pod
from podvisor.supervisor.metrics.families import Family, non_empty
from podvisor.supervisor.metrics.view import PodView

#: A probe attempt: an exec is milliseconds to seconds, bounded by timeoutSeconds.
PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Start-up: from the process starting to started / ready; probes make it seconds to minutes.
STARTUP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

CONTAINER_LABELS = ("container", "namespace", "pod")
#: The pod's conditions that change while it runs, in the order Kubernetes lists them.
CONDITIONS = ("Initialized", "Ready", "ContainersReady")


@dataclass
class _Buckets:
    counts: list[int]
    total: float = 0.0


@dataclass
class Histogram:
    """One histogram family: observations per label values, in fixed buckets.

    Its family is built at the first scrape after an observation and yielded
    as it is until the next one (a `KeptMetric`: the encoder keeps its text):
    start-up histograms change once per container start, and have 16 series
    per container.
    """

    name: str
    documentation: str
    labelnames: tuple[str, ...]
    bounds: tuple[float, ...]
    series: dict[tuple[str, ...], _Buckets] = field(default_factory=dict)
    _built: Metric | None = field(default=None, init=False, repr=False)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = _Buckets([0] * (len(self.bounds) + 1))
        # bisect_left: a value equal to a bound counts in that bucket (le = "less or equal").
        entry.counts[bisect.bisect_left(self.bounds, value)] += 1
        entry.total += value
        self._built = None

    def family(self) -> Metric:
        if self._built is None:
            self._built = self._build()
        return self._built

    def _build(self) -> Metric:
        family = Family(self.name, self.documentation, "histogram", self.labelnames, kept=True)
        bounds = [_le(bound) for bound in (*self.bounds, float("inf"))]
        for labels, entry in sorted(self.series.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, entry.counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_histogram(labels, buckets, entry.total)
        return family.metric


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it ("0.5", "10.0", "+Inf")."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


@dataclass(frozen=True)
class Transition:
    status: bool
    at: float  # monotonic, the event loop's clock


class PodMetrics:
    """The figures podvisor records as they happen, and the series it makes of them."""

    def __init__(self, pod: Pod) -> None:
        self.pod = pod
        #: The async library the supervisor runs on; `serve_metrics` sets it.
        self.backend = "unknown"
        #: Where the endpoint listens, once `serve_metrics` has bound it.
        self.address: tuple[str, int] | None = None
        #: When each pod condition last changed (`observe`), for /status.
        self.conditions: dict[str, Transition] = {}
        self._probe_results: dict[tuple[str, str, str], int] = {}
        self._probe_seconds = Histogram(
            "podvisor_probe_duration_seconds",
            "Duration in seconds of a probe attempt.",
            (*CONTAINER_LABELS, "probe_type"),
            PROBE_BUCKETS,
        )
        self._to_started = Histogram(
            "podvisor_container_time_to_started_seconds",
            "Seconds from a container's process starting to the container counting as started.",
            CONTAINER_LABELS,
            STARTUP_BUCKETS,
        )
        self._to_ready = Histogram(
            "podvisor_container_time_to_ready_seconds",
            "Seconds from a container's process starting to the container first being ready.",
            CONTAINER_LABELS,
            STARTUP_BUCKETS,
        )
        self._started_counted: dict[str, float] = {}  # container -> started_at counted
        self._ready_counted: dict[str, float] = {}

    # --- Recording -------------------------------------------------------------------

    def record_probe(self, container: str, kind: str, success: bool, seconds: float) -> None:
        """One probe attempt of *container*: *kind* is startup, liveness or readiness.

        Counted as the kubelet counts them (`prober_probe_total`,
        `prober_probe_duration_seconds`): probe_type Startup / Liveness /
        Readiness, result successful / failed.
        """
        probe_type = lc.ProbeKind(kind).value.capitalize()
        result = "successful" if success else "failed"
        key = (container, probe_type, result)
        self._probe_results[key] = self._probe_results.get(key, 0) + 1
        labels = (container, self.pod.namespace, self.pod.name, probe_type)
        self._probe_seconds.observe(labels, max(seconds, 0.0))

    def observe(self, state: lc.PodState, now: float) -> None:
        """The core's state after a transition at *now* (monotonic): record what changed."""
        for c in state.containers:
            if c.started_at is None:
                continue
            labels = (c.name, self.pod.namespace, self.pod.name)
            if c.started and self._started_counted.get(c.name) != c.started_at:
                self._started_counted[c.name] = c.started_at
                self._to_started.observe(labels, max(now - c.started_at, 0.0))
            if c.ready and self._ready_counted.get(c.name) != c.started_at:
                self._ready_counted[c.name] = c.started_at
                self._to_ready.observe(labels, max(now - c.started_at, 0.0))
        current = dict(zip(CONDITIONS, condition_values(state), strict=True))
        for name, status in current.items():
            seen = self.conditions.get(name)
            if seen is None or seen.status != status:
                self.conditions[name] = Transition(status, now)

    # --- Series ----------------------------------------------------------------------

    def families(self, view: PodView, version: str) -> Iterator[Metric]:
        """podvisor_* series: build info, orphans, logs, probes, start-up times."""
        pod = self.pod
        build = Family(
            "podvisor_build_info",
            "A metric with a constant '1' value labeled by podvisor's version and async backend.",
            "gauge",
            ("version", "backend"),
        )
        build.add((version, self.backend), 1.0)
        orphans = Family(
            "podvisor_orphans_reaped_total",
            "Processes the pod's init reaped that no container's main process was (orphans).",
            "counter",
            ("namespace", "pod"),
        )
        orphans.add((pod.namespace, pod.name), float(view.orphans_reaped))
        yield from non_empty([build, orphans, *self._log_families(view), self._probe_family()])
        yield self._probe_seconds.family()
        yield self._to_started.family()
        yield self._to_ready.family()

    def _probe_family(self) -> Family:
        family = Family(
            "podvisor_probe_total",
            "Cumulative number of probe attempts, by type and result.",
            "counter",
            (*CONTAINER_LABELS, "probe_type", "result"),
        )
        for (container, probe_type, result), count in sorted(self._probe_results.items()):
            values = (container, self.pod.namespace, self.pod.name, probe_type, result)
            family.add(values, float(count))
        return family

    def _log_families(self, view: PodView) -> list[Family]:
        labels = (*CONTAINER_LABELS, "stream")
        lines = Family(
            "podvisor_container_log_lines_total",
            "Lines a container wrote to its stdout or stderr, over all its restarts.",
            "counter",
            labels,
        )
        size = Family(
            "podvisor_container_log_bytes_total",
            "Bytes a container wrote to its stdout or stderr (newlines included), over all "
            "its restarts.",
            "counter",
            labels,
        )
        for c in self.pod.spec.all_containers:
            log = view.sink.containers.get(c.name)
            for stream in ("stdout", "stderr"):
                values = (c.name, self.pod.namespace, self.pod.name, stream)
                lines.add(values, float(log.lines.get(stream, 0) if log else 0))
                size.add(values, float(log.bytes.get(stream, 0) if log else 0))
        return [lines, size]


def condition_values(state: lc.PodState) -> tuple[bool, bool, bool]:
    """Initialized, Ready, ContainersReady, as the core says."""
    return state.initialized, state.ready, state.containers_ready
