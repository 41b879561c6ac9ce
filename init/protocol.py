"""The channel between the supervisor and the pod's init: its messages, typed.

How this works
--------------
The supervisor makes a ``SOCK_SEQPACKET`` socketpair before it starts the
init and hands one end to it (``podvisor-init --channel FD``); its first
message is the `Plan`, which the init waits for. One packet is one message
(`podvisor.init.seqpacket`): a UTF-8 JSON object whose ``"op"`` names a
request or whose ``"ev"`` names an event, with file descriptors (stdio pipes,
a client's terminal) alongside.

Every message is a frozen dataclass below, and this module is the one place
that turns them into bytes and back: `encode`, `decode_request`,
`decode_event`. A message that is not one of them, or whose field has the
wrong type, is a `ProtocolError` naming the message and the field.

Requests go from the supervisor to the init; every request with an ``id`` is
answered by exactly one event with the same ``id``:

- `Plan`: the first message, and only the first. The init writes itself into
  each of ``cgroup_procs``, joins ``netns``, unshares the rest (with ``pid``,
  PID 1 is a child it forks), mounts /proc, sets the hostname and makes the
  bind mounts, the tmpfs mounts (writing ``files`` into them), the
  read-only overlays and the ``propagated`` copies, then says `Ready` (or
  `InitFailed`).
  End-of-file instead of a plan ends the init quietly, status 0.
- `Spawn`: start a `Process`. The first three fds that ride along become the
  child's 0, 1, 2 (when fewer come, the rest are /dev/null); further ones
  become the numbers ``extra_fds`` names, in order. With ``tty``, fd 0 (a
  terminal) becomes the controlling terminal of the child's session. The
  child gets its own session and process group, writes itself into each of
  ``cgroups`` before it execs, and starts with the signal mask and
  dispositions the init inherited. With ``pidns`` it runs under a container
  init of its own in a nested PID namespace. With ``confine`` it is confined
  as a container (`Confinement`, applied by `podvisor.init.confine`), and
  with ``mounts`` its volumes are bound in its mount namespace (`Mount`,
  applied by `podvisor.init.volumes`). Answered by `Spawned` or
  `SpawnFailed`; a spawned process is later reported by exactly one `Exited`.
- `Signal`: a signal to a process the init spawned (to its process group
  with ``group``). Answered by `Signalled`.
- `StopAll`: SIGTERM to every process in the pod, SIGKILL to what is left
  after ``grace`` seconds, then exit. The init does the same on its own when
  the channel reaches end-of-file (the supervisor died).

Events go from the init to the supervisor: `InitStarted` (the outer process
forked the init proper), `InitFailed`, `Ready`, `Spawned`, `SpawnFailed`
(``stage``: what failed before the program ran: exec, chdir, before_exec,
fork), `Exited`, `Signalled`, `SignalReceived` (``kill -HUP 1`` in the pod),
`OrphansReaped` (a running count) and `Refused` (a request the init could
not read).

Standard library only: both sides import it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from podvisor.init import seqpacket
from podvisor.init.frozen import frozen

#: The largest message either side sends; a spawn with a large environment
#: is the biggest one.
MAX_MESSAGE = 1 << 20


class ProtocolError(Exception):
    """Raised when a peer sends something that is not one of the channel's messages."""


def socketpair() -> tuple[socket.socket, socket.socket]:
    """Make the channel: (supervisor's end, init's end), both close-on-exec."""
    return seqpacket.socketpair()


# =============================================================================
# Reading fields
# =============================================================================


class Fields:
    """One message's fields as JSON gave them, each read with its type checked."""

    __slots__ = ("values", "where")

    def __init__(self, where: str, values: dict[str, object]) -> None:
        self.where = where
        self.values = values

    def _get(self, name: str, types: type | tuple[type, ...], what: str) -> Any:
        if name not in self.values:
            raise ProtocolError(f"{self.where}: no {name!r}")
        value = self.values[name]
        if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
            raise ProtocolError(f"{self.where}: {name!r} must be {what}, not {value!r:.80}")
        return value

    def integer(self, name: str) -> int:
        return int(self._get(name, int, "a whole number"))

    def optional_integer(self, name: str) -> int | None:
        return None if self.values.get(name) is None else self.integer(name)

    def number(self, name: str) -> float:
        return float(self._get(name, (int, float), "a number"))

    def flag(self, name: str) -> bool:
        return bool(self._get(name, bool, "true or false"))

    def text(self, name: str) -> str:
        return str(self._get(name, str, "a string"))

    def optional_text(self, name: str) -> str | None:
        return None if self.values.get(name) is None else self.text(name)

    def texts(self, name: str) -> tuple[str, ...]:
        values = self._get(name, list, "a list of strings")
        if not all(isinstance(v, str) for v in values):
            raise ProtocolError(f"{self.where}: {name!r} must be a list of strings")
        return tuple(values)

    def integers(self, name: str) -> tuple[int, ...]:
        values = self._get(name, list, "a list of whole numbers")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ProtocolError(f"{self.where}: {name!r} must be a list of whole numbers")
        return tuple(values)

    def pairs(self, name: str) -> tuple[tuple[str, str], ...]:
        values = self._get(name, list, "a list of [string, string]")
        if not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) for s in v)
            for v in values
        ):
            raise ProtocolError(f"{self.where}: {name!r} must be a list of [string, string]")
        return tuple((a, b) for a, b in values)

    def mapping(self, name: str) -> dict[str, str]:
        values = self._get(name, dict, "an object of strings")
        if not all(isinstance(v, str) for v in values.values()):
            raise ProtocolError(f"{self.where}: {name!r} must map names to strings")
        return dict(values)

    def nested(self, name: str) -> Fields:
        return Fields(f"{self.where}.{name}", self._get(name, dict, "an object"))

    def optional_nested(self, name: str) -> Fields | None:
        return None if self.values.get(name) is None else self.nested(name)

    def nested_list(self, name: str) -> list[Fields]:
        values = self._get(name, list, "a list of objects")
        if not all(isinstance(v, dict) for v in values):
            raise ProtocolError(f"{self.where}: {name!r} must be a list of objects")
        return [Fields(f"{self.where}.{name}[{i}]", v) for i, v in enumerate(values)]


def plain(value: object) -> object:
    """*value* as JSON takes it: a message (or a part of one) as an object."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


# =============================================================================
# Requests
# =============================================================================


@frozen
class PlanFile:
    """A directory, file or link the init makes in a tmpfs of the pod (a Secret's volume).

    Made new, never through a link, in order, before any container starts:
    a Secret's bytes go from the supervisor's memory to the pod's tmpfs, and
    never touch a disk.
    """

    path: str
    kind: str  # "dir", "file" or "link"
    mode: int = 0o644
    #: The bytes of a file, base64.
    data: str = ""
    #: The group that owns it (the pod's fsGroup); None: root's.
    group: int | None = None
    #: What a link points at.
    target: str = ""

    def __repr__(self) -> str:  # a Secret's bytes never reach a traceback or a log
        return f"PlanFile({self.path!r}, {self.kind}, mode=0o{self.mode:o})"

    @classmethod
    def read(cls, f: Fields) -> PlanFile:
        return cls(
            f.text("path"),
            f.text("kind"),
            f.integer("mode"),
            f.text("data"),
            f.optional_integer("group"),
            f.text("target"),
        )


@frozen
class Plan:
    """The pod's namespaces and what the init sets up in them."""

    KIND: ClassVar[str] = "plan"
    unshare: tuple[str, ...] = ()
    netns: str | None = None
    hostname: str | None = None
    binds: tuple[tuple[str, str], ...] = ()
    cgroup_procs: tuple[str, ...] = ()
    grace: float = 30.0
    #: (name in the dot form, value): written in the pod's own network and IPC namespaces.
    sysctls: tuple[tuple[str, str], ...] = ()
    #: (directory, options): a tmpfs on each, in the pod's mount namespace (memory emptyDirs).
    tmpfs: tuple[tuple[str, str], ...] = ()
    #: What the init writes into those tmpfs mounts once made (Secrets' volumes).
    files: tuple[PlanFile, ...] = ()
    #: (directory, lower directories top first joined by ':'): a read-only overlay
    #: on each, in the pod's mount namespace (image volumes).
    overlays: tuple[tuple[str, str], ...] = ()
    #: (source, staging directory): a copy of the host's mounts at source, made before
    #: the pod's mounts are made private, so that it keeps their propagation: the
    #: source of the volumes mounted with mountPropagation.
    propagated: tuple[tuple[str, str], ...] = ()

    @classmethod
    def read(cls, f: Fields) -> Plan:
        return cls(
            f.texts("unshare"),
            f.optional_text("netns"),
            f.optional_text("hostname"),
            f.pairs("binds"),
            f.texts("cgroup_procs"),
            f.number("grace"),
            f.pairs("sysctls"),
            tmpfs=f.pairs("tmpfs"),
            files=tuple(PlanFile.read(x) for x in f.nested_list("files")),
            overlays=f.pairs("overlays"),
            propagated=f.pairs("propagated"),
        )


@frozen
class Confinement:
    """What a container's process may do and see, applied between its fork and its exec.

    In the order the child applies it: a mount namespace of its own (and a
    cgroup namespace rooted at its cgroup) with the cgroup file systems
    mounted afresh, read-only; /sys read-only; ``hidden`` covered by empty
    read-only directories; ``masked`` covered (a directory by an empty one, a
    file by /dev/null) and ``readonly`` made read-only, both under /proc and
    /sys; with ``readonly_root`` every other mount read-only but /dev (on
    the host's files; on an image, `Rootfs.readonly` instead). Then
    the identity (supplementary groups, gid, uid), the capability set, no_new_privs,
    and last the seccomp filter.
    """

    #: Bit N is capability N: the bounding set, and for root also the
    #: permitted and effective sets; inheritable and ambient are empty, so a
    #: process that is not root has no capability after its exec (as with
    #: containerd and runc).
    capabilities: int
    no_new_privs: bool = False
    #: Supplementary groups. With ``merge_groups`` the user's groups in
    #: /etc/group come first (supplementalGroupsPolicy: Merge).
    groups: tuple[int, ...] = ()
    merge_groups: bool = True
    #: A mount namespace of its own, with the masks below; False in a pod
    #: without namespaces (podvisor runs unprivileged).
    mounts: bool = True
    cgroupns: bool = True
    sys_readonly: bool = True
    hidden: tuple[str, ...] = ()
    #: Paths inside ``hidden`` that stay reachable (the pod's NOTIFY_SOCKET).
    exposed: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()
    readonly: tuple[str, ...] = ()
    readonly_root: bool = False
    #: A classic BPF program (struct sock_filter[]), base64: "" for none.
    seccomp: str = ""

    @classmethod
    def read(cls, f: Fields) -> Confinement:
        return cls(
            f.integer("capabilities"),
            f.flag("no_new_privs"),
            f.integers("groups"),
            f.flag("merge_groups"),
            f.flag("mounts"),
            f.flag("cgroupns"),
            f.flag("sys_readonly"),
            f.texts("hidden"),
            f.texts("exposed"),
            f.texts("masked"),
            f.texts("readonly"),
            f.flag("readonly_root"),
            f.text("seccomp"),
        )


@frozen
class Rootfs:
    """A container's root from its image, made and entered by `podvisor.init.rootfs`.

    A container's program (``join`` 0) mounts an overlay of ``lower`` (the
    image's layer directories, top first) with a fresh ``upper`` and
    ``work``, mounts /dev, /sys and /dev/shm in it, binds ``binds`` (host file,
    path inside: the pod's /etc files, the termination message), and
    pivot_roots into it. A probe, hook or exec (``join``: the container's
    process as the pod's init numbers it) enters that root instead: the mount
    and cgroup namespaces of the container's PID 1. Either way the process
    then changes to ``cwd``, made if missing as runc makes it.
    """

    lower: tuple[str, ...] = ()
    upper: str = ""
    work: str = ""
    binds: tuple[tuple[str, str], ...] = ()
    #: The pod's shared memory (a directory the pod's init made a tmpfs), or "".
    shm: str = ""
    cwd: str = "/"
    join: int = 0
    #: readOnlyRootFilesystem: the overlay read-only once its mounts are made.
    readonly: bool = False
    #: privileged: every device of the host's /dev in the container's /dev too.
    host_devices: bool = False

    @classmethod
    def read(cls, f: Fields) -> Rootfs:
        return cls(
            f.texts("lower"),
            f.text("upper"),
            f.text("work"),
            f.pairs("binds"),
            f.text("shm"),
            f.text("cwd"),
            f.integer("join"),
            f.flag("readonly"),
            f.flag("host_devices"),
        )


@frozen
class Mount:
    """A volume in a container: ``source`` (as the pod's init sees it) bound at ``target``.

    Applied by `podvisor.init.volumes` in the container's own mount namespace:
    ``sub_path`` is resolved beneath ``source`` and never out of it (a
    missing directory on the way is made), the result bound recursively at
    ``target`` (inside the container's root on an image, else on the host's
    files), then made read-only: the bind mount alone, or with
    ``recursive_readonly`` every mount beneath it ("Enabled" fails if the
    kernel cannot, "IfPossible" falls back to the bind mount alone).
    """

    #: The volume's name, for the messages.
    name: str
    source: str
    target: str
    sub_path: str = ""
    readonly: bool = False
    recursive_readonly: str = "Disabled"
    #: mountPropagation: "None" (private), "HostToContainer" (a slave of ``source``, a
    #: staging mount of the pod's that is a peer of the host's), "Bidirectional" (a peer).
    propagation: str = "None"

    @classmethod
    def read(cls, f: Fields) -> Mount:
        return cls(
            f.text("name"),
            f.text("source"),
            f.text("target"),
            f.text("sub_path"),
            f.flag("readonly"),
            f.text("recursive_readonly"),
            f.text("propagation"),
        )


@frozen
class Process:
    """What to run and how: a container's program, a probe's command, an exec."""

    argv: tuple[str, ...]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cwd: str | None = None
    uid: int | None = None
    gid: int | None = None
    #: cgroup.procs files the child writes itself into before it execs.
    cgroups: tuple[str, ...] = ()
    #: Under a container init of its own, in a nested PID namespace.
    pidns: bool = False
    #: The numbers the fds after the first three take (s6's notification-fd).
    extra_fds: tuple[int, ...] = ()
    #: fd 0 is a terminal: make it the child's controlling terminal.
    tty: bool = False
    #: A container's confinement; None for a process of the pod as it is.
    confine: Confinement | None = None
    #: The container's root from its image; None in host mode (the pod's files).
    rootfs: Rootfs | None = None
    #: The container's volumes, in the order they are mounted.
    mounts: tuple[Mount, ...] = ()
    #: With pidns: the number (one of ``extra_fds``) of a file the container's
    #: init writes its count of reaped orphans to (`tini.OrphanCount`); the
    #: program never gets it.
    orphans_fd: int | None = None

    @classmethod
    def read(cls, f: Fields) -> Process:
        confine = f.optional_nested("confine")
        rootfs = f.optional_nested("rootfs")
        return cls(
            f.texts("argv"),
            f.mapping("env"),
            f.optional_text("cwd"),
            f.optional_integer("uid"),
            f.optional_integer("gid"),
            f.texts("cgroups"),
            f.flag("pidns"),
            f.integers("extra_fds"),
            f.flag("tty"),
            Confinement.read(confine) if confine is not None else None,
            Rootfs.read(rootfs) if rootfs is not None else None,
            tuple(Mount.read(m) for m in f.nested_list("mounts")),
            f.optional_integer("orphans_fd"),
        )


@frozen
class Spawn:
    KIND: ClassVar[str] = "spawn"
    id: int
    process: Process

    @classmethod
    def read(cls, f: Fields) -> Spawn:
        return cls(f.integer("id"), Process.read(f.nested("process")))


@frozen
class Signal:
    KIND: ClassVar[str] = "signal"
    id: int
    pid: int
    signal: int
    group: bool

    @classmethod
    def read(cls, f: Fields) -> Signal:
        return cls(f.integer("id"), f.integer("pid"), f.integer("signal"), f.flag("group"))


@frozen
class StopAll:
    KIND: ClassVar[str] = "stop_all"
    grace: float

    @classmethod
    def read(cls, f: Fields) -> StopAll:
        return cls(f.number("grace"))


Request = Plan | Spawn | Signal | StopAll

# =============================================================================
# Events
# =============================================================================


@frozen
class InitStarted:
    KIND: ClassVar[str] = "init_started"
    #: The init proper, as the supervisor's /proc numbers it.
    host_pid: int

    @classmethod
    def read(cls, f: Fields) -> InitStarted:
        return cls(f.integer("host_pid"))


@frozen
class InitFailed:
    KIND: ClassVar[str] = "init_failed"
    message: str

    @classmethod
    def read(cls, f: Fields) -> InitFailed:
        return cls(f.text("message"))


@frozen
class Ready:
    KIND: ClassVar[str] = "ready"
    pid: int

    @classmethod
    def read(cls, f: Fields) -> Ready:
        return cls(f.integer("pid"))


@frozen
class Spawned:
    KIND: ClassVar[str] = "spawned"
    id: int
    pid: int

    @classmethod
    def read(cls, f: Fields) -> Spawned:
        return cls(f.integer("id"), f.integer("pid"))


@frozen
class SpawnFailed:
    KIND: ClassVar[str] = "spawn_failed"
    id: int
    errno: int
    #: What failed before the program ran: exec, chdir, before_exec, fork.
    stage: str
    message: str

    @classmethod
    def read(cls, f: Fields) -> SpawnFailed:
        return cls(f.integer("id"), f.integer("errno"), f.text("stage"), f.text("message"))


@frozen
class Exited:
    KIND: ClassVar[str] = "exited"
    id: int
    pid: int
    code: int | None
    signal: int | None

    @classmethod
    def read(cls, f: Fields) -> Exited:
        return cls(
            f.integer("id"),
            f.integer("pid"),
            f.optional_integer("code"),
            f.optional_integer("signal"),
        )


@frozen
class Signalled:
    KIND: ClassVar[str] = "signalled"
    id: int
    errno: int

    @classmethod
    def read(cls, f: Fields) -> Signalled:
        return cls(f.integer("id"), f.integer("errno"))


@frozen
class SignalReceived:
    KIND: ClassVar[str] = "signal_received"
    signal: int

    @classmethod
    def read(cls, f: Fields) -> SignalReceived:
        return cls(f.integer("signal"))


@frozen
class OrphansReaped:
    KIND: ClassVar[str] = "orphans_reaped"
    total: int

    @classmethod
    def read(cls, f: Fields) -> OrphansReaped:
        return cls(f.integer("total"))


@frozen
class Refused:
    """A request the init could not read; the supervisor says so."""

    KIND: ClassVar[str] = "refused"
    message: str

    @classmethod
    def read(cls, f: Fields) -> Refused:
        return cls(f.text("message"))


Event = (
    InitStarted
    | InitFailed
    | Ready
    | Spawned
    | SpawnFailed
    | Exited
    | Signalled
    | SignalReceived
    | OrphansReaped
    | Refused
)

M = TypeVar("M")

#: Each message's reader, by the name the wire gives it.
REQUESTS: dict[str, Callable[[Fields], Request]] = {
    m.KIND: m.read for m in (Plan, Spawn, Signal, StopAll)
}
EVENTS: dict[str, Callable[[Fields], Event]] = {
    m.KIND: m.read
    for m in (
        InitStarted,
        InitFailed,
        Ready,
        Spawned,
        SpawnFailed,
        Exited,
        Signalled,
        SignalReceived,
        OrphansReaped,
        Refused,
    )
}

# =============================================================================
# Bytes
# =============================================================================


def encode(message: Request | Event) -> bytes:
    key = "op" if isinstance(message, Plan | Spawn | Signal | StopAll) else "ev"
    body = plain(message)
    assert isinstance(body, dict)
    data = json.dumps({key: message.KIND, **body}, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"{message.KIND} of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def _decode(data: bytes, key: str, kinds: Mapping[str, Callable[[Fields], M]], what: str) -> M:
    try:
        values = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"not a JSON message: {data[:80]!r}") from exc
    if not isinstance(values, dict):
        raise ProtocolError(f"not a JSON object: {data[:80]!r}")
    kind = values.get(key)
    read = kinds.get(kind) if isinstance(kind, str) else None
    if read is None:
        raise ProtocolError(f"not {what}: {data[:80]!r}")
    return read(Fields(str(kind), values))


def decode_request(data: bytes) -> Request:
    """A request from the supervisor; ProtocolError for anything else."""
    return _decode(data, "op", REQUESTS, "a request the init knows")


def decode_event(data: bytes) -> Event:
    """An event from the init; ProtocolError for anything else."""
    return _decode(data, "ev", EVENTS, "an event the supervisor knows")


def send(sock: socket.socket, message: Request | Event, fds: tuple[int, ...] = ()) -> None:
    """Send one message with *fds* attached (as the socket does: blocking or not)."""
    seqpacket.send(sock, encode(message), fds)


def receive_request(sock: socket.socket) -> tuple[Request, list[int]] | None:
    """The next request and its fds (the caller's); None at end-of-file."""
    try:
        packet = seqpacket.receive(sock, MAX_MESSAGE)
    except seqpacket.PacketError as exc:
        raise ProtocolError(str(exc)) from exc
    if packet is None:
        return None
    data, fds = packet
    try:
        return decode_request(data), fds
    except ProtocolError:
        for fd in fds:
            os.close(fd)
        raise
