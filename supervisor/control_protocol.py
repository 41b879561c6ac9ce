"""The control socket of a running pod: where it lives and what goes over it.

Where
-----
Each pod's supervisor serves ``<run dir>/pods/<pod>.sock``, where the run
dir is ``/run/podvisor`` (``$PODVISOR_RUN_DIR`` overrides it, for tests and
for a container whose /run is read-only). The socket is mode 0600 and owned
by the user who started the pod; the supervisor also checks each client's
SO_PEERCRED and serves only root and its own uid. A user who may not write
/run/podvisor/pods gets ``$XDG_RUNTIME_DIR/podvisor/pods`` instead. The
socket is removed when the pod stops; one left by a supervisor that was
SIGKILLed refuses connections (ECONNREFUSED) and is replaced by the next pod
of that name.

How
---
``SOCK_SEQPACKET``, as the supervisor<->init channel (`podvisor.init.protocol`,
whose `send` / `receive` both sides use): one packet is one UTF-8 JSON object,
and file descriptors ride along as ``SCM_RIGHTS``. A connection carries one
request, the client's first message; the server answers with one reply
(``"ok": true`` and the result, or ``"ok": false`` and an ``"error"`` a person
reads), or for ``logs``, ``exec`` and ``stop`` with a reply followed by a
stream of messages, and closes the connection when it is done.

Requests and answers::

    {"op": "ps"}
        -> {"ok": true, "pod": SUMMARY}
           SUMMARY: {"name", "uid", "phase", "status", "ready", "containers",
                     "restarts", "start_time", "pod_ip", "metrics",
                     "supervisor_pid", "owner_uid"}
    {"op": "status"}
        -> {"ok": true, "pod": SUMMARY, "containers": [CONTAINER, ...]}
           CONTAINER: {"name", "kind", "state", "reason", "message", "ready",
                       "started", "restarts", "started_at", "pid", "paused",
                       "last_termination": null | {"reason", "exit_code",
                           "signal", "started_at", "finished_at", "message"},
                       "cpu_cores", "cpu_seconds", "cpu_limit_cores",
                       "memory_bytes", "memory_limit_bytes", "pids", "pids_max"}
           CPU is measured over `CPU_SAMPLE_SECONDS`; times are Unix seconds.
    {"op": "logs", "container": null | "c", "previous": false,
     "tail": null | 100, "since": null | UNIX_SECONDS, "follow": false}
        -> {"ok": true, "containers": ["c", ...]}
           {"lines": [{"time", "container", "stream", "text", "partial"}, ...]} ...
           {"end": true}                       (without follow)
           With follow, lines keep coming until the pod stops (end-of-file).
    {"op": "exec", "container": null | "c", "argv": [...], "env": {...},
     "tty": false, "size": [ROWS, COLUMNS]}   + 3 fds: the command's 0, 1, 2
        -> {"ok": true, "pid": 42}            the command runs
           With "tty" the command gets a new pseudo-terminal (of "size")
           instead of the 3 fds, and the reply carries its master.
           ... the client may send {"op": "signal", "signal": 2} (to the
           command's process group), any number of times ...
           {"ev": "exited", "code": 0 | null, "signal": null | 9}
        A client that hangs up gets its command SIGHUPed, then SIGKILLed.
        A command that cannot start: {"ok": false, "error", "exit_code": 126 | 127}.
    {"op": "restart", "container": "c"}      -> {"ok": true}
    {"op": "kill", "container": "c", "signal": 15}
                                             -> {"ok": true, "paused": false}
    {"op": "pause" | "resume", "container": "c"}
                                             -> {"ok": true, "probes": ["liveness", ...]}
    {"op": "stop", "immediate": false}
        -> {"ok": true}, then, when the pod has finished,
           {"ev": "finished", "phase": "Succeeded", "exit_status": 0}

Standard library only: the client (`podvisor status` and friends) imports
this and `podvisor.init.protocol`, never anyio.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from podvisor.init import protocol
from podvisor.supervisor.errors import ControlError

Message = dict[str, Any]

DEFAULT_RUN_DIR: Final = "/run/podvisor"
RUN_DIR_VARIABLE: Final = "PODVISOR_RUN_DIR"
SUFFIX: Final = ".sock"
#: sun_path holds 108 bytes, the last one a NUL.
SUN_PATH_MAX: Final = 107
#: How long status measures CPU use; `top` would say "the interval".
CPU_SAMPLE_SECONDS: Final = 0.25
#: A client gives up on an answer after this long: never a hang.
ANSWER_TIMEOUT: Final = 10.0
#: exec's first answer comes once the init has started the command, which the
#: server waits for up to 30 s (a loaded machine forks slowly).
EXEC_ANSWER_TIMEOUT: Final = 45.0


# --- Where the sockets live -------------------------------------------------------


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_VARIABLE) or DEFAULT_RUN_DIR)


def pods_dir() -> Path:
    """Where pods started by root (or anyone who may write there) put their socket."""
    return run_dir() / "pods"


def user_pods_dir() -> Path | None:
    """Where a user's pods go when they may not write `pods_dir()`; None without one."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime or os.environ.get(RUN_DIR_VARIABLE):
        return None
    return Path(runtime) / "podvisor" / "pods"


def search_dirs() -> list[Path]:
    """Every directory a client looks in, the shared one first.

    Root also looks in each user's runtime directory, so that
    ``sudo podvisor status POD`` finds a pod a user started.
    """
    found = [pods_dir()]
    own = user_pods_dir()
    if own is not None:
        found.append(own)
    if os.geteuid() == 0 and not os.environ.get(RUN_DIR_VARIABLE):
        found += sorted(Path("/run/user").glob("*/podvisor/pods"))
    unique: list[Path] = []
    for d in found:
        if d not in unique:
            unique.append(d)
    return unique


def socket_path(directory: Path, pod: str) -> Path:
    return directory / f"{pod}{SUFFIX}"


def find_pod(pod: str) -> Path:
    """The socket of the pod named *pod*; ControlError when no pod has that name."""
    for directory in search_dirs():
        path = socket_path(directory, pod)
        if path.exists():
            return path
    raise ControlError(f"no pod named {pod!r} runs on this host (`podvisor ps` lists them)")


def list_pods() -> list[tuple[str, Path]]:
    """(name, socket) of every pod found, by name."""
    found: dict[str, Path] = {}
    for directory in search_dirs():
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                found.setdefault(entry.name.removesuffix(SUFFIX), entry)
    return sorted(found.items())


# --- The client's end --------------------------------------------------------------


class Client:
    """One connection to a pod's control socket (blocking, with timeouts)."""

    def __init__(self, pod: str, path: Path, timeout: float | None = ANSWER_TIMEOUT) -> None:
        self.pod = pod
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        # connect(2) on a unix socket blocks while the server's backlog is full.
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise self._connect_error(exc) from exc

    @classmethod
    def open(cls, pod: str, timeout: float | None = ANSWER_TIMEOUT) -> Client:
        return cls(pod, find_pod(pod), timeout)

    def _connect_error(self, exc: OSError) -> ControlError:
        if isinstance(exc, PermissionError):
            return ControlError(self._denied())
        if exc.errno == errno.ECONNREFUSED:
            return ControlError(
                f"pod {self.pod!r} is gone: its supervisor died and left {self.path} behind "
                "(the next pod of that name replaces it)"
            )
        if isinstance(exc, TimeoutError):
            return ControlError(self._silent())
        if isinstance(exc, FileNotFoundError):
            return ControlError(f"pod {self.pod!r} has stopped")
        return ControlError(f"cannot reach pod {self.pod!r} at {self.path}: {exc.strerror or exc}")

    def _denied(self) -> str:
        try:
            owner = self.path.stat().st_uid
        except OSError:
            return f"permission denied: cannot reach the control socket {self.path}; use sudo"
        return f"permission denied: the pod {self.pod!r} belongs to uid {owner}; use sudo"

    def _silent(self) -> str:
        return (
            f"pod {self.pod!r} does not answer: its supervisor may be stopped or overloaded "
            f"(socket {self.path})"
        )

    def send(self, message: Message, fds: list[int] | tuple[int, ...] = ()) -> None:
        try:
            protocol.send(self.sock, message, fds)
        except TimeoutError as exc:
            raise ControlError(self._silent()) from exc
        except OSError as exc:
            raise ControlError(f"lost the connection to pod {self.pod!r}: {exc}") from exc

    def receive(self) -> Message | None:
        """The next message; None when the server closed the connection. Fds are closed."""
        message, fds = self.receive_with_fds()
        close_all(fds)
        return message

    def receive_with_fds(self) -> tuple[Message | None, list[int]]:
        """The next message and the fds that came with it (the caller's to close)."""
        try:
            received = protocol.receive(self.sock)
        except TimeoutError as exc:
            raise ControlError(self._silent()) from exc
        except (OSError, protocol.ProtocolError) as exc:
            raise ControlError(f"lost the connection to pod {self.pod!r}: {exc}") from exc
        return received if received is not None else (None, [])

    def reply(self) -> Message:
        """The answer to the request: its "ok" message; ControlError for an error."""
        message = self.receive()
        if message is None:
            raise ControlError(f"pod {self.pod!r} closed the connection without an answer")
        if not message.get("ok"):
            raise ControlError(str(message.get("error") or f"pod {self.pod!r} refused"))
        return message

    def request(self, message: Message, fds: list[int] | tuple[int, ...] = ()) -> Message:
        self.send(message, fds)
        return self.reply()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def close_all(fds: Iterable[int]) -> None:
    """Close each of *fds*, whichever are still open."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def ask(pod: str, message: Message) -> Message:
    """Send one request to *pod* and return its answer."""
    with Client.open(pod) as client:
        return client.request(message)
