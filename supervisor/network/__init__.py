"""The pod's network: host, loopback or bridge mode, /etc files, published ports.

`create_network` makes the pod's network namespace and everything in it
before the pod's init starts; the init joins the namespace and bind-mounts
`PodNetwork.etc_files`; `PodNetwork.aclose` undoes it all. `publish_ports`
serves the hostPorts; `open_connection_in` opens a TCP connection from
inside the pod (for probes); `cleanup_stale` undoes what a SIGKILLed
supervisor left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podvisor.supervisor.lazy import lazy_names

if TYPE_CHECKING:
    from podvisor.supervisor.network.create import (
        bridge_unavailable_reason,
        create_network,
        create_network_sync,
    )
    from podvisor.supervisor.network.model import (
        DEFAULT_BRIDGE,
        DEFAULT_SUBNET,
        NetworkMode,
        NetworkRequest,
        PortMapping,
        Protocol,
    )
    from podvisor.supervisor.network.pod import PodNetwork, cleanup_stale
    from podvisor.supervisor.network.proxy import PortProxy, open_connection_in, publish_ports

__all__ = [
    "DEFAULT_BRIDGE",
    "DEFAULT_SUBNET",
    "NetworkMode",
    "NetworkRequest",
    "PodNetwork",
    "PortMapping",
    "PortProxy",
    "Protocol",
    "bridge_unavailable_reason",
    "cleanup_stale",
    "create_network",
    "create_network_sync",
    "open_connection_in",
    "publish_ports",
]

# Each name is imported from its module when it is first asked for
# (`podvisor.supervisor.lazy`): `podvisor run` forks the network's maker
# (maker.py) before it reads the manifest, and that fork must not wait for the
# modules below, which the child imports on its own core.
_HOME = {
    "DEFAULT_BRIDGE": "model",
    "DEFAULT_SUBNET": "model",
    "NetworkMode": "model",
    "NetworkRequest": "model",
    "PortMapping": "model",
    "Protocol": "model",
    "PodNetwork": "pod",
    "bridge_unavailable_reason": "create",
    "cleanup_stale": "pod",
    "create_network": "create",
    "create_network_sync": "create",
    "PortProxy": "proxy",
    "open_connection_in": "proxy",
    "publish_ports": "proxy",
}

if not TYPE_CHECKING:
    __getattr__ = lazy_names(__name__, _HOME, globals())
