"""The pod's network, made before the pod's init starts (pod.py undoes it).

How this works. `create_network` makes, in this order, under one host-wide
lock (records.py):

1. the pod's record, /run/podvisor/pods/<pod>-<id>/network.json, naming the
   owner (this process) and each thing about to be made, *before* making
   it (and after checking its name is free, so a record never names
   somebody else's): a supervisor SIGKILLed half-way leaves a record that
   `cleanup_stale` follows, as does the pod's next start;
2. (loopback, bridge) a named netns /run/netns/pv-<pod>-<id> with lo up;
3. (bridge) the bridge (made if missing, with the subnet's first address),
   IP forwarding and the masquerade chain; an address from the pool; a
   veth pair `pvh<hash>` on the bridge / eth0 in the pod, with the pod's
   address and a default route via the bridge; the hostPorts' DNAT chains;
4. the pod's /etc/hostname, /etc/hosts and /etc/resolv.conf.

A bridge subnet that overlaps a route the host already has (other than the
bridge's own) is refused before anything is made.

Any failure undoes what was made (`pod.teardown`, which `PodNetwork.aclose`
runs too, and which skips what is absent) and raises NetworkError.

The init then joins the namespace (setns) and bind-mounts the /etc files.
All the work is blocking (netlink, flock, mounts, nft): the async entry
points run it in a worker thread, shielded from cancellation so that a
network is never left half made or half undone.
"""

from __future__ import annotations

import errno
import os
import socket
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import anyio

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.network import etcfiles, links, nat, netns, records
from podvisor.supervisor.network.ipam import AddressPool
from podvisor.supervisor.network.model import NetworkMode, NetworkRequest, PortMapping, Protocol
from podvisor.supervisor.network.pod import (
    BridgeRecord,
    PodNetwork,
    PodRecord,
    hand_over,
    teardown,
)
from podvisor.supervisor.network.records import Owner

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


async def create_network(req: NetworkRequest) -> PodNetwork:
    """Make the pod's network as *req* asks; NetworkError (and nothing left) when it cannot."""
    with anyio.CancelScope(shield=True):
        network = await anyio.to_thread.run_sync(_create, req, Owner.current())
    return await hand_over(network)


def create_network_sync(req: NetworkRequest, owner: Owner | None = None) -> PodNetwork:
    """`create_network` for synchronous callers (blocks, in a thread of its own).

    *owner*: the process the records name, this one by default; the network
    maker (maker.py) names the supervisor that forked it.
    """
    return netns.in_new_thread(lambda: _create(req, owner or Owner.current()))


def _create(req: NetworkRequest, owner: Owner) -> PodNetwork:
    req.check_names()
    mode, warnings = choose_mode(req.mode)
    with records.locked():
        record = PodRecord(owner, req.pod_name, req.instance, mode)
        _replace_stale(record.path)
        try:
            return _make(req, record, warnings)
        except NetworkError as e:
            _undo_after_failure(record, e)
            raise
        except Exception as e:
            _undo_after_failure(record, e)
            raise NetworkError(f"cannot make the network of pod {req.pod_name}: {e}") from e


def _replace_stale(path: Path) -> None:
    """Undo a dead supervisor's network of this very pod; refuse a live one's."""
    earlier = PodRecord.load(path) if path.exists() else None
    if earlier is None:
        return
    if earlier.owner.alive():
        raise NetworkError(
            f"pod {earlier.instance} already has a network, made by the running process "
            f"{earlier.owner.pid} ({path}): is the pod started twice?"
        )
    teardown(earlier)


def _undo_after_failure(record: PodRecord, error: Exception) -> None:
    try:
        teardown(record)
    except NetworkError as e:
        error.add_note(str(e))


def _make(req: NetworkRequest, record: PodRecord, warnings: list[str]) -> PodNetwork:
    if record.mode is NetworkMode.HOST:
        record.save()
        host_ip = links.uplink().address
        files = _etc_files(req, record, host_ip or "127.0.0.1", warnings)
        return PodNetwork(NetworkMode.HOST, None, host_ip, files, warnings, record)
    subnet = req.checked_subnet() if record.mode is NetworkMode.BRIDGE else None
    if subnet is not None:
        _refuse_overlap(subnet, req.bridge)
    # Names are checked free before they are recorded: a failure undoes what
    # the record names, which must never be somebody else's.
    netns_path = str(netns.NETNS_DIR / f"pv-{req.instance}")
    _check_free(netns_path)
    record.netns = netns_path
    record.save()
    netns.create_netns(Path(record.netns).name)
    netns.run_in_netns(record.netns, links.bring_up_loopback)
    address = None
    if subnet is not None:
        address = _attach_to_bridge(req, record, subnet, warnings)
    pod_ip = str(address.ip) if address else None
    files = _etc_files(req, record, pod_ip or "127.0.0.1", warnings)
    return PodNetwork(record.mode, record.netns, pod_ip, files, warnings, record)


def _check_free(netns_path: str) -> None:
    if Path(netns_path).exists():
        raise NetworkError(
            f"network namespace {netns_path} exists already; if no pod uses it, "
            f"remove it with `ip netns delete {Path(netns_path).name}`"
        )


def _refuse_overlap(subnet: IPv4Network, bridge: str) -> None:
    clashes = links.overlapping_routes(subnet, bridge)
    if clashes:
        raise NetworkError(
            f"pod subnet {subnet} overlaps routes this host already has ({'; '.join(clashes)}): "
            "pods could not reach those addresses; choose another subnet "
            "(annotation podvisor.io/subnet)"
        )


def _attach_to_bridge(
    req: NetworkRequest, record: PodRecord, subnet: IPv4Network, warnings: list[str]
) -> IPv4Interface:
    import hashlib  # here: its OpenSSL set-up would stay in the supervisor for good

    pool = AddressPool(subnet)
    gateway = IPv4Interface(f"{pool.gateway}/{subnet.prefixlen}")
    veth = "pvh" + hashlib.sha256(f"{req.pod_name}/{req.pod_uid}".encode()).hexdigest()[:10]
    if links.link_exists(veth):
        raise NetworkError(f"link {veth} exists already: is pod {req.instance} running?")
    record.bridge, record.subnet, record.veth = req.bridge, str(subnet), veth
    record.save()
    uplink = links.uplink()
    _ensure_bridge(req.bridge, gateway, uplink.mtu, subnet, warnings)
    address = IPv4Interface(f"{pool.allocate(record.owner, req.instance)}/{subnet.prefixlen}")
    record.address = str(address.ip)
    record.save()
    fd = netns.open_netns(str(record.netns))
    try:
        links.add_veth(veth, fd, req.bridge, uplink.mtu)
    finally:
        os.close(fd)
    netns.run_in_netns(record.netns, lambda: links.configure_pod_interface(address, gateway.ip))
    if req.host_ports:
        _refuse_taken(req.host_ports)  # else its DNAT would take another's traffic
        record.hostports = True  # recorded first, as everything made here
        record.save()
        nat.publish_ports(veth, address.ip, subnet, req.host_ports)
    return address


def _refuse_taken(mappings: tuple[PortMapping, ...]) -> None:
    """NetworkError when another program (another pod's proxy too) holds a hostPort.

    The proxy binds them all once the network is made (proxy.py), and says so
    too; a DNAT made before that would meanwhile take the holder's traffic.
    """
    for m in mappings:
        kind = socket.SOCK_STREAM if m.protocol == Protocol.TCP else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((m.host_ip or "0.0.0.0", m.host_port))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    continue  # an IPv6 hostIP, or one not this host's: the proxy says
                raise NetworkError(
                    f"{m} is taken on this host: another program listens on port "
                    f"{m.host_port}; stop it or choose another hostPort"
                ) from e


def _ensure_bridge(
    name: str, gateway: IPv4Interface, mtu: int, subnet: IPv4Network, warnings: list[str]
) -> None:
    known = BridgeRecord.load(name)
    if known is not None and known.gateway != gateway:
        raise NetworkError(
            f"bridge {name} serves subnet {known.gateway.network}, not {subnet}: "
            "choose another bridge name or that subnet"
        )
    if known is None:
        # Recorded before it is made, so that a crash in between leaves a trace to follow.
        BridgeRecord(name, gateway, links.plan_bridge(name, gateway)).save()
    links.ensure_bridge(name, gateway, mtu)
    nat.enable_forwarding()
    nat.enable_masquerade(name, subnet)
    blocked = nat.forward_drop_warning()
    if blocked:
        warnings.append(f"network: {blocked}")


def _etc_files(
    req: NetworkRequest, record: PodRecord, own_address: str, warnings: list[str]
) -> dict[str, str]:
    """Write the pod's /etc files; *own_address* is what its hostname resolves to."""
    resolv_text = etcfiles.read_text(etcfiles.HOST_RESOLV_CONF) or ""
    aliases = req.host_aliases
    if record.mode is NetworkMode.HOST:
        host_hosts = etcfiles.read_text(etcfiles.HOST_HOSTS) or ""
        hosts = etcfiles.render_host_mode_hosts(host_hosts, req.hostname, own_address, aliases)
    else:
        hosts = etcfiles.render_hosts(req.hostname, own_address, aliases)
        resolv = etcfiles.render_resolv_conf(
            resolv_text, etcfiles.read_text(etcfiles.RESOLVED_UPSTREAMS)
        )
        resolv_text = resolv.text
        if resolv.unreachable and req.dns_config.nameservers:
            # The manifest names servers the pod can reach: the host's loopback ones go.
            resolv_text = etcfiles.without_nameservers(resolv_text, resolv.unreachable)
        elif resolv.unreachable and record.mode is NetworkMode.BRIDGE:
            warnings.append(
                f"network: the host's only nameservers ({', '.join(resolv.unreachable)}) are "
                "on loopback and no upstream list was found in "
                f"{etcfiles.RESOLVED_UPSTREAMS}: names will not resolve inside the pod; "
                "set spec.dnsConfig.nameservers"
            )
    left_out = etcfiles.nameservers_left_out(resolv_text, req.dns_policy, req.dns_config)
    if left_out:
        warnings.append(
            "network: resolv.conf holds 3 nameservers, the host's first: "
            f"{', '.join(left_out)} of spec.dnsConfig.nameservers left out "
            "(dnsPolicy: None gives dnsConfig's alone)"
        )
    files = {
        "/etc/hostname": etcfiles.render_hostname(req.hostname),
        "/etc/hosts": hosts,
        "/etc/resolv.conf": etcfiles.apply_dns_config(resolv_text, req.dns_policy, req.dns_config),
    }
    return etcfiles.write_etc_files(record.dir / "etc", files)


# --- Choosing the mode ------------------------------------------------------------


def choose_mode(requested: NetworkMode | None) -> tuple[NetworkMode, list[str]]:
    """The mode to use and the one-line warning that explains a fallback."""
    missing = bridge_unavailable_reason() if requested in (None, NetworkMode.BRIDGE) else None
    if requested is None:
        if missing is None:
            return NetworkMode.BRIDGE, []
        return NetworkMode.HOST, [f"network: the pod uses the host's network: {missing}"]
    if missing is not None:
        raise NetworkError(f"bridge network unavailable: {missing}")
    return NetworkMode(requested), []


def bridge_unavailable_reason(status_text: str | None = None) -> str | None:
    """Why bridge mode cannot work here, or None when it can."""
    if not _has_capability(CAP_NET_ADMIN, status_text):
        return (
            "podvisor lacks CAP_NET_ADMIN to make a bridge and veth pair; run it as root "
            "or grant it (docker run --cap-add NET_ADMIN)"
        )
    if not _has_capability(CAP_SYS_ADMIN, status_text):
        return (
            "podvisor lacks CAP_SYS_ADMIN to make a network namespace; run it as root "
            "or grant it (docker run --cap-add SYS_ADMIN)"
        )
    if not nat.nft_available():
        return "the nft program is missing for the NAT rules (apt-get install nftables)"
    return None


def _has_capability(bit: int, status_text: str | None) -> bool:
    text = status_text if status_text is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False
