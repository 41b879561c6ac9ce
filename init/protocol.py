"""The channel between the supervisor and the pod's init.

How this works
--------------
The supervisor makes a ``SOCK_SEQPACKET`` socketpair before it starts the
init and hands one end to it (``podvisor-init --channel FD``); its first
message is the plan, which the init waits for. SEQPACKET keeps
message boundaries, so one ``sendmsg`` is one message: a UTF-8 JSON object,
with file descriptors (stdio pipes, a client's terminal, a connected socket)
riding along as ``SCM_RIGHTS`` ancillary data. Nothing is ever split or
merged, and no length prefixes are needed.

Requests go from the supervisor to init, and carry an ``"op"``; events go from
init to the supervisor, and carry an ``"ev"``. Every request that names an
``id`` is answered by exactly one event with the same ``id``.

Requests::

    {"op": "plan", "unshare": ["mnt", "uts", "pid", "ipc"], "netns": "/run/netns/..." | null,
     "hostname": "web" | null, "binds": [["/run/podvisor/.../hosts", "/etc/hosts"]],
     "cgroup_procs": ["/sys/fs/cgroup/.../cgroup.procs"], "grace": 30.0}
        The first message, and only the first. The init writes itself into
        each of ``cgroup_procs``, joins ``netns``, unshares the rest (with
        ``pid``, PID 1 is a child it forks), mounts /proc, sets the hostname
        and makes the bind mounts, then says ``ready`` (or ``init_failed``).
        End-of-file instead of a plan ends the init quietly, status 0.
    {"op": "spawn", "id": 7, "argv": [...], "env": {...}, "cwd": "/" | null,
     "uid": 0 | null, "gid": 0 | null, "cgroups": ["/sys/fs/cgroup/.../cgroup.procs"],
     "pidns": false, "extra_fds": [5], "tty": false}
        Start a process. The first three fds that ride along become the
        child's fds 0, 1, 2 (when fewer come, the rest are /dev/null); any
        further ones become the numbers ``extra_fds`` names, in order.
        With ``tty``, fd 0 (a terminal) becomes the controlling terminal of
        the child's session, with the child's group in its foreground.
        The child gets its own session and process group, writes
        itself into each of ``cgroups`` before it execs, and starts with the
        signal mask and dispositions init inherited. With ``pidns`` it runs
        under its own init in a nested PID namespace (``podvisor-init
        --pid-ns``). Answered by ``spawned`` or ``spawn_failed``; a spawned
        process is later reported by exactly one ``exited``.
    {"op": "signal", "id": 8, "pid": 42, "signal": 15, "group": true}
        Send a signal to a process that init spawned (and to its process
        group when ``group``). Answered by ``signalled``.
    {"op": "stop_all", "grace": 30.0}
        Send SIGTERM to every process in the pod, SIGKILL to what is left
        after ``grace`` seconds, then exit. Init does the same on its own
        when the channel reaches end-of-file (the supervisor died).

Events::

    {"ev": "init_started", "host_pid": 4242}        the outer process forked the init
    {"ev": "init_failed", "message": "..."}         namespaces could not be made
    {"ev": "ready", "pid": 1}                       init is serving
    {"ev": "spawned", "id": 7, "pid": 5}
    {"ev": "spawn_failed", "id": 7, "errno": 2, "stage": "exec", "message": "prog: ..."}
                                                    stage: what failed before the program
                                                    ran: exec, chdir, before_exec, fork
    {"ev": "exited", "id": 7, "pid": 5, "code": 0 | null, "signal": null | 9}
    {"ev": "signalled", "id": 8, "errno": 0}
    {"ev": "signal_received", "signal": 1}          e.g. ``kill -HUP 1`` in the pod
    {"ev": "orphans_reaped", "total": 12}           coalesced running count

Standard library only: both sides import it.
"""

from __future__ import annotations

import array
import json
import os
import socket
from typing import Any, Final

#: The largest message either side sends; a spawn request with a large
#: environment is the biggest one.
MAX_MESSAGE: Final = 1 << 20
#: The most file descriptors one message carries.
MAX_FDS: Final = 8

Message = dict[str, Any]


class ProtocolError(Exception):
    """Raised when a peer sends something that is not a channel message."""


def socketpair() -> tuple[socket.socket, socket.socket]:
    """Make the channel: (supervisor's end, init's end), both close-on-exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def encode(message: Message) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def decode(data: bytes) -> Message:
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"not a JSON message: {data[:80]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"not a JSON object: {data[:80]!r}")
    return message


def send(sock: socket.socket, message: Message, fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send one message with *fds* attached (blocking)."""
    ancillary = []
    if fds:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds)))
    sock.sendmsg([encode(message)], ancillary)


def receive(sock: socket.socket) -> tuple[Message, list[int]] | None:
    """Receive one message and its fds; ``None`` at end-of-file.

    The fds are new descriptors owned by the caller, marked close-on-exec.
    """
    fds = array.array("i")
    data, ancdata, flags, _ = sock.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    received = list(fds)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in received:
            os.close(fd)
        raise ProtocolError("message or its file descriptors were truncated")
    if not data:
        for fd in received:
            os.close(fd)
        return None
    return decode(data), received
