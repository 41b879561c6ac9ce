"""Pod addresses from a subnet, without collisions between supervisors.

One directory per subnet under /run/podvisor/ipam, one small file per
allocated address holding its owner (pid and start time) and its pod, as
the CNI host-local plugin keeps them. Every change happens under an
exclusive flock on the directory's lock file, so two pods starting at once,
from one supervisor or from two, never get the same address. An entry whose
owner has died is stale: it is reclaimed when an address is needed or when
cleanup asks.

The subnet's first host address is the bridge's (the pods' gateway); the
pods get the ones after it, lowest free first.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.network import records
from podvisor.supervisor.network.records import Owner


@frozen
class Allocation:
    """One address taken from the pool, and by whom."""

    address: IPv4Address
    owner: Owner
    pod: str


class AddressPool:
    """The addresses of one subnet, as recorded under /run/podvisor/ipam."""

    def __init__(self, subnet: IPv4Network, base: Path | None = None) -> None:
        self.subnet = subnet
        self.dir = (base or records.IPAM_DIR) / subnet.with_prefixlen.replace("/", "_")
        self._lock = self.dir / ".lock"

    @property
    def gateway(self) -> IPv4Address:
        return next(self.subnet.hosts())

    def allocate(self, owner: Owner, pod: str) -> IPv4Address:
        """Take the lowest free address for *pod*; NetworkError when none is left."""
        with records.locked(self._lock):
            for address in self._candidates():
                entry = self._read(address)
                if entry is None or not entry.owner.alive():
                    self._write(Allocation(address, owner, pod))
                    return address
        raise NetworkError(
            f"no free address left in {self.subnet} for pod {pod}: every one is taken by a "
            "running pod; choose a larger subnet (annotation podvisor.io/subnet)"
        )

    def release(self, address: IPv4Address, owner: Owner) -> bool:
        """Give *address* back if *owner* holds it; whether it was released."""
        with records.locked(self._lock):
            entry = self._read(address)
            if entry is None or entry.owner != owner:
                return False
            return records.remove_file(self.dir / str(address))

    def allocations(self) -> list[Allocation]:
        """Every recorded address, live or stale."""
        if not self.dir.is_dir():
            return []
        found = []
        for path in self.dir.iterdir():
            if path.name.startswith("."):
                continue
            entry = self._read_path(path)
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda a: a.address)

    def live(self) -> list[Allocation]:
        return [a for a in self.allocations() if a.owner.alive()]

    def reclaim_stale(self) -> list[IPv4Address]:
        """Forget the addresses whose owner is gone; the ones forgotten."""
        if not self.dir.is_dir():
            return []
        with records.locked(self._lock):
            return [
                entry.address
                for entry in self.allocations()
                if not entry.owner.alive() and records.remove_file(self.dir / str(entry.address))
            ]

    def remove_if_empty(self) -> None:
        """Drop the pool's directory once no address is recorded in it.

        Call it only under the host-wide network lock: removing a lock file
        is safe only while nobody can be waiting on it.
        """
        with records.locked(self._lock):
            if self.allocations():
                return
            records.remove_file(self._lock)
        records.remove_empty_dir(self.dir)

    # --- Entries ------------------------------------------------------------

    def _candidates(self) -> list[IPv4Address]:
        hosts = self.subnet.hosts()
        next(hosts)  # the gateway
        return list(hosts)

    def _read(self, address: IPv4Address) -> Allocation | None:
        return self._read_path(self.dir / str(address))

    @staticmethod
    def _read_path(path: Path) -> Allocation | None:
        data = records.read_json(path)
        try:
            return Allocation(IPv4Address(path.name), Owner.from_json(data), str(data["pod"]))
        except (TypeError, KeyError, ValueError):
            return None

    def _write(self, entry: Allocation) -> None:
        records.write_json(
            self.dir / str(entry.address), {**entry.owner.to_json(), "pod": entry.pod}
        )


def all_pools(base: Path | None = None) -> list[AddressPool]:
    """A pool for every subnet that has a directory under /run/podvisor/ipam."""
    base = base or records.IPAM_DIR
    if not base.is_dir():
        return []
    pools = []
    for path in sorted(base.iterdir()):
        try:
            subnet = IPv4Network(path.name.replace("_", "/"))
        except ValueError:
            continue
        pools.append(AddressPool(subnet, base))
    return pools
