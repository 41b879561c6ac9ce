"""Links, addresses and routes, over netlink with pyroute2 (deleting a link without).

Each function opens its own `IPRoute` in the calling thread's network
namespace (see netns.py for how a thread gets into a pod's) and closes it
before returning; pyroute2's objects, which are untyped, never leave this
module. pyroute2's synchronous `IPRoute` runs a private asyncio loop, so
these functions must run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import errno
import fcntl
import importlib
import importlib.util
import os
import socket
import struct
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_network
from typing import Any

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.frozen import frozen

#: The name the pod's end of its veth pair gets inside the pod.
POD_INTERFACE = "eth0"
_DEFAULT_MTU = 1500


@contextmanager
def _netlink() -> Iterator[Any]:
    with pyroute2_module("iproute.linux").IPRoute() as ipr:
        yield ipr


# --- pyroute2, without its package's __init__ ---------------------------------
#
# pyroute2/__init__.py imports every module the library has (conntrack, IPDB,
# NDB, ipset, nl80211, wireguard, plan9, ...) to re-export their classes:
# slow and heavy, and a pod on the bridge would pay for it at every start.
# podvisor uses IPRoute and NetlinkError, whose own modules import only what
# they need (under half the time and memory). So the package goes into
# sys.modules as a shell, the real package with its __path__ and __spec__ but
# its __init__ not run, and those modules are imported beneath it. The shell
# is completed (the real __init__ run in it) the first time anything asks it
# for a name it lacks that is not a submodule, so that `from pyroute2 import
# NDB` anywhere else in the process still works (PEP 562's module __getattr__).
# Where pyroute2 is imported already, it is used as it is.

_SHELL_LOCK = threading.RLock()


def pyroute2_module(name: str) -> types.ModuleType:
    """`pyroute2.<name>`, imported without the package's __init__ where it is not yet imported."""
    with _SHELL_LOCK:
        if "pyroute2" not in sys.modules:
            sys.modules["pyroute2"] = _pyroute2_shell()
    return importlib.import_module(f"pyroute2.{name}")


def preload() -> None:
    """Import the netlink modules now, so that a later call does not wait for them."""
    pyroute2_module("iproute.linux")
    pyroute2_module("netlink.exceptions")


def _pyroute2_shell() -> types.ModuleType:
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise NetworkError("the Python package pyroute2 is missing: reinstall podvisor")
    loader, shell = spec.loader, importlib.util.module_from_spec(spec)

    def complete(attribute: str) -> Any:
        with _SHELL_LOCK:
            # The import system looks a submodule up on its package before it
            # imports it (`from pyroute2 import config`): not there yet, then.
            if "__getattr__" not in shell.__dict__ or _is_submodule(attribute):
                raise AttributeError(f"module 'pyroute2' has no attribute {attribute!r}")
            del shell.__dict__["__getattr__"]
            loader.exec_module(shell)
        return getattr(shell, attribute)

    shell.__dict__["__getattr__"] = complete
    return shell


def _is_submodule(name: str) -> bool:
    return name.isidentifier() and importlib.util.find_spec(f"pyroute2.{name}") is not None


def _index(ipr: Any, name: str) -> int | None:
    found: list[int] = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str) -> bool:
    with _netlink() as ipr:
        return _index(ipr, name) is not None


# --- The host's view -----------------------------------------------------------


@frozen
class Uplink:
    """The link of the host's IPv4 default route: its MTU and first address."""

    mtu: int
    address: str | None


def uplink() -> Uplink:
    """What the pods' traffic leaves through; a plain 1500 when there is no default route."""
    with _netlink() as ipr:
        for route in ipr.route("dump", family=socket.AF_INET):
            if route["dst_len"] == 0 and route.get("table") == 254 and route.get("oif"):
                oif = route.get("oif")
                mtu = int(ipr.link("get", index=oif)[0].get("mtu") or _DEFAULT_MTU)
                addresses = [a.get("address") for a in ipr.addr("dump", index=oif, family=2)]
                return Uplink(min(mtu, _DEFAULT_MTU), addresses[0] if addresses else None)
    return Uplink(_DEFAULT_MTU, None)


def overlapping_routes(subnet: IPv4Network, bridge: str) -> list[str]:
    """The host's IPv4 routes that overlap *subnet*, except default routes and *bridge*'s own."""
    found: list[str] = []
    with _netlink() as ipr:
        own = _index(ipr, bridge)
        names = {link["index"]: link.get("ifname") for link in ipr.link("dump")}
        for route in ipr.route("dump", family=socket.AF_INET):
            oif = route.get("oif")
            if route["dst_len"] == 0 or (own is not None and oif == own):
                continue
            network = ip_network(f"{route.get('dst')}/{route['dst_len']}", strict=False)
            described = f"{network} dev {names.get(oif, '?')}"
            if network.overlaps(subnet) and described not in found:
                found.append(described)
    return found


# --- The bridge ----------------------------------------------------------------


@frozen
class BridgeSetup:
    """What `ensure_bridge` changed, so that `remove_bridge` undoes exactly that."""

    made: bool
    address_added: bool


def plan_bridge(name: str, gateway: IPv4Interface) -> BridgeSetup:
    """What `ensure_bridge` would change; NetworkError when *name* cannot serve *gateway*."""
    with _netlink() as ipr:
        index = _index(ipr, name)
        if index is None:
            return BridgeSetup(made=True, address_added=True)
        kind = ipr.link("get", index=index)[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        if kind != "bridge":
            raise NetworkError(f"{name} exists and is not a bridge: choose another bridge name")
        present = _addresses(ipr, index)
    if present and gateway not in present:
        raise NetworkError(
            f"bridge {name} already has address {present[0]}, not {gateway}: it serves "
            "another subnet; choose another bridge name or that subnet"
        )
    return BridgeSetup(made=False, address_added=gateway not in present)


def ensure_bridge(name: str, gateway: IPv4Interface, mtu: int) -> None:
    """Make bridge *name* if missing, give it *gateway* if missing, bring it up."""
    with _netlink() as ipr:
        index = _index(ipr, name)
        if index is None:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            index = ipr.link_lookup(ifname=name)[0]
        if gateway not in _addresses(ipr, index):
            ipr.addr(
                "add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen
            )
        ipr.link("set", index=index, state="up")


def _addresses(ipr: Any, index: int) -> list[IPv4Interface]:
    return [
        IPv4Interface(f"{a.get('address')}/{a['prefixlen']}")
        for a in ipr.addr("dump", index=index, family=socket.AF_INET)
    ]


def remove_bridge(name: str, setup: BridgeSetup, gateway: IPv4Interface) -> bool:
    """Undo `ensure_bridge`: delete a bridge we made, or just our address from one we found."""
    if setup.made:
        return delete_link(name)
    with _netlink() as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        if setup.address_added:
            _ignore_missing(
                lambda: ipr.addr(
                    "del", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen
                )
            )
    return True


# --- The pod's veth pair ---------------------------------------------------------


def add_veth(host_end: str, netns_fd: int, bridge: str, mtu: int) -> None:
    """A veth pair: *host_end* on *bridge*, its peer made as eth0 right inside the pod.

    Making the peer directly in the pod's namespace (IFLA_NET_NS_FD) means it
    never appears in the host's, where the name eth0 is usually taken.
    """
    with _netlink() as ipr:
        bridge_index = _index(ipr, bridge)
        if bridge_index is None:
            raise NetworkError(f"bridge {bridge} vanished while the pod's network was made")
        ipr.link(
            "add",
            ifname=host_end,
            kind="veth",
            mtu=mtu,
            peer={"ifname": POD_INTERFACE, "net_ns_fd": netns_fd, "mtu": mtu},
        )
        index = _index(ipr, host_end)
        ipr.link("set", index=index, master=bridge_index, state="up")


# --- Deleting: one netlink message of our own ----------------------------------
#
# What a pod's stop undoes (its veth pair; the bridge, with the last pod) is
# links deleted by name: one RTM_DELLINK, and the kernel's acknowledgement.
# Sent without pyroute2, a stop does not import it: the supervisor would
# otherwise grow by the whole library at every bridge pod's stop, to send one
# message. Making a network, many more messages, stays pyroute2's.

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id (netlink(7))
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change (rtnetlink(7))
_RTATTR = struct.Struct("=HH")  # length, type
_NLMSGERR = struct.Struct("=i")  # the error (0: acknowledged), then the request's header
_RTM_DELLINK = 17
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_IFLA_IFNAME = 3
_NETLINK_TIMEOUT = 10.0  # the kernel answers at once; this only bounds a bug


def delete_link(name: str) -> bool:
    """Delete link *name* (for a veth, both ends); whether it was there.

    OSError if the kernel refuses (a link that cannot be deleted, say `lo`);
    NetworkError if netlink cannot be used or answers something else.
    """
    ifname = name.encode() + b"\0"
    attribute = _RTATTR.pack(_RTATTR.size + len(ifname), _IFLA_IFNAME) + ifname
    attribute += bytes(-len(attribute) % 4)  # attributes are padded to 4 bytes
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attribute
    flags = _NLM_F_REQUEST | _NLM_F_ACK
    request = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), _RTM_DELLINK, flags, 1, 0) + body
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
            nl.settimeout(_NETLINK_TIMEOUT)
            nl.sendto(request, (0, 0))  # to the kernel
            reply = nl.recv(65536)
    except OSError as e:  # no netlink socket, or no answer in time
        raise NetworkError(f"cannot delete link {name}: netlink: {e}") from e
    if len(reply) < _NLMSGHDR.size + _NLMSGERR.size:
        raise NetworkError(f"cannot delete link {name}: a netlink answer of {len(reply)} bytes")
    _, kind, _, sequence, _ = _NLMSGHDR.unpack_from(reply)
    if kind != _NLMSG_ERROR or sequence != 1:
        raise NetworkError(f"cannot delete link {name}: netlink answered message type {kind}")
    (error,) = _NLMSGERR.unpack_from(reply, _NLMSGHDR.size)
    if error == -errno.ENODEV:
        return False
    if error:
        raise OSError(-error, f"cannot delete link {name}: {os.strerror(-error)}")
    return True


# --- Inside the pod (run these in the pod's namespace) ---------------------------


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH14x")  # struct ifreq: the name, then ifr_flags (netdevice(7))


def bring_up_loopback() -> None:
    """Set `lo` up in the calling thread's network namespace.

    Two ioctls rather than netlink: a loopback-only pod then starts without
    importing pyroute2 at all, which costs a tenth of a second even lean.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(b"lo", 0)
        _, flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))


def configure_pod_interface(address: IPv4Interface, gateway: IPv4Address) -> None:
    """Give eth0 its address, bring it up, and route everything via *gateway*."""
    with _netlink() as ipr:
        index = _index(ipr, POD_INTERFACE)
        ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=index)


def link_names() -> list[str]:
    with _netlink() as ipr:
        return sorted(str(link.get("ifname")) for link in ipr.link("dump"))


def is_up(name: str) -> bool:
    with _netlink() as ipr:
        index = _index(ipr, name)
        return index is not None and bool(ipr.link("get", index=index)[0]["flags"] & 1)


def _ignore_missing(call: Any) -> None:
    try:
        call()
    except pyroute2_module("netlink.exceptions").NetlinkError as e:
        if e.code not in (errno.ENODEV, errno.EADDRNOTAVAIL, errno.ENOENT):
            raise
