"""Where a pod's control socket lives, and how a client finds it.

Each pod's supervisor serves ``<run dir>/pods/<pod>.sock``, where the run
dir is ``/run/podvisor`` (``$PODVISOR_RUN_DIR`` overrides it, for tests and
for a container whose /run is read-only). The socket is mode 0600 and owned
by the user who started the pod; the supervisor also checks each client's
SO_PEERCRED and serves only root and its own uid. A user who may not write
/run/podvisor/pods gets ``$XDG_RUNTIME_DIR/podvisor/pods`` instead. The
socket is removed when the pod stops; one left by a supervisor that was
SIGKILLed refuses connections (ECONNREFUSED) and is replaced by the next pod
of that name.

A client trusts only its own and root's: a socket owned by the user it runs
as or by root, in a directory owned by one of them that nobody else may
write (`trusted`), and, once connected, a server whose SO_PEERCRED says the
same (`client.Client`). For root that is root alone: root's podvisor never
lists, asks or hands descriptors to a socket some user made, wherever it
lies.

Standard library only: the command-line client imports it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from podvisor.supervisor.errors import ControlError

DEFAULT_RUN_DIR: Final = "/run/podvisor"
RUN_DIR_VARIABLE: Final = "PODVISOR_RUN_DIR"
SUFFIX: Final = ".sock"
#: sun_path holds 108 bytes, the last one a NUL.
SUN_PATH_MAX: Final = 107

# =============================================================================
# Where the sockets live
# =============================================================================


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

    Never another user's runtime directory: what a user puts there is theirs.
    """
    found = [pods_dir()]
    own = user_pods_dir()
    if own is not None:
        found.append(own)
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
        if path.exists() and trusted(path):
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
            if entry.name.endswith(SUFFIX) and not entry.name.startswith(".") and trusted(entry):
                found.setdefault(entry.name.removesuffix(SUFFIX), entry)
    return sorted(found.items())


def trusted(path: Path) -> bool:
    """Whether *path* is a socket of ours or root's, in a directory only we or root may write."""
    owners = (0, os.geteuid())
    try:
        sock = path.lstat()
        directory = path.parent.stat()
    except OSError:
        return False
    return (
        stat.S_ISSOCK(sock.st_mode)
        and sock.st_uid in owners
        and directory.st_uid in owners
        and not directory.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )
