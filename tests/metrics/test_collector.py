"""The collector's series: names, types, units, labels and values, against a stand-in runner."""

from __future__ import annotations

import os

import pytest
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.cgroups import CgroupStats
from podvisor.supervisor.manifest.model import ContainerKind, Resources
from podvisor.supervisor.metrics import PodMetrics
from podvisor.supervisor.metrics.collector import PodCollector, pod_registry
from podvisor.supervisor.metrics.exposition import Encoder
from podvisor.supervisor.pod.logs import LogLine, LogSink
from tests.metrics.conftest import (
    OFFSET,
    Driver,
    FakeCgroup,
    FakeNetwork,
    FakeSandbox,
    FakeView,
    Scrape,
    container,
    full_stats,
    make_pod,
    parse,
    promtool_findings,
    scrape,
)
from tests.metrics.test_exposition import Frozen


def running_view(**stats: object) -> tuple[FakeView, Driver]:
    pod = make_pod(
        container("side", ContainerKind.SIDECAR, image="busybox"),
        container(
            "main",
            resources=Resources(250, 500, 64 * 2**20, 128 * 2**20, 2**30),
            image="python:3.11-slim",
        ),
    )
    driver = Driver(pod)
    driver.start_all()
    cgroups = {c.name: FakeCgroup(full_stats(**stats)) for c in pod.spec.all_containers}
    view = FakeView(pod, driver.state, cgroups)
    return view, driver


# --- cAdvisor ----------------------------------------------------------------------------


def test_cadvisor_series_have_cadvisors_names_types_and_labels() -> None:
    view, _ = running_view()
    found = scrape(view)
    labels = {"container": "main", "namespace": "default", "pod": "web"}
    assert found.value("container_cpu_usage_seconds_total", cpu="total", **labels) == 12.5
    assert found.value("container_cpu_user_seconds_total", **labels) == 10.0
    assert found.value("container_cpu_system_seconds_total", **labels) == 2.5
    assert found.value("container_cpu_cfs_periods_total", **labels) == 100
    assert found.value("container_cpu_cfs_throttled_periods_total", **labels) == 7
    assert found.value("container_cpu_cfs_throttled_seconds_total", **labels) == 0.75
    assert found.value("container_memory_usage_bytes", **labels) == 50_000_000
    assert found.value("container_memory_working_set_bytes", **labels) == 40_000_000
    assert found.value("container_memory_rss", **labels) == 30_000_000
    assert found.value("container_memory_cache", **labels) == 10_000_000
    assert found.value("container_memory_swap", **labels) == 0
    assert found.value("container_memory_max_usage_bytes", **labels) == 60_000_000
    assert found.value("container_memory_failcnt", **labels) == 3
    assert found.value("container_oom_events_total", **labels) == 2
    assert found.value("container_spec_memory_limit_bytes", **labels) == 134_217_728
    assert found.value("container_spec_cpu_quota", **labels) == 50_000
    assert found.value("container_spec_cpu_period", **labels) == 100_000
    assert found.value("container_spec_cpu_shares", **labels) == 512
    assert found.value("container_threads", **labels) == 9
    assert found.value("container_threads_max", **labels) == 100
    assert found.value("container_processes", **labels) == 4
    assert found.value("container_pressure_cpu_waiting_seconds_total", **labels) == 4.5
    assert found.value("container_pressure_memory_stalled_seconds_total", **labels) == 2.25
    assert found.value("container_pressure_io_stalled_seconds_total", **labels) == 2.25
    [main] = [ls for ls in found.labels_of("container_memory_rss") if ls["container"] == "main"]
    assert main == {**labels, "image": "python:3.11-slim"}
    counters = [n for n, t in found.types.items() if t == "counter"]
    assert "container_cpu_usage_seconds" in counters  # the family; samples end in _total
    assert found.types["container_memory_working_set_bytes"] == "gauge"


def test_block_io_is_per_device_as_cadvisor_names_it() -> None:
    view, _ = running_view()
    found = scrape(view)
    [labels] = [
        ls for ls in found.labels_of("container_fs_reads_bytes_total") if ls["container"] == "main"
    ]
    assert labels["device"].startswith(("/dev/", "8:0"))
    assert found.value("container_fs_reads_bytes_total", container="main") == 4096
    assert found.value("container_fs_writes_bytes_total", container="main") == 8192
    assert found.value("container_fs_reads_total", container="main") == 1
    assert found.value("container_fs_writes_total", container="main") == 2


def test_unlimited_is_zero_and_cfs_series_need_a_cpu_limit() -> None:
    view, _ = running_view(memory_limit_bytes=None, pids_max=None, cpu_quota_us=None)
    found = scrape(view)
    assert found.value("container_spec_memory_limit_bytes", container="main") == 0
    assert found.value("container_threads_max", container="main") == 0
    assert found.find("container_spec_cpu_quota") == []
    assert found.find("container_cpu_cfs_periods_total") == []
    assert found.find("container_cpu_cfs_throttled_seconds_total") == []


def test_a_figure_the_host_lacks_is_left_out_not_zero() -> None:
    view, _ = running_view(pressure={}, memory_swap_bytes=None, io_devices=())
    found = scrape(view)
    assert not any(n.startswith("container_pressure_") for n in found.names())
    assert found.find("container_memory_swap") == []
    assert found.find("container_fs_reads_bytes_total") == []
    assert found.find("container_memory_rss", container="main") == [30_000_000]


def test_start_time_and_last_seen_are_wall_clock() -> None:
    view, driver = running_view()
    main = driver.state.container("main")
    assert main.started_at is not None
    found = scrape(view)
    start = found.value("container_start_time_seconds", container="main")
    assert start == main.started_at + OFFSET
    assert found.value("container_last_seen", container="main") > start


def test_a_restarted_container_keeps_one_continuous_series() -> None:
    view, driver = running_view()
    before = scrape(view)
    for _ in range(3):
        driver.restart("main")
    view.state = driver.state
    assert driver.state.container("main").restart_count == 3
    after = scrape(view)
    for name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes"):
        assert before.labels_of(name) == after.labels_of(name)
    assert after.value("kube_pod_container_status_restarts_total", container="main") == 3


def test_a_container_gone_for_good_loses_its_cgroup_series() -> None:
    pod = make_pod(container("setup", ContainerKind.INIT), container("main"))
    driver = Driver(pod)
    driver.start_all()
    driver.feed(lc.Exited("setup", 0))
    driver.start_all()
    cgroups = {c.name: FakeCgroup(full_stats()) for c in pod.spec.all_containers}
    found = scrape(FakeView(pod, driver.state, cgroups))
    assert {ls["container"] for ls in found.labels_of("container_memory_rss")} == {"main"}
    # kube-state-metrics keeps the completed init container's status
    assert found.value("kube_pod_init_container_status_terminated", container="setup") == 1
    reason = found.labels_of("kube_pod_init_container_status_terminated_reason")
    assert [ls["reason"] for ls in reason] == ["Completed"]


def test_containers_not_yet_started_have_no_cgroup_series() -> None:
    pod = make_pod(container("setup", ContainerKind.INIT), container("main"))
    driver = Driver(pod)
    cgroups = {c.name: FakeCgroup(full_stats()) for c in pod.spec.all_containers}
    found = scrape(FakeView(pod, driver.state, cgroups))
    assert {ls["container"] for ls in found.labels_of("container_memory_rss")} == {"setup"}
    assert found.value("kube_pod_container_status_waiting", container="main") == 1


def test_a_cgroup_that_vanished_or_failed_is_left_out() -> None:
    class Broken(FakeCgroup):
        def read(self) -> CgroupStats:
            raise PermissionError(13, "Permission denied")

    view, _ = running_view()
    view.cgroups = {
        "side": FakeCgroup(CgroupStats(gone=True, memory_rss_bytes=1)),
        "main": Broken(CgroupStats()),
    }
    found = scrape(view)
    assert found.find("container_memory_rss") == []
    assert found.value("container_scrape_error") == 1
    assert scrape(running_view()[0]).value("container_scrape_error") == 0


def test_network_counters_are_the_pods_from_its_namespace() -> None:
    view, _ = running_view()
    view.network = FakeNetwork()
    view.init = FakeSandbox(host_pid=os.getpid())  # our own namespace stands in
    found = scrape(view)
    interfaces = {
        ls["interface"] for ls in found.labels_of("container_network_receive_bytes_total")
    }
    assert "lo" not in interfaces  # cAdvisor leaves loopback out
    for ls in found.labels_of("container_network_transmit_packets_total"):
        assert set(ls) == {"interface", "namespace", "pod"}
    view.network = FakeNetwork(netns_path=None)  # host network: the machine's, not the pod's
    assert not any(n.startswith("container_network_") for n in scrape(view).names())


def test_no_series_before_the_core_has_begun() -> None:
    view = FakeView(make_pod(container("main")))
    found = scrape(view)
    assert not any(n.startswith("container_memory") for n in found.names())
    assert found.value("kube_pod_status_phase", phase="Pending") == 1
    assert found.value("kube_pod_container_status_waiting", container="main") == 1


# --- kube-state-metrics -----------------------------------------------------------------


def test_kube_state_metrics_series_follow_the_status() -> None:
    view, driver = running_view()
    driver.restart("main", code=137)
    view.state = driver.state
    found = scrape(view)
    base = {"namespace": "default", "pod": "web", "uid": view.pod.uid}
    main = {"container": "main", **base}
    assert found.value("kube_pod_container_status_restarts_total", **main) == 1
    assert found.value("kube_pod_container_status_running", **main) == 1
    assert found.value("kube_pod_container_status_waiting", **main) == 0
    assert found.value("kube_pod_container_status_terminated", **main) == 0
    assert found.value("kube_pod_container_status_ready", **main) == 1
    assert (
        found.value("kube_pod_container_status_last_terminated_reason", reason="Error", **main) == 1
    )
    assert found.value("kube_pod_container_status_last_terminated_exitcode", **main) == 137
    assert found.find("kube_pod_container_status_waiting_reason", **main) == []
    assert found.value("kube_pod_init_container_status_running", container="side", **base) == 1
    limits = "kube_pod_container_resource_limits"
    assert found.value(limits, resource="cpu", unit="core", **main) == 0.5
    assert found.value(limits, resource="memory", unit="byte", **main) == 128 * 2**20
    assert found.value(limits, resource="ephemeral_storage", unit="byte", **main) == 2**30
    requests = "kube_pod_container_resource_requests"
    assert found.value(requests, resource="cpu", unit="core", **main) == 0.25
    assert found.find(limits, container="side") == []
    assert found.value("kube_pod_status_phase", phase="Running", **base) == 1
    assert found.value("kube_pod_status_phase", phase="Pending", **base) == 0
    assert found.value("kube_pod_status_ready", condition="true", **base) == 1
    assert found.value("kube_pod_start_time", **base) == driver.state.start_time + OFFSET


def test_waiting_reason_in_back_off() -> None:
    view, driver = running_view()
    driver.restart("main")  # the first restart is at once
    driver.feed(lc.Exited("main", 2))  # the second waits out a back-off
    view.state = driver.state
    found = scrape(view)
    assert (
        found.value(
            "kube_pod_container_status_waiting_reason", container="main", reason="CrashLoopBackOff"
        )
        == 1
    )
    assert found.value("kube_pod_status_ready", condition="false") == 1
    # back-off: the container may run again, so its cgroup series stay
    assert found.find("container_memory_rss", container="main") == [30_000_000]


# --- podvisor's own ----------------------------------------------------------------------


def test_podvisors_own_series() -> None:
    view, _ = running_view()
    view.orphans_reaped = 4
    # main's init counted 3, then it restarted and its next one counted 2.
    for count in (3, 2):
        os.pwrite(view.container_orphans.new_file("main"), count.to_bytes(8, "little"), 0)
    assert isinstance(view.sink, LogSink)
    view.sink.emit(LogLine(0.0, "main", "stdout", "hello"))
    view.sink.emit(LogLine(0.0, "main", "stderr", "oops"))
    view.sink.emit(LogLine(0.0, "main", "stderr", "again"))
    metrics = PodMetrics(view.pod)
    metrics.record_probe("main", lc.ProbeKind.READINESS, True, 0.02)
    metrics.record_probe("main", "readiness", False, 1.5)
    found = scrape(view, metrics)
    main = {"container": "main", "namespace": "default", "pod": "web"}
    orphans = "podvisor_orphans_reaped_total"
    assert found.value(orphans, container="", namespace="default", pod="web") == 4
    assert found.value(orphans, **main) == 5
    assert found.value(orphans, container="side", namespace="default", pod="web") == 0
    view.container_orphans.close()
    assert found.value("podvisor_container_log_lines_total", stream="stderr", **main) == 2
    assert found.value("podvisor_container_log_bytes_total", stream="stdout", **main) == 6
    assert found.value("podvisor_container_log_lines_total", stream="stdout", container="side") == 0
    probes = "podvisor_probe_total"
    assert found.value(probes, probe_type="Readiness", result="successful", **main) == 1
    assert found.value(probes, probe_type="Readiness", result="failed", **main) == 1
    duration = "podvisor_probe_duration_seconds"
    assert found.value(duration + "_count", probe_type="Readiness", **main) == 2
    assert found.value(duration + "_sum", probe_type="Readiness", **main) == 1.52
    assert found.value(duration + "_bucket", le="0.025", **main) == 1
    assert found.value(duration + "_bucket", le="+Inf", **main) == 2
    [build] = found.labels_of("podvisor_build_info")
    assert build["version"]
    assert build["backend"] == "unknown"  # serve_metrics sets it
    assert found.find("podvisor_process_cpu_seconds_total")


def test_time_to_started_and_ready_per_instance() -> None:
    pod = make_pod(container("main"))
    driver = Driver(pod)
    metrics = PodMetrics(pod)
    driver.start_all()  # Started 1 s after begin; started and ready at once
    metrics.observe(driver.state, driver.now + 0.5)
    metrics.observe(driver.state, driver.now + 9)  # no change: nothing more counted
    driver.restart("main")
    metrics.observe(driver.state, driver.now + 2)
    found = scrape(FakeView(pod, driver.state), metrics)
    started = "podvisor_container_time_to_started_seconds"
    assert found.value(started + "_count", container="main") == 2
    assert found.value(started + "_sum", container="main") == 2.5
    assert found.value("podvisor_container_time_to_ready_seconds_count", container="main") == 2
    assert metrics.conditions["Ready"].status is True


def test_one_registry_scraped_again_shows_what_changed_in_between() -> None:
    """Families kept between scrapes (kube_pod_*, histograms) are made again after a change."""
    view, driver = running_view()
    metrics = PodMetrics(view.pod)
    registry = pod_registry(view, metrics)
    encoder = Encoder()

    def scrape_again() -> Scrape:
        frozen = Frozen(registry)  # one collection for both encoders
        text = encoder.encode(frozen, openmetrics=False)
        assert text == generate_latest(frozen)
        return parse(text.decode())

    restarts, duration = (
        "kube_pod_container_status_restarts_total",
        "podvisor_probe_duration_seconds",
    )
    first = scrape_again()
    assert first.value(restarts, container="main") == 0
    assert first.find(duration + "_count") == []
    again = scrape_again()
    assert again.find(restarts) == first.find(restarts)  # nothing changed: the same series
    driver.restart("main")
    view.state = driver.state
    metrics.record_probe("main", "liveness", True, 0.2)
    then = scrape_again()
    assert then.value(restarts, container="main") == 1
    assert then.value(duration + "_count", container="main") == 1
    assert then.value(duration + "_bucket", container="main", le="0.1") == 0


def test_a_histogram_family_is_kept_until_its_next_observation() -> None:
    """The encoder writes a kept family once: it must be the same one until it changes."""
    view, _ = running_view()
    metrics = PodMetrics(view.pod)
    collector = PodCollector(view, metrics)

    def histograms() -> list[Metric]:
        return [m for m in collector.collect() if m.type == "histogram"]

    first = histograms()
    assert [m.name for m in first] == [h.name for h in metrics.histograms]
    assert all(a is b for a, b in zip(first, histograms(), strict=True))
    metrics.record_probe("main", "liveness", True, 0.2)
    probes, *startup = histograms()
    assert probes is not first[0]
    assert [s.value for s in probes.samples if s.name.endswith("_count")] == [1]
    assert all(a is b for a, b in zip(first[1:], startup, strict=True))


def test_record_probe_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        PodMetrics(make_pod(container("main"))).record_probe("main", "nonsense", True, 0.1)


# --- The exposition, checked by the tools --------------------------------------------------


def test_the_whole_exposition_passes_promtool() -> None:
    view, driver = running_view()
    driver.restart("main")
    view.state = driver.state
    view.network = FakeNetwork()
    view.init = FakeSandbox(host_pid=os.getpid())
    metrics = PodMetrics(view.pod)
    metrics.record_probe("main", "liveness", True, 0.01)
    metrics.observe(driver.state, driver.now)
    body = generate_latest(pod_registry(view, metrics))
    assert promtool_findings(body) == ""


def test_openmetrics_exposition_parses_back() -> None:
    view, _ = running_view()
    metrics = PodMetrics(view.pod)
    metrics.record_probe("main", "startup", True, 0.01)
    encode, content_type = choose_encoder("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    text = encode(pod_registry(view, metrics)).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
    assert families["container_cpu_usage_seconds"].type == "counter"
    assert families["container_memory_failcnt"].type == "unknown"
    assert families["podvisor_probe_duration_seconds"].type == "histogram"


def test_collector_has_no_describe_so_registration_does_not_scrape() -> None:
    class Counting(FakeCgroup):
        reads = 0

        def read(self) -> CgroupStats:
            Counting.reads += 1
            return super().read()

    view, _ = running_view()
    view.cgroups = {"main": Counting(full_stats())}
    registry = pod_registry(view, PodMetrics(view.pod))
    assert Counting.reads == 0
    generate_latest(registry)
    assert Counting.reads == 1
    assert not hasattr(PodCollector, "describe")
