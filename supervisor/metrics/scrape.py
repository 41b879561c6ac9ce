"""Answering /metrics: the pod's registry, encoded as the client asked.

Why a module of its own: this is where prometheus_client comes in. The
library, and what it imports (http.server, email, urllib, ssl, platform,
logging), costs some 60 ms and 3 MB at start, and nothing needs it before
the first scrape. So `server.Endpoint` imports this module at the first
scrape, and it is the only way in: the modules that build families
(collector, cadvisor, kube, own, families) and write them (exposition) are
imported from here, never from what the supervisor imports at start. The
rest of the endpoint (/livez, /readyz, /status) and `recorder.PodMetrics`
are plain Python. tests/metrics/test_lazy.py checks that the runner's import
leaves the library out.
"""

from __future__ import annotations

import gzip
from http import HTTPStatus

from prometheus_client.exposition import gzip_accepted

from podvisor.supervisor.metrics.collector import pod_registry
from podvisor.supervisor.metrics.exposition import Encoder, negotiate
from podvisor.supervisor.metrics.http import Request, Response
from podvisor.supervisor.metrics.recorder import PodMetrics
from podvisor.supervisor.pod.view import PodView


class Scraper:
    """The pod's registry, and the encoder that keeps label sets between scrapes."""

    def __init__(self, view: PodView, metrics: PodMetrics) -> None:
        self.registry = pod_registry(view, metrics)
        self.encoder = Encoder()

    def respond(self, request: Request) -> Response:
        encode, content_type = negotiate(request.header("accept"), self.encoder)
        body = encode(self.registry)
        headers = [("Vary", "Accept, Accept-Encoding")]
        if gzip_accepted(request.header("accept-encoding")):
            # Compressed once and thrown away: level 1 gets most of the size for little CPU.
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return Response(HTTPStatus.OK, body, content_type, headers)
