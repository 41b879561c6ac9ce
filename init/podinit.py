"""The pod's PID 1: serves the supervisor's channel, spawns, reaps, reports.

How this works
--------------
The supervisor starts ``podvisor-init --channel FD`` as its child (the
*outer* process) early, while it still imports its own modules, so the
interpreter's start-up costs the pod nothing; the process waits for its plan,
the channel's first message. Then it joins the pod's cgroup, enters the
pod's network namespace when one was made for it, unshares the rest (pid,
mnt, uts, ipc) and forks: the child is PID 1 of the new PID namespace (the *inner*
process, the init proper). The outer process only waits for it and exits with
its status, so the supervisor has one child to watch. A process cannot move
itself into a new PID namespace; only its children are born there, hence the
two processes (as ``unshare --fork`` does).

The inner process mounts a private /proc, sets the hostname, bind-mounts the
pod's /etc files, then loops on two descriptors with every signal blocked: the
channel (requests) and a signalfd (SIGCHLD and the rest). It alone calls
``waitpid(-1)``: it reports the exit of every process it spawned and reaps
adopted orphans silently, counting them. On channel end-of-file (the
supervisor died) it stops the pod by itself: TERM to everything, KILL after
the grace period, then it exits, and the kernel ends what is left in the
namespace.

Degraded mode (a plan with no namespaces): when namespaces cannot be made, the init
runs in the current ones as a child subreaper and signals only the process
trees it spawned, never ``kill(-1)``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import selectors
import signal
import socket
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

# Each container's init is a fork of this process, and the pod's PID 1 a fork
# of the one that imports this: a module imported before those forks is one
# copy they all share, one imported after them a copy of its own in each. So
# everything a container's init runs (entry, tini, rootfs, volumes too) is
# imported here, once, up front.
from podvisor.init import (
    cleanup,
    entry,
    process,
    protocol,
    rootfs,
    syscalls,
    sysctls,
    terminal,
    tini,
    volumes,
)
from podvisor.init import confine as confinement

_NAMESPACES = {
    "user": syscalls.CLONE_NEWUSER,
    "pid": syscalls.CLONE_NEWPID,
    "mnt": syscalls.CLONE_NEWNS,
    "uts": syscalls.CLONE_NEWUTS,
    "ipc": syscalls.CLONE_NEWIPC,
}

USAGE = """\
usage: podvisor-init --channel FD

The pod's init, started by `podvisor run`, which sends it the pod's plan over
the channel FD; not meant to be started by hand.
"""


def parse(argv: list[str]) -> int:
    """The channel's descriptor from ``--channel FD``; machine-made, so errors are terse."""
    match argv:
        case ["--channel", fd] if fd.isdigit():
            return int(fd)
        case [arg] if arg.startswith("--channel=") and arg[10:].isdigit():
            return int(arg[10:])
    raise ValueError(f"expected --channel FD, got {' '.join(argv)!r}")


def checked_plan(message: protocol.Request) -> protocol.Plan:
    """*message*, the channel's first, as the plan; ProtocolError when it is not one."""
    if not isinstance(message, protocol.Plan):
        raise protocol.ProtocolError(f"expected the plan first, got {message.KIND!r}")
    unknown = set(message.unshare) - set(_NAMESPACES)
    if unknown:
        raise protocol.ProtocolError(
            f"unshare takes {','.join(_NAMESPACES)}, got {','.join(sorted(unknown))}"
        )
    return message


def receive_plan(channel: int) -> protocol.Plan | None:
    """Wait for the supervisor's plan; None when it closes the channel without one.

    The supervisor starts this process early, while it still imports its own
    modules, and sends the plan once it has made the pod's cgroups and
    network: the interpreter's start-up is off the pod's critical path.
    """
    sock = socket.socket(fileno=channel)
    try:
        received = protocol.receive_request(sock)
    finally:
        sock.detach()
    if received is None:
        return None
    message, fds = received
    for fd in fds:
        os.close(fd)
    return checked_plan(message)


# =============================================================================
# Start-up: the outer process
# =============================================================================


def serve(argv: list[str]) -> int:
    """Entry point of ``podvisor-init --channel FD``."""
    try:
        channel = parse(argv)
    except ValueError as exc:
        sys.stderr.write(f"podvisor-init: {exc}\n{USAGE}")
        return 2
    # The channel came inheritable (pass_fds); nothing the pod runs may hold it,
    # or a container could read spawn requests, take their descriptors and
    # send the supervisor events of its own.
    os.set_inheritable(channel, False)
    try:
        plan = receive_plan(channel)
    except (OSError, protocol.ProtocolError) as exc:
        sys.stderr.write(f"podvisor-init: no usable plan from the supervisor: {exc}\n")
        return 2
    if plan is None:  # the supervisor ended (a config error, say) before it had a pod
        return 0
    return _set_up(channel, plan)


def _set_up(channel: int, options: protocol.Plan) -> int:
    """Join the pod's cgroups and network, unshare the rest, fork PID 1 when asked."""
    # No parent-death signal here: the inner init learns of the supervisor's
    # death from the channel's end-of-file, ends the pod in its grace period,
    # and this process follows it out, cleaning up in the supervisor's place.
    origin = cleanup.Origin()
    for procs in options.cgroup_procs:
        Path(procs).write_text("0")
    if options.netns:
        with open(options.netns, "rb") as ns:
            syscalls.setns(ns.fileno(), syscalls.CLONE_NEWNET)
    flags = 0
    for kind in options.unshare:
        flags |= _NAMESPACES[kind]
    if flags:
        uid, gid = os.geteuid(), os.getegid()
        try:
            syscalls.unshare(flags)
            if "user" in options.unshare:
                _map_ids(uid, gid)
        except OSError as exc:
            _report_failure(channel, f"cannot make the pod's namespaces: {exc}")
            return 125
    if "pid" not in options.unshare:
        origin.close()  # no outer process to outlive the pod
        return _run_inner(channel, options)
    # Block everything before the fork, so no signal slips between the fork
    # and the inner process's signalfd; the outer process relays nothing.
    process.block_signals()
    process.freeze_before_fork()
    pid = os.fork()
    if pid == 0:
        origin.close()  # the host's namespaces stay out of the pod's reach
        os._exit(_run_inner(channel, options))
    sock = socket.socket(fileno=channel)
    with contextlib.suppress(OSError):
        protocol.send(sock, protocol.InitStarted(pid))
    sock.close()
    while True:
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            origin.hand_over()  # returns unless the supervisor died
            # The supervisor tears the pod down only once this process has
            # ended: the interpreter's own teardown would come first.
            process.exit_now(process.exit_status(status))


# =============================================================================
# Start-up: the inner process (PID 1)
# =============================================================================


def _map_ids(uid: int, gid: int) -> None:
    """Map ids in the new user namespace: all of them when allowed, else ours as root.

    Only a writer with CAP_SETUID over the parent namespace may map more than
    its own id; without it the pod runs as root inside, *uid* outside.
    """
    for path, own in (("/proc/self/uid_map", uid), ("/proc/self/gid_map", gid)):
        try:
            Path(path).write_text("0 0 4294967295\n")
        except OSError:
            if path.endswith("gid_map"):
                # An unprivileged gid map needs setgroups(2) switched off first.
                Path("/proc/self/setgroups").write_text("deny")
            Path(path).write_text(f"0 {own} 1\n")


def _report_failure(channel_fd: int, message: str) -> None:
    channel = socket.socket(fileno=channel_fd)
    with contextlib.suppress(OSError):
        protocol.send(channel, protocol.InitFailed(message))
    channel.close()


def _prepare_namespaces(options: protocol.Plan) -> None:
    if "mnt" in options.unshare:
        # Copied while they are still the host's peers: making the pod's mounts
        # private below leaves a detached copy as it is.
        copies = [_copy_tree(source) for source, _ in options.propagated]
        syscalls.make_mounts_private()
        for (_, staging), fd in zip(options.propagated, copies, strict=True):
            _attach_shared(fd, staging)
        if "pid" in options.unshare:
            syscalls.mount_proc()
        for source, target in options.binds:
            syscalls.mount(source, target, None, syscalls.MS_BIND)
        for target, data in options.tmpfs:
            flags = syscalls.MS_NOSUID | syscalls.MS_NODEV
            syscalls.mount("tmpfs", target, "tmpfs", flags, data)
        _write_files(options.files)
        for target, lower in options.overlays:
            _read_only_layers(target, lower)
    elif options.tmpfs or options.overlays or options.propagated:
        raise OSError(errno.EPERM, "these volumes need a mount namespace of the pod's own")
    if options.hostname and "uts" in options.unshare:
        socket.sethostname(options.hostname)


def _copy_tree(source: str) -> int:
    fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
    try:
        return syscalls.clone_tree(fd)
    finally:
        os.close(fd)


def _attach_shared(fd: int, staging: str) -> None:
    """The copy at *staging*, shared: the host's peer where the host's mount is shared,
    and the peer of the containers' Bidirectional mounts of it."""
    try:
        syscalls.attach_tree(fd, staging)
    finally:
        os.close(fd)
    shared = syscalls.MS_SHARED
    syscalls.mount_setattr(staging, set_flags=0, clear_flags=0, recursive=True, propagation=shared)


def _read_only_layers(target: str, lower: str) -> None:
    """An image's layers at *target*, read-only: an overlay of them, or the one layer bound.

    overlayfs takes two lower directories at least when it has no upper one.
    """
    flags = syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV
    if ":" in lower:
        syscalls.mount("overlay", target, "overlay", flags, f"lowerdir={lower}")
        return
    syscalls.mount(lower, target, None, syscalls.MS_BIND)
    syscalls.mount("none", target, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | flags)


def _write_files(files: tuple[protocol.PlanFile, ...]) -> None:
    """Make each file, directory and link new, never through a link, its mode set after."""
    if not files:
        return
    import base64

    for f in files:
        if f.kind == "link":
            os.symlink(f.target, f.path)
            continue
        if f.kind == "dir":
            os.mkdir(f.path, 0o700)
            fd = os.open(f.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(f.path, flags, 0o600)
        try:
            volumes.settle(fd, base64.b64decode(f.data), f.mode, f.group)
        finally:
            os.close(fd)


def _run_inner(channel_fd: int, options: protocol.Plan) -> int:
    channel = socket.socket(fileno=channel_fd)
    try:
        _prepare_namespaces(options)
        sysctls.apply(options)
    except OSError as exc:
        protocol.send(channel, protocol.InitFailed(f"{exc}"))
        return 125
    syscalls.set_process_name("podvisor-init")
    own_namespace = os.getpid() == 1
    if not own_namespace:
        syscalls.set_child_subreaper()
    with contextlib.suppress(OSError):
        syscalls.set_parent_death_signal(signal.SIGTERM)
    init = PodInit(channel, options.grace, own_namespace)
    return init.run()


# =============================================================================
# The loop
# =============================================================================


@dataclass
class PodInit:
    channel: socket.socket
    grace: float
    own_namespace: bool
    spawned: dict[int, int] = field(default_factory=dict)  # pid -> request id
    orphans: int = 0
    stopping_at: float | None = None
    stop_code: int = 0
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def run(self) -> int:
        waited = process.block_signals()
        sfd = syscalls.signalfd(waited)
        selector = self.selector
        selector.register(self.channel, selectors.EVENT_READ, self._on_channel)
        selector.register(sfd, selectors.EVENT_READ, lambda: self._on_signals(sfd))
        self._send(protocol.Ready(os.getpid()))
        while not self._finished():
            timeout = None
            if self.stopping_at is not None:
                timeout = max(0.0, self.stopping_at - time.monotonic())
            events = selector.select(timeout)
            if not events and self.stopping_at is not None:
                self._kill_everything(signal.SIGKILL)
                self.stopping_at = time.monotonic() + 5
            for key, _ in events:
                handler: Callable[[], None] = key.data
                handler()
        return self.stop_code

    def _finished(self) -> bool:
        return self.stopping_at is not None and not self._live_processes()

    # --- channel -------------------------------------------------------------

    def _send(self, message: protocol.Event, fds: tuple[int, ...] = ()) -> None:
        if self.channel.fileno() < 0:
            return
        try:
            protocol.send(self.channel, message, fds)
        except OSError:
            self._lost_supervisor()

    def _on_channel(self) -> None:
        try:
            received = protocol.receive_request(self.channel)
        except protocol.ProtocolError as exc:  # the supervisor's bug: say so, keep serving
            self._send(protocol.Refused(str(exc)))
            return
        except OSError:
            received = None
        if received is None:
            self._lost_supervisor()
            return
        message, fds = received
        try:
            self._dispatch(message, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _lost_supervisor(self) -> None:
        if self.channel.fileno() >= 0:
            self.selector.unregister(self.channel)
            self.channel.close()
        self._begin_stop(self.grace, code=143)

    def _dispatch(self, message: protocol.Request, fds: list[int]) -> None:
        match message:
            case protocol.Spawn():
                self._spawn(message, fds)
            case protocol.Signal():
                self._signal(message)
            case protocol.StopAll(grace):
                self._begin_stop(grace, code=0)
            case protocol.Plan():
                self._send(protocol.Refused("a plan after the first message"))

    # --- requests -------------------------------------------------------------

    def _spawn(self, request: protocol.Spawn, fds: list[int]) -> None:
        rid, spec = request.id, request.process
        if self.stopping_at is not None:
            stopping = protocol.SpawnFailed(rid, errno.ESHUTDOWN, "fork", "the pod is stopping")
            self._send(stopping)
            return
        if spec.rootfs is not None and spec.rootfs.join:
            try:
                spec = self._entering(spec, spec.rootfs)
            except OSError as exc:
                self._send(protocol.SpawnFailed(rid, exc.errno or 0, "before_exec", str(exc)))
                return
        extra = dict(zip(spec.extra_fds, fds[3:], strict=False))
        # With pidns the child is the container's own init, forked from this one
        # as PID 1 of its new namespace: nothing stands between the two.
        container_init = partial(_container_init, spec) if spec.pidns else None
        if spec.rootfs is not None and spec.rootfs.join:
            container_init = partial(_entered, spec)
        try:
            with _stdio(fds[:3]) as stdio:
                pid = process.spawn(
                    spec.argv,
                    spec.env,
                    cwd=spec.cwd,
                    fds=stdio,
                    before_exec=_child_setup(spec, extra),
                    run=container_init,
                    new_pid_namespace=spec.pidns,
                )
        except OSError as exc:
            stage = getattr(exc, "stage", "fork")
            self._send(protocol.SpawnFailed(rid, exc.errno or 0, stage, str(exc)))
            return
        self.spawned[pid] = rid
        self._send(protocol.Spawned(rid, pid))

    def _entering(self, spec: protocol.Process, r: protocol.Rootfs) -> protocol.Process:
        """*spec* checked to enter the root of the container whose process is ``r.join``.

        That process is the container's PID 1 (its own init, or the program
        itself), in the container's mount namespace, /proc and masks made
        before it was reported spawned.
        """
        if r.join not in self.spawned:
            raise OSError(errno.ESRCH, "the container is not running")
        return spec

    def _signal(self, request: protocol.Signal) -> None:
        err = 0
        if request.pid not in self.spawned:
            err = errno.ESRCH
        else:
            try:
                if request.group:
                    os.killpg(request.pid, request.signal)
                else:
                    os.kill(request.pid, request.signal)
            except OSError as exc:
                err = exc.errno or errno.EPERM
        self._send(protocol.Signalled(request.id, err))

    # --- signals and reaping --------------------------------------------------

    def _on_signals(self, sfd: int) -> None:
        for signum in syscalls.read_signalfd(sfd):
            if signum == signal.SIGCHLD:
                continue
            if self.channel.fileno() < 0 and signum in (signal.SIGTERM, signal.SIGINT):
                self._begin_stop(0.0 if self.stopping_at else self.grace, code=128 + signum)
                continue
            self._send(protocol.SignalReceived(signum))
        before = self.orphans
        process.reap(self._on_exit)
        if self.orphans != before:
            self._send(protocol.OrphansReaped(self.orphans))

    def _on_exit(self, pid: int, status: int) -> None:
        rid = self.spawned.pop(pid, None)
        if rid is None:
            self.orphans += 1
            return
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        self._send(protocol.Exited(rid, pid, code, signum))

    # --- stopping -------------------------------------------------------------

    def _begin_stop(self, grace: float, code: int) -> None:
        if self.stopping_at is None:
            self.stop_code = code
        self._kill_everything(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        self.stopping_at = time.monotonic() + grace

    def _live_processes(self) -> list[int]:
        if self.own_namespace:
            return [int(p) for p in os.listdir("/proc") if p.isdigit() and p != "1"]
        return descendants(os.getpid())

    def _kill_everything(self, signum: int) -> None:
        if self.own_namespace:
            # As PID 1 of the pod's namespace, -1 means every process in it
            # but ourselves (kill(2)).
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signum)
            return
        for pid in descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def descendants(root: int) -> list[int]:
    """Every live descendant of *root*, from /proc's children lists."""
    found: list[int] = []
    queue = [root]
    while queue:
        pid = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                queue.append(child)
    return found


@contextlib.contextmanager
def _stdio(fds: list[int]) -> Iterator[tuple[int, int, int]]:
    """The child's fds 0, 1, 2: those that came with the request, then /dev/null."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC) if len(fds) < 3 else -1
    try:
        filled = [*fds[:3], null, null, null][:3]
        yield filled[0], filled[1], filled[2]
    finally:
        if null >= 0:
            os.close(null)


def _container_init(spec: protocol.Process) -> int:
    """A container's init, PID 1 of its PID namespace: `podvisor-init -- ARGV` as PID 1.

    What an exec of ``python -m podvisor.init`` would do, without starting
    an interpreter: the same code, in pages shared with the pod's init, which
    forked this process into its new PID namespace. Python ignores SIGPIPE
    and SIGXFSZ at its start; so does this, and the command gets both back at
    their defaults, as it would.

    The container's namespaces are made before its identity is dropped: this
    process (root, as the pod's init is) was born in the PID namespace, has
    mounted /proc there and masked it (`_child_setup`), and only the program,
    right before its exec, becomes the container's user with the container's
    privileges. Once the program is forked, this init keeps only what it
    still needs (`confinement.InitDrop`): probes, hooks and ``podvisor exec``
    enter the container from the pod's init, never through this one.
    """
    # This process holds a copy of the pod init's memory (earlier requests,
    # other containers' environments): no core dumps, no /proc/PID/mem for
    # the container's processes. The command gets its own state back at exec.
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    args = ["--", *spec.argv]
    with contextlib.suppress(OSError, IndexError, ValueError):  # cosmetic: what ps shows
        syscalls.set_command_line([entry.PROCESS_NAME, *args])
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if spec.orphans_fd is not None:  # this init's, never the program's
        os.set_inheritable(spec.orphans_fd, False)
        tini.ORPHANS.fd = spec.orphans_fd
    confine = spec.confine
    confine_program: Callable[[], None] | None = None
    if confine is not None:
        confine_program = partial(confinement.drop_privileges, confine, spec.uid, spec.gid)
    elif spec.uid is not None or spec.gid is not None:
        confine_program = partial(_set_identity, spec.uid, spec.gid)
    drop = confinement.InitDrop(confine, spec.uid)

    def before_exec() -> None:
        drop.child_waits()
        if confine_program is not None:
            confine_program()

    return tini.main(
        args,
        prog=entry.PROCESS_NAME,
        environ=spec.env,
        before_exec=before_exec,
        after_fork=drop.init_drops,
    )


def _entered(spec: protocol.Process) -> int:
    """A probe, hook or exec in a container on its image: its command in a child born
    in the container's PID namespace, which enters the container's mounts, is
    confined, and execs; this process relays signals to it and returns its status.

    An exec that fails is said on stderr, with 127 (not found) or 126, as a shell says it.
    With a terminal, the command gets one of the container's devpts, and this
    process copies between it and the supervisor's (`terminal`).
    """
    assert spec.rootfs is not None
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    waited = process.block_signals()
    handover = terminal.handover() if spec.tty else None
    child = os.fork()
    if child == 0:
        code = 126
        parent = os.getppid()
        try:
            rootfs.join_mounts(spec.rootfs)
            if handover is not None:
                handover[0].close()
                terminal.take(handover[1])
            if spec.confine is not None:
                confinement.drop_privileges(spec.confine, spec.uid, spec.gid)
            process.prepare_child()
            if handover is not None:
                terminal.die_with(parent)  # after the identity is dropped, which clears it
            os.execvpe(spec.argv[0], spec.argv, spec.env)  # noqa: S606 (argv, as given)
        except BaseException as exc:
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            with contextlib.suppress(OSError):
                os.write(2, f"podvisor: cannot run {spec.argv[0]}: {exc}\n".encode())
        finally:
            os._exit(code)
    if handover is None:
        return tini.relay(child, waited)
    handover[1].close()
    master = terminal.receive(handover[0])
    if master is None:  # it failed before it had its terminal: the error is on ours
        return tini.relay(child, waited)
    return terminal.relay(child, waited, master)


def _child_setup(spec: protocol.Process, extra: dict[int, int]) -> Callable[[], None]:
    """What a spawned child does between fork and exec: extra fds, cgroups, confinement.

    *extra* maps a descriptor number the program expects (s6's notification-fd)
    to the received descriptor that should appear there. The cgroup is joined
    first, so a cgroup namespace made after it is rooted there. Under a
    container init (``pidns``) this child, born PID 1 of the container's PID
    namespace, makes the namespaces, mounts that namespace's /proc and masks
    it; the program the init it becomes runs drops the identity and
    privileges (`_container_init`).
    """
    procs_files, uid, gid, terminal = spec.cgroups, spec.uid, spec.gid, spec.tty
    confine = spec.confine

    def setup() -> None:
        if terminal:  # fd 0 becomes the controlling terminal of the child's new session
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        for target, source in extra.items():
            os.dup2(source, target, inheritable=True)
        for procs in procs_files:
            with open(procs, "w") as f:
                f.write("0")
        if spec.rootfs is not None and spec.rootfs.join:
            rootfs.join_pid(spec.rootfs)  # the rest in the child it forks (`_entered`)
        elif confine is not None:
            if any(m.sub_path for m in spec.mounts):
                volumes.make_sub_paths(spec.mounts)
            copies = _propagated_copies(spec.mounts)
            confinement.enter(confine)
            if spec.rootfs is not None:
                rootfs.enter(spec.rootfs, spec.mounts, copies, console=terminal)
            else:
                _mount_volumes(spec.mounts, confine, spec.cwd, copies)
            if spec.pidns:
                _own_proc(required=True, has_namespace=confine.mounts)
            confinement.apply_masks(confine)
            if not spec.pidns:
                confinement.drop_privileges(confine, uid, gid)
        elif spec.pidns:
            _own_proc(required=False)
        else:
            _set_identity(uid, gid)

    return setup


def _own_proc(*, required: bool, has_namespace: bool = False) -> None:
    """A /proc of the container's PID namespace, in a mount namespace of the container's.

    This process was born PID 1 of that namespace (``new_pid_namespace``);
    where none could be made it is not, and keeps the pod's /proc. A
    confined container runs with its own /proc and masks or not at all.
    *has_namespace*: the container's mount namespace is made already
    (`confine.enter`), its volumes' propagation set: it is not made again.
    """
    if os.getpid() != 1:
        return
    try:
        if not has_namespace:
            syscalls.unshare(syscalls.CLONE_NEWNS)
            syscalls.make_mounts_private()
        syscalls.mount_proc()
    except OSError as exc:
        if required:
            raise
        said = f"podvisor-init: no /proc of its own ({exc}): ps shows the pod's processes\n"
        with contextlib.suppress(OSError):
            os.write(2, said.encode())


def _propagated_copies(mounts: tuple[protocol.Mount, ...]) -> list[int | None]:
    """Detached copies of the mounts with mountPropagation, made in the pod's namespace
    before the container's own is made private (`volumes.propagated_copies`)."""
    if all(m.propagation == "None" for m in mounts):
        return [None] * len(mounts)
    return volumes.propagated_copies(mounts)


def _mount_volumes(
    mounts: tuple[protocol.Mount, ...],
    confine: protocol.Confinement,
    cwd: str | None,
    copies: list[int | None],
) -> None:
    """On the host's files: the volumes over their paths, in the mount namespace just made,
    then podvisor's state covered (the volumes' sources lie in it: emptyDirs, claims).

    The working directory is entered again afterwards: it may be in a volume, or covered.
    """
    if mounts:
        _attach_volumes(mounts, confine, copies)
    confinement.hide_state(confine)
    if cwd:
        os.chdir(cwd)


def _attach_volumes(
    mounts: tuple[protocol.Mount, ...],
    confine: protocol.Confinement,
    copies: list[int | None],
) -> None:
    if not confine.mounts:
        raise volumes.VolumeError(
            "volume",
            errno.EPERM,
            "volumes need a mount namespace of the container's own, and this pod has none "
            "(podvisor lacks CAP_SYS_ADMIN): run podvisor as root",
        )
    volumes.attach(mounts, volumes.open_sources(mounts, copies), make_targets=False)


def _set_identity(uid: int | None, gid: int | None) -> None:
    """A process without confinement: the uid and gid asked for, no supplementary groups."""
    if gid is not None:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        if gid is None:
            with contextlib.suppress(KeyError):
                os.setgid(pwd.getpwuid(uid).pw_gid)
            os.setgroups([])
        os.setuid(uid)
