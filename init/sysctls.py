"""The pod's sysctls, written by its init in the pod's own namespaces.

/proc/sys/net/* is the network namespace of the process that opens the
file, and kernel.shm*, kernel.msg*, kernel.sem and fs/mqueue/* are its IPC
namespace's. So the init writes them once it stands in the pod's namespaces
and before any container starts; a sysctl whose namespace the pod shares
with the host (no network namespace was made for it, or no IPC namespace)
is refused here too, whatever the supervisor checked: nothing of the host's
is ever written.
"""

from __future__ import annotations

import os

from podvisor.init import protocol


def _namespace(name: str) -> str | None:
    if name.startswith("net."):
        return "net"
    if name == "kernel.sem" or name.startswith(("kernel.shm", "kernel.msg", "fs.mqueue.")):
        return "ipc"
    return None


def path_of(name: str) -> str:
    """/proc/sys's file for a name in the dot form (where a slash stands for a dot)."""
    return "/proc/sys/" + name.translate(str.maketrans("./", "/."))


def apply(plan: protocol.Plan) -> None:
    """Write the plan's sysctls; OSError naming the first that cannot be written."""
    own = {"net": plan.netns is not None, "ipc": "ipc" in plan.unshare}
    for name, value in plan.sysctls:
        kind = _namespace(name)
        if kind is None or not own[kind]:
            whose = {"net": "network", "ipc": "IPC"}.get(kind or "")
            where = f"the pod has no {whose} namespace" if whose else "no namespace holds it"
            raise OSError(f"sysctl {name}: {where} of its own, so it would be this machine's")
        try:
            fd = os.open(path_of(name), os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise OSError(f"sysctl {name}: {exc.strerror} ({path_of(name)})") from None
        try:
            os.write(fd, value.encode())
        except OSError as exc:
            raise OSError(f"sysctl {name}={value!r}: {exc.strerror}") from None
        finally:
            os.close(fd)
