"""A metric family filled sample by sample, with its label names given once.

prometheus_client's `*MetricFamily.add_metric` builds a label dict per call
from names and values; a scrape of a large pod adds thousands of samples,
so `Family` keeps the names and appends `Sample`s directly. A counter's
family name drops `_total` and its samples keep it, as the client library's
own `CounterMetricFamily` does, so both exposition formats come out right.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

Kind = Literal["counter", "gauge", "unknown"]


class Family:
    """One metric family being filled: every sample has the same label names."""

    def __init__(self, name: str, documentation: str, kind: Kind, labels: Sequence[str]) -> None:
        base = name.removesuffix("_total") if kind == "counter" else name
        self.metric = Metric(base, documentation, kind)
        self._sample_name = name if kind != "counter" else base + "_total"
        self._labels = tuple(labels)

    def add(self, values: Sequence[str], value: float) -> None:
        """One sample: *values* in the order of the label names."""
        labels = dict(zip(self._labels, values, strict=True))
        self.metric.samples.append(Sample(self._sample_name, labels, value))

    def __bool__(self) -> bool:
        return bool(self.metric.samples)


def non_empty(families: Iterable[Family]) -> Iterator[Metric]:
    """The families that got samples: a series with nothing to report is left out."""
    return (f.metric for f in families if f)
