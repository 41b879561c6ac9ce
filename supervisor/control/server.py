"""The server's end of a pod's control socket: binding it, accepting, one connection.

The socket's place and protocol are in `control_protocol`. Binding makes the
socket under a temporary name, makes it mode 0600 and only then renames it into
place, so no other user can connect in between. A socket file left by a
supervisor that was SIGKILLed refuses connections and is replaced; one that
answers belongs to a live pod of the same name, and this pod then serves none
(said once on its log), rather than failing to start.

`serve_control` accepts; the requests' handlers (`handlers.ControlServer`),
with the connection (`connection`) and the messages (`wire`), are imported
by the first connection: a supervisor whose pod nobody asks about does not
keep their code as long as the pod runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from podvisor.supervisor.control.paths import SUN_PATH_MAX, pods_dir, socket_path, user_pods_dir

if TYPE_CHECKING:
    from podvisor.supervisor.control.handlers import ControlServer
    from podvisor.supervisor.pod.view import PodView

#: Connections waiting to be accepted.
BACKLOG = 64


@dataclass
class ControlSocket:
    """The bound, listening socket, and the file that names it."""

    path: Path
    sock: socket.socket
    inode: tuple[int, int]

    def close(self) -> None:
        """Remove the file (when it is still ours) and close; safe to call twice."""
        with contextlib.suppress(OSError):
            st = self.path.stat()
            if (st.st_dev, st.st_ino) == self.inode:
                self.path.unlink()
        self.sock.close()


async def serve_control(
    host: PodView,
    directory: Path | None = None,
    *,
    task_status: anyio.abc.TaskStatus[Path | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the pod's control socket until cancelled, then remove it.

    For ``await task_group.start(serve_control, runner)``: reports the socket's
    path once clients can connect, or None when the pod gets no socket (said
    once on the pod's log, with why).
    """
    bound = bind_control_socket(host.pod.name, directory)
    if isinstance(bound, str):
        host.sink.system(f"warning: {bound}")
        task_status.started(None)
        return
    server: ControlServer | None = None
    try:
        async with anyio.create_task_group() as tg:
            task_status.started(bound.path)
            while True:
                sock = await _accept(bound.sock, host)
                if server is None:
                    from podvisor.supervisor.control.handlers import ControlServer

                    server = ControlServer(host, bound)
                tg.start_soon(server.serve_connection, sock)
    finally:
        bound.close()


async def _accept(listener: socket.socket, host: PodView) -> socket.socket:
    """The next connection to *listener*."""
    while True:
        await anyio.wait_readable(listener)
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue
        except OSError as exc:  # out of descriptors: let some connections end first
            host.sink.system(f"control socket: cannot accept a connection: {exc}")
            await anyio.sleep(0.1)
            continue
        return sock


def bind_control_socket(pod: str, directory: Path | None = None) -> ControlSocket | str:
    """Bind *pod*'s socket (mode 0600); or say why the pod gets none."""
    if directory is None:
        directory = _writable_dir()
        if directory is None:
            return (
                f"no control socket: cannot write {pods_dir()} (run podvisor as root, or set "
                "XDG_RUNTIME_DIR); `podvisor ps` and `status` will not see this pod"
            )
    path = socket_path(directory, pod)
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        return f"no control socket: the path {path} is too long for a unix socket"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if _alive(path):
            return (
                f"no control socket: another pod named {pod!r} serves {path}; `podvisor` "
                "commands reach that one, not this one"
            )
        return _bind(path)
    except OSError as exc:
        return f"no control socket at {path}: {exc.strerror or exc}"


def running_pid(pod: str, directory: Path | None = None) -> int | None:
    """The supervisor pid of a live pod named *pod* on this host; None when there is none.

    *directory*: where its socket would be (None: where sockets go). A socket
    left by a dead supervisor refuses the connection and is removed.
    """
    places = [directory] if directory is not None else [pods_dir(), user_pods_dir()]
    for place in [d for d in places if d is not None]:
        path = socket_path(place, pod)
        if not path.exists():
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            probe.settimeout(2.0)
            probe.connect(str(path))
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return int(struct.unpack("3i", creds)[0])
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)  # its supervisor was SIGKILLed
        except OSError:
            continue
        finally:
            probe.close()
    return None


def _writable_dir() -> Path | None:
    shared = pods_dir()
    with contextlib.suppress(OSError):
        shared.mkdir(parents=True, exist_ok=True)
    if os.access(shared, os.W_OK | os.X_OK):
        return shared
    return user_pods_dir()


def _alive(path: Path) -> bool:
    """Whether a server listens on *path*; a socket left by a dead one is removed."""
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    probe.setblocking(False)
    try:
        probe.connect(str(path))
    except BlockingIOError:
        return True  # its backlog is full: alive, and busy
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)  # its supervisor was SIGKILLed
        return False
    except FileNotFoundError:
        return False
    finally:
        probe.close()
    return True


def _bind(path: Path) -> ControlSocket:
    """Bind under a temporary name, chmod 0600, then rename: never reachable while open."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        temporary.unlink(missing_ok=True)
        sock.bind(str(temporary))
        os.chmod(temporary, 0o600)
        os.rename(temporary, path)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        st = path.stat()
    except BaseException:
        sock.close()
        temporary.unlink(missing_ok=True)
        raise
    return ControlSocket(path, sock, (st.st_dev, st.st_ino))
