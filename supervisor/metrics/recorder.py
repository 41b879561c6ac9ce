"""podvisor's own figures: what happened over time, kept between scrapes.

Everything else a scrape reports is read at scrape time (cgroup files, the
core's status). What cannot be read back later is recorded here as it
happens, by the code that sees it, in the supervisor's event loop:

* `record_probe` -- by the runner, once per attempt the probe runner
  (sidecars/probes.py) reports;
* `observe` -- by the runner, after each lifecycle transition: it measures
  how long each container instance took to count as started and as ready,
  and when the pod's conditions last changed (for /status).

Plain dicts and counts, no locks and no threads: only the event loop writes
and reads them. Histograms are kept here rather than in prometheus_client's
`Histogram` so nothing lands in the library's global registry and no
`_created` series appear. Nothing here imports the library: the supervisor
records from its start, and `own.py` makes series of the figures at scrape
time (see scrape.py for why the library waits for the first scrape).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import Pod

#: A probe attempt: an exec is milliseconds to seconds, bounded by timeoutSeconds.
PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Start-up: from the process starting to started / ready; probes make it seconds to minutes.
STARTUP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

CONTAINER_LABELS = ("container", "namespace", "pod")
#: The pod's conditions that change while it runs, in the order Kubernetes lists them.
CONDITIONS = ("Initialized", "Ready", "ContainersReady")


@dataclass
class Buckets:
    """One series of a histogram: the count in each bucket (+Inf last), and the sum."""

    counts: list[int]
    total: float = 0.0


@dataclass
class Histogram:
    """One histogram family: observations per label values, in fixed buckets."""

    name: str
    documentation: str
    labelnames: tuple[str, ...]
    bounds: tuple[float, ...]
    series: dict[tuple[str, ...], Buckets] = field(default_factory=dict)
    #: Observations so far: a family made of this histogram holds while this is unchanged.
    observations: int = 0

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = Buckets([0] * (len(self.bounds) + 1))
        # bisect_left: a value equal to a bound counts in that bucket (le = "less or equal").
        entry.counts[bisect.bisect_left(self.bounds, value)] += 1
        entry.total += value
        self.observations += 1


@frozen
class Transition:
    status: bool
    at: float  # monotonic, the event loop's clock


class PodMetrics:
    """The figures podvisor records as they happen; `own.OwnSeries` makes series of them."""

    def __init__(self, pod: Pod) -> None:
        self.pod = pod
        #: The async library the supervisor runs on; `serve_metrics` sets it.
        self.backend = "unknown"
        #: Where the endpoint listens, once `serve_metrics` has bound it.
        self.address: tuple[str, int] | None = None
        #: When each pod condition last changed (`observe`), for /status.
        self.conditions: dict[str, Transition] = {}
        #: Probe attempts by (container, probe_type, result): 0 for every probe the
        #: manifest has, so a rate of failures is 0, not missing, until one fails.
        self.probe_results: dict[tuple[str, str, str], int] = {
            (c.name, kind.capitalize(), result): 0
            for c in pod.spec.all_containers
            for kind, probe in (
                ("startup", c.startup_probe),
                ("liveness", c.liveness_probe),
                ("readiness", c.readiness_probe),
            )
            if probe is not None
            for result in ("successful", "failed")
        }
        self.probe_seconds = Histogram(
            "podvisor_probe_duration_seconds",
            "Duration in seconds of a probe attempt.",
            (*CONTAINER_LABELS, "probe_type"),
            PROBE_BUCKETS,
        )
        self.time_to_started = Histogram(
            "podvisor_container_time_to_started_seconds",
            "Seconds from a container's process starting to the container counting as started.",
            CONTAINER_LABELS,
            STARTUP_BUCKETS,
        )
        self.time_to_ready = Histogram(
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
        self.probe_results[key] = self.probe_results.get(key, 0) + 1
        labels = (container, self.pod.namespace, self.pod.name, probe_type)
        self.probe_seconds.observe(labels, max(seconds, 0.0))

    def observe(self, state: lc.PodState, now: float) -> None:
        """The core's state after a transition at *now* (monotonic): record what changed."""
        for c in state.containers:
            if c.started_at is None:
                continue
            labels = (c.name, self.pod.namespace, self.pod.name)
            if c.started and self._started_counted.get(c.name) != c.started_at:
                self._started_counted[c.name] = c.started_at
                self.time_to_started.observe(labels, max(now - c.started_at, 0.0))
            if c.ready and self._ready_counted.get(c.name) != c.started_at:
                self._ready_counted[c.name] = c.started_at
                self.time_to_ready.observe(labels, max(now - c.started_at, 0.0))
        current = dict(zip(CONDITIONS, condition_values(state), strict=True))
        for name, status in current.items():
            seen = self.conditions.get(name)
            if seen is None or seen.status != status:
                self.conditions[name] = Transition(status, now)

    @property
    def histograms(self) -> tuple[Histogram, ...]:
        """Every histogram, in the order a scrape shows them."""
        return self.probe_seconds, self.time_to_started, self.time_to_ready


def condition_values(state: lc.PodState) -> tuple[bool, bool, bool]:
    """Initialized, Ready, ContainersReady, as the core says."""
    return state.initialized, state.ready, state.containers_ready
