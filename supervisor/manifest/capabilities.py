"""Linux capabilities by name, and the set a container gets from its securityContext.

containerd's rules: the runtime's default set (the 14 capabilities runc,
crun, containerd and Docker give a container), changed by
``capabilities.add`` and ``drop``: ``add: [ALL]`` first, then ``drop:
[ALL]``, then each name added, then each name dropped (a drop wins);
``privileged`` gives every capability.
"""

from __future__ import annotations

import functools
from pathlib import Path

from podvisor.supervisor.manifest.model import SecurityContext

#: capabilities(7), in bit order: CAP_CHOWN is 0.
_CAPABILITIES_IN_ORDER = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip
CAPABILITY_BITS: dict[str, int] = {name: bit for bit, name in enumerate(_CAPABILITIES_IN_ORDER)}

#: What containerd and Docker give a container that asks for nothing: 0xa80425fb.
DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)  # fmt: skip


def mask(names: tuple[str, ...] | list[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << CAPABILITY_BITS[name]
    return bits


@functools.cache
def all_capabilities() -> int:
    """Every capability this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 40  # CAP_CHECKPOINT_RESTORE, the last one of Linux 5.9 to 6.x
    return (1 << (last + 1)) - 1


def capability_set(sc: SecurityContext) -> int:
    """The container's capabilities, as containerd computes them from the securityContext."""
    everything = all_capabilities()
    if sc.privileged:
        return everything
    caps = mask(DEFAULT_CAPABILITIES)
    if "ALL" in sc.capabilities_add:
        caps = everything
    if "ALL" in sc.capabilities_drop:
        caps = 0
    caps |= mask([n for n in sc.capabilities_add if n != "ALL"])
    caps &= ~mask([n for n in sc.capabilities_drop if n != "ALL"])
    return caps & everything
