"""The pod's network: made before the pod's init starts, undone when the pod ends.

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
   address and a default route via the bridge;
4. the pod's /etc/hostname, /etc/hosts and /etc/resolv.conf.

A bridge subnet that overlaps a route the host already has (other than the
bridge's own) is refused before anything is made.

Any failure undoes what was made (the same teardown `aclose` runs, which
skips what is absent) and raises NetworkError. The bridge, its NAT chain
and the forwarding setting are shared by the pods on the bridge: they go
when the last pod on it leaves, judged by the pool's live allocations.

The init then joins the namespace (setns) and bind-mounts the /etc files.
All the work is blocking (netlink, flock, mounts, nft): the async entry
points run it in a worker thread, shielded from cancellation so that a
network is never left half made or half undone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.network import etcfiles, links, nat, netns, records
from podvisor.supervisor.network.ipam import AddressPool, all_pools
from podvisor.supervisor.network.model import NetworkMode, NetworkRequest
from podvisor.supervisor.network.records import Owner

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


# --- Records -------------------------------------------------------------------


@dataclass
class PodRecord:
    """network.json: what one pod's network is made of, and who owns it."""

    owner: Owner
    pod: str
    instance: str
    mode: NetworkMode
    netns: str | None = None
    veth: str | None = None
    bridge: str | None = None
    subnet: str | None = None
    address: str | None = None

    @property
    def dir(self) -> Path:
        return records.PODS_DIR / self.instance

    @property
    def path(self) -> Path:
        return self.path_of(self.instance)

    @staticmethod
    def path_of(instance: str) -> Path:
        return records.PODS_DIR / instance / "network.json"

    def save(self) -> None:
        data = {k: v for k, v in self.__dict__.items() if k != "owner"}
        records.write_json(self.path, {"owner": self.owner.to_json(), **data})

    @classmethod
    def load(cls, path: Path) -> PodRecord | None:
        data = records.read_json(path)
        try:
            owner, mode = Owner.from_json(data["owner"]), NetworkMode(data["mode"])
            return cls(**{**data, "owner": owner, "mode": mode})
        except (TypeError, KeyError, ValueError):
            return None


@frozen
class BridgeRecord:
    """net/bridges/<bridge>.json: a bridge in use, and what we changed to make it."""

    name: str
    gateway: IPv4Interface
    setup: links.BridgeSetup

    @property
    def path(self) -> Path:
        return records.BRIDGES_DIR / f"{self.name}.json"

    def save(self) -> None:
        data = {"gateway": str(self.gateway), "made": self.setup.made}
        records.write_json(self.path, {**data, "address_added": self.setup.address_added})

    @classmethod
    def load(cls, name: str) -> BridgeRecord | None:
        data = records.read_json(records.BRIDGES_DIR / f"{name}.json")
        try:
            setup = links.BridgeSetup(bool(data["made"]), bool(data["address_added"]))
            return cls(name, IPv4Interface(data["gateway"]), setup)
        except (TypeError, KeyError, ValueError):
            return None


# --- The pod's network ------------------------------------------------------------


@dataclass
class PodNetwork:
    """A pod's network as made: where it is, its address, its /etc files."""

    mode: NetworkMode
    netns_path: str | None  # None in host mode
    pod_ip: str | None  # bridge: its own; host: the host's; loopback: None
    etc_files: dict[str, str]  # "/etc/hosts" -> the file podvisor wrote, to bind-mount
    warnings: list[str] = field(default_factory=list)
    _record: PodRecord | None = field(default=None, repr=False)

    @property
    def connect_host(self) -> str:
        """The address that reaches the pod's servers from inside its namespace."""
        return self.pod_ip if self.mode is NetworkMode.BRIDGE and self.pod_ip else "127.0.0.1"

    async def aclose(self) -> None:
        """Undo everything `create_network` did (idempotent; cannot be cancelled half-way)."""
        record, self._record = self._record, None
        if record is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_teardown_locked, record)

    def close_blocking(self) -> None:
        """`aclose` for synchronous callers (blocks, in a thread of its own)."""
        record, self._record = self._record, None
        if record is not None:
            netns.in_new_thread(lambda: _teardown_locked(record))


async def create_network(req: NetworkRequest) -> PodNetwork:
    """Make the pod's network as *req* asks; NetworkError (and nothing left) when it cannot."""
    with anyio.CancelScope(shield=True):
        network = await anyio.to_thread.run_sync(_create, req, Owner.current())
    return await hand_over(network)


async def hand_over(network: PodNetwork) -> PodNetwork:
    """*network*, made in a shielded scope; undone instead if the caller was cancelled meanwhile."""
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        await network.aclose()
        raise
    return network


def create_network_sync(req: NetworkRequest, owner: Owner | None = None) -> PodNetwork:
    """`create_network` for synchronous callers (blocks, in a thread of its own).

    *owner*: the process the records name, this one by default; the network
    maker (maker.py) names the supervisor that forked it.
    """
    return netns.in_new_thread(lambda: _create(req, owner or Owner.current()))


def undo_recorded(req: NetworkRequest, owner: Owner) -> list[str]:
    """Undo what the record of *req*'s pod names, if *owner* owns it; what was removed.

    For a network whose maker died half-way, before it could say what it made.
    """

    def undo() -> list[str]:
        with records.locked():
            path = PodRecord.path_of(req.instance)
            record = PodRecord.load(path) if path.exists() else None
            return _teardown(record) if record is not None and record.owner == owner else []

    return netns.in_new_thread(undo)


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
    _teardown(earlier)


def _undo_after_failure(record: PodRecord, error: Exception) -> None:
    try:
        _teardown(record)
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
    return address


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


# --- Undoing it -----------------------------------------------------------------


def _teardown_locked(record: PodRecord) -> list[str]:
    with records.locked():
        return _teardown(record)


def _teardown(record: PodRecord) -> list[str]:
    """Undo *record*'s network, skipping what is absent; what was removed.

    Every step is tried even when one fails; NetworkError then names the failures.
    """
    done: list[str] = []
    failed: list[str] = []

    def step(what: str, undo: Any) -> None:
        try:
            if undo():
                done.append(what)
        except Exception as e:  # reported below, after every other step was tried
            failed.append(f"{what}: {e}")

    if record.veth:
        step(f"link {record.veth}", lambda: links.delete_link(str(record.veth)))
    if record.netns:
        step(f"netns {Path(record.netns).name}", lambda: netns.remove_netns(str(record.netns)))
    if record.address and record.subnet:
        pool = AddressPool(IPv4Network(record.subnet))
        address = IPv4Address(record.address)
        step(f"address {address}", lambda: pool.release(address, record.owner))
    step("etc files", lambda: _remove_pod_files(record))
    if record.bridge:
        step(f"bridge {record.bridge}", lambda: _release_bridge(str(record.bridge), done))
    if failed:
        raise NetworkError(
            f"could not fully undo the network of pod {record.instance}: " + "; ".join(failed)
        )
    return done


def _remove_pod_files(record: PodRecord) -> bool:
    etc = record.dir / "etc"
    existed = record.path.exists() or etc.exists()
    records.remove_tree(etc)
    records.remove_file(record.path)
    records.remove_empty_dir(record.dir)  # the supervisor may keep more there
    return existed


def _release_bridge(name: str, done: list[str]) -> bool:
    """Remove bridge *name*, its NAT chain and (with the last bridge) forwarding, once unused."""
    known = BridgeRecord.load(name)
    if known is None:
        return False
    pool = AddressPool(known.gateway.network)
    pool.reclaim_stale()
    if pool.live():
        return False
    if nat.disable_masquerade(name):
        done.append(f"nft chain {nat.chain_name(name)}")
    links.remove_bridge(name, known.setup, known.gateway)
    records.remove_file(known.path)
    pool.remove_if_empty()
    if not any(records.BRIDGES_DIR.glob("*.json")):
        records.remove_empty_dir(records.BRIDGES_DIR)
        if nat.restore_forwarding():
            done.append("net.ipv4.ip_forward restored")
        records.remove_empty_dir(records.IP_FORWARD_BEFORE.parent)
    return True


def cleanup_stale() -> list[str]:
    """Undo the networks whose supervisor died (SIGKILL, power cut); what was removed.

    Also reclaims addresses of dead owners and removes bridges nobody uses.
    Blocks (in a thread of its own): call it at start, before any pod.
    """
    return netns.in_new_thread(_cleanup_stale)


def _cleanup_stale() -> list[str]:
    removed: list[str] = []
    failed: list[str] = []
    with records.locked():
        for path in sorted(records.PODS_DIR.glob("*/network.json")):
            record = PodRecord.load(path)
            if record is None or record.owner.alive():
                continue
            try:
                removed += [f"pod {record.instance}: {item}" for item in _teardown(record)]
            except NetworkError as e:
                failed.append(str(e))
            else:
                # Its supervisor is dead: whatever else it kept in the pod's
                # directory (the NOTIFY_SOCKET) is stale too.
                records.remove_tree(record.dir)
        for pool in all_pools():
            removed += [f"address {a} of a dead supervisor" for a in pool.reclaim_stale()]
        for bridge in sorted(records.BRIDGES_DIR.glob("*.json")):
            if _release_bridge(bridge.stem, removed):
                removed.append(f"bridge {bridge.stem}")
        records.remove_dead_owner_locks()  # not worth a line of its own in the report
    if failed:
        raise NetworkError("; ".join(failed))
    return removed
