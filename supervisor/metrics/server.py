"""The supervisor's HTTP endpoint: /metrics, /livez, /readyz and /status.

How this works
--------------
`serve_metrics` binds the address (a port in use is `AddressInUseError`,
before it reports started), then serves each connection in a task of its
own, in the supervisor's event loop, until it is cancelled with the pod.
The routes and the HTTP they speak (`endpoint.py`, `http.py`) are imported
by the first connection: a pod nobody asks does not keep their code. A
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

import errno
import ipaddress
import os
import socket
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import sniffio

from podvisor.supervisor.errors import AddressInUseError, ConfigError
from podvisor.supervisor.manifest.model import Pod
from podvisor.supervisor.metrics.connections import accept_forever
from podvisor.supervisor.metrics.recorder import PodMetrics
from podvisor.supervisor.pod.view import PodView

if TYPE_CHECKING:
    from podvisor.supervisor.metrics.endpoint import Endpoint

DEFAULT_ADDRESS = "127.0.0.1:9464"
#: Connections the kernel queues before they are accepted: anyio's listeners'
#: default (the kernel holds it to net.core.somaxconn).
BACKLOG = 65536
#: Moves the host's endpoint (for every pod started with the default).
ADDRESS_VARIABLE = "PODVISOR_METRICS_ADDRESS"
OFF = "off"
#: Values that turn the endpoint off ("none" is the manifest's word for no address).
OFF_WORDS = frozenset({OFF, "none"})
ANNOTATION = "podvisor.io/metrics-address"

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
        numeric = _numeric(host)
        if numeric is not None:
            return await anyio.abc.SocketListener.from_socket(_bound(numeric, port, shared))
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


def _numeric(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """*host* as an address, if it is one; None for a name, "" (every interface) and an
    IPv6 address with a scope (``fe80::1%eth0``), which the resolver turns into an index."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if getattr(address, "scope_id", None) else address


def _bound(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, shared: bool
) -> socket.socket:
    """A socket listening on *address*, made as `anyio.create_tcp_listener` makes one.

    A numeric address needs no resolver: anyio's would call getaddrinfo in a
    thread of asyncio's executor, which then stays for the pod's life.
    """
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((str(address), port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


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
        """Serve *view*'s pod until cancelled; the listener is closed on the way out.

        The routes (`endpoint.Endpoint`) come with the first connection, or the
        first scrape of the host's endpoint in another pod, whichever is first.
        """
        endpoint: Endpoint | None = None

        def routes() -> Endpoint:
            nonlocal endpoint
            if endpoint is None:
                from podvisor.supervisor.metrics.endpoint import Endpoint

                endpoint = Endpoint(view, self._metrics, shared=self.shared)
            return endpoint

        async def serve_connection(stream: anyio.abc.SocketStream) -> None:
            await routes().serve_connection(stream)

        view.exposition = lambda: routes().exposition()
        async with self._listener:
            await accept_forever(self._listener, serve_connection, view.sink.system)

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
