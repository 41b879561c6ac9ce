"""Egress for bridged pods: IP forwarding and masquerade.

Masquerade rules go through Debian's `nft` binary, given JSON on its command
line (`nft -j '{"nftables": ...}'`), not through pyroute2's nftables module:
pyroute2 0.9 only offers raw expression builders there (its prefix-mask helper
even packs masks in host byte order), while `nft` checks and applies a whole
batch as one atomic transaction, and JSON needs no quoting of names. Everything lives in a table
of our own, `table ip podvisor`, with one chain per bridge:

    table ip podvisor {
        chain nat-podvisor0 {
            type nat hook postrouting priority srcnat; policy accept;
            ip saddr 10.213.0.0/24 oifname != "podvisor0" masquerade
        }
    }

so no rule of the host's is touched, a bridge's rules go with one
`delete chain`, and all of podvisor's with `nft delete table ip podvisor`.

A bridged pod's hostPorts are DNATs, as the CNI `portmap` plugin makes them,
in three chains of the pod's own, named after its veth (`publish_ports`):

    chain hostports-pvh0123456789 {         # from outside: prerouting
        fib daddr type local tcp dport 8080 dnat to 10.213.0.3:80
    }
    chain hostports-out-pvh0123456789 {     # from this host: output
        fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat to 10.213.0.3:80
    }
    chain hostports-post-pvh0123456789 {    # a pod of the bridge reaching it: hairpin
        ct status dnat ip saddr 10.213.0.0/24 ip daddr 10.213.0.3 masquerade
    }

So the pod sees each client's own address, and a server it binds to its
127.0.0.1 alone is out of reach. A connection of this host's to 127.0.0.1
is left to the supervisor's proxy (proxy.py), which holds every hostPort
bound anyway: DNAT from the loopback would need route_localnet on the bridge.

net.ipv4.ip_forward is set to 1 while a bridge exists; its value before the
first bridge is kept in /run/podvisor/net/ip_forward.before and restored
when the last bridge goes.

Blocking: run these from a worker thread.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import Any

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.network import records
from podvisor.supervisor.network.model import PortMapping

TABLE = "podvisor"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_NFT_TIMEOUT = 20.0


def nft_available() -> bool:
    # Not shutil.which: see records.remove_tree.
    return any(os.access(os.path.join(d, "nft"), os.X_OK) for d in os.get_exec_path())


def chain_name(bridge: str) -> str:
    return f"nat-{bridge}"


def enable_masquerade(bridge: str, subnet: IPv4Network) -> None:
    """Masquerade what *subnet* sends out of any link but *bridge* (idempotent)."""
    egress = [
        _match("==", _ip("saddr"), _prefix(subnet)),
        _match("!=", {"meta": {"key": "oifname"}}, bridge),
        {"masquerade": None},
    ]
    _nft(
        *_base_chains([(chain_name(bridge), "postrouting", 100)]),
        _rule(chain_name(bridge), egress, f"egress of the pods on {bridge}"),
    )


def disable_masquerade(bridge: str) -> bool:
    """Delete *bridge*'s chain, and the table with the last chain; whether there was one."""
    return _delete_chains([chain_name(bridge)])


def hostport_chains(veth: str) -> tuple[str, str, str]:
    """The pod's hostPort chains: prerouting, output, postrouting."""
    return (f"hostports-{veth}", f"hostports-out-{veth}", f"hostports-post-{veth}")


def publish_ports(
    veth: str, pod_ip: IPv4Address, subnet: IPv4Network, mappings: Sequence[PortMapping]
) -> None:
    """DNAT each of *mappings* to *pod_ip*, in the chains of the pod with *veth* (idempotent).

    A mapping bound to a loopback or IPv6 hostIP is the proxy's alone.
    """
    pre, out, post = hostport_chains(veth)
    commands = _base_chains(
        [(pre, "prerouting", -100), (out, "output", -100), (post, "postrouting", 100)]
    )
    not_loopback = _match("!=", _ip("daddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}})
    for m in mappings:
        dnat = _dnat(m, pod_ip)
        if dnat is not None:
            commands += [_rule(pre, dnat, str(m)), _rule(out, [not_loopback, *dnat], str(m))]
    hairpin = [
        _match("in", {"ct": {"key": "status"}}, "dnat"),
        _match("==", _ip("saddr"), _prefix(subnet)),
        _match("==", _ip("daddr"), str(pod_ip)),
        {"masquerade": None},
    ]
    commands.append(_rule(post, hairpin, "a pod of the bridge reaching a hostPort"))
    _nft(*commands)


def unpublish_ports(veth: str) -> bool:
    """Delete the hostPort chains of the pod with *veth*, and the table with the last chain."""
    return _delete_chains(hostport_chains(veth))


def _base_chains(chains: Sequence[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Our table, and each (name, hook, priority) as an empty NAT chain of it."""
    commands: list[dict[str, Any]] = [{"add": {"table": {"family": "ip", "name": TABLE}}}]
    for name, hook, prio in chains:
        chain = {"family": "ip", "table": TABLE, "name": name}
        base = {"type": "nat", "hook": hook, "prio": prio, "policy": "accept"}
        commands += [{"add": {"chain": {**chain, **base}}}, {"flush": {"chain": chain}}]
    return commands


def _delete_chains(names: Sequence[str]) -> bool:
    """Delete those of *names* that exist, and the table with its last chain; whether any did."""
    present = chains()
    mine = [name for name in names if name in present]
    if not mine:
        return False
    if set(present) <= set(mine):
        _nft({"delete": {"table": {"family": "ip", "name": TABLE}}})
    else:
        _nft(*({"delete": {"chain": {"family": "ip", "table": TABLE, "name": n}}} for n in mine))
    return True


def _dnat(m: PortMapping, pod_ip: IPv4Address) -> list[dict[str, Any]] | None:
    exprs = [_match("==", {"fib": {"result": "type", "flags": ["daddr"]}}, "local")]
    if m.host_ip:
        address = ip_address(m.host_ip)
        if address.version != 4 or address.is_loopback:
            return None
        exprs.append(_match("==", _ip("daddr"), str(address)))
    protocol = m.protocol.lower()
    exprs.append(_match("==", {"payload": {"protocol": protocol, "field": "dport"}}, m.host_port))
    exprs.append({"dnat": {"addr": str(pod_ip), "port": m.container_port}})
    return exprs


def _ip(field: str) -> dict[str, Any]:
    return {"payload": {"protocol": "ip", "field": field}}


def _prefix(subnet: IPv4Network) -> dict[str, Any]:
    return {"prefix": {"addr": str(subnet.network_address), "len": subnet.prefixlen}}


def _match(op: str, left: dict[str, Any], right: object) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _rule(chain: str, exprs: list[dict[str, Any]], comment: str) -> dict[str, Any]:
    rule = {"family": "ip", "table": TABLE, "chain": chain, "comment": f"podvisor: {comment}"}
    return {"add": {"rule": {**rule, "expr": exprs}}}


def chains() -> list[str]:
    """The chains in our table (none when the table is absent)."""
    listing = _nft_list("list", "table", "ip", TABLE)
    return [item["chain"]["name"] for item in listing if "chain" in item]


def forward_drop_warning() -> str | None:
    """A warning when a firewall chain of the host drops forwarded packets by default.

    Our table cannot override another table's drop verdict, and it must not
    change the host's rules; so the user is told what to allow.
    """
    for item in _nft_list("list", "chains"):
        chain = item.get("chain", {})
        if chain.get("hook") == "forward" and chain.get("policy") == "drop":
            return (
                f"the host's firewall chain {chain.get('family')} {chain.get('table')} "
                f"{chain.get('name')} drops forwarded packets by default: pods on the bridge "
                "cannot reach beyond this host, nor other machines their hostPorts, until it "
                "accepts their traffic (iifname/oifname of the bridge)"
            )
    return None


def _nft(*commands: dict[str, Any]) -> None:
    # Not `-f -`: for JSON, nft opens /dev/stdin by name, which a minimal
    # container or an initramfs lacks. A batch is a few hundred bytes.
    batch = json.dumps({"nftables": list(commands)})
    result = _run_nft(["-j", batch], None)
    if result.returncode != 0:
        raise NetworkError(f"nft refused podvisor's NAT rules: {result.stderr.strip()}")


def _nft_list(*what: str) -> list[dict[str, Any]]:
    result = _run_nft(["-j", *what], None)
    if result.returncode != 0:
        return []  # "No such file or directory": the table is not there
    items: list[dict[str, Any]] = json.loads(result.stdout).get("nftables", [])
    return items


def _run_nft(args: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["nft", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_NFT_TIMEOUT,
            check=False,
        )
    except (FileNotFoundError, PermissionError) as e:  # none on PATH, or none we may run
        raise NetworkError(
            "bridge mode needs the nft program for its NAT rules: install nftables "
            "(apt-get install nftables), or choose the host or loopback network"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise NetworkError(f"nft did not answer within {_NFT_TIMEOUT:g} s") from e


# --- IP forwarding -------------------------------------------------------------


def enable_forwarding() -> None:
    """Turn net.ipv4.ip_forward on, first noting how it was (once, for the first bridge)."""
    if not records.IP_FORWARD_BEFORE.exists():
        records.IP_FORWARD_BEFORE.parent.mkdir(parents=True, exist_ok=True)
        records.IP_FORWARD_BEFORE.write_text(IP_FORWARD.read_text())
    if IP_FORWARD.read_text().strip() != "1":
        IP_FORWARD.write_text("1\n")


def restore_forwarding() -> bool:
    """Put net.ipv4.ip_forward back as it was before our first bridge; whether we did."""
    try:
        before = records.IP_FORWARD_BEFORE.read_text().strip()
    except FileNotFoundError:
        return False
    if before in ("0", "1") and IP_FORWARD.read_text().strip() != before:
        IP_FORWARD.write_text(f"{before}\n")
    records.remove_file(records.IP_FORWARD_BEFORE)
    return True
