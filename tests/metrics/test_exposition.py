"""The fast encoder writes exactly what prometheus_client writes, in both formats."""

from __future__ import annotations

import os

import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import CollectorRegistry

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import ContainerKind, Resources
from podvisor.supervisor.metrics import PodMetrics, exposition
from podvisor.supervisor.metrics.collector import pod_registry
from podvisor.supervisor.metrics.exposition import Encoder, go_float, negotiate
from podvisor.supervisor.metrics.families import Family
from tests.metrics.conftest import (
    Driver,
    FakeCgroup,
    FakeNetwork,
    FakeSandbox,
    FakeView,
    container,
    full_stats,
    make_pod,
)


def full_registry() -> CollectorRegistry:
    """A registry of a pod with every kind of series, and a label value that needs escaping."""
    pod = make_pod(
        container("side", ContainerKind.SIDECAR, image='odd "image"\\with\nbreaks'),
        container("main", resources=Resources(100, 200, 2**20, 2**21)),
    )
    driver = Driver(pod)
    driver.start_all()
    driver.restart("main")
    driver.feed(lc.Exited("main", 1))
    cgroups = {c.name: FakeCgroup(full_stats()) for c in pod.spec.all_containers}
    view = FakeView(pod, driver.state, cgroups, FakeNetwork(), FakeSandbox(os.getpid()))
    metrics = PodMetrics(pod)
    metrics.record_probe("main", "liveness", True, 0.003)
    metrics.observe(driver.state, driver.now)
    return pod_registry(view, metrics)


class Frozen:
    """A registry's families collected once, so two encoders see the same numbers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = list(registry.collect())

    def collect(self) -> list[Metric]:
        return self.metrics


def test_text_format_is_byte_for_byte_the_librarys() -> None:
    frozen = Frozen(full_registry())
    encoder = Encoder()
    assert encoder.encode(frozen, openmetrics=False) == generate_latest(frozen)
    # again, from the label cache
    assert encoder.encode(frozen, openmetrics=False) == generate_latest(frozen)


def test_openmetrics_is_byte_for_byte_the_librarys() -> None:
    frozen = Frozen(full_registry())
    expected = generate_openmetrics(frozen)  # type: ignore[no-untyped-call]
    assert Encoder().encode(frozen, openmetrics=True) == expected


def test_families_it_does_not_write_go_to_the_library() -> None:
    timed = GaugeMetricFamily("timed", "with a timestamp", labels=["a"])
    timed.add_metric(["x"], 1.0, timestamp=1700000000.5)
    with_unit = CounterMetricFamily("took_seconds", "with a unit", unit="seconds", value=2.0)
    frozen = Frozen(CollectorRegistry())
    frozen.metrics = [timed, with_unit]
    assert Encoder().encode(frozen, openmetrics=False) == generate_latest(frozen)
    om = generate_openmetrics(frozen)  # type: ignore[no-untyped-call]
    assert Encoder().encode(frozen, openmetrics=True) == om


@pytest.mark.parametrize(
    "value",
    [
        *(0.0, 1.0, 3, 0.1, 1e-9, 1234567.0, 12345678.9, 1.5e20, -2.5, float("inf")),
        *(float("-inf"), 123456.0, 123456.75, -1234567.0, 1e16, 2**53, 0.000123),
    ],
)
def test_values_are_written_as_go_writes_them(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]
    assert go_float(float("nan")) == "NaN"


def test_a_kept_family_is_written_again_only_when_it_is_a_new_one() -> None:
    def kept(value: float) -> Metric:
        family = Family("kept_total", "kept between scrapes", "counter", ["a"], kept=True)
        family.add(("x",), value)
        return family.metric

    frozen = Frozen(CollectorRegistry())
    frozen.metrics = [kept(1.0)]
    encoder = Encoder()
    for openmetrics in (False, True, False):
        first = encoder.encode(frozen, openmetrics=openmetrics)
        assert encoder.encode(frozen, openmetrics=openmetrics) == first
    frozen.metrics = [kept(2.0)]
    assert b'kept_total{a="x"} 2.0' in encoder.encode(frozen, openmetrics=False)
    assert encoder.encode(frozen, openmetrics=False) == generate_latest(frozen)


def test_the_label_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exposition, "MAX_CACHED", 10)
    family = GaugeMetricFamily("g", "many label sets", labels=["i"])
    for i in range(25):
        family.add_metric([str(i)], float(i))
    frozen = Frozen(CollectorRegistry())
    frozen.metrics = [family]
    encoder = Encoder()
    assert encoder.encode(frozen, openmetrics=False) == generate_latest(frozen)
    assert len(encoder._labels) <= 10


@pytest.mark.parametrize(
    ("accept", "fast", "content_type"),
    [
        ("", True, CONTENT_TYPE_PLAIN_0_0_4),
        ("*/*", True, CONTENT_TYPE_PLAIN_0_0_4),
        ("application/openmetrics-text", True, "application/openmetrics-text; version=1.0.0"),
        # What Prometheus sends:
        (
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            True,
            "application/openmetrics-text; version=1.0.0",
        ),
        ("text/plain;version=1.0.0;escaping=allow-utf-8", True, "text/plain; version=1.0.0"),
        ("text/plain;version=1.0.0;escaping=dots", False, "text/plain; version=1.0.0"),
    ],
)
def test_negotiation_is_the_librarys_with_the_fast_encoder(
    accept: str, fast: bool, content_type: str
) -> None:
    registry = full_registry()
    encode, chosen = negotiate(accept, Encoder())
    assert chosen.startswith(content_type)
    assert (encode.__module__ == exposition.__name__) is fast
    assert encode(registry)
