"""Fixtures for the network tests: real namespaces, links and rules, all test-made.

Every test here runs as root on this machine and uses only addresses under
10.231.0.0/16 on links it makes itself (bridge `pv-br<hex>`, veths `pvh...`,
namespaces `pv-...`). The autouse `network_left_clean` fixture checks, after
each test, that no pod record, address allocation, bridge record or nft chain
is left and that net.ipv4.ip_forward is as it was; the top-level `no_leaks`
fixture checks links, namespaces, mounts and processes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from podvisor.supervisor.network import nat, netns, records
from podvisor.supervisor.network.links import overlapping_routes

#: Every address a test uses is in here.
TEST_RANGE = IPv4Network("10.231.0.0/16")
POD_SUBNET = "10.231.0.0/24"
UPSTREAM_SUBNET = "10.231.1.0/24"


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session", autouse=True)
def _network_ready() -> None:
    if os.geteuid() != 0:
        pytest.skip("the network tests need root (namespaces, links, nft)")
    clashes = overlapping_routes(TEST_RANGE, "")
    if clashes:
        pytest.skip(f"this host already routes {TEST_RANGE}: {clashes}")
    # As `ip netns add` does once per boot: make /run/netns a shared mount now,
    # so that the first test does not see it as a mount it left behind.
    netns.ensure_netns_dir()


def _state() -> dict[str, object]:
    def names(directory: Path, pattern: str) -> set[str]:
        found = directory.glob(pattern)
        return {str(p.relative_to(directory)) for p in found if not p.name.startswith(".")}

    return {
        "pod records": names(records.PODS_DIR, "*/network.json"),
        "pod files": names(records.PODS_DIR, "*/etc/*"),
        "allocations": names(records.IPAM_DIR, "10.231.*/*"),
        "bridge records": names(records.BRIDGES_DIR, "*.json"),
        "nft chains": set(nat.chains()),
        "ip_forward": nat.IP_FORWARD.read_text().strip(),
    }


@pytest.fixture(autouse=True)
def network_left_clean() -> Iterator[None]:
    before = _state()
    yield
    after = _state()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the test left network state behind (before, after): {changed}"


@pytest.fixture
def bridge() -> str:
    """A bridge name of this test's own (the conftest's leak check covers pv-*)."""
    return f"pv-br{secrets.token_hex(3)}"


def ip(*args: str) -> str:
    """Run `ip ARGS` (iproute2: independent of the code under test); its output."""
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def upstream() -> Iterator[str]:
    """A test-made "outside" host: netns pv-up-<hex>, 10.231.1.2, reached by veth from 10.231.1.1.

    It has no route back to the pod subnet: it can only answer what the host
    masqueraded.
    """
    tag = secrets.token_hex(3)
    name, host_end = f"pv-up-{tag}", f"pvhup{tag}"
    ip("netns", "add", name)
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
        ip("addr", "add", "10.231.1.1/24", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", name, "addr", "add", "10.231.1.2/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", host_end], check=False, capture_output=True)
        ip("netns", "del", name)
