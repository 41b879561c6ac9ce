"""Starting the pod's init in its namespaces, and deciding which ones it gets.

The pod gets new pid, mnt, uts and ipc namespaces (and a network namespace
that the network module made before, which init joins), unless the manifest
keeps the host's (``hostPID``, ``hostIPC``) or the supervisor lacks
CAP_SYS_ADMIN. Without it, the pod runs in the current namespaces with init
as a child subreaper: degraded, never broken, and said once at start with
how to grant what is missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

from podvisor.init import protocol
from podvisor.supervisor.channel import InitChannel
from podvisor.supervisor.errors import InitDiedError, NamespaceError

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


@dataclass(frozen=True)
class SandboxPlan:
    """Which namespaces the pod's init makes, and what it sets up in them."""

    unshare: tuple[str, ...]
    netns: str | None = None
    hostname: str | None = None
    binds: tuple[tuple[str, str], ...] = ()
    cgroup_procs: tuple[str, ...] = ()
    grace: float = 30.0
    warnings: tuple[str, ...] = ()

    @property
    def own_pid_namespace(self) -> bool:
        return "pid" in self.unshare


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
) -> SandboxPlan:
    """Which namespaces to make: all the pod's own, or a user namespace, or none."""
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
            warnings=(
                (
                    "running in a user namespace: podvisor lacks CAP_SYS_ADMIN, so the pod's "
                    "processes are root only inside it and the pod uses this machine's "
                    "network; grant it with `docker run --cap-add SYS_ADMIN`, or run "
                    "podvisor as root"
                ),
            ),
        )
    if not privileged:
        return SandboxPlan(
            unshare=(),
            cgroup_procs=cgroup_procs,
            grace=grace,
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
    )


@dataclass
class Sandbox:
    """The running init: its process (the supervisor's only child) and its channel."""

    process: anyio.abc.Process
    channel: InitChannel
    plan: SandboxPlan
    host_pid: int = 0  # the init proper, as this machine's /proc sees it
    pending_events: list[protocol.Message] = field(default_factory=list)

    def namespace_pid(self) -> int:
        """A pid whose /proc/PID/ns/* are the pod's namespaces."""
        return self.host_pid or self.process.pid


def init_argv(plan: SandboxPlan, channel_fd: int) -> list[str]:
    argv = [sys.executable, "-m", "podvisor.init", "--channel", str(channel_fd)]
    argv += ["--grace", str(plan.grace)]
    if plan.unshare:
        argv += ["--unshare", ",".join(plan.unshare)]
    if plan.netns:
        argv += ["--netns", plan.netns]
    if plan.hostname:
        argv += ["--hostname", plan.hostname]
    for source, target in plan.binds:
        argv += ["--bind", f"{source}:{target}"]
    for procs in plan.cgroup_procs:
        argv += ["--cgroup-procs", procs]
    return argv


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
        unshare=(), cgroup_procs=plan.cgroup_procs, grace=plan.grace, warnings=tuple(warnings)
    )


async def start_init(plan: SandboxPlan) -> Sandbox:
    """Start the init and wait until it serves; raise `NamespaceError` if it cannot."""
    ours, theirs = protocol.socketpair()
    try:
        process = await anyio.open_process(
            init_argv(plan, theirs.fileno()),
            stdin=None,
            stdout=None,
            stderr=None,
            pass_fds=(theirs.fileno(),),
            # Its own session: a terminal's Ctrl-C reaches the supervisor
            # alone, which stops the pod in order.
            start_new_session=True,
        )
    finally:
        theirs.close()
    sandbox = Sandbox(process, InitChannel(ours), plan)
    try:
        await _await_ready(sandbox)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
        sandbox.channel.close()
        raise
    return sandbox


async def _await_ready(sandbox: Sandbox) -> None:
    """Read the channel directly until init says ``ready`` (no reader task runs yet)."""
    sock = sandbox.channel._sock  # start-up happens before serve()
    with anyio.fail_after(30):
        while True:
            try:
                received = protocol.receive(sock)
            except BlockingIOError:
                await anyio.wait_readable(sock)
                continue
            if received is None:
                code = await sandbox.process.wait()
                raise InitDiedError(f"the pod's init exited with status {code} before it was ready")
            message, fds = received
            for fd in fds:
                os.close(fd)
            event = message.get("ev")
            if event == "init_started":
                sandbox.host_pid = int(message["host_pid"])
            elif event == "init_failed":
                raise NamespaceError(f"the pod's init could not set up: {message.get('message')}")
            elif event == "ready":
                if not sandbox.host_pid:
                    sandbox.host_pid = sandbox.process.pid
                return
            else:
                sandbox.pending_events.append(message)


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
