"""The pod's network counters, from /proc/<pid>/net/dev of a process in its namespace.

/proc/<pid>/net/dev shows the interfaces of the network namespace that
process lives in, so the pod's init (`Sandbox.host_pid`) gives the pod's
counters without entering the namespace. cAdvisor reads the same file and
leaves out loopback and the host side of veth pairs (`IGNORED_PREFIXES`), so
a pod on the loopback network has no network series, as in Kubernetes.
"""

from __future__ import annotations

from podvisor.supervisor.frozen import frozen

#: Interfaces cAdvisor does not report (container/libcontainer: isIgnoredDevice).
IGNORED_PREFIXES = ("lo", "veth", "docker")


@frozen
class InterfaceCounters:
    """One line of /proc/net/dev: what one interface received and sent, since it was made."""

    name: str
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


def parse_net_dev(text: str) -> list[InterfaceCounters]:
    """/proc/net/dev: two header lines, then 'name: 8 receive and 8 transmit fields'."""
    found = []
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 16:
            continue
        rx, tx = [int(f) for f in fields[:8]], [int(f) for f in fields[8:16]]
        found.append(
            InterfaceCounters(
                name=name.strip(),
                rx_bytes=rx[0],
                rx_packets=rx[1],
                rx_errors=rx[2],
                rx_dropped=rx[3],
                tx_bytes=tx[0],
                tx_packets=tx[1],
                tx_errors=tx[2],
                tx_dropped=tx[3],
            )
        )
    return found


def pod_interfaces(pid: int) -> list[InterfaceCounters]:
    """The counters of the pod's interfaces, as cAdvisor reports them; [] when *pid* is gone."""
    try:
        with open(f"/proc/{pid}/net/dev", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return []  # init exited between two looks: the pod is ending, nothing to report
    return [i for i in parse_net_dev(text) if not i.name.startswith(IGNORED_PREFIXES)]
