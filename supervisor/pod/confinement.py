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
from podvisor.supervisor.control import paths
from podvisor.supervisor.manifest.capabilities import capability_set
from podvisor.supervisor.manifest.model import SecurityContext
from podvisor.supervisor.network import records
from podvisor.supervisor.pod import claims, logfiles, rootfs, sandbox

#: Covered: kernel memory, keys, timers and firmware tables a container has no use for.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
    "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
)  # fmt: skip

#: Read-only: the kernel's settings (sysctls), the magic SysRq key, IRQ affinities, buses.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@functools.cache
def _may_mount() -> bool:
    """Whether the pod's init is root of its namespaces, as `sandbox.plan_namespaces` decides.

    Without CAP_SYS_ADMIN and without user namespaces the pod runs in the
    supervisor's own namespaces, as its user: there is nothing to mount with.
    """
    return sandbox.has_capability(sandbox.CAP_SYS_ADMIN) or sandbox.user_namespaces_allowed()


def hidden_paths() -> tuple[str, ...]:
    """podvisor's state, which no container may reach: sockets, records, network namespaces,
    and every pod's files: the image store (emptyDirs and upper directories), the claims,
    the logs.

    The control sockets' folder (which PODVISOR_RUN_DIR moves) and the
    records' (the pods' network records and NOTIFY_SOCKETs) may differ. The
    container's own emptyDirs and claims are bound before these are covered.
    """
    found = [str(paths.run_dir()), str(records.RUN_DIR), "/run/netns"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        found.append(f"{runtime}/podvisor")
    found += sorted(str(p) for p in Path("/run/user").glob("*/podvisor"))
    stores = (rootfs.default_store_root(), claims.default_root(), str(logfiles.log_root()))
    found += [os.path.abspath(p) for p in stores if os.path.isdir(p)]
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
