"""Writing a scrape: Prometheus text 0.0.4 or OpenMetrics 1.0, byte for byte as
prometheus_client writes them, in a fraction of the time.

Why not the library's encoders: they escape and sort every label of every
sample, every scrape; a pod of 100 containers has some 7,500 samples over
some 2,200 distinct label sets, and encoding took as long as reading all the
cgroup files. `Encoder` renders each label set once and keeps it between
scrapes (the sets are stable: containers, streams, buckets), bounded by
`MAX_CACHED`. Only the kinds podvisor's collectors produce are written here
(counter, gauge, unknown, histogram; no timestamps, exemplars or units); any
other family goes through the library's encoder, so the output is always
right. The tests compare both encoders' bytes on a full scrape.

Samples of podvisor's own families (`families.PlainMetric`) carry their
label text already (`families.Labels`), and a `families.KeptMetric` is
written once per format and its text kept for as long as the collector
yields the same one.

Negotiation stays the library's (`choose_encoder`): this only replaces the
encoder it picks for the two standard content types.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.exposition import choose_encoder
from prometheus_client.exposition import generate_latest as library_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES
from prometheus_client.registry import Collector

from podvisor.supervisor.metrics.families import (
    KeptMetric,
    Labels,
    PlainMetric,
    escape_label_value,
    label_text,
)

#: Label sets remembered between scrapes; past this, the cache starts afresh.
MAX_CACHED = 50_000
_FAST_KINDS = frozenset({"counter", "gauge", "unknown", "histogram"})
_TEXT_KIND = {"unknown": "untyped"}  # text 0.0.4's word for OpenMetrics' unknown
_GO_WORDS = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}

LabelKey = tuple[tuple[str, str], ...]


def go_float(value: float) -> str:
    """A sample value as Go (and prometheus_client's floatToGoString) writes it."""
    text = repr(float(value))
    if len(text) <= 8:  # the usual case: the dot, if any, is too near the start to matter
        return _GO_WORDS.get(text, text)
    dot = text.find(".")
    if dot > 6 and value > 0:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


class _One:
    """One family as a collector, to hand it to the library's encoder."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> list[Metric]:
        return [self._metric]


class Encoder:
    """Renders a registry in either format; remembers label sets between scrapes."""

    def __init__(self) -> None:
        self._labels: dict[LabelKey, str] = {}
        #: Per format, the text of each `KeptMetric` of the last scrape, by identity.
        self._kept: dict[bool, dict[int, tuple[KeptMetric, str]]] = {False: {}, True: {}}

    def encode(self, registry: Collector, *, openmetrics: bool) -> bytes:
        out: list[str] = []
        seen, kept = self._kept[openmetrics], {}
        for metric in registry.collect():
            if isinstance(metric, KeptMetric):
                # Kept by identity, with the family itself, so the id stays its own.
                found = seen.get(id(metric))
                text = found[1] if found and found[0] is metric else self._text(metric, openmetrics)
                kept[id(metric)] = (metric, text)
                out.append(text)
            else:
                out.append(self._text(metric, openmetrics))
        self._kept[openmetrics] = kept  # families no longer yielded are let go
        if openmetrics:
            out.append("# EOF\n")
        return "".join(out).encode()

    def _text(self, metric: Metric, openmetrics: bool) -> str:
        if isinstance(metric, PlainMetric) or _plain(metric):
            return self._family(metric, openmetrics=openmetrics)
        return _library(metric, openmetrics=openmetrics)

    def _family(self, metric: Metric, *, openmetrics: bool) -> str:
        if openmetrics:
            name, kind = metric.name, metric.type
            documentation = escape_label_value(metric.documentation)
        else:
            name = metric.name + "_total" if metric.type == "counter" else metric.name
            kind = _TEXT_KIND.get(metric.type, metric.type)
            documentation = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        lines = [f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n"]
        lines += [
            f"{s.name}{self._label_text(s.labels)} {go_float(s.value)}\n" for s in metric.samples
        ]
        return "".join(lines)

    def _label_text(self, labels: dict[str, str]) -> str:
        if isinstance(labels, Labels):
            return labels.text
        key = tuple(labels.items())
        rendered = self._labels.get(key)
        if rendered is None:
            if len(self._labels) >= MAX_CACHED:
                self._labels.clear()
            rendered = self._labels[key] = label_text(key)
        return rendered


def _library(metric: Metric, *, openmetrics: bool) -> str:
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest as library_om

        text: str = library_om(_One(metric)).decode()  # type: ignore[no-untyped-call]
        return text.removesuffix("# EOF\n")
    return library_text(_One(metric)).decode()


def _plain(metric: Metric) -> bool:
    """Whether this module writes *metric* itself (see the module's header)."""
    if metric.type not in _FAST_KINDS or metric.unit:
        return False
    return all(
        s.timestamp is None and s.exemplar is None and s.native_histogram is None
        for s in metric.samples
    )


def negotiate(accept: str, encoder: Encoder) -> tuple[Callable[[Collector], bytes], str]:
    """The encoder and content type for an Accept header, as prometheus_client chooses them.

    podvisor's names are all in the legacy character set, so the "underscores"
    and "allow-utf-8" escapings write them alike: both take the fast path.
    """
    library, content_type = choose_encoder(accept)
    mime, *rest = (part.strip() for part in content_type.split(";"))
    params = dict(p.partition("=")[::2] for p in rest)
    if params.get("escaping", UNDERSCORES) not in (UNDERSCORES, ALLOWUTF8):
        return library, content_type
    if mime == "text/plain":
        return (lambda registry: encoder.encode(registry, openmetrics=False)), content_type
    if mime == "application/openmetrics-text" and params.get("version") == "1.0.0":
        return (lambda registry: encoder.encode(registry, openmetrics=True)), content_type
    return library, content_type
