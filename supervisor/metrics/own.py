"""podvisor's own `podvisor_*` series, made at scrape time of what `recorder.PodMetrics` holds.

Build info, orphans reaped, log lines and bytes, probe attempts, and the
histograms: probe durations, time to started and to ready.

A histogram's family is built at the first scrape after an observation and
yielded as it is until the next one (a `KeptMetric`: the encoder keeps its
text): start-up histograms change once per container start, and have 16
series per container.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from podvisor.supervisor.metrics.families import Family, non_empty
from podvisor.supervisor.metrics.recorder import CONTAINER_LABELS, Histogram, PodMetrics
from podvisor.supervisor.pod.view import PodView


class OwnSeries:
    """The podvisor_* families of one pod, with its histograms' families kept (see the header)."""

    def __init__(self, metrics: PodMetrics) -> None:
        self._metrics = metrics
        #: Per histogram name: the family, and the observation count it was built at.
        self._histograms: dict[str, tuple[int, Metric]] = {}

    def families(self, view: PodView, version: str) -> Iterator[Metric]:
        """podvisor_* series: build info, orphans, logs, probes, start-up times."""
        metrics, pod = self._metrics, self._metrics.pod
        build = Family(
            "podvisor_build_info",
            "A metric with a constant '1' value labeled by podvisor's version and async backend.",
            "gauge",
            ("version", "backend"),
        )
        build.add((version, metrics.backend), 1.0)
        orphans = Family(
            "podvisor_orphans_reaped_total",
            "Orphaned processes an init reaped: by the container whose own init reaped "
            "them, or with an empty container label by the pod's init (shareProcessNamespace).",
            "counter",
            ("container", "namespace", "pod"),
        )
        orphans.add(("", pod.namespace, pod.name), float(view.orphans_reaped))
        counted = view.container_orphans.counts()
        for c in pod.spec.all_containers:
            orphans.add((c.name, pod.namespace, pod.name), float(counted.get(c.name, 0)))
        logs = _log_families(metrics, view)
        yield from non_empty([build, orphans, *logs, _probe_family(metrics)])
        yield from (self._histogram(h) for h in metrics.histograms)

    def _histogram(self, histogram: Histogram) -> Metric:
        kept = self._histograms.get(histogram.name)
        if kept is None or kept[0] != histogram.observations:
            kept = (histogram.observations, histogram_family(histogram))
            self._histograms[histogram.name] = kept
        return kept[1]


def histogram_family(histogram: Histogram) -> Metric:
    """*histogram* as a kept family: cumulative buckets, count and sum per series."""
    family = Family(
        histogram.name, histogram.documentation, "histogram", histogram.labelnames, kept=True
    )
    bounds = [_le(bound) for bound in (*histogram.bounds, float("inf"))]
    for labels, entry in sorted(histogram.series.items()):
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, entry.counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_histogram(labels, buckets, entry.total)
    return family.metric


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it ("0.5", "10.0", "+Inf")."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _probe_family(metrics: PodMetrics) -> Family:
    pod = metrics.pod
    family = Family(
        "podvisor_probe_total",
        "Cumulative number of probe attempts, by type and result.",
        "counter",
        (*CONTAINER_LABELS, "probe_type", "result"),
    )
    for (container, probe_type, result), count in sorted(metrics.probe_results.items()):
        family.add((container, pod.namespace, pod.name, probe_type, result), float(count))
    return family


def _log_families(metrics: PodMetrics, view: PodView) -> list[Family]:
    pod, labels = metrics.pod, (*CONTAINER_LABELS, "stream")
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
    for c in pod.spec.all_containers:
        log = view.sink.containers.get(c.name)
        for stream in ("stdout", "stderr"):
            values = (c.name, pod.namespace, pod.name, stream)
            lines.add(values, float(log.lines.get(stream, 0) if log else 0))
            size.add(values, float(log.bytes.get(stream, 0) if log else 0))
    dropped = Family(
        "podvisor_log_lines_dropped_total",
        "Lines podvisor could not write: to its own stdout or stderr (nobody read them, or "
        "the stream failed), or to the log files (a full disk).",
        "counter",
        ("namespace", "pod", "destination"),
    )
    dropped.add((pod.namespace, pod.name, "output"), float(view.sink.output_drops))
    dropped.add((pod.namespace, pod.name, "files"), float(view.sink.file_drops))
    return [lines, size, dropped]
