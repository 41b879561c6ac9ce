"""spec.securityContext.sysctls: kernel settings of the pod's own namespaces.

The rules are the API server's and the kubelet's:

* a name is written with dots or slashes (``net/ipv4/ip_forward``), at most
  253 characters, each once; the slash form is turned into the dot form;
* a sysctl of the network namespace may not be set with hostNetwork, one of
  the IPC namespace (``kernel.shm*``, ``kernel.msg*``, ``kernel.sem``,
  ``fs.mqueue.*``) not with hostIPC: it would change the host's;
* the kubelet's *safe* set is allowed; any other namespaced sysctl is
  *unsafe*, and allowed only where the node says so (the kubelet's
  ``--allowed-unsafe-sysctls``; here the pod's annotation
  ``podvisor.io/allowed-unsafe-sysctls``, in the same pattern syntax);
* a sysctl no namespace holds (``vm.*``, ``kernel.pid_max``, ...) is the
  whole machine's: refused always, as the kubelet refuses to be told to allow it.

The pod's init writes them in the pod's network and IPC namespaces before
any container starts (`init/sysctls.py`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from podvisor.supervisor.manifest import fields
from podvisor.supervisor.manifest.nodes import Fields, child, fields_of, sequence, value_of

#: The kubelet's safe set, each with the first kernel that namespaces it.
SAFE: dict[str, tuple[int, int]] = {
    "kernel.shm_rmid_forced": (0, 0),
    "net.ipv4.ip_local_port_range": (0, 0),
    "net.ipv4.tcp_syncookies": (0, 0),
    "net.ipv4.ping_group_range": (0, 0),
    "net.ipv4.ip_unprivileged_port_start": (0, 0),
    "net.ipv4.ip_local_reserved_ports": (3, 16),
    "net.ipv4.tcp_keepalive_time": (4, 5),
    "net.ipv4.tcp_fin_timeout": (4, 6),
    "net.ipv4.tcp_keepalive_intvl": (4, 5),
    "net.ipv4.tcp_keepalive_probes": (4, 5),
    "net.ipv4.tcp_rmem": (4, 15),
    "net.ipv4.tcp_wmem": (4, 15),
}

_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
_NAME = re.compile(rf"({_SEGMENT}[./])*{_SEGMENT}")
_PATTERN = re.compile(rf"({_SEGMENT}[./])*({_SEGMENT}|([a-z0-9][-_a-z0-9]*)?\*)")
MAX_LENGTH = 253


def dotted(name: str) -> str:
    """The dot form of a name: in the slash form, a dot is part of a word (an interface's)."""
    cut = re.search(r"[./]", name)
    if cut is None or cut.group() == ".":
        return name
    return name.translate(str.maketrans("./", "/."))


def namespace_of(name: str) -> str | None:
    """'net' or 'ipc' for a sysctl a namespace holds (the dot form); None for the node's."""
    if name.startswith("net."):
        return "net"
    if name == "kernel.sem" or name.startswith(("kernel.shm", "kernel.msg", "fs.mqueue.")):
        return "ipc"
    return None


def safe_names(release: str | None = None) -> tuple[str, ...]:
    """The safe set on this kernel: the kubelet leaves out what an older one does not namespace."""
    numbers = re.match(r"(\d+)\.(\d+)", release or os.uname().release)
    kernel = (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)
    return tuple(name for name, first in SAFE.items() if kernel >= first)


def allowed_patterns(text: str) -> tuple[str, ...]:
    """`podvisor.io/allowed-unsafe-sysctls`: names and prefixes ending in ``*``, comma separated.

    Raises ValueError, with the kubelet's words, for a pattern no namespace
    holds: allowing it would let a pod change the whole machine.
    """
    found = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        if len(raw) > MAX_LENGTH or not _PATTERN.fullmatch(raw):
            raise ValueError(
                f"{raw!r} is not a sysctl name or a prefix ending in * "
                "(examples: net.core.somaxconn, kernel.msg*)"
            )
        pattern = dotted(raw)
        if namespace_of(pattern.removesuffix("*")) is None:
            raise ValueError(
                f"the sysctls {pattern!r} are not known to be namespaced: only net.*, "
                "kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* can be the pod's own"
            )
        found.append(pattern)
    if not found:
        raise ValueError("names no sysctl (example: net.core.somaxconn,kernel.msg*)")
    return tuple(found)


def _allowed(name: str, patterns: tuple[str, ...]) -> bool:
    return any(
        name.startswith(p[:-1]) if p.endswith("*") else name == p
        for p in (*safe_names(), *patterns)
    )


@dataclass(frozen=True)
class _Sharing:
    """What of the host's the pod shares, and which unsafe sysctls it may set."""

    host_network: bool
    host_ipc: bool
    network: str | None  # podvisor's network mode: "host" shares this machine's
    allowed: tuple[str, ...]


def read_sysctls(
    spec: Fields, *, host_network: bool, host_ipc: bool, network: str | None,
    allowed: tuple[str, ...],
) -> tuple[tuple[str, str], ...]:  # fmt: skip
    """The pod's sysctls, (dotted name, value) in order; each refusal reported at its line.

    *network*: podvisor's network mode ("host" shares this machine's network
    namespace, as hostNetwork does); *allowed*: the annotation's patterns.
    """
    node = value_of(spec.get("securityContext"), "sysctls")
    if node is None:
        return ()
    sharing = _Sharing(host_network, host_ipc, network, allowed)
    path = "spec.securityContext.sysctls"
    found: list[tuple[str, str]] = []
    for index, item in enumerate(sequence(spec.report, node, path)):
        f = fields_of(spec.report, item, child(path, index), fields.SYSCTL)
        if f is None:
            continue
        named = f.require("name", "the sysctl's name (e.g. kernel.shm_rmid_forced)")
        valued = f.require("value", 'the value to write, as a string (e.g. "1")')
        name = f.string("name") if named else None
        value = f.string("value") if valued else None
        if name is None or value is None:
            continue
        problem = (
            _name_problem(name, [n for n, _ in found])
            or _shared_problem(name, sharing)
            or _allow_problem(name, sharing)
        )
        if problem:
            f.error("name", problem)
            continue
        found.append((dotted(name), value))
    return tuple(found)


def _name_problem(name: str, seen: list[str]) -> str | None:
    """The API server's checks of a name."""
    if len(name) > MAX_LENGTH or not _NAME.fullmatch(name):
        return f"{name!r}: must have at most 253 characters and match sysctl naming rules"
    if dotted(name) in seen:
        return f"duplicate value {name!r}"
    return None


def _shared_problem(name: str, sharing: _Sharing) -> str | None:
    """A sysctl of a namespace the pod shares with the host: the API server's words."""
    kind = namespace_of(dotted(name))
    if kind == "net" and sharing.host_network:
        return f"{name!r}: may not be specified when 'hostNetwork' is true"
    if kind == "net" and sharing.network == "host":
        return (
            f"{name!r}: may not be specified with podvisor.io/network: host, which shares "
            "this machine's network namespace; use loopback or bridge"
        )
    if kind == "ipc" and sharing.host_ipc:
        return f"{name!r}: may not be specified when 'hostIPC' is true"
    return None


def _allow_problem(name: str, sharing: _Sharing) -> str | None:
    """The kubelet's admission: the safe set, and the unsafe ones the node allows."""
    key = dotted(name)
    if namespace_of(key) is None:
        return (
            f"forbidden sysctl: {key!r} not allowlisted: no namespace holds it, so it would "
            "change the whole machine; set it on the host with sysctl(8)"
        )
    if not _allowed(key, sharing.allowed):
        return (
            f"forbidden sysctl: {key!r} not allowlisted: it is namespaced but outside the "
            "kubelet's safe set; allow it for this pod with the annotation "
            f"podvisor.io/allowed-unsafe-sysctls: {key!r} (as the kubelet's "
            "--allowed-unsafe-sysctls allows it on a node)"
        )
    return None
