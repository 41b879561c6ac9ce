"""Deleting links with podvisor's own netlink message, checked with iproute2.

The links are the test's own (pv-*, pvh* and pvp*, which the leak check covers);
`lo`, which cannot be deleted, is tried in a namespace the test makes.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Interface

import pytest

from podvisor.supervisor.network import links
from tests.network.conftest import ip
from tests.network.helpers import REPO

_GATEWAY = IPv4Interface("10.231.9.1/24")
#: Run in a namespace of the test's own: `lo` cannot be deleted.
TRY_LO = """
from podvisor.supervisor.network import links
try:
    links.delete_link("lo")
except OSError as e:
    print(e.errno, e)
"""


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    """A veth pair of the test's own: (one end, its peer)."""
    tag = secrets.token_hex(3)
    ends = (f"pvhdl{tag}", f"pvpdl{tag}")
    ip("link", "add", ends[0], "type", "veth", "peer", "name", ends[1])
    try:
        yield ends
    finally:
        subprocess.run(["ip", "link", "del", ends[0]], check=False, capture_output=True)


def _exists(name: str) -> bool:
    shown = subprocess.run(["ip", "link", "show", name], check=False, capture_output=True)
    return shown.returncode == 0


def test_deleting_one_end_of_a_veth_pair_deletes_both(veth: tuple[str, str]) -> None:
    assert links.delete_link(veth[0]) is True
    assert not _exists(veth[0])
    assert not _exists(veth[1])


def test_deleting_a_link_that_is_not_there_says_so(veth: tuple[str, str]) -> None:
    assert links.delete_link(veth[1]) is True
    assert links.delete_link(veth[1]) is False  # gone: with its peer, or by itself
    assert links.delete_link(veth[0]) is False


def test_deleting_a_bridge_podvisor_made(bridge: str) -> None:
    ip("link", "add", bridge, "type", "bridge")
    try:
        assert links.remove_bridge(bridge, links.BridgeSetup(True, True), _GATEWAY) is True
        assert not _exists(bridge)
    finally:
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


def test_a_link_the_kernel_will_not_delete_is_an_error_naming_it() -> None:
    namespace = f"pv-dl-{secrets.token_hex(3)}"
    ip("netns", "add", namespace)
    try:
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                sys.executable,
                "-c",
                TRY_LO,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        ip("netns", "del", namespace)
    number, _, message = done.stdout.strip().partition(" ")
    assert int(number) > 0
    assert "cannot delete link lo" in message
