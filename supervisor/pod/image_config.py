"""An image's config as Kubernetes applies it to a container: program, env, directory, user.

Pure functions of the manifest's container and the image's `ImageConfig`
(and, for a user given by name, the image's /etc/passwd and /etc/group):

- the program: ``command`` replaces the image's Entrypoint and drops its Cmd;
  ``args`` replaces Cmd; with neither, Entrypoint then Cmd. `$(VAR)` is
  expanded in the manifest's command and args only, as the kubelet does;
- the environment: the image's Env, then the container's, which wins;
- the working directory: ``workingDir``, else the image's WorkingDir, else /;
- the user: runAsUser and runAsGroup win over the image's User
  (``uid``, ``uid:gid``, ``name``, ``name:group``); with runAsNonRoot and
  no runAsUser, the image's User is checked as the kubelet checks it;
- HOME, when neither Env sets it: the user's home in the image's
  /etc/passwd, else /, as runc sets it; on the host's files, in the host's
  /etc/passwd (`host_home`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from podvisor.supervisor.manifest.expansion import expand

if TYPE_CHECKING:
    from podvisor.supervisor.images import ImageConfig
    from podvisor.supervisor.manifest.model import Container

#: PATH when the image sets none (Docker's and containerd's default).
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def program(c: Container, config: ImageConfig, env: Mapping[str, str]) -> tuple[str, ...]:
    """What the container runs: Kubernetes' rules for command and args over Entrypoint and Cmd."""
    command = tuple(expand(a, env) for a in c.command)
    args = tuple(expand(a, env) for a in c.args)
    if command:
        return command + args
    entrypoint = config.entrypoint or ()
    if args:
        return entrypoint + args
    return entrypoint + (config.cmd or ())


def says_what_to_run(c: Container, config: ImageConfig) -> bool:
    return bool(c.command or config.entrypoint or (c.args or config.cmd))


def image_env(config: ImageConfig) -> dict[str, str]:
    """The image's Env as a mapping (PATH included when it sets one, else `IMAGE_PATH`)."""
    env = {"PATH": IMAGE_PATH}
    for item in config.env:
        name, _, value = item.partition("=")
        if name:
            env[name] = value
    return env


def working_dir(c: Container, config: ImageConfig) -> str:
    return c.working_dir or config.working_dir or "/"


def user(
    config: ImageConfig, run_as_user: int | None, run_as_group: int | None, layers: Sequence[str]
) -> tuple[int | None, int | None]:
    """(uid, gid) the program runs as; a gid of None is the user's own, read in the container.

    *layers*: the image's layer directories, top first, where a name is looked up.
    """
    uid: int | None = run_as_user
    gid: int | None = run_as_group
    if config.user and run_as_user is None:
        name, _, group = config.user.partition(":")
        uid = _id(name, "passwd", layers)
        if group and gid is None:
            gid = _id(group, "group", layers)
    return uid, gid


def runs_as_root(config: ImageConfig) -> str | None:
    """Why the kubelet refuses the image's User under runAsNonRoot with no runAsUser, or None.

    The kubelet reads the User as the runtime reports it, never the image's
    /etc/passwd: none is root, a number (before any ``:group``) is that uid,
    and a name, even ``root``, cannot be verified, so it is refused too.
    """
    name = (config.user or "").partition(":")[0]
    if not name:
        return "image will run as root"
    if not (name.isascii() and name.isdigit()):
        return f"image has non-numeric user ({name}), cannot verify user is non-root"
    return "image will run as root" if int(name) == 0 else None


def home(uid: int, layers: Sequence[str]) -> str:
    """The home of *uid* in the image's /etc/passwd (its first entry), else /."""
    return _home(uid, _database("passwd", layers))


def host_home(uid: int, database: str = "/etc/passwd") -> str:
    """The home of *uid* in the host's /etc/passwd (its first entry), else /.

    For a container on the host's files, whose root is the host's. runc reads
    the passwd file of the container's root itself, not through the C
    library's name services, so a user only a directory service (LDAP, sssd)
    knows gets /, as it would in any container.
    """
    return _home(uid, _lines(database))


def _home(uid: int, passwd: list[list[str]]) -> str:
    """The first entry's home whose uid is *uid* (a number, read as one: 01000 is 1000),
    comments skipped; / for an entry with no home, as for no entry."""
    for fields in passwd:
        if fields[0].startswith("#") or len(fields) < 6 or not fields[2].isdigit():
            continue
        if int(fields[2]) == uid:
            return fields[5] or "/"
    return "/"


def _id(text: str, database: str, layers: Sequence[str]) -> int:
    if text.isdigit():
        return int(text)
    for fields in _database(database, layers):
        if len(fields) > 2 and fields[0] == text and fields[2].isdigit():
            return int(fields[2])
    raise LookupError(f"the image's user {text!r} is not in its /etc/{database}")


def _database(database: str, layers: Sequence[str]) -> list[list[str]]:
    """The fields of each line of the image's /etc/*database*: the top layer's that has it.

    A file whose links lead out of its layer is read as none: the image's links
    would otherwise name the host's files.
    """
    for layer in layers:
        path = os.path.join(layer, "etc", database)
        if not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        if not real.startswith(os.path.realpath(layer) + os.sep):
            return []
        return _lines(real)
    return []


def _lines(path: str) -> list[list[str]]:
    """The fields of each line of the database at *path*; none if it cannot be read
    (a whiteout, a directory: the container sees no such file)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f]
    except OSError:
        return []
