"""A container's securityContext as the init applies it: a `protocol.Confinement`.

The defaults are the OCI runtimes' (runc and crun with containerd's or
Docker's default spec): the 14 capabilities they give a container, the /proc
and /sys paths they mask or make read-only, a cgroup namespace, private mount
propagation. podvisor adds what a runtime gets from its container's own root
file system: its own state (control sockets, the pods' network namespace
files) hidden, since in host mode a container sees the host's files.

securityContext changes them as Kubernetes with containerd does:
capabilities.add and drop (``ALL`` first, then each name; a drop wins),
privileged (every capability, nothing masked, /sys and the cgroups
writable), allowPrivilegeEscalation: false (no_new_privs),
readOnlyRootFilesystem, the groups (supplementalGroups, fsGroup, and the
user's groups in /etc/group unless supplementalGroupsPolicy is Strict), and
the seccomp filter compiled when the manifest was read.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from podvisor.init import protocol
from podvisor.supervisor.manifest.model import SecurityContext
from podvisor.supervisor.pod import sandbox

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

#: Covered: kernel memory, keys, timers and firmware tables a container has no use for.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
    "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
)  # fmt: skip

#: Read-only: the kernel's settings (sysctls), the magic SysRq key, IRQ affinities, buses.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


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


@functools.cache
def _may_mount() -> bool:
    """Whether the pod's init is root of its namespaces, as `sandbox.plan_namespaces` decides.

    Without CAP_SYS_ADMIN and without user namespaces the pod runs in the
    supervisor's own namespaces, as its user: there is nothing to mount with.
    """
    return sandbox.has_capability(sandbox.CAP_SYS_ADMIN) or sandbox.user_namespaces_allowed()


def hidden_paths() -> tuple[str, ...]:
    """podvisor's state, which no container may reach: sockets, records, network namespaces."""
    found = [os.environ.get("PODVISOR_RUN_DIR") or "/run/podvisor", "/run/netns"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        found.append(f"{runtime}/podvisor")
    found += sorted(str(p) for p in Path("/run/user").glob("*/podvisor"))
    return tuple(dict.fromkeys(found))


def confinement(sc: SecurityContext, exposed: tuple[str, ...] = ()) -> protocol.Confinement:
    """*exposed*: paths inside podvisor's state the container is meant to reach (NOTIFY_SOCKET)."""
    groups = tuple(sc.supplemental_groups)
    if sc.fs_group is not None:
        groups += (sc.fs_group,)
    return protocol.Confinement(
        capabilities=capability_set(sc),
        no_new_privs=sc.allow_privilege_escalation is False,
        groups=groups,
        merge_groups=sc.supplemental_groups_policy != "Strict",
        mounts=_may_mount(),
        cgroupns=True,
        sys_readonly=not sc.privileged,
        hidden=hidden_paths(),
        exposed=exposed,
        masked=() if sc.privileged else MASKED_PATHS,
        readonly=() if sc.privileged else READONLY_PATHS,
        readonly_root=sc.read_only_root_filesystem,
        seccomp=sc.seccomp_filter,
    )
