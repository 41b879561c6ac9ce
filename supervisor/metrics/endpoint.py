"""The endpoint's routes: one connection's requests read, answered and written.

`server.MetricsServer` binds the address and accepts; this module, imported
by the first connection, answers: /metrics, /livez, /readyz, /status and /
(`server` says what each serves).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from podvisor.supervisor.manifest.model import ContainerKind
from podvisor.supervisor.metrics import http
from podvisor.supervisor.metrics.connections import SEND_SECONDS
from podvisor.supervisor.metrics.http import BadRequestError, Request, Response, read_request, text
from podvisor.supervisor.metrics.recorder import PodMetrics
from podvisor.supervisor.pod.view import PodView

if TYPE_CHECKING:
    from podvisor.supervisor.metrics.scrape import Scraper
    from podvisor.supervisor.metrics.status import Redactor

#: Requests answered at once; more wait for a free slot (a scrape is short). A
#: connection holds a slot only while it is answered, and /livez and /readyz none.
MAX_CONNECTIONS = 32
DISCONNECTS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    anyio.IncompleteRead,
    TimeoutError,
    ConnectionError,
)


class Endpoint:
    """The routes, and the connection loop that feeds them."""

    def __init__(self, view: PodView, metrics: PodMetrics, *, shared: bool = False) -> None:
        self.view = view
        self.metrics = metrics
        self.shared = shared
        #: Requests answered at once but health checks (connections may be many more).
        self._limiter = anyio.CapacityLimiter(MAX_CONNECTIONS)
        #: Made at the first scrape (`scrape`).
        self._scraper: Scraper | None = None
        #: Made at the first /status (`status`), as the scraper at the first scrape.
        self._redact: Redactor | None = None
        self.routes: dict[str, Callable[[Request], Response]] = {
            "/metrics": self.scrape,
            "/livez": self.livez,
            "/readyz": self.readyz,
            "/status": self.status,
            "/": self.index,
        }

    async def serve_connection(self, stream: anyio.abc.SocketStream) -> None:
        """Answer requests on one connection until either side closes it."""
        # A client that hangs up, stalls or breaks the protocol ends its connection, quietly.
        with contextlib.suppress(*DISCONNECTS):
            async with stream:
                reader = BufferedByteReceiveStream(stream)
                while await self._one_exchange(reader, stream):
                    pass

    async def _one_exchange(
        self, reader: BufferedByteReceiveStream, stream: anyio.abc.SocketStream
    ) -> bool:
        """Read one request and answer it; False when the connection is done."""
        try:
            request = await read_request(reader)
        except BadRequestError as e:
            await stream.send(text(e.status, str(e)).encode(head_only=False, keep_alive=False))
            return False
        if request is None:
            return False
        async with self._slot(request):
            if self.shared and request.path == "/metrics" and request.method in ("GET", "HEAD"):
                response = await self.scrape_host(request)
            else:
                response = self.respond(request)
        keep = request.keep_alive
        with anyio.fail_after(SEND_SECONDS):  # a client that takes nothing holds nothing
            await stream.send(response.encode(head_only=request.method == "HEAD", keep_alive=keep))
        return keep

    def _slot(self, request: Request) -> contextlib.AbstractAsyncContextManager[object]:
        """A slot of the limiter while a request is answered; health checks never wait for one."""
        if request.path in ("/livez", "/readyz"):
            return contextlib.nullcontext()
        return self._limiter

    def respond(self, request: Request) -> Response:
        route = self.routes.get(request.path)
        if route is None:
            return text(http.NOT_FOUND, "not found: try /metrics, /livez, /readyz, /status")
        if request.method not in ("GET", "HEAD"):
            response = text(http.METHOD_NOT_ALLOWED, "only GET and HEAD are served")
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        try:
            return route(request)
        except Exception as e:  # a bug must cost one response, not the pod
            self.view.sink.system(f"metrics endpoint: {request.path} failed: {e!r}")
            return text(http.INTERNAL_SERVER_ERROR, "internal error (see podvisor's log)")

    # --- routes --------------------------------------------------------------------

    def scrape(self, request: Request) -> Response:
        return self._scraper_made().respond(request)

    def _scraper_made(self) -> Scraper:
        if self._scraper is None:
            # prometheus_client comes in here, at the first scrape, not at start
            # (scrape.py says why).
            from podvisor.supervisor.metrics.scrape import Scraper

            self._scraper = Scraper(self.view, self.metrics)
        return self._scraper

    def exposition(self) -> bytes:
        """The pod's own series in the text format, for the host's endpoint in another pod."""
        return self._scraper_made().own_text()

    async def scrape_host(self, request: Request) -> Response:
        """The host's /metrics: this pod's series and every other pod's (the module says how)."""
        from podvisor.supervisor.metrics.scrape import other_pods

        try:
            others = await anyio.to_thread.run_sync(other_pods, self.view.pod.name)
            return self._scraper_made().respond(request, others)
        except Exception as e:  # a bug must cost one response, not the pod
            self.view.sink.system(f"metrics endpoint: /metrics failed: {e!r}")
            return text(http.INTERNAL_SERVER_ERROR, "internal error (see podvisor's log)")

    def livez(self, _: Request) -> Response:
        if self.view.init.process.returncode is not None:
            return text(http.SERVICE_UNAVAILABLE, "the pod's init has exited")
        return text(http.OK, "ok")

    def readyz(self, _: Request) -> Response:
        state = self.view.state
        if state is not None and state.ready:
            return text(http.OK, "ok")
        if state is None:
            why = "the pod is starting"
        elif state.finished:
            why = f"the pod has finished ({state.phase.value})"
        else:
            serving = [c for c in state.containers if c.kind is not ContainerKind.INIT]
            unready = [c.name for c in serving if not c.ready]
            why = f"containers with unready status: [{' '.join(unready)}]"
        return text(http.SERVICE_UNAVAILABLE, f"not ready: {why}")

    def status(self, _: Request) -> Response:
        from podvisor.supervisor.metrics.status import (
            Redactor,
            pod_events,
            pod_status,
            secrets_of,
        )

        if self._redact is None:
            self._redact = Redactor(secrets_of(self.view.pod))
        network = self.view.network
        found = pod_status(
            self.view.pod,
            self.view.state,
            pod_ip=network.pod_ip if network is not None else None,
            wall_time=self.view.wall_time,
            conditions=self.metrics.conditions,
            redact=self._redact,
        )
        journal = self.view.journal.events
        found["events"] = pod_events(self.view.pod, journal, self.view.wall_time, self._redact)
        body = json.dumps(found, indent=2).encode() + b"\n"
        return Response(http.OK, body, "application/json")

    def index(self, _: Request) -> Response:
        lines = ["podvisor: /metrics /livez /readyz /status", f"pod {self.view.pod.name}"]
        return text(http.OK, "\n".join(lines))
