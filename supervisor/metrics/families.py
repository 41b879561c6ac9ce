"""A metric family filled sample by sample, with its label names given once.

How this works: a scrape of a large pod writes thousands of samples over a
few hundred label sets that stay the same from scrape to scrape (containers,
streams, buckets). `label_set` makes each set once -- a `Labels` dict that
also carries its exposition text -- and hands the same one out again, so a
sample costs a cache look-up here and a string join in the encoder
(`exposition.Encoder`), not a new dict, a sort and an escape. The dicts are
shared between samples and scrapes: nothing may change one.

A counter's family name drops `_total` and its samples keep it, as the client
library's own `CounterMetricFamily` does, so both exposition formats come out
right. A histogram's samples are those of `HistogramMetricFamily.add_metric`.

A family whose samples will not change until something happens (a pod's
spec, a histogram between two observations) can be built as a `KeptMetric`
and yielded scrape after scrape: the encoder writes it once per format.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

Kind = Literal["counter", "gauge", "unknown", "histogram"]
#: Label sets remembered between scrapes (a pod of 100 containers has some 2,200).
MAX_LABEL_SETS = 50_000


def escape_label_value(text: str) -> str:
    """A label value as both exposition formats write it, quotes not included."""
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_text(pairs: Iterable[tuple[str, str]]) -> str:
    """A label set as both exposition formats write it: sorted by name; "" when empty."""
    rendered = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(pairs))
    return "{" + rendered + "}" if rendered else ""


class Labels(dict[str, str]):
    """A sample's labels, with their exposition text (`label_text`) made once."""

    __slots__ = ("text",)

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.text = label_text(self.items())


@functools.lru_cache(maxsize=MAX_LABEL_SETS)
def label_set(names: tuple[str, ...], values: tuple[str, ...]) -> Labels:
    """The labels *names* = *values*, the same `Labels` for the same pair (see the header)."""
    return Labels(zip(names, values, strict=True))


class PlainMetric(Metric):
    """A family made by `Family`: `Labels` on every sample; no timestamps, exemplars, units."""


class KeptMetric(PlainMetric):
    """A `PlainMetric` whose samples never change: the encoder keeps the text it wrote."""


class Family:
    """One metric family being filled: every sample has the same label names."""

    def __init__(
        self,
        name: str,
        documentation: str,
        kind: Kind,
        labels: Sequence[str],
        *,
        kept: bool = False,
    ) -> None:
        base = name.removesuffix("_total") if kind == "counter" else name
        self.metric = (KeptMetric if kept else PlainMetric)(base, documentation, kind)
        self._sample_name = name if kind != "counter" else base + "_total"
        self._labels = tuple(labels)
        self._bucket_labels = (*self._labels, "le")

    def add(self, values: tuple[str, ...], value: float) -> None:
        """One sample: *values* in the order of the label names."""
        labels = label_set(self._labels, values)
        self.metric.samples.append(Sample(self._sample_name, labels, value))

    def add_histogram(
        self, values: tuple[str, ...], buckets: Sequence[tuple[str, float]], total: float
    ) -> None:
        """A histogram's series: cumulative *buckets* (bound, count; +Inf last), count, sum."""
        name, samples = self._sample_name, self.metric.samples
        for bound, count in buckets:
            labels = label_set(self._bucket_labels, (*values, bound))
            samples.append(Sample(name + "_bucket", labels, count))
        labels = label_set(self._labels, values)
        samples.append(Sample(name + "_count", labels, buckets[-1][1]))
        samples.append(Sample(name + "_sum", labels, total))

    def __bool__(self) -> bool:
        return bool(self.metric.samples)


def non_empty(families: Iterable[Family]) -> Iterator[Metric]:
    """The families that got samples: a series with nothing to report is left out."""
    return (f.metric for f in families if f)
