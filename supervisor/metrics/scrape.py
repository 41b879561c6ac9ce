"""Answering /metrics: the pod's registry, encoded as the client asked.

Why a module of its own: this is where prometheus_client comes in. The
library, and what it imports (http.server, email, urllib, ssl, platform,
logging), costs some 60 ms and 3 MB at start, and nothing needs it before
the first scrape. So `endpoint.Endpoint` imports this module at the first
scrape, and it is the only way in: the modules that build families
(collector, cadvisor, kube, own, families) and write them (exposition) are
imported from here, never from what the supervisor imports at start. The
rest of the endpoint (/livez, /readyz, /status) and `recorder.PodMetrics`
are plain Python. tests/metrics/test_lazy.py checks that the runner's import
leaves the library out.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.exposition import gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from podvisor.supervisor.metrics import http
from podvisor.supervisor.metrics.collector import pod_registry
from podvisor.supervisor.metrics.exposition import Encoder, negotiate
from podvisor.supervisor.metrics.http import Request, Response
from podvisor.supervisor.metrics.recorder import PodMetrics
from podvisor.supervisor.pod.view import PodView

#: How long the host's endpoint waits for another pod's series.
OTHER_POD_TIMEOUT = 2.0


class Scraper:
    """The pod's registry, and the encoder that keeps label sets between scrapes."""

    def __init__(self, view: PodView, metrics: PodMetrics) -> None:
        self.view = view
        self.registry = pod_registry(view, metrics)
        self.encoder = Encoder()

    def own_text(self) -> bytes:
        """The pod's own series, in the text format."""
        return self.encoder.encode(self.registry, openmetrics=False)

    def respond(self, request: Request, others: list[PodSeries] | None = None) -> Response:
        """The pod's series; with *others*, the host's: theirs and this pod's, merged."""
        encode, content_type = negotiate(request.header("accept"), self.encoder)
        if others is None:
            body = encode(self.registry)
        else:
            pod = self.view.pod
            body = encode(
                HostSeries([PodSeries(pod.name, pod.namespace, self.own_text()), *others])
            )
        headers = [("Vary", "Accept, Accept-Encoding")]
        if gzip_accepted(request.header("accept-encoding")):
            # Compressed once and thrown away: level 1 gets most of the size for little CPU.
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return Response(http.OK, body, content_type, headers)


# --- The host's endpoint ---------------------------------------------------------------


@dataclass(frozen=True)
class PodSeries:
    """One pod's own series, in the text format, as its endpoint would serve them."""

    pod: str
    namespace: str
    text: bytes


def other_pods(own: str) -> list[PodSeries]:
    """Every other live pod's series, asked over its control socket (blocking: a thread's).

    A pod that is gone, serves no metrics, or does not answer in time is left
    out of this scrape.
    """
    from podvisor.supervisor.control.client import Client
    from podvisor.supervisor.control.paths import list_pods
    from podvisor.supervisor.control.wire import Scrape, ScrapeReply
    from podvisor.supervisor.errors import PodvisorError

    found = []
    for name, path in list_pods():
        if name == own:
            continue
        try:
            with Client(name, path, timeout=OTHER_POD_TIMEOUT) as client:
                reply = client.request(Scrape(), ScrapeReply)
        except (PodvisorError, OSError):
            continue
        found.append(PodSeries(reply.pod, reply.namespace, reply.text.encode()))
    return found


class HostSeries:
    """A collector of several pods' series: one family per name, every sample labelled.

    A sample without a pod label (podvisor's own process, its build) gets its
    pod's, so no two pods' samples share a label set.
    """

    def __init__(self, pods: list[PodSeries]) -> None:
        self.pods = pods

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pod in self.pods:
            for family in text_string_to_metric_families(pod.text.decode()):
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = sample.labels
                    if "pod" not in labels:
                        labels = {**labels, "namespace": pod.namespace, "pod": pod.pod}
                    merged.samples.append(sample._replace(labels=labels))
        yield from families.values()
