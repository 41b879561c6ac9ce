"""Whether each container's program can be found, for `podvisor check`.

A command[0] that is not there fails every start with ContainerCannotRun and,
under restartPolicy Always, loops in back-off for ever; `check` says so
first. The program is looked up as execvp(3) will look it up: a name with a
slash as a path (relative to the working directory), any other name in each
directory of PATH. PATH is the container's own when its env sets one
literally, else the host's (host mode) or the image's (its config's Env). In
an image, the path is resolved in its unpacked layers, top layer first, as
overlayfs shows them: a whiteout hides what is below, and symbolic links are
followed inside the image's root, never out to the host's.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Sequence

from podvisor.supervisor.manifest.model import Container, Pod
from podvisor.supervisor.manifest.rootfs import on_image

#: As the container gets when the supervisor has no PATH (pod.processes).
HOST_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Symbolic links followed in one lookup, as the kernel's limit.
MAX_LINKS = 40


def program_warnings(pod: Pod) -> list[str]:
    """One warning per container whose program would not be found."""
    found = []
    for c in pod.spec.all_containers:
        looked = _look_up(pod, c)
        if looked is not None:
            found.append(looked)
    return found


def _look_up(pod: Pod, c: Container) -> str | None:
    if on_image(pod, c):
        return _in_image(c)
    argv = c.argv
    if not argv or "$(" in argv[0]:
        return None  # expanded from the environment when it starts
    path = _literal_path(c) or os.environ.get("PATH") or HOST_DEFAULT_PATH
    cwd = c.working_dir or os.getcwd()
    if _found(argv[0], path, cwd, _host_exists):
        return None
    where = "at that path" if "/" in argv[0] else "in any directory of PATH"
    return (
        f"container {c.name}: its program {argv[0]!r} is not found {where} on this host; "
        "it would fail to start with ContainerCannotRun (exit 127)"
    )


def _in_image(c: Container) -> str | None:
    from podvisor.supervisor.errors import ImageError
    from podvisor.supervisor.images.store import ImageStore
    from podvisor.supervisor.pod.image_config import image_env, program, working_dir

    if not c.image:
        return None
    try:
        image = ImageStore().find(c.image)
    except (ImageError, OSError):
        return None
    if image is None:
        return None  # `check` says the image is missing, or would be pulled
    argv = program(c, image.config, {})
    if not argv or "$(" in argv[0]:
        return None
    path = _literal_path(c) or image_env(image.config)["PATH"]
    layers = tuple(reversed(image.layer_dirs()))
    if _found(argv[0], path, working_dir(c, image.config), lambda p: _in_layers(p, layers)):
        return None
    where = "at that path" if "/" in argv[0] else "in any directory of its PATH"
    return (
        f"container {c.name}: its program {argv[0]!r} is not found {where} in the image "
        f"{c.image}; it would fail to start with ContainerCannotRun (exit 127)"
    )


def _literal_path(c: Container) -> str | None:
    for var in reversed(c.env):
        if var.name == "PATH":
            value = var.value
            return None if value is None or "$(" in value else value
    return None


def _found(name: str, path: str, cwd: str, exists: Callable[[str], bool]) -> bool:
    return any(exists(candidate) for candidate in _candidates(name, path, cwd))


def _candidates(name: str, path: str, cwd: str) -> Iterator[str]:
    """The paths execvp(3) would try, in order (an empty PATH entry is the working directory)."""
    if "/" in name:
        yield posixpath.join(cwd, name)
        return
    for directory in path.split(":"):
        yield posixpath.join(posixpath.join(cwd, directory) if directory else cwd, name)


def _host_exists(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _in_layers(path: str, layers: Sequence[str]) -> bool:
    """Whether *path* is an executable file in the image whose layers, top first, are given."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved, links = "", 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = posixpath.dirname(resolved) if resolved != "/" else ""
            continue
        candidate = f"{resolved}/{part}"
        top = _top(candidate, layers)
        if top is None:
            return False
        layer, st = top
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                return False
            target = os.readlink(layer + candidate)
            if target.startswith("/"):
                resolved = ""
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved = candidate
    top = _top(resolved, layers) if resolved else None
    return top is not None and stat.S_ISREG(top[1].st_mode) and bool(top[1].st_mode & 0o111)


def _top(path: str, layers: Sequence[str]) -> tuple[str, os.stat_result] | None:
    """The top layer that has *path*, and its entry; None if none has it or a whiteout hides it."""
    for layer in layers:
        try:
            st = os.lstat(layer + path)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None  # a whiteout: deleted in this layer
        return layer, st
    return None
