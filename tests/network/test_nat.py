"""NAT rules where /dev has no stdin link, as in a minimal container or an initramfs."""

from __future__ import annotations

import subprocess
import sys

from tests.network.conftest import POD_SUBNET

# In a mount namespace of its own, /dev is an empty tmpfs: no /dev/stdin, no /dev/fd.
ENABLE_AND_DISABLE = """
import os, sys
from ipaddress import IPv4Network
from podvisor.supervisor.network import nat
assert not os.path.exists("/dev/stdin")
nat.enable_masquerade(sys.argv[1], IPv4Network(sys.argv[2]))
print(nat.chain_name(sys.argv[1]) in nat.chains(), flush=True)
print(nat.disable_masquerade(sys.argv[1]), flush=True)
"""


def test_masquerade_rules_need_no_dev_stdin(bridge: str) -> None:
    child = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
            'mount -t tmpfs podvisor-test /dev && exec "$@"',
            *("sh", sys.executable, "-c", ENABLE_AND_DISABLE, bridge, POD_SUBNET),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (child.returncode, child.stderr) == (0, "")
    assert child.stdout.split() == ["True", "True"]
