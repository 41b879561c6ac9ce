"""The supervisor's HTTP endpoint: /metrics, /livez, /readyz and /status.

How this works
--------------
`serve_metrics` binds the address (a port in use is `AddressInUseError`,
before it reports started), then serves each connection in a task of its
own, in the supervisor's event loop, until it is cancelled with the pod. A
handler only reads the runner (`PodView`); a scrape collects the pod's
registry right there, between two lifecycle transitions, so there is no
thread and nothing to lock. The registry, and prometheus_client with it, is
made at the first scrape (scrape.py), not at start: the other routes and
binding the address need none of it.

The address
-----------
`podvisor run --metrics-address HOST:PORT`, else the pod's annotation
``podvisor.io/metrics-address``, else the host's endpoint,
`DEFAULT_ADDRESS` (127.0.0.1:9464, or ``$PODVISOR_METRICS_ADDRESS``):
loopback only, as the endpoint shows the pods' status to whoever connects,
on a port in Prometheus' exporter range. ``:PORT`` listens on every
interface (for a container whose port is published), ``[::1]:PORT`` on an
IPv6 address, and ``off`` (or ``none``) serves nothing.

The host's endpoint
-------------------
Every pod started with the default binds the host's address with
SO_REUSEPORT, so the default never collides: the kernel hands each new
connection to one of them (only to listeners of the same user), and the
pod that takes a scrape answers for the whole host, as the kubelet's
cAdvisor endpoint does. It asks every other pod on the host for its own
series over its control socket (`Scrape`) and serves them all, each with
its pod, namespace and container labels (scrape.py merges them). When that
pod ends, the next connection goes to another; when the last ends, the
port is free. A pod given an address of its own serves only itself there.
/livez, /readyz and /status on the host's endpoint answer for the pod
that takes the connection: ask a pod's own endpoint when several run.

The endpoints
-------------
``/metrics``   Prometheus text format 0.0.4, or OpenMetrics when the Accept
               header asks for it; gzip when Accept-Encoding allows it.
``/livez``     200 while the supervisor serves and the pod's init lives.
``/readyz``    200 when the pod is Ready (every main and sidecar container
               ready), else 503 naming the containers that are not: for
               Docker's HEALTHCHECK and an outer orchestrator's probes.
``/status``    the pod's status as JSON, shaped as a Kubernetes Pod's, and its
               events (``events``) shaped as Kubernetes Events.

No response carries a container's environment or arguments: labels are
names, reasons and numbers, and /status redacts its free-text messages.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.to_thread
import sniffio
from anyio.streams.buffered import BufferedByteReceiveStream

from podvisor.supervisor.errors import AddressInUseError, ConfigError
from podvisor.supervisor.manifest.model import ContainerKind, Pod
from podvisor.supervisor.metrics import http
from podvisor.supervisor.metrics.connections import SEND_SECONDS, accept_forever
from podvisor.supervisor.metrics.http import BadRequestError, Request, Response, read_request, text
from podvisor.supervisor.metrics.recorder import PodMetrics
from podvisor.supervisor.pod.view import PodView

if TYPE_CHECKING:
    from podvisor.supervisor.metrics.scrape import Scraper
    from podvisor.supervisor.metrics.status import Redactor

DEFAULT_ADDRESS = "127.0.0.1:9464"
#: Moves the host's endpoint (for every pod started with the default).
ADDRESS_VARIABLE = "PODVISOR_METRICS_ADDRESS"
OFF = "off"
#: Values that turn the endpoint off ("none" is the manifest's word for no address).
OFF_WORDS = frozenset({OFF, "none"})
ANNOTATION = "podvisor.io/metrics-address"
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

# --- The address -------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (every interface: host ""); ConfigError if neither."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not port.isdigit() or int(port) > 65535 or "[" in host or "]" in host:
        raise ConfigError(
            f"metrics address {text!r}: expected HOST:PORT, such as 127.0.0.1:9464, "
            f"[::1]:9464 or :9464 for every interface, or {OFF!r}"
        )
    return host, int(port)


def host_address() -> str:
    """The host's endpoint, shared by every pod started with the default."""
    return os.environ.get(ADDRESS_VARIABLE) or DEFAULT_ADDRESS


def metrics_address(flag: str | None, annotation: str | None) -> tuple[str, int] | None:
    """Where to listen: the flag, else the annotation, else the host's; None for "off"."""
    chosen = next((a for a in (flag, annotation) if a is not None), host_address())
    if chosen.strip().lower() in OFF_WORDS:
        return None
    return parse_address(chosen)


def _show(host: str, port: int) -> str:
    if not host:
        return f":{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def listen(
    host: str, port: int, *, shared: bool = False
) -> anyio.abc.Listener[anyio.abc.SocketStream]:
    """A TCP listener on host:port; AddressInUseError when something else has the port.

    *shared*: the host's endpoint, which every pod with the default binds too.
    """
    try:
        return await anyio.create_tcp_listener(
            local_host=host or None, local_port=port, reuse_port=shared
        )
    except OSError as e:
        where = _show(host, port)
        if e.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"cannot serve metrics on {where}: another program listens there (another "
                "podvisor?); choose a free address with `podvisor run --metrics-address "
                f"HOST:PORT` or the pod annotation {ANNOTATION}, or turn the endpoint off with "
                f"{OFF!r}"
            ) from e
        raise ConfigError(
            f"cannot serve metrics on {where}: {e.strerror or e}; set another address with "
            f"--metrics-address or the annotation {ANNOTATION}"
        ) from e


def bound_address(listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> tuple[str, int]:
    """The address a listener got (the port the kernel chose, for port 0)."""
    address = listener.extra(anyio.abc.SocketAttribute.local_address)  # noqa: S610
    assert isinstance(address, tuple)
    return str(address[0]), int(address[1])


# --- Serving -------------------------------------------------------------------------


class MetricsServer:
    """The endpoint, bound to its address: `open` it at start, `serve` it in a task.

    Binding apart from serving lets the runner bind before it makes
    anything, so a port in use is a plain `AddressInUseError` at start (not
    one wrapped in a task group's ExceptionGroup), with nothing to undo.
    """

    def __init__(
        self, listener: anyio.abc.Listener[anyio.abc.SocketStream], metrics: PodMetrics
    ) -> None:
        self._listener = listener
        self._metrics = metrics
        self.address = bound_address(listener)
        #: The host's endpoint: answers for every pod on the host.
        self.shared = False

    @classmethod
    async def open(
        cls, pod: Pod, metrics: PodMetrics, flag: str | None = None
    ) -> MetricsServer | None:
        """Bind where the flag, the pod's annotation or the default says; None when "off".

        Bound before the pod's resources are made, and served (`serve`) once
        they are: a client that comes meanwhile waits in the listen backlog.
        """
        chosen = metrics_address(flag, pod.settings.metrics_address)
        if chosen is None:
            return None
        shared = flag is None and pod.settings.metrics_address is None
        listener = await listen(*chosen, shared=shared)
        server = cls(listener, metrics)
        server.shared = shared
        metrics.backend = sniffio.current_async_library()
        metrics.address = server.address
        return server

    async def serve(self, view: PodView) -> None:
        """Serve *view*'s pod until cancelled; the listener is closed on the way out."""
        endpoint = Endpoint(view, self._metrics, shared=self.shared)
        view.exposition = endpoint.exposition

        async with self._listener:
            await accept_forever(self._listener, endpoint.serve_connection, view.sink.system)

    async def aclose(self) -> None:
        await self._listener.aclose()


async def serve_metrics(
    view: PodView,
    metrics: PodMetrics,
    address: str | None = None,
    *,
    task_status: anyio.abc.TaskStatus[tuple[str, int] | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Bind and serve until cancelled, for ``await task_group.start(serve_metrics, ...)``.

    Reports the bound (host, port), or None when the endpoint is off.
    *address* is the --metrics-address flag's value (None: not given). A port
    in use raises AddressInUseError before it reports started.
    """
    server = await MetricsServer.open(view.pod, metrics, address)
    if server is None:
        task_status.started(None)
        return
    task_status.started(server.address)
    await server.serve(view)


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
