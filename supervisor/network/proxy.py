"""Connections into a pod, and published ports (hostPort).

A socket keeps the network namespace it was made in, whatever thread uses
it later. So `open_connection_in` makes the socket inside the pod's
namespace (in a short-lived thread, see netns.py) and connects it from the
event loop: the connect is cancellable and holds no thread while it waits.
Probes (httpGet, tcpSocket) and the hostPort proxy both use it. The proxy
reaches the pod's servers at the pod's IP (bridge; the host's address in
host mode), as Kubernetes' hostPort DNAT does, never at 127.0.0.1: a server
bound to the pod's loopback alone is the pod's own and is not published.
The loopback network has no other address, so it publishes no port (the
manifest's check refuses a hostPort there). On the bridge, nat.py's DNAT
takes every connection but this host's to 127.0.0.1, which alone reach
the proxy there.

The proxy is a userspace one, as Docker's docker-proxy and kube-proxy's old
userspace mode: every hostPort is bound on the host (all addresses, or the
mapping's hostIP) before the pod starts, so a taken port is an error at
start; each TCP connection gets its own connection into the pod, half-closes
included; each UDP client (address and port) gets its own socket into the
pod, forgotten after a minute of silence. The pod's servers see the proxy's
address as the client's (the pod's own), not the real client's.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.abc
from anyio.lowlevel import RunVar

from podvisor.supervisor.errors import AddressInUseError, NetworkError
from podvisor.supervisor.network import netns
from podvisor.supervisor.network.model import NetworkMode, PortMapping, Protocol
from podvisor.supervisor.network.pod import PodNetwork

T = TypeVar("T")

#: Worker threads that make sockets in a namespace, per event loop.
_NETNS_THREADS: RunVar[anyio.CapacityLimiter] = RunVar("podvisor_netns_threads")
#: Seconds of silence after which a UDP client's flow is forgotten; conntrack
#: keeps one 30 s unreplied, 120 s once replied.
_UDP_IDLE = 60.0
_UDP_MAX = 65535


def _limiter() -> anyio.CapacityLimiter:
    try:
        return _NETNS_THREADS.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(4)
        _NETNS_THREADS.set(limiter)
        return limiter


async def socket_in(netns_path: str | None, family: int, kind: int) -> socket.socket:
    """A new non-blocking socket made in the network namespace at *netns_path*."""
    if netns_path is None:
        sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
    else:
        sock = await anyio.to_thread.run_sync(
            netns.socket_in_netns, netns_path, family, kind, limiter=_limiter()
        )
    sock.setblocking(False)
    return sock


async def open_connection_in(
    netns_path: str | None,
    host: str,
    port: int,
    timeout: float,  # noqa: ASYNC109 -- the probes' timeoutSeconds, in the agreed API
) -> socket.socket:
    """A TCP socket connected to *host*:*port* from inside the netns (the host's when None).

    *host* is an IP address (or "localhost"). The socket is non-blocking;
    wrap it with `anyio.abc.SocketStream.from_socket`. TimeoutError after
    *timeout* seconds; OSError (ConnectionRefusedError...) when the connect fails.
    """
    address = _ip_literal(host)
    sock = await socket_in(netns_path, _family(address), socket.SOCK_STREAM)
    try:
        with anyio.fail_after(timeout):
            error = await _connect(sock, (str(address), port))
    except BaseException:
        sock.close()
        raise
    if error:
        sock.close()
        where = f" in {netns_path}" if netns_path else ""
        raise OSError(error, f"connect to {host}:{port}{where}: {os.strerror(error)}")
    return sock


async def _connect(sock: socket.socket, address: tuple[str, int]) -> int:
    """Connect the non-blocking *sock*; 0 or the errno it failed with."""
    error = sock.connect_ex(address)
    if error == errno.EINPROGRESS:
        await anyio.wait_writable(sock)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return error


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError as e:
        raise NetworkError(
            f"{host!r} is not an IP address: connections into a pod take the pod's IP, "
            "127.0.0.1 or another address"
        ) from e


def _family(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


# --- Published ports -------------------------------------------------------------


class PortProxy:
    """Serves a pod's hostPorts on the host and forwards them into the pod."""

    def __init__(
        self,
        network: PodNetwork,
        mappings: Sequence[PortMapping],
        *,
        connect_timeout: float = 10.0,
        udp_idle: float = _UDP_IDLE,
    ) -> None:
        self.netns_path = network.netns_path
        # In host mode a hostPort equal to its containerPort is the container's own
        # listening port (Kubernetes requires that for hostNetwork): nothing to forward.
        self.mappings = [
            m
            for m in mappings
            if not (network.mode is NetworkMode.HOST and m.host_port == m.container_port)
        ]
        target = network.connect_host
        if target is None and self.mappings:
            raise NetworkError(
                f"{self.mappings[0]} cannot be published: the pod's {network.mode} network "
                "has no address but 127.0.0.1, where a server is the pod's own; use the "
                "bridge network (annotation podvisor.io/network: bridge, or none)"
            )
        self.target = target or ""  # with no mapping left, never used
        self.connect_timeout = connect_timeout
        self.udp_idle = udp_idle
        self._bound: list[tuple[PortMapping, socket.socket]] | None = None

    def bind(self) -> None:
        """Bind every hostPort now (all or none); AddressInUseError names a taken one.

        `serve` binds too, unless this was called first: call it before
        starting `serve` in a task group, so that the error is not wrapped in
        the group's ExceptionGroup.
        """
        if self._bound is None:
            self._bound = _bind_all(self.mappings)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind every hostPort (unless `bind` did), report started, forward until cancelled."""
        self.bind()
        bound, self._bound = self._bound or [], []
        async with anyio.create_task_group() as tg:
            for mapping, sock in bound:
                serve = self._serve_tcp if mapping.protocol == Protocol.TCP else self._serve_udp
                tg.start_soon(serve, sock, mapping)
            task_status.started()

    # --- TCP ---------------------------------------------------------------------

    async def _serve_tcp(self, sock: socket.socket, mapping: PortMapping) -> None:
        listener = await _wrap(anyio.abc.SocketListener.from_socket, sock)
        async with listener, anyio.create_task_group() as tg:
            while True:
                client = await listener.accept()
                tg.start_soon(self._forward_tcp, client, mapping)

    async def _forward_tcp(self, client: anyio.abc.SocketStream, mapping: PortMapping) -> None:
        async with client:
            try:
                sock = await open_connection_in(
                    self.netns_path, self.target, mapping.container_port, self.connect_timeout
                )
            except (OSError, TimeoutError):
                # Nobody listens in the pod: reset the client's connection, the
                # nearest a proxy gets to the refusal it would have had.
                raw = client.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610 -- not Django
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            upstream = await anyio.abc.SocketStream.from_socket(sock)
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(_pump, client, upstream, tg.cancel_scope)
                tg.start_soon(_pump, upstream, client, tg.cancel_scope)

    # --- UDP ---------------------------------------------------------------------

    async def _serve_udp(self, sock: socket.socket, mapping: PortMapping) -> None:
        udp = await _wrap(anyio.abc.UDPSocket.from_socket, sock)
        flows: dict[tuple[str, int], _UdpFlow] = {}
        async with udp, anyio.create_task_group() as tg:
            async for data, client in udp:
                flow = flows.get(client)
                if flow is None:
                    try:
                        flow = await self._open_flow(mapping)
                    except OSError:
                        continue
                    flows[client] = flow
                    tg.start_soon(self._return_flow, udp, client, flow, flows)
                flow.last = anyio.current_time()
                try:
                    await flow.pod.send(data)
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    continue  # the pod refused this one (ICMP unreachable): UDP drops it

    async def _open_flow(self, mapping: PortMapping) -> _UdpFlow:
        address = _ip_literal(self.target)
        sock = await socket_in(self.netns_path, _family(address), socket.SOCK_DGRAM)
        try:
            sock.connect((str(address), mapping.container_port))  # UDP: no packet is sent
        except BaseException:
            sock.close()
            raise
        pod = await _wrap(anyio.abc.ConnectedUDPSocket.from_socket, sock)
        return _UdpFlow(pod, anyio.current_time())

    async def _return_flow(
        self,
        udp: anyio.abc.UDPSocket,
        client: tuple[str, int],
        flow: _UdpFlow,
        flows: dict[tuple[str, int], _UdpFlow],
    ) -> None:
        """Send the pod's replies back to *client* until the flow is idle for `udp_idle`."""
        async with flow.pod:
            try:
                while True:
                    idle_until = flow.last + self.udp_idle
                    with anyio.move_on_after(idle_until - anyio.current_time()) as idle:
                        reply = await flow.pod.receive()
                        await udp.sendto(reply, *client)
                        flow.last = anyio.current_time()
                    # The client may have sent meanwhile, which keeps the flow alive.
                    if idle.cancelled_caught and anyio.current_time() >= flow.last + self.udp_idle:
                        return
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            finally:
                del flows[client]


async def _wrap(wrap: Callable[[socket.socket], Awaitable[T]], sock: socket.socket) -> T:
    """anyio's wrapper of *sock*; *sock* is closed if it cannot be wrapped (cancelled...)."""
    try:
        return await wrap(sock)
    except BaseException:
        sock.close()
        raise


@dataclass
class _UdpFlow:
    pod: anyio.abc.ConnectedUDPSocket
    last: float  # when a datagram last went either way (anyio.current_time())


async def _pump(
    source: anyio.abc.SocketStream,
    sink: anyio.abc.SocketStream,
    both: anyio.CancelScope,
) -> None:
    """Copy *source* to *sink*; pass an EOF on as a half-close; a reset ends both ways."""
    try:
        async for chunk in source:
            await sink.send(chunk)
        await sink.send_eof()
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        both.cancel()


def _bind_all(mappings: Sequence[PortMapping]) -> list[tuple[PortMapping, socket.socket]]:
    """Bind every mapping's host socket; all or none (AddressInUseError names the taken one)."""
    bound: list[tuple[PortMapping, socket.socket]] = []
    for mapping in mappings:
        try:
            sock = _bind(mapping)
        except BaseException:
            for _, done in bound:
                done.close()
            raise
        bound.append((mapping, sock))
    return bound


def _bind(mapping: PortMapping) -> socket.socket:
    host_ip = mapping.host_ip or "0.0.0.0"
    family = _family(_ip_literal(host_ip))
    tcp = mapping.protocol == Protocol.TCP
    sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        if tcp:
            # As every server does: a port whose last connections linger in
            # TIME_WAIT can be bound again at once after a pod restart.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip, mapping.host_port))
        if tcp:
            sock.listen(socket.SOMAXCONN)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"{mapping} is taken on this host: another program listens on port "
                f"{mapping.host_port}; stop it or choose another hostPort"
            ) from e
        raise NetworkError(f"cannot listen on {mapping}: {e.strerror}") from e
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def publish_ports(
    network: PodNetwork, mappings: Sequence[PortMapping]
) -> AsyncIterator[PortProxy]:
    """Serve *mappings* for the block; every port is bound when the block starts."""
    proxy = PortProxy(network, mappings)
    proxy.bind()
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
