"""Published ports (hostPort) and connections opened from inside a pod."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from podvisor.supervisor.errors import AddressInUseError, NetworkError
from podvisor.supervisor.network import (
    NetworkMode,
    NetworkRequest,
    PodNetwork,
    PortMapping,
    Protocol,
    create_network,
    links,
    open_connection_in,
    publish_ports,
)
from tests.network.conftest import POD_SUBNET
from tests.network.helpers import TCP_WHO_ECHO, UDP_WHO_ECHO, child, exchange, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


async def pod(mode: NetworkMode, bridge: str) -> PodNetwork:
    req = NetworkRequest("web", str(uuid.uuid4()), "web", mode, subnet=POD_SUBNET, bridge=bridge)
    return await create_network(req)


def netns_name(network: PodNetwork) -> str | None:
    return Path(network.netns_path).name if network.netns_path else None


@pytest.mark.parametrize("mode", [NetworkMode.BRIDGE, NetworkMode.HOST])
async def test_a_host_port_reaches_the_pods_server(mode: NetworkMode, bridge: str) -> None:
    network = await pod(mode, bridge)
    try:
        if network.pod_ip is None:
            pytest.skip("this host has no address of its own (no default route)")
        # The proxy connects to the pod's IP (the host's in host mode), from the pod.
        seen_as = network.pod_ip
        async with child(netns_name(network), TCP_WHO_ECHO, "0.0.0.0") as port:
            host_port = free_port()
            mapping = PortMapping(host_port, int(port), host_ip="127.0.0.1", container="web")
            async with publish_ports(network, [mapping]):
                for message in (b"first", b"second"):
                    async with await anyio.connect_tcp("127.0.0.1", host_port) as stream:
                        assert await exchange(stream, message) == f"{seen_as} ".encode() + message
            with pytest.raises(OSError, match="connection attempts failed"):  # given back
                await anyio.connect_tcp("127.0.0.1", host_port)
    finally:
        await network.aclose()


@pytest.mark.parametrize("mode", [NetworkMode.BRIDGE, NetworkMode.HOST])
async def test_a_server_on_the_pods_loopback_alone_is_not_published(
    mode: NetworkMode, bridge: str
) -> None:
    """As with Kubernetes' DNAT to the pod's IP: what listens on 127.0.0.1 is the pod's own."""
    network = await pod(mode, bridge)
    try:
        async with child(netns_name(network), TCP_WHO_ECHO, "127.0.0.1") as port:
            host_port = free_port()
            mapping = PortMapping(host_port, int(port), host_ip="127.0.0.1", container="web")
            async with publish_ports(network, [mapping]):
                stream = await anyio.connect_tcp("127.0.0.1", host_port)
                async with stream:
                    # Reset: at the send, or already at the half-close (ENOTCONN).
                    with anyio.fail_after(10), pytest.raises((anyio.BrokenResourceError, OSError)):
                        await exchange(stream, b"let me in")
                # The server itself is there, for the pod.
                inside = await open_connection_in(network.netns_path, "127.0.0.1", int(port), 10)
                async with await anyio.abc.SocketStream.from_socket(inside) as stream:
                    assert await exchange(stream, b"me") == b"127.0.0.1 me"
    finally:
        await network.aclose()


@asynccontextmanager
async def two_published_servers(bridge: str) -> AsyncIterator[tuple[PodNetwork, int, int]]:
    """A bridged pod serving on 0.0.0.0:8080 and on its 127.0.0.1:8081 alone, both
    published: (its network, the first's hostPort, the second's)."""
    served, kept = free_port(), free_port()
    ports = (PortMapping(served, 8080, container="web"), PortMapping(kept, 8081, container="web"))
    req = NetworkRequest(
        "web", str(uuid.uuid4()), "web", NetworkMode.BRIDGE, POD_SUBNET, bridge, ports
    )
    network = await create_network(req)
    try:
        name = netns_name(network)
        async with (
            child(name, TCP_WHO_ECHO, "0.0.0.0", "8080"),
            child(name, TCP_WHO_ECHO, "127.0.0.1", "8081"),
            publish_ports(network, ports),
        ):
            yield network, served, kept
    finally:
        await network.aclose()


async def test_a_host_port_is_a_dnat_to_the_pod_which_sees_the_client(bridge: str) -> None:
    """As the CNI portmap plugin does: the pod sees the client's own address (here this
    host's), and a server on the pod's loopback alone is out of reach, not even reset
    by a proxy."""
    host_ip = (await anyio.to_thread.run_sync(links.uplink)).address  # pyroute2 runs its own loop
    if host_ip is None:
        pytest.skip("this host has no address of its own to publish on (no default route)")
    async with two_published_servers(bridge) as (network, served, kept):
        async with await anyio.connect_tcp(host_ip, served) as stream:
            assert await exchange(stream, b"hello") == f"{host_ip} hello".encode()
        with pytest.raises(OSError, match="connection attempts failed"):
            await anyio.connect_tcp(host_ip, kept)
        # This host's own 127.0.0.1 goes through the proxy, to the pod's IP.
        async with await anyio.connect_tcp("127.0.0.1", served) as stream:
            assert await exchange(stream, b"local") == f"{network.pod_ip} local".encode()


#: Connects to ADDRESS:PORT (argv), sends "hello", half-closes; prints the answer, or "refused".
CLIENT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
except ConnectionRefusedError:
    print("refused", flush=True)
    sys.exit()
s.sendall(b"hello")
s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.decode(), flush=True)
"""


async def test_a_client_on_another_machine_is_seen_with_its_own_address(
    bridge: str, upstream: str
) -> None:
    """The upstream (10.231.1.2) reaches this host at 10.231.1.1: prerouting's DNAT."""
    async with two_published_servers(bridge) as (_, served, kept):
        async with child(upstream, CLIENT, "10.231.1.1", str(served)) as answer:
            assert answer.strip() == "10.231.1.2 hello"
        async with child(upstream, CLIENT, "10.231.1.1", str(kept)) as answer:
            assert answer.strip() == "refused"


async def test_a_host_port_another_program_holds_gets_no_dnat(bridge: str) -> None:
    """Its DNAT would take the holder's traffic from other machines: nothing is made."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = (PortMapping(port, 80, container="api"),)
        req = NetworkRequest(
            "web", str(uuid.uuid4()), "web", NetworkMode.BRIDGE, POD_SUBNET, bridge, ports
        )
        with pytest.raises(NetworkError, match=rf"hostPort {port}/TCP of container api is taken"):
            await create_network(req)


async def test_the_loopback_network_publishes_no_port(bridge: str) -> None:
    network = await pod(NetworkMode.LOOPBACK, bridge)
    try:
        mapping = PortMapping(free_port(), 80, host_ip="127.0.0.1", container="web")
        with pytest.raises(NetworkError, match="use the bridge network"):
            async with publish_ports(network, [mapping]):
                pytest.fail("published a port of the loopback network")
    finally:
        await network.aclose()


async def test_a_udp_host_port_reaches_the_pods_server(bridge: str) -> None:
    network = await pod(NetworkMode.BRIDGE, bridge)
    try:
        async with child(netns_name(network), UDP_WHO_ECHO, "0.0.0.0") as port:
            host_port = free_port(socket.SOCK_DGRAM)
            mapping = PortMapping(host_port, int(port), Protocol.UDP, host_ip="127.0.0.1")
            async with publish_ports(network, [mapping]):
                client = await anyio.create_connected_udp_socket("127.0.0.1", host_port)
                async with client:
                    with anyio.fail_after(10):
                        await client.send(b"ping")
                        assert await client.receive() == f"{network.pod_ip} ping".encode()
                        await client.send(b"again")
                        assert await client.receive() == f"{network.pod_ip} again".encode()
    finally:
        await network.aclose()


async def test_a_taken_host_port_is_an_error_naming_port_and_container(bridge: str) -> None:
    network = await pod(NetworkMode.BRIDGE, bridge)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            free = PortMapping(free_port(), 80, host_ip="127.0.0.1", container="web")
            clash = PortMapping(port, 8080, host_ip="127.0.0.1", container="api")
            with pytest.raises(AddressInUseError, match=rf"hostPort 127.0.0.1:{port}/TCP .* api"):
                async with publish_ports(network, [free, clash]):
                    pytest.fail("published a taken port")
            # All or none: the port bound before the clash was given back.
            with socket.socket() as again:
                again.bind(("127.0.0.1", free.host_port))
    finally:
        await network.aclose()


async def test_a_connection_to_a_closed_port_is_reset_by_the_proxy(bridge: str) -> None:
    network = await pod(NetworkMode.BRIDGE, bridge)
    try:
        host_port = free_port()
        mapping = PortMapping(host_port, free_port(), host_ip="127.0.0.1")
        async with publish_ports(network, [mapping]):
            stream = await anyio.connect_tcp("127.0.0.1", host_port)
            async with stream:
                with anyio.fail_after(10), pytest.raises(anyio.BrokenResourceError):
                    await exchange(stream, b"anyone?")
    finally:
        await network.aclose()


async def test_open_connection_in_reports_refusal_and_timeout(bridge: str) -> None:
    network = await pod(NetworkMode.BRIDGE, bridge)
    try:
        with pytest.raises(ConnectionRefusedError):
            await open_connection_in(network.netns_path, "127.0.0.1", free_port(), 10)
        # Nobody has this address on the bridge: ARP gets no answer for seconds.
        with pytest.raises(TimeoutError):
            await open_connection_in(network.netns_path, "10.231.0.200", 80, 0.3)
        with pytest.raises(NetworkError, match="not an IP address"):
            await open_connection_in(network.netns_path, "example.org", 80, 1)
    finally:
        await network.aclose()
