"""A pod's network made in real namespaces: loopback, bridge with NAT, host; and cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import anyio.abc
import pytest

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.network import (
    NetworkMode,
    NetworkRequest,
    PodNetwork,
    cleanup_stale,
    create_network,
    open_connection_in,
)
from tests.network.conftest import POD_SUBNET, ip
from tests.network.helpers import REPO, TCP_WHO_ECHO, child, exchange, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]


def request(
    mode: NetworkMode | None, bridge: str = "pv-brunused", name: str = "web"
) -> NetworkRequest:
    return NetworkRequest(
        pod_name=name,
        pod_uid=str(uuid.uuid4()),
        hostname=name,
        mode=mode,
        subnet=POD_SUBNET,
        bridge=bridge,
    )


def netns_name(network: PodNetwork) -> str:
    assert network.netns_path is not None
    return Path(network.netns_path).name


async def test_loopback_mode_has_lo_up_and_nothing_else() -> None:
    network = await create_network(request(NetworkMode.LOOPBACK))
    try:
        assert network.mode is NetworkMode.LOOPBACK
        assert network.pod_ip is None
        assert Path(network.netns_path or "").parent == Path("/run/netns")
        assert netns_name(network) in ip("netns", "list")
        links = ip("-n", netns_name(network), "-o", "link").splitlines()
        assert len(links) == 1, links
        assert ": lo: <LOOPBACK,UP,LOWER_UP>" in links[0]
        hosts = await anyio.Path(network.etc_files["/etc/hosts"]).read_text()
        assert "127.0.0.1\tweb\n" in hosts
        assert await anyio.Path(network.etc_files["/etc/hostname"]).read_text() == "web\n"
    finally:
        await network.aclose()
    assert not await anyio.Path(network.netns_path or "").exists()
    for path in network.etc_files.values():
        assert not await anyio.Path(path).exists()


async def test_containers_of_a_loopback_pod_talk_over_127_0_0_1() -> None:
    network = await create_network(request(NetworkMode.LOOPBACK))
    try:
        async with child(netns_name(network), TCP_WHO_ECHO, "127.0.0.1") as port:
            sock = await open_connection_in(network.netns_path, "127.0.0.1", int(port), 10)
            async with await anyio.abc.SocketStream.from_socket(sock) as stream:
                assert await exchange(stream, b"hello") == b"127.0.0.1 hello"
            # The same port on the host's 127.0.0.1 is somebody else's (nobody's):
            # the pod's loopback is its own.
            with pytest.raises(ConnectionRefusedError):
                (await open_connection_in(None, "127.0.0.1", int(port), 10)).close()
    finally:
        await network.aclose()


async def test_bridge_mode_pod_is_reachable_from_the_host(bridge: str) -> None:
    network = await create_network(request(NetworkMode.BRIDGE, bridge))
    try:
        assert network.pod_ip == "10.231.0.2"
        assert "10.231.0.1/24" in ip("-br", "addr", "show", "dev", bridge)
        pod_links = ip("-n", netns_name(network), "-br", "addr")
        assert "eth0" in pod_links
        assert "10.231.0.2/24" in pod_links
        assert "default via 10.231.0.1 dev eth0" in ip("-n", netns_name(network), "route")
        hosts = await anyio.Path(network.etc_files["/etc/hosts"]).read_text()
        assert "10.231.0.2\tweb\n" in hosts
        async with child(netns_name(network), TCP_WHO_ECHO, "0.0.0.0") as port:
            with anyio.fail_after(10):
                async with await anyio.connect_tcp(network.pod_ip, int(port)) as stream:
                    # The pod sees the host by the bridge's address.
                    assert await exchange(stream, b"hi") == b"10.231.0.1 hi"
    finally:
        await network.aclose()
    assert bridge not in ip("-o", "link")


async def test_bridged_pod_reaches_an_upstream_through_nat(bridge: str, upstream: str) -> None:
    network = await create_network(request(NetworkMode.BRIDGE, bridge))
    try:
        assert await anyio.Path("/proc/sys/net/ipv4/ip_forward").read_text() == "1\n"
        async with child(upstream, TCP_WHO_ECHO, "10.231.1.2") as port:
            sock = await open_connection_in(network.netns_path, "10.231.1.2", int(port), 10)
            async with await anyio.abc.SocketStream.from_socket(sock) as stream:
                # The upstream has no route to 10.231.0.0/24: it saw the host's address.
                assert await exchange(stream, b"out") == b"10.231.1.1 out"
    finally:
        await network.aclose()


async def test_two_concurrent_pods_get_distinct_addresses_and_share_the_bridge(
    bridge: str,
) -> None:
    networks: list[PodNetwork] = []

    async def start(name: str) -> None:
        networks.append(await create_network(request(NetworkMode.BRIDGE, bridge, name)))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(start, "one")
            tg.start_soon(start, "two")
        assert sorted(n.pod_ip or "" for n in networks) == ["10.231.0.2", "10.231.0.3"]
        first, second = networks
        await first.aclose()
        # The bridge stays while a pod is on it, and that pod still reaches the host.
        assert bridge in ip("-o", "link")
        async with child(netns_name(second), TCP_WHO_ECHO, "0.0.0.0") as port:
            stream = await anyio.connect_tcp(second.pod_ip or "", int(port))
            async with stream:
                assert await exchange(stream, b"x") == b"10.231.0.1 x"
    finally:
        for network in networks:
            await network.aclose()
    assert bridge not in ip("-o", "link")


async def test_a_subnet_overlapping_a_host_route_is_refused(bridge: str) -> None:
    other = f"pvpov{os.getpid() % 10000}"  # somebody else's link, with a route
    ip("link", "add", other, "type", "veth", "peer", "name", f"{other}b")
    try:
        ip("addr", "add", "10.231.2.1/24", "dev", other)
        ip("link", "set", other, "up")
        overlapping = NetworkRequest(
            "web", "u1", "web", NetworkMode.BRIDGE, subnet="10.231.2.128/25", bridge=bridge
        )
        with pytest.raises(NetworkError, match=rf"overlaps .*10\.231\.2\.0/24 dev {other}"):
            await create_network(overlapping)
        assert bridge not in ip("-o", "link")
    finally:
        ip("link", "del", other)


async def test_a_failure_half_way_leaves_nothing(bridge: str) -> None:
    # The bridge's name is taken by a link that is not a bridge: found only after
    # the pod's namespace was made, which must then go.
    ip("link", "add", bridge, "type", "veth", "peer", "name", f"pvp{bridge}")
    try:
        with pytest.raises(NetworkError, match="is not a bridge"):
            await create_network(request(NetworkMode.BRIDGE, bridge))
        assert not [n for n in ip("netns", "list").split() if n.startswith("pv-web-")]
    finally:
        ip("link", "del", bridge)


async def test_a_namespace_of_the_same_name_is_refused_and_left_alone() -> None:
    taken = NetworkRequest("web", "0123456789", "web", NetworkMode.LOOPBACK)
    ip("netns", "add", "pv-web-01234567")  # somebody else's
    try:
        with pytest.raises(NetworkError, match="pv-web-01234567 exists already"):
            await create_network(taken)
        assert "pv-web-01234567" in ip("netns", "list")
    finally:
        ip("netns", "del", "pv-web-01234567")


async def test_host_mode_keeps_the_host_network() -> None:
    network = await create_network(request(NetworkMode.HOST))
    try:
        assert network.netns_path is None
        hosts = await anyio.Path(network.etc_files["/etc/hosts"]).read_text()
        assert hosts.startswith(await anyio.Path("/etc/hosts").read_text())
        resolv = await anyio.Path(network.etc_files["/etc/resolv.conf"]).read_text()
        assert resolv == await anyio.Path("/etc/resolv.conf").read_text()
    finally:
        await network.aclose()


SUPERVISOR = """
import sys, anyio
from podvisor.supervisor.network import NetworkMode, NetworkRequest, PortMapping, create_network
async def main():
    ports = (PortMapping(int(sys.argv[3]), 80),)
    req = NetworkRequest("doomed", "feedbeef00", "doomed", NetworkMode.BRIDGE, sys.argv[1], sys.argv[2], ports)
    network = await create_network(req)
    print(network.netns_path, flush=True)
    await anyio.sleep_forever()
anyio.run(main)
"""


async def start_and_sigkill(bridge: str) -> str:
    """Run a supervisor that makes pod "doomed"'s network, SIGKILL it; the netns it left."""
    process = await anyio.open_process(
        [sys.executable, "-c", SUPERVISOR, POD_SUBNET, bridge, str(free_port())],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    async with process:
        assert process.stdout is not None
        with anyio.fail_after(30):
            netns_path = (await process.stdout.receive()).decode().strip()
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert await anyio.Path(netns_path).exists()
    assert bridge in ip("-o", "link")
    return netns_path


async def test_cleanup_stale_undoes_the_network_of_a_sigkilled_supervisor(bridge: str) -> None:
    netns_path = await start_and_sigkill(bridge)

    removed = cleanup_stale()

    assert "pod doomed-feedbeef: netns pv-doomed-feedbeef" in removed
    assert "pod doomed-feedbeef: address 10.231.0.2" in removed
    assert f"pod doomed-feedbeef: bridge {bridge}" in removed
    assert any(r.startswith("pod doomed-feedbeef: nft chains hostports-pvh") for r in removed)
    assert not await anyio.Path(netns_path).exists()
    assert bridge not in ip("-o", "link")
    assert cleanup_stale() == []


async def test_a_pod_started_again_after_a_sigkill_replaces_its_stale_network(
    bridge: str,
) -> None:
    await start_and_sigkill(bridge)
    again = NetworkRequest("doomed", "feedbeef00", "doomed", NetworkMode.BRIDGE, POD_SUBNET, bridge)
    network = await create_network(again)
    try:
        assert network.pod_ip == "10.231.0.2"
        # A fresh namespace, with one address and one veth: the stale ones went.
        eth0 = ip("-n", "pv-doomed-feedbeef", "-4", "-o", "addr", "show", "dev", "eth0")
        assert len(eth0.splitlines()) == 1
        assert "10.231.0.2/24" in eth0
        assert len(ip("-o", "link", "show", "master", bridge).splitlines()) == 1
    finally:
        await network.aclose()
    assert bridge not in ip("-o", "link")
