"""What goes over a pod's control socket: its messages, typed.

``SOCK_SEQPACKET``, as the supervisor<->init channel: one packet is one
message (`podvisor.init.seqpacket` moves the bytes, and file descriptors ride
along as ``SCM_RIGHTS``). Every message is a frozen dataclass below, and this
module is the one place that turns them into bytes and back, for both ends:
`encode`, `decode_request` (the server's), `decode_reply` and
`decode_streamed` (the client's). On the wire a message is one UTF-8 JSON
object: its fields, after the member that says which message it is. A
message that is not one of these, or whose field is missing or has the wrong
type, is a `ControlMessageError` naming the message and the field.

A connection carries one request, the client's first message; the server
answers with one reply (a `Reply`, ``"ok": true`` and its fields, or an
`Error`, ``"ok": false`` and an ``"error"`` a person reads), or for `Logs`,
`Exec` and `Stop` with a reply followed by a stream of messages, and closes
the connection when it is done. Requests, and what answers them::

    Ps              {"op": "ps"}
      -> PsReply    {"ok": true, "pod": PodSummary}
         PodSummary {"name", "uid", "phase", "status", "ready", "containers",
                     "restarts", "start_time", "pod_ip", "metrics",
                     "supervisor_pid", "owner_uid"}
    Status          {"op": "status"}
      -> StatusReply  {"ok": true, "pod": PodSummary, "containers": [ContainerRow, ...]}
         ContainerRow {"name", "kind", "state", "reason", "message", "ready",
                       "started", "restarts", "started_at", "pid", "paused",
                       "last_termination": null | Termination,
                       "cpu_cores", "cpu_seconds", "cpu_limit_cores",
                       "memory_bytes", "memory_limit_bytes", "pids", "pids_max"}
         Termination  {"reason", "exit_code", "signal", "started_at",
                       "finished_at", "message"}
         CPU is measured over `CPU_SAMPLE_SECONDS`; times are Unix seconds.
    Logs            {"op": "logs", "container": null | "c", "previous": false,
                     "tail": null | 100, "since": null | UNIX_SECONDS, "follow": false}
      -> LogsReply  {"ok": true, "containers": ["c", ...]}
         LogLines   {"lines": [LogRecord, ...]} ...
         LogRecord  {"time", "container", "stream", "text", "partial"}
         LogEnd     {"end": true}               (without follow)
         With follow, lines keep coming until the pod stops (end-of-file).
    Exec            {"op": "exec", "container": null | "c", "argv": [...],
                     "env": {...}, "tty": false, "size": null | [ROWS, COLUMNS]}
                    + 3 fds: the command's 0, 1, 2
      -> ExecStarted {"ok": true, "pid": 42}    the command runs
         With "tty" the command gets a new pseudo-terminal (of "size")
         instead of the 3 fds, and the reply carries its master.
         ... the client may send Signal {"op": "signal", "signal": 2} (to the
         command's process group), any number of times ...
         ExecExited {"ev": "exited", "code": 0 | null, "signal": null | 9}
         A client that hangs up gets its command SIGHUPed, then SIGKILLed.
         A command that cannot start: Error with "exit_code": 126 | 127.
    AttachStdin     {"op": "attach stdin", "container": null | "c",
                     "size": null | [ROWS, COLUMNS]}
      -> StdinAttached {"ok": true, "container": "c", "tty": false}
         + 1 fd: where the container's stdin is written (its terminal with tty).
         The client keeps the connection open while it writes; its end is the
         attach's end (stdinOnce then closes the container's stdin).
    Restart         {"op": "restart", "container": "c"}   -> Done {"ok": true}
    Kill            {"op": "kill", "container": "c", "signal": 15}
      -> Killed     {"ok": true, "paused": false}
    Pause           {"op": "pause", "container": "c"}
      -> Paused     {"ok": true, "probes": ["liveness", ...]}
    Resume          {"op": "resume", "container": "c"}
      -> Resumed    {"ok": true, "was_paused": true}
    Stop            {"op": "stop", "immediate": false}
      -> Done       {"ok": true}, then, when the pod has finished,
         Finished   {"ev": "finished", "phase": "Succeeded", "exit_status": 0}
    Events          {"op": "events"}
      -> EventsReply  {"ok": true, "events": [EventRecord, ...]}
         EventRecord  {"type", "reason", "message", "container", "count",
                       "first", "last"}    oldest first; repeats folded
    Describe        {"op": "describe"}
      -> DescribeReply {"ok": true, "pod": PodSummary, "message",
                        "containers": [ContainerRow, ...],
                        "details": [ContainerDetail, ...],
                        "conditions": [{"type", "status"}, ...],
                        "events": [EventRecord, ...]}
         ContainerDetail {"name", "image", "command", "limits", "requests",
                          "probes", "mounts"}   each item in words
    Scrape          {"op": "scrape"}
      -> ScrapeReply  {"ok": true, "pod", "namespace", "text"}   its own series
    any request
      -> Error      {"ok": false, "error": "...", "exit_code": null | 126}

Standard library only: the client (`podvisor status` and friends) imports
this, `podvisor.init.seqpacket` and `podvisor.init.protocol` (whose `Fields`
reads a message's fields with their types checked, and `plain` turns a
dataclass into JSON's values, for both wires), never anyio.
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar, Final, Self, TypeVar

from podvisor.init.protocol import Fields, ProtocolError, plain
from podvisor.supervisor.errors import ControlMessageError
from podvisor.supervisor.frozen import frozen

#: How long status measures CPU use; `top` would say "the interval".
CPU_SAMPLE_SECONDS: Final = 0.25
#: The largest message either end takes; an exec with a large environment
#: and a status of many containers are the biggest.
MAX_MESSAGE: Final = 1 << 20

# =============================================================================
# Messages
# =============================================================================


class Message:
    """What every message has: its name, and the member that says which it is."""

    #: Its name in errors; a request's "op", an event's "ev".
    KIND: ClassVar[str]

    @classmethod
    def tag(cls) -> dict[str, object]:
        """The members before its fields that say which message it is."""
        return {}

    @classmethod
    def read(cls, f: Fields) -> Self:
        """The message whose fields *f* holds (one without fields has nothing to read)."""
        return cls()


class Request(Message):
    """From the client to the server: ``"op"`` names it."""

    @classmethod
    def tag(cls) -> dict[str, object]:
        return {"op": cls.KIND}


class Reply(Message):
    """The server's answer to a request it carried out: ``"ok": true``."""

    @classmethod
    def tag(cls) -> dict[str, object]:
        return {"ok": True}


class Event(Message):
    """What the server says after its reply, when something happened: ``"ev"`` names it."""

    @classmethod
    def tag(cls) -> dict[str, object]:
        return {"ev": cls.KIND}


R = TypeVar("R", bound=Reply)
M = TypeVar("M", bound=Message)


def _optional_number(f: Fields, name: str) -> float | None:
    return None if f.values.get(name) is None else f.number(name)


def _terminal_size(f: Fields) -> tuple[int, int] | None:
    """The optional "size" of a terminal: [rows, columns]."""
    size = None if f.values.get("size") is None else f.integers("size")
    if size is None:
        return None
    if len(size) != 2:
        raise ProtocolError(f"{f.where}: 'size' must be [rows, columns], not {list(size)}")
    return size[0], size[1]


def _objects(f: Fields, name: str) -> list[Fields]:
    """The objects of the list *name*, each to be read."""
    values = f.values.get(name)
    if name not in f.values:
        raise ProtocolError(f"{f.where}: no {name!r}")
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise ProtocolError(f"{f.where}: {name!r} must be a list of objects, not {values!r:.80}")
    return [Fields(f"{f.where}.{name}[{i}]", v) for i, v in enumerate(values)]


# --- Requests ---------------------------------------------------------------------


@frozen
class Ps(Request):
    KIND = "ps"


@frozen
class Status(Request):
    KIND = "status"


@frozen
class Logs(Request):
    KIND = "logs"
    #: None: every container's lines.
    container: str | None = None
    previous: bool = False
    tail: int | None = None
    #: Unix seconds.
    since: float | None = None
    follow: bool = False

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(
            f.optional_text("container"),
            f.flag("previous"),
            f.optional_integer("tail"),
            _optional_number(f, "since"),
            f.flag("follow"),
        )


@frozen
class Exec(Request):
    KIND = "exec"
    #: None: the first main container.
    container: str | None
    argv: tuple[str, ...]
    #: Added to the container's environment.
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    tty: bool = False
    #: The terminal's (rows, columns), with tty.
    size: tuple[int, int] | None = None

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(
            f.optional_text("container"),
            f.texts("argv"),
            f.mapping("env"),
            f.flag("tty"),
            _terminal_size(f),
        )


@frozen
class AttachStdin(Request):
    """`podvisor attach -i`: where to write a container's stdin (stdin: true)."""

    KIND = "attach stdin"
    #: None: the first main container.
    container: str | None
    #: The attaching terminal's (rows, columns), for a container with tty.
    size: tuple[int, int] | None = None

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.optional_text("container"), _terminal_size(f))


@frozen
class Signal(Request):
    """A signal for the command of a running exec (its process group), sent during it."""

    KIND = "signal"
    signal: int

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.integer("signal"))


@frozen
class Restart(Request):
    KIND = "restart"
    container: str

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.text("container"))


@frozen
class Kill(Request):
    KIND = "kill"
    container: str
    signal: int

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.text("container"), f.integer("signal"))


@frozen
class Pause(Request):
    KIND = "pause"
    container: str

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.text("container"))


@frozen
class Resume(Request):
    KIND = "resume"
    container: str

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.text("container"))


@frozen
class Stop(Request):
    KIND = "stop"
    #: Kill every container at once instead of stopping them in order.
    immediate: bool = False

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.flag("immediate"))


# --- Replies ----------------------------------------------------------------------


@frozen
class PodSummary:
    """One pod, as `podvisor ps` lists it."""

    name: str
    uid: str
    phase: str
    #: One word, as kubectl's STATUS column derives it.
    status: str
    ready: int
    #: None while the pod is starting.
    containers: int | None
    restarts: int
    start_time: float | None
    pod_ip: str | None
    #: host:port of the metrics endpoint.
    metrics: str | None
    supervisor_pid: int
    owner_uid: int

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(
            f.text("name"),
            f.text("uid"),
            f.text("phase"),
            f.text("status"),
            f.integer("ready"),
            f.optional_integer("containers"),
            f.integer("restarts"),
            _optional_number(f, "start_time"),
            f.optional_text("pod_ip"),
            f.optional_text("metrics"),
            f.integer("supervisor_pid"),
            f.integer("owner_uid"),
        )


@frozen
class Termination:
    """How a container instance ended."""

    reason: str
    exit_code: int
    signal: int | None
    message: str
    started_at: float | None
    finished_at: float | None

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(
            f.text("reason"),
            f.integer("exit_code"),
            f.optional_integer("signal"),
            f.text("message"),
            _optional_number(f, "started_at"),
            _optional_number(f, "finished_at"),
        )


@frozen
class ContainerRow:
    """One container, as `podvisor status` shows it: its state and its use of resources."""

    name: str
    kind: str
    state: str
    reason: str | None
    message: str
    ready: bool
    started: bool
    restarts: int
    started_at: float | None
    pid: int | None
    paused: bool
    last_termination: Termination | None
    cpu_cores: float | None
    cpu_seconds: float | None
    cpu_limit_cores: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    pids: int | None
    pids_max: int | None
    #: Kubernetes' lastState: the end before the current state (last_termination
    #: is the latest end, which is the current state's when it is terminated).
    last_state: Termination | None = None

    @classmethod
    def read(cls, f: Fields) -> Self:
        last = f.values.get("last_termination")
        before = f.values.get("last_state")
        return cls(
            f.text("name"),
            f.text("kind"),
            f.text("state"),
            f.optional_text("reason"),
            f.text("message"),
            f.flag("ready"),
            f.flag("started"),
            f.integer("restarts"),
            _optional_number(f, "started_at"),
            f.optional_integer("pid"),
            f.flag("paused"),
            None if last is None else Termination.read(f.nested("last_termination")),
            _optional_number(f, "cpu_cores"),
            _optional_number(f, "cpu_seconds"),
            _optional_number(f, "cpu_limit_cores"),
            f.optional_integer("memory_bytes"),
            f.optional_integer("memory_limit_bytes"),
            f.optional_integer("pids"),
            f.optional_integer("pids_max"),
            None if before is None else Termination.read(f.nested("last_state")),
        )


@frozen
class PsReply(Reply):
    KIND = "ps reply"
    pod: PodSummary

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(PodSummary.read(f.nested("pod")))


@frozen
class StatusReply(Reply):
    KIND = "status reply"
    pod: PodSummary
    containers: tuple[ContainerRow, ...]

    @classmethod
    def read(cls, f: Fields) -> Self:
        pod = PodSummary.read(f.nested("pod"))
        return cls(pod, tuple(ContainerRow.read(row) for row in _objects(f, "containers")))


@frozen
class LogsReply(Reply):
    KIND = "logs reply"
    #: The containers whose lines follow.
    containers: tuple[str, ...]

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.texts("containers"))


@frozen
class StdinAttached(Reply):
    """The container's stdin (or its terminal) rides along; the connection stays open
    for as long as the attach writes to it, so that stdinOnce knows when it has left."""

    KIND = "attach stdin reply"
    container: str
    tty: bool

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.text("container"), f.flag("tty"))


@frozen
class ExecStarted(Reply):
    KIND = "exec reply"
    pid: int

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.integer("pid"))


@frozen
class Done(Reply):
    """What restart and stop answer: the pod has been told."""

    KIND = "reply"


@frozen
class Killed(Reply):
    KIND = "kill reply"
    #: The container is paused: the signal waits until it is resumed.
    paused: bool

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.flag("paused"))


@frozen
class Paused(Reply):
    KIND = "pause reply"
    #: The container's probes, which fail while it is paused.
    probes: tuple[str, ...]

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.texts("probes"))


@frozen
class Resumed(Reply):
    KIND = "resume reply"
    was_paused: bool

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.flag("was_paused"))


@frozen
class Error(Message):
    """A request the server refused or could not carry out (or one cut short by the pod's end)."""

    KIND = "error"
    #: What a person reads.
    error: str
    #: exec's status for a command that could not start: 126, or 127 when not found.
    exit_code: int | None = None

    @classmethod
    def tag(cls) -> dict[str, object]:
        return {"ok": False}

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.text("error"), f.optional_integer("exit_code"))


# --- Events, describe and the host's scrape -----------------------------------------


@frozen
class Events(Request):
    """The pod's events, as Kubernetes records them (oldest first)."""

    KIND = "events"


@frozen
class Describe(Request):
    """What `podvisor describe` shows: the pod, its containers in full, its events."""

    KIND = "describe"


@frozen
class Scrape(Request):
    """The pod's own series, in Prometheus' text format, for the host's endpoint."""

    KIND = "scrape"


@frozen
class EventRecord:
    """One event, repeats folded: *count* times, from *first* to *last* (Unix seconds)."""

    type: str
    reason: str
    message: str
    #: None: the pod itself.
    container: str | None
    count: int
    first: float
    last: float

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(
            f.text("type"),
            f.text("reason"),
            f.text("message"),
            f.optional_text("container"),
            f.integer("count"),
            f.number("first"),
            f.number("last"),
        )


@frozen
class EventsReply(Reply):
    KIND = "events reply"
    events: tuple[EventRecord, ...]

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(tuple(EventRecord.read(e) for e in _objects(f, "events")))


@frozen
class ContainerDetail:
    """A container's spec as kubectl describe shows it: each item already in words."""

    name: str
    image: str
    command: tuple[str, ...]
    limits: tuple[str, ...]
    requests: tuple[str, ...]
    probes: tuple[str, ...]
    mounts: tuple[str, ...]

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(
            f.text("name"),
            f.text("image"),
            f.texts("command"),
            f.texts("limits"),
            f.texts("requests"),
            f.texts("probes"),
            f.texts("mounts"),
        )


@frozen
class Condition:
    type: str
    status: str

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.text("type"), f.text("status"))


@frozen
class DescribeReply(Reply):
    KIND = "describe reply"
    pod: PodSummary
    #: The last words of a finished pod, else the pod's reason; "" when none.
    message: str
    containers: tuple[ContainerRow, ...]
    details: tuple[ContainerDetail, ...]
    conditions: tuple[Condition, ...]
    events: tuple[EventRecord, ...]

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(
            PodSummary.read(f.nested("pod")),
            f.text("message"),
            tuple(ContainerRow.read(row) for row in _objects(f, "containers")),
            tuple(ContainerDetail.read(d) for d in _objects(f, "details")),
            tuple(Condition.read(c) for c in _objects(f, "conditions")),
            tuple(EventRecord.read(e) for e in _objects(f, "events")),
        )


@frozen
class ScrapeReply(Reply):
    KIND = "scrape reply"
    pod: str
    namespace: str
    #: Prometheus' text format 0.0.4.
    text: str

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.text("pod"), f.text("namespace"), f.text("text"))


# --- What follows a reply --------------------------------------------------------


@frozen
class LogRecord:
    """One log line, or a piece of a long one (all pieces but the last are partial)."""

    time: float
    container: str
    stream: str
    text: str
    partial: bool

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(
            f.number("time"),
            f.text("container"),
            f.text("stream"),
            f.text("text"),
            f.flag("partial"),
        )


@frozen
class LogLines(Message):
    KIND = "lines"
    lines: tuple[LogRecord, ...]

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(tuple(LogRecord.read(line) for line in _objects(f, "lines")))


@frozen
class LogEnd(Message):
    """Every line asked for has been sent (without follow)."""

    KIND = "end"

    @classmethod
    def tag(cls) -> dict[str, object]:
        return {"end": True}


@frozen
class ExecExited(Event):
    """The exec'd command has ended: its exit code, or the signal that ended it."""

    KIND = "exited"
    code: int | None
    signal: int | None

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.optional_integer("code"), f.optional_integer("signal"))


@frozen
class Finished(Event):
    """The pod a `Stop` asked to stop has finished."""

    KIND = "finished"
    #: None when the client did not hear it (the connection ended first).
    phase: str | None
    exit_status: int | None

    @classmethod
    def read(cls, f: Fields) -> Self:
        return cls(f.optional_text("phase"), f.optional_integer("exit_status"))


REQUESTS: Final[dict[str, type[Request]]] = {
    m.KIND: m
    for m in (
        *(Ps, Status, Logs, Exec, Signal, Restart, Kill, Pause, Resume, Stop),
        *(Events, Describe, Scrape, AttachStdin),
    )
}
EVENTS: Final[dict[str, type[Event]]] = {m.KIND: m for m in (ExecExited, Finished)}

# =============================================================================
# Bytes
# =============================================================================


def as_object(message: Message) -> dict[str, object]:
    """*message* as the JSON object the wire carries (and ``-o json`` prints)."""
    body = plain(message)
    assert isinstance(body, dict)
    return {**message.tag(), **body}


def encode(message: Message) -> bytes:
    data = json.dumps(as_object(message), separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ControlMessageError(f"{message.KIND} of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def decode_request(data: bytes) -> Request:
    """A client's request; ControlMessageError for anything else."""
    values = _load(data)
    op = values.get("op")
    if not isinstance(op, str):
        raise ControlMessageError(f"not a request: {data[:80]!r}")
    kind = REQUESTS.get(op)
    if kind is None:
        raise ControlMessageError(
            f"unknown request {op!r}: the pod's podvisor is another version than this command's"
        )
    return _read(kind, values)


def decode_reply(data: bytes, kind: type[R]) -> R | Error:
    """The server's answer to a request, which answers with *kind*: that, or an Error."""
    values = _load(data)
    ok = values.get("ok")
    if ok is False:
        return _read(Error, values)
    if ok is not True:
        raise ControlMessageError(f"not a {kind.KIND}: {data[:80]!r}")
    return _read(kind, values)


def decode_streamed(data: bytes) -> Message:
    """What the server sends after its reply: LogLines, LogEnd, an Event or an Error."""
    values = _load(data)
    ev = values.get("ev")
    kind: type[Message] | None = EVENTS.get(ev) if isinstance(ev, str) else None
    if values.get("ok") is False:
        kind = Error
    elif "lines" in values:
        kind = LogLines
    elif values.get("end") is True:
        kind = LogEnd
    if kind is None:
        raise ControlMessageError(f"not a message this podvisor knows: {data[:80]!r}")
    return _read(kind, values)


def _load(data: bytes) -> dict[str, object]:
    try:
        values = json.loads(data)
    except ValueError as exc:  # UnicodeDecodeError too
        raise ControlMessageError(f"not a JSON message: {data[:80]!r}") from exc
    if not isinstance(values, dict):
        raise ControlMessageError(f"not a JSON object: {data[:80]!r}")
    return values


def _read(kind: type[M], values: dict[str, object]) -> M:
    try:
        return kind.read(Fields(kind.KIND, values))
    except ProtocolError as exc:
        raise ControlMessageError(str(exc)) from exc
