"""Starting the pod's init in its namespaces, and deciding which ones it gets.

The pod gets new pid, mnt, uts and ipc namespaces (and a network namespace
that the network module made before, which init joins), unless the manifest
keeps the host's (``hostPID``, ``hostIPC``) or the supervisor lacks
CAP_SYS_ADMIN. Without it, the pod runs in the current namespaces with init
as a child subreaper: degraded, never broken, and said once at start with
how to grant what is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio

from podvisor.init import protocol
from podvisor.supervisor.frozen import frozen

CAP_SYS_ADMIN = 21


def has_capability(bit: int, status_text: str | None = None) -> bool:
    """Whether the effective capability set (from /proc/self/status) holds *bit*."""
    text = status_text if status_text is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def user_namespaces_allowed() -> bool:
    """Whether this machine lets us make a user namespace at all (a limit of 0 says no)."""
    try:
        return int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
    except (OSError, ValueError):
        return False


@frozen
class SandboxPlan:
    """Which namespaces the pod's init makes, and what it sets up in them."""

    unshare: tuple[str, ...]
    netns: str | None = None
    hostname: str | None = None
    binds: tuple[tuple[str, str], ...] = ()
    cgroup_procs: tuple[str, ...] = ()
    grace: float = 30.0
    warnings: tuple[str, ...] = ()
    #: (directory, options): tmpfs mounts the init makes in the pod's mount namespace.
    tmpfs: tuple[tuple[str, str], ...] = ()
    #: What the init writes into them (Secrets' volumes).
    files: tuple[protocol.PlanFile, ...] = ()
    #: (directory, lower directories): read-only overlays the init makes (image volumes).
    overlays: tuple[tuple[str, str], ...] = ()
    #: (source, staging): copies of the host's mounts for mountPropagation.
    propagated: tuple[tuple[str, str], ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()

    @property
    def own_pid_namespace(self) -> bool:
        return "pid" in self.unshare

    def message(self) -> protocol.Plan:
        """The init's first message: what it sets up."""
        return protocol.Plan(
            self.unshare,
            self.netns,
            self.hostname,
            self.binds,
            self.cgroup_procs,
            self.grace,
            self.sysctls,
            tmpfs=self.tmpfs,
            files=self.files,
            overlays=self.overlays,
            propagated=self.propagated,
        )


def plan_namespaces(
    *,
    host_pid: bool,
    host_ipc: bool,
    hostname: str,
    netns: str | None,
    binds: tuple[tuple[str, str], ...],
    cgroup_procs: tuple[str, ...],
    grace: float,
    privileged: bool | None = None,
    user_namespaces: bool | None = None,
    sysctls: tuple[tuple[str, str], ...] = (),
) -> SandboxPlan:
    """Which namespaces to make: all the pod's own, or a user namespace, or none.

    *sysctls* go with every plan: the init refuses to start a pod whose
    sysctls have no namespace of the pod's own to go to, rather than write
    the host's.
    """
    if privileged is None:
        privileged = has_capability(CAP_SYS_ADMIN)
    if user_namespaces is None:
        user_namespaces = user_namespaces_allowed()
    if not privileged and user_namespaces:
        return SandboxPlan(
            unshare=("user", "mnt", "uts", "ipc", *(() if host_pid else ("pid",))),
            hostname=hostname,
            binds=binds,
            cgroup_procs=cgroup_procs,
            grace=grace,
            sysctls=sysctls,
            warnings=(
                (
                    "running in a user namespace: podvisor lacks CAP_SYS_ADMIN, so the pod's "
                    "capabilities hold inside it alone, on this machine's files its root is "
                    f"podvisor's own user (uid {os.geteuid()}), and the pod uses this "
                    "machine's network; grant it with `docker run --cap-add SYS_ADMIN`, or "
                    "run podvisor as root"
                ),
            ),
        )
    if not privileged:
        return SandboxPlan(
            unshare=(),
            cgroup_procs=cgroup_procs,
            grace=grace,
            sysctls=sysctls,
            warnings=(
                (
                    "running without namespaces: podvisor lacks CAP_SYS_ADMIN, so the pod shares "
                    "this machine's pid, mount, uts, ipc and network namespaces and its init "
                    "reaps as a child subreaper; grant it with `docker run --cap-add SYS_ADMIN`, "
                    "or run podvisor as root"
                ),
            ),
        )
    kinds = ["mnt", "uts"]
    if not host_pid:
        kinds.append("pid")
    if not host_ipc:
        kinds.append("ipc")
    return SandboxPlan(
        unshare=tuple(kinds),
        netns=netns,
        hostname=hostname,
        binds=binds,
        cgroup_procs=cgroup_procs,
        grace=grace,
        sysctls=sysctls,
    )


class InitProcess:
    """The init's process: started without an event loop (none may run yet).

    Awaited through a pidfd, which is readable once the process has exited;
    where the kernel has none (before Linux 5.3), a worker thread waits. Any
    number of tasks may wait at once: one watches the pidfd, the others queue.
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._waiting: anyio.Lock | None = None  # made in the event loop, at the first wait
        try:
            self._pidfd = os.pidfd_open(popen.pid)
        except OSError:
            self._pidfd = -1

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        if self._waiting is None:
            self._waiting = anyio.Lock()
        async with self._waiting:
            if self._pidfd < 0:
                return await anyio.to_thread.run_sync(self._popen.wait, abandon_on_cancel=True)
            while (code := self._popen.poll()) is None:
                await anyio.wait_readable(self._pidfd)
            return code

    def kill(self) -> None:
        self._popen.kill()  # nothing once it is reaped: the pid may be another's

    def wait_blocking(self, timeout: float) -> None:
        """Wait for the exit without an event loop; kill it after *timeout* seconds."""
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._popen.wait()
        self.close()

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    async def aclose(self) -> None:
        self.close()


class WaitingInit:
    """The init, started ahead of its plan, and the supervisor's end of its channel.

    `podvisor run` starts it while the manifest is read, so the
    interpreter's start-up runs beside the supervisor's imports and set-up
    rather than after them; `start_init` sends it the plan. Use it as a
    context manager: on the way out an init that got no plan is sent off
    (end-of-file: it exits, status 0) and waited for.
    """

    def __init__(self) -> None:
        ours, theirs = protocol.socketpair()
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", "podvisor.init", "--channel", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                # Its own session: a terminal's Ctrl-C reaches the supervisor
                # alone, which stops the pod in order.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.process = InitProcess(popen)
        self._channel: socket.socket | None = ours

    def take_channel(self) -> socket.socket:
        """The channel, for the one `start_init` that sends the plan; ValueError after."""
        channel, self._channel = self._channel, None
        if channel is None:
            raise ValueError("this init already has its plan")
        return channel

    @property
    def taken(self) -> bool:
        return self._channel is None

    def __enter__(self) -> WaitingInit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self.process.wait_blocking(timeout=10)


def without_namespaces(plan: SandboxPlan, why: str, *, own_name_files: bool = False) -> SandboxPlan:
    """The plan to fall back to when *plan*'s namespaces could not be made.

    *own_name_files*: the manifest asks for /etc files of the pod's own
    (hostAliases, dnsConfig), which need a mount namespace to be put in place.
    """
    shared = (
        f"running without namespaces ({why}): the pod shares this machine's pid, "
        "mount, uts, ipc and network namespaces and its init reaps as a child "
        "subreaper; grant CAP_SYS_ADMIN (`docker run --cap-add SYS_ADMIN`) or allow "
        "user namespaces (sysctl user.max_user_namespaces)"
    )
    warnings = [shared]
    if own_name_files:
        warnings.append(
            "spec.hostAliases, dnsPolicy and dnsConfig are not applied: without a mount "
            "namespace the pod reads this machine's /etc/hosts and /etc/resolv.conf"
        )
    return SandboxPlan(
        unshare=(),
        cgroup_procs=plan.cgroup_procs,
        grace=plan.grace,
        warnings=tuple(warnings),
        sysctls=plan.sysctls,
    )
