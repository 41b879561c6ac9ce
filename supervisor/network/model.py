"""What a pod asks of its network: the mode, the subnet, the published ports."""

from __future__ import annotations

import re
from dataclasses import field
from enum import StrEnum
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import DnsConfig, DnsPolicy, HostAlias

if TYPE_CHECKING:
    from podvisor.supervisor.manifest.model import Pod

#: The default pod subnet. Chosen to clash with none of the usual defaults:
#: Docker (172.17.0.0/16, then 172.18-31.x and 192.168.x), Podman
#: (10.88.0.0/16, 10.89.x.0/24), Kubernetes CNIs (flannel 10.244.0.0/16, k3s
#: 10.42.0.0/16, Calico 192.168.0.0/16, services 10.96.0.0/12), libvirt
#: (192.168.122.0/24). 253 pods per host is plenty for one machine; a subnet
#: that overlaps a route of the host is refused anyway, never installed.
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_BRIDGE = "podvisor0"

# Kubernetes' DNS-1123 subdomain: what a pod name may be; also safe in a path.
_POD_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
# What kubelet makes of a pod's name or spec.hostname: at most 63 characters.
_HOSTNAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")
_IFNAME_MAX = 15  # IFNAMSIZ - 1


class NetworkMode(StrEnum):
    HOST = "host"  # the supervisor's own network namespace
    LOOPBACK = "loopback"  # a namespace of its own with lo up and nothing else
    BRIDGE = "bridge"  # plus eth0 on a host bridge, an address, a route out via NAT


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"


@frozen
class PortMapping:
    """One `containers[].ports[]` entry with a hostPort."""

    host_port: int
    container_port: int
    protocol: Protocol = Protocol.TCP
    host_ip: str = ""  # Kubernetes' hostIP: "" listens on every address (0.0.0.0)
    container: str = ""  # the container that declared it, for messages

    def __str__(self) -> str:
        where = f"{self.host_ip}:" if self.host_ip else ""
        owner = f" of container {self.container}" if self.container else ""
        return f"hostPort {where}{self.host_port}/{self.protocol}{owner}"


@frozen
class NetworkRequest:
    """What the pod's network must be; `create_network` makes it."""

    pod_name: str
    pod_uid: str
    hostname: str
    #: None: bridge where podvisor's privileges allow it, otherwise host (with a warning).
    mode: NetworkMode | None = None
    subnet: str = DEFAULT_SUBNET
    bridge: str = DEFAULT_BRIDGE
    host_ports: tuple[PortMapping, ...] = ()
    #: spec.hostAliases, spec.dnsPolicy and spec.dnsConfig, for the pod's /etc files.
    host_aliases: tuple[HostAlias, ...] = ()
    dns_policy: DnsPolicy = DnsPolicy.CLUSTER_FIRST
    dns_config: DnsConfig = field(default_factory=DnsConfig)

    @classmethod
    def for_pod(cls, pod: Pod) -> NetworkRequest:
        """What *pod*'s manifest asks of its network."""
        mode: NetworkMode | None = None
        if pod.spec.host_network:
            mode = NetworkMode.HOST
        elif pod.settings.network:
            mode = NetworkMode(pod.settings.network)
        ports = tuple(
            PortMapping(p.host_port, p.container_port, Protocol(p.protocol), container=c.name)
            for c in pod.spec.all_containers
            for p in c.ports
            if p.host_port
        )
        return cls(
            pod_name=pod.name,
            pod_uid=pod.uid,
            hostname=pod.hostname,
            mode=mode,
            subnet=pod.settings.subnet or DEFAULT_SUBNET,
            host_ports=ports,
            host_aliases=pod.spec.host_aliases,
            dns_policy=pod.spec.dns_policy,
            dns_config=pod.spec.dns_config,
        )

    def checked_subnet(self) -> IPv4Network:
        """The subnet, parsed; NetworkError when it cannot hold a gateway and a pod."""
        try:
            subnet = IPv4Network(self.subnet)
        except ValueError as e:
            raise NetworkError(
                f"pod subnet {self.subnet!r} is not an IPv4 network such as {DEFAULT_SUBNET}: {e}"
            ) from e
        if subnet.prefixlen > 30:
            raise NetworkError(
                f"pod subnet {subnet} is too small: it needs room for the bridge's address "
                "and at least one pod (a /30 or larger)"
            )
        return subnet

    def check_names(self) -> None:
        if not _POD_NAME.fullmatch(self.pod_name) or len(self.pod_name) > 253:
            raise NetworkError(
                f"pod name {self.pod_name!r} is not a DNS-1123 subdomain (lowercase letters, "
                "digits, '-' and '.')"
            )
        # The node's own name (hostNetwork) is whatever the machine calls itself.
        if self.mode is not NetworkMode.HOST and not _HOSTNAME.fullmatch(self.hostname):
            raise NetworkError(
                f"hostname {self.hostname!r} is not a valid host name: at most 63 lowercase "
                "letters, digits, '-' and '.' (Kubernetes cuts a pod name used as hostname "
                "to 63 characters and strips trailing '-' and '.')"
            )
        if not self.bridge or len(self.bridge) > _IFNAME_MAX or not self.bridge.isascii():
            raise NetworkError(f"bridge name {self.bridge!r} is not a valid interface name")
        if any(c in self.bridge for c in "/ :\t\n") or self.bridge in (".", ".."):
            raise NetworkError(f"bridge name {self.bridge!r} is not a valid interface name")

    @property
    def short_id(self) -> str:
        """Eight characters of the pod's uid, to tell two pods of one name apart."""
        kept = "".join(c for c in self.pod_uid.lower() if c.isascii() and c.isalnum())
        return (kept or "0")[:8]

    @property
    def instance(self) -> str:
        """`<pod>-<id>`: the pod's directory under /run/podvisor/pods."""
        return f"{self.pod_name[:200]}-{self.short_id}"
