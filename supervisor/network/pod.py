"""The pod's network as made, and its undoing when the pod ends.

`create.py` makes it (`create_network`), in the supervisor or in the
network's maker (maker.py), and hands back a `PodNetwork`: where the
network is, and the record (records.py) of what it is made of. `aclose`
undoes everything the record names, skipping what is absent, under the
same host-wide lock as the making; `cleanup_stale` follows the records of
supervisors that died (SIGKILL, power cut). The bridge, its NAT chain and
the forwarding setting are shared by the pods on the bridge: they go when
the last pod on it leaves, judged by the pool's live allocations.

A supervisor whose network was made by the maker keeps this module, not
the making's: the /etc files' rendering, the bridge's set-up and the
choice of mode stay in the child.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.network import links, nat, netns, records
from podvisor.supervisor.network.ipam import AddressPool, all_pools
from podvisor.supervisor.network.model import NetworkMode, NetworkRequest
from podvisor.supervisor.network.records import Owner

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
    hostports: bool = False  # DNAT chains named after the veth (nat.publish_ports)

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
    def connect_host(self) -> str | None:
        """The address a published port forwards to: the pod's own, as Kubernetes' hostPort
        DNAT does; never 127.0.0.1, where a server the pod keeps to itself listens.
        None on the loopback network, which has no address but 127.0.0.1."""
        return self.pod_ip if self.mode is not NetworkMode.LOOPBACK else None

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


async def hand_over(network: PodNetwork) -> PodNetwork:
    """*network*, made in a shielded scope; undone instead if the caller was cancelled meanwhile."""
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        await network.aclose()
        raise
    return network


def undo_recorded(req: NetworkRequest, owner: Owner) -> list[str]:
    """Undo what the record of *req*'s pod names, if *owner* owns it; what was removed.

    For a network whose maker died half-way, before it could say what it made.
    """

    def undo() -> list[str]:
        with records.locked():
            path = PodRecord.path_of(req.instance)
            record = PodRecord.load(path) if path.exists() else None
            return teardown(record) if record is not None and record.owner == owner else []

    return netns.in_new_thread(undo)


# --- Undoing it -----------------------------------------------------------------


def _teardown_locked(record: PodRecord) -> list[str]:
    with records.locked():
        return teardown(record)


def teardown(record: PodRecord) -> list[str]:
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

    if record.veth and record.hostports:
        chains = f"nft chains {nat.hostport_chains(record.veth)[0]}..."
        step(chains, lambda: nat.unpublish_ports(str(record.veth)))
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
                removed += [f"pod {record.instance}: {item}" for item in teardown(record)]
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
