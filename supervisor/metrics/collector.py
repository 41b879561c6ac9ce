"""The pod's collector: every series, read when Prometheus asks, never in between.

`PodCollector.collect` runs inside the supervisor's event loop (the HTTP
handler calls it), so it sees the core's state between two transitions,
never half-way through one, and needs no lock. It reads each live
container's cgroup once, the pod's /proc/<pid>/net/dev once, and builds the
cAdvisor, kube-state-metrics and podvisor families from what it read.

Which containers have `container_*` series: those with a process or about to
have one again (restarting, in back-off) -- not those that have not started
yet, nor those terminated for good, whose series end as a removed
container's do under cAdvisor. A cgroup that vanishes during the read, or
cannot be read, is left out of this scrape; the latter sets
`container_scrape_error` to 1, as cAdvisor does.

This module, and those it imports to build families (cadvisor, kube, own,
families), import prometheus_client; so only scrape.py imports this one, at
the first scrape (scrape.py says why).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.errors import CgroupError
from podvisor.supervisor.metrics import cadvisor, kube
from podvisor.supervisor.metrics.netdev import pod_interfaces
from podvisor.supervisor.metrics.own import OwnSeries
from podvisor.supervisor.metrics.recorder import PodMetrics
from podvisor.supervisor.pod.rootfs import LayerUsage, layer_usage, writable_layer
from podvisor.supervisor.pod.view import PodView

#: Steps in which a container has no cgroup series: not begun, or gone for good.
NO_SERIES = frozenset({lc.Step.PENDING, lc.Step.DONE})


@functools.cache
def version() -> str:
    """podvisor's version, read at the first scrape: importlib.metadata is slow to import."""
    from podvisor.supervisor.version import version as podvisor_version

    return podvisor_version()


class PodCollector:
    """A prometheus_client collector for one pod (see the module's header)."""

    def __init__(self, view: PodView, metrics: PodMetrics) -> None:
        self._view = view
        self._own = OwnSeries(metrics)
        #: The kube_pod_* families, and the (state, pod start) they were made for.
        self._kube_families: tuple[object, list[Metric] | None] = (None, None)

    def collect(self) -> Iterator[Metric]:
        view = self._view
        state = view.state
        samples, failed = self._read_containers(state)
        yield from cadvisor.container_families(samples, time.time())
        yield from self._network()
        error = GaugeMetricFamily(
            "container_scrape_error",
            "1 if there was an error while getting container metrics, 0 otherwise",
            value=float(failed),
        )
        yield error
        yield from self._kube(state)
        yield from self._own.families(view, version())

    def _kube(self, state: lc.PodState | None) -> list[Metric]:
        """kube_pod_*: made again only when the core's state has changed since the last scrape."""
        view, pod = self._view, self._view.pod
        start = view.wall_time(state.start_time) if state is not None else None
        made_for, families = self._kube_families
        if families is None or made_for != (state, start):
            families = [*kube.pod_families(pod, state, start), *kube.container_families(pod, state)]
            self._kube_families = (state, start), families
        return families

    def _layer(self, name: str) -> LayerUsage | None:
        """The container's writable layer, when it runs on its image."""
        upper = writable_layer(self._view.pod.uid, name)
        return layer_usage(upper) if upper is not None else None

    def _read_containers(
        self, state: lc.PodState | None
    ) -> tuple[list[cadvisor.ContainerSample], bool]:
        if state is None:
            return [], False
        pod, samples, failed = self._view.pod, [], False
        images = {c.name: c.image or "" for c in pod.spec.all_containers}
        for status in state.containers:
            cgroup = self._view.cgroups.get(status.name)
            if status.step in NO_SERIES or cgroup is None:
                continue
            try:
                stats = cgroup.read()
            except (OSError, CgroupError):
                failed = True
                continue
            if stats.gone:
                continue  # removed while we read: what was read is partial
            labels = (status.name, images.get(status.name, ""), pod.namespace, pod.name)
            start = self._view.wall_time(status.started_at)
            layer = self._layer(status.name)
            samples.append(cadvisor.ContainerSample(labels, stats, start, layer))
        return samples, failed

    def _network(self) -> Iterator[Metric]:
        view = self._view
        # Host network: the interfaces are the machine's, not the pod's.
        if view.init is None or view.network is None or view.network.netns_path is None:
            return
        interfaces = pod_interfaces(view.init.host_pid)
        yield from cadvisor.network_families(interfaces, view.pod.namespace, view.pod.name)


def pod_registry(view: PodView, metrics: PodMetrics) -> CollectorRegistry:
    """A registry of its own for the pod: the library's global one stays untouched."""
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    registry.register(PodCollector(view, metrics))
    # The supervisor's own CPU and memory: podvisor_process_cpu_seconds_total, ...
    with contextlib.suppress(OSError):
        ProcessCollector(namespace="podvisor", registry=registry)
    return registry
